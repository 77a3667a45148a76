"""Writes of the sales handoff: open a handoff when a lead becomes an SQL, claim,
release, accept, reject, reassign, and the sweeps that expire claims and flag SLA
breaches. Every change writes a HandoffEvent; notifications go out after commit.

Locks are always taken in the same order — the rep (a claim's advisory lock, or
their user row off PostgreSQL), then the lead, then the handoff, and last the acting
rep's own "new SQL" notification, marked read — so concurrent claims, decisions and
rescoring cannot deadlock.
"""

import logging
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from functools import cache
from typing import Any, TypeVar

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, models, transaction
from django.db.models import F, Value
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils import timezone

from handoff import webhooks
from handoff.models import (
    DISQUALIFYING_REASONS,
    OPEN_STATUSES,
    ChecklistItem,
    Handoff,
    HandoffAction,
    HandoffEvent,
    HandoffStatus,
    Notification,
    NotificationKind,
    RejectReason,
    overdue_q,
)
from handoff.notifications import NotificationEvent, notification_mark_read_by_key, notify, recipients_of
from handoff.roles import can_configure_checklist, can_reassign_handoffs, can_work_handoffs, is_sales_manager
from handoff.rollups import (
    HandoffFacts,
    claim_duration_params,
    claim_duration_sql,
    handoffs_facts,
    handoffs_record,
    handoffs_recorded,
)
from handoff.selectors import sales_queue_order
from leadflow.db import SqlNames, insert_ignore_conflicts_returning
from leadflow.leads.lifecycle import Transition, transitions_apply
from leadflow.leads.models import Account, Lead, Stage, StageChange
from leadflow.leads.people import person_name
from leadflow.leads.roles import MARKETING, SALES
from scoring.accounts import QualifiedAccount
from scoring.models import ScoringModel
from scoring.selectors import LEAD_ATTRIBUTE_FIELDS

logger = logging.getLogger(__name__)
ModelT = TypeVar("ModelT", bound=models.Model)

# Above this many new SQLs in one batch (a full rescore), reps get one digest, not one each.
NEW_SQL_DIGEST_THRESHOLD = 10
SWEEP_LIMIT = 1000


class HandoffError(Exception):
    """A request the handoff rules forbid; the message says what to do instead."""

    code = "handoff_conflict"


class HandoffStateError(HandoffError):
    code = "wrong_state"


class ClaimLimitReached(HandoffError):
    code = "claim_limit"


class ClaimTaken(HandoffStateError):
    """Someone else claimed the handoff first: the rep lost the race for it."""

    code = "already_claimed"


def _username(user: Any) -> str:
    """Who, as the data says it (audit details, webhook payloads): the username."""
    return str(user.get_username()) if user is not None else "nobody"


def _name(user: Any) -> str:
    """Who, as people read it (messages, notifications, a stage change's reason)."""
    return person_name(user) or "nobody"


def handoff_link(handoff_id: Any) -> str:
    """The handoff's page (what a person opens from a notification), by public id."""
    return reverse("handoff-detail", kwargs={"handoff_id": handoff_id})


def handoff_api_link(handoff_id: Any) -> str:
    """The handoff in the API (for webhook consumers), by public id."""
    return reverse("api-handoff-detail", kwargs={"handoff_id": handoff_id})


# The occasion of a handoff's "new SQL" notification (see new_sql_event_key).
_NEW_SQL = "opened"


def handoff_notification_key(handoff_id: Any, occasion: str) -> str:
    """The key of a notification about one handoff (by public id): ``handoff:<id>:<occasion>``."""
    return f"handoff:{handoff_id}:{occasion}"


def new_sql_event_key(handoff_id: Any) -> str:
    """The key of a handoff's "new SQL" notification, by public id. The claim statement
    (_CLAIM_SQL) builds the same key in SQL."""
    return handoff_notification_key(handoff_id, _NEW_SQL)


def _handoff_notification(
    kind: str,
    *,
    handoff_id: Any,
    lead: Lead,
    occasion: str,
    title: str,
    body: str,
    recipient_ids: tuple[int, ...] = (),
    recipient_roles: tuple[str, ...] = (),
    **data: Any,
) -> NotificationEvent:
    """A notification about one handoff (by public id) and its lead: keyed by the
    handoff and the occasion, linking to the handoff's page and API URL, its data naming
    both and adding ``data``."""
    return NotificationEvent(
        kind=kind,
        key=handoff_notification_key(handoff_id, occasion),
        title=title,
        body=body,
        link=handoff_link(handoff_id),
        api_link=handoff_api_link(handoff_id),
        recipient_ids=recipient_ids,
        recipient_roles=recipient_roles,
        data={"handoff": str(handoff_id), "lead": str(lead.public_id), **data},
    )


def _claim_holder(handoff: Handoff) -> tuple[int, ...]:
    """The rep holding the handoff's claim, as recipients (nobody when unclaimed)."""
    return (handoff.claimed_by_id,) if handoff.claimed_by_id else ()


def _new_sql_seen(handoff: Handoff, user: Any, at: datetime) -> None:
    """``user`` acted on the handoff: their "new SQL" notification of it has done its job."""
    notification_mark_read_by_key(user=user, event_key=new_sql_event_key(handoff.public_id), at=at)


def _event(handoff: Handoff, action: str, actor: Any, at: datetime, **details: Any) -> HandoffEvent:
    return HandoffEvent.objects.create(handoff=handoff, action=action, actor=actor, at=at, details=details)


