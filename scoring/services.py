"""Writes of scoring: rescoring leads and deciding their automatic stage transitions
(``leadflow.leads.lifecycle`` applies them), rulesets and their lifecycle."""

import logging
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Max, Q
from django.utils import timezone

from leadflow.db import update_from_values
from leadflow.leads.lifecycle import Transition, transitions_apply
from leadflow.leads.models import Event, Lead, Stage
from scoring import bulk, engine, selectors
from scoring.engine import EventRow, LeadScore, RuleSetSpec
from scoring.models import RescoreRun, RescoreState, Rule, RuleSet, RuleSetStatus

logger = logging.getLogger(__name__)

LEAD_ATTRIBUTE_FIELDS = ["email", *[name for name in engine.LEAD_ATTRIBUTES if name != "email_domain"], "traits"]
SCORE_CHUNK = 1000


class ScoringError(Exception):
    """A request the scoring rules forbid; the message says what to do instead."""


class RuleSetNotEditable(ScoringError):
    pass


# --- Automatic stage transitions (applied by leadflow.leads.lifecycle) -------------------
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


def _describe(to_stage: str, spec: RuleSetSpec, score: Decimal) -> str:
    if to_stage == Stage.MQL:
        return f"Score {score} reached the MQL threshold {spec.mql_threshold} (ruleset v{spec.version})."
    return f"Intent shown and score {score} reached the SQL threshold {spec.sql_threshold} (ruleset v{spec.version})."


def _automatic_transitions(lead: Lead, result: LeadScore, spec: RuleSetSpec) -> list[Transition]:
    transitions = []
    current = lead.stage
    for to_stage in automatic_path(
        stage=lead.stage, score=result.total, fit=result.fit, last_intent_at=result.last_intent_at, lead=lead, spec=spec
    ):
        transitions.append(Transition(lead, current, to_stage, _describe(to_stage, spec, result.total)))
        current = to_stage
    return transitions


# --- The single-lead engine, applied ----------------------------------------------------
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


@dataclass
class ScoreSummary:
    scored: int = 0
    transitions: int = 0


def leads_score(*, lead_ids: Sequence[int], as_of: datetime | None = None) -> ScoreSummary:
    """Rescore these leads with the published ruleset (the incremental path), apply
    forward stage transitions and clear their ``needs_rescore`` flag.

    The leads are locked first, so an ingest touching one of them waits and flags it
    again after we commit: an event is never left unscored."""
    summary = ScoreSummary()
    ruleset = selectors.published_ruleset()
    spec = selectors.ruleset_spec(ruleset) if ruleset else None
    ids = sorted(set(lead_ids))
    for start in range(0, len(ids), SCORE_CHUNK):
        chunk = ids[start : start + SCORE_CHUNK]
        with transaction.atomic():
            chunk_summary = _score_chunk(chunk, spec, as_of or timezone.now())
        summary.scored += chunk_summary.scored
        summary.transitions += chunk_summary.transitions
    return summary


def _score_chunk(ids: Sequence[int], spec: RuleSetSpec | None, at: datetime) -> ScoreSummary:
    """Score these leads as of ``at`` inside the caller's transaction: lock, score,
    write, apply transitions (the lifecycle's receivers open handoffs, in this transaction)."""
    leads = list(Lead.objects.select_for_update().filter(id__in=ids).order_by("id"))
    if spec is None:
        Lead.objects.filter(id__in=ids).update(needs_rescore=False)
        return ScoreSummary()
    events = events_by_lead(ids, spec)
    transitions: list[Transition] = []
    for lead in leads:
        result = engine.score_lead(lead_attributes(lead), events.get(lead.pk, []), spec, at)
        lead.fit_score, lead.behaviour_score, lead.score = result.fit, result.behaviour, result.total
        lead.scored_at, lead.ruleset_version, lead.needs_rescore = at, spec.version, False
        transitions += _automatic_transitions(lead, result, spec)
    # One UPDATE … FROM (VALUES …): bulk_update's CASE per row and field costs more than the SQL.
    fields = ["fit_score", "behaviour_score", "score", "scored_at", "ruleset_version", "needs_rescore"]
    update_from_values(Lead, fields, [[lead.pk, *(getattr(lead, f) for f in fields)] for lead in leads])
    transitions_apply(transitions, at=at, ruleset_version=spec.version)
    return ScoreSummary(scored=len(leads), transitions=len(transitions))


