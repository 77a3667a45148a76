"""The single-lead engine (Python) and the bulk engine (SQL) agree exactly: on every
field of a score — fit, behaviour, grade, the hand-raise inside the intent window,
suppression, behaviour since a recycling — whatever the rules (decaying or not)."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connection
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from leadflow.leads.models import LEAD_PROFILE_FIELDS, LEAD_UTM_FIELDS, Event, Lead
from scoring import bulk as bulk_engine
from scoring import engine, selectors
from scoring.engine import EventRow, RuleSetSpec, RuleSpec
from tests.factories import SourceFactory

AS_OF = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
EVENT_TYPES = ["page_view", "content_download", "demo_request"]
TOPICS = ["AI", "ai", "Pricing", "security", "", "AI ops", "Été"]  # É: only A-Z fold, not the database's collation

text_values = st.sampled_from(["ai", "Software", "pricing", "gmail.com", "acme.io", "x", "été"])
number_values = st.sampled_from([0, 5, 50, 500, 7.5])


@st.composite
def conditions(draw, attributes):
    attribute = draw(st.sampled_from(attributes))
    operator = draw(st.sampled_from(["eq", "neq", "in", "contains", "gte", "lte", "exists"]))
    if operator in ("gte", "lte"):
        value = draw(number_values)
    elif operator == "in":
        value = draw(st.lists(st.one_of(text_values, number_values), min_size=1, max_size=3))
    elif operator == "exists":
        value = None
    else:
        value = draw(st.one_of(text_values, number_values))
    return attribute, operator, value


@st.composite
def points_and_cap(draw):
    points = Decimal(draw(st.integers(-20, 30).filter(bool))) / draw(st.sampled_from([1, 4]))
    cap = None
    if draw(st.booleans()):
        cap = abs(points) * draw(st.integers(1, 4)) * (1 if points > 0 else -1)
    return points, cap


@st.composite
def rulesets(draw):
    rules = []
    for index in range(draw(st.integers(0, 3))):
        attribute, operator, value = draw(
            conditions(["industry", "company_size", "email_domain", "traits.plan", "job_title", "traits.seats"])
        )
        points, _cap = draw(points_and_cap())
        rules.append(
            RuleSpec(
                id=index,
                kind="fit",
                name=f"f{index}",
                points=points,
                attribute=attribute,
                operator=operator,
                value=value,
            )
        )
    for index in range(10, 10 + draw(st.integers(0, 4))):
        points, cap = draw(points_and_cap())
        attribute = operator = ""
        value = None
        if draw(st.booleans()):
            attribute, operator, value = draw(conditions(["topic", "n", "meta.depth"]))
        rules.append(
            RuleSpec(
                id=index,
                kind="behaviour",
                name=f"b{index}",
                points=points,
                event_type=draw(st.sampled_from(EVENT_TYPES)),
                attribute=attribute,
                operator=operator,
                value=value,
                max_points=cap,
                window_days=draw(st.one_of(st.none(), st.integers(1, 60))),
                decays=draw(st.booleans()),
            )
        )
    for index in range(20, 20 + draw(st.integers(0, 2))):
        event_type, attribute, operator, value = "", "", "", None
        if draw(st.booleans()):
            event_type = draw(st.sampled_from(EVENT_TYPES))
            if draw(st.booleans()):
                attribute, operator, value = draw(conditions(["topic", "n"]))
        else:
            attribute, operator, value = draw(conditions(["industry", "email_domain", "traits.plan"]))
        rules.append(
            RuleSpec(
                id=index,
                kind="suppress",
                name=f"s{index}",
                points=Decimal(0),
                event_type=event_type,
                attribute=attribute,
                operator=operator,
                value=value,
            )
        )
    grades = sorted(draw(st.lists(st.integers(-10, 40), min_size=4, max_size=4)), reverse=True)
    return spec_of(
        *rules,
        half_life=draw(st.sampled_from([None, Decimal("0.5"), Decimal("7"), Decimal("30")])),
        intent_window_days=draw(st.sampled_from([1, 7, 30, 90])),
        grade_thresholds=tuple(Decimal(grade) for grade in grades),
    )


lead_profiles = st.fixed_dictionaries(
    {
        "industry": st.sampled_from(["Software", "software", "Retail", ""]),
        "company_size": st.sampled_from([None, 0, 5, 50, 499, 500, 5000]),
        "email": st.sampled_from(["a@gmail.com", "b@acme.io", "c@GMAIL.com"]),
        "job_title": st.sampled_from(["", "VP Sales", "AI researcher", "Été intern"]),
        "traits": st.sampled_from(
            [
                {},
                {"plan": "Pricing"},
                {"plan": 5},
                {"seats": 50},
                {"seats": "7.5"},
                {"plan": None},
                {"plan": {"nested": 1}},
            ]
        ),
    }
)
event_rows = st.builds(
    lambda event_type, topic, n, depth, age: (event_type, {"topic": topic, "n": n, "meta": {"depth": depth}}, age),
    st.sampled_from(EVENT_TYPES),
    st.sampled_from(TOPICS),
    st.one_of(st.none(), st.integers(-5, 600), st.sampled_from(["50", "abc", True])),
    st.sampled_from([1, 5, "ai"]),
    st.one_of(
        st.integers(-3_600_000_000, 0),  # a little in the future: counts with age 0
        st.builds(
            lambda days, micros: days * 86_400_000_000 + micros, st.integers(0, 90), st.integers(0, 86_399_999_999)
        ),
    ),
)


PROFILE: dict[str, Any] = {
    "industry": "Software",
    "company_size": None,
    "email": "a@gmail.com",
    "job_title": "Été intern",
    "traits": {},
}


def properties(topic: str) -> dict[str, Any]:
    return {"topic": topic, "n": None, "meta": {"depth": 1}}


def spec_of(*rules: RuleSpec, half_life: Decimal | None = None, **fields: Any) -> RuleSetSpec:
    return RuleSetSpec(
        version=1,
        mql_threshold=Decimal(30),
        sql_threshold=Decimal(60),
        intent_event_types=("demo_request",),
        sql_min_fit=None,
        decay_half_life_days=half_life,
        rules=rules,
        **fields,
    )


DAY = 86_400_000_000
# Only A-Z fold: "Été" is not "été" (the database's default collation would fold É).
ASCII_ONLY_FOLD = spec_of(
    RuleSpec(id=1, kind="fit", name="f1", points=Decimal(1), attribute="job_title", operator="contains", value="été"),
    RuleSpec(id=2, kind="fit", name="f2", points=Decimal(2), attribute="industry", operator="eq", value="software"),
    RuleSpec(
        id=3,
        kind="behaviour",
        name="b3",
        points=Decimal(4),
        event_type="page_view",
        attribute="topic",
        operator="in",
        value=["été", "ai"],
    ),
)
recycled_ages = st.one_of(st.none(), st.integers(0, 60 * 86_400_000_000))
# A window includes its first instant and nothing before it.
WINDOW_EDGE = spec_of(
    RuleSpec(id=1, kind="behaviour", name="b1", points=Decimal(1), event_type="page_view", window_days=7)
)


# The intent window likewise: a hand-raise exactly 7 days old counts, a microsecond older does not.
INTENT_WINDOW_EDGE = spec_of(
    RuleSpec(id=1, kind="behaviour", name="b1", points=Decimal(1), event_type="demo_request", decays=False),
    RuleSpec(id=2, kind="suppress", name="s2", points=Decimal(0), event_type="page_view"),
    half_life=Decimal(7),
    intent_window_days=7,
)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(
    spec=rulesets(),
    leads=st.lists(st.tuples(lead_profiles, st.lists(event_rows, max_size=12), recycled_ages), min_size=1, max_size=4),
)
@example(
    spec=ASCII_ONLY_FOLD,
    leads=[(PROFILE, [("page_view", properties("Été"), 0), ("page_view", properties("AI"), 0)], None)],
)
@example(
    spec=WINDOW_EDGE,
    leads=[(PROFILE, [("page_view", properties(""), age) for age in (-1, 7 * DAY, 7 * DAY + 1, 8 * DAY - 1)], None)],
)
@example(
    spec=INTENT_WINDOW_EDGE,
    leads=[(PROFILE, [("demo_request", properties(""), age)], 2 * DAY) for age in (7 * DAY, 7 * DAY + 1)],
)
def test_single_lead_and_bulk_engines_give_identical_scores(db, spec, leads):
    Event.objects.all().delete()
    Lead.objects.all().delete()
    source = SourceFactory.create(slug="prop", name="Prop")
    expected = {}
    counter = 0
    for n, (profile, events, recycled_age) in enumerate(leads):
        email = f"{n}{profile['email']}".lower()
        recycled_at = None if recycled_age is None else AS_OF - timedelta(microseconds=recycled_age)
        lead = Lead.objects.create(source=source, recycled_at=recycled_at, **{**profile, "email": email})
        rows = []
        for event_type, properties, age_micros in events:
            counter += 1
            occurred_at = AS_OF - timedelta(microseconds=age_micros)
            rows.append(
                Event(
                    lead=lead,
                    source=source,
                    event_id=f"e{counter}",
                    type=event_type,
                    properties=properties,
                    occurred_at=occurred_at,
                    fingerprint="x",
                )
            )
        Event.objects.bulk_create(rows)
        single = engine.score_lead(
            selectors.lead_attributes(lead),
            [EventRow(type=e.type, properties=e.properties, occurred_at=e.occurred_at, id=e.pk) for e in rows],
            spec,
            AS_OF,
            recycled_at,
        )
        expected[lead.pk] = bulk_engine.ScoreRow.of(lead.pk, single)
    assert {row.id: row for row in selectors.iter_scores(spec, AS_OF)} == expected
    if connection.vendor == "postgresql" and expected:
        # The chunks of a rescore split across workers: two ranges of lead ids, same rows.
        ids = sorted(expected)
        cut = ids[len(ids) // 2]
        assert {**chunk_scores(spec, ids[0] - 1, cut), **chunk_scores(spec, cut, ids[-1])} == expected


def chunk_scores(spec: RuleSetSpec, after: int, upto: int) -> dict[int, bulk_engine.ScoreRow]:
    sql, params = bulk_engine.scores_sql(spec, lead_range=True)
    with connection.cursor() as cursor:
        cursor.execute(sql, {**params, "as_of": AS_OF, "after": after, "upto": upto})
        return {row[0]: bulk_engine.ScoreRow(*row) for row in cursor.fetchall()}


def test_scoring_loads_every_lead_field_the_engine_reads():
    assert set(engine.LEAD_ATTRIBUTES) == {"email_domain", *LEAD_PROFILE_FIELDS, *LEAD_UTM_FIELDS}
    assert set(selectors.LEAD_ATTRIBUTE_FIELDS) == {"email", *LEAD_PROFILE_FIELDS, *LEAD_UTM_FIELDS, "traits"}
