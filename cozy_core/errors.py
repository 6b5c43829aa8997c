"""Domain errors that carry CozyEngine's error code and the HTTP status the edge should use.

Code families: AUTH_*, VALIDATION_*, RESOURCE_*, ENGINE_*, STORAGE_*, TOOL_*. The edge only
formats these; it never decides codes itself.
"""

from __future__ import annotations

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


class CozyError(Exception):
    def __init__(self, message: str, *, code: str, status: int = 400, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.param = param

    @property
    def type(self) -> str:
        return _TYPES.get(self.status, "server_error" if self.status >= 500 else "invalid_request_error")


class NotFound(CozyError):
    def __init__(self, message: str, *, code: str = "RESOURCE_NOT_FOUND", param: str | None = None) -> None:
        super().__init__(message, code=code, status=404, param=param)


class Invalid(CozyError):
    def __init__(self, message: str, *, code: str = "VALIDATION_ERROR", param: str | None = None) -> None:
        super().__init__(message, code=code, status=400, param=param)
