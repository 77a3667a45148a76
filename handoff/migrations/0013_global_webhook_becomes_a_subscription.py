"""The global webhook (``NOTIFY_WEBHOOK_URL``) becomes one subscription, managed by the
settings: it receives what the global webhook received (the notifications and nurture
pushes), and every existing delivery becomes one of its deliveries. Without the setting,
existing deliveries (from a time it was set) go to a disabled subscription of that name,
so that the log keeps them; ``handoff.webhooks.settings_subscription`` re-creates and
follows the settings at run time whenever they are set."""

from django.conf import settings
from django.db import migrations
from django.utils import timezone

LEGACY_EVENTS = ["notifications", "nurture.segment"]
NAME = "Global webhook (NOTIFY_WEBHOOK_URL)"


def forwards(apps, schema_editor):
    Subscription = apps.get_model("handoff", "WebhookSubscription")
    Delivery = apps.get_model("handoff", "WebhookDelivery")
    url, secret = settings.NOTIFY_WEBHOOK_URL, settings.NOTIFY_WEBHOOK_SECRET
    if not url and not Delivery.objects.exists():
        return
    now = timezone.now()
    subscription = Subscription.objects.create(
        name=NAME,
        url=url or "https://example.invalid/",
        secret=secret,
        events=LEGACY_EVENTS,
        managed_by_settings=True,
        active=bool(url),
        disabled_at=None if url else now,
        disabled_reason="" if url else "NOTIFY_WEBHOOK_URL is not set.",
        created_at=now,
        updated_at=now,
    )
    Delivery.objects.filter(subscription__isnull=True).update(subscription=subscription)


def backwards(apps, schema_editor):
    apps.get_model("handoff", "WebhookDelivery").objects.exclude(subscription__managed_by_settings=True).delete()


class Migration(migrations.Migration):
    dependencies = [("handoff", "0012_webhook_subscriptions")]

    operations = [migrations.RunPython(forwards, backwards, elidable=False)]
