"""The queue's and the claims' answers are built by hand (``handoff.api.handoff_row``);
``HandoffSerializer`` documents them, and these hold the two to the same output."""

import json
from datetime import timedelta

import pytest
from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone

from handoff import services
from handoff.api import HandoffSerializer, handoff_row
from handoff.models import Handoff
from tests.factories import HandoffFactory, SqlLeadFactory
from tests.helpers import client_for


def serialized(handoff: Handoff) -> dict:
    return json.loads(json.dumps(HandoffSerializer(handoff).data, cls=DjangoJSONEncoder))


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin"])
def test_queue_rows_are_what_the_handoff_serializer_shows(sales_manager, rep, settings, zone):
    settings.TIME_ZONE = zone
    HandoffFactory.create(priority="71.5")
    HandoffFactory.create(model=None, qualified_by=[], lead=SqlLeadFactory.create(email=None, external_id="crm-1"))
    overdue = HandoffFactory.create(created_at=timezone.now() - timedelta(days=3))
    Handoff.objects.filter(pk=overdue.pk).update(due_at=timezone.now() - timedelta(hours=1), overdue_at=timezone.now())
    claimed = services.handoff_claim(handoff=HandoffFactory.create(), user=rep)
    rejected = services.handoff_claim(handoff=HandoffFactory.create(), user=rep)
    services.handoff_reject(handoff=rejected, user=rep, reason="no_budget", note="Next year <maybe>")
    rows = client_for(sales_manager).get("/api/v1/handoffs").json()["results"]
    assert len(rows) == 5 and {row["status"] for row in rows} == {"queued", "claimed", "rejected"}
    handoffs = {str(h.public_id): h for h in Handoff.objects.select_related("lead", "model", "claimed_by")}
    assert rows == [serialized(handoffs[row["id"]]) for row in rows]
    assert handoff_row(handoffs[str(claimed.public_id)]) == serialized(handoffs[str(claimed.public_id)])


def test_a_claims_answer_is_what_the_handoff_serializer_shows(rep):
    handoff = HandoffFactory.create()
    answer = client_for(rep).post("/api/v1/handoffs/claim-next").json()
    assert answer == serialized(Handoff.objects.get(pk=handoff.pk))
    assert answer["status"] == "claimed" and answer["claimed_by"] == rep.username
