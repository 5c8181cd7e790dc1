"""RFC 6455 framing for our sockets, on an asyncio transport.

Tornado does the HTTP side of a WebSocket: the upgrade request, the origin
and subprotocol checks, the 101 answer. Then ``FramedConnection`` takes the
socket over as an ``asyncio.Protocol``: it handles client frames as bytes
arrive (several per read when they come together; ``ws_reader.py`` takes them
out of the bytes) and writes ours straight to the transport (``ws_frames.py``
reads and builds single frames; neither does I/O).
It is what the handler sees as ``ws_connection``: Tornado's
``WebSocketHandler`` API (``close``, ``write_message``, ``ping``,
``on_message``, ``on_close``, ``close_code``) works as before.

Failing the connection (7.1.7) is one close frame with the code (1002, or 1007
for bad UTF-8), then the transport closes once it is written and nothing more
is read. A frame over the size limit gets 1009 and is read and dropped (up to
``OVERSIZED_DRAIN_BYTES``) before TCP closes: a client still sending it would
otherwise get a reset, which can destroy the close frame before it is read.

As in Tornado, frames are handled one at a time: while a handler's coroutine
runs, reading pauses. A handler that answers synchronously (returns None)
lets the next frame be handled at once; if it owes a later answer it says so
(``expect_answer``/``answered``), and a close from the client is echoed only
after that answer. permessage-deflate is not offered.
"""

from __future__ import annotations

import asyncio
import contextvars
import socket
import struct
import sys
from typing import TYPE_CHECKING, Any

from tornado.iostream import StreamClosedError
from tornado.websocket import _WebSocketParams

from handlers.ws_frames import (
    CLOSE_INVALID_DATA,
    CLOSE_TOO_BIG,
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameError,
    encode_frames,
    parse_close,
)
from handlers.ws_handshake import answer_upgrade, take_over_socket
from handlers.ws_keepalive import Keepalive
from handlers.ws_reader import FrameReader, MessageTooBig

if TYPE_CHECKING:
    from tornado.websocket import WebSocketHandler

# How much of a refused, oversized frame is read and dropped so the client reads
# our 1009; past it the connection is simply closed.
OVERSIZED_DRAIN_BYTES = 16 * 1024 * 1024
# How long a closing handshake we started may wait for the client's close frame
# (Tornado's figure).
CLOSE_TIMEOUT_SECS = 5.0
# Past this many unsent bytes, a client's ping goes unanswered: RFC 6455 5.5.3
# lets us answer only the latest, and a client that pings without reading must
# not grow our buffer.
PONG_BUFFER_LIMIT = 64 * 1024


