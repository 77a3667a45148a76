"""Scoring models, their versioned rules, the scores they give leads, and rescore runs."""

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from leadflow.leads.models import Account, Lead, Stage


class ScoringModel(models.Model):
    """What a score measures (e.g. one per product line: "Platform", "Analytics add-on").
    A model owns versioned rulesets, one published at a time, and each lead has one
    score per model with a published ruleset. The first model (by ``position``) is the
    default: lists sort by it unless asked for another."""

    name = models.CharField(max_length=100, unique=True)
    slug = models.SlugField(max_length=50, unique=True)
    description = models.TextField(blank=True)
    position = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["position", "id"]

    def __str__(self) -> str:
        return self.name


# What a person sets on a model.
SCORING_MODEL_FIELDS = ("name", "slug", "description", "position")

# Fit grades, best first; a lead whose fit reaches none of the thresholds is an F.
GRADES = ("A", "B", "C", "D", "F")
GRADE_CHOICES = [(grade, grade) for grade in GRADES]
DEFAULT_GRADE_THRESHOLDS = {"A": Decimal("30"), "B": Decimal("20"), "C": Decimal("10"), "D": Decimal("0")}
DEFAULT_INTENT_WINDOW_DAYS = 90
DEFAULT_REQUALIFY_THRESHOLD = Decimal("15")


class RuleSetStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    PUBLISHED = "published", "Published"
    ARCHIVED = "archived", "Archived"


