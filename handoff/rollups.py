"""The sales outcomes' rollups: what each handoff counts for, kept up to date by the
services that open, claim and decide handoffs, so that the dashboard sums a few rows per
day instead of joining every handoff to its lead (``leadflow.leads.rollups`` does the
same for the funnel; this is its handoff half, registered with it as a ``RollupHolder``).

One definition: ``handoff_counts`` says what one handoff contributes, from its facts
(``HandoffFacts``: its day of creation, its lead's source and campaign, its qualifying
model, its status, reason and times). Writers read the facts before and after their
change and ``handoffs_record`` inserts the difference; the claim statement (PostgreSQL)
adds its one possible difference — the first claim's duration — in SQL
(``claim_duration_sql``); ``handoff_rollups_rebuild`` recounts every handoff.

- ``HandoffRollup``: per day of creation × source × campaign × model, the handoffs
  created, accepted, rejected (and by reason), closed, and the recorded SLA breaches
  (flagged overdue, or decided after the due time). Open = created − decided − closed.
- ``HandoffDurationRollup``: the same key × kind, histograms of created → first claim
  and created → decision (accepted or rejected), for medians within
  ``leadflow.leads.rollups.DURATION_PRECISION``.

Not in the rollups, because the clock makes them change without a write: an open handoff
past its due time and not yet flagged by the sweep is a breach from that moment;
``handoff_outcomes`` counts those live (few: the sweep flags them every minute), with the
``handoff_sla_watch`` index.

A release or an expired claim changes nothing counted (queued and claimed are both open;
the first claim's time stays).
"""

from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Count, Q, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from handoff.models import (
    DECIDED_STATUSES,
    OPEN_STATUSES,
    Handoff,
    HandoffDurationKind,
    HandoffDurationRollup,
    HandoffRollup,
    HandoffStatus,
    RejectReason,
)
from leadflow.db import SqlNames
from leadflow.leads.models import Lead
from leadflow.leads.rollups import (
    Key,
    RollupHolder,
    duration_bucket,
    duration_bucket_sql,
    local_day,
    median_of_buckets,
)
from leadflow.leads.selectors import start_of_day

# The summed columns of HandoffRollup: statuses that end a handoff, the recorded breaches,
# and one per reject reason.
REASON_COLUMNS = {reason: f"rejected_{reason}" for reason in RejectReason.values}
ENDED = (HandoffStatus.ACCEPTED, HandoffStatus.REJECTED, HandoffStatus.CLOSED)
COUNT_COLUMNS = ("created", *ENDED, "breached", *REASON_COLUMNS.values())


@dataclass(frozen=True)
class HandoffFacts:
    """What of a handoff (and its lead) its counts depend on."""

    created_at: datetime
    source_id: int | None
    campaign: str
    model_id: int | None
    status: str
    due_at: datetime
    first_claimed_at: datetime | None
    decided_at: datetime | None
    reject_reason: str
    overdue_at: datetime | None

    FIELDS = (
        "created_at",
        "lead__source_id",
        "lead__utm_campaign",
        "model_id",
        "status",
        "due_at",
        "first_claimed_at",
        "decided_at",
        "reject_reason",
        "overdue_at",
    )

    @classmethod
    def of(cls, handoff: Handoff, lead: Lead) -> "HandoffFacts":
        """From a handoff as loaded and its lead (no query)."""
        return cls(
            handoff.created_at,
            lead.source_id,
            lead.utm_campaign,
            handoff.model_id,
            handoff.status,
            handoff.due_at,
            handoff.first_claimed_at,
            handoff.decided_at,
            handoff.reject_reason,
            handoff.overdue_at,
        )


def breach_recorded(facts: HandoffFacts) -> bool:
    """A breach the handoff's row records: flagged overdue, or decided (or closed) after
    its due time. With the open ones past due (``breach_pending_q``) it is
    ``handoff.selectors.handoff_stats``'s SLA breach."""
    return facts.overdue_at is not None or (facts.decided_at is not None and facts.decided_at > facts.due_at)


