"""Drop the automatic indexes of Handoff.lead and HandoffEvent.handoff: the composite
indexes handoff_lead_created and handoffevent_handoff_at start with the same column,
and every extra index slows the claim hot path.

Not a plain AlterField(db_index=False): on a column that also carries a partial
unique index (handoff_one_open_per_lead), Django's schema editor drops every
single-column index of that column — the constraint's too. This drops only the
plain, non-unique index.
"""

import django.db.models.deletion
from django.db import migrations, models

REDUNDANT = [("handoff", "lead_id"), ("handoffevent", "handoff_id")]


def drop_plain_fk_indexes(apps, schema_editor):
    connection = schema_editor.connection
    for model_name, column in REDUNDANT:
        model = apps.get_model("handoff", model_name)
        with connection.cursor() as cursor:
            constraints = connection.introspection.get_constraints(cursor, model._meta.db_table)
        for name, info in constraints.items():
            plain = info["index"] and not info["unique"] and not info["primary_key"]
            if plain and info["columns"] == [column] and not info.get("definition"):
                schema_editor.execute(schema_editor._delete_index_sql(model, name))


class Migration(migrations.Migration):
    dependencies = [
        ("handoff", "0001_initial"),
        ("leads", "0002_roles"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="handoff",
                    name="lead",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="handoffs",
                        to="leads.lead",
                    ),
                ),
                migrations.AlterField(
                    model_name="handoffevent",
                    name="handoff",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="events",
                        to="handoff.handoff",
                    ),
                ),
            ],
            # Going back needs no index: the composite indexes serve the same lookups.
            database_operations=[migrations.RunPython(drop_plain_fk_indexes, migrations.RunPython.noop)],
        )
    ]
