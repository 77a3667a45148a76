"""Demo data: users for the three roles, a Website source, and leads with realistic
B2B profiles and event journeys, ingested through the real ingest path.

Then a sales team works the older half of the queue (``rep`` and ``rep2`` claim,
accept and reject through the handoff services), so the pages show feedback and
outcomes; the newer half stays queued.

Idempotent: identities, event ids and event times derive from the seed (times
relative to an anchor recovered from an earlier run), so running it again
creates nothing and reports the events as duplicates; sales only ever works
handoffs that were never claimed, and each one's fate derives from the seed.
"""

import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.db.models import Count, F, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone
from faker import Faker

from handoff.models import (
    OPEN_STATUSES,
    ChecklistItem,
    Handoff,
    HandoffAction,
    HandoffEvent,
    HandoffStatus,
    Notification,
    RejectReason,
)
from handoff.notifications import emails_withheld
from handoff.services import HandoffError, handoff_accept, handoff_claim, handoff_notification_key, handoff_reject
from leadflow.leads.models import Event, Lead, Source, Stage, StageChange
from leadflow.leads.roles import MARKETING, SALES, SCORING_ADMIN
from leadflow.leads.rollups import rollups_rebuild
from leadflow.leads.services import events_ingest, source_get_or_create
from leadflow.management.demo_outcomes import demo_outcomes_record
from leadflow.progress import progress_bar
from scoring import selectors as scoring_selectors
from scoring import services as scoring_services
from scoring.services import leads_score

BATCH_SIZE = 1000  # the ingest API's maximum batch
HISTORY_DAYS = 60
DAY = 86_400


@dataclass(frozen=True)
class DemoUser:
    username: str
    password: str
    first_name: str
    roles: tuple[str, ...]
    superuser: bool = False


# Fixed and documented on purpose: these are demo accounts. They pass Django's password validators.
DEMO_USERS = (
    DemoUser("admin", "leadflow-admin", "Morgan", (SCORING_ADMIN,), superuser=True),
    DemoUser("marketer", "leadflow-marketer", "Maya", (MARKETING,)),
    DemoUser("rep", "leadflow-rep", "Ravi", (SALES,)),
    DemoUser("rep2", "leadflow-rep2", "Rosa", (SALES,)),
)

PERSONAL_DOMAINS = ("gmail.com", "yahoo.com", "outlook.com", "hotmail.com", "icloud.com")

# The demo's second scoring model: a product line of its own.
ADDON = {
    "name": "ABM add-on",
    "slug": "abm-addon",
    "description": "Interest in the account-based marketing and attribution add-on.",
}
ADDON_RULES: tuple[dict[str, Any], ...] = (
    {
        "kind": "fit",
        "name": "Company of 200+ employees",
        "attribute": "company_size",
        "operator": "gte",
        "value": 200,
        "points": Decimal(15),
    },
    {
        "kind": "fit",
        "name": "Marketing title",
        "attribute": "job_title",
        "operator": "contains",
        "value": "marketing",
        "points": Decimal(10),
    },
    {
        "kind": "behaviour",
        "name": "ABM and attribution pages",
        "event_type": "page_view",
        "attribute": "topic",
        "operator": "in",
        "value": ["ABM", "attribution"],
        "points": Decimal(4),
        "max_points": Decimal(20),
    },
    {
        "kind": "behaviour",
        "name": "ABM and attribution content",
        "event_type": "content_download",
        "attribute": "topic",
        "operator": "in",
        "value": ["ABM", "attribution"],
        "points": Decimal(10),
        "max_points": Decimal(20),
    },
    {
        "kind": "behaviour",
        "name": "Pricing page views",
        "event_type": "pricing_view",
        "points": Decimal(5),
        "max_points": Decimal(10),
    },
    {"kind": "behaviour", "name": "Demo request", "event_type": "demo_request", "points": Decimal(25), "decays": False},
    {
        "kind": "suppress",
        "name": "Student address",
        "attribute": "email_domain",
        "operator": "contains",
        "value": ".edu",
        "points": Decimal(0),
    },
)
COUNTRIES = {
    "United States": 30,
    "United Kingdom": 12,
    "Germany": 10,
    "France": 7,
    "Canada": 6,
    "India": 6,
    "Netherlands": 5,
    "Australia": 5,
    "Spain": 4,
    "Brazil": 4,
    "Sweden": 3,
    "Singapore": 3,
    "Italy": 3,
}
INDUSTRIES = {
    "Software": 25,
    "Financial Services": 12,
    "Professional Services": 10,
    "Healthcare": 9,
    "Manufacturing": 9,
    "Retail": 8,
    "Education": 6,
    "Telecommunications": 5,
    "Media": 5,
    "Logistics": 5,
    "Non-profit": 3,
    "Government": 3,
}
JOB_TITLES = {
    "Marketing Manager": 12,
    "Demand Generation Manager": 8,
    "Head of Marketing": 7,
    "Marketing Operations Manager": 6,
    "VP Marketing": 4,
    "CMO": 3,
    "Growth Lead": 5,
    "Revenue Operations Manager": 5,
    "Sales Director": 5,
    "VP Sales": 3,
    "Head of Sales Operations": 3,
    "CEO": 3,
    "Founder": 4,
    "CTO": 2,
    "Product Manager": 5,
    "Software Engineer": 5,
    "Data Analyst": 4,
    "Marketing Coordinator": 6,
    "Consultant": 4,
    "Student": 3,
}
COMPANY_SIZES = {(1, 10): 15, (11, 50): 25, (51, 200): 25, (201, 1000): 20, (1001, 5000): 10, (5001, 50000): 5}
UTM = {
    None: 30,  # organic or direct: no UTM parameters
    ("google", "cpc", "brand-search"): 12,
    ("google", "cpc", "lead-scoring-generic"): 10,
    ("linkedin", "paid-social", "abm-q4"): 10,
    ("linkedin", "organic-social", "product-launch"): 6,
    ("newsletter", "email", "monthly-digest"): 10,
    ("g2", "referral", "g2-listing"): 6,
    ("partner", "referral", "partner-webinar"): 6,
    ("facebook", "paid-social", "retargeting"): 4,
}
PLANS = {"none": 50, "free": 25, "trial": 15, "starter": 10}
CRMS = {"Salesforce": 30, "HubSpot": 35, "Pipedrive": 15, "Dynamics 365": 10, "none": 10}

