"""A lead's state against a model's qualification criteria, in words: the criteria are
the engine's (``engine.mql_criteria``/``sql_criteria``, the very ones the stage
transitions apply); this says what each means for the lead ("score 66.00 ≥ SQL threshold
60.00", "needs a demo request or contact request"). The lead page and the leads list
(``selectors.LeadScores.qualifications``) both show these."""

from datetime import datetime
from decimal import Decimal

from leadflow.leads.models import Stage
from leadflow.leads.scores import CriterionState, Qualification
from leadflow.leads.templatetags.leadflow_ui import score as points
from scoring import engine
from scoring.engine import Criterion, RuleSetSpec
from scoring.models import Score


def intent_types_text(spec: RuleSetSpec) -> str:
    """The hand-raise event types in words: "demo request or contact request"."""
    names = [event_type.replace("_", " ") for event_type in spec.intent_event_types]
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " or " + names[-1]


def _criterion_text(
    criterion: Criterion,
    spec: RuleSetSpec,
    *,
    target: str,
    score: Decimal,
    fit: Decimal,
    grade: str,
    behaviour_since: Decimal | None,
    last_intent_at: datetime | None,
    recycled_at: datetime | None,
) -> tuple[str, str]:
    """(label, text) of one criterion of ``engine.mql_criteria``/``sql_criteria``."""
    stage = "MQL" if target == Stage.MQL else "SQL"
    met = criterion.met
    if criterion.key == "suppression":
        return "not suppressed", "a suppression rule matched: this model never promotes the lead"
    if criterion.key == "score":
        threshold = spec.mql_threshold if target == Stage.MQL else spec.sql_threshold
        if met:
            return "score", f"score {points(score)} ≥ {stage} threshold {points(threshold)}"
        return "score", f"score {points(score)} is below the {stage} threshold {points(threshold)}"
    if criterion.key == "fit":
        if spec.sql_min_fit is None:
            return "fit", "no minimum fit"
        relation = "≥" if met else "is below"
        return "fit", f"fit {points(fit)} {relation} the minimum {points(spec.sql_min_fit)}"
    if criterion.key == "grade":
        minimum = spec.mql_min_grade if target == Stage.MQL else spec.sql_min_grade
        if met:
            return "grade", f"grade {grade or '—'} reaches {minimum}"
        return "grade", f"needs grade {minimum} or better (has {grade or '—'})"
    if criterion.key == "requalification":
        since, needed = points(behaviour_since), points(spec.requalify_threshold)
        if met:
            return "new activity", f"{since} behaviour points since recycling ≥ {needed}"
        return "new activity", f"needs {needed} behaviour points since recycling (has {since})"
    # intent
    window = f"{spec.intent_window_days}-day intent window"
    if not spec.intent_event_types:
        return "intent", "no hand-raise event type is set: this model makes no SQL"
    if met:
        return "intent", f"a hand-raise inside the {window}"
    wanted = intent_types_text(spec)
    if recycled_at is not None and last_intent_at is not None:
        return "intent", f"needs a new {wanted} since it was recycled"
    return "intent", f"needs a {wanted} (inside the {window})"


def lead_qualification(
    spec: RuleSetSpec,
    row: Score,
    *,
    model_name: str,
    stage: str,
    recycled_at: datetime | None,
    target: str | None = None,
) -> Qualification:
    """A lead's state against the model's criteria (``engine.mql_criteria`` or
    ``sql_criteria``, the very ones the stage transitions apply) for ``target``: by default
    the lead's next stage, MQL for a new or recycled lead, SQL otherwise. ``row`` is the
    lead's score under the model."""
    score, fit, grade, last_intent_at = row.score, row.fit, row.grade, row.last_intent_at
    suppressed, behaviour_since = row.suppressed_by is not None, row.behaviour_since_recycled
    target = target or (Stage.MQL if stage in (Stage.NEW, Stage.RECYCLED) else Stage.SQL)
    if target == Stage.MQL:
        criteria = engine.mql_criteria(
            spec,
            score=score,
            grade=grade,
            suppressed=suppressed,
            recycled=stage == Stage.RECYCLED,
            behaviour_since=behaviour_since,
        )
    else:
        criteria = engine.sql_criteria(
            spec,
            score=score,
            fit=fit,
            grade=grade,
            suppressed=suppressed,
            last_intent_at=last_intent_at,
            recycled_at=recycled_at,
        )
    states = []
    for criterion in criteria:
        label, text = _criterion_text(
            criterion,
            spec,
            target=target,
            score=score,
            fit=fit,
            grade=grade,
            behaviour_since=behaviour_since,
            last_intent_at=last_intent_at,
            recycled_at=recycled_at,
        )
        states.append(CriterionState(key=criterion.key, label=label, met=criterion.met, text=text))
    stale = stage == Stage.MQL and not engine.reaches_mql_threshold(spec, score)
    return Qualification(model_name=model_name, target=target, criteria=tuple(states), stale_mql=stale)
