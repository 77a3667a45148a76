"""Writes of scoring: rescoring leads and deciding their automatic stage transitions
(``leadflow.leads.lifecycle`` applies them), rulesets and their lifecycle, and what a
valid rule and ruleset are (``rule_validate``, ``ruleset_validate``)."""

import itertools
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Exists, F, Max, OuterRef, Q
from django.dispatch import Signal
from django.utils import timezone

from leadflow.db import SqlNames, pg_array
from leadflow.leads import scoring_requests
from leadflow.leads.lifecycle import Transition, TransitionsApplied, stages_changed, transitions_apply
from leadflow.leads.models import Lead, Stage, StageChange
from leadflow.leads.tasks import refresh_score_histograms
from leadflow.leads.validation import EVENT_TYPE_RE
from scoring import accounts, bulk, engine, selectors
from scoring.engine import RuleSetSpec
from scoring.models import (
    GRADES,
    RULE_FIELDS,
    RULESET_FIELDS,
    Operator,
    RescoreChunk,
    RescoreRun,
    RescoreState,
    Rule,
    RuleKind,
    RuleSet,
    RuleSetStatus,
    Score,
    ScoringClaim,
    ScoringModel,
)

logger = logging.getLogger(__name__)

SCORE_CHUNK = selectors.SCORE_CHUNK
MODEL_POSITION_MAX = 10_000  # models are listed by position; far more than anyone orders by hand
SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,49}$")


class ScoringError(Exception):
    """A request the scoring rules forbid; the message says what to do instead."""


class RuleSetNotEditable(ScoringError):
    pass


# --- Score changes, announced --------------------------------------------------------------
scores_changed = Signal()
"""``scores_changed`` — the contract
    Sent by incremental scoring (``_score_and_move``) once per chunk whose scores changed,
    inside its transaction, after the scores are written; ``sender`` is ``Score``,
    ``changes`` a list of ``ScoreChange`` and ``at`` the scoring moment. Receivers run in
    that transaction (``send``). Only sent when someone listens (the old scores are read
    for it). A full rescore (publishing) does not send it per lead: its stage changes are
    announced by ``stages_changed``, its end by ``rescore_finished``. Receiver:
    ``handoff.receivers.webhooks_hear_of_score_changes`` (the ``lead.score_changed`` webhook)."""

rescore_finished = Signal()
"""``rescore_finished`` — the contract
    Sent once per full rescore run (``RescoreRun``: publishing, the nightly decay refresh)
    that finishes, in the transaction that marks it done, whichever path or worker
    finishes it; ``sender`` is ``RescoreRun``, ``run`` the finished run (its ruleset and
    model loaded). Not sent for a failed run. Receiver:
    ``handoff.receivers.webhooks_hear_of_rescores`` (the ``model.rescored`` webhook)."""


@dataclass(frozen=True)
class ScoreChange:
    lead_id: int
    model_id: int
    before: Decimal | None  # None: the lead's first score under the model
    after: Decimal


def _scores_before(specs: Sequence[RuleSetSpec], ids: Sequence[int]) -> dict[tuple[int, int], Decimal]:
    rows = Score.objects.filter(lead_id__in=list(ids), model_id__in=[spec.model_id for spec in specs])
    return {(model_id, lead_id): score for model_id, lead_id, score in rows.values_list("model_id", "lead_id", "score")}


def _score_changes(
    before: dict[tuple[int, int], Decimal], written: dict[int, dict[int, bulk.ScoreRow]]
) -> list[ScoreChange]:
    cent = Decimal("0.01")  # Score.score's precision: what was stored
    changes = []
    for model_id, rows in written.items():
        for lead_id, row in rows.items():
            old, new = before.get((model_id, lead_id)), row.score.quantize(cent)
            if old != new:
                changes.append(ScoreChange(lead_id, model_id, old, new))
    return changes


# --- Automatic stage transitions (applied by leadflow.leads.lifecycle) -------------------
def _describe(to_stage: str, spec: RuleSetSpec, score: Decimal) -> str:
    """The reason of an automatic change; ``bulk.ScoresTable.transitions`` writes the same."""
    where = f"({spec.model_slug} v{spec.version})."
    if to_stage == Stage.MQL:
        return f"Score {score} reached the MQL threshold {spec.mql_threshold} {where}"
    return f"Intent shown and score {score} reached the SQL threshold {spec.sql_threshold} {where}"


def _automatic_transitions(lead: Lead, scores: Sequence[tuple[RuleSetSpec, bulk.ScoreRow]]) -> list[Transition]:
    """The lead's forward transitions under every model's scores; each records the models
    that qualified it, and the first one's ruleset and score."""
    transitions = []
    current = lead.stage
    by_model = {spec.model_id: row for spec, row in scores}
    for step in selectors.automatic_path(stage=lead.stage, recycled_at=lead.recycled_at, scores=scores):
        first = step.specs[0]
        score = by_model[first.model_id].score
        transitions.append(
            Transition(
                lead,
                current,
                step.to_stage,
                _describe(step.to_stage, first, score),
                qualified_by=[spec.model_slug for spec in step.specs],
                ruleset_version=first.version,
                score=score,
            )
        )
        current = step.to_stage
    return transitions


@dataclass
class ScoreSummary:
    scored: int = 0
    transitions: int = 0


def leads_score(*, lead_ids: Sequence[int], as_of: datetime | None = None, flagged_only: bool = False) -> ScoreSummary:
    """Rescore these leads under every published model (the incremental path), apply
    forward stage transitions and clear their ``needs_rescore`` flag, in chunks of
    ``SCORE_CHUNK``. With ``flagged_only`` (the passes, the fast lane, the sweep), a lead
    whose flag is clear is left out: another scoring took it, and its compute sees every
    event committed before it cleared the flag.

    No lead stays locked while its scores are computed, so ingest never waits for a
    scoring chunk (``_score_chunk``): each chunk takes its leads in a short transaction
    of its own (``_leads_take``), then computes and writes their scores and applies the
    few stage changes in a second one."""
    summary = ScoreSummary()
    ids = sorted(set(lead_ids))
    for start in range(0, len(ids), SCORE_CHUNK):
        chunk_summary = _score_chunk(ids[start : start + SCORE_CHUNK], as_of=as_of, flagged_only=flagged_only)
        summary.scored += chunk_summary.scored
        summary.transitions += chunk_summary.transitions
    return summary


@dataclass(frozen=True)
class Taken:
    """Leads a scoring took: their flag is cleared, as of ``at``; ``claim`` records it
    until their scores are written (None when no flag was cleared)."""

    ids: list[int]
    at: datetime
    claim: int | None


