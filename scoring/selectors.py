"""Reads of scoring: rulesets and their engine specs, rescore runs, and what the engine
says of leads without writing anything: the lead as the engine reads it, every lead's
score streamed, the stages a score moves a lead through, a lead's score explained rule
by rule, and a draft's what-if preview."""

import heapq
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import connection
from django.db.models import (
    BooleanField,
    CharField,
    DecimalField,
    ExpressionWrapper,
    F,
    FilteredRelation,
    Q,
    QuerySet,
    Subquery,
    Value,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from leadflow.leads.models import LEAD_PROFILE_FIELDS, LEAD_UTM_FIELDS, Event, Lead, Stage
from leadflow.leads.scores import ModelScore, Qualification, UnknownModel
from scoring import bulk, engine
from scoring.engine import EventRow, LeadScore, RuleSetSpec, RuleSpec
from scoring.models import RULESET_FIELDS, RescoreRun, Rule, RuleKind, RuleSet, RuleSetStatus, Score, ScoringModel
from scoring.qualification import lead_qualification

# The lead's fields the engine reads: ``engine.LEAD_ATTRIBUTES`` are these and the
# e-mail's domain, and ``traits.<key>`` reads the traits.
LEAD_ATTRIBUTE_FIELDS = ["email", *LEAD_PROFILE_FIELDS, *LEAD_UTM_FIELDS, "traits"]
SCORE_CHUNK = 1000


# --- Rulesets and runs ---------------------------------------------------------------------
def rule_spec(rule: Rule) -> RuleSpec:
    return RuleSpec(
        id=rule.pk,
        kind=rule.kind,
        name=rule.name,
        points=rule.points,
        event_type=rule.event_type,
        attribute=rule.attribute,
        operator=rule.operator,
        value=rule.value,
        max_points=rule.max_points,
        window_days=rule.window_days,
        decays=rule.decays,
    )


def ruleset_spec(ruleset: RuleSet) -> RuleSetSpec:
    return RuleSetSpec(
        version=ruleset.version,
        mql_threshold=ruleset.mql_threshold,
        sql_threshold=ruleset.sql_threshold,
        intent_event_types=tuple(ruleset.intent_event_types),
        sql_min_fit=ruleset.sql_min_fit,
        decay_half_life_days=ruleset.decay_half_life_days,
        rules=tuple(rule_spec(rule) for rule in ruleset.rules.all()),
        model_id=ruleset.model_id,
        model_slug=ruleset.model.slug,
        grade_thresholds=(ruleset.grade_a_min, ruleset.grade_b_min, ruleset.grade_c_min, ruleset.grade_d_min),
        mql_min_grade=ruleset.mql_min_grade,
        sql_min_grade=ruleset.sql_min_grade,
        intent_window_days=ruleset.intent_window_days,
        requalify_threshold=ruleset.requalify_threshold,
    )


def ruleset_list() -> QuerySet[RuleSet]:
    """Rulesets with their model, rules and the people who created and published them:
    every lookup of a ruleset below starts here."""
    return RuleSet.objects.select_related("model", "created_by", "published_by").prefetch_related("rules")


# --- Models ----------------------------------------------------------------------------------
def model_list() -> QuerySet[ScoringModel]:
    """Every scoring model, the default (first) first."""
    return ScoringModel.objects.order_by("position", "id")


def model_get(*, slug: str) -> ScoringModel | None:
    return model_list().filter(slug=slug).first()


def model_default() -> ScoringModel | None:
    """The model lists sort by unless asked for another: the first."""
    return model_list().first()


def published_rulesets() -> list[RuleSet]:
    """The published ruleset of every model that has one, in the models' order."""
    return list(ruleset_list().filter(status=RuleSetStatus.PUBLISHED).order_by("model__position", "model_id"))


def published_specs() -> list[RuleSetSpec]:
    return [ruleset_spec(ruleset) for ruleset in published_rulesets()]


def intent_event_types() -> frozenset[str]:
    """Every event type that is a hand-raise under some published model."""
    lists = RuleSet.objects.filter(status=RuleSetStatus.PUBLISHED).values_list("intent_event_types", flat=True)
    return frozenset(event_type for types in lists for event_type in types or ())


INTENT_TYPES_TTL_SECONDS = 5.0
_intent_types_read: tuple[float, frozenset[str]] = (float("-inf"), frozenset())


def intent_event_types_cached() -> frozenset[str]:
    """``intent_event_types``, read again after ``INTENT_TYPES_TTL_SECONDS``: the ingest asks on
    every batch, and a publish reaches the fast lane a few seconds later (an intent event
    meanwhile is scored by the ordinary pass: only its lane differs)."""
    global _intent_types_read  # noqa: PLW0603 -- a per-process cache of one small value
    read_at, types = _intent_types_read
    now = time.monotonic()
    if now - read_at > INTENT_TYPES_TTL_SECONDS:
        types = intent_event_types()
        _intent_types_read = (now, types)
    return types


def intent_event_types_forget() -> None:
    global _intent_types_read  # noqa: PLW0603
    _intent_types_read = (float("-inf"), frozenset())


def published_ruleset(model: ScoringModel | None = None) -> RuleSet | None:
    """The model's published ruleset (the default model's when none is given)."""
    model = model or model_default()
    if model is None:
        return None
    return ruleset_list().filter(status=RuleSetStatus.PUBLISHED, model=model).first()


def ruleset_by_version(version: int) -> RuleSet | None:
    return ruleset_list().filter(version=version).first()


def ruleset_specs(*, versions: Iterable[int]) -> dict[int, RuleSetSpec]:
    """The engine specs of these ruleset versions, by version (two queries however many)."""
    return {ruleset.version: ruleset_spec(ruleset) for ruleset in ruleset_list().filter(version__in=versions)}


def rescore_run_latest() -> RescoreRun | None:
    return RescoreRun.objects.select_related("ruleset").first()


# --- Leads as the engine reads them --------------------------------------------------------
def lead_attributes(lead: Lead) -> dict[str, Any]:
    return {name: getattr(lead, name) for name in LEAD_ATTRIBUTE_FIELDS}


def events_by_lead(lead_ids: Sequence[int], *specs: RuleSetSpec) -> dict[int, list[EventRow]]:
    """The events of these leads that any of the specs reads, by lead."""
    return events_of_types(lead_ids, set().union(*(spec.event_types for spec in specs)))


def events_of_types(lead_ids: Sequence[int], types: Iterable[str]) -> dict[int, list[EventRow]]:
    """The events of these leads of these types, by lead."""
    grouped: dict[int, list[EventRow]] = defaultdict(list)
    rows = Event.objects.filter(lead_id__in=lead_ids, type__in=types).values_list(
        "lead_id", "id", "type", "properties", "occurred_at"
    )
    for lead_id, event_id, event_type, properties, occurred_at in rows.iterator(chunk_size=5000):
        grouped[lead_id].append(EventRow(type=event_type, properties=properties, occurred_at=occurred_at, id=event_id))
    return grouped


def iter_scores(spec: RuleSetSpec, as_of: datetime) -> Iterator[bulk.ScoreRow]:
    """Every lead's score under ``spec`` as of ``as_of``, streamed, in id order."""
    if connection.vendor == "postgresql":
        yield from bulk.scores_stream(spec, as_of)
        return
    ids = list(Lead.objects.filter(erased_at__isnull=True).order_by("id").values_list("id", flat=True))
    for start in range(0, len(ids), SCORE_CHUNK):
        chunk = ids[start : start + SCORE_CHUNK]
        events = events_by_lead(chunk, spec)
        for lead in Lead.objects.filter(id__in=chunk).order_by("id"):
            result = engine.score_lead(lead_attributes(lead), events.get(lead.pk, []), spec, as_of, lead.recycled_at)
            yield bulk.ScoreRow.of(lead.pk, result)


# --- Where a score takes a lead --------------------------------------------------------------
@dataclass(frozen=True)
class Step:
    """One automatic transition: the stage, and the models whose criteria it meets."""

    to_stage: str
    specs: tuple[RuleSetSpec, ...]


def automatic_path(
    *, stage: str, recycled_at: datetime | None, scores: Sequence[tuple[RuleSetSpec, "bulk.ScoreRow"]]
) -> list[Step]:
    """Stages an automatic rescore moves the lead through, in order (forward only): MQL
    when any model's MQL criteria hold, then SQL when any model's SQL criteria hold
    (``engine.qualifies_mql``/``qualifies_sql``; ``scoring.bulk.ScoresTable.transitions`` is
    the SQL twin, for one model)."""
    path: list[Step] = []
    current = stage
    if current in (Stage.NEW, Stage.RECYCLED):
        recycled = current == Stage.RECYCLED
        mql = tuple(
            spec
            for spec, row in scores
            if engine.qualifies_mql(
                spec,
                score=row.score,
                grade=row.grade,
                suppressed=row.suppressed_by is not None,
                recycled=recycled,
                behaviour_since=row.behaviour_since,
            )
        )
        if mql:
            current = Stage.MQL
            path.append(Step(current, mql))
    if current == Stage.MQL:
        sql = tuple(
            spec
            for spec, row in scores
            if engine.qualifies_sql(
                spec,
                score=row.score,
                fit=row.fit,
                grade=row.grade,
                suppressed=row.suppressed_by is not None,
                last_intent_at=row.last_intent_at,
                recycled_at=recycled_at,
            )
        )
        if sql:
            path.append(Step(Stage.SQL, sql))
    return path


# --- Explain -------------------------------------------------------------------------------
@dataclass
class Explanation:
    lead: Lead
    model: ScoringModel | None
    score: Score | None
    ruleset: RuleSet | None
    as_of: datetime | None
    result: LeadScore | None
    events: dict[int, Event] = field(default_factory=dict)

    @property
    def adds_up(self) -> bool:
        return self.result is not None and self.score is not None and self.result.total == self.score.score

    @property
    def suppressed_by(self) -> Rule | None:
        """The suppression rule that keeps the lead from being promoted, if any."""
        if self.result is None or self.result.suppressed_by is None or self.ruleset is None:
            return None
        return next((rule for rule in self.ruleset.rules.all() if rule.pk == self.result.suppressed_by), None)


def lead_scores(*, lead: Lead) -> list[Score]:
    """The lead's score under every model that scored it, in the models' order."""
    return list(lead.scores.select_related("model").order_by("model__position", "model_id"))


def lead_explain(*, lead: Lead, model: ScoringModel | None = None) -> Explanation:
    """Recompute the lead's stored score under ``model`` (the default model when none is
    given) rule by rule, with the ruleset version and the moment it was scored, so that
    the contributions add up to the stored score."""
    model = model or model_default()
    score = Score.objects.filter(lead=lead, model=model).first() if model else None
    ruleset = ruleset_by_version(score.ruleset_version) if score else None
    if score is None or ruleset is None:
        return Explanation(lead=lead, model=model, score=score, ruleset=ruleset, as_of=None, result=None)
    spec = ruleset_spec(ruleset)
    as_of = score.computed_at
    events = list(lead.events.filter(type__in=spec.event_types))
    rows = [EventRow(type=e.type, properties=e.properties, occurred_at=e.occurred_at, id=e.pk) for e in events]
    result = engine.score_lead(lead_attributes(lead), rows, spec, as_of, lead.recycled_at)
    return Explanation(
        lead=lead,
        model=model,
        score=score,
        ruleset=ruleset,
        as_of=as_of,
        result=result,
        events={e.pk: e for e in events},
    )


# --- Preview -------------------------------------------------------------------------------
PREVIEW_LIST_LIMIT = 50
PREVIEW_MOVERS = 10  # the leads listed in each direction of the top movers
HISTOGRAM_WIDTH = Decimal("10")

# The ways a draft can leave a lead's stage, counted by the preview (``Preview.counts``):
# promotions the draft causes, and, among the MQLs and SQLs a publish keeps (it never
# demotes), those the draft puts below its threshold apart from those already below the
# published ruleset's. Scores "now" are the stored ones, as a stale MQL's are.
ENTER_MQL, ENTER_SQL = "enter_mql", "enter_sql"
NO_LONGER_MQL, NO_LONGER_SQL = "no_longer_mql", "no_longer_sql"
ALREADY_BELOW_MQL, ALREADY_BELOW_SQL = "already_below_mql", "already_below_sql"
BACK_ABOVE_MQL, BACK_ABOVE_SQL = "back_above_mql", "back_above_sql"
# Before the explicit categories: every MQL (SQL) below the draft's threshold, i.e.
# no longer + already below. Kept for the API's clients.
LEAVE_MQL, LEAVE_SQL = "leave_mql", "leave_sql"
PREVIEW_COUNTS = (
    ENTER_MQL,
    ENTER_SQL,
    LEAVE_MQL,
    LEAVE_SQL,
    NO_LONGER_MQL,
    NO_LONGER_SQL,
    ALREADY_BELOW_MQL,
    ALREADY_BELOW_SQL,
    BACK_ABOVE_MQL,
    BACK_ABOVE_SQL,
)
# The categories whose leads are listed (the first ``PREVIEW_LIST_LIMIT`` of each).
PREVIEW_LISTS = (
    ENTER_MQL,
    ENTER_SQL,
    LEAVE_MQL,
    LEAVE_SQL,
    NO_LONGER_MQL,
    NO_LONGER_SQL,
    ALREADY_BELOW_MQL,
    ALREADY_BELOW_SQL,
)


@dataclass
class PreviewLead:
    id: int
    score_before: Decimal
    score_after: Decimal
    stage: str
    # Who the lead is, filled in once the lists are complete.
    public_id: uuid.UUID | None = None
    email: str | None = None
    name: str = ""

    @property
    def change(self) -> Decimal:
        return self.score_after - self.score_before


# A rule's aspects the diff compares, in the order it lists their changes; "name" only
# for a rule matched by its definition (a rename).
RULE_ASPECTS = ("name", "points", "condition", "cap", "window", "decay")
# The ruleset's settings the diff compares: all a person sets but its name and description.
RULESET_COMPARED = tuple(name for name in RULESET_FIELDS if name not in ("name", "description"))


def _rule_aspects(rule: RuleSpec) -> dict[str, Any]:
    # A window, a cap and decay mean something for behaviour rules only (the others keep
    # the defaults), so comparing them on every kind never reports a change of no effect.
    behaviour = rule.kind == RuleKind.BEHAVIOUR
    return {
        "name": rule.name,
        "points": rule.points,
        "condition": (rule.event_type, rule.attribute, rule.operator, rule.value),
        "cap": rule.max_points if behaviour else None,
        "window": rule.window_days if behaviour else None,
        "decay": rule.decays if behaviour else True,
    }


@dataclass(frozen=True)
class RulePair:
    """A rule of the published ruleset (``before``) and its counterpart in the draft
    (``after``): either may be missing (a rule added or removed); ``changed`` names the
    aspects (``RULE_ASPECTS``) that differ."""

    before: RuleSpec | None
    after: RuleSpec | None
    changed: tuple[str, ...] = ()

    @property
    def rule(self) -> RuleSpec:
        """The draft's rule, or the published one for a rule removed."""
        rule = self.after or self.before
        if rule is None:
            raise ValueError("A rule pair has a rule on at least one side.")
        return rule

    @property
    def status(self) -> str:
        if self.before is None:
            return "added"
        if self.after is None:
            return "removed"
        return "changed" if self.changed else "unchanged"


def _pair(before: RuleSpec, after: RuleSpec) -> RulePair:
    old, new = _rule_aspects(before), _rule_aspects(after)
    return RulePair(before, after, tuple(aspect for aspect in RULE_ASPECTS if old[aspect] != new[aspect]))


def rules_paired(*, published: Sequence[RuleSpec], draft: Sequence[RuleSpec]) -> list[RulePair]:
    """The draft's rules matched with the published ruleset's. A clone copies rules without
    a reference to their originals, so a rule is matched by its kind and name (same-named
    rules of a kind in rule order); then a rule left over on each side with the same kind
    and definition is one rule renamed. The rest were added or removed. Draft order first,
    then the removed rules in the published order."""
    waiting: dict[tuple[str, str], list[RuleSpec]] = defaultdict(list)
    for rule in published:
        waiting[(rule.kind, rule.name)].append(rule)
    pairs: list[RulePair | None] = []
    unmatched: list[int] = []
    for rule in draft:
        same = waiting.get((rule.kind, rule.name))
        if same:
            pairs.append(_pair(same.pop(0), rule))
        else:
            pairs.append(None)
            unmatched.append(len(pairs) - 1)
    left = [rule for rules in waiting.values() for rule in rules]
    left.sort(key=lambda rule: published.index(rule))
    for index in unmatched:
        rule = draft[index]
        renamed = next((old for old in left if _pair(old, rule).changed == ("name",)), None)
        if renamed is not None:
            left.remove(renamed)
            pairs[index] = _pair(renamed, rule)
        else:
            pairs[index] = RulePair(None, rule)
    return [pair for pair in pairs if pair is not None] + [RulePair(rule, None) for rule in left]


@dataclass(frozen=True)
class SettingChange:
    """One of the ruleset's settings (``RULESET_COMPARED``) that the draft changes."""

    field: str
    before: Any
    after: Any


def ruleset_settings_changed(*, published: RuleSet, draft: RuleSet) -> list[SettingChange]:
    return [
        SettingChange(name, getattr(published, name), getattr(draft, name))
        for name in RULESET_COMPARED
        if getattr(published, name) != getattr(draft, name)
    ]


def rule_match_counts(rules: Sequence[RuleSpec], as_of: datetime) -> dict[int, int]:
    """How many current leads each rule matches, points aside, by rule id: one statement
    on PostgreSQL (``bulk.rule_match_counts``); elsewhere the Python twin
    (``engine.rule_matches``), a chunk of leads at a time."""
    if connection.vendor == "postgresql" or not rules:
        return bulk.rule_match_counts(rules, as_of)
    counts = dict.fromkeys((rule.id for rule in rules), 0)
    types = {rule.event_type for rule in rules if rule.event_type}
    ids = list(Lead.objects.filter(erased_at__isnull=True).order_by("id").values_list("id", flat=True))
    for start in range(0, len(ids), SCORE_CHUNK):
        chunk = ids[start : start + SCORE_CHUNK]
        events = events_of_types(chunk, types)
        for lead in Lead.objects.filter(id__in=chunk).only(*LEAD_ATTRIBUTE_FIELDS):
            attributes = lead_attributes(lead)
            for rule in rules:
                if engine.rule_matches(rule, attributes, events.get(lead.pk, []), as_of):
                    counts[rule.id] += 1
    return counts


@dataclass
class Preview:
    ruleset_version: int
    published_version: int | None = None
    leads: int = 0
    stages_before: dict[str, int] = field(default_factory=dict)
    stages_after: dict[str, int] = field(default_factory=dict)
    # The first ``PREVIEW_LIST_LIMIT`` leads of each of ``PREVIEW_LISTS``, by key.
    listed: dict[str, list[PreviewLead]] = field(default_factory=lambda: {key: [] for key in PREVIEW_LISTS})
    counts: dict[str, int] = field(default_factory=dict)
    histogram_before: dict[str, int] = field(default_factory=dict)
    histogram_after: dict[str, int] = field(default_factory=dict)
    # The leads whose score the draft raises most, and lowers most (``PREVIEW_MOVERS`` each).
    movers_up: list[PreviewLead] = field(default_factory=list)
    movers_down: list[PreviewLead] = field(default_factory=list)
    # The draft against the published ruleset: its rules paired, its settings changed,
    # and how many leads each rule matches (draft rules, and the published rules removed
    # or changed), by rule id.
    rule_pairs: list[RulePair] = field(default_factory=list)
    settings_changed: list[SettingChange] = field(default_factory=list)
    matches: dict[int, int] = field(default_factory=dict)

    @property
    def enter_mql(self) -> list[PreviewLead]:
        return self.listed[ENTER_MQL]

    @property
    def enter_sql(self) -> list[PreviewLead]:
        return self.listed[ENTER_SQL]

    @property
    def leave_mql(self) -> list[PreviewLead]:
        return self.listed[LEAVE_MQL]

    @property
    def leave_sql(self) -> list[PreviewLead]:
        return self.listed[LEAVE_SQL]

    @property
    def lists(self) -> tuple[list[PreviewLead], ...]:
        return (*self.listed.values(), self.movers_up, self.movers_down)

    @property
    def unchanged(self) -> bool:
        """The draft's rules and settings are the published ruleset's."""
        return (
            self.published_version is not None
            and not self.settings_changed
            and all(pair.status == "unchanged" for pair in self.rule_pairs)
        )


def _scores_beside_leads(
    spec: RuleSetSpec, as_of: datetime
) -> Iterator[tuple["bulk.ScoreRow", str, datetime | None, Decimal | None]]:
    """Every lead's score under ``spec`` with its stage, ``recycled_at`` and stored score (None:
    never scored), in id order. On PostgreSQL one joined stream that holds no lead
    (``bulk.scores_beside_leads``: held in dicts, they cost 500 MB at 1M leads); on SQLite
    (the embedded default, demo-sized) ``iter_scores`` beside dicts of them."""
    if connection.vendor == "postgresql":
        for beside in bulk.scores_beside_leads(spec, as_of):
            yield beside.row, beside.stage, beside.recycled_at, beside.stored
        return
    leads = {
        pk: (stage, recycled_at) for pk, stage, recycled_at in Lead.objects.values_list("id", "stage", "recycled_at")
    }
    stored = dict(Score.objects.filter(model_id=spec.model_id).values_list("lead_id", "score"))
    for scored in iter_scores(spec, as_of):
        if scored.id in leads:
            stage, recycled_at = leads[scored.id]
            yield scored, stage, recycled_at, stored.get(scored.id)


def _bucket(score: Decimal) -> str:
    low = (score // HISTOGRAM_WIDTH) * HISTOGRAM_WIDTH
    return f"{int(low)}–{int(low + HISTOGRAM_WIDTH)}"


class _Movers:
    """The ``size`` leads with the largest positive key seen, in one pass (a heap)."""

    def __init__(self, size: int):
        self.size = size
        self.heap: list[tuple[Decimal, int, PreviewLead]] = []

    def offer(self, key: Decimal, item: PreviewLead) -> None:
        if key <= 0:
            return
        entry = (key, -item.id, item)  # ties: the older lead (lower id) first
        if len(self.heap) < self.size:
            heapq.heappush(self.heap, entry)
        elif entry[:2] > self.heap[0][:2]:
            heapq.heapreplace(self.heap, entry)

    def ranked(self) -> list[PreviewLead]:
        return [item for _key, _id, item in sorted(self.heap, key=lambda entry: entry[:2], reverse=True)]


def ruleset_preview(*, ruleset: RuleSet, as_of: datetime | None = None) -> Preview:
    """What-if: evaluate ``ruleset`` over every current lead without writing anything,
    beside the scores its model gives them now (0 where it never scored them), and
    against the model's published ruleset.

    *Enter* lists leads the ruleset would promote (forward transitions, as a publish
    would apply them). Publishing never demotes, but of the leads at MQL (SQL) whose new
    score falls below the ruleset's threshold, *no longer* lists those that meet the
    published ruleset's threshold now (the draft's doing) and *already below* those that
    do not (stale already; *leave* is both). *Back above* counts the leads below the
    published threshold that the draft lifts over its own. The top movers are the leads
    whose score the draft changes most, both ways; the rules are paired with the
    published ones and each counted (one statement for all: ``rule_match_counts``)."""
    spec = ruleset_spec(ruleset)
    as_of = as_of or timezone.now()
    published = ruleset if ruleset.status == RuleSetStatus.PUBLISHED else published_ruleset(ruleset.model)
    published_spec = ruleset_spec(published) if published is not None else None
    preview = Preview(ruleset_version=spec.version, published_version=published.version if published else None)
    if published is not None and published_spec is not None:
        preview.rule_pairs = rules_paired(published=published_spec.rules, draft=spec.rules)
        preview.settings_changed = ruleset_settings_changed(published=published, draft=ruleset)
    else:
        preview.rule_pairs = [RulePair(None, rule) for rule in spec.rules]
    counted = [
        *spec.rules,
        *(pair.before for pair in preview.rule_pairs if pair.before and pair.status in ("removed", "changed")),
    ]
    preview.matches = rule_match_counts(counted, as_of)

    counts: dict[str, int] = defaultdict(int)
    before: dict[str, int] = defaultdict(int)
    after: dict[str, int] = defaultdict(int)
    hist_before: dict[str, int] = defaultdict(int)
    hist_after: dict[str, int] = defaultdict(int)
    up, down = _Movers(PREVIEW_MOVERS), _Movers(PREVIEW_MOVERS)
    listed = preview.listed

    def add(key: str, item: PreviewLead) -> None:
        counts[key] += 1
        if len(listed[key]) < PREVIEW_LIST_LIMIT:
            listed[key].append(item)

    def below(item: PreviewLead, keys: tuple[str, str, str, str], *, now: bool, draft: bool) -> None:
        # ``now``/``draft``: the lead meets its stage's score threshold under the published
        # ruleset (its stored score; true without a published ruleset: only the draft can
        # put it below) and under the draft. ``keys``: leave, no longer, already below, back.
        leave, no_longer, already, back = keys
        if not draft:
            add(leave, item)
            add(no_longer if now else already, item)
        elif not now:
            counts[back] += 1

    for scored, lead_stage, recycled_at, stored in _scores_beside_leads(spec, as_of):
        score, score_before = scored.score, (stored if stored is not None else Decimal("0"))
        steps = automatic_path(stage=lead_stage, recycled_at=recycled_at, scores=[(spec, scored)])
        path = [step.to_stage for step in steps]
        new_stage = path[-1] if path else lead_stage
        preview.leads += 1
        before[lead_stage] += 1
        after[new_stage] += 1
        hist_before[_bucket(score_before)] += 1
        hist_after[_bucket(score)] += 1
        item = PreviewLead(id=scored.id, score_before=score_before, score_after=score, stage=lead_stage)
        up.offer(item.change, item)
        down.offer(-item.change, item)
        for stage, key in ((Stage.MQL, ENTER_MQL), (Stage.SQL, ENTER_SQL)):
            if stage in path:
                add(key, item)
        if lead_stage == Stage.MQL:
            now = published_spec is None or engine.reaches_mql_threshold(published_spec, score_before)
            draft = engine.reaches_mql_threshold(spec, score)
            below(item, (LEAVE_MQL, NO_LONGER_MQL, ALREADY_BELOW_MQL, BACK_ABOVE_MQL), now=now, draft=draft)
        elif lead_stage == Stage.SQL:
            now = published_spec is None or engine.reaches_sql_threshold(published_spec, score_before)
            draft = engine.reaches_sql_threshold(spec, score)
            below(item, (LEAVE_SQL, NO_LONGER_SQL, ALREADY_BELOW_SQL, BACK_ABOVE_SQL), now=now, draft=draft)
    preview.stages_before, preview.stages_after = dict(before), dict(after)
    preview.counts = {key: counts.get(key, 0) for key in PREVIEW_COUNTS}
    preview.histogram_before, preview.histogram_after = dict(hist_before), dict(hist_after)
    preview.movers_up, preview.movers_down = up.ranked(), down.ranked()
    _name_listed_leads(preview)
    return preview


def _name_listed_leads(preview: Preview) -> None:
    """Say who each listed lead is, in one query; a lead deleted meanwhile leaves the lists."""
    ids = {item.id for items in preview.lists for item in items}
    rows = Lead.objects.filter(pk__in=ids).values_list("id", "public_id", "email", "name")
    people = {pk: (public_id, email, name) for pk, public_id, email, name in rows}
    for items in preview.lists:
        items[:] = [
            replace(item, public_id=people[item.id][0], email=people[item.id][1], name=people[item.id][2])
            for item in items
            if item.id in people
        ]


# --- The scores of leads, for the core's lists (registered in ScoringConfig.ready) ----------
class LeadScores:
    """``leadflow.leads.scores.ScoresProvider``: scores from the scores table."""

    def annotate(self, leads: QuerySet[Lead], *, model: str | None) -> QuerySet[Lead]:
        if model and not ScoringModel.objects.filter(slug=model).exists():
            known = ", ".join(model_list().values_list("slug", flat=True)) or "none yet"
            raise UnknownModel(f"No scoring model {model!r}: choose one of {known}.")
        # 0.00, as stored: a cursor's position is the score's text, and "0" is not "0.00"
        # (a page that ended among zeros skipped the zeros the model never scored).
        zero = Value(Decimal("0.00"))
        return self._joined(leads, model).annotate(
            score=Coalesce(F("model_score__score"), zero, output_field=DecimalField(max_digits=12, decimal_places=2)),
            fit_score=Coalesce(F("model_score__fit"), zero, output_field=DecimalField(max_digits=12, decimal_places=2)),
            behaviour_score=Coalesce(
                F("model_score__behaviour"), zero, output_field=DecimalField(max_digits=12, decimal_places=2)
            ),
            grade=Coalesce(F("model_score__grade"), Value(""), output_field=CharField()),
            scored=ExpressionWrapper(Q(model_score__isnull=False), output_field=BooleanField()),
        )

    def annotate_scored(self, leads: QuerySet[Lead], *, model: str | None, stage: str | None) -> QuerySet[Lead]:
        # An inner join on the model's rows, the columns as stored: ``score`` then the lead
        # id is the order of the index ``score_model_rank`` (model, score, lead), and within
        # one stage of ``score_model_stage_rank`` (model, stage, score, lead). An unknown
        # slug scored nobody (``annotate`` refuses it).
        # One filter() call: a second one on the relation would join the scores again.
        within = {"model_score__stage": stage} if stage is not None else {}
        scored = self._joined(leads, model).filter(model_score__isnull=False, **within)  # type: ignore[misc]
        return scored.annotate(
            score=F("model_score__score"),
            fit_score=F("model_score__fit"),
            behaviour_score=F("model_score__behaviour"),
            grade=F("model_score__grade"),
            scored=Value(True),
        )

    def _joined(self, leads: QuerySet[Lead], model: str | None) -> QuerySet[Lead]:
        # The model's id as a subquery (PostgreSQL runs it once, as an InitPlan): the
        # lists ask for no model of their own, and the default model costs no query.
        models = model_list().filter(slug=model) if model else model_list()
        model_id = Subquery(models.values("id")[:1])
        return leads.annotate(model_score=FilteredRelation("scores", condition=Q(scores__model_id=model_id)))

    def models(self) -> list[tuple[str, str]]:
        return list(model_list().values_list("slug", "name"))

    def qualifications(self, leads: list[Lead], *, model: str | None) -> dict[int, Qualification]:
        """Four queries: the model, its published ruleset (with its rules), the leads' scores."""
        chosen = model_get(slug=model) if model else model_default()
        ruleset = published_ruleset(chosen) if chosen else None
        if ruleset is None or not leads:
            return {}
        spec = ruleset_spec(ruleset)
        stages = {lead.pk: (lead.stage, lead.recycled_at) for lead in leads}
        found = {}
        for row in Score.objects.filter(model_id=spec.model_id, lead_id__in=list(stages)):
            stage, recycled_at = stages[row.lead_id]
            found[row.lead_id] = lead_qualification(
                spec, row, model_name=ruleset.model.name, stage=stage, recycled_at=recycled_at
            )
        return found

    def stale_mql(self, leads: QuerySet[Lead], *, model: str | None) -> QuerySet[Lead]:
        # The SQL twin of ``engine.reaches_mql_threshold`` failing at MQL. The threshold is a
        # subquery (PostgreSQL runs it once): below it, within the MQLs of the scores' index
        # (model, stage, score, lead) when the list is ``annotate_scored``'s. No published
        # ruleset: the threshold is NULL and no lead is stale.
        models = model_list().filter(slug=model) if model else model_list()
        threshold = RuleSet.objects.filter(
            status=RuleSetStatus.PUBLISHED, model_id=Subquery(models.values("id")[:1])
        ).values("mql_threshold")[:1]
        # ``scored`` and ``score`` are the annotations of ``annotate``/``annotate_scored``.
        return leads.filter(stage=Stage.MQL, scored=True, score__lt=Subquery(threshold))  # type: ignore[misc]

    def scores(self, leads: list[Lead]) -> dict[int, list[ModelScore]]:
        found: dict[int, list[ModelScore]] = {lead.pk: [] for lead in leads}
        rows = (
            Score.objects.filter(lead_id__in=list(found))
            .select_related("model")
            .order_by("model__position", "model_id")
        )
        for row in rows:
            found[row.lead_id].append(
                ModelScore(
                    model=row.model.slug,
                    model_name=row.model.name,
                    score=row.score,
                    fit=row.fit,
                    behaviour=row.behaviour,
                    grade=row.grade,
                    ruleset_version=row.ruleset_version,
                    computed_at=row.computed_at,
                    last_intent_at=row.last_intent_at,
                    suppressed=row.suppressed_by is not None,
                )
            )
        return found


# --- The lead page: every model's score side by side ------------------------------------------
@dataclass(frozen=True)
class ModelScoreCard:
    """One model's score of a lead, for the lead page's switcher (``score`` None: the
    model has not scored the lead, e.g. nothing of it is published yet)."""

    model: ScoringModel
    score: Score | None
    suppressed_by: str  # the name of the suppression rule that matched, "" when none

    @property
    def suppressed(self) -> bool:
        return bool(self.score and self.score.suppressed_by is not None)


def lead_score_cards(*, lead: Lead) -> list[ModelScoreCard]:
    """Every scoring model with its score of the lead, in the models' order: three
    queries (models, scores, the names of the suppression rules that matched)."""
    scores = {score.model_id: score for score in lead.scores.all()}
    rule_ids = {score.suppressed_by for score in scores.values() if score.suppressed_by is not None}
    names = dict(Rule.objects.filter(pk__in=rule_ids).values_list("id", "name")) if rule_ids else {}
    cards = []
    for model in model_list():
        score = scores.get(model.pk)
        suppressed = ""
        if score is not None and score.suppressed_by is not None:
            suppressed = names.get(score.suppressed_by, "a suppression rule")
        cards.append(ModelScoreCard(model=model, score=score, suppressed_by=suppressed))
    return cards
