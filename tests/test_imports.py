"""Imports from the tools teams leave (issue 15, item 4): the presets on sample exports of
HubSpot, Salesforce / Account Engagement and Mautic (headers as those tools write them,
rows written for the test), the mapping step and its preview, the background import with
its progress, resumption and rejected-rows report, stage mapping with its StageChange, and
``import_leads --preset/--map``."""

import csv
import io
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from handoff.models import Handoff
from leadflow.leads import imports
from leadflow.leads.importmap import company_size_parse, csv_delimiter, preset_detect, stage_parse
from leadflow.leads.models import ImportJob, ImportRejection, ImportStatus, Lead, Stage, StageChange
from tests.factories import LeadFactory, lead_score_of, ruleset_through_services
from tests.helpers import browser, fit

pytestmark = pytest.mark.django_db

# A HubSpot contacts export: its default columns, "Number of Employees" as HubSpot's ranges,
# "Lifecycle Stage" as its labels.
HUBSPOT_EXPORT = (
    '"Record ID","First Name","Last Name","Email","Phone Number","Company Name","Job Title",'
    '"Number of Employees","Country/Region","Lifecycle Stage","Create Date"\n'
    '"1001","Ada","Lovelace","Ada@Analytical.example","+44 20 7946 0000","Analytical Engines",'
    '"VP Engineering","100-500","United Kingdom","Marketing Qualified Lead","2026-01-10 09:00"\n'
    '"1002","Grace","Hopper","grace@cobol.example","","Cobol Inc","CTO","1000+","United States",'
    '"Customer","2026-02-11 10:00"\n'
    '"1003","Alan","Turing","not-an-email","","Bletchley","Researcher","25-50","United Kingdom",'
    '"Subscriber","2026-03-12 11:00"\n'
    '"1004","Katherine","Johnson","katherine@nasa.example","","NASA","Mathematician","lots",'
    '"United States","Lead","2026-03-13 11:00"\n'
)

# A Salesforce leads report export (its column labels) and an Account Engagement (Pardot)
# prospects export.
SALESFORCE_EXPORT = (
    "Lead ID,First Name,Last Name,Title,Company / Account,Email,Lead Status,Lead Source,Employees,Country,Industry\n"
    "00Q5g00000AbCdE,Linus,Torvalds,Chief Architect,Kernel Org,linus@kernel.example,Working - Contacted,Web,"
    '"1,200",Finland,Software\n'
    "00Q5g00000AbCdF,Margaret,Hamilton,Director,Apollo Ltd,margaret@apollo.example,Open - Not Contacted,Event,"
    "51-200,United States,Aerospace\n"
)
PARDOT_HEADER = "Prospect Id,First Name,Last Name,Email,Company,Job Title,Employees,Country,Score,Grade"

# A Mautic contacts export: field aliases as column names; "title" is the salutation.
MAUTIC_HEADER = "id;title;firstname;lastname;email;company;position;phone;city;country;points;stage;last_active"
MAUTIC_ROWS = (
    "17;Ms;Zoë;Müller;zoe@fabrik.example;Fabrik GmbH;Head of Marketing;;Köln;Germany;42;MQL;2026-11-02 10:00\n"
    "18;Mr;Jean;Dupont;jean@usine.example;Usine SA;Acheteur;;Lyon;France;5;;2026-10-01 08:00\n"
    "19;Mr;Bad;Row;;Nowhere;Nobody;;;;0;;\n"
)


def run(*args, **options):
    stdout, stderr = io.StringIO(), io.StringIO()
    call_command(*args, stdout=stdout, stderr=stderr, **options)
    return stdout.getvalue(), stderr.getvalue()


