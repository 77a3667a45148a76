"""The dashboard's rollups: whatever the services do to leads and handoffs, the rollups
(the core's and handoff's sales outcomes) equal a recount from the base tables, the
rebuild produces the same rows, and the dashboard reads the same numbers from them as
from the base tables."""

from collections import Counter
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handoff import rollups as handoff_rollups
from handoff import services as handoff_services
from handoff.models import Handoff, HandoffDurationRollup, HandoffRollup, HandoffStatus, RejectReason
from handoff.selectors import handoff_stats
from handoff.services import handoff_accept, handoff_claim, handoff_reject
from leadflow import selectors
from leadflow.leads import rollups
from leadflow.leads.lifecycle import lead_stage_change
from leadflow.leads.models import Event, FunnelRollup, Lead, Source, Stage, StageChange
from leadflow.leads.roles import MARKETING, SALES
from leadflow.leads.rollups import rollups_compact, rollups_current, rollups_rebuild, rollups_recount
from leadflow.leads.services import events_ingest, lead_update, leads_delete
from scoring import services as scoring_services
from scoring.models import RuleSet, RuleSetStatus, ScoringModel
from scoring.services import leads_score
from tests.factories import UserFactory, default_model, ruleset_through_services
from tests.helpers import behaviour

LEADS = 6
CAMPAIGNS = ("", "spring", "fall")

ingest = st.tuples(
    st.just("ingest"),
    st.integers(0, LEADS - 1),
    st.sampled_from(["page_view", "pricing_view", "demo_request"]),
    st.sampled_from([*CAMPAIGNS, None]),  # None: the event carries no campaign
    st.integers(0, 1),  # source
)
operations = st.lists(
    st.one_of(
        ingest,
        st.just(("score",)),
        st.tuples(st.just("rescore"), st.integers(0, 1)),
        st.tuples(st.just("by_hand"), st.integers(0, LEADS - 1), st.sampled_from(Stage.values)),
        st.tuples(st.just("campaign"), st.integers(0, LEADS - 1), st.sampled_from(CAMPAIGNS)),
        st.tuples(st.just("decide"), st.sampled_from(["accept", "not_a_fit", "bad_timing"])),
        st.tuples(st.just("claim"), st.booleans()),
        st.sampled_from([("release",), ("reassign",), ("lapse",), ("sweep",)]),
    ),
    min_size=1,
    max_size=25,
)


@pytest.fixture
def scene(db):
    """Two scoring models that qualify on different events, two sources, a rep and a marketer."""
    default = default_model()
    addon = scoring_services.scoring_model_create(name="Add-on", slug="addon")
    ruleset_through_services([behaviour("page_view", 10), behaviour("demo_request", 40)], mql=20, sql=50, model=default)
    ruleset_through_services(
        [behaviour("pricing_view", 25), behaviour("demo_request", 30)], mql=25, sql=50, model=addon
    )
    return {
        "models": [default, addon],
        "sources": [Source.objects.create(name="Web", slug="web"), Source.objects.create(name="Ads", slug="ads")],
        "rep": UserFactory.create(username="rep", roles=[SALES]),
        "marketer": UserFactory.create(username="marketer", roles=[MARKETING]),
        "manager": UserFactory.create(username="manager", roles=[SALES], is_staff=True),
        "events": [0],
    }


def _lead(index: int) -> Lead | None:
    return Lead.objects.filter(email=f"lead{index}@example.com").first()


