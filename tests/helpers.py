"""Helpers the tests share: rules to build rulesets with, clients, a broker switch,
page probes, the environment of a subprocess, and the leads of the rescore tests.
Fixtures live in conftest.py; everything else a test imports comes from here."""

import os
import re
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import psycopg2
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from handoff.models import Handoff
from leadflow.leads.models import Lead, StageChange
from tests.factories import EventFactory, LeadFactory


def client_for(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


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
    app._pool = None  # type: ignore[attr-defined]  # Celery's private pool, reset for a new broker URL
    app.amqp._producer_pool = None  # type: ignore[attr-defined]


@contextmanager
def real_broker(url=None):
    """Publish tasks to a broker (the test Redis, or ``url``) instead of running them eagerly."""
    from leadflow.celery import app

    old_url = app.conf.broker_url
    old_environ = os.environ.get("CELERY_BROKER_URL")
    app.conf.task_always_eager = False
    if url:
        # Celery's broker_url prefers the environment variable to the configuration.
        os.environ["CELERY_BROKER_URL"] = url
        app.conf.update(broker_url=url)
    _reset_celery_connections()
    try:
        yield app
    finally:
        app.conf.task_always_eager = True
        app.conf.update(broker_url=old_url)
        if old_environ is not None:
            os.environ["CELERY_BROKER_URL"] = old_environ
        _reset_celery_connections()


SCRIPT = "<script>alert(1)</script>"


ESCAPED_SCRIPT = "&lt;script&gt;alert(1)&lt;/script&gt;"


def browser(user=None, **kwargs):
    client = Client(**kwargs)
    if user is not None:
        client.force_login(user)
    return client


def count_queries(client, url):
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200, response.content[:500]
    return len(queries)


# --- Content-Security-Policy -----------------------------------------------------------------
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I)


INLINE_STYLE = re.compile(r"<style\b|\sstyle=", re.I)


INLINE_HANDLER = re.compile(r"<[^>]+\son[a-z]+=", re.I)


# Variables the test environment sets that the embedded default must run without.
CONFIG_VARIABLES = (
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "CELERY_TASK_ALWAYS_EAGER",
    "SECRET_KEY",
    "DEBUG",
    "SECURE_SSL_REDIRECT",
    "ALLOWED_HOSTS",
    "STATICFILES_BACKEND",
    "EMAIL_BACKEND",
)


def clean_env(**extra):
    env = {key: value for key, value in os.environ.items() if key not in CONFIG_VARIABLES}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return {**env, **extra}


CHUNK = 5


def make_leads(count: int) -> list[Lead]:
    """Even leads will reach SQL (page view + demo request = 70), odd ones MQL (page view = 40)."""
    leads = LeadFactory.create_batch(count)
    for index, lead in enumerate(leads):
        EventFactory.create(lead=lead, type="page_view")
        if index % 2 == 0:
            EventFactory.create(lead=lead, type="demo_request")
    return sorted(leads, key=lambda lead: lead.pk)


def assert_qualified_exactly_once(leads: list[Lead], *, skip: int = 0) -> None:
    """Every lead of ``make_leads`` past the first ``skip`` moved once per stage, no more."""
    for index, lead in enumerate(leads):
        if index < skip:
            continue
        lead.refresh_from_db()
        expected = [("new", "mql"), ("mql", "sql")] if index % 2 == 0 else [("new", "mql")]
        trail = list(StageChange.objects.filter(lead=lead).order_by("id").values_list("from_stage", "to_stage"))
        assert trail == expected, f"lead {index}"
        assert lead.stage == expected[-1][1]
    sql_leads = [lead.pk for index, lead in enumerate(leads) if index >= skip and index % 2 == 0]
    assert sorted(Handoff.objects.values_list("lead", flat=True)) == sql_leads


def hold_row_lock(lead_id: int):
    """Another session locks one lead, as a long transaction elsewhere would."""
    db = connection.settings_dict
    other = psycopg2.connect(
        dbname=db["NAME"], user=db["USER"], host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432
    )
    other.cursor().execute("SELECT 1 FROM leads_lead WHERE id = %s FOR UPDATE", [lead_id])
    return other


def score_row(lead: Any, model: Any = None) -> Any:
    """The lead's stored Score under ``model`` (the default model), read afresh."""
    from scoring.models import Score
    from tests.factories import default_model

    return Score.objects.get(lead_id=lead.pk, model=model or default_model())


def lead_score(lead: Any, model: Any = None) -> Decimal:
    """The lead's stored score under ``model`` (the default model); 0 when it was never scored."""
    from scoring.models import Score
    from tests.factories import default_model

    row = Score.objects.filter(lead_id=lead.pk, model=model or default_model()).first()
    return row.score if row else Decimal("0")


def entered_sql(leads: Any, *, score: str = "70", models: tuple[str, ...] = ("default",)) -> list[StageChange]:
    """The StageChanges of ``leads`` entering SQL qualified by ``models`` with ``score``,
    as the lifecycle hands them to the handoff's receiver."""
    return [
        StageChange(
            lead=lead,
            from_stage="mql",
            to_stage="sql",
            qualified_by=list(models),
            ruleset_version=1,
            score=Decimal(score),
        )
        for lead in leads
    ]


@contextmanager
def redis_commands():
    """The commands this process sends to Redis meanwhile, as (round trip, command name)
    pairs: counted in the client library (redis-py's connection), whoever sends them
    (our code, Django's cache, Celery's publisher)."""
    from redis.connection import AbstractConnection

    sent: list[tuple[int, str]] = []
    trips = [0]
    send_packed, send_one, pack_many = (
        AbstractConnection.send_packed_command,
        AbstractConnection.send_command,
        AbstractConnection.pack_commands,
    )

    def send_packed_command(self, command, check_health=True):
        trips[0] += 1
        return send_packed(self, command, check_health)

    def send_command(self, *args, **kwargs):
        sent.append((trips[0] + 1, str(args[0]).upper()))
        return send_one(self, *args, **kwargs)

    def pack_commands(self, commands):
        commands = list(commands)
        sent.extend((trips[0] + 1, str(command[0]).upper()) for command in commands)
        return pack_many(self, commands)

    AbstractConnection.send_packed_command = send_packed_command  # type: ignore[method-assign]
    AbstractConnection.send_command = send_command  # type: ignore[method-assign]
    AbstractConnection.pack_commands = pack_commands  # type: ignore[method-assign]
    try:
        yield sent
    finally:
        AbstractConnection.send_packed_command = send_packed  # type: ignore[method-assign]
        AbstractConnection.send_command = send_one  # type: ignore[method-assign]
        AbstractConnection.pack_commands = pack_many  # type: ignore[method-assign]