# --- The bulk engine ---------------------------------------------------------------------
def _is_postgres() -> bool:
    return connection.vendor == "postgresql"


def rescore_run_create(*, ruleset: RuleSet, reason: str, user: Any = None) -> RescoreRun:
    run = RescoreRun.objects.create(ruleset=ruleset, reason=reason, created_by=user, total=Lead.objects.count())
    run_id = run.pk
    transaction.on_commit(lambda: _enqueue_rescore(run_id), robust=True)
    return run


def _enqueue_rescore(run_id: int) -> None:
    # Within scoring, lazily: scoring.tasks imports this module (tasks are thin wrappers
    # around these services), so importing it at the top would be a cycle.
    from scoring.tasks import rescore_all

    rescore_all.delay(run_id)


class RescoreRunSuperseded(Exception):
    """Another execution took the run over (this one was presumed dead): stop writing."""


def _stale_before() -> datetime:
    return timezone.now() - timedelta(seconds=settings.RESCORE_STALE_AFTER_SECONDS)


def _running_without_worker() -> Q:
    # No heartbeat at all: a run started before runs had one.
    return Q(state=RescoreState.RUNNING) & (Q(heartbeat_at__lt=_stale_before()) | Q(heartbeat_at__isnull=True))


def _rescore_run_claim(run: RescoreRun) -> int | None:
    """Take a new lease on the run if nobody live holds it: queued, failed with starts
    left, or running with a heartbeat that stopped. Returns the lease (``attempts``)."""
    now = timezone.now()
    claimable = Q(state__in=[RescoreState.QUEUED, RescoreState.FAILED]) | _running_without_worker()
    with transaction.atomic():
        locked = RescoreRun.objects.select_for_update().filter(claimable, pk=run.pk).first()
        if locked is None:
            return None
        locked.attempts += 1
        locked.state, locked.heartbeat_at, locked.error = RescoreState.RUNNING, now, ""
        update_fields = ["attempts", "state", "heartbeat_at", "error"]
        if locked.as_of is None:  # the first start fixes what the run covers
            locked.started_at = locked.as_of = now
            locked.max_lead_id = Lead.objects.aggregate(m=Max("id"))["m"] or 0
            locked.total = Lead.objects.filter(id__lte=locked.max_lead_id).count()
            update_fields += ["started_at", "as_of", "max_lead_id", "total"]
        locked.save(update_fields=update_fields)
        return locked.attempts


@dataclass
class RunProgress:
    """The executing lease of a run; ``commit`` records a chunk inside its transaction."""

    run_id: int
    lease: int
    last_lead_id: int
    done: int
    changed: int
    report: Callable[[int], None]

    def check(self) -> None:
        """Lock the run row under our lease (inside the chunk's transaction) or stop."""
        held = (
            RescoreRun.objects.select_for_update()
            .filter(pk=self.run_id, attempts=self.lease, state=RescoreState.RUNNING)
            .exists()
        )
        if not held:
            raise RescoreRunSuperseded(f"Rescore run {self.run_id} was taken over; lease {self.lease} stops.")

    def commit(self, *, last_lead_id: int, scored: int, changed: int) -> None:
        self.last_lead_id, self.done, self.changed = last_lead_id, self.done + scored, self.changed + changed
        RescoreRun.objects.filter(pk=self.run_id).update(
            last_lead_id=last_lead_id, done=self.done, changed_stages=self.changed, heartbeat_at=timezone.now()
        )
        done = self.done
        transaction.on_commit(lambda: self.report(done))


