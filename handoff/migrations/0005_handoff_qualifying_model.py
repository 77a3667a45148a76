"""A handoff records the scoring model(s) that qualified its lead; those so far were the default model's."""

from decimal import Decimal

import django.db.models.deletion
from django.db import migrations, models


def handoffs_name_the_default_model(apps, schema_editor):
    handoff_model = apps.get_model("handoff", "Handoff")
    scoring_model = apps.get_model("scoring", "ScoringModel")
    model = scoring_model.objects.filter(slug="default").first()
    if model is not None:
        handoff_model.objects.update(model=model, qualified_by=["default"])


class Migration(migrations.Migration):
    dependencies = [
        ("handoff", "0004_webhook_sending_lease"),
        ("scoring", "0005_scoring_models_and_scores"),
    ]

    operations = [
        migrations.AddField(
            model_name="handoff",
            name="model",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="handoffs",
                to="scoring.scoringmodel",
            ),
        ),
        migrations.AddField(
            model_name="handoff",
            name="qualified_by",
            field=models.JSONField(blank=True, default=list, help_text="Slugs of the models that qualified the lead."),
        ),
        migrations.AlterField(
            model_name="handoff",
            name="priority",
            field=models.DecimalField(
                decimal_places=2,
                default=Decimal("0"),
                help_text="The qualifying model's score when the lead became an SQL.",
                max_digits=12,
            ),
        ),
        migrations.RunPython(handoffs_name_the_default_model, migrations.RunPython.noop),
    ]