def _leads_take(ids: Sequence[int]) -> Taken:
    """Clear the ``needs_rescore`` flag of those of these leads that are flagged and that
    no one holds, and return them with the moment they were taken (one short transaction).

    A lead an ingest holds is skipped: it stays flagged and the next pass takes it. The
    clear and ingest's flag serialise on the lead's row, so every event committed after
    the clear flags the lead again, and the scores computed after this commit see every
    event committed before it. ``at`` is read while the rows are still locked: a lead
    taken again later (after an ingest flagged it again) gets a later moment, which is
    what lets the newer scores win (``bulk.scores_upsert``). (One clock: the app's, as
    for full rescores' ``as_of``; the servers' clocks must agree to within the time
    between two takes of one lead, as NTP keeps them.)"""
    with transaction.atomic():
        if _is_postgres():
            lead = SqlNames(Lead)
            with connection.cursor() as cursor:
                cursor.execute(
                    f"""
                    UPDATE {lead.table} SET {lead.needs_rescore} = false
                    WHERE {lead.id} IN (
                        SELECT {lead.id} FROM {lead.table}
                        WHERE {lead.id} = ANY(%s::bigint[]) AND {lead.needs_rescore}
                        FOR NO KEY UPDATE SKIP LOCKED
                    )
                    RETURNING {lead.id}
                    """,  # noqa: S608 -- names from the model
                    [pg_array(list(ids))],
                )
                taken = sorted(row[0] for row in cursor.fetchall())
        else:
            # SQLite runs one writer at a time: no row locks to skip.
            flagged = Lead.objects.filter(id__in=ids, needs_rescore=True).order_by("id")
            taken = list(flagged.values_list("id", flat=True))
            Lead.objects.filter(id__in=taken).update(needs_rescore=False)
        at = timezone.now()  # the rows are still locked: see the docstring
        claim = ScoringClaim.objects.create(lead_ids=taken, claimed_at=at).pk if taken else None
    return Taken(taken, at, claim)


def _score_chunk(ids: Sequence[int], *, as_of: datetime | None, flagged_only: bool) -> ScoreSummary:
    """Take these leads (``_leads_take``), then in one transaction without their locks:
    score them under every published model as of ``as_of`` (the moment they were taken
    by default), roll up their accounts, and apply their automatic stage transitions
    (``_transitions_apply``, which locks only the leads that move). If that fails, their
    flag is set again at once; if the worker dies, the sweep sets it (``ScoringClaim``)."""
    taken = _leads_take(ids)
    chosen = taken.ids if flagged_only else list(ids)
    if not chosen:
        return ScoreSummary()
    at = as_of or taken.at
    try:
        with transaction.atomic():
            summary = _score_and_move(chosen, at)
            if taken.claim is not None:
                ScoringClaim.objects.filter(pk=taken.claim).delete()
    except BaseException:  # a time limit too: the leads must not stay unflagged
        if taken.claim is not None:
            _claim_release(taken.claim)
        raise
    return summary


def _claim_release(claim_id: int) -> None:
    """Flag a claim's leads again and drop the claim (its scoring failed or died)."""
    with transaction.atomic():
        claim = ScoringClaim.objects.select_for_update(skip_locked=True).filter(pk=claim_id).first()
        if claim is None:
            return
        Lead.objects.filter(id__in=claim.lead_ids, erased_at__isnull=True).update(needs_rescore=True)
        claim.delete()


def scoring_claims_recover(*, older_than_seconds: int | None = None) -> int:
    """The sweep's half for incremental scoring: flag again the leads of claims older than
    ``SWEEP_GRACE_SECONDS`` (their worker died between the clear and the scores), so that
    they are scored. Returns how many claims it released. Releasing a claim whose scoring
    is only slow costs one more scoring of its leads, nothing else."""
    if older_than_seconds is None:
        older_than_seconds = settings.SWEEP_GRACE_SECONDS
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    stale = list(ScoringClaim.objects.filter(claimed_at__lte=cutoff).order_by("id").values_list("id", flat=True))
    for claim_id in stale:
        logger.warning("Sweep: scoring claim %s was never finished; its leads are flagged again", claim_id)
        _claim_release(claim_id)
    return len(stale)


def _score_and_move(ids: Sequence[int], at: datetime) -> ScoreSummary:
    """Score these leads under every published model as of ``at``, inside the caller's
    transaction, then roll up their accounts and apply their transitions.

    The published rulesets are read here, after the leads were taken: a ruleset published
    since has a full rescore whose ``as_of`` is later than ``at``, and that rescore's scores
    win over these (``bulk.scores_upsert``, ``ScoresTable.write``). Only the scores this
    call wrote (not a newer one) are considered for transitions."""
    specs = selectors.published_specs()
    if not specs:
        return ScoreSummary(scored=Lead.objects.filter(id__in=ids, erased_at__isnull=True).count())
    announce = scores_changed.has_listeners(Score)
    before = _scores_before(specs, ids) if announce else {}
    if _is_postgres():
        # Set-based, each model in one statement; the engines agree.
        written = {spec.model_id: {row.id: row for row in bulk.scores_upsert(spec, ids, at)} for spec in specs}
    else:
        written = _scores_write_orm(specs, ids, at)
    if announce and (changes := _score_changes(before, written)):
        scores_changed.send(sender=Score, changes=changes, at=at)
    accounts.accounts_rollup(model_ids=[spec.model_id for spec in specs], lead_ids=ids, at=at)
    moved = _transitions_apply(specs, written, at)
    return ScoreSummary(scored=len(set().union(*written.values())), transitions=moved)


def _scores_write_orm(
    specs: Sequence[RuleSetSpec], ids: Sequence[int], at: datetime
) -> dict[int, dict[int, bulk.ScoreRow]]:
    """The single-lead engine's twin of ``bulk.scores_upsert`` (SQLite): the same scores,
    written under the same conditions (the lead is not erased, the ruleset is still
    published, no newer score is stored)."""
    leads = list(Lead.objects.filter(id__in=ids, erased_at__isnull=True).order_by("id"))
    events = selectors.events_by_lead([lead.pk for lead in leads], *specs)
    published = set(RuleSet.objects.filter(status=RuleSetStatus.PUBLISHED).values_list("version", flat=True))
    written: dict[int, dict[int, bulk.ScoreRow]] = {}
    for spec in specs:
        newer = set(
            Score.objects.filter(model_id=spec.model_id, lead_id__in=ids, computed_at__gt=at).values_list(
                "lead_id", flat=True
            )
        )
        rows = [
            bulk.ScoreRow.of(
                lead.pk,
                engine.score_lead(selectors.lead_attributes(lead), events.get(lead.pk, []), spec, at, lead.recycled_at),
            )
            for lead in leads
            if lead.pk not in newer and spec.version in published
        ]
        _score_rows(spec, rows, at, stages={lead.pk: lead.stage for lead in leads})
        written[spec.model_id] = {row.id: row for row in rows}
    return written


def _transitions_apply(specs: Sequence[RuleSetSpec], written: dict[int, dict[int, bulk.ScoreRow]], at: datetime) -> int:
    """Apply the automatic transitions of the leads whose new scores may move them.

    The candidates are found without locks (the scores just written, each lead's stage
    as read now); only they are locked (in id order: ingest locks in the same order), and
    for each the stage, the recycling and the stored scores are read again under the lock
    and the decision is taken again: a concurrent scoring of the same lead moves it once,
    and a newer score stored meanwhile is the one that decides. Returns how many
    transitions were applied."""
    ids = sorted(set().union(*written.values()))
    # A visitor (only anonymous ids) is scored, never promoted.
    movable = Lead.objects.filter(id__in=ids, stage__in=MOVABLE_STAGES, erased_at__isnull=True, visitor=False)
    candidates = [
        lead.pk
        for lead in movable.only("id", "stage", "recycled_at")
        if _automatic_transitions(
            lead, [(spec, rows[lead.pk]) for spec in specs if lead.pk in (rows := written[spec.model_id])]
        )
    ]
    if not candidates:
        return 0
    locked = list(Lead.objects.select_for_update(no_key=True).filter(id__in=candidates).order_by("id"))
    stored = _stored_scores(specs, candidates)
    transitions: list[Transition] = []
    for lead in locked:
        if lead.erased_at is None and not lead.visitor:
            scores = [(spec, row) for spec in specs if (row := stored.get((spec.version, lead.pk)))]
            transitions += _automatic_transitions(lead, scores)
    transitions_apply(transitions, at=at)
    return len(transitions)


