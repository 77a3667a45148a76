"""Suggested points: learn from sales' verdicts which rules predict an accepted handoff, and
propose them as an ordinary **draft** ruleset, so every score still explains itself exactly.

``ruleset_suggest`` takes the decided handoffs (accepted or rejected) of the ruleset's model,
each evaluated by the ruleset **as of the handoff's creation** (``handoff.quality``), and fits
a logistic regression of "accepted" on the rules' units (a fit rule 1 or 0, a behaviour rule
its capped, decayed count of events: contribution ÷ points):

* **Held-out split**: a stratified 30 % of the decided handoffs (``random_state`` fixed, so the
  same history gives the same draft) is never seen by the fit; both AUCs are measured there.
  The points come from the 70 % fit, so the held-out AUC is an honest measure of them.
* **L2-regularised, on standardised units**: behaviour units run from 0 to a cap of many
  events, fit units are 0 or 1; on raw units one penalty would shrink a rule more or less
  according to its unit. Standardised (each column centred and divided by its standard
  deviation on the training split), the penalty weighs every rule alike: a rule's weight is
  shrunk by how little evidence there is, not by how its events are counted. The weights are
  turned back into log-odds **per unit** (÷ the standard deviation), which is what points are.
* **Interval** of each coefficient: 95 %, Wald, from the inverse of the penalised Hessian at
  the fit, ``Z'WZ + I/C`` (``W`` = p(1-p), the intercept unpenalised), in standardised units
  and then per unit. Cheap (no refits) and consistent with the penalty; being a Wald interval
  around a shrunk estimate, it is a guide, not an exact confidence interval.
* **Rescaled** to the ruleset's range: points = k × log-odds per unit, with k chosen so that the
  sum of the positive points of the fitted rules equals the old one (when no fitted rule comes
  out positive: the sum of absolute points). Thresholds thus keep their meaning roughly: the
  highest reachable score stays about where it was.
* **Rounded** to readable values: multiples of 5 from 20 points up, whole points below; never
  0 (a rule cannot have 0 points): a weight that rounds to 0 becomes ±1 and says so (delete
  the rule if you agree). A behaviour rule's cap is scaled by the same factor as its points
  (so its units, and the history's evaluation, stay the same) and rounded alike.
* Rules that never fired among the decided handoffs, or fired for every one of them (nothing to
  compare), are left out of the fit and keep their old points; suppression rules and every
  setting of the ruleset are copied unchanged.
* **Intent rules** (behaviour rules counting one of the ruleset's hand-raise event types) are
  left out too and keep their points: a lead becomes an SQL *because* it raised its hand, so
  nearly every handoff has fired them and the few that did not are odd cases (a hand moved by
  a person, an intent outside the rule's window). Their fitted weight would be an artefact of
  that selection, nearly collinear with the intercept — on the demo's history it came out
  negative — and lowering it would slow every future hand-raiser's path to sales.
* **Thresholds** are kept unless ``keep_thresholds=False``: then the SQL threshold is set so that
  the draft's points put as many of the historical handoffs (all of them, decided or not) at or
  above it as the old points did (never below the MQL threshold, which stays).

Below ``SUGGEST_MIN_DECIDED`` decided handoffs, or fewer than ``SUGGEST_MIN_PER_CLASS``
accepted or rejected ones, the suggestion is refused (``SuggestionRefused``: the API answers
409 with its message). The draft is made through scoring's services (clone, then each rule's
points) and keeps, in ``RuleSet.suggestion``, rule by rule the old and new points and why, and
the held-out AUC of the old, the suggested and flat points (every rule alike).
"""

import time
from dataclasses import asdict, dataclass
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from handoff.quality import HandoffEvaluation, ruleset_evaluate_handoffs
from scoring import services as scoring_services
from scoring.models import Rule, RuleKind, RuleSet

if TYPE_CHECKING:
    from sklearn.linear_model import LogisticRegression

HELD_OUT = 0.3
RANDOM_STATE = 14
REGULARISATION_C = 1.0  # sklearn's C: the inverse of the L2 penalty on standardised weights
Z_95 = 1.959964
ROUND_TO_FIVE_FROM = Decimal(20)
NAME_MAX = 120
CENTS = Decimal("0.01")


