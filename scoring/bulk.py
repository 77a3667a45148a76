"""The bulk engine (PostgreSQL): every lead's scores in one set-based query, and the
statements of a full rescore built on it. All of the bulk rescore's SQL is here.

``scores_sql`` is the query. Its pieces — each condition, the decay, the rounding —
are ``scoring.engine``'s ``*_sql`` functions, written beside their Python twins (the
single-lead engine), and a property test proves that both engines give identical
scores. Table and column names come from the models (``SqlNames``); every value —
rule values, thresholds, stages — is a bound parameter.

A full rescore (``scoring.services.rescore_run_execute``) computes the scores once into
a temporary table (``scores_table``) and walks it in chunks of lead ids: per chunk,
``ScoresTable.write`` upserts the scores into the narrow scores table (``Score``) and
``ScoresTable.transitions`` moves the leads whose new score meets the model's criteria,
set-based. The services hold the transactions, the run's lease and the signal.
"""

import json
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connection, transaction

from leadflow.db import SqlNames
from leadflow.leads.models import Event, Lead, Stage, StageChange
from leadflow.leads.rollups import (
    COUNTED_STAGES,
    Entry,
    LeadFacts,
    LeadMove,
    first_moves_params,
    first_moves_sql,
    rollups_record,
)
from scoring.engine import (
    LeadScore,
    RuleSetSpec,
    RuleSpec,
    condition_sql,
    decayed_term_sql,
    grade_sql,
    json_path_sql,
    lead_attribute_sql,
)
from scoring.models import RuleSet, RuleSetStatus, Score

# The scores of a full rescore: a temporary table of the session, so of one run.
SCORES_TABLE = "rescore_scores"
# For the one pass over the events (a hash aggregate of every lead) to stay in memory.
SCORES_WORK_MEM = "256MB"


@dataclass(frozen=True)
class ScoreRow:
    """One lead's score under one model, as both engines give it and ``Score`` stores it."""

    id: int
    fit: Decimal
    behaviour: Decimal
    last_intent_at: datetime | None
    grade: str
    suppressed_by: int | None
    behaviour_since: Decimal | None

    @property
    def score(self) -> Decimal:
        return self.fit + self.behaviour

    @classmethod
    def of(cls, lead_id: int, result: LeadScore) -> "ScoreRow":
        return cls(
            lead_id,
            result.fit,
            result.behaviour,
            result.last_intent_at,
            result.grade,
            result.suppressed_by,
            result.behaviour_since,
        )


SCORE_COLUMNS = "id, fit, behaviour, last_intent_at, grade, suppressed_by, behaviour_since"


