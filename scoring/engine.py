"""The scoring engine: one definition of what a rule means, in Python and in SQL.

Every comparison, the decay and the rounding are written twice here, side by
side — ``*_matches``/``*_value`` for the single-lead engine (incremental scoring,
explain, SQLite) and ``*_sql`` for the bulk engine (PostgreSQL; ``scoring.bulk``
assembles them into one query over the tables) — and a property test proves both
give identical scores. The rules of the game:

* Text compares ASCII-case-insensitively (``Software`` equals ``software``);
  a rule value that is a number compares numerically with attributes that look
  like decimal numbers. Objects and lists in properties/traits never match,
  except ``exists``.
* An event's points decay as ``points × 0.5 ** (age_days / half_life)``, with the
  age taken in whole microseconds; each decayed term is rounded to 6 decimals
  (via the 15 significant digits PostgreSQL uses for float→numeric), so sums are
  exact decimals in both engines.
* A behaviour rule's total is capped (positive caps bound from above, negative
  from below), then rounded to 2 decimals: its *contribution*. The score is the
  exact sum of contributions, so explanations always add up. A rule may opt out of
  decay (``decays``): its events keep their full points.
* The fit grade is the best letter whose threshold the fit reaches (A–D), else F.
* A hand-raise counts only inside the model's intent window: ``last_intent_at`` is
  the latest intent event at most ``intent_window_days`` before the moment scored.
* A suppression rule (an attribute condition, or any event of a type, optionally
  with a property condition) marks the lead suppressed; it has no points and never
  decays. The first matching suppression rule (in rule order) is recorded.
* For a recycled lead, ``behaviour_since`` is the behaviour score computed from its
  events after ``recycled_at`` alone (each rule capped and rounded the same way):
  what requalification as MQL asks for.
"""

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Protocol

NUMBER_RE = re.compile(r"-?[0-9]+(\.[0-9]+)?")
NUMBER_SQL_RE = r"^-?[0-9]+(\.[0-9]+)?$"
PATH_SEGMENT_RE = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_LOWER = "abcdefghijklmnopqrstuvwxyz"
_ASCII_LOWER = str.maketrans(_UPPER, _LOWER)
TERM_QUANTUM = Decimal("0.000001")
CENT = Decimal("0.01")
ZERO = Decimal("0")
MICROS_PER_DAY = 86_400_000_000.0

# Lead attributes fit rules may test, with their SQL: ``l`` is the lead table and
# ``{field}`` the column of that Lead field (see ``lead_attribute_sql``).
LEAD_ATTRIBUTES: dict[str, str] = {
    "email_domain": "split_part(l.{email}, '@', 2)",
    "name": "l.{name}",
    "company": "l.{company}",
    "job_title": "l.{job_title}",
    "industry": "l.{industry}",
    "country": "l.{country}",
    "company_size": "l.{company_size}::text",
    "utm_source": "l.{utm_source}",
    "utm_medium": "l.{utm_medium}",
    "utm_campaign": "l.{utm_campaign}",
}
TRAIT_PREFIX = "traits."


# --- Values ----------------------------------------------------------------------------
def fold(text: str) -> str:
    return text.translate(_ASCII_LOWER)


def scalar_text(value: Any) -> str | None:
    """The text PostgreSQL's ``->>`` gives for a JSON scalar; None for null, objects, lists."""
    if value is None or isinstance(value, dict | list):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return str(value)


def as_number(text: str | None) -> Decimal | None:
    if text is None or not NUMBER_RE.fullmatch(text):
        return None
    return Decimal(text)


def lead_attribute(lead: dict[str, Any], attribute: str) -> str | None:
    if attribute.startswith(TRAIT_PREFIX):
        return json_path_text(lead.get("traits") or {}, attribute[len(TRAIT_PREFIX) :])
    if attribute == "email_domain":
        email = lead.get("email")
        return email.split("@")[1] if email and "@" in email else ("" if email is not None else None)
    return scalar_text(lead.get(attribute))


def json_path_text(document: dict[str, Any], path: str) -> str | None:
    value: Any = document
    for segment in path.split("."):
        if not isinstance(value, dict) or segment not in value:
            return None
        value = value[segment]
    return scalar_text(value)


class ColumnNames(Protocol):
    """The quoted column of each of a model's fields, by field name (``leadflow.db.SqlNames``)."""

    def __getitem__(self, field: str) -> str: ...


