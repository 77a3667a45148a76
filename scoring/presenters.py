"""What scoring's reads look like to people: pure functions from the selectors' results
to the dicts and strings the API serializes and the pages render, so that both say the
same thing the same way."""

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from leadflow.leads import selectors as lead_selectors
from leadflow.leads.models import Stage
from leadflow.leads.scores import Qualification
from scoring import engine, selectors
from scoring.engine import TRAIT_PREFIX, RuleSpec
from scoring.models import Operator, Rule, RuleKind, RuleSet
from scoring.qualification import lead_qualification
from scoring.selectors import Explanation, Preview, PreviewLead, RulePair, SettingChange, ruleset_spec

ZERO = Decimal("0.00")
EXPLAINED_EVENTS = 20  # the most recent events shown behind each rule


# Event types the rule form suggests, and the warnings compare a never-seen type with.
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

# The lead attributes fit rules test (``engine.LEAD_ATTRIBUTES``), in the words of the pages.
ATTRIBUTE_LABELS = {
    "email_domain": "E-mail domain",
    "name": "Name",
    "company": "Company",
    "job_title": "Job title",
    "industry": "Industry",
    "country": "Country",
    "company_size": "Company size",
    "utm_source": "UTM source",
    "utm_medium": "UTM medium",
    "utm_campaign": "UTM campaign",
}


def attribute_label(attribute: str) -> str:
    """``company_size`` → "Company size"; ``traits.plan`` → "Plan (trait)"."""
    if attribute.startswith(TRAIT_PREFIX):
        return f"{attribute[len(TRAIT_PREFIX) :]} (trait)".capitalize()
    return ATTRIBUTE_LABELS.get(attribute, attribute)


def operator_label(operator: str) -> str:
    """The operator as the rule form's menu says it: ``gte`` → "≥", ``exists`` → "is present"."""
    return str(Operator(operator).label) if operator in Operator.values else operator


