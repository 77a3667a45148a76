"""How the handoff follows the lifecycle: its receiver of ``stages_changed`` (see
``leadflow.leads.lifecycle`` for the signal's contract), of scoring's
``accounts_qualified`` (``scoring.accounts``), ``scores_changed`` and ``rescore_finished``
(``scoring.services``), and the webhook events they are (``handoff.webhooks``).
Connected when ``HandoffConfig.ready`` imports this module."""

from typing import Any

from django.dispatch import receiver

from handoff import services, webhooks
from leadflow.leads.lifecycle import TransitionsApplied, stages_changed
from leadflow.leads.models import Account, Lead, StageChange
from scoring.accounts import QualifiedAccount, accounts_qualified
from scoring.models import AccountScore, RescoreRun, Score, ScoringModel
from scoring.services import ScoreChange, rescore_finished, scores_changed


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


# What a webhook reads of a lead (``webhooks.lead_data``).
WEBHOOK_LEAD_FIELDS = ("id", "public_id", "email", "external_id", "name", "company", "stage")


@receiver(stages_changed, sender=StageChange, dispatch_uid="handoff.receivers.webhooks_hear_of_stage_changes")
def webhooks_hear_of_stage_changes(*, applied: TransitionsApplied, **kwargs: Any) -> None:
    """In the stage change's transaction: ``lead.mql``, ``lead.sql``, ``lead.recycled`` and
    ``lead.disqualified`` for the subscriptions that want them (the leads in one query)."""
    changes = [change for change in applied.changes if change.to_stage in webhooks.STAGE_EVENTS]
    if not changes or not webhooks.subscribed(*(f"lead.{stage}" for stage in webhooks.STAGE_EVENTS)):
        return
    leads = Lead.objects.only(*WEBHOOK_LEAD_FIELDS).in_bulk({change.lead_id for change in changes})
    webhooks.webhook_events_emit(webhooks.stage_events(changes, leads))


@receiver(scores_changed, sender=Score, dispatch_uid="handoff.receivers.webhooks_hear_of_score_changes")
def webhooks_hear_of_score_changes(*, changes: list[ScoreChange], at: Any, **kwargs: Any) -> None:
    """In the scoring chunk's transaction: ``lead.score_changed`` for the subscriptions that
    want it and whose minimum change it reaches."""
    if not webhooks.subscribed(webhooks.SCORE_CHANGED):
        return
    leads = Lead.objects.only(*WEBHOOK_LEAD_FIELDS).in_bulk({change.lead_id for change in changes})
    models = ScoringModel.objects.in_bulk({change.model_id for change in changes})
    webhooks.webhook_events_emit(webhooks.score_events(changes, leads, models, at))


@receiver(accounts_qualified, sender=AccountScore, dispatch_uid="handoff.receivers.webhooks_hear_of_mqas")
def webhooks_hear_of_mqas(*, qualified: list[QualifiedAccount], **kwargs: Any) -> None:
    """In the roll-up's transaction: ``account.mqa``, one per account and model."""
    if not qualified or not webhooks.subscribed("account.mqa"):
        return
    accounts = Account.objects.in_bulk({item.account_id for item in qualified})
    models = ScoringModel.objects.in_bulk({item.model_id for item in qualified})
    webhooks.webhook_events_emit(webhooks.account_events(qualified, accounts, models))


@receiver(rescore_finished, sender=RescoreRun, dispatch_uid="handoff.receivers.webhooks_hear_of_rescores")
def webhooks_hear_of_rescores(*, run: RescoreRun, **kwargs: Any) -> None:
    """In the transaction that finishes a full rescore: ``model.rescored``."""
    if webhooks.subscribed("model.rescored"):
        webhooks.webhook_events_emit([webhooks.rescore_event(run)])