TOPICS = ("lead scoring", "marketing automation", "sales handoff", "attribution", "data quality", "ABM")
PAGES = {
    "lead scoring": ("/blog/what-is-lead-scoring", "/product/scoring", "/docs/scoring-rules"),
    "marketing automation": ("/blog/nurture-playbook", "/product/integrations"),
    "sales handoff": ("/blog/mql-to-sql-handoff", "/product/handoff", "/customers/acme"),
    "attribution": ("/blog/multi-touch-attribution", "/product/reports"),
    "data quality": ("/blog/dedupe-your-crm", "/docs/identity"),
    "ABM": ("/blog/account-based-marketing", "/solutions/abm", "/customers/globex"),
}
ASSETS = {
    "lead scoring": "ebook-lead-scoring-guide.pdf",
    "marketing automation": "template-nurture-sequences.xlsx",
    "sales handoff": "checklist-sla-handoff.pdf",
    "attribution": "report-state-of-attribution-2026.pdf",
    "data quality": "whitepaper-data-hygiene.pdf",
    "ABM": "playbook-abm-in-90-days.pdf",
}
WEBINARS = {
    "lead scoring": "Scoring that sales trusts",
    "sales handoff": "From MQL to meeting in 24 hours",
    "ABM": "ABM for small teams",
    "attribution": "Attribution without the hype",
}
CAMPAIGNS = ("monthly-digest", "nurture-1-welcome", "nurture-2-case-study", "nurture-3-pricing", "webinar-invite")
INTENTS = ("book a demo", "pricing for our team", "trial extension", "talk to sales", "security review")


# The archive (``--history``): leads whose journeys ended 75 to 135 days ago, more of them
# engaged (up to 0.55) or hot, all handed off long ago and decided by sales.
PAST_MIX = (0.15, 0.55)
PAST_OFFSET_DAYS = 75
# Content that converts: an engaged lead of the archive that downloaded one of these or
# attended this webinar raises its hand far more often (the nurture pages find it).
CONVERTING = frozenset({"checklist-sla-handoff.pdf", "ebook-lead-scoring-guide.pdf", WEBINARS["sales handoff"]})
# What the demo sales team really accepts (its planted truth, which the quality page finds):
# companies of 50+, senior titles, people who attended a webinar; not personal e-mail addresses.
# Industry, e-mail opens and page views play no part, whatever the default rules give them.
SENIOR_WORDS = ("vp", "chief", "director", "head of", "cmo", "ceo", "founder")
ACCEPT_LOGIT = {"base": -1.4, "company_50": 1.9, "senior": 1.2, "webinar": 1.0, "personal": -2.2}

# What the demo sales team does with a handoff of the older half of the queue.
SALES_FATES = {"accept": 30, "reject": 40, "claim": 20, "leave": 10}
SALES_REPS = ("rep", "rep2")
OPEN_CLAIMS_PER_REP = 2  # in progress at the end of the demo, well under the claim limit
# How often the demo reps confirm each default item of the accept checklist when they
# accept: the timeline least often, so the dashboard has an item "most often missing".
DEMO_CONFIRMATION_ODDS = {"budget": 0.7, "authority": 0.6, "need": 0.9, "timeline": 0.35}


def _demo_confirmations(key: str) -> list[str]:
    """What a demo rep confirmed on accepting a lead: the checklist's active default items,
    drawn from their own generator (the sales fates' draws stay as they were)."""
    rng = random.Random(f"leadflow-demo-confirmed:{key}")  # noqa: S311
    asked = ChecklistItem.objects.filter(active=True).values_list("key", flat=True)
    return [item for item in asked if rng.random() < DEMO_CONFIRMATION_ODDS.get(item, 0.5)]