def rescore_run_execute(*, run: RescoreRun, progress: Callable[[int, int], None] | None = None) -> RescoreRun:
    """Rescore every lead with the run's ruleset: set-based SQL on PostgreSQL, the
    single-lead engine elsewhere, in id-ordered chunks that each commit the scores,
    the stage transitions, the handoffs and the run's progress together.

    Safe to run twice and resumable: a redelivered task finds the run held by a live
    worker and returns; a run whose worker died (heartbeat stopped) or that failed is
    continued after its last committed chunk by the next execution, so every stage
    change and handoff happens exactly once. A finished run is not repeated."""
    lease = _rescore_run_claim(run)
    run.refresh_from_db()
    if lease is None:
        return run
    ruleset = selectors.ruleset_by_version(run.ruleset.version)
    if ruleset is None or ruleset.status != RuleSetStatus.PUBLISHED:
        RescoreRun.objects.filter(pk=run.pk, attempts=lease).update(
            state=RescoreState.FAILED, error="The ruleset is no longer published.", finished_at=timezone.now()
        )
        run.refresh_from_db()
        return run
    spec = selectors.ruleset_spec(ruleset)
    assert run.as_of is not None and run.max_lead_id is not None  # set by the claim  # noqa: S101

    def report(done: int) -> None:
        if progress:
            progress(done, run.total)

    state = RunProgress(run.pk, lease, run.last_lead_id, run.done, run.changed_stages, report)
    try:
        rescore = _rescore_all_sql if _is_postgres() else _rescore_all_chunked
        rescore(spec, run.as_of, run.max_lead_id, state)
    except RescoreRunSuperseded:
        logger.warning("Rescore run %s: lease %s was taken over by another worker", run.pk, lease)
        run.refresh_from_db()
        return run
    except Exception as error:
        logger.exception("Rescore run %s failed", run.pk)
        RescoreRun.objects.filter(pk=run.pk, attempts=lease).update(
            state=RescoreState.FAILED, error=str(error)[:2000], finished_at=timezone.now()
        )
        raise
    RescoreRun.objects.filter(pk=run.pk, attempts=lease).update(
        state=RescoreState.DONE, done=F("total"), heartbeat_at=timezone.now(), finished_at=timezone.now()
    )
    run.refresh_from_db()
    return run


def rescore_runs_resume() -> list[int]:
    """The sweep's half for full rescores: enqueue runs left queued (the broker was down
    at publish), running with a stopped heartbeat (the worker died) or failed with
    starts left. Enqueuing twice is harmless: an execution first takes the lease."""
    grace = timezone.now() - timedelta(seconds=settings.SWEEP_GRACE_SECONDS)
    ids = list(
        RescoreRun.objects.filter(
            Q(state=RescoreState.QUEUED, created_at__lte=grace)
            | _running_without_worker()
            | Q(
                state=RescoreState.FAILED,
                attempts__lt=settings.RESCORE_MAX_ATTEMPTS,
                ruleset__status=RuleSetStatus.PUBLISHED,
            )
        )
        .order_by("id")
        .values_list("id", flat=True)
    )
    for run_id in ids:
        logger.info("Sweep: resuming rescore run %s", run_id)
        _enqueue_rescore(run_id)
    return ids


def _rescore_all_chunked(spec: RuleSetSpec, as_of: datetime, max_lead_id: int, state: RunProgress) -> None:
    ids = list(
        Lead.objects.filter(id__gt=state.last_lead_id, id__lte=max_lead_id).order_by("id").values_list("id", flat=True)
    )
    for start in range(0, len(ids), SCORE_CHUNK):
        chunk = ids[start : start + SCORE_CHUNK]
        with transaction.atomic():
            state.check()
            summary = _score_chunk(chunk, spec, as_of)
            state.commit(last_lead_id=chunk[-1], scored=summary.scored, changed=summary.transitions)


def _rescore_all_sql(spec: RuleSetSpec, as_of: datetime, max_lead_id: int, state: RunProgress) -> None:
    """Compute every score in one pass over the events (``bulk.scores_table``), then,
    chunk by chunk in id order, write the scores, apply the stage transitions of the
    leads that crossed a threshold and record the progress, each chunk in one transaction."""
    with bulk.scores_table(spec, as_of) as scores:
        after = state.last_lead_id
        while after < max_lead_id:
            upto = scores.chunk_end(after=after, last=max_lead_id, size=settings.RESCORE_CHUNK_SIZE)
            with transaction.atomic():
                state.check()
                scored = scores.write(after=after, upto=upto)
                changed = _apply_bulk_transitions(scores.transition_candidates(after=after, upto=upto), spec, as_of)
                state.commit(last_lead_id=upto, scored=scored, changed=changed)
            after = upto


def _apply_bulk_transitions(
    candidates: Sequence[tuple[int, datetime | None]], spec: RuleSetSpec, as_of: datetime
) -> int:
    """Transitions of these candidates (lead id, last intent), whose new scores are
    stored, inside the caller's transaction. The SQL only narrowed them down; the rule
    that decides is ``automatic_path``, as for one lead."""
    changed = 0
    for offset in range(0, len(candidates), SCORE_CHUNK):
        chunk = dict(candidates[offset : offset + SCORE_CHUNK])
        transitions: list[Transition] = []
        for lead in Lead.objects.select_for_update().filter(id__in=list(chunk)).order_by("id"):
            result = LeadScore(
                fit=lead.fit_score, behaviour=lead.behaviour_score, results=[], last_intent_at=chunk[lead.pk]
            )
            transitions += _automatic_transitions(lead, result, spec)
        transitions_apply(transitions, at=as_of, ruleset_version=spec.version)
        changed += len(transitions)
    return changed


