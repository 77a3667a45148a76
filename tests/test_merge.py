"""Anonymous visitors and merging leads: the merge service through its API and page,
ingest's automatic merge of a visitor, visitors in lists, privacy of the new rows."""

import threading
import time
import uuid

import pytest
from django.db import connection

from handoff.models import OPEN_STATUSES, Handoff, HandoffEvent, HandoffStatus
from leadflow.leads import merge, privacy, services
from leadflow.leads.models import AnonymousId, Event, Lead, LeadMerge, SegmentDrop, Stage, StageChange
from leadflow.leads.segment import segment_ingest
from tests.factories import EventFactory, HandoffFactory, LeadFactory, OutcomeFactory, SourceFactory
from tests.helpers import behaviour, browser, client_for, hold_row_lock, lead_score
from tests.test_privacy import models_referring_to_lead


def event(n, lead, event_type="page_view"):
    return {"event_id": f"m-{n}", "type": event_type, "lead": lead}


def ingest(ingest_client, *events):
    response = ingest_client.post("/api/v1/events", {"events": list(events)}, format="json")
    assert response.status_code == 202, response.content
    return response.json()


def test_merge_moves_events_history_handoffs_outcomes_and_identities_and_records_it(
    marketer, django_capture_on_commit_callbacks, publish_ruleset
):
    publish_ruleset([behaviour("page_view", 10)], mql=1000, sql=2000)
    source = SourceFactory.create()
    keep = LeadFactory.create(email="ada@example.com", source=source, company="")
    other = LeadFactory.create(email="ada.l@example.com", external_id="crm-7", company="Engines", source=source)
    EventFactory.create_batch(2, lead=keep)
    EventFactory.create_batch(3, lead=other)
    StageChange.objects.create(lead=other, from_stage=Stage.NEW, to_stage=Stage.MQL, reason="by hand")
    kept_handoff = HandoffFactory.create(lead=keep)
    other_handoff = HandoffFactory.create(lead=other)
    OutcomeFactory.create(lead=other)
    AnonymousId.objects.create(anonymous_id="cookie-1", lead=other)

    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(marketer).post(
            f"/api/v1/leads/{keep.public_id}/merge",
            {"lead": str(other.public_id), "reason": "same person"},
            format="json",
        )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["survivor"] == str(keep.public_id) and body["merged"] == str(other.public_id)
    assert body["counts"]["events"] == 3 and body["counts"]["handoffs"] == 1 and body["counts"]["handoffs_closed"] == 1

    assert not Lead.objects.filter(pk=other.pk).exists()
    keep.refresh_from_db()
    assert keep.events.count() == 5
    assert keep.stage_changes.filter(reason="by hand").exists()
    assert keep.outcomes.count() == 1
    assert (keep.email, keep.external_id, keep.company) == ("ada@example.com", "crm-7", "Engines")
    assert AnonymousId.objects.get(anonymous_id="cookie-1").lead_id == keep.pk
    # One open handoff per lead: the survivor's stays open, the other's is closed, both are the survivor's.
    assert set(Handoff.objects.filter(lead=keep).values_list("pk", flat=True)) == {kept_handoff.pk, other_handoff.pk}
    assert list(Handoff.objects.filter(lead=keep, status__in=OPEN_STATUSES).values_list("pk", flat=True)) == [
        kept_handoff.pk
    ]
    other_handoff.refresh_from_db()
    assert other_handoff.status == HandoffStatus.CLOSED and str(keep.public_id) in other_handoff.note
    assert HandoffEvent.objects.filter(handoff=other_handoff, action="closed").exists()

    record = LeadMerge.objects.get()
    assert (record.survivor_id, record.merged_public_id, record.actor, record.reason) == (
        keep.pk,
        other.public_id,
        marketer,
        "same person",
    )
    assert record.merged_identities["email"] == "ada.l@example.com"
    assert record.merged_identities["anonymous_ids"] == ["cookie-1"]
    # Rescored with every event it now holds.
    assert not keep.needs_rescore
    assert lead_score(keep) == 50


