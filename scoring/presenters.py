"""What scoring's reads look like to people: pure functions from the selectors' results
to the dicts and strings the API serializes and the pages render, so that both say the
same thing the same way."""

from dataclasses import replace
from decimal import Decimal
from typing import Any

from leadflow.leads.models import Stage
from leadflow.leads.scores import Qualification
from scoring.engine import RuleSpec
from scoring.models import RuleKind
from scoring.qualification import lead_qualification
from scoring.selectors import Explanation, Preview, PreviewLead, ruleset_spec

ZERO = Decimal("0.00")
EXPLAINED_EVENTS = 20  # the most recent events shown behind each rule


def describe_rule(rule: RuleSpec) -> str:
    condition = f"{rule.attribute} {rule.operator} {rule.value!r}" if rule.has_condition else ""
    if rule.kind == RuleKind.FIT or (rule.kind == RuleKind.SUPPRESS and not rule.event_type):
        return condition
    if rule.kind == RuleKind.SUPPRESS:
        return f"any {rule.event_type}" + (f" where {condition}" if condition else "")
    parts = [f"each {rule.event_type}"]
    if condition:
        parts.append(f"where {condition}")
    if rule.window_days:
        parts.append(f"in the last {rule.window_days} days")
    return " ".join(parts)


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
