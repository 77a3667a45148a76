"""The bulk engine (PostgreSQL): every lead's scores in one set-based query, and the
statements of a full rescore built on it. All of the bulk rescore's SQL is here.

``scores_sql`` is the query. Its pieces — each condition, the decay, the rounding —
are ``scoring.engine``'s ``*_sql`` functions, written beside their Python twins (the
single-lead engine), and a property test proves that both engines give identical
scores. Table and column names come from the models (``SqlNames``); every value —
rule values, thresholds, stages — is a bound parameter.

A full rescore (``scoring.services.rescore_run_execute``) computes the scores once into
a temporary table (``scores_table``) and walks it in chunks of lead ids: per chunk,
``ScoresTable.write`` stores the scores and ``ScoresTable.transition_candidates`` lists
the leads whose new score may move their stage. The services hold the transactions,
the run's lease and the stage transitions themselves.
"""

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connection, transaction

from leadflow.db import SqlNames
from leadflow.leads.models import Event, Lead, Stage
from scoring.engine import RuleSetSpec, condition_sql, decayed_term_sql, json_path_sql, lead_attribute_sql

# The scores of a full rescore: a temporary table of the session, so of one run.
SCORES_TABLE = "rescore_scores"
# For the one pass over the events (a hash aggregate of every lead) to stay in memory.
SCORES_WORK_MEM = "256MB"


def scores_sql(ruleset: RuleSetSpec) -> tuple[str, dict[str, Any]]:
    """One set-based query giving, per lead: ``id``, ``fit``, ``behaviour`` and
    ``last_intent_at``. Parameters are named; the caller supplies ``%(as_of)s``. Every
    identifier and literal in the text is generated here; every value is a bound parameter."""
    lead, event = SqlNames(Lead), SqlNames(Event)
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

    fit_terms = []
    for rule in ruleset.fit_rules:
        condition, condition_params = condition_sql(lead_attribute_sql(rule.attribute, lead), rule.operator, rule.value)
        (points,) = bind([rule.points])
        fit_terms.append(f"CASE WHEN {bound(condition, condition_params)} THEN {points} ELSE 0 END")
    fit_sql = " + ".join(fit_terms) or "0"

    rules = list(ruleset.behaviour_rules)
    behaviour_sql, behaviour_join = "0.00", ""
    if rules:
        rows, conditions = [], []
        for index, rule in enumerate(rules):
            window = timedelta(days=rule.window_days) if rule.window_days is not None else None
            event_type, points, window_length, max_points = bind(
                [rule.event_type, rule.points, window, rule.max_points]
            )
            rows.append(
                f"({index}, {event_type}::text, {points}::numeric, {window_length}::interval, {max_points}::numeric)"
            )
            if rule.has_condition:
                expression = json_path_sql(f"e.{event.properties}", rule.attribute)
                condition, condition_params = condition_sql(expression, rule.operator, rule.value)
                conditions.append(f"WHEN {index} THEN {bound(condition, condition_params)}")
        # Inline VALUES, not a CTE: the planner then aggregates the events in parallel workers.
        rules_sql = f"(VALUES {', '.join(rows)}) AS r(idx, type, points, window_length, max_points)"
        condition_test = f"AND CASE r.idx {' '.join(conditions)} ELSE true END" if conditions else ""
        term = decayed_term_sql("r.points", f"e.{event.occurred_at}", ruleset.decay_half_life_days)
        capped = (
            "CASE WHEN r.max_points IS NULL THEN p.total WHEN r.max_points > 0 THEN LEAST(p.total, r.max_points)"
            " ELSE GREATEST(p.total, r.max_points) END"
        )
        # Each event meets only the rules of its type: one decayed term per (event, rule),
        # summed per (lead, rule), then capped and rounded per rule and added per lead.
        behaviour_join = f"""
        LEFT JOIN (
            SELECT p.lead_id, SUM(ROUND({capped}, 2)) AS behaviour
            FROM (
                SELECT e.{event.lead} AS lead_id, r.idx, SUM({term}) AS total
                FROM {event.table} e
                JOIN {rules_sql}
                  ON r.type = e.{event.type}
                 AND (r.window_length IS NULL OR e.{event.occurred_at} >= %(as_of)s - r.window_length)
                 {condition_test}
                GROUP BY e.{event.lead}, r.idx
            ) p
            JOIN {rules_sql} ON r.idx = p.idx
            GROUP BY p.lead_id
        ) b ON b.lead_id = l.{lead.id}"""  # noqa: S608
        behaviour_sql = "COALESCE(b.behaviour, 0.00)"

    intent = bind([list(ruleset.intent_event_types)])[0]
    sql = f"""
        SELECT l.{lead.id} AS id,
               ({fit_sql})::numeric AS fit,
               ({behaviour_sql})::numeric AS behaviour,
               i.last_intent_at
        FROM {lead.table} l{behaviour_join}
        LEFT JOIN (
            SELECT e.{event.lead} AS lead_id, MAX(e.{event.occurred_at}) AS last_intent_at
            FROM {event.table} e
            WHERE e.{event.type} = ANY({intent})
            GROUP BY e.{event.lead}
        ) i ON i.lead_id = l.{lead.id}
    """  # noqa: S608
    return sql, params


