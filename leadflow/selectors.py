"""Reads of the pages that compose several apps: the marketing dashboard (the funnel from
the leads and their stage log, the sales outcomes from handoff's statistics) and the
parts of the lead page that come from scoring and handoff. Reads of one app stay in
that app's ``selectors``."""

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import (
    Count,
    DurationField,
    Exists,
    ExpressionWrapper,
    F,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
)
from django.db.models.functions import Coalesce, Floor, TruncDate
from django.utils import timezone

from handoff import rollups as handoff_rollups
from handoff import selectors as handoff_selectors
from handoff.models import Handoff, RejectReason
from handoff.rollups import HandoffOutcomes
from handoff.selectors import AcceptedConfirmations
from leadflow.db import Median, database_has_median, median_in_python
from leadflow.leads.models import (
    DurationKind,
    DurationRollup,
    FunnelRollup,
    GradeMatrixSnapshot,
    Lead,
    Outcome,
    OutcomeKind,
    ScoreHistogram,
    Source,
    Stage,
    StageChange,
    StageEntryRollup,
)
from leadflow.leads.rollups import BEHAVIOUR_BANDS, FUNNEL_FIELDS, band_condition, median_of_buckets
from leadflow.leads.scores import leads_annotate_scores
from leadflow.leads.selectors import start_of_day
from scoring.models import GRADES, Score, ScoringModel

# --- The lead page: its handoffs (its stage history: leadflow.leads.selectors) ------------------------
LEAD_HANDOFFS_LIMIT = 10


def lead_handoffs(*, lead: Lead, user: Any, limit: int = LEAD_HANDOFFS_LIMIT) -> list[Handoff]:
    """The lead's handoffs to sales that ``user`` may see, newest first, with the reps who
    worked them (``handoff.selectors.handoffs_visible``: a rep never sees another's claim)."""
    return list(handoff_selectors.lead_handoffs(lead=lead, user=user)[:limit])


# --- The dashboard --------------------------------------------------------------------
@dataclass(frozen=True)
class Period:
    """Whole days from ``first`` to ``last`` (inclusive) in the current time zone."""

    first: date
    last: date

    @property
    def start(self) -> datetime:
        return start_of_day(self.first)

    @property
    def end(self) -> datetime:
        """Exclusive."""
        return start_of_day(self.last + timedelta(days=1))

    @property
    def days(self) -> list[date]:
        return [self.first + timedelta(days=n) for n in range((self.last - self.first).days + 1)]

    @classmethod
    def last_days(cls, count: int, *, today: date | None = None) -> "Period":
        today = today or timezone.localdate()
        return cls(first=today - timedelta(days=count - 1), last=today)


def _leads_of(source: Source | None) -> QuerySet[Lead]:
    leads = Lead.objects.all()
    return leads if source is None else leads.filter(source=source)


def _created_in(period: Period, source: Source | None) -> QuerySet[Lead]:
    return _leads_of(source).filter(created_at__gte=period.start, created_at__lt=period.end)


def _rate(part: int, whole: int) -> float | None:
    return None if not whole else 100 * part / whole


class FunnelRates:
    """The step rates of a funnel of ``created`` → ``mql`` → ``sql`` → ``accepted`` leads."""

    created: int
    mql: int
    sql: int
    accepted: int

    @property
    def mql_rate(self) -> float | None:
        return _rate(self.mql, self.created)

    @property
    def sql_rate(self) -> float | None:
        return _rate(self.sql, self.mql)

    @property
    def accepted_rate(self) -> float | None:
        return _rate(self.accepted, self.sql)


@dataclass(frozen=True)
class Funnel(FunnelRates):
    """How far the leads created in the period got (current stage for recycled and disqualified)."""

    created: int
    mql: int
    sql: int
    accepted: int
    recycled: int
    disqualified: int
    visitors: int = 0  # leads known only by an anonymous id, not in ``created``


def _ever_accepted() -> Exists:
    return Exists(StageChange.objects.filter(lead=OuterRef("pk"), to_stage=Stage.ACCEPTED))


def _stage_counts() -> dict[str, Count]:
    return {
        "mql": Count("id", filter=Q(mql_at__isnull=False)),
        "sql": Count("id", filter=Q(sql_at__isnull=False)),
        "accepted": Count("id", filter=Q(stage=Stage.ACCEPTED) | Q(_ever_accepted())),
    }