def write(tmp_path, text, name="export.csv", encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return str(path)


# --- Presets on each tool's export ---------------------------------------------------------------


def test_a_hubspot_export_lands_in_fields_so_fit_rules_match_and_its_stages_in_our_stages(
    tmp_path, django_capture_on_commit_callbacks
):
    ruleset_through_services(
        [fit("company_size", "gte", 50, 20), fit("job_title", "contains", "VP", 5)], mql=100, sql=200
    )

    with django_capture_on_commit_callbacks(execute=True):
        stdout, _ = run("import_leads", write(tmp_path, HUBSPOT_EXPORT), "--source", "HubSpot")

    assert "Reading the file as: HubSpot contacts export." in stdout
    assert "2 created, 0 updated, 2 rejected, 2 moved to their imported stage" in stdout
    ada = Lead.objects.get(email="ada@analytical.example")
    assert (ada.name, ada.company, ada.job_title, ada.company_size, ada.country) == (
        "Ada Lovelace",
        "Analytical Engines",
        "VP Engineering",
        100,  # "100-500": the lower bound
        "United Kingdom",
    )
    assert ada.traits == {
        "hubspot_id": "1001",
        "Phone Number": "+44 20 7946 0000",
        "Create Date": "2026-01-10 09:00",
    }
    assert ada.stage == Stage.MQL
    change = StageChange.objects.get(lead=ada)
    assert (change.from_stage, change.to_stage) == (Stage.NEW, Stage.MQL)
    assert "Imported from HubSpot" in change.reason and "'Marketing Qualified Lead'" in change.reason
    assert lead_score_of(ada) == 25  # both fit rules match fields, not traits
    grace = Lead.objects.get(email="grace@cobol.example")
    assert (grace.company_size, grace.stage) == (1000, Stage.ACCEPTED)
    assert "Line 4:" in stdout and "Line 5:" in stdout and "whole number of employees" in stdout


def test_a_salesforce_leads_export_maps_titles_statuses_and_sizes_and_an_sql_opens_a_handoff(tmp_path):
    stdout, _ = run("import_leads", write(tmp_path, SALESFORCE_EXPORT), "--source", "Salesforce")

    assert "Salesforce / Account Engagement" in stdout
    linus = Lead.objects.get(email="linus@kernel.example")
    assert (linus.name, linus.job_title, linus.company, linus.company_size, linus.industry) == (
        "Linus Torvalds",
        "Chief Architect",
        "Kernel Org",
        1200,
        "Software",
    )
    assert linus.traits == {"salesforce_id": "00Q5g00000AbCdE", "lead_source": "Web"}
    assert linus.stage == Stage.SQL  # "Working - Contacted"
    assert Handoff.objects.filter(lead=linus).count() == 1
    margaret = Lead.objects.get(email="margaret@apollo.example")
    assert (margaret.company_size, margaret.stage) == (51, Stage.NEW)
    assert not StageChange.objects.filter(lead=margaret).exists()


@pytest.mark.parametrize(
    ("header", "preset"),
    [
        (HUBSPOT_EXPORT.splitlines()[0].replace('"', ""), "hubspot"),
        (SALESFORCE_EXPORT.splitlines()[0], "salesforce"),
        (PARDOT_HEADER, "salesforce"),
        ("Id,FirstName,LastName,Email,Title,Company,NumberOfEmployees,Status", "salesforce"),
        (MAUTIC_HEADER.replace(";", ","), "mautic"),
        ("email,name,company,company_size,plan", "leadflow"),
        # Columns HubSpot and Salesforce share: the first preset, which reads them as the other would.
        ("Email,First Name,Last Name", "hubspot"),
    ],
)
def test_the_preset_is_detected_from_the_header(header, preset):
    assert preset_detect(next(csv.reader([header]))) == preset


@pytest.mark.parametrize(
    ("text", "employees"),
    [
        ("250", 250),
        ("51-200", 51),
        ("5-25", 5),
        ("1000+", 1000),
        ("10,001+", 10001),
        ("1.000", 1000),
        ("500 to 1000", 500),
        ("10000 or more", 10000),
        ("1 001 – 5 000", 1001),
        ("lots", None),
        ("200-51", None),
        ("", None),
    ],
)
def test_company_sizes_are_read_as_numbers_ranges_as_their_lower_bound(text, employees):
    assert company_size_parse(text) == employees


@pytest.mark.parametrize(
    ("value", "stage"),
    [
        ("Marketing Qualified Lead", Stage.MQL),
        ("marketingqualifiedlead", Stage.MQL),
        ("Sales Qualified Lead", Stage.SQL),
        ("Opportunity", Stage.ACCEPTED),
        ("Closed - Not Converted", Stage.DISQUALIFIED),
        ("Subscriber", Stage.NEW),
        ("Other", None),
    ],
)
def test_lifecycle_stages_of_the_tools_read_as_ours(value, stage):
    assert stage_parse(value) == stage


def test_an_imported_stage_never_moves_a_lead_backwards(tmp_path):
    sql = LeadFactory.create(email="sql@example.com", stage=Stage.SQL)
    accepted = LeadFactory.create(email="won@example.com", stage=Stage.ACCEPTED)
    text = "Email,Lifecycle Stage,Company Name\nsql@example.com,Marketing Qualified Lead,A\nwon@example.com,Lead,B\n"

    stdout, _ = run("import_leads", write(tmp_path, text), "--preset", "hubspot")

    assert "0 created, 2 updated, 0 rejected, 0 moved" in stdout
    sql.refresh_from_db(), accepted.refresh_from_db()
    assert (sql.stage, accepted.stage, sql.company) == (Stage.SQL, Stage.ACCEPTED, "A")
    assert not StageChange.objects.exists()


def test_map_overrides_a_presets_column_and_names_an_unknown_column(tmp_path):
    path = write(tmp_path, HUBSPOT_EXPORT)

    run("import_leads", path, "--map", "Job Title=trait:role", "--map", "phone number=ignore")

    ada = Lead.objects.get(email="ada@analytical.example")
    assert ada.job_title == ""
    assert ada.traits["role"] == "VP Engineering" and "Phone Number" not in ada.traits
    with pytest.raises(CommandError, match="no column 'Fax'"):
        run("import_leads", path, "--map", "Fax=company")
    with pytest.raises(CommandError, match="'salary' is not a target"):
        run("import_leads", path, "--map", "Job Title=salary")
    with pytest.raises(CommandError, match="both set the field 'email'"):
        run("import_leads", path, "--map", "Company Name=email")


def test_the_delimiter_is_sniffed_even_with_commas_inside_cells():
    assert csv_delimiter('email;company\na@example.com;"Acme, Inc"\n') == ";"
    assert csv_delimiter("email\tcompany\na@example.com\tAcme, Inc\n") == "\t"
    assert csv_delimiter("email,company\na@example.com,Acme\n") == ","
    assert csv_delimiter("email\n") == ","


# --- The pages --------------------------------------------------------------------------------------


def upload(client, text, *, encoding="utf-8", name="contacts.csv", source="Mautic"):
    file = SimpleUploadedFile(name, text.encode(encoding), content_type="text/csv")
    return client.post(reverse("import-new"), {"file": file, "source": source})


def test_importing_a_mautic_export_on_the_pages_maps_previews_imports_and_reports_rejected_rows(
    marketer, django_capture_on_commit_callbacks
):
    client = browser(marketer)
    empty = client.get(reverse("import-list"))
    assert b"No imports yet" in empty.content

    # Excel on Windows: Windows-1252, semicolons.
    response = upload(client, MAUTIC_HEADER + "\n" + MAUTIC_ROWS, encoding="cp1252")

    job = ImportJob.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("import-map", args=[job.public_id])
    assert (job.preset, job.encoding, job.delimiter, job.total_rows) == ("mautic", "cp1252", ";", 3)
    assert (job.status, job.source.name) == (ImportStatus.DRAFT, "Mautic")
    page = client.get(response["Location"]).content.decode()
    assert "Mautic contacts export" in page
    assert '<option value="job_title" selected>' in page  # "position", pre-filled by the preset
    assert "Zoë Müller" in page and "Fabrik GmbH" in page  # the preview, decoded and joined
    assert "mautic_points=42" in page and "salutation=Ms" in page
    assert "Rejected" in page  # the row without an e-mail, as the import will reject it

    fields = {f"column_{index}": target for index, target in enumerate(job.mapping)}
    fields["column_8"] = "ignore"  # city
    preview = client.post(response["Location"], {**fields, "action": "preview"})
    assert preview.status_code == 200 and "city=" not in preview.content.decode()
    job.refresh_from_db()
    assert job.mapping[8] == "ignore" and not Lead.objects.exists()

    twice = client.post(response["Location"], {**fields, "column_5": "email", "action": "start"})
    assert twice.status_code == 400
    assert "both set the field &#x27;email&#x27;" in twice.content.decode()
    job.refresh_from_db()
    assert job.status == ImportStatus.DRAFT

    with django_capture_on_commit_callbacks(execute=True):
        started = client.post(response["Location"], {**fields, "action": "start"})
    assert started["Location"] == reverse("import-detail", args=[job.public_id])

    job.refresh_from_db()
    assert (job.status, job.position, job.created, job.updated, job.rejected, job.stages_changed) == (
        ImportStatus.DONE,
        3,
        2,
        0,
        1,
        1,
    )
    assert job.content == ""  # the file's text is not kept once imported
    zoe = Lead.objects.get(email="zoe@fabrik.example")
    assert (zoe.name, zoe.job_title, zoe.country, zoe.stage) == ("Zoë Müller", "Head of Marketing", "Germany", "mql")
    assert StageChange.objects.get(lead=zoe).actor == marketer
    detail = client.get(started["Location"]).content.decode()
    assert "Import finished" in detail and "Line" in detail
    progress = client.get(reverse("import-progress", args=[job.public_id])).json()
    assert progress == {"state": "done", "percent": 100, "done": 3, "total": 3}

    report = client.get(reverse("import-rejected-csv", args=[job.public_id]))
    rows = list(csv.reader(io.StringIO(b"".join(report.streaming_content).decode())))
    assert report["Content-Type"].startswith("text/csv")
    assert rows[0] == ["line", *MAUTIC_HEADER.split(";"), "errors"]
    assert rows[1][:6] == ["4", "19", "Mr", "Bad", "Row", ""]
    assert "email" in rows[1][-1] or "identified" in rows[1][-1]
    listed = client.get(reverse("import-list")).content.decode()
    assert "contacts.csv" in listed and "Done" in listed


def test_an_import_that_started_cannot_be_remapped_or_started_twice(marketer, django_capture_on_commit_callbacks):
    client = browser(marketer)
    upload(client, "email,name\na@example.com,A\n", source="List")
    job = ImportJob.objects.get()
    with django_capture_on_commit_callbacks(execute=True):
        assert imports.import_job_start(job=job)
    assert not imports.import_job_start(job=job)
    assert client.get(reverse("import-map", args=[job.public_id]))["Location"] == reverse(
        "import-detail", args=[job.public_id]
    )
    assert Lead.objects.get(email="a@example.com").name == "A"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "The submitted file is empty"),
        (b"\n\n", "The file is empty"),
        (b"x" * 2048, "the limit is"),
        (b"PK\x03\x04\x00\x00 an .xlsx workbook", "not a CSV text file"),
    ],
)
def test_a_bad_upload_is_refused_with_what_to_do(marketer, settings, content, message):
    settings.IMPORT_MAX_BYTES = 1024
    client = browser(marketer)
    file = SimpleUploadedFile("bad.csv", content, content_type="text/csv")

    response = client.post(reverse("import-new"), {"file": file, "source": "X"})

    assert response.status_code == 400
    assert message in response.content.decode()
    assert not ImportJob.objects.exists()