# The stages an automatic transition moves a lead from (``selectors.automatic_path``).
MOVABLE_STAGES = (Stage.NEW, Stage.RECYCLED, Stage.MQL)


def _stored_scores(specs: Sequence[RuleSetSpec], lead_ids: Sequence[int]) -> dict[tuple[int, int], bulk.ScoreRow]:
    """The stored scores of these leads under these rulesets, by (version, lead): a score
    of another version (a full rescore under a ruleset published since) is not theirs."""
    versions = [spec.version for spec in specs]  # numbered across models: a version names its model
    rows = Score.objects.filter(lead_id__in=lead_ids, ruleset_version__in=versions)
    return {
        (row.ruleset_version, row.lead_id): bulk.ScoreRow(
            row.lead_id,
            row.fit,
            row.behaviour,
            row.last_intent_at,
            row.grade,
            row.suppressed_by,
            row.behaviour_since_recycled,
        )
        for row in rows
    }


SCORE_FIELDS = [
    "score",
    "fit",
    "behaviour",
    "grade",
    "ruleset_version",
    "computed_at",
    "last_intent_at",
    "behaviour_since_recycled",
    "suppressed_by",
]


def _score_rows(spec: RuleSetSpec, rows: Sequence[bulk.ScoreRow], at: datetime, *, stages: dict[int, str]) -> None:
    """Store these scores of one model: one upsert (``bulk_create`` on the key). ``stages``:
    the (locked) leads' stages, which a new row takes (``bulk.score_stage_inserted``)."""
    Score.objects.bulk_create(
        [
            Score(
                model_id=spec.model_id,
                lead_id=row.id,
                stage=stages[row.id],
                score=row.score,
                fit=row.fit,
                behaviour=row.behaviour,
                grade=row.grade,
                ruleset_version=spec.version,
                computed_at=at,
                last_intent_at=row.last_intent_at,
                behaviour_since_recycled=row.behaviour_since,
                suppressed_by=row.suppressed_by,
            )
            for row in rows
        ],
        batch_size=1000,
        update_conflicts=True,
        unique_fields=["lead", "model"],
        update_fields=SCORE_FIELDS,
    )


# --- The bulk engine ---------------------------------------------------------------------
def _is_postgres() -> bool:
    return connection.vendor == "postgresql"


def rescore_run_create(*, ruleset: RuleSet, reason: str, user: Any = None) -> RescoreRun:
    """A full rescore under ``ruleset``, enqueued after the commit: split across the
    workers (``RESCORE_PARALLEL``, PostgreSQL) or in one task."""
    parallel = settings.RESCORE_PARALLEL and _is_postgres()
    run = RescoreRun.objects.create(
        ruleset=ruleset, reason=reason, created_by=user, total=Lead.objects.count(), parallel=parallel
    )
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

    if run.parallel:
        _rescore_split(run)
        run.refresh_from_db()
        return run
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
    _rescore_run_done(run.pk, timezone.now(), attempts=lease)
    run.refresh_from_db()
    return run


def _rescore_run_done(run_id: int, now: datetime, **held: Any) -> None:
    """Mark the run done while it is running (and ``held``: its finisher's lease), and
    announce it (``rescore_finished``) in the same transaction: the conditional UPDATE
    lets one finisher through, so it is announced once."""
    with transaction.atomic():
        finished = RescoreRun.objects.filter(pk=run_id, state=RescoreState.RUNNING, **held).update(
            state=RescoreState.DONE, done=F("total"), heartbeat_at=now, finished_at=now
        )
        if finished:
            run = RescoreRun.objects.select_related("ruleset__model").get(pk=run_id)
            rescore_finished.send(sender=RescoreRun, run=run)


# --- A rescore split across workers -------------------------------------------------------------
def _rescore_split(run: RescoreRun) -> None:
    """Cut the run into chunks of ``RESCORE_CHUNK_SIZE`` lead ids (once) and enqueue, as
    one Celery group, every chunk not done yet; the workers share them, and the last
    chunk to finish finishes the run (``rescore_chunk_execute``)."""
    assert run.max_lead_id is not None  # set by the claim  # noqa: S101
    with transaction.atomic():
        if not run.chunks.exists():
            bounds = _chunk_bounds(run.max_lead_id, settings.RESCORE_CHUNK_SIZE)
            RescoreChunk.objects.bulk_create(
                [
                    RescoreChunk(run=run, after_lead_id=after, last_lead_id=last)
                    for after, last in itertools.pairwise([0, *bounds])
                ]
            )
        RescoreRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now())
        pending = list(_chunks_to_run(run).values_list("id", flat=True))
        transaction.on_commit(lambda: _enqueue_chunks(pending), robust=True)
    if not pending:
        _rescore_finish(run.pk)


