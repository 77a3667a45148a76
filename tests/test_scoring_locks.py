"""Incremental scoring holds no lead lock while it computes (scoring/services.py
``leads_score``): ingest never waits for a scoring chunk, a lead an ingest holds is left
flagged for the next pass, a stale score never overwrites a newer one, and a lead moves
stage once however many scorings race. Each test pauses one session on a lock another
session holds (a second connection), and fails fast on ``lock_timeout`` instead of
timing anything."""

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg2
import pytest
from django.db import connection, transaction

from handoff.models import Handoff
from leadflow.leads.models import Event, Lead, Stage, StageChange
from leadflow.leads.services import events_ingest
from scoring import bulk, selectors, services
from scoring.models import RescoreRun, Score, ScoringClaim
from tests.factories import EventFactory, LeadFactory, default_model
from tests.helpers import behaviour, lead_score, score_row

pytestmark = pytest.mark.postgres
# The tests that pause a second session need committed rows; the others run in a rolled-back transaction.
two_sessions = pytest.mark.django_db(transaction=True)

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@contextmanager
def other_session() -> Iterator[Any]:
    """A second connection to the test database, in a transaction of its own (a request
    or a worker elsewhere); rolled back and closed at the end."""
    db = connection.settings_dict
    other = psycopg2.connect(
        dbname=db["NAME"], user=db["USER"], host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432
    )
    try:
        yield other.cursor()
    finally:
        other.rollback()
        other.close()


@contextmanager
def in_thread(work: Callable[[], Any]) -> Iterator[dict[str, Any]]:
    """Run ``work`` in a thread (its own database connection); the block runs meanwhile,
    then the thread is joined and its result (or exception) is in the dict."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = work()
        except BaseException as error:  # reported to the test
            outcome["error"] = error
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    try:
        yield outcome
    finally:
        thread.join(timeout=30)
    assert not thread.is_alive(), "the thread never finished"
    if "error" in outcome:
        raise outcome["error"]


def wait_until_sessions_wait_for_a_lock(count: int = 1) -> None:
    """Wait (up to 20 s: a wait, not a measure) until ``count`` sessions of this database
    wait for a lock, i.e. the paused session reached its pause."""
    deadline = time.monotonic() + 20
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0] >= count:
                return
            time.sleep(0.02)
    raise AssertionError(f"{count} session(s) never reached the lock they should wait for")


@contextmanager
def lock_timeout(milliseconds: int) -> Iterator[None]:
    """This session gives up on a lock after ``milliseconds`` (instead of waiting)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SET lock_timeout = {int(milliseconds)}")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET lock_timeout")


def page_view(n: int, email: str, minutes_ago: int = 5) -> dict[str, Any]:
    return {
        "event_id": f"locks-{n}",
        "type": "page_view",
        "occurred_at": (datetime.now(UTC) - timedelta(minutes=minutes_ago)).isoformat(),
        "lead": {"email": email},
    }


@pytest.fixture
def rules(publish_ruleset):
    return publish_ruleset([behaviour("page_view", 10), behaviour("demo_request", 50)], mql=30, sql=60)


@two_sessions
def test_ingest_never_waits_for_a_scoring_chunk(rules, source):
    """A scoring chunk paused in the middle of its transaction (its account roll-up waits
    for a lock another session holds) keeps no lock that ingest of the same lead needs;
    the lead is flagged again and the next pass scores the new event."""
    events_ingest(source=source, payloads=[page_view(1, "ada@lovelace.test")], schedule_scoring=False)
    lead = Lead.objects.get()
    assert lead.account_id is not None and lead.needs_rescore

    with other_session() as other:
        other.execute("SELECT 1 FROM leads_account WHERE id = %s FOR UPDATE", [lead.account_id])
        with in_thread(lambda: services.leads_score(lead_ids=[lead.pk], flagged_only=True)) as scoring:
            wait_until_sessions_wait_for_a_lock()
            with lock_timeout(2000):  # with the lead locked by the chunk, this raises LockNotAvailable
                result = events_ingest(
                    source=source, payloads=[page_view(2, "ada@lovelace.test")], schedule_scoring=False
                )
            assert result.accepted == 1
            other.connection.rollback()  # the chunk's roll-up goes on
    assert scoring["result"].scored == 1

    lead.refresh_from_db()
    assert lead.needs_rescore, "the event that came in while the chunk computed flags the lead again"
    assert lead_score(lead) == 10, "the chunk scored what was committed before it took the lead"
    assert services.leads_score_flagged() == 1
    assert lead_score(lead) == 20
    assert not ScoringClaim.objects.exists()


