import csv
import io
import json
import os
from collections import Counter
from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.apps import apps
from django.contrib.auth import authenticate
from django.contrib.auth.models import User
from django.contrib.auth.password_validation import validate_password
from django.core.management import CommandError, ManagementUtility, call_command, find_commands
from django.test import RequestFactory
from django.utils import timezone
from rest_framework.test import APIClient

from handoff.models import Handoff, HandoffEvent, HandoffStatus, Notification
from leadflow.leads.importexport import EXPORT_COLUMNS, neutralise_formula
from leadflow.leads.keys import hash_key
from leadflow.leads.models import ApiToken, Event, IngestKey, Lead, Source, Stage
from leadflow.leads.roles import MARKETING, SALES, SCORING_ADMIN
from leadflow.management.commands.seed_demo import DEMO_USERS, PERSONAL_DOMAINS
from scoring.models import Score
from tests.factories import LeadFactory, SourceFactory
from tests.helpers import behaviour, lead_score, score_row

pytestmark = pytest.mark.django_db


def run(*args, **options):
    stdout, stderr = io.StringIO(), io.StringIO()
    call_command(*args, stdout=stdout, stderr=stderr, **options)
    return stdout.getvalue(), stderr.getvalue()


def write_csv(tmp_path, text, *, name="leads.csv", encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return str(path)


def bearer(secret):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


# --- create_ingest_key -------------------------------------------------------------


def test_create_ingest_key_prints_the_key_alone_on_the_last_line_and_stores_only_its_hash():
    stdout, _ = run("create_ingest_key", "Website", "--label", "production site")

    secret = stdout.splitlines()[-1]
    assert secret.startswith("lfi_") and " " not in secret
    key = IngestKey.objects.get()
    assert (key.source.name, key.source.slug, key.label) == ("Website", "website", "production site")
    assert key.key_hash == hash_key(secret)
    assert secret not in json.dumps(list(IngestKey.objects.values()), default=str)
    assert "only its hash is stored" in stdout.lower()


def test_create_ingest_key_prints_a_key_the_events_api_accepts():
    stdout, _ = run("create_ingest_key", "Website")
    event = {"event_id": "e-1", "type": "page_view", "lead": {"email": "ada@example.com"}}

    response = bearer(stdout.splitlines()[-1]).post("/api/v1/events", event, format="json")

    assert response.status_code == 202
    assert Event.objects.get().source.slug == "website"


def test_create_ingest_key_reuses_the_source_by_name_or_slug_even_with_an_edited_slug():
    website = SourceFactory.create(name="Website", slug="web")

    run("create_ingest_key", "website")
    run("create_ingest_key", "web")

    assert Source.objects.count() == 1
    assert list(IngestKey.objects.values_list("source", flat=True)) == [website.pk, website.pk]


def test_create_ingest_key_without_a_usable_source_name_says_what_to_give():
    with pytest.raises(CommandError, match="at least one letter or digit"):
        run("create_ingest_key", "  !!  ")
    assert not IngestKey.objects.exists()
    assert not Source.objects.exists()


# --- create_api_token --------------------------------------------------------------


def test_create_api_token_prints_a_working_token_alone_on_the_last_line(marketer):
    stdout, _ = run("create_api_token", "marketer", "--name", "CRM sync", "--days", "30")

    secret = stdout.splitlines()[-1]
    token = ApiToken.objects.get()
    assert (token.user, token.name, token.key_hash) == (marketer, "CRM sync", hash_key(secret))
    assert token.expires_at is not None
    assert abs(token.expires_at - (timezone.now() + timedelta(days=30))) < timedelta(minutes=1)
    assert bearer(secret).get("/api/v1/leads").status_code == 200


def test_create_api_token_without_days_never_expires(marketer):
    run("create_api_token", "marketer")
    assert ApiToken.objects.get().expires_at is None


def test_create_api_token_for_an_unknown_user_fails_and_says_how_to_create_one(marketer):
    with pytest.raises(CommandError, match="no user 'nobody'.*createsuperuser"):
        run("create_api_token", "nobody")
    assert not ApiToken.objects.exists()


def test_create_api_token_for_an_inactive_user_fails(marketer):
    marketer.is_active = False
    marketer.save(update_fields=["is_active"])
    with pytest.raises(CommandError, match="inactive"):
        run("create_api_token", "marketer")
    assert not ApiToken.objects.exists()


def test_create_api_token_refuses_a_non_positive_lifetime(marketer):
    with pytest.raises(CommandError, match="--days must be 1 or more"):
        run("create_api_token", "marketer", "--days", "0")
    assert not ApiToken.objects.exists()


# --- seed_demo ---------------------------------------------------------------------


def test_seed_demo_is_idempotent():
    first, _ = run("seed_demo", "--history", "0", "--leads", "30", "--seed", "7")
    counts = (User.objects.count(), Source.objects.count(), Lead.objects.count(), Event.objects.count())
    events = Event.objects.count()

    with time_machine.travel(timezone.now() + timedelta(days=2, seconds=7)):  # event times must not follow the clock
        second, _ = run("seed_demo", "--history", "0", "--leads", "30", "--seed", "7")

    assert (User.objects.count(), Source.objects.count(), Lead.objects.count(), Event.objects.count()) == counts
    assert counts[:3] == (4, 2, 30)  # the demo site and the demo CRM
    assert f"Events: {events} accepted, 0 duplicates, 0 rejected." in first
    assert f"Events: 0 accepted, {events} duplicates, 0 rejected." in second
    assert "Users: 0 created, 4 already existed" in second
    assert "Leads: 30 demo leads and 0 from the archive, 0 new." in second


def test_seed_demo_with_more_leads_adds_only_the_new_ones():
    run("seed_demo", "--history", "0", "--leads", "10", "--seed", "7")
    first_events = Event.objects.count()

    stdout, _ = run("seed_demo", "--history", "0", "--leads", "30", "--seed", "7")

    assert Lead.objects.count() == 30
    assert "Leads: 30 demo leads and 0 from the archive, 20 new." in stdout
    assert f"{first_events} duplicates, 0 rejected" in stdout


def test_seed_demo_creates_the_documented_users_with_their_roles_and_passwords():
    stdout, _ = run("seed_demo", "--history", "0", "--leads", "0")

    roles = {}
    for spec in DEMO_USERS:
        # As the login page does: the lockout's backend (django-axes) needs the request.
        user = authenticate(RequestFactory().post("/login/"), username=spec.username, password=spec.password)
        assert user is not None, spec.username
        validate_password(spec.password, user)
        roles[spec.username] = (set(user.groups.values_list("name", flat=True)), user.is_superuser, user.is_staff)
        assert spec.password in stdout
    assert roles == {
        "admin": ({SCORING_ADMIN}, True, True),
        "marketer": ({MARKETING}, False, False),
        "rep": ({SALES}, False, False),
        "rep2": ({SALES}, False, False),
    }


def test_seed_demo_leaves_an_existing_user_untouched():
    User.objects.create_user(username="admin", password="my-own-secret-passphrase")

    stdout, _ = run("seed_demo", "--history", "0", "--leads", "0")

    admin = User.objects.get(username="admin")
    assert admin.check_password("my-own-secret-passphrase")
    assert not admin.is_superuser
    assert not admin.groups.exists()
    assert "Users: 3 created, 1 already existed" in stdout


def test_seed_demo_leads_have_b2b_profiles_and_varied_recent_journeys():
    run("seed_demo", "--history", "0", "--leads", "60", "--seed", "3")

    leads = list(Lead.objects.all())
    assert all(lead.source.slug == "website" and lead.name and lead.job_title for lead in leads)
    assert all(isinstance(lead.company_size, int) and lead.country and lead.industry for lead in leads)
    assert all("plan" in lead.traits for lead in leads)
    assert any(lead.email.split("@")[1] in PERSONAL_DOMAINS for lead in leads)
    assert any(lead.utm_source for lead in leads) and any(not lead.utm_source for lead in leads)
    events_per_lead = sorted(lead.events.count() for lead in leads)
    assert events_per_lead[0] <= 2 and events_per_lead[-1] >= 12
    assert sum(1 for n in events_per_lead if n <= 4) > len(leads) / 2
    now = timezone.now()
    assert not Event.objects.filter(occurred_at__gt=now).exists()
    assert not Event.objects.filter(occurred_at__lt=now - timedelta(days=61)).exists()
    types = set(Event.objects.values_list("type", flat=True))
    assert {"page_view", "content_download", "email_open", "pricing_view", "form_submit"} <= types
    assert types & {"demo_request", "contact_request"}
    hand_raisers = Lead.objects.filter(events__type__in=["demo_request", "contact_request"]).distinct().count()
    assert 0 < hand_raisers < len(leads) / 4
    assert all(lead.last_activity_at is not None and not lead.needs_rescore for lead in leads)
    assert Score.objects.filter(lead__in=leads).count() == 2 * len(leads), "every lead scored under both demo models"
    assert set(Score.objects.values_list("model__slug", flat=True)) == {"default", "abm-addon"}
    # History is replayed: leads were "created" at their first event, not when the seed ran.
    assert all(lead.last_activity_at is not None and lead.created_at <= lead.last_activity_at for lead in leads)
    assert Lead.objects.filter(created_at__lt=now - timedelta(days=7)).exists()


def test_seed_demo_has_the_sales_team_work_the_older_half_of_the_queue_once(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):  # the notifications, as outside a test transaction
        stdout, _ = run("seed_demo", "--history", "0", "--leads", "120", "--seed", "5")

    handoffs = list(Handoff.objects.order_by("created_at", "id"))
    assert len(handoffs) >= 6
    newer_half = handoffs[len(handoffs) // 2 :]
    assert all(h.status == HandoffStatus.QUEUED and h.first_claimed_at is None for h in newer_half)
    worked = [h for h in handoffs if h.first_claimed_at is not None]
    assert {h.claimed_by.username for h in worked} <= {"rep", "rep2"}
    accepted = [h for h in worked if h.status == HandoffStatus.ACCEPTED]
    rejected = [h for h in worked if h.status == HandoffStatus.REJECTED]
    assert accepted and rejected
    assert all(h.note and h.reject_reason for h in rejected)  # feedback marketing can read
    assert all(h.lead.owner == h.claimed_by and h.lead.stage == Stage.ACCEPTED for h in accepted)
    # Claims and decisions happened hours after each handoff, not when the seed ran.
    assert all(
        h.first_claimed_at is not None
        and h.decided_at is not None
        and h.created_at < h.first_claimed_at < h.decided_at < h.created_at + timedelta(days=3)
        for h in rejected
    )
    assert Notification.objects.filter(kind="handoff_rejected").count() == len(rejected)
    assert f"Sales queue: {len(accepted)} accepted, {len(rejected)} rejected" in stdout

    trail = HandoffEvent.objects.count()
    states = list(Handoff.objects.order_by("id").values_list("status", "claimed_by", "decided_at"))
    with time_machine.travel(timezone.now() + timedelta(days=1)):
        again, _ = run("seed_demo", "--history", "0", "--leads", "120", "--seed", "5")
    assert HandoffEvent.objects.count() == trail
    assert list(Handoff.objects.order_by("id").values_list("status", "claimed_by", "decided_at")) == states
    assert "Sales queue: 0 accepted, 0 rejected, 0 claimed by the demo reps." in again


def test_seed_demo_archive_teaches_what_sales_accepts_and_what_content_converts():
    stdout, _ = run("seed_demo", "--leads", "0", "--history", "250", "--seed", "11")

    decided = list(
        Handoff.objects.filter(status__in=[HandoffStatus.ACCEPTED, HandoffStatus.REJECTED]).select_related("lead")
    )
    assert len(decided) >= 80
    assert f"sales decided {len(decided)} of their handoffs" in stdout
    assert not Handoff.objects.exclude(status__in=[HandoffStatus.ACCEPTED, HandoffStatus.REJECTED]).exists()

    def accept_rate(handoffs):
        return sum(h.status == HandoffStatus.ACCEPTED for h in handoffs) / len(handoffs)

    big = [h for h in decided if (h.lead.company_size or 0) >= 50]
    small = [h for h in decided if (h.lead.company_size or 0) < 50]
    target = [h for h in decided if h.lead.industry in {"Software", "Financial Services"}]
    other = [h for h in decided if h.lead.industry not in {"Software", "Financial Services"}]
    assert accept_rate(big) - accept_rate(small) > 0.25, "company size decides acceptance"
    assert abs(accept_rate(target) - accept_rate(other)) < 0.15, "industry does not"

    converting = {"checklist-sla-handoff.pdf", "ebook-lead-scoring-guide.pdf"}
    engaged_with = set(
        Event.objects.filter(type="content_download", properties__asset__in=converting).values_list("lead", flat=True)
    )
    raised = set(Event.objects.filter(type__in=["demo_request", "contact_request"]).values_list("lead", flat=True))
    others = set(Lead.objects.values_list("pk", flat=True)) - engaged_with
    assert len(engaged_with & raised) / len(engaged_with) > len(others & raised) / len(others) + 0.1
    # Months-old verdicts are not news: nobody's inbox holds them unread.
    assert not Notification.objects.filter(read_at__isnull=True, kind="handoff_rejected").exists()
    assert not Event.objects.filter(occurred_at__gt=timezone.now() - timedelta(days=70)).exists()


def test_seed_demo_refuses_a_negative_number_of_leads():
    with pytest.raises(CommandError, match="--leads must be 0 or more"):
        run("seed_demo", "--history", "0", "--leads", "-1")


# --- import_leads ------------------------------------------------------------------


def test_import_creates_leads_with_profile_fields_and_other_columns_as_traits(tmp_path):
    path = write_csv(
        tmp_path,
        "\ufeffEmail,name,company,company_size,country,utm_source,trait:plan,Seats wanted,notes\n"
        "Ada@Example.com,Ada Lovelace,Analytical,250,United Kingdom,linkedin,pro,12,\n"
        "bob@example.com,Bob,,,,,,,\n",
    )

    stdout, _ = run("import_leads", path)

    assert "2 created, 0 updated, 0 rejected" in stdout
    ada = Lead.objects.get(email="ada@example.com")
    assert (ada.name, ada.company, ada.company_size, ada.country, ada.utm_source) == (
        "Ada Lovelace",
        "Analytical",
        250,
        "United Kingdom",
        "linkedin",
    )
    assert ada.traits == {"plan": "pro", "Seats wanted": "12"}
    assert ada.source.name == "CSV import"
    assert ada.needs_rescore
    assert Lead.objects.get(email="bob@example.com").traits == {}


def test_import_updates_existing_leads_by_email_and_merges_traits(tmp_path):
    existing = LeadFactory.create(
        email="ada@example.com", company="Old Co", job_title="CTO", traits={"plan": "free", "x": 1}
    )
    path = write_csv(tmp_path, "email,company,job_title,plan,region\nADA@example.com,New Co,,pro,EMEA\n")

    stdout, _ = run("import_leads", path, "--source", "Trade show")

    assert "0 created, 1 updated, 0 rejected" in stdout
    existing.refresh_from_db()
    assert (existing.company, existing.job_title) == ("New Co", "CTO")  # an empty cell changes nothing
    assert existing.traits == {"plan": "pro", "x": 1, "region": "EMEA"}
    assert Lead.objects.count() == 1


def test_import_matches_by_external_id(tmp_path):
    existing = LeadFactory.create(email=None, external_id="crm-1", name="Old")
    path = write_csv(tmp_path, "external_id,name\ncrm-1,New name\ncrm-2,Other\n")

    stdout, _ = run("import_leads", path)

    assert "1 created, 1 updated, 0 rejected" in stdout
    existing.refresh_from_db()
    assert existing.name == "New name"


def test_import_reports_rejected_rows_with_line_numbers(tmp_path):
    LeadFactory.create(email="taken@example.com", external_id="crm-1")
    path = write_csv(
        tmp_path,
        "email,external_id,name,company_size\n"
        'not-an-email,,"Name over\ntwo lines",10\n'  # lines 2-3
        "good@example.com,,Good,\n"  # line 4
        "\n"  # line 5, blank: skipped
        "size@example.com,,Size,lots\n"  # line 6
        ",,No identity,\n"  # line 7
        "taken@example.com,crm-2,Conflict,\n"  # line 8
        "fine@example.com,,Fine,-3\n",  # line 9
    )

    stdout, _ = run("import_leads", path)

    assert "1 created, 0 updated, 5 rejected" in stdout
    rejected = {
        int(line.split(":", 1)[0].removeprefix("Line ")): json.loads(line.split(":", 1)[1])
        for line in stdout.splitlines()
        if line.startswith("Line ")
    }
    assert sorted(rejected) == [2, 6, 7, 8, 9]
    assert rejected[2] == {"email": ["Enter a valid email address."]}
    assert "whole number" in rejected[6]["company_size"][0]
    assert "non_field_errors" in rejected[7]
    assert "external_id" in rejected[8]
    assert "company_size" in rejected[9]
    assert list(Lead.objects.order_by("email").values_list("email", flat=True)) == [
        "good@example.com",
        "taken@example.com",
    ]


def test_import_dry_run_writes_nothing(tmp_path):
    existing = LeadFactory.create(email="ada@example.com", company="Old Co")
    path = write_csv(tmp_path, "email,company\nada@example.com,New Co\nbob@example.com,Bob Co\nbad,\n")

    stdout, _ = run("import_leads", path, "--dry-run", "--source", "Brand new source")

    assert "Dry run, nothing written" in stdout
    assert "1 created, 1 updated, 1 rejected" in stdout
    existing.refresh_from_db()
    assert existing.company == "Old Co"
    assert list(Lead.objects.all()) == [existing]
    assert not Source.objects.filter(name="Brand new source").exists()


def test_import_counts_a_lead_repeated_in_the_file_as_created_once_across_chunks(tmp_path):
    rows = [f"lead{n}@example.com,{n}" for n in range(500)]  # the first chunk
    rows += ["lead0@example.com,again", "lead500@example.com,500", "LEAD500@example.com,twice"]
    path = write_csv(tmp_path, "email,name\n" + "\n".join(rows) + "\n")

    stdout, _ = run("import_leads", path)

    assert "501 created, 2 updated, 0 rejected" in stdout
    assert Lead.objects.count() == 501
    assert Lead.objects.get(email="lead0@example.com").name == "again"
    assert Lead.objects.get(email="lead500@example.com").name == "twice"


def test_import_without_an_identity_column_fails_and_says_which_column_to_add(tmp_path):
    path = write_csv(tmp_path, "name,company\nAda,Analytical\n")
    with pytest.raises(CommandError, match="neither an 'email' nor an 'external_id' column"):
        run("import_leads", path)
    assert not Lead.objects.exists()


def test_import_with_two_columns_for_one_field_fails_and_names_them(tmp_path):
    path = write_csv(tmp_path, "email,name,Email\nada@example.com,Ada,ada@example.org\n")
    with pytest.raises(CommandError, match="Columns 'email' and 'Email' both set the field 'email'"):
        run("import_leads", path)
    assert not Lead.objects.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "Cannot read .*: No such file or directory"),
        (b"", "The file is empty"),
        (b"email,name\nada@example.com,Ren\xe9\n", r"not UTF-8 \(line 2\)"),
    ],
)
def test_import_of_an_unreadable_file_fails_with_a_hint(tmp_path, content, message):
    path = tmp_path / "leads.csv"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CommandError, match=message):
        run("import_leads", str(path))
    assert not Lead.objects.exists()