def scores_stream(spec: RuleSetSpec, as_of: datetime) -> Iterator[tuple[int, Decimal, Decimal, datetime | None]]:
    """``scores_sql``'s rows as of ``as_of``, streamed through a server-side cursor."""
    sql, params = scores_sql(spec)
    params["as_of"] = as_of
    with transaction.atomic(), connection.connection.cursor(name="iter_scores") as cursor:
        cursor.itersize = 5000
        cursor.execute(sql, params)
        yield from cursor


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
        """Store the scores of the leads with ids in (after, upto]; returns how many. A lead
        changed after ``as_of`` keeps its ``needs_rescore`` flag: its own scoring follows."""
        lead = SqlNames(Lead)
        self.cursor.execute(
            f"""
            UPDATE {lead.table} l
            SET {lead.fit_score} = s.fit, {lead.behaviour_score} = s.behaviour, {lead.score} = s.fit + s.behaviour,
                {lead.scored_at} = %(as_of)s, {lead.ruleset_version} = %(version)s,
                {lead.needs_rescore} = (l.{lead.needs_rescore} AND l.{lead.updated_at} > %(as_of)s)
            FROM {SCORES_TABLE} s
            WHERE l.{lead.id} = s.id AND s.id > %(after)s AND s.id <= %(upto)s
            """,  # noqa: S608 -- names from the model
            {"as_of": self.as_of, "version": self.spec.version, "after": after, "upto": upto},
        )
        return int(self.cursor.rowcount)

    def transition_candidates(self, *, after: int, upto: int) -> list[tuple[int, datetime | None]]:
        """(lead id, last intent) of the leads with ids in (after, upto] whose stored stage
        and new score may call for an automatic transition. Only a narrowing: the rule
        that decides is ``scoring.services.automatic_path``."""
        lead = SqlNames(Lead)
        self.cursor.execute(
            f"""
            SELECT s.id, s.last_intent_at FROM {SCORES_TABLE} s JOIN {lead.table} l ON l.{lead.id} = s.id
            WHERE s.id > %(after)s AND s.id <= %(upto)s
              AND ((l.{lead.stage} IN (%(new)s, %(recycled)s) AND s.fit + s.behaviour >= %(mql)s)
                OR (l.{lead.stage} = %(at_mql)s AND s.fit + s.behaviour >= %(sql)s AND s.last_intent_at IS NOT NULL))
            ORDER BY s.id
            """,  # noqa: S608 -- names from the model
            {
                "after": after,
                "upto": upto,
                "new": Stage.NEW,
                "recycled": Stage.RECYCLED,
                "at_mql": Stage.MQL,
                "mql": self.spec.mql_threshold,
                "sql": self.spec.sql_threshold,
            },
        )
        return list(self.cursor.fetchall())


@contextmanager
def scores_table(spec: RuleSetSpec, as_of: datetime) -> Iterator[ScoresTable]:
    """Compute every lead's scores in one pass over the events into ``SCORES_TABLE``
    (again on a resume: it is derived data), for the block to walk; dropped after it.
    After an error the table is left to the session (the next run drops it first)."""
    sql, params = scores_sql(spec)
    params["as_of"] = as_of
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {SCORES_TABLE}")
        cursor.execute(f"SET work_mem = '{SCORES_WORK_MEM}'")
        cursor.execute(f"CREATE TEMP TABLE {SCORES_TABLE} AS {sql}", params)  # noqa: S608 -- generated, parameterised
        cursor.execute(f"ALTER TABLE {SCORES_TABLE} ADD PRIMARY KEY (id)")
        yield ScoresTable(cursor, spec, as_of)
        cursor.execute(f"DROP TABLE IF EXISTS {SCORES_TABLE}")
        cursor.execute("RESET work_mem")