def scores_sql(ruleset: RuleSetSpec, *, lead_range: bool = False, lead_ids: bool = False) -> tuple[str, dict[str, Any]]:
    """One set-based query giving, per lead, ``SCORE_COLUMNS`` (``ScoreRow``'s fields).
    Parameters are named; the caller supplies ``%(as_of)s`` (and, with ``lead_range``,
    ``%(after)s`` and ``%(upto)s``: only the leads with ids in (after, upto], whose
    events the index on (lead, occurred_at) finds). Every identifier and literal in
    the text is generated here; every value is a bound parameter."""
    lead, event = SqlNames(Lead), SqlNames(Event)
    # A chunk (``lead_range``) reads its leads' events from the heap once, into ``chunk_events``,
    # for every part of the query: the index on (lead, occurred_at) finds them, but a chunk's
    # events lie all over a table that grew in time order, so each pass over them visits half
    # its pages (three passes per chunk, bench/RESULTS.md "1 worker and 2 workers"). The whole
    # table's compute reads it with (parallel) sequential scans instead, one per part.
    # With ``lead_ids`` (the incremental path: a chunk of flagged leads), ``%(ids)s`` lists them.
    if lead_ids:
        chosen = "{column} = ANY(%(ids)s)"
    elif lead_range:
        chosen = "{column} > %(after)s AND {column} <= %(upto)s"
    else:
        chosen = "true"
    some = lead_range or lead_ids
    events_from = "chunk_events" if some else event.table
    leads_in = chosen.format(column=f"l.{lead.id}")
    recycled_in = chosen.format(column=lead.id)
    params: dict[str, Any] = {}
    counter = iter(range(1_000_000))

    def bind(values: Sequence[Any]) -> list[str]:
        names = []
        for value in values:
            name = f"p{next(counter)}"
            params[name] = value
            names.append(f"%({name})s")
        return names

    def bound(sql: str, values: list[Any]) -> str:
        placeholders = iter(bind(values))
        return re.sub(r"%s", lambda _m: next(placeholders), sql)

    def attribute_condition(rule: RuleSpec) -> str:
        condition, condition_params = condition_sql(lead_attribute_sql(rule.attribute, lead), rule.operator, rule.value)
        return bound(condition, condition_params)

    def property_condition(rule: RuleSpec) -> str:
        expression = json_path_sql(f"e.{event.properties}", rule.attribute)
        condition, condition_params = condition_sql(expression, rule.operator, rule.value)
        return bound(condition, condition_params)

    fit_terms = []
    for rule in ruleset.fit_rules:
        (points,) = bind([rule.points])
        fit_terms.append(f"CASE WHEN {attribute_condition(rule)} THEN {points} ELSE 0 END")
    fit_sql = " + ".join(fit_terms) or "0"

    rules = list(ruleset.behaviour_rules)
    behaviour_sql, since_sql, behaviour_join = "0.00", "0.00", ""
    if rules:
        rows, conditions = [], []
        for index, rule in enumerate(rules):
            window = timedelta(days=rule.window_days) if rule.window_days is not None else None
            event_type, points, window_length, max_points = bind(
                [rule.event_type, rule.points, window, rule.max_points]
            )
            decays = "true" if rule.decays else "false"
            rows.append(
                f"({index}, {event_type}::text, {points}::numeric, {window_length}::interval,"
                f" {max_points}::numeric, {decays})"
            )
            if rule.has_condition:
                conditions.append(f"WHEN {index} THEN {property_condition(rule)}")
        # Inline VALUES, not a CTE: the planner then aggregates the events in parallel workers.
        rules_sql = f"(VALUES {', '.join(rows)}) AS r(idx, type, points, window_length, max_points, decays)"
        condition_test = f"AND CASE r.idx {' '.join(conditions)} ELSE true END" if conditions else ""
        decayed = decayed_term_sql("r.points", f"e.{event.occurred_at}", ruleset.decay_half_life_days)
        term = decayed if decayed == "r.points" else f"(CASE WHEN r.decays THEN {decayed} ELSE r.points END)"

        def capped(total: str) -> str:
            return (
                f"ROUND(CASE WHEN r.max_points IS NULL THEN {total} WHEN r.max_points > 0"
                f" THEN LEAST({total}, r.max_points) ELSE GREATEST({total}, r.max_points) END, 2)"
            )

        # Each event meets only the rules of its type: one decayed term per (event, rule),
        # summed per (lead, rule), then capped and rounded per rule and added per lead.
        # The few recycled leads also sum the terms of their events after the recycling.
        behaviour_join = f"""
        LEFT JOIN (
            SELECT p.lead_id, SUM({capped("p.total")}) AS behaviour, SUM({capped("COALESCE(p.since, 0)")}) AS since
            FROM (
                SELECT e.{event.lead} AS lead_id, r.idx, SUM({term}) AS total,
                       SUM({term}) FILTER (WHERE e.{event.occurred_at} > rc.recycled_at) AS since
                FROM {events_from} e
                JOIN {rules_sql}
                  ON r.type = e.{event.type}
                 AND (r.window_length IS NULL OR e.{event.occurred_at} >= %(as_of)s - r.window_length)
                 {condition_test}
                LEFT JOIN (
                    SELECT {lead.id} AS id, {lead.recycled_at} AS recycled_at FROM {lead.table}
                    WHERE {lead.recycled_at} IS NOT NULL AND {recycled_in}
                ) rc ON rc.id = e.{event.lead}
                GROUP BY e.{event.lead}, r.idx
            ) p
            JOIN {rules_sql} ON r.idx = p.idx
            GROUP BY p.lead_id
        ) b ON b.lead_id = l.{lead.id}"""  # noqa: S608
        behaviour_sql, since_sql = "COALESCE(b.behaviour, 0.00)", "COALESCE(b.since, 0.00)"

    # Suppression: the first rule (in rule order) that matches, by attribute or by event.
    suppress = ruleset.suppress_rules
    suppress_sql, suppress_join = "NULL::bigint", ""
    if suppress:
        (rule_ids,) = bind([[rule.id for rule in suppress]])
        by_attribute = [
            f"WHEN {attribute_condition(rule)} THEN {index}"
            for index, rule in enumerate(suppress)
            if not rule.event_type
        ]
        attribute_index = f"(CASE {' '.join(by_attribute)} END)" if by_attribute else "NULL::int"
        by_event = [(index, rule) for index, rule in enumerate(suppress) if rule.event_type]
        event_index = "NULL::int"
        if by_event:
            tests = []
            for index, rule in by_event:
                (event_type,) = bind([rule.event_type])
                condition = f" AND {property_condition(rule)}" if rule.has_condition else ""
                tests.append(f"WHEN e.{event.type} = {event_type}{condition} THEN {index}")
            (types,) = bind([[rule.event_type for _index, rule in by_event]])
            suppress_join = f"""
        LEFT JOIN (
            SELECT e.{event.lead} AS lead_id, MIN(CASE {" ".join(tests)} END) AS idx
            FROM {events_from} e WHERE e.{event.type} = ANY({types})
            GROUP BY e.{event.lead}
        ) sup ON sup.lead_id = l.{lead.id}"""  # noqa: S608
            event_index = "sup.idx"
        suppress_sql = f"({rule_ids}::bigint[])[LEAST({attribute_index}, {event_index}) + 1]"

    intent, intent_window = bind([list(ruleset.intent_event_types), timedelta(days=ruleset.intent_window_days)])
    thresholds = bind(list(ruleset.grade_thresholds))
    chunk_events = ""
    if some:
        read = {rule.event_type for rule in rules} | {rule.event_type for rule in suppress if rule.event_type}
        (types_read,) = bind([sorted(read | set(ruleset.intent_event_types))])
        columns = ", ".join(f"e.{name}" for name in (event.lead, event.type, event.occurred_at, event.properties))
        chunk_events = f"""
        WITH chunk_events AS MATERIALIZED (
            SELECT {columns} FROM {event.table} e
            WHERE {chosen.format(column=f"e.{event.lead}")} AND e.{event.type} = ANY({types_read})
        )"""  # noqa: S608
    sql = f"""{chunk_events}
        SELECT s.id, s.fit, s.behaviour, s.last_intent_at, {grade_sql("s.fit", thresholds)}::text AS grade,
               s.suppressed_by, s.behaviour_since
        FROM (
        SELECT l.{lead.id} AS id,
               ({fit_sql})::numeric AS fit,
               ({behaviour_sql})::numeric AS behaviour,
               i.last_intent_at,
               {suppress_sql} AS suppressed_by,
               (CASE WHEN l.{lead.recycled_at} IS NULL THEN NULL ELSE {since_sql} END)::numeric AS behaviour_since
        FROM {lead.table} l{behaviour_join}{suppress_join}
        LEFT JOIN (
            SELECT e.{event.lead} AS lead_id, MAX(e.{event.occurred_at}) AS last_intent_at
            FROM {events_from} e
            WHERE e.{event.type} = ANY({intent}) AND e.{event.occurred_at} >= %(as_of)s - {intent_window}::interval
            GROUP BY e.{event.lead}
        ) i ON i.lead_id = l.{lead.id}
        WHERE {leads_in} AND l.{lead.erased_at} IS NULL
        ) s
    """  # noqa: S608
    return sql, params


