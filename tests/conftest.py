import pytest
from rest_framework.test import APIClient

from leadflow.leads import services
from leadflow.leads.roles import MARKETING, SALES, SCORING_ADMIN
from tests.factories import SourceFactory, UserFactory


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