def _wrong_state(handoff: Handoff, wanted: str, user: Any = None) -> HandoffStateError:
    if handoff.status == HandoffStatus.CLAIMED and handoff.claimed_by_id != getattr(user, "pk", None):
        return HandoffStateError(
            f"Cannot {wanted}: {_name(handoff.claimed_by)} holds the claim on this handoff. Pick another one."
        )
    advice = {
        HandoffStatus.QUEUED: "claim it first.",
        HandoffStatus.CLAIMED: "accept, reject or release it.",
        HandoffStatus.ACCEPTED: "nothing more to do.",
        HandoffStatus.REJECTED: "the lead gets a new handoff if it qualifies again.",
        HandoffStatus.CLOSED: "it was closed when the lead left SQL by hand.",
    }[HandoffStatus(handoff.status)]
    return HandoffStateError(f"Cannot {wanted} this handoff: it is {handoff.status}; {advice}")


# --- Opening (handoff.receivers, in the transaction that moves leads into SQL) -----------------
def _attributes_now(leads: Sequence[Lead]) -> dict[int, dict[str, Any]]:
    """Each lead's scoring attributes as they are now, kept on its new handoff so that score
    quality scores its fit as of the handoff (``handoff.quality``): from the loaded leads,
    and one query for those loaded without them (the scoring path loads them)."""
    wanted = set(LEAD_ATTRIBUTE_FIELDS)
    missing = sorted({lead.pk for lead in leads if lead.get_deferred_fields() & wanted})
    fresh = (
        {row["id"]: row for row in Lead.objects.filter(pk__in=missing).values("id", *LEAD_ATTRIBUTE_FIELDS)}
        if missing
        else {}
    )
    return {
        lead.pk: {name: fresh[lead.pk][name] if lead.pk in fresh else getattr(lead, name) for name in wanted}
        for lead in leads
    }


def handoffs_open_for_changes(*, changes: Sequence[StageChange], at: datetime) -> list[int]:
    """Open a queued handoff for each lead that entered SQL (``changes``, their leads
    set), due after the SLA, recording the models that qualified it and sorting by the
    first one's score (a change by hand has neither: priority 0). A lead that already
    has an open handoff keeps it (the partial unique index refuses a second one).
    Returns the new handoffs' ids."""
    if not changes:
        return []
    due_at = at + timedelta(hours=settings.HANDOFF_SLA_HOURS)
    models = dict(ScoringModel.objects.values_list("slug", "id"))
    attributes = _attributes_now([change.lead for change in changes])
    rows: list[tuple[Any, ...]] = [
        (
            uuid.uuid4(),
            change.lead.pk,
            HandoffStatus.QUEUED,
            change.score or Decimal("0"),
            models.get(change.qualified_by[0]) if change.qualified_by else None,
            change.qualified_by,
            at,
            due_at,
            "",
            "",
            [],
            attributes[change.lead.pk],
        )
        for change in changes
    ]
    inserted = insert_ignore_conflicts_returning(
        Handoff,
        [
            "public_id",
            "lead",
            "status",
            "priority",
            "model",
            "qualified_by",
            "created_at",
            "due_at",
            "reject_reason",
            "note",
            "checklist",
            "lead_attributes",
        ],
        rows,
        returning=["id", "public_id", "lead"],
    )
    leads = [change.lead for change in changes]
    scores = {change.lead.pk: change for change in changes}
    if len(inserted) < len(rows):
        logger.warning("%s leads entered SQL with a handoff already open", len(rows) - len(inserted))
    handoffs_record([], handoffs_facts(handoff_id for handoff_id, _public_id, _lead_id in inserted).values())
    HandoffEvent.objects.bulk_create(
        [
            HandoffEvent(handoff_id=handoff_id, action=HandoffAction.OPENED, at=at, details={"due_at": due_at})
            for handoff_id, _public_id, _lead_id in inserted
        ],
        batch_size=1000,
    )
    by_id = {lead.pk: lead for lead in leads}
    opened = [(public_id, by_id[lead_id], scores[lead_id]) for _id, public_id, lead_id in inserted]
    notify(_new_sql_notifications(opened, due_at))
    return [handoff_id for handoff_id, _public_id, _lead_id in inserted]


def _new_sql_notifications(opened: list[tuple[Any, Lead, StageChange]], due_at: datetime) -> list[NotificationEvent]:
    if not opened:
        return []
    if len(opened) > NEW_SQL_DIGEST_THRESHOLD:
        return [
            NotificationEvent(
                kind=NotificationKind.HANDOFF_NEW,
                key=f"handoffs:{opened[0][0]}:opened:{len(opened)}",
                title=f"{len(opened)} new SQLs are waiting in the queue",
                body=f"Claim them before {due_at:%Y-%m-%d %H:%M} UTC (SLA).",
                link=reverse("sales-queue"),
                api_link=reverse("api-handoffs"),
                recipient_roles=(SALES,),
                data={"handoffs": [str(public_id) for public_id, _lead, _change in opened], "due_at": due_at},
            )
        ]
    return [
        _handoff_notification(
            NotificationKind.HANDOFF_NEW,
            handoff_id=public_id,
            lead=lead,
            occasion=_NEW_SQL,
            title=f"New SQL: {lead.display_name}" + (f" ({lead.company})" if lead.company else ""),
            body=f"{_qualified(change)}Claim it before {due_at:%Y-%m-%d %H:%M} UTC (SLA).",
            recipient_roles=(SALES,),
            score=change.score,
            qualified_by=change.qualified_by,
            due_at=due_at,
        )
        for public_id, lead, change in opened
    ]


def _qualified(change: StageChange) -> str:
    if change.score is None:
        return ""
    models = ", ".join(change.qualified_by)
    return f"Score {change.score}" + (f" ({models})" if models else "") + ". "