class SuggestionRefused(scoring_services.ScoringError):
    """Not enough verdicts to learn from; the message says how many there are and are needed."""


@dataclass(frozen=True)
class RuleSuggestion:
    """One rule of the draft: its old and new points and cap, and why."""

    rule_id: int  # the draft's rule
    name: str
    kind: str
    old_points: str
    new_points: str
    old_max_points: str | None
    new_max_points: str | None
    fired: int  # decided handoffs where the rule matched
    fitted: bool
    coefficient: float | None  # log-odds of acceptance per unit
    low: float | None
    high: float | None
    why: str


# --- The numbers ---------------------------------------------------------------------------------
def readable_points(value: float) -> Decimal:
    """Multiples of 5 from 20 up (in absolute value), whole points below; never 0."""
    magnitude = Decimal(str(abs(value)))
    if magnitude >= ROUND_TO_FIVE_FROM:
        rounded = (magnitude / 5).quantize(Decimal(1), rounding=ROUND_HALF_UP) * 5
    else:
        rounded = magnitude.quantize(Decimal(1), rounding=ROUND_HALF_UP)
    rounded = max(rounded, Decimal(1))
    return rounded if value >= 0 else -rounded


# scikit-learn is imported where a suggestion is made, not with this module: the URLconf
# imports it, and importing scikit-learn costs every web process about a second at its
# first request (measured: 0.9 s of the 1.1 s this module took to import).
def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return round(float(roc_auc_score(labels, scores)), 4)


def _intervals(z: np.ndarray, model: "LogisticRegression") -> np.ndarray:
    """Standard errors of the standardised weights: the inverse of the penalised Hessian of
    the log-likelihood at the fit, ``X'WX + I/C`` with the intercept (first column) unpenalised."""
    x = np.hstack([np.ones((z.shape[0], 1)), z])
    p = model.predict_proba(z)[:, 1]
    hessian = x.T @ (x * (p * (1 - p))[:, None])
    penalty = np.full(x.shape[1], 1 / REGULARISATION_C)
    penalty[0] = 0.0
    covariance = np.linalg.pinv(hessian + np.diag(penalty))
    return np.sqrt(np.clip(np.diag(covariance)[1:], 0, None))


@dataclass(frozen=True)
class _Fit:
    per_unit: np.ndarray  # log-odds per unit, one per fitted column
    low: np.ndarray
    high: np.ndarray
    train: np.ndarray  # row indices
    test: np.ndarray


def _fit(units: np.ndarray, labels: np.ndarray) -> _Fit:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    rows = np.arange(len(labels))
    train, test = train_test_split(rows, test_size=HELD_OUT, stratify=labels, random_state=RANDOM_STATE)
    x = units[train]
    mean, spread = x.mean(axis=0), x.std(axis=0)
    spread = np.where(spread > 0, spread, 1.0)  # a column constant on the training split: weight 0
    z = (x - mean) / spread
    model = LogisticRegression(C=REGULARISATION_C, max_iter=1000)
    model.fit(z, labels[train])
    weights = model.coef_[0]
    errors = _intervals(z, model)
    return _Fit(
        per_unit=weights / spread,
        low=(weights - Z_95 * errors) / spread,
        high=(weights + Z_95 * errors) / spread,
        train=train,
        test=test,
    )


def _scale(old: list[Decimal], per_unit: np.ndarray) -> float:
    """Points per log-odds unit: the fitted rules' sum of positive points is kept (else the sum
    of absolute points)."""
    positive_old = float(sum((p for p in old if p > 0), Decimal(0)))
    positive_new = float(per_unit[per_unit > 0].sum())
    if positive_old > 0 and positive_new > 0:
        return positive_old / positive_new
    total = float(np.abs(per_unit).sum())
    return float(sum(abs(p) for p in old)) / total if total > 0 else 0.0


