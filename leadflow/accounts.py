"""People's accounts: the answer to a locked-out login (django-axes calls
``lockout_response``), and the password pages, which are Django's views with our
templates (``templates/registration/``)."""

from typing import Any

from axes.utils import reset as axes_reset
from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import SetPasswordForm
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from leadflow.throttling import retry_after


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