def test_merge_is_for_marketing_and_admins_and_answers_clearly(marketer, rep, outsider, admin):
    keep, other = LeadFactory.create(), LeadFactory.create()
    url = f"/api/v1/leads/{keep.public_id}/merge"
    body = {"lead": str(other.public_id)}
    assert client_for(rep).post(url, body, format="json").status_code == 403
    assert client_for(outsider).post(url, body, format="json").status_code == 403
    assert client_for(marketer).post(f"/api/v1/leads/{uuid.uuid4()}/merge", body, format="json").status_code == 404
    unknown = client_for(marketer).post(url, {"lead": str(uuid.uuid4())}, format="json")
    assert unknown.status_code == 400 and "No lead with this id" in unknown.json()["lead"][0]
    itself = client_for(marketer).post(url, {"lead": str(keep.public_id)}, format="json")
    assert itself.status_code == 400 and "itself" in itself.json()["lead"][0]
    malformed = client_for(marketer).post(url, {"lead": "not-a-uuid"}, format="json")
    assert malformed.status_code == 400 and "lead" in malformed.json()
    assert Lead.objects.count() == 2 and not LeadMerge.objects.exists()
    assert client_for(admin).post(url, body, format="json").status_code == 200
    assert list(Lead.objects.values_list("pk", flat=True)) == [keep.pk]


def test_every_model_referring_to_a_lead_is_moved_by_a_merge():
    moved = {model for model, _kind in merge.CORE_MOVED} | {LeadMerge, Lead}
    moved |= {model for holder in merge._holders for model in holder.holds}
    assert not (models_referring_to_lead() - moved)


def test_merge_button_confirms_naming_both_leads_then_merges(marketer, rep):
    keep = LeadFactory.create(name="Ada Lovelace", email="ada@example.com")
    other = LeadFactory.create(name="A. Lovelace", email="a.lovelace@example.com")
    page = browser(marketer).get(f"/leads/{keep.public_id}/")
    assert f'action="/leads/{keep.public_id}/merge"' in page.content.decode()
    assert (
        f'action="/leads/{keep.public_id}/merge"' not in browser(rep).get(f"/leads/{keep.public_id}/").content.decode()
    )

    confirm = browser(marketer).get(f"/leads/{keep.public_id}/merge", {"other": "A.Lovelace@example.com"})
    assert confirm.status_code == 200
    text = confirm.content.decode()
    assert "Merge A. Lovelace into Ada Lovelace?" in text
    assert Lead.objects.filter(pk=other.pk).exists(), "a GET only asks"

    missing = browser(marketer).get(f"/leads/{keep.public_id}/merge", {"other": "nobody@example.com"})
    assert missing.status_code == 400 and "No lead has this e-mail" in missing.content.decode()
    assert browser(rep).get(f"/leads/{keep.public_id}/merge", {"other": str(other.public_id)}).status_code == 403

    done = browser(marketer).post(
        f"/leads/{keep.public_id}/merge", {"other": str(other.public_id), "confirmed": "on", "reason": ""}
    )
    assert done.status_code == 302 and done["Location"] == f"/leads/{keep.public_id}/"
    assert not Lead.objects.filter(pk=other.pk).exists()
    assert "Merged" in browser(marketer).get(f"/leads/{keep.public_id}/").content.decode()


def test_native_ingest_links_a_visitor_to_a_known_person_by_merging_it(ingest_client):
    ingest(ingest_client, event(1, {"email": "bob@example.com"}))
    person = Lead.objects.get()
    ingest(ingest_client, event(2, {"anonymous_id": "cookie-b"}), event(3, {"anonymous_id": "cookie-b"}))
    visitor = Lead.objects.get(visitor=True)
    assert visitor.events.count() == 2

    result = ingest(ingest_client, event(4, {"email": "bob@example.com", "anonymous_id": "cookie-b"}))
    assert result["accepted"] == 1 and result["rejected"] == []
    assert list(Lead.objects.values_list("pk", flat=True)) == [person.pk]
    assert person.events.count() == 4
    merged = LeadMerge.objects.get()
    assert merged.actor is None and merged.merged_public_id == visitor.public_id


def test_a_batch_naming_a_new_visitor_then_its_person_stores_one_lead(ingest_client):
    ingest(ingest_client, event(1, {"email": "cy@example.com"}))
    ingest(
        ingest_client,
        event(2, {"anonymous_id": "cookie-c"}),
        event(3, {"email": "cy@example.com", "anonymous_id": "cookie-c"}),
        event(4, {"anonymous_id": "cookie-c"}),
    )
    person = Lead.objects.get()
    assert person.email == "cy@example.com" and person.events.count() == 4
    assert AnonymousId.objects.get().lead_id == person.pk


