"""Scoring models and the narrow scores table (issue "Scoring models").

The rulesets so far become the rulesets of one model, "Default"; every lead's stored
score moves from ``leads_lead`` into ``scoring_score`` under it (the lead's columns
are dropped by ``leads.0005`` after this), with its grade by the default thresholds.
What qualification now also needs (the hand-raise inside the intent window, the
behaviour since a recycling, suppression) is computed by a full rescore, which this
migration queues: the periodic sweep starts it.
"""

from decimal import Decimal

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models

DEFAULT_MODEL = {"name": "Default", "slug": "default", "description": "The scoring LeadFlow had before models."}


def default_model(apps, schema_editor):
    scoring_model = apps.get_model("scoring", "ScoringModel")
    ruleset_model = apps.get_model("scoring", "RuleSet")
    model, _created = scoring_model.objects.get_or_create(slug=DEFAULT_MODEL["slug"], defaults=DEFAULT_MODEL)
    ruleset_model.objects.filter(model__isnull=True).update(model=model)


def scores_move(apps, schema_editor):
    """Each scored lead's score, fit and behaviour into scoring_score (one statement)."""
    scoring_model = apps.get_model("scoring", "ScoringModel")
    ruleset_model = apps.get_model("scoring", "RuleSet")
    run_model = apps.get_model("scoring", "RescoreRun")
    lead_model = apps.get_model("leads", "Lead")
    model = scoring_model.objects.get(slug=DEFAULT_MODEL["slug"])
    grade = "CASE WHEN fit_score >= 30 THEN 'A' WHEN fit_score >= 20 THEN 'B' WHEN fit_score >= 10 THEN 'C' "
    grade += "WHEN fit_score >= 0 THEN 'D' ELSE 'F' END"
    columns = "model_id, lead_id, score, fit, behaviour, grade, ruleset_version, computed_at"
    copy = f"INSERT INTO scoring_score ({columns}) SELECT %s, id, score, fit_score, behaviour_score, {grade}, "
    copy += "ruleset_version, scored_at FROM leads_lead WHERE scored_at IS NOT NULL AND ruleset_version IS NOT NULL"
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(copy, [model.pk])
    published = ruleset_model.objects.filter(model=model, status="published").first()
    if published is not None and lead_model.objects.exists():
        run_model.objects.create(ruleset=published, reason="models", total=lead_model.objects.count())


def fillfactor(apps, schema_editor):
    """Room in every page for a new version of each row: a rescore's rewrite stays HOT."""
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE scoring_score SET (fillfactor = 50)")


