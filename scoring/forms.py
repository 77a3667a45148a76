"""Forms of the scoring pages. They render the fields and read them with the API's
serializers (``scoring.api``), whose validation is the services' (``rule_errors``,
``ruleset_errors``), so a person gets the API's messages, every one of them in one submit
(the checks that compare fields included), in the form's words: a message that names an
operator by its code ('exists') names it by the menu's label here ("is present")."""

import re
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from rest_framework import serializers

from scoring import engine, services
from scoring.api import RuleSerializer, RuleSetSerializer
from scoring.models import GRADE_CHOICES, RULESET_FIELDS, Operator, Rule, RuleKind, RuleSet, ScoringModel
from scoring.presenters import COMMON_EVENT_TYPES, attribute_label, operator_label, rule_value_text

LIST_SEPARATOR = re.compile(r"[,\n]")


def _text(**attrs: Any) -> forms.TextInput:
    return forms.TextInput(attrs={"autocomplete": "off", **attrs})


def _decimal_input(**attrs: Any) -> forms.TextInput:
    # Not type="number": the browser's own validation would speak instead of ours.
    return _text(inputmode="decimal", **attrs)


def _blank_to_none(value: str) -> str | None:
    value = value.strip()
    return value or None


def _scalar(text: str) -> Any:
    """A rule value typed in a form: numbers become numbers (so they compare as numbers)."""
    text = text.strip()
    if engine.NUMBER_RE.fullmatch(text):
        if "." not in text and str(int(text)) == text:
            return int(text)
        if "." in text:
            return float(text)
    return text


def parse_rule_value(text: str, operator: str) -> Any:
    text = text.strip()
    if not text:
        return None
    if operator == Operator.IN:
        return [_scalar(part) for part in LIST_SEPARATOR.split(text) if part.strip()]
    return _scalar(text)