def run(scene, operation) -> None:
    kind, *args = operation
    if kind == "ingest":
        index, event_type, campaign, source = args
        scene["events"][0] += 1
        person = {"email": f"lead{index}@example.com"}
        if campaign is not None:
            person["utm_campaign"] = campaign
        payload = {
            "event_id": f"e{scene['events'][0]}",
            "type": event_type,
            "occurred_at": (timezone.now() - timedelta(minutes=5)).isoformat(),
            "lead": person,
        }
        events_ingest(source=scene["sources"][source], payloads=[payload], schedule_scoring=False)
    elif kind == "score":
        dirty = list(Lead.objects.filter(needs_rescore=True).values_list("id", flat=True))
        if dirty:
            leads_score(lead_ids=dirty)
    elif kind == "rescore":
        model = scene["models"][args[0]]
        ruleset = RuleSet.objects.get(model=model, status=RuleSetStatus.PUBLISHED)
        run_ = scoring_services.rescore_run_create(ruleset=ruleset, reason="test")
        scoring_services.rescore_run_execute(run=run_)
    elif kind == "by_hand":
        index, stage = args
        lead = _lead(index)
        if lead is not None and lead.stage != stage:
            lead_stage_change(lead=lead, to_stage=stage, actor=scene["marketer"], reason="by hand")
    elif kind == "campaign":
        index, campaign = args
        lead = _lead(index)
        if lead is not None:
            lead_update(lead=lead, changes={"utm_campaign": campaign})
    elif kind == "decide":
        handoff = _held(scene) or Handoff.objects.filter(status=HandoffStatus.QUEUED).order_by("id").first()
        if handoff is None:
            return
        if handoff.status == HandoffStatus.QUEUED:
            handoff = handoff_claim(handoff=handoff, user=scene["rep"])
        if args[0] == "accept":
            handoff_accept(handoff=handoff, user=scene["rep"])
        else:
            handoff_reject(handoff=handoff, user=scene["rep"], reason=RejectReason(args[0]), note="")
    elif kind == "claim":
        queued = Handoff.objects.filter(status=HandoffStatus.QUEUED).order_by("-id").first()
        if args[0]:
            handoff_services.handoff_claim_next(user=scene["rep"])
        elif queued is not None:
            handoff_claim(handoff=queued, user=scene["rep"])
    elif kind == "release":
        if (held := _held(scene)) is not None:
            handoff_services.handoff_release(handoff=held, user=scene["rep"])
    elif kind == "reassign":
        handoff = Handoff.objects.filter(status=HandoffStatus.QUEUED).order_by("id").first()
        if handoff is not None:
            handoff_services.handoff_reassign(handoff=handoff, actor=scene["manager"], to_user=scene["rep"])
    elif kind == "lapse":
        # The SLA runs out (behind the services' back: an open handoff's due time is not
        # counted until a breach is flagged or it is decided late).
        Handoff.objects.filter(status__in=[HandoffStatus.QUEUED, HandoffStatus.CLAIMED]).update(
            due_at=timezone.now() - timedelta(minutes=1)
        )
    elif kind == "sweep":
        Handoff.objects.filter(status=HandoffStatus.CLAIMED).update(claim_expires_at=timezone.now())
        handoff_services.handoffs_flag_overdue()
        handoff_services.handoffs_expire_claims()


def _held(scene) -> Handoff | None:
    return Handoff.objects.filter(status=HandoffStatus.CLAIMED, claimed_by=scene["rep"]).order_by("id").first()


def everything_current() -> Counter:
    return rollups_current() + handoff_rollups.handoff_rollups_current()


def everything_recounted() -> Counter:
    return rollups_recount() + handoff_rollups.handoff_rollups_recount()


def _clean_slate() -> None:
    Handoff.objects.all().delete()
    StageChange.objects.all().delete()
    Event.objects.all().delete()
    Lead.objects.all().delete()
    rollups_rebuild()


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=operations)
def test_rollups_equal_a_recount_after_any_sequence_of_ingest_scoring_stage_changes_claims_and_decisions(scene, steps):
    _clean_slate()
    for step in steps:
        run(scene, step)

    recount = everything_recounted()
    assert everything_current() == recount
    rollups_compact()
    assert everything_current() == recount
    rollups_rebuild()
    assert everything_current() == recount


SCENARIO = [
    ("ingest", 0, "page_view", "spring", 0),
    ("ingest", 0, "page_view", "spring", 0),
    ("ingest", 1, "demo_request", "", 1),
    ("ingest", 2, "pricing_view", "fall", 0),
    ("ingest", 3, "page_view", None, 1),
    ("score",),
    ("ingest", 1, "page_view", "spring", 1),
    ("ingest", 3, "demo_request", "fall", 1),
    ("ingest", 4, "demo_request", "fall", 0),
    ("ingest", 4, "pricing_view", "fall", 0),
    ("rescore", 0),
    ("rescore", 1),
    ("decide", "accept"),
    ("decide", "bad_timing"),
    ("by_hand", 2, Stage.SQL),
    ("campaign", 0, "fall"),
    ("decide", "not_a_fit"),
    ("claim", True),
    ("lapse",),
    ("sweep",),
    ("ingest", 5, "page_view", "", 0),
    ("ingest", 5, "demo_request", "spring", 1),
    ("score",),
    ("lapse",),
]


def _scenario(scene) -> None:
    _clean_slate()
    for step in SCENARIO:
        run(scene, step)
    # Spread the history over days, behind the services' back, and recount: the rollups'
    # days must be the base tables' days.
    for lead in Lead.objects.order_by("id"):
        shift = timedelta(days=lead.pk % 4, hours=lead.pk % 3)
        Lead.objects.filter(pk=lead.pk).update(
            created_at=lead.created_at - shift - timedelta(hours=6),
            mql_at=lead.mql_at and lead.mql_at - shift,
            sql_at=lead.sql_at and lead.sql_at - shift + timedelta(hours=1),
        )
        for change in StageChange.objects.filter(lead=lead):
            StageChange.objects.filter(pk=change.pk).update(at=change.at - shift)
        for handoff in Handoff.objects.filter(lead=lead):  # claimed and decided hours after it opened
            Handoff.objects.filter(pk=handoff.pk).update(
                created_at=handoff.created_at - shift - timedelta(hours=3, minutes=lead.pk),
                due_at=handoff.due_at - shift - timedelta(hours=3),
            )
    rollups_rebuild()


