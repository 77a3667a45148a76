"""The access matrix: every route of the URL configuration × every role × the viewer's
own object and another's, with the answer each must get, and the database unchanged
after every refused write.

The routes come from the URL configuration itself: a route added without a line in
``POLICY`` fails ``test_every_route_has_a_policy``, so nobody can add a page or an
endpoint without deciding who may use it. Each case runs in a savepoint rolled back
afterwards, so an allowed write (a claim, a publish) does not change the next case.

Two reps, anna and bruno, each hold a claim. A rep's own object is the handoff they
hold (its lead, a notification of theirs); another's object is the other rep's. The
other roles see both kinds the same way. On every answer a rep gets, the other rep's
name must not appear: a claim leaks through a name as much as through a status.
"""

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection, transaction
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone
from rest_framework.test import APIClient

from handoff import services as handoff_services
from handoff.models import Notification, NotificationKind, WebhookDelivery, WebhookSubscription
from leadflow.leads.models import Account, ImportJob, SavedView, Source
from leadflow.leads.roles import MARKETING, SALES, SCORING_ADMIN
from scoring import services as scoring_services
from scoring.models import RescoreRun, Rule
from tests.factories import HandoffFactory, UserFactory, ruleset_through_services
from tests.helpers import behaviour

pytestmark = pytest.mark.postgres  # the database's fingerprint is PostgreSQL SQL

# --- Roles ----------------------------------------------------------------------------------------
ANONYMOUS, NO_ROLE, MARKETER, REP, OTHER_REP, SCORING_ADMIN_ROLE, STAFF = (
    "anonymous",
    "no role",
    "marketer",
    "rep",
    "other rep",
    "scoring admin",
    "staff",
)
ROLES = (ANONYMOUS, NO_ROLE, MARKETER, REP, OTHER_REP, SCORING_ADMIN_ROLE, STAFF)
REPS = {REP, OTHER_REP}
ANY_ROLE = frozenset({MARKETER, REP, OTHER_REP, SCORING_ADMIN_ROLE, STAFF})
SIGNED_IN = ANY_ROLE | {NO_ROLE}
EVERYONE = SIGNED_IN | {ANONYMOUS}
SALES_ROLES = frozenset({REP, OTHER_REP, STAFF})
STAGE_EDITORS = frozenset({MARKETER, SCORING_ADMIN_ROLE, STAFF})
RULE_EDITORS = frozenset({SCORING_ADMIN_ROLE, STAFF})
PRIVACY_OFFICERS = RULE_EDITORS  # export, erase, the suppression list (leadflow.leads.privacy)
NURTURE = STAGE_EDITORS  # marketing and scoring admins (handoff.nurture_views)
IMPORTERS = STAGE_EDITORS  # marketing and scoring admins (leadflow.leads.import_views)
NOBODY: frozenset[str] = frozenset()  # no person: an ingest key only
# Names no generated lead or company could contain (Faker's "Joanna" contains "anna"):
# an answer naming the other rep must be a leak, never a coincidence.
REP_NAMES = {REP: "rep-anna-7q", OTHER_REP: "rep-bruno-7q"}

# --- What an object rule makes of the viewer's own object and another's --------------------------
ANY = "any"  # no object, or one every allowed role sees (a lead, a ruleset)
HANDOFF_VISIBLE = "handoff visible"  # handoff.selectors.handoffs_visible: reps see their own only
HANDOFF_ACTIONABLE = "handoff actionable"  # reps act on their own only; staff on any
HANDOFF_CLAIMABLE = "handoff claimable"  # any handoff may be asked for; another's claim is a conflict
OWN_ONLY = "own only"  # notifications: the recipient's

LOGIN_PAGE = "/login/"
# Answers
LOGIN, FORBIDDEN, HIDDEN, REFUSED, OK = "login", "forbidden", "hidden", "refused", "ok"


