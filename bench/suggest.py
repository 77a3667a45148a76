"""Suggested points over many decided handoffs: how long ``handoff.suggest.ruleset_suggest``
takes, cold (the published ruleset's point-in-time evaluations computed and cached first)
and warm (read from ``CachedEvaluation``).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/lf_suggest .venv/bin/python bench/suggest.py
    ... bench/suggest.py --handoffs 2000   # smoke run

The database must exist and be migrated (``manage.py migrate``); the script adds its own
model ("bench-suggest"), leads, events and decided handoffs to it, and leaves them there
(a second run reuses them). Sales' verdicts depend on two of the eight rules (industry and
demo requests), so the suggestion has something to find; the script exits 1 if it does not
raise those two rules' points above the useless ones'. Results: README-suggest.md.
"""

import argparse
import os
import random
import sys
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "leadflow.settings")

import django  # noqa: E402

django.setup()

from django.db import connection, transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from handoff.models import CachedEvaluation, Handoff, HandoffStatus, RejectReason  # noqa: E402
from handoff.suggest import ruleset_suggest  # noqa: E402
from leadflow.leads.models import Event, Lead, Source, Stage  # noqa: E402
from scoring import services as scoring_services  # noqa: E402
from scoring.models import RuleSet, RuleSetStatus, ScoringModel  # noqa: E402

SLUG = "bench-suggest"
INDUSTRIES = ("Software", "Retail", "Finance", "Health")
EVENT_TYPES = ("page_view", "email_open", "webinar_attended", "content_download", "demo_request", "pricing_view")


def _rules() -> list[dict]:
    def fit(attribute: str, value: str, points: int) -> dict:
        return {"kind": "fit", "name": f"{attribute} {value}", "attribute": attribute, "operator": "eq",
                "value": value, "points": Decimal(points)}  # fmt: skip

    def behaviour(event_type: str, points: int, cap: int | None = None) -> dict:
        return {"kind": "behaviour", "name": event_type, "event_type": event_type, "points": Decimal(points),
                "max_points": None if cap is None else Decimal(cap)}  # fmt: skip

    return [
        fit("industry", "Software", 10),
        fit("industry", "Retail", 10),
        fit("country", "DE", 5),
        behaviour("page_view", 2, 20),
        behaviour("email_open", 1, 10),
        behaviour("webinar_attended", 15, 30),
        behaviour("content_download", 5, 20),
        behaviour("demo_request", 20),
    ]


def _ruleset(model: ScoringModel) -> RuleSet:
    existing = RuleSet.objects.filter(model=model, status=RuleSetStatus.PUBLISHED).first()
    if existing:
        return existing
    ruleset = scoring_services.ruleset_create(
        user=None, model=model, name="Bench", mql_threshold=Decimal(20), sql_threshold=Decimal(40),
        intent_event_types=["demo_request"],
    )  # fmt: skip
    for rule in _rules():
        scoring_services.rule_create(ruleset=ruleset, **rule)
    with transaction.atomic():  # publishing enqueues a rescore after commit: no worker runs it here
        scoring_services.ruleset_publish(ruleset=ruleset, user=None)
    ruleset.refresh_from_db()
    return ruleset


def _generate(model: ScoringModel, count: int, seed: int) -> None:
    have = Handoff.objects.filter(model=model).count()
    if have >= count:
        return
    rng = random.Random(seed)
    source, _ = Source.objects.get_or_create(slug=SLUG, defaults={"name": "Bench suggest"})
    now = timezone.now()
    batch = 2000
    for start in range(have, count, batch):
        size = min(batch, count - start)
        leads = Lead.objects.bulk_create(
            [
                Lead(
                    email=f"suggest-{start + i}@bench.test",
                    name=f"Bench {start + i}",
                    industry=rng.choice(INDUSTRIES),
                    country=rng.choice(("DE", "FR", "US")),
                    source=source,
                    stage=Stage.SQL,
                )
                for i in range(size)
            ]
        )
        events: list[Event] = []
        handoffs: list[Handoff] = []
        for lead in leads:
            created = now - timedelta(days=rng.uniform(5, 300))
            demo = rng.random() < 0.4
            for event_type in EVENT_TYPES:
                times = rng.choice((0, 0, 1, 2, 4)) if event_type != "demo_request" else int(demo)
                for _ in range(times):
                    at = created - timedelta(days=rng.uniform(0, 30))
                    n = len(events)
                    events.append(
                        Event(
                            lead=lead,
                            source=source,
                            event_id=f"{lead.email}-{n}",
                            type=event_type,
                            occurred_at=at,
                            fingerprint=f"{lead.pk:032x}{n:032x}",
                        )  # fmt: skip
                    )
            logit = -1.2 + 1.6 * (lead.industry == "Software") + 1.2 * demo
            accepted = rng.random() < 1 / (1 + pow(2.718281828, -logit))
            handoffs.append(
                Handoff(
                    lead=lead,
                    model=model,
                    qualified_by=[model.slug],
                    priority=Decimal(50),
                    created_at=created,
                    due_at=created + timedelta(hours=24),
                    status=HandoffStatus.ACCEPTED if accepted else HandoffStatus.REJECTED,
                    reject_reason="" if accepted else RejectReason.NOT_A_FIT,
                    decided_at=created + timedelta(hours=3),
                )
            )
        Event.objects.bulk_create(events, batch_size=5000)
        Handoff.objects.bulk_create(handoffs, batch_size=2000)
        print(f"  generated {start + size} handoffs", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--handoffs", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=14)
    args = parser.parse_args()
    model, _ = ScoringModel.objects.get_or_create(slug=SLUG, defaults={"name": "Bench suggest", "position": 99})
    ruleset = _ruleset(model)
    _generate(model, args.handoffs, args.seed)
    with connection.cursor() as cursor:  # fresh statistics, as autovacuum would have them by now
        cursor.execute("ANALYZE")
    CachedEvaluation.objects.filter(ruleset=ruleset).delete()
    timings = []
    for label in ("cold (evaluations computed and cached)", "warm (evaluations from the cache)"):
        started = time.perf_counter()
        draft = ruleset_suggest(ruleset=ruleset, user=None)
        elapsed = time.perf_counter() - started
        suggestion = draft.suggestion or {}
        timings.append(elapsed)
        print(
            f"{label}: {elapsed:.2f} s for {suggestion['decided']} decided handoffs "
            f"(fit and draft {suggestion['seconds']:.2f} s as recorded); held-out AUC old "
            f"{suggestion['auc_old']:.3f}, suggested {suggestion['auc_suggested']:.3f}, "
            f"flat {suggestion['auc_flat']:.3f}"
        )
        points = {rule.name: rule.points for rule in draft.rules.all()}
        print("  points:", ", ".join(f"{name} {value}" for name, value in points.items()))
        useful = min(points["industry Software"], points["demo_request"])
        useless = max(points["email_open"], points["country DE"], points["industry Retail"])
        if useful <= useless:
            print("FAILED: the suggestion did not raise the predictive rules above the useless ones")
            return 1
        draft.delete()
    return 0


if __name__ == "__main__":
    sys.exit(main())