REJECT_REASONS = {
    RejectReason.BAD_TIMING: 30,
    RejectReason.NO_BUDGET: 22,
    RejectReason.NOT_A_FIT: 18,
    RejectReason.NO_RESPONSE: 18,
    RejectReason.DUPLICATE: 5,
    RejectReason.OTHER: 7,
}
REJECT_NOTES: dict[str, tuple[str, ...]] = {
    RejectReason.BAD_TIMING: (
        "Mid-migration to a new CRM until next quarter. Asked us to follow up in three months.",
        "Interested, but their planning cycle closes in January. Keep nurturing with case studies.",
        "Just signed a one-year contract with a competitor; renewal is next autumn.",
    ),
    RejectReason.NO_BUDGET: (
        "Team of two, no budget line for tooling this year. The free plan fits them better.",
        "Budget frozen after a reorg. The champion is keen and will come back when it thaws.",
        "Student project, no purchasing power.",
    ),
    RejectReason.NOT_A_FIT: (
        "B2C shop with one-off purchases: lead scoring does not apply to them.",
        "Agency looking to resell; route to partnerships, not sales.",
        "Wanted an email tool, not scoring. Webinar content attracted the wrong crowd.",
    ),
    RejectReason.NO_RESPONSE: (
        "Three calls and two emails in a week, no answer. The demo request may have been a colleague's.",
        "Booked a call and did not show up; no reply to the follow-up.",
    ),
    RejectReason.DUPLICATE: ("Same person as an open opportunity in the CRM under a personal email.",),
    RejectReason.OTHER: (
        "Competitor researching our pricing page.",
        "Job seeker: the demo request asked about open positions.",
    ),
}


@dataclass
class Seeded:
    """What a run of the seed did, for its summary."""

    users: list[tuple[DemoUser, bool]]
    source: Source
    count: int
    history: int
    leads_created: int
    accepted: int
    duplicates: int
    rejected: list[dict[str, Any]]
    work: "SalesWork"


@dataclass
class SalesWork:
    accepted: int = 0
    rejected: int = 0
    claimed: int = 0
    skipped: int = 0  # refused by the services (claim limit, wrong state)
    past_decided: int = 0  # handoffs of the archive's leads, all decided
    outcomes: int = 0  # opportunities, wins and losses the demo CRM reported on accepted handoffs
    breaches_told: int = 0  # SLA breaches of the replayed past, flagged as already told


def _sales_accepts(rng: random.Random, lead: Lead, attended_webinar: bool) -> bool:
    """The demo sales team's verdict on a handoff, drawn from its planted truth."""
    title = (lead.job_title or "").lower()
    logit = ACCEPT_LOGIT["base"]
    logit += ACCEPT_LOGIT["company_50"] if (lead.company_size or 0) >= 50 else 0
    logit += ACCEPT_LOGIT["senior"] if any(word in title for word in SENIOR_WORDS) else 0
    logit += ACCEPT_LOGIT["webinar"] if attended_webinar else 0
    logit += ACCEPT_LOGIT["personal"] if (lead.email or "").rsplit("@", 1)[-1] in PERSONAL_DOMAINS else 0
    return rng.random() < 1 / (1 + math.exp(-logit))


def _reject_reason(rng: random.Random, lead: Lead) -> str:
    """Small companies are turned down for fit or budget; the others for timing or silence."""
    if (lead.company_size or 0) < 50:
        return _weighted(rng, {RejectReason.NOT_A_FIT: 45, RejectReason.NO_BUDGET: 40, RejectReason.OTHER: 15})
    return _weighted(rng, REJECT_REASONS)


def _weighted(rng: random.Random, weights: dict[Any, int]) -> Any:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


@dataclass
class DemoLead:
    profile: dict[str, Any]  # the "lead" object of an event payload
    events: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)  # (seconds ago, type, properties)


class DemoData:
    """Generates lead ``index`` of ``seed`` independently of how many leads are asked for,
    so ``--leads 300`` after ``--leads 30`` adds 270 and repeats the first 30 exactly."""

    def __init__(self, seed: int):
        self.seed = seed
        self.fake = Faker("en_US")
        self.emails: set[str] = set()

    def lead(self, index: int, *, past: bool = False) -> DemoLead:
        namespace = "leadflow-demo-past" if past else "leadflow-demo"
        rng = random.Random(f"{namespace}:{self.seed}:{index}")  # noqa: S311 - demo data, not secrets
        self.fake.seed_instance(rng.getrandbits(64))
        first, last = self.fake.first_name(), self.fake.last_name()
        company = self.fake.company()
        personal = rng.random() < 0.1
        domain = rng.choice(PERSONAL_DOMAINS) if personal else _company_domain(company)
        local = re.sub(r"[^a-z.]", "", f"{first}.{last}".lower())
        email, suffix = f"{local}@{domain}", 2
        while email in self.emails:  # earlier leads only: stable whatever --leads is
            email, suffix = f"{local}{suffix}@{domain}", suffix + 1
        self.emails.add(email)

        low, high = _weighted(rng, COMPANY_SIZES)
        profile: dict[str, Any] = {
            "email": email,
            "name": f"{first} {last}",
            "company": "" if personal and rng.random() < 0.5 else company,
            "job_title": _weighted(rng, JOB_TITLES),
            "industry": _weighted(rng, INDUSTRIES),
            "country": _weighted(rng, COUNTRIES),
            "company_size": rng.randint(low, high),
        }
        utm = _weighted(rng, UTM)
        if utm:
            profile.update(zip(("utm_source", "utm_medium", "utm_campaign"), utm, strict=True))
        traits = {"plan": _weighted(rng, PLANS)}
        crm = _weighted(rng, CRMS)
        if crm != "none":
            traits["crm"] = crm
        profile["traits"] = traits
        lead = DemoLead(profile=profile)
        _journey(rng, lead, past=past)
        return lead


