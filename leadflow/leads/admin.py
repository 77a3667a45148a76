from typing import Any, cast

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from leadflow.leads import accounts, privacy, services
from leadflow.leads.models import (
    Account,
    ApiToken,
    Erasure,
    Event,
    FreeMailDomain,
    ImportJob,
    IngestKey,
    Lead,
    Outcome,
    Source,
    StageChange,
    SuppressedEmail,
)
from leadflow.leads.validation import (
    EDITABLE_LEAD_FIELDS,
    lead_traits_error,
    segment_event_types_error,
    traits_merge,
    validate_lead_changes,
)


class ReadOnlyAdminMixin:
    """Shown, never added, changed or deleted in the admin: what the services write
    (keeping stages, audit trails and notifications consistent) or nobody rewrites
    (append-only logs). For a ModelAdmin or an inline."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReadOnlyInline(ReadOnlyAdminMixin, admin.TabularInline):
    extra = 0


class IngestKeyInline(ReadOnlyInline):
    model = IngestKey
    fields = readonly_fields = ("prefix", "label", "created_at", "last_used_at", "revoked_at")


class SourceForm(forms.ModelForm):
    class Meta:
        model = Source
        fields = ["name", "slug", "segment_event_types"]

    def clean_segment_event_types(self) -> Any:
        value = self.cleaned_data["segment_event_types"]
        if problem := segment_event_types_error(value):
            raise forms.ValidationError(problem)
        return value


@admin.register(Source)
class SourceAdmin(admin.ModelAdmin):
    form = SourceForm
    list_display = ["name", "slug", "created_at", "segment_event_names"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [IngestKeyInline]
    actions = ["create_ingest_key"]

    @admin.display(description="Segment event names")
    def segment_event_names(self, source: Source) -> str:
        """The page marketing edits the mapping on, one pair a line (the form below takes JSON)."""
        mapped = len(source.segment_event_types) if isinstance(source.segment_event_types, dict) else 0
        return format_html(
            '<a href="{}">{} mapped: edit</a>', reverse("segment-event-types", args=[source.slug]), mapped
        )

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
    """The profile and traits a person may edit, by the rules of an edit through the API
    (``validate_lead_changes``, ``lead_traits_error``), so that each message shows on its
    field; ``LeadAdmin`` saves the changes with ``lead_update``."""

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        given = {name: cleaned[name] for name in self.changed_data if name in cleaned}
        if "traits" in given:
            given["traits"] = self._traits_change(given["traits"])
        changes, errors = validate_lead_changes(given)
        for name, problems in errors.items():
            self.add_error(name if name in self.fields else None, problems)
        if changes and "traits" in changes:
            # The value typed is the whole of the traits: judge what the lead would hold.
            current = self.instance.traits or {}
            if problem := lead_traits_error(current=current, new=traits_merge(current, changes["traits"])):
                self.add_error("traits", problem)
        self.lead_changes = changes or {}
        return cleaned

    def _traits_change(self, typed: Any) -> Any:
        """The whole traits typed, as the change an edit sends: the traits added or
        changed, and null for those left out (removed)."""
        if not isinstance(typed, dict):
            return typed
        current = self.instance.traits or {}
        change = {key: None for key in current if key not in typed}
        for key, value in typed.items():
            if key not in current or type(current[key]) is not type(value) or current[key] != value:
                change[key] = value
        return change


_LEAD_FIELDS = tuple(field.name for field in Lead._meta.fields if not field.primary_key)  # in the model's order


@admin.register(Lead)
class LeadAdmin(admin.ModelAdmin):
    """Leads come from ingest, the API and CSV import; here a person edits a lead's
    profile and traits, saved by ``lead_update`` (which flags the lead for rescoring).
    Identity, source, stage, scores and owner change only through their services."""

    form = LeadAdminForm
    list_display = ["__str__", "name", "company", "stage", "source", "last_activity_at", "created_at"]
    list_filter = ["stage", "source", "needs_rescore"]
    search_fields = ["email", "external_id", "name", "company"]
    list_select_related = ["source"]
    date_hierarchy = "created_at"
    fields = _LEAD_FIELDS
    readonly_fields = [name for name in _LEAD_FIELDS if name not in EDITABLE_LEAD_FIELDS]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Lead, form: Any, change: bool) -> None:
        if form.lead_changes:
            services.lead_update(lead=obj, changes=form.lead_changes)

    def delete_model(self, request: HttpRequest, obj: Lead) -> None:
        self.delete_queryset(request, Lead.objects.filter(pk=obj.pk))

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        services.leads_delete(lead_ids=list(queryset.values_list("id", flat=True)))


@admin.register(Event)
class EventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Events are append-only: visible, never edited."""

    list_display = ["occurred_at", "type", "lead", "source", "event_id"]
    list_filter = ["type", "source"]
    search_fields = ["event_id", "lead__email", "lead__external_id"]
    list_select_related = ["lead", "source"]
    date_hierarchy = "occurred_at"
    show_full_result_count = False


