import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("handoff", "0013_global_webhook_becomes_a_subscription")]

    operations = [
        migrations.AlterField(
            model_name="webhookdelivery",
            name="subscription",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="deliveries",
                to="handoff.webhooksubscription",
            ),
        ),
        migrations.AddField(
            model_name="webhookdelivery",
            name="replayed_at",
            field=models.DateTimeField(
                blank=True, help_text="Sent again by hand then: its day of retries counts from there.", null=True
            ),
        ),
        migrations.AlterField(
            model_name="notification",
            name="kind",
            field=models.CharField(
                choices=[
                    ("handoff_new", "New SQL in the queue"),
                    ("handoff_assigned", "Handoff assigned to you"),
                    ("claim_expired", "Claim expired"),
                    ("sla_breach", "SLA breached"),
                    ("handoff_rejected", "Sales rejected a lead"),
                    ("account_qualified", "An account became marketing-qualified"),
                    ("webhook_disabled", "A webhook subscription was disabled"),
                ],
                max_length=32,
            ),
        ),
    ]
