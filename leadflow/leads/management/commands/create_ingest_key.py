from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.text import slugify

from leadflow.leads.services import ingest_key_create, source_get_or_create


class Command(BaseCommand):
    help = (
        "Create an ingest key for a source (created if needed) and print it. The key is shown once and "
        "only its hash is stored. The key is alone on the last line of output, so a script can capture it: "
        "KEY=$(python manage.py create_ingest_key website | tail -1)"
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "source",
            metavar="source-name",
            help="Name or slug of the source that will send events with this key, e.g. 'Website'. "
            "A new source is created if none has this name or slug.",
        )
        parser.add_argument(
            "--label", default="", help="A note to recognise the key later, e.g. 'production site' (max 100)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        name = options["source"].strip()
        label = options["label"].strip()
        if not name or not slugify(name):
            raise CommandError("Give the source a name with at least one letter or digit, e.g. 'Website'.")
        if len(label) > 100:
            raise CommandError(f"The label has {len(label)} characters; use at most 100.")
        source, created = source_get_or_create(name=name)
        if created:
            self.stdout.write(f"Created source {source.name!r} (slug {source.slug}).")
        else:
            self.stdout.write(f"Using the existing source {source.name!r} (slug {source.slug}).")
        key, secret = ingest_key_create(source=source, label=label)
        self.stdout.write(
            f"Created ingest key {key.prefix}{f' ({label})' if label else ''}. Only its hash is stored: copy the "
            "key now, it cannot be shown again.\n"
            "Senders use it as 'Authorization: Bearer <key>' on POST /api/v1/events. To replace it, "
            "create a new key and revoke this one in the admin."
        )
        self.stdout.write(secret)