@dataclass(frozen=True)
class Policy:
    roles: frozenset[str]
    objects: str = ANY
    body: dict[str, Any] = field(default_factory=dict)
    success: str = "ok"  # the answer an allowed request gets: logging out sends to the login page


def api(roles, objects=ANY, **body):
    return Policy(frozenset(roles), objects, body)


page = api

# A public address (no name to resolve): a subscription's URL the matrix's writes may use.
PUBLIC_HOOK = "https://93.184.216.34/hooks/matrix"

# (URL name, method): who may. Pages and the API alike; "staff" may do everything a role may.
POLICY: dict[tuple[str, str], Policy] = {
    # Pages of the project and the core
    ("dashboard", "GET"): page(ANY_ROLE),
    ("lead-list", "GET"): page(ANY_ROLE),
    ("lead-export", "GET"): page(ANY_ROLE),
    ("lead-detail", "GET"): page(ANY_ROLE),
    ("lead-stage-change", "POST"): page(STAGE_EDITORS, stage="mql", reason="Matrix"),
    # The leads list's drill-downs (issue 17, item 9): bulk actions, saved views (one's own)
    ("lead-bulk", "POST"): page(STAGE_EDITORS, action="stage", stage="mql", reason="Matrix"),
    ("saved-view-create", "POST"): page(ANY_ROLE, name="Matrix", query="stage=mql"),
    ("saved-view-delete", "POST"): page(ANY_ROLE, OWN_ONLY),
    ("lead-privacy-export", "GET"): page(PRIVACY_OFFICERS),
    ("lead-erase", "GET"): page(PRIVACY_OFFICERS),
    ("lead-erase", "POST"): page(PRIVACY_OFFICERS),
    ("account-list", "GET"): page(ANY_ROLE),
    # Merge a duplicate (issue 15, item 2); the drop log of Segment ingest (item 1)
    ("lead-merge", "GET"): page(STAGE_EDITORS),
    ("lead-merge", "POST"): page(STAGE_EDITORS, other="nobody@example.com", confirmed="on"),
    ("segment-drops", "GET"): page(STAGE_EDITORS),
    ("segment-event-types", "GET"): page(STAGE_EDITORS),
    ("segment-event-types", "POST"): page(STAGE_EDITORS, event_types="Demo Requested → demo_request"),
    ("account-detail", "GET"): page(ANY_ROLE),
    # Imports from other tools (issue 15, item 4): a draft job, so the map page answers
    ("import-list", "GET"): page(IMPORTERS),
    ("import-new", "GET"): page(IMPORTERS),
    ("import-new", "POST"): page(IMPORTERS),
    ("import-detail", "GET"): page(IMPORTERS),
    ("import-map", "GET"): page(IMPORTERS),
    ("import-map", "POST"): page(IMPORTERS, column_0="email", action="preview"),
    ("import-progress", "GET"): page(IMPORTERS),
    ("import-rejected-csv", "GET"): page(IMPORTERS),
    # Sales pages
    ("sales-queue", "GET"): page(SALES_ROLES),
    ("handoff-claim-next", "POST"): page(SALES_ROLES),
    ("handoff-detail", "GET"): page(ANY_ROLE, HANDOFF_VISIBLE),
    ("handoff-claim", "POST"): page(SALES_ROLES, HANDOFF_CLAIMABLE),
    ("handoff-release", "POST"): page(SALES_ROLES, HANDOFF_ACTIONABLE),
    ("handoff-accept", "POST"): page(SALES_ROLES, HANDOFF_ACTIONABLE),
    ("handoff-reject", "POST"): page(SALES_ROLES, HANDOFF_ACTIONABLE, reason="other", note="Matrix"),
    # The managers' page (issue 17, item 7): marketing and scoring admins read it, staff act
    ("handoff-overview", "GET"): page(STAGE_EDITORS),
    ("handoff-overview-reassign", "POST"): page({STAFF}, username=REP_NAMES[REP]),
    ("handoff-overview-release", "POST"): page({STAFF}),
    # The accept checklist (issue 17, item 11): scoring admins and staff set it
    ("handoff-checklist", "GET"): page(RULE_EDITORS),
    ("handoff-checklist", "POST"): page(RULE_EDITORS, key="matrix", label="Matrix"),
    ("handoff-checklist-item", "POST"): page(RULE_EDITORS, label="Matrix"),
    ("notification-list", "GET"): page(ANY_ROLE),
    ("notification-read-all", "POST"): page(ANY_ROLE),
    ("notification-read", "POST"): page(ANY_ROLE, OWN_ONLY),
    # Nurture (issue 14, item 5): a push of the matrix's empty segment is refused (409, a message)
    ("nurture", "GET"): page(NURTURE),
    ("nurture-segment", "GET"): page(NURTURE),
    ("nurture-segment-export", "GET"): page(NURTURE),
    ("nurture-segment-push", "POST"): page(NURTURE),
    ("api-nurture-segments", "GET"): api(NURTURE),
    ("api-nurture-attribution", "GET"): api(NURTURE),
    ("api-nurture-segment-push", "POST"): api(NURTURE),
    # Webhook subscriptions (issue 15, item 3): scoring admins and staff register endpoints
    ("webhook-list", "GET"): page(RULE_EDITORS),
    ("webhook-list", "POST"): page(RULE_EDITORS, name="Matrix", url=PUBLIC_HOOK, events="lead.sql"),
    ("webhook-detail", "GET"): page(RULE_EDITORS),
    ("webhook-detail", "POST"): page(RULE_EDITORS, name="Matrix", url=PUBLIC_HOOK, events="lead.mql"),
    ("webhook-disable", "POST"): page(RULE_EDITORS),
    ("webhook-enable", "POST"): page(RULE_EDITORS),
    ("webhook-rotate-secret", "POST"): page(RULE_EDITORS),
    ("webhook-deliveries", "GET"): page(RULE_EDITORS),
    ("webhook-delivery-replay", "POST"): page(RULE_EDITORS),
    # Scoring pages
    ("ruleset-list", "GET"): page(ANY_ROLE),
    ("scoring-model-create", "GET"): page(RULE_EDITORS),
    ("scoring-model-create", "POST"): page(RULE_EDITORS, name="Matrix", slug="matrix"),
    ("ruleset-create", "GET"): page(RULE_EDITORS),
    ("ruleset-create", "POST"): page(RULE_EDITORS, name="Matrix", mql_threshold="10", sql_threshold="20"),
    ("rescore-run", "GET"): page(ANY_ROLE),
    ("ruleset-detail", "GET"): page(ANY_ROLE),
    ("ruleset-edit", "GET"): page(RULE_EDITORS),
    ("ruleset-edit", "POST"): page(RULE_EDITORS, name="Matrix"),
    ("ruleset-clone", "POST"): page(RULE_EDITORS),
    ("ruleset-delete", "POST"): page(RULE_EDITORS),
    ("ruleset-preview", "GET"): page(RULE_EDITORS),
    ("ruleset-publish", "GET"): page(RULE_EDITORS),
    ("ruleset-publish", "POST"): page(RULE_EDITORS),
    ("rule-create", "GET"): page(RULE_EDITORS),
    ("rule-create", "POST"): page(RULE_EDITORS, kind="behaviour", name="Matrix", event_type="x", points="1"),
    ("rule-edit", "GET"): page(RULE_EDITORS),
    ("rule-edit", "POST"): page(RULE_EDITORS, kind="behaviour", name="Matrix", event_type="x", points="1"),
    ("rule-delete", "POST"): page(RULE_EDITORS),
    ("ruleset-suggest", "POST"): page(RULE_EDITORS),
    # Score quality and the backtest (issue 14): scoring admins and marketing read
    ("ruleset-quality", "GET"): page(STAGE_EDITORS),
    ("ruleset-backtest", "GET"): page(STAGE_EDITORS),
    # Operations: not by role. /metrics answers a token or an allowed address (loopback, the
    # test client's, by default): tests/test_metrics.py refuses the others.
    ("healthz", "GET"): page(EVERYONE),
    ("readyz", "GET"): page(EVERYONE),
    ("metrics", "GET"): page(EVERYONE),
    # Accounts
    ("login", "GET"): page(EVERYONE),
    ("logout", "POST"): Policy(EVERYONE, success="login"),
    ("password_change", "GET"): page(SIGNED_IN),
    ("password_change", "POST"): page(SIGNED_IN, old_password="wrong"),
    ("password_change_done", "GET"): page(SIGNED_IN),
    ("password_reset", "GET"): page(EVERYONE),
    ("password_reset_done", "GET"): page(EVERYONE),
    ("password_reset_confirm", "GET"): page(EVERYONE),
    ("password_reset_complete", "GET"): page(EVERYONE),
    # API: the core
    ("api-events", "POST"): api(NOBODY, event_id="m1", type="page_view", lead={"email": "m@example.com"}),
    ("api-outcomes", "POST"): api(
        NOBODY, outcome_id="m1", kind="won", occurred_at="2026-11-20T10:00:00Z", lead={"email": "m@example.com"}
    ),
    ("api-leads", "GET"): api(ANY_ROLE),
    ("api-leads", "POST"): api(NOBODY, email="m@example.com"),
    ("api-lead-detail", "GET"): api(ANY_ROLE),
    ("api-lead-detail", "PATCH"): api(STAGE_EDITORS, company="Matrix"),
    ("api-lead-score", "GET"): api(ANY_ROLE),
    ("api-lead-stage", "GET"): api(ANY_ROLE),
    ("api-lead-stage", "POST"): api(STAGE_EDITORS, stage="mql", reason="Matrix"),
    ("api-lead-merge", "POST"): api(STAGE_EDITORS, lead="00000000-0000-4000-8000-000000000000"),
    # Segment-compatible ingest: a write key (an ingest key) only
    ("api-segment-batch", "POST"): api(NOBODY, batch=[]),
    **{
        (f"api-segment-{kind}", "POST"): api(NOBODY, messageId="m1", userId="u1")
        for kind in ("track", "identify", "page", "screen", "group", "alias", "t", "i", "p", "s", "g", "a")
    },
    ("api-segment-b", "POST"): api(NOBODY, batch=[]),
    # API: privacy (an unknown or missing address answers 400/404 to those allowed: not a refusal)
    ("api-lead-export", "GET"): api(PRIVACY_OFFICERS),
    ("api-lead-erase", "POST"): api(PRIVACY_OFFICERS),
    ("api-privacy-export", "GET"): api(PRIVACY_OFFICERS),
    ("api-privacy-erase", "POST"): api(PRIVACY_OFFICERS),
    ("api-privacy-suppression", "GET"): api(PRIVACY_OFFICERS),
    ("api-privacy-suppression", "DELETE"): api(PRIVACY_OFFICERS),
    # API: scoring
    ("api-scoring-models", "GET"): api(ANY_ROLE),
    ("api-scoring-models", "POST"): api(RULE_EDITORS, name="Matrix", slug="matrix"),
    ("api-scoring-model", "GET"): api(ANY_ROLE),
    ("api-scoring-model", "PATCH"): api(RULE_EDITORS, name="Matrix again"),
    ("api-scoring-model", "DELETE"): api(RULE_EDITORS),
    ("api-accounts", "GET"): api(ANY_ROLE),
    ("api-account", "GET"): api(ANY_ROLE),
    ("api-rulesets", "GET"): api(ANY_ROLE),
    ("api-rulesets", "POST"): api(RULE_EDITORS, name="Matrix", mql_threshold="10", sql_threshold="20"),
    ("api-ruleset", "GET"): api(ANY_ROLE),
    ("api-ruleset", "PATCH"): api(RULE_EDITORS, name="Matrix"),
    ("api-ruleset", "DELETE"): api(RULE_EDITORS),
    ("api-ruleset-clone", "POST"): api(RULE_EDITORS),
    ("api-ruleset-preview", "POST"): api(RULE_EDITORS),
    ("api-ruleset-publish", "POST"): api(RULE_EDITORS),
    ("api-ruleset-suggest", "POST"): api(RULE_EDITORS),
    ("api-rules", "GET"): api(ANY_ROLE),
    ("api-rules", "POST"): api(RULE_EDITORS, kind="behaviour", name="Matrix", event_type="x", points="1"),
    ("api-rule", "GET"): api(ANY_ROLE),
    ("api-rule", "PATCH"): api(RULE_EDITORS, points="2"),
    ("api-rule", "DELETE"): api(RULE_EDITORS),
    ("api-rescore-runs", "GET"): api(ANY_ROLE),
    ("api-rescore-run", "GET"): api(ANY_ROLE),
    ("api-ruleset-quality", "GET"): api(STAGE_EDITORS),
    ("api-ruleset-suggestion", "GET"): api(STAGE_EDITORS),
    ("api-ruleset-backtest", "GET"): api(STAGE_EDITORS),
    # API: handoff
    ("api-handoffs", "GET"): api(ANY_ROLE),
    ("api-handoff-claim-next", "POST"): api(SALES_ROLES),
    ("api-handoff-detail", "GET"): api(ANY_ROLE, HANDOFF_VISIBLE),
    ("api-handoff-claim", "POST"): api(SALES_ROLES, HANDOFF_CLAIMABLE),
    ("api-handoff-release", "POST"): api(SALES_ROLES, HANDOFF_ACTIONABLE),
    ("api-handoff-accept", "POST"): api(SALES_ROLES, HANDOFF_ACTIONABLE),
    ("api-handoff-reject", "POST"): api(SALES_ROLES, HANDOFF_ACTIONABLE, reason="other", note="Matrix"),
    ("api-handoff-reassign", "POST"): api(RULE_EDITORS, username=REP_NAMES[REP]),
    ("api-lead-handoffs", "GET"): api(ANY_ROLE),
    ("api-lead-outcomes", "GET"): api(ANY_ROLE),
    ("api-handoff-checklist", "GET"): api(ANY_ROLE),
    ("api-handoff-checklist", "POST"): api(RULE_EDITORS, key="matrix", label="Matrix"),
    ("api-handoff-checklist-item", "GET"): api(ANY_ROLE),
    ("api-handoff-checklist-item", "PATCH"): api(RULE_EDITORS, label="Matrix"),
    ("api-handoff-stats", "GET"): api(ANY_ROLE),
    ("api-notifications", "GET"): api(SIGNED_IN),
    ("api-notifications-unread", "GET"): api(SIGNED_IN),
    ("api-notifications-read-all", "POST"): api(SIGNED_IN),
    ("api-notification-read", "POST"): api(SIGNED_IN, OWN_ONLY),
    ("api-webhooks", "GET"): api(RULE_EDITORS),
    ("api-webhooks", "POST"): api(RULE_EDITORS, name="Matrix", url=PUBLIC_HOOK, events=["lead.sql"]),
    ("api-webhook", "GET"): api(RULE_EDITORS),
    ("api-webhook", "PUT"): api(RULE_EDITORS, name="Matrix", url=PUBLIC_HOOK, events=["lead.mql"]),
    ("api-webhook-disable", "POST"): api(RULE_EDITORS),
    ("api-webhook-enable", "POST"): api(RULE_EDITORS),
    ("api-webhook-deliveries", "GET"): api(RULE_EDITORS),
    ("api-webhook-delivery-replay", "POST"): api(RULE_EDITORS),
    ("api-schema", "GET"): api(EVERYONE),
    ("api-docs", "GET"): api(EVERYONE),
}
# Not people's routes: the admin (Django's own permissions, and the lockout's tests) and the
# JSON 404 for any other address under /api/.
UNCLASSIFIED_PREFIXES = (settings.ADMIN_PATH,)
CATCH_ALL = "^api/"


