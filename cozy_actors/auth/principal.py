"""Who is calling, and the errors that say they may not."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from cozy_core.errors import CozyError

ROLES = ("user", "admin")


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    name: str
    role: str  # user | admin
    via: str  # api_key | jwt | local (auth switched off)
    key_id: str | None = None
    rate_limit_rpm: float | None = None  # per-key overrides of the configured rate limit
    rate_limit_burst: int | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def rate_key(self) -> str:
        """The bucket this caller draws from: its API key, or its user for JWTs."""
        return f"key:{self.key_id}" if self.key_id else f"user:{self.user_id}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Principal:
        return cls(**data)


class AuthMissing(CozyError):
    def __init__(self, message: str = "this route needs `Authorization: Bearer <token>` (a JWT or an API key)") -> None:
        super().__init__(message, code="AUTH_MISSING_TOKEN", status=401)


class AuthInvalid(CozyError):
    def __init__(self, message: str = "the token is invalid, expired or revoked") -> None:
        super().__init__(message, code="AUTH_INVALID_TOKEN", status=401)


class BadCredentials(CozyError):
    def __init__(self) -> None:
        super().__init__("unknown user or wrong password", code="AUTH_INVALID_CREDENTIALS", status=401)


class Forbidden(CozyError):
    def __init__(self, message: str = "this route is for admins") -> None:
        super().__init__(message, code="AUTH_FORBIDDEN", status=403)


class RateLimited(CozyError):
    """429; the edge sends `Retry-After` so OpenAI SDKs wait and retry on their own."""

    def __init__(self, retry_after_s: float, header: str, what: str = "this key") -> None:
        super().__init__(f"rate limit reached for {what}; retry after {header} s", code="RATE_LIMITED", status=429)
        self.retry_after_s = retry_after_s
        self.headers = {"retry-after": header}
