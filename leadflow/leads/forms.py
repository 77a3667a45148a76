"""Forms of the pages: list filters, dashboard period, manual stage change."""

from datetime import timedelta
from typing import Any, cast

from django import forms
from django.utils import timezone

from leadflow.leads.models import Source, Stage
from leadflow.leads.selectors import DEFAULT_LEAD_SORT, LEAD_SORTS, LeadFilters, Period

DATE_INPUT = forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")
SORT_LABELS = {
    "-score": "Score, highest first",
    "score": "Score, lowest first",
    "-activity": "Last activity, newest first",
    "activity": "Last activity, oldest first",
    "-created": "Created, newest first",
    "created": "Created, oldest first",
}


class SourceChoiceField(forms.ModelChoiceField):
    def __init__(self, **kwargs: Any):
        super().__init__(
            queryset=Source.objects.order_by("name"),
            to_field_name="slug",
            required=False,
            empty_label="All sources",
            **kwargs,
        )


class PlainForm(forms.Form):
    """Labels without Django's trailing colon."""

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)


class LeadFilterForm(PlainForm):
    q = forms.CharField(
        label="Search", required=False, max_length=200, widget=forms.TextInput(attrs={"type": "search"})
    )
    stage = forms.MultipleChoiceField(
        label="Stage", choices=Stage.choices, required=False, widget=forms.CheckboxSelectMultiple
    )
    score_min = forms.DecimalField(label="Score from", required=False, widget=forms.NumberInput(attrs={"step": "any"}))
    score_max = forms.DecimalField(label="Score to", required=False, widget=forms.NumberInput(attrs={"step": "any"}))
    source = SourceChoiceField(label="Source")
    active_from = forms.DateField(label="Active from", required=False, widget=DATE_INPUT)
    active_to = forms.DateField(label="Active until", required=False, widget=DATE_INPUT)
    sort = forms.ChoiceField(label="Sort by", choices=[(key, SORT_LABELS[key]) for key in LEAD_SORTS], required=False)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        low, high = cleaned.get("score_min"), cleaned.get("score_max")
        if low is not None and high is not None and low > high:
            self.add_error("score_max", "The upper score must not be below the lower one: swap them.")
        first, last = cleaned.get("active_from"), cleaned.get("active_to")
        if first and last and first > last:
            self.add_error("active_to", "The end date is before the start date: swap them.")
        return cleaned

    def filters(self) -> LeadFilters:
        """The valid filters; an invalid field is ignored (and shown with its error)."""
        self.is_valid()
        data = getattr(self, "cleaned_data", {})
        return LeadFilters(
            q=data.get("q") or "",
            stages=tuple(data.get("stage") or ()),
            score_min=data.get("score_min"),
            score_max=data.get("score_max"),
            source=data.get("source"),
            active_from=data.get("active_from"),
            active_to=data.get("active_to"),
            sort=data.get("sort") or DEFAULT_LEAD_SORT,
        )


PERIOD_PRESETS = (7, 30, 90)
DEFAULT_PERIOD = 30
MAX_PERIOD_DAYS = 731


class DashboardFilterForm(PlainForm):
    """A preset (``period=7|30|90``) or custom dates (``from``/``to``), and a source."""

    period = forms.TypedChoiceField(
        choices=[(n, f"{n} days") for n in PERIOD_PRESETS], coerce=int, required=False, empty_value=None
    )
    source = SourceChoiceField(label="Source")

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
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
                self.add_error("to", "The end date is before the start date: swap them.")
            elif (last - first).days >= MAX_PERIOD_DAYS:
                self.add_error("from", "Choose a period of at most two years.")
            else:
                cleaned["custom"] = Period(first=first, last=last)
        return cleaned

    def selected(self) -> tuple[Period, int | None, Source | None]:
        """(period, preset in days or None when custom, source)."""
        self.is_valid()
        data = getattr(self, "cleaned_data", {})
        source = data.get("source")
        if data.get("custom"):
            return data["custom"], None, source
        preset = data.get("period") or DEFAULT_PERIOD
        return Period.last_days(preset), preset, source


class StageChangeForm(PlainForm):
    stage = forms.ChoiceField(label="Move to stage", choices=Stage.choices)
    reason = forms.CharField(
        label="Reason",
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": "Why? Shown in the lead's history."}),
        error_messages={"required": "Give a reason for the stage change: it is shown in the lead's history."},
    )

    def __init__(self, *args: Any, current_stage: str = "", **kwargs: Any):
        super().__init__(*args, **kwargs)
        field = cast(forms.ChoiceField, self.fields["stage"])
        field.choices = [("", "Choose a stage…")] + [
            (value, label) for value, label in Stage.choices if value != current_stage
        ]