def dashboard_has_leads() -> bool:
    return Lead.objects.exists()


def dashboard_funnel_recount(*, period: Period, source: Source | None = None) -> Funnel:
    counts = _created_in(period, source).aggregate(
        created=Count("id", filter=Q(visitor=False)),
        visitors=Count("id", filter=Q(visitor=True)),
        **_stage_counts(),
        recycled=Count("id", filter=Q(stage=Stage.RECYCLED)),
        disqualified=Count("id", filter=Q(stage=Stage.DISQUALIFIED)),
    )
    return Funnel(**counts)


def dashboard_stage_entries_per_day_recount(*, period: Period, source: Source | None = None) -> dict[str, list[int]]:
    """Leads entering MQL and SQL on each day of the period (from the stage log)."""
    changes = StageChange.objects.filter(to_stage__in=[Stage.MQL, Stage.SQL], at__gte=period.start, at__lt=period.end)
    if source is not None:
        changes = changes.filter(lead__source=source)
    rows = changes.annotate(day=TruncDate("at")).values("day", "to_stage").annotate(n=Count("lead_id", distinct=True))
    by_day = {(row["day"], row["to_stage"]): row["n"] for row in rows}
    return {stage: [by_day.get((day, stage), 0) for day in period.days] for stage in (Stage.MQL, Stage.SQL)}


SCORE_BUCKET = 10
MAX_BUCKETS = 60


@dataclass(frozen=True)
class Histogram:
    lows: list[int]
    counts: list[int]
    width: int = SCORE_BUCKET
    refreshed_at: datetime | None = None  # a snapshot's time (``ScoreHistogram``); None: counted now


def dashboard_score_histogram_recount(
    *, source: Source | None = None, model: ScoringModel | None = None, width: int = SCORE_BUCKET
) -> Histogram:
    """Current scores of all leads under ``model`` (the default model when None; 0 for a
    lead it never scored) in buckets of ``width`` points, gaps filled with zeros."""
    rows = (
        leads_annotate_scores(_leads_of(source), model=model.slug if model else None)
        .annotate(bucket=Floor(F("score") / Value(Decimal(width))))
        .values("bucket")
        .annotate(n=Count("id"))
        .order_by("bucket")
    )
    return _histogram({int(row["bucket"]): row["n"] for row in rows}, width)


def _histogram(counts: dict[int, int], width: int, refreshed_at: datetime | None = None) -> Histogram:
    if not counts:
        return Histogram(lows=[], counts=[], width=width, refreshed_at=refreshed_at)
    low, high = min(counts), max(counts)
    if high - low >= MAX_BUCKETS:  # a few extreme scores: clamp them into the edge buckets
        low = max(low, high - MAX_BUCKETS + 1)
        clamped: dict[int, int] = {}
        for bucket, n in counts.items():
            clamped[max(bucket, low)] = clamped.get(max(bucket, low), 0) + n
        counts = clamped
    buckets = range(low, high + 1)
    return Histogram(
        lows=[b * width for b in buckets],
        counts=[counts.get(b, 0) for b in buckets],
        width=width,
        refreshed_at=refreshed_at,
    )


@dataclass(frozen=True)
class BreakdownRow:
    key: str
    leads: int
    mql: int
    sql: int
    accepted: int

    @property
    def mql_rate(self) -> float | None:
        return _rate(self.mql, self.leads)

    @property
    def sql_rate(self) -> float | None:
        return _rate(self.sql, self.leads)


BREAKDOWN_LIMIT = 15


def dashboard_breakdown_recount(
    *, period: Period, by: str, source: Source | None = None, limit: int = BREAKDOWN_LIMIT
) -> list[BreakdownRow]:
    """Leads created in the period and how many of them converted, by ``source`` or ``utm_campaign``."""
    column = {"source": "source__name", "utm_campaign": "utm_campaign"}[by]
    rows = (
        _created_in(period, source)
        .values(column)
        .annotate(leads=Count("id"), **_stage_counts())
        .order_by("-leads", column)[:limit]
    )
    return [
        BreakdownRow(
            key=row[column] or "", leads=row["leads"], mql=row["mql"], sql=row["sql"], accepted=row["accepted"]
        )
        for row in rows
    ]


