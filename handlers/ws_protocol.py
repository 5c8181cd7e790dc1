"""RFC 6455 framing for our sockets, on an asyncio transport.

Tornado does the HTTP side of a WebSocket: the upgrade request, the origin
and subprotocol checks, the 101 answer. Then ``FramedConnection`` takes the
socket over as an ``asyncio.Protocol``: it parses client frames as bytes
arrive (several per read when they come together) and writes ours straight to
the transport. It is what the handler sees as ``ws_connection``: Tornado's
``WebSocketHandler`` API (``close``, ``write_message``, ``ping``,
``on_message``, ``on_close``, ``close_code``) works as before.

Why not Tornado's ``WebSocketProtocol13``. On the message path (issue 9) it
cost about 40% of the loop's time per message (py-spy): three awaited reads
and a task per frame, IOStream's Python read and write buffers, a future per
write. And its server side has RFC gaps any client can reach before
authenticating, which this parser closes:

- an unmasked client frame was processed as if masked (5.1: the server MUST
  close the connection);
- protocol errors (reserved bits, unknown opcode, a fragmented or >125-byte
  control frame, a continuation with nothing to continue, a new data frame
  inside a fragmented message) dropped TCP without a close frame (5.5.1,
  7.1.7: send 1002 first);
- invalid UTF-8 in a text message dropped TCP instead of closing with 1007;
- a close frame's code was echoed whatever it was (7.4.1 forbids sending
  999, 1005, 1006, 5000...), and a 1-byte close payload was accepted.

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
from typing import TYPE_CHECKING, Any, Optional

from tornado.iostream import IOStream, StreamClosedError
# Private to Tornado, but the fastest unmasking there is (its C speedup).
from tornado.util import _websocket_mask
from tornado.websocket import WebSocketProtocol, WebSocketProtocol13, _WebSocketParams

if TYPE_CHECKING:
    from tornado.websocket import WebSocketHandler

CLOSE_PROTOCOL_ERROR = 1002
CLOSE_INVALID_DATA = 1007
CLOSE_TOO_BIG = 1009
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

_CONTINUATION, _TEXT, _BINARY, _CLOSE, _PING, _PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_OPCODES = frozenset({0x0, 0x1, 0x2, 0x8, 0x9, 0xA})
_FIN, _RSV_BITS, _OPCODE_BITS, _MASKED = 0x80, 0x70, 0x0F, 0x80
_MAX_CONTROL_PAYLOAD = 125  # RFC 6455 5.5
_HEADER_16 = struct.Struct("!BBH")
_HEADER_64 = struct.Struct("!BBQ")


def valid_close_code(code: int) -> bool:
    """Codes a peer may send (RFC 6455 7.4 and IANA's registry): 1004-1006 and
    1015 are reserved, 1016-2999 unassigned, below 1000 and 5000+ unused."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def encode_frames(payloads: list[bytes], opcode: int = _TEXT) -> bytes:
    """Server-to-client frames (final, unmasked, uncompressed) for ``payloads``,
    joined for a single write."""
    first = _FIN | opcode
    parts = []
    for payload in payloads:
        n = len(payload)
        if n < 126:
            parts.append(bytes((first, n)))
        elif n <= 0xFFFF:
            parts.append(_HEADER_16.pack(first, 126, n))
        else:
            parts.append(_HEADER_64.pack(first, 127, n))
        parts.append(payload)
    return b"".join(parts)


class FramedConnection(WebSocketProtocol, asyncio.Protocol):
    """One accepted WebSocket: Tornado's protocol API over an asyncio transport."""

    def __init__(self, handler: "WebSocketHandler", params: _WebSocketParams):
        super().__init__(handler)
        self.params = params
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self._subprotocol: str | None = None
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._fragments: bytearray | None = None  # a fragmented message so far
        self._fragments_opcode = _TEXT
        # Frames wait in the buffer while ``open`` or a handler coroutine runs.
        self._held = True
        self._handler_task: asyncio.Future | None = None
        self._drain = 0  # bytes of a refused, oversized frame still to drop
        self._ended: asyncio.Future | None = None
        self._close_timer: asyncio.TimerHandle | None = None
        self._ping_timer: asyncio.TimerHandle | None = None
        self._pong_due = False
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
        return self._subprotocol

    async def accept_connection(self, handler: "WebSocketHandler") -> None:
        """Runs for the upgrade request (inside Tornado's ``get``): answer 101,
        take the socket over, run ``open``, then serve frames until the
        connection ends, and tell the handler (``on_close``)."""
        offered = handler.request.headers.get("Sec-WebSocket-Protocol", "")
        self._subprotocol = handler.select_subprotocol(
            [s.strip() for s in offered.split(",") if s.strip()])
        if self._subprotocol:
            handler.set_header("Sec-WebSocket-Protocol", self._subprotocol)
        handler.clear_header("Content-Type")
        handler.set_status(101)
        handler.set_header("Upgrade", "websocket")
        handler.set_header("Connection", "Upgrade")
        handler.set_header("Sec-WebSocket-Accept", WebSocketProtocol13.compute_accept_value(
            handler.request.headers["Sec-WebSocket-Key"]))
        handler.finish()
        loop = asyncio.get_running_loop()
        self._ended = loop.create_future()
        try:
            await self._take_over(handler._detach_stream(), loop)
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

    async def _take_over(self, stream: IOStream, loop: asyncio.AbstractEventLoop) -> None:
        """Move the socket from Tornado's IOStream to an asyncio transport
        whose protocol is this object; bytes Tornado read past the handshake
        are kept. (IOStream internals, read once: the stream is detached, so
        nothing else of Tornado's uses it any more.)"""
        if stream.writing():  # the 101 answer: out before anything of ours
            await stream.write(b"")
        # Ahead of anything the transport reads: uvloop starts reading right
        # after connection_made, whatever pause_reading() said there.
        self._buffer += stream._read_buffer[:stream._read_buffer_size]
        sock = stream.socket
        stream.io_loop.remove_handler(sock)
        stream._state = None
        await loop.connect_accepted_socket(lambda: self, sock=sock)

    def write_message(self, message: str | bytes | dict[str, Any],
                      binary: bool = False) -> "asyncio.Future[None]":
        """Tornado's API: one message frame (the chat's own frames go through
        ``write_frames``). The returned future is already done."""
        if isinstance(message, dict):
            raise TypeError("encode the message first")
        payload = message.encode() if isinstance(message, str) else message
        self._write(encode_frames([payload], _BINARY if binary else _TEXT))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    def write_frames(self, payloads: list[bytes], binary: bool) -> None:
        """Send several messages in one write (one syscall)."""
        self._write(encode_frames(payloads, _BINARY if binary else _TEXT))

    def buffered_bytes(self) -> int:
        """Bytes written but not yet taken by the client's socket."""
        transport = self._transport
        return transport.get_write_buffer_size() if transport is not None else 0

    def write_ping(self, data: bytes) -> None:
        self._write(encode_frames([data], _PING))

    def set_nodelay(self, x: bool) -> None:
        sock = self._transport.get_extra_info("socket") if self._transport else None
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1 if x else 0)

    def writable(self) -> bool:
        """Frames may still go out: our close frame has not (the client's
        close may have come; answers it is owed go out before our echo)."""
        transport = self._transport
        return not self.server_terminated and transport is not None \
            and not transport.is_closing()

    def is_closing(self) -> bool:
        transport = self._transport
        return (self.client_terminated or self.server_terminated or transport is None
                or transport.is_closing())

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        """Start (or finish) the closing handshake: our close frame, then wait
        for the client's (``CLOSE_TIMEOUT_SECS`` at most) unless it came first."""
        if not self.server_terminated:
            if code is None and reason is not None:
                code = 1000  # "normal closure"
            payload = b"" if code is None else struct.pack("!H", code)
            if reason is not None:
                payload += reason.encode()
            self._write(encode_frames([payload], _CLOSE))
            self.server_terminated = True
        self._stop_pinging()
        if self.client_terminated:
            self._cancel_close_timer()
            if self._transport is not None:
                self._transport.close()  # after our close frame is written
        elif self._close_timer is None:
            self._close_timer = asyncio.get_running_loop().call_later(
                CLOSE_TIMEOUT_SECS, self._abort)

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
        if self.writable():
            self._transport.write(data)

    def _process_server_headers(self, key: str | bytes, headers: Any) -> None:
        raise NotImplementedError("server side only")

    async def _receive_frame_loop(self) -> None:
        raise NotImplementedError("frames are read by data_received")

    # --- pings: one timer per connection, no task ---------------------------
    def start_pinging(self) -> None:
        interval = self.params.ping_interval or 0
        if interval > 0:
            self._ping_timer = asyncio.get_running_loop().call_later(interval, self._send_ping)

    def _send_ping(self) -> None:
        """Runs every ping interval: ping, and check for the pong after the timeout."""
        interval = self.params.ping_interval or 0
        timeout = min(self.params.ping_timeout or interval, interval)
        self._pong_due = True
        self.write_ping(b"")
        self._ping_timer = asyncio.get_running_loop().call_later(timeout, self._check_pong,
                                                                 interval - timeout)

    def _check_pong(self, until_next: float) -> None:
        if self._pong_due:
            self.close(reason="ping timed out")
            return
        self._ping_timer = asyncio.get_running_loop().call_later(until_next, self._send_ping)

    def _stop_pinging(self) -> None:
        if self._ping_timer is not None:
            self._ping_timer.cancel()
            self._ping_timer = None

    def _cancel_close_timer(self) -> None:
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None

    # --- asyncio's side: the transport's callbacks -----------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        transport.pause_reading()  # type: ignore[attr-defined]  # until open() is done

    def data_received(self, data: bytes) -> None:
        if self._drain:
            self._drop_oversized(len(data))
            return
        self._buffer += data
        if not self._held:
            self._parse()
        elif self._transport is not None:
            self._transport.pause_reading()  # (uvloop: see _take_over)

    def eof_received(self) -> bool:
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
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
        """Handle every whole frame in the buffer, in order; stop early when a
        handler coroutine starts (``_held``) or the connection is failing."""
        buf = self._buffer
        pos = 0
        try:
            while not self._held and not self.client_terminated and not self._drain:
                available = len(buf) - pos
                if available < 2:
                    break
                first, second = buf[pos], buf[pos + 1]
                length, start = second & 0x7F, pos + 2
                if length == 126:
                    if available < 4:
                        break
                    length, start = (buf[pos + 2] << 8) | buf[pos + 3], pos + 4
                elif length == 127:
                    if available < 10:
                        break
                    length, start = struct.unpack_from("!Q", buf, pos + 2)[0], pos + 10
                masked = second & _MASKED
                fragments = self._fragments
                if length + (len(fragments) if fragments is not None else 0) \
                        > self.params.max_message_size:
                    pos = self._refuse_too_big(start, length + (4 if masked else 0))
                    break
                data_start = start + 4 if masked else start
                end = data_start + length
                if end > len(buf):
                    break
                problem = self._frame_problem(first, bool(masked), length)
                pos = end
                if problem:
                    self._fail(CLOSE_PROTOCOL_ERROR, problem)
                    break
                data = _websocket_mask(bytes(buf[start:data_start]), bytes(buf[data_start:end]))
                self._on_frame(first, data)
        finally:
            del buf[:pos]

    def _refuse_too_big(self, start: int, frame_bytes: int) -> int:
        """Close with 1009 and drop the refused frame as it arrives; returns
        how far the buffer is consumed."""
        self.close(CLOSE_TOO_BIG, "message too big")
        self._drain = min(frame_bytes, OVERSIZED_DRAIN_BYTES)
        in_buffer = min(self._drain, len(self._buffer) - start)
        self._drop_oversized(in_buffer)
        return start + in_buffer

    def _drop_oversized(self, count: int) -> None:
        self._drain -= min(count, self._drain)
        if not self._drain and self._transport is not None:
            self.client_terminated = True
            self._cancel_close_timer()
            self._transport.close()

    def _frame_problem(self, first: int, masked: bool, length: int) -> str | None:
        """Why this frame breaks RFC 6455 (5.2-5.5), or None if it does not."""
        opcode = first & _OPCODE_BITS
        if first & _RSV_BITS:
            return "reserved bits set without an extension"
        if opcode not in _OPCODES:
            return "unknown opcode"
        if not masked:
            return "client frames must be masked"
        if opcode & 0x8 and (not first & _FIN or length > _MAX_CONTROL_PAYLOAD):
            return "control frame fragmented or too long"
        fragmenting = self._fragments is not None
        if opcode == _CONTINUATION and not fragmenting:
            return "continuation without a message"
        if opcode in (_TEXT, _BINARY) and fragmenting:
            return "new message inside a fragmented one"
        return None

    def _on_frame(self, first: int, data: bytes) -> None:
        opcode = first & _OPCODE_BITS
        if opcode == _CONTINUATION:
            self._fragments.extend(data)  # type: ignore[union-attr]
            if not first & _FIN:
                return
            opcode, data = self._fragments_opcode, bytes(self._fragments)  # type: ignore[arg-type]
            self._fragments = None
        elif opcode in (_TEXT, _BINARY) and not first & _FIN:
            self._fragments_opcode, self._fragments = opcode, bytearray(data)
            return
        if self.server_terminated and opcode in (_TEXT, _BINARY):
            return  # our close frame is out: only the client's close matters now
        if opcode == _TEXT:
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                self._fail(CLOSE_INVALID_DATA, "invalid UTF-8 in a text message")
                return
            self._dispatch(text)
        elif opcode == _BINARY:
            self._dispatch(data)
        elif opcode == _CLOSE:
            self._on_close_frame(data)
        elif opcode == _PING:
            if self.buffered_bytes() < PONG_BUFFER_LIMIT:
                self._write(encode_frames([data], _PONG))
            self.handler.on_ping(data)
        else:
            self._pong_due = False
            self.handler.on_pong(data)

    def _on_close_frame(self, data: bytes) -> None:
        if len(data) == 1:
            self._fail(CLOSE_PROTOCOL_ERROR, "1-byte close payload")
            return
        if len(data) >= 2:
            code = struct.unpack("!H", data[:2])[0]
            if not valid_close_code(code):
                self._fail(CLOSE_PROTOCOL_ERROR, "invalid close code")
                return
            try:
                self.close_reason = data[2:].decode("utf-8") if len(data) > 2 else None
            except UnicodeDecodeError:
                self._fail(CLOSE_INVALID_DATA, "invalid UTF-8 in the close reason")
                return
            self.close_code = code
        self.client_terminated = True
        if self._unanswered:  # answers to earlier frames go first (5.5.1 allows the wait)
            self._close_echo_due = True
            self._close_timer = asyncio.get_running_loop().call_later(
                CLOSE_TIMEOUT_SECS, self.close, self.close_code)
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
        self._handler_task = asyncio.ensure_future(result) if not asyncio.iscoroutine(result) \
            else asyncio.get_running_loop().create_task(result, context=self._context)
        self._handler_task.add_done_callback(self._handler_done)

    def _handler_done(self, task: asyncio.Future) -> None:
        self._handler_task = None
        if task.cancelled() or task.exception() is not None:
            if not task.cancelled():
                exc = task.exception()
                self.handler.log_exception(type(exc), exc, exc.__traceback__)
            self._abort()
            return
        self._release()


def framed_connection(handler: "WebSocketHandler") -> Optional[FramedConnection]:
    """What ``WebSocketHandler.get_websocket_protocol`` returns (at the
    handshake): version 13 only, with the handler's limits."""
    if handler.request.headers.get("Sec-WebSocket-Version") != "13":
        return None
    return FramedConnection(handler, _WebSocketParams(
        ping_interval=handler.ping_interval, ping_timeout=handler.ping_timeout,
        max_message_size=handler.max_message_size))