def _chunk_bounds(max_lead_id: int, size: int) -> list[int]:
    """The last lead id of each chunk of ``size`` leads up to ``max_lead_id`` (one pass over the id index)."""
    lead = SqlNames(Lead)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT id FROM (
                SELECT {lead.id} AS id, row_number() OVER (ORDER BY {lead.id}) AS n
                FROM {lead.table} WHERE {lead.id} <= %s
            ) numbered WHERE n %% %s = 0 ORDER BY id
            """,  # noqa: S608 -- names from the model
            [max_lead_id, size],
        )
        bounds = [int(row[0]) for row in cursor.fetchall()]
    if not bounds or bounds[-1] < max_lead_id:
        bounds.append(max_lead_id)
    return bounds


def _chunks_to_run(run: RescoreRun) -> Any:
    """Chunks left: queued, failed with starts left, or running with a stopped heartbeat."""
    return run.chunks.filter(
        Q(state=RescoreState.QUEUED)
        | Q(state=RescoreState.FAILED, attempts__lt=settings.RESCORE_MAX_ATTEMPTS)
        | (Q(state=RescoreState.RUNNING) & (Q(heartbeat_at__lt=_stale_before()) | Q(heartbeat_at__isnull=True)))
    ).order_by("after_lead_id")


def _enqueue_chunks(chunk_ids: list[int]) -> None:
    from celery import group

    from scoring.tasks import rescore_chunk

    if chunk_ids:
        group(rescore_chunk.s(chunk_id) for chunk_id in chunk_ids).apply_async()


def _rescore_chunk_claim(chunk: RescoreChunk) -> int | None:
    with transaction.atomic():
        locked = _chunks_to_run(chunk.run).select_for_update().filter(pk=chunk.pk).first()
        if locked is None:
            return None
        locked.attempts += 1
        locked.state, locked.heartbeat_at, locked.error = RescoreState.RUNNING, timezone.now(), ""
        locked.save(update_fields=["attempts", "state", "heartbeat_at", "error"])
        return locked.attempts


def rescore_chunk_execute(*, chunk: RescoreChunk) -> str:
    """Score one chunk of a split run in one transaction: the scores of its leads
    (``bulk.scores_table`` over its range), their transitions, the signal, its state
    and the run's progress. Safe to run twice: a chunk done, or held by a live worker,
    is left alone; the last chunk to finish finishes the run."""
    run = chunk.run
    if run.state != RescoreState.RUNNING or run.ruleset.status != RuleSetStatus.PUBLISHED:
        return "skipped"
    lease = _rescore_chunk_claim(chunk)
    if lease is None:
        return "skipped"
    ruleset = selectors.ruleset_by_version(run.ruleset.version)
    assert ruleset is not None and run.as_of is not None  # noqa: S101 -- checked above, set by the claim
    spec = selectors.ruleset_spec(ruleset)
    try:
        with (
            transaction.atomic(),
            bulk.scores_table(spec, run.as_of, after=chunk.after_lead_id, upto=chunk.last_lead_id) as scores,
        ):
            scored = scores.write(after=chunk.after_lead_id, upto=chunk.last_lead_id)
            changes = scores.transitions(after=chunk.after_lead_id, upto=chunk.last_lead_id)
            _announce(changes, run.as_of)
            now = timezone.now()
            held = RescoreChunk.objects.filter(pk=chunk.pk, attempts=lease, state=RescoreState.RUNNING).update(
                state=RescoreState.DONE, scored=scored, changed_stages=len(changes), heartbeat_at=now
            )
            if not held:
                raise RescoreRunSuperseded(f"Rescore chunk {chunk.pk}: lease {lease} was taken over.")
            RescoreRun.objects.filter(pk=run.pk).update(
                done=F("done") + scored, changed_stages=F("changed_stages") + len(changes), heartbeat_at=now
            )
    except RescoreRunSuperseded:
        logger.warning("Rescore chunk %s: lease %s was taken over by another worker", chunk.pk, lease)
        return "superseded"
    except Exception as error:
        logger.exception("Rescore chunk %s failed", chunk.pk)
        RescoreChunk.objects.filter(pk=chunk.pk, attempts=lease).update(
            state=RescoreState.FAILED, error=str(error)[:2000]
        )
        raise
    _rescore_finish(run.pk)
    return RescoreState.DONE


def _rescore_finish(run_id: int) -> None:
    """Finish a split run once none of its chunks is left to do (whoever gets here first)."""
    if RescoreChunk.objects.filter(run_id=run_id).exclude(state=RescoreState.DONE).exists():
        return
    run = RescoreRun.objects.select_related("ruleset").filter(pk=run_id, state=RescoreState.RUNNING).first()
    if run is None:
        return
    _rescore_done(run.ruleset.model_id)
    _rescore_run_done(run_id, timezone.now())


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
    """The single-lead engine's twin of ``_rescore_all_sql`` (SQLite): this model's
    scores only; a lead's transitions consider this model alone, as there."""
    ids = list(
        Lead.objects.filter(id__gt=state.last_lead_id, id__lte=max_lead_id, erased_at__isnull=True)
        .order_by("id")
        .values_list("id", flat=True)
    )
    for start in range(0, len(ids), SCORE_CHUNK):
        chunk = ids[start : start + SCORE_CHUNK]
        with transaction.atomic():
            state.check()
            leads = list(Lead.objects.select_for_update().filter(id__in=chunk).order_by("id"))
            events = selectors.events_by_lead(chunk, spec)
            newer = set(
                Score.objects.filter(model_id=spec.model_id, lead_id__in=chunk, computed_at__gt=as_of).values_list(
                    "lead_id", flat=True
                )
            )
            rows, transitions = [], []
            for lead in leads:
                if lead.pk in newer:
                    continue
                result = engine.score_lead(
                    selectors.lead_attributes(lead), events.get(lead.pk, []), spec, as_of, lead.recycled_at
                )
                row = bulk.ScoreRow.of(lead.pk, result)
                rows.append(row)
                transitions += _automatic_transitions(lead, [(spec, row)])
            _score_rows(spec, rows, as_of, stages={lead.pk: lead.stage for lead in leads})
            transitions_apply(transitions, at=as_of)
            state.commit(last_lead_id=chunk[-1], scored=len(rows), changed=len(transitions))
    _rescore_done(spec.model_id)


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
                changes = scores.transitions(after=after, upto=upto)
                _announce(changes, as_of)
                state.commit(last_lead_id=upto, scored=scored, changed=len(changes))
            after = upto
    _rescore_done(spec.model_id)


def _rescore_done(model_id: int) -> None:
    """What follows every lead's rescore under a model: its orphaned scores go, then the
    accounts' roll-ups are recomputed and the dashboard's score histogram of the model is
    counted again (a task, after commit: a scan of every lead)."""
    scores_orphaned_delete(model_id=model_id)
    accounts.accounts_rollup_after_rescore(model_id=model_id)
    slug = ScoringModel.objects.filter(pk=model_id).values_list("slug", flat=True).first()
    transaction.on_commit(lambda: refresh_score_histograms.delay(slug), robust=True)  # the beat redoes it


def scores_orphaned_delete(*, model_id: int) -> int:
    """Delete the model's scores whose lead no longer exists; returns how many. The scores
    table has no foreign-key constraints (``Score``): a lead deleted while a rescore was
    writing its chunk can leave its score behind. One anti-join (a second at 1M leads)."""
    orphaned = Score.objects.filter(model_id=model_id).filter(~Exists(Lead.objects.filter(pk=OuterRef("lead_id"))))
    deleted, _ = orphaned.delete()
    if deleted:
        logger.info("Deleted %s scores of deleted leads under model %s", deleted, model_id)
    return deleted


def _announce(changes: list[StageChange], at: datetime) -> None:
    """Send ``stages_changed`` for StageChanges written set-based, as ``transitions_apply``
    does (the handoff opens handoffs and notifies, in bulk): with their leads, in one query."""
    if not changes:
        return
    # The receivers read the leads that entered SQL (handoffs and their notifications): load
    # those, with the fields they show; an automatic change never takes a lead out of SQL.
    entered = [change for change in changes if change.to_stage == Stage.SQL]
    leads = Lead.objects.only(*HANDOFF_LEAD_FIELDS).in_bulk({change.lead_id for change in entered})
    for change in entered:
        change.lead = leads[change.lead_id]
    stages_changed.send(sender=StageChange, applied=TransitionsApplied(at=at, changes=changes))


# What the handoff's receiver reads of a lead that entered SQL (its handoff, its notification,
# the attributes kept on the handoff for score quality).
HANDOFF_LEAD_FIELDS = ("id", "public_id", "external_id", "stage", *selectors.LEAD_ATTRIBUTE_FIELDS)


# --- What a valid ruleset and a valid rule are ----------------------------------------------
SCALAR_TYPES = (str, int, float, bool)
RULESET_NAME_MISSING = "Name the ruleset: the pages list rulesets by name."
RULE_NAME_MISSING = "Name the rule: explanations show it by name."
INTENT_WINDOW_TOO_SHORT = "A hand-raise must count at least 1 day (90 is usual)."
WINDOW_TOO_SHORT = "At least 1 day, or empty for all time."
POSITION_NEGATIVE = "A position is a whole number, 0 or more."

