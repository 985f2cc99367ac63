"""Errors a person can act on. Services raise them; the API turns them into `{error, detail}`."""

from __future__ import annotations


class ServiceError(Exception):
    status = 400
    error = "bad_request"

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field


class BadInput(ServiceError):
    status, error = 400, "invalid"


class Unauthorized(ServiceError):
    status, error = 401, "unauthorized"


class Forbidden(ServiceError):
    status, error = 403, "forbidden"


class NotFound(ServiceError):
    status, error = 404, "not_found"


class Conflict(ServiceError):
    status, error = 409, "conflict"

    def __init__(self, detail: str, *, conflicts: list[str] | None = None) -> None:
        super().__init__(detail)
        self.conflicts = conflicts or []


class TooLarge(ServiceError):
    status, error = 413, "too_large"
