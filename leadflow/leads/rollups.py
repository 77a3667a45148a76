"""The dashboard's rollups: what each lead counts for, kept up to date by the writes that
change it, so that the dashboard sums a few hundred rows instead of scanning every lead.

One definition: ``lead_counts`` says what one lead contributes — from its facts (day of
creation, source, campaign, stage, ``mql_at``, ``sql_at``) and its entries into MQL,
SQL and accepted (its StageChanges). Every writer describes what it changed as
``LeadMove``s (the facts and entries before and after) and ``rollups_record`` inserts
the difference; ``rollups_rebuild`` recounts every lead with the same function.

- ``FunnelRollup``: per day of creation × source × campaign, the leads created and how
  far they got (``dashboard_funnel``, the breakdowns); per scoring model, the leads it
  qualified (``dashboard_model_funnel``).
- ``StageEntryRollup``: per day × source, the leads that entered MQL and SQL.
- ``DurationRollup``: per day × source, histograms of created → MQL and MQL → SQL in
  log-spaced buckets: eight per doubling, so a median read back is within 4.4 % of the
  exact one (``DURATION_PRECISION``; a duration under a second reads as 0).
- ``ScoreHistogram``: a snapshot, not maintained per score write:
  ``score_histograms_refresh`` (the periodic task, and after a full rescore).

Who records: lead creation (``services._insert_new_leads``), a campaign change (ingest's
profile upsert, ``lead_update``), a deletion (the admin's), ``lifecycle.transitions_apply`` (every stage change by
hand, by a rep's decision, by incremental scoring) and scoring's set-based transitions
(one insert per chunk). Days are dates in ``TIME_ZONE``: after changing it, rebuild.

Rows are append-only deltas (+1/-1): no writer ever waits on another's rollup row.
Readers sum by key; ``rollups_compact`` (periodic) folds each key's rows into one.
"""

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connection, models, transaction
from django.db.models import Case, Count, F, IntegerField, Q, Value, When
from django.db.models.functions import Floor
from django.utils import timezone

from leadflow.db import SqlNames
from leadflow.leads.models import (
    DurationKind,
    DurationRollup,
    FunnelRollup,
    GradeMatrixSnapshot,
    Lead,
    ScoreHistogram,
    Stage,
    StageChange,
    StageEntryRollup,
)
from leadflow.leads.scores import leads_annotate_scores, scoring_models

# Buckets per doubling of a duration: a bucket spans a factor 2 ** (1/8); read back as its
# geometric middle, a duration is off by at most 2 ** (1/16) - 1.
DURATION_STEPS = 8
DURATION_PRECISION = 0.0443  # 2 ** (1 / (2 * DURATION_STEPS)) - 1 = 0.04427, and microseconds of rounding

# The StageChanges a lead's counts depend on.
COUNTED_STAGES = (Stage.MQL, Stage.SQL, Stage.ACCEPTED)
FUNNEL_FIELDS = ("created", "mql", "sql", "accepted", "recycled", "disqualified", "visitors")


def duration_bucket(duration: timedelta) -> int:
    seconds = duration.total_seconds()
    if seconds < 1:
        return 0
    return 1 + math.floor(math.log2(seconds) * DURATION_STEPS)


def duration_bucket_sql(seconds: str) -> str:
    """``duration_bucket`` in PostgreSQL, of an SQL expression in seconds (``EXTRACT(EPOCH
    FROM …)``): for a statement that records a duration set-based (the claim). Computed in
    exact numeric, so a power of two lands in the bucket Python gives it; a test checks the
    two side by side."""
    return (
        f"(CASE WHEN ({seconds}) < 1 THEN 0 ELSE 1 + FLOOR(LOG(2, ({seconds})::numeric) * {DURATION_STEPS})::int END)"
    )


def bucket_duration(bucket: int) -> timedelta:
    """The geometric middle of ``bucket``."""
    if bucket <= 0:
        return timedelta(0)
    return timedelta(seconds=2 ** ((bucket - 0.5) / DURATION_STEPS))


