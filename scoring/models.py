"""Versioned scoring rules and rescore runs."""

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone


class RuleSetStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    PUBLISHED = "published", "Published"
    ARCHIVED = "archived", "Archived"


class RuleSet(models.Model):
    """A versioned set of rules and thresholds; exactly one is published at a time."""

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

    class Meta:
        ordering = ["-version"]
        constraints = [
            models.UniqueConstraint(
                fields=["status"], condition=Q(status=RuleSetStatus.PUBLISHED), name="ruleset_one_published"
            ),
            models.CheckConstraint(condition=Q(mql_threshold__gt=0), name="ruleset_mql_threshold_positive"),
            models.CheckConstraint(
                condition=Q(sql_threshold__gte=F("mql_threshold")), name="ruleset_sql_threshold_at_least_mql"
            ),
            models.CheckConstraint(
                condition=Q(decay_half_life_days__isnull=True) | Q(decay_half_life_days__gt=0),
                name="ruleset_half_life_positive",
            ),
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
)


class RuleKind(models.TextChoices):
    FIT = "fit", "Fit (lead attribute)"
    BEHAVIOUR = "behaviour", "Behaviour (events)"


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
    decayed; the rule's total is capped at ``max_points``."""

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

    class Meta:
        ordering = ["position", "id"]
        constraints = [
            models.CheckConstraint(condition=~Q(points=0), name="rule_points_nonzero"),
            models.CheckConstraint(
                condition=(Q(kind=RuleKind.FIT) & Q(event_type="") & ~Q(attribute="") & ~Q(operator=""))
                | (Q(kind=RuleKind.BEHAVIOUR) & ~Q(event_type="")),
                name="rule_kind_shape",
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
)


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
