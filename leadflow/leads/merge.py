"""Merging two leads that turn out to be one person: a visitor whose anonymous id an
``identify`` links to a known person (ingest merges it on its own), or two leads a
marketer finds to be the same person (the lead page's button, the merge API).

The merged lead's records move to the survivor, set-based (one UPDATE per table): its
events (the unique (source, event_id) is per source, not per lead, so two leads never
hold the same event and nothing collides), its stage history, outcomes, anonymous ids and
earlier merges' audit records; the apps above the core move theirs through a
``MergeHolder`` they register when ready (handoff: its handoffs, closing the merged
lead's open one when the survivor has one too, since a lead has at most one open
handoff; scoring: the merged lead's scores go, the survivor is rescored). The survivor
keeps its identity and profile and gains what it lacks (an e-mail, an external_id, a
blank profile field, traits it does not have); its stage stays (rescoring may promote
it). The merged lead is then deleted, out of the dashboard's rollups, and a
``LeadMerge`` records who merged what, why, and how many records moved.
"""

from typing import Any, Protocol

from django.db import transaction
from django.db.models import Model
from django.utils import timezone

from leadflow.leads import rollups
from leadflow.leads.accounts import account_ids, accounts_left_after_commit
from leadflow.leads.models import (
    LEAD_PROFILE_FIELDS,
    LEAD_UTM_FIELDS,
    AnonymousId,
    Event,
    Lead,
    LeadMerge,
    Outcome,
    StageChange,
)
from leadflow.leads.scoring_requests import request_scoring


class MergeError(Exception):
    """A merge refused; the message says why and what to do instead."""


class MergeHolder(Protocol):
    """What an app moves when two leads merge. ``holds``: the models whose rows it moves
    (every model referring to a lead must be the core's or some holder's: a test checks)."""

    holds: tuple[type[Model], ...]

    def merge(self, *, survivor: Lead, merged: Lead, actor: Any, reason: str) -> dict[str, int]:
        """Move (or settle) the merged lead's records to the survivor, in the caller's
        transaction (both leads locked); returns how many of each kind."""
        ...


_holders: list[MergeHolder] = []


def holder_register(holder: MergeHolder) -> None:
    """Called by each app's ``ready``; registering the same kind of holder twice replaces it."""
    _holders[:] = [existing for existing in _holders if type(existing) is not type(holder)]
    _holders.append(holder)


# The core's own tables that refer to a lead, moved by one UPDATE each.
CORE_MOVED: tuple[tuple[type[Model], str], ...] = (
    (Event, "events"),
    (StageChange, "stage_changes"),
    (Outcome, "outcomes"),
    (AnonymousId, "anonymous_ids"),
)


def lead_merge(*, survivor: Lead, merged: Lead, actor: Any, reason: str = "") -> LeadMerge:
    """Merge ``merged`` into ``survivor`` (see the module's docstring), in one
    transaction; the survivor is flagged and scored after commit. Raises MergeError when
    the two are one lead or either was erased."""
    with transaction.atomic():
        record = leads_merge_rows(survivor_id=survivor.pk, merged_id=merged.pk, actor=actor, reason=reason)
    return record


def leads_merge_rows(*, survivor_id: int, merged_id: int, actor: Any, reason: str) -> LeadMerge:
    """The merge itself, inside the caller's transaction (ingest merges visitors in its
    own): locks both leads in id order, moves every record, deletes the merged lead."""
    if survivor_id == merged_id:
        raise MergeError("A lead cannot be merged into itself: choose another lead.")
    # In id order, as ingest locks leads: two merges (or a merge and a batch) never wait on each other in a cycle.
    both = Lead.objects.select_for_update().filter(pk__in=[survivor_id, merged_id]).order_by("pk")
    locked = {lead.pk: lead for lead in both}
    survivor, merged = locked.get(survivor_id), locked.get(merged_id)
    if survivor is None or merged is None:
        raise MergeError("One of the two leads no longer exists (merged or deleted meanwhile): reload and retry.")
    if survivor.erased_at or merged.erased_at:
        raise MergeError("An erased person's lead cannot be merged.")

    identities = {
        "email": merged.email,
        "external_id": merged.external_id,
        "anonymous_ids": sorted(AnonymousId.objects.filter(lead=merged).values_list("anonymous_id", flat=True)),
        "name": merged.name,
    }
    counts: dict[str, int] = {}
    for model, kind in CORE_MOVED:
        counts[kind] = model._default_manager.filter(lead_id=merged.pk).update(lead_id=survivor.pk)
    counts["merges"] = LeadMerge.objects.filter(survivor_id=merged.pk).update(survivor_id=survivor.pk)
    for holder in _holders:
        counts.update(holder.merge(survivor=survivor, merged=merged, actor=actor, reason=reason))

    rollups.leads_deleted_record([merged.pk])
    Lead.objects.filter(pk=merged.pk).delete()

    # The survivor gains what it lacks; its own values win.
    changes: dict[str, Any] = {"needs_rescore": True, "updated_at": timezone.now()}
    if not survivor.email and merged.email:
        changes["email"] = merged.email
    if not survivor.external_id and merged.external_id:
        changes["external_id"] = merged.external_id
    if changes.keys() & {"email", "external_id"}:
        changes["visitor"] = False
    for name in (*LEAD_PROFILE_FIELDS, *LEAD_UTM_FIELDS):
        if getattr(survivor, name) in ("", None) and getattr(merged, name) not in ("", None):
            changes[name] = getattr(merged, name)
    traits = {**merged.traits, **survivor.traits}
    if traits != survivor.traits:
        changes["traits"] = traits
    if merged.last_activity_at and (
        survivor.last_activity_at is None or merged.last_activity_at > survivor.last_activity_at
    ):
        changes["last_activity_at"] = merged.last_activity_at
    if "email" in changes or "traits" in changes:
        changes["account_id"] = account_ids([(changes.get("email", survivor.email), traits)])[0]
        if changes["account_id"] != survivor.account_id:
            accounts_left_after_commit([survivor.account_id, merged.account_id])
    elif merged.account_id != survivor.account_id:
        accounts_left_after_commit([merged.account_id])
    if survivor.visitor and changes.get("visitor") is False:
        rollups.leads_identified_record([survivor.pk])
    if "utm_campaign" in changes:
        rollups.leads_campaign_changed_record({survivor.pk: (rollups.LeadFacts.of(survivor), changes["utm_campaign"])})
    Lead.objects.filter(pk=survivor.pk).update(**changes)

    record = LeadMerge.objects.create(
        survivor=survivor,
        merged_public_id=merged.public_id,
        merged_identities=identities,
        actor=actor,
        reason=reason,
        counts=counts,
    )
    pk = survivor.pk
    transaction.on_commit(lambda: request_scoring([pk], []), robust=True)
    return record