@dataclass(frozen=True)
class MedianTimes:
    to_mql: timedelta | None  # created → MQL, of the leads that became MQL in the period
    mql_to_sql: timedelta | None  # MQL → SQL, of the leads that became SQL in the period


def dashboard_median_times_recount(*, period: Period, source: Source | None = None) -> MedianTimes:
    leads = _leads_of(source)
    became_mql = leads.filter(mql_at__gte=period.start, mql_at__lt=period.end)
    became_sql = leads.filter(sql_at__gte=period.start, sql_at__lt=period.end, mql_at__isnull=False)
    if database_has_median():
        to_mql = became_mql.aggregate(
            m=Median(ExpressionWrapper(F("mql_at") - F("created_at"), output_field=DurationField()))
        )["m"]
        mql_to_sql = became_sql.aggregate(
            m=Median(ExpressionWrapper(F("sql_at") - F("mql_at"), output_field=DurationField()))
        )["m"]
        return MedianTimes(to_mql=to_mql, mql_to_sql=mql_to_sql)
    to_mql_values = [mql - created for created, mql in became_mql.values_list("created_at", "mql_at") if mql]
    mql_to_sql_values = [sql - mql for mql, sql in became_sql.values_list("mql_at", "sql_at") if mql and sql]
    return MedianTimes(to_mql=median_in_python(to_mql_values), mql_to_sql=median_in_python(mql_to_sql_values))


@dataclass(frozen=True)
class SalesOutcomes:
    """What became of the handoffs created in the period (``handoff.rollups.handoff_outcomes``)."""

    stats: HandoffOutcomes
    rejected_by_reason: list[tuple[str, str, int]]  # (reason, label, count), most frequent first

    @property
    def decided(self) -> int:
        return self.stats.accepted + self.stats.rejected

    @property
    def accepted_rate(self) -> float | None:
        return _rate(self.stats.accepted, self.decided)

    @property
    def median_to_claim(self) -> timedelta | None:
        return self.stats.median_to_claim

    @property
    def median_to_decision(self) -> timedelta | None:
        return self.stats.median_to_decision


def dashboard_sales_outcomes(
    *,
    period: Period,
    source: Source | None = None,
    campaign: str | None = None,
    model: ScoringModel | None = None,
) -> SalesOutcomes:
    """Accepted and rejected (by reason), median times to claim and to decision, and SLA
    breaches of the handoffs created in the period (of the source's or the campaign's
    leads, qualified by ``model``, when given), from the handoff rollups: the numbers
    ``handoff_stats`` counts (the medians within ``rollups.DURATION_PRECISION``)."""
    stats = handoff_rollups.handoff_outcomes(
        first=period.first,
        last=period.last,
        source_id=source.pk if source else None,
        campaign=campaign,
        model_id=model.pk if model else None,
    )
    reasons = sorted(
        (
            (reason, str(RejectReason(reason).label), count)
            for reason, count in stats.rejected_by_reason.items()
            if count
        ),
        key=lambda item: (-item[2], item[0]),
    )
    return SalesOutcomes(stats=stats, rejected_by_reason=reasons)


def dashboard_sales_confirmations(*, period: Period, source: Source | None = None) -> AcceptedConfirmations:
    """What sales confirmed on the handoffs accepted in the period (of the source's leads):
    each checklist item's share of missing confirmations, the most often missing first."""
    return handoff_selectors.accepted_confirmations(since=period.start, until=period.end, source=source)


def dashboard_sales_outcomes_recount(*, period: Period, source: Source | None = None) -> SalesOutcomes:
    """The same from the handoffs (``handoff_stats``, exact medians): the rollups' oracle
    in the tests and the baseline of bench/reads_dashboard.py."""
    stats = handoff_selectors.handoff_stats(since=period.start, until=period.end, source=source)
    counted = HandoffOutcomes(
        total=stats.total,
        accepted=stats.accepted,
        rejected=stats.rejected,
        closed=stats.closed,
        sla_breaches=stats.sla_breaches,
        rejected_by_reason=stats.rejected_by_reason,
        median_to_claim=_seconds(stats.median_seconds_to_claim),
        median_to_decision=_seconds(stats.median_seconds_to_decision),
    )
    reasons = sorted(
        ((reason, str(RejectReason(reason).label), n) for reason, n in stats.rejected_by_reason.items() if n),
        key=lambda item: (-item[2], item[0]),
    )
    return SalesOutcomes(stats=counted, rejected_by_reason=reasons)


