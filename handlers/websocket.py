"""The admin and store WebSockets (API.md "WebSocket").

Thin, like the REST handlers: decode a frame, authorize it, ask the service,
answer. Events reach the socket through the hub (``send_event``), never
directly from an actor.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from actors import metrics
from actors.chat import ChatService
from actors.errors import ChatError, Invalid, NotFound
from actors.hub import SENDING_CONNECTION, Hub, Sender
from handlers import codec, workflow
from handlers.base import authenticate_header, authenticate_key
from handlers.errors import (
    WS_CLOSE_BAD_KEY,
    WS_CLOSE_INTERNAL_ERROR,
    WS_CLOSE_WRONG_KIND,
    HTTPProblem,
    JSONErrors,
    error_frame,
)
from handlers.frame_fields import BAD_REF, describe_bad_choice, is_echoable_ref
from handlers.render import message_json, principal_json
from handlers.throttle import Throttle
from handlers.validation import Fields, required
from handlers.ws_outgoing import OutgoingFrames
from handlers.ws_protocol import FramedConnection, framed_connection
from storage.base import MAX_HISTORY_PAGE
from storage.outcomes import PostResult
from storage.records import Principal, Role

log = logging.getLogger("chat.access")

_connection_ids = itertools.count(1)


@dataclass(frozen=True)
class SocketSettings:
    """The WebSocket settings every socket of a server shares."""

    allowed_origins: tuple[str, ...] = ()
    auth_timeout_secs: float = 10.0
    # A client whose unsent frames pass this many bytes is cut off (it can resume).
    max_buffered_bytes: int = 1024 * 1024
    # Typing frames closer together than this are dropped, not stored.
    typing_interval_secs: float = 1.0


class ChatSocket(JSONErrors, OutgoingFrames):
    """One chat WebSocket: authenticates by an ``auth`` frame, then carries frames both ways."""

    role: Role = Role.STORE
    metric_name = "store_ws"

    def initialize(
        self, service: ChatService, hub: Hub, settings: SocketSettings, throttle: Throttle
    ) -> None:
        """Runs once per connection, before the handshake: the dependencies the route hands in."""
        self.service = service
        self.throttle = throttle
        self.hub = hub
        self.settings_ = settings
        self.max_buffered_bytes = settings.max_buffered_bytes
        self.conn_id = next(_connection_ids)
        self.principal: Principal | None = None
        self.protocol = codec.JSON
        self._auth_timer: asyncio.TimerHandle | None = None
        self._typing_at = 0.0
        self._out: list[bytes] = []  # frames queued in this loop pass
        self._out_bytes = 0

    @property
    def who(self) -> Principal:
        """Who this socket speaks for: frames other than ``auth`` are handled
        only once the socket is authenticated."""
        if self.principal is None:
            raise RuntimeError("a frame was handled before the socket authenticated")
        return self.principal

    # --- handshake --------------------------------------------------------
    async def get(self, *args: Any, **kwargs: Any) -> None:
        """Runs for the upgrade request. Refusals that Tornado would answer in
        plain text are answered here first, as DRF-shaped JSON."""
        refusal = self._handshake_refusal()
        if refusal is not None:
            self.send_error(refusal.status, exc_info=(HTTPProblem, refusal, None))
            return
        await super().get(*args, **kwargs)

    def _handshake_refusal(self) -> HTTPProblem | None:
        headers = self.request.headers
        if headers.get("Upgrade", "").lower() != "websocket":
            return HTTPProblem(400, 'Can "Upgrade" only to "WebSocket".')
        if "upgrade" not in (s.strip().lower() for s in headers.get("Connection", "").split(",")):
            return HTTPProblem(400, '"Connection" must be "Upgrade".')
        origin = headers.get("Origin") or headers.get("Sec-Websocket-Origin")
        if origin is not None and not self.check_origin(origin):
            return HTTPProblem(403, "Cross origin websockets not allowed.")
        if not headers.get("Sec-WebSocket-Key"):
            return HTTPProblem(400, "Missing or invalid WebSocket headers.")
        if headers.get("Sec-WebSocket-Version") != "13":
            return HTTPProblem(
                426, "Upgrade required: WebSocket version 13.", {"Sec-WebSocket-Version": "13"}
            )
        return None

    def get_websocket_protocol(self) -> FramedConnection | None:
        """Tornado's hook at the handshake: our RFC 6455 framing, which takes
        the socket over once the handshake is answered."""
        return framed_connection(self)

    def check_origin(self, origin: str) -> bool:
        """Same host, or one of ``server.allowed_origins``. (Tornado calls this
        only when the request has an Origin header: non-browser clients pass.)"""
        if origin in self.settings_.allowed_origins:
            return True
        return urllib.parse.urlparse(origin).netloc.lower() == self.request.host.lower()

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        """Runs at the handshake: the subprotocol to speak (msgpack preferred, then JSON)."""
        for choice in (codec.MSGPACK, codec.JSON):
            if choice in subprotocols:
                return choice
        return None

    async def open(self, *args: Any) -> None:
        """Runs once the handshake is done: header auth, or wait for an auth frame."""
        # Every frame handler of this socket runs in a copy of this context, so
        # the service can tell the hub which socket a message came from (its
        # ack replaces the echo).
        SENDING_CONNECTION.set(Sender(self.hub, self.conn_id))
        self.protocol = self.selected_subprotocol or codec.JSON
        # Chat frames are small and each waits on the last; Nagle's algorithm
        # would hold them back for the peer's delayed ACK (~20-40 ms each).
        self.set_nodelay(True)
        header = self.request.headers.get("Authorization")
        if header:
            await self._authenticate(lambda: authenticate_header(self.service, header))
        else:
            self._auth_timer = asyncio.get_running_loop().call_later(
                self.settings_.auth_timeout_secs,
                self.close,
                WS_CLOSE_BAD_KEY,
                "Authentication timed out.",
            )

    async def _authenticate(self, lookup: Any) -> None:
        try:
            principal = await lookup()
        except HTTPProblem:
            self.close(WS_CLOSE_BAD_KEY, "Invalid token.")
            return
        if principal.role is not self.role:
            self.close(WS_CLOSE_WRONG_KIND, "Wrong kind of key for this endpoint.")
            return
        if self._auth_timer:
            self._auth_timer.cancel()
        if self.ws_connection is None:  # closed while we looked the key up
            return
        self.principal = principal
        self.hub.add(self.conn_id, self.role, principal.id, self.send_event, self.close)
        if self.role is Role.ADMIN and self.service.presence is not None:
            self.service.presence.socket_opened(principal.id)
        metrics.WS_CONNECTIONS.labels(self.role.value).inc()
        log.info(
            "ws open %s %s:%d",
            self.request.path,
            self.role.value,
            principal.id,
            extra={"event": "ws_open", "who": f"{self.role.value}:{principal.id}"},
        )
        self.send({"type": "hello", self.role.value: principal_json(principal)})

    def on_close(self) -> None:
        """Runs once when the socket closes, whoever closed it."""
        if self._auth_timer:
            self._auth_timer.cancel()
        if self.principal is not None:
            self.hub.remove(self.conn_id)
            if self.role is Role.ADMIN and self.service.presence is not None:
                self.service.presence.socket_closed(self.principal.id)
            metrics.WS_CONNECTIONS.labels(self.role.value).dec()
            log.info(
                "ws close %s %s:%d code=%s",
                self.request.path,
                self.role.value,
                self.principal.id,
                self.close_code,
                extra={"event": "ws_close", "who": f"{self.role.value}:{self.principal.id}"},
            )
            self.principal = None

    # --- incoming frames ----------------------------------------------------
    def on_message(self, raw: str | bytes) -> Awaitable[None] | None:
        """Runs for each client frame, in order (handlers/ws_protocol.py).

        A chat message is handed to the service with a callback, and its ack
        or error frame goes out once it is stored: the next frame is read at
        once, and the message costs no task. Any other frame returns a
        coroutine, and nothing more is read from the socket until it is done.

        Every frame gets an answer and the socket stays open: an ``error``
        frame for a bad one (before auth, close 4001).
        """
        ref = None
        try:
            frame = codec.decode_frame(raw)
            kind = frame.get("type")
            known = kind if isinstance(kind, str) and kind in _FRAME_TYPES else None
            metrics.WS_FRAMES.labels("in", known or "other").inc()
            if self.principal is None:
                return self._answering(self._on_auth_frame(frame), None)
            ref = frame.get("ref")
            if ref is not None and not is_echoable_ref(ref):
                self._send_error(Invalid({"ref": [BAD_REF]}), ref=None)
                return None
            if known is None or known == "auth":
                raise Invalid({"type": [describe_bad_choice(kind)]})
            if known == "message":
                return self._on_message_frame(frame, ref)
            return self._answering(_FRAME_HANDLERS[known](self, frame, ref), ref)
        except Exception as exc:
            self._answer_failure(exc, ref)
            return None

    async def _answering(self, handling: Awaitable[None], ref: Any) -> None:
        """Await one frame's handling; answer whatever it raises."""
        try:
            await handling
        except Exception as exc:
            self._answer_failure(exc, ref)

    def _answer_failure(self, exc: BaseException, ref: Any) -> None:
        """A frame failed: an error frame (the socket stays open), or before
        auth the close. An exception escaping to the connection would drop it
        with no close frame."""
        if not isinstance(exc, ChatError):  # a bug of ours, not the client's
            log.error("ws %d: frame handling failed", self.conn_id, exc_info=exc)
        if self.principal is None:  # before auth, nothing but a good auth frame
            self.close(
                WS_CLOSE_BAD_KEY if isinstance(exc, ChatError) else WS_CLOSE_INTERNAL_ERROR,
                "Authenticate first." if isinstance(exc, ChatError) else "Server error.",
            )
        else:
            self.send(error_frame(exc if isinstance(exc, ChatError) else RuntimeError(), ref))

    def _send_error(self, exc: ChatError, ref: None) -> None:
        # ``send`` leaves out a null ref; here the client must see that its
        # ref was refused, so the frame says "ref": null.
        self._queue(codec.encode(self.protocol, {**error_frame(exc), "ref": ref}), "error")

    async def _on_auth_frame(self, frame: dict[str, Any]) -> None:
        token = frame.get("token")
        if frame.get("type") != "auth" or not isinstance(token, str) or not token:
            self.close(WS_CLOSE_BAD_KEY, "Authenticate first.")
            return
        await self._authenticate(lambda: authenticate_key(self.service, token))

    def _on_message_frame(self, frame: dict[str, Any], ref: Any) -> Awaitable[None] | None:
        """A chat message: stored through the session's actor, then acked
        (``_answer_post``). Awaited only where the service cannot take a
        callback: a store's first message (its session not known here yet),
        or a backend without callbacks (MongoDB)."""
        who = self.who
        self.throttle.check(who)  # the same per-key budget as REST
        fields = Fields(frame)
        session_id = fields.positive_int("session_id") if self.role is Role.ADMIN else None
        body, client_id = fields.message_fields()
        fields.check()
        text = required(body)
        conn = self.connection
        if conn is None:  # closed meanwhile: no one to answer
            return None
        reply = functools.partial(self._answer_post_then_tell, conn, ref)
        conn.expect_answer()
        started = False
        try:
            if self.role is Role.ADMIN:
                started = self.service.post_admin_message_with_reply(
                    who, required(session_id), text, client_id, reply
                )
            else:
                started = self.service.post_store_message_with_reply(who, text, client_id, reply)
        finally:
            if not started:  # not owed after all: a coroutine answers (reading waits)
                conn.answered()
        if started:
            return None
        return self._answering(self._post_awaited(session_id, text, client_id, ref), ref)

    async def _post_awaited(
        self, session_id: int | None, body: str, client_id: str | None, ref: Any
    ) -> None:
        if self.role is Role.ADMIN:
            result = await self.service.post_admin_message(
                self.who, required(session_id), body, client_id
            )
        else:
            result = await self.service.post_store_message(self.who, body, client_id)
        self._answer_post(ref, result, None)

    def _answer_post_then_tell(
        self, conn: FramedConnection, ref: Any, result: PostResult | None, exc: BaseException | None
    ) -> None:
        self._answer_post(ref, result, exc)
        conn.answered()

    def _answer_post(self, ref: Any, result: PostResult | None, exc: BaseException | None) -> None:
        """Runs once this socket's message is stored (its ack) or refused."""
        if exc is None:
            if result is not None and result.message is not None:
                self.send({"type": "ack", "ref": ref, "message": message_json(result.message)})
                return
            exc = NotFound()  # storage hands back what it stored: not seen
        self._answer_failure(exc, ref)

    async def _on_typing_frame(self, frame: dict[str, Any], ref: Any) -> None:
        session_id = None
        if self.role is Role.ADMIN:
            fields = Fields(frame)
            session_id = fields.positive_int("session_id")
            fields.check()
        now = asyncio.get_running_loop().time()
        if now - self._typing_at < self.settings_.typing_interval_secs:
            return  # the other side already knows; don't store a burst of these
        self._typing_at = now
        await self.service.typing(self.who, session_id)

    async def _on_resume_frame(self, frame: dict[str, Any], ref: Any) -> None:
        fields = Fields(frame)
        checked_id = fields.positive_int("session_id")
        checked_after = fields.int_in_range("after_seq", minimum=0, default=0)
        fields.check()
        session_id, after_seq = required(checked_id), required(checked_after)
        await self.service.readable_session(self.who, session_id)
        # Hold live messages back, replay the stored ones, then release the
        # held ones; the hub drops any seq already sent, so none come twice.
        self.hub.begin_replay(self.conn_id, session_id, after_seq)
        try:
            cursor = after_seq
            while True:
                page, has_more = await self.service.history(session_id, cursor, MAX_HISTORY_PAGE)
                for message in page:
                    self.hub.send_replayed(self.conn_id, message)
                if not page or not has_more:
                    break
                cursor = page[-1].seq
        finally:
            last_seq = self.hub.end_replay(self.conn_id, session_id)
        self.send({"type": "ack", "ref": ref, "session_id": session_id, "last_seq": last_seq})

    async def _on_ping_frame(self, frame: dict[str, Any], ref: Any) -> None:
        self.send({"type": "pong", "ref": ref} if ref is not None else {"type": "pong"})


class AdminSocket(ChatSocket):
    """The admins' socket (``/v1/chat/admin/ws/``): only an admin's key is let in."""

    role = Role.ADMIN
    metric_name = "admin_ws"


class StoreSocket(ChatSocket):
    """The stores' socket (``/v1/chat/store/ws/``): only a store's key is let in."""

    role = Role.STORE


# The frames answered by a coroutine; "message" is answered without one
# (ChatSocket._on_message_frame), "auth" only before authentication.
_FRAME_HANDLERS: dict[str, Callable[[ChatSocket, dict[str, Any], Any], Awaitable[None]]] = {
    "typing": ChatSocket._on_typing_frame,
    "resume": ChatSocket._on_resume_frame,
    "ping": ChatSocket._on_ping_frame,
    **workflow.FRAME_HANDLERS,  # read, presence
}
_FRAME_TYPES = set(_FRAME_HANDLERS) | {"auth", "message"}
