"""The sales queue: handoffs of SQLs to sales, their audit trail, and notifications."""

import uuid
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import Q
from django.utils import timezone

from leadflow.encryption import EncryptedTextField, secret_readable
from leadflow.leads.models import Lead
from scoring.models import ScoringModel


class HandoffStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    CLAIMED = "claimed", "Claimed"
    ACCEPTED = "accepted", "Accepted"
    REJECTED = "rejected", "Rejected"
    # The lead left SQL by hand (a marketer moved it) before sales decided.
    CLOSED = "closed", "Closed"


OPEN_STATUSES = (HandoffStatus.QUEUED, HandoffStatus.CLAIMED)
DECIDED_STATUSES = (HandoffStatus.ACCEPTED, HandoffStatus.REJECTED)


def overdue_q(now: datetime) -> Q:
    """Overdue: open and past its due time (the SLA), whether or not the sweep has flagged
    it yet (``overdue_at``). ``Handoff.is_overdue`` is the same rule for one handoff."""
    return Q(status__in=OPEN_STATUSES, due_at__lte=now)


class RejectReason(models.TextChoices):
    NOT_A_FIT = "not_a_fit", "Not a fit"
    NO_BUDGET = "no_budget", "No budget"
    BAD_TIMING = "bad_timing", "Bad timing"
    NO_RESPONSE = "no_response", "No response"
    DUPLICATE = "duplicate", "Duplicate"
    OTHER = "other", "Other"


# A rejection for these reasons disqualifies the lead; the others recycle it to nurturing.
DISQUALIFYING_REASONS = (RejectReason.NOT_A_FIT, RejectReason.DUPLICATE)