def routes() -> Iterator[tuple[str, str | None]]:
    """(route, name) of every URL pattern, the admin's apart."""

    def walk(patterns: list[Any], prefix: str) -> Iterator[tuple[str, str | None]]:
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                if not route.startswith(UNCLASSIFIED_PREFIXES):
                    yield from walk(pattern.url_patterns, route)
            elif isinstance(pattern, URLPattern) and route != CATCH_ALL:
                yield route, pattern.name

    return walk(get_resolver().url_patterns, "")


def test_every_route_has_a_policy():
    names = {name for _route, name in routes()}
    assert None not in names, "every route needs a name to be in the matrix"
    assert names == {name for name, _method in POLICY}


# --- The world: two reps with a claim each, the other roles, rules, notifications ---------------
@dataclass
class World:
    users: dict[str, Any]
    handoffs: dict[str, Any]  # by the rep holding it
    notifications: dict[str, Any]  # by recipient role
    draft_version: int
    rule_id: int
    run_id: int
    model_slug: str
    account_id: int
    import_job_id: Any = None
    saved_views: dict[str, Any] = field(default_factory=dict)
    subscription_id: Any = None
    delivery_id: int = 0


@pytest.fixture
def world(db, settings) -> World:
    # The password change's POST checks the old password: with the default hasher that is
    # a deliberate fraction of a second per role, with MD5 nothing (test users only).
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    users = {
        NO_ROLE: UserFactory.create(username="nobody"),
        MARKETER: UserFactory.create(username="mia", roles=[MARKETING]),
        REP: UserFactory.create(username=REP_NAMES[REP], roles=[SALES]),
        OTHER_REP: UserFactory.create(username=REP_NAMES[OTHER_REP], roles=[SALES]),
        SCORING_ADMIN_ROLE: UserFactory.create(username="sam", roles=[SCORING_ADMIN]),
        STAFF: UserFactory.create(username="stella", is_staff=True),
    }
    published = ruleset_through_services([behaviour("page_view", 5)])
    draft = ruleset_through_services([behaviour("demo_request", 30)], publish=False)
    # As if a suggestion made it (its reasons are what GET …/suggestion answers).
    draft.suggestion = {
        **dict.fromkeys(("decided", "accepted", "rejected", "trained_on", "held_out"), 0),
        **dict.fromkeys(("auc_old", "auc_suggested", "auc_flat", "points_per_log_odds", "seconds"), 0.5),
        "from_version": published.version,
        "thresholds": "kept",
        "rules": [],
    }
    draft.save(update_fields=["suggestion"])
    handoffs = {}
    for role in (REP, OTHER_REP):
        handoff = HandoffFactory.create()
        handoffs[role] = handoff_services.handoff_claim(handoff=handoff, user=users[role])
    HandoffFactory.create()  # one in the queue, for claim-next
    notifications = {
        role: Notification.objects.create(
            recipient=user, kind=NotificationKind.HANDOFF_NEW, event_key=f"matrix:{role}", title="Matrix"
        )
        for role, user in users.items()
    }
    run = RescoreRun.objects.filter(ruleset=published).first() or RescoreRun.objects.create(ruleset=published)
    unpublished = scoring_services.scoring_model_create(name="Never published", slug="never-published")
    account = Account.objects.create(key="matrix.example", name="Matrix", domain="matrix.example")
    saved_views = {
        role: SavedView.objects.create(user=user, name="Matrix", query="stage=mql") for role, user in users.items()
    }
    import_job = ImportJob.objects.create(
        filename="matrix.csv",
        source=Source.objects.create(name="Matrix import", slug="matrix-import"),
        preset="leadflow",
        encoding="utf-8",
        content="email\nm@example.com\n",
        header=["email"],
        mapping=["email"],
        total_rows=1,
    )
    subscription = WebhookSubscription.objects.create(
        name="Matrix", url=PUBLIC_HOOK, secret="whsec_matrix", events=["lead.sql"], owner=users[SCORING_ADMIN_ROLE]
    )
    delivery = WebhookDelivery.objects.create(
        subscription=subscription, key="lead.sql:matrix", event="lead.sql", payload={}, delivered_at=timezone.now()
    )
    return World(
        import_job_id=import_job.public_id,
        subscription_id=subscription.public_id,
        delivery_id=delivery.pk,
        saved_views=saved_views,
        model_slug=unpublished.slug,
        account_id=account.pk,
        users=users,
        handoffs=handoffs,
        notifications=notifications,
        draft_version=draft.version,
        rule_id=Rule.objects.filter(ruleset=draft).values_list("pk", flat=True).get(),
        run_id=run.pk,
    )


