"""Brute force gets a 429 and Retry-After everywhere: login lockout (django-axes) on
/login/ and the admin, per account and per address, lifted after the cool-off; failed API
authentications per address; and each ingest key's quota. The clock is moved for real
(time-machine): axes compares its records' times with the database's, the throttles
name their windows after the current time."""

import json
from datetime import timedelta

import pytest
import time_machine
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from leadflow.leads import services
from tests.factories import SourceFactory, UserFactory

PASSWORD = "correct-horse-battery"  # tests.factories.UserFactory


@pytest.fixture
def lockout(settings):
    settings.AXES_FAILURE_LIMIT = 3
    settings.AXES_COOLOFF_TIME = timedelta(minutes=15)
    return settings


def log_in(username, password, *, address="203.0.113.7", url="/login/"):
    return Client(REMOTE_ADDR=address).post(url, {"username": username, "password": password})


def assert_locked_out(response, *, seconds=15 * 60):
    assert response.status_code == 429, response.status_code
    assert response["Retry-After"] == str(seconds)
    page = response.content.decode()
    assert "Too many failed log-ins" in page
    assert "15 minutes" in page


# --- Login lockout ------------------------------------------------------------------------------
def test_account_is_locked_after_n_failures_and_released_after_the_cool_off(lockout, marketer):
    for _ in range(2):
        assert log_in("marketer", "wrong").status_code == 200  # the form again, with its error
    # The third failure locks the account: even the right password is refused, with the
    # wait and what to do.
    assert_locked_out(log_in("marketer", "wrong"))
    assert_locked_out(log_in("marketer", PASSWORD))
    assert_locked_out(log_in("marketer", "wrong"))

    with time_machine.travel(timezone.now() + timedelta(minutes=14), tick=False):
        assert_locked_out(log_in("marketer", PASSWORD))
    # Each attempt during the lockout started the cool-off again: 15 minutes after the last.
    with time_machine.travel(timezone.now() + timedelta(minutes=14 + 16), tick=False):
        response = log_in("marketer", PASSWORD)
    assert response.status_code == 302
    assert response["Location"] == "/"


def test_an_account_is_locked_whatever_the_address(lockout, marketer):
    for n in range(3):
        log_in("marketer", "wrong", address=f"198.51.100.{n}")
    assert_locked_out(log_in("marketer", PASSWORD, address="192.0.2.99"))


def test_an_address_is_locked_whatever_the_account(lockout, marketer, rep):
    for n in range(3):
        log_in(f"guess{n}", "wrong", address="203.0.113.50")
    assert_locked_out(log_in("rep", PASSWORD, address="203.0.113.50"))
    # Another address, the same account: the account itself is not locked.
    assert log_in("rep", PASSWORD, address="203.0.113.51").status_code == 302


def test_a_success_before_the_limit_starts_the_count_again(lockout, marketer):
    log_in("marketer", "wrong")
    log_in("marketer", "wrong")
    assert log_in("marketer", PASSWORD).status_code == 302
    log_in("marketer", "wrong")
    log_in("marketer", "wrong")
    assert log_in("marketer", PASSWORD).status_code == 302


def test_admin_login_has_the_same_lockout(lockout, db):
    UserFactory.create(username="boss", is_staff=True, is_superuser=True)
    url = "/admin/login/"
    for _ in range(2):
        assert log_in("boss", "wrong", url=url).status_code == 200
    assert_locked_out(log_in("boss", "wrong", url=url))
    assert_locked_out(log_in("boss", PASSWORD, url=url))
    # The lockout is the account's, wherever it logs in.
    assert_locked_out(log_in("boss", PASSWORD, address="192.0.2.1"))


def test_forwarded_for_is_ignored_unless_proxies_are_trusted(lockout, marketer):
    for n in range(3):
        Client(REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_FOR=f"10.0.0.{n}").post(
            "/login/", {"username": f"guess{n}", "password": "wrong"}
        )
    # A client cannot pick a fresh address per request by writing the header.
    response = Client(REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_FOR="10.0.0.99").post(
        "/login/", {"username": "marketer", "password": PASSWORD}
    )
    assert response.status_code == 429