class RuleSet(models.Model):
    """A versioned set of rules and thresholds of a model; at most one per model is
    published at a time. Versions are numbered across models (v7 names one ruleset)."""

    model = models.ForeignKey(ScoringModel, on_delete=models.PROTECT, related_name="rulesets")
    version = models.PositiveIntegerField(unique=True)
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=RuleSetStatus.choices, default=RuleSetStatus.DRAFT)
    mql_threshold = models.DecimalField(max_digits=10, decimal_places=2)
    sql_threshold = models.DecimalField(max_digits=10, decimal_places=2)
    intent_event_types = models.JSONField(default=list, blank=True, help_text="Hand-raise event types.")
    sql_min_fit = models.DecimalField(max_digits=10, decimal_places=2, null=True, blank=True)
    decay_half_life_days = models.DecimalField(
        max_digits=8, decimal_places=2, null=True, blank=True, help_text="Empty: behaviour points never decay."
    )
    # Fit grades: the lowest fit of each grade; below D's is an F.
    grade_a_min = models.DecimalField(max_digits=10, decimal_places=2, default=DEFAULT_GRADE_THRESHOLDS["A"])
    grade_b_min = models.DecimalField(max_digits=10, decimal_places=2, default=DEFAULT_GRADE_THRESHOLDS["B"])
    grade_c_min = models.DecimalField(max_digits=10, decimal_places=2, default=DEFAULT_GRADE_THRESHOLDS["C"])
    grade_d_min = models.DecimalField(max_digits=10, decimal_places=2, default=DEFAULT_GRADE_THRESHOLDS["D"])
    mql_min_grade = models.CharField(max_length=1, choices=GRADE_CHOICES, blank=True, help_text="Empty: any grade.")
    sql_min_grade = models.CharField(max_length=1, choices=GRADE_CHOICES, blank=True, help_text="Empty: any grade.")
    intent_window_days = models.PositiveIntegerField(
        default=DEFAULT_INTENT_WINDOW_DAYS, help_text="A hand-raise counts for SQL this many days."
    )
    requalify_threshold = models.DecimalField(
        max_digits=10,
        decimal_places=2,
        default=DEFAULT_REQUALIFY_THRESHOLD,
        help_text="Behaviour points a recycled lead must earn after its recycling to be an MQL again.",
    )
    mqa_threshold = models.DecimalField(
        max_digits=10,
        decimal_places=2,
        null=True,
        blank=True,
        help_text="An account whose roll-up score reaches this is marketing-qualified. Empty: no MQAs.",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    published_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    published_at = models.DateTimeField(null=True, blank=True)
    archived_at = models.DateTimeField(null=True, blank=True)
    # A draft made by suggested points (``handoff.suggest``): rule by rule old points, new points
    # and why, and the held-out AUCs, as of its creation. Null for every other ruleset; never cloned.
    suggestion = models.JSONField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-version"]
        constraints = [
            models.UniqueConstraint(
                fields=["model"], condition=Q(status=RuleSetStatus.PUBLISHED), name="ruleset_one_published_per_model"
            ),
            models.CheckConstraint(condition=Q(mql_threshold__gt=0), name="ruleset_mql_threshold_positive"),
            models.CheckConstraint(
                condition=Q(sql_threshold__gte=F("mql_threshold")), name="ruleset_sql_threshold_at_least_mql"
            ),
            models.CheckConstraint(
                condition=Q(decay_half_life_days__isnull=True) | Q(decay_half_life_days__gt=0),
                name="ruleset_half_life_positive",
            ),
            models.CheckConstraint(
                condition=Q(grade_a_min__gte=F("grade_b_min"))
                & Q(grade_b_min__gte=F("grade_c_min"))
                & Q(grade_c_min__gte=F("grade_d_min")),
                name="ruleset_grades_descend",
            ),
            models.CheckConstraint(condition=Q(intent_window_days__gt=0), name="ruleset_intent_window_positive"),
            models.CheckConstraint(condition=Q(requalify_threshold__gt=0), name="ruleset_requalify_positive"),
        ]

    def __str__(self) -> str:
        return f"v{self.version} {self.name} ({self.status})"

    @property
    def is_editable(self) -> bool:
        return self.status == RuleSetStatus.DRAFT


# What a person sets on a ruleset (its version, status and history are the services').
RULESET_FIELDS = (
    "name",
    "description",
    "mql_threshold",
    "sql_threshold",
    "intent_event_types",
    "sql_min_fit",
    "decay_half_life_days",
    "grade_a_min",
    "grade_b_min",
    "grade_c_min",
    "grade_d_min",
    "mql_min_grade",
    "sql_min_grade",
    "intent_window_days",
    "requalify_threshold",
    "mqa_threshold",
)


class RuleKind(models.TextChoices):
    FIT = "fit", "Fit (lead attribute)"
    BEHAVIOUR = "behaviour", "Behaviour (events)"
    SUPPRESS = "suppress", "Suppression (never promote)"


class Operator(models.TextChoices):
    EQ = "eq", "equals"
    NEQ = "neq", "does not equal"
    IN = "in", "is one of"
    CONTAINS = "contains", "contains"
    GTE = "gte", "≥"
    LTE = "lte", "≤"
    EXISTS = "exists", "is present"


class Rule(models.Model):
    """Fit: ``attribute`` is a lead field (or ``traits.<key>``) compared with ``value``.
    Behaviour: every event of ``event_type`` (optionally whose ``properties`` at
    ``attribute`` satisfy the condition) within ``window_days`` earns ``points``,
    decayed unless ``decays`` is off; the rule's total is capped at ``max_points``.
    Suppression: a lead whose attribute matches (no ``event_type``), or that has any
    event of ``event_type`` (optionally matching the property condition), is never
    promoted; it has no points and never decays."""

    ruleset = models.ForeignKey(RuleSet, on_delete=models.CASCADE, related_name="rules")
    kind = models.CharField(max_length=16, choices=RuleKind.choices)
    name = models.CharField(max_length=120)
    points = models.DecimalField(max_digits=10, decimal_places=2)
    position = models.PositiveIntegerField(default=0)
    event_type = models.CharField(max_length=64, blank=True)
    attribute = models.CharField(max_length=120, blank=True, help_text="Lead field, traits.<key> or property path.")
    operator = models.CharField(max_length=16, choices=Operator.choices, blank=True)
    value = models.JSONField(null=True, blank=True)
    max_points = models.DecimalField(max_digits=10, decimal_places=2, null=True, blank=True)
    window_days = models.PositiveIntegerField(null=True, blank=True)
    decays = models.BooleanField(default=True, help_text="Off: this rule's points keep their full value.")

    class Meta:
        ordering = ["position", "id"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(kind=RuleKind.SUPPRESS) & Q(points=0)) | (~Q(kind=RuleKind.SUPPRESS) & ~Q(points=0)),
                name="rule_points_nonzero_unless_suppress",
            ),
            models.CheckConstraint(
                condition=(Q(kind=RuleKind.FIT) & Q(event_type="") & ~Q(attribute="") & ~Q(operator=""))
                | (Q(kind=RuleKind.BEHAVIOUR) & ~Q(event_type=""))
                | (Q(kind=RuleKind.SUPPRESS) & (~Q(event_type="") | (~Q(attribute="") & ~Q(operator="")))),
                name="rule_kind_shape_with_suppress",
            ),
            models.CheckConstraint(
                condition=Q(max_points__isnull=True)
                | (Q(points__gt=0) & Q(max_points__gt=0))
                | (Q(points__lt=0) & Q(max_points__lt=0)),
                name="rule_cap_sign_matches_points",
            ),
            models.CheckConstraint(
                condition=Q(window_days__isnull=True) | Q(window_days__gt=0), name="rule_window_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.points:+})"


# What a person sets on a rule (all but its ruleset), in the order the API shows them.
RULE_FIELDS = (
    "kind",
    "name",
    "points",
    "position",
    "event_type",
    "attribute",
    "operator",
    "value",
    "max_points",
    "window_days",
    "decays",
)


# The stages whose lists by score an index serves directly (``score_model_stage_rank``):
# the hot lists sales and marketing work from. Other stages walk ``score_model_rank``.
HOT_STAGES = (Stage.MQL, Stage.SQL)


class Score(models.Model):
    """A lead's score under one model: the narrow table every score lives in.

    Built for the write path: a full rescore rewrites every row of a model, so the
    indexes are the key (lead, model), the id and, for the lists by score, one on
    (model, score, lead); the table keeps free space in each page (fillfactor,
    PostgreSQL), so rewriting a row whose score did not change is a HOT update that
    touches no index (one whose score changed updates the three). ``computed_at`` and ``ruleset_version`` say
    how to recompute the score exactly (the explanation); ``last_intent_at`` (the
    latest hand-raise inside the model's intent window), ``behaviour_since_recycled``
    (behaviour points from events after the lead's recycling, when it was recycled) and
    ``suppressed_by`` (the id of the first suppression rule that matched) are what
    qualification needs."""

    # No foreign-key constraints in the database (``db_constraint=False``): a first publish
    # inserts a row per lead, and PostgreSQL checks a key row by row (a deferred trigger
    # per row and key, at COMMIT): ~19 s of a 1M-lead first publish, measured (bench/RESULTS.md,
    # "Rescore"). Scores are derived data, written only from leads that exist (the bulk
    # upserts join ``leads_lead``, the incremental one holding each lead FOR KEY SHARE so
    # that a deletion or an erasure waits; the single-lead engine reads the lead in the
    # transaction that writes its score); Django still
    # cascades a lead's or a model's deletion to its scores, and every full rescore of a
    # model deletes the scores of leads deleted meanwhile (``scores_orphaned_delete``).
    model = models.ForeignKey(
        ScoringModel, on_delete=models.CASCADE, related_name="scores", db_index=False, db_constraint=False
    )
    lead = models.ForeignKey(Lead, on_delete=models.CASCADE, related_name="scores", db_index=False, db_constraint=False)
    score = models.DecimalField(max_digits=12, decimal_places=2)
    fit = models.DecimalField(max_digits=12, decimal_places=2)
    behaviour = models.DecimalField(max_digits=12, decimal_places=2)
    grade = models.CharField(max_length=1, choices=GRADE_CHOICES)
    ruleset_version = models.PositiveIntegerField()
    computed_at = models.DateTimeField()
    last_intent_at = models.DateTimeField(null=True, blank=True)
    behaviour_since_recycled = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    suppressed_by = models.BigIntegerField(null=True, blank=True, help_text="The suppression rule that matched.")
    # The lead's stage, copied here so that one index orders a stage's leads by score (the
    # hot-MQL list: ``score_model_stage_rank``). Kept equal to ``Lead.stage`` by two
    # writers only: a new row takes its lead's stage (every score writer inserts it, see
    # ``scoring.bulk.score_stage_insert``), and every stage change rewrites the lead's rows
    # (``scoring.receivers.scores_follow_stages``). A score rewrite never sets it.
    stage = models.CharField(max_length=16, choices=Stage.choices)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["lead", "model"], name="score_lead_model")]
        # The lists by score (``leadflow.leads.selectors.lead_search_head``): one model's
        # leads, highest or lowest first, a page read from the index's end; and the same
        # within one stage (``score_model_stage_rank``). The indexes on changing columns: a
        # rescore that changes a score updates both (no HOT update for that row), a stage
        # change the second; measured at 1M leads in bench/RESULTS.md ("Lists").
        indexes = [
            models.Index(fields=["model", "score", "lead"], name="score_model_rank"),
            # Partial: only the scores of the stages lists are read by (MQL, SQL), 13 % of the
            # rows at 1M: a rescore's non-HOT update inserts into every index whose predicate
            # holds. (Adding ``stage`` with a default blocks every HOT update: scoring/0010.)
            models.Index(
                fields=["model", "stage", "score", "lead"],
                condition=Q(stage__in=HOT_STAGES),
                name="score_model_stage_rank",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.lead_id} under {self.model_id}: {self.grade} · {self.score}"

    @property
    def label(self) -> str:
        """Grade and score together, as lists show them: ``B · 74.00``."""
        return f"{self.grade} · {self.score}"


class AccountScore(models.Model):
    """An account's roll-up score under one model (``scoring.accounts``): the sum of the
    behaviour scores of its top ``ACCOUNT_TOP_CONTACTS`` contacts by behaviour, plus the
    best fit among its contacts. ``contacts``: how many of its leads the model scored.
    ``mqa_at``: when the roll-up first reached the model's MQA threshold (the account
    became marketing-qualified); set once, never cleared by a lower roll-up."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="scores", db_index=False)
    model = models.ForeignKey(ScoringModel, on_delete=models.CASCADE, related_name="account_scores", db_index=False)
    score = models.DecimalField(max_digits=12, decimal_places=2)
    fit = models.DecimalField(max_digits=12, decimal_places=2)
    behaviour = models.DecimalField(max_digits=12, decimal_places=2)
    contacts = models.PositiveIntegerField()
    computed_at = models.DateTimeField()
    mqa_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["account", "model"], name="accountscore_account_model")]
        # The accounts list: one model's roll-ups, highest first.
        indexes = [models.Index(fields=["model", "-score", "account"], name="accountscore_model_score")]

    def __str__(self) -> str:
        return f"{self.account_id} under {self.model_id}: {self.score}"


class RescoreState(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class RescoreRun(models.Model):
    """A full rescore (after publishing, or the nightly decay refresh), with progress.

    Durable and resumable: the run scores leads in id order as of one moment
    (``as_of``) up to the highest id that existed when it started (``max_lead_id``),
    and commits each chunk together with ``last_lead_id``, so a task that dies
    resumes after the last committed chunk. ``attempts`` is the lease: each start
    or resume takes a new one and a chunk commits only under the current lease, so
    two workers can never both write a run. ``heartbeat_at`` moves at every chunk;
    the sweep resumes a running run whose heartbeat stopped."""

    ruleset = models.ForeignKey(RuleSet, on_delete=models.CASCADE, related_name="rescore_runs")
    reason = models.CharField(max_length=32, default="publish")
    state = models.CharField(max_length=16, choices=RescoreState.choices, default=RescoreState.QUEUED)
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    changed_stages = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    as_of = models.DateTimeField(null=True, blank=True, help_text="The moment every lead is scored as of.")
    max_lead_id = models.BigIntegerField(null=True, blank=True, help_text="The run covers leads up to this id.")
    last_lead_id = models.BigIntegerField(default=0, help_text="Leads up to this id are committed.")
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    parallel = models.BooleanField(
        default=False, help_text="Split into chunks of lead ids that workers score side by side (RescoreChunk)."
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(
                fields=["state"], condition=Q(state__in=["queued", "running", "failed"]), name="rescorerun_unfinished"
            )
        ]

    def __str__(self) -> str:
        return f"Rescore {self.pk} ({self.state} {self.done}/{self.total})"

    @property
    def percent(self) -> int:
        return 100 if self.total == 0 and self.state == RescoreState.DONE else int(100 * self.done / max(self.total, 1))


class RescoreChunk(models.Model):
    """One range of lead ids, (after_lead_id, last_lead_id], of a run split across
    workers: a task scores it, writes the scores, applies the transitions and records
    its progress in one transaction. It has its own lease (``attempts``), so a chunk
    whose worker died is retried alone, by the broker's redelivery (acks_late) or by
    the sweep once its heartbeat stopped."""

    run = models.ForeignKey(RescoreRun, on_delete=models.CASCADE, related_name="chunks")
    after_lead_id = models.BigIntegerField()
    last_lead_id = models.BigIntegerField()
    state = models.CharField(max_length=16, choices=RescoreState.choices, default=RescoreState.QUEUED)
    scored = models.PositiveIntegerField(default=0)
    changed_stages = models.PositiveIntegerField(default=0)
    attempts = models.PositiveIntegerField(default=0)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["run", "after_lead_id"]
        constraints = [models.UniqueConstraint(fields=["run", "after_lead_id"], name="rescorechunk_run_range")]

    def __str__(self) -> str:
        return f"Rescore {self.run_id} leads ({self.after_lead_id}, {self.last_lead_id}] {self.state}"


class ScoringClaim(models.Model):
    """Leads an incremental scoring took and has not finished with.

    The incremental path clears the leads' ``needs_rescore`` flag in a short transaction
    of its own (so that ingest never waits while it computes) and writes their scores in
    a second one; this row is written with the clear and deleted with the scores. A claim
    that outlives ``SWEEP_GRACE_SECONDS`` belonged to a worker that died in between: the
    sweep flags its leads again (``scoring.services.scoring_claims_recover``)."""

    lead_ids = models.JSONField(help_text="The leads whose flag this scoring cleared.")
    claimed_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["claimed_at"], name="scoringclaim_claimed_at")]

    def __str__(self) -> str:
        return f"Scoring claim {self.pk} ({len(self.lead_ids)} leads at {self.claimed_at:%H:%M:%S})"
