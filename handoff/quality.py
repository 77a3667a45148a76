"""Score quality: a ruleset's score of each handoff's lead **as of the handoff's creation**
(point-in-time), beside what sales and the CRM said of it afterwards.

``ruleset_evaluate_handoffs`` is the one definition every measure builds on (the quality
report, the backtest of a draft, suggested points):

* The handoffs of a ruleset are those of its scoring model: the model that opened them
  (``Handoff.model``) or one of the models that qualified the lead at once
  (``Handoff.qualified_by``, PostgreSQL only). Handoffs opened by hand (no model) and
  those of erased leads are left out.
* The lead is scored by the pure engine (``scoring.engine.score_lead``) as of
  ``handoff.created_at``, from its events with ``occurred_at <= created_at`` only, with
  the recycling in force then (the latest StageChange to ``recycled`` by that time), and
  with its attributes (fit) as kept on the handoff when it opened
  (``Handoff.lead_attributes``): nothing that happened later leaks in — a job title sales
  corrected after the call does not make the fit rules look predictive. Handoffs opened
  before the attributes were kept (migration ``handoff/0015``) use today's.
* Labels are read fresh every time: ``accepted`` (True, False when rejected, None while
  undecided or closed by hand), ``won`` (True when the lead has a ``won`` outcome at or
  after the handoff's creation; False when it has a ``lost`` one and no win since, or sales
  rejected the handoff; None otherwise: no verdict from the CRM yet).
* Evaluations under a published or archived ruleset (its rules never change again) are
  kept in ``CachedEvaluation`` and computed only for the handoffs missing there; a draft's
  are computed every time.

Loading is set-based: three queries for the handoffs and their labels (the handoffs, their
leads' outcomes, their leads' recyclings), one for the cached evaluations, then per chunk
of ``EVALUATION_CHUNK`` missing handoffs one query for their leads and one for their events
up to the handoff's creation (a join on the handoff's ``created_at``) — never a query per
handoff. The quality report adds what sales confirmed on accepting (the accept checklist,
an outcome of the handoff beside the CRM's): one query for the checklists of all its
handoffs, one for the checklist's items.
"""

import bisect
import json
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import F, Q, QuerySet, TextField
from django.db.models.functions import Cast

from handoff.models import CachedEvaluation, Handoff, HandoffStatus, RejectReason
from handoff.selectors import ConfirmationRate, checklist_items, handoffs_checklists
from leadflow.leads.models import Event, Outcome, OutcomeKind, Stage, StageChange
from scoring import engine
from scoring.engine import EventRow, LeadScore, RuleSetSpec
from scoring.models import RuleSet, RuleSetStatus
from scoring.selectors import LEAD_ATTRIBUTE_FIELDS, ruleset_spec

EVALUATION_CHUNK = 2000
IMMUTABLE_STATUSES = (RuleSetStatus.PUBLISHED, RuleSetStatus.ARCHIVED)
UNITS_QUANTUM = Decimal("0.000001")


@dataclass(frozen=True)
class HandoffEvaluation:
    """One handoff, its lead scored by a ruleset as of the handoff's creation, and its labels.

    ``contributions``: rule id → points the rule gave (fit and behaviour rules; they add up to
    ``score``). ``units``: rule id → the rule's matched amount before points (a fit rule 1 or 0;
    a behaviour rule its capped, decayed count of matching events: contribution ÷ points)."""

    handoff_id: int
    lead_id: int
    created_at: datetime
    status: str
    accepted: bool | None
    won: bool | None
    reject_reason: str
    score: Decimal
    fit: Decimal
    behaviour: Decimal
    grade: str
    qualifies_sql: bool
    contributions: Mapping[int, Decimal]
    units: Mapping[int, Decimal]
    # The rules whose units are not 0: the ones that matched.
    fired_rules: frozenset[int]

    @property
    def decided(self) -> bool:
        return self.accepted is not None

    def fired(self, rule_id: int) -> bool:
        """Whether the rule matched (a fit rule's condition, a behaviour rule's events)."""
        return rule_id in self.fired_rules


@dataclass(frozen=True)
class _Labels:
    handoff_id: int
    lead_id: int
    created_at: datetime
    status: str
    reject_reason: str
    won: bool | None
    recycled_at: datetime | None

    @property
    def accepted(self) -> bool | None:
        if self.status == HandoffStatus.ACCEPTED:
            return True
        if self.status == HandoffStatus.REJECTED:
            return False
        return None