class Handoff(models.Model):
    """A lead handed to sales when it became an SQL: queued → claimed → accepted or
    rejected (back to queued on release or claim expiry)."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # Indexed by handoff_lead_created (lead, -created_at); a second index would only slow claims.
    lead = models.ForeignKey(Lead, on_delete=models.CASCADE, related_name="handoffs", db_index=False)
    status = models.CharField(max_length=16, choices=HandoffStatus.choices, default=HandoffStatus.QUEUED)
    priority = models.DecimalField(
        max_digits=12,
        decimal_places=2,
        default=Decimal("0"),
        help_text="The qualifying model's score when the lead became an SQL.",
    )
    # The scoring model that qualified the lead (the first, when several did at once:
    # ``qualified_by`` lists them all); the queue filters by it and sorts by its score.
    model = models.ForeignKey(
        ScoringModel, null=True, blank=True, on_delete=models.SET_NULL, related_name="handoffs", db_index=False
    )
    qualified_by = models.JSONField(default=list, blank=True, help_text="Slugs of the models that qualified the lead.")
    created_at = models.DateTimeField(default=timezone.now)
    due_at = models.DateTimeField(help_text="SLA: sales should decide by then.")
    claimed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="handoff_claims"
    )
    claimed_at = models.DateTimeField(null=True, blank=True)
    claim_expires_at = models.DateTimeField(null=True, blank=True)
    first_claimed_at = models.DateTimeField(null=True, blank=True, help_text="For the time-to-claim statistic.")
    decided_at = models.DateTimeField(null=True, blank=True)
    reject_reason = models.CharField(max_length=16, choices=RejectReason.choices, blank=True)
    note = models.TextField(
        blank=True, help_text="The rep's note on the decision (accept or reject), or why the handoff was closed."
    )
    # What sales confirmed when accepting (``handoff_accept``): the checklist's active items
    # at that moment, in order, each {"key", "label", "confirmed"}. Empty: not accepted, or
    # accepted before the checklist existed.
    checklist = models.JSONField(
        default=list, blank=True, help_text="The accept checklist as answered: [{key, label, confirmed}]."
    )
    overdue_at = models.DateTimeField(null=True, blank=True, help_text="When the SLA breach was flagged (once).")
    lead_attributes = models.JSONField(
        null=True,
        blank=True,
        editable=False,
        help_text=(
            "The lead's scoring attributes as the handoff opened (score quality's point-in-time fit); "
            "null for handoffs opened before they were kept, and once the person is erased."
        ),
    )

    class Meta:
        ordering = ["-priority", "created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["lead"], condition=Q(status__in=OPEN_STATUSES), name="handoff_one_open_per_lead"
            ),
            models.CheckConstraint(condition=Q(status__in=HandoffStatus.values), name="handoff_status_valid"),
            models.CheckConstraint(
                condition=(
                    Q(status=HandoffStatus.QUEUED, claimed_by__isnull=True, claim_expires_at__isnull=True)
                    | Q(
                        status=HandoffStatus.CLAIMED,
                        claimed_by__isnull=False,
                        claimed_at__isnull=False,
                        claim_expires_at__isnull=False,
                    )
                    | Q(status__in=[*DECIDED_STATUSES, HandoffStatus.CLOSED], decided_at__isnull=False)
                ),
                name="handoff_status_shape",
            ),
            models.CheckConstraint(
                condition=(Q(status=HandoffStatus.REJECTED) & ~Q(reject_reason=""))
                | (~Q(status=HandoffStatus.REJECTED) & Q(reject_reason="")),
                name="handoff_reject_reason_iff_rejected",
            ),
        ]
        indexes = [
            # The queue, in claim order ("claim next" reads its head).
            models.Index(
                models.F("priority").desc(),
                "created_at",
                "id",
                condition=Q(status=HandoffStatus.QUEUED),
                name="handoff_queue",
            ),
            # Open claims of a rep (the claim limit, "mine").
            models.Index(fields=["claimed_by"], condition=Q(status=HandoffStatus.CLAIMED), name="handoff_open_claims"),
            models.Index(
                fields=["claim_expires_at"], condition=Q(status=HandoffStatus.CLAIMED), name="handoff_claim_expiry"
            ),
            models.Index(
                fields=["due_at"],
                condition=Q(status__in=OPEN_STATUSES, overdue_at__isnull=True),
                name="handoff_sla_watch",
            ),
            # The queue API's orders over every handoff (``handoff.api.QUEUE_ORDERS``): a
            # manager's first page, and a rep's (queued or their own), without a sort.
            models.Index(models.F("priority").desc(), "created_at", "id", name="handoff_priority_order"),
            models.Index(fields=["created_at", "id"], name="handoff_created"),
            models.Index(fields=["due_at", "id"], name="handoff_due"),
            # Open handoffs by due time: the dashboard's overdue ones (how many, the oldest),
            # flagged or not (handoff_sla_watch holds only those the sweep has not flagged).
            models.Index(fields=["due_at", "id"], condition=Q(status__in=OPEN_STATUSES), name="handoff_open_due"),
            models.Index(fields=["lead", "-created_at"], name="handoff_lead_created"),
        ]

    def __str__(self) -> str:
        return f"Handoff of {self.lead} ({self.status})"

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    def is_overdue(self, now: datetime | None = None) -> bool:
        """``overdue_q`` for this handoff: open and past its due time."""
        return self.is_open and self.due_at <= (now or timezone.now())

    @property
    def confirmed(self) -> list[str]:
        """The keys of the checklist items sales confirmed when accepting, in order."""
        return [str(item["key"]) for item in self.checklist if item.get("confirmed")]

    @property
    def unconfirmed(self) -> list[str]:
        """The keys of the items sales was asked about and did not confirm."""
        return [str(item["key"]) for item in self.checklist if not item.get("confirmed")]


class ChecklistItem(models.Model):
    """One thing sales may confirm when accepting a handoff (budget, authority, need,
    timeline…), configured by scoring admins. The key never changes: accepted handoffs
    and the reports refer to it; an item no longer asked is deactivated, not deleted."""

    key = models.SlugField(max_length=40, unique=True)
    label = models.CharField(max_length=80)
    position = models.PositiveIntegerField(default=0, help_text="Order on the accept form, smallest first.")
    active = models.BooleanField(default=True, help_text="Asked when a rep accepts a handoff.")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["position", "id"]

    def __str__(self) -> str:
        return f"{self.label} ({self.key})"


class HandoffRollup(models.Model):
    """Per day of creation (in TIME_ZONE) × source × campaign (the lead's) × qualifying
    model (``model_id``, 0 for none): the handoffs created and what became of them, for
    the dashboard's sales outcomes (``handoff.rollups``). Append-only deltas, summed by key."""

    day = models.DateField()
    source_id = models.IntegerField(default=0)
    campaign = models.CharField(max_length=200, blank=True)
    model_id = models.IntegerField(default=0)
    created = models.IntegerField(default=0)
    accepted = models.IntegerField(default=0)
    rejected = models.IntegerField(default=0)
    closed = models.IntegerField(default=0)
    # Flagged overdue or decided after its due time; an open handoff past due and not yet
    # flagged is counted live (``handoff.rollups``), as it becomes a breach by the clock.
    breached = models.IntegerField(default=0)
    rejected_not_a_fit = models.IntegerField(default=0)
    rejected_no_budget = models.IntegerField(default=0)
    rejected_bad_timing = models.IntegerField(default=0)
    rejected_no_response = models.IntegerField(default=0)
    rejected_duplicate = models.IntegerField(default=0)
    rejected_other = models.IntegerField(default=0)

    class Meta:
        indexes = [models.Index(fields=["day", "source_id"], name="handoffrollup_day")]

    def __str__(self) -> str:
        return f"{self.day} source {self.source_id} {self.campaign!r} model {self.model_id}: {self.created} created"


class HandoffDurationKind(models.TextChoices):
    TO_CLAIM = "to_claim", "Created → first claim"
    TO_DECISION = "to_decision", "Created → accepted or rejected"


class HandoffDurationRollup(models.Model):
    """Per day of creation × source × campaign × model × kind: a histogram of durations in
    log-spaced buckets (``leadflow.leads.rollups.duration_bucket``), for approximate medians."""

    day = models.DateField()
    source_id = models.IntegerField(default=0)
    campaign = models.CharField(max_length=200, blank=True)
    model_id = models.IntegerField(default=0)
    kind = models.CharField(max_length=16, choices=HandoffDurationKind.choices)
    bucket = models.SmallIntegerField()
    handoffs = models.IntegerField(default=0)

    class Meta:
        indexes = [models.Index(fields=["day", "source_id"], name="handoffdurationrollup_day")]

    def __str__(self) -> str:
        return f"{self.day} source {self.source_id} {self.kind} bucket {self.bucket}: {self.handoffs}"


class HandoffAction(models.TextChoices):
    OPENED = "opened", "Opened"
    CLAIMED = "claimed", "Claimed"
    RELEASED = "released", "Released"
    EXPIRED = "expired", "Claim expired"
    ACCEPTED = "accepted", "Accepted"
    REJECTED = "rejected", "Rejected"
    REASSIGNED = "reassigned", "Reassigned"
    OVERDUE = "overdue", "Flagged overdue"
    CLOSED = "closed", "Closed"


class HandoffEvent(models.Model):
    """Append-only audit trail of a handoff: who did what, when."""

    # Indexed by handoffevent_handoff_at (handoff, at).
    handoff = models.ForeignKey(Handoff, on_delete=models.CASCADE, related_name="events", db_index=False)
    action = models.CharField(max_length=16, choices=HandoffAction.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Empty: the system (scoring, the SLA and expiry sweeps).",
    )
    at = models.DateTimeField(default=timezone.now)
    details = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["handoff", "at"], name="handoffevent_handoff_at")]

    def __str__(self) -> str:
        return f"{self.action} @ {self.at:%Y-%m-%d %H:%M}"