def _company_domain(company: str) -> str:
    words = [re.sub(r"[^a-z]", "", word.lower()) for word in company.split()]
    words = [word for word in words if word and word not in {"and", "inc", "llc", "ltd", "plc", "group", "sons"}]
    return "".join(words[:2] or ["company"]) + ".com"


def _journey(rng: random.Random, lead: DemoLead, *, past: bool = False) -> None:
    """Most leads come once or twice, some are engaged, a few are hot and raise their hand.

    ``past``: a lead of the archive (``--history``), whose journey ended months ago and
    which sales has long decided on. More of them are engaged or hot, and an engaged one
    raises its hand far more often after the content that converts (``CONVERTING``)."""
    roll = rng.random()
    cold, engaged = PAST_MIX if past else (0.6, 0.88)
    if roll < cold:
        kind, count, first_seen = "cold", rng.randint(1, 4), rng.uniform(1, HISTORY_DAYS)
    elif roll < engaged:
        kind, count, first_seen = "engaged", rng.randint(5, 14), rng.uniform(20, HISTORY_DAYS)
    else:
        kind, count, first_seen = "hot", rng.randint(12, 28), rng.uniform(15, HISTORY_DAYS)
    last_seen = rng.uniform(0.05, first_seen * (0.3 if kind == "hot" else 0.8))
    times = sorted((rng.uniform(last_seen, first_seen) * DAY for _ in range(count - 1)), reverse=True)
    times = [first_seen * DAY, *times]
    offset = PAST_OFFSET_DAYS * DAY if past else 0
    topic = rng.choice(TOPICS)
    weights = {
        "cold": {"page_view": 70, "email_open": 15, "content_download": 12, "unsubscribe": 3},
        "engaged": {
            "page_view": 40,
            "email_open": 15,
            "email_click": 10,
            "content_download": 12,
            "webinar_registered": 7,
            "pricing_view": 8,
            "unsubscribe": 2,
            "contact_request": 1,
        },
        "hot": {
            "page_view": 35,
            "email_open": 10,
            "email_click": 10,
            "content_download": 10,
            "webinar_registered": 8,
            "pricing_view": 20,
        },
    }[kind]
    unsubscribed = False
    for position, ago in enumerate(times):
        seconds = int(ago)
        if rng.random() < 0.25:
            topic = rng.choice(TOPICS)
        event_type = "page_view" if position == 0 else _weighted(rng, weights)
        if unsubscribed and event_type in {"email_open", "email_click", "unsubscribe"}:
            event_type = "page_view"
        if event_type == "page_view":
            lead.events.append((seconds, "page_view", {"url": rng.choice(PAGES[topic]), "topic": topic}))
        elif event_type == "content_download":
            lead.events.append((seconds + 60, "form_submit", {"form": "content-gate", "topic": topic}))
            lead.events.append((seconds, "content_download", {"asset": ASSETS[topic], "topic": topic}))
        elif event_type == "webinar_registered":
            webinar_topic = topic if topic in WEBINARS else "lead scoring"
            properties = {"webinar": WEBINARS[webinar_topic], "topic": webinar_topic}
            lead.events.append((seconds, "webinar_registered", properties))
            attend_at = seconds - rng.randint(2, 10) * DAY
            if attend_at > 0 and rng.random() < 0.6:
                lead.events.append((attend_at, "webinar_attended", properties))
        elif event_type in {"email_open", "email_click", "unsubscribe"}:
            campaign = rng.choice(CAMPAIGNS)
            if event_type != "email_open":  # a click or an unsubscribe comes from an opened email
                lead.events.append((seconds + rng.randint(30, 600), "email_open", {"campaign": campaign}))
            lead.events.append((seconds, event_type, {"campaign": campaign}))
            unsubscribed = unsubscribed or event_type == "unsubscribe"
        elif event_type == "pricing_view":
            lead.events.append((seconds, "pricing_view", {"url": "/pricing"}))
        else:
            lead.events.append((seconds, event_type, {"intent": rng.choice(INTENTS), "form": "contact"}))
    raises_hand = kind == "hot" and rng.random() < 0.85
    if past and kind == "engaged":
        converted = any(
            properties.keys() & {"asset", "webinar"} and set(properties.values()) & CONVERTING
            for _, _, properties in lead.events
        )
        raises_hand = rng.random() < (0.55 if converted else 0.08)
    if raises_hand:
        intent = "demo_request" if rng.random() < 0.65 else "contact_request"
        seconds = int(last_seen * DAY) - rng.randint(60, 3600)
        lead.events.append((max(seconds, 60), "pricing_view", {"url": "/pricing"}))
        form = "demo" if intent == "demo_request" else "contact"
        lead.events.append((max(seconds - 120, 30), intent, {"intent": rng.choice(INTENTS), "form": form}))
    if offset:
        lead.events[:] = [(seconds + offset, event_type, properties) for seconds, event_type, properties in lead.events]


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _by_day(payloads: list[dict[str, Any]]) -> list[tuple[datetime, list[dict[str, Any]]]]:
    """Payloads (sorted by time) grouped by UTC day, in batches the ingest API accepts."""
    groups: list[tuple[datetime, list[dict[str, Any]]]] = []
    for payload in payloads:
        day = datetime.fromisoformat(payload["occurred_at"]).replace(hour=0, minute=0, second=0, microsecond=0)
        if not groups or groups[-1][0] != day or len(groups[-1][1]) >= BATCH_SIZE:
            groups.append((day, []))
        groups[-1][1].append(payload)
    return groups


