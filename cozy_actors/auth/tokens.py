"""Credentials: API keys (random, stored as SHA-256), passwords (argon2id) and JWTs (HS256).

Why SHA-256 for keys and argon2 for passwords: a key carries 256 random bits, so a fast hash is
safe and costs microseconds per request; a password is guessable, so it gets a slow, salted hash,
checked only when a JWT is issued.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

KEY_PREFIX = "cozy-"
# argon2id at OWASP's recommended floor (19 MiB, 2 passes, 1 lane): ~60 ms on one core here. The
# library default (64 MiB, 4 lanes) took ~0.35 s on both cores of a 2-core box and stalled the
# event loop of a voice server; stored hashes carry their parameters, so this can be raised later.
_hasher = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)
_DUMMY_HASH = _hasher.hash("not a real password")  # verified against when the user is unknown (same timing)
ISSUER = "cozyengine"


def new_api_key() -> str:
    """`cozy-` + 43 URL-safe characters (32 random bytes)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def key_prefix(key: str) -> str:
    """Enough of a key to recognise it in lists and logs, far too little to use it."""
    return key[:12]


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and token.startswith("eyJ")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password: str, stored: str | None) -> bool:
    """Constant work whether or not the user has a password (no user enumeration by timing)."""
    try:
        return _hasher.verify(stored or _DUMMY_HASH, password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


def issue_jwt(user_id: str, name: str, role: str, secret: str, expiry_s: int) -> tuple[str, int]:
    now = int(time.time())
    claims = {"sub": user_id, "name": name, "role": role, "iat": now, "exp": now + expiry_s, "iss": ISSUER}
    return jwt.encode(claims, secret, algorithm="HS256"), now + expiry_s


def decode_jwt(token: str, secret: str) -> dict[str, Any]:
    """Verified claims; raises jwt.PyJWTError for a bad signature, expiry, issuer or shape."""
    return jwt.decode(
        token, secret, algorithms=["HS256"], issuer=ISSUER, options={"require": ["sub", "exp", "iat", "iss"]}
    )
