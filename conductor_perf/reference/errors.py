"""The reference conductor's API errors: the JSON envelope ``{"error":{"code","message"[,"details"]}}``.

Raised by the route handlers of :mod:`.app` and answered by its middleware; the SSE handlers of
:mod:`.streams` answer with the same envelope (e.g. 429 over the per-run client limit).

Example::

    raise not_found("run not found")   # 404 {"error":{"code":"NOT_FOUND","message":"run not found"}}
"""

from __future__ import annotations

from typing import Any

from . import gojson


class ApiError(Exception):
    """An error answered with the JSON envelope."""

    def __init__(self, status: int, code: str, message: str, details: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details

    def body(self) -> bytes:
        """The envelope bytes."""
        payload: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            payload["details"] = self.details
        return gojson.encode({"error": payload})


def bad_request(message: str) -> ApiError:
    """400 BAD_REQUEST."""
    return ApiError(400, "BAD_REQUEST", message)


def not_found(message: str) -> ApiError:
    """404 NOT_FOUND."""
    return ApiError(404, "NOT_FOUND", message)


def conflict(message: str, details: dict[str, str] | None = None) -> ApiError:
    """409 CONFLICT."""
    return ApiError(409, "CONFLICT", message, details)


def internal(message: str) -> ApiError:
    """500 INTERNAL."""
    return ApiError(500, "INTERNAL", message)


METHOD_NOT_ALLOWED = ApiError(405, "METHOD_NOT_ALLOWED", "method not allowed")
