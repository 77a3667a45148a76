from django.contrib.auth.decorators import login_required
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from leadflow.leads.models import Event, Lead, Source


@login_required
def home(request: HttpRequest) -> HttpResponse:
    stages = dict(Lead.objects.values_list("stage").annotate(n=Count("id")).values_list("stage", "n"))
    context = {
        "lead_count": sum(stages.values()),
        "stages": stages,
        "event_count": Event.objects.count(),
        "sources": Source.objects.annotate(n=Count("leads")).order_by("name"),
    }
    return render(request, "leads/home.html", context)