def test_behind_a_trusted_proxy_the_forwarded_address_is_the_clients(lockout, marketer):
    lockout.TRUSTED_PROXY_COUNT = 1
    proxy = "10.1.1.1"
    for n in range(3):
        Client(REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR="203.0.113.60").post(
            "/login/", {"username": f"guess{n}", "password": "wrong"}
        )
    locked = Client(REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR="203.0.113.60")
    assert locked.post("/login/", {"username": "marketer", "password": PASSWORD}).status_code == 429
    # Another client behind the same proxy is not locked out.
    other = Client(REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR="203.0.113.61")
    assert other.post("/login/", {"username": "marketer", "password": PASSWORD}).status_code == 302


# --- Failed API authentications -----------------------------------------------------------------
@pytest.fixture
def token_secret(rep):
    _token, secret = services.api_token_create(user=rep, name="laptop")
    return secret


def bearer(secret, address="203.0.113.7"):
    client = APIClient(REMOTE_ADDR=address)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def test_failed_token_authentications_are_throttled_per_address(settings, token_secret):
    settings.API_AUTH_FAILURE_LIMIT = 5
    settings.API_AUTH_FAILURE_WINDOW_SECONDS = 300
    wrong = token_secret[:-4] + "xxxx"
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        for _ in range(5):
            assert bearer(wrong).get("/api/v1/handoffs").status_code == 401
        response = bearer(wrong).get("/api/v1/handoffs")
        assert response.status_code == 429
        wait = int(response["Retry-After"])
        assert 1 <= wait <= 300
        assert response.json()["detail"] == (
            "Too many failed authentications from your address: wait, then retry with a valid key or token "
            f"(check it is not revoked or expired). Expected available in {wait} seconds."
        )
        # Even the right token, or a guesser would learn when they hit.
        assert bearer(token_secret).get("/api/v1/handoffs").status_code == 429
        assert bearer("lfi_notakey").post("/api/v1/events", {}, format="json").status_code == 429
        # Another address is not affected.
        assert bearer(token_secret, address="198.51.100.1").get("/api/v1/handoffs").status_code == 200
    with time_machine.travel(start + timedelta(seconds=301), tick=False):
        assert bearer(token_secret).get("/api/v1/handoffs").status_code == 200


def test_valid_tokens_are_never_counted_as_failures(settings, token_secret):
    settings.API_AUTH_FAILURE_LIMIT = 2
    for _ in range(10):
        assert bearer(token_secret).get("/api/v1/handoffs").status_code == 200


# --- The ingest key's quota ---------------------------------------------------------------------
def ingest(secret, n):
    body = json.dumps({"event_id": f"evt-{n}", "type": "page_view", "lead": {"email": "ada@example.com"}})
    return bearer(secret).post("/api/v1/events", data=body, content_type="application/json")


def test_each_ingest_key_has_a_quota(settings, ingest_secret):
    settings.INGEST_RATE_LIMIT = 3
    settings.INGEST_RATE_WINDOW_SECONDS = 60
    _key, other_secret = services.ingest_key_create(source=SourceFactory.create(slug="crm"))
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        for n in range(3):
            assert ingest(ingest_secret, n).status_code == 202
        response = ingest(ingest_secret, 3)
        assert response.status_code == 429
        assert 1 <= int(response["Retry-After"]) <= 60
        assert "throttled" in response.json()["detail"]
        # Another key has its own quota; people's requests are not counted.
        assert ingest(other_secret, 100).status_code == 202
    with time_machine.travel(start + timedelta(seconds=61), tick=False):
        assert ingest(ingest_secret, 4).status_code == 202


def test_default_quota_is_far_above_a_full_speed_ingest(settings):
    # bench/ingest.py posts batches of 1000 events: about 20 requests a second at 19k events/s.
    assert settings.INGEST_RATE_LIMIT / settings.INGEST_RATE_WINDOW_SECONDS >= 500


def test_throttles_let_requests_through_when_the_cache_is_down(settings, ingest_secret, caplog):
    # Nothing listens on port 1: every cache call fails at once, as with Redis down.
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"socket_connect_timeout": 0.2, "socket_timeout": 0.2},
        }
    }
    settings.INGEST_RATE_LIMIT = 1
    settings.API_AUTH_FAILURE_LIMIT = 1
    # Ingest goes on, as it does when the broker is down.
    assert ingest(ingest_secret, 1).status_code == 202
    assert ingest(ingest_secret, 2).status_code == 202
    assert bearer("lfi_notakey").post("/api/v1/events", {}, format="json").status_code == 401
    assert bearer("lfi_notakey").post("/api/v1/events", {}, format="json").status_code == 401
    assert "the cache is unavailable" in caplog.text
