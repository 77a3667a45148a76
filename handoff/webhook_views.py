"""Pages of webhook subscriptions (scoring admins and staff): the endpoints with the form that
registers one, an endpoint's settings (edit, disable, enable, a new secret), and its
delivery log with a Replay button. Reads go through selectors, every change through
``handoff.webhooks``; a refused change becomes a message, never an error page.

A new secret is shown once: kept in the session by the POST that made it, and taken out
by the page that shows it."""

from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from handoff import selectors, webhooks
from handoff.forms import WebhookSubscriptionForm
from handoff.models import WebhookSubscription
from leadflow.leads.decorators import role_required
from leadflow.leads.roles import SCORING_ADMIN

WEBHOOK_MANAGERS_ONLY = "Webhook subscriptions are managed by scoring admins and staff: ask one of them."
DELIVERIES_PER_PAGE = 25


def _secret_key(subscription: WebhookSubscription) -> str:
    return f"webhook-secret:{subscription.public_id}"


def _show_secret_once(request: HttpRequest, subscription: WebhookSubscription, secret: str) -> None:
    request.session[_secret_key(subscription)] = secret


def _values(form: WebhookSubscriptionForm) -> dict[str, Any]:
    return {
        "name": form.cleaned_data["name"],
        "url": form.cleaned_data["url"],
        "events": form.cleaned_data["events"],
        "min_score_change": form.cleaned_data.get("min_score_change"),
    }


def _subscription(subscription_id: Any) -> WebhookSubscription:
    return get_object_or_404(WebhookSubscription.objects.select_related("owner"), public_id=subscription_id)


@require_http_methods(["GET", "POST"])
@role_required(SCORING_ADMIN, message=WEBHOOK_MANAGERS_ONLY)
def webhook_list(request: HttpRequest) -> HttpResponse:
    """The endpoints; POST registers one and shows its secret, once."""
    form = WebhookSubscriptionForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            subscription = webhooks.webhook_subscription_create(actor=request.user, **_values(form))
        except ValidationError as error:
            form.add_error(None, error)
        else:
            _show_secret_once(request, subscription, subscription.secret)
            messages.success(request, f"Registered “{subscription.name}”: copy its signing secret now.")
            return redirect("webhook-detail", subscription.public_id)
    context = {
        "subscriptions": list(selectors.webhook_subscriptions()),
        "form": form,
        "event_count": len(webhooks.WEBHOOK_EVENTS),
    }
    return render(request, "webhooks/list.html", context, status=400 if form.is_bound else 200)


@require_http_methods(["GET", "POST"])
@role_required(SCORING_ADMIN, message=WEBHOOK_MANAGERS_ONLY)
def webhook_detail(request: HttpRequest, subscription_id: Any) -> HttpResponse:
    """An endpoint's settings; POST saves them."""
    subscription = _subscription(subscription_id)
    initial = {
        "name": subscription.name,
        "url": subscription.url,
        "events": subscription.events,
        "min_score_change": subscription.min_score_change,
    }
    if request.method == "POST":
        form = WebhookSubscriptionForm(request.POST, initial=initial, subscription=subscription)
        if form.is_valid():
            try:
                webhooks.webhook_subscription_update(actor=request.user, subscription=subscription, **_values(form))
            except ValidationError as error:
                form.add_error(None, error)
            else:
                messages.success(request, f"Saved “{subscription.name}”.")
                return redirect("webhook-detail", subscription.public_id)
    else:
        form = WebhookSubscriptionForm(initial=initial, subscription=subscription)
    context = {
        "subscription": subscription,
        "form": form,
        "secret": request.session.pop(_secret_key(subscription), None),
        "recent": list(selectors.webhook_deliveries(subscription=subscription)[:5]),
    }
    return render(request, "webhooks/detail.html", context, status=400 if form.is_bound else 200)


@require_POST
@role_required(SCORING_ADMIN, message=WEBHOOK_MANAGERS_ONLY)
def webhook_disable(request: HttpRequest, subscription_id: Any) -> HttpResponse:
    subscription = _subscription(subscription_id)
    webhooks.webhook_subscription_disable(actor=request.user, subscription=subscription)
    messages.success(request, f"Disabled “{subscription.name}”: its events wait until you enable it again.")
    return redirect("webhook-detail", subscription.public_id)


@require_POST
@role_required(SCORING_ADMIN, message=WEBHOOK_MANAGERS_ONLY)
def webhook_enable(request: HttpRequest, subscription_id: Any) -> HttpResponse:
    subscription = _subscription(subscription_id)
    try:
        webhooks.webhook_subscription_enable(actor=request.user, subscription=subscription)
    except webhooks.WebhookError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, f"Enabled “{subscription.name}”: what waited is sent within a minute.")
    return redirect("webhook-detail", subscription.public_id)


@require_POST
@role_required(SCORING_ADMIN, message=WEBHOOK_MANAGERS_ONLY)
def webhook_rotate_secret(request: HttpRequest, subscription_id: Any) -> HttpResponse:
    subscription = _subscription(subscription_id)
    try:
        secret = webhooks.webhook_subscription_rotate_secret(actor=request.user, subscription=subscription)
    except webhooks.WebhookError as error:
        messages.error(request, str(error))
    else:
        _show_secret_once(request, subscription, secret)
        messages.success(request, "New signing secret: copy it now and give it to the receiver.")
    return redirect("webhook-detail", subscription.public_id)


@role_required(SCORING_ADMIN, message=WEBHOOK_MANAGERS_ONLY)
def webhook_deliveries(request: HttpRequest, subscription_id: Any) -> HttpResponse:
    """The delivery log: each event sent (or being retried), its answer and a Replay button."""
    subscription = _subscription(subscription_id)
    state = request.GET.get("state", "")
    state = state if state in selectors.WEBHOOK_DELIVERY_STATES else ""
    deliveries = selectors.webhook_deliveries(subscription=subscription, state=state)
    page = Paginator(deliveries, DELIVERIES_PER_PAGE).get_page(request.GET.get("page"))
    context = {
        "subscription": subscription,
        "page": page,
        "state": state,
        "states": list(selectors.WEBHOOK_DELIVERY_STATES),
    }
    return render(request, "webhooks/deliveries.html", context)


@require_POST
@role_required(SCORING_ADMIN, message=WEBHOOK_MANAGERS_ONLY)
def webhook_delivery_replay(request: HttpRequest, subscription_id: Any, delivery_id: int) -> HttpResponse:
    subscription = _subscription(subscription_id)
    delivery = get_object_or_404(selectors.webhook_deliveries(subscription=subscription), pk=delivery_id)
    try:
        webhooks.webhook_delivery_replay(actor=request.user, delivery=delivery)
    except webhooks.WebhookError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, f"Sending {delivery.key} again.")
    back = QueryDict(mutable=True)
    if (page := request.POST.get("page", "")).isdigit():
        back["page"] = page
    if (state := request.POST.get("state", "")) in selectors.WEBHOOK_DELIVERY_STATES:
        back["state"] = state
    target = reverse("webhook-deliveries", args=[subscription.public_id])
    return redirect(target + (f"?{back.urlencode()}" if back else ""))