class NotificationKind(models.TextChoices):
    HANDOFF_NEW = "handoff_new", "New SQL in the queue"
    HANDOFF_ASSIGNED = "handoff_assigned", "Handoff assigned to you"
    CLAIM_EXPIRED = "claim_expired", "Claim expired"
    SLA_BREACH = "sla_breach", "SLA breached"
    HANDOFF_REJECTED = "handoff_rejected", "Sales rejected a lead"
    ACCOUNT_QUALIFIED = "account_qualified", "An account became marketing-qualified"
    WEBHOOK_DISABLED = "webhook_disabled", "A webhook subscription was disabled"


class Notification(models.Model):
    """An in-app notification. ``event_key`` names the event that caused it: one
    notification per person per event, however often the event is processed."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    recipient = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications")
    kind = models.CharField(max_length=32, choices=NotificationKind.choices)
    event_key = models.CharField(max_length=200)
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    link = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["recipient", "event_key"], name="notification_once_per_event"),
        ]
        indexes = [
            models.Index(fields=["recipient", "-created_at", "-id"], name="notification_inbox"),
            models.Index(fields=["recipient"], condition=Q(read_at__isnull=True), name="notification_unread"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} for {self.recipient}"


class WebhookSubscription(models.Model):
    """An endpoint that receives signed webhooks of the events it chose (``events``, names
    from ``handoff.webhooks.WEBHOOK_EVENTS``), registered by an admin (``owner``).

    The secret signs every delivery (``LeadFlow-Signature``); signing needs it (a hash
    could only verify), so it is kept encrypted under ``SECRET_KEY``
    (``leadflow.encryption``), shown once when created, and never again on a page or in
    the API. ``managed_by_settings``: the subscription that
    follows ``NOTIFY_WEBHOOK_URL`` / ``NOTIFY_WEBHOOK_SECRET`` (the former global webhook).
    ``failing_since``: the first failed attempt since the last success; after
    ``WEBHOOK_DISABLE_AFTER_HOURS`` of failures the subscription is disabled."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=100)
    url = models.URLField(max_length=500)
    secret = EncryptedTextField()
    events = models.JSONField(default=list, help_text="The event names this endpoint receives.")
    min_score_change = models.DecimalField(
        max_digits=12,
        decimal_places=2,
        default=Decimal("0"),
        help_text="lead.score_changed only when the score moved by at least this much (either way).",
    )
    active = models.BooleanField(default=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.CharField(max_length=300, blank=True)
    failing_since = models.DateTimeField(null=True, blank=True)
    managed_by_settings = models.BooleanField(default=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["managed_by_settings"],
                condition=Q(managed_by_settings=True),
                name="webhooksubscription_one_from_settings",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.url})"

    @property
    def secret_hint(self) -> str:
        """What pages show of the secret: its last four characters."""
        if not secret_readable(self.secret):
            return "unreadable: make a new secret"
        return f"…{self.secret[-4:]}" if self.secret else ""