class FramedConnection(Keepalive, asyncio.Protocol):
    """One accepted WebSocket: Tornado's protocol API over an asyncio transport."""

    def __init__(self, handler: WebSocketHandler, params: _WebSocketParams):
        super().__init__(handler)
        self.params = params
        self.keep_alive_init()
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self._subprotocol: str | None = None
        self._transport: asyncio.Transport | None = None
        self._frames = FrameReader(params.max_message_size)
        # Frames wait in the buffer while ``open`` or a handler coroutine runs.
        self._held = True
        self._handler_task: asyncio.Future | None = None
        self._drain = 0  # bytes of a refused, oversized frame still to drop
        self._ended: asyncio.Future | None = None
        self._close_timer: asyncio.TimerHandle | None = None
        # The context ``open`` ran in (the handler's request task): every
        # message handler runs in it, as under Tornado's own protocol.
        self._context: contextvars.Context | None = None
        # Answers a handler still owes for frames it took synchronously
        # (``expect_answer``): the client's close is echoed only after them.
        self._unanswered = 0
        self._close_echo_due = False

    # --- Tornado's side: the handshake and the handler's calls ----------------
    @property
    def selected_subprotocol(self) -> str | None:
        """The subprotocol chosen at the handshake (Tornado's API)."""
        return self._subprotocol

    async def accept_connection(self, handler: WebSocketHandler) -> None:
        """Runs for the upgrade request (inside Tornado's ``get``): answer 101,
        take the socket over, run ``open``, then serve frames until the
        connection ends, and tell the handler (``on_close``)."""
        self._subprotocol = answer_upgrade(handler)
        loop = asyncio.get_running_loop()
        self._ended = loop.create_future()
        try:
            await take_over_socket(handler._detach_stream(), loop, self, self._frames.buffer)
        except (StreamClosedError, OSError):
            self._connection_ended()
        else:
            self.start_pinging()
            try:
                opened = handler.open(*handler.open_args, **handler.open_kwargs)
                if opened is not None:
                    await opened
            except Exception:
                handler.log_exception(*sys.exc_info())
                self._abort()
            self._context = contextvars.copy_context()
            self._release()
        await self._ended
        handler.on_ws_connection_close(self.close_code, self.close_reason)

    def write_message(
        self, message: str | bytes | dict[str, Any], binary: bool = False
    ) -> asyncio.Future[None]:
        """Tornado's API: one message frame (the chat's own frames go through
        ``write_frames``). The returned future is already done."""
        if isinstance(message, dict):
            raise TypeError("encode the message first")
        payload = message.encode() if isinstance(message, str) else message
        self._write(encode_frames([payload], OP_BINARY if binary else OP_TEXT))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    def write_frames(self, payloads: list[bytes], binary: bool) -> None:
        """Send several messages in one write (one syscall)."""
        self._write(encode_frames(payloads, OP_BINARY if binary else OP_TEXT))

    def buffered_bytes(self) -> int:
        """Bytes written but not yet taken by the client's socket."""
        transport = self._transport
        return transport.get_write_buffer_size() if transport is not None else 0

    def write_ping(self, data: bytes) -> None:
        """Send a ping frame with ``data`` (Tornado's API)."""
        self._write(encode_frames([data], OP_PING))

    def set_nodelay(self, x: bool) -> None:
        """Turn Nagle's algorithm off (``x``) or on for this socket (Tornado's API)."""
        sock = self._transport.get_extra_info("socket") if self._transport else None
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1 if x else 0)

    def writable(self) -> bool:
        """Frames may still go out: our close frame has not (the client's
        close may have come; answers it is owed go out before our echo)."""
        transport = self._transport
        return not self.server_terminated and transport is not None and not transport.is_closing()

    def is_closing(self) -> bool:
        """Whether a close has started from either side or the transport is closing."""
        transport = self._transport
        return (
            self.client_terminated
            or self.server_terminated
            or transport is None
            or transport.is_closing()
        )

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        """Start (or finish) the closing handshake: our close frame, then wait
        for the client's (``CLOSE_TIMEOUT_SECS`` at most) unless it came first."""
        if not self.server_terminated:
            if code is None and reason is not None:
                code = 1000  # "normal closure"
            payload = b"" if code is None else struct.pack("!H", code)
            if reason is not None:
                payload += reason.encode()
            self._write(encode_frames([payload], OP_CLOSE))
            self.server_terminated = True
        self._stop_pinging()
        if self.client_terminated:
            self._cancel_close_timer()
            if self._transport is not None:
                self._transport.close()  # after our close frame is written
        elif self._close_timer is None:
            self._close_timer = asyncio.get_running_loop().call_later(
                CLOSE_TIMEOUT_SECS, self._abort
            )

    def _abort(self) -> None:
        """Drop the connection now (Tornado calls this too, on errors)."""
        self.client_terminated = self.server_terminated = True
        self._stop_pinging()
        self._cancel_close_timer()
        if self._transport is not None:
            self._transport.abort()
        else:
            self._connection_ended()

    def _fail(self, code: int, reason: str) -> None:
        """Fail the WebSocket connection (7.1.7): close frame, read no more,
        close TCP once the frame is written."""
        self.client_terminated = True
        self.close(code, reason)

    def _write(self, data: bytes) -> None:
        """Write unless our close frame has gone (nothing may follow it)."""
        transport = self._transport
        if transport is not None and self.writable():
            transport.write(data)

    def _process_server_headers(self, key: str | bytes, headers: Any) -> None:
        raise NotImplementedError("server side only")

    async def _receive_frame_loop(self) -> None:
        raise NotImplementedError("frames are read by data_received")

    def _cancel_close_timer(self) -> None:
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None

    # --- asyncio's side: the transport's callbacks -----------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Runs when the transport takes the socket over: hold reading until ``open`` is done."""
        # A stream socket's transport: an asyncio.Transport (declared as its base).
        self._transport = transport  # type: ignore[assignment]
        transport.pause_reading()  # type: ignore[attr-defined]  # until open() is done

    def data_received(self, data: bytes) -> None:
        """Runs for each read from the socket: buffer the bytes and handle whole frames."""
        if self._drain:
            self._drop_oversized(len(data))
            return
        self._frames.buffer += data
        if not self._held:
            self._parse()
        elif self._transport is not None:
            self._transport.pause_reading()  # (uvloop: see take_over_socket)

    def eof_received(self) -> bool:
        """Runs when the client half-closes: let the transport close."""
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        """Runs once the connection is gone, however it ended."""
        self.client_terminated = self.server_terminated = True
        self._stop_pinging()
        self._cancel_close_timer()
        self._connection_ended()

    def pause_writing(self) -> None:
        """The transport's buffer passed its high-water mark: nothing to do,
        the handler cuts off a client past ``max_buffered_bytes``."""

    def resume_writing(self) -> None:
        """See ``pause_writing``."""

    def _connection_ended(self) -> None:
        if self._ended is not None and not self._ended.done():
            self._ended.set_result(None)

    # --- frames in --------------------------------------------------------------
    def _release(self) -> None:
        """Handle what has been waiting (after ``open`` and after each handler
        coroutine), and read again."""
        self._held = False
        if self.client_terminated:
            return
        self._parse()
        if not self._held and self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()

    def _parse(self) -> None:
        """Handle every whole frame read so far, in order; stop early when a
        handler coroutine starts (``_held``) or the connection is failing."""
        frames = self._frames
        try:
            while not self._held and not self.client_terminated and not self._drain:
                frame = frames.next_frame()
                if frame is None:
                    break
                self._on_frame(*frame)
        except MessageTooBig as exc:
            self._refuse_too_big(exc.frame_bytes)
        except FrameError as exc:
            self._fail(exc.code, exc.reason)
        finally:
            frames.compact()

    def _refuse_too_big(self, frame_bytes: int) -> None:
        """Close with 1009 and drop the refused frame as it arrives."""
        self.close(CLOSE_TOO_BIG, "message too big")
        self._drain = min(frame_bytes, OVERSIZED_DRAIN_BYTES)
        self._drop_oversized(self._frames.skip(self._drain))

    def _drop_oversized(self, count: int) -> None:
        self._drain -= min(count, self._drain)
        if not self._drain and self._transport is not None:
            self.client_terminated = True
            self._cancel_close_timer()
            self._transport.close()

    def _on_frame(self, opcode: int, data: bytes) -> None:
        if self.server_terminated and opcode in (OP_TEXT, OP_BINARY):
            return  # our close frame is out: only the client's close matters now
        if opcode == OP_TEXT:
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                self._fail(CLOSE_INVALID_DATA, "invalid UTF-8 in a text message")
                return
            self._dispatch(text)
        elif opcode == OP_BINARY:
            self._dispatch(data)
        elif opcode == OP_CLOSE:
            self._on_close_frame(data)
        elif opcode == OP_PING:
            if self.buffered_bytes() < PONG_BUFFER_LIMIT:
                self._write(encode_frames([data], OP_PONG))
            self.handler.on_ping(data)
        else:
            self._pong_due = False
            self.handler.on_pong(data)

    def _on_close_frame(self, data: bytes) -> None:
        try:
            close = parse_close(data)
        except FrameError as exc:
            self._fail(exc.code, exc.reason)
            return
        if close is not None:
            self.close_code, self.close_reason = close
        self.client_terminated = True
        if self._unanswered:  # answers to earlier frames go first (5.5.1 allows the wait)
            self._close_echo_due = True
            self._close_timer = asyncio.get_running_loop().call_later(
                CLOSE_TIMEOUT_SECS, self.close, self.close_code
            )
            return
        self.close(self.close_code)  # a valid code is echoed (5.5.1)

    def expect_answer(self) -> None:
        """The handler took a frame without a coroutine and will answer it
        later (``answered``); a close from the client waits for that answer."""
        self._unanswered += 1

    def answered(self) -> None:
        """The handler queued the answer ``expect_answer`` announced. A close
        the client sent meanwhile is echoed once every answer is out (after
        the handler's writes of this loop pass)."""
        self._unanswered -= 1
        if not self._unanswered and self._close_echo_due:
            self._close_echo_due = False
            self._cancel_close_timer()
            asyncio.get_running_loop().call_soon(self.close, self.close_code)

    def _dispatch(self, message: str | bytes) -> None:
        """Hand one message to the handler; if it returns a coroutine, hold the
        next frames until it is done (one at a time, as Tornado does)."""
        try:
            if self._context is None:  # frames are held until open has set it
                raise RuntimeError("a frame was dispatched before open")
            result = self._context.run(self.handler.on_message, message)
        except Exception:
            self.handler.log_exception(*sys.exc_info())
            self._abort()
            return
        if result is None:
            return
        self._held = True
        if self._transport is not None:
            self._transport.pause_reading()
        self._handler_task = (
            asyncio.ensure_future(result)
            if not asyncio.iscoroutine(result)
            else asyncio.get_running_loop().create_task(result, context=self._context)
        )
        self._handler_task.add_done_callback(self._handler_done)

    def _handler_done(self, task: asyncio.Future) -> None:
        self._handler_task = None
        if task.cancelled() or task.exception() is not None:
            exc = None if task.cancelled() else task.exception()
            if exc is not None:
                self.handler.log_exception(type(exc), exc, exc.__traceback__)
            self._abort()
            return
        self._release()


def framed_connection(handler: WebSocketHandler) -> FramedConnection | None:
    """What ``WebSocketHandler.get_websocket_protocol`` returns (at the
    handshake): version 13 only, with the handler's limits."""
    if handler.request.headers.get("Sec-WebSocket-Version") != "13":
        return None
    return FramedConnection(
        handler,
        _WebSocketParams(
            ping_interval=handler.ping_interval,
            ping_timeout=handler.ping_timeout,
            max_message_size=handler.max_message_size,
        ),
    )
