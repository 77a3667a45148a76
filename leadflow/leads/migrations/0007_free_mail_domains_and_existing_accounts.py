"""Seed the free-mail domains and derive the account of every existing lead, set-based.

Frozen copies of ``leadflow.leads.accounts`` as it was written (a migration must not
change when the app's code does): on PostgreSQL one INSERT of the accounts and one
UPDATE of the leads per range of 50,000 ids; elsewhere the same in Python."""

import re

from django.db import migrations
from django.db.models import Max
from django.utils import timezone

FREE_MAIL_DOMAINS = [
    "163.com",
    "126.com",
    "aol.com",
    "fastmail.com",
    "gmail.com",
    "googlemail.com",
    "gmx.com",
    "gmx.de",
    "gmx.net",
    "hey.com",
    "hotmail.co.uk",
    "hotmail.com",
    "hotmail.fr",
    "icloud.com",
    "live.com",
    "mac.com",
    "mail.com",
    "mail.ru",
    "me.com",
    "msn.com",
    "naver.com",
    "outlook.com",
    "pm.me",
    "proton.me",
    "protonmail.com",
    "qq.com",
    "rediffmail.com",
    "t-online.de",
    "tutanota.com",
    "web.de",
    "yahoo.co.jp",
    "yahoo.co.uk",
    "yahoo.com",
    "yahoo.fr",
    "yandex.com",
    "yandex.ru",
    "zoho.com",
]
CHUNK = 50_000
KEY_MAX = 200
BLANKS = re.compile(r"[ \t\n\r\f\v]+")
ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")

DERIVED = f"""
    SELECT l.id,
           CASE WHEN k.trait IS NOT NULL THEN lower(k.trait COLLATE "C")
                WHEN k.domain IS NOT NULL AND NOT EXISTS (SELECT 1 FROM leads_freemaildomain f WHERE f.domain = k.domain)
                THEN k.domain END AS key,
           coalesce(k.trait, k.domain) AS name,
           CASE WHEN k.domain IS NULL OR EXISTS (SELECT 1 FROM leads_freemaildomain f WHERE f.domain = k.domain)
                THEN '' ELSE k.domain END AS domain
    FROM leads_lead l CROSS JOIN LATERAL (SELECT
        CASE WHEN jsonb_typeof(l.traits -> 'account') = 'string' THEN
             NULLIF(btrim(left(btrim(regexp_replace(l.traits ->> 'account', '[ \\t\\n\\r\\f\\v]+', ' ', 'g'), ' '),
             {KEY_MAX}), ' '), '') END AS trait,
        NULLIF(CASE WHEN strpos(l.email, '@') > 0 THEN regexp_replace(l.email, '^.*@', '') END, '') AS domain) k
    WHERE l.id > %(after)s AND l.id <= %(upto)s
"""  # noqa: S608 -- a frozen query, its values bound


def seed_free_mail_domains(apps, schema_editor):
    FreeMailDomain = apps.get_model("leads", "FreeMailDomain")
    FreeMailDomain.objects.bulk_create(
        [FreeMailDomain(domain=domain) for domain in FREE_MAIL_DOMAINS], ignore_conflicts=True
    )


def _key(email, traits, free):
    value = traits.get("account") if isinstance(traits, dict) else None
    trait = BLANKS.sub(" ", value).strip(" ")[:KEY_MAX].strip(" ") if isinstance(value, str) else ""
    domain = email.rpartition("@")[2] if email and "@" in email else ""
    if trait:
        return trait.translate(ASCII_LOWER), trait, "" if domain in free else domain
    if domain and domain not in free:
        return domain, domain, domain
    return None


def derive_accounts(apps, schema_editor):
    Lead = apps.get_model("leads", "Lead")
    Account = apps.get_model("leads", "Account")
    FreeMailDomain = apps.get_model("leads", "FreeMailDomain")
    connection = schema_editor.connection
    upto_all = Lead.objects.aggregate(m=Max("id"))["m"] or 0
    now = timezone.now()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            for after in range(0, upto_all, CHUNK):
                params = {"after": after, "upto": min(after + CHUNK, upto_all), "now": now}
                cursor.execute(
                    "INSERT INTO leads_account (key, name, domain, created_at)"  # noqa: S608
                    f" SELECT DISTINCT ON (d.key) d.key, d.name, d.domain, %(now)s FROM ({DERIVED}) d"  # noqa: S608
                    " WHERE d.key IS NOT NULL ORDER BY d.key, d.id ON CONFLICT DO NOTHING",
                    params,
                )
                cursor.execute(
                    f"UPDATE leads_lead SET account_id = a.id FROM ({DERIVED}) d"  # noqa: S608
                    " JOIN leads_account a ON a.key = d.key WHERE leads_lead.id = d.id",
                    params,
                )
        return
    free = set(FreeMailDomain.objects.values_list("domain", flat=True))
    for after in range(0, upto_all, CHUNK):
        rows = Lead.objects.filter(id__gt=after, id__lte=after + CHUNK).values_list("id", "email", "traits")
        keyed = [(pk, key) for pk, email, traits in rows if (key := _key(email, traits, free))]
        for _pk, (key, name, domain) in keyed:
            Account.objects.get_or_create(key=key, defaults={"name": name, "domain": domain, "created_at": now})
        ids = dict(Account.objects.filter(key__in={key for _pk, (key, _n, _d) in keyed}).values_list("key", "id"))
        for pk, (key, _name, _domain) in keyed:
            Lead.objects.filter(pk=pk).update(account_id=ids[key])


class Migration(migrations.Migration):
    dependencies = [("leads", "0006_accounts")]

    operations = [
        migrations.RunPython(seed_free_mail_domains, migrations.RunPython.noop),
        migrations.RunPython(derive_accounts, migrations.RunPython.noop),
    ]