def score_columns_written(score: SqlNames) -> list[str]:
    """The columns of a ``Score`` row that a rescore writes (all but its key), in the order
    both upserts (``scores_upsert``, ``ScoresTable.write``) list them."""
    return [
        score.score,
        score.fit,
        score.behaviour,
        score.grade,
        score.ruleset_version,
        score.computed_at,
        score.last_intent_at,
        score.behaviour_since_recycled,
        score.suppressed_by,
    ]


def score_stage_inserted(lead_alias: str) -> str:
    """What a new score row's ``stage`` is, in the upserts' SELECT over the leads as
    ``lead_alias``: its lead's stage (``Score.stage``, which the hot-MQL list's index orders
    by score). Every insert of score rows lists the column with this value, and none sets it
    on a conflict (``score_columns_written`` leaves it out): a row that exists follows its
    lead's stage changes (``scoring.services.scores_follow_stages``), not its rewrites."""
    return f"{lead_alias}.{SqlNames(Lead).stage}"


def scores_upsert(spec: RuleSetSpec, lead_ids: Sequence[int], as_of: datetime) -> list[ScoreRow]:
    """The incremental path on PostgreSQL: compute the scores of these leads under the
    model as of ``as_of`` and store them, in one statement; returns the rows it stored.
    The events of a chunk are read once, by the index on (lead, occurred_at); no row of
    Python per event.

    The leads are not locked against ingest (which holds them FOR NO KEY UPDATE): the
    statement takes FOR KEY SHARE, which ingest's locks and updates pass but an erasure or
    a deletion (FOR UPDATE, DELETE) does not, so a person erased or deleted meanwhile never
    gets a score back. A row is stored only if the ruleset is still published and no newer
    score is stored (``computed_at`` after ``as_of``: a scoring that took the lead later,
    or a full rescore under a ruleset published after this one was read)."""
    score, lead, ruleset = SqlNames(Score), SqlNames(Lead), SqlNames(RuleSet)
    sql, params = scores_sql(spec, lead_ids=True)
    params.update(
        as_of=as_of,
        ids=list(lead_ids),
        model=spec.model_id,
        version=spec.version,
        published=RuleSetStatus.PUBLISHED,
    )
    changing = score_columns_written(score)
    returned = [score.lead, score.fit, score.behaviour, score.last_intent_at, score.grade, score.suppressed_by]
    returned.append(score.behaviour_since_recycled)  # in ScoreRow's order
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL jit = off")  # a short query costed like a long one (scores_table)
        cursor.execute(
            f"""
            WITH s AS ({sql}), live AS (
                SELECT {lead.id} AS id, {lead.stage} FROM {lead.table}
                WHERE {lead.id} = ANY(%(ids)s) AND {lead.erased_at} IS NULL
                FOR KEY SHARE
            )
            INSERT INTO {score.table} ({score.model}, {score.lead}, {", ".join(changing)}, {score.stage})
            SELECT %(model)s, s.id, s.fit + s.behaviour, s.fit, s.behaviour, s.grade, %(version)s, %(as_of)s,
                   s.last_intent_at, s.behaviour_since, s.suppressed_by, {score_stage_inserted("live")}
            FROM s JOIN live ON live.id = s.id
            WHERE EXISTS (
                SELECT 1 FROM {ruleset.table}
                WHERE {ruleset.version} = %(version)s AND {ruleset.status} = %(published)s
            )
            ORDER BY s.id  -- rows locked in id order: two scorings of the same leads never deadlock
            ON CONFLICT ({score.lead}, {score.model}) DO UPDATE
            SET {", ".join(f"{column} = EXCLUDED.{column}" for column in changing)}
            WHERE {score.table}.{score.computed_at} <= EXCLUDED.{score.computed_at}
            RETURNING {", ".join(returned)}
            """,  # noqa: S608 -- names from the models
            params,
        )
        return [ScoreRow(*row) for row in cursor.fetchall()]


