from django.contrib import admin

from handoff.models import Handoff, HandoffEvent, Notification, WebhookDelivery, WebhookSubscription
from leadflow.leads.admin import ReadOnlyAdminMixin, ReadOnlyInline

# Handoffs change only through the services (the API and the queue pages), which keep
# the lead's stage, the audit trail and the notifications consistent: read-only here.


class HandoffEventInline(ReadOnlyInline):
    model = HandoffEvent
    fields = readonly_fields = ("at", "action", "actor", "details")


@admin.register(Handoff)
class HandoffAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["public_id", "lead", "status", "priority", "claimed_by", "created_at", "due_at", "overdue_at"]
    list_filter = ["status", "reject_reason"]
    search_fields = ["public_id", "lead__email", "lead__external_id", "claimed_by__username"]
    list_select_related = ["lead", "claimed_by"]
    date_hierarchy = "created_at"
    inlines = [HandoffEventInline]


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["created_at", "recipient", "kind", "title", "read_at"]
    list_filter = ["kind"]
    search_fields = ["recipient__username", "title", "event_key"]
    list_select_related = ["recipient"]


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "key",
        "subscription",
        "event",
        "created_at",
        "attempts",
        "last_status",
        "delivered_at",
        "failed_at",
    ]
    list_filter = ["event"]
    search_fields = ["key"]
    list_select_related = ["subscription"]


# Subscriptions change on the Webhooks page (handoff.webhooks' services); the secret is never shown again.
@admin.register(WebhookSubscription)
class WebhookSubscriptionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["name", "url", "active", "failing_since", "owner", "created_at"]
    list_filter = ["active"]
    search_fields = ["name", "url"]
    exclude = ["secret"]