def test_import_of_an_export_does_not_turn_computed_columns_into_traits(tmp_path):
    LeadFactory.create(email="ada@example.com", name="Ada", score=Decimal("42"), traits={})
    path = str(tmp_path / "export.csv")
    run("export_leads", path)
    Lead.objects.update(name="Changed")

    stdout, _ = run("import_leads", path)

    assert "0 created, 1 updated, 0 rejected" in stdout
    assert "Ignoring columns LeadFlow computes itself: public_id, source, stage, score" in stdout
    lead = Lead.objects.get()
    assert (lead.name, lead.traits, lead_score(lead)) == ("Ada", {}, Decimal("42"))


# --- export_leads ------------------------------------------------------------------


def read_export(text):
    return list(csv.DictReader(io.StringIO(text, newline="")))


def read_export_file(path):
    with open(path, encoding="utf-8", newline="") as file:
        return list(csv.DictReader(file))


def test_export_writes_one_row_per_lead_with_the_documented_columns(tmp_path):
    source = SourceFactory.create(slug="website")
    lead = LeadFactory.create(
        email="ada@example.com", company_size=250, source=source, stage=Stage.MQL, score=Decimal("61.5")
    )
    path = tmp_path / "leads.csv"

    stdout, _ = run("export_leads", str(path))

    assert "Exported 1 leads" in stdout
    rows = read_export_file(path)
    assert list(rows[0]) == list(EXPORT_COLUMNS)
    assert rows[0]["public_id"] == str(lead.public_id)
    assert (rows[0]["email"], rows[0]["company_size"], rows[0]["source"]) == ("ada@example.com", "250", "website")
    assert (rows[0]["stage"], rows[0]["score"], rows[0]["mql_at"]) == ("mql", "61.50", "")
    assert rows[0]["created_at"].endswith("Z")


