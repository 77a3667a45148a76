"""Accounts under scoring: the roll-up score of an account per model, its explanation,
and marketing-qualified accounts (MQA).

**The roll-up** (one definition, two twins). Under a scoring model, an account's

    behaviour = Σ of the behaviour scores of its top N contacts by behaviour
                (N = ``settings.ACCOUNT_TOP_CONTACTS``, 3 by default; ties by lead id),
    fit       = the best fit score among its contacts,
    score     = behaviour + fit,
    contacts  = how many of its leads the model scored.

So an account is as engaged as its few most engaged people (a crowd of passive
contacts does not inflate it, one champion does not carry it alone) and as good a fit
as its best-fitting contact. ``_rollup_sql`` computes it in one statement per model
(window functions, PostgreSQL) and ``_rollup_python`` is its ORM/Python twin
(SQLite); a test proves they agree. Both write ``AccountScore`` rows, exact decimals:
``account_explain`` lists the contributing contacts, whose contributions add up to
the stored score exactly.

**When.** ``accounts_rollup`` runs at the end of each incremental scoring chunk (the
accounts of the chunk's leads) and after a full rescore (every account of the model;
roll-ups of accounts left without scored contacts are removed), in the caller's
transaction. The core enqueues, by task name, ``accounts_rollup_left`` for the accounts
a lead left (its e-mail or account trait changed) and ``accounts_rollup_all`` after
accounts are re-derived.

**MQA.** When an account's roll-up under a model first reaches that model's published
ruleset's ``mqa_threshold`` (not null), ``mqa_at`` is set (once: a lower roll-up later
never clears it) and ``accounts_qualified`` is sent.

``accounts_qualified`` — the contract
    Sent once per roll-up that qualified at least one account, inside the caller's
    transaction, after ``mqa_at`` is written; ``sender`` is ``AccountScore`` and
    ``qualified`` a list of ``QualifiedAccount``. Receivers run in that transaction
    (``send``): what they write commits with the roll-up. Receiver:
    ``handoff.receivers.marketing_hears_of_qualified_accounts`` notifies marketing.
"""

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.db.models import DecimalField, F, FilteredRelation, IntegerField, Q, QuerySet, Value
from django.db.models.functions import Coalesce
from django.dispatch import Signal
from django.utils import timezone

from leadflow.db import SqlNames, pg_array
from leadflow.leads.models import Account, Lead
from scoring.models import AccountScore, RuleSet, RuleSetStatus, Score, ScoringModel

accounts_qualified = Signal()

ZERO = Decimal("0")
ROLLUP_FIELDS = ["score", "fit", "behaviour", "contacts", "computed_at"]


@dataclass(frozen=True)
class QualifiedAccount:
    account_id: int
    model_id: int
    score: Decimal
    threshold: Decimal


def top_contacts() -> int:
    return settings.ACCOUNT_TOP_CONTACTS


# --- The roll-up, written -------------------------------------------------------------------
def _locked(accounts: QuerySet[Account]) -> list[int]:
    """The ids of these accounts, locked in id order (FOR NO KEY UPDATE: ingest's key-share
    locks on accounts pass), so that two roll-ups of one account take turns and the
    second, whose statement starts after the first commits, sees the first's scores."""
    return list(accounts.order_by("id").select_for_update(no_key=True).values_list("id", flat=True))


def accounts_rollup(*, model_ids: Sequence[int], lead_ids: Sequence[int] | None, at: datetime) -> None:
    """Roll up, under each of these models, the accounts of these leads (``None``: every
    account, removing the roll-ups of accounts without scored contacts), then mark and
    announce the accounts that became MQAs. One statement per model for the roll-up."""
    if not model_ids:
        return
    if lead_ids is None:
        _rollup(model_ids, None, at, prune=True)
        return
    owned = Lead.objects.filter(id__in=list(lead_ids), account__isnull=False).values("account_id")
    if account_ids := _locked(Account.objects.filter(id__in=owned)):
        _rollup(model_ids, account_ids, at, prune=False)


def accounts_rollup_left(*, account_ids: Sequence[int], at: datetime) -> None:
    """Accounts a contact left (its e-mail or account trait changed), under every model
    with a published ruleset: rolled up again, their roll-up removed where no scored
    contact is left. (The contact's new account follows its own scoring.)"""
    model_ids = _published_model_ids()
    if model_ids and (locked := _locked(Account.objects.filter(id__in=list(account_ids)))):
        _rollup(model_ids, locked, at, prune=True)


def _rollup(model_ids: Sequence[int], account_ids: list[int] | None, at: datetime, *, prune: bool) -> None:
    rollup = _rollup_sql if connection.vendor == "postgresql" else _rollup_python
    for model_id in model_ids:
        rollup(model_id, account_ids, at)
        if prune:  # what this roll-up did not write has no scored contact left
            stale = AccountScore.objects.filter(model_id=model_id, computed_at__lt=at)
            if account_ids is not None:
                stale = stale.filter(account_id__in=account_ids)
            stale.delete()
    _qualify(model_ids, account_ids, at)


