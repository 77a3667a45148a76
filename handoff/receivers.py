"""How the handoff follows the lifecycle: its receiver of ``stages_changed`` (see
``leadflow.leads.lifecycle`` for the signal's contract), and of scoring's
``accounts_qualified`` (``scoring.accounts``). Connected when
``HandoffConfig.ready`` imports this module."""

from typing import Any

from django.dispatch import receiver

from handoff import services
from leadflow.leads.lifecycle import TransitionsApplied, stages_changed
from leadflow.leads.models import StageChange
from scoring.accounts import QualifiedAccount, accounts_qualified
from scoring.models import AccountScore


@receiver(stages_changed, sender=StageChange, dispatch_uid="handoff.receivers.handoffs_follow_stages")
def handoffs_follow_stages(*, applied: TransitionsApplied, **kwargs: Any) -> None:
    """In the transaction that moves the leads: a lead that entered SQL gets a queued
    handoff; a lead that left SQL with its handoff still open — moved by hand, since a
    rep's decision decides the handoff first — has it closed, with the change's reason."""
    if entered := applied.entered_sql:
        services.handoffs_open_for_changes(changes=entered, at=applied.at)
    for change in applied.left_sql:
        services.handoff_close_for_lead(
            lead=change.lead, reason=f"Stage changed by hand to {change.to_stage}: {change.reason}", actor=change.actor
        )


@receiver(
    accounts_qualified, sender=AccountScore, dispatch_uid="handoff.receivers.marketing_hears_of_qualified_accounts"
)
def marketing_hears_of_qualified_accounts(*, qualified: list[QualifiedAccount], **kwargs: Any) -> None:
    """In the roll-up's transaction: marketing is notified of the accounts that became MQAs."""
    services.accounts_qualified_notify(qualified=qualified)
