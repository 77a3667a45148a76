"""The lead's scores, as the core's lists and lead API read them.

The scores are scoring's (one per lead and scoring model, in its narrow table), and
the core may not import scoring: scoring registers a ``ScoresProvider`` when its app
is ready (``scoring.apps.ScoringConfig.ready``), the way the core learns of the layers
above it through signals and task names. Without one (the core alone), every lead
reads as unscored.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from django.db.models import DecimalField, QuerySet, Value
from django.db.models.fields import CharField

from leadflow.leads.models import Lead

# The annotations ``annotate`` adds to each lead (``scored``: whether the model scored it).
SCORE_ANNOTATIONS = ("score", "fit_score", "behaviour_score", "grade", "scored")


class UnknownModel(ValueError):
    """A scoring model slug that names no model; the message lists the known ones."""


@dataclass(frozen=True)
class ModelScore:
    """A lead's score under one model, for the lead API and pages."""

    model: str  # slug
    model_name: str
    score: Decimal
    fit: Decimal
    behaviour: Decimal
    grade: str
    ruleset_version: int
    computed_at: datetime
    last_intent_at: datetime | None
    suppressed: bool

    @property
    def label(self) -> str:
        return f"{self.grade} · {self.score}"


@dataclass(frozen=True)
class CriterionState:
    """One qualification criterion of a lead under a model, as pages show it: ``score ✓``
    with what it says in words (``text``: "score 66.00 ≥ SQL threshold 60.00", "needs a
    demo request or contact request")."""

    key: str  # the engine's (``scoring.engine.Criterion``): score, fit, intent, grade, …
    label: str
    met: bool
    text: str


@dataclass(frozen=True)
class Qualification:
    """A lead's state against one model's criteria for ``target`` (``mql`` or ``sql``),
    and whether it is a *stale MQL*: at MQL with a score now below the MQL threshold."""

    model_name: str
    target: str
    criteria: tuple[CriterionState, ...]
    stale_mql: bool = False

    @property
    def met(self) -> bool:
        return all(criterion.met for criterion in self.criteria)

    @property
    def missing(self) -> list[str]:
        return [criterion.text for criterion in self.criteria if not criterion.met]


class ScoresProvider(Protocol):
    def annotate(self, leads: QuerySet[Lead], *, model: str | None) -> QuerySet[Lead]:
        """``leads`` with ``SCORE_ANNOTATIONS`` of the model (a slug; the default model
        when None): 0 and "" for a lead the model never scored. Raises UnknownModel."""
        ...

    def annotate_scored(self, leads: QuerySet[Lead], *, model: str | None, stage: str | None) -> QuerySet[Lead]:
        """The ``leads`` the model scored, with ``SCORE_ANNOTATIONS`` as stored: an order
        by ``score`` (then lead id) that an index serves, within ``stage`` when given
        (the scores' copy of the lead's stage is in that index). Raises UnknownModel."""
        ...

    def scores(self, leads: list[Lead]) -> dict[int, list[ModelScore]]:
        """Every model's score of each lead, by lead id, in the models' order."""
        ...

    def models(self) -> list[tuple[str, str]]:
        """(slug, name) of every scoring model, the default first."""
        ...

    def qualifications(self, leads: list[Lead], *, model: str | None) -> dict[int, Qualification]:
        """Each lead's state against the criteria of its next stage under the model's
        published ruleset (MQL for a new or recycled lead, SQL otherwise), by lead id: a
        constant number of queries however many leads; a lead the model never scored is
        missing."""
        ...

    def stale_mql(self, leads: QuerySet[Lead], *, model: str | None) -> QuerySet[Lead]:
        """The ``leads`` (annotated by ``annotate`` or ``annotate_scored``) at MQL whose
        score under the model is below its published MQL threshold."""
        ...


_provider: ScoresProvider | None = None


def provider_register(provider: ScoresProvider) -> None:
    global _provider  # noqa: PLW0603 -- one provider per process, set once when apps are ready
    _provider = provider


def leads_annotate_scores(leads: QuerySet[Lead], *, model: str | None = None) -> QuerySet[Lead]:
    if _provider is None:
        zero = Value(Decimal("0.00"), output_field=DecimalField(max_digits=12, decimal_places=2))
        return leads.annotate(
            score=zero, fit_score=zero, behaviour_score=zero, grade=Value("", CharField()), scored=Value(False)
        )
    return _provider.annotate(leads, model=model)


def leads_annotate_scored(
    leads: QuerySet[Lead], *, model: str | None = None, stage: str | None = None
) -> QuerySet[Lead] | None:
    """The ``leads`` the model scored (in ``stage``, when given), ordered by score through
    an index (``ScoresProvider.annotate_scored``); None without a provider (nothing is scored)."""
    return None if _provider is None else _provider.annotate_scored(leads, model=model, stage=stage)


def leads_scores(leads: list[Lead]) -> dict[int, list[ModelScore]]:
    if _provider is None:
        return {lead.pk: [] for lead in leads}
    return _provider.scores(leads)


def leads_qualifications(leads: list[Lead], *, model: str | None = None) -> dict[int, Qualification]:
    return {} if _provider is None else _provider.qualifications(leads, model=model)


def leads_stale_mql(leads: QuerySet[Lead], *, model: str | None = None) -> QuerySet[Lead]:
    """Stale MQLs (``ScoresProvider.stale_mql``); none without a provider (nothing is scored)."""
    return leads.none() if _provider is None else _provider.stale_mql(leads, model=model)


def scoring_models() -> list[tuple[str, str]]:
    return [] if _provider is None else _provider.models()


# --- Which event types raise a hand ------------------------------------------------------------
# The intent types of every published model (scoring registers the reader): the ingest sends
# the leads of such events down the fast lane (``leadflow.leads.scoring_requests``).
_intent_types: Callable[[], frozenset[str]] | None = None


def intent_types_register(reader: Callable[[], frozenset[str]]) -> None:
    global _intent_types  # noqa: PLW0603 -- one reader per process, set once when apps are ready
    _intent_types = reader


def intent_event_types() -> frozenset[str]:
    return frozenset() if _intent_types is None else _intent_types()
