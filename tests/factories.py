from datetime import timedelta
from decimal import Decimal
from functools import cache
from typing import Any, cast

import factory
from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import Group, User
from django.utils import timezone

from handoff.models import Handoff
from handoff.rollups import handoffs_facts, handoffs_record
from leadflow.leads.models import Event, Lead, Outcome, OutcomeKind, Source, Stage
from scoring import services as scoring_services
from scoring.models import RuleSet, Score, ScoringModel


def password_hash(raw: str) -> str:
    """One real hash per password, hasher setting and process: the production hasher
    (PBKDF2, a million iterations) takes 0.5-4 s on this machine, and the suite creates
    over a thousand users. Every user with the same password shares the salt, which a test
    never minds; a login still checks the password the way production does. Keyed on
    ``PASSWORD_HASHERS`` too: a hash made under a test's faster hasher would not verify
    once the setting is restored."""
    return _password_hash(raw, tuple(settings.PASSWORD_HASHERS))


@cache
def _password_hash(raw: str, hashers: tuple[str, ...]) -> str:
    return make_password(raw)


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        django_get_or_create = ["username"]
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@leadflow.test")
    password = factory.django.Password("correct-horse-battery", transform=password_hash)

    @factory.post_generation
    def roles(self, create, extracted, **kwargs):
        if create and extracted:
            # get_or_create: transactional tests flush the groups the migration made.
            cast(User, self).groups.add(*(Group.objects.get_or_create(name=name)[0] for name in extracted))


class SourceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Source
        django_get_or_create = ["slug"]

    name = factory.Sequence(lambda n: f"Source {n}")
    slug = factory.Sequence(lambda n: f"source-{n}")


class LeadFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Lead
        skip_postgeneration_save = True  # the score hook writes a Score, not the lead

    email = factory.Sequence(lambda n: f"lead{n}@acme.test")
    name = factory.Faker("name")
    company = factory.Faker("company")
    job_title = factory.Faker("job")
    source = factory.SubFactory(SourceFactory)

    @factory.post_generation
    def score(self, create, extracted, **kwargs):
        """``LeadFactory(score=45)``: the lead scored 45 under the default model (``score_of``;
        ``score__fit`` — at most 20 by default —, ``score__grade`` and ``score__model`` set the rest)."""
        if create and extracted is not None:
            kwargs.setdefault("fit", str(min(Decimal(extracted), Decimal(20))))
            score_of(self, score=str(extracted), **kwargs)


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


class OutcomeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Outcome

    lead = factory.SubFactory(LeadFactory)
    source = factory.SelfAttribute("lead.source")
    outcome_id = factory.Sequence(lambda n: f"out-{n}")
    kind = OutcomeKind.WON
    amount = Decimal("12000.00")
    currency = "EUR"
    occurred_at = factory.LazyFunction(timezone.now)


def default_model() -> ScoringModel:
    """The default scoring model the migrations install."""
    return ScoringModel.objects.order_by("position", "id").first() or ScoringModel.objects.create(
        name="Default", slug="default"
    )


def score_of(lead, *, score="70", fit="20", model=None, version=1, grade="B", last_intent_at=None) -> Score:
    """Store a score of ``lead`` under ``model`` (the default), as a rescore would: a new
    row takes the lead's stage (``Score.stage``), a rewrite leaves it."""
    score, fit = Decimal(score), Decimal(fit)
    values = {
        "score": score,
        "fit": fit,
        "behaviour": score - fit,
        "grade": grade,
        "ruleset_version": version,
        "computed_at": timezone.now(),
        "last_intent_at": last_intent_at,
    }
    row, _created = Score.objects.update_or_create(
        lead=lead, model=model or default_model(), defaults=values, create_defaults={**values, "stage": lead.stage}
    )
    return row


def lead_score_of(lead) -> Decimal:
    row = Score.objects.filter(lead=lead, model=default_model()).first()
    return row.score if row else Decimal("0")


class SqlLeadFactory(LeadFactory):
    """A lead that became an SQL with a score of 70 (fit 20) under the default model
    (the scoring engine would have opened its handoff)."""

    stage = Stage.SQL
    mql_at = factory.LazyFunction(timezone.now)
    sql_at = factory.LazyFunction(timezone.now)

    @factory.post_generation
    def score(self, create, extracted, **kwargs):
        if create:
            score_of(self, score=str(extracted or "70"))


class HandoffFactory(factory.django.DjangoModelFactory):
    """A queued handoff of an SQL lead, due after the default 24-hour SLA."""

    class Meta:
        model = Handoff

    lead = factory.SubFactory(SqlLeadFactory)
    priority = factory.LazyAttribute(lambda h: lead_score_of(h.lead))
    model = factory.LazyFunction(default_model)
    qualified_by = factory.LazyAttribute(lambda h: [h.model.slug] if h.model else [])
    created_at = factory.LazyFunction(timezone.now)
    due_at = factory.LazyAttribute(lambda h: h.created_at + timedelta(hours=24))

    @classmethod
    def _create(cls, model_class: type[Handoff], *args: Any, **kwargs: Any) -> Handoff:
        """Counted in the sales outcomes' rollups, as the services count a handoff they open."""
        handoff = super()._create(model_class, *args, **kwargs)
        handoffs_record([], handoffs_facts([handoff.pk]).values())
        return handoff


def ruleset_through_services(
    rules,
    *,
    mql=30,
    sql=60,
    intent=("demo_request", "contact_request"),
    half_life=None,
    min_fit=None,
    publish=True,
    user=None,
    model=None,
    **fields,
) -> RuleSet:
    """A ruleset made the way a scoring admin makes one: created, its rules added and
    published through scoring's services, so a test cannot build a ruleset the product
    would refuse. Publishing archives the previous one and enqueues the rescore of every
    lead after commit, as it does in production."""
    ruleset = scoring_services.ruleset_create(
        user=user,
        model=model or default_model(),
        name="Test rules",
        mql_threshold=Decimal(mql),
        sql_threshold=Decimal(sql),
        intent_event_types=list(intent),
        decay_half_life_days=None if half_life is None else Decimal(half_life),
        sql_min_fit=None if min_fit is None else Decimal(min_fit),
        **fields,
    )
    for rule in rules:
        numbers = {name: Decimal(rule[name]) for name in ("points", "max_points") if rule.get(name) is not None}
        scoring_services.rule_create(ruleset=ruleset, **{"points": Decimal(0), **rule, **numbers})
    if publish:
        scoring_services.ruleset_publish(ruleset=ruleset, user=user)
    ruleset.refresh_from_db()
    return ruleset
