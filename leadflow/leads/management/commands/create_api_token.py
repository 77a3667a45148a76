from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from leadflow.leads.services import api_token_create


class Command(BaseCommand):
    help = (
        "Create a personal API token for an existing user and print it. The token is shown once and only "
        "its hash is stored. It is alone on the last line of output, so a script can capture it: "
        "TOKEN=$(python manage.py create_api_token alice --days 30 | tail -1)"
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username", help="The user the token acts as; it has that user's roles.")
        parser.add_argument("--name", default="", help="What the token is for, e.g. 'CRM sync' (max 100).")
        parser.add_argument(
            "--days", type=int, default=None, help="Expire the token after this many days (default: never expires)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        username = options["username"]
        name = options["name"].strip()
        days = options["days"]
        if len(name) > 100:
            raise CommandError(f"The name has {len(name)} characters; use at most 100.")
        if days is not None and days < 1:
            raise CommandError("--days must be 1 or more; leave it out for a token that never expires.")
        user_model = get_user_model()
        try:
            user = user_model._default_manager.get_by_natural_key(username)
        except user_model.DoesNotExist:
            raise CommandError(
                f"There is no user {username!r}. Check the spelling, or create the user first "
                "(python manage.py createsuperuser, or in the admin)."
            ) from None
        if not user.is_active:
            raise CommandError(
                f"User {username!r} is inactive, so a token would not authenticate. Reactivate the user in the "
                "admin first."
            )
        expires_at = timezone.now() + timedelta(days=days) if days is not None else None
        token, secret = api_token_create(user=user, name=name, expires_at=expires_at)
        expiry = f"expires {expires_at:%Y-%m-%d %H:%M} UTC" if expires_at else "never expires (use --days to limit)"
        self.stdout.write(
            f"Created API token {token.prefix} for {username}; it {expiry}. Only its hash is stored: copy the "
            "token now, it cannot be shown again.\n"
            "Use it as 'Authorization: Bearer <token>' on /api/v1/. Revoke it in the admin when it is no longer needed."
        )
        self.stdout.write(secret)