class SerializerForm(forms.Form):
    """A form whose data is validated by a DRF serializer; its messages land on the
    form's fields (or on the form when the field is not shown)."""

    serializer_class: type[serializers.Serializer]

    def __init__(self, *args: Any, instance: Any = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.instance = instance
        self.validated_data: dict[str, Any] = {}

    def serializer_data(self, cleaned: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        data = self.serializer_data(cleaned)
        serializer = self.serializer_class(self.instance, data=data, partial=True)
        if serializer.is_valid():
            self.validated_data = dict(serializer.validated_data)
        else:
            for name, errors in serializer.errors.items():
                target = name if name in self.fields else None
                for error in errors if isinstance(errors, list) else [errors]:
                    self.add_error(target, self.form_message(error, data))
        return cleaned

    def form_message(self, error: Any, data: dict[str, Any]) -> str:
        """The API's message, in the words of this form where they differ."""
        return str(error)

    def add_service_errors(self, error: ValidationError) -> None:
        """A service's ValidationError, each message on its field (or on the form)."""
        add_service_errors(self, error)


def add_service_errors(form: forms.Form, error: ValidationError) -> None:
    messages = error.message_dict if hasattr(error, "error_dict") else {None: error.messages}
    for name, texts in messages.items():
        for text in texts:
            form.add_error(name if name in form.fields else None, text)


class RuleForm(SerializerForm):
    serializer_class = RuleSerializer

    kind = forms.CharField(label="Kind", required=False, widget=forms.Select(choices=RuleKind.choices))
    name = forms.CharField(label="Name", required=False, widget=_text(maxlength=120))
    points = forms.CharField(
        label="Points",
        required=False,
        widget=_decimal_input(),
        help_text="Negative points lower the score. A suppression rule has none (0).",
    )
    attribute = forms.CharField(
        label="Attribute",
        required=False,
        widget=_text(list="rule-attributes"),
        help_text=(
            "Fit, suppression without an event type: a lead attribute or traits.<key>. "
            "Behaviour, suppression by event (optional): an event property such as topic."
        ),
    )
    operator = forms.CharField(
        label="Operator", required=False, widget=forms.Select(choices=[("", "—"), *Operator.choices])
    )
    value = forms.CharField(
        label="Value",
        required=False,
        widget=_text(),
        help_text="For “is one of”, separate values with commas. Numbers compare as numbers.",
    )
    event_type = forms.CharField(
        label="Event type",
        required=False,
        widget=_text(list="rule-event-types"),
        help_text="e.g. page_view. Suppression: any such event (e.g. unsubscribe) blocks promotion.",
    )
    max_points = forms.CharField(
        label="Cap",
        required=False,
        widget=_decimal_input(),
        help_text="Most points this rule gives a lead; empty: no cap.",
    )
    window_days = forms.CharField(
        label="Window (days)",
        required=False,
        widget=_text(inputmode="numeric"),
        help_text="Only events of the last N days count; empty: all time.",
    )
    decays = forms.BooleanField(
        label="Decays",
        required=False,
        initial=True,
        help_text="Behaviour: older events count for less (the ruleset's half-life). Off: full value forever.",
    )

    BEHAVIOUR_ONLY = ("event_type", "max_points", "window_days", "decays")

    def __init__(self, *args: Any, instance: Rule | None = None, **kwargs: Any):
        if instance is not None and not args and "initial" not in kwargs:
            kwargs["initial"] = {name: rule_value_text(getattr(instance, name)) for name in self.base_fields}
            kwargs["initial"]["decays"] = instance.decays  # a checkbox takes a bool, not its text
        super().__init__(*args, instance=instance, **kwargs)

    def serializer_data(self, cleaned: dict[str, Any]) -> dict[str, Any]:
        operator = (cleaned.get("operator") or "").strip()
        value_text = cleaned.get("value") or ""
        value = parse_rule_value(value_text, operator)
        if operator == Operator.EXISTS and value_text.strip():
            value = value_text.strip()  # let the serializer say that 'exists' takes no value
        kind = (cleaned.get("kind") or "").strip()
        points = (cleaned.get("points") or "").strip()
        if kind == RuleKind.SUPPRESS and not points:
            points = "0"  # a suppression rule has no points
        return {
            "kind": kind,
            "name": (cleaned.get("name") or "").strip(),
            "points": points,
            "attribute": (cleaned.get("attribute") or "").strip(),
            "operator": operator,
            "value": value,
            "event_type": (cleaned.get("event_type") or "").strip(),
            "max_points": _blank_to_none(cleaned.get("max_points") or ""),
            "window_days": _blank_to_none(cleaned.get("window_days") or ""),
            # Only behaviour rules decay; the box is not shown for the others.
            "decays": bool(cleaned.get("decays")) if kind == RuleKind.BEHAVIOUR else True,
        }

    # The services' messages that name an operator by its code ('exists'): here, by its label.
    OPERATOR_MESSAGES = {
        services.VALUE_NOT_TAKEN: "“{operator}” takes no value: leave Value empty.",
        services.VALUE_LIST_NEEDED: "“{operator}” needs at least one value: separate values with commas.",
        services.VALUE_NUMBER_NEEDED: "“{operator}” compares numbers: give a number, e.g. 50.",
        services.VALUE_NEEDED: "“{operator}” needs a value to compare with: a text or a number.",
        services.OPERATOR_UNKNOWN: "Choose an operator from the list.",
    }

    def form_message(self, error: Any, data: dict[str, Any]) -> str:
        words = self.OPERATOR_MESSAGES.get(getattr(error, "code", ""))
        if words is None:
            return str(error)
        return words.format(operator=operator_label(data.get("operator") or ""))

    @property
    def lead_attributes(self) -> list[tuple[str, str]]:
        """Each attribute a fit rule may test, with the words the pages say it in."""
        return [(name, attribute_label(name)) for name in sorted(engine.LEAD_ATTRIBUTES)]

    @property
    def event_types(self) -> tuple[str, ...]:
        return COMMON_EVENT_TYPES


class RuleSetForm(SerializerForm):
    serializer_class = RuleSetSerializer

    name = forms.CharField(label="Name", required=False, widget=_text(maxlength=120))
    description = forms.CharField(label="Description", required=False, widget=forms.Textarea(attrs={"rows": 3}))
    mql_threshold = forms.CharField(label="MQL threshold", required=False, widget=_decimal_input())
    sql_threshold = forms.CharField(label="SQL threshold", required=False, widget=_decimal_input())
    intent_event_types = forms.CharField(
        label="Intent events",
        required=False,
        widget=_text(),
        help_text="Hand-raise event types that make an MQL an SQL, separated by commas.",
    )
    sql_min_fit = forms.CharField(
        label="Minimum fit for SQL", required=False, widget=_decimal_input(), help_text="Empty: no minimum."
    )
    decay_half_life_days = forms.CharField(
        label="Decay half-life (days)",
        required=False,
        widget=_decimal_input(),
        help_text="Behaviour points halve every N days. Empty: no decay.",
    )
    grade_a_min = forms.CharField(label="Grade A from fit", required=False, widget=_decimal_input())
    grade_b_min = forms.CharField(label="Grade B from fit", required=False, widget=_decimal_input())
    grade_c_min = forms.CharField(label="Grade C from fit", required=False, widget=_decimal_input())
    grade_d_min = forms.CharField(
        label="Grade D from fit", required=False, widget=_decimal_input(), help_text="Below this fit: F."
    )
    mql_min_grade = forms.CharField(
        label="Minimum grade for MQL",
        required=False,
        widget=forms.Select(choices=[("", "Any grade"), *GRADE_CHOICES]),
    )
    sql_min_grade = forms.CharField(
        label="Minimum grade for SQL",
        required=False,
        widget=forms.Select(choices=[("", "Any grade"), *GRADE_CHOICES]),
    )
    intent_window_days = forms.CharField(
        label="Intent window (days)",
        required=False,
        widget=_text(inputmode="numeric"),
        help_text="A hand-raise counts for SQL this many days (90 is usual).",
    )
    requalify_threshold = forms.CharField(
        label="Requalification threshold",
        required=False,
        widget=_decimal_input(),
        help_text="Behaviour points a recycled lead must earn after its recycling to be an MQL again.",
    )
    mqa_threshold = forms.CharField(
        label="MQA threshold",
        required=False,
        widget=_decimal_input(),
        help_text="An account whose roll-up score reaches this is marketing-qualified. Empty: no MQAs.",
    )

    REQUIRED_NUMBERS = (
        "grade_a_min",
        "grade_b_min",
        "grade_c_min",
        "grade_d_min",
        "intent_window_days",
        "requalify_threshold",
    )

    # Shown in groups on the page: (legend, field names).
    SECTIONS = (
        ("Ruleset", ("name", "description")),
        ("Thresholds", ("mql_threshold", "sql_threshold", "sql_min_fit", "intent_event_types", "intent_window_days")),
        ("Fit grades", ("grade_a_min", "grade_b_min", "grade_c_min", "grade_d_min", "mql_min_grade", "sql_min_grade")),
        ("Decay, recycling and accounts", ("decay_half_life_days", "requalify_threshold", "mqa_threshold")),
    )

    def __init__(self, *args: Any, instance: RuleSet | None = None, **kwargs: Any):
        if instance is not None and not args and "initial" not in kwargs:
            kwargs["initial"] = {name: rule_value_text(getattr(instance, name)) for name in RULESET_FIELDS}
            kwargs["initial"]["intent_event_types"] = ", ".join(instance.intent_event_types)
        super().__init__(*args, instance=instance, **kwargs)

    @property
    def sections(self) -> list[tuple[str, list[forms.BoundField]]]:
        return [(legend, [self[name] for name in names]) for legend, names in self.SECTIONS]

    def serializer_data(self, cleaned: dict[str, Any]) -> dict[str, Any]:
        intents = [part.strip() for part in LIST_SEPARATOR.split(cleaned.get("intent_event_types") or "")]
        return {
            "name": (cleaned.get("name") or "").strip(),
            "description": (cleaned.get("description") or "").strip(),
            "mql_threshold": (cleaned.get("mql_threshold") or "").strip(),
            "sql_threshold": (cleaned.get("sql_threshold") or "").strip(),
            "intent_event_types": [part for part in intents if part],
            "sql_min_fit": _blank_to_none(cleaned.get("sql_min_fit") or ""),
            "decay_half_life_days": _blank_to_none(cleaned.get("decay_half_life_days") or ""),
            **self._posted_settings(cleaned),
        }

    def _posted_settings(self, cleaned: dict[str, Any]) -> dict[str, Any]:
        """The grade, window, requalification and MQA settings the request carries: one
        left out stays as it is (an older form, a script posting a few fields)."""
        values = {name: (cleaned.get(name) or "").strip() for name in self.REQUIRED_NUMBERS}
        values["mql_min_grade"] = (cleaned.get("mql_min_grade") or "").strip()
        values["sql_min_grade"] = (cleaned.get("sql_min_grade") or "").strip()
        values["mqa_threshold"] = _blank_to_none(cleaned.get("mqa_threshold") or "")
        return {name: value for name, value in values.items() if name in self.data}


def ruleset_defaults() -> dict[str, str]:
    """What a new draft's settings start from: the model's defaults, as the form shows them."""
    blank = RuleSet()
    return {name: rule_value_text(getattr(blank, name)) for name in RULESET_FIELDS if name != "intent_event_types"} | {
        "intent_event_types": "demo_request, contact_request"
    }


class ScoringModelForm(forms.Form):
    """A new scoring model; the services validate it (``scoring_model_validate``) and
    their messages land on the fields."""

    name = forms.CharField(
        label="Name",
        max_length=100,
        widget=_text(maxlength=100),
        help_text="What it scores interest in, e.g. a product line: Analytics add-on.",
        error_messages={"required": "Name the model (e.g. the product line it scores interest in)."},
    )
    slug = forms.CharField(
        label="Slug",
        max_length=50,
        widget=_text(maxlength=50),
        help_text="Lower-case letters, digits, '-' and '_': the API and links name the model by it.",
        error_messages={"required": "Give the model a slug, e.g. analytics-addon."},
    )
    description = forms.CharField(label="Description", required=False, widget=forms.Textarea(attrs={"rows": 3}))

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)

    def clean(self) -> dict[str, Any]:
        """Every message at once: the services' rules (``scoring_model_validate``) on the
        fields that are not already refused."""
        cleaned = super().clean() or {}
        cleaned["slug"] = (cleaned.get("slug") or self.data.get("slug") or "").strip()
        cleaned["description"] = (cleaned.get("description") or "").strip()
        candidate = ScoringModel(name=cleaned.get("name") or "", slug=cleaned["slug"], position=0)
        try:
            services.scoring_model_validate(model=candidate)
        except ValidationError as error:
            for name, texts in error.message_dict.items():
                if name in self.fields and name not in self.errors:
                    for text in texts:
                        self.add_error(name, text)
        return cleaned

    def add_service_errors(self, error: ValidationError) -> None:
        add_service_errors(self, error)