def lead_attribute_sql(attribute: str, lead: ColumnNames) -> str:
    """``lead_attribute`` in SQL over the lead table ``l``, whose columns ``lead`` names."""
    if attribute.startswith(TRAIT_PREFIX):
        return json_path_sql(f"l.{lead['traits']}", attribute[len(TRAIT_PREFIX) :])
    return LEAD_ATTRIBUTES[attribute].format_map(lead)


def json_path_sql(column: str, path: str) -> str:
    """Text of the JSON scalar at ``path`` (NULL for absent, null, objects, lists).
    Segments are validated identifiers, so the path is inlined as a literal."""
    segments = path.split(".")
    if not all(PATH_SEGMENT_RE.match(segment) for segment in segments):
        raise ValueError(f"Invalid path {path!r}")
    literal = "'{" + ",".join(segments) + "}'::text[]"
    scalar = f"jsonb_typeof({column} #> {literal}) IN ('string', 'number', 'boolean')"
    return f"(CASE WHEN {scalar} THEN {column} #>> {literal} END)"


# --- Conditions ------------------------------------------------------------------------
def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def _equals(text: str | None, expected: Any) -> bool:
    if text is None:
        return False
    if _is_number(expected):
        number = as_number(text)
        return number is not None and number == Decimal(str(expected))
    expected_text = scalar_text(expected)
    return expected_text is not None and fold(text) == fold(expected_text)


def condition_matches(text: str | None, operator: str, expected: Any) -> bool:
    if operator == "exists":
        return text is not None and text != ""
    if operator == "eq":
        return _equals(text, expected)
    if operator == "neq":
        return not _equals(text, expected)
    if operator == "in":
        return any(_equals(text, item) for item in expected)
    if operator == "contains":
        return text is not None and fold(str(expected)) in fold(text)
    number = as_number(text)
    if number is None:
        return False
    if operator == "gte":
        return number >= Decimal(str(expected))
    if operator == "lte":
        return number <= Decimal(str(expected))
    raise ValueError(f"Unknown operator {operator!r}")


def _fold_sql(expression: str) -> str:
    # Under the C collation lower() folds exactly A-Z, byte by byte, like ``fold``; the
    # database's default collation may fold more (É). 10x cheaper than translate().
    return f'lower(({expression}) COLLATE "C")'


def _number_sql(expression: str) -> str:
    return f"(CASE WHEN {expression} ~ '{NUMBER_SQL_RE}' THEN ({expression})::numeric END)"


def _equals_sql(expression: str, expected: Any) -> tuple[str, list[Any]]:
    if _is_number(expected):
        return f"({_number_sql(expression)} = %s)", [Decimal(str(expected))]
    return f"({_fold_sql(expression)} = %s)", [fold(scalar_text(expected) or "")]


def condition_sql(expression: str, operator: str, expected: Any) -> tuple[str, list[Any]]:
    """SQL (never NULL) for the condition on ``expression``, and its parameters."""
    if operator == "exists":
        return f"COALESCE({expression} <> '', false)", []
    if operator in ("eq", "neq"):
        sql, params = _equals_sql(expression, expected)
        sql = f"COALESCE({sql}, false)"
        return (f"NOT {sql}" if operator == "neq" else sql), params
    if operator == "in":
        parts, params = [], []
        texts = []
        for item in expected:
            if _is_number(item):
                sql, extra = _equals_sql(expression, item)
                parts.append(sql)
                params += extra
            else:
                texts.append(fold(scalar_text(item) or ""))
        if texts:  # one test for every text item
            parts.append(f"({_fold_sql(expression)} = ANY(%s))")
            params.append(texts)
        if not parts:
            return "false", []
        return f"COALESCE(({' OR '.join(parts)}), false)", params
    if operator == "contains":
        return f"COALESCE(strpos({_fold_sql(expression)}, %s) > 0, false)", [fold(str(expected))]
    if operator in ("gte", "lte"):
        symbol = ">=" if operator == "gte" else "<="
        return f"COALESCE({_number_sql(expression)} {symbol} %s, false)", [Decimal(str(expected))]
    raise ValueError(f"Unknown operator {operator!r}")


# --- Rules -----------------------------------------------------------------------------
@dataclass(frozen=True)
class RuleSpec:
    """An immutable copy of a Rule, as the engines evaluate it."""

    id: int
    kind: str
    name: str
    points: Decimal
    event_type: str = ""
    attribute: str = ""
    operator: str = ""
    value: Any = None
    max_points: Decimal | None = None
    window_days: int | None = None
    decays: bool = True

    @property
    def has_condition(self) -> bool:
        return bool(self.attribute and self.operator)