def test_export_neutralises_formula_cells(tmp_path):
    LeadFactory.create(
        email="ada@example.com",
        name='=HYPERLINK("http://evil.test","click")',
        company="+cmd|' /C calc'!A0",
        job_title="-2+3",
        industry="@SUM(A1)",
        country="\t=1+1",
        external_id="\r=1",
        score=Decimal("-5"),
    )
    path = tmp_path / "leads.csv"

    run("export_leads", str(path))

    row = read_export_file(path)[0]
    assert row["name"] == '\'=HYPERLINK("http://evil.test","click")'
    assert row["company"] == "'+cmd|' /C calc'!A0"
    assert row["job_title"] == "'-2+3"
    assert row["industry"] == "'@SUM(A1)"
    assert row["country"] == "'\t=1+1"
    assert row["external_id"] == "'\r=1"
    assert row["email"] == "ada@example.com"
    assert row["score"] == "-5.00"  # a number we format is not text a user typed


@pytest.mark.parametrize(
    ("cell", "safe"),
    [("=1+1", "'=1+1"), ("+1", "'+1"), ("-1", "'-1"), ("@x", "'@x"), ("\tx", "'\tx"), ("\rx", "'\rx"), ("a=b", "a=b")],
)
def test_neutralise_formula_prefixes_only_cells_a_spreadsheet_would_evaluate(cell, safe):
    assert neutralise_formula(cell) == safe


