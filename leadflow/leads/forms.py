"""Forms of the lead pages: the leads list's filters, a manual stage change; and the
bases the other apps' page forms build on (``PlainForm``, ``SourceChoiceField``)."""

import uuid
from typing import Any, cast

from django import forms

from leadflow.leads.models import Lead, Source, Stage
from leadflow.leads.roles import sees_every_decision
from leadflow.leads.scores import scoring_models
from leadflow.leads.selectors import (
    DEFAULT_LEAD_SORT,
    LEAD_SORTS,
    VISITOR_CHOICES,
    LeadFilters,
    end_of_day,
    lead_find,
    lead_owner_choices,
    start_of_day,
)
from leadflow.leads.validation import segment_event_types_parse

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
    created_from = forms.DateField(label="Created from", required=False, widget=DATE_INPUT)
    created_to = forms.DateField(label="Created until", required=False, widget=DATE_INPUT)
    utm_source = forms.CharField(label="UTM source", required=False, max_length=200)
    utm_medium = forms.CharField(label="UTM medium", required=False, max_length=200)
    utm_campaign = forms.CharField(label="UTM campaign", required=False, max_length=200)
    owner = forms.ChoiceField(
        label="Owner",
        required=False,
        error_messages={"invalid_choice": "Nobody called “%(value)s” owns leads: choose an owner from the list."},
    )
    sort = forms.ChoiceField(label="Sort by", choices=[(key, SORT_LABELS[key]) for key in LEAD_SORTS], required=False)
    model = forms.ChoiceField(
        label="Score of model",
        required=False,
        error_messages={"invalid_choice": "No scoring model “%(value)s”: showing the default model's scores."},
    )
    account = forms.IntegerField(label="Account", required=False, min_value=1, widget=forms.HiddenInput)
    visitors = forms.ChoiceField(
        label="Visitors",
        choices=VISITOR_CHOICES,
        required=False,
        help_text="Visitors are known only by an anonymous id (a cookie): scored, never promoted.",
    )
    stale = forms.BooleanField(
        label="Stale MQLs only",
        required=False,
        help_text="MQLs whose score has decayed below the MQL threshold: they stay MQL until someone acts.",
    )

    def __init__(self, *args: Any, viewer: Any = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        models = scoring_models()
        field = cast(forms.ChoiceField, self.fields["model"])
        # Every model by its slug (the first is the default, also when none is chosen).
        field.choices = models or [("", "Default model")]
        if len(models) < 2:  # nothing to choose between
            field.widget = forms.HiddenInput()
        owner = cast(forms.ChoiceField, self.fields["owner"])
        if viewer is None or sees_every_decision(viewer):
            owner.choices = [("", "Anyone"), *lead_owner_choices()]
        else:  # a rep does not learn the other reps' names from the page (as in the stage history)
            owner.choices = [("", "Anyone"), (viewer.get_username(), "Me")]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        low, high = cleaned.get("score_min"), cleaned.get("score_max")
        if low is not None and high is not None and low > high:
            self.add_error("score_max", "The upper score must not be below the lower one: swap them.")
        first, last = cleaned.get("active_from"), cleaned.get("active_to")
        if first and last and first > last:
            self.add_error("active_to", DATES_REVERSED)
        first, last = cleaned.get("created_from"), cleaned.get("created_to")
        if first and last and first > last:
            self.add_error("created_to", DATES_REVERSED)
        return cleaned

    def filters(self) -> LeadFilters:
        """The valid filters; an invalid field is ignored (and shown with its error)."""
        self.is_valid()
        data = getattr(self, "cleaned_data", {})
        first, last = data.get("active_from"), data.get("active_to")
        born, until = data.get("created_from"), data.get("created_to")
        return LeadFilters(
            q=data.get("q") or "",
            stages=tuple(data.get("stage") or ()),
            score_min=data.get("score_min"),
            score_max=data.get("score_max"),
            source=data.get("source"),
            active_after=start_of_day(first) if first else None,
            active_before=end_of_day(last) if last else None,
            created_after=start_of_day(born) if born else None,
            created_before=end_of_day(until) if until else None,
            utm_source=(data.get("utm_source") or "").strip(),
            utm_medium=(data.get("utm_medium") or "").strip(),
            utm_campaign=(data.get("utm_campaign") or "").strip(),
            owner=data.get("owner") or "",
            sort=data.get("sort") or DEFAULT_LEAD_SORT,
            model=data.get("model") or None,
            account=data.get("account"),
            stale_mql=bool(data.get("stale")),
            visitors=data.get("visitors") or "",
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


class SavedViewForm(PlainForm):
    """Save the leads list's current filters (``query``, the list's query string) under a name."""

    name = forms.CharField(
        label="Save these filters as",
        max_length=100,
        widget=forms.TextInput(attrs={"placeholder": "e.g. Spring campaign MQLs"}),
        error_messages={"required": "Name the view, e.g. “Spring campaign MQLs”."},
    )
    query = forms.CharField(required=False, max_length=4000, widget=forms.HiddenInput)


BULK_MAX = 200  # a few pages of the list at most: "select all on this page" selects 50
BULK_ACTIONS = [("stage", "Change stage"), ("export", "Export selected")]


class BulkActionForm(PlainForm):
    """The leads list's bulk actions on the selected rows (``leads``, public ids): move
    them to a stage with a reason, or export them as CSV."""

    leads = forms.TypedMultipleChoiceField(
        label="Selected leads",
        coerce=str,
        required=True,
        error_messages={
            "required": "Select at least one lead: tick its box in the list.",
            "invalid_choice": "“%(value)s” is not a lead of the list: reload the page and select again.",
        },
    )
    action = forms.ChoiceField(label="Action", choices=BULK_ACTIONS, initial="stage")
    stage = forms.ChoiceField(label="Move to stage", choices=[("", "Choose a stage…"), *Stage.choices], required=False)
    reason = forms.CharField(
        label="Reason",
        max_length=2000,
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": "Why? Shown in each lead's history."}),
    )
    query = forms.CharField(required=False, max_length=4000, widget=forms.HiddenInput)

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        # Any public id is a choice; whether it names a lead is the view's to check.
        field = cast(forms.TypedMultipleChoiceField, self.fields["leads"])
        field.valid_value = _is_uuid  # type: ignore[method-assign]

    def clean_leads(self) -> list[str]:
        chosen = list(dict.fromkeys(self.cleaned_data["leads"]))
        if len(chosen) > BULK_MAX:
            raise forms.ValidationError(f"Select at most {BULK_MAX} leads at once, or filter the list and export it.")
        return chosen

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("action") == "stage":
            if not cleaned.get("stage"):
                self.add_error("stage", "Choose the stage to move the selected leads to.")
            if not (cleaned.get("reason") or "").strip():
                self.add_error("reason", "Give a reason for the stage change: it is shown in each lead's history.")
        return cleaned


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


class ImportUploadForm(PlainForm):
    """The import page's first step: the file and the source its new leads come from."""

    file = forms.FileField(
        label="CSV file",
        help_text="A contacts export of HubSpot, Salesforce / Account Engagement or Mautic, or a CSV with "
        "LeadFlow's column names (email, name, company…). UTF-8 or Windows/Latin-1; commas, semicolons or tabs.",
    )
    source = forms.CharField(
        label="Source",
        max_length=100,
        initial="CSV import",
        help_text="New leads are attributed to this source (created if it does not exist yet), e.g. 'HubSpot'.",
    )

    def clean_file(self) -> Any:
        from django.conf import settings
        from django.template.defaultfilters import filesizeformat

        upload = self.cleaned_data["file"]
        if upload.size > settings.IMPORT_MAX_BYTES:
            raise forms.ValidationError(
                f"The file is {filesizeformat(upload.size)}; the limit is "
                f"{filesizeformat(settings.IMPORT_MAX_BYTES)}. Split it, or import it with manage.py import_leads."
            )
        return upload

    def clean_source(self) -> str:
        from django.utils.text import slugify

        name = self.cleaned_data["source"].strip()
        if not slugify(name):
            raise forms.ValidationError("Give the source a name with a letter or digit, e.g. 'HubSpot'.")
        return name


def import_column_field(index: int) -> str:
    return f"column_{index}"


class ImportMappingForm(PlainForm):
    """The mapping step: a target per column of the file (``leadflow.leads.importmap``)."""

    def __init__(self, *args: Any, header: list[str], mapping: list[str], **kwargs: Any):
        from leadflow.leads.importmap import TARGET_LABELS, TRAIT_PREFIX

        super().__init__(*args, **kwargs)
        self.header = header
        for index, name in enumerate(header):
            current = mapping[index] if index < len(mapping) else "ignore"
            choices = list(TARGET_LABELS.items())
            if current.startswith(TRAIT_PREFIX):  # a preset's named trait, e.g. trait:hubspot_id
                choices.insert(-2, (current, f"Trait '{current[len(TRAIT_PREFIX) :]}'"))
            self.fields[import_column_field(index)] = forms.ChoiceField(
                label=name or f"(column {index + 1}, no header)", choices=choices, initial=current
            )

    def mapping(self) -> list[str]:
        return [self.cleaned_data[import_column_field(index)] for index in range(len(self.header))]


class LeadMergeForm(PlainForm):
    """The other lead to merge into ``lead``, named as a person knows it; the confirmation
    step posts it back with ``confirmed``."""

    other = forms.CharField(
        label="The duplicate lead",
        max_length=254,
        help_text="Its e-mail, external id, anonymous id or lead id (from its address). It is merged into this lead.",
    )
    reason = forms.CharField(label="Reason (optional)", required=False, max_length=1000)
    confirmed = forms.BooleanField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args: Any, lead: Lead, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.lead = lead

    def clean_other(self) -> Lead:
        text = self.cleaned_data["other"]
        other = lead_find(text=text)
        if other is None:
            raise forms.ValidationError(
                "No lead has this e-mail, external id, anonymous id or id: check it on the duplicate's page."
            )
        if other.pk == self.lead.pk:
            raise forms.ValidationError("That is this lead: name the duplicate, not the lead to keep.")
        return other


class SegmentEventTypesForm(PlainForm):
    """A source's Segment mapping, one ``Segment event name → event type`` a line."""

    event_types = forms.CharField(
        label="Segment event names",
        required=False,
        max_length=100_000,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 14, "spellcheck": "false", "class": "mono"}),
        help_text=(
            "One a line: the name a track call sends, an arrow (→ or ->), the event type — "
            "Demo Requested → demo_request. A name not listed becomes the snake_case of itself "
            "(Trial Started → trial_started); an empty list maps nothing."
        ),
    )

    def clean_event_types(self) -> dict[str, str]:
        mapping, problems = segment_event_types_parse(self.cleaned_data["event_types"])
        if problems:
            raise forms.ValidationError(problems)
        return mapping
