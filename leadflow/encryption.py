"""Secrets LeadFlow must be able to read back (a webhook endpoint's signing secret: signing
needs it, so a hash will not do) are kept encrypted in the database, so that a database
dump or a backup does not hand out the means to forge LeadFlow's webhooks.

Fernet (AES-128-CBC with HMAC-SHA256, from ``cryptography``) with a key derived from
``SECRET_KEY``; ``SECRET_KEY_FALLBACKS`` are tried to read, Django's own way of rotating the
key (README, "Rotating SECRET_KEY"; ``manage.py reencrypt_secrets`` rewrites every stored
secret under the current key). A value without ``PREFIX`` is a secret stored before
encryption (read as it is; the migration and ``reencrypt_secrets`` encrypt it)."""

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.apps import apps
from django.conf import settings
from django.db import models
from django.db.models.functions import Cast
from django.db.models.lookups import Exact
from django.utils.crypto import salted_hmac

PREFIX = "fernet:"
_KEY_SALT = "leadflow.encryption"


class SecretUnreadable(Exception):
    """A stored secret none of the keys in force decrypts."""

    def __init__(self) -> None:
        super().__init__(
            "The stored secret cannot be decrypted with SECRET_KEY or SECRET_KEY_FALLBACKS: it was "
            "encrypted under another SECRET_KEY. Put that key in SECRET_KEY_FALLBACKS, or make a new secret."
        )


class UnreadableSecret(str):
    """What an encrypted field reads when no key in force decrypts it: the stored token
    itself, so that saving the row keeps it (restoring the former key in
    ``SECRET_KEY_FALLBACKS`` makes it readable again). Never a usable secret: callers
    check ``secret_readable``."""


def secret_readable(value: str) -> bool:
    return not isinstance(value, UnreadableSecret)


@lru_cache(maxsize=8)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet(
        [
            Fernet(base64.urlsafe_b64encode(salted_hmac(_KEY_SALT, "fernet", secret=key, algorithm="sha256").digest()))
            for key in keys
        ]
    )


def _keys() -> tuple[str, ...]:
    return (settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS)


def secret_encrypt(value: str) -> str:
    """``value`` encrypted under the current ``SECRET_KEY``."""
    return PREFIX + _fernet(_keys()).encrypt(value.encode()).decode()


def secret_decrypt(stored: str) -> str:
    """The secret ``stored`` holds: decrypted with ``SECRET_KEY`` or one of its fallbacks, as
    is when stored before encryption, an ``UnreadableSecret`` when no key decrypts it."""
    if not stored.startswith(PREFIX):
        return stored
    try:
        return _fernet(_keys()).decrypt(stored[len(PREFIX) :].encode()).decode()
    except InvalidToken:
        return UnreadableSecret(stored)


def secret_current(stored: str) -> bool:
    """Whether ``stored`` is encrypted under the current ``SECRET_KEY`` (nothing to re-encrypt)."""
    if not stored.startswith(PREFIX):
        return False
    try:
        _fernet((settings.SECRET_KEY,)).decrypt(stored[len(PREFIX) :].encode())
    except InvalidToken:
        return False
    return True


class EncryptedTextField(models.TextField):
    """A text column whose values are encrypted (``secret_encrypt``) on the way in and
    decrypted on the way out: code reads and assigns the plain secret. Values are not
    comparable in the database (each encryption differs): never filter on one."""

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> str | None:
        return None if value is None else secret_decrypt(value)

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        if value is None or value == "":
            return value
        if isinstance(value, UnreadableSecret):
            return str(value)
        return secret_encrypt(value)


@dataclass
class Reencryption:
    """What ``secrets_reencrypt`` found: secrets rewritten under the current key, those
    already under it, and those no key in force reads (``"<app.Model> <pk>"`` each)."""

    reencrypted: int = 0
    current: int = 0
    unreadable: list[str] = field(default_factory=list)


def _encrypted_fields() -> list[tuple[type[models.Model], list[str]]]:
    found = []
    for model in apps.get_models():
        names = [f.name for f in model._meta.concrete_fields if isinstance(f, EncryptedTextField)]
        if names:
            found.append((model, names))
    return found


def secrets_reencrypt(*, dry_run: bool = False, progress: Callable[[int], Any] | None = None) -> Reencryption:
    """Every stored secret (each ``EncryptedTextField`` of every model) rewritten under the
    current ``SECRET_KEY``: after a rotation, so that the former key can leave
    ``SECRET_KEY_FALLBACKS``. Idempotent. A row is rewritten only if it still holds what
    was read (a secret made anew meanwhile is not overwritten); ``progress`` is called
    with each row's count of one."""
    result = Reencryption()
    for model, names in _encrypted_fields():
        raw = {f"raw_{name}": Cast(name, output_field=models.TextField()) for name in names}
        for row in model._default_manager.annotate(**raw).values("pk", *raw).iterator():
            for name in names:
                stored = row[f"raw_{name}"]
                if not stored or secret_current(stored):
                    result.current += bool(stored)
                    continue
                plain = secret_decrypt(stored)
                if not secret_readable(plain):
                    result.unreadable.append(f"{model._meta.label} {row['pk']}")
                    continue
                result.reencrypted += 1
                if not dry_run:
                    unchanged = Exact(Cast(name, output_field=models.TextField()), stored)
                    model._default_manager.filter(unchanged, pk=row["pk"]).update(**{name: plain})
            if progress is not None:
                progress(1)
    return result


def secrets_count() -> int:
    """The rows ``secrets_reencrypt`` goes through."""
    return sum(model._default_manager.count() for model, _ in _encrypted_fields())