def _rollup_sql(model_id: int, account_ids: list[int] | None, at: datetime) -> None:
    lead, score, rolled = SqlNames(Lead), SqlNames(Score), SqlNames(AccountScore)
    scope = (
        f"l.{lead.account} = ANY(%(accounts)s::bigint[])"
        if account_ids is not None
        else f"l.{lead.account} IS NOT NULL"
    )
    sql = f"""
        WITH ranked AS (
            SELECT l.{lead.account} AS account_id, s.{score.behaviour} AS behaviour, s.{score.fit} AS fit,
                   row_number() OVER (
                       PARTITION BY l.{lead.account} ORDER BY s.{score.behaviour} DESC, l.{lead.id}
                   ) AS rank
            FROM {lead.table} l JOIN {score.table} s ON s.{score.lead} = l.{lead.id} AND s.{score.model} = %(model)s
            WHERE {scope}
        )
        INSERT INTO {rolled.table} ({rolled.account}, {rolled.model}, {rolled.score}, {rolled.fit}, {rolled.behaviour},
                                    {rolled.contacts}, {rolled.computed_at})
        SELECT account_id, %(model)s, sum(behaviour) FILTER (WHERE rank <= %(top)s) + max(fit), max(fit),
               sum(behaviour) FILTER (WHERE rank <= %(top)s), count(*), %(at)s
        FROM ranked GROUP BY account_id
        ON CONFLICT ({rolled.account}, {rolled.model}) DO UPDATE SET
            {rolled.score} = EXCLUDED.{rolled.score}, {rolled.fit} = EXCLUDED.{rolled.fit},
            {rolled.behaviour} = EXCLUDED.{rolled.behaviour}, {rolled.contacts} = EXCLUDED.{rolled.contacts},
            {rolled.computed_at} = EXCLUDED.{rolled.computed_at}
    """  # noqa: S608 -- names from the models, values bound
    params = {"model": model_id, "top": top_contacts(), "at": at, "accounts": pg_array(account_ids or [])}
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def rollups_in_python(model_id: int, account_ids: list[int] | None) -> dict[int, tuple[Decimal, Decimal, Decimal, int]]:
    """The definition in Python: (score, fit, behaviour, contacts) by account."""
    rows = Score.objects.filter(model_id=model_id)
    rows = (
        rows.filter(lead__account_id__in=account_ids)
        if account_ids is not None
        else rows.filter(lead__account__isnull=False)
    )
    contacts: dict[int, list[tuple[Decimal, int, Decimal]]] = defaultdict(list)
    for account_id, lead_id, behaviour, fit in rows.values_list("lead__account_id", "lead_id", "behaviour", "fit"):
        contacts[account_id].append((behaviour, lead_id, fit))
    result = {}
    top = top_contacts()
    for account_id, found in contacts.items():
        ranked = sorted(found, key=lambda row: (-row[0], row[1]))
        behaviour = sum((row[0] for row in ranked[:top]), ZERO)
        fit = max(row[2] for row in found)
        result[account_id] = (behaviour + fit, fit, behaviour, len(found))
    return result


def _rollup_python(model_id: int, account_ids: list[int] | None, at: datetime) -> None:
    """The twin of ``_rollup_sql`` (SQLite)."""
    AccountScore.objects.bulk_create(
        [
            AccountScore(
                account_id=account_id,
                model_id=model_id,
                score=score,
                fit=fit,
                behaviour=behaviour,
                contacts=contacts,
                computed_at=at,
            )
            for account_id, (score, fit, behaviour, contacts) in sorted(
                rollups_in_python(model_id, account_ids).items()
            )
        ],
        batch_size=1000,
        update_conflicts=True,
        unique_fields=["account", "model"],
        update_fields=ROLLUP_FIELDS,
    )


def _mqa_thresholds(model_ids: Sequence[int]) -> dict[int, Decimal]:
    rows = RuleSet.objects.filter(status=RuleSetStatus.PUBLISHED, model_id__in=list(model_ids)).values_list(
        "model_id", "mqa_threshold"
    )
    return {model_id: threshold for model_id, threshold in rows if threshold is not None}