# --- Claims -----------------------------------------------------------------------------------
# A claim is the hot path of the queue (see bench/claims.py). On PostgreSQL it is one
# round trip: two statements in one query string, which PostgreSQL runs as a single
# transaction (or inside the caller's). The first takes a transaction-level advisory
# lock on the rep (no row is written, unlike FOR UPDATE on the user row): it
# serialises that rep's claims so two at once cannot both pass the limit (the second
# statement takes its snapshot after the lock, so it sees the rep's other claims).
# The second counts the rep's open claims (bounded by the limit), takes the handoff —
# the given one if still queued, or the head of the queue, skipping rows other reps
# are claiming right now — writes the audit event, adds a first claim's duration to the
# sales outcomes' rollups (handoff.rollups.claim_duration_sql) and marks the rep's "new
# SQL" notification of the handoff read (new_sql_event_key). psycopg2 sends the string as
# one simple query; a driver that cannot would fail loudly, not claim twice.
# Elsewhere (SQLite, which serialises writers anyway) the same steps run through the
# ORM in a transaction; a test proves the two paths agree. Table and column names come
# from the models (SqlNames), statuses and the action are parameters: psycopg2 binds
# them on the client, so the server still plans with the values the partial indexes
# (handoff_queue, handoff_open_claims) are defined by.
_CLAIM_SQL = """
SELECT pg_advisory_xact_lock(%(lock_space)s, %(user)s);
WITH open_claims AS (
    SELECT COUNT(*) AS n FROM (
        SELECT 1 FROM {handoff.table}
        WHERE {handoff.claimed_by} = %(user)s AND {handoff.status} = %(claimed)s LIMIT %(limit)s
    ) held
), target AS (
    {target}
), claimed AS (
    UPDATE {handoff.table} h
    SET {handoff.status} = %(claimed)s, {handoff.claimed_by} = %(user)s, {handoff.claimed_at} = %(now)s,
        {handoff.claim_expires_at} = %(expires)s,
        {handoff.first_claimed_at} = COALESCE(h.{handoff.first_claimed_at}, %(now)s)
    FROM target WHERE h.{handoff.id} = target.id AND h.{handoff.status} = %(queued)s
    RETURNING {columns}
), logged AS (
    INSERT INTO {event.table} ({event.handoff}, {event.action}, {event.actor}, {event.at}, {event.details})
    SELECT h.{handoff.id}, %(action)s, %(user)s, %(now)s, '{{}}' FROM claimed h
), rolled AS (
    {rolled}
), seen AS (
    UPDATE {notification.table} n SET {notification.read_at} = %(now)s
    FROM claimed h
    WHERE n.{notification.recipient} = %(user)s
        AND n.{notification.event_key} = %(key_head)s || h.{handoff.public_id}::text || %(key_tail)s
        AND n.{notification.read_at} IS NULL
)
SELECT open_claims.n, {columns_out}
FROM open_claims LEFT JOIN claimed h ON TRUE LEFT JOIN {lead.table} l ON l.{lead.id} = h.{handoff.lead}
    LEFT JOIN {model.table} m ON m.{model.id} = h.{handoff.model}
"""
# The advisory lock key is (CLAIM_LOCK_SPACE, user id); no other code takes advisory locks.
CLAIM_LOCK_SPACE = 0x48414E44  # "HAND"
_CLAIM_ONE_TARGET = "SELECT %(handoff)s::bigint AS id WHERE (SELECT n FROM open_claims) < %(limit)s"
_CLAIM_NEXT_TARGET = """SELECT {handoff.id} AS id FROM {handoff.table}
    WHERE {handoff.status} = %(queued)s AND (SELECT n FROM open_claims) < %(limit)s
    ORDER BY {overdue_first}{handoff.priority} DESC, {handoff.created_at}, {handoff.id}
    LIMIT 1 FOR UPDATE SKIP LOCKED"""
# selectors.sales_queue_order(overdue_first=True) in SQL: the overdue on top, the longest overdue
# first. A queued handoff is open, so overdue is past its due time (models.overdue_q).
_OVERDUE_FIRST = """{handoff.due_at} <= %(now)s DESC,
    CASE WHEN {handoff.due_at} <= %(now)s THEN {handoff.due_at} END ASC NULLS LAST, """
# The claim builds the rep's "new SQL" notification key around the handoff's public id.
_NEW_SQL_KEY_HEAD, _, _NEW_SQL_KEY_TAIL = new_sql_event_key("{id}").partition("{id}")


def _columns(model: type[models.Model], alias: str) -> list[str]:
    return [f"{alias}.{connection.ops.quote_name(str(field.column))}" for field in model._meta.concrete_fields]


@cache
def _claim_statement(*, next_in_queue: bool, overdue_first: bool = False) -> str:
    # The claimed row, its lead and its scoring model (the answer shows the model's slug)
    # come back whole, in field order, to build the instances.
    names = {
        "handoff": SqlNames(Handoff),
        "event": SqlNames(HandoffEvent),
        "notification": SqlNames(Notification),
        "lead": SqlNames(Lead),
        "model": SqlNames(ScoringModel),
    }
    overdue_first_sql = _OVERDUE_FIRST.format(**names) if overdue_first else ""
    target = (_CLAIM_NEXT_TARGET if next_in_queue else _CLAIM_ONE_TARGET).format(
        **names, overdue_first=overdue_first_sql
    )
    return _CLAIM_SQL.format(
        **names,
        target=target,
        rolled=claim_duration_sql(claimed="claimed", lead=names["lead"].table),
        columns=", ".join(_columns(Handoff, "h")),
        columns_out=", ".join([*_columns(Handoff, "h"), *_columns(Lead, "l"), *_columns(ScoringModel, "m")]),
    )


def _instance(model: type[ModelT], values: Sequence[Any]) -> ModelT:
    """A model instance from a row of its concrete fields, converted as the ORM would."""
    fields = model._meta.concrete_fields
    converted = [
        field.from_db_value(value, None, connection) if value is not None and hasattr(field, "from_db_value") else value
        for field, value in zip(fields, values, strict=True)
    ]
    return model.from_db(connection.alias, [field.attname for field in fields], converted)


