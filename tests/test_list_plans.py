"""The lists are built for a million leads: the first page of every order the leads page
and the lead API offer is read from an index (no sort of every matching lead, no
DISTINCT), and a page costs the same few queries whatever its size.

The plans are PostgreSQL's, on a seeded table, with sorts and sequential scans priced
out (``enable_sort``/``enable_seqscan`` off): a plan that still sorts has no index that
serves its order. bench/reads.py measures the same lists at 1M leads."""

import random
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.db.models import F
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from leadflow.leads import selectors
from leadflow.leads.models import Lead, Stage
from scoring.models import Score
from tests.factories import default_model
from tests.helpers import client_for

pytestmark = pytest.mark.postgres

URL = "/api/v1/leads"
SEEDED = 600


@pytest.fixture
def seeded_leads(db):
    """Leads in every stage, most scored by the default model (some above 0, some at or
    below it), some never scored."""
    rng = random.Random(7)
    model = default_model()
    now = timezone.now()
    leads = Lead.objects.bulk_create(
        [
            Lead(
                email=f"lead{n}@plans.example",
                name=f"Lead {n}",
                stage=rng.choice(Stage.values),
                last_activity_at=now - timedelta(minutes=rng.randint(0, 10_000)) if n % 5 else None,
                created_at=now - timedelta(minutes=rng.randint(0, 20_000)),
            )
            for n in range(SEEDED)
        ]
    )
    Score.objects.bulk_create(
        [
            Score(
                model=model,
                lead=lead,
                stage=lead.stage,
                score=Decimal(rng.randint(-20, 150)),
                fit=Decimal(0),
                behaviour=Decimal(0),
                grade="C",
                ruleset_version=1,
                computed_at=now,
            )
            for lead in leads
            if lead.pk % 7
        ]
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE leads_lead; ANALYZE scoring_score")
    return leads


def list_queries(client, url):
    """The statements reading leads that the request ran (the page's, and its count)."""
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200, response.content[:300]
    return response, [q["sql"] for q in queries if q["sql"].startswith('SELECT "leads_lead"')]


def plan_of(sql):
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_sort = off; SET LOCAL enable_seqscan = off; SET LOCAL jit = off")
        cursor.execute("EXPLAIN " + sql)
        return "\n".join(row[0] for row in cursor.fetchall())


def full_sorts(plan):
    """The plan's sort nodes over leads (not an Incremental Sort of an index's order; the
    scoring models, a handful of rows, may be sorted)."""
    lines = plan.splitlines()
    sorts = [n for n, line in enumerate(lines) if re.match(r"^\s*(->\s+)?Sort\s+\(", line)]
    return [lines[n] for n in sorts if "scoring_scoringmodel" not in lines[n + 2]]


@pytest.mark.parametrize(
    ("ordering", "index"),
    [
        ("-score", "score_model_rank"),
        ("score", "score_model_rank"),
        ("-activity_at", "lead_activity"),
        ("activity_at", "lead_activity"),
        ("-created_at", "lead_created"),
        ("created_at", "lead_created"),
    ],
)
@pytest.mark.parametrize("stage", ["", "&stage=mql", "&stage=mql&stage=sql", "&stage=accepted"])
def test_the_first_page_of_every_lead_api_order_is_read_from_an_index(seeded_leads, marketer, ordering, index, stage):
    response, queries = list_queries(client_for(marketer), f"{URL}?ordering={ordering}&page_size=20{stage}")
    assert response.json()["results"]
    first_page = queries[0]
    assert "DISTINCT" not in first_page
    if stage == "&stage=mql" and ordering.endswith("score"):  # a hot stage by score: walks that stage only
        index = "score_model_stage_rank"
    plan = plan_of(first_page)
    assert f" using {index} " in plan, plan
    assert not full_sorts(plan), plan


@pytest.mark.parametrize(
    ("sort", "index"),
    [
        ("-score", "score_model_stage_rank"),  # the page's list is of MQLs: one stage
        ("score", "score_model_stage_rank"),
        ("-activity", "lead_activity"),
        ("activity", "lead_activity"),
        ("-created", "lead_created"),
        ("created", "lead_created"),
    ],
)
def test_the_first_page_of_every_sort_of_the_leads_page_is_read_from_an_index(
    seeded_leads, marketer, client, sort, index
):
    client.force_login(marketer)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(f"/leads/?sort={sort}&stage=mql")
    assert response.status_code == 200
    pages = [q["sql"] for q in queries if q["sql"].startswith('SELECT "leads_lead"')]
    plan = plan_of(pages[0])
    assert f" using {index} " in plan, plan
    assert not full_sorts(plan), plan


@pytest.mark.parametrize("ordering", ["-score", "score"])
def test_a_walk_by_score_sees_every_lead_once_and_each_page_is_the_whole_lists_page(
    seeded_leads, marketer, ordering, monkeypatch
):
    # Pages inside the index's prefix (scored above 0, highest first; at or below 0, lowest
    # first) and past it (the never scored read as 0) join up: every lead once, in order.
    client = client_for(marketer)
    seen, links, url = [], [], f"{URL}?ordering={ordering}&page_size=37"
    while url:
        page = client.get(url).json()
        seen += [(Decimal(row["score"]), row["grade"] != "", row["id"]) for row in page["results"]]
        links += [link for link in (page["previous"], page["next"]) if link]
        url = page["next"]
    assert len(seen) == SEEDED == len({lead_id for *_, lead_id in seen})
    ids = {str(lead.public_id): lead.pk for lead in seeded_leads}
    key = [(score, scored, ids[lead_id]) for score, scored, lead_id in seen]
    if ordering == "-score":  # highest first; among equal scores the unscored, then by id, newest first
        assert key == sorted(key, key=lambda k: (-k[0], k[1], -k[2]))
    else:  # lowest first; among equal scores the scored, then by id
        assert key == sorted(key, key=lambda k: (k[0], not k[1], k[2]))
    # Every page, forwards and backwards, is the page the whole list gives without the prefix.
    pages = [client.get(link).json() for link in links]
    monkeypatch.setattr(selectors, "lead_search_head", lambda **_: None)
    assert pages == [client.get(link).json() for link in links]


@pytest.mark.parametrize("ordering", ["-score", "-activity_at", "created_at"])
def test_a_lead_api_page_runs_the_same_few_queries_for_5_leads_as_for_200(
    seeded_leads, marketer, django_assert_max_num_queries, ordering
):
    client = client_for(marketer)
    for size in (5, 200):
        with django_assert_max_num_queries(3):
            response = client.get(f"{URL}?ordering={ordering}&page_size={size}&stage=mql&stage=sql&stage=new")
        assert len(response.json()["results"]) == size


@pytest.mark.parametrize("ordering", ["-score", "score", "-activity_at"])
def test_an_unknown_model_is_a_400_on_the_model_field_in_every_order(marketer, ordering):
    response = client_for(marketer).get(f"{URL}?model=nope&ordering={ordering}")
    assert response.status_code == 400
    assert "No scoring model 'nope'" in response.json()["model"][0]


def test_the_queue_filtered_by_status_is_read_without_distinct(rep, django_assert_max_num_queries):
    from tests.factories import HandoffFactory

    HandoffFactory.create_batch(3)
    with CaptureQueriesContext(connection) as queries:
        response = client_for(rep).get("/api/v1/handoffs?status=queued&status=claimed")
    assert response.status_code == 200 and response.json()["count"] == 3
    assert not any("DISTINCT" in query["sql"] for query in queries)


# --- The scores' copy of the lead's stage (the hot-MQL list's index) -----------------------------
def scores_off_their_leads_stage():
    return list(Score.objects.exclude(stage=F("lead__stage")).values_list("lead_id", "stage", "lead__stage"))


def test_every_score_row_keeps_its_leads_stage_through_rescores_scoring_and_changes_by_hand(
    publish_ruleset, marketer, settings
):
    from leadflow.leads.lifecycle import lead_stage_change
    from scoring import services
    from scoring.models import RescoreRun
    from tests.helpers import CHUNK, behaviour, make_leads

    settings.RESCORE_CHUNK_SIZE = CHUNK
    rules = publish_ruleset([behaviour("page_view", 40), behaviour("demo_request", 30)], mql=30, sql=60)
    leads = make_leads(2 * CHUNK + 1)
    # A full rescore inserts the rows, then moves their leads (set-based): to MQL and SQL.
    services.rescore_run_execute(run=RescoreRun.objects.create(ruleset=rules, reason="publish"))
    assert set(Score.objects.values_list("stage", flat=True)) == {Stage.MQL, Stage.SQL}
    assert scores_off_their_leads_stage() == []
    # By hand, and the incremental path (a new lead's first score, then its move).
    lead_stage_change(lead=leads[0], to_stage=Stage.DISQUALIFIED, actor=marketer, reason="test account")
    (fresh,) = make_leads(1)
    services.leads_score(lead_ids=[fresh.pk])
    assert Score.objects.get(lead=fresh).stage == Stage.SQL
    assert Score.objects.get(lead=leads[0]).stage == Stage.DISQUALIFIED
    assert scores_off_their_leads_stage() == []
    # The hot lists read the copy: a stage's page by score is the whole list's page.
    client = client_for(marketer)
    for stage in (Stage.SQL, Stage.MQL, Stage.DISQUALIFIED):
        page = client.get(f"{URL}?stage={stage}&ordering=-score&page_size=4").json()
        whole = selectors.lead_search(filters=selectors.LeadFilters(stages=(stage,), sort="-score"))
        assert [row["id"] for row in page["results"]] == [str(lead.public_id) for lead in whole[:4]]


# --- The sales queue and the counts past their cap ----------------------------------------------
HANDOFFS = "/api/v1/handoffs"


@pytest.fixture
def seeded_handoffs(seeded_leads, rep, other_rep):
    """Handoffs of the seeded SQL-ish leads: most queued, some claimed by the rep or another
    rep, some decided; priorities with ties."""
    from handoff.models import Handoff, HandoffStatus

    rng, now, model = random.Random(11), timezone.now(), default_model()
    handoffs = []
    for n, lead in enumerate(seeded_leads[:240]):
        created = now - timedelta(minutes=rng.randint(0, 5_000))
        shape: dict = {}
        kind = n % 6
        if kind == 1:
            shape = {"status": HandoffStatus.CLAIMED, "claimed_by": rep if n % 12 == 1 else other_rep}
            shape |= {"claimed_at": now, "claim_expires_at": now + timedelta(hours=4)}
        elif kind == 2:
            shape = {
                "status": HandoffStatus.ACCEPTED,
                "claimed_by": rep if n % 4 == 2 else other_rep,
                "decided_at": now,
            }
        handoffs.append(
            Handoff(
                lead=lead,
                model=model,
                priority=Decimal(rng.randint(60, 70)),
                created_at=created,
                due_at=created + timedelta(hours=24),
                **shape,
            )
        )
    Handoff.objects.bulk_create(handoffs)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE handoff_handoff")
    return handoffs


def handoff_queries(client, url):
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200, response.content[:300]
    return response.json(), [q["sql"] for q in queries if q["sql"].startswith('SELECT "handoff_handoff"."id"')]


@pytest.mark.parametrize("ordering", ["", "-priority", "priority", "created_at", "-created_at", "due_at", "-due_at"])
@pytest.mark.parametrize("who", ["rep", "sales_manager"])
def test_the_first_page_of_every_queue_order_is_read_from_an_index_for_a_rep_and_a_manager(
    seeded_handoffs, request, who, ordering
):
    user = request.getfixturevalue(who)
    page, queries = handoff_queries(client_for(user), f"{HANDOFFS}?page_size=20&ordering={ordering or '-priority'}")
    assert len(page["results"]) == 20 and page["count_exact"]
    plan = plan_of(queries[-1])
    assert "Index Scan" in plan and not full_sorts(plan), plan


@pytest.mark.parametrize("who", ["rep", "sales_manager"])
@pytest.mark.parametrize("ordering", ["-priority", "priority", "due_at"])
def test_past_the_count_cap_the_queue_says_more_and_its_pages_walk_the_whole_ordered_queue(
    seeded_handoffs, request, monkeypatch, who, ordering
):
    from handoff.api import QUEUE_ORDERS
    from handoff.selectors import handoff_list
    from leadflow.pagination import CappedCountPaginator

    user = request.getfixturevalue(who)
    whole = [str(h.public_id) for h in handoff_list(user=user).order_by(*QUEUE_ORDERS[ordering])]
    monkeypatch.setattr(CappedCountPaginator, "cap", 30)
    client, seen, url = client_for(user), [], f"{HANDOFFS}?page_size=25&ordering={ordering}"
    while url:
        page = client.get(url).json()
        assert (page["count"], page["count_exact"]) == (31, False)
        seen += [row["id"] for row in page["results"]]
        url = page["next"]
    assert seen == whole
    assert client.get(f"{HANDOFFS}?page_size=25&page={len(whole) // 25 + 2}").status_code == 404


def test_the_leads_page_and_the_queue_say_more_than_the_cap_instead_of_counting_every_row(
    seeded_handoffs, rep, marketer, client, monkeypatch
):
    from leadflow.pagination import CappedCountPaginator

    monkeypatch.setattr(CappedCountPaginator, "cap", 30)
    client.force_login(marketer)
    with CaptureQueriesContext(connection) as queries:
        body = client.get("/leads/?sort=-score").content.decode()
    assert "More than 30 leads" in body and "Page 1 of" not in body and 'rel="next"' in body
    counts = [q["sql"] for q in queries if "COUNT(" in q["sql"] and "leads_lead" in q["sql"]]
    assert counts and all("LIMIT 31" in sql for sql in counts), counts
    # The last page: its rows, no next page.
    last = (SEEDED - 1) // 50 + 1
    body = client.get(f"/leads/?sort=-score&page={last}").content.decode()
    assert f"Showing {(last - 1) * 50 + 1}–{SEEDED}" in body and 'rel="next"' not in body
    client.force_login(rep)
    body = client.get("/queue/").content.decode()
    assert "More than 30 SQLs waiting" in body


def test_a_small_list_still_says_its_exact_count_and_an_empty_one_says_none(marketer, client):
    client.force_login(marketer)
    assert "0 leads" in client.get("/leads/").content.decode()
    page = client_for(marketer).get(HANDOFFS).json()
    assert (page["count"], page["count_exact"], page["results"]) == (0, True, [])


def test_the_scores_stage_column_has_no_missing_default_that_would_block_hot_updates(db):
    # Added with a default, the column keeps it as its "missing" value and no UPDATE of a
    # score row is HOT while an index covers it (scoring/migrations/0010).
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT atthasmissing FROM pg_attribute WHERE attrelid = %s::regclass AND attname = 'stage'",
            [Score._meta.db_table],
        )
        assert cursor.fetchone() == (False,)
