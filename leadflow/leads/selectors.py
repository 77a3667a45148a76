"""Reads of the lead core: lead lists (the leads page and its export) and the lead's own
records (events, interests). Pages that compose leads with scoring and handoff read
through ``leadflow.selectors``."""

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.paginator import Page
from django.db.models import Count, Exists, Min, OuterRef, Q, QuerySet
from django.db.models.fields.json import KT
from django.db.models.functions import Coalesce
from django.utils import timezone

from leadflow.leads.models import (
    LEAD_UTM_FIELDS,
    Account,
    Event,
    Lead,
    LeadMerge,
    Outcome,
    SegmentDrop,
    Source,
    Stage,
    StageChange,
)
from leadflow.leads.people import person_name
from leadflow.leads.roles import SALES, sees_every_decision
from leadflow.leads.scores import leads_annotate_scored, leads_annotate_scores, leads_stale_mql
from leadflow.pagination import CappedCountPaginator

RECENT_EVENTS = 20
User = get_user_model()


def lead_list() -> QuerySet[Lead]:
    """Leads with what list views show; ``activity_at`` orders leads that never acted by creation.
    Erased persons' tombstones are not leads to anyone (``leadflow.leads.privacy``)."""
    return (
        Lead.objects.filter(erased_at__isnull=True)
        .select_related("source", "owner", "account")
        .annotate(activity_at=Coalesce("last_activity_at", "created_at"))
    )


def lead_recent_events(*, lead: Lead, limit: int = RECENT_EVENTS) -> list[Event]:
    return list(lead.events.select_related("source").order_by("-occurred_at", "-id")[:limit])


def source_get(*, slug: str) -> Source | None:
    return Source.objects.filter(slug=slug).first()


def source_slugs_by_name() -> dict[str, str]:
    """Every source's slug by its name (both unique): the dashboard's rows name a source,
    the leads list filters by its slug."""
    return dict(Source.objects.values_list("name", "slug"))


def lead_owner_choices() -> list[tuple[str, str]]:
    """(username, full name) of the people a lead may be owned by: active sales reps, and
    anyone who owns a lead now (a rep who left the team still owns theirs)."""
    owners = User.objects.filter(
        Q(is_active=True, groups__name=SALES) | Q(pk__in=Lead.objects.filter(owner__isnull=False).values("owner_id"))
    ).distinct()
    return sorted(((user.get_username(), person_name(user)) for user in owners), key=lambda pair: pair[1].lower())


# --- The leads page -----------------------------------------------------------------
# By score, a lead the model has not scored yet (it reads as 0) comes after the zeros it
# scored (before them, highest first): ``scored`` (leads_annotate_scores) breaks the tie,
# so the scored zeros and negatives lowest first, like the positives highest first,
# are a prefix an index serves (``lead_search_head``).
LEAD_SORTS: dict[str, tuple[str, ...]] = {
    "-score": ("-score", "scored", "-id"),
    "score": ("score", "-scored", "id"),
    "-activity": ("-activity_at", "-id"),
    "activity": ("activity_at", "id"),
    "-created": ("-created_at", "-id"),
    "created": ("created_at", "id"),
}
DEFAULT_LEAD_SORT = "-score"


@dataclass(frozen=True)
class LeadFilters:
    """What narrows a list of leads: the leads page (``LeadFilterForm``), its export and
    the lead API (``LeadFilter``) all read leads through ``lead_search`` with these."""

    q: str = ""
    stages: tuple[str, ...] = ()
    score_min: Decimal | None = None
    score_max: Decimal | None = None
    source: Source | None = None
    source_slug: str = ""
    created_after: datetime | None = None
    created_before: datetime | None = None
    active_after: datetime | None = None
    active_before: datetime | None = None
    sort: str = DEFAULT_LEAD_SORT
    model: str | None = None  # the scoring model (slug) whose score filters and sorts; None: the default
    account: int | None = None  # the account's id: its contacts only
    stale_mql: bool = False  # only MQLs whose score (of ``model``) is now below its MQL threshold
    utm_source: str = ""  # exact values, as the dashboard's breakdown by campaign groups them
    utm_medium: str = ""
    utm_campaign: str = ""
    owner: str = ""  # the owner's username
    # Visitors (only anonymous ids) are hidden unless asked for: "include" (with the
    # others) or "only" (``VISITOR_CHOICES``).
    visitors: str = ""


