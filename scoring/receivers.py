"""How scoring follows the lifecycle: its receiver of ``stages_changed`` (see
``leadflow.leads.lifecycle`` for the signal's contract). Connected when
``ScoringConfig.ready`` imports this module."""

from typing import Any

from django.dispatch import receiver

from leadflow.leads.lifecycle import TransitionsApplied, stages_changed
from leadflow.leads.models import StageChange
from scoring import services


@receiver(stages_changed, sender=StageChange, dispatch_uid="scoring.receivers.scores_follow_stages")
def scores_follow_stages(*, applied: TransitionsApplied, **kwargs: Any) -> None:
    """In the transaction that moves the leads: their score rows take the new stage."""
    services.scores_follow_stages(changes=applied.changes)