OTHER_OF = {REP: OTHER_REP, OTHER_REP: REP}


def object_owner(viewer: str, own: bool) -> str:
    """Whose handoff the case uses: a rep's own or the other rep's; for other viewers anna's
    stands for "own" and bruno's for "other" (they see both alike)."""
    if viewer in REPS:
        return viewer if own else OTHER_OF[viewer]
    return REP if own else OTHER_REP


def url_kwargs(route: str, world: World, viewer: str, own: bool) -> dict[str, Any]:
    handoff = world.handoffs[object_owner(viewer, own)]
    recipient = viewer if viewer in world.notifications and own else (OTHER_REP if viewer != OTHER_REP else REP)
    values = {
        "lead_id": handoff.lead.public_id,
        "handoff_id": handoff.public_id,
        "notification_id": world.notifications[recipient].public_id,
        "version": world.draft_version,
        "rule_id": world.rule_id,
        "run_id": world.run_id,
        "slug": world.model_slug,
        "account_id": world.account_id,
        "segment": "pricing--this-week",
        "key": "budget",  # an accept checklist item of the data migration
        "view_id": world.saved_views[recipient].pk,
        "job_id": world.import_job_id,
        "source_slug": "matrix-import",  # the import job's source
        "uidb64": "MQ",
        "token": "set-password",
        "subscription_id": world.subscription_id,
        "delivery_id": world.delivery_id,
    }
    return {name: values[name] for name in values if f"<{name}>" in route or f":{name}>" in route}