def _seconds(value: float | None) -> timedelta | None:
    return None if value is None else timedelta(seconds=value)


@dataclass(frozen=True)
class OverdueHandoffs:
    count: int
    oldest: list[Handoff]


def dashboard_overdue_handoffs(*, user: Any, source: Source | None = None, limit: int = 5) -> OverdueHandoffs:
    """Open handoffs past their SLA that ``user`` may see (a rep: queued ones and their
    own claims), whenever they were created: how many, and the oldest."""
    handoffs = handoff_selectors.handoffs_overdue(handoff_selectors.handoff_list(user=user), overdue=True)
    if source is not None:
        handoffs = handoffs.filter(lead__source=source)
    return OverdueHandoffs(count=handoffs.count(), oldest=list(handoffs.order_by("due_at", "id")[:limit]))


def dashboard_recent_sqls(
    *, source: Source | None = None, model: ScoringModel | None = None, limit: int = 8
) -> list[Lead]:
    """The latest SQLs, with the scores of ``model`` (``leads_annotate_scores``)."""
    leads = leads_annotate_scores(_leads_of(source), model=model.slug if model else None)
    return list(leads.filter(sql_at__isnull=False).select_related("source").order_by("-sql_at", "-id")[:limit])


# --- The dashboard: outcomes from the CRM ------------------------------------------------
Amounts = tuple[tuple[str, Decimal], ...]  # (currency, sum), by currency: EUR is never added to USD


@dataclass(frozen=True)
class OutcomeRow:
    """Outcomes dated in the period: counts of each kind, and the amounts per currency of
    the opportunities created (the pipeline) and of the deals won."""

    key: str
    opportunities: int = 0
    pipeline: Amounts = ()
    won: int = 0
    won_amount: Amounts = ()
    lost: int = 0


@dataclass(frozen=True)
class DashboardOutcomes:
    total: OutcomeRow
    by_source: list[OutcomeRow]
    by_campaign: list[OutcomeRow]
    by_model: list[OutcomeRow]


class _OutcomeTally:
    def __init__(self, key: str) -> None:
        self.key = key
        self.counts = dict.fromkeys(OutcomeKind.values, 0)
        self.amounts: dict[str, dict[str, Decimal]] = {kind: {} for kind in OutcomeKind.values}

    def add(self, kind: str, currency: str, n: int, amount: Decimal | None) -> None:
        self.counts[kind] += n
        if amount is not None and currency:
            self.amounts[kind][currency] = self.amounts[kind].get(currency, Decimal(0)) + amount

    def row(self) -> OutcomeRow:
        def amounts(kind: str) -> Amounts:
            return tuple(sorted(self.amounts[kind].items()))

        return OutcomeRow(
            key=self.key,
            opportunities=self.counts[OutcomeKind.OPPORTUNITY_CREATED],
            pipeline=amounts(OutcomeKind.OPPORTUNITY_CREATED),
            won=self.counts[OutcomeKind.WON],
            won_amount=amounts(OutcomeKind.WON),
            lost=self.counts[OutcomeKind.LOST],
        )


def _outcome_rows(tallies: dict[Any, _OutcomeTally], limit: int) -> list[OutcomeRow]:
    rows = [tally.row() for tally in tallies.values()]
    rows.sort(key=lambda row: (-row.won, -row.opportunities, -row.lost, row.key))
    return rows[:limit]