@dataclass(frozen=True)
class _Scored:
    score: Decimal
    fit: Decimal
    behaviour: Decimal
    grade: str
    qualifies_sql: bool
    contributions: Mapping[int, Decimal]
    units: Mapping[int, Decimal]
    fired_rules: frozenset[int]


# --- Which handoffs, and their labels --------------------------------------------------------
def ruleset_handoffs(*, ruleset: RuleSet, handoffs: QuerySet[Handoff] | None = None) -> QuerySet[Handoff]:
    """The handoffs of the ruleset's scoring model (of ``handoffs`` when given), leads not erased."""
    of_model = Q(model_id=ruleset.model_id)
    if connection.vendor == "postgresql":  # JSON containment: not on SQLite
        of_model |= Q(qualified_by__contains=[ruleset.model.slug])
    queryset = handoffs if handoffs is not None else Handoff.objects.all()
    return queryset.filter(of_model, lead__erased_at__isnull=True)


def _labels(handoffs: QuerySet[Handoff]) -> list[_Labels]:
    """The handoffs with their labels and the recycling in force at their creation: the
    handoffs, then the few outcomes and recyclings of their leads, matched here (a probe per
    handoff in SQL cost more than the three scans at 20k handoffs)."""
    leads = handoffs.values("lead_id")
    outcomes: dict[int, list[tuple[str, datetime]]] = defaultdict(list)
    rows = Outcome.objects.filter(lead_id__in=leads, kind__in=[OutcomeKind.WON, OutcomeKind.LOST])
    for lead_id, kind, occurred_at in rows.values_list("lead_id", "kind", "occurred_at").iterator(5000):
        outcomes[lead_id].append((kind, occurred_at))
    recyclings: dict[int, list[datetime]] = defaultdict(list)
    changes = StageChange.objects.filter(lead_id__in=leads, to_stage=Stage.RECYCLED).values_list("lead_id", "at")
    for lead_id, at in changes.iterator(5000):
        recyclings[lead_id].append(at)
    labels = []
    handoff_rows = handoffs.order_by("id").values_list("id", "lead_id", "created_at", "status", "reject_reason")
    for handoff_id, lead_id, created_at, status, reason in handoff_rows.iterator(5000):
        after = {kind for kind, occurred_at in outcomes.get(lead_id, ()) if occurred_at >= created_at}
        if OutcomeKind.WON in after:
            won: bool | None = True
        elif OutcomeKind.LOST in after or status == HandoffStatus.REJECTED:
            won = False
        else:
            won = None
        recycled_at = max((at for at in recyclings.get(lead_id, ()) if at <= created_at), default=None)
        labels.append(_Labels(handoff_id, lead_id, created_at, status, reason, won, recycled_at))
    return labels


# --- Scoring as of the handoff -----------------------------------------------------------------
def _scored(
    spec: RuleSetSpec,
    lead: dict[str, Any],
    events: Sequence[EventRow],
    labels: _Labels,
) -> _Scored:
    result: LeadScore = engine.score_lead(lead, events, spec, labels.created_at, labels.recycled_at)
    contributions: dict[int, Decimal] = {}
    units: dict[int, Decimal] = {}
    for rule_result in result.results:
        rule = rule_result.rule
        contributions[rule.id] = rule_result.contribution
        if rule.kind == "fit":
            units[rule.id] = Decimal(rule_result.matched)
        else:  # rules never have 0 points (``scoring.services.rule_validate``)
            units[rule.id] = (rule_result.contribution / rule.points).quantize(UNITS_QUANTUM)
    qualifies = engine.qualifies_sql(
        spec,
        score=result.total,
        fit=result.fit,
        grade=result.grade,
        suppressed=result.suppressed_by is not None,
        last_intent_at=result.last_intent_at,
        recycled_at=labels.recycled_at,
    )
    fired = frozenset(rule_id for rule_id, amount in units.items() if amount)
    return _Scored(result.total, result.fit, result.behaviour, result.grade, qualifies, contributions, units, fired)


