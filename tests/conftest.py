import os
from contextlib import contextmanager

import pytest
from hypothesis import settings as hypothesis_settings
from rest_framework.test import APIClient

from leadflow.leads import services
from leadflow.leads.roles import MARKETING, SALES, SCORING_ADMIN
from tests.factories import SourceFactory, UserFactory

# pyproject.toml sets HYPOTHESIS_PROFILE=ci for every run: the same examples each time
# (a red CI run is a real failure, not a draw) and no deadline on a shared machine.
hypothesis_settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
hypothesis_settings.register_profile("explore", deadline=None, max_examples=1000)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture
def marketer(db):
    return UserFactory(username="marketer", roles=[MARKETING])


@pytest.fixture
def rep(db):
    return UserFactory(username="rep", roles=[SALES])


@pytest.fixture
def other_rep(db):
    return UserFactory(username="other_rep", roles=[SALES])


@pytest.fixture
def admin(db):
    return UserFactory(username="scoring_admin", roles=[SCORING_ADMIN])


@pytest.fixture
def outsider(db):
    return UserFactory(username="outsider")


@pytest.fixture
def source(db):
    return SourceFactory(name="Website", slug="website")


@pytest.fixture
def ingest_secret(source):
    _key, secret = services.ingest_key_create(source=source)
    return secret


@pytest.fixture
def ingest_client(ingest_secret):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {ingest_secret}")
    return client


@pytest.fixture
def api_client(db):
    return APIClient()


def client_for(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def publish_ruleset(db):
    """Replace the published ruleset with one made of the given rules (no rescore)."""
    from decimal import Decimal

    from django.db.models import Max
    from django.utils import timezone

    from scoring.models import Rule, RuleSet, RuleSetStatus

    def make(rules, *, mql=30, sql=60, intent=("demo_request", "contact_request"), half_life=None, min_fit=None):
        RuleSet.objects.filter(status=RuleSetStatus.PUBLISHED).update(status=RuleSetStatus.ARCHIVED)
        ruleset = RuleSet.objects.create(
            version=(RuleSet.objects.aggregate(v=Max("version"))["v"] or 0) + 1,
            name="Test rules",
            status=RuleSetStatus.PUBLISHED,
            published_at=timezone.now(),
            mql_threshold=Decimal(mql),
            sql_threshold=Decimal(sql),
            intent_event_types=list(intent),
            decay_half_life_days=None if half_life is None else Decimal(half_life),
            sql_min_fit=None if min_fit is None else Decimal(min_fit),
        )
        for position, rule in enumerate(rules):
            Rule.objects.create(ruleset=ruleset, position=position, **rule)
        return ruleset

    return make


def behaviour(event_type, points, **extra):
    return {"kind": "behaviour", "name": f"{event_type} rule", "event_type": event_type, "points": points, **extra}


def fit(attribute, operator, value, points):
    return {
        "kind": "fit",
        "name": f"{attribute} {operator}",
        "attribute": attribute,
        "operator": operator,
        "value": value,
        "points": points,
    }


def _reset_celery_connections():
    from kombu import pools

    from leadflow.celery import app

    pools.reset()  # kombu keeps global connection pools keyed by broker URL
    app._pool = None
    app.amqp._producer_pool = None


@contextmanager
def real_broker(url=None):
    """Publish tasks to a broker (the test Redis, or ``url``) instead of running them eagerly."""
    from leadflow.celery import app

    old_url = app.conf.broker_url
    old_environ = os.environ.get("CELERY_BROKER_URL")
    app.conf.task_always_eager = False
    if url:
        # Celery's broker_url prefers the environment variable to the configuration.
        os.environ["CELERY_BROKER_URL"] = app.conf.broker_url = url
    _reset_celery_connections()
    try:
        yield app
    finally:
        app.conf.task_always_eager = True
        app.conf.broker_url = old_url
        if old_environ is not None:
            os.environ["CELERY_BROKER_URL"] = old_environ
        _reset_celery_connections()


@pytest.fixture
def sales_manager(db):
    """A sales manager is a staff user (see handoff/roles.py)."""
    return UserFactory(username="sales_manager", roles=[SALES], is_staff=True)