VISITOR_CHOICES = (("", "Hide visitors"), ("include", "Include visitors"), ("only", "Only visitors"))


def start_of_day(day: date) -> datetime:
    """The first moment of ``day`` in the current time zone (how pages read a date)."""
    return datetime.combine(day, time.min, tzinfo=timezone.get_current_timezone())


def end_of_day(day: date) -> datetime:
    """The first moment after ``day`` (an inclusive end date as pages read it)."""
    return start_of_day(day + timedelta(days=1))


def leads_matching(leads: QuerySet[Lead], *, text: str) -> QuerySet[Lead]:
    """The search of leads (the leads page, the API's ``q``): the leads whose email, name
    or company contains ``text``, in any case; a blank ``text`` keeps them all."""
    text = text.strip()
    if not text:
        return leads
    return leads.filter(Q(email__icontains=text) | Q(name__icontains=text) | Q(company__icontains=text))


def _narrowed(leads: QuerySet[Lead], filters: LeadFilters) -> QuerySet[Lead]:
    leads = leads_matching(leads, text=filters.q)
    if filters.visitors == "only":
        leads = leads.filter(visitor=True)
    elif filters.visitors != "include":
        leads = leads.filter(visitor=False)
    # ``stage__in``, never a DISTINCT: every filter here keeps one row per lead.
    if filters.stages:
        leads = leads.filter(stage__in=filters.stages)
    # ``score`` is the annotation of ``leads_annotate_scores``.
    if filters.score_min is not None:
        leads = leads.filter(score__gte=filters.score_min)  # type: ignore[misc]
    if filters.score_max is not None:
        leads = leads.filter(score__lte=filters.score_max)  # type: ignore[misc]
    if filters.source is not None:
        leads = leads.filter(source=filters.source)
    if filters.source_slug:
        leads = leads.filter(source__slug=filters.source_slug)
    if filters.account is not None:
        leads = leads.filter(account_id=filters.account)
    for name in LEAD_UTM_FIELDS:
        if value := getattr(filters, name):
            leads = leads.filter(**{name: value})
    if filters.owner:
        # The owner's id by its username (unique): the partial index lead_owner then serves.
        leads = leads.filter(owner_id__in=User.objects.filter(username=filters.owner).values("pk"))
    if filters.created_after is not None:
        leads = leads.filter(created_at__gte=filters.created_after)
    if filters.created_before is not None:
        leads = leads.filter(created_at__lt=filters.created_before)
    if filters.active_after is not None:
        leads = leads.filter(last_activity_at__gte=filters.active_after)
    if filters.active_before is not None:
        leads = leads.filter(last_activity_at__lt=filters.active_before)
    if filters.stale_mql:
        leads = leads_stale_mql(leads, model=filters.model)
    return leads


def lead_search(*, filters: LeadFilters) -> QuerySet[Lead]:
    """The leads page, its CSV export and the lead API: filters, search and a stable order
    (ties by id), with the scores of ``filters.model`` (``leadflow.leads.scores``; raises
    UnknownModel). Every order the page offers has an index that serves its first page
    (``lead_activity``, ``lead_created``; by score, ``lead_search_head``)."""
    leads = _narrowed(leads_annotate_scores(lead_list(), model=filters.model), filters)
    return leads.order_by(*LEAD_SORTS.get(filters.sort, LEAD_SORTS[DEFAULT_LEAD_SORT]))