def _events_until_handoff(handoff_ids: Sequence[int], types: Iterable[str]) -> dict[int, list[EventRow]]:
    """Each handoff's lead's events of these types that occurred by the handoff's creation,
    by handoff id: one query, joining the events to the handoffs on the lead and the time.
    (Both conditions on ``lead__handoffs`` sit in one ``filter``: one join, the same handoff.)"""
    rows = Event.objects.filter(
        type__in=list(types),
        lead__handoffs__id__in=handoff_ids,
        occurred_at__lte=F("lead__handoffs__created_at"),
    ).values_list("lead__handoffs__id", "id", "type", "properties", "occurred_at")
    grouped: dict[int, list[EventRow]] = defaultdict(list)
    for handoff_id, event_id, event_type, properties, occurred_at in rows.iterator(chunk_size=5000):
        grouped[handoff_id].append(
            EventRow(type=event_type, properties=properties, occurred_at=occurred_at, id=event_id)
        )
    return grouped


def _evaluate(spec: RuleSetSpec, labels: Sequence[_Labels]) -> Iterator[tuple[_Labels, _Scored]]:
    """Score each handoff's lead as of its creation, a chunk of handoffs at a time."""
    for start in range(0, len(labels), EVALUATION_CHUNK):
        chunk = labels[start : start + EVALUATION_CHUNK]
        ids = [label.handoff_id for label in chunk]
        leads = {
            row["id"]: row
            for row in Handoff.objects.filter(id__in=ids)
            .values("id", "lead_attributes", *(f"lead__{name}" for name in LEAD_ATTRIBUTE_FIELDS))
            .iterator(chunk_size=EVALUATION_CHUNK)
        }
        events = _events_until_handoff(ids, spec.event_types)
        for label in chunk:
            yield (
                label,
                _scored(spec, _lead_as_of_handoff(leads[label.handoff_id]), events.get(label.handoff_id, []), label),
            )


def _lead_as_of_handoff(row: dict[str, Any]) -> dict[str, Any]:
    """The lead's attributes as kept on its handoff when it opened; today's for a handoff
    opened before they were kept (or an attribute added since)."""
    kept = row["lead_attributes"] if isinstance(row["lead_attributes"], dict) else {}
    return {name: kept[name] if name in kept else row[f"lead__{name}"] for name in LEAD_ATTRIBUTE_FIELDS}


# --- The cache of immutable rulesets ------------------------------------------------------------
class StoredDecimals(Mapping[int, Decimal]):
    """Rule id → value as the cache holds it: the values that are not zero (JSON text, or
    decoded JSON, of exact decimal strings), 0 for the other rules. Decoded on first use:
    the quality report reads only which rules fired, and 20k handoffs × every rule of
    Decimals would be most of its time."""

    __slots__ = ("_stored", "_values", "_zeros")

    def __init__(self, stored: str | dict[str, str], zeros: Mapping[int, Decimal]):
        self._stored = stored
        self._zeros = zeros
        self._values: dict[int, Decimal] | None = None

    def _decoded(self) -> dict[int, Decimal]:
        if self._values is None:
            stored = json.loads(self._stored) if isinstance(self._stored, str) else self._stored
            values = dict(self._zeros)
            values.update((int(rule_id), Decimal(value)) for rule_id, value in stored.items())
            self._values = values
        return self._values

    def __getitem__(self, rule_id: int) -> Decimal:
        return self._decoded()[rule_id]

    def __iter__(self) -> Iterator[int]:
        return iter(self._decoded())

    def __len__(self) -> int:
        return len(self._decoded())

    def __repr__(self) -> str:
        return repr(self._decoded())


# A key of a stored JSON object of ``_texts``: a rule id, whose value is a decimal's text (so
# no value can contain the pattern).
_STORED_KEY = re.compile(r'"(\d+)":')


def _texts(values: Mapping[int, Decimal]) -> dict[str, str]:
    """The values that are not zero, as exact text: most rules match few leads."""
    return {str(rule_id): str(value) for rule_id, value in values.items() if value}


