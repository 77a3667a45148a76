"""Nurture that knows what converts: content attribution and nurture segments (reads only).

Content is what events carry in their properties: ``asset`` (a whitepaper, a guide)
and ``topic``. Everything here is computed from the core's records, set-based (a few
aggregate queries, never one per lead), with the ORM so that SQLite (``make run``)
and PostgreSQL compute the same:

- **When a lead became MQL / SQL**: the lead's ``mql_at`` (its first entry into MQL,
  or into SQL directly: the lifecycle sets it once) and ``sql_at`` (its latest entry
  into SQL; a recycled lead keeps it). One definition, kept by the lifecycle, read by
  a join rather than a subquery per event. Accepted leads are those at stage ``accepted``; won ones have a ``won``
  Outcome.
- **Attribution** (``content_attribution``): for the leads that became SQL (and,
  among them, the accepted and the won), which assets and topics they engaged with in
  the ``days`` before becoming SQL; and per asset, the MQL→SQL conversion rate of the
  MQLs that engaged with it vs those that did not. An MQL *engaged* with an asset when
  it has an event with that asset from ``days`` before becoming MQL until it became
  SQL (until now, if it never did): content seen after the conversion cannot have
  caused it. Rates carry a 95 % Wilson interval; below ``min_leads`` on either side
  a row is marked "not enough data".
- **Ranking**: the best-converting asset is the one whose engaged MQLs' conversion
  rate has the highest Wilson lower bound (a small sample ranks below a large one of
  the same rate), then the higher rate, then the name. An asset's topic is the topic
  its events carry most often (ties: alphabetical).
- **Segments** (``nurture_segments``): leads in nurture (stage ``mql`` or
  ``recycled``, not erased), grouped by top interest topic — the topic of most of
  their events in the last ``topic_days`` (ties: alphabetical; none: "no topic") — and
  recency of their last event (this week, this month, older). A segment's next
  content is the best-ranked asset of its topic (any topic for "no topic") that not
  every lead of the segment has seen; each lead's own next content is the best-ranked
  one it has not seen (``leads_next_content``).
- **The snapshot**: ``nurture_segments`` answers the segments, with each segment's leads in
  order, as last computed (``nurture_segments_compute``), from the cache, refreshed in the
  background once older than ``NURTURE_CACHE_SECONDS``: at a million leads computing them
  takes seconds, reading them milliseconds (bench/nurture.py).
"""