def scores_stream(spec: RuleSetSpec, as_of: datetime) -> Iterator[ScoreRow]:
    """``scores_sql``'s rows as of ``as_of``, in id order, streamed through a server-side cursor."""
    sql, params = scores_sql(spec)
    params["as_of"] = as_of
    with transaction.atomic(), connection.connection.cursor(name="iter_scores") as cursor:
        cursor.itersize = 5000
        cursor.execute(f"{sql} ORDER BY s.id", params)
        for row in cursor:
            yield ScoreRow(*row)


@dataclass(frozen=True)
class ScoreBeside:
    """A lead's score under a ruleset beside what the lead is now: its stage, when it was
    recycled, and the score its model stores for it (None: never scored)."""

    row: ScoreRow
    stage: str
    recycled_at: datetime | None
    stored: Decimal | None


def scores_beside_leads(spec: RuleSetSpec, as_of: datetime) -> Iterator[ScoreBeside]:
    """Every lead's score under ``spec`` as of ``as_of`` with its stage and stored score, in
    id order (the what-if preview). The scores are computed in one pass into
    ``SCORES_TABLE``, as a full rescore computes them (a parallel plan: a cursor over the
    scores query gets none, 20 s instead of 8 at 1M leads), then streamed joined to the
    leads and their scores through a server-side cursor: the client holds one page."""
    lead, score = SqlNames(Lead), SqlNames(Score)
    columns = ", ".join(f"s.{name.strip()}" for name in SCORE_COLUMNS.split(","))
    width = len(SCORE_COLUMNS.split(","))
    sql = (
        f"SELECT {columns}, l.{lead.stage}, l.{lead.recycled_at}, c.{score.score}"  # noqa: S608 -- names from the models
        f" FROM {SCORES_TABLE} s JOIN {lead.table} l ON l.{lead.id} = s.id"
        f" LEFT JOIN {score.table} c ON c.{score.lead} = s.id AND c.{score.model} = %s ORDER BY s.id"
    )
    with transaction.atomic(), scores_table(spec, as_of), connection.connection.cursor(name="scores_beside") as cursor:
        cursor.itersize = 5000
        cursor.execute(sql, [spec.model_id])
        for row in cursor:
            yield ScoreBeside(ScoreRow(*row[:width]), row[width], row[width + 1], row[width + 2])