def _claim_sql(
    *, user: Any, handoff_id: int | None, now: datetime, overdue_first: bool = False
) -> tuple[int, Handoff | None]:
    params = {
        "lock_space": CLAIM_LOCK_SPACE,
        "user": user.pk,
        "limit": settings.HANDOFF_MAX_OPEN_CLAIMS,
        "now": now,
        "expires": now + timedelta(hours=settings.HANDOFF_CLAIM_TTL_HOURS),
        "handoff": handoff_id,
        "queued": HandoffStatus.QUEUED,
        "claimed": HandoffStatus.CLAIMED,
        "action": HandoffAction.CLAIMED,
        "key_head": _NEW_SQL_KEY_HEAD,
        "key_tail": _NEW_SQL_KEY_TAIL,
        **claim_duration_params(),
    }
    with connection.cursor() as cursor:
        cursor.execute(_claim_statement(next_in_queue=handoff_id is None, overdue_first=overdue_first), params)
        open_claims, *row = cursor.fetchone()
    if row[0] is None:
        return open_claims, None
    width, lead_width = len(Handoff._meta.concrete_fields), len(Lead._meta.concrete_fields)
    handoff = _instance(Handoff, row[:width])
    handoff.lead = _instance(Lead, row[width : width + lead_width])
    handoff.model = _instance(ScoringModel, row[width + lead_width :]) if handoff.model_id else None
    handoff.claimed_by = user
    return open_claims, handoff


def _claim_orm(
    *, user: Any, handoff_id: int | None, now: datetime, overdue_first: bool = False
) -> tuple[int, Handoff | None]:
    list(get_user_model().objects.select_for_update().filter(pk=user.pk).values_list("pk", flat=True))
    limit = settings.HANDOFF_MAX_OPEN_CLAIMS
    open_claims = Handoff.objects.filter(claimed_by=user, status=HandoffStatus.CLAIMED)[:limit].count()
    if open_claims >= limit:
        return open_claims, None
    if handoff_id is None:
        queue = Handoff.objects.select_for_update(skip_locked=True).filter(status=HandoffStatus.QUEUED)
        order = sales_queue_order(overdue_first=overdue_first)
        handoff_id = queue.order_by(*order).values_list("pk", flat=True).first()
        if handoff_id is None:
            return open_claims, None
    with handoffs_recorded([handoff_id]):
        claimed = Handoff.objects.filter(pk=handoff_id, status=HandoffStatus.QUEUED).update(**_claim_changes(user, now))
    if not claimed:
        return open_claims, None
    HandoffEvent.objects.create(handoff_id=handoff_id, action=HandoffAction.CLAIMED, actor=user, at=now)
    handoff = _fresh(handoff_id)
    _new_sql_seen(handoff, user, now)
    return open_claims, handoff


def _claim_changes(user: Any, now: datetime) -> dict[str, Any]:
    return {
        "status": HandoffStatus.CLAIMED,
        "claimed_by": user,
        "claimed_at": now,
        "claim_expires_at": now + timedelta(hours=settings.HANDOFF_CLAIM_TTL_HOURS),
        "first_claimed_at": Coalesce(F("first_claimed_at"), Value(now)),
    }


def _claim(*, user: Any, handoff_id: int | None, overdue_first: bool = False) -> Handoff | None:
    """Claim for ``user`` (a given handoff, or the head of the queue, in the queue's order):
    the claimed handoff, or None when it was not queued (or the queue is empty). Raises at
    the claim limit."""
    if not can_work_handoffs(user):
        raise PermissionDenied("Only sales reps claim handoffs.")
    now = timezone.now()
    # The claim and its webhook event (``handoff.claimed``) commit together.
    with transaction.atomic():
        if connection.vendor == "postgresql":
            open_claims, handoff = _claim_sql(user=user, handoff_id=handoff_id, now=now, overdue_first=overdue_first)
        else:
            open_claims, handoff = _claim_orm(user=user, handoff_id=handoff_id, now=now, overdue_first=overdue_first)
        if handoff is not None:
            webhooks.webhook_events_emit(
                [webhooks.handoff_event("handoff.claimed", handoff=handoff, lead=handoff.lead, actor=user, at=now)]
            )
    limit = settings.HANDOFF_MAX_OPEN_CLAIMS
    if handoff is None and open_claims >= limit:
        raise ClaimLimitReached(
            f"You already hold {limit} open claims, the limit: accept, reject or release one before claiming more."
        )
    return handoff


def _fresh(handoff_id: int) -> Handoff:
    return Handoff.objects.select_related("lead", "claimed_by", "model").get(pk=handoff_id)


def handoff_claim(*, handoff: Handoff, user: Any) -> Handoff:
    """Claim a queued handoff. Atomic: of many reps claiming it at once, exactly one
    wins (a conditional UPDATE); the others get ClaimTaken, whether they lost by a
    millisecond or came an hour late."""
    claimed = _claim(user=user, handoff_id=handoff.pk)
    if claimed is None:
        current = _fresh(handoff.pk)
        if current.status == HandoffStatus.CLAIMED and current.claimed_by_id != user.pk:
            raise ClaimTaken(
                "Another rep claimed this handoff first: claim another one from the queue, "
                "or use claim-next to take the next in line."
            )
        raise _wrong_state(current, "claim", user)
    return claimed


def handoff_claim_next(*, user: Any, overdue_first: bool = False) -> Handoff | None:
    """Claim the head of the queue: highest priority, then oldest; or, ``overdue_first`` (the
    order a rep chose for their queue page), the longest overdue first. Rows another rep is
    claiming right now are skipped, not waited for. None when the queue is empty."""
    return _claim(user=user, handoff_id=None, overdue_first=overdue_first)


def handoff_release(*, handoff: Handoff, user: Any) -> Handoff:
    """Put a claimed handoff back in the queue: its claimer, or a sales manager."""
    with transaction.atomic():
        locked = Handoff.objects.select_for_update().get(pk=handoff.pk)
        if locked.status != HandoffStatus.CLAIMED or (locked.claimed_by_id != user.pk and not is_sales_manager(user)):
            raise _wrong_state(locked, "release", user)
        now = timezone.now()
        previous = locked.claimed_by
        locked.status, locked.claimed_by, locked.claimed_at, locked.claim_expires_at = (
            HandoffStatus.QUEUED,
            None,
            None,
            None,
        )
        locked.save(update_fields=["status", "claimed_by", "claimed_at", "claim_expires_at"])
        _event(locked, HandoffAction.RELEASED, user, now, claimed_by=_username(previous))
        _new_sql_seen(locked, user, now)
    return _fresh(handoff.pk)


