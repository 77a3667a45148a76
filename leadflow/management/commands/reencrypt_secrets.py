"""``manage.py reencrypt_secrets``: the stored secrets rewritten under the current SECRET_KEY
(``leadflow.encryption.secrets_reencrypt``), the step of a SECRET_KEY rotation that lets
the former key leave SECRET_KEY_FALLBACKS."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from leadflow.encryption import secrets_count, secrets_reencrypt
from leadflow.progress import progress_bar


class Command(BaseCommand):
    help = (
        "Re-encrypt the stored secrets (webhook endpoints' signing secrets) under the current SECRET_KEY. "
        "After rotating SECRET_KEY with the former key in SECRET_KEY_FALLBACKS, run this, then drop the former "
        "key from SECRET_KEY_FALLBACKS. Safe to run again; exits with status 1 when a secret cannot be read "
        "with any key in force."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--check",
            action="store_true",
            help="Change nothing: count what would be re-encrypted and what cannot be read.",
        )

    def handle(self, *args: Any, check: bool, **options: Any) -> None:
        with progress_bar(self.stderr, desc="Secrets", unit="row", total=secrets_count()) as bar:
            result = secrets_reencrypt(dry_run=check, progress=bar.update)
        verb = "Would re-encrypt" if check else "Re-encrypted"
        self.stdout.write(
            f"{verb} {result.reencrypted} secret(s) under the current SECRET_KEY; {result.current} already were."
        )
        if result.unreadable:
            raise CommandError(
                f"{len(result.unreadable)} secret(s) cannot be read with SECRET_KEY or SECRET_KEY_FALLBACKS "
                f"({', '.join(result.unreadable)}): put the key they were encrypted under in "
                "SECRET_KEY_FALLBACKS and run again, or make those webhook endpoints a new secret."
            )
