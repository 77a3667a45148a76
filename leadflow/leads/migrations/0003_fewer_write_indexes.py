"""Drop indexes that cost every ingest write and serve no query.

The single-column foreign-key indexes are covered by composite indexes, and no
query filters events by type across leads (scoring reads a lead's events, or
all of them).

Every ingest batch inserts a thousand events and updates up to a thousand leads;
each index is one more insertion per row. The single-column index on
``event.source_id`` also misled the planner into scanning all of a source's
events to look up a batch's event_ids. The foreign keys themselves stay: only
their indexes go (plain DROP INDEX, so no table rewrite or constraint check).
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

# (table, column, Django's index name) of each foreign-key index dropped.
DROPPED = [
    ("leads_event", "lead_id", "leads_event_lead_id_feb552a3"),
    ("leads_event", "source_id", "leads_event_source_id_6e028183"),
    ("leads_lead", "owner_id", "leads_lead_owner_id_1f4568d0"),
    ("leads_lead", "source_id", "leads_lead_source_id_a5f74de9"),
]


class Migration(migrations.Migration):
    dependencies = [
        ("leads", "0002_roles"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    f'DROP INDEX IF EXISTS "{name}"',
                    reverse_sql=f'CREATE INDEX IF NOT EXISTS "{name}" ON "{table}" ("{column}")',
                )
                for table, column, name in DROPPED
            ],
            state_operations=[
                migrations.AlterField(
                    model_name="event",
                    name="lead",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="events",
                        to="leads.lead",
                    ),
                ),
                migrations.AlterField(
                    model_name="event",
                    name="source",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="events",
                        to="leads.source",
                    ),
                ),
                migrations.AlterField(
                    model_name="lead",
                    name="owner",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="owned_leads",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                migrations.AlterField(
                    model_name="lead",
                    name="source",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="leads",
                        to="leads.source",
                    ),
                ),
            ],
        ),
        migrations.RemoveIndex(model_name="event", name="event_type_occurred"),
        migrations.AddIndex(
            model_name="lead",
            index=models.Index(condition=models.Q(("owner__isnull", False)), fields=["owner"], name="lead_owner"),
        ),
    ]
