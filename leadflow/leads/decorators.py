"""Access to pages: log in first, then hold one of the roles (staff may do everything)."""

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponseBase

from leadflow.leads.roles import has_role

View = Callable[..., HttpResponseBase]


def role_required(*roles: str, message: str = "") -> Callable[[View], View]:
    """Anonymous visitors go to the login page; people without one of ``roles`` get 403."""

    def decorator(view: View) -> View:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if not has_role(request.user, *roles):
                names = ", ".join(role.replace("_", " ") for role in roles)
                raise PermissionDenied(message or f"This page is for people with the role {names}.")
            return view(request, *args, **kwargs)

        return login_required(wrapped)

    return decorator
