"""Reads of scoring: rulesets and their engine specs, rescore runs, and what the engine
says of leads without writing anything: the lead as the engine reads it, every lead's
score streamed, the stages a score moves a lead through, a lead's score explained rule
by rule, and a draft's what-if preview."""

import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import connection
from django.db.models import QuerySet
from django.utils import timezone

from leadflow.leads.models import LEAD_PROFILE_FIELDS, LEAD_UTM_FIELDS, Event, Lead, Stage
from scoring import bulk, engine
from scoring.engine import EventRow, LeadScore, RuleSetSpec, RuleSpec
from scoring.models import RescoreRun, Rule, RuleSet, RuleSetStatus

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
    )


def ruleset_list() -> QuerySet[RuleSet]:
    """Rulesets with their rules and the people who created and published them: every
    lookup of a ruleset below starts here."""
    return RuleSet.objects.select_related("created_by", "published_by").prefetch_related("rules")


def published_ruleset() -> RuleSet | None:
    return ruleset_list().filter(status=RuleSetStatus.PUBLISHED).first()


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


def events_by_lead(lead_ids: Sequence[int], spec: RuleSetSpec) -> dict[int, list[EventRow]]:
    grouped: dict[int, list[EventRow]] = defaultdict(list)
    rows = Event.objects.filter(lead_id__in=lead_ids, type__in=spec.event_types).values_list(
        "lead_id", "id", "type", "properties", "occurred_at"
    )
    for lead_id, event_id, event_type, properties, occurred_at in rows.iterator(chunk_size=5000):
        grouped[lead_id].append(EventRow(type=event_type, properties=properties, occurred_at=occurred_at, id=event_id))
    return grouped


def iter_scores(spec: RuleSetSpec, as_of: datetime) -> Iterator[tuple[int, Decimal, Decimal, datetime | None]]:
    """(lead id, fit, behaviour, last intent) of every lead under ``spec``, streamed."""
    if connection.vendor == "postgresql":
        yield from bulk.scores_stream(spec, as_of)
        return
    ids = list(Lead.objects.order_by("id").values_list("id", flat=True))
    for start in range(0, len(ids), SCORE_CHUNK):
        chunk = ids[start : start + SCORE_CHUNK]
        events = events_by_lead(chunk, spec)
        for lead in Lead.objects.filter(id__in=chunk).order_by("id"):
            result = engine.score_lead(lead_attributes(lead), events.get(lead.pk, []), spec, as_of)
            yield lead.pk, result.fit, result.behaviour, result.last_intent_at


# --- Where a score takes a lead --------------------------------------------------------------
def automatic_path(
    *, stage: str, score: Decimal, fit: Decimal, last_intent_at: datetime | None, lead: Lead, spec: RuleSetSpec
) -> list[str]:
    """Stages an automatic rescore moves the lead through, in order (forward only)."""
    path: list[str] = []
    current = stage
    if current in (Stage.NEW, Stage.RECYCLED):
        recycled_at = lead.recycled_at if current == Stage.RECYCLED else None
        active = recycled_at is None or (lead.last_activity_at is not None and lead.last_activity_at > recycled_at)
        if active and score >= spec.mql_threshold:
            current = Stage.MQL
            path.append(current)
    if current == Stage.MQL:
        intent = last_intent_at is not None and (lead.recycled_at is None or last_intent_at > lead.recycled_at)
        fit_ok = spec.sql_min_fit is None or fit >= spec.sql_min_fit
        if intent and fit_ok and score >= spec.sql_threshold:
            path.append(Stage.SQL)
    return path


# --- Explain -------------------------------------------------------------------------------
@dataclass
class Explanation:
    lead: Lead
    ruleset: RuleSet | None
    as_of: datetime | None
    result: LeadScore | None
    events: dict[int, Event] = field(default_factory=dict)

    @property
    def adds_up(self) -> bool:
        return self.result is not None and self.result.total == self.lead.score


def lead_explain(*, lead: Lead) -> Explanation:
    """Recompute the lead's stored score rule by rule, with the ruleset version and the
    moment it was scored, so that the contributions add up to the stored score."""
    ruleset = ruleset_by_version(lead.ruleset_version) if lead.ruleset_version else None
    if ruleset is None or lead.scored_at is None:
        return Explanation(lead=lead, ruleset=ruleset, as_of=None, result=None)
    spec = ruleset_spec(ruleset)
    as_of = lead.scored_at
    events = list(lead.events.filter(type__in=spec.event_types))
    rows = [EventRow(type=e.type, properties=e.properties, occurred_at=e.occurred_at, id=e.pk) for e in events]
    result = engine.score_lead(lead_attributes(lead), rows, spec, as_of)
    return Explanation(lead=lead, ruleset=ruleset, as_of=as_of, result=result, events={e.pk: e for e in events})