# The codes of the messages that name an operator: a page says them in its own words
# (``scoring.forms``), where the operators have labels ("is present" for ``exists``).
VALUE_NOT_TAKEN = "value_not_taken"
VALUE_LIST_NEEDED = "value_list_needed"
VALUE_NUMBER_NEEDED = "value_number_needed"
VALUE_NEEDED = "value_needed"
OPERATOR_UNKNOWN = "operator_unknown"

Errors = dict[str, list[ValidationError]]


def _add(errors: Errors, field: str, message: str, code: str = "invalid") -> None:
    errors.setdefault(field, []).append(ValidationError(message, code=code))


def ruleset_validate(
    *,
    name: str,
    description: str,
    mql_threshold: Decimal,
    sql_threshold: Decimal,
    intent_event_types: object,
    sql_min_fit: Decimal | None,
    decay_half_life_days: Decimal | None,
    grade_a_min: Decimal,
    grade_b_min: Decimal,
    grade_c_min: Decimal,
    grade_d_min: Decimal,
    mql_min_grade: str,
    sql_min_grade: str,
    intent_window_days: int,
    requalify_threshold: Decimal,
    mqa_threshold: Decimal | None,
) -> None:
    """The rules of a ruleset, defined once (``ruleset_errors``): ruleset_create and
    ruleset_update enforce them, and the API, the pages and the admin check them first so
    that each message shows on its field. Takes every field of ``RULESET_FIELDS`` (for an
    edit: the ruleset's values with the changes applied). Raises a ValidationError keyed
    by field (DRF and Django forms both attach it to that field)."""
    errors = ruleset_errors(
        {
            "name": name,
            "description": description,
            "mql_threshold": mql_threshold,
            "sql_threshold": sql_threshold,
            "intent_event_types": intent_event_types,
            "sql_min_fit": sql_min_fit,
            "decay_half_life_days": decay_half_life_days,
            "grade_a_min": grade_a_min,
            "grade_b_min": grade_b_min,
            "grade_c_min": grade_c_min,
            "grade_d_min": grade_d_min,
            "mql_min_grade": mql_min_grade,
            "sql_min_grade": sql_min_grade,
            "intent_window_days": intent_window_days,
            "requalify_threshold": requalify_threshold,
            "mqa_threshold": mqa_threshold,
        }
    )
    if errors:
        raise ValidationError(errors)


def ruleset_errors(values: Mapping[str, Any]) -> Errors:
    """Every message of ``ruleset_validate`` at once, the checks that compare fields
    included. A field missing from ``values`` is one the caller could not read (a number
    that is not one: its own message says so); the checks that need it wait for it, every
    other check speaks now, so a person fixes everything in one round."""
    errors: Errors = {}
    if "name" in values and not (values["name"] or "").strip():
        _add(errors, "name", RULESET_NAME_MISSING, "blank")
    mql, sql = values.get("mql_threshold"), values.get("sql_threshold")
    if "mql_threshold" in values:
        if mql is None:
            _add(errors, "mql_threshold", "Give the MQL threshold: a number above zero.", "required")
        elif mql <= 0:
            _add(errors, "mql_threshold", "The MQL threshold must be above zero.")
    if "sql_threshold" in values and sql is None:
        _add(errors, "sql_threshold", "Give the SQL threshold: a number at least the MQL threshold.", "required")
    if mql is not None and sql is not None and sql < mql:
        _add(errors, "sql_threshold", "The SQL threshold cannot be below the MQL threshold.")
    half_life = values.get("decay_half_life_days")
    if half_life is not None and half_life <= 0:
        _add(errors, "decay_half_life_days", "A half-life is a positive number of days; leave empty for no decay.")
    if "intent_event_types" in values:
        intents = values["intent_event_types"]
        if not isinstance(intents, list) or not all(isinstance(v, str) and EVENT_TYPE_RE.match(v) for v in intents):
            _add(errors, "intent_event_types", 'A list of event type slugs, e.g. ["demo_request", "contact_request"].')
    for field_name in ("mql_min_grade", "sql_min_grade"):
        minimum = values.get(field_name)
        if minimum and minimum not in GRADES:
            _add(errors, field_name, f"A grade is one of {', '.join(GRADES)}, or empty for any grade.")
    if "intent_window_days" in values and (values["intent_window_days"] is None or values["intent_window_days"] < 1):
        _add(errors, "intent_window_days", INTENT_WINDOW_TOO_SHORT)
    if "requalify_threshold" in values and (
        values["requalify_threshold"] is None or values["requalify_threshold"] <= 0
    ):
        _add(
            errors,
            "requalify_threshold",
            "A recycled lead must earn some points again: give a number above zero.",
        )
    mqa = values.get("mqa_threshold")
    if mqa is not None and mqa <= 0:
        _add(errors, "mqa_threshold", "The MQA threshold must be above zero, or empty for no MQAs.")
    grades = [(letter, values.get(f"grade_{letter.lower()}_min")) for letter in ("A", "B", "C", "D")]
    for (letter, threshold), (lower_letter, lower) in itertools.pairwise(grades):
        if threshold is not None and lower is not None and threshold < lower:
            message = f"Grade {letter} needs at least the fit of grade {lower_letter} ({lower})."
            _add(errors, f"grade_{letter.lower()}_min", message)
    return errors


def rule_validate(
    *,
    kind: str,
    name: str,
    points: Decimal,
    position: int | None,
    event_type: str,
    attribute: str,
    operator: str,
    value: Any,
    max_points: Decimal | None,
    window_days: int | None,
    decays: bool = True,
) -> None:
    """The rules of a rule's shape, defined once (``rule_errors``): what a fit, a behaviour
    and a suppression rule test, with which operator and value, capped and windowed how.
    rule_create and rule_update enforce them; the API, the pages and the admin check them
    first so that each message shows on its field. Takes every field of ``RULE_FIELDS``
    (for an edit: the rule's values with the changes applied). Raises a ValidationError
    keyed by field."""
    errors = rule_errors(
        {
            "kind": kind,
            "name": name,
            "points": points,
            "position": position,
            "event_type": event_type,
            "attribute": attribute,
            "operator": operator,
            "value": value,
            "max_points": max_points,
            "window_days": window_days,
            "decays": decays,
        }
    )
    if errors:
        raise ValidationError(errors)


