"""The core of the domain: leads, the events they generate, where they come from, and
the audit log of their stages."""

import uuid
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Coalesce, Lower
from django.utils import timezone


class Stage(models.TextChoices):
    NEW = "new", "New"
    MQL = "mql", "MQL"
    SQL = "sql", "SQL"
    ACCEPTED = "accepted", "Accepted"
    RECYCLED = "recycled", "Recycled"
    DISQUALIFIED = "disqualified", "Disqualified"


class Source(models.Model):
    """A system that sends leads and events (web site, form tool, CSV import…)."""

    name = models.CharField(max_length=100, unique=True)
    slug = models.SlugField(max_length=100, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    # Segment-compatible ingest (``leadflow.leads.segment``): a ``track`` event's name to
    # our event type, e.g. {"Demo Requested": "demo_request"}; a name not listed becomes
    # the snake_case of itself.
    segment_event_types = models.JSONField(
        default=dict,
        blank=True,
        help_text='Segment track event names to event types, e.g. {"Demo Requested": "demo_request"}.',
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class IngestKey(models.Model):
    """A secret a source presents as ``Authorization: Bearer``. Only its hash is stored."""

    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="ingest_keys")
    label = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=16, unique=True, help_text="Public part of the key, to recognise it.")
    key_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.source} key {self.prefix}…"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class ApiToken(models.Model):
    """A personal API token for a person (marketer, rep, admin). Only its hash is stored."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=16, unique=True)
    key_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.user} token {self.prefix}…"


ZERO = Decimal("0")


class FreeMailDomain(models.Model):
    """An e-mail domain anyone can sign up at (gmail.com…): its leads never form an
    account by domain. Data, editable in the admin; re-derive the accounts after an edit
    (``manage.py rederive_accounts`` or the admin action)."""

    domain = models.CharField(max_length=253, unique=True, help_text="Lower-case, e.g. gmail.com.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["domain"]
        constraints = [models.CheckConstraint(condition=Q(domain=Lower("domain")), name="freemail_domain_lowercase")]

    def __str__(self) -> str:
        return self.domain


class Account(models.Model):
    """The company a lead belongs to: the lead's ``account`` trait (a string) or, failing
    that, its e-mail domain unless that is a free-mail one (``leadflow.leads.accounts``).
    ``key`` is what identifies it: the trait's text, blanks collapsed and ASCII letters
    lower-cased, or the domain."""

    key = models.CharField(max_length=255, unique=True)
    name = models.CharField(max_length=255)
    domain = models.CharField(max_length=253, blank=True, help_text="The e-mail domain of its contacts, if known.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name


class Lead(models.Model):
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # Identity: an email, an external_id, or (a visitor) only anonymous ids (the
    # ``anonymous_ids`` relation); email is stored lower-cased.
    # NULL, not "", when absent: the unique constraints must ignore missing identities.
    email = models.CharField(max_length=254, null=True, blank=True)  # noqa: DJ001
    external_id = models.CharField(max_length=128, null=True, blank=True)  # noqa: DJ001

    name = models.CharField(max_length=200, blank=True)
    company = models.CharField(max_length=200, blank=True)
    job_title = models.CharField(max_length=200, blank=True)
    industry = models.CharField(max_length=100, blank=True)
    country = models.CharField(max_length=64, blank=True)
    company_size = models.PositiveIntegerField(null=True, blank=True, help_text="Number of employees.")
    # Indexed by lead_source_created: a second index would only slow every write.
    source = models.ForeignKey(
        Source, null=True, blank=True, on_delete=models.PROTECT, related_name="leads", db_index=False
    )
    utm_source = models.CharField(max_length=200, blank=True)
    utm_medium = models.CharField(max_length=200, blank=True)
    utm_campaign = models.CharField(max_length=200, blank=True)
    traits = models.JSONField(default=dict, blank=True)

    # The lifecycle is one per lead; the scores (one per scoring model) are scoring's,
    # in their own narrow table (``scoring.Score``, the reverse relation ``scores``).
    stage = models.CharField(max_length=16, choices=Stage.choices, default=Stage.NEW)
    mql_at = models.DateTimeField(null=True, blank=True)
    sql_at = models.DateTimeField(null=True, blank=True)
    recycled_at = models.DateTimeField(null=True, blank=True)
    owner = models.ForeignKey(  # indexed by lead_owner, where set
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="owned_leads",
        db_index=False,
    )
    # Derived from the account trait or the e-mail domain by every write of either
    # (``leadflow.leads.accounts``); indexed by lead_account, where set.
    account = models.ForeignKey(
        Account, null=True, blank=True, on_delete=models.SET_NULL, related_name="contacts", db_index=False
    )
    last_activity_at = models.DateTimeField(null=True, blank=True)
    needs_rescore = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    # Set when the person was erased (``leadflow.leads.privacy``): the row stays as an
    # anonymous tombstone, without identity, profile or events, so that the dashboard's
    # counts (funnel, handoff outcomes) keep it; lists and pages no longer show it.
    erased_at = models.DateTimeField(null=True, blank=True)
    # A visitor: known only by anonymous ids (Segment's ``anonymousId``). Scored, never
    # promoted, hidden from lists by default; it stops being one when it gains an e-mail
    # or an external_id, or is merged into the person it turns out to be (``lead_merge``).
    visitor = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["email"], name="lead_email_unique"),
            models.UniqueConstraint(fields=["external_id"], name="lead_external_id_unique"),
            models.CheckConstraint(
                condition=Q(email__isnull=False)
                | Q(external_id__isnull=False)
                | Q(erased_at__isnull=False)
                | Q(visitor=True),
                name="lead_has_identity_unless_erased",
            ),
            models.CheckConstraint(
                condition=Q(visitor=False) | Q(email__isnull=True, external_id__isnull=True),
                name="lead_visitor_has_no_identity",
            ),
            models.CheckConstraint(condition=Q(email=Lower("email")), name="lead_email_lowercase"),
            models.CheckConstraint(condition=Q(stage__in=Stage.values), name="lead_stage_valid"),
        ]
        indexes = [
            models.Index(fields=["stage", "id"], name="lead_stage"),
            models.Index(Coalesce("last_activity_at", "created_at").desc(), name="lead_activity"),
            models.Index(fields=["created_at"], name="lead_created"),
            models.Index(fields=["source", "created_at"], name="lead_source_created"),
            models.Index(fields=["id"], condition=Q(needs_rescore=True), name="lead_needs_rescore"),
            # Most leads have no owner; leaving them out of the index spares every ingest write.
            models.Index(fields=["owner"], condition=Q(owner__isnull=False), name="lead_owner"),
            # Leads without an account (free-mail, no e-mail) stay out of the index, likewise.
            models.Index(fields=["account"], condition=Q(account__isnull=False), name="lead_account"),
            # The dashboard's latest SQLs; the leads that never reached SQL stay out.
            models.Index(fields=["-sql_at", "-id"], condition=Q(sql_at__isnull=False), name="lead_sql_at"),
        ]

    def __str__(self) -> str:
        return self.email or self.external_id or str(self.public_id)

    @property
    def display_name(self) -> str:
        return self.name or self.email or self.external_id or "(anonymous)"


# The lead's fields by what they are, declared once and read by ingest's validation, the
# lead API, CSV import and export, the admin and scoring: how a lead is identified; its
# profile, which senders and people set; where it came from (with ``source``).
LEAD_IDENTITY_FIELDS = ("email", "external_id")


class AnonymousId(models.Model):
    """An anonymous visitor identity (Segment's ``anonymousId``, a cookie's id) and the
    lead it belongs to: a visitor's own, or a known person's once linked (an ``identify``
    naming both, an ``alias``, a merge). One lead may have several (devices)."""

    anonymous_id = models.CharField(max_length=128, unique=True)
    lead = models.ForeignKey(Lead, on_delete=models.CASCADE, related_name="anonymous_ids")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "anonymous id"

    def __str__(self) -> str:
        return self.anonymous_id


class LeadMerge(models.Model):
    """The audit record of a merge (``leadflow.leads.merge.lead_merge``): which lead
    survived, which one was merged into it (its public id and identities, the row itself
    is gone), who did it and why, and how many records of each kind moved."""

    at = models.DateTimeField(default=timezone.now)
    survivor = models.ForeignKey(Lead, on_delete=models.CASCADE, related_name="merges")
    merged_public_id = models.UUIDField()
    # The merged lead's e-mail, external_id and anonymous ids: personal data, scrubbed by erasure.
    merged_identities = models.JSONField(default=dict, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Empty: ingest merged a visitor automatically.",
    )
    reason = models.TextField(blank=True)
    counts = models.JSONField(default=dict, blank=True, help_text="Records moved, by kind.")

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["merged_public_id"], name="leadmerge_merged")]

    def __str__(self) -> str:
        return f"{self.merged_public_id} merged into lead {self.survivor_id}"


class SegmentDrop(models.Model):
    """A Segment message ingest dropped, and why: SDKs ignore answers, so the drops are
    kept per source (the last ``SEGMENT_DROPS_KEPT``) for a page marketing reads. The
    message is kept as sent (it may hold personal data: erasure deletes those naming
    the person)."""

    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="segment_drops", db_index=False)
    at = models.DateTimeField(default=timezone.now)
    message_type = models.CharField(max_length=32, blank=True)
    message_id = models.CharField(max_length=200, blank=True)
    errors = models.JSONField(default=dict)
    message = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["source", "-at", "-id"], name="segmentdrop_source_at")]

    def __str__(self) -> str:
        return f"{self.source} {self.message_type} dropped at {self.at:%Y-%m-%d %H:%M}"

    @property
    def problems(self) -> list[str]:
        """The errors as "field: message" lines (nested fields joined by dots)."""

        def walk(value: object, path: str) -> list[str]:
            if isinstance(value, dict):
                return [line for key, inner in value.items() for line in walk(inner, f"{path}.{key}" if path else key)]
            if isinstance(value, list):
                return [line for inner in value for line in walk(inner, path)]
            return [f"{path}: {value}" if path else str(value)]

        return walk(self.errors, "")


LEAD_PROFILE_FIELDS = ("name", "company", "job_title", "industry", "country", "company_size")
LEAD_UTM_FIELDS = ("utm_source", "utm_medium", "utm_campaign")


class Event(models.Model):
    """Something a lead did. Append-only: events are never edited."""

    # Both indexed by the composite indexes below; single-column copies would only
    # slow the inserts, and the one on source misled the planner (a scan of all of
    # a source's events to check a batch's event_ids).
    lead = models.ForeignKey(Lead, on_delete=models.CASCADE, related_name="events", db_index=False)
    source = models.ForeignKey(Source, on_delete=models.PROTECT, related_name="events", db_index=False)
    event_id = models.CharField(max_length=128, help_text="The sender's idempotency key, unique per source.")
    type = models.CharField(max_length=64)
    properties = models.JSONField(default=dict, blank=True)
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField(default=timezone.now)
    # sha256 of the identifying payload: a resent event_id with another payload is refused.
    fingerprint = models.CharField(max_length=64)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["source", "event_id"], name="event_source_event_id_unique"),
        ]
        indexes = [
            models.Index(fields=["lead", "-occurred_at"], name="event_lead_occurred"),
        ]

    def __str__(self) -> str:
        return f"{self.type} @ {self.occurred_at:%Y-%m-%d %H:%M}"


class OutcomeKind(models.TextChoices):
    OPPORTUNITY_CREATED = "opportunity_created", "Opportunity created"
    WON = "won", "Won"
    LOST = "lost", "Lost"


class Outcome(models.Model):
    """What the CRM learns about a lead after the handoff: an opportunity, a win, a loss.
    Sent by a source like events (``POST /api/v1/outcomes``), idempotent by ``outcome_id``
    per source; append-only. Score quality (``handoff.quality``) uses ``won`` as a label."""

    lead = models.ForeignKey(Lead, on_delete=models.CASCADE, related_name="outcomes", db_index=False)
    source = models.ForeignKey(Source, on_delete=models.PROTECT, related_name="outcomes", db_index=False)
    outcome_id = models.CharField(max_length=128, help_text="The sender's idempotency key, unique per source.")
    kind = models.CharField(max_length=32, choices=OutcomeKind.choices)
    amount = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True, help_text="ISO 4217 code, upper case.")
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField(default=timezone.now)
    properties = models.JSONField(default=dict, blank=True, help_text="Anything else the CRM sent.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["source", "outcome_id"], name="outcome_source_outcome_id_unique"),
            models.CheckConstraint(condition=Q(kind__in=OutcomeKind.values), name="outcome_kind_valid"),
            models.CheckConstraint(
                condition=Q(amount__isnull=True) | Q(amount__gte=0), name="outcome_amount_not_negative"
            ),
        ]
        indexes = [models.Index(fields=["lead", "occurred_at"], name="outcome_lead_occurred")]

    def __str__(self) -> str:
        return f"{self.kind} @ {self.occurred_at:%Y-%m-%d}"


class StageChange(models.Model):
    """Append-only audit log of qualification: every stage change, automatic or manual,
    writes one (through ``leadflow.leads.lifecycle``)."""

    lead = models.ForeignKey(Lead, on_delete=models.CASCADE, related_name="stage_changes")
    from_stage = models.CharField(max_length=16, choices=Stage.choices)
    to_stage = models.CharField(max_length=16, choices=Stage.choices)
    at = models.DateTimeField(default=timezone.now)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Empty: the scoring system.",
    )
    reason = models.TextField(blank=True)
    # An automatic change: the scoring models that qualified the lead (slugs), the
    # ruleset version and the score of the first of them. Empty for a change by hand.
    qualified_by = models.JSONField(default=list, blank=True)
    ruleset_version = models.PositiveIntegerField(null=True, blank=True)
    score = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)

    class Meta:
        # Created by scoring, whose it was: the table and its indexes keep their names.
        db_table = "scoring_stagechange"
        ordering = ["-at", "-id"]
        indexes = [
            models.Index(fields=["lead", "at"], name="stagechange_lead_at"),
            models.Index(fields=["to_stage", "at"], name="stagechange_to_at"),
        ]

    def __str__(self) -> str:
        return f"{self.lead}: {self.from_stage} → {self.to_stage}"


class SuppressedEmail(models.Model):
    """An e-mail address that may not be stored again: the person was erased. Only a
    keyed hash of the normalised address is kept (``leadflow.leads.privacy.email_hash``);
    ingest refuses an address whose hash is here. An admin may lift it (delete the row,
    through ``suppression_lift``)."""

    email_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "suppressed e-mail"

    def __str__(self) -> str:
        return f"{self.email_hash[:12]}…"


class Erasure(models.Model):
    """The log of an erasure: who, when, the keyed hash of the address (to answer "was
    this person erased?" without keeping it) and how many records of each kind were
    removed or scrubbed. No personal data of the erased person."""

    at = models.DateTimeField(default=timezone.now)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The actor's username when they erased: the log outlives a deleted account.
    actor_username = models.CharField(max_length=150, blank=True)
    email_hash = models.CharField(max_length=64, blank=True, help_text="Empty: the person had no e-mail.")
    counts = models.JSONField(default=dict, blank=True, help_text="Records removed or scrubbed, by kind.")

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["email_hash"], name="erasure_email_hash")]

    def __str__(self) -> str:
        return f"Erasure {self.pk} at {self.at:%Y-%m-%d %H:%M}"


# --- The dashboard's rollups (``leadflow.leads.rollups``) ---------------------------------
# Append-only deltas: every write that changes what a lead counts for inserts rows of +1/-1
# (never an UPDATE of a shared row, so concurrent ingest and scoring never wait on each
# other); readers SUM by key; ``rollups_compact`` folds the rows of a key into one.
# ``source_id`` 0 stands for "no source" (a NULL would defeat grouping by key).


class FunnelRollup(models.Model):
    """Per day of creation (in TIME_ZONE) × source × campaign: the leads created and how
    far they got. ``model`` "" holds the funnel of all leads; a model's slug, the leads it
    qualified (``created``, ``recycled`` and ``disqualified`` stay 0 there)."""

    day = models.DateField()
    source_id = models.IntegerField(default=0)
    campaign = models.CharField(max_length=200, blank=True)
    model = models.CharField(max_length=100, blank=True)
    created = models.IntegerField(default=0)
    mql = models.IntegerField(default=0)
    sql = models.IntegerField(default=0)
    accepted = models.IntegerField(default=0)
    recycled = models.IntegerField(default=0)
    disqualified = models.IntegerField(default=0)
    # Visitors (leads known only by an anonymous id) created that day; ``created`` counts
    # the others. A database default: set-based inserts that predate it leave it out.
    visitors = models.IntegerField(default=0, db_default=0)

    class Meta:
        indexes = [models.Index(fields=["day", "source_id"], name="funnelrollup_day")]

    def __str__(self) -> str:
        return f"{self.day} source {self.source_id} {self.campaign!r} {self.model or 'all'}: {self.created} created"


class StageEntryRollup(models.Model):
    """Per day (in TIME_ZONE) × source × stage (MQL, SQL): the leads that entered it that day."""

    day = models.DateField()
    source_id = models.IntegerField(default=0)
    stage = models.CharField(max_length=16, choices=Stage.choices)
    leads = models.IntegerField(default=0)

    class Meta:
        indexes = [models.Index(fields=["day", "source_id"], name="stageentryrollup_day")]

    def __str__(self) -> str:
        return f"{self.day} source {self.source_id}: {self.leads} entered {self.stage}"


class DurationKind(models.TextChoices):
    TO_MQL = "to_mql", "Created → MQL"  # on the day of mql_at
    MQL_TO_SQL = "mql_to_sql", "MQL → SQL"  # on the day of sql_at


class DurationRollup(models.Model):
    """Per day (in TIME_ZONE) × source × kind: a histogram of durations in log-spaced
    buckets (``rollups.duration_bucket``), for approximate medians."""

    day = models.DateField()
    source_id = models.IntegerField(default=0)
    kind = models.CharField(max_length=16, choices=DurationKind.choices)
    bucket = models.SmallIntegerField()
    leads = models.IntegerField(default=0)

    class Meta:
        indexes = [models.Index(fields=["day", "source_id"], name="durationrollup_day")]

    def __str__(self) -> str:
        return f"{self.day} source {self.source_id} {self.kind} bucket {self.bucket}: {self.leads}"


class ScoreHistogram(models.Model):
    """A snapshot of every lead's current score under ``model`` (a slug; "" for no
    model) by source, in buckets of ``width`` points: refreshed by the periodic task
    ``refresh-score-histograms`` and after a full rescore, not on every score write
    (bench/RESULTS.md, "Dashboard")."""

    model = models.CharField(max_length=100, blank=True)
    source_id = models.IntegerField(default=0)
    bucket = models.IntegerField()
    width = models.PositiveSmallIntegerField()
    leads = models.IntegerField()
    refreshed_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["model", "source_id"], name="scorehistogram_model")]

    def __str__(self) -> str:
        return f"{self.model or 'no model'} source {self.source_id} from {self.bucket * self.width}: {self.leads}"


class GradeMatrixSnapshot(models.Model):
    """A snapshot, taken with the score histograms: the current MQLs ``model`` scored,
    by source, fit grade and behaviour band (``rollups.BEHAVIOUR_BANDS``, by index)."""

    model = models.CharField(max_length=100)
    source_id = models.IntegerField(default=0)
    grade = models.CharField(max_length=1)
    band = models.PositiveSmallIntegerField()
    leads = models.IntegerField()
    refreshed_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["model", "source_id"], name="gradematrixsnapshot_model")]

    def __str__(self) -> str:
        return f"{self.model} source {self.source_id} {self.grade}/{self.band}: {self.leads}"


class SavedView(models.Model):
    """A person's named filter set of the leads list: the list's query string, holding
    only the list's own parameters (``leadflow.leads.saved_views``)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="saved_views")
    name = models.CharField(max_length=100)
    query = models.CharField(max_length=2000, blank=True, help_text="The leads list's query string, without '?'.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name", "id"]
        constraints = [models.UniqueConstraint(fields=["user", "name"], name="savedview_user_name_unique")]

    def __str__(self) -> str:
        return f"{self.user}: {self.name}"