def _why(coefficient: float, low: float, high: float) -> str:
    if low > 0:
        verdict = "more accepted when it fires"
    elif high < 0:
        verdict = "fewer accepted when it fires"
    else:
        verdict = "no clear effect (the interval spans 0)"
    return f"{verdict}: {coefficient:+.3f} log-odds per unit (95 % interval {low:+.3f} to {high:+.3f})"


def _is_intent(rule: Rule, ruleset: RuleSet) -> bool:
    return rule.kind == RuleKind.BEHAVIOUR and rule.event_type in (ruleset.intent_event_types or [])


# --- The service ---------------------------------------------------------------------------------
def _refuse_if_too_few(decided: list[HandoffEvaluation]) -> tuple[int, int]:
    accepted = sum(1 for e in decided if e.accepted)
    rejected = len(decided) - accepted
    need, per_class = settings.SUGGEST_MIN_DECIDED, settings.SUGGEST_MIN_PER_CLASS
    if len(decided) < need or accepted < per_class or rejected < per_class:
        raise SuggestionRefused(
            f"Not enough decided handoffs to suggest points: {len(decided)} decided ({accepted} accepted, "
            f"{rejected} rejected); at least {need} are needed, with {per_class} accepted and {per_class} "
            "rejected. Let sales decide more handoffs first."
        )
    return accepted, rejected


def _scaled_cap(rule: Rule, new_points: Decimal) -> Decimal | None:
    if rule.max_points is None:
        return None
    cap = readable_points(float(rule.max_points * new_points / rule.points))
    return cap if abs(cap) >= abs(new_points) else new_points


def _sql_threshold(
    ruleset: RuleSet, evaluations: list[HandoffEvaluation], rules: list[Rule], points: dict[int, Decimal]
) -> Decimal:
    """The SQL threshold at which the new points put as many historical handoffs at or above
    it as the old threshold and points did."""
    before = sum(1 for e in evaluations if e.score >= ruleset.sql_threshold)
    if before == 0:
        return ruleset.sql_threshold
    after = sorted(
        (sum((e.units.get(r.id, Decimal(0)) * points[r.id] for r in rules), Decimal(0)) for e in evaluations),
        reverse=True,
    )
    threshold = after[before - 1].quantize(Decimal(1), rounding=ROUND_FLOOR)
    return max(threshold, ruleset.mql_threshold)


