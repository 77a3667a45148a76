"""Webhook signing secrets encrypted at rest (``leadflow.encryption``): the column becomes
text (a Fernet token is longer than the secret) and every stored secret is encrypted under
the ``SECRET_KEY`` in force. Backwards, the secrets are written back in the clear."""

from django.db import migrations
from django.db.models import TextField, Value

import leadflow.encryption


def encrypt(apps, schema_editor):
    subscriptions = apps.get_model("handoff", "WebhookSubscription")
    for pk, secret in subscriptions.objects.values_list("pk", "secret"):
        # Read through the field: a stored secret without the prefix is the plain secret;
        # written back through it, it is encrypted.
        subscriptions.objects.filter(pk=pk).update(secret=secret)


def decrypt(apps, schema_editor):
    subscriptions = apps.get_model("handoff", "WebhookSubscription")
    for pk, secret in subscriptions.objects.values_list("pk", "secret"):
        if not leadflow.encryption.secret_readable(secret):
            raise RuntimeError(
                f"Webhook subscription {pk}: {leadflow.encryption.SecretUnreadable()} Nothing was changed."
            )
        subscriptions.objects.filter(pk=pk).update(secret=Value(secret, output_field=TextField()))


class Migration(migrations.Migration):
    dependencies = [
        ("handoff", "0015_handoff_keeps_lead_attributes"),
    ]

    operations = [
        migrations.AlterField(
            model_name="webhooksubscription",
            name="secret",
            field=leadflow.encryption.EncryptedTextField(),
        ),
        migrations.RunPython(encrypt, decrypt),
    ]
