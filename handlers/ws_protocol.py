"""RFC 6455 at the framing layer: Tornado's WebSocket protocol, made strict.

Why this exists. Tornado 6.6.1's ``WebSocketProtocol13`` (the server side) has
these gaps, each reachable by any client before authenticating:

- an unmasked client frame is processed as if masked (RFC 6455 5.1: the server
  MUST close the connection);
- protocol errors (reserved bits, unknown opcode, a fragmented or >125-byte
  control frame, a continuation with nothing to continue, a new data frame
  inside a fragmented message) drop TCP without a close frame (5.5.1, 7.1.7:
  send 1002 first);
- invalid UTF-8 in a text message drops TCP instead of closing with 1007 (8.1);
- a close frame's code is echoed whatever it is, 999, 1005, 1006 and 5000
  included (7.4.1 forbids sending those), a 1-byte close payload is accepted,
  and a close reason that is not UTF-8 raises inside the frame loop (a
  traceback in the debug log, no close frame).

``StrictProtocol`` fails the connection the way 7.1.7 says: one close frame
with the code (1002, or 1007 for bad UTF-8), then the TCP connection is closed
at once and nothing more is read. Frames over the size limit keep Tornado's
1009; compressed text (permessage-deflate, which ChatSocket does not offer)
keeps Tornado's handling of bad UTF-8. These checks are generic and could be offered to Tornado upstream; if
Tornado adopts them, this module goes away.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Optional

# Private to Tornado, but the only way to build its protocol and unmask a frame.
from tornado.iostream import StreamClosedError
from tornado.util import _websocket_mask
from tornado.websocket import WebSocketProtocol13, _WebSocketParams

if TYPE_CHECKING:
    from asyncio import Future

    from tornado.websocket import WebSocketHandler

CLOSE_PROTOCOL_ERROR = 1002
CLOSE_INVALID_DATA = 1007
CLOSE_TOO_BIG = 1009
# How much of a refused, oversized frame is read and dropped so the client reads
# our 1009 (see _refuse_too_big); past it the connection is simply dropped.
OVERSIZED_DRAIN_BYTES = 16 * 1024 * 1024

_CONTINUATION, _TEXT, _BINARY, _CLOSE = 0x0, 0x1, 0x2, 0x8
_OPCODES = frozenset({0x0, 0x1, 0x2, 0x8, 0x9, 0xA})
_MAX_CONTROL_PAYLOAD = 125  # RFC 6455 5.5


def valid_close_code(code: int) -> bool:
    """Codes a peer may send (RFC 6455 7.4 and IANA's registry): 1004-1006 and
    1015 are reserved, 1016-2999 unassigned, below 1000 and 5000+ unused."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


class StrictProtocol(WebSocketProtocol13):
    """Tornado's server protocol with every RFC 6455 frame rule enforced."""

    _message_compressed = False

    def _fail(self, code: int, reason: str) -> None:
        """Fail the WebSocket connection (7.1.7): close frame, then drop TCP.
        (If we had already sent our close frame, only the drop remains.)"""
        self.close(code, reason)
        self._abort()

    async def _receive_frame(self) -> None:
        """Runs for each frame the client sends (Tornado's frame loop awaits it).

        The whole frame is read before it is judged, so the socket is shut with
        nothing unread (unread bytes turn the close into an RST, which can
        destroy our close frame in flight); a frame over the size limit is
        refused unread, with 1009 as Tornado does."""
        header, second = await self._read_bytes(2)
        fin, opcode, masked = header & self.FIN, header & self.OPCODE_MASK, second & 0x80
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await self._read_bytes(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await self._read_bytes(8))
        buffered = self._fragmented_message_buffer
        if length + (len(buffered) if buffered is not None else 0) > self.params.max_message_size:
            await self._refuse_too_big(length + (4 if masked else 0))
            return
        mask = await self._read_bytes(4) if masked else b""
        data = await self._read_bytes(length)

        problem = self._frame_problem(header, opcode, bool(masked), length)
        if problem:
            self._fail(CLOSE_PROTOCOL_ERROR, problem)
            return
        data = _websocket_mask(mask, data)
        if opcode == _CONTINUATION:
            buffered.extend(data)
            if not fin:
                return
            opcode, data = self._fragmented_message_opcode, bytes(buffered)
            self._fragmented_message_buffer = None
        elif opcode in (_TEXT, _BINARY):
            self._message_compressed = bool(header & self.RSV1)
            if not fin:
                self._fragmented_message_opcode = opcode
                self._fragmented_message_buffer = bytearray(data)
                return
        # Tornado's _handle_message reads this flag for every frame: a ping
        # inside a compressed message must not go through the decompressor.
        self._frame_compressed = self._message_compressed and not opcode & 0x8
        handled = self._handle_message(opcode, data)
        if handled is not None:
            await handled

    async def _refuse_too_big(self, unread: int) -> None:
        """Close with 1009, then read and drop the refused frame (up to
        ``OVERSIZED_DRAIN_BYTES``) before dropping TCP: a client still sending
        it would otherwise get a reset, and a reset can destroy the close frame
        before the client reads it. Tornado aborts anyway if this takes longer
        than its close timeout."""
        self.close(CLOSE_TOO_BIG, "message too big")
        unread = min(unread, OVERSIZED_DRAIN_BYTES)
        try:
            while unread > 0:
                unread -= len(await self.stream.read_bytes(min(unread, 65536), partial=True))
        except StreamClosedError:
            pass
        self._abort()

    def _frame_problem(self, header: int, opcode: int, masked: bool, length: int) -> str | None:
        """Why this frame breaks RFC 6455 (5.2-5.5), or None if it does not."""
        reserved = header & self.RSV_MASK
        if self._decompressor is not None and opcode in (_TEXT, _BINARY):
            reserved &= ~self.RSV1  # permessage-deflate, when negotiated (RFC 7692)
        if reserved:
            return "reserved bits set without an extension"
        if opcode not in _OPCODES:
            return "unknown opcode"
        if not masked:
            return "client frames must be masked"
        if opcode & 0x8 and (not header & self.FIN or length > _MAX_CONTROL_PAYLOAD):
            return "control frame fragmented or too long"
        fragmenting = self._fragmented_message_buffer is not None
        if opcode == _CONTINUATION and not fragmenting:
            return "continuation without a message"
        if opcode in (_TEXT, _BINARY) and fragmenting:
            return "new message inside a fragmented one"
        return None

    def _handle_message(self, opcode: int, data: bytes) -> "Optional[Future[None]]":
        """Runs for each whole message or control frame: checks the UTF-8 of text
        and the close frame's payload, then hands over to Tornado."""
        if opcode == _TEXT and not self._frame_compressed and not _is_utf8(data):
            self._fail(CLOSE_INVALID_DATA, "invalid UTF-8 in a text message")
            return None
        if opcode == _CLOSE:
            if len(data) == 1:
                self._fail(CLOSE_PROTOCOL_ERROR, "1-byte close payload")
                return None
            if len(data) >= 2 and not valid_close_code(struct.unpack("!H", data[:2])[0]):
                self._fail(CLOSE_PROTOCOL_ERROR, "invalid close code")
                return None
            if not _is_utf8(data[2:]):
                self._fail(CLOSE_INVALID_DATA, "invalid UTF-8 in the close reason")
                return None
        # A valid close code is echoed by Tornado, as RFC 6455 5.5.1 says.
        return super()._handle_message(opcode, data)


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def strict_protocol(handler: "WebSocketHandler") -> Optional[StrictProtocol]:
    """What ``WebSocketHandler.get_websocket_protocol`` returns (at the
    handshake): Tornado's own choice, version 13 with the handler's limits,
    built from our class."""
    if handler.request.headers.get("Sec-WebSocket-Version") != "13":
        return None
    return StrictProtocol(handler, False, _WebSocketParams(
        ping_interval=handler.ping_interval, ping_timeout=handler.ping_timeout,
        max_message_size=handler.max_message_size,
        compression_options=handler.get_compression_options()))
