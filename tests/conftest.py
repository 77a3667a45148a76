import os

import pytest
import redis
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from hypothesis import settings as hypothesis_settings
from rest_framework.test import APIClient

from leadflow.leads import services
from leadflow.leads.roles import MARKETING, SALES, SCORING_ADMIN
from tests.factories import SourceFactory, UserFactory, ruleset_through_services

POSTGRESQL = "postgresql"

# pyproject.toml sets HYPOTHESIS_PROFILE=ci for every run: the same examples each time
# (a red CI run is a real failure, not a draw) and no deadline on a shared machine.
hypothesis_settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
hypothesis_settings.register_profile("explore", deadline=None, max_examples=1000)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


# `make test` runs two streams side by side (Makefile: test-main, test-side); these files,
# mostly fresh interpreters and subprocesses, run in the side stream (marker "side") so that
# both streams take about as long.
SIDE_STREAM_FILES = {
    "test_access_matrix.py",
    "test_layers.py",
    "test_rollups.py",
    "test_runtime.py",
    "test_settings_and_boot.py",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name in SIDE_STREAM_FILES:
            item.add_marker(pytest.mark.side)


def pytest_runtest_setup(item):
    """The suite also runs on SQLite (`make test` runs a subset there, for the ORM twins of
    the raw SQL): tests of PostgreSQL itself skip there."""
    # By vendor: the engine is django-prometheus's wrapper of Django's PostgreSQL backend.
    if item.get_closest_marker("postgres") and connection.vendor != POSTGRESQL:
        pytest.skip("needs PostgreSQL (DATABASE_URL)")


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    """Each test starts with no request counted against a rate limit. The cache is Redis
    when the tests have a broker (the counters of every process must meet there) and may
    be the broker's database: only our prefixed keys go, never the broker's."""
    config = settings.CACHES["default"]
    if str(config["BACKEND"]).endswith("RedisCache"):
        client = redis.Redis.from_url(str(config["LOCATION"]))
        prefix = config["KEY_PREFIX"]
        keys = list(client.scan_iter(f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
    else:
        cache.clear()


@pytest.fixture(autouse=True)
def _fresh_intent_types():
    """The ingest's per-process cache of the hand-raise event types starts empty (another
    test's database had other rulesets)."""
    from scoring.selectors import intent_event_types_forget

    intent_event_types_forget()


@pytest.fixture(autouse=True)
def _fresh_verified_keys():
    """No ingest key kept verified from another test (its database was rolled back)."""
    from leadflow.leads.auth import verified_keys

    verified_keys.clear()


@pytest.fixture
def marketer(db):
    return UserFactory.create(username="marketer", roles=[MARKETING])


@pytest.fixture
def rep(db):
    return UserFactory.create(username="rep", roles=[SALES])


@pytest.fixture
def other_rep(db):
    return UserFactory.create(username="other_rep", roles=[SALES])


@pytest.fixture
def admin(db):
    return UserFactory.create(username="scoring_admin", roles=[SCORING_ADMIN])


@pytest.fixture
def outsider(db):
    return UserFactory.create(username="outsider")


@pytest.fixture
def source(db):
    return SourceFactory.create(name="Website", slug="website")


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


@pytest.fixture
def publish_ruleset(db):
    """Publish a ruleset made of the given rules, through the services (see
    ``tests.factories.ruleset_through_services``)."""
    return ruleset_through_services


@pytest.fixture
def sales_manager(db):
    """A sales manager is a staff user (see handoff/roles.py)."""
    return UserFactory.create(username="sales_manager", roles=[SALES], is_staff=True)
