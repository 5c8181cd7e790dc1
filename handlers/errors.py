"""The one mapping from domain errors to HTTP statuses, DRF bodies and
WebSocket close codes / error frames."""

from __future__ import annotations

import json
from typing import Any

import tornado
import tornado.web
from tornado import httputil

from actors.errors import ChatError, Conflict, Invalid, NotFound, Overloaded, PermissionDenied
from handlers.http_date import http_date
from handlers.methods import allowed_methods

NOT_PROVIDED = "Authentication credentials were not provided."
INVALID_TOKEN = "Invalid token."
NO_PERMISSION = "You do not have permission to perform this action."
NOT_FOUND = "Not found."
BODY_TOO_LARGE = "Request body too large."

# WebSocket close codes (API.md): bad or missing key, key of the wrong kind.
WS_CLOSE_BAD_KEY = 4001
WS_CLOSE_WRONG_KIND = 4003
WS_CLOSE_GOING_AWAY = 1001
WS_CLOSE_INTERNAL_ERROR = 1011  # a bug of ours while a client authenticated
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


_SERVER = f"TornadoServer/{tornado.version}"


class JSONErrors(tornado.web.RequestHandler):
    """Mix in first, before any Tornado handler class: every error this handler
    answers (ours, Tornado's own 405, 400s, 500) is a DRF-shaped JSON body."""

    def clear(self) -> None:
        """Runs when the handler is made and again before an error is rendered:
        Tornado's ``clear`` (same headers, same order), with the ``Date`` taken
        from a once-a-second cache (handlers/http_date.py says why)."""
        self._headers = httputil.HTTPHeaders(
            {"Server": _SERVER, "Content-Type": "text/html; charset=UTF-8", "Date": http_date()}
        )
        self.set_default_headers()
        self._write_buffer: list[bytes] = []
        self._status_code = 200
        self._reason = httputil.responses[200]

    def _handle_request_exception(self, e: BaseException) -> None:
        # Domain errors are answers, not crashes: render them without a traceback.
        if isinstance(e, ChatError) and not self._finished:
            self.send_error(describe_error(e)[0], exc_info=(type(e), e, e.__traceback__))
            # Rendered. Its traceback's frames hold this handler and the
            # future it came through: left alone, every refusal (a 409 in a
            # claim storm) is a reference cycle only the GC's full passes free.
            e.__traceback__ = None
            return
        super()._handle_request_exception(e)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Runs when Tornado or ``send_error`` ends a request with an error."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, ChatError):
            status, body, headers = describe_error(exc)
        elif status_code == 405:
            status, body, headers = (
                405,
                {"detail": f'Method "{self.request.method}" not allowed.'},
                {"Allow": allowed_methods(type(self))},
            )
        elif status_code >= 500:
            status, body, headers = describe_error(exc)
        else:
            status, body, headers = status_code, {"detail": self._reason}, {}
        self.set_status(status)
        for name, value in headers.items():
            self.set_header(name, value)
        if status == 401:
            self.set_header("WWW-Authenticate", "Token")
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))


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