# --- Preview -------------------------------------------------------------------------------
PREVIEW_LIST_LIMIT = 50
HISTOGRAM_WIDTH = Decimal("10")


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


@dataclass
class Preview:
    ruleset_version: int
    leads: int = 0
    stages_before: dict[str, int] = field(default_factory=dict)
    stages_after: dict[str, int] = field(default_factory=dict)
    enter_mql: list[PreviewLead] = field(default_factory=list)
    enter_sql: list[PreviewLead] = field(default_factory=list)
    leave_mql: list[PreviewLead] = field(default_factory=list)
    leave_sql: list[PreviewLead] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    histogram_before: dict[str, int] = field(default_factory=dict)
    histogram_after: dict[str, int] = field(default_factory=dict)

    @property
    def lists(self) -> tuple[list[PreviewLead], ...]:
        return self.enter_mql, self.enter_sql, self.leave_mql, self.leave_sql


def _bucket(score: Decimal) -> str:
    low = (score // HISTOGRAM_WIDTH) * HISTOGRAM_WIDTH
    return f"{int(low)}–{int(low + HISTOGRAM_WIDTH)}"


def ruleset_preview(*, ruleset: RuleSet, as_of: datetime | None = None) -> Preview:
    """What-if: evaluate ``ruleset`` over every current lead without writing anything.

    *Enter* lists leads the ruleset would promote (forward transitions, as a publish
    would apply them). *Leave* lists leads at MQL/SQL whose new score falls below the
    new threshold: publishing never demotes them, but they no longer meet the
    definition — worth a look before publishing."""
    spec = ruleset_spec(ruleset)
    as_of = as_of or timezone.now()
    preview = Preview(ruleset_version=spec.version)
    counts: dict[str, int] = defaultdict(int)
    before: dict[str, int] = defaultdict(int)
    after: dict[str, int] = defaultdict(int)
    hist_before: dict[str, int] = defaultdict(int)
    hist_after: dict[str, int] = defaultdict(int)
    leads = {
        row["id"]: row
        for row in Lead.objects.values("id", "stage", "score", "recycled_at", "last_activity_at").iterator(5000)
    }
    for lead_id, fit, behaviour, last_intent_at in iter_scores(spec, as_of):
        row = leads.get(lead_id)
        if row is None:
            continue
        score = fit + behaviour
        stand_in = Lead(stage=row["stage"], recycled_at=row["recycled_at"], last_activity_at=row["last_activity_at"])
        path = automatic_path(
            stage=row["stage"], score=score, fit=fit, last_intent_at=last_intent_at, lead=stand_in, spec=spec
        )
        new_stage = path[-1] if path else row["stage"]
        preview.leads += 1
        before[row["stage"]] += 1
        after[new_stage] += 1
        hist_before[_bucket(row["score"])] += 1
        hist_after[_bucket(score)] += 1
        item = PreviewLead(id=lead_id, score_before=row["score"], score_after=score, stage=row["stage"])
        for stage, bucket in ((Stage.MQL, preview.enter_mql), (Stage.SQL, preview.enter_sql)):
            if stage in path:
                counts[f"enter_{stage}"] += 1
                if len(bucket) < PREVIEW_LIST_LIMIT:
                    bucket.append(item)
        if row["stage"] == Stage.MQL and score < spec.mql_threshold:
            counts["leave_mql"] += 1
            if len(preview.leave_mql) < PREVIEW_LIST_LIMIT:
                preview.leave_mql.append(item)
        if row["stage"] == Stage.SQL and score < spec.sql_threshold:
            counts["leave_sql"] += 1
            if len(preview.leave_sql) < PREVIEW_LIST_LIMIT:
                preview.leave_sql.append(item)
    preview.stages_before, preview.stages_after = dict(before), dict(after)
    preview.counts = {key: counts.get(key, 0) for key in ("enter_mql", "enter_sql", "leave_mql", "leave_sql")}
    preview.histogram_before, preview.histogram_after = dict(hist_before), dict(hist_after)
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