def rule_errors(values: Mapping[str, Any]) -> Errors:
    """Every message of ``rule_validate`` at once. As in ``ruleset_errors``, a field
    missing from ``values`` could not be read: the checks that need it wait for it (the
    rule's shape needs its kind, event type and attribute; its value, its operator)."""
    errors: Errors = {}
    known = values.__contains__
    kind = values.get("kind")
    if known("kind") and kind not in RuleKind.values:
        _add(errors, "kind", f"Choose the kind of rule: {' or '.join(RuleKind.values)}.")
    if known("name") and not (values["name"] or "").strip():
        _add(errors, "name", RULE_NAME_MISSING, "blank")
    points = values.get("points")
    if kind in RuleKind.values and points is not None:
        if kind == RuleKind.SUPPRESS:
            if points != 0:
                _add(errors, "points", "A suppression rule has no points (0): it blocks promotion outright.")
        elif points == 0:
            _add(errors, "points", "Points must not be zero: delete the rule instead.")
    position = values.get("position")
    if position is not None and position < 0:
        _add(errors, "position", POSITION_NEGATIVE)
    operator = values.get("operator") or ""
    if operator and operator not in Operator.values:
        _add(
            errors,
            "operator",
            f"Unknown operator {operator!r}: choose one of {', '.join(Operator.values)}.",
            OPERATOR_UNKNOWN,
        )
    max_points, window_days = values.get("max_points"), values.get("window_days")
    if kind in (RuleKind.FIT, RuleKind.SUPPRESS):
        for field_name, limit in (("max_points", max_points), ("window_days", window_days)):
            if limit is not None:
                _add(errors, field_name, "Only behaviour rules have caps and windows.")
    # An operator that could not be read counts as none here: what that would say of the
    # operator, its own message already says.
    if all(known(name) for name in ("kind", "event_type", "attribute")):
        _rule_shape_errors(kind or "", values["event_type"] or "", values["attribute"] or "", operator, errors)
    if kind == RuleKind.BEHAVIOUR:
        if max_points is not None and points and (max_points > 0) != (points > 0):
            _add(
                errors,
                "max_points",
                "The cap must have the same sign as the points (a negative rule has a negative floor).",
            )
        if window_days is not None and window_days < 1:
            _add(errors, "window_days", WINDOW_TOO_SHORT)
    if operator and known("value") and "value" not in errors and (refusal := _value_error(operator, values["value"])):
        _add(errors, "value", *refusal)
    return errors


def _rule_shape_errors(kind: str, event_type: str, attribute: str, operator: str, errors: Errors) -> None:
    if kind == RuleKind.SUPPRESS and event_type:
        if not EVENT_TYPE_RE.match(event_type):
            _add(errors, "event_type", "Give the event type that suppresses (a slug such as unsubscribe).")
        _property_condition_errors(attribute, operator, errors)
    elif kind in (RuleKind.FIT, RuleKind.SUPPRESS):
        if event_type:
            _add(errors, "event_type", "Fit rules test lead attributes; leave event_type empty.")
        if not attribute:
            _add(errors, "attribute", "Name the lead attribute to test (e.g. industry, company_size, traits.plan).")
        elif attribute not in engine.LEAD_ATTRIBUTES and not _valid_trait(attribute):
            allowed = ", ".join(sorted(engine.LEAD_ATTRIBUTES))
            _add(errors, "attribute", f"Unknown lead attribute: use one of {allowed}, or traits.<key>.")
        if not operator:
            _add(errors, "operator", "Choose an operator.")
    elif kind == RuleKind.BEHAVIOUR:
        if not EVENT_TYPE_RE.match(event_type):
            _add(errors, "event_type", "Give the event type this rule counts (a slug such as page_view).")
        _property_condition_errors(attribute, operator, errors)


def _property_condition_errors(attribute: str, operator: str, errors: Errors) -> None:
    if attribute and not all(engine.PATH_SEGMENT_RE.match(s) for s in attribute.split(".")):
        _add(errors, "attribute", "A property path is dot-separated keys of letters, digits, '_' or '-'.")
    if attribute and not operator:
        _add(errors, "operator", "Choose an operator for the property condition.")
    if operator and not attribute:
        _add(errors, "attribute", "Name the event property the condition tests (e.g. topic).")


def _valid_trait(attribute: str) -> bool:
    if not attribute.startswith(engine.TRAIT_PREFIX):
        return False
    path = attribute[len(engine.TRAIT_PREFIX) :]
    return bool(path) and all(engine.PATH_SEGMENT_RE.match(segment) for segment in path.split("."))


def _value_error(operator: str, value: Any) -> tuple[str, str] | None:
    """What is wrong with the value the operator takes, and the message's code
    (``VALUE_*``: the pages say it with the operator's label)."""
    is_number = isinstance(value, int | float | Decimal) and not isinstance(value, bool)
    if operator == Operator.EXISTS:
        return None if value is None else ("'exists' takes no value: leave it empty.", VALUE_NOT_TAKEN)
    if operator in (Operator.GTE, Operator.LTE):
        return None if is_number else ("Comparisons need a number.", VALUE_NUMBER_NEEDED)
    if operator == Operator.IN:
        if not isinstance(value, list) or not value or not all(isinstance(v, SCALAR_TYPES) for v in value):
            return "'in' needs a non-empty list of texts or numbers.", VALUE_LIST_NEEDED
        return None
    if operator in (Operator.EQ, Operator.NEQ, Operator.CONTAINS):
        if not isinstance(value, SCALAR_TYPES) or value == "":
            return "Give a text or number to compare with.", VALUE_NEEDED
        return None
    return None


# --- Rulesets ------------------------------------------------------------------------------
class NotGiven(Enum):
    """The value of a field an update leaves as it is (None is a value: "no decay")."""

    NOT_GIVEN = "not given"


NOT_GIVEN = NotGiven.NOT_GIVEN


@dataclass(frozen=True, kw_only=True)
class Changes:
    """The fields an update sets (PATCH semantics): the others stay as they are."""

    def given(self) -> dict[str, Any]:
        values = {field.name: getattr(self, field.name) for field in fields(self)}
        return {name: value for name, value in values.items() if value is not NOT_GIVEN}


@dataclass(frozen=True, kw_only=True)
class RuleSetChanges(Changes):
    name: str | NotGiven = NOT_GIVEN
    description: str | NotGiven = NOT_GIVEN
    mql_threshold: Decimal | NotGiven = NOT_GIVEN
    sql_threshold: Decimal | NotGiven = NOT_GIVEN
    intent_event_types: list[str] | NotGiven = NOT_GIVEN
    sql_min_fit: Decimal | None | NotGiven = NOT_GIVEN
    decay_half_life_days: Decimal | None | NotGiven = NOT_GIVEN
    grade_a_min: Decimal | NotGiven = NOT_GIVEN
    grade_b_min: Decimal | NotGiven = NOT_GIVEN
    grade_c_min: Decimal | NotGiven = NOT_GIVEN
    grade_d_min: Decimal | NotGiven = NOT_GIVEN
    mql_min_grade: str | NotGiven = NOT_GIVEN
    sql_min_grade: str | NotGiven = NOT_GIVEN
    intent_window_days: int | NotGiven = NOT_GIVEN
    requalify_threshold: Decimal | NotGiven = NOT_GIVEN
    mqa_threshold: Decimal | None | NotGiven = NOT_GIVEN


@dataclass(frozen=True, kw_only=True)
class RuleChanges(Changes):
    kind: str | NotGiven = NOT_GIVEN
    name: str | NotGiven = NOT_GIVEN
    points: Decimal | NotGiven = NOT_GIVEN
    position: int | NotGiven = NOT_GIVEN
    event_type: str | NotGiven = NOT_GIVEN
    attribute: str | NotGiven = NOT_GIVEN
    operator: str | NotGiven = NOT_GIVEN
    value: Any = NOT_GIVEN
    max_points: Decimal | None | NotGiven = NOT_GIVEN
    window_days: int | None | NotGiven = NOT_GIVEN
    decays: bool | NotGiven = NOT_GIVEN


