"""Verification codes: generation, hashing and constant-time checking.

A code is 6 random digits from `secrets`. Only a hash is stored: HMAC-SHA256 over
the verification id and the code, keyed with `SECRET_KEY` (the pepper) plus a random per-row
salt, written as `v1$<salt hex>$<digest hex>`. Checking recomputes the digest and
compares with `hmac.compare_digest`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

CODE_LENGTH = 6
_SCHEME = "v1"


def generate_code() -> str:
    return f"{secrets.randbelow(10**CODE_LENGTH):0{CODE_LENGTH}d}"


def _digest(pepper: str, salt: bytes, verification_id: str, code: str) -> str:
    key = pepper.encode("utf-8") + salt
    return hmac.new(key, f"{verification_id}:{code}".encode("utf-8"), hashlib.sha256).hexdigest()


def hash_code(code: str, verification_id: str, pepper: str = "") -> str:
    salt = secrets.token_bytes(16)
    return f"{_SCHEME}${salt.hex()}${_digest(pepper, salt, verification_id, code)}"


def check_code(code: str, stored_hash: str, verification_id: str, pepper: str = "") -> bool:
    """True when `code` matches `stored_hash`; runs in time independent of where they differ."""
    scheme, _, rest = stored_hash.partition("$")
    salt_hex, _, expected = rest.partition("$")
    if scheme != _SCHEME or not expected:
        return False
    try:
        salt = bytes.fromhex(salt_hex)
    except ValueError:
        return False
    actual = _digest(pepper, salt, verification_id, code)
    return hmac.compare_digest(actual.encode("ascii"), expected.encode("ascii"))
