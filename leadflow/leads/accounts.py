"""Accounts: the company each lead belongs to, defined once, and its set-based writes.

**The definition.** A lead's account is named by its ``account`` trait when that is a
string with something in it; failing that, by the domain of its e-mail, unless the
domain is a free-mail one (``FreeMailDomain``: anyone can sign up at gmail.com, so it
names no company); failing that, the lead has no account. The account's ``key`` is the
trait's text with its blanks collapsed to one space, trimmed, cut to ``KEY_MAX``
characters and ASCII letters lower-cased (as rules compare text), or the domain. So
``"Acme  Corp"`` and ``"acme corp"`` are one account, and a trait ``acme.com`` joins the
leads of the domain acme.com.

**Its twins.** ``account_key`` is the definition in Python (ingest, edits, SQLite);
``_derived_sql`` is the same in SQL (``accounts_rederive`` on PostgreSQL). A test proves
they agree.

**Its writes.** Every write of a lead's e-mail or traits sets ``Lead.account`` in the
statement that writes the rest of the lead: ingest, the lead upsert and the CSV import
(``leadflow.leads.services``: ``leads_identify`` for new leads, ``leads_apply`` for
changed ones) and a person's edit (``lead_update``). A batch's accounts are resolved
set-based by ``account_ids``: one query for the free-mail domains among the batch's,
an ``INSERT … ON CONFLICT DO NOTHING`` of the new accounts in key order, one ``SELECT``
of their ids — whatever the batch's size, and nothing for a batch that changes no
e-mail or account trait (most event batches). ``accounts_rederive`` recomputes every
lead's account (after the free-mail list changed), in id ranges, each a transaction.
"""

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from celery import current_app
from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from leadflow.db import SqlNames, insert_ignore_conflicts_returning, update_from_values
from leadflow.leads.models import Account, FreeMailDomain, Lead

logger = logging.getLogger(__name__)

ACCOUNT_TRAIT = "account"
KEY_MAX = 200
# Scoring's roll-ups, by name (the core may not import scoring): of every account, and of
# the accounts leads left.
ROLLUP_ALL_TASK = "scoring.tasks.accounts_rollup_all"
ROLLUP_LEFT_TASK = "scoring.tasks.accounts_rollup_left"
REDERIVE_CHUNK = 50_000

_BLANKS = re.compile(r"[ \t\n\r\f\v]+")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


@dataclass(frozen=True)
class AccountKey:
    """What a lead says of its account before the free-mail list is consulted."""

    key: str
    name: str
    domain: str  # the lead's e-mail domain ("" without one)
    by_domain: bool  # named by the domain, not by the trait


def email_domain(email: str | None) -> str:
    """The part after the last ``@`` ("" without an e-mail); e-mails are stored lower-case."""
    if not email or "@" not in email:
        return ""
    return email.rpartition("@")[2]


def account_trait(traits: Any) -> str:
    """The account trait's text, blanks collapsed and trimmed ("" when absent, blank or not a string)."""
    value = traits.get(ACCOUNT_TRAIT) if isinstance(traits, dict) else None
    if not isinstance(value, str):
        return ""
    return _BLANKS.sub(" ", value).strip(" ")[:KEY_MAX].strip(" ")


def account_key(*, email: str | None, traits: Any) -> AccountKey | None:
    """The account a lead names (see the module's docstring), free-mail not yet excluded."""
    domain = email_domain(email)
    if name := account_trait(traits):
        return AccountKey(key=name.translate(_ASCII_LOWER), name=name, domain=domain, by_domain=False)
    if domain:
        return AccountKey(key=domain, name=domain, domain=domain, by_domain=True)
    return None


def free_mail_domains(domains: Iterable[str]) -> set[str]:
    """Which of these domains are free-mail ones (one query)."""
    wanted = sorted({domain for domain in domains if domain})
    if not wanted:
        return set()
    return set(FreeMailDomain.objects.filter(domain__in=wanted).values_list("domain", flat=True))


def account_ids(leads: Sequence[tuple[str | None, Any]]) -> list[int | None]:
    """The account id of each (email, traits), creating the accounts missing; None for a
    lead without one. Set-based: three statements for the whole batch, none without a
    candidate. Inside the caller's transaction; accounts are inserted in key order, so
    concurrent batches never wait on each other in a cycle."""
    keys = [account_key(email=email, traits=traits) for email, traits in leads]
    candidates = [key for key in keys if key is not None]
    if not candidates:
        return [None] * len(leads)
    free = free_mail_domains(key.domain for key in candidates)
    wanted: dict[str, AccountKey] = {}
    for key in candidates:
        if key.by_domain and key.domain in free:
            continue
        wanted.setdefault(key.key, key)
    ids: dict[str, int] = {}
    if wanted:
        now = timezone.now()
        rows = [
            [key, wanted[key].name, "" if wanted[key].domain in free else wanted[key].domain, now]
            for key in sorted(wanted)
        ]
        ids.update(
            (key, pk)
            for pk, key in insert_ignore_conflicts_returning(
                Account, ["key", "name", "domain", "created_at"], rows, ["id", "key"]
            )
        )
        missing = sorted(wanted.keys() - ids.keys())
        if missing:  # created before, by us or a concurrent batch (committed: the insert waited for it)
            ids.update((key, pk) for pk, key in Account.objects.filter(key__in=missing).values_list("id", "key"))
    return [None if key is None or (key.by_domain and key.domain in free) else ids.get(key.key) for key in keys]