@two_sessions
def test_a_lead_an_ingest_holds_is_skipped_and_the_next_pass_scores_it(rules, source):
    events_ingest(
        source=source,
        payloads=[page_view(1, "held@acme.test"), page_view(2, "free@acme.test")],
        schedule_scoring=False,
    )
    held, free = Lead.objects.get(email="held@acme.test"), Lead.objects.get(email="free@acme.test")

    with other_session() as ingest_elsewhere:
        # What an ingest of the lead holds until it commits (leads_apply).
        ingest_elsewhere.execute("SELECT 1 FROM leads_lead WHERE id = %s FOR NO KEY UPDATE", [held.pk])
        with lock_timeout(2000):  # the pass skips the held lead rather than wait for it
            assert services.leads_score_flagged() == 1
        held.refresh_from_db()
        assert held.needs_rescore and not Score.objects.filter(lead=held).exists()
        assert lead_score(free) == 10

    assert services.leads_score_flagged() == 1
    held.refresh_from_db()
    assert not held.needs_rescore and lead_score(held) == 10


@pytest.mark.django_db
def test_a_lead_whose_flag_another_scoring_cleared_is_left_to_it(rules, source):
    """The fast lane and a pass may both be asked for a lead: the one that did not clear
    its flag leaves it alone (the other's compute sees everything committed before)."""
    events_ingest(source=source, payloads=[page_view(1, "once@acme.test")], schedule_scoring=False)
    lead = Lead.objects.get()
    assert services.leads_score_intent(lead_ids=[lead.pk]) == 1
    assert services.leads_score_intent(lead_ids=[lead.pk]) == 0
    assert services.leads_score(lead_ids=[lead.pk]).scored == 1, "an explicit scoring scores it all the same"


@pytest.mark.django_db
def test_a_stale_scoring_cannot_overwrite_a_newer_score(publish_ruleset):
    publish_ruleset([behaviour("page_view", 40)], mql=500, sql=600, half_life=10)
    lead = LeadFactory.create()
    EventFactory.create(lead=lead, occurred_at=NOW - timedelta(days=1))
    services.leads_score(lead_ids=[lead.pk], as_of=NOW)
    newer = score_row(lead)

    services.leads_score(lead_ids=[lead.pk], as_of=NOW - timedelta(days=5))  # took the lead earlier, writes later

    stored = score_row(lead)
    assert (stored.computed_at, stored.score) == (NOW, newer.score)


@pytest.mark.django_db
def test_a_score_under_a_ruleset_no_longer_published_never_overwrites_the_publish(
    publish_ruleset, source, django_capture_on_commit_callbacks
):
    """A scoring that read the published rulesets just before a publish writes after the
    publish's rescore: the rescore's version stays."""
    publish_ruleset([behaviour("page_view", 10)], mql=500, sql=600)
    old_spec = selectors.published_specs()[0]
    events_ingest(source=source, payloads=[page_view(1, "v@acme.test")], schedule_scoring=False)
    lead = Lead.objects.get()
    took_the_lead_at = datetime.now(UTC)

    with django_capture_on_commit_callbacks(execute=True):  # the publish's full rescore runs
        publish_ruleset([behaviour("page_view", 25)], mql=500, sql=600)
    run = RescoreRun.objects.get(ruleset__version__gt=old_spec.version)
    assert run.state == "done"
    with transaction.atomic():
        assert bulk.scores_upsert(old_spec, [lead.pk], took_the_lead_at) == []
        services.leads_score(lead_ids=[lead.pk], as_of=took_the_lead_at)  # the current rules, an older moment

    stored = score_row(lead)
    assert (stored.ruleset_version, stored.score, stored.computed_at) == (run.ruleset.version, 25, run.as_of)


@two_sessions
def test_an_erased_person_gets_no_score_back_from_a_scoring_that_computed_before(rules, source):
    """The erasure waits for the scoring's key-share lock, or the scoring sees the erasure."""
    from leadflow.leads.privacy import person_erase

    events_ingest(source=source, payloads=[page_view(1, "gone@lovelace.test")], schedule_scoring=False)
    lead = Lead.objects.get()
    with other_session() as other:
        other.execute("SELECT 1 FROM leads_account WHERE id = %s FOR UPDATE", [lead.account_id])
        with in_thread(lambda: services.leads_score(lead_ids=[lead.pk])):
            wait_until_sessions_wait_for_a_lock()  # the scores are written, the roll-up waits
            with in_thread(lambda: person_erase(lead=lead, actor=None)):
                wait_until_sessions_wait_for_a_lock(2)  # the erasure waits for the scoring
                other.connection.rollback()
    assert not Score.objects.filter(lead=lead).exists()
    assert Lead.objects.get().erased_at is not None