class WebhookDelivery(models.Model):
    """The outbox: one webhook POST of one event (``key``, sent as ``X-LeadFlow-Delivery``,
    the receiver's idempotency key) to one subscription, written in the transaction of
    the change that caused it; once delivered it is never sent again unless replayed.

    Pending (neither ``delivered_at`` nor ``failed_at``) it is due at ``next_attempt_at``
    (empty: now) and free to send while ``sending_until`` is empty or past, claimed by a
    sender until then (see ``handoff.webhooks.webhook_deliver``)."""

    subscription = models.ForeignKey(
        WebhookSubscription, on_delete=models.CASCADE, related_name="deliveries", db_index=False
    )
    key = models.CharField(max_length=200)
    event = models.CharField(max_length=40, blank=True)
    payload = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now)
    attempts = models.PositiveIntegerField(default=0)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True, help_text="When the next retry is due.")
    replayed_at = models.DateTimeField(
        null=True, blank=True, help_text="Sent again by hand then: its day of retries counts from there."
    )
    last_status = models.PositiveSmallIntegerField(null=True, blank=True, help_text="HTTP status of the last attempt.")
    last_error = models.TextField(blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True, help_text="Gave up: retries exhausted or refused.")
    sending_until = models.DateTimeField(
        null=True, blank=True, help_text="A sender holds the delivery until then (database clock); empty when idle."
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.UniqueConstraint(fields=["subscription", "key"], name="webhookdelivery_once_per_subscription"),
        ]
        indexes = [
            models.Index(
                fields=["created_at"],
                condition=Q(delivered_at__isnull=True, failed_at__isnull=True),
                name="webhook_pending",
            ),
            models.Index(fields=["subscription", "-created_at", "-id"], name="webhookdelivery_log"),
        ]

    def __str__(self) -> str:
        return self.key

    @property
    def status(self) -> str:
        if self.delivered_at:
            return "delivered"
        if self.failed_at:
            return "failed"
        return "retrying" if self.attempts else "pending"


class CachedEvaluation(models.Model):
    """A handoff's lead evaluated by a published or archived ruleset (whose rules never
    change again) as of the handoff's creation: ``handoff.quality`` fills it for the
    handoffs it misses and reads it back. Only the score side is kept; what sales and the
    CRM said (the labels) is read fresh every time."""

    ruleset = models.ForeignKey(
        "scoring.RuleSet", on_delete=models.CASCADE, related_name="handoff_evaluations", db_index=False
    )
    handoff = models.ForeignKey(Handoff, on_delete=models.CASCADE, related_name="evaluations")
    score = models.DecimalField(max_digits=12, decimal_places=2)
    fit = models.DecimalField(max_digits=12, decimal_places=2)
    behaviour = models.DecimalField(max_digits=12, decimal_places=2)
    grade = models.CharField(max_length=1)
    # Whether the ruleset's SQL criteria held then (a backtest's "would have sent").
    qualifies_sql = models.BooleanField()
    # Rule id (as text) → contribution, and → units (the matched amount before points).
    contributions = models.JSONField(default=dict)
    units = models.JSONField(default=dict)
    computed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["ruleset", "handoff"], name="cachedevaluation_ruleset_handoff"),
        ]

    def __str__(self) -> str:
        return f"Handoff {self.handoff_id} under ruleset {self.ruleset_id}: {self.score}"