@admin.register(Outcome)
class OutcomeAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """What the CRM reported (``POST /api/v1/outcomes``): append-only, visible, never edited."""

    list_display = ["occurred_at", "kind", "amount", "currency", "lead", "source", "outcome_id"]
    list_filter = ["kind", "currency", "source"]
    search_fields = ["outcome_id", "lead__email", "lead__external_id"]
    list_select_related = ["lead", "source"]
    date_hierarchy = "occurred_at"
    show_full_result_count = False


@admin.register(StageChange)
class StageChangeAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The audit log of qualification: append-only."""

    list_display = ["at", "lead", "from_stage", "to_stage", "actor", "qualified_by", "ruleset_version", "score"]
    list_filter = ["to_stage", "from_stage"]
    search_fields = ["lead__email", "reason"]
    list_select_related = ["lead", "actor"]
    date_hierarchy = "at"


# --- Accounts --------------------------------------------------------------------------------
class RederiveAccountsMixin:
    @admin.action(description="Re-derive every lead's account (after editing the free-mail domains)")
    def rederive_accounts(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        result = accounts.accounts_rederive()
        cast(admin.ModelAdmin, self).message_user(
            request,
            f"Accounts re-derived for every lead: {result.leads_changed} lead(s) changed account, "
            f"{result.accounts_removed} account(s) left without contacts were removed. Roll-ups follow shortly.",
            messages.SUCCESS,
        )


class FreeMailDomainForm(forms.ModelForm):
    class Meta:
        model = FreeMailDomain
        fields = ["domain"]

    def clean_domain(self) -> str:
        domain = self.cleaned_data["domain"].strip().lower().removeprefix("@")
        if not domain or "@" in domain or " " in domain:
            raise forms.ValidationError("Type the domain alone, e.g. gmail.com.")
        return domain


@admin.register(FreeMailDomain)
class FreeMailDomainAdmin(RederiveAccountsMixin, admin.ModelAdmin):
    """Leads at these domains form no account by domain. After adding or removing one,
    run the action "Re-derive every lead's account" (or ``manage.py rederive_accounts``)."""

    form = FreeMailDomainForm
    actions = ["rederive_accounts"]
    list_display = ["domain", "created_at"]
    search_fields = ["domain"]


@admin.register(Account)
class AccountAdmin(RederiveAccountsMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    """Accounts are derived from the leads (their account trait or e-mail domain): shown, not edited."""

    list_display = ["name", "key", "domain", "created_at"]
    search_fields = ["name", "key", "domain"]
    actions = ["rederive_accounts"]


@admin.register(SuppressedEmail)
class SuppressedEmailAdmin(admin.ModelAdmin):
    """The suppression list: hashes only. Deleting an entry lifts it (ingest accepts the
    address again); the API's DELETE /api/v1/privacy/suppressions?email= does it by address."""

    list_display = ("email_hash", "created_at")
    search_fields = ("email_hash",)
    readonly_fields = ("email_hash", "created_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def delete_model(self, request: HttpRequest, obj: SuppressedEmail) -> None:
        privacy.suppressions_lift_hashes(hashes=[obj.email_hash])

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[SuppressedEmail]) -> None:
        privacy.suppressions_lift_hashes(hashes=queryset.values_list("email_hash", flat=True))


@admin.register(Erasure)
class ErasureAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("at", "actor_username", "email_hash")
    search_fields = ("email_hash", "actor_username")
    fields = readonly_fields = ("at", "actor", "actor_username", "email_hash", "counts")


@admin.register(ImportJob)
class ImportJobAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Imports of the import page, to look at (they are made and run on ``/imports/``)."""

    list_display = ["filename", "status", "preset", "source", "position", "total_rows", "rejected", "created_at"]
    list_filter = ["status", "preset"]
    exclude = ["content"]  # the file's text: personal data, and large
