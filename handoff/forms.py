"""Forms of the handoff pages: an acceptance's confirmations and note, a rejection's reason
and note, a reassignment's rep, the accept checklist's items and webhook subscriptions."""

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from handoff.models import ChecklistItem, RejectReason, WebhookSubscription
from handoff.services import (
    NOTE_MAX_LENGTH,
    checklist_item_validate,
    handoff_accept_validate,
    handoff_reassign_target,
    handoff_reject_validate,
)
from handoff.webhooks import WEBHOOK_EVENTS, webhook_subscription_validate
from leadflow.leads.forms import PlainForm


class HandoffAcceptForm(PlainForm):
    """What the rep confirmed when accepting an SQL: the active checklist items, each a
    checkbox (none is allowed), and an optional note for marketing."""

    confirmed = forms.MultipleChoiceField(
        label="What you confirmed",
        required=False,
        widget=forms.CheckboxSelectMultiple,
        error_messages={
            "invalid_choice": "“%(value)s” is not on the accept checklist any more: reload the page and "
            "tick among the items it shows."
        },
    )
    note = forms.CharField(
        label="What you learned (marketing reads it)",
        required=False,
        max_length=NOTE_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": "Optional: what you learned on the first call."}),
    )

    def __init__(self, *args: Any, items: Iterable[ChecklistItem], **kwargs: Any):
        # Its own ids: the reject form on the same page has a note too (one id per page).
        kwargs.setdefault("auto_id", "accept_%s")
        super().__init__(*args, **kwargs)
        self.items = list(items)
        self.fields["confirmed"].choices = [(item.key, item.label) for item in self.items]  # type: ignore[attr-defined]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if "confirmed" in cleaned and "note" in cleaned:
            # The service's rules; a ValidationError keyed by field lands on that field.
            handoff_accept_validate(confirmed=cleaned["confirmed"], note=cleaned["note"])
        return cleaned


class HandoffRejectForm(PlainForm):
    """Why sales sends an SQL back: the reason is required, the note is what marketing reads."""

    reason = forms.ChoiceField(
        label="Reason",
        choices=[("", "Choose a reason…"), *RejectReason.choices],
        error_messages={"required": "Choose why you reject the lead: marketing learns from it."},
    )
    note = forms.CharField(
        label="Note for marketing",
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "What did you learn? Marketing sees this note."}),
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if "reason" in cleaned and "note" in cleaned:
            # The service's rules; a ValidationError keyed by field lands on that field.
            handoff_reject_validate(reason=cleaned["reason"], note=cleaned["note"])
        return cleaned


class HandoffReassignForm(PlainForm):
    """Whom a sales manager gives a handoff to, by username (the page offers the reps)."""

    username = forms.CharField(
        label="Reassign to",
        max_length=150,
        error_messages={"required": "Choose the rep who gets this handoff."},
    )

    def clean_username(self) -> Any:
        # The service's rule, as the API applies it; its ValidationError lands on this field.
        return handoff_reassign_target(username=self.cleaned_data["username"])


class ChecklistItemForm(PlainForm):
    """A new item of the accept checklist (the key is set once), or an item's changes."""

    key = forms.CharField(
        label="Key",
        max_length=100,
        help_text="Set once, e.g. “budget”: reports refer to it.",
        error_messages={"required": "Give the item a key, e.g. “budget”: reports refer to it."},
    )
    label = forms.CharField(
        label="Label",
        max_length=200,
        help_text="What the rep reads, e.g. “Budget”.",
        error_messages={"required": "Give the item a label: reps read it when they accept a lead."},
    )
    position = forms.IntegerField(label="Position", required=False, help_text="Smaller comes first.")
    active = forms.BooleanField(label="Asked when accepting", required=False, initial=True)

    def __init__(self, *args: Any, item: ChecklistItem | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.item = item
        if item is not None:
            del self.fields["key"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        # The service's rules on the fields that passed their own checks: every error on
        # its field, in one answer.
        checklist_item_validate(
            key=cleaned.get("key"), label=cleaned.get("label"), position=cleaned.get("position"), item=self.item
        )
        return cleaned


class WebhookSubscriptionForm(PlainForm):
    """An endpoint's name, URL, events and minimum score change; the rules are the
    service's (``webhook_subscription_validate``), each error on its field."""

    name = forms.CharField(
        label="Name",
        max_length=100,
        help_text="Whom it is for, e.g. “CRM” or “Slack #sales”.",
        error_messages={"required": "Name the endpoint (e.g. “CRM” or “Slack #sales”)."},
    )
    url = forms.CharField(
        label="URL",
        max_length=500,
        help_text="An https:// endpoint on the public internet that answers 2xx.",
        error_messages={"required": "Enter the endpoint's URL, such as https://crm.example.com/hooks/leadflow."},
    )
    events = forms.MultipleChoiceField(
        label="Events",
        choices=list(WEBHOOK_EVENTS.items()),
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Choose at least one event to receive."},
    )
    min_score_change = forms.DecimalField(
        label="Minimum score change",
        required=False,
        min_value=Decimal("0"),
        max_digits=12,
        decimal_places=2,
        help_text="lead.score_changed only when the score moved by at least this much, up or down (0: any change).",
    )

    def __init__(self, *args: Any, subscription: WebhookSubscription | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.subscription = subscription
        if subscription is not None and subscription.managed_by_settings:
            self.fields["url"].disabled = True
            self.fields["url"].help_text = "Follows NOTIFY_WEBHOOK_URL: change the setting to change it."

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        # The service's rules on every field that passed its own checks: all the errors in
        # one answer, each on its field.
        try:
            webhook_subscription_validate(
                name=cleaned.get("name", ""),
                url=cleaned.get("url", ""),
                events=cleaned.get("events", []),
                min_score_change=cleaned.get("min_score_change"),
                operator_url=bool(self.subscription and self.subscription.managed_by_settings),
            )
        except ValidationError as error:
            for name, messages in error.message_dict.items():
                if name not in self.errors:
                    for message in messages:
                        self.add_error(name, message)
        return cleaned