# Where the leads the model scored end, in each order by score: past this side of 0
# (past 0 itself, lowest first) every lead is one it scored (HEAD_ENDS[sort](score, 0)).
HEAD_ENDS = {"-score": "gt", "score": "lte"}


def lead_search_head(*, filters: LeadFilters) -> QuerySet[Lead] | None:
    """The start of ``lead_search`` in its own order, for the sorts by score, which no
    index serves directly: a lead the model never scored reads as 0, and the score is on
    the nullable side of an outer join.

    The leads the model scored above zero (highest first), or at or below zero (lowest
    first), come before every other lead (``LEAD_SORTS``): read from the scores' index
    (model, score, lead) in the same order, they are a prefix of ``lead_search``. A page
    inside the prefix is the list's page; any other is read from ``lead_search``
    (``HeadFirstPaginator``, ``api.LeadCursorPagination``). None for the other sorts."""
    end = HEAD_ENDS.get(filters.sort)
    # One stage (the hot-MQL list): the scores' copy of the stage narrows the index's walk
    # to that stage's leads (an index of its own for MQL and SQL, scoring's HOT_STAGES);
    # the lead's own stage still filters (``_narrowed``).
    stage = filters.stages[0] if len(filters.stages) == 1 else None
    if filters.stale_mql:  # stale MQLs are MQLs: the MQLs' part of the index
        stage = Stage.MQL
    scored = leads_annotate_scored(lead_list(), model=filters.model, stage=stage) if end else None
    if scored is None:
        return None
    leads = _narrowed(scored.filter(**{f"score__{end}": 0}), filters)
    return leads.order_by(*LEAD_SORTS[filters.sort])


class HeadFirstPaginator(CappedCountPaginator):
    """The leads page's paginator over ``lead_search``: it reads a page from ``head`` (a
    prefix of the same order, served by an index: ``lead_search_head``) when the prefix
    holds the page and the row after it, and from the whole list otherwise. The count is
    the whole list's, up to its cap (``CappedCountPaginator``: "more than 1,000")."""

    def __init__(self, object_list: QuerySet[Lead], per_page: int, *, head: QuerySet[Lead] | None) -> None:
        super().__init__(object_list, per_page)
        self.head = head

    def page(self, number: Any) -> Page:
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        if self.head is not None:
            rows = list(self.head[bottom : bottom + self.per_page + 1])
            if len(rows) > self.per_page:
                return Page(rows[: self.per_page], number, self) if self.count_exact else self.page_of(rows, number)
        return super().page(number)


# --- The lead's records (the lead page) --------------------------------------------------------------------
INTEREST_LIMIT = 8


def lead_events(*, lead: Lead) -> QuerySet[Event]:
    """The lead's timeline, newest first (paginate it)."""
    return lead.events.select_related("source").order_by("-occurred_at", "-id")


LEAD_OUTCOMES_LIMIT = 20


def lead_outcomes(*, lead: Lead) -> QuerySet[Outcome]:
    """What the CRM reported about the lead (opportunity, won, lost), newest first: the
    lead page and the handoff page show the first ``LEAD_OUTCOMES_LIMIT``, the API pages them."""
    return lead.outcomes.select_related("source").order_by("-occurred_at", "-id")


def lead_interests(*, lead: Lead, key: str, limit: int = INTEREST_LIMIT) -> list[tuple[str, int]]:
    """The most frequent values of an event property (``topic``, ``asset``) across the
    lead's events: one aggregate query on ``properties->>key``."""
    rows = (
        lead.events.annotate(value=KT(f"properties__{key}"))
        .filter(value__isnull=False)
        .values("value")
        .annotate(n=Count("id"))
        .order_by("-n", "value")[: limit + 1]
    )
    # An empty text is no interest; filtered here because SQLite's JSON1 mis-compiles ``value != ''``.
    return [(row["value"], row["n"]) for row in rows if row["value"] != ""][:limit]


