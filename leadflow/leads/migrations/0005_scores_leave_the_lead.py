"""The scores leave the lead for scoring's narrow table (``scoring.0005`` copied them);
a stage change records which scoring models qualified the lead."""

from django.conf import settings
from django.db import migrations, models


def automatic_changes_name_the_default_model(apps, schema_editor):
    change_model = apps.get_model("leads", "StageChange")
    change_model.objects.filter(actor__isnull=True, ruleset_version__isnull=False).update(qualified_by=["default"])


class Migration(migrations.Migration):
    dependencies = [
        ("leads", "0004_stagechange_from_scoring"),
        ("scoring", "0005_scoring_models_and_scores"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="lead",
            name="lead_stage_score",
        ),
        migrations.RemoveIndex(
            model_name="lead",
            name="lead_score",
        ),
        migrations.RemoveField(
            model_name="lead",
            name="behaviour_score",
        ),
        migrations.RemoveField(
            model_name="lead",
            name="fit_score",
        ),
        migrations.RemoveField(
            model_name="lead",
            name="ruleset_version",
        ),
        migrations.RemoveField(
            model_name="lead",
            name="score",
        ),
        migrations.RemoveField(
            model_name="lead",
            name="scored_at",
        ),
        migrations.AddField(
            model_name="stagechange",
            name="qualified_by",
            field=models.JSONField(blank=True, default=list),
        ),
        migrations.RunPython(automatic_changes_name_the_default_model, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="stagechange",
            name="score",
            field=models.DecimalField(blank=True, decimal_places=2, max_digits=12, null=True),
        ),
        migrations.AddIndex(
            model_name="lead",
            index=models.Index(fields=["stage", "id"], name="lead_stage"),
        ),
    ]
