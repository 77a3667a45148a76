"""People's accounts: the login and where it lands each role, the answer to a
locked-out login (django-axes calls ``lockout_response``), and the password pages,
which are Django's views with our templates (``templates/registration/``)."""

import hashlib
from typing import Any

from axes.utils import reset as axes_reset
from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import SetPasswordForm
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render, resolve_url
from django.urls import reverse

from leadflow.leads.roles import is_rep_only
from leadflow.throttling import client_address, retry_after, window_count


def home_url(user: Any) -> str:
    """Where ``user`` starts the day: a sales rep on the sales queue, everyone else
    (marketing, scoring admins, staff) on the dashboard (``LOGIN_REDIRECT_URL``)."""
    return reverse("sales-queue") if is_rep_only(user) else resolve_url(settings.LOGIN_REDIRECT_URL)


class LoginView(auth_views.LoginView):
    """Django's login, landing each role on its own home page (``home_url``). A ``next``
    that names a page wins, as in Django; ``next=/`` names no page but the home page,
    which is what the login_required redirect of a bookmarked site address carries, so
    it lands on the person's own home too."""

    def get_redirect_url(self, *args: Any, **kwargs: Any) -> str:
        target = super().get_redirect_url(*args, **kwargs)
        return "" if target == resolve_url(settings.LOGIN_REDIRECT_URL) else target

    def get_default_redirect_url(self) -> str:
        return home_url(self.request.user)


def lockout_response(request: HttpRequest, original_response: Any = None, credentials: Any = None) -> HttpResponse:
    """429 with Retry-After and a page that says what to do. Every attempt during a
    lockout starts the cool-off again (axes' default), so the wait is the whole of it."""
    seconds = retry_after(settings.AXES_COOLOFF_TIME.total_seconds())
    context = {"minutes": max(1, round(seconds / 60)), "failure_limit": settings.AXES_FAILURE_LIMIT}
    response = render(request, "registration/locked_out.html", context, status=429)
    response["Retry-After"] = str(seconds)
    return response


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    """Django's view; a person who proved they own the account's e-mail address is no
    longer locked out of it (a lockout from their address stays: it is not theirs alone)."""

    def form_valid(self, form: SetPasswordForm) -> HttpResponse:
        response = super().form_valid(form)
        axes_reset(username=form.user.get_username())
        return response


class PasswordResetView(auth_views.PasswordResetView):
    """Django's view, rate limited: at most ``PASSWORD_RESET_LIMIT`` requests per
    ``PASSWORD_RESET_WINDOW_SECONDS`` from one client address, and as many for one e-mail
    address (whoever asks), so that the form can neither flood an inbox nor be used to
    probe addresses at speed. Counted in the cache in fixed windows, like the API's
    throttles; the address is counted under a hash, never stored. Past either limit the
    answer is 429 with Retry-After and a page that says what to do."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        limit, seconds = settings.PASSWORD_RESET_LIMIT, settings.PASSWORD_RESET_WINDOW_SECONDS
        if limit:
            email = str(request.POST.get("email", "")).strip().lower()
            keys = [f"password-reset-address:{client_address(request)}"]
            if email:
                keys.append(f"password-reset-email:{hashlib.sha256(email.encode()).hexdigest()}")
            counts = [window_count(key, seconds, add=True) for key in keys]
            over = [wait for count, wait in counts if count > limit]
            if over:
                wait = retry_after(max(over))
                context = {
                    "limit": limit,
                    "window_minutes": max(1, round(seconds / 60)),
                    "minutes": max(1, round(wait / 60)),
                }
                response = render(request, "registration/password_reset_throttled.html", context, status=429)
                response["Retry-After"] = str(wait)
                return response
        return super().post(request, *args, **kwargs)
