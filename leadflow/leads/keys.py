"""Secret keys shown once and stored as hashes.

Keys look like ``lfi_3f9a1c2b_<secret>`` (ingest) or ``lfp_…`` (personal). The
prefix is stored in clear to find the row; the whole key is stored as SHA-256.
A salted slow hash (PBKDF2) is unnecessary for 190-bit random secrets and
would cost milliseconds on every ingest request.
"""

import hashlib
import hmac
import secrets
from typing import NamedTuple

INGEST_KIND = "lfi"
PERSONAL_KIND = "lfp"


class NewKey(NamedTuple):
    key: str
    prefix: str
    key_hash: str


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def generate_key(kind: str) -> NewKey:
    prefix = secrets.token_hex(6)
    key = f"{kind}_{prefix}_{secrets.token_urlsafe(32)}"
    return NewKey(key=key, prefix=prefix, key_hash=hash_key(key))


def split_key(key: str) -> tuple[str, str] | None:
    """(kind, prefix) of a well-formed key, else None."""
    parts = key.split("_", 2)
    if len(parts) != 3 or not parts[1] or not parts[2]:
        return None
    return parts[0], parts[1]


def key_matches(key: str, key_hash: str) -> bool:
    return hmac.compare_digest(hash_key(key), key_hash)
