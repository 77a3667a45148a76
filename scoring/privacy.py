"""Scoring's part of a person's export and erasure (``leadflow.leads.privacy``): the
lead's scores under every model, each with its explanation rule by rule. Registered
by ``ScoringConfig.ready``."""

from typing import Any

from django.db.models import Model

from leadflow.leads.models import Lead
from leadflow.leads.privacy import Scrubber
from scoring import presenters, selectors
from scoring.models import Score


class ScoringData:
    holds: tuple[type[Model], ...] = (Score,)

    def export(self, *, lead: Lead) -> dict[str, Any]:
        scores = []
        for score in selectors.lead_scores(lead=lead):
            explanation = presenters.explanation_data(selectors.lead_explain(lead=lead, model=score.model))
            scores.append(
                {
                    "model": score.model.slug,
                    "model_name": score.model.name,
                    "score": score.score,
                    "fit": score.fit,
                    "behaviour": score.behaviour,
                    "grade": score.grade,
                    "ruleset_version": score.ruleset_version,
                    "computed_at": score.computed_at,
                    "last_intent_at": score.last_intent_at,
                    "explanation": explanation,
                }
            )
        return {"scores": scores}

    def erase(self, *, lead: Lead, scrubber: Scrubber) -> dict[str, int]:
        deleted, _ = Score.objects.filter(lead=lead).delete()
        return {"scores": deleted}