def iter_scores(spec: RuleSetSpec, as_of: datetime) -> Iterator[tuple[int, Decimal, Decimal, datetime | None]]:
    """(lead id, fit, behaviour, last intent) of every lead under ``spec``, streamed."""
    if _is_postgres():
        yield from bulk.scores_stream(spec, as_of)
        return
    ids = list(Lead.objects.order_by("id").values_list("id", flat=True))
    for start in range(0, len(ids), SCORE_CHUNK):
        chunk = ids[start : start + SCORE_CHUNK]
        events = events_by_lead(chunk, spec)
        for lead in Lead.objects.filter(id__in=chunk).order_by("id"):
            result = engine.score_lead(lead_attributes(lead), events.get(lead.pk, []), spec, as_of)
            yield lead.pk, result.fit, result.behaviour, result.last_intent_at


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
    ruleset = selectors.ruleset_by_version(lead.ruleset_version) if lead.ruleset_version else None
    if ruleset is None or lead.scored_at is None:
        return Explanation(lead=lead, ruleset=ruleset, as_of=None, result=None)
    spec = selectors.ruleset_spec(ruleset)
    as_of = lead.scored_at
    events = list(lead.events.filter(type__in=spec.event_types))
    rows = [EventRow(type=e.type, properties=e.properties, occurred_at=e.occurred_at, id=e.pk) for e in events]
    result = engine.score_lead(lead_attributes(lead), rows, spec, as_of)
    return Explanation(lead=lead, ruleset=ruleset, as_of=as_of, result=result, events={e.pk: e for e in events})


# --- Rulesets ------------------------------------------------------------------------------
def _next_version() -> int:
    return (RuleSet.objects.aggregate(v=Max("version"))["v"] or 0) + 1


def ruleset_create(*, user: Any, name: str, mql_threshold: Decimal, sql_threshold: Decimal, **fields: Any) -> RuleSet:
    with transaction.atomic():
        RuleSet.objects.select_for_update().filter(status=RuleSetStatus.PUBLISHED).first()
        return RuleSet.objects.create(
            version=_next_version(),
            name=name,
            mql_threshold=mql_threshold,
            sql_threshold=sql_threshold,
            created_by=user,
            **fields,
        )


def _require_draft(ruleset: RuleSet) -> None:
    if ruleset.status != RuleSetStatus.DRAFT:
        raise RuleSetNotEditable(
            f"Ruleset v{ruleset.version} is {ruleset.status} and cannot change: clone it to a new draft."
        )


def ruleset_update(*, ruleset: RuleSet, **fields: Any) -> RuleSet:
    with transaction.atomic():
        ruleset = RuleSet.objects.select_for_update().get(pk=ruleset.pk)
        _require_draft(ruleset)
        for name, value in fields.items():
            setattr(ruleset, name, value)
        ruleset.save(update_fields=[*fields, "updated_at"])
    return ruleset


def ruleset_delete(*, ruleset: RuleSet) -> None:
    with transaction.atomic():
        ruleset = RuleSet.objects.select_for_update().get(pk=ruleset.pk)
        _require_draft(ruleset)
        ruleset.delete()


def ruleset_clone(*, ruleset: RuleSet, user: Any) -> RuleSet:
    with transaction.atomic():
        clone = RuleSet.objects.create(
            version=_next_version_locked(),
            name=ruleset.name,
            description=ruleset.description,
            mql_threshold=ruleset.mql_threshold,
            sql_threshold=ruleset.sql_threshold,
            intent_event_types=list(ruleset.intent_event_types),
            sql_min_fit=ruleset.sql_min_fit,
            decay_half_life_days=ruleset.decay_half_life_days,
            created_by=user,
        )
        Rule.objects.bulk_create(
            [
                Rule(
                    ruleset=clone,
                    kind=rule.kind,
                    name=rule.name,
                    points=rule.points,
                    position=rule.position,
                    event_type=rule.event_type,
                    attribute=rule.attribute,
                    operator=rule.operator,
                    value=rule.value,
                    max_points=rule.max_points,
                    window_days=rule.window_days,
                )
                for rule in ruleset.rules.all()
            ]
        )
    return clone