def test_a_mapping_without_an_identity_column_says_which_to_map(marketer):
    client = browser(marketer)
    upload(client, "E-Mail-Adresse,Firma\na@example.com,Acme\n", source="X")
    job = ImportJob.objects.get()

    page = client.get(reverse("import-map", args=[job.public_id])).content.decode()

    assert "neither an &#x27;email&#x27; nor an &#x27;external_id&#x27; column" in page
    assert "Fix the mapping above to see the preview" in page


def test_only_marketing_and_scoring_admins_import(rep, outsider, admin):
    for user, status in ((rep, 403), (outsider, 403), (admin, 200)):
        assert browser(user).get(reverse("import-list")).status_code == status
    assert browser().get(reverse("import-new")).status_code == 302  # to the login page


def test_the_imports_list_costs_the_same_queries_for_more_jobs(marketer, django_assert_max_num_queries):
    client = browser(marketer)
    for index in range(3):
        upload(client, f"email\nlead{index}@example.com\n", name=f"list-{index}.csv", source=f"S{index}")
    client.get(reverse("import-list"))
    with django_assert_max_num_queries(8):
        response = client.get(reverse("import-list"))
    assert response.content.decode().count("list-") == 3


# --- The background import: resumable, idempotent, swept -----------------------------------------


def queued_job(marketer, rows: int) -> ImportJob:
    text = "email,name\n" + "".join(f"lead{index}@example.com,Lead {index}\n" for index in range(1, rows + 1))
    job = imports.import_job_create(user=marketer, filename="big.csv", data=text.encode(), source_name="Big")
    ImportJob.objects.filter(pk=job.pk).update(status=ImportStatus.QUEUED)
    return job