def median_of_buckets(counts: dict[int, int]) -> timedelta | None:
    """The median of a histogram of duration buckets, as ``PERCENTILE_CONT(0.5)`` takes
    it (the mean of the two middle values for an even count), each value read as its
    bucket's middle: within ``DURATION_PRECISION`` of the exact median."""
    total = sum(counts.values())
    if total <= 0:
        return None
    middle = {(total - 1) // 2, total // 2}
    values: list[timedelta] = []
    seen = 0
    for bucket in sorted(counts):
        n = counts[bucket]
        values.extend(bucket_duration(bucket) for rank in sorted(middle) if seen <= rank < seen + n)
        seen += n
    return sum(values, timedelta(0)) / len(values)


def local_day(moment: datetime) -> date:
    """The date of ``moment`` in TIME_ZONE (how the dashboard's periods read days)."""
    return moment.astimezone(timezone.get_default_timezone()).date()


@dataclass(frozen=True)
class LeadFacts:
    """What of a lead its counts depend on, besides its entries."""

    created_at: datetime
    source_id: int | None
    campaign: str
    stage: str
    mql_at: datetime | None
    sql_at: datetime | None
    # A visitor (only anonymous ids) counts as a visitor, not as a lead created, until it
    # is identified (a move) or merged into the person it is (deleted).
    visitor: bool = False

    FIELDS = ("created_at", "source_id", "utm_campaign", "stage", "mql_at", "sql_at", "visitor")

    @classmethod
    def of(cls, lead: Lead) -> "LeadFacts":
        return cls(
            lead.created_at, lead.source_id, lead.utm_campaign, lead.stage, lead.mql_at, lead.sql_at, lead.visitor
        )


@dataclass(frozen=True)
class Entry:
    """A StageChange into MQL, SQL or accepted: when, and which scoring models qualified it."""

    stage: str
    at: datetime
    qualified_by: tuple[str, ...] = ()

    @classmethod
    def of(cls, change: StageChange) -> "Entry":
        return cls(change.to_stage, change.at, tuple(change.qualified_by or ()))


@dataclass
class LeadMove:
    """One lead's change: ``before`` None for a new lead, ``after`` None for a deleted
    one. ``history`` is its entries before the change, ``added`` those the change wrote."""

    before: LeadFacts | None
    after: LeadFacts | None
    history: Sequence[Entry] = ()
    added: Sequence[Entry] = field(default_factory=list)


# A count's key: ("funnel", day, source, campaign, model, field) | ("entry", day, source,
# stage) | ("duration", day, source, kind, bucket).
Key = tuple[Any, ...]


def lead_counts(facts: LeadFacts, entries: Iterable[Entry]) -> Counter[Key]:
    """What one lead counts for — the one definition the rollups, their rebuild and the
    dashboard's recount from the base tables (``leadflow.selectors``) agree on."""
    counts: Counter[Key] = Counter()
    source = facts.source_id or 0
    cohort = (local_day(facts.created_at), source, facts.campaign)
    entries = list(entries)
    accepted = facts.stage == Stage.ACCEPTED or any(entry.stage == Stage.ACCEPTED for entry in entries)
    funnel = {
        "created": not facts.visitor,
        "visitors": facts.visitor,
        "mql": facts.mql_at is not None,
        "sql": facts.sql_at is not None,
        "accepted": accepted,
        "recycled": facts.stage == Stage.RECYCLED,
        "disqualified": facts.stage == Stage.DISQUALIFIED,
    }
    for name, counted in funnel.items():
        if counted:
            counts[("funnel", *cohort, "", name)] = 1
    qualified = {(model, entry.stage) for entry in entries for model in entry.qualified_by}
    for model, stage in qualified:
        if stage in (Stage.MQL, Stage.SQL):
            counts[("funnel", *cohort, model, stage)] = 1
            if stage == Stage.SQL and accepted:
                counts[("funnel", *cohort, model, "accepted")] = 1
    for day, stage in {(local_day(entry.at), entry.stage) for entry in entries if entry.stage != Stage.ACCEPTED}:
        counts[("entry", day, source, stage)] = 1
    if facts.mql_at is not None:
        to_mql = duration_bucket(facts.mql_at - facts.created_at)
        counts[("duration", local_day(facts.mql_at), source, DurationKind.TO_MQL.value, to_mql)] = 1
        if facts.sql_at is not None:
            to_sql = duration_bucket(facts.sql_at - facts.mql_at)
            counts[("duration", local_day(facts.sql_at), source, DurationKind.MQL_TO_SQL.value, to_sql)] = 1
    return counts


def moves_counts(moves: Iterable[LeadMove]) -> Counter[Key]:
    """The difference the moves make (negative counts kept)."""
    delta: Counter[Key] = Counter()
    for move in moves:
        history = list(move.history)
        if move.after is not None:
            delta.update(lead_counts(move.after, [*history, *move.added]))
        if move.before is not None:
            delta.subtract(lead_counts(move.before, history))
    return delta


def first_moves_sql(movers: str) -> str:
    """``moves_counts`` in SQL for one case, the bulk of a full rescore's first publish: a
    lead with no entry before (no StageChange into MQL, SQL or accepted) that an automatic
    transition moves from new, recycled or MQL into MQL or SQL, entering each stage it
    enters at ``%(as_of)s`` with one model (``%(rollup_model)s``, a slug) qualifying it.
    Three data-modifying CTEs (``, name AS (…)``), one insert per rollup table, to append to
    the statement that moves the leads (``scoring.bulk.ScoresTable.transitions``).

    ``movers`` is a relation of such leads with their facts *before* the move:
    ``from_stage``, ``to_sql`` (boolean), ``created_at``, ``source_id``, ``campaign``,
    ``mql_at``, ``sql_at``. Parameters: ``as_of``, ``time_zone``, ``rollup_model``,
    ``mql``, ``sql``, ``recycled``, ``to_mql``, ``mql_to_sql`` (``first_moves_params``).
    The property test in tests/test_rollups.py holds it to ``lead_counts``."""
    funnel, entry, duration = SqlNames(FunnelRollup), SqlNames(StageEntryRollup), SqlNames(DurationRollup)

    def day(moment: str) -> str:
        return f"(({moment}) AT TIME ZONE %(time_zone)s)::date"

    def bucket(start: str, end: str) -> str:
        return duration_bucket_sql(f"EXTRACT(EPOCH FROM ({end}) - ({start}))")

    return f"""
    , first_movers AS (
        SELECT from_stage, to_sql, created_at, mql_at, sql_at, COALESCE(source_id, 0) AS source, campaign,
               {day("created_at")} AS cohort_day,
               COALESCE(mql_at, %(as_of)s) AS mql_after,
               CASE WHEN to_sql THEN %(as_of)s ELSE sql_at END AS sql_after
        FROM {movers}
    ), first_funnel AS (
        INSERT INTO {funnel.table} ({funnel.day}, {funnel.source_id}, {funnel.campaign}, {funnel.model},
            {funnel.created}, {funnel.mql}, {funnel.sql}, {funnel.accepted}, {funnel.recycled}, {funnel.disqualified})
        SELECT * FROM (
            SELECT cohort_day, source, campaign, '', 0, SUM((mql_at IS NULL)::int),
                   SUM((to_sql AND sql_at IS NULL)::int), 0, -SUM((from_stage = %(recycled)s)::int), 0
            FROM first_movers GROUP BY 1, 2, 3
            UNION ALL
            SELECT cohort_day, source, campaign, %(rollup_model)s, 0, SUM((from_stage <> %(mql)s)::int),
                   SUM(to_sql::int), 0, 0, 0
            FROM first_movers GROUP BY 1, 2, 3
        ) f(day, source, campaign, model, created, mql, sql, accepted, recycled, disqualified)
        WHERE mql <> 0 OR sql <> 0 OR recycled <> 0
    ), first_entries AS (
        INSERT INTO {entry.table} ({entry.day}, {entry.source_id}, {entry.stage}, {entry.leads})
        SELECT {day("%(as_of)s")}, source, %(mql)s, COUNT(*) FROM first_movers WHERE from_stage <> %(mql)s GROUP BY 2
        UNION ALL
        SELECT {day("%(as_of)s")}, source, %(sql)s, COUNT(*) FROM first_movers WHERE to_sql GROUP BY 2
    ), first_durations AS (
        INSERT INTO {duration.table} ({duration.day}, {duration.source_id}, {duration.kind}, {duration.bucket},
            {duration.leads})
        SELECT day, source, kind, bucket, SUM(n) FROM (
            SELECT {day("%(as_of)s")} AS day, source, %(to_mql)s AS kind, {bucket("created_at", "%(as_of)s")} AS bucket,
                   1 AS n
            FROM first_movers WHERE mql_at IS NULL
            UNION ALL
            SELECT {day("sql_at")}, source, %(mql_to_sql)s, {bucket("mql_at", "sql_at")}, -1
            FROM first_movers WHERE mql_at IS NOT NULL AND sql_at IS NOT NULL
            UNION ALL
            SELECT {day("sql_after")}, source, %(mql_to_sql)s, {bucket("mql_after", "sql_after")}, 1
            FROM first_movers WHERE sql_after IS NOT NULL
        ) d GROUP BY 1, 2, 3, 4 HAVING SUM(n) <> 0
    )"""  # noqa: S608 -- names from the models, values bound


def first_moves_params(*, as_of: datetime, model: str) -> dict[str, Any]:
    return {
        "as_of": as_of,
        "time_zone": timezone.get_default_timezone_name(),
        "rollup_model": model,
        "mql": Stage.MQL.value,
        "sql": Stage.SQL.value,
        "recycled": Stage.RECYCLED.value,
        "to_mql": DurationKind.TO_MQL.value,
        "mql_to_sql": DurationKind.MQL_TO_SQL.value,
    }


def _rows(counts: Counter[Key]) -> tuple[list[FunnelRollup], list[StageEntryRollup], list[DurationRollup]]:
    funnels: dict[tuple[Any, ...], dict[str, int]] = defaultdict(dict)
    entries, durations = [], []
    for key, n in counts.items():
        if not n:
            continue
        kind, *rest = key
        if kind == "funnel":
            *cohort, name = rest
            funnels[tuple(cohort)][name] = n
        elif kind == "entry":
            day, source, stage = rest
            entries.append(StageEntryRollup(day=day, source_id=source, stage=stage, leads=n))
        else:
            day, source, duration_kind, bucket = rest
            durations.append(DurationRollup(day=day, source_id=source, kind=duration_kind, bucket=bucket, leads=n))
    funnel_rows = [
        FunnelRollup(day=day, source_id=source, campaign=campaign, model=model, **values)
        for (day, source, campaign, model), values in funnels.items()
    ]
    return funnel_rows, entries, durations


def rollups_record(moves: Iterable[LeadMove]) -> None:
    """Insert what ``moves`` change, inside the caller's transaction: at most one
    statement per rollup table, none when nothing counted changed."""
    _insert(moves_counts(moves))


def _insert(counts: Counter[Key]) -> None:
    for rows in _rows(counts):
        _bulk_insert(rows)


def _bulk_insert(rows: Sequence[models.Model]) -> None:
    if rows:
        type(rows[0])._default_manager.bulk_create(rows, batch_size=2000)


# --- What the writers call ---------------------------------------------------------------------
def lead_entries(lead_ids: Iterable[int]) -> dict[int, list[Entry]]:
    """The entries (StageChanges into MQL, SQL, accepted) of these leads, oldest first."""
    entries: dict[int, list[Entry]] = defaultdict(list)
    ids = sorted(set(lead_ids))
    if not ids:
        return entries
    rows = (
        StageChange.objects.filter(lead_id__in=ids, to_stage__in=COUNTED_STAGES)
        .order_by("lead_id", "at", "id")
        .values_list("lead_id", "to_stage", "at", "qualified_by")
    )
    for lead_id, stage, at, qualified_by in rows:
        entries[lead_id].append(Entry(stage, at, tuple(qualified_by or ())))
    return entries


def leads_created_record(rows: Iterable[LeadFacts]) -> None:
    """New leads (no entries yet)."""
    rollups_record(LeadMove(before=None, after=facts) for facts in rows)


def leads_identified_record(lead_ids: Iterable[int]) -> None:
    """Visitors that gained an e-mail or external_id (call it before the write, in its
    transaction): they stop counting as visitors and count as leads created."""
    facts = {pk: fact for pk, fact in leads_facts(lead_ids).items() if fact.visitor}
    if not facts:
        return
    history = lead_entries(facts)
    rollups_record(
        LeadMove(before=fact, after=replace(fact, visitor=False), history=history.get(pk, []))
        for pk, fact in facts.items()
    )


def leads_campaign_changed_record(changes: dict[int, tuple[LeadFacts, str]]) -> None:
    """Leads whose campaign changes: (facts before, new campaign) by lead id. Their
    counts move from the old campaign's rows to the new one's."""
    moved = {pk: change for pk, change in changes.items() if change[0].campaign != change[1]}
    if not moved:
        return
    history = lead_entries(moved)
    rollups_record(
        LeadMove(
            before=facts,
            after=replace(facts, campaign=campaign),
            history=history.get(pk, []),
        )
        for pk, (facts, campaign) in moved.items()
    )
    for holder in _holders:
        holder.leads_campaign_changed({pk: (facts.campaign, campaign) for pk, (facts, campaign) in moved.items()})


def leads_deleted_record(lead_ids: Iterable[int]) -> None:
    """Leads about to be deleted (call it before, in the deleting transaction): their
    counts go."""
    facts = leads_facts(lead_ids)
    history = lead_entries(facts)
    rollups_record(LeadMove(before=facts[pk], after=None, history=history.get(pk, [])) for pk in facts)
    for holder in _holders:
        holder.leads_deleted(sorted(facts))


def leads_facts(lead_ids: Iterable[int]) -> dict[int, LeadFacts]:
    rows = Lead.objects.filter(id__in=sorted(set(lead_ids))).values_list("id", *LeadFacts.FIELDS)
    return {pk: LeadFacts(*values) for pk, *values in rows}


# --- The rollups of the apps above the core ----------------------------------------------
@dataclass(frozen=True)
class RollupHolder:
    """An app's rollups that count leads' records (handoff's sales outcomes): the core may
    not import the apps above it, so each registers a holder when it is ready, and the
    core's writers and ``rollups_rebuild``/``rollups_compact`` reach its rollups here (as
    ``leadflow.leads.privacy`` reaches their records)."""

    # Each rollup table and its summed columns (the others are its key).
    sums: dict[type[models.Model], tuple[str, ...]]
    # Recount and replace, inside rollups_rebuild's transaction; returns the rows written.
    rebuild: Callable[[], int]
    # Leads about to be deleted, in the deleting transaction.
    leads_deleted: Callable[[list[int]], None]
    # Leads whose campaign changes: (old, new) by lead id, before the update.
    leads_campaign_changed: Callable[[dict[int, tuple[str, str]]], None]


_holders: list[RollupHolder] = []


def holder_register(holder: RollupHolder) -> None:
    """Called from an app's ``ready``."""
    if holder not in _holders:
        _holders.append(holder)


# --- Rebuild and compaction ---------------------------------------------------------------
REBUILD_CHUNK = 20_000


def rollups_recount(*, chunk: int = REBUILD_CHUNK, progress: Callable[[int, int], None] | None = None) -> Counter[Key]:
    """Every lead's counts, from the base tables, ``chunk`` leads at a time."""
    counts: Counter[Key] = Counter()
    total = Lead.objects.count()
    done = 0
    for ids, facts in _leads_in_chunks(chunk):
        entries = _entries_between(ids[0], ids[-1])
        for pk in ids:
            counts.update(lead_counts(facts[pk], entries.get(pk, ())))
        done += len(ids)
        if progress:
            progress(done, total)
    return counts


def _leads_in_chunks(size: int) -> Iterator[tuple[list[int], dict[int, LeadFacts]]]:
    after = 0
    while True:
        rows = list(Lead.objects.filter(id__gt=after).order_by("id").values_list("id", *LeadFacts.FIELDS)[:size])
        if not rows:
            return
        yield [row[0] for row in rows], {pk: LeadFacts(*values) for pk, *values in rows}
        after = rows[-1][0]


def _entries_between(first: int, last: int) -> dict[int, list[Entry]]:
    entries: dict[int, list[Entry]] = defaultdict(list)
    rows = (
        StageChange.objects.filter(lead_id__gte=first, lead_id__lte=last, to_stage__in=COUNTED_STAGES)
        .order_by("lead_id", "at", "id")
        .values_list("lead_id", "to_stage", "at", "qualified_by")
    )
    for lead_id, stage, at, qualified_by in rows.iterator(chunk_size=5000):
        entries[lead_id].append(Entry(stage, at, tuple(qualified_by or ())))
    return entries


ROLLUP_MODELS: tuple[type[models.Model], ...] = (FunnelRollup, StageEntryRollup, DurationRollup)


def rollups_rebuild(*, chunk: int = REBUILD_CHUNK, progress: Callable[[int, int], None] | None = None) -> int:
    """Recount every lead and replace the rollups with the result (the registered apps'
    rollups too, ``RollupHolder``), in one transaction; returns the number of rows
    written. On PostgreSQL the transaction reads one snapshot (REPEATABLE READ) and
    deletes only the rows that snapshot sees: the deltas other transactions commit
    meanwhile stay, and add to the recount exactly what they changed after it. Then refreshes the score histograms."""
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if connection.vendor == "postgresql" and outermost:  # inside a caller's transaction: its isolation
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        counts = rollups_recount(chunk=chunk, progress=progress)
        for model in ROLLUP_MODELS:
            model._default_manager.all().delete()
        funnels, entries, durations = _rows(counts)
        for rows in (funnels, entries, durations):
            _bulk_insert(rows)
        written = len(funnels) + len(entries) + len(durations) + sum(holder.rebuild() for holder in _holders)
    score_histograms_refresh()
    return written


def _key_fields(model: type[models.Model]) -> list[str]:
    return [f.attname for f in model._meta.concrete_fields if not f.primary_key and f.attname not in _sums(model)]


def _sums(model: type[models.Model]) -> list[str]:
    for holder in _holders:
        if model in holder.sums:
            return list(holder.sums[model])
    return list(FUNNEL_FIELDS) if model is FunnelRollup else ["leads"]


def rollups_compact() -> int:
    """Fold each key's delta rows into one (dropping keys that sum to zero); returns the
    number of rows removed. Each table in one transaction: the rows of the keys with
    more than one row are deleted and their sums inserted."""
    removed = 0
    for model in (*ROLLUP_MODELS, *(model for holder in _holders for model in holder.sums)):
        keys, sums = _key_fields(model), _sums(model)
        with transaction.atomic():
            crowded = model._default_manager.values(*keys).annotate(n=Count("id")).filter(n__gt=1).values_list(*keys)
            crowded_keys = set(crowded)
            if not crowded_keys:
                continue
            rows = list(model._default_manager.select_for_update().values_list("id", *keys, *sums))
            totals: dict[tuple[Any, ...], list[int]] = {}
            gone = []
            for pk, *values in rows:
                key = tuple(values[: len(keys)])
                if key not in crowded_keys:
                    continue
                gone.append(pk)
                total = totals.setdefault(key, [0] * len(sums))
                for index, value in enumerate(values[len(keys) :]):
                    total[index] += value
            model._default_manager.filter(id__in=gone).delete()
            model._default_manager.bulk_create(
                [
                    model(**dict(zip(keys, key, strict=True)), **dict(zip(sums, total, strict=True)))
                    for key, total in totals.items()
                    if any(total)
                ],
                batch_size=2000,
            )
            removed += len(gone) - sum(1 for total in totals.values() if any(total))
    return removed


def rollups_current() -> Counter[Key]:
    """The rollups as stored, summed by key (zeros left out): equal to ``rollups_recount``
    when every writer recorded what it changed."""
    counts: Counter[Key] = Counter()
    funnels = FunnelRollup.objects.values_list("day", "source_id", "campaign", "model").annotate(
        *(models.Sum(name) for name in FUNNEL_FIELDS)
    )
    for day, source, campaign, model, *sums in funnels.order_by():
        for name, n in zip(FUNNEL_FIELDS, sums, strict=True):
            counts[("funnel", day, source, campaign, model, name)] = n
    for day, source, stage, n in (
        StageEntryRollup.objects.values_list("day", "source_id", "stage").annotate(n=models.Sum("leads")).order_by()
    ):
        counts[("entry", day, source, stage)] = n
    for day, source, kind, bucket, n in (
        DurationRollup.objects.values_list("day", "source_id", "kind", "bucket")
        .annotate(n=models.Sum("leads"))
        .order_by()
    ):
        counts[("duration", day, source, kind, bucket)] = n
    return Counter({key: n for key, n in counts.items() if n})


# --- The score histograms: a snapshot ------------------------------------------------------
SCORE_BUCKET = 10


def score_histograms_refresh(*, model: str | None = None, width: int = SCORE_BUCKET) -> int:
    """Count every lead's current score under each scoring model (only ``model``, a slug,
    when given; 0 for a lead the model never scored), by source and bucket of ``width``
    points, and replace the snapshot: one aggregate over the leads and the model's scores
    per model, each replaced in its own short transaction. Returns the number of models."""
    known = [slug for slug, _name in scoring_models()] or [""]
    slugs = [slug for slug in known if model is None or slug == model]
    for slug in slugs:
        now = timezone.now()
        rows = (
            leads_annotate_scores(Lead.objects.all(), model=slug or None)
            .annotate(bucket=Floor(F("score") / Value(Decimal(width))))
            .values("source_id", "bucket")
            .annotate(n=Count("id"))
            .order_by()
        )
        snapshot = [
            ScoreHistogram(
                model=slug,
                source_id=row["source_id"] or 0,
                bucket=int(row["bucket"]),
                width=width,
                leads=row["n"],
                refreshed_at=now,
            )
            for row in rows
        ]
        grades = _grade_matrix_snapshot(slug, now) if slug else []
        with transaction.atomic():
            ScoreHistogram.objects.filter(model=slug).delete()
            ScoreHistogram.objects.bulk_create(snapshot, batch_size=2000)
            GradeMatrixSnapshot.objects.filter(model=slug).delete()
            GradeMatrixSnapshot.objects.bulk_create(grades, batch_size=2000)
    ScoreHistogram.objects.exclude(model__in=known).delete()
    GradeMatrixSnapshot.objects.exclude(model__in=known).delete()
    return len(slugs)


# Behaviour bands of the grade matrix: (label, low inclusive or None, high exclusive or None).
BEHAVIOUR_BANDS: tuple[tuple[str, Decimal | None, Decimal | None], ...] = (
    ("under 10", None, Decimal("10")),
    ("10–25", Decimal("10"), Decimal("25")),
    ("25–50", Decimal("25"), Decimal("50")),
    ("50+", Decimal("50"), None),
)


def band_condition(low: Decimal | None, high: Decimal | None, *, field: str) -> Q:
    condition = Q()
    if low is not None:
        condition &= Q(**{f"{field}__gte": low})
    if high is not None:
        condition &= Q(**{f"{field}__lt": high})
    return condition


def _grade_matrix_snapshot(slug: str, now: datetime) -> list[GradeMatrixSnapshot]:
    """The current MQLs the model scored (a grade), by source, grade and band: one aggregate."""
    bands = Case(
        *(
            When(band_condition(low, high, field="behaviour_score"), then=Value(index))
            for index, (_label, low, high) in enumerate(BEHAVIOUR_BANDS)
        ),
        output_field=IntegerField(),
    )
    rows = (
        leads_annotate_scores(Lead.objects.filter(stage=Stage.MQL), model=slug)
        .exclude(grade="")  # type: ignore[misc]  # the provider annotates it
        .annotate(band=bands)
        .values_list("source_id", "grade", "band")
        .annotate(n=Count("id"))
        .order_by()
    )
    return [
        GradeMatrixSnapshot(model=slug, source_id=source or 0, grade=grade, band=band, leads=n, refreshed_at=now)
        for source, grade, band, n in rows
    ]