# --- Imports from other tools (``leadflow.leads.imports``) ---------------------------------------


class ImportStatus(models.TextChoices):
    DRAFT = "draft", "Mapping the columns"
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Importing"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class ImportJob(models.Model):
    """A CSV file uploaded on the import page, mapped column by column, then imported in
    the background with progress.

    Durable and resumable like a rescore run: the file's text is stored here (decoded, with
    its delimiter) and rows are imported in chunks, each committing the leads, the rejected
    rows and the job's ``position`` (records read after the header) together, so a task
    that dies resumes after the last committed chunk. ``attempts`` is the lease; the sweep
    restarts a running job whose ``heartbeat_at`` stopped. The text is cleared when the job
    is done: the leads and the rejected rows (``ImportRejection``) are what remains."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    filename = models.CharField(max_length=255)
    source = models.ForeignKey(Source, on_delete=models.PROTECT, related_name="import_jobs")
    preset = models.CharField(max_length=32, help_text="The preset detected from the header, or chosen.")
    encoding = models.CharField(max_length=16)
    delimiter = models.CharField(max_length=1, default=",")
    content = models.TextField(blank=True, help_text="The file's text; cleared when the import is done.")
    header = models.JSONField(default=list)
    mapping = models.JSONField(default=list, help_text="A target per column (leadflow.leads.importmap).")
    status = models.CharField(max_length=16, choices=ImportStatus.choices, default=ImportStatus.DRAFT)
    total_rows = models.PositiveIntegerField(default=0, help_text="Records after the header.")
    position = models.PositiveIntegerField(default=0, help_text="Records after the header already imported.")
    created = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    rejected = models.PositiveIntegerField(default=0)
    stages_changed = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=ImportStatus.values), name="importjob_status_valid"),
        ]
        indexes = [
            models.Index(
                fields=["status"], condition=Q(status__in=["queued", "running", "failed"]), name="importjob_open"
            )
        ]

    def __str__(self) -> str:
        return f"Import {self.filename} ({self.status} {self.position}/{self.total_rows})"

    @property
    def percent(self) -> int:
        if self.status == ImportStatus.DONE:
            return 100
        return int(100 * self.position / max(self.total_rows, 1))

    @property
    def finished(self) -> bool:
        return self.status in (ImportStatus.DONE, ImportStatus.FAILED)


class ImportRejection(models.Model):
    """A row of an import that was not imported: its line, its cells and why. ``email`` is
    the row's e-mail cell, lower-cased, so that a person's export and erasure find the row
    (``leadflow.leads.privacy``)."""

    job = models.ForeignKey(ImportJob, on_delete=models.CASCADE, related_name="rejections", db_index=False)
    line = models.PositiveIntegerField()
    cells = models.JSONField(default=list)
    errors = models.JSONField(default=dict)
    email = models.CharField(max_length=254, blank=True)

    class Meta:
        ordering = ["job", "line"]
        indexes = [
            models.Index(fields=["job", "line"], name="importrejection_job_line"),
            models.Index(fields=["email"], condition=~Q(email=""), name="importrejection_email"),
        ]

    def __str__(self) -> str:
        return f"Line {self.line} of import {self.job_id}"

    @property
    def reasons(self) -> list[str]:
        return rejection_reasons(self.errors)


def rejection_reasons(errors: dict[str, Any]) -> list[str]:
    """A rejected row's errors in words ("email: Enter a valid email address."), the row's
    own without a field name: the import pages, the preview and the rejected rows' CSV."""
    return [
        " ".join(map(str, messages)) if name == "non_field_errors" else f"{name}: {' '.join(map(str, messages))}"
        for name, messages in errors.items()
    ]