def test_a_job_whose_worker_died_is_resumed_by_the_sweep_after_its_last_committed_chunk(
    marketer, django_capture_on_commit_callbacks
):
    job = queued_job(marketer, 5)
    # A worker took the job, committed rows 1-2, and died: its heartbeat stopped.
    ImportJob.objects.filter(pk=job.pk).update(
        status=ImportStatus.RUNNING, attempts=1, position=2, heartbeat_at=timezone.now() - timedelta(hours=1)
    )
    alive = queued_job(marketer, 1)
    ImportJob.objects.filter(pk=alive.pk).update(status=ImportStatus.RUNNING, attempts=1, heartbeat_at=timezone.now())

    with django_capture_on_commit_callbacks(execute=True):
        resumed = imports.import_jobs_resume()

    assert job.pk in resumed and alive.pk not in resumed
    job.refresh_from_db()
    assert (job.status, job.attempts, job.position, job.created) == (ImportStatus.DONE, 2, 5, 3)
    # Rows already committed are not imported again; the rest are, once.
    assert set(Lead.objects.values_list("email", flat=True)) == {
        "lead3@example.com",
        "lead4@example.com",
        "lead5@example.com",
    }
    assert Lead.objects.count() == 3


def test_a_job_imports_in_chunks_and_running_it_again_changes_nothing(marketer):
    job = queued_job(marketer, 7)

    assert imports.import_job_execute(job_id=job.pk, chunk_size=3) == ImportStatus.DONE
    assert imports.import_job_execute(job_id=job.pk, chunk_size=3) == ImportStatus.DONE

    job.refresh_from_db()
    assert (job.position, job.created, job.updated, job.attempts) == (7, 7, 0, 1)
    assert Lead.objects.count() == 7


