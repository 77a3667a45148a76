from datetime import timedelta

import factory
from django.contrib.auth.models import Group, User
from django.utils import timezone

from leadflow.leads.models import Event, Lead, Source


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        django_get_or_create = ["username"]
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@leadflow.test")
    password = factory.django.Password("correct-horse-battery")

    @factory.post_generation
    def roles(self, create, extracted, **kwargs):
        if create and extracted:
            # get_or_create: transactional tests flush the groups the migration made.
            self.groups.add(*(Group.objects.get_or_create(name=name)[0] for name in extracted))


class SourceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Source
        django_get_or_create = ["slug"]

    name = factory.Sequence(lambda n: f"Source {n}")
    slug = factory.Sequence(lambda n: f"source-{n}")


class LeadFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Lead

    email = factory.Sequence(lambda n: f"lead{n}@acme.test")
    name = factory.Faker("name")
    company = factory.Faker("company")
    job_title = factory.Faker("job")
    source = factory.SubFactory(SourceFactory)


class EventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Event

    lead = factory.SubFactory(LeadFactory)
    source = factory.SelfAttribute("lead.source")
    event_id = factory.Sequence(lambda n: f"evt-{n}")
    type = "page_view"
    properties = factory.LazyFunction(dict)
    occurred_at = factory.LazyFunction(lambda: timezone.now() - timedelta(hours=1))
    fingerprint = factory.Sequence(lambda n: f"{n:064x}")