# --- Re-deriving every lead's account -------------------------------------------------------------
def _derived_sql() -> str:
    """``account_key`` in SQL, with the free-mail exclusion: per lead of the id range
    (``%(after)s`` < id ≤ ``%(upto)s``), ``id, key, name, domain`` (key NULL: no account)."""
    lead, free = SqlNames(Lead), SqlNames(FreeMailDomain)
    trait = (
        f"CASE WHEN jsonb_typeof(l.{lead.traits} -> 'account') = 'string' THEN "
        f"NULLIF(btrim(left(btrim(regexp_replace(l.{lead.traits} ->> 'account', '[ \\t\\n\\r\\f\\v]+', ' ', 'g'), ' '),"
        f" {KEY_MAX}), ' '), '') END"
    )
    domain = (
        f"NULLIF(CASE WHEN strpos(l.{lead.email}, '@') > 0 THEN regexp_replace(l.{lead.email}, '^.*@', '') END, '')"
    )
    is_free = f"EXISTS (SELECT 1 FROM {free.table} f WHERE f.{free.domain} = k.domain)"  # noqa: S608
    return f"""
        SELECT l.{lead.id} AS id,
               CASE WHEN k.trait IS NOT NULL THEN lower(k.trait COLLATE "C")
                    WHEN k.domain IS NOT NULL AND NOT {is_free} THEN k.domain END AS key,
               coalesce(k.trait, k.domain) AS name,
               CASE WHEN k.domain IS NULL OR {is_free} THEN '' ELSE k.domain END AS domain
        FROM {lead.table} l CROSS JOIN LATERAL (SELECT {trait} AS trait, {domain} AS domain) k
        WHERE l.{lead.id} > %(after)s AND l.{lead.id} <= %(upto)s
    """  # noqa: S608 -- names from the models, values bound


def _rederive_range_sql(after: int, upto: int) -> int:
    lead, account = SqlNames(Lead), SqlNames(Account)
    derived = _derived_sql()
    params: dict[str, Any] = {"after": after, "upto": upto, "now": timezone.now()}
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {account.table} ({account.key}, {account.name}, {account.domain}, {account.created_at})"  # noqa: S608
            f" SELECT DISTINCT ON (d.key) d.key, d.name, d.domain, %(now)s FROM ({derived}) d"
            " WHERE d.key IS NOT NULL ORDER BY d.key, d.id ON CONFLICT DO NOTHING",
            params,
        )
        cursor.execute(
            f"UPDATE {lead.table} SET {lead.account} = a.{account.id}"  # noqa: S608
            f" FROM ({derived}) d LEFT JOIN {account.table} a ON a.{account.key} = d.key"
            f" WHERE {lead.table}.{lead.id} = d.id AND {lead.table}.{lead.account} IS DISTINCT FROM a.{account.id}",
            params,
        )
        return cursor.rowcount


def _rederive_range_python(after: int, upto: int) -> int:
    """The twin of ``_rederive_range_sql`` (SQLite): ``account_ids`` over the range."""
    rows = list(
        Lead.objects.filter(id__gt=after, id__lte=upto)
        .order_by("id")
        .values_list("id", "email", "traits", "account_id")
    )
    derived = account_ids([(email, traits) for _id, email, traits, _account in rows])
    changed = [[pk, new] for (pk, _e, _t, old), new in zip(rows, derived, strict=True) if old != new]
    update_from_values(Lead, ["account"], changed)
    return len(changed)


@dataclass
class RederiveResult:
    leads_changed: int = 0
    accounts_removed: int = 0


def accounts_rederive(*, chunk: int = REDERIVE_CHUNK) -> RederiveResult:
    """Recompute every lead's account (after the free-mail list or the definition
    changed), set-based, in id ranges of ``chunk`` leads, each a short transaction;
    then remove the accounts left without contacts, and ask scoring (after commit, by
    task name) to roll every account up again."""
    result = RederiveResult()
    upto_all = Lead.objects.aggregate(m=Max("id"))["m"] or 0
    rederive = _rederive_range_sql if connection.vendor == "postgresql" else _rederive_range_python
    for after in range(0, upto_all, chunk):
        with transaction.atomic():
            result.leads_changed += rederive(after, min(after + chunk, upto_all))
    with transaction.atomic():
        _total, removed = Account.objects.filter(contacts__isnull=True).delete()
        result.accounts_removed = removed.get(Account._meta.label, 0)
        transaction.on_commit(_request_rollup_all, robust=True)
    return result


def accounts_left_after_commit(account_ids: Iterable[int | None]) -> None:
    """Once the current transaction commits, ask scoring to roll up again the accounts
    leads left (their e-mail or account trait changed); their new accounts follow the
    leads' own scoring. Failing to enqueue is logged: the nightly full rescore rolls
    every account up anyway."""
    ids = sorted({pk for pk in account_ids if pk is not None})
    if not ids:
        return

    def request() -> None:
        try:
            current_app.signature(ROLLUP_LEFT_TASK, args=(ids,)).apply_async()
        except Exception:
            logger.warning("Could not enqueue the roll-up of %d accounts leads left.", len(ids), exc_info=True)

    transaction.on_commit(request, robust=True)


def _request_rollup_all() -> None:
    try:
        current_app.signature(ROLLUP_ALL_TASK).apply_async()
    except Exception:  # the nightly full rescore rolls every account up anyway
        logger.warning("Could not enqueue the accounts' roll-up after re-deriving accounts.", exc_info=True)