def _backdate_new_leads(source: Source, lead_ids: Sequence[int]) -> None:
    """A demo lead was 'created' when its first event happened, not when the seed ran."""
    first_event = Event.objects.filter(lead=OuterRef("pk")).order_by("occurred_at").values("occurred_at")[:1]
    Lead.objects.filter(pk__in=lead_ids, source=source, created_at__gt=Subquery(first_event)).update(
        created_at=Subquery(first_event)
    )


def _backdate_sales_work(decided: Sequence[tuple[Handoff, random.Random]]) -> None:
    """The services stamp claims and decisions with the present; in the demo's history
    the reps claimed within hours of each handoff and decided soon after (a few late,
    past the SLA). Moves those moments, and the stage changes they caused, back to when
    they would have happened. Not the notifications: they are dated
    when the seed made them, so that no inbox holds news "from last month" that arrived
    today, and nothing is read before it was received."""
    if not decided:
        return
    moments: dict[int, tuple[datetime, datetime]] = {}
    for handoff, rng in decided:
        claim_hours = rng.uniform(0.3, 6) if rng.random() < 0.8 else rng.uniform(6, 30)
        claimed_at = handoff.created_at + timedelta(hours=claim_hours)
        moments[handoff.pk] = (claimed_at, claimed_at + timedelta(hours=rng.uniform(0.2, 8)))
    with transaction.atomic():
        handoffs = list(Handoff.objects.filter(pk__in=moments).select_related("lead"))
        for handoff in handoffs:
            claimed_at, decided_at = moments[handoff.pk]
            handoff.first_claimed_at = handoff.claimed_at = claimed_at
            handoff.claim_expires_at = claimed_at + timedelta(hours=settings.HANDOFF_CLAIM_TTL_HOURS)
            handoff.decided_at = decided_at
        Handoff.objects.bulk_update(handoffs, ["first_claimed_at", "claimed_at", "claim_expires_at", "decided_at"])
        worked = [HandoffAction.CLAIMED, HandoffAction.ACCEPTED, HandoffAction.REJECTED]
        events = list(HandoffEvent.objects.filter(handoff_id__in=moments, action__in=worked))
        for event in events:
            claimed_at, decided_at = moments[event.handoff_id]
            event.at = claimed_at if event.action == HandoffAction.CLAIMED else decided_at
        HandoffEvent.objects.bulk_update(events, ["at"])
        by_lead = {handoff.lead_id: moments[handoff.pk][1] for handoff in handoffs}
        decisions = [Stage.ACCEPTED, Stage.RECYCLED, Stage.DISQUALIFIED]
        changes = list(StageChange.objects.filter(lead_id__in=by_lead, from_stage=Stage.SQL, to_stage__in=decisions))
        for change in changes:
            change.at = by_lead[change.lead_id]
        StageChange.objects.bulk_update(changes, ["at"])
        leads = [handoff.lead for handoff in handoffs if handoff.lead.stage == Stage.RECYCLED]
        for lead in leads:
            lead.recycled_at = by_lead[lead.pk]
        Lead.objects.bulk_update(leads, ["recycled_at"])


def _read_new_sql_notifications_of_claimed_handoffs(source: Source) -> None:
    """The reps have read the "new SQL" notifications of the handoffs they have since
    claimed (reads made by people are kept). Read now, as they were made now."""
    claimed = Handoff.objects.filter(lead__source=source, first_claimed_at__isnull=False)
    keys = [f"handoff:{public_id}:opened" for public_id in claimed.values_list("public_id", flat=True)]
    if keys:
        Notification.objects.filter(event_key__in=keys, read_at__isnull=True).update(read_at=timezone.now())


def _read_notifications_of_the_archive(handoffs: QuerySet[Handoff]) -> None:
    """Marketing read the archive's verdicts months ago: its inbox shows this quarter's news."""
    public_ids = handoffs.values_list("public_id", flat=True)
    keys = [handoff_notification_key(public_id, action) for public_id in public_ids for action in HandoffAction]
    if keys:
        Notification.objects.filter(event_key__in=keys, read_at__isnull=True).update(read_at=timezone.now())