def _cached(ruleset: RuleSet, spec: RuleSetSpec, handoff_ids: Sequence[int]) -> dict[int, _Scored]:
    """The cached evaluations of these handoffs (all of the ruleset's are read when they are
    many: cheaper than a join, the others are dropped here)."""
    zeros = {rule.id: Decimal(0) for rule in spec.rules if rule.kind in ("fit", "behaviour")}
    wanted = set(handoff_ids)
    cached = CachedEvaluation.objects.filter(ruleset=ruleset)
    if len(wanted) <= EVALUATION_CHUNK:
        cached = cached.filter(handoff_id__in=wanted)
    # Both JSON columns come as text, decoded only when asked (StoredDecimals); which rules fired
    # is read off the text's keys: decoding 20k objects was half of a warm report's time.
    rows = cached.annotate(
        contributions_text=Cast("contributions", TextField()), units_text=Cast("units", TextField())
    ).values_list(
        "handoff_id", "score", "fit", "behaviour", "grade", "qualifies_sql", "contributions_text", "units_text"
    )
    return {
        handoff_id: _Scored(
            score,
            fit,
            behaviour,
            grade,
            qualifies,
            StoredDecimals(contributions, zeros),
            StoredDecimals(units, zeros),
            # Only the units that are not zero are stored: those of the rules that fired.
            frozenset(map(int, _STORED_KEY.findall(units))),
        )
        for handoff_id, score, fit, behaviour, grade, qualifies, contributions, units in rows.iterator(5000)
        if handoff_id in wanted
    }


def _cache_store(ruleset: RuleSet, scored: Sequence[tuple[_Labels, _Scored]]) -> None:
    CachedEvaluation.objects.bulk_create(
        [
            CachedEvaluation(
                ruleset=ruleset,
                handoff_id=label.handoff_id,
                score=value.score,
                fit=value.fit,
                behaviour=value.behaviour,
                grade=value.grade,
                qualifies_sql=value.qualifies_sql,
                contributions=_texts(value.contributions),
                units=_texts(value.units),
            )
            for label, value in scored
        ],
        batch_size=1000,
        ignore_conflicts=True,  # a concurrent reader filled them first: the same values
    )


# --- The evaluation ---------------------------------------------------------------------------------
def _evaluation(label: _Labels, value: _Scored) -> HandoffEvaluation:
    return HandoffEvaluation(
        handoff_id=label.handoff_id,
        lead_id=label.lead_id,
        created_at=label.created_at,
        status=label.status,
        accepted=label.accepted,
        won=label.won,
        reject_reason=label.reject_reason,
        score=value.score,
        fit=value.fit,
        behaviour=value.behaviour,
        grade=value.grade,
        qualifies_sql=value.qualifies_sql,
        contributions=value.contributions,
        units=value.units,
        fired_rules=value.fired_rules,
    )


def ruleset_evaluate_handoffs(
    *, ruleset: RuleSet, handoffs: QuerySet[Handoff] | None = None
) -> list[HandoffEvaluation]:
    """Every handoff of the ruleset's model (of ``handoffs`` when given) evaluated by the
    ruleset as of its creation, with its labels, in handoff id order. Fills the cache of a
    published or archived ruleset with the handoffs it lacked."""
    selected = ruleset_handoffs(ruleset=ruleset, handoffs=handoffs)
    labels = _labels(selected)
    if not labels:
        return []
    spec = ruleset_spec(ruleset)
    if ruleset.status not in IMMUTABLE_STATUSES:
        return [_evaluation(label, value) for label, value in _evaluate(spec, labels)]
    cached = _cached(ruleset, spec, [label.handoff_id for label in labels])
    missing = [label for label in labels if label.handoff_id not in cached]
    fresh: dict[int, _Scored] = {}
    if missing:
        scored = list(_evaluate(spec, missing))
        _cache_store(ruleset, scored)
        fresh = {label.handoff_id: value for label, value in scored}
    return [_evaluation(label, cached.get(label.handoff_id) or fresh[label.handoff_id]) for label in labels]


# --- Statistics ---------------------------------------------------------------------------------------
Z_95 = 1.959963984540054  # the standard normal's 97.5th percentile: two-sided 95 %


@dataclass(frozen=True)
class Rate:
    """``successes`` of ``total``, with its 95 % Wilson score interval (None when total is 0)."""

    successes: int
    total: int

    @property
    def value(self) -> float | None:
        return self.successes / self.total if self.total else None

    @property
    def interval(self) -> tuple[float, float] | None:
        return wilson_interval(self.successes, self.total)

    @property
    def shown(self) -> str:
        """The rate for people: ``62%``, ``—`` when there is nothing to count."""
        value = self.value
        return "—" if value is None else f"{100 * value:.0f}%"

    @property
    def interval_shown(self) -> str:
        interval = self.interval
        return "" if interval is None else f"{100 * interval[0]:.0f}–{100 * interval[1]:.0f}%"