def test_a_queued_job_left_by_a_broker_outage_is_picked_up_by_the_sweep(marketer, settings):
    settings.SWEEP_GRACE_SECONDS = 0
    job = queued_job(marketer, 2)

    assert imports.import_jobs_resume() == [job.pk]

    job.refresh_from_db()
    assert job.status == ImportStatus.DONE and Lead.objects.count() == 2
    assert not ImportRejection.objects.exists()


def test_the_command_sniffs_a_semicolon_export(tmp_path):
    path = write(tmp_path, MAUTIC_HEADER + "\n" + MAUTIC_ROWS)

    stdout, _ = run("import_leads", path, "--source", "Mautic")

    assert "Mautic contacts export" in stdout and "2 created, 0 updated, 1 rejected" in stdout
    assert Lead.objects.get(email="jean@usine.example").name == "Jean Dupont"


def test_choosing_another_preset_resets_the_mapping_to_that_tools(marketer):
    client = browser(marketer)
    upload(client, "email,name,Title\na@example.com,Ada,CTO\n", source="X")
    job = ImportJob.objects.get()
    assert (job.preset, job.mapping) == ("leadflow", ["email", "name", "trait"])  # a tie: our own reading

    response = client.post(reverse("import-map", args=[job.public_id]), {"action": "preset", "preset": "salesforce"})

    assert response.status_code == 302
    job.refresh_from_db()
    assert (job.preset, job.mapping) == ("salesforce", ["email", "trait", "job_title"])
    client.post(reverse("import-map", args=[job.public_id]), {"action": "preset", "preset": "excel"})
    job.refresh_from_db()
    assert job.preset == "salesforce"