def breach_pending_q(now: datetime) -> Q:
    """Breaches the clock made and no write recorded yet: open, past due, not flagged."""
    return Q(status__in=OPEN_STATUSES, due_at__lte=now, overdue_at__isnull=True)


def handoff_counts(facts: HandoffFacts) -> Counter[Key]:
    """What one handoff counts for: the one definition the rollups, their rebuild and
    their tests agree on."""
    cohort = (local_day(facts.created_at), facts.source_id or 0, facts.campaign, facts.model_id or 0)
    counts: Counter[Key] = Counter({("handoff", *cohort, "created"): 1})
    if facts.status in ENDED:
        counts[("handoff", *cohort, facts.status)] = 1
    if facts.status == HandoffStatus.REJECTED:
        counts[("handoff", *cohort, REASON_COLUMNS[facts.reject_reason])] = 1
    if breach_recorded(facts):
        counts[("handoff", *cohort, "breached")] = 1
    if facts.first_claimed_at is not None:
        bucket = duration_bucket(facts.first_claimed_at - facts.created_at)
        counts[("duration", *cohort, HandoffDurationKind.TO_CLAIM.value, bucket)] = 1
    if facts.status in DECIDED_STATUSES and facts.decided_at is not None:
        bucket = duration_bucket(facts.decided_at - facts.created_at)
        counts[("duration", *cohort, HandoffDurationKind.TO_DECISION.value, bucket)] = 1
    return counts