def _mark_past_breaches_told(handoffs: Sequence[int]) -> int:
    """The demo's history opens handoffs days ago, so many of them broke their SLA before
    the seed ended. The SLA sweep would tell every rep of each in the first minute of
    ``make run``: a flood of old news. Those breaches happened in the replayed past, so
    they are flagged as the sweep would have flagged them then (``overdue_at`` at the
    due time, with the handoff's trail), and the sweep tells only of new ones."""
    with transaction.atomic():
        breached = list(
            Handoff.objects.select_for_update(of=("self",))
            .select_related("claimed_by")
            .filter(pk__in=handoffs, status__in=OPEN_STATUSES, due_at__lte=timezone.now(), overdue_at__isnull=True)
        )
        Handoff.objects.filter(pk__in=[h.pk for h in breached]).update(overdue_at=F("due_at"))
        HandoffEvent.objects.bulk_create(
            HandoffEvent(
                handoff=h,
                action=HandoffAction.OVERDUE,
                at=h.due_at,
                details={
                    "due_at": h.due_at,
                    "status": h.status,
                    "claimed_by": h.claimed_by.get_username() if h.claimed_by else "nobody",
                },
            )
            for h in breached
        )
    return len(breached)


class Command(BaseCommand):
    help = (
        "Load demo data: users admin, marketer, rep and rep2 (passwords printed at the end), a 'Website' "
        "source, and leads with B2B profiles and event journeys over the last 60 days, ingested through the "
        "real ingest path; then rep and rep2 work the older half of the sales queue (accept, reject with "
        "feedback). Safe to run again: nothing is duplicated. Never run it on a production database: "
        "the demo passwords are public."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--leads", type=int, default=300, help="How many demo leads (default: 300).")
        parser.add_argument(
            "--history",
            type=int,
            default=400,
            help="How many archive leads, whose journeys ended 75 to 135 days ago and whose handoffs sales has "
            "all decided, so that the score quality, suggested points and nurture pages have a history to "
            "learn from (default: 400; 0 for none).",
        )
        parser.add_argument(
            "--seed",
            type=int,
            default=2026,
            help="Seed of the generated data (default: 2026). The same seed gives the same leads and events, "
            "so running again adds nothing; another seed adds other leads.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        count: int = options["leads"]
        seed: int = options["seed"]
        if count < 0:
            raise CommandError("--leads must be 0 or more.")
        if options["history"] < 0:
            raise CommandError("--history must be 0 or more.")
        if not settings.DEBUG:
            self.stderr.write(
                self.style.WARNING(
                    "DEBUG is off: this may be a production database. The demo users have public passwords; "
                    "delete them (or change their passwords) if this is not a throwaway instance."
                )
            )

        # Replayed history notifies the demo accounts in-app (their inboxes are part of the
        # demo) but e-mails nobody: hundreds of console e-mails would bury the summary.
        with emails_withheld() as withheld:
            seeded = self._seed(count, options["history"], seed)
        self._report(seeded, withheld[0])

    def _seed(self, count: int, history: int, seed: int) -> Seeded:
        users = self._ensure_users()
        self._ensure_second_model()
        source, _created = source_get_or_create(name="Website")
        leads_before = Lead.objects.count()
        last_handoff = Handoff.objects.order_by("-pk").values_list("pk", flat=True).first() or 0

        data = DemoData(seed)
        demo_leads = [data.lead(index) for index in range(count)]
        past_leads = [data.lead(index, past=True) for index in range(history)]
        anchor = self._anchor(source, seed, demo_leads, past_leads)
        payloads: list[dict[str, Any]] = []
        numbered = [(str(index), lead) for index, lead in enumerate(demo_leads)]
        numbered += [(f"h{index}", lead) for index, lead in enumerate(past_leads)]
        for index, lead in numbered:
            for number, (seconds_ago, event_type, properties) in enumerate(lead.events):
                # The full profile travels with the first event and form fills, as a tracking script sends it.
                identity = lead.profile if number == 0 or event_type.endswith(("_submit", "_request")) else None
                payloads.append(
                    {
                        "event_id": f"demo-{seed}-{index}-{number}",
                        "type": event_type,
                        "occurred_at": _iso(anchor - timedelta(seconds=seconds_ago)),
                        "lead": identity or {"email": lead.profile["email"]},
                        "properties": properties,
                    }
                )
        payloads.sort(key=lambda payload: payload["occurred_at"])

        accepted = duplicates = 0
        rejected: list[dict[str, Any]] = []
        scored: set[int] = set()
        with progress_bar(self.stderr, total=len(payloads), unit="event", desc="Ingesting demo events") as bar:
            # Replay history a day at a time, scoring at the end of each day, so that stage changes,
            # MQL/SQL dates and handoffs spread over the 60 days as they would have happened.
            for day, batch in _by_day(payloads):
                result = events_ingest(source=source, payloads=batch, schedule_scoring=False)
                accepted += result.accepted
                duplicates += result.duplicates
                rejected += [{**item, "event_id": batch[item["index"]].get("event_id")} for item in result.rejected]
                if result.accepted:
                    _backdate_new_leads(source, result.lead_ids)
                    leads_score(lead_ids=result.lead_ids, as_of=min(day + timedelta(days=1), anchor))
                    scored.update(result.lead_ids)
                bar.update(len(batch))
        if scored:
            leads_score(lead_ids=sorted(scored))  # today's scores, with today's decay
        work = self._work_the_queue(source, seed, past_emails={lead.profile["email"] for lead in past_leads})
        new_handoffs = Handoff.objects.filter(lead__source=source, pk__gt=last_handoff)
        work.breaches_told = _mark_past_breaches_told(list(new_handoffs.values_list("pk", flat=True)))
        work.outcomes = demo_outcomes_record(source=source, seed=seed).accepted  # what the CRM learnt since
        # The demo backdates its leads, stage changes and handoffs behind the services' back,
        # so that history spreads over 60 days: recount the dashboard's rollups from it.
        rollups_rebuild()

        leads_created = Lead.objects.count() - leads_before
        return Seeded(users, source, count, history, leads_created, accepted, duplicates, rejected, work)

    def _ensure_second_model(self) -> None:
        """A second product line, "ABM add-on", scored side by side with the default model:
        interest in account-based marketing and attribution, a fit of larger companies,
        students suppressed. Created (and published) once."""
        if scoring_selectors.model_get(slug=ADDON["slug"]) is not None:
            return
        with transaction.atomic():
            model = scoring_services.scoring_model_create(
                name=ADDON["name"], slug=ADDON["slug"], description=ADDON["description"]
            )
            ruleset = scoring_services.ruleset_create(
                user=None,
                model=model,
                name="ABM add-on v1",
                mql_threshold=Decimal(25),
                sql_threshold=Decimal(45),
                intent_event_types=["demo_request", "contact_request"],
                decay_half_life_days=Decimal(30),
                grade_a_min=Decimal(25),
                grade_b_min=Decimal(15),
                grade_c_min=Decimal(5),
                grade_d_min=Decimal(0),
            )
            for rule in ADDON_RULES:
                scoring_services.rule_create(ruleset=ruleset, **rule)
            scoring_services.ruleset_publish(ruleset=ruleset, user=None)

    def _ensure_users(self) -> list[tuple[DemoUser, bool]]:
        """Create the demo users that do not exist; existing users are left untouched."""
        user_model = get_user_model()
        ensured = []
        with transaction.atomic():
            for spec in DEMO_USERS:
                user, created = user_model._default_manager.get_or_create(
                    username=spec.username,
                    defaults={
                        "email": f"{spec.username}@example.com",
                        "first_name": spec.first_name,
                        "last_name": "Demo",
                        "is_staff": spec.superuser,
                        "is_superuser": spec.superuser,
                    },
                )
                if created:
                    user.set_password(spec.password)
                    user.save(update_fields=["password"])
                    user.groups.add(*(Group.objects.get_or_create(name=role)[0] for role in spec.roles))
                ensured.append((spec, created))
        return ensured

    def _work_the_queue(self, source: Source, seed: int, *, past_emails: set[str]) -> SalesWork:
        """The demo reps work the older half of the queue through the handoff services:
        each never-claimed handoff there is accepted, rejected (a reason and a note for
        marketing), claimed and left in progress, or left queued, as its seed decides.
        A handoff claimed once is never touched again, so a second run does nothing."""
        work = SalesWork()
        user_model = get_user_model()
        reps = list(
            user_model._default_manager.filter(username__in=SALES_REPS, is_active=True, groups__name=SALES)
            .distinct()
            .order_by("username")
        )
        handoffs = Handoff.objects.filter(lead__source=source)
        recent = handoffs.exclude(lead__email__in=past_emails)
        created = sorted(recent.values_list("created_at", flat=True))
        if not reps or not (created or past_emails):
            return work
        older_half = created[len(created) // 2] if created else timezone.now()
        candidates = (
            handoffs.filter(status=HandoffStatus.QUEUED, first_claimed_at__isnull=True)
            .filter(Q(created_at__lt=older_half) | Q(lead__email__in=past_emails))
            .select_related("lead")
            .order_by("created_at", "id")
        )
        attended = set(
            Event.objects.filter(type="webinar_attended", lead__in=candidates.values("lead")).values_list(
                "lead_id", flat=True
            )
        )
        open_claims = dict.fromkeys((rep.pk for rep in reps), 0)
        decided: list[tuple[Handoff, random.Random]] = []
        for handoff in candidates:
            lead = handoff.lead
            rng = random.Random(f"leadflow-demo-sales:{seed}:{lead.email or lead.public_id}")  # noqa: S311
            past = lead.email in past_emails
            fate = "decide" if past else _weighted(rng, SALES_FATES)
            rep = rng.choice(reps)
            if fate == "leave" or (fate == "claim" and open_claims[rep.pk] >= OPEN_CLAIMS_PER_REP):
                continue
            if fate == "decide":  # the archive follows the planted truth; this quarter's queue, its seed
                fate = "accept" if _sales_accepts(rng, lead, lead.pk in attended) else "reject"
                work.past_decided += 1
            try:
                claimed = handoff_claim(handoff=handoff, user=rep)
                if fate == "accept":
                    confirmed = _demo_confirmations(f"{seed}:{handoff.lead.email or handoff.lead.public_id}")
                    decided.append((handoff_accept(handoff=claimed, user=rep, confirmed=confirmed), rng))
                    work.accepted += 1
                elif fate == "reject":
                    reason = _reject_reason(rng, lead) if past else _weighted(rng, REJECT_REASONS)
                    note = rng.choice(REJECT_NOTES[reason])
                    decided.append((handoff_reject(handoff=claimed, user=rep, reason=reason, note=note), rng))
                    work.rejected += 1
                else:
                    open_claims[rep.pk] += 1
                    work.claimed += 1
            except HandoffError:
                work.skipped += 1
        _backdate_sales_work(decided)
        _read_new_sql_notifications_of_claimed_handoffs(source)
        _read_notifications_of_the_archive(handoffs.filter(lead__email__in=past_emails))
        return work

    def _anchor(
        self, source: Source, seed: int, demo_leads: Sequence[DemoLead], past_leads: Sequence[DemoLead]
    ) -> datetime:
        """The moment event times count back from: now on the first run, the first run's "now" after,
        so a second run sends identical events (duplicates, not conflicts)."""
        for first, event_id in ((demo_leads, f"demo-{seed}-0-0"), (past_leads, f"demo-{seed}-h0-0")):
            earlier = Event.objects.filter(source=source, event_id=event_id).first() if first else None
            if earlier is not None:
                return earlier.occurred_at + timedelta(seconds=first[0].events[0][0])
        return timezone.now().replace(microsecond=0)

    def _report(self, seeded: Seeded, withheld_emails: int) -> None:
        """A summary a person reads in one glance: what is there, and how to log in."""
        users, work, rejected = seeded.users, seeded.work, seeded.rejected
        created = sum(1 for _, was_created in users if was_created)
        self.stdout.write(f"Users: {created} created, {len(users) - created} already existed (left unchanged).")
        self.stdout.write(
            f"Leads: {seeded.count} demo leads and {seeded.history} from the archive, {seeded.leads_created} new."
        )
        self.stdout.write(
            f"Events: {seeded.accepted} accepted, {seeded.duplicates} duplicates, {len(rejected)} rejected."
        )
        leads = Lead.objects.filter(source=seeded.source)
        stages = dict(leads.values_list("stage").annotate(n=Count("pk")).order_by())
        self.stdout.write(
            "Leads by stage: " + ", ".join(f"{stages.get(stage, 0)} {label}" for stage, label in Stage.choices) + "."
        )
        handoffs = Handoff.objects.filter(lead__source=seeded.source)
        statuses = dict(handoffs.values_list("status").annotate(n=Count("pk")).order_by())
        by_status = ", ".join(f"{statuses.get(status, 0)} {label.lower()}" for status, label in HandoffStatus.choices)
        self.stdout.write(f"Handoffs: {sum(statuses.values())} ({by_status}).")
        self.stdout.write(
            f"Sales queue: {work.accepted} accepted, {work.rejected} rejected, {work.claimed} claimed by the demo reps."
        )
        self.stdout.write(f"CRM outcomes: {work.outcomes} new (opportunities, wins and losses of accepted handoffs).")
        if seeded.history:
            self.stdout.write(
                f"Archive: {seeded.history} leads whose journeys ended {PAST_OFFSET_DAYS} to "
                f"{PAST_OFFSET_DAYS + HISTORY_DAYS} days ago; sales decided {work.past_decided} of their handoffs "
                "(accepting bigger companies, senior titles and webinar attendees), for the score quality pages."
            )
        self.stdout.write(
            f"SLA: {work.breaches_told} breaches of the replayed past flagged as already told "
            "(the SLA sweep tells only of new ones)."
        )
        notifications = Notification.objects.filter(recipient__username__in=[spec.username for spec, _ in users])
        self.stdout.write(
            f"Notifications: {notifications.count()} in the demo users' inboxes; "
            f"{withheld_emails} e-mails not sent while seeding."
        )
        self.stdout.write("")
        self.stdout.write("Demo users (the passwords are public: demo instances only):")
        rows = [("username", "password", "roles", "status")]
        for spec, was_created in users:
            roles = ", ".join((*(("superuser",) if spec.superuser else ()), *spec.roles))
            rows.append((spec.username, spec.password, roles, "created" if was_created else "existing, unchanged"))
        widths = [max(len(row[column]) for row in rows) for column in range(4)]
        for row in rows:
            line = "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
            self.stdout.write(f"  {line}".rstrip())
        if rejected:
            for item in rejected[:5]:
                self.stderr.write(f"Rejected {item['event_id']}: {item['errors']}")
            raise CommandError(
                f"{len(rejected)} demo events were rejected. If an earlier run used the same --seed with another "
                "version of the generator (or of Faker), use another --seed or start from an empty database."
            )
        self.stdout.write(self.style.SUCCESS("Demo data ready."))