def wilson_interval(successes: int, total: int, z: float = Z_95) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion: (p̂ + z²/2n ± z·√(p̂(1−p̂)/n + z²/4n²)) / (1 + z²/n)."""
    if total <= 0:
        return None
    p = successes / total
    z2 = z * z
    centre = p + z2 / (2 * total)
    margin = z * math.sqrt(p * (1 - p) / total + z2 / (4 * total * total))
    denominator = 1 + z2 / total
    return max(0.0, (centre - margin) / denominator), min(1.0, (centre + margin) / denominator)


def auc(pairs: Iterable[tuple[Decimal, bool]]) -> float | None:
    """The area under the ROC curve of a score against a yes/no label: the probability that
    a random positive scores above a random negative, ties counting half (Mann-Whitney U ÷
    positives × negatives, from average ranks). None without both positives and negatives."""
    ordered = sorted(pairs, key=lambda pair: pair[0])
    positives = sum(1 for _score, label in ordered if label)
    negatives = len(ordered) - positives
    if not positives or not negatives:
        return None
    rank_sum = 0.0
    start = 0
    while start < len(ordered):
        end = start
        while end + 1 < len(ordered) and ordered[end + 1][0] == ordered[start][0]:
            end += 1
        average_rank = (start + end) / 2 + 1  # ranks start + 1 … end + 1
        rank_sum += average_rank * sum(1 for _score, label in ordered[start : end + 1] if label)
        start = end + 1
    u = rank_sum - positives * (positives + 1) / 2
    return u / (positives * negatives)


@dataclass(frozen=True)
class Lift:
    """The rate when a rule fired over the rate when it did not (a risk ratio), with its 95 %
    interval by Katz's log method; half a case is added to each cell when one is empty."""

    fired: Rate
    not_fired: Rate

    @property
    def value(self) -> float | None:
        fired, not_fired = self.fired.value, self.not_fired.value
        if fired is None or not not_fired:
            return None
        return fired / not_fired

    def _cells(self) -> tuple[float, float, float, float]:
        a, n1 = float(self.fired.successes), float(self.fired.total)
        c, n2 = float(self.not_fired.successes), float(self.not_fired.total)
        if n1 and n2 and 0 in (a, c, n1 - a, n2 - c):
            a, c, n1, n2 = a + 0.5, c + 0.5, n1 + 1, n2 + 1
        return a, n1, c, n2

    @property
    def interval(self) -> tuple[float, float] | None:
        a, n1, c, n2 = self._cells()
        if not (n1 and n2 and a and c):
            return None
        log_ratio = math.log((a / n1) / (c / n2))
        error = math.sqrt(1 / a - 1 / n1 + 1 / c - 1 / n2)
        return math.exp(log_ratio - Z_95 * error), math.exp(log_ratio + Z_95 * error)

    @property
    def shown(self) -> str:
        value = self.value
        return "—" if value is None else f"{value:.2f}×"

    @property
    def interval_shown(self) -> str:
        interval = self.interval
        return "" if interval is None else f"{interval[0]:.2f}–{interval[1]:.2f}"

    @property
    def spans_one(self) -> bool:
        """Whether the interval includes 1 (no lift either way), or there is none."""
        interval = self.interval
        return interval is None or interval[0] <= 1 <= interval[1]


# --- The quality report -------------------------------------------------------------------------------
MAX_BANDS = 20
MAX_EDGE = Decimal(10) ** 9  # scores are stored with at most 10 digits before the point
DECILES = 10


class BandsInvalid(ValueError):
    """``?bands=`` that are not increasing numbers; the message says what to send."""


def quality_bands_parse(text: str) -> list[Decimal]:
    """Admin-set band edges, e.g. ``0,20,40,60,80``: increasing numbers, at most ``MAX_BANDS``."""
    try:
        edges = [Decimal(part.strip()) for part in text.split(",") if part.strip()]
    except ArithmeticError:
        raise BandsInvalid("Give the bands' lower edges as numbers separated by commas, e.g. 0,20,40,60,80.") from None
    if not edges or not all(edge.is_finite() for edge in edges):
        raise BandsInvalid("Give the bands' lower edges as numbers separated by commas, e.g. 0,20,40,60,80.")
    if any(edge.copy_abs().compare_total(MAX_EDGE) >= 0 for edge in edges):  # no arithmetic: no overflow
        raise BandsInvalid(f"Give band edges between -{MAX_EDGE:,} and {MAX_EDGE:,}: scores never go beyond.")
    if any(later <= earlier for earlier, later in zip(edges, edges[1:], strict=False)):
        raise BandsInvalid("Give the bands' edges in increasing order, each once, e.g. 0,20,40,60,80.")
    if len(edges) > MAX_BANDS:
        raise BandsInvalid(f"Give at most {MAX_BANDS} band edges.")
    return edges