def expected(policy: Policy, viewer: str, own: bool) -> str:
    if viewer not in policy.roles:
        return LOGIN if viewer == ANONYMOUS else FORBIDDEN
    if viewer in REPS and not own:
        if policy.objects in (HANDOFF_VISIBLE, HANDOFF_ACTIONABLE):
            return HIDDEN
        if policy.objects == HANDOFF_CLAIMABLE:
            return REFUSED
    if policy.objects == OWN_ONLY and not own:
        return HIDDEN
    return policy.success


def answer(response: Any, *, is_api: bool) -> str:
    status = response.status_code
    location = response.get("Location", "")
    if status == 401 or (status == 302 and location.startswith(LOGIN_PAGE)):
        return LOGIN
    if status == 403:
        return FORBIDDEN
    if status == 404:
        return HIDDEN
    if (is_api and status == 409) or (not is_api and status == 302 and response.wsgi_request.method == "POST"):
        # A refused claim: a conflict in the API, a message and a redirect on a page. A page's
        # successful POST redirects too: what tells them apart is the database, checked below.
        return REFUSED
    assert status < 500 and status != 405, f"{status} {response.content[:300]!r}"
    return OK


def rows_written() -> int:
    """Rows inserted, updated or deleted so far in this transaction, in every table but the
    sessions (logging a client in writes one): PostgreSQL counts them per transaction, with
    those of savepoints since rolled back, so an attempted write shows even when undone. A
    hash of every table's rows (what "unchanged" means) would say the same, slower."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) FROM pg_stat_xact_user_tables "
            "WHERE relname <> %s",
            ["django_session"],
        )
        return int(cursor.fetchone()[0])


class Rollback(Exception):
    pass


def signed_in(made: dict[tuple[str, bool], Any], world: World, viewer: str, is_api: bool, *, fresh: bool) -> Any:
    """A client signed in as ``viewer``, made once per test: logging in writes a session
    and the last login, which every case would otherwise pay for. Logging out ends the
    session (its deletion is rolled back, the client's cookie is not): a fresh client."""
    key = (viewer, is_api)
    if fresh or key not in made:
        client: Any = APIClient() if is_api else Client()
        user = world.users.get(viewer)
        if user is not None:
            if is_api:
                client.force_authenticate(user)
            else:
                client.force_login(user)
        if fresh:
            return client
        made[key] = client
    return made[key]


def test_access_matrix(world):
    made: dict[tuple[str, bool], Any] = {}
    route_by_name = {name: route for route, name in routes()}
    failures = []
    cases = 0
    for (name, method), policy in POLICY.items():
        route = route_by_name[name]
        is_api = route.startswith("api/")
        has_object = "<" in route
        for viewer in ROLES:
            for own in (True, False) if has_object else (True,):
                cases += 1
                path = reverse(name, kwargs=url_kwargs(route, world, viewer, own))
                client = signed_in(made, world, viewer, is_api, fresh=name == "logout")
                want = expected(policy, viewer, own)
                # Refused writes must leave the database as it was.
                check_writes = method not in ("GET", "HEAD", "OPTIONS") and want not in (OK, policy.success)
                try:
                    with transaction.atomic():
                        before = rows_written() if check_writes else 0
                        send = getattr(client, method.lower())
                        if is_api:
                            response = send(path, policy.body, format="json") if method != "GET" else send(path)
                        else:
                            response = send(path, policy.body) if method != "GET" else send(path)
                        got = answer(response, is_api=is_api)
                        changed = check_writes and rows_written() != before
                        raise Rollback
                except Rollback:
                    pass
                case = f"{method} {path} as {viewer} ({'own' if own else 'other'})"
                # A conflict (409), or a page's POST answered with a message and a redirect, is
                # a refusal by the domain, not by access: fine where access is granted.
                if got == REFUSED and want == OK:
                    got = OK
                if got != want:
                    failures.append(f"{case}: expected {want}, got {got} ({response.status_code})")
                elif want != OK and changed:
                    failures.append(f"{case}: refused ({response.status_code}) but the database changed")
                if viewer in REPS and response.status_code == 200:
                    other_name = world.users[OTHER_OF[viewer]].username
                    body = b"".join(response.streaming_content) if response.streaming else response.content
                    if other_name.encode() in body:
                        failures.append(f"{case}: the answer names the other rep ({other_name})")
    assert cases > 500
    if failures and os.environ.get("ACCESS_MATRIX_REPORT"):
        Path(os.environ["ACCESS_MATRIX_REPORT"]).write_text("\n".join(failures))
    assert not failures, "\n".join(failures)


def test_the_world_has_what_the_matrix_needs(world):
    assert world.handoffs[REP].claimed_by == world.users[REP]
    assert world.handoffs[OTHER_REP].claimed_by == world.users[OTHER_REP]
    assert world.handoffs[REP].claim_expires_at > timezone.now()


def test_rows_written_sees_an_allowed_write_and_a_refused_one_writes_nothing(world):
    lead = world.handoffs[REP].lead
    refused = signed_in({}, world, REP, True, fresh=True)
    before = rows_written()
    assert refused.patch(f"/api/v1/leads/{lead.public_id}", {"company": "X"}, format="json").status_code == 403
    assert rows_written() == before
    allowed = signed_in({}, world, MARKETER, True, fresh=True)
    assert allowed.patch(f"/api/v1/leads/{lead.public_id}", {"company": "X"}, format="json").status_code == 200
    assert rows_written() > before