GRADE_LETTERS = ("A", "B", "C", "D")
WORST_GRADE = "F"


@dataclass(frozen=True)
class RuleSetSpec:
    version: int
    mql_threshold: Decimal
    sql_threshold: Decimal
    intent_event_types: tuple[str, ...]
    sql_min_fit: Decimal | None
    decay_half_life_days: Decimal | None
    rules: tuple[RuleSpec, ...]
    model_id: int = 0
    model_slug: str = ""
    # The lowest fit of grades A, B, C and D.
    grade_thresholds: tuple[Decimal, Decimal, Decimal, Decimal] = (
        Decimal("30"),
        Decimal("20"),
        Decimal("10"),
        Decimal("0"),
    )
    mql_min_grade: str = ""
    sql_min_grade: str = ""
    intent_window_days: int = 90
    requalify_threshold: Decimal = Decimal("15")

    @property
    def fit_rules(self) -> list[RuleSpec]:
        return [rule for rule in self.rules if rule.kind == "fit"]

    @property
    def behaviour_rules(self) -> list[RuleSpec]:
        return [rule for rule in self.rules if rule.kind == "behaviour"]

    @property
    def suppress_rules(self) -> list[RuleSpec]:
        return [rule for rule in self.rules if rule.kind == "suppress"]

    @property
    def event_types(self) -> set[str]:
        counted = {rule.event_type for rule in self.behaviour_rules}
        suppressing = {rule.event_type for rule in self.suppress_rules if rule.event_type}
        return counted | suppressing | set(self.intent_event_types)

    def rule(self, rule_id: int | None) -> RuleSpec | None:
        return next((rule for rule in self.rules if rule.id == rule_id), None)


def grade(fit: Decimal, spec: RuleSetSpec) -> str:
    for letter, threshold in zip(GRADE_LETTERS, spec.grade_thresholds, strict=True):
        if fit >= threshold:
            return letter
    return WORST_GRADE


def grade_sql(fit_sql: str, thresholds: Sequence[str]) -> str:
    """``grade`` in SQL; ``thresholds`` are the placeholders of the four thresholds."""
    cases = " ".join(
        f"WHEN {fit_sql} >= {threshold} THEN '{letter}'"
        for letter, threshold in zip(GRADE_LETTERS, thresholds, strict=True)
    )
    return f"(CASE {cases} ELSE '{WORST_GRADE}' END)"


def grade_reaches(grade: str, minimum: str) -> bool:
    """A grade at least as good as ``minimum`` (empty: any grade). Letters sort best first."""
    return not minimum or grade <= minimum


def rule_half_life(rule: RuleSpec, half_life: Decimal | None) -> Decimal | None:
    """The half-life a rule's events decay with: none for a rule that opted out."""
    return half_life if rule.decays else None


def decayed_term(points: Decimal, occurred_at: datetime, as_of: datetime, half_life: Decimal | None) -> Decimal:
    if half_life is None:
        return points
    age = max(as_of - occurred_at, timedelta(0))
    micros = (age.days * 86_400 + age.seconds) * 1_000_000 + age.microseconds
    value = float(points) * 0.5 ** (micros / MICROS_PER_DAY / float(half_life))
    return Decimal(f"{value:.15g}").quantize(TERM_QUANTUM, rounding=ROUND_HALF_UP)


def decayed_term_sql(points_sql: str, occurred_at_sql: str, half_life: Decimal | None) -> str:
    """SQL of one event's decayed points; expects the parameter ``%(as_of)s``."""
    if half_life is None:
        return points_sql
    micros = f"(GREATEST(EXTRACT(EPOCH FROM (%(as_of)s - {occurred_at_sql})), 0) * 1000000)::float8"
    exponent = f"{micros} / 86400000000.0::float8 / {float(half_life)!r}::float8"
    return f"ROUND(({points_sql}::float8 * power(0.5::float8, {exponent}))::numeric, 6)"


def cap(total: Decimal, max_points: Decimal | None) -> Decimal:
    if max_points is None:
        return total
    return min(total, max_points) if max_points > 0 else max(total, max_points)


def contribution(total: Decimal, max_points: Decimal | None) -> Decimal:
    return cap(total, max_points).quantize(CENT, rounding=ROUND_HALF_UP)