def _lock_for_decision(handoff: Handoff, user: Any, wanted: str) -> tuple[Lead, Handoff]:
    lead = Lead.objects.select_for_update().get(pk=handoff.lead_id)
    locked = Handoff.objects.select_for_update().get(pk=handoff.pk)
    if locked.status != HandoffStatus.CLAIMED or locked.claimed_by_id != user.pk:
        raise _wrong_state(locked, wanted, user)
    if lead.stage != Stage.SQL:  # leaving SQL closes the handoff; this guards the invariant
        raise HandoffStateError(f"Cannot {wanted}: the lead is {lead.stage}, no longer an SQL.")
    return lead, locked


def _decide(locked: Handoff, lead: Lead, status: str, at: datetime, **fields: Any) -> None:
    """Record a rep's decision on the (locked) handoff, and what it changes in the sales
    outcomes' rollups. Called before the decision's stage transition is applied: the
    lifecycle's receiver (handoff.receivers) closes a handoff still open when its lead
    leaves SQL, and must not close this one too."""
    before = HandoffFacts.of(locked, lead)
    locked.status, locked.decided_at = status, at
    for name, value in fields.items():
        setattr(locked, name, value)
    locked.save(update_fields=["status", "decided_at", *fields])
    handoffs_record([before], [HandoffFacts.of(locked, lead)])


def handoff_accept(*, handoff: Handoff, user: Any, confirmed: Iterable[str] = (), note: str = "") -> Handoff:
    """The rep takes the lead: lead → accepted, owned by the rep. ``confirmed``: the keys
    of the accept checklist's items the rep confirmed (none is allowed: a rep may accept
    on a hunch); the handoff keeps the whole checklist as answered, and ``note``."""
    try:
        asked = handoff_accept_validate(confirmed=confirmed, note=note)
    except ValidationError as error:
        raise HandoffError(" ".join(error.messages)) from error
    chosen = set(confirmed)
    chosen_keys = sorted(chosen)
    checklist = [{"key": item.key, "label": item.label, "confirmed": item.key in chosen} for item in asked]
    note = note.strip()
    with transaction.atomic():
        lead, locked = _lock_for_decision(handoff, user, "accept")
        now = timezone.now()
        # Decided before the lead leaves SQL: the receiver of the stage change then finds
        # no open handoff to close (see _decide).
        _decide(locked, lead, HandoffStatus.ACCEPTED, now, checklist=checklist, note=note)
        _event(
            locked,
            HandoffAction.ACCEPTED,
            user,
            now,
            confirmed=[item["key"] for item in checklist if item["confirmed"]],
            unconfirmed=[item["key"] for item in checklist if not item["confirmed"]],
            note=note,
        )
        transitions_apply([Transition(lead, Stage.SQL, Stage.ACCEPTED, f"Accepted by {_name(user)}.", user)], at=now)
        lead.owner = user
        lead.save(update_fields=["owner", "updated_at"])
        webhooks.webhook_events_emit(
            [
                webhooks.handoff_event(
                    "handoff.accepted", handoff=locked, lead=lead, actor=user, at=now, confirmed=chosen_keys, note=note
                )
            ]
        )
        _new_sql_seen(locked, user, now)
    return _fresh(handoff.pk)


# A decision's note, on the page and in the API: long enough for what a rep learned.
NOTE_MAX_LENGTH = 2000


def handoff_accept_validate(*, confirmed: Iterable[str], note: str) -> list[ChecklistItem]:
    """The rules of an acceptance's confirmations, defined once: each key must name an
    active item of the accept checklist; the note is optional. Returns the active items
    (what the rep was asked). Raises a ValidationError keyed by field, as
    ``handoff_reject_validate`` does, for the API and the page's form."""
    asked = list(ChecklistItem.objects.filter(active=True).order_by("position", "id"))
    keys = [item.key for item in asked]
    unknown = sorted({str(key) for key in confirmed} - set(keys))
    if unknown:
        offered = ", ".join(keys) if keys else "none: the checklist has no active item"
        raise ValidationError(
            {
                "confirmed": f"Unknown checklist item{'s' if len(unknown) > 1 else ''} "
                f"{', '.join(repr(key) for key in unknown)}: confirm among {offered}."
            }
        )
    if len(note) > NOTE_MAX_LENGTH:
        raise ValidationError({"note": f"Keep the note under {NOTE_MAX_LENGTH} characters ({len(note)} now)."})
    return asked


def handoff_reject_validate(*, reason: str, note: str) -> None:
    """The rules of a rejection's reason and note, defined once: handoff_reject enforces
    them, and the API and the page's form check them first so that the error shows on
    its field. Raises a ValidationError keyed by field (DRF and Django forms both
    attach it to that field)."""
    if reason not in RejectReason.values:
        raise ValidationError({"reason": f"Unknown reason {reason!r}: choose one of {', '.join(RejectReason.values)}."})
    if reason == RejectReason.OTHER and not note.strip():
        raise ValidationError(
            {"note": f"Say why in the note when the reason is “{RejectReason.OTHER.label}”: marketing reads it."}
        )