def _ruleset_checked(ruleset: RuleSet) -> None:
    """ruleset_validate on the ruleset's values; its intent event types in one order, once each."""
    ruleset_validate(**{name: getattr(ruleset, name) for name in RULESET_FIELDS})
    ruleset.intent_event_types = sorted(set(ruleset.intent_event_types))


def ruleset_create(
    *,
    user: Any,
    model: ScoringModel,
    name: str,
    mql_threshold: Decimal,
    sql_threshold: Decimal,
    intent_event_types: list[str] | None = None,
    **optional: Any,
) -> RuleSet:
    """A new draft of ``model``; ``optional`` are other fields of ``RULESET_FIELDS``
    (the model's defaults otherwise). Raises a ValidationError keyed by field
    (``ruleset_validate``)."""
    unknown = set(optional) - set(RULESET_FIELDS)
    if unknown:
        raise TypeError(f"Unknown ruleset fields: {', '.join(sorted(unknown))}")
    ruleset = RuleSet(
        model=model,
        name=name,
        mql_threshold=mql_threshold,
        sql_threshold=sql_threshold,
        intent_event_types=[] if intent_event_types is None else intent_event_types,
        created_by=user,
        **optional,
    )
    _ruleset_checked(ruleset)
    with transaction.atomic():
        ruleset.version = _next_version_locked()
        ruleset.save(force_insert=True)
    return ruleset


def ruleset_require_draft(*, ruleset: RuleSet) -> None:
    """Only drafts change: the refusal every surface shows (the API as a 409, the pages as a message)."""
    if ruleset.status != RuleSetStatus.DRAFT:
        raise RuleSetNotEditable(
            f"Ruleset v{ruleset.version} is {ruleset.status} and cannot change: clone it to a new draft."
        )


def ruleset_update(*, ruleset: RuleSet, changes: RuleSetChanges) -> RuleSet:
    """Change the given fields of a draft. Raises RuleSetNotEditable for another ruleset,
    a ValidationError keyed by field (``ruleset_validate``) for invalid values."""
    given = changes.given()
    with transaction.atomic():
        ruleset = RuleSet.objects.select_for_update().get(pk=ruleset.pk)
        ruleset_require_draft(ruleset=ruleset)
        for name, value in given.items():
            setattr(ruleset, name, value)
        _ruleset_checked(ruleset)
        ruleset.save(update_fields=[*given, "updated_at"])
    return ruleset


def ruleset_delete(*, ruleset: RuleSet) -> None:
    with transaction.atomic():
        ruleset = RuleSet.objects.select_for_update().get(pk=ruleset.pk)
        ruleset_require_draft(ruleset=ruleset)
        ruleset.delete()


def ruleset_clone(*, ruleset: RuleSet, user: Any) -> RuleSet:
    with transaction.atomic():
        clone = RuleSet.objects.create(
            model_id=ruleset.model_id,
            version=_next_version_locked(),
            created_by=user,
            **{name: getattr(ruleset, name) for name in RULESET_FIELDS},
        )
        Rule.objects.bulk_create(
            [Rule(ruleset=clone, **{name: getattr(rule, name) for name in RULE_FIELDS}) for rule in ruleset.rules.all()]
        )
    return clone


def _next_version_locked() -> int:
    # Serialise version numbering: lock the newest ruleset row.
    newest = RuleSet.objects.select_for_update().order_by("-version").first()
    return (newest.version if newest else 0) + 1


def _rule_checked(rule: Rule) -> None:
    rule_validate(**{name: getattr(rule, name) for name in RULE_FIELDS})


def rule_create(
    *,
    ruleset: RuleSet,
    kind: str,
    name: str,
    points: Decimal,
    position: int | None = None,
    event_type: str = "",
    attribute: str = "",
    operator: str = "",
    value: Any = None,
    max_points: Decimal | None = None,
    window_days: int | None = None,
    decays: bool = True,
) -> Rule:
    """A new rule of a draft, last unless ``position`` is given. Raises RuleSetNotEditable
    for another ruleset, a ValidationError keyed by field (``rule_validate``) for an invalid rule."""
    with transaction.atomic():
        ruleset = RuleSet.objects.select_for_update().get(pk=ruleset.pk)
        ruleset_require_draft(ruleset=ruleset)
        rule = Rule(
            ruleset=ruleset,
            kind=kind,
            name=name,
            points=points,
            position=(ruleset.rules.aggregate(p=Max("position"))["p"] or 0) + 1 if position is None else position,
            event_type=event_type,
            attribute=attribute,
            operator=operator,
            value=value,
            max_points=max_points,
            window_days=window_days,
            decays=decays,
        )
        _rule_checked(rule)
        rule.save(force_insert=True)
    return rule


def rule_update(*, rule: Rule, changes: RuleChanges) -> Rule:
    """Change the given fields of a draft's rule. Raises RuleSetNotEditable for another
    ruleset's rule, a ValidationError keyed by field (``rule_validate``) for an invalid result."""
    given = changes.given()
    with transaction.atomic():
        ruleset_require_draft(ruleset=RuleSet.objects.select_for_update().get(pk=rule.ruleset_id))
        for name, value in given.items():
            setattr(rule, name, value)
        _rule_checked(rule)
        rule.save(update_fields=list(given))
    return rule


def rule_delete(*, rule: Rule) -> None:
    with transaction.atomic():
        ruleset_require_draft(ruleset=RuleSet.objects.select_for_update().get(pk=rule.ruleset_id))
        rule.delete()


def ruleset_publish(*, ruleset: RuleSet, user: Any) -> RescoreRun:
    """Publish a draft: the model's previous published ruleset is archived and every
    lead is rescored under the model in the background (a RescoreRun shows progress)."""
    with transaction.atomic():
        ruleset = RuleSet.objects.select_for_update().get(pk=ruleset.pk)
        ruleset_require_draft(ruleset=ruleset)
        if not ruleset.rules.exists():
            raise ScoringError("Add at least one rule before publishing.")
        now = timezone.now()
        RuleSet.objects.filter(status=RuleSetStatus.PUBLISHED, model_id=ruleset.model_id).update(
            status=RuleSetStatus.ARCHIVED, archived_at=now, updated_at=now
        )
        ruleset.status, ruleset.published_at, ruleset.published_by = RuleSetStatus.PUBLISHED, now, user
        ruleset.save(update_fields=["status", "published_at", "published_by", "updated_at"])
        transaction.on_commit(selectors.intent_event_types_forget)  # this process's fast lane at once
        return rescore_run_create(ruleset=ruleset, reason="publish", user=user)


def leads_score_intent(*, lead_ids: Sequence[int]) -> int:
    """Score leads that raised a hand now (the fast lane); a pass that took them first
    already cleared their flag, and scoring them again changes nothing."""
    scored = leads_score(lead_ids=lead_ids, flagged_only=True).scored
    redis = scoring_requests.hints()
    if redis is not None:
        scoring_requests.intent_done(redis, lead_ids)
    return scored