import contextlib
import hashlib
import logging
import math
import re
from array import array
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from celery import current_app
from django.conf import settings
from django.core.cache import cache
from django.db.models import (
    Case,
    CharField,
    Count,
    Exists,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.fields.json import KT
from django.db.models.functions import Coalesce
from django.utils import timezone

from leadflow.leads.models import Event, Lead, Outcome, OutcomeKind, Stage

logger = logging.getLogger(__name__)

DEFAULT_DAYS = 30  # attribution: the engagement window before becoming SQL (and MQL)
DEFAULT_TOPIC_DAYS = 90  # segments: the window of the top interest topic
MAX_DAYS = 3650
DEFAULT_MIN_LEADS = 10  # fewer leads on either side of a comparison: "not enough data"
Z_95 = 1.959963984540054
NURTURE_STAGES = (Stage.MQL, Stage.RECYCLED)
NO_TOPIC = ""
NO_TOPIC_SLUG = "no-topic"


# --- Statistics -------------------------------------------------------------------------------
def wilson_interval(successes: int, trials: int, z: float = Z_95) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion (95 % by default); None without trials."""
    if trials <= 0:
        return None
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Rate:
    """``successes`` of ``trials``, as a fraction with its 95 % Wilson interval."""

    successes: int
    trials: int

    @property
    def value(self) -> float | None:
        return self.successes / self.trials if self.trials else None

    @property
    def interval(self) -> tuple[float, float] | None:
        return wilson_interval(self.successes, self.trials)

    @property
    def low(self) -> float | None:
        interval = self.interval
        return interval[0] if interval else None

    @property
    def high(self) -> float | None:
        interval = self.interval
        return interval[1] if interval else None

    # In percent, for pages (``|percent``).
    @property
    def percent(self) -> float | None:
        return None if self.value is None else 100 * self.value

    @property
    def low_percent(self) -> float | None:
        return None if self.low is None else 100 * self.low

    @property
    def high_percent(self) -> float | None:
        return None if self.high is None else 100 * self.high

    def as_dict(self) -> dict[str, Any]:
        return {
            "converted": self.successes,
            "leads": self.trials,
            "rate": self.value,
            "low": self.low,
            "high": self.high,
        }


# --- Attribution ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ContentCount:
    """One asset or topic: how many SQL (accepted, won) leads engaged with it in the window."""

    value: str
    sql: int
    accepted: int
    won: int


@dataclass(frozen=True)
class AssetConversion:
    asset: str
    topic: str
    engaged: Rate  # MQLs that engaged with the asset, and how many of them became SQL
    not_engaged: Rate  # the other MQLs
    enough_data: bool

    @property
    def lift(self) -> float | None:
        engaged, other = self.engaged.value, self.not_engaged.value
        return engaged / other if engaged is not None and other else None


@dataclass(frozen=True)
class Attribution:
    days: int
    min_leads: int
    sql_leads: int
    accepted_leads: int
    won_leads: int
    mql_leads: int  # the population of the conversion rates
    converted_leads: int
    assets: list[ContentCount]
    topics: list[ContentCount]
    conversions: list[AssetConversion]  # best-converting first (``ranked``)

    @property
    def overall(self) -> Rate:
        return Rate(self.converted_leads, self.mql_leads)

    @property
    def is_empty(self) -> bool:
        return not self.mql_leads and not self.sql_leads


def _content(key: str) -> Any:
    """``properties[key]`` as text, ``""`` when absent. Plain text, not a JSON key: on
    SQLite (``make run``) a lookup on a JSON key's text compiles its value as JSON."""
    return Coalesce(KT(f"properties__{key}"), Value(""), output_field=CharField())


def _engagements(key: str) -> QuerySet[Any]:
    """Events of leads that are not erased, with a non-empty ``properties[key]`` as ``value``."""
    return Event.objects.annotate(value=_content(key)).filter(lead__erased_at__isnull=True).exclude(value="")


def _before_sql(key: str, days: int) -> list[ContentCount]:
    window = timedelta(days=days)
    won = Outcome.objects.filter(lead_id=OuterRef("lead_id"), kind=OutcomeKind.WON)
    rows = (
        _engagements(key)
        .filter(
            lead__sql_at__isnull=False,
            occurred_at__lte=F("lead__sql_at"),
            occurred_at__gte=F("lead__sql_at") - window,
        )
        .annotate(won=Exists(won))
        .values("value")
        .annotate(
            sql=Count("lead_id", distinct=True),
            accepted=Count("lead_id", distinct=True, filter=Q(lead__stage=Stage.ACCEPTED)),
            won_leads=Count("lead_id", distinct=True, filter=Q(won=True)),
        )
        .order_by("-sql", "value")
    )
    return [ContentCount(str(row["value"]), row["sql"], row["accepted"], row["won_leads"]) for row in rows]


def _sql_population() -> dict[str, int]:
    won = Outcome.objects.filter(lead_id=OuterRef("pk"), kind=OutcomeKind.WON)
    return (
        Lead.objects.filter(sql_at__isnull=False, erased_at__isnull=True)
        .annotate(won=Exists(won))
        .aggregate(
            sql=Count("id"),
            accepted=Count("id", filter=Q(stage=Stage.ACCEPTED)),
            won_leads=Count("id", filter=Q(won=True)),
        )
    )


def _mql_population() -> dict[str, int]:
    return Lead.objects.filter(mql_at__isnull=False, erased_at__isnull=True).aggregate(
        mqls=Count("id"), converted=Count("id", filter=Q(sql_at__isnull=False))
    )


def _engaged_mqls(days: int) -> list[Any]:
    """Per asset: the MQLs that engaged with it (from ``days`` before MQL until SQL, or
    now) and how many of those became SQL."""
    return list(
        _engagements("asset")
        .filter(
            lead__mql_at__isnull=False,
            occurred_at__gte=F("lead__mql_at") - timedelta(days=days),
            occurred_at__lte=Coalesce("lead__sql_at", Value(timezone.now())),
        )
        .values("value")
        .annotate(
            engaged=Count("lead_id", distinct=True),
            converted=Count("lead_id", distinct=True, filter=Q(lead__sql_at__isnull=False)),
        )
        .order_by("value")
    )


def asset_topics(assets: Iterable[str] | None = None) -> dict[str, str]:
    """Each asset's topic: the topic its events carry most often (ties: alphabetical)."""
    events = _engagements("asset").annotate(topic=_content("topic")).exclude(topic="")
    if assets is not None:
        events = events.filter(value__in=list(assets))
    rows = events.values("value", "topic").annotate(n=Count("id")).order_by("value", "-n", "topic")
    topics: dict[str, str] = {}
    for row in rows:
        topics.setdefault(str(row["value"]), str(row["topic"]))
    return topics


def _ranking_key(conversion: AssetConversion) -> tuple[float, float, str]:
    return (-(conversion.engaged.low or 0.0), -(conversion.engaged.value or 0.0), conversion.asset)


def ranked(conversions: Iterable[AssetConversion]) -> list[AssetConversion]:
    """Best-converting first: highest Wilson lower bound, then rate, then name."""
    return sorted(conversions, key=_ranking_key)


def asset_conversions(*, days: int = DEFAULT_DAYS, min_leads: int = DEFAULT_MIN_LEADS) -> list[AssetConversion]:
    """Per asset, the MQL→SQL rate of the MQLs that engaged with it vs the others, best first."""
    population = _mql_population()
    mqls, converted = population["mqls"] or 0, population["converted"] or 0
    return _conversions(_engaged_mqls(days), mqls=mqls, converted=converted, min_leads=min_leads)


def _conversions(rows: list[Any], *, mqls: int, converted: int, min_leads: int) -> list[AssetConversion]:
    topics = asset_topics(row["value"] for row in rows)
    conversions = []
    for row in rows:
        engaged = Rate(row["converted"], row["engaged"])
        other = Rate(converted - row["converted"], mqls - row["engaged"])
        conversions.append(
            AssetConversion(
                asset=str(row["value"]),
                topic=topics.get(str(row["value"]), NO_TOPIC),
                engaged=engaged,
                not_engaged=other,
                enough_data=engaged.trials >= min_leads and other.trials >= min_leads,
            )
        )
    return ranked(conversions)


def content_attribution(*, days: int = DEFAULT_DAYS, min_leads: int = DEFAULT_MIN_LEADS) -> Attribution:
    """What the leads that became SQL engaged with before, and what converts MQLs. Six
    aggregate queries, whatever the number of leads."""
    sqls = _sql_population()
    mqls = _mql_population()
    mql_count, converted = mqls["mqls"] or 0, mqls["converted"] or 0
    return Attribution(
        days=days,
        min_leads=min_leads,
        sql_leads=sqls["sql"] or 0,
        accepted_leads=sqls["accepted"] or 0,
        won_leads=sqls["won_leads"] or 0,
        mql_leads=mql_count,
        converted_leads=converted,
        assets=_before_sql("asset", days),
        topics=_before_sql("topic", days),
        conversions=_conversions(_engaged_mqls(days), mqls=mql_count, converted=converted, min_leads=min_leads),
    )


# --- Segments ---------------------------------------------------------------------------------
THIS_WEEK, THIS_MONTH, OLDER = "this-week", "this-month", "older"
RECENCIES = {THIS_WEEK: "This week", THIS_MONTH: "This month", OLDER: "Older"}
RECENCY_DAYS = {THIS_WEEK: 7, THIS_MONTH: 30}
_SLUG_DROP = re.compile(r"[^a-z0-9]+")


def topic_slug(topic: str) -> str:
    """The topic's part of a segment key: lower-case ASCII words joined by ``-``; a topic
    with none (or whose slug is the reserved ``no-topic``) gets a short hash instead."""
    if topic == NO_TOPIC:
        return NO_TOPIC_SLUG
    slug = _SLUG_DROP.sub("-", topic.lower()).strip("-")[:60].strip("-")
    if not slug or slug == NO_TOPIC_SLUG:
        slug = "topic-" + hashlib.sha256(topic.encode()).hexdigest()[:10]
    return slug


def segment_key(topic: str, recency: str) -> str:
    return f"{topic_slug(topic)}--{recency}"


def parse_segment_key(key: str) -> tuple[str, str] | None:
    """(topic slug, recency) of a well-formed key, else None."""
    slug, _, recency = key.rpartition("--")
    return (slug, recency) if slug and recency in RECENCIES else None


@dataclass
class Segment:
    key: str
    topic: str  # NO_TOPIC for leads with no topic in the window
    recency: str
    leads: int
    next_content: AssetConversion | None = None
    not_seen_by: int = 0  # leads of the segment that have not seen the next content

    @property
    def topic_label(self) -> str:
        return self.topic or "No topic"

    @property
    def recency_label(self) -> str:
        return RECENCIES[self.recency]

    @property
    def label(self) -> str:
        return f"{self.topic_label} · {self.recency_label.lower()}"


def _top_topic(since: datetime) -> Subquery:
    """The outer lead's top interest topic since ``since``: most events, ties alphabetical."""
    events = (
        Event.objects.filter(lead_id=OuterRef("pk"), occurred_at__gte=since)
        .annotate(topic=_content("topic"))
        .exclude(topic="")
        .values("topic")
        .annotate(n=Count("id"))
        .order_by("-n", "topic")
        .values("topic")[:1]
    )
    return Subquery(events, output_field=CharField())


def nurture_leads(*, topic_days: int = DEFAULT_TOPIC_DAYS, now: datetime | None = None) -> QuerySet[Any]:
    """Leads in nurture with ``top_topic`` (``""`` for none), ``last_engaged_at`` (their
    latest event; None without any) and ``recency``."""
    now = now or timezone.now()
    last_event = Event.objects.filter(lead_id=OuterRef("pk")).order_by("-occurred_at").values("occurred_at")[:1]
    return (
        Lead.objects.filter(stage__in=NURTURE_STAGES, erased_at__isnull=True)
        .annotate(
            top_topic=Coalesce(_top_topic(now - timedelta(days=topic_days)), Value(NO_TOPIC)),
            last_engaged_at=Subquery(last_event),
        )
        .annotate(
            recency=Case(
                When(last_engaged_at__gte=now - timedelta(days=RECENCY_DAYS[THIS_WEEK]), then=Value(THIS_WEEK)),
                When(last_engaged_at__gte=now - timedelta(days=RECENCY_DAYS[THIS_MONTH]), then=Value(THIS_MONTH)),
                default=Value(OLDER),
                output_field=CharField(),
            )
        )
    )


@dataclass
class Segments:
    topic_days: int
    segments: list[Segment]
    attribution: Attribution
    ranking: list[AssetConversion] = field(default_factory=list)
    # Segment key → its leads' ids, most recently engaged first (``segment_member_ids``).
    members: dict[str, array] = field(default_factory=dict)
    computed_at: datetime | None = None

    @property
    def leads(self) -> int:
        return sum(segment.leads for segment in self.segments)


def _topic_candidates(ranking: Sequence[AssetConversion], topic: str) -> list[AssetConversion]:
    """The assets that may be a lead's next content, best first: its topic's, or any for no topic."""
    return [c for c in ranking if topic == NO_TOPIC or c.topic == topic]


# A snapshot older than NURTURE_CACHE_SECONDS is still shown, and refreshed in the
# background, for this long; past it (or with none), a request computes it.
NURTURE_KEEP_SECONDS = 24 * 3600
# While one refresh is queued or running, no other is queued (a dead worker's lock expires).
NURTURE_REFRESH_LOCK_SECONDS = 600
REFRESH_TASK = "leadflow.leads.tasks.refresh_nurture_segments"


def _cache_get(key: str) -> Any:
    """The cached value of ``key``; None when missing or when the cache fails (what is
    cached here can always be computed)."""
    try:
        return cache.get(key)
    except Exception:
        return None


def _segments_key(days: int, topic_days: int, min_leads: int) -> str:
    return f"nurture:segments:{days}:{topic_days}:{min_leads}"


def nurture_segments(
    *,
    days: int = DEFAULT_DAYS,
    topic_days: int = DEFAULT_TOPIC_DAYS,
    min_leads: int = DEFAULT_MIN_LEADS,
) -> Segments:
    """The segments as of their last computation (``computed_at``): a snapshot kept in the
    cache and shared by every process, since at a million leads computing them takes
    seconds (bench/nurture.py) and reading them milliseconds. Older than
    ``NURTURE_CACHE_SECONDS``, it is still answered while the task
    ``refresh_nurture_segments`` computes the next one (once, whoever asks); with none
    (or one older than a day), the request computes it. ``NURTURE_CACHE_SECONDS=0``:
    computed at every call. A cache that fails is skipped."""
    if not settings.NURTURE_CACHE_SECONDS:
        return nurture_segments_compute(days=days, topic_days=topic_days, min_leads=min_leads)
    key = _segments_key(days, topic_days, min_leads)
    cached = _cache_get(key)
    if not isinstance(cached, Segments) or cached.computed_at is None:
        return nurture_segments_refresh(days=days, topic_days=topic_days, min_leads=min_leads)
    if cached.computed_at < timezone.now() - timedelta(seconds=settings.NURTURE_CACHE_SECONDS):
        _refresh_enqueue(key, (days, topic_days, min_leads))
    return cached


def nurture_segments_refresh(
    *,
    days: int = DEFAULT_DAYS,
    topic_days: int = DEFAULT_TOPIC_DAYS,
    min_leads: int = DEFAULT_MIN_LEADS,
) -> Segments:
    """Compute the segments and keep the snapshot (the refresh task's work)."""
    segments = nurture_segments_compute(days=days, topic_days=topic_days, min_leads=min_leads)
    key = _segments_key(days, topic_days, min_leads)
    with contextlib.suppress(Exception):  # computed anyway
        cache.set(key, segments, max(NURTURE_KEEP_SECONDS, settings.NURTURE_CACHE_SECONDS))
        cache.delete(f"{key}:refreshing")
    return segments


def _refresh_enqueue(key: str, args: tuple[int, int, int]) -> None:
    """Queue one refresh of the snapshot ``key`` unless one is queued or running. A broker
    that fails frees the lock: the next request tries again."""
    lock = f"{key}:refreshing"
    try:
        if not cache.add(lock, 1, NURTURE_REFRESH_LOCK_SECONDS):
            return
    except Exception:
        return
    try:
        current_app.signature(REFRESH_TASK, args=args).apply_async()
    except Exception:
        logger.exception("The nurture segments' refresh was not queued")
        with contextlib.suppress(Exception):
            cache.delete(lock)


def nurture_segments_compute(
    *,
    days: int = DEFAULT_DAYS,
    topic_days: int = DEFAULT_TOPIC_DAYS,
    min_leads: int = DEFAULT_MIN_LEADS,
) -> Segments:
    """Every segment with its lead count, its leads and next content, largest first: the
    attribution's queries and two more (each lead in nurture with its segment, and
    which of the ranked assets they have seen), counted here."""
    computed_at = timezone.now()
    attribution = content_attribution(days=days, min_leads=min_leads)
    ranking = attribution.conversions
    rows = nurture_leads(topic_days=topic_days, now=computed_at).values_list(
        "pk", "top_topic", "recency", "last_engaged_at"
    )
    members: dict[int, tuple[str, str]] = {}
    engaged: dict[tuple[str, str], list[tuple[datetime | None, int]]] = defaultdict(list)
    for pk, topic, recency, last_engaged_at in rows:
        members[pk] = (topic, recency)
        engaged[(topic, recency)].append((last_engaged_at, pk))
    segments = [
        Segment(key=segment_key(topic, recency), topic=topic, recency=recency, leads=len(leads))
        for (topic, recency), leads in engaged.items()
    ]
    if segments and ranking:
        seen = (
            _engagements("asset")
            .filter(lead__stage__in=NURTURE_STAGES, value__in=[c.asset for c in ranking])
            .values_list("lead_id", "value")
            .distinct()
        )
        seen_by: dict[tuple[str, str, str], int] = defaultdict(int)
        for lead_id, asset in seen:
            if (segment_of := members.get(lead_id)) is not None:
                seen_by[(*segment_of, str(asset))] += 1
        for segment in segments:
            for candidate in _topic_candidates(ranking, segment.topic):
                unseen = segment.leads - seen_by.get((segment.topic, segment.recency, candidate.asset), 0)
                if unseen > 0:
                    segment.next_content, segment.not_seen_by = candidate, unseen
                    break
    order = list(RECENCIES)
    segments.sort(key=lambda s: (-s.leads, s.topic == NO_TOPIC, s.topic, order.index(s.recency)))
    return Segments(
        topic_days=topic_days,
        segments=segments,
        attribution=attribution,
        ranking=ranking,
        members={
            segment_key(topic, recency): array("q", [pk for _at, pk in sorted(leads, key=_most_recent_first)])
            for (topic, recency), leads in engaged.items()
        },
        computed_at=computed_at,
    )


def _most_recent_first(item: tuple[datetime | None, int]) -> tuple[bool, float, int]:
    """The order of a segment's leads: latest engagement first (none last), then by id."""
    at, pk = item
    return (at is None, -at.timestamp() if at is not None else 0.0, pk)


def segment_find(segments: Segments, key: str) -> Segment | None:
    """The segment of ``key`` among ``segments``; an empty one for a well-formed key that
    has no lead now (a segment exists as long as its leads do); None for a malformed key."""
    parsed = parse_segment_key(key)
    if parsed is None:
        return None
    for segment in segments.segments:
        if segment.key == key:
            return segment
    slug, recency = parsed
    # No lead now: the slug stands for the topic, which only the leads' events could name.
    return Segment(key=key, topic=NO_TOPIC if slug == NO_TOPIC_SLUG else slug, recency=recency, leads=0)


def segment_member_ids(segments: Segments, segment: Segment) -> Sequence[int]:
    """The segment's leads as of ``segments.computed_at``, most recently engaged first."""
    return segments.members.get(segment.key, array("q"))


def segment_leads(ids: Sequence[int], *, topic_days: int = DEFAULT_TOPIC_DAYS) -> list[Any]:
    """The leads of ``ids`` (a slice of ``segment_member_ids``), in that order, with the
    annotations of ``nurture_leads`` as they are now; a lead no longer in nurture since
    the segments were computed is left out. One query."""
    found = nurture_leads(topic_days=topic_days).filter(pk__in=list(ids)).in_bulk()
    return [found[pk] for pk in ids if pk in found]


def leads_next_content(
    leads: Sequence[Lead], *, ranking: Sequence[AssetConversion]
) -> dict[int, AssetConversion | None]:
    """Each lead's next content (by pk): the best-ranked asset of its top topic (any,
    without one; ``lead.top_topic``, from ``nurture_leads``) that it has not seen. One
    query, whatever the number of leads."""
    return _next_content([(lead.pk, getattr(lead, "top_topic", NO_TOPIC) or NO_TOPIC) for lead in leads], ranking)


def _next_content(
    leads: Sequence[tuple[int, str]], ranking: Sequence[AssetConversion]
) -> dict[int, AssetConversion | None]:
    """(lead pk, top topic) → the best-ranked asset of that topic the lead has not seen."""
    if not leads:
        return {}
    seen: dict[int, set[str]] = defaultdict(set)
    if ranking:
        rows = (
            _engagements("asset")
            .filter(lead_id__in=[pk for pk, _topic in leads], value__in=[c.asset for c in ranking])
            .values_list("lead_id", "value")
            .distinct()
        )
        for lead_id, asset in rows:
            seen[lead_id].add(str(asset))
    return {
        pk: next((c for c in _topic_candidates(ranking, topic) if c.asset not in seen[pk]), None) for pk, topic in leads
    }


@dataclass(frozen=True)
class SegmentLead:
    """A lead of a segment as the export and the push carry it."""

    id: str  # the public id
    email: str
    name: str
    company: str
    topic: str
    last_engaged_at: datetime | None
    next_content: str  # the asset; "" when every asset of the topic was seen


SEGMENT_CHUNK = 1000


def segment_lead_rows(
    segments: Segments,
    segment: Segment,
    *,
    topic_days: int = DEFAULT_TOPIC_DAYS,
    limit: int | None = None,
) -> Iterator[SegmentLead]:
    """The segment's leads (at most ``limit``) with their next content, as
    ``segment_leads`` reads them: per thousand leads, one query for the leads and one
    for what they have seen."""
    ids = segment_member_ids(segments, segment)
    ids = ids[:limit] if limit is not None else ids
    for start in range(0, len(ids), SEGMENT_CHUNK):
        leads = segment_leads(ids[start : start + SEGMENT_CHUNK], topic_days=topic_days)
        suggestions = leads_next_content(leads, ranking=segments.ranking)
        for lead in leads:
            suggestion = suggestions.get(lead.pk)
            yield SegmentLead(
                id=str(lead.public_id),
                email=lead.email or "",
                name=lead.name,
                company=lead.company,
                topic=lead.top_topic,
                last_engaged_at=lead.last_engaged_at,
                next_content=suggestion.asset if suggestion else "",
            )


RANKING_CACHE_SECONDS = 300


def _ranking_for_lead_pages(days: int) -> list[AssetConversion]:
    """The asset ranking as lead pages use it: cached for a few minutes, since every lead
    page in nurture would otherwise recount the conversions of every MQL. A cache that
    fails is skipped."""
    key = f"nurture:ranking:{days}:{DEFAULT_MIN_LEADS}"
    cached = _cache_get(key)
    if cached is not None:
        return list(cached)
    ranking = asset_conversions(days=days)
    with contextlib.suppress(Exception):  # the ranking is computed anyway
        cache.set(key, ranking, RANKING_CACHE_SECONDS)
    return ranking


@dataclass(frozen=True)
class LeadSuggestion:
    topic: str
    recency: str
    segment_key: str
    next_content: AssetConversion | None


def lead_next_content(
    *, lead: Lead, days: int = DEFAULT_DAYS, topic_days: int = DEFAULT_TOPIC_DAYS
) -> LeadSuggestion | None:
    """The lead page's suggestion for a lead in nurture (its segment and next content);
    None for any other lead (an SQL is sales' now; a new lead has no MQL story yet)."""
    if lead.stage not in NURTURE_STAGES or lead.erased_at is not None:
        return None
    annotated = nurture_leads(topic_days=topic_days).filter(pk=lead.pk).first()
    if annotated is None:
        return None
    ranking = _ranking_for_lead_pages(days)
    return LeadSuggestion(
        topic=annotated.top_topic,
        recency=annotated.recency,
        segment_key=segment_key(annotated.top_topic, annotated.recency),
        next_content=leads_next_content([annotated], ranking=ranking)[annotated.pk],
    )