def ruleset_suggest(*, ruleset: RuleSet, user: Any, keep_thresholds: bool = True) -> RuleSet:
    """A new draft of the ruleset's model with suggested points (see the module's docstring),
    its reasons in ``suggestion``. Raises SuggestionRefused below the minimum of verdicts."""
    started = time.monotonic()
    evaluations = ruleset_evaluate_handoffs(ruleset=ruleset)
    decided = [e for e in evaluations if e.decided]
    accepted, rejected = _refuse_if_too_few(decided)
    rules = [rule for rule in ruleset.rules.all() if rule.kind != RuleKind.SUPPRESS]
    if not rules:
        raise SuggestionRefused(f"Ruleset v{ruleset.version} has no rules with points to suggest.")

    units = np.array([[float(e.units.get(rule.id, 0)) for rule in rules] for e in decided], dtype=float)
    labels = np.array([1 if e.accepted else 0 for e in decided])
    fired = (units != 0).sum(axis=0)
    varies = units.std(axis=0) > 0
    intent = [_is_intent(rule, ruleset) for rule in rules]
    columns = [index for index in range(len(rules)) if varies[index] and not intent[index]]
    if not columns:
        raise SuggestionRefused("No rule tells the decided handoffs apart (each fired for all or none of them).")
    fit = _fit(units[:, columns], labels)
    scale = _scale([rules[i].points for i in columns], fit.per_unit)

    new_points: dict[int, Decimal] = {rule.id: rule.points for rule in rules}
    per_rule: dict[int, tuple[float, float, float, str]] = {}
    for position, index in enumerate(columns):
        rule = rules[index]
        coefficient = float(fit.per_unit[position])
        low, high = float(fit.low[position]), float(fit.high[position])
        why = _why(coefficient, low, high)
        raw = coefficient * scale
        points = readable_points(raw) if raw != 0 else (Decimal(1) if rule.points > 0 else Decimal(-1))
        if abs(raw) < 0.5:
            why += f"; its weight rounds to 0, kept at {points:+} (a rule cannot have 0 points: delete it if you agree)"
        new_points[rule.id] = points
        per_rule[rule.id] = (coefficient, low, high, why)

    old_scores = units @ np.array([float(rule.points) for rule in rules])
    new_scores = units @ np.array([float(new_points[rule.id]) for rule in rules])
    flat_scores = units.sum(axis=1)
    test = fit.test
    thresholds_note = "kept"
    sql_threshold = ruleset.sql_threshold
    if not keep_thresholds:
        sql_threshold = _sql_threshold(ruleset, evaluations, rules, new_points)
        sql_threshold = sql_threshold.quantize(CENTS)
        thresholds_note = f"SQL threshold re-derived: {ruleset.sql_threshold} → {sql_threshold}"

    with transaction.atomic():
        draft = scoring_services.ruleset_clone(ruleset=ruleset, user=user)
        # The clone's rules were inserted in the original's order: pair them by that order.
        draft_rules = list(Rule.objects.filter(ruleset=draft).order_by("position", "id"))
        originals = list(ruleset.rules.all().order_by("position", "id"))
        rows: list[RuleSuggestion] = []
        for original, copy in zip(originals, draft_rules, strict=True):
            if original.kind == RuleKind.SUPPRESS:
                continue
            points = new_points[original.id]
            cap = _scaled_cap(original, points)
            if points != original.points or cap != original.max_points:
                scoring_services.rule_update(
                    rule=copy, changes=scoring_services.RuleChanges(points=points, max_points=cap)
                )
            index = rules.index(original)
            learnt = per_rule.get(original.id)
            if learnt is None and intent[index]:
                why = (
                    f"counts a hand-raise ({original.event_type}): every SQL has one, so sales' verdicts "
                    "cannot measure it; old points kept"
                )
            elif learnt is None:
                how = "never fired" if fired[index] == 0 else "fired for every one"
                why = f"{how} among the {len(decided)} decided handoffs: nothing to learn, old points kept"
            else:
                why = learnt[3]
            rows.append(
                RuleSuggestion(
                    rule_id=copy.id,
                    name=original.name,
                    kind=original.kind,
                    old_points=str(original.points),
                    new_points=str(points.quantize(CENTS)),
                    old_max_points=None if original.max_points is None else str(original.max_points),
                    new_max_points=None if cap is None else str(cap.quantize(CENTS)),
                    fired=int(fired[index]),
                    fitted=learnt is not None,
                    coefficient=None if learnt is None else round(learnt[0], 4),
                    low=None if learnt is None else round(learnt[1], 4),
                    high=None if learnt is None else round(learnt[2], 4),
                    why=why,
                )
            )
        name = f"{ruleset.name} · suggested"[:NAME_MAX]
        description = (
            f"Points suggested from {len(decided)} decided handoffs of v{ruleset.version} "
            f"({accepted} accepted, {rejected} rejected). Preview it, then publish if you agree."
        )
        changes = scoring_services.RuleSetChanges(name=name, description=description)
        if not keep_thresholds:
            changes = scoring_services.RuleSetChanges(name=name, description=description, sql_threshold=sql_threshold)
        scoring_services.ruleset_update(ruleset=draft, changes=changes)
        suggestion = {
            "from_version": ruleset.version,
            "created_at": timezone.now().isoformat(),
            "decided": len(decided),
            "accepted": accepted,
            "rejected": rejected,
            "trained_on": len(fit.train),
            "held_out": len(test),
            "auc_old": _auc(labels[test], old_scores[test]),
            "auc_suggested": _auc(labels[test], new_scores[test]),
            "auc_flat": _auc(labels[test], flat_scores[test]),
            "points_per_log_odds": round(scale, 4),
            "regularisation_c": REGULARISATION_C,
            "thresholds": thresholds_note,
            "seconds": round(time.monotonic() - started, 3),
            "rules": [asdict(row) for row in rows],
        }
        return scoring_services.ruleset_suggestion_record(ruleset=draft, suggestion=suggestion)
