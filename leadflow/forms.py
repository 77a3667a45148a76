"""Forms of the pages that compose several apps: the dashboard's period and source."""

from datetime import timedelta
from typing import Any, cast

from django import forms
from django.utils import timezone

from leadflow.leads.forms import DATE_INPUT, DATES_REVERSED, PlainForm, SourceChoiceField
from leadflow.leads.models import Source
from leadflow.leads.scores import scoring_models
from leadflow.selectors import Period

PERIOD_PRESETS = (7, 30, 90)
DEFAULT_PERIOD = 30
MAX_PERIOD_DAYS = 731


class DashboardFilterForm(PlainForm):
    """A preset (``period=7|30|90``) or custom dates (``from``/``to``), and a source."""

    period = forms.TypedChoiceField(
        choices=[(n, f"{n} days") for n in PERIOD_PRESETS], coerce=int, required=False, empty_value=None
    )
    source = SourceChoiceField(label="Source")
    model = forms.ChoiceField(
        label="Scoring model",
        required=False,
        error_messages={"invalid_choice": "No scoring model “%(value)s”: showing the default model."},
    )

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        models = scoring_models()
        field = cast(forms.ChoiceField, self.fields["model"])
        field.choices = models or [("", "Default model")]
        if len(models) < 2:  # nothing to choose between
            field.widget = forms.HiddenInput()
        # "from" is a Python keyword: declare the date fields by name.
        self.fields["from"] = forms.DateField(label="From", required=False, widget=DATE_INPUT)
        self.fields["to"] = forms.DateField(label="To", required=False, widget=DATE_INPUT)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        first, last = cleaned.get("from"), cleaned.get("to")
        if first or last:
            today = timezone.localdate()
            first = first or (last or today) - timedelta(days=DEFAULT_PERIOD - 1)
            last = last or today
            if first > last:
                self.add_error("to", DATES_REVERSED)
            elif (last - first).days >= MAX_PERIOD_DAYS:
                self.add_error("from", "Choose a period of at most two years.")
            else:
                cleaned["custom"] = Period(first=first, last=last)
        return cleaned

    def selected_model(self) -> str | None:
        """The slug of the chosen scoring model; None: the default one."""
        self.is_valid()
        return getattr(self, "cleaned_data", {}).get("model") or None

    def selected(self) -> tuple[Period, int | None, Source | None]:
        """(period, preset in days or None when custom, source)."""
        self.is_valid()
        data = getattr(self, "cleaned_data", {})
        source = data.get("source")
        if data.get("custom"):
            return data["custom"], None, source
        preset = data.get("period") or DEFAULT_PERIOD
        return Period.last_days(preset), preset, source