def test_export_filters_by_stages_and_source(tmp_path):
    website, fair = SourceFactory.create(slug="website"), SourceFactory.create(slug="fair")
    LeadFactory.create(email="mql@example.com", source=website, stage=Stage.MQL)
    LeadFactory.create(email="sql@example.com", source=website, stage=Stage.SQL)
    LeadFactory.create(email="new@example.com", source=website, stage=Stage.NEW)
    LeadFactory.create(email="fair@example.com", source=fair, stage=Stage.SQL)
    path = tmp_path / "leads.csv"

    run("export_leads", str(path), "--stage", "mql", "--stage", "sql", "--source", "website")

    emails = [row["email"] for row in read_export_file(path)]
    assert emails == ["mql@example.com", "sql@example.com"]


def test_export_to_standard_output_writes_only_the_csv_there():
    LeadFactory.create_batch(3)

    stdout, stderr = run("export_leads", "-")

    assert len(read_export(stdout)) == 3
    assert "Exported 3 leads to standard output" in stderr


def test_export_with_an_unknown_source_lists_the_known_slugs(tmp_path):
    SourceFactory.create(slug="website")
    with pytest.raises(CommandError, match="no source with slug 'nope'. Known slugs: website"):
        run("export_leads", str(tmp_path / "x.csv"), "--source", "nope")