def test_the_dashboard_reads_the_same_numbers_from_the_rollups_as_from_the_base_tables(scene):
    _scenario(scene)
    assert Lead.objects.filter(stage=Stage.ACCEPTED).exists() and Lead.objects.filter(stage=Stage.SQL).exists()
    assert FunnelRollup.objects.filter(model="addon", mql__gt=0).exists()
    assert HandoffRollup.objects.filter(accepted__gt=0).exists() and HandoffRollup.objects.filter(breached__gt=0)
    assert Handoff.objects.filter(status=HandoffStatus.QUEUED).exists()  # open, past due: a breach counted live
    run(scene, ("ingest", 1, "page_view", "fall", 1))  # and a change after the rebuild, recorded
    run(scene, ("score",))
    rollups.score_histograms_refresh()
    periods = [selectors.Period.last_days(n) for n in (1, 2, 7, 30)]
    for period in periods:
        for source in [None, *scene["sources"]]:
            for model in [None, *ScoringModel.objects.all()]:
                rolled = selectors.dashboard_numbers(period=period, source=source, model=model)
                counted = selectors.dashboard_numbers(period=period, source=source, model=model, recount=True)
                assert rolled.funnel == counted.funnel
                assert rolled.per_day == counted.per_day
                assert rolled.model_funnel == counted.model_funnel
                assert rolled.by_source == counted.by_source
                assert rolled.by_campaign == counted.by_campaign
                if model is not None:
                    assert selectors.dashboard_grade_matrix(
                        model=model, source=source
                    ) == selectors.dashboard_grade_matrix_recount(model=model, source=source)
                assert (rolled.histogram.lows, rolled.histogram.counts) == (
                    counted.histogram.lows,
                    counted.histogram.counts,
                )
            outcomes = selectors.dashboard_sales_outcomes(period=period, source=source).stats
            stats = handoff_stats(since=period.start, until=period.end, source=source)
            assert (outcomes.total, outcomes.accepted, outcomes.rejected, outcomes.closed, outcomes.open) == (
                stats.total,
                stats.accepted,
                stats.rejected,
                stats.closed,
                stats.queued + stats.claimed,
            )
            assert (outcomes.sla_breaches, outcomes.rejected_by_reason) == (
                stats.sla_breaches,
                stats.rejected_by_reason,
            )
            for rolled_median, seconds in [
                (outcomes.median_to_claim, stats.median_seconds_to_claim),
                (outcomes.median_to_decision, stats.median_seconds_to_decision),
            ]:
                assert (rolled_median is None) == (seconds is None)
                if rolled_median is not None and seconds is not None and seconds >= 1:
                    assert abs(rolled_median / timedelta(seconds=seconds) - 1) <= rollups.DURATION_PRECISION
            for model in [None, *ScoringModel.objects.all()]:
                rolled = selectors.dashboard_numbers(period=period, source=source, model=model)
                counted = selectors.dashboard_numbers(period=period, source=source, model=model, recount=True)
                for rolled_median, exact in [
                    (rolled.medians.to_mql, counted.medians.to_mql),
                    (rolled.medians.mql_to_sql, counted.medians.mql_to_sql),
                ]:
                    assert (rolled_median is None) == (exact is None)
                    if exact is not None and rolled_median is not None and exact >= timedelta(seconds=1):
                        assert abs(rolled_median / exact - 1) <= rollups.DURATION_PRECISION


def test_the_rebuild_command_produces_the_rollups_the_writes_kept(scene):
    _clean_slate()
    for step in SCENARIO:
        run(scene, step)
    kept = everything_current()
    assert kept and kept == everything_recounted()
    assert HandoffDurationRollup.objects.exists()
    FunnelRollup.objects.all().delete()
    HandoffRollup.objects.all().delete()
    assert everything_current() != kept

    call_command("rollups_rebuild", "--chunk", "2")

    assert everything_current() == kept


def test_the_score_histogram_is_a_snapshot_that_says_when_it_was_counted(scene):
    _clean_slate()
    for step in SCENARIO[:6]:
        run(scene, step)
    rollups.score_histograms_refresh()
    before = selectors.dashboard_score_histogram(model=default_model())
    assert before.refreshed_at is not None and sum(before.counts) == Lead.objects.count()
    run(scene, ("ingest", 5, "page_view", "", 0))
    assert selectors.dashboard_score_histogram(model=default_model()) == before  # not counted again yet
    rollups.score_histograms_refresh()
    assert sum(selectors.dashboard_score_histogram(model=default_model()).counts) == Lead.objects.count()