@two_sessions
def test_two_scorings_racing_move_a_lead_once_with_one_handoff(rules):
    """Both compute the same qualifying scores without locks; the lead they would move is
    held (an ingest of it), so both wait to lock it; the second re-reads its stage under
    the lock and moves nothing."""
    lead = LeadFactory.create(email="race@gmail.com")
    EventFactory.create(lead=lead, type="page_view", occurred_at=NOW)
    EventFactory.create(lead=lead, type="demo_request", occurred_at=datetime.now(UTC) - timedelta(hours=1))
    assert lead.account_id is None  # no roll-up lock to serialise the two before the transitions

    with other_session() as ingest_elsewhere:
        ingest_elsewhere.execute("SELECT 1 FROM leads_lead WHERE id = %s FOR NO KEY UPDATE", [lead.pk])
        with (
            in_thread(lambda: services.leads_score(lead_ids=[lead.pk])),
            in_thread(lambda: services.leads_score(lead_ids=[lead.pk])),
        ):
            wait_until_sessions_wait_for_a_lock(2)
            ingest_elsewhere.connection.rollback()

    lead.refresh_from_db()
    assert lead.stage == Stage.SQL
    trail = list(StageChange.objects.filter(lead=lead).order_by("id").values_list("from_stage", "to_stage"))
    assert trail == [("new", "mql"), ("mql", "sql")]
    assert Handoff.objects.filter(lead=lead).count() == 1


@two_sessions
def test_a_new_lead_a_pass_took_before_its_events_committed_is_flagged_again(rules, source):
    """Ingest commits a new lead (flagged) before its events; a pass that takes it in
    between finds no events, so the events' transaction flags it again."""
    with other_session() as other:
        # Another request is storing the same event_id: ingest's insert waits for it.
        other_lead = LeadFactory.create(source=source)
        other.execute(
            "INSERT INTO leads_event (lead_id, source_id, event_id, type, properties, occurred_at, received_at,"
            " fingerprint) VALUES (%s, %s, 'locks-1', 'page_view', '{}', now(), now(), 'x')",
            [other_lead.pk, source.pk],
        )
        with in_thread(
            lambda: events_ingest(source=source, payloads=[page_view(1, "new@acme.test")], schedule_scoring=False)
        ):
            wait_until_sessions_wait_for_a_lock()
            new = Lead.objects.get(email="new@acme.test")
            assert services.leads_score(lead_ids=[new.pk], flagged_only=True).scored == 1
            assert lead_score(new) == 0
            other.connection.rollback()  # that request failed: this one stores the event

    new.refresh_from_db()
    assert Event.objects.filter(lead=new).count() == 1
    assert new.needs_rescore
    services.leads_score_flagged()
    assert lead_score(new) == 10


@two_sessions
def test_a_scoring_that_fails_after_taking_its_leads_flags_them_again(rules, source):
    events_ingest(source=source, payloads=[page_view(1, "fails@lovelace.test")], schedule_scoring=False)
    lead = Lead.objects.get()
    with other_session() as other:
        other.execute("SELECT 1 FROM leads_account WHERE id = %s FOR UPDATE", [lead.account_id])
        with lock_timeout(100), pytest.raises(Exception, match="lock timeout"):
            services.leads_score_flagged()
    lead.refresh_from_db()
    assert lead.needs_rescore and not ScoringClaim.objects.exists()
    assert services.leads_score_flagged() == 1


@pytest.mark.django_db
def test_the_sweep_flags_again_the_leads_of_a_scoring_that_died(rules, source):
    events_ingest(source=source, payloads=[page_view(1, "died@acme.test")], schedule_scoring=False)
    lead = Lead.objects.get()
    services._leads_take([lead.pk])  # a worker that died right after taking its leads
    lead.refresh_from_db()
    assert not lead.needs_rescore

    assert services.leads_sweep_dirty(older_than_seconds=3600) == 0, "a recent claim may be a live worker's"
    assert services.leads_sweep_dirty(older_than_seconds=0) == 1

    lead.refresh_from_db()
    assert not lead.needs_rescore and lead_score(lead) == Decimal(10)
    assert not ScoringClaim.objects.exists()
    assert Score.objects.get(lead=lead).model == default_model()
