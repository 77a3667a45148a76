"""The queue API's orders over every handoff, each read from an index (handoff.api.QUEUE_ORDERS)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("handoff", "0006_account_qualified_notifications")]

    operations = [
        migrations.RemoveIndex(
            model_name="handoff",
            name="handoff_created",
        ),
        migrations.AddIndex(
            model_name="handoff",
            index=models.Index(
                models.OrderBy(models.F("priority"), descending=True),
                models.F("created_at"),
                models.F("id"),
                name="handoff_priority_order",
            ),
        ),
        migrations.AddIndex(
            model_name="handoff",
            index=models.Index(fields=["created_at", "id"], name="handoff_created"),
        ),
        migrations.AddIndex(
            model_name="handoff",
            index=models.Index(fields=["due_at", "id"], name="handoff_due"),
        ),
    ]