def rule_match_counts_sql(rules: Sequence[RuleSpec]) -> tuple[str, dict[str, Any]]:
    """One statement giving ``(rule id, leads)`` for each of ``rules`` (of any rulesets):
    how many current leads the rule matches, points aside (``engine.rule_matches`` is the
    Python twin). Rules on the lead (fit, attribute suppressions) are counted by one pass
    over the leads, a ``count(*) FILTER`` each; rules on events (behaviour, event
    suppressions) by one pass over the events of their types, each event meeting only the
    rules of its type, as in ``scores_sql``. The caller supplies ``%(as_of)s``."""
    lead, event = SqlNames(Lead), SqlNames(Event)
    params: dict[str, Any] = {}

    def bind(value: Any) -> str:
        name = f"p{len(params)}"
        params[name] = value
        return f"%({name})s"

    def condition(expression: str, rule: RuleSpec) -> str:
        sql, values = condition_sql(expression, rule.operator, rule.value)
        placeholders = iter([bind(value) for value in values])
        return re.sub(r"%s", lambda _m: next(placeholders), sql)

    parts = []
    on_lead = [rule for rule in rules if not rule.event_type]
    if on_lead:
        filters = ", ".join(
            f"count(*) FILTER (WHERE {condition(lead_attribute_sql(rule.attribute, lead), rule)}) AS m{index}"
            for index, rule in enumerate(on_lead)
        )
        pairs = ", ".join(f"({bind(rule.id)}::bigint, c.m{index})" for index, rule in enumerate(on_lead))
        parts.append(
            f"""SELECT v.rule_id, v.leads
            FROM (SELECT {filters} FROM {lead.table} l WHERE l.{lead.erased_at} IS NULL) c
            CROSS JOIN LATERAL (VALUES {pairs}) AS v(rule_id, leads)"""  # noqa: S608 -- names from the models
        )
    on_events = [rule for rule in rules if rule.event_type]
    if on_events:
        rows, tests = [], []
        for rule in on_events:
            # Only behaviour rules have a window (a suppression counts any such event, ever).
            days = rule.window_days if rule.kind == "behaviour" else None
            window = bind(timedelta(days=days) if days is not None else None)
            rule_id = bind(rule.id)
            rows.append(f"({rule_id}::bigint, {bind(rule.event_type)}::text, {window}::interval)")
            if rule.has_condition:
                expression = json_path_sql(f"e.{event.properties}", rule.attribute)
                tests.append(f"WHEN {rule_id}::bigint THEN {condition(expression, rule)}")
        condition_test = f"AND CASE r.rule_id {' '.join(tests)} ELSE true END" if tests else ""
        parts.append(
            f"""SELECT m.rule_id, count(*) AS leads
            FROM (
                SELECT DISTINCT r.rule_id, e.{event.lead} AS lead_id
                FROM {event.table} e
                JOIN (VALUES {", ".join(rows)}) AS r(rule_id, type, window_length)
                  ON r.type = e.{event.type}
                 AND (r.window_length IS NULL OR e.{event.occurred_at} >= %(as_of)s - r.window_length)
                 {condition_test}
                WHERE NOT EXISTS (
                    SELECT 1 FROM {lead.table} gone
                    WHERE gone.{lead.id} = e.{event.lead} AND gone.{lead.erased_at} IS NOT NULL
                )
            ) m
            GROUP BY m.rule_id"""  # noqa: S608 -- names from the models
        )
    return "\nUNION ALL\n".join(parts), params


def rule_match_counts(rules: Sequence[RuleSpec], as_of: datetime) -> dict[int, int]:
    """``rule_match_counts_sql``'s answer by rule id, every rule listed (0: it matches no
    lead); one statement however many rules, none without rules."""
    counts = dict.fromkeys((rule.id for rule in rules), 0)
    if not rules:
        return counts
    sql, params = rule_match_counts_sql(rules)
    params["as_of"] = as_of
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        counts.update({int(rule_id): int(leads) for rule_id, leads in cursor.fetchall()})
    return counts


