"""What handoff moves when two leads merge (``leadflow.leads.merge``)."""

from typing import Any

from django.db.models import Model

from handoff.models import OPEN_STATUSES, CachedEvaluation, Handoff, HandoffEvent
from handoff.services import handoff_close_for_lead
from leadflow.leads.models import Lead


class HandoffMerge:
    """The merged lead's handoffs (with their audit trail) move to the survivor. A lead
    has at most one open handoff: when both have one, the survivor's stays open and the
    merged lead's is closed first, its reason naming the survivor. The cached evaluations
    of both leads' handoffs (score quality's, as of each handoff's creation) go: the
    survivor's events as of then are not what they were; score quality computes them again."""

    holds: tuple[type[Model], ...] = (Handoff, HandoffEvent, CachedEvaluation)

    def merge(self, *, survivor: Lead, merged: Lead, actor: Any, reason: str) -> dict[str, int]:
        closed = 0
        if (
            Handoff.objects.filter(lead=survivor, status__in=OPEN_STATUSES).exists()
            and Handoff.objects.filter(lead=merged, status__in=OPEN_STATUSES).exists()
        ):
            handoff_close_for_lead(
                lead=merged,
                reason=f"Merged into lead {survivor.public_id}, whose own handoff stays open.",
                actor=actor,
            )
            closed = 1
        moved = Handoff.objects.filter(lead=merged).update(lead=survivor)
        stale, _ = CachedEvaluation.objects.filter(handoff__lead=survivor).delete()
        return {"handoffs": moved, "handoffs_closed": closed, "evaluations_dropped": stale}
