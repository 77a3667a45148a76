"""Notifications link to the page a person opens, no longer to the API: rewrite the
links stored before, ``/api/v1/handoffs/<id>`` to ``/queue/<id>/`` and the digest's
``/api/v1/handoffs`` to ``/queue/``. The paths are written out (not reversed from the
URL configuration) so that the migration does the same thing whatever the URLs become.
Set-based: two UPDATEs each way, on PostgreSQL and SQLite alike.
"""

from django.db import migrations
from django.db.models import Value
from django.db.models.functions import Concat, Substr

API_QUEUE = "/api/v1/handoffs"
PAGE_QUEUE = "/queue/"
UUID = "[0-9a-fA-F-]{36}"


def links_to_pages(apps, schema_editor):
    notification = apps.get_model("handoff", "Notification")
    notification.objects.filter(link__in=[API_QUEUE, API_QUEUE + "/"]).update(link=PAGE_QUEUE)
    notification.objects.filter(link__regex=rf"^{API_QUEUE}/{UUID}$").update(
        link=Concat(Value(PAGE_QUEUE), Substr("link", len(API_QUEUE) + 2), Value("/"))
    )


def links_to_api(apps, schema_editor):
    notification = apps.get_model("handoff", "Notification")
    notification.objects.filter(link=PAGE_QUEUE).update(link=API_QUEUE)
    notification.objects.filter(link__regex=rf"^{PAGE_QUEUE}{UUID}/$").update(
        link=Concat(Value(API_QUEUE + "/"), Substr("link", len(PAGE_QUEUE) + 1, 36))
    )


class Migration(migrations.Migration):
    dependencies = [
        ("handoff", "0002_drop_redundant_fk_indexes"),
    ]

    operations = [migrations.RunPython(links_to_pages, links_to_api, elidable=True)]