def lead_count() -> int:
    return Lead.objects.count()


# --- Event types (the scoring pages warn of a rule on a type no event ever had) ----------------------------
EVENT_TYPE_SEEN_SECONDS = 24 * 3600  # a type once seen stays seen: events are append-only
EVENT_TYPE_UNSEEN_SECONDS = 60  # the first event of a new type ends the warning within a minute


def event_types_unseen(event_types: Iterable[str]) -> set[str]:
    """The given event types that no stored event has: one ``EXISTS`` per type the cache
    does not know. There is no index on ``type`` (it would slow every ingest), so a type
    never seen costs a scan of the events: hence the cache, which remembers a seen type
    for a day and an unseen one for a minute. A cache that fails is skipped."""
    wanted = sorted(set(event_types))
    if not wanted:
        return set()
    keys = {f"event-type-seen:{event_type}": event_type for event_type in wanted}
    try:
        cached = cache.get_many(list(keys))
    except Exception:  # any cache backend's connection error: ask the database
        cached = {}
    known = {keys[key]: seen for key, seen in cached.items()}
    for event_type in wanted:
        if event_type not in known:
            known[event_type] = Event.objects.filter(type=event_type).exists()
            try:
                timeout = EVENT_TYPE_SEEN_SECONDS if known[event_type] else EVENT_TYPE_UNSEEN_SECONDS
                cache.set(f"event-type-seen:{event_type}", known[event_type], timeout)
            except Exception:  # noqa: S110 - a failed cache write only costs the next page a query
                pass
    return {event_type for event_type, seen in known.items() if not seen}


STAGE_HISTORY_LIMIT = 100


# A rep's decision on a handoff moves its lead out of SQL: these are the changes it writes.
SALES_DECISIONS = {(Stage.SQL, Stage.ACCEPTED), (Stage.SQL, Stage.RECYCLED), (Stage.SQL, Stage.DISQUALIFIED)}


def lead_stage_history(*, lead: Lead, viewer: Any, limit: int | None = STAGE_HISTORY_LIMIT) -> list[StageChange]:
    """The lead's stage changes, newest first (the page shows the latest ``limit``; the
    API, ``limit=None``, all of them), as ``viewer`` may see them.

    Scoped like handoffs (``handoff.selectors.handoffs_visible``): a viewer who does not
    see every rep's work (a rep, ``sees_every_decision``) does not learn who decided
    another rep's handoff. On a change out of SQL made by someone else, the actor and the
    reason (which names the rep and holds their note) are withheld: ``actor_hidden`` is
    set and the page says "sales"."""
    ordered = StageChange.objects.filter(lead=lead).select_related("actor").order_by("-at", "-id")
    changes = list(ordered if limit is None else ordered[:limit])
    everyone = sees_every_decision(viewer)
    for change in changes:
        change.actor_hidden = (  # type: ignore[attr-defined]
            not everyone
            and change.actor_id is not None
            and change.actor_id != getattr(viewer, "pk", None)
            and (change.from_stage, change.to_stage) in SALES_DECISIONS
        )
        if change.actor_hidden:  # type: ignore[attr-defined]
            change.actor, change.reason = None, ""
    return changes


SCORE_HISTORY_LIMIT = 60


def lead_score_history(
    *, lead: Lead, model_slug: str, default: bool, limit: int = SCORE_HISTORY_LIMIT
) -> list[tuple[datetime, Decimal]]:
    """The lead's scores under the model ``model_slug`` as its stage log recorded them
    (there is no other score history: ``scoring.Score`` holds the current score only),
    oldest first, the latest ``limit``: each automatic stage change keeps the score of
    the first model that qualified the lead. A change recorded before scoring models
    named themselves (no ``qualified_by``) counts for the default model; a change by
    hand has no score."""
    rows = (
        StageChange.objects.filter(lead=lead, score__isnull=False)
        .order_by("-at", "-id")
        .values_list("at", "score", "qualified_by")[:limit]
    )
    points: list[tuple[datetime, Decimal]] = []
    for at, score, qualified_by in rows:
        first = qualified_by[0] if qualified_by else None
        if score is not None and (first == model_slug or (first is None and default)):
            points.append((at, score))
    return points[::-1]


