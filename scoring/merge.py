"""What scoring does when two leads merge (``leadflow.leads.merge``)."""

from typing import Any

from django.db.models import Model

from leadflow.leads.models import Lead
from scoring.models import Score


class ScoringMerge:
    """The merged lead's scores go: the survivor, flagged by the merge, is scored again
    from the events it now holds."""

    holds: tuple[type[Model], ...] = (Score,)

    def merge(self, *, survivor: Lead, merged: Lead, actor: Any, reason: str) -> dict[str, int]:
        deleted, _ = Score.objects.filter(lead_id=merged.pk).delete()
        return {"scores_dropped": deleted}
