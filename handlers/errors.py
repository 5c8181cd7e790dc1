"""The one mapping from domain errors to HTTP statuses, DRF bodies and
WebSocket close codes / error frames."""

from __future__ import annotations

from typing import Any

from actors.errors import ChatError, Conflict, Invalid, NotFound, Overloaded, PermissionDenied

NOT_PROVIDED = "Authentication credentials were not provided."
INVALID_TOKEN = "Invalid token."
NO_PERMISSION = "You do not have permission to perform this action."
NOT_FOUND = "Not found."
BODY_TOO_LARGE = "Request body too large."

# WebSocket close codes (API.md): bad or missing key, key of the wrong kind.
WS_CLOSE_BAD_KEY = 4001
WS_CLOSE_WRONG_KIND = 4003
WS_CLOSE_GOING_AWAY = 1001
WS_CLOSE_TRY_AGAIN_LATER = 1013  # used to cut off a client too slow to read


class HTTPProblem(ChatError):
    """An HTTP-level refusal raised by the handler layer itself (auth, size)."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}


def describe_error(exc: BaseException) -> tuple[int, dict[str, Any], dict[str, str]]:
    """``(status, DRF body, extra headers)`` for an error a request ended with.

    Anything not a ``ChatError`` is a bug or an outage: 500, with no detail
    that would leak internals.
    """
    if isinstance(exc, HTTPProblem):
        return exc.status, {"detail": exc.detail}, exc.headers
    if isinstance(exc, Invalid):
        return 400, (exc.errors if exc.errors is not None else {"detail": exc.detail}), {}
    if isinstance(exc, NotFound):
        return 404, {"detail": NOT_FOUND}, {}
    if isinstance(exc, PermissionDenied):
        return 403, {"detail": NO_PERMISSION}, {}
    if isinstance(exc, Conflict):
        return 409, {"detail": exc.detail}, {}
    if isinstance(exc, Overloaded):
        return 503, {"detail": exc.detail}, {"Retry-After": str(exc.retry_after_secs)}
    return 500, {"detail": "A server error occurred."}, {}


def error_frame(exc: BaseException, ref: Any = None) -> dict[str, Any]:
    """The WebSocket ``error`` frame for the same error (the socket stays open)."""
    status, body, _headers = describe_error(exc)
    frame: dict[str, Any] = {"type": "error", "status": status}
    if ref is not None:
        frame["ref"] = ref
    if "detail" in body and len(body) == 1:
        frame["detail"] = body["detail"]
    else:
        frame["detail"] = "Invalid input."
        frame["errors"] = body
    return frame