def _next_version_locked() -> int:
    # Serialise version numbering: lock the newest ruleset row.
    newest = RuleSet.objects.select_for_update().order_by("-version").first()
    return (newest.version if newest else 0) + 1


def rule_create(*, ruleset: RuleSet, **fields: Any) -> Rule:
    with transaction.atomic():
        ruleset = RuleSet.objects.select_for_update().get(pk=ruleset.pk)
        _require_draft(ruleset)
        if "position" not in fields:
            fields["position"] = (ruleset.rules.aggregate(p=Max("position"))["p"] or 0) + 1
        return Rule.objects.create(ruleset=ruleset, **fields)


def rule_update(*, rule: Rule, **fields: Any) -> Rule:
    with transaction.atomic():
        _require_draft(RuleSet.objects.select_for_update().get(pk=rule.ruleset_id))
        for name, value in fields.items():
            setattr(rule, name, value)
        rule.save(update_fields=list(fields))
    return rule


def rule_delete(*, rule: Rule) -> None:
    with transaction.atomic():
        _require_draft(RuleSet.objects.select_for_update().get(pk=rule.ruleset_id))
        rule.delete()


def ruleset_publish(*, ruleset: RuleSet, user: Any) -> RescoreRun:
    """Publish a draft: the previous published ruleset is archived and every lead is
    rescored in the background (a RescoreRun shows progress)."""
    with transaction.atomic():
        ruleset = RuleSet.objects.select_for_update().get(pk=ruleset.pk)
        _require_draft(ruleset)
        if not ruleset.rules.exists():
            raise ScoringError("Add at least one rule before publishing.")
        now = timezone.now()
        RuleSet.objects.filter(status=RuleSetStatus.PUBLISHED).update(
            status=RuleSetStatus.ARCHIVED, archived_at=now, updated_at=now
        )
        ruleset.status, ruleset.published_at, ruleset.published_by = RuleSetStatus.PUBLISHED, now, user
        ruleset.save(update_fields=["status", "published_at", "published_by", "updated_at"])
        return rescore_run_create(ruleset=ruleset, reason="publish", user=user)


# --- Preview -------------------------------------------------------------------------------
PREVIEW_LIST_LIMIT = 50
HISTOGRAM_WIDTH = Decimal("10")


@dataclass
class PreviewLead:
    id: int
    score_before: Decimal
    score_after: Decimal
    stage: str


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


def _bucket(score: Decimal) -> str:
    low = (score // HISTOGRAM_WIDTH) * HISTOGRAM_WIDTH
    return f"{int(low)}–{int(low + HISTOGRAM_WIDTH)}"


def ruleset_preview(*, ruleset: RuleSet, as_of: datetime | None = None) -> Preview:
    """What-if: evaluate ``ruleset`` over every current lead without writing anything.

    *Enter* lists leads the ruleset would promote (forward transitions, as a publish
    would apply them). *Leave* lists leads at MQL/SQL whose new score falls below the
    new threshold: publishing never demotes them, but they no longer meet the
    definition — worth a look before publishing."""
    spec = selectors.ruleset_spec(ruleset)
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
    return preview


def leads_sweep_dirty(*, older_than_seconds: int | None = None, limit: int = 10_000) -> int:
    """Score leads still flagged after a while (lost message, dead worker, broker outage)."""
    if older_than_seconds is None:
        older_than_seconds = settings.SWEEP_GRACE_SECONDS
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    ids = list(
        Lead.objects.filter(needs_rescore=True, updated_at__lte=cutoff)
        .order_by("id")
        .values_list("id", flat=True)[:limit]
    )
    if ids:
        leads_score(lead_ids=ids)
    return len(ids)


def decay_refresh(*, user: Any = None) -> RescoreRun | None:
    """Scores move with time when events decay or leave a window: rescore daily."""
    ruleset = selectors.published_ruleset()
    if ruleset is None:
        return None
    spec = selectors.ruleset_spec(ruleset)
    if spec.decay_half_life_days is None and not any(r.window_days for r in spec.behaviour_rules):
        return None
    with transaction.atomic():
        return rescore_run_create(ruleset=ruleset, reason="decay", user=user)
