from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from leadflow.leads import services
from leadflow.leads.models import ApiToken, Event, IngestKey, Lead, Source, StageChange
from leadflow.leads.validation import lead_traits_error


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class IngestKeyInline(ReadOnlyInline):
    model = IngestKey
    fields = readonly_fields = ("prefix", "label", "created_at", "last_used_at", "revoked_at")


@admin.register(Source)
class SourceAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "created_at"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [IngestKeyInline]
    actions = ["create_ingest_key"]

    @admin.action(description="Create a new ingest key (shown once)")
    def create_ingest_key(self, request: HttpRequest, queryset: QuerySet[Source]) -> None:
        for source in queryset:
            _key, secret = services.ingest_key_create(source=source, label=f"created by {request.user}")
            self.message_user(
                request, f"Ingest key for {source}: {secret} — copy it now, it is not shown again.", messages.WARNING
            )


@admin.register(IngestKey)
class IngestKeyAdmin(admin.ModelAdmin):
    list_display = ["prefix", "source", "label", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["source"]
    readonly_fields = ["prefix", "key_hash", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # keys are created through the Source action or the command

    @admin.action(description="Revoke selected keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[IngestKey]) -> None:
        for key in queryset:
            services.ingest_key_revoke(key=key)


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["prefix", "user", "name", "created_at", "last_used_at", "expires_at", "revoked_at"]
    search_fields = ["user__username", "name", "prefix"]
    readonly_fields = ["prefix", "key_hash", "created_at", "last_used_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # use `manage.py create_api_token`


class EventInline(ReadOnlyInline):
    model = Event
    fields = readonly_fields = ("occurred_at", "type", "event_id", "source", "properties")
    ordering = ["-occurred_at"]
    max_num = 0
    show_change_link = True


class LeadAdminForm(forms.ModelForm):
    def clean_traits(self) -> Any:
        # The JSON field reads NaN and Infinity, and lets NUL and lone surrogates
        # through: the rules of the API keep them out of the database here too.
        traits = self.cleaned_data.get("traits")
        if problem := lead_traits_error(current=self.instance.traits or {}, new=traits):
            raise forms.ValidationError(problem)
        return traits


@admin.register(Lead)
class LeadAdmin(admin.ModelAdmin):
    form = LeadAdminForm
    list_display = ["__str__", "name", "company", "stage", "score", "source", "last_activity_at", "created_at"]
    list_filter = ["stage", "source", "needs_rescore"]
    search_fields = ["email", "external_id", "name", "company"]
    list_select_related = ["source"]
    date_hierarchy = "created_at"
    readonly_fields = [
        "public_id",
        "stage",
        "fit_score",
        "behaviour_score",
        "score",
        "scored_at",
        "ruleset_version",
        "mql_at",
        "sql_at",
        "recycled_at",
        "last_activity_at",
        "needs_rescore",
        "created_at",
        "updated_at",
    ]
    raw_id_fields = ["owner"]


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    """Events are append-only: visible, never edited."""

    list_display = ["occurred_at", "type", "lead", "source", "event_id"]
    list_filter = ["type", "source"]
    search_fields = ["event_id", "lead__email", "lead__external_id"]
    list_select_related = ["lead", "source"]
    date_hierarchy = "occurred_at"
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(StageChange)
class StageChangeAdmin(admin.ModelAdmin):
    """The audit log of qualification: append-only."""

    list_display = ["at", "lead", "from_stage", "to_stage", "actor", "ruleset_version", "score"]
    list_filter = ["to_stage", "from_stage"]
    search_fields = ["lead__email", "reason"]
    list_select_related = ["lead", "actor"]
    date_hierarchy = "at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