def rule_value_text(value: Any) -> str:
    """A rule's value as the rule form shows it: a list as "a, b", a number without trailing zeros."""
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, list):
        return ", ".join(rule_value_text(item) for item in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _condition_words(subject: str, operator: str, value: Any) -> str:
    if operator == Operator.EXISTS:
        return f"{subject} {operator_label(operator)}"
    return f"{subject} {operator_label(operator)} {rule_value_text(value)}"


def describe_rule(rule: RuleSpec) -> str:
    """What a rule tests, in the words of the rule form: "Company size ≥ 50", "Industry is
    one of software, fintech", "each page_view event where topic equals pricing, in the
    last 30 days" (a behaviour rule's property keeps its name: it is the event's own)."""
    on_lead = rule.kind == RuleKind.FIT or (rule.kind == RuleKind.SUPPRESS and not rule.event_type)
    subject = attribute_label(rule.attribute) if on_lead else rule.attribute
    condition = _condition_words(subject, rule.operator, rule.value) if rule.has_condition else ""
    if on_lead:
        return condition
    if rule.kind == RuleKind.SUPPRESS:
        return f"any {rule.event_type} event" + (f" where {condition}" if condition else "")
    parts = [f"each {rule.event_type} event"]
    if condition:
        parts.append(f"where {condition}")
    if rule.window_days:
        parts[-1] += ","
        parts.append(f"in the last {rule.window_days} days")
    return " ".join(parts)


# --- Warnings: what saves but is probably not what was meant ----------------------------------
@dataclass(frozen=True)
class RuleSetWarning:
    """Something a draft allows that is likely a mistake; it never blocks a save.
    ``rule_id``: the rule it is about (None: the ruleset's settings)."""

    message: str
    rule_id: int | None = None


NO_INTENT_EVENTS = (
    "No intent events: no lead can become an SQL under this ruleset (SQL needs a hand-raise). "
    "Add the hand-raise event types, e.g. demo_request, contact_request."
)


def _never_seen(event_type: str, known: set[str]) -> str:
    guess = difflib.get_close_matches(event_type, sorted(known - {event_type}), n=1, cutoff=0.75)
    hint = f" Did you mean “{guess[0]}”?" if guess else " Check the spelling, or wait for the first such event."
    return f"No event has ever had the type “{event_type}”.{hint}"


def ruleset_warnings(
    *, ruleset: RuleSet, rules: Sequence[Rule] | None = None, settings: bool = True
) -> list[RuleSetWarning]:
    """The ruleset's warnings: an empty intent list, and event types (of its rules and its
    intent events) that no event has ever had — "pageview" for "page_view". ``rules``: the
    rules to look at (all of the ruleset's by default; one on its edit page, none on the
    settings page); ``settings``: whether to look at the intent events. One query per
    event type not yet known to have been seen (``event_types_unseen`` caches)."""
    rules = list(ruleset.rules.all()) if rules is None else rules
    rule_types = {rule.event_type for rule in rules if rule.event_type}
    intent_types = set(ruleset.intent_event_types) if settings else set()
    unseen = lead_selectors.event_types_unseen(rule_types | intent_types)
    known = set(COMMON_EVENT_TYPES) | ((rule_types | intent_types) - unseen)
    warnings = []
    if settings and not ruleset.intent_event_types:
        warnings.append(RuleSetWarning(NO_INTENT_EVENTS))
    warnings += [
        RuleSetWarning(f"Intent events: {_never_seen(event_type, known)}")
        for event_type in sorted(intent_types & unseen)
    ]
    warnings += [
        RuleSetWarning(f"Rule “{rule.name}”: {_never_seen(rule.event_type, known)}", rule_id=rule.pk)
        for rule in rules
        if rule.event_type in unseen
    ]
    return warnings


def explanation_data(explanation: Explanation) -> dict[str, Any]:
    lead = explanation.lead
    rules = []
    if explanation.result:
        for result in explanation.result.results:
            event_ids = reversed(result.event_ids[-EXPLAINED_EVENTS:])
            events = [explanation.events[event_id] for event_id in event_ids]
            rules.append(
                {
                    "rule_id": result.rule.id,
                    "name": result.rule.name,
                    "kind": result.rule.kind,
                    "points": result.rule.points,
                    "condition": describe_rule(result.rule),
                    "matched": result.matched,
                    "first_at": result.first_at,
                    "last_at": result.last_at,
                    "raw_total": result.raw_total,
                    "max_points": result.rule.max_points,
                    "capped": result.capped,
                    "decayed": result.decayed,
                    "decays": result.rule.decays,
                    "window_days": result.rule.window_days,
                    "contribution": result.contribution,
                    "events": [{"event_id": e.event_id, "type": e.type, "occurred_at": e.occurred_at} for e in events],
                }
            )
    score, scored = explanation.score, explanation.result
    suppressed_by = explanation.suppressed_by
    return {
        "lead": lead.public_id,
        "model": explanation.model.slug if explanation.model else None,
        "model_name": explanation.model.name if explanation.model else None,
        "ruleset_version": explanation.ruleset.version if explanation.ruleset else None,
        "as_of": explanation.as_of,
        "score": score.score if score else ZERO,
        "fit_score": score.fit if score else ZERO,
        "behaviour_score": score.behaviour if score else ZERO,
        "grade": score.grade if score else "",
        "last_intent_at": scored.last_intent_at if scored else None,
        "behaviour_since_recycled": scored.behaviour_since if scored else None,
        "suppressed_by": {"rule_id": suppressed_by.pk, "name": suppressed_by.name} if suppressed_by else None,
        "adds_up": explanation.adds_up,
        "needs_rescore": lead.needs_rescore,
        "rules": rules,
    }


def explanation_event_points(explanation: Explanation) -> dict[int, Decimal]:
    """What each event contributed to the explained behaviour score, by event id: for
    each behaviour rule, the event's points, decayed to the moment of scoring (the
    engine's own ``decayed_term``). Where a rule's cap was reached, the events past it
    (in the order the engine sums them, oldest first) add only what the cap left, down
    to nothing; the cent the rule's rounding adds or takes goes to its latest event. So
    the points of the events sum exactly to the behaviour score. An event behind no rule
    is absent."""
    result, ruleset = explanation.result, explanation.ruleset
    if result is None or ruleset is None or explanation.as_of is None:
        return {}
    points: dict[int, Decimal] = {}
    for rule_result in result.results:
        rule = rule_result.rule
        if rule.kind != RuleKind.BEHAVIOUR or not rule_result.event_ids:
            continue
        half_life = engine.rule_half_life(rule, ruleset.decay_half_life_days)
        running = engine.ZERO
        for event_id in rule_result.event_ids:
            event = explanation.events[event_id]
            term = engine.decayed_term(rule.points, event.occurred_at, explanation.as_of, half_life)
            added = engine.cap(running + term, rule.max_points) - engine.cap(running, rule.max_points)
            running += term
            points[event_id] = points.get(event_id, engine.ZERO) + added
        last = rule_result.event_ids[-1]
        points[last] += rule_result.contribution - engine.cap(running, rule.max_points)
    return points


def _preview_rows(items: list[PreviewLead]) -> list[dict[str, Any]]:
    return [
        {
            "id": item.public_id,
            "email": item.email,
            "name": item.name,
            "stage": item.stage,
            "score_before": item.score_before,
            "score_after": item.score_after,
            "change": item.change,
        }
        for item in items
    ]


@dataclass(frozen=True)
class PreviewCategory:
    """A way the draft leaves a lead's stage, as the preview names and explains it."""

    key: str
    label: str
    description: str


# The stage categories of the preview (``scoring.selectors.PREVIEW_COUNTS``), in the order the
# page shows them; the *leave* totals (no longer + already below) are the API's alone.
PREVIEW_CATEGORIES = (
    PreviewCategory(
        selectors.ENTER_SQL, "Would newly become SQL", "Publishing moves them to SQL and opens a handoff to sales."
    ),
    PreviewCategory(selectors.ENTER_MQL, "Would newly become MQL", "Publishing moves them to MQL."),
    PreviewCategory(
        selectors.NO_LONGER_SQL,
        "SQLs that would no longer qualify",
        "At or above the published SQL threshold now, below this draft's: the draft's doing. "
        "Publishing keeps them at SQL.",
    ),
    PreviewCategory(
        selectors.NO_LONGER_MQL,
        "MQLs that would no longer qualify",
        "At or above the published MQL threshold now, below this draft's: the draft's doing. "
        "Publishing keeps them at MQL.",
    ),
    PreviewCategory(
        selectors.ALREADY_BELOW_SQL,
        "SQLs already below under the published rules",
        "Below the published SQL threshold now and below this draft's too: not the draft's doing.",
    ),
    PreviewCategory(
        selectors.ALREADY_BELOW_MQL,
        "MQLs already below under the published rules",
        "Below the published MQL threshold now (stale MQLs) and below this draft's too: not the draft's doing.",
    ),
    PreviewCategory(
        selectors.BACK_ABOVE_SQL,
        "SQLs back above the threshold",
        "Below the published SQL threshold now, at or above this draft's.",
    ),
    PreviewCategory(
        selectors.BACK_ABOVE_MQL,
        "MQLs back above the threshold",
        "Below the published MQL threshold now (stale MQLs), at or above this draft's.",
    ),
    PreviewCategory(
        selectors.LEAVE_SQL,
        "SQLs below this draft's threshold",
        "Every SQL below this draft's SQL threshold: those that would no longer qualify and those already below.",
    ),
    PreviewCategory(
        selectors.LEAVE_MQL,
        "MQLs below this draft's threshold",
        "Every MQL below this draft's MQL threshold: those that would no longer qualify and those already below.",
    ),
)


# --- The draft against the published ruleset, in words ---------------------------------------
RULE_ASPECT_LABELS = {
    "name": "Name",
    "points": "Points",
    "condition": "Condition",
    "cap": "Cap",
    "window": "Window",
    "decay": "Decay",
}

# The ruleset's settings, named as the ruleset form names them.
SETTING_LABELS = {
    "mql_threshold": "MQL threshold",
    "sql_threshold": "SQL threshold",
    "intent_event_types": "Intent events",
    "sql_min_fit": "Minimum fit for SQL",
    "decay_half_life_days": "Decay half-life (days)",
    "grade_a_min": "Grade A from fit",
    "grade_b_min": "Grade B from fit",
    "grade_c_min": "Grade C from fit",
    "grade_d_min": "Grade D from fit",
    "mql_min_grade": "Minimum grade for MQL",
    "sql_min_grade": "Minimum grade for SQL",
    "intent_window_days": "Intent window (days)",
    "requalify_threshold": "Requalification threshold",
    "mqa_threshold": "MQA threshold",
}
# Settings that are scores or points: two decimals, as every page shows them.
SCORE_SETTINGS = {
    "mql_threshold",
    "sql_threshold",
    "sql_min_fit",
    "grade_a_min",
    "grade_b_min",
    "grade_c_min",
    "grade_d_min",
    "requalify_threshold",
    "mqa_threshold",
}


def points_text(value: Decimal) -> str:
    """Points as every page shows them, signed and with two decimals: ``+12.50``."""
    return f"{value:+.2f}"


def _setting_text(name: str, value: Any) -> str:
    if value is None or value == "" or value == []:
        return {"decay_half_life_days": "no decay", "mql_min_grade": "any grade", "sql_min_grade": "any grade"}.get(
            name, "none"
        )
    if name in SCORE_SETTINGS:
        return f"{Decimal(value):.2f}"
    if name == "decay_half_life_days":
        return f"{rule_value_text(Decimal(value))} days"
    if name == "intent_window_days":
        return f"{value} days"
    if name == "intent_event_types":
        return ", ".join(value)
    return str(value)


def _setting_row(change: SettingChange) -> dict[str, str]:
    return {
        "field": change.field,
        "label": SETTING_LABELS.get(change.field, change.field),
        "before": _setting_text(change.field, change.before),
        "after": _setting_text(change.field, change.after),
    }


def _condition_text(rule: RuleSpec) -> str:
    # The window is an aspect of its own: the condition without it.
    return describe_rule(replace(rule, window_days=None)) or "—"


def _aspect_text(rule: RuleSpec, aspect: str) -> str:
    if aspect == "name":
        return rule.name
    if aspect == "points":
        return points_text(rule.points)
    if aspect == "condition":
        return _condition_text(rule)
    if aspect == "cap":
        return "no cap" if rule.max_points is None else f"at most {points_text(rule.max_points)} per lead"
    if aspect == "window":
        return "no window" if rule.window_days is None else f"the last {rule.window_days} days"
    return "decays" if rule.decays else "keeps its full value"


def _rule_row(pair: RulePair, matches: dict[int, int]) -> dict[str, Any]:
    rule = pair.rule
    changes = []
    if pair.before is not None and pair.after is not None:
        changes = [
            {
                "field": aspect,
                "label": RULE_ASPECT_LABELS[aspect],
                "before": _aspect_text(pair.before, aspect),
                "after": _aspect_text(pair.after, aspect),
            }
            for aspect in pair.changed
        ]
    return {
        "status": pair.status,
        "rule_id": pair.after.id if pair.after else None,
        "published_rule_id": pair.before.id if pair.before else None,
        "name": rule.name,
        "kind": rule.kind,
        "kind_label": str(RuleKind(rule.kind).label) if rule.kind in RuleKind.values else rule.kind,
        "condition": describe_rule(rule) or "—",
        "points": None if rule.kind == RuleKind.SUPPRESS else rule.points,
        # Leads the rule matches under the draft; under the published ruleset for a rule
        # removed or changed (an unchanged rule matches the same leads).
        "leads": matches.get(pair.after.id) if pair.after else None,
        "leads_published": matches.get(pair.before.id) if pair.before and pair.status != "unchanged" else None,
        "changes": changes,
    }


RULE_STATUSES = ("added", "removed", "changed", "unchanged")


def preview_diff_data(preview: Preview) -> dict[str, Any]:
    """The draft against the model's published ruleset: its settings changed, and its rules
    added, removed, changed (each change old → new, in the rule form's words) and unchanged."""
    rows = [_rule_row(pair, preview.matches) for pair in preview.rule_pairs]
    return {
        "published_version": preview.published_version,
        "no_changes": preview.unchanged,
        "settings": [_setting_row(change) for change in preview.settings_changed],
        **{status: [row for row in rows if row["status"] == status] for status in RULE_STATUSES},
    }


def preview_data(preview: Preview) -> dict[str, Any]:
    return {
        "ruleset_version": preview.ruleset_version,
        "published_version": preview.published_version,
        "leads": preview.leads,
        "stages_before": preview.stages_before,
        "stages_after": preview.stages_after,
        "counts": preview.counts,
        "categories": [
            {
                "key": category.key,
                "label": category.label,
                "description": category.description,
                "count": preview.counts.get(category.key, 0),
            }
            for category in PREVIEW_CATEGORIES
        ],
        **{key: _preview_rows(items) for key, items in preview.listed.items()},
        "movers": {"up": _preview_rows(preview.movers_up), "down": _preview_rows(preview.movers_down)},
        "diff": preview_diff_data(preview),
        "histogram_before": preview.histogram_before,
        "histogram_after": preview.histogram_after,
    }


# --- Qualification criteria (the lead page; the leads list: ``scoring.qualification``) ---------
def explanation_qualifications(explanation: Explanation) -> list[Qualification]:
    """The explained lead's MQL and SQL criteria under the ruleset that computed its
    score (the lead page): empty when the model has not scored it."""
    score, ruleset, lead = explanation.score, explanation.ruleset, explanation.lead
    if score is None or ruleset is None:
        return []
    spec = ruleset_spec(ruleset)
    qualifications = [
        lead_qualification(
            spec, score, model_name=ruleset.model.name, stage=lead.stage, recycled_at=lead.recycled_at, target=target
        )
        for target in (Stage.MQL, Stage.SQL)
    ]
    mql, sql = qualifications
    return [mql, replace(sql, stale_mql=False)]  # a stale MQL is said once, beside the MQL criteria