def test_identity_conflict_between_two_known_people_is_still_refused(ingest_client):
    ingest(ingest_client, event(1, {"email": "dee@example.com", "anonymous_id": "cookie-d"}))
    ingest(ingest_client, event(2, {"email": "eve@example.com", "external_id": "crm-e"}))
    refused = ingest(ingest_client, event(3, {"email": "dee@example.com", "external_id": "crm-e"}))
    assert refused["accepted"] == 0
    assert "merge the leads first" in refused["rejected"][0]["errors"]["lead"]["external_id"][0]
    # A known person's anonymous id stays theirs when another person uses the device.
    shared = ingest(ingest_client, event(4, {"email": "eve@example.com", "anonymous_id": "cookie-d"}))
    assert shared["accepted"] == 1
    assert AnonymousId.objects.get(anonymous_id="cookie-d").lead.email == "dee@example.com"
    assert Lead.objects.count() == 2 and not LeadMerge.objects.exists()


def test_a_visitor_is_scored_but_never_promoted(ingest_client, publish_ruleset, django_capture_on_commit_callbacks):
    publish_ruleset([behaviour("page_view", 10), behaviour("demo_request", 40)], mql=30, sql=60)
    with django_capture_on_commit_callbacks(execute=True):
        ingest(
            ingest_client,
            *(event(n, {"anonymous_id": "cookie-v"}) for n in range(3)),
            event(9, {"anonymous_id": "cookie-v"}, "demo_request"),
        )
    visitor = Lead.objects.get()
    assert visitor.visitor and lead_score(visitor) == 70
    assert visitor.stage == Stage.NEW and not Handoff.objects.exists()
    with django_capture_on_commit_callbacks(execute=True):
        ingest(ingest_client, event(10, {"email": "vi@example.com", "anonymous_id": "cookie-v"}))
    visitor.refresh_from_db()
    assert not visitor.visitor and visitor.stage == Stage.SQL


def test_lists_hide_visitors_unless_asked(ingest_client, marketer):
    ingest(ingest_client, event(1, {"email": "known@example.com"}), event(2, {"anonymous_id": "cookie-x"}))
    api = client_for(marketer)
    emails = [row["email"] for row in api.get("/api/v1/leads").json()["results"]]
    assert emails == ["known@example.com"]
    both = api.get("/api/v1/leads", {"visitors": "include"}).json()["results"]
    assert sorted(row["visitor"] for row in both) == [False, True]
    only = api.get("/api/v1/leads", {"visitors": "only"}).json()["results"]
    assert [row["visitor"] for row in only] == [True]
    assert api.get("/api/v1/leads", {"visitors": "some"}).status_code == 400

    page = browser(marketer).get("/leads/").content.decode()
    assert "known@example.com" in page and "(anonymous)" not in page
    assert "(anonymous)" in browser(marketer).get("/leads/", {"visitors": "only"}).content.decode()


def test_erasure_removes_anonymous_ids_dropped_messages_and_scrubs_merge_records(ingest_client, source, admin):
    ingest(ingest_client, event(1, {"email": "fay@example.com", "anonymous_id": "cookie-f"}))
    ingest(ingest_client, event(2, {"anonymous_id": "cookie-g"}))
    ingest(ingest_client, event(3, {"email": "fay@example.com", "anonymous_id": "cookie-g"}))
    segment_ingest(source=source, messages=[{"type": "track", "anonymousId": "cookie-f", "messageId": "bad"}])
    other_drop = segment_ingest(source=source, messages=[{"type": "track", "anonymousId": "zz", "messageId": "x"}])
    assert other_drop.dropped and SegmentDrop.objects.count() == 2
    person = Lead.objects.get(email="fay@example.com")
    exported = privacy.person_export(lead=person)
    assert exported["lead"]["identities"]["anonymous_ids"] == ["cookie-f", "cookie-g"]
    assert len(exported["merges"]) == 1 and len(exported["segment_drops"]) == 1

    erasure = privacy.person_erase(lead=person, actor=admin)
    assert erasure.counts["anonymous_ids"] == 2 and erasure.counts["segment_drops"] == 1
    assert not AnonymousId.objects.exists()
    assert list(SegmentDrop.objects.values_list("message_id", flat=True)) == ["x"]
    record = LeadMerge.objects.get()
    assert record.merged_identities == {} and record.reason == privacy.ERASED