def dashboard_outcomes(
    *, period: Period, source: Source | None = None, limit: int = BREAKDOWN_LIMIT
) -> DashboardOutcomes:
    """The outcomes the CRM dated in the period (of leads of any age; of the source's leads
    when given): opportunities created with their pipeline, deals won with their amount,
    deals lost; in all, and by the lead's source, its campaign (``utm_campaign``, as the
    breakdown of the funnel) and the scoring model that qualified its latest handoff
    (``Handoff.model``). One aggregate query; amounts are summed per currency."""
    latest_model = Subquery(
        Handoff.objects.filter(lead=OuterRef("lead_id")).order_by("-created_at", "-id").values("model_id")[:1]
    )
    outcomes = Outcome.objects.filter(occurred_at__gte=period.start, occurred_at__lt=period.end)
    if source is not None:
        outcomes = outcomes.filter(lead__source=source)
    rows = (
        outcomes.annotate(qualifying_model=latest_model)
        .values("kind", "currency", "lead__source__name", "lead__utm_campaign", "qualifying_model")
        .annotate(n=Count("id"), amount=Sum("amount"))
        .order_by()
    )
    total = _OutcomeTally("")
    by_source: dict[Any, _OutcomeTally] = {}
    by_campaign: dict[Any, _OutcomeTally] = {}
    by_model: dict[Any, _OutcomeTally] = {}
    for row in rows:
        figures = (row["kind"], row["currency"], row["n"], row["amount"])
        total.add(*figures)
        for tallies, key in (
            (by_source, row["lead__source__name"] or ""),
            (by_campaign, row["lead__utm_campaign"] or ""),
            (by_model, row["qualifying_model"]),
        ):
            tallies.setdefault(key, _OutcomeTally(key if isinstance(key, str) else "")).add(*figures)
    if by_model:
        names = dict(ScoringModel.objects.filter(id__in=[k for k in by_model if k]).values_list("id", "name"))
        for model_id, tally in by_model.items():
            tally.key = names.get(model_id, "") if model_id else ""
    return DashboardOutcomes(
        total=total.row(),
        by_source=_outcome_rows(by_source, limit),
        by_campaign=_outcome_rows(by_campaign, limit),
        by_model=_outcome_rows(by_model, limit),
    )


# --- The dashboard, per scoring model --------------------------------------------------
@dataclass(frozen=True)
class ModelFunnel(FunnelRates):
    """Of the leads created in the period, how many ``model`` qualified: the stage log's
    automatic changes record the models that qualified each lead (``qualified_by``)."""

    model: ScoringModel
    created: int
    mql: int
    sql: int
    accepted: int


def _qualified_by(model: ScoringModel, stage: str) -> Exists:
    """The lead entered ``stage`` automatically with ``model`` among the models that
    qualified it. (``qualified_by`` holds slugs, and a slug is [a-z0-9_-]: its quoted
    text matches one element exactly, on every database.)"""
    return Exists(
        StageChange.objects.filter(lead=OuterRef("pk"), to_stage=stage, qualified_by__icontains=f'"{model.slug}"')
    )


def dashboard_model_funnel_recount(*, period: Period, model: ScoringModel, source: Source | None = None) -> ModelFunnel:
    counts = _created_in(period, source).aggregate(
        created=Count("id", filter=Q(visitor=False)),
        mql=Count("id", filter=Q(_qualified_by(model, Stage.MQL))),
        sql=Count("id", filter=Q(_qualified_by(model, Stage.SQL))),
        accepted=Count(
            "id", filter=Q(_qualified_by(model, Stage.SQL)) & (Q(stage=Stage.ACCEPTED) | Q(_ever_accepted()))
        ),
    )
    return ModelFunnel(model=model, **counts)


@dataclass(frozen=True)
class GradeMatrix:
    """Current MQLs by ``model``'s fit grade (rows A–F) and behaviour band (columns)."""

    bands: list[str]
    rows: list[tuple[str, list[int], int]]  # (grade, count per band, row total)
    total: int


def _band(low: Decimal | None, high: Decimal | None) -> Q:
    return band_condition(low, high, field="behaviour")


def dashboard_grade_matrix_recount(*, model: ScoringModel, source: Source | None = None) -> GradeMatrix:
    """One aggregate query over the scores table: the current MQLs ``model`` scored, by
    grade and behaviour band (an MQL the model never scored is in no cell)."""
    scores = Score.objects.filter(model=model, lead__stage=Stage.MQL)
    if source is not None:
        scores = scores.filter(lead__source=source)
    counts = {
        f"{grade}_{index}": Count("id", filter=Q(grade=grade) & _band(low, high))
        for grade in GRADES
        for index, (_label, low, high) in enumerate(BEHAVIOUR_BANDS)
    }
    row = scores.aggregate(**counts)
    rows = []
    for grade in GRADES:
        cells = [row[f"{grade}_{index}"] for index in range(len(BEHAVIOUR_BANDS))]
        rows.append((grade, cells, sum(cells)))
    return _grade_matrix(rows)


