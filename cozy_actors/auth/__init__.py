"""Authentication (API keys, JWTs, passwords), roles and the principal a request acts as."""

from .login import IssuedToken
from .principal import AuthInvalid, AuthMissing, BadCredentials, Forbidden, Principal, RateLimited
from .service import AuthService

__all__ = [
    "AuthInvalid",
    "AuthMissing",
    "AuthService",
    "BadCredentials",
    "Forbidden",
    "IssuedToken",
    "Principal",
    "RateLimited",
]