class ScoresTable:
    """The scores of every lead under ``spec`` as of ``as_of`` (``scores_sql``'s rows),
    in ``SCORES_TABLE`` keyed by lead id, and the statements a rescore runs on them."""

    def __init__(self, cursor: Any, spec: RuleSetSpec, as_of: datetime):
        self.cursor, self.spec, self.as_of = cursor, spec, as_of

    def chunk_end(self, *, after: int, last: int, size: int) -> int:
        """The id that ends the chunk of ``size`` leads after ``after`` (ids may be sparse
        or start high), or ``last`` when fewer are left."""
        self.cursor.execute(
            f"SELECT id FROM {SCORES_TABLE} WHERE id > %s AND id <= %s ORDER BY id OFFSET %s LIMIT 1",  # noqa: S608
            [after, last, size - 1],
        )
        row = self.cursor.fetchone()
        return int(row[0]) if row else last

    def write(self, *, after: int, upto: int) -> int:
        """Store the scores of the leads with ids in (after, upto] in the scores table;
        returns how many. One upsert: a fresh row per lead the model never scored, else a
        rewrite of the row in place (no index covers a column that changes, so it is a
        HOT update). A score computed after ``as_of`` (the lead's own scoring, for an
        event that came in meanwhile) is newer and stays."""
        score, lead = SqlNames(Score), SqlNames(Lead)
        changing = score_columns_written(score)
        self.cursor.execute(
            f"""
            INSERT INTO {score.table} ({score.model}, {score.lead}, {", ".join(changing)}, {score.stage})
            SELECT %(model)s, s.id, s.fit + s.behaviour, s.fit, s.behaviour, s.grade, %(version)s, %(as_of)s,
                   s.last_intent_at, s.behaviour_since, s.suppressed_by, {score_stage_inserted("l")}
            FROM {SCORES_TABLE} s JOIN {lead.table} l ON l.{lead.id} = s.id
            WHERE s.id > %(after)s AND s.id <= %(upto)s
            ON CONFLICT ({score.lead}, {score.model}) DO UPDATE
            SET {", ".join(f"{column} = EXCLUDED.{column}" for column in changing)}
            WHERE {score.table}.{score.computed_at} <= EXCLUDED.{score.computed_at}
            """,  # noqa: S608 -- names from the models
            {
                "model": self.spec.model_id,
                "version": self.spec.version,
                "as_of": self.as_of,
                "after": after,
                "upto": upto,
            },
        )
        return int(self.cursor.rowcount)

    def transitions(self, *, after: int, upto: int) -> list[StageChange]:
        """Apply the automatic transitions of the leads with ids in (after, upto] whose
        new score (stored by ``write``) meets this model's criteria, set-based: one
        statement locks and moves the leads and writes their StageChanges (two for a
        lead that goes from new or recycled straight to SQL) and the dashboard's rollups of
        the moved leads that had no entry before (most of a first publish: one insert per
        rollup table, ``rollups.first_moves_sql``); it returns, with each moved lead, what
        the rollups counted of it before, and the differences of the leads with entries are
        recorded in Python (``rollups_record``, one insert per table). Returns the StageChanges
        (ids, stages, score; ``lead`` unset). The rule is ``engine.qualifies_mql`` and
        ``qualifies_sql`` — this is their SQL twin, for one model (a lead that any other
        model qualifies was promoted when that model scored it)."""
        lead, score, change = SqlNames(Lead), SqlNames(Score), SqlNames(StageChange)
        spec = self.spec
        params = {
            "after": after,
            "upto": upto,
            "model": spec.model_id,
            "as_of": self.as_of,
            "new": Stage.NEW,
            "recycled": Stage.RECYCLED,
            "mql": Stage.MQL,
            "sql": Stage.SQL,
            "mql_threshold": spec.mql_threshold,
            "sql_threshold": spec.sql_threshold,
            "requalify": spec.requalify_threshold,
            "min_fit": spec.sql_min_fit,
            "mql_min_grade": spec.mql_min_grade,
            "sql_min_grade": spec.sql_min_grade,
            "version": spec.version,
            "qualified_by": json.dumps([spec.model_slug]),
            "mql_reason": f"reached the MQL threshold {spec.mql_threshold} ({spec.model_slug} v{spec.version}).",
            "sql_reason": f"reached the SQL threshold {spec.sql_threshold} ({spec.model_slug} v{spec.version}).",
        }
        counted = f"c.{change.to_stage} = ANY(%(counted)s)"
        grade_ok = "(%({minimum})s = '' OR s.{grade} COLLATE \"C\" <= %({minimum})s)"
        mql_ok = f"""(s.{score.suppressed_by} IS NULL AND s.{score.score} >= %(mql_threshold)s
            AND {grade_ok.format(minimum="mql_min_grade", grade=score.grade)}
            AND (l.{lead.stage} <> %(recycled)s
                 OR COALESCE(s.{score.behaviour_since_recycled} >= %(requalify)s, false)))"""
        sql_ok = f"""(s.{score.suppressed_by} IS NULL AND s.{score.last_intent_at} IS NOT NULL
            AND s.{score.score} >= %(sql_threshold)s
            AND (l.{lead.recycled_at} IS NULL OR s.{score.last_intent_at} > l.{lead.recycled_at})
            AND (%(min_fit)s::numeric IS NULL OR s.{score.fit} >= %(min_fit)s::numeric)
            AND {grade_ok.format(minimum="sql_min_grade", grade=score.grade)})"""
        self.cursor.execute(
            f"""
            WITH scored AS (
                SELECT l.{lead.id} AS id, l.{lead.stage} AS from_stage, s.{score.score} AS score,
                       {mql_ok} AS mql_ok, {sql_ok} AS sql_ok,
                       l.{lead.created_at} AS created_at, l.{lead.source} AS source_id,
                       l.{lead.utm_campaign} AS campaign, l.{lead.mql_at} AS mql_at, l.{lead.sql_at} AS sql_at
                FROM {lead.table} l JOIN {score.table} s ON s.{score.lead} = l.{lead.id} AND s.{score.model} = %(model)s
                WHERE l.{lead.id} > %(after)s AND l.{lead.id} <= %(upto)s
                  AND s.{score.lead} > %(after)s AND s.{score.lead} <= %(upto)s
                  AND l.{lead.stage} IN (%(new)s, %(recycled)s, %(mql)s)
                  AND NOT l.{lead.visitor}  -- a visitor is scored, never promoted
            ), target AS MATERIALIZED (
                -- With what the dashboard's rollups count of each lead before it moves
                -- (``rollups``): its facts, and its entries so far (evaluated for the movers only).
                SELECT id, from_stage, score, ((from_stage = %(mql)s OR mql_ok) AND sql_ok) AS to_sql,
                       created_at, source_id, campaign, mql_at, sql_at,
                       COALESCE(h.stages, '{{}}') AS entry_stages, COALESCE(h.ats, '{{}}') AS entry_ats,
                       COALESCE(h.models, '{{}}') AS entry_models
                FROM scored LEFT JOIN LATERAL (
                    -- The counted stages filter the aggregate, not the scan: as a scan condition
                    -- PostgreSQL ANDed a bitmap of every StageChange into them with the lead's
                    -- (15 ms per mover at 1M leads: bench/RESULTS-rollups.md); a lead has few changes.
                    SELECT array_agg(c.{change.to_stage} ORDER BY c.{change.at}, c.{change.id}) FILTER (WHERE {counted})
                               AS stages,
                           array_agg(c.{change.at} ORDER BY c.{change.at}, c.{change.id}) FILTER (WHERE {counted})
                               AS ats,
                           array_agg(c.{change.qualified_by}::text ORDER BY c.{change.at}, c.{change.id})
                               FILTER (WHERE {counted}) AS models
                    FROM {change.table} c
                    WHERE c.{change.lead} = scored.id
                ) h ON true
                WHERE (from_stage <> %(mql)s AND mql_ok) OR (from_stage = %(mql)s AND sql_ok)
            ), moved AS (
                UPDATE {lead.table} l
                SET {lead.stage} = CASE WHEN t.to_sql THEN %(sql)s ELSE %(mql)s END,
                    {lead.mql_at} = COALESCE(l.{lead.mql_at}, %(as_of)s),
                    {lead.sql_at} = CASE WHEN t.to_sql THEN %(as_of)s ELSE l.{lead.sql_at} END
                FROM target t
                WHERE l.{lead.id} = t.id AND l.{lead.stage} = t.from_stage
                  AND l.{lead.id} > %(after)s AND l.{lead.id} <= %(upto)s
                RETURNING l.{lead.id} AS id, t.from_stage, t.to_sql, t.score, t.created_at, t.source_id, t.campaign,
                          t.mql_at, t.sql_at, t.entry_stages, t.entry_ats, t.entry_models
            ), steps AS (
                SELECT id, 1 AS step, from_stage, %(mql)s AS to_stage, score, %(mql_reason)s AS reason
                FROM moved WHERE from_stage <> %(mql)s
                UNION ALL
                SELECT id, 2, %(mql)s, %(sql)s, score, %(sql_reason)s FROM moved WHERE to_sql
            ), inserted AS (
                INSERT INTO {change.table} ({change.lead}, {change.from_stage}, {change.to_stage}, {change.at},
                    {change.reason}, {change.qualified_by}, {change.ruleset_version}, {change.score})
                SELECT id, from_stage, to_stage, %(as_of)s,
                       CASE WHEN to_stage = %(sql)s THEN 'Intent shown and score ' ELSE 'Score ' END
                         || score || ' ' || reason,
                       %(qualified_by)s::jsonb, %(version)s, score
                FROM steps ORDER BY id, step
                RETURNING {change.id}, {change.lead}, {change.from_stage}, {change.to_stage}, {change.score}
            ){first_moves_sql("(SELECT * FROM moved WHERE cardinality(entry_stages) = 0) fresh")}
            -- The StageChanges, then the movers with entries before (their rollups' differences
            -- are recorded in Python): unjoined, as PostgreSQL estimates one row per CTE and
            -- joined them by a nested loop (changes × movers per chunk).
            SELECT i.{change.id}, i.{change.lead}, i.{change.from_stage}, i.{change.to_stage}, i.{change.score},
                   NULL, NULL::boolean, NULL::timestamptz, NULL::integer, NULL, NULL::timestamptz,
                   NULL::timestamptz, NULL::text[], NULL::timestamptz[], NULL::text[]
            FROM inserted i
            UNION ALL
            SELECT NULL, m.id, NULL, NULL, NULL, m.from_stage, m.to_sql, m.created_at, m.source_id, m.campaign,
                   m.mql_at, m.sql_at, m.entry_stages, m.entry_ats, m.entry_models
            FROM moved m WHERE cardinality(m.entry_stages) > 0
            ORDER BY 1
            """,  # noqa: S608 -- names from the models, values bound
            {
                **params,
                **first_moves_params(as_of=self.as_of, model=spec.model_slug),
                "counted": list(COUNTED_STAGES),
            },
        )
        changes: list[StageChange] = []
        moves: dict[int, LeadMove] = {}
        added: dict[int, list[Entry]] = {}
        rows = self.cursor.fetchall()
        for change_id, lead_id, from_stage, to_stage, value, *_mover in rows:
            if change_id is not None:  # the StageChanges come first, in id order
                changes.append(
                    StageChange(
                        id=change_id,
                        lead_id=lead_id,
                        from_stage=from_stage,
                        to_stage=to_stage,
                        at=self.as_of,
                        qualified_by=[spec.model_slug],
                        ruleset_version=spec.version,
                        score=value,
                    )
                )
                added.setdefault(lead_id, []).append(Entry.of(changes[-1]))
        for (
            change_id,
            lead_id,
            *_change,
            lead_from_stage,
            to_sql,
            created_at,
            source_id,
            campaign,
            mql_at,
            sql_at,
            entry_stages,
            entry_ats,
            entry_models,
        ) in rows:
            if change_id is None:  # a mover with entries before (first_moves_sql counted the others)
                before = LeadFacts(created_at, source_id, campaign, lead_from_stage, mql_at, sql_at)
                history = [
                    Entry(stage, at, tuple(json.loads(models)))
                    for stage, at, models in zip(entry_stages, entry_ats, entry_models, strict=True)
                ]
                moved_to = LeadFacts(
                    created_at,
                    source_id,
                    campaign,
                    Stage.SQL if to_sql else Stage.MQL,
                    mql_at or self.as_of,
                    self.as_of if to_sql else sql_at,
                )
                moves[lead_id] = LeadMove(before, moved_to, history, added.get(lead_id, []))
        rollups_record(moves.values())  # the movers with history: one insert per rollup table
        return changes