def rollup_values(counts: Counter[Key]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The rows of ``counts``: HandoffRollup's and HandoffDurationRollup's, as field values
    (the data migration builds its historical models' rows from them)."""
    wide: dict[tuple[Any, ...], dict[str, Any]] = {}
    durations = []
    for key, n in counts.items():
        if not n:
            continue
        kind, day, source, campaign, model, *rest = key
        cohort = {"day": day, "source_id": source, "campaign": campaign, "model_id": model}
        if kind == "handoff":
            wide.setdefault((day, source, campaign, model), dict(cohort))[rest[0]] = n
        else:
            durations.append({**cohort, "kind": rest[0], "bucket": rest[1], "handoffs": n})
    return list(wide.values()), durations


def _insert(counts: Counter[Key]) -> int:
    wide, durations = rollup_values(counts)
    HandoffRollup.objects.bulk_create([HandoffRollup(**values) for values in wide], batch_size=2000)
    HandoffDurationRollup.objects.bulk_create([HandoffDurationRollup(**v) for v in durations], batch_size=2000)
    return len(wide) + len(durations)


# --- What the writers call ---------------------------------------------------------------------
def handoffs_facts(handoff_ids: Iterable[int]) -> dict[int, HandoffFacts]:
    """The facts of these handoffs, read with their leads' (one query)."""
    ids = sorted(set(handoff_ids))
    if not ids:
        return {}
    rows = Handoff.objects.filter(id__in=ids).values_list("id", *HandoffFacts.FIELDS)
    return {pk: HandoffFacts(*values) for pk, *values in rows}


def handoffs_record(before: Iterable[HandoffFacts], after: Iterable[HandoffFacts]) -> None:
    """Insert the difference between the handoffs' counts before and after a change,
    inside the caller's transaction: at most one statement per rollup table, none when
    nothing counted changed (``before`` empty for new handoffs, ``after`` for deleted)."""
    delta: Counter[Key] = Counter()
    for facts in after:
        delta.update(handoff_counts(facts))
    for facts in before:
        delta.subtract(handoff_counts(facts))
    _insert(delta)


@contextmanager
def handoffs_recorded(handoff_ids: Iterable[int]) -> Iterator[None]:
    """Record what the block changes of these handoffs (locked by the caller): their
    facts read before and after it."""
    ids = list(handoff_ids)
    before = handoffs_facts(ids)
    yield
    handoffs_record(before.values(), handoffs_facts(ids).values())


def claim_duration_sql(*, claimed: str, lead: str) -> str:
    """The claim statement's rollup insert (``handoff.services._CLAIM_SQL``): a first claim
    adds its created → claim duration; nothing else counted changes on a claim. ``claimed``
    is the relation of the claimed rows as updated, ``lead`` the lead table's name; a first
    claim is one whose ``first_claimed_at`` the claim just set (``%(now)s``)."""
    h, duration, lead_names = SqlNames(Handoff), SqlNames(HandoffDurationRollup), SqlNames(Lead)
    seconds = f"EXTRACT(EPOCH FROM c.{h.first_claimed_at} - c.{h.created_at})"
    return f"""INSERT INTO {duration.table} ({duration.day}, {duration.source_id}, {duration.campaign},
            {duration.model_id}, {duration.kind}, {duration.bucket}, {duration.handoffs})
        SELECT (c.{h.created_at} AT TIME ZONE %(time_zone)s)::date, COALESCE(l.{lead_names.source}, 0),
            l.{lead_names.utm_campaign}, COALESCE(c.{h.model}, 0), %(to_claim)s, {duration_bucket_sql(seconds)}, 1
        FROM {claimed} c JOIN {lead} l ON l.{lead_names.id} = c.{h.lead}
        WHERE c.{h.first_claimed_at} = %(now)s"""  # noqa: S608 -- names from the models


def claim_duration_params() -> dict[str, Any]:
    return {"time_zone": timezone.get_default_timezone_name(), "to_claim": HandoffDurationKind.TO_CLAIM.value}


# --- The core's writers (RollupHolder): deleted leads, changed campaigns -----------------------
def _leads_handoffs(lead_ids: Iterable[int]) -> dict[int, HandoffFacts]:
    ids = sorted(set(lead_ids))
    if not ids:
        return {}
    rows = Handoff.objects.filter(lead_id__in=ids).values_list("id", *HandoffFacts.FIELDS)
    return {pk: HandoffFacts(*values) for pk, *values in rows}


def leads_deleted(lead_ids: list[int]) -> None:
    """Their handoffs go with them (CASCADE): so do their counts."""
    handoffs_record(_leads_handoffs(lead_ids).values(), ())


def leads_campaign_changed(changes: dict[int, tuple[str, str]]) -> None:
    """(old, new) campaign by lead id, before the leads are updated: their handoffs'
    counts move to the new campaign's rows."""
    ids = sorted(changes)
    if not ids:
        return
    rows = Handoff.objects.filter(lead_id__in=ids).values_list("lead_id", *HandoffFacts.FIELDS)
    before = [HandoffFacts(*values) for _lead, *values in rows]
    leads = [lead_id for lead_id, *_values in rows]
    after = [replace(facts, campaign=changes[lead][1]) for lead, facts in zip(leads, before, strict=True)]
    handoffs_record(before, after)


# --- Rebuild ------------------------------------------------------------------------------------
REBUILD_CHUNK = 20_000


def handoffs_recount(rows: Iterable[tuple[Any, ...]]) -> Counter[Key]:
    """The counts of handoffs given as rows of ``HandoffFacts.FIELDS`` (also what the
    data migration that creates the rollups counts with)."""
    counts: Counter[Key] = Counter()
    for values in rows:
        counts.update(handoff_counts(HandoffFacts(*values)))
    return counts


def handoff_rollups_recount() -> Counter[Key]:
    """Every handoff's counts, from the base tables."""
    rows = Handoff.objects.order_by().values_list(*HandoffFacts.FIELDS).iterator(chunk_size=REBUILD_CHUNK)
    return Counter({key: n for key, n in handoffs_recount(rows).items() if n})


def handoff_rollups_rebuild() -> int:
    """Recount every handoff and replace the rollups with the result (inside
    ``leadflow.leads.rollups.rollups_rebuild``'s transaction, which reads one snapshot);
    returns the rows written."""
    with transaction.atomic():
        counts = handoff_rollups_recount()
        HandoffRollup.objects.all().delete()
        HandoffDurationRollup.objects.all().delete()
        return _insert(counts)


def handoff_rollups_current() -> Counter[Key]:
    """The rollups as stored, summed by key (zeros left out): equal to
    ``handoff_rollups_recount`` when every writer recorded what it changed."""
    counts: Counter[Key] = Counter()
    keys = ("day", "source_id", "campaign", "model_id")
    for row in HandoffRollup.objects.values(*keys).annotate(**{c: Sum(c) for c in COUNT_COLUMNS}).order_by():
        for column in COUNT_COLUMNS:
            counts[("handoff", *(row[k] for k in keys), column)] = row[column]
    rows = HandoffDurationRollup.objects.values_list(*keys, "kind", "bucket").annotate(n=Sum("handoffs")).order_by()
    for *key, n in rows:
        counts[("duration", *key)] = n
    return Counter({key: n for key, n in counts.items() if n})


HOLDER = RollupHolder(
    sums={HandoffRollup: COUNT_COLUMNS, HandoffDurationRollup: ("handoffs",)},
    rebuild=handoff_rollups_rebuild,
    leads_deleted=leads_deleted,
    leads_campaign_changed=leads_campaign_changed,
)


# --- The dashboard's read -----------------------------------------------------------------------
@dataclass(frozen=True)
class HandoffOutcomes:
    """What became of the handoffs created in the period: the numbers
    ``handoff.selectors.handoff_stats`` counts from the handoffs, from the rollups (its
    medians within ``DURATION_PRECISION``)."""

    total: int = 0
    accepted: int = 0
    rejected: int = 0
    closed: int = 0
    sla_breaches: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    median_to_claim: timedelta | None = None
    median_to_decision: timedelta | None = None

    @property
    def open(self) -> int:
        return self.total - self.accepted - self.rejected - self.closed


def handoff_outcomes(
    *,
    first: date,
    last: date,
    source_id: int | None = None,
    campaign: str | None = None,
    model_id: int | None = None,
) -> HandoffOutcomes:
    """The handoffs created from day ``first`` to ``last`` (inclusive, in TIME_ZONE), of
    the leads of a source or campaign and qualified by a model when given: three queries,
    two over the rollups' rows of the period and one, index-served, for the breaches not
    yet flagged."""
    filters = Q(day__gte=first, day__lte=last)
    end = start_of_day(last + timedelta(days=1))
    handoffs = Handoff.objects.filter(created_at__gte=start_of_day(first), created_at__lt=end)
    if source_id is not None:
        filters &= Q(source_id=source_id)
        handoffs = handoffs.filter(lead__source_id=source_id)
    if campaign is not None:
        filters &= Q(campaign=campaign)
        handoffs = handoffs.filter(lead__utm_campaign=campaign)
    if model_id is not None:
        filters &= Q(model_id=model_id)
        handoffs = handoffs.filter(model_id=model_id) if model_id else handoffs.filter(model__isnull=True)
    sums = HandoffRollup.objects.filter(filters).aggregate(**{c: Coalesce(Sum(c), 0) for c in COUNT_COLUMNS})
    buckets: dict[str, dict[int, int]] = {kind: {} for kind in HandoffDurationKind.values}
    rows = HandoffDurationRollup.objects.filter(filters).values_list("kind", "bucket").annotate(n=Sum("handoffs"))
    for kind, bucket, n in rows.order_by():
        buckets[kind][bucket] = n
    pending = handoffs.filter(breach_pending_q(timezone.now())).aggregate(n=Count("id"))["n"]
    return HandoffOutcomes(
        total=sums["created"],
        accepted=sums[HandoffStatus.ACCEPTED],
        rejected=sums[HandoffStatus.REJECTED],
        closed=sums[HandoffStatus.CLOSED],
        sla_breaches=sums["breached"] + pending,
        rejected_by_reason={reason: sums[column] for reason, column in REASON_COLUMNS.items()},
        median_to_claim=median_of_buckets(buckets[HandoffDurationKind.TO_CLAIM]),
        median_to_decision=median_of_buckets(buckets[HandoffDurationKind.TO_DECISION]),
    )