def test_a_persons_export_lists_and_erasure_removes_the_rejected_import_rows_with_their_email(marketer, admin):
    from leadflow.leads.privacy import person_erase, person_export

    ada = LeadFactory.create(email="ada@example.com")
    data = b"email,company_size\n Ada@Example.com ,lots\n"
    job = imports.import_job_create(user=marketer, filename="list.csv", data=data, source_name="List")
    imports.import_job_start(job=job)
    imports.import_job_execute(job_id=job.pk)
    assert ImportRejection.objects.get().email == "ada@example.com"

    exported = person_export(lead=ada)
    assert [row["cells"] for row in exported["import_rejections"]] == [[" Ada@Example.com ", "lots"]]

    erasure = person_erase(lead=ada, actor=admin)

    assert not ImportRejection.objects.exists()
    assert erasure.counts["import_rejections"] == 1


def test_an_upload_larger_than_the_apis_body_limit_is_taken_by_the_page(marketer, settings):
    rows = settings.DATA_UPLOAD_MAX_MEMORY_SIZE // 40 + 1000
    text = "email,utm_campaign,note\n" + "".join(f"lead{i}@example.com,spring,{'x' * 12}\n" for i in range(rows))
    assert len(text) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE

    response = upload(browser(marketer), text, source="Big list")

    assert response.status_code == 302
    job = ImportJob.objects.get()
    assert job.total_rows == rows
    page = browser(marketer).get(response["Location"]).content.decode()
    assert "utm_campaign=spring, note=xxxxxxxxxxxx" in page


@pytest.mark.postgres  # SQLite splits a bulk insert by its limit on parameters
def test_a_chunk_is_written_set_based_its_queries_do_not_grow_with_its_rows(marketer):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def queries_for(rows: int) -> int:
        text = "Email,First Name,Last Name,Lifecycle Stage,Number of Employees\n" + "".join(
            f"r{rows}-{i}@example.com,A,B,Marketing Qualified Lead,51-200\n" for i in range(rows)
        )
        job = imports.import_job_create(user=marketer, filename="q.csv", data=text.encode(), source_name="Q")
        ImportJob.objects.filter(pk=job.pk).update(status=ImportStatus.QUEUED)
        with CaptureQueriesContext(connection) as captured:
            imports.import_job_execute(job_id=job.pk, chunk_size=rows)
        assert ImportJob.objects.get(pk=job.pk).stages_changed == rows
        return len(captured)

    queries_for(5)  # caches a first import fills (the source, the free-mail domains…)
    assert queries_for(200) == queries_for(10)


def test_a_utf16_export_with_tabs_is_read(marketer):
    text = "Email\tFirst Name\tLast Name\nzoe@fabrik.example\tZoë\tMüller\n"

    upload(browser(marketer), text, encoding="utf-16")

    job = ImportJob.objects.get()
    assert (job.encoding, job.delimiter, job.header, job.preset) == (
        "utf-16",
        "\t",
        ["Email", "First Name", "Last Name"],
        "hubspot",
    )


def test_the_sweep_deletes_drafts_nobody_started_and_keeps_the_rest(marketer, settings):
    from leadflow.leads.tasks import resume_import_jobs

    old_draft = queued_job(marketer, 1)
    ImportJob.objects.filter(pk=old_draft.pk).update(
        status=ImportStatus.DRAFT, created_at=timezone.now() - timedelta(days=settings.IMPORT_DRAFT_DAYS, hours=1)
    )
    new_draft = queued_job(marketer, 1)
    ImportJob.objects.filter(pk=new_draft.pk).update(status=ImportStatus.DRAFT)

    resume_import_jobs()

    assert list(ImportJob.objects.values_list("pk", flat=True)) == [new_draft.pk]