def handoff_reject(*, handoff: Handoff, user: Any, reason: str, note: str = "") -> Handoff:
    """The rep sends the lead back: recycled to nurturing, or disqualified when it is
    not a fit or a duplicate. Marketing is told why."""
    try:
        handoff_reject_validate(reason=reason, note=note)
    except ValidationError as error:
        raise HandoffError(" ".join(error.messages)) from error
    note = note.strip()
    with transaction.atomic():
        lead, locked = _lock_for_decision(handoff, user, "reject")
        now = timezone.now()
        to_stage = Stage.DISQUALIFIED if reason in DISQUALIFYING_REASONS else Stage.RECYCLED
        label = RejectReason(reason).label
        stage_reason = f"Rejected by sales: {label}." + (f" {note}" if note else "")
        _decide(locked, lead, HandoffStatus.REJECTED, now, reject_reason=reason, note=note)
        _event(locked, HandoffAction.REJECTED, user, now, reason=reason, note=note, lead_stage=to_stage)
        transitions_apply([Transition(lead, Stage.SQL, to_stage, stage_reason, user)], at=now)
        _new_sql_seen(locked, user, now)
        webhooks.webhook_events_emit(
            [
                webhooks.handoff_event(
                    "handoff.rejected",
                    handoff=locked,
                    lead=lead,
                    actor=user,
                    at=now,
                    reason=reason,
                    note=note,
                    lead_stage=to_stage,
                )
            ]
        )
        notify(
            [
                _handoff_notification(
                    NotificationKind.HANDOFF_REJECTED,
                    handoff_id=locked.public_id,
                    lead=lead,
                    occasion="rejected",
                    title=f"Sales rejected {lead.display_name}: {label}",
                    body=(f"{_name(user)} wrote: {note}\n" if note else "") + f"The lead is now {to_stage}.",
                    recipient_roles=(MARKETING,),
                    reason=reason,
                    note=note,
                    lead_stage=to_stage,
                    rep=_username(user),
                )
            ]
        )
    return _fresh(handoff.pk)


def handoff_reassign_target(*, username: str) -> Any:
    """The rep a handoff is reassigned to, by username: an active user who works the queue
    (``can_work_handoffs``), the rule ``handoff_reassign`` enforces. Used by the API and the
    managers' page, which attach the ValidationError to their username field."""
    user = get_user_model().objects.filter(username=username, is_active=True).first()
    if user is None or not can_work_handoffs(user):
        raise ValidationError(f"No active sales rep is called {username!r}: choose someone in the sales group.")
    return user


def handoff_reassign(*, handoff: Handoff, actor: Any, to_user: Any) -> Handoff:
    """A sales manager gives an open handoff to a rep (claimed for them, a fresh claim
    period; the rep's claim limit does not apply to a manager's decision)."""
    if not can_reassign_handoffs(actor):
        raise PermissionDenied("Only sales managers (staff) and scoring admins reassign handoffs.")
    if not to_user.is_active or not can_work_handoffs(to_user):
        raise HandoffError(f"{_name(to_user)} is not an active sales rep: choose someone in the sales group.")
    with transaction.atomic():
        locked = Handoff.objects.select_for_update().get(pk=handoff.pk)
        if not locked.is_open:
            raise _wrong_state(locked, "reassign")
        if locked.claimed_by_id == to_user.pk:
            raise HandoffError(f"{_name(to_user)} already holds this handoff.")
        now = timezone.now()
        previous = _username(locked.claimed_by) if locked.claimed_by_id else None
        with handoffs_recorded([locked.pk]):  # a first claim's time
            Handoff.objects.filter(pk=locked.pk).update(**_claim_changes(to_user, now))
        event = _event(locked, HandoffAction.REASSIGNED, actor, now, claimed_by=previous, to=_username(to_user))
        lead = locked.lead
        notify(
            [
                _handoff_notification(
                    NotificationKind.HANDOFF_ASSIGNED,
                    handoff_id=locked.public_id,
                    lead=lead,
                    occasion=f"assigned:{event.pk}",
                    title=f"{_name(actor)} assigned {lead.display_name} to you",
                    body=f"Accept or reject it before {locked.due_at:%Y-%m-%d %H:%M} UTC (SLA).",
                    recipient_ids=(to_user.pk,),
                    by=_username(actor),
                )
            ]
        )
        reassigned = _fresh(handoff.pk)
        webhooks.webhook_events_emit(
            [
                webhooks.handoff_event(
                    "handoff.claimed", handoff=reassigned, lead=lead, actor=to_user, at=now, by=_username(actor)
                )
            ]
        )
    return reassigned


def handoff_close_for_lead(*, lead: Lead, reason: str, actor: Any) -> None:
    """Close the lead's open handoff when a person moves it out of SQL by hand (called by
    handoff.receivers in the stage change's transaction; the lead is locked)."""
    locked = Handoff.objects.select_for_update().filter(lead=lead, status__in=OPEN_STATUSES).first()
    if locked is None:
        return
    now = timezone.now()
    before = HandoffFacts.of(locked, lead)
    locked.status, locked.decided_at, locked.note = HandoffStatus.CLOSED, now, reason
    locked.save(update_fields=["status", "decided_at", "note"])
    handoffs_record([before], [HandoffFacts.of(locked, lead)])
    _event(locked, HandoffAction.CLOSED, actor, now, reason=reason)


# --- Sweeps (beat tasks) ------------------------------------------------------------------------
def handoffs_expire_claims(*, limit: int = SWEEP_LIMIT) -> int:
    """Claims past ``claim_expires_at`` go back to the queue; their reps are told."""
    with transaction.atomic():
        now = timezone.now()
        expired = list(
            Handoff.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("lead", "claimed_by")
            .filter(status=HandoffStatus.CLAIMED, claim_expires_at__lte=now)
            .order_by("claim_expires_at", "id")[:limit]
        )
        if not expired:
            return 0
        Handoff.objects.filter(pk__in=[h.pk for h in expired], status=HandoffStatus.CLAIMED).update(
            status=HandoffStatus.QUEUED, claimed_by=None, claimed_at=None, claim_expires_at=None
        )
        events = HandoffEvent.objects.bulk_create(
            [
                HandoffEvent(
                    handoff=h,
                    action=HandoffAction.EXPIRED,
                    at=now,
                    details={"claimed_by": _username(h.claimed_by), "claimed_at": h.claimed_at},
                )
                for h in expired
            ]
        )
        notify(
            [
                _handoff_notification(
                    NotificationKind.CLAIM_EXPIRED,
                    handoff_id=h.public_id,
                    lead=h.lead,
                    occasion=f"expired:{event.pk}",
                    title=f"Your claim on {h.lead.display_name} expired",
                    body=(
                        f"You held it {settings.HANDOFF_CLAIM_TTL_HOURS} hours without accepting or rejecting it; "
                        "it is back in the queue. Claim it again if you are working on it."
                    ),
                    recipient_ids=_claim_holder(h),
                    rep=_username(h.claimed_by),
                )
                for h, event in zip(expired, events, strict=True)
            ]
        )
    return len(expired)


