"""RFC 6455 frames, without I/O: what a client frame may be, and the frames we send.

``ws_reader.FrameReader`` takes client frames out of the socket's bytes with
these functions, and ``ws_protocol.FramedConnection`` acts on them; nothing
here touches a socket or the event loop, so each rule can be tested on bytes
alone.

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
"""

from __future__ import annotations

import struct

CLOSE_PROTOCOL_ERROR = 1002
CLOSE_INVALID_DATA = 1007
CLOSE_TOO_BIG = 1009

OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_OPCODES = frozenset({0x0, 0x1, 0x2, 0x8, 0x9, 0xA})
FIN_BIT, _RSV_BITS, OPCODE_BITS, MASK_BIT = 0x80, 0x70, 0x0F, 0x80
_MAX_CONTROL_PAYLOAD = 125  # RFC 6455 5.5
MASK_BYTES = 4  # a client frame's masking key (5.3)
_HEADER_16 = struct.Struct("!BBH")
_HEADER_64 = struct.Struct("!BBQ")


def valid_close_code(code: int) -> bool:
    """Codes a peer may send (RFC 6455 7.4 and IANA's registry): 1004-1006 and
    1015 are reserved, 1016-2999 unassigned, below 1000 and 5000+ unused."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def encode_frames(payloads: list[bytes], opcode: int = OP_TEXT) -> bytes:
    """Server-to-client frames (final, unmasked, uncompressed) for ``payloads``,
    joined for a single write."""
    first = FIN_BIT | opcode
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


def read_header(buf: bytearray, pos: int) -> tuple[int, bool, int, int] | None:
    """The header of the frame at ``pos`` in ``buf`` (RFC 6455 5.2): its first
    byte, whether it is masked, its payload length, and where its masking key
    (or, unmasked, its payload) starts; None while the header is incomplete."""
    available = len(buf) - pos
    if available < 2:
        return None
    first, second = buf[pos], buf[pos + 1]
    length, start = second & 0x7F, pos + 2
    if length == 126:
        if available < 4:
            return None
        length, start = (buf[pos + 2] << 8) | buf[pos + 3], pos + 4
    elif length == 127:
        if available < 10:
            return None
        length, start = struct.unpack_from("!Q", buf, pos + 2)[0], pos + 10
    return first, bool(second & MASK_BIT), length, start


class FrameError(Exception):
    """A frame breaks RFC 6455: the connection fails with ``code`` (7.1.7)."""

    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason


def frame_problem(first: int, masked: bool, length: int, fragmenting: bool) -> str | None:
    """Why a client frame breaks RFC 6455 (5.2-5.5), or None if it does not;
    ``first`` is its first byte, ``fragmenting`` whether a fragmented message
    is under way."""
    opcode = first & OPCODE_BITS
    if first & _RSV_BITS:
        return "reserved bits set without an extension"
    if opcode not in _OPCODES:
        return "unknown opcode"
    if not masked:
        return "client frames must be masked"
    if opcode & 0x8 and (not first & FIN_BIT or length > _MAX_CONTROL_PAYLOAD):
        return "control frame fragmented or too long"
    if opcode == OP_CONTINUATION and not fragmenting:
        return "continuation without a message"
    if opcode in (OP_TEXT, OP_BINARY) and fragmenting:
        return "new message inside a fragmented one"
    return None


def parse_close(data: bytes) -> tuple[int, str | None] | None:
    """A close frame's code and reason (None: the frame carries neither);
    raises ``FrameError`` for a payload a peer may not send (5.5.1, 7.4)."""
    if len(data) == 1:
        raise FrameError(CLOSE_PROTOCOL_ERROR, "1-byte close payload")
    if not data:
        return None
    code = struct.unpack("!H", data[:2])[0]
    if not valid_close_code(code):
        raise FrameError(CLOSE_PROTOCOL_ERROR, "invalid close code")
    try:
        reason = data[2:].decode("utf-8") if len(data) > 2 else None
    except UnicodeDecodeError:
        raise FrameError(CLOSE_INVALID_DATA, "invalid UTF-8 in the close reason") from None
    return code, reason