def in_window(rule: RuleSpec, occurred_at: datetime, as_of: datetime) -> bool:
    return rule.window_days is None or occurred_at >= as_of - timedelta(days=rule.window_days)


# --- The single-lead engine --------------------------------------------------------------
@dataclass
class EventRow:
    type: str
    properties: dict[str, Any]
    occurred_at: datetime
    id: int = 0


@dataclass
class RuleResult:
    rule: RuleSpec
    matched: int = 0
    first_at: datetime | None = None
    last_at: datetime | None = None
    raw_total: Decimal = ZERO
    contribution: Decimal = ZERO
    capped: bool = False
    decayed: bool = False
    event_ids: list[int] = field(default_factory=list)


@dataclass
class LeadScore:
    fit: Decimal
    behaviour: Decimal
    results: list[RuleResult]
    last_intent_at: datetime | None
    grade: str = WORST_GRADE
    suppressed_by: int | None = None
    behaviour_since: Decimal | None = None

    @property
    def total(self) -> Decimal:
        return self.fit + self.behaviour


def event_matches(rule: RuleSpec, event: EventRow) -> bool:
    if event.type != rule.event_type:
        return False
    if not rule.has_condition:
        return True
    return condition_matches(json_path_text(event.properties, rule.attribute), rule.operator, rule.value)


def suppressing_rule(lead: dict[str, Any], events: Sequence[EventRow], ruleset: RuleSetSpec) -> int | None:
    """The id of the first suppression rule (in rule order) the lead matches, if any."""
    for rule in ruleset.suppress_rules:
        if rule.event_type:
            if any(event_matches(rule, event) for event in events):
                return rule.id
        elif condition_matches(lead_attribute(lead, rule.attribute), rule.operator, rule.value):
            return rule.id
    return None


def score_lead(
    lead: dict[str, Any],
    events: Iterable[EventRow],
    ruleset: RuleSetSpec,
    as_of: datetime,
    recycled_at: datetime | None = None,
) -> LeadScore:
    """Score one lead from its attributes and events (all of them, any order). With
    ``recycled_at`` (a recycled lead), also its behaviour since then."""
    results = []
    fit = ZERO
    for rule in ruleset.fit_rules:
        matched = condition_matches(lead_attribute(lead, rule.attribute), rule.operator, rule.value)
        points = rule.points if matched else ZERO
        fit += points
        results.append(RuleResult(rule=rule, matched=int(matched), raw_total=points, contribution=points))

    ordered = sorted(events, key=lambda event: (event.occurred_at, event.id))
    intent_types = set(ruleset.intent_event_types)
    window_start = as_of - timedelta(days=ruleset.intent_window_days)
    last_intent_at = max(
        (e.occurred_at for e in ordered if e.type in intent_types and e.occurred_at >= window_start), default=None
    )
    behaviour = ZERO
    since = None if recycled_at is None else ZERO
    for rule in ruleset.behaviour_rules:
        half_life = rule_half_life(rule, ruleset.decay_half_life_days)
        result = RuleResult(rule=rule, decayed=half_life is not None)
        since_total = ZERO
        for event in ordered:
            if event_matches(rule, event) and in_window(rule, event.occurred_at, as_of):
                term = decayed_term(rule.points, event.occurred_at, as_of, half_life)
                result.matched += 1
                result.first_at = result.first_at or event.occurred_at
                result.last_at = event.occurred_at
                result.raw_total += term
                result.event_ids.append(event.id)
                if recycled_at is not None and event.occurred_at > recycled_at:
                    since_total += term
        result.contribution = contribution(result.raw_total, rule.max_points)
        result.capped = cap(result.raw_total, rule.max_points) != result.raw_total
        behaviour += result.contribution
        if since is not None:
            since += contribution(since_total, rule.max_points)
        results.append(result)
    return LeadScore(
        fit=fit,
        behaviour=behaviour,
        results=results,
        last_intent_at=last_intent_at,
        grade=grade(fit, ruleset),
        suppressed_by=suppressing_rule(lead, ordered, ruleset),
        behaviour_since=since,
    )