def handoffs_flag_overdue(*, limit: int = SWEEP_LIMIT) -> int:
    """Open handoffs past ``due_at`` are flagged overdue, once, and told once: to the rep
    holding the claim, or to all of sales when the handoff is unclaimed; a person told of
    several in one sweep gets one digest (``_breach_notifications``)."""
    with transaction.atomic():
        now = timezone.now()
        overdue = list(
            Handoff.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("lead", "claimed_by")
            .filter(overdue_q(now), overdue_at__isnull=True)
            .order_by("due_at", "id")[:limit]
        )
        if not overdue:
            return 0
        Handoff.objects.filter(pk__in=[h.pk for h in overdue], overdue_at__isnull=True).update(overdue_at=now)
        before = [HandoffFacts.of(h, h.lead) for h in overdue]  # locked: nobody else flagged them
        handoffs_record(before, [replace(facts, overdue_at=now) for facts in before])
        HandoffEvent.objects.bulk_create(
            [
                HandoffEvent(
                    handoff=h,
                    action=HandoffAction.OVERDUE,
                    at=now,
                    details={"due_at": h.due_at, "status": h.status, "claimed_by": _username(h.claimed_by)},
                )
                for h in overdue
            ]
        )
        notify(_breach_notifications(overdue, now))
        webhooks.webhook_events_emit(
            [
                webhooks.handoff_event(
                    "handoff.sla_breached", handoff=h, lead=h.lead, actor=h.claimed_by, at=now, overdue_since=h.due_at
                )
                for h in overdue
            ]
        )
    return len(overdue)


# How many leads a digest of SLA breaches names before "and N more".
BREACH_DIGEST_NAMES = 3


def _breach_notifications(overdue: Sequence[Handoff], at: datetime) -> list[NotificationEvent]:
    """What one sweep tells of the breaches it found (``overdue``, by due time).

    The webhook gets an event per handoff (``handoff:<id>:breach``), as ever. People get
    one notification per sweep, however many handoffs broke their SLA: each hears of
    those they can act on, their own claims (a rep alone can act on their claim; to the
    other reps its page is 404) and every unclaimed one (to all of sales). One breach is
    told by itself, linking to its handoff; several are one digest, "9 handoffs overdue",
    linking to the queue with the overdue handoffs first."""
    events = [replace(_breach_notification(h), to_people=False) for h in overdue]
    unclaimed = [h for h in overdue if not h.claimed_by_id]
    told: dict[int, list[Handoff]] = {}
    if unclaimed:
        told = {rep_id: list(unclaimed) for rep_id in recipients_of(roles=(SALES,))}
    for handoff in overdue:
        if handoff.claimed_by_id:
            told.setdefault(handoff.claimed_by_id, []).append(handoff)
    # Reps told of the same handoffs (all of sales, of the unclaimed ones) share one event.
    audiences: dict[tuple[int, ...], list[int]] = {}
    for recipient, handoffs in told.items():
        handoffs.sort(key=lambda h: (h.due_at, h.pk))
        audiences.setdefault(tuple(h.pk for h in handoffs), []).append(recipient)
    by_id = {h.pk: h for h in overdue}
    for handoff_ids, recipients in audiences.items():
        handoffs = [by_id[pk] for pk in handoff_ids]
        if len(handoffs) == 1:
            single = _breach_notification(handoffs[0])
            events.append(replace(single, recipient_ids=tuple(recipients), recipient_roles=(), to_webhook=False))
        else:
            events.append(_breach_digest(handoffs, tuple(recipients), at))
    return events


def _breach_notification(h: Handoff) -> NotificationEvent:
    """The breach of one handoff: to the rep holding its claim, or to all of sales."""
    return _handoff_notification(
        NotificationKind.SLA_BREACH,
        handoff_id=h.public_id,
        lead=h.lead,
        occasion="breach",
        title=f"SLA breached: {h.lead.display_name}",
        body=(
            f"Due {h.due_at:%Y-%m-%d %H:%M} UTC and still {h.status}"
            + (f" (claimed by {_name(h.claimed_by)})." if h.claimed_by_id else ", unclaimed.")
            + " Decide on it now."
        ),
        recipient_ids=_claim_holder(h),
        recipient_roles=() if h.claimed_by_id else (SALES,),
        status=h.status,
        due_at=h.due_at,
        claimed_by=_username(h.claimed_by) if h.claimed_by_id else None,
    )