def _grade_matrix(rows: list[tuple[str, list[int], int]]) -> GradeMatrix:
    return GradeMatrix(
        bands=[label for label, _low, _high in BEHAVIOUR_BANDS], rows=rows, total=sum(total for *_, total in rows)
    )


def dashboard_grade_matrix(*, model: ScoringModel, source: Source | None = None) -> GradeMatrix:
    """The latest snapshot (taken with the score histogram, ``rollups.score_histograms_refresh``);
    counted now when the model has none yet."""
    if not ScoreHistogram.objects.filter(model=model.slug).exists():
        return dashboard_grade_matrix_recount(model=model, source=source)
    snapshot = GradeMatrixSnapshot.objects.filter(model=model.slug)
    if source is not None:
        snapshot = snapshot.filter(source_id=source.pk)
    counts = {
        (grade, band): n for grade, band, n in snapshot.values_list("grade", "band").annotate(n=Sum("leads")).order_by()
    }
    rows = []
    for grade in GRADES:
        cells = [counts.get((grade, index), 0) for index in range(len(BEHAVIOUR_BANDS))]
        rows.append((grade, cells, sum(cells)))
    return _grade_matrix(rows)


# --- The dashboard from its rollups (``leadflow.leads.rollups``) ---------------------------
# The ``…_recount`` readers above count the same from the base tables: the rollups' oracle
# in the tests and the baseline of bench/reads_dashboard.py.
def _in_period(rows: QuerySet[Any], period: Period, source: Source | None) -> QuerySet[Any]:
    rows = rows.filter(day__gte=period.first, day__lte=period.last)
    return rows if source is None else rows.filter(source_id=source.pk)


def _sums(*names: str) -> dict[str, Coalesce]:
    return {name: Coalesce(Sum(name), 0) for name in names}


def dashboard_funnel(*, period: Period, source: Source | None = None) -> Funnel:
    counts = _in_period(FunnelRollup.objects.filter(model=""), period, source).aggregate(**_sums(*FUNNEL_FIELDS))
    return Funnel(**counts)


def dashboard_stage_entries_per_day(*, period: Period, source: Source | None = None) -> dict[str, list[int]]:
    """Leads entering MQL and SQL on each day of the period."""
    rows = (
        _in_period(StageEntryRollup.objects.all(), period, source)
        .values_list("day", "stage")
        .annotate(n=Sum("leads"))
        .order_by()
    )
    by_day = {(day, stage): n for day, stage, n in rows}
    return {stage: [by_day.get((day, stage), 0) for day in period.days] for stage in (Stage.MQL, Stage.SQL)}


def dashboard_model_funnel(*, period: Period, model: ScoringModel, source: Source | None = None) -> ModelFunnel:
    rows = (
        _in_period(FunnelRollup.objects.filter(model__in=["", model.slug]), period, source)
        .values("model")
        .annotate(**_sums("created", "mql", "sql", "accepted"))
        .order_by()
    )
    by_model = {row["model"]: row for row in rows}
    everyone, qualified = by_model.get("", {}), by_model.get(model.slug, {})
    return ModelFunnel(
        model=model,
        created=everyone.get("created", 0),
        mql=qualified.get("mql", 0),
        sql=qualified.get("sql", 0),
        accepted=qualified.get("accepted", 0),
    )


