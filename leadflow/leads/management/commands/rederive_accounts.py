from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from leadflow.leads.accounts import REDERIVE_CHUNK, accounts_rederive


class Command(BaseCommand):
    help = (
        "Derive every lead's account again (its account trait, else its e-mail domain unless free-mail), "
        "set-based in ranges of lead ids, each its own transaction; remove accounts left without contacts and "
        "enqueue the roll-up of every account. Run it after editing the free-mail domains."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--chunk", type=int, default=REDERIVE_CHUNK, help=f"Lead ids per transaction (default {REDERIVE_CHUNK})."
        )

    def handle(self, *args: Any, chunk: int, **options: Any) -> None:
        result = accounts_rederive(chunk=max(chunk, 1))
        self.stdout.write(
            f"{result.leads_changed} lead(s) changed account; {result.accounts_removed} empty account(s) removed."
        )
