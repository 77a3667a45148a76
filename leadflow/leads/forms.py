"""Forms of the lead pages: the leads list's filters, a manual stage change; and the
bases the other apps' page forms build on (``PlainForm``, ``SourceChoiceField``)."""

from typing import Any, cast

from django import forms

from leadflow.leads.models import Source, Stage
from leadflow.leads.scores import scoring_models
from leadflow.leads.selectors import DEFAULT_LEAD_SORT, LEAD_SORTS, LeadFilters, end_of_day, start_of_day

DATE_INPUT = forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")
# Every page form with a date range says the same thing when its ends are reversed.
DATES_REVERSED = "The end date is before the start date: swap them."
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
    model = forms.ChoiceField(
        label="Score of model",
        required=False,
        error_messages={"invalid_choice": "No scoring model “%(value)s”: showing the default model's scores."},
    )
    account = forms.IntegerField(label="Account", required=False, min_value=1, widget=forms.HiddenInput)
    stale = forms.BooleanField(
        label="Stale MQLs only",
        required=False,
        help_text="MQLs whose score has decayed below the MQL threshold: they stay MQL until someone acts.",
    )

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        models = scoring_models()
        field = cast(forms.ChoiceField, self.fields["model"])
        # Every model by its slug (the first is the default, also when none is chosen).
        field.choices = models or [("", "Default model")]
        if len(models) < 2:  # nothing to choose between
            field.widget = forms.HiddenInput()

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        low, high = cleaned.get("score_min"), cleaned.get("score_max")
        if low is not None and high is not None and low > high:
            self.add_error("score_max", "The upper score must not be below the lower one: swap them.")
        first, last = cleaned.get("active_from"), cleaned.get("active_to")
        if first and last and first > last:
            self.add_error("active_to", DATES_REVERSED)
        return cleaned

    def filters(self) -> LeadFilters:
        """The valid filters; an invalid field is ignored (and shown with its error)."""
        self.is_valid()
        data = getattr(self, "cleaned_data", {})
        first, last = data.get("active_from"), data.get("active_to")
        return LeadFilters(
            q=data.get("q") or "",
            stages=tuple(data.get("stage") or ()),
            score_min=data.get("score_min"),
            score_max=data.get("score_max"),
            source=data.get("source"),
            active_after=start_of_day(first) if first else None,
            active_before=end_of_day(last) if last else None,
            sort=data.get("sort") or DEFAULT_LEAD_SORT,
            model=data.get("model") or None,
            account=data.get("account"),
            stale_mql=bool(data.get("stale")),
        )


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