# --- Accounts ------------------------------------------------------------------------------------------
def account_list() -> QuerySet[Account]:
    return Account.objects.all()


def account_search(accounts: QuerySet[Account], *, text: str) -> QuerySet[Account]:
    """Accounts whose name, key or domain contains ``text``, in any case (blank: all)."""
    text = text.strip()
    if not text:
        return accounts
    return accounts.filter(Q(name__icontains=text) | Q(key__icontains=text) | Q(domain__icontains=text))


def account_contacts(*, account: Account) -> QuerySet[Lead]:
    """The account's leads, most recently active first."""
    return lead_list().filter(account=account).order_by("-activity_at", "-id")  # type: ignore[misc]


def account_events(*, account: Account) -> QuerySet[Event]:
    """The latest events of the account's contacts, newest first (paginate it)."""
    return Event.objects.filter(lead__account=account).select_related("source", "lead").order_by("-occurred_at", "-id")


@dataclass(frozen=True)
class ScoringBacklog:
    """Leads flagged for rescoring (``needs_rescore``) and when the oldest of them was
    flagged: its last write (``updated_at``), the moment the sweep counts its grace from."""

    waiting: int
    oldest_flagged_at: datetime | None

    def oldest_age_seconds(self, now: datetime | None = None) -> float:
        """The scoring lag: how long the oldest flagged lead has waited (0 with none waiting)."""
        if self.oldest_flagged_at is None:
            return 0.0
        return max(0.0, ((now or timezone.now()) - self.oldest_flagged_at).total_seconds())


def scoring_backlog() -> ScoringBacklog:
    """One definition of "waiting for scoring", for readiness and the metrics (a scan of
    the partial index of flagged leads)."""
    row = Lead.objects.filter(needs_rescore=True).aggregate(waiting=Count("id"), oldest=Min("updated_at"))
    return ScoringBacklog(waiting=row["waiting"], oldest_flagged_at=row["oldest"])


# --- Identities and merges ---------------------------------------------------------------------------
def lead_find(*, text: str) -> Lead | None:
    """The lead a person names to merge with: by its id (the UUID in its address), e-mail,
    external id or one of its anonymous ids; None when no (unerased) lead matches."""
    text = text.strip()
    if not text:
        return None
    leads = lead_list()
    try:
        return leads.filter(public_id=uuid.UUID(text)).first()
    except ValueError:
        pass
    return (
        leads.filter(email=text.lower()).first()
        or leads.filter(external_id=text).first()
        or leads.filter(anonymous_ids__anonymous_id=text).first()
    )


def lead_anonymous_ids(*, lead: Lead) -> list[str]:
    return list(lead.anonymous_ids.order_by("created_at", "id").values_list("anonymous_id", flat=True))


def lead_merges(*, lead: Lead) -> QuerySet[LeadMerge]:
    """The merges into the lead, newest first (its page shows them)."""
    return lead.merges.select_related("actor").order_by("-at", "-id")


# --- Segment ingest's drop log --------------------------------------------------------------------------
def segment_drops(*, source: Source | None = None) -> QuerySet[SegmentDrop]:
    """The Segment messages ingest dropped, newest first, of one source or all."""
    drops = SegmentDrop.objects.select_related("source").order_by("-at", "-id")
    return drops.filter(source=source) if source is not None else drops


def sources_all() -> list[Source]:
    return list(Source.objects.order_by("name"))


def sources_with_segment_drops() -> list[Source]:
    return list(Source.objects.filter(Exists(SegmentDrop.objects.filter(source=OuterRef("pk")))).order_by("name"))
