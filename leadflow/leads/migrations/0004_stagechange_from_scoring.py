"""StageChange, the audit log of the stages, joins the core with the lifecycle that
writes it (it was scoring's).

State only for the model: the table keeps its name (``scoring_stagechange``, set by
``Meta.db_table``), its indexes and its rows; ``scoring.0004_stagechange_moves_to_leads``
takes the model out of scoring's state first. On an existing database the model's
content type is relabelled too, so that permissions granted on it and admin history
follow it (on a new one, content types are created after migrating).
"""

from decimal import Decimal

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models

STAGES = [
    ("new", "New"),
    ("mql", "MQL"),
    ("sql", "SQL"),
    ("accepted", "Accepted"),
    ("recycled", "Recycled"),
    ("disqualified", "Disqualified"),
]


def relabel_content_type(apps, schema_editor, old="scoring", new="leads"):
    content_type = apps.get_model("contenttypes", "ContentType")
    manager = content_type.objects.db_manager(schema_editor.connection.alias)
    if not manager.filter(app_label=new, model="stagechange").exists():
        manager.filter(app_label=old, model="stagechange").update(app_label=new)


def relabel_content_type_back(apps, schema_editor):
    relabel_content_type(apps, schema_editor, old="leads", new="scoring")


class Migration(migrations.Migration):
    dependencies = [
        ("leads", "0003_fewer_write_indexes"),
        ("scoring", "0004_stagechange_moves_to_leads"),
        ("contenttypes", "0002_remove_content_type_name"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.CreateModel(
                    name="StageChange",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("from_stage", models.CharField(choices=STAGES, max_length=16)),
                        ("to_stage", models.CharField(choices=STAGES, max_length=16)),
                        ("at", models.DateTimeField(default=django.utils.timezone.now)),
                        ("reason", models.TextField(blank=True)),
                        ("ruleset_version", models.PositiveIntegerField(blank=True, null=True)),
                        ("score", models.DecimalField(decimal_places=2, default=Decimal("0"), max_digits=12)),
                        (
                            "actor",
                            models.ForeignKey(
                                blank=True,
                                help_text="Empty: the scoring system.",
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                related_name="+",
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                        (
                            "lead",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="stage_changes",
                                to="leads.lead",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "scoring_stagechange",
                        "ordering": ["-at", "-id"],
                        "indexes": [
                            models.Index(fields=["lead", "at"], name="stagechange_lead_at"),
                            models.Index(fields=["to_stage", "at"], name="stagechange_to_at"),
                        ],
                    },
                ),
            ],
        ),
        migrations.RunPython(relabel_content_type, relabel_content_type_back, elidable=True),
    ]