@pytest.mark.django_db(transaction=True)
def test_concurrent_batches_of_one_new_anonymous_id_make_one_visitor(source):
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def send(n: int) -> None:
        try:
            barrier.wait(timeout=10)
            services.events_ingest(source=source, payloads=[event(100 + n, {"anonymous_id": "cookie-race"})])
        except BaseException as error:  # noqa: BLE001 -- reported by the assertion below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert Lead.objects.count() == 1 and Event.objects.count() == 4
    assert AnonymousId.objects.get().lead_id == Lead.objects.get().pk


def test_dashboard_counts_visitors_apart_and_follow_identify_and_merge(ingest_client, marketer, source):
    from leadflow.selectors import Period, dashboard_funnel, dashboard_funnel_recount
    from tests.test_rollups import everything_current, everything_recounted

    ingest(ingest_client, event(1, {"anonymous_id": "cookie-1"}), event(2, {"anonymous_id": "cookie-2"}))
    ingest(ingest_client, event(3, {"email": "gil@example.com"}))
    period = Period.last_days(1)
    funnel = dashboard_funnel(period=period)
    assert (funnel.created, funnel.visitors) == (1, 2)
    assert funnel == dashboard_funnel_recount(period=period)

    ingest(ingest_client, event(4, {"email": "hal@example.com", "anonymous_id": "cookie-1"}))  # identified
    ingest(ingest_client, event(5, {"email": "gil@example.com", "anonymous_id": "cookie-2"}))  # merged
    keep = Lead.objects.get(email="gil@example.com")
    HandoffFactory.create(lead=keep)
    other, _ = services.lead_upsert(source=source, data=services.LeadInput("ivy@example.com", None))
    HandoffFactory.create(lead=other)
    merge.lead_merge(survivor=keep, merged=other, actor=marketer)
    funnel = dashboard_funnel(period=period)
    assert (funnel.created, funnel.visitors) == (2, 0)
    assert funnel == dashboard_funnel_recount(period=period)
    assert everything_current() == everything_recounted()
    assert "Visitors" in browser(marketer).get("/").content.decode()


@pytest.mark.django_db(transaction=True)
def test_a_batch_whose_visitor_is_merged_meanwhile_goes_to_the_person(source):
    services.events_ingest(source=source, payloads=[event(1, {"email": "pat@example.com"})])
    services.events_ingest(source=source, payloads=[event(2, {"anonymous_id": "cookie-p"})])
    person, visitor = Lead.objects.get(visitor=False), Lead.objects.get(visitor=True)
    other = hold_row_lock(visitor.pk)  # a concurrent merge of the visitor, holding it
    errors: list[BaseException] = []

    def send() -> None:
        try:
            services.events_ingest(source=source, payloads=[event(3, {"anonymous_id": "cookie-p"})])
        except BaseException as error:  # noqa: BLE001 -- reported by the assertion below
            errors.append(error)
        finally:
            connection.close()

    thread = threading.Thread(target=send)
    thread.start()
    with connection.cursor() as cursor:  # the batch identified the visitor and waits on it to store its event
        for _ in range(200):
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
            if cursor.fetchone()[0]:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the batch never waited on the visitor")
    with other.cursor() as cursor:  # the merge moves the visitor's rows to the person and deletes it
        for model in (Event, AnonymousId):
            table = model._meta.db_table
            cursor.execute(f"UPDATE {table} SET lead_id = %s WHERE lead_id = %s", [person.pk, visitor.pk])  # noqa: S608
        cursor.execute(f"DELETE FROM {Lead._meta.db_table} WHERE id = %s", [visitor.pk])  # noqa: S608
    other.commit()
    other.close()
    thread.join(timeout=30)
    assert errors == []
    assert list(Lead.objects.values_list("pk", flat=True)) == [person.pk]
    assert sorted(Event.objects.filter(lead=person).values_list("event_id", flat=True)) == ["m-1", "m-2", "m-3"]
