"""Forms of the scoring pages. They render the fields and read them with the API's
serializers (``scoring.api``), whose validation is the services' (``rule_validate``,
``ruleset_validate``), so a person gets the same messages in a page as in the API."""

import re
from decimal import Decimal
from typing import Any

from django import forms
from rest_framework import serializers

from scoring import engine
from scoring.api import RuleSerializer, RuleSetSerializer
from scoring.models import Operator, Rule, RuleKind, RuleSet

LIST_SEPARATOR = re.compile(r"[,\n]")
COMMON_EVENT_TYPES = (
    "page_view",
    "pricing_view",
    "content_download",
    "form_submit",
    "webinar_registered",
    "webinar_attended",
    "email_open",
    "email_click",
    "unsubscribe",
    "demo_request",
    "contact_request",
)


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


def rule_value_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, list):
        return ", ".join(rule_value_text(item) for item in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


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
        serializer = self.serializer_class(self.instance, data=self.serializer_data(cleaned), partial=True)
        if serializer.is_valid():
            self.validated_data = dict(serializer.validated_data)
        else:
            for name, errors in serializer.errors.items():
                target = name if name in self.fields else None
                for error in errors if isinstance(errors, list) else [errors]:
                    self.add_error(target, str(error))
        return cleaned


class RuleForm(SerializerForm):
    serializer_class = RuleSerializer

    kind = forms.CharField(label="Kind", required=False, widget=forms.Select(choices=RuleKind.choices))
    name = forms.CharField(label="Name", required=False, widget=_text(maxlength=120))
    points = forms.CharField(
        label="Points", required=False, widget=_decimal_input(), help_text="Negative points lower the score."
    )
    attribute = forms.CharField(
        label="Attribute",
        required=False,
        widget=_text(list="rule-attributes"),
        help_text="Fit: a lead attribute or traits.<key>. Behaviour (optional): an event property such as topic.",
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
        label="Event type", required=False, widget=_text(list="rule-event-types"), help_text="e.g. page_view."
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

    BEHAVIOUR_ONLY = ("event_type", "max_points", "window_days")

    def __init__(self, *args: Any, instance: Rule | None = None, **kwargs: Any):
        if instance is not None and not args and "initial" not in kwargs:
            kwargs["initial"] = {name: rule_value_text(getattr(instance, name)) for name in self.base_fields}
        super().__init__(*args, instance=instance, **kwargs)

    def serializer_data(self, cleaned: dict[str, Any]) -> dict[str, Any]:
        operator = (cleaned.get("operator") or "").strip()
        value_text = cleaned.get("value") or ""
        value = parse_rule_value(value_text, operator)
        if operator == Operator.EXISTS and value_text.strip():
            value = value_text.strip()  # let the serializer say that 'exists' takes no value
        return {
            "kind": (cleaned.get("kind") or "").strip(),
            "name": (cleaned.get("name") or "").strip(),
            "points": (cleaned.get("points") or "").strip(),
            "attribute": (cleaned.get("attribute") or "").strip(),
            "operator": operator,
            "value": value,
            "event_type": (cleaned.get("event_type") or "").strip(),
            "max_points": _blank_to_none(cleaned.get("max_points") or ""),
            "window_days": _blank_to_none(cleaned.get("window_days") or ""),
        }

    @property
    def lead_attributes(self) -> list[str]:
        return sorted(engine.LEAD_ATTRIBUTES)

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

    def __init__(self, *args: Any, instance: RuleSet | None = None, **kwargs: Any):
        if instance is not None and not args and "initial" not in kwargs:
            kwargs["initial"] = {
                "name": instance.name,
                "description": instance.description,
                "mql_threshold": rule_value_text(instance.mql_threshold),
                "sql_threshold": rule_value_text(instance.sql_threshold),
                "intent_event_types": ", ".join(instance.intent_event_types),
                "sql_min_fit": rule_value_text(instance.sql_min_fit),
                "decay_half_life_days": rule_value_text(instance.decay_half_life_days),
            }
        super().__init__(*args, instance=instance, **kwargs)

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
        }
