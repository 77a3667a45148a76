"""The demo's outcomes (issue 14, item 6): what a CRM would report after the demo's sales
work, for ``seed_demo`` to call once the queue is worked (``demo_outcomes_record``).

It teaches something: a lead handed over with a higher score wins more often, and a
bigger company brings a bigger deal; European leads buy in EUR, the others in USD, so
the dashboard shows two currencies side by side. Deterministic for a seed and a lead:
running the demo again resends the same outcomes, which count as duplicates."""

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from statistics import median
from typing import Any

from django.utils import timezone

from handoff.models import Handoff, HandoffStatus
from leadflow.leads.models import OutcomeKind, Source
from leadflow.leads.services import IngestResult, outcomes_record, source_get_or_create

EUR_COUNTRIES = frozenset(
    {"Germany", "France", "Spain", "Italy", "Netherlands", "Belgium", "Austria", "Ireland", "Finland", "Portugal"}
)
CRM_SOURCE = "CRM"
OPPORTUNITY_RATE = 0.85  # of accepted handoffs
DECIDED_WITHIN = 0.75  # of opportunities: the rest are still open at the demo's "now"


@dataclass(frozen=True)
class DemoDeal:
    """One accepted handoff as the demo's CRM sees it."""

    email: str
    decided_at: datetime
    score: Decimal
    country: str
    company_size: int | None


def _win_chance(score: Decimal, middle: float) -> float:
    """From 0.15 to 0.85, rising with the score at handoff around the middle score."""
    return 0.15 + 0.7 / (1 + math.exp(-(float(score) - middle) / 8))


def _amount(rng: random.Random, company_size: int | None) -> Decimal:
    size = company_size or 50
    base = 4000 + 60 * min(size, 2000)
    return Decimal(round(base * rng.uniform(0.6, 1.6), -2))


def demo_outcome_payloads(*, deals: Sequence[DemoDeal], seed: int, now: datetime) -> list[dict[str, Any]]:
    """The outcomes a CRM would send for these deals (opportunity, then won or lost, or
    still open), never dated after ``now``."""
    middle = median(float(deal.score) for deal in deals) if deals else 0.0
    payloads: list[dict[str, Any]] = []
    for deal in deals:
        rng = random.Random(f"{seed}:{deal.email}")  # noqa: S311 -- demo data, not security
        if rng.random() >= OPPORTUNITY_RATE:
            continue
        currency = "EUR" if deal.country in EUR_COUNTRIES else "USD"
        amount = _amount(rng, deal.company_size)
        opened = deal.decided_at + timedelta(days=rng.uniform(0.5, 4))
        if opened > now:
            continue
        lead = {"email": deal.email}
        payloads.append(
            {
                "outcome_id": f"demo-{seed}-{deal.email}-opportunity",
                "kind": OutcomeKind.OPPORTUNITY_CREATED,
                "amount": str(amount),
                "currency": currency,
                "occurred_at": opened.isoformat(),
                "lead": lead,
            }
        )
        closed = opened + timedelta(days=rng.uniform(3, 25))
        if closed > now or rng.random() >= DECIDED_WITHIN:
            continue
        won = rng.random() < _win_chance(deal.score, middle)
        payloads.append(
            {
                "outcome_id": f"demo-{seed}-{deal.email}-{'won' if won else 'lost'}",
                "kind": OutcomeKind.WON if won else OutcomeKind.LOST,
                "amount": str(amount),
                "currency": currency,
                "occurred_at": closed.isoformat(),
                "lead": lead,
            }
        )
    return payloads


def demo_deals(handoffs: Iterable[Handoff]) -> list[DemoDeal]:
    """The accepted handoffs (with their leads) as deals; the others bring no outcome."""
    return [
        DemoDeal(
            email=handoff.lead.email,
            decided_at=handoff.decided_at,
            score=handoff.priority,
            country=handoff.lead.country,
            company_size=handoff.lead.company_size,
        )
        for handoff in handoffs
        if handoff.status == HandoffStatus.ACCEPTED and handoff.decided_at and handoff.lead.email
    ]


def demo_outcomes_record(
    *, source: Source, seed: int, now: datetime | None = None, crm: Source | None = None
) -> IngestResult:
    """Record, through ``outcomes_record`` and as the demo's CRM source, the outcomes of
    ``source``'s accepted handoffs. For ``seed_demo``, after ``_work_the_queue``."""
    now = now or timezone.now()
    crm = crm or source_get_or_create(name=CRM_SOURCE)[0]
    handoffs = Handoff.objects.filter(lead__source=source, status=HandoffStatus.ACCEPTED).select_related("lead")
    payloads = demo_outcome_payloads(deals=demo_deals(handoffs.order_by("id")), seed=seed, now=now)
    if not payloads:
        return IngestResult()
    return outcomes_record(source=crm, payloads=payloads)