def decile_edges(scores: Sequence[Decimal]) -> list[Decimal]:
    """The lower edges of the score's deciles among these scores (fewer when scores tie)."""
    ordered = sorted(scores)
    if not ordered:
        return []
    edges = [ordered[len(ordered) * index // DECILES] for index in range(DECILES)]
    return sorted(set(edges))


@dataclass
class Band:
    """Handoffs whose point-in-time score is in ``[low, high)`` (``low`` None: every score
    below ``high``; ``high`` None: no upper edge)."""

    low: Decimal | None
    high: Decimal | None
    count: int = 0
    accepted: int = 0
    rejected: int = 0
    undecided: int = 0
    won: int = 0
    won_known: int = 0
    reject_reasons: Counter[str] = field(default_factory=Counter)
    # What sales confirmed on accepting (the accept checklist): the accepted handoffs that
    # recorded a checklist, and per item key how many of those were asked it and confirmed it.
    answered: int = 0
    asked: Counter[str] = field(default_factory=Counter)
    confirmed: Counter[str] = field(default_factory=Counter)

    @property
    def accept(self) -> Rate:
        return Rate(self.accepted, self.accepted + self.rejected)

    @property
    def win(self) -> Rate:
        return Rate(self.won, self.won_known)

    @property
    def label(self) -> str:
        if self.low is None:
            return f"< {self.high:.2f}"
        if self.high is None:
            return f"≥ {self.low:.2f}"
        return f"{self.low:.2f}–{self.high:.2f}"

    def add(self, evaluation: HandoffEvaluation, checklist: Mapping[str, bool] | None = None) -> None:
        """Count the handoff; ``checklist``: what sales answered on accepting it (item key →
        confirmed), None when nothing was recorded."""
        self.count += 1
        if evaluation.accepted is True:
            self.accepted += 1
            if checklist is not None:
                self.answered += 1
                self.asked.update(checklist.keys())
                self.confirmed.update(key for key, confirmed in checklist.items() if confirmed)
        elif evaluation.accepted is False:
            self.rejected += 1
            self.reject_reasons[evaluation.reject_reason] += 1
        else:
            self.undecided += 1
        if evaluation.won is not None:
            self.won_known += 1
            self.won += int(evaluation.won)


def bands_of(
    evaluations: Sequence[HandoffEvaluation],
    edges: Sequence[Decimal],
    checklists: Mapping[int, Mapping[str, bool]] | None = None,
) -> list[Band]:
    """The handoffs counted by score band; a band below the first edge only when some fall
    there. ``checklists``: the accept checklists as answered, by handoff id."""
    if not edges:
        return []
    answered = checklists or {}
    below = Band(low=None, high=edges[0])
    bands = [Band(low=low, high=high) for low, high in zip(edges, [*edges[1:], None], strict=True)]
    for evaluation in evaluations:
        index = bisect.bisect_right(edges, evaluation.score) - 1
        (bands[index] if index >= 0 else below).add(evaluation, answered.get(evaluation.handoff_id))
    return ([below] if below.count else []) + bands


@dataclass(frozen=True)
class SalesConfirmed:
    """What sales confirmed on accepting a group of handoffs (a score band, or all of them):
    the accepted handoffs, those accepted with the checklist answered (the others predate
    it), and per checklist item how many of the answered checklists asked it and confirmed it."""

    name: str
    accepted: int
    answered: int
    items: list[ConfirmationRate]

    @property
    def unrecorded(self) -> int:
        """Accepted before the checklist existed: nothing recorded."""
        return self.accepted - self.answered


def _checklist_labels(keys: Iterable[str]) -> list[tuple[str, str]]:
    """The items asked, as (key, label) in the checklist's order, named as the checklist names
    them today (an item no longer in the checklist by its key, last). One query, none without keys."""
    wanted = set(keys)
    if not wanted:
        return []
    known = [(item.key, item.label) for item in checklist_items() if item.key in wanted]
    return known + [(key, key) for key in sorted(wanted - {key for key, _label in known})]


def _confirmed_of(
    name: str, accepted: int, answered: int, tally: tuple[Counter[str], Counter[str]], items: Sequence[tuple[str, str]]
) -> SalesConfirmed:
    asked, confirmed = tally
    rates = [ConfirmationRate(key, label, asked[key], confirmed[key]) for key, label in items]
    return SalesConfirmed(name=name, accepted=accepted, answered=answered, items=rates)


def sales_confirmed(bands: Sequence[Band]) -> tuple[list[SalesConfirmed], SalesConfirmed]:
    """What sales confirmed by score band, and over every band: each item asked in any band,
    in the checklist's order, in every row (a band never asked about an item shows 0 of 0)."""
    asked: Counter[str] = Counter()
    confirmed: Counter[str] = Counter()
    for band in bands:
        asked.update(band.asked)
        confirmed.update(band.confirmed)
    items = _checklist_labels(asked)
    by_band = [
        _confirmed_of(band.label, band.accepted, band.answered, (band.asked, band.confirmed), items) for band in bands
    ]
    accepted, answered = sum(band.accepted for band in bands), sum(band.answered for band in bands)
    return by_band, _confirmed_of("All", accepted, answered, (asked, confirmed), items)


@dataclass(frozen=True)
class RuleQuality:
    """How a rule predicts sales' verdict among decided handoffs (and the CRM's, among
    handoffs with a known result): the rate when it fired and when it did not, the lift."""

    id: int
    name: str
    kind: str
    points: Decimal
    accept: Lift
    win: Lift
    enough_data: bool

    @property
    def fired(self) -> int:
        return self.accept.fired.total


@dataclass(frozen=True)
class QualityReport:
    ruleset: RuleSet
    handoffs: int
    undecided: int
    accepted: Rate
    won: Rate
    auc_accepted: float | None
    auc_won: float | None
    bands: list[Band]
    bands_set: bool
    rules: list[RuleQuality]
    reject_reasons: list[str]
    min_count: int
    confirmed_by_band: list[SalesConfirmed]  # one per band, in the bands' order
    confirmed: SalesConfirmed  # over every band

    @property
    def decided(self) -> int:
        return self.accepted.total

    @property
    def empty(self) -> bool:
        return self.handoffs == 0


def _lifts(evaluations: Sequence[HandoffEvaluation], rule_ids: Sequence[int], label: str) -> dict[int, Lift]:
    """Each rule's lift on ``label`` (``accepted`` or ``won``), among the evaluations where the
    label is known: one pass, counting each evaluation for the rules that fired on it."""
    fired_total: Counter[int] = Counter()
    fired_successes: Counter[int] = Counter()
    total = successes = 0
    for evaluation in evaluations:
        value = getattr(evaluation, label)
        if value is None:
            continue
        total += 1
        successes += value
        fired = evaluation.fired_rules
        fired_total.update(fired)
        if value:
            fired_successes.update(fired)
    return {
        rule_id: Lift(
            fired=Rate(fired_successes[rule_id], fired_total[rule_id]),
            not_fired=Rate(successes - fired_successes[rule_id], total - fired_total[rule_id]),
        )
        for rule_id in rule_ids
    }


def _sort_key(rule: RuleQuality) -> tuple[bool, float]:
    lift = rule.accept.value
    return (not rule.enough_data, -(lift if lift is not None else -1.0))


def rules_quality(ruleset: RuleSet, evaluations: Sequence[HandoffEvaluation], min_count: int) -> list[RuleQuality]:
    """Each fit and behaviour rule's lift, the rules with enough data first, by lift."""
    rules = [rule for rule in ruleset.rules.all() if rule.kind in ("fit", "behaviour")]
    accepts = _lifts(evaluations, [rule.pk for rule in rules], "accepted")
    wins = _lifts(evaluations, [rule.pk for rule in rules], "won")
    found = []
    for rule in rules:
        accept = accepts[rule.pk]
        enough = accept.fired.total >= min_count and accept.not_fired.total >= min_count
        found.append(
            RuleQuality(
                id=rule.pk,
                name=rule.name,
                kind=rule.kind,
                points=rule.points,
                accept=accept,
                win=wins[rule.pk],
                enough_data=enough,
            )
        )
    return sorted(found, key=_sort_key)


def quality_report_of(
    ruleset: RuleSet,
    evaluations: Sequence[HandoffEvaluation],
    *,
    edges: Sequence[Decimal] | None = None,
    min_count: int | None = None,
    checklists: Mapping[int, Mapping[str, bool]] | None = None,
) -> QualityReport:
    """The quality report of these evaluations: calibration by band (deciles unless ``edges``),
    AUC, the share accepted, each rule's lift, reject reasons by band, and what sales
    confirmed on accepting by band (``checklists``: the accept checklists as answered, by
    handoff id; ``handoff.selectors.handoffs_checklists``)."""
    minimum = settings.QUALITY_MIN_COUNT if min_count is None else min_count
    decided = [e for e in evaluations if e.accepted is not None]
    known = [e for e in evaluations if e.won is not None]
    bands = bands_of(evaluations, list(edges) if edges else decile_edges([e.score for e in evaluations]), checklists)
    reasons = [str(reason) for reason in RejectReason.values if any(band.reject_reasons[reason] for band in bands)]
    confirmed_by_band, confirmed = sales_confirmed(bands)
    return QualityReport(
        ruleset=ruleset,
        handoffs=len(evaluations),
        undecided=len(evaluations) - len(decided),
        accepted=Rate(sum(1 for e in decided if e.accepted), len(decided)),
        won=Rate(sum(1 for e in known if e.won), len(known)),
        auc_accepted=auc((e.score, bool(e.accepted)) for e in decided),
        auc_won=auc((e.score, bool(e.won)) for e in known),
        bands=bands,
        bands_set=bool(edges),
        rules=rules_quality(ruleset, evaluations, minimum),
        reject_reasons=reasons,
        min_count=minimum,
        confirmed_by_band=confirmed_by_band,
        confirmed=confirmed,
    )


def ruleset_quality(*, ruleset: RuleSet, edges: Sequence[Decimal] | None = None) -> QualityReport:
    """The ruleset's quality over every handoff of its model, point-in-time, with what sales
    confirmed on accepting them (one query for the checklists of all of them)."""
    evaluations = ruleset_evaluate_handoffs(ruleset=ruleset)
    checklists = handoffs_checklists(handoffs=ruleset_handoffs(ruleset=ruleset)) if evaluations else {}
    return quality_report_of(ruleset, evaluations, edges=edges, checklists=checklists)


# --- The backtest of a draft ---------------------------------------------------------------------------
@dataclass(frozen=True)
class BacktestSide:
    """A ruleset replayed over the model's handoffs: who it would have sent to sales then."""

    ruleset: RuleSet
    auc_accepted: float | None
    sent: Rate  # accepted among the decided handoffs it would have sent (SQL criteria then)
    sent_total: int  # every handoff it would have sent, decided or not
    missed_accepted: int  # accepted handoffs it would not have sent
    spared_rejected: int  # rejected handoffs it would not have sent


def backtest_side(ruleset: RuleSet, evaluations: Sequence[HandoffEvaluation]) -> BacktestSide:
    decided = [e for e in evaluations if e.accepted is not None]
    sent = [e for e in decided if e.qualifies_sql]
    return BacktestSide(
        ruleset=ruleset,
        auc_accepted=auc((e.score, bool(e.accepted)) for e in decided),
        sent=Rate(sum(1 for e in sent if e.accepted), len(sent)),
        sent_total=sum(1 for e in evaluations if e.qualifies_sql),
        missed_accepted=sum(1 for e in decided if e.accepted and not e.qualifies_sql),
        spared_rejected=sum(1 for e in decided if e.accepted is False and not e.qualifies_sql),
    )


@dataclass(frozen=True)
class Backtest:
    handoffs: int
    decided: int
    draft: BacktestSide
    published: BacktestSide | None  # None: the model has no published ruleset


def ruleset_backtest(*, ruleset: RuleSet, published: RuleSet | None) -> Backtest:
    """Replay ``ruleset`` (a draft, usually) and the model's ``published`` ruleset over the
    model's handoffs, each as of the handoff's creation."""
    evaluations = ruleset_evaluate_handoffs(ruleset=ruleset)
    published_side = None
    if published is not None and published.pk != ruleset.pk:
        published_side = backtest_side(published, ruleset_evaluate_handoffs(ruleset=published))
    return Backtest(
        handoffs=len(evaluations),
        decided=sum(1 for e in evaluations if e.accepted is not None),
        draft=backtest_side(ruleset, evaluations),
        published=published_side,
    )
