from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from handoff.models import Handoff, HandoffEvent, Notification, WebhookDelivery


class ReadOnlyAdmin(admin.ModelAdmin):
    """Handoffs change only through the services (the API and the queue pages), which
    keep the lead's stage, the audit trail and the notifications consistent."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class HandoffEventInline(admin.TabularInline):
    model = HandoffEvent
    extra = 0
    max_num = 0
    can_delete = False
    fields = readonly_fields = ("at", "action", "actor", "details")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Handoff)
class HandoffAdmin(ReadOnlyAdmin):
    list_display = ["public_id", "lead", "status", "priority", "claimed_by", "created_at", "due_at", "overdue_at"]
    list_filter = ["status", "reject_reason"]
    search_fields = ["public_id", "lead__email", "lead__external_id", "claimed_by__username"]
    list_select_related = ["lead", "claimed_by"]
    date_hierarchy = "created_at"
    inlines = [HandoffEventInline]


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "recipient", "kind", "title", "read_at"]
    list_filter = ["kind"]
    search_fields = ["recipient__username", "title", "event_key"]
    list_select_related = ["recipient"]


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = ["key", "created_at", "attempts", "last_status", "delivered_at", "failed_at"]
    search_fields = ["key"]