def dashboard_breakdown(
    *, period: Period, by: str, source: Source | None = None, limit: int = BREAKDOWN_LIMIT
) -> list[BreakdownRow]:
    """Leads created in the period and how many of them converted, by ``source`` or ``utm_campaign``."""
    column = {"source": "source_id", "utm_campaign": "campaign"}[by]
    rows = (
        _in_period(FunnelRollup.objects.filter(model=""), period, source)
        .values(column)
        .annotate(leads=Sum("created"), mql=Sum("mql"), sql=Sum("sql"), accepted=Sum("accepted"))
        .filter(leads__gt=0)
    )
    if by == "source":
        names = dict(Source.objects.values_list("id", "name"))
        keyed = [(names.get(row[column]), row) for row in rows]
        # As the database orders names: a lead without a source (no name) last among equals.
        keyed.sort(key=lambda item: (-item[1]["leads"], item[0] is None, item[0] or ""))
        keyed = keyed[:limit]
    else:
        keyed = [(row[column], row) for row in rows.order_by("-leads", column)[:limit]]
    return [
        BreakdownRow(key=key or "", leads=row["leads"], mql=row["mql"], sql=row["sql"], accepted=row["accepted"])
        for key, row in keyed
    ]


def dashboard_median_times(*, period: Period, source: Source | None = None) -> MedianTimes:
    rows = (
        _in_period(DurationRollup.objects.all(), period, source)
        .values_list("kind", "bucket")
        .annotate(n=Sum("leads"))
        .order_by()
    )
    buckets: dict[str, dict[int, int]] = {kind: {} for kind in DurationKind.values}
    for kind, bucket, n in rows:
        buckets[kind][bucket] = n
    return MedianTimes(
        to_mql=median_of_buckets(buckets[DurationKind.TO_MQL]),
        mql_to_sql=median_of_buckets(buckets[DurationKind.MQL_TO_SQL]),
    )


def dashboard_score_histogram(
    *, source: Source | None = None, model: ScoringModel | None = None, width: int = SCORE_BUCKET
) -> Histogram:
    """The latest snapshot of the current scores of all leads under ``model``
    (``rollups.score_histograms_refresh``, with its time); counted now when the model has
    no snapshot yet (a model created since the last refresh) or another ``width`` is asked."""
    rows = ScoreHistogram.objects.filter(model=model.slug if model else "", width=width)
    if source is not None:
        rows = rows.filter(source_id=source.pk)
    counts = list(rows.values_list("bucket").annotate(n=Sum("leads"), at=Min("refreshed_at")).order_by())
    if not counts and not ScoreHistogram.objects.filter(model=model.slug if model else "", width=width).exists():
        return dashboard_score_histogram_recount(source=source, model=model, width=width)
    refreshed_at = min((at for _bucket, _n, at in counts), default=None)
    return _histogram({bucket: n for bucket, n, _at in counts}, width, refreshed_at)


@dataclass(frozen=True)
class DashboardNumbers:
    """What the dashboard shows of the period's leads, one way or the other."""

    funnel: Funnel
    per_day: dict[str, list[int]]
    histogram: Histogram
    model_funnel: ModelFunnel | None
    by_source: list[BreakdownRow]
    by_campaign: list[BreakdownRow]
    medians: MedianTimes


def dashboard_numbers(
    *, period: Period, source: Source | None, model: ScoringModel | None, recount: bool = False
) -> DashboardNumbers:
    """From the rollups; with ``recount``, from the base tables (the same numbers, the
    medians within ``rollups.DURATION_PRECISION``, the histogram as of its snapshot)."""
    if recount:
        return DashboardNumbers(
            funnel=dashboard_funnel_recount(period=period, source=source),
            per_day=dashboard_stage_entries_per_day_recount(period=period, source=source),
            histogram=dashboard_score_histogram_recount(source=source, model=model),
            model_funnel=dashboard_model_funnel_recount(period=period, model=model, source=source) if model else None,
            by_source=dashboard_breakdown_recount(period=period, by="source", source=source),
            by_campaign=dashboard_breakdown_recount(period=period, by="utm_campaign", source=source),
            medians=dashboard_median_times_recount(period=period, source=source),
        )
    return DashboardNumbers(
        funnel=dashboard_funnel(period=period, source=source),
        per_day=dashboard_stage_entries_per_day(period=period, source=source),
        histogram=dashboard_score_histogram(source=source, model=model),
        model_funnel=dashboard_model_funnel(period=period, model=model, source=source) if model else None,
        by_source=dashboard_breakdown(period=period, by="source", source=source),
        by_campaign=dashboard_breakdown(period=period, by="utm_campaign", source=source),
        medians=dashboard_median_times(period=period, source=source),
    )
