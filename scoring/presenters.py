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
from scoring import engine
from scoring.engine import TRAIT_PREFIX, RuleSpec
from scoring.models import Operator, Rule, RuleKind, RuleSet
from scoring.qualification import lead_qualification
from scoring.selectors import Explanation, Preview, PreviewLead, ruleset_spec

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
        }
        for item in items
    ]


def preview_data(preview: Preview) -> dict[str, Any]:
    return {
        "ruleset_version": preview.ruleset_version,
        "leads": preview.leads,
        "stages_before": preview.stages_before,
        "stages_after": preview.stages_after,
        "counts": preview.counts,
        "enter_mql": _preview_rows(preview.enter_mql),
        "enter_sql": _preview_rows(preview.enter_sql),
        "leave_mql": _preview_rows(preview.leave_mql),
        "leave_sql": _preview_rows(preview.leave_sql),
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