def test_export_with_an_unknown_stage_lists_the_stages(tmp_path):
    with pytest.raises(CommandError, match="Unknown stage 'hot': use one of new, mql"):
        run("export_leads", str(tmp_path / "x.csv"), stage=["hot"])


def test_export_into_a_missing_folder_says_what_to_check(tmp_path):
    with pytest.raises(CommandError, match="Check that the folder exists"):
        run("export_leads", str(tmp_path / "missing" / "x.csv"))


# --- help ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("create_ingest_key", "--label"),
        ("create_api_token", "--days"),
        ("seed_demo", "--seed"),
        ("import_leads", "--dry-run"),
        ("export_leads", "--stage"),
    ],
)
def test_every_command_explains_itself_in_help(command, expected):
    from django.core.management import get_commands, load_command_class

    parser = load_command_class(get_commands()[command], command).create_parser("manage.py", command)
    help_text = parser.format_help()
    assert expected in help_text
    assert len(parser.description or "") > 80


# --- run_schedule -------------------------------------------------------------------


def test_run_schedule_once_runs_every_periodic_task_in_process(publish_ruleset, rep, settings):
    from handoff.services import handoff_claim
    from tests.factories import EventFactory, HandoffFactory, LeadFactory

    publish_ruleset([behaviour("page_view", 5)])
    flagged = LeadFactory.create(needs_rescore=True)
    EventFactory.create(lead=flagged, type="page_view")
    Lead.objects.filter(pk=flagged.pk).update(updated_at=timezone.now() - timedelta(minutes=5))  # sweeper's grace
    handoff = HandoffFactory.create()
    handoff_claim(handoff=handoff, user=rep)
    Handoff.objects.filter(pk=handoff.pk).update(claim_expires_at=timezone.now() - timedelta(minutes=1))
    settings.CELERY_TASK_ALWAYS_EAGER = False  # the command must not depend on eager mode
    out = io.StringIO()
    call_command("run_schedule", "--once", stdout=out)
    flagged.refresh_from_db()
    handoff.refresh_from_db()
    assert (flagged.needs_rescore, score_row(flagged).behaviour) == (False, Decimal("5.00"))
    assert (handoff.status, handoff.claimed_by) == (HandoffStatus.QUEUED, None)
    lines = out.getvalue().splitlines()
    assert [line.split()[1].rstrip(":") for line in lines] == list(settings.CELERY_BEAT_SCHEDULE)