def leads_score_flagged(*, budget_seconds: float | None = None) -> int:
    """One pass over the flagged leads, in chunks of ``SCORING_PASS_CHUNK`` by id, taking
    waiting hand-raises first before every chunk. After ``SCORING_PASS_SECONDS`` it stops
    and enqueues the next pass (a task stays short; the queue stays fair). Returns how
    many leads it scored."""
    redis = scoring_requests.hints()
    if redis is not None:
        scoring_requests.pass_started(redis)
    budget = settings.SCORING_PASS_SECONDS if budget_seconds is None else budget_seconds
    deadline = time.monotonic() + budget
    chunk = settings.SCORING_PASS_CHUNK
    scored, after = 0, 0
    while True:
        if redis is not None and (urgent := scoring_requests.intent_take(redis, chunk)):
            scored += leads_score(lead_ids=urgent, flagged_only=True).scored
        ids = list(
            Lead.objects.filter(needs_rescore=True, id__gt=after).order_by("id").values_list("id", flat=True)[:chunk]
        )
        if not ids:
            return scored
        scored += leads_score(lead_ids=ids, flagged_only=True).scored
        after = ids[-1]
        if time.monotonic() > deadline:
            if redis is not None:
                scoring_requests.pass_request(redis)
            return scored


def leads_sweep_dirty(*, older_than_seconds: int | None = None, limit: int = 10_000) -> int:
    """Score leads still flagged after a while (lost message, dead worker, broker outage),
    first flagging again the leads of scorings that never finished (``scoring_claims_recover``)."""
    if older_than_seconds is None:
        older_than_seconds = settings.SWEEP_GRACE_SECONDS
    scoring_claims_recover(older_than_seconds=older_than_seconds)
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    ids = list(
        Lead.objects.filter(needs_rescore=True, updated_at__lte=cutoff)
        .order_by("id")
        .values_list("id", flat=True)[:limit]
    )
    if ids:
        leads_score(lead_ids=ids, flagged_only=True)
    return len(ids)


def decay_refresh(*, user: Any = None) -> list[RescoreRun]:
    """Scores move with time — events decay or leave a rule's window, hand-raises leave
    the intent window — so every published model is rescored daily."""
    with transaction.atomic():
        return [
            rescore_run_create(ruleset=ruleset, reason="decay", user=user) for ruleset in selectors.published_rulesets()
        ]


# --- Scoring models ---------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class ScoringModelChanges(Changes):
    name: str | NotGiven = NOT_GIVEN
    slug: str | NotGiven = NOT_GIVEN
    description: str | NotGiven = NOT_GIVEN
    position: int | NotGiven = NOT_GIVEN


def scoring_model_validate(*, model: ScoringModel) -> None:
    """A model's name and slug, unique; raises a ValidationError keyed by field."""
    errors: dict[str, list[str]] = {}
    if not model.name.strip():
        errors["name"] = ["Name the model (e.g. the product line it scores interest in)."]
    elif ScoringModel.objects.exclude(pk=model.pk).filter(name__iexact=model.name.strip()).exists():
        errors["name"] = ["Another model has this name."]
    if not SLUG_RE.match(model.slug):
        errors["slug"] = ["A slug is lower-case letters, digits, '-' and '_' (at most 50), e.g. analytics-addon."]
    elif ScoringModel.objects.exclude(pk=model.pk).filter(slug=model.slug).exists():
        errors["slug"] = ["Another model has this slug."]
    if not 0 <= model.position <= MODEL_POSITION_MAX:
        errors["position"] = [f"A position is a whole number from 0 to {MODEL_POSITION_MAX:,}."]
    if errors:
        raise ValidationError(errors)


def scoring_model_create(*, name: str, slug: str, description: str = "", position: int | None = None) -> ScoringModel:
    """A new model, last unless ``position`` is given; it scores nothing until one of its
    rulesets is published."""
    with transaction.atomic():
        if position is None:
            position = min((ScoringModel.objects.aggregate(p=Max("position"))["p"] or 0) + 1, MODEL_POSITION_MAX)
        model = ScoringModel(name=name.strip(), slug=slug, description=description, position=position)
        scoring_model_validate(model=model)
        model.save(force_insert=True)
    return model


def scoring_model_update(*, model: ScoringModel, changes: ScoringModelChanges) -> ScoringModel:
    given = changes.given()
    with transaction.atomic():
        model = ScoringModel.objects.select_for_update().get(pk=model.pk)
        for name, value in given.items():
            setattr(model, name, value.strip() if name == "name" else value)
        scoring_model_validate(model=model)
        model.save(update_fields=list(given))
    return model


def scoring_model_delete(*, model: ScoringModel) -> None:
    """Delete a model that was never published (drafts go with it); a model that scored
    leads is history (stage changes and handoffs name it): archive its ruleset instead."""
    with transaction.atomic():
        model = ScoringModel.objects.select_for_update().get(pk=model.pk)
        if model.rulesets.exclude(status=RuleSetStatus.DRAFT).exists():
            raise ScoringError(
                f"The model {model.name} has published rulesets: its scores and history stay. "
                "Archive it by publishing nothing new, or keep it."
            )
        model.rulesets.all().delete()
        model.delete()


def ruleset_archive(*, ruleset: RuleSet) -> RuleSet:
    """Unpublish a model's ruleset: the model stops scoring (its scores are removed), so
    it no longer qualifies anyone. Leads keep their stages."""
    with transaction.atomic():
        ruleset = RuleSet.objects.select_for_update().get(pk=ruleset.pk)
        if ruleset.status != RuleSetStatus.PUBLISHED:
            raise ScoringError(f"Ruleset v{ruleset.version} is {ruleset.status}: only a published one is archived.")
        now = timezone.now()
        ruleset.status, ruleset.archived_at = RuleSetStatus.ARCHIVED, now
        ruleset.save(update_fields=["status", "archived_at", "updated_at"])
        Score.objects.filter(model_id=ruleset.model_id).delete()
    return ruleset


# --- The lead's stage on its scores --------------------------------------------------------
def scores_follow_stages(*, changes: Sequence[StageChange]) -> int:
    """Every model's score rows of the leads that moved take their lead's new stage
    (``Score.stage``: the hot-MQL list orders a stage's leads by score with it), in the
    transaction that moved them; returns the rows changed. Called for every stage change
    (``scoring.receivers``): a few statements, one per stage reached, whatever the count."""
    final: dict[int, str] = {}
    for change in changes:  # in order: a lead moved twice ends at its last stage
        final[change.lead_id] = change.to_stage
    by_stage: dict[str, list[int]] = {}
    for lead_id, stage in final.items():
        by_stage.setdefault(stage, []).append(lead_id)
    return sum(
        Score.objects.filter(lead_id__in=ids).exclude(stage=stage).update(stage=stage)
        for stage, ids in by_stage.items()
    )


def ruleset_suggestion_record(*, ruleset: RuleSet, suggestion: dict[str, Any]) -> RuleSet:
    """Keep on a draft why its points were suggested (``handoff.suggest``): shown on its page."""
    with transaction.atomic():
        ruleset = RuleSet.objects.select_for_update().get(pk=ruleset.pk)
        ruleset_require_draft(ruleset=ruleset)
        ruleset.suggestion = suggestion
        ruleset.save(update_fields=["suggestion", "updated_at"])
    return ruleset
