"""Forms of the handoff pages: a rejection's reason and note, a reassignment's rep."""

from typing import Any

from django import forms

from handoff.models import RejectReason
from handoff.services import handoff_reassign_target, handoff_reject_validate
from leadflow.leads.forms import PlainForm


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
