"""Credentials: password hashes (argon2), API tokens and web sessions. Tokens and session
ids are random secrets shown once; the store keeps only their SHA-256 digests, and
passwords only as argon2 hashes, so a dump of the store reveals neither."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from pcc.common.errors import UserInputError

TOKEN_PREFIX = "pcc_"
TOKEN_BYTES = 32  # 256 bits of randomness per token and per session id
MIN_PASSWORD = 8
MAX_PASSWORD = 1024

_hasher = PasswordHasher()
# Checked against when a login names no such user, so that a miss costs what a hit does.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def check_password_rules(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise UserInputError(f"a password has at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise UserInputError(f"a password has at most {MAX_PASSWORD} characters")


def hash_password(password: str) -> str:
    check_password_rules(password)
    return _hasher.hash(password)


def verify_password(stored: str, password: str) -> bool:
    """Does ``password`` match ``stored`` (an argon2 hash; "" means no password set)?"""
    try:
        return _hasher.verify(stored or _DUMMY_HASH, password) and bool(stored)
    except (VerificationError, InvalidHashError):
        return False


def digest(secret: str) -> str:
    """What the store keeps of a token or session id (SHA-256: the secrets are random and
    long, so a slow hash would only slow down every API call)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def new_session_id() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def csrf_token(session_id: str) -> str:
    """The CSRF token of a web session: derived from its secret id, so it is never stored
    and a stolen store cannot forge it."""
    return hmac.new(session_id.encode(), b"pcc-csrf", hashlib.sha256).hexdigest()


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


@dataclass(frozen=True)
class TokenInfo:
    """What may be shown of an API token (never the token itself)."""

    id: int
    user: str
    label: str
    created: float
    expires: float | None
    last_used: float | None
    revoked: float | None

    def valid_at(self, now: float) -> bool:
        return self.revoked is None and (self.expires is None or now < self.expires)