def rule_matches(rule: RuleSpec, lead: dict[str, Any], events: Iterable[EventRow], as_of: datetime) -> bool:
    """Whether the rule matches the lead at all, points aside (the what-if preview counts
    the leads each rule matches): a fit rule's or an attribute suppression's condition
    holds; a behaviour rule has at least one matching event in its window; an event
    suppression has any matching event. ``scoring.bulk.rule_match_counts_sql`` is the SQL twin."""
    if not rule.event_type:
        return condition_matches(lead_attribute(lead, rule.attribute), rule.operator, rule.value)
    windowed = rule.kind == "behaviour"
    return any(
        event_matches(rule, event) and (not windowed or in_window(rule, event.occurred_at, as_of)) for event in events
    )


# --- Qualification (one model's criteria; ``bulk.ScoresTable.transitions`` is the SQL twin) ---
@dataclass(frozen=True)
class Criterion:
    """One of a model's qualification criteria, and whether the lead meets it. The keys:
    ``suppression`` (listed only when a suppression rule matched), ``score``, ``grade``
    (only when the model asks for a minimum grade), ``requalification`` (MQL, a recycled
    lead), ``intent`` and ``fit`` (SQL)."""

    key: str
    met: bool


def reaches_mql_threshold(spec: RuleSetSpec, score: Decimal) -> bool:
    """The MQL score criterion; an MQL that no longer meets it is a *stale MQL* (decay
    lowers scores but never demotes: ``scoring.selectors.LeadScores.stale_mql`` is the SQL twin)."""
    return score >= spec.mql_threshold


def reaches_sql_threshold(spec: RuleSetSpec, score: Decimal) -> bool:
    """The SQL score criterion (``sql_criteria``'s ``score``)."""
    return score >= spec.sql_threshold


def mql_criteria(
    spec: RuleSetSpec,
    *,
    score: Decimal,
    grade: str,
    suppressed: bool,
    recycled: bool,
    behaviour_since: Decimal | None,
) -> list[Criterion]:
    """The model's MQL criteria: not suppressed, the score and the grade reach the
    model's minimums, and a recycled lead has earned the requalification threshold in
    behaviour points since its recycling."""
    criteria = [Criterion("suppression", False)] if suppressed else []
    criteria.append(Criterion("score", reaches_mql_threshold(spec, score)))
    if spec.mql_min_grade:
        criteria.append(Criterion("grade", grade_reaches(grade, spec.mql_min_grade)))
    if recycled:
        earned = behaviour_since is not None and behaviour_since >= spec.requalify_threshold
        criteria.append(Criterion("requalification", earned))
    return criteria


def qualifies_mql(
    spec: RuleSetSpec,
    *,
    score: Decimal,
    grade: str,
    suppressed: bool,
    recycled: bool,
    behaviour_since: Decimal | None,
) -> bool:
    """Whether every one of ``mql_criteria`` holds."""
    criteria = mql_criteria(
        spec, score=score, grade=grade, suppressed=suppressed, recycled=recycled, behaviour_since=behaviour_since
    )
    return all(criterion.met for criterion in criteria)


def sql_criteria(
    spec: RuleSetSpec,
    *,
    score: Decimal,
    fit: Decimal,
    grade: str,
    suppressed: bool,
    last_intent_at: datetime | None,
    recycled_at: datetime | None,
) -> list[Criterion]:
    """The model's SQL criteria: not suppressed, a hand-raise inside the intent window
    (after the recycling, for a recycled lead), the score, the fit and the grade reach
    the model's minimums (``fit`` always listed: met when the model sets no minimum)."""
    criteria = [Criterion("suppression", False)] if suppressed else []
    intent = last_intent_at is not None and (recycled_at is None or last_intent_at > recycled_at)
    criteria.append(Criterion("score", reaches_sql_threshold(spec, score)))
    criteria.append(Criterion("fit", spec.sql_min_fit is None or fit >= spec.sql_min_fit))
    criteria.append(Criterion("intent", intent))
    if spec.sql_min_grade:
        criteria.append(Criterion("grade", grade_reaches(grade, spec.sql_min_grade)))
    return criteria


def qualifies_sql(
    spec: RuleSetSpec,
    *,
    score: Decimal,
    fit: Decimal,
    grade: str,
    suppressed: bool,
    last_intent_at: datetime | None,
    recycled_at: datetime | None,
) -> bool:
    """Whether every one of ``sql_criteria`` holds."""
    criteria = sql_criteria(
        spec,
        score=score,
        fit=fit,
        grade=grade,
        suppressed=suppressed,
        last_intent_at=last_intent_at,
        recycled_at=recycled_at,
    )
    return all(criterion.met for criterion in criteria)
