"""Reads of scoring: the published ruleset as an engine spec, rulesets, runs."""

from django.db.models import QuerySet

from scoring.engine import RuleSetSpec, RuleSpec
from scoring.models import RescoreRun, Rule, RuleSet, RuleSetStatus


def rule_spec(rule: Rule) -> RuleSpec:
    return RuleSpec(
        id=rule.pk,
        kind=rule.kind,
        name=rule.name,
        points=rule.points,
        event_type=rule.event_type,
        attribute=rule.attribute,
        operator=rule.operator,
        value=rule.value,
        max_points=rule.max_points,
        window_days=rule.window_days,
    )


def ruleset_spec(ruleset: RuleSet) -> RuleSetSpec:
    return RuleSetSpec(
        version=ruleset.version,
        mql_threshold=ruleset.mql_threshold,
        sql_threshold=ruleset.sql_threshold,
        intent_event_types=tuple(ruleset.intent_event_types),
        sql_min_fit=ruleset.sql_min_fit,
        decay_half_life_days=ruleset.decay_half_life_days,
        rules=tuple(rule_spec(rule) for rule in ruleset.rules.all()),
    )


def published_ruleset() -> RuleSet | None:
    return RuleSet.objects.filter(status=RuleSetStatus.PUBLISHED).prefetch_related("rules").first()


def ruleset_by_version(version: int) -> RuleSet | None:
    return RuleSet.objects.filter(version=version).prefetch_related("rules").first()


def ruleset_list() -> QuerySet[RuleSet]:
    return RuleSet.objects.select_related("created_by", "published_by").prefetch_related("rules")


def rescore_run_latest() -> RescoreRun | None:
    return RescoreRun.objects.select_related("ruleset").first()
