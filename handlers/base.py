"""``APIHandler``: what every REST handler shares.

In order, for every request (API.md's "order of checks"): authenticate
(401), check the key's kind (403), throttle (429), check the body size (413);
then the handler validates (400) and asks the service, whose domain errors
``write_error`` renders through ``handlers.errors``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import tornado.web

from actors.chat import ChatService
from handlers.errors import (
    BODY_TOO_LARGE,
    INVALID_TOKEN,
    NO_PERMISSION,
    NOT_PROVIDED,
    HTTPProblem,
    JSONErrors,
)
from handlers.render import message_json, session_json
from handlers.throttle import Throttle
from handlers.validation import is_storable_text, parse_json_object
from storage.records import Principal, Role, Session


@tornado.web.stream_request_body
class APIHandler(JSONErrors):
    """Base for the REST endpoints; subclasses set ``role`` and ``metric_name``."""

    role: Role | None = None
    metric_name = "unknown"

    def initialize(
        self, service: ChatService, max_body_bytes: int, throttle: Throttle, inflight: InFlight
    ) -> None:
        """Runs once per request, before ``prepare``: the dependencies the route hands in."""
        self.service = service
        self.max_body_bytes = max_body_bytes
        self.throttle = throttle
        self.inflight = inflight
        self.principal: Principal | None = None
        self._counted = False
        self._body = bytearray()
        self._body_too_large = False

    @property
    def who(self) -> Principal:
        """Who sent the request: ``prepare`` authenticated them before any
        method handler runs."""
        if self.principal is None:
            raise RuntimeError("a method handler ran before prepare authenticated")
        return self.principal

    async def prepare(self) -> None:
        """Runs before the method handler: auth, kind, throttle, size."""
        self.inflight.enter()
        self._counted = True
        principal = await authenticate_header(
            self.service, self.request.headers.get("Authorization")
        )
        self.principal = principal
        if self.role is not None and principal.role is not self.role:
            raise HTTPProblem(403, NO_PERMISSION)
        self.throttle.check(principal)
        # The body is streamed in (data_received), so an oversized one is
        # refused from its declared length before a byte of it is buffered.
        declared = self.request.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            raise HTTPProblem(413, BODY_TOO_LARGE)

    def data_received(self, chunk: bytes) -> None:
        """Runs for each piece of the request body, after ``prepare``."""
        if len(self._body) + len(chunk) > self.max_body_bytes:
            # A body with no declared length (chunked) passed the limit. Read
            # on and keep nothing: answering now would make Tornado close the
            # connection while the client still sends, and a client reset
            # mid-upload often never reads the 413.
            self._body_too_large = True
        else:
            self._body += chunk

    def json_body(self) -> dict[str, Any]:
        """The request body as a JSON object, or 400 (413 when it was too large to read)."""
        if self._body_too_large:
            raise HTTPProblem(413, BODY_TOO_LARGE)
        return parse_json_object(bytes(self._body))

    def respond(self, data: Any, status: int = 200) -> None:
        """Finish the request with ``data`` as JSON and ``status``."""
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data))

    def on_finish(self) -> None:
        """Runs once the response is sent (errors included)."""
        self._stop_counting()

    def on_connection_close(self) -> None:
        """Runs if the connection closes before the response is sent. Tornado
        never finishes a request whose body stopped arriving (client gone, or
        cut off by the body deadline), so it stops being in flight here; one
        still being answered has no client left to wait for."""
        super().on_connection_close()
        self._stop_counting()

    def _stop_counting(self) -> None:
        if self._counted:
            self._counted = False
            self.inflight.leave()

    async def respond_with_history(self, session: Session, after_seq: int, limit: int) -> None:
        """A session with one page of its history (Get Session, the store's view)."""
        messages, has_more = await self.service.history(session.id, after_seq, limit)
        [(_, unread)] = await self.service.with_unread(self.who, [session])
        read = await self.service.read_positions(session.id)
        self.respond(
            {
                **session_json(session),
                "unread": unread,
                "read": read,
                "messages": [message_json(m) for m in messages],
                "has_more": has_more,
            }
        )


class InFlight:
    """Counts REST requests being answered, so shutdown can wait for them."""

    def __init__(self) -> None:
        self.count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def enter(self) -> None:
        """Runs when a request starts being handled."""
        self.count += 1
        self._idle.clear()

    def leave(self) -> None:
        """Runs when a request is done; the last one out wakes ``wait_idle``."""
        self.count -= 1
        if self.count == 0:
            self._idle.set()

    async def wait_idle(self) -> None:
        """Wait until no request is being handled (graceful stop)."""
        await self._idle.wait()


async def authenticate_header(service: ChatService, header: str | None) -> Principal:
    """The owner of ``Authorization: Token <key>``, or a 401."""
    if not header:
        raise HTTPProblem(401, NOT_PROVIDED)
    scheme, _, key = header.strip().partition(" ")
    if scheme.lower() != "token" or not key.strip() or " " in key.strip():
        raise HTTPProblem(401, INVALID_TOKEN if scheme.lower() == "token" else NOT_PROVIDED)
    return await authenticate_key(service, key.strip())


# Our keys are 40 characters; anything far longer is not one (and is not hashed).
MAX_KEY_CHARS = 256


async def authenticate_key(service: ChatService, key: str) -> Principal:
    """The owner of ``key``, or 401: a key that cannot be one is refused before storage is asked."""
    if len(key) > MAX_KEY_CHARS or not is_storable_text(key):
        raise HTTPProblem(401, INVALID_TOKEN)  # cannot be a key; and cannot be hashed
    principal = await service.storage.authenticate(key)
    if principal is None:
        raise HTTPProblem(401, INVALID_TOKEN)
    return principal