def _qualify(model_ids: Sequence[int], account_ids: list[int] | None, at: datetime) -> None:
    """Set ``mqa_at`` on the roll-ups that reached their model's threshold for the first
    time (a conditional UPDATE: each is marked, and announced, once) and send
    ``accounts_qualified``."""
    qualified: list[QualifiedAccount] = []
    for model_id, threshold in _mqa_thresholds(model_ids).items():
        reached = AccountScore.objects.filter(model_id=model_id, mqa_at__isnull=True, score__gte=threshold)
        if account_ids is not None:
            reached = reached.filter(account_id__in=account_ids)
        if connection.vendor == "postgresql":
            rolled = SqlNames(AccountScore)
            where, params = reached.values("id").query.sql_with_params()
            with connection.cursor() as cursor:
                cursor.execute(
                    f"UPDATE {rolled.table} SET {rolled.mqa_at} = %s WHERE {rolled.id} IN ({where})"  # noqa: S608
                    f" AND {rolled.mqa_at} IS NULL RETURNING {rolled.account}, {rolled.score}",
                    [at, *params],
                )
                rows = cursor.fetchall()
        else:
            rows = list(reached.order_by("account_id").values_list("account_id", "score"))
            reached.update(mqa_at=at)
        qualified += [QualifiedAccount(account_id, model_id, score, threshold) for account_id, score in sorted(rows)]
    if qualified:
        accounts_qualified.send(sender=AccountScore, qualified=qualified, at=at)


def accounts_rollup_after_rescore(*, model_id: int) -> None:
    """After a full rescore of a model: every account under it, in a transaction of its own."""
    with transaction.atomic():
        accounts_rollup(model_ids=[model_id], lead_ids=None, at=timezone.now())


def _published_model_ids() -> list[int]:
    return list(
        RuleSet.objects.filter(status=RuleSetStatus.PUBLISHED).order_by("model_id").values_list("model_id", flat=True)
    )


def accounts_rollup_all(*, at: datetime) -> None:
    """Every account under every model with a published ruleset (after accounts were re-derived)."""
    model_ids = _published_model_ids()
    with transaction.atomic():
        accounts_rollup(model_ids=model_ids, lead_ids=None, at=at)


# --- The roll-up, read ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ContactContribution:
    lead: Lead
    behaviour: Decimal
    fit: Decimal
    behaviour_counted: bool  # one of the top N by behaviour
    fit_counted: bool  # the best fit


@dataclass(frozen=True)
class AccountExplanation:
    """Why an account has its roll-up under a model: the top contacts by behaviour and
    the contact with the best fit. ``score`` = Σ counted behaviour + best fit, exactly."""

    model: ScoringModel
    top: int
    contacts: int
    behaviour: Decimal
    fit: Decimal
    contributions: list[ContactContribution]

    @property
    def score(self) -> Decimal:
        return self.behaviour + self.fit


def account_explain(*, account: Account, model: ScoringModel) -> AccountExplanation:
    """The contacts behind the account's roll-up under ``model``, from the current scores
    (three small queries whatever the account's size: the top N, the best fit, the count)."""
    top = top_contacts()
    scores = Score.objects.filter(model=model, lead__account=account).select_related("lead")
    leaders = list(scores.order_by("-behaviour", "lead_id")[:top])
    best = scores.order_by("-fit", "lead_id").first()
    counted = {row.lead_id for row in leaders}
    rows = [*leaders, *([best] if best is not None and best.lead_id not in counted else [])]
    contributions = [
        ContactContribution(
            lead=row.lead,
            behaviour=row.behaviour,
            fit=row.fit,
            behaviour_counted=row.lead_id in counted,
            fit_counted=best is not None and row.lead_id == best.lead_id,
        )
        for row in rows
    ]
    return AccountExplanation(
        model=model,
        top=top,
        contacts=scores.count(),
        behaviour=sum((row.behaviour for row in leaders), ZERO),
        fit=best.fit if best is not None else ZERO,
        contributions=contributions,
    )


def account_rollups(*, account: Account) -> list[AccountScore]:
    """The account's roll-up under every model that scored it, in the models' order."""
    return list(account.scores.select_related("model").order_by("model__position", "model_id"))


ROLLUP_DECIMAL = DecimalField(max_digits=12, decimal_places=2)


def accounts_annotate_rollup(accounts: QuerySet[Account], *, model: ScoringModel | None) -> QuerySet[Account]:
    """``accounts`` with the roll-up of ``model`` (``score``, ``fit``, ``behaviour``,
    ``scored_contacts``, ``mqa_at``): 0 (and no MQA) for an account it never rolled up."""
    model_id = model.pk if model else 0
    return accounts.annotate(
        rollup=FilteredRelation("scores", condition=Q(scores__model_id=model_id)),
        score=Coalesce(F("rollup__score"), Value(ZERO), output_field=ROLLUP_DECIMAL),
        fit=Coalesce(F("rollup__fit"), Value(ZERO), output_field=ROLLUP_DECIMAL),
        behaviour=Coalesce(F("rollup__behaviour"), Value(ZERO), output_field=ROLLUP_DECIMAL),
        scored_contacts=Coalesce(F("rollup__contacts"), Value(0), output_field=IntegerField()),
        mqa_at=F("rollup__mqa_at"),
    )