def _breach_digest(handoffs: Sequence[Handoff], recipient_ids: tuple[int, ...], at: datetime) -> NotificationEvent:
    """Several breaches of one sweep, told to ``recipient_ids`` in one notification (keyed
    by the sweep: one per person per sweep)."""
    names = ", ".join(h.lead.display_name for h in handoffs[:BREACH_DIGEST_NAMES])
    if len(handoffs) > BREACH_DIGEST_NAMES:
        names += f" and {len(handoffs) - BREACH_DIGEST_NAMES} more"
    claimed = sum(1 for h in handoffs if h.claimed_by_id)
    whose = (
        f" {claimed} of them {'is your claim' if claimed == 1 else 'are your claims'}, the others unclaimed."
        if claimed and claimed < len(handoffs)
        else (" All of them are your claims." if claimed else " Nobody has claimed them.")
    )
    return NotificationEvent(
        kind=NotificationKind.SLA_BREACH,
        key=f"handoffs:breach:{at.isoformat()}",
        title=f"{len(handoffs)} handoffs overdue",
        body=f"Past their SLA and still open: {names}.{whose} Work the queue overdue first and decide on them now.",
        link=reverse("sales-queue") + "?sort=overdue",
        api_link=reverse("api-handoffs") + "?ordering=due_at",
        recipient_ids=recipient_ids,
        data={"handoffs": [str(h.public_id) for h in handoffs]},
        to_webhook=False,
    )


# --- Marketing-qualified accounts ---------------------------------------------------------------
# Above this many accounts qualifying at once (a full rescore), marketing gets one digest.
MQA_DIGEST_THRESHOLD = NEW_SQL_DIGEST_THRESHOLD


def accounts_qualified_notify(*, qualified: Sequence[QualifiedAccount]) -> None:
    """Tell marketing which accounts became marketing-qualified (scoring's
    ``accounts_qualified``): one notification per account and model, keyed by both so
    a repeated roll-up never notifies twice, or one digest above ``MQA_DIGEST_THRESHOLD``."""
    if not qualified:
        return
    accounts = Account.objects.in_bulk({item.account_id for item in qualified})
    models_by_id = ScoringModel.objects.in_bulk({item.model_id for item in qualified})
    if len(qualified) > MQA_DIGEST_THRESHOLD:
        first = qualified[0]
        notify(
            [
                NotificationEvent(
                    kind=NotificationKind.ACCOUNT_QUALIFIED,
                    key=f"accounts:{first.model_id}:{first.account_id}:qualified:{len(qualified)}",
                    title=f"{len(qualified)} accounts became marketing-qualified",
                    body="Their roll-up scores reached the MQA threshold: see the accounts, highest first.",
                    link=reverse("account-list"),
                    api_link=reverse("api-accounts"),
                    recipient_roles=(MARKETING,),
                    data={"accounts": [item.account_id for item in qualified]},
                )
            ]
        )
        return
    events = []
    for item in qualified:
        account, model = accounts[item.account_id], models_by_id[item.model_id]
        events.append(
            NotificationEvent(
                kind=NotificationKind.ACCOUNT_QUALIFIED,
                key=f"account:{item.account_id}:mqa:{model.slug}",
                title=f"Account qualified: {account.name}",
                body=f"Its roll-up score {item.score} under {model.name} reached the MQA threshold {item.threshold}.",
                link=reverse("account-detail", args=[item.account_id]),
                api_link=reverse("api-account", args=[item.account_id]),
                recipient_roles=(MARKETING,),
                data={"account": item.account_id, "model": model.slug, "score": item.score},
            )
        )
    notify(events)


# --- The accept checklist (what sales confirms) ---------------------------------------------------
CHECKLIST_KEY_HELP = "lower-case letters, digits, _ or -, starting with a letter, at most 40 characters"


def checklist_item_validate(
    *, key: str | None = None, label: str | None = None, position: int | None = None, item: ChecklistItem | None = None
) -> None:
    """The rules of an accept checklist item, defined once (the API and the page's forms
    check them first, so that each error shows on its field): a new item's key is a
    unique slug; the label is not blank; the position is not negative. Raises one
    ValidationError with every field's error."""
    errors: dict[str, str] = {}
    if key is not None:
        if item is not None and key != item.key:
            errors["key"] = (
                f"The key {item.key!r} cannot change: accepted handoffs refer to it. "
                "Change the label, or deactivate this item and add another."
            )
        elif item is None:
            if not re.fullmatch(r"[a-z][a-z0-9_-]{0,39}", key):
                errors["key"] = f"Use {CHECKLIST_KEY_HELP} (like “budget”)."
            elif ChecklistItem.objects.filter(key=key).exists():
                errors["key"] = f"An item with the key {key!r} exists already: edit it, or choose another key."
    if label is not None:
        if not label.strip():
            errors["label"] = "Give the item a label: reps read it when they accept a lead."
        elif len(label.strip()) > ChecklistItem._meta.get_field("label").max_length:  # type: ignore[operator]
            errors["label"] = "Keep the label under 80 characters."
    if position is not None and position < 0:
        errors["position"] = "The position is 0 or more: smaller comes first."
    if errors:
        raise ValidationError(errors)


def _checklist_editor(actor: Any) -> None:
    if not can_configure_checklist(actor):
        raise PermissionDenied("Only scoring admins and staff change the accept checklist.")


def checklist_item_create(
    *, actor: Any, key: str, label: str, position: int | None = None, active: bool = True
) -> ChecklistItem:
    """A new item of the accept checklist, last unless ``position`` says otherwise."""
    _checklist_editor(actor)
    checklist_item_validate(key=key, label=label, position=position)
    if position is None:
        last = ChecklistItem.objects.order_by("-position").values_list("position", flat=True).first()
        position = 10 if last is None else last + 10
    return ChecklistItem.objects.create(key=key, label=label.strip(), position=position, active=active)


def checklist_item_update(
    *,
    actor: Any,
    item: ChecklistItem,
    label: str | None = None,
    position: int | None = None,
    active: bool | None = None,
) -> ChecklistItem:
    """Change an item's label, position or whether it is asked. Handoffs accepted
    before keep the checklist as it was when they were accepted."""
    _checklist_editor(actor)
    checklist_item_validate(label=label, position=position, item=item)
    changes = {
        name: value
        for name, value in (
            ("label", label.strip() if label is not None else None),
            ("position", position),
            ("active", active),
        )
        if value is not None
    }
    for name, value in changes.items():
        setattr(item, name, value)
    if changes:
        item.save(update_fields=[*changes, "updated_at"])
    return item