@contextmanager
def scores_table(
    spec: RuleSetSpec, as_of: datetime, *, after: int | None = None, upto: int = 0
) -> Iterator[ScoresTable]:
    """Compute every lead's scores (or, with ``after``, those of the leads with ids in
    (after, upto]: one chunk of a rescore split across workers) in one pass over the
    events into ``SCORES_TABLE`` (again on a resume: it is derived data), for the block
    to walk; dropped after it. After an error the table is left to the session (the
    next run drops it first)."""
    sql, params = scores_sql(spec, lead_range=after is not None)
    params.update(as_of=as_of, after=after, upto=upto)
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {SCORES_TABLE}")
        cursor.execute(f"SET work_mem = '{SCORES_WORK_MEM}'")
        if after is not None:
            # A chunk's plan is costed like a big query, so PostgreSQL compiles it (JIT): 2.1 s
            # of a 4.6 s chunk at 1M leads, measured, for a query that runs once.
            cursor.execute("SET jit = off")
        cursor.execute(f"CREATE TEMP TABLE {SCORES_TABLE} AS {sql}", params)  # noqa: S608 -- generated, parameterised
        cursor.execute(f"ALTER TABLE {SCORES_TABLE} ADD PRIMARY KEY (id)")
        # Without statistics each chunk_end plans a range scan and a sort (175 ms at 1M
        # leads) instead of an index scan (4 ms): bench/RESULTS.md, "Rescore".
        cursor.execute(f"ANALYZE {SCORES_TABLE}")
        yield ScoresTable(cursor, spec, as_of)
        cursor.execute(f"DROP TABLE IF EXISTS {SCORES_TABLE}")
        cursor.execute("RESET work_mem")
        cursor.execute("RESET jit")
