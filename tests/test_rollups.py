"""The dashboard's rollups: whatever the services do to leads, the rollups equal a recount
from the base tables, the rebuild produces the same rows, and the dashboard reads the
same numbers from them as from the base tables."""

from collections import Counter
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handoff.models import Handoff, HandoffStatus, RejectReason
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
        handoff = Handoff.objects.filter(status=HandoffStatus.QUEUED).order_by("id").first()
        if handoff is None:
            return
        handoff = handoff_claim(handoff=handoff, user=scene["rep"])
        if args[0] == "accept":
            handoff_accept(handoff=handoff, user=scene["rep"])
        else:
            handoff_reject(handoff=handoff, user=scene["rep"], reason=RejectReason(args[0]), note="")


def _clean_slate() -> None:
    Handoff.objects.all().delete()
    StageChange.objects.all().delete()
    Event.objects.all().delete()
    Lead.objects.all().delete()
    rollups_rebuild()


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=operations)
def test_rollups_equal_a_recount_after_any_sequence_of_ingest_scoring_stage_changes_claims_and_decisions(scene, steps):
    _clean_slate()
    for step in steps:
        run(scene, step)

    recount = rollups_recount()
    assert rollups_current() == recount
    rollups_compact()
    assert rollups_current() == recount
    rollups_rebuild()
    assert rollups_current() == recount


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
    ("ingest", 5, "page_view", "", 0),
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
    rollups_rebuild()


def test_the_dashboard_reads_the_same_numbers_from_the_rollups_as_from_the_base_tables(scene):
    _scenario(scene)
    assert Lead.objects.filter(stage=Stage.ACCEPTED).exists() and Lead.objects.filter(stage=Stage.SQL).exists()
    assert FunnelRollup.objects.filter(model="addon", mql__gt=0).exists()
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
    kept = rollups_current()
    assert kept and kept == rollups_recount()
    FunnelRollup.objects.all().delete()
    assert rollups_current() != kept

    call_command("rollups_rebuild", "--chunk", "2")

    assert rollups_current() == kept


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
    kept = rollups_current()
    rows_before = FunnelRollup.objects.count()
    removed = rollups_compact()
    assert removed > 0 and FunnelRollup.objects.count() < rows_before
    keys = Counter(FunnelRollup.objects.values_list("day", "source_id", "campaign", "model"))
    assert max(keys.values()) == 1
    assert rollups_current() == kept


def test_deleting_leads_takes_them_out_of_the_rollups(scene):
    _clean_slate()
    for step in SCENARIO:
        run(scene, step)
    doomed = list(Lead.objects.filter(stage__in=[Stage.SQL, Stage.ACCEPTED]).values_list("id", flat=True))
    assert doomed

    assert leads_delete(lead_ids=doomed) == len(doomed)

    assert rollups_current() == rollups_recount()
