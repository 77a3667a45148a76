"""What the core does when its own models change: a saved or deleted ingest key or source
renews the generation of ingest keys (``leadflow.leads.auth``), so that no process keeps
accepting a key that was revoked or deleted, or serves a source as it was before an edit.
Connected when ``LeadsConfig.ready`` imports this module."""

from typing import Any

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from leadflow.leads.auth import ingest_keys_changed
from leadflow.leads.models import IngestKey, Source


@receiver(post_save, sender=IngestKey, dispatch_uid="leads.receivers.ingest_key_saved")
@receiver(post_delete, sender=IngestKey, dispatch_uid="leads.receivers.ingest_key_deleted")
@receiver(post_save, sender=Source, dispatch_uid="leads.receivers.source_saved")
@receiver(post_delete, sender=Source, dispatch_uid="leads.receivers.source_deleted")
def ingest_keys_follow_changes(**kwargs: Any) -> None:
    ingest_keys_changed()