def test_run_schedule_names_the_entries_when_given_an_unknown_one(db):
    with pytest.raises(CommandError, match="No schedule entry nightly: choose from .*sweep-dirty-leads"):
        call_command("run_schedule", "--once", "--only", "nightly")


OUR_APPS = {"leads", "scoring", "handoff", "leadflow"}


def test_manage_py_help_lists_each_project_command_once_from_its_own_app():
    listing = ManagementUtility(["manage.py", "help"]).main_help_text()
    names = Counter(line.strip() for line in listing.splitlines() if line.startswith("    "))
    assert {name: names[name] for name in ("run_schedule", "seed_demo", "rescore")} == {
        "run_schedule": 1,
        "seed_demo": 1,
        "rescore": 1,
    }
    # Django lists a command once even when two apps ship it (the first app wins): none of
    # our apps may hold a second, shadowed copy.
    providers: dict[str, list[str]] = {}
    for config in apps.get_app_configs():
        if config.label not in OUR_APPS:
            continue  # whitenoise's runserver shadows staticfiles' on purpose
        for name in find_commands(os.path.join(config.path, "management")):
            providers.setdefault(name, []).append(config.label)
    assert providers["run_schedule"] == providers["seed_demo"] == ["leadflow"]
    assert providers["rescore"] == ["scoring"]
    assert {name: labels for name, labels in providers.items() if len(labels) > 1} == {}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_run_schedule_replaces_a_connection_the_database_dropped(publish_ruleset):
    import psycopg2
    from django.db import connection

    publish_ruleset([behaviour("page_view", 5)])
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()
    db = connection.settings_dict
    other = psycopg2.connect(dbname=db["NAME"], user=db["USER"], host=db["HOST"] or "127.0.0.1", port=db["PORT"])
    other.autocommit = True
    other.cursor().execute("SELECT pg_terminate_backend(%s)", [pid])  # what a database restart does to it
    other.close()

    out, err = io.StringIO(), io.StringIO()
    call_command("run_schedule", "--once", "--only", "sweep-dirty-leads", stdout=out, stderr=err)

    assert err.getvalue() == ""
    assert "sweep-dirty-leads: 0" in out.getvalue()