class Migration(migrations.Migration):
    dependencies = [
        ("leads", "0004_stagechange_from_scoring"),
        ("scoring", "0004_stagechange_moves_to_leads"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="Score",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("score", models.DecimalField(decimal_places=2, max_digits=12)),
                ("fit", models.DecimalField(decimal_places=2, max_digits=12)),
                ("behaviour", models.DecimalField(decimal_places=2, max_digits=12)),
                (
                    "grade",
                    models.CharField(
                        choices=[("A", "A"), ("B", "B"), ("C", "C"), ("D", "D"), ("F", "F")], max_length=1
                    ),
                ),
                ("ruleset_version", models.PositiveIntegerField()),
                ("computed_at", models.DateTimeField()),
                ("last_intent_at", models.DateTimeField(blank=True, null=True)),
                (
                    "behaviour_since_recycled",
                    models.DecimalField(blank=True, decimal_places=2, max_digits=12, null=True),
                ),
                (
                    "suppressed_by",
                    models.BigIntegerField(blank=True, help_text="The suppression rule that matched.", null=True),
                ),
            ],
        ),
        migrations.CreateModel(
            name="ScoringModel",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=100, unique=True)),
                ("slug", models.SlugField(unique=True)),
                ("description", models.TextField(blank=True)),
                ("position", models.PositiveIntegerField(default=0)),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
            ],
            options={
                "ordering": ["position", "id"],
            },
        ),
        migrations.RemoveConstraint(
            model_name="rule",
            name="rule_points_nonzero",
        ),
        migrations.RemoveConstraint(
            model_name="rule",
            name="rule_kind_shape",
        ),
        migrations.RemoveConstraint(
            model_name="ruleset",
            name="ruleset_one_published",
        ),
        migrations.AddField(
            model_name="rule",
            name="decays",
            field=models.BooleanField(default=True, help_text="Off: this rule's points keep their full value."),
        ),
        migrations.AddField(
            model_name="ruleset",
            name="grade_a_min",
            field=models.DecimalField(decimal_places=2, default=Decimal("30"), max_digits=10),
        ),
        migrations.AddField(
            model_name="ruleset",
            name="grade_b_min",
            field=models.DecimalField(decimal_places=2, default=Decimal("20"), max_digits=10),
        ),
        migrations.AddField(
            model_name="ruleset",
            name="grade_c_min",
            field=models.DecimalField(decimal_places=2, default=Decimal("10"), max_digits=10),
        ),
        migrations.AddField(
            model_name="ruleset",
            name="grade_d_min",
            field=models.DecimalField(decimal_places=2, default=Decimal("0"), max_digits=10),
        ),
        migrations.AddField(
            model_name="ruleset",
            name="intent_window_days",
            field=models.PositiveIntegerField(default=90, help_text="A hand-raise counts for SQL this many days."),
        ),
        migrations.AddField(
            model_name="ruleset",
            name="mqa_threshold",
            field=models.DecimalField(
                blank=True,
                decimal_places=2,
                help_text="An account whose roll-up score reaches this is marketing-qualified. Empty: no MQAs.",
                max_digits=10,
                null=True,
            ),
        ),
        migrations.AddField(
            model_name="ruleset",
            name="mql_min_grade",
            field=models.CharField(
                blank=True,
                choices=[("A", "A"), ("B", "B"), ("C", "C"), ("D", "D"), ("F", "F")],
                help_text="Empty: any grade.",
                max_length=1,
            ),
        ),
        migrations.AddField(
            model_name="ruleset",
            name="requalify_threshold",
            field=models.DecimalField(
                decimal_places=2,
                default=Decimal("15"),
                help_text="Behaviour points a recycled lead must earn after its recycling to be an MQL again.",
                max_digits=10,
            ),
        ),
        migrations.AddField(
            model_name="ruleset",
            name="sql_min_grade",
            field=models.CharField(
                blank=True,
                choices=[("A", "A"), ("B", "B"), ("C", "C"), ("D", "D"), ("F", "F")],
                help_text="Empty: any grade.",
                max_length=1,
            ),
        ),
        migrations.AlterField(
            model_name="rule",
            name="kind",
            field=models.CharField(
                choices=[
                    ("fit", "Fit (lead attribute)"),
                    ("behaviour", "Behaviour (events)"),
                    ("suppress", "Suppression (never promote)"),
                ],
                max_length=16,
            ),
        ),
        migrations.AddConstraint(
            model_name="rule",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("kind", "suppress"), ("points", 0)),
                    models.Q(models.Q(("kind", "suppress"), _negated=True), models.Q(("points", 0), _negated=True)),
                    _connector="OR",
                ),
                name="rule_points_nonzero_unless_suppress",
            ),
        ),
        migrations.AddConstraint(
            model_name="rule",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(
                        ("kind", "fit"),
                        ("event_type", ""),
                        models.Q(("attribute", ""), _negated=True),
                        models.Q(("operator", ""), _negated=True),
                    ),
                    models.Q(("kind", "behaviour"), models.Q(("event_type", ""), _negated=True)),
                    models.Q(
                        ("kind", "suppress"),
                        models.Q(
                            models.Q(("event_type", ""), _negated=True),
                            models.Q(
                                models.Q(("attribute", ""), _negated=True), models.Q(("operator", ""), _negated=True)
                            ),
                            _connector="OR",
                        ),
                    ),
                    _connector="OR",
                ),
                name="rule_kind_shape_with_suppress",
            ),
        ),
        migrations.AddField(
            model_name="score",
            name="lead",
            field=models.ForeignKey(
                db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name="scores", to="leads.lead"
            ),
        ),
        migrations.AddField(
            model_name="score",
            name="model",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="scores",
                to="scoring.scoringmodel",
            ),
        ),
        migrations.AddField(
            model_name="ruleset",
            name="model",
            field=models.ForeignKey(
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="rulesets",
                to="scoring.scoringmodel",
            ),
        ),
        migrations.AddConstraint(
            model_name="ruleset",
            constraint=models.UniqueConstraint(
                condition=models.Q(("status", "published")), fields=("model",), name="ruleset_one_published_per_model"
            ),
        ),
        migrations.AddConstraint(
            model_name="ruleset",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("grade_a_min__gte", models.F("grade_b_min")),
                    ("grade_b_min__gte", models.F("grade_c_min")),
                    ("grade_c_min__gte", models.F("grade_d_min")),
                ),
                name="ruleset_grades_descend",
            ),
        ),
        migrations.AddConstraint(
            model_name="ruleset",
            constraint=models.CheckConstraint(
                condition=models.Q(("intent_window_days__gt", 0)), name="ruleset_intent_window_positive"
            ),
        ),
        migrations.AddConstraint(
            model_name="ruleset",
            constraint=models.CheckConstraint(
                condition=models.Q(("requalify_threshold__gt", 0)), name="ruleset_requalify_positive"
            ),
        ),
        migrations.AddConstraint(
            model_name="score",
            constraint=models.UniqueConstraint(fields=("lead", "model"), name="score_lead_model"),
        ),
        migrations.RunPython(default_model, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="ruleset",
            name="model",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT, related_name="rulesets", to="scoring.scoringmodel"
            ),
        ),
        migrations.RunPython(scores_move, migrations.RunPython.noop),
        migrations.RunPython(fillfactor, migrations.RunPython.noop),
    ]