def test_a_duration_bucket_reads_back_within_the_documented_precision():
    for seconds in [1, 1.5, 59, 3600, 86400 * 3.3, 86400 * 400]:
        duration = timedelta(seconds=seconds)
        back = rollups.bucket_duration(rollups.duration_bucket(duration))
        assert abs(back / duration - 1) <= rollups.DURATION_PRECISION
    assert rollups.bucket_duration(rollups.duration_bucket(timedelta(milliseconds=400))) == timedelta(0)


def test_compaction_leaves_one_row_per_key_and_the_same_sums(scene):
    _clean_slate()
    for step in SCENARIO:
        run(scene, step)
    kept = everything_current()
    rows_before = FunnelRollup.objects.count()
    removed = rollups_compact()
    assert removed > 0 and FunnelRollup.objects.count() < rows_before
    keys = Counter(FunnelRollup.objects.values_list("day", "source_id", "campaign", "model"))
    assert max(keys.values()) == 1
    assert everything_current() == kept


def test_a_campaign_change_moves_the_handoffs_counts_and_deleting_leads_takes_them_out(scene):
    _clean_slate()
    for step in SCENARIO:
        run(scene, step)
    lead = Handoff.objects.order_by("id").first().lead
    lead_update(lead=lead, changes={"utm_campaign": "summer"})
    assert HandoffRollup.objects.filter(campaign="summer").exists()
    assert everything_current() == everything_recounted()
    doomed = list(Lead.objects.filter(stage__in=[Stage.SQL, Stage.ACCEPTED]).values_list("id", flat=True))
    assert doomed

    assert Handoff.objects.filter(lead_id__in=doomed).exists()

    assert leads_delete(lead_ids=doomed) == len(doomed)

    assert everything_current() == everything_recounted()


def test_a_claim_through_the_orm_records_its_first_claim_as_the_statement_does(scene):
    """The claim's ORM twin (databases without the one-statement claim) keeps the rollups too."""
    _clean_slate()
    for step in SCENARIO[:13]:
        run(scene, step)
    queued = Handoff.objects.filter(status=HandoffStatus.QUEUED, first_claimed_at__isnull=True).first()
    assert queued is not None
    with transaction.atomic():
        _open, claimed = handoff_services._claim_orm(user=scene["rep"], handoff_id=queued.pk, now=timezone.now())
    assert claimed is not None and claimed.first_claimed_at is not None

    assert everything_current() == everything_recounted()


@pytest.mark.postgres  # the bucket's SQL is PostgreSQL's (the full rescore's statements)
def test_the_duration_bucket_is_the_same_in_sql_as_in_python(db):
    durations = [0, 0.4, 1, 1.5, 2, 59.999999, 60, 3600, 4096, 86400 * 3.3, 2**22, 86400 * 400 + 0.123456]
    with connection.cursor() as cursor:
        for seconds in durations:
            cursor.execute(
                f"SELECT {rollups.duration_bucket_sql('v.s')} FROM (SELECT %s::numeric AS s) v",  # noqa: S608 -- no input
                [str(seconds)],
            )
            assert cursor.fetchone()[0] == rollups.duration_bucket(timedelta(seconds=seconds)), seconds


def test_a_full_rescore_counts_leads_moving_for_the_first_time_as_a_recount_does(scene):
    """The set-based path of a first publish (``rollups.first_moves_sql``): leads with
    stages and dates but no stage log (as an import leaves them), moved by a full rescore."""
    _clean_slate()
    now = timezone.now()
    states = [  # (stage, days before now of mql_at, sql_at, recycled_at), events
        (("new", None, None, None), ["page_view", "page_view"]),
        (("new", None, None, None), ["demo_request", "page_view"]),
        (("recycled", 20, 12, 2), ["demo_request", "page_view"]),
        (("recycled", None, None, 2), ["page_view", "page_view"]),
        (("mql", 5, None, None), ["demo_request", "page_view"]),
        (("mql", 5, None, None), ["page_view"]),
    ]
    for index, (_state, events) in enumerate(states):
        for event in events:
            run(scene, ("ingest", index, event, CAMPAIGNS[index % 3], index % 2))
    for index, ((stage, mql, sql, recycled), _events) in enumerate(states):
        Lead.objects.filter(email=f"lead{index}@example.com").update(
            stage=stage,
            created_at=now - timedelta(days=30, hours=index),
            **{
                name: None if days is None else now - timedelta(days=days, minutes=index)
                for name, days in (("mql_at", mql), ("sql_at", sql), ("recycled_at", recycled))
            },
        )
    rollups_rebuild()  # the leads above were written behind the services' back

    run(scene, ("rescore", 0))

    assert StageChange.objects.filter(lead__stage=Stage.SQL).exists()
    assert StageChange.objects.filter(from_stage=Stage.RECYCLED).exists()
    assert everything_current() == everything_recounted()
