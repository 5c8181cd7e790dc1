"""A WebSocket's incoming byte stream as frames, without I/O.

``ws_protocol.FramedConnection`` appends what the socket reads to ``buffer``
and takes frames out with ``next_frame`` until it has to stop (a handler
coroutine runs, the connection is failing), then calls ``compact`` once: a
read that brought several frames costs one cut of the buffer, not one per
frame. Fragmented messages come out whole, once their last fragment is in;
control frames come out as they arrive, even between fragments (RFC 6455 5.4).
"""

from __future__ import annotations

# Private to Tornado, but the fastest unmasking there is (its C speedup).
from tornado.util import _websocket_mask

from handlers.ws_frames import (
    CLOSE_PROTOCOL_ERROR,
    FIN_BIT,
    MASK_BYTES,
    OP_BINARY,
    OP_CONTINUATION,
    OP_TEXT,
    OPCODE_BITS,
    FrameError,
    frame_problem,
    read_header,
)


class MessageTooBig(Exception):
    """A frame would take its message past the size limit. Its header is
    consumed; ``frame_bytes`` more (the masking key and the payload) follow."""

    def __init__(self, frame_bytes: int):
        super().__init__(f"a frame of {frame_bytes} bytes takes the message past the limit")
        self.frame_bytes = frame_bytes


class FrameReader:
    """The client's frames out of the bytes read so far, checked and unmasked."""

    def __init__(self, max_message_size: int):
        self.buffer = bytearray()  # what the socket read, from the last compact on
        self.max_message_size = max_message_size
        self._pos = 0  # where the next frame starts in ``buffer``
        self._fragments: bytearray | None = None  # a fragmented message so far
        self._fragments_opcode = OP_TEXT

    def next_frame(self) -> tuple[int, bytes] | None:
        """The next whole message or control frame as ``(opcode, payload)``,
        a fragmented message's as ``OP_TEXT`` or ``OP_BINARY``; None until
        more bytes come. Raises ``FrameError`` for a frame RFC 6455 forbids
        (it is consumed) and ``MessageTooBig`` past the size limit."""
        buf = self.buffer
        while True:
            header = read_header(buf, self._pos)
            if header is None:
                return None
            first, masked, length, start = header
            fragments = self._fragments
            if length + (len(fragments) if fragments is not None else 0) > self.max_message_size:
                self._pos = start
                raise MessageTooBig(length + (MASK_BYTES if masked else 0))
            data_start = start + MASK_BYTES if masked else start
            end = data_start + length
            if end > len(buf):
                return None
            problem = frame_problem(first, masked, length, fragments is not None)
            self._pos = end
            if problem:
                raise FrameError(CLOSE_PROTOCOL_ERROR, problem)
            data = _websocket_mask(bytes(buf[start:data_start]), bytes(buf[data_start:end]))
            frame = self._join(first, data)
            if frame is not None:
                return frame

    def skip(self, count: int) -> int:
        """Drop up to ``count`` unread bytes (a refused frame's); how many were dropped."""
        dropped = min(count, len(self.buffer) - self._pos)
        self._pos += dropped
        return dropped

    def compact(self) -> None:
        """Forget the bytes already taken out (after a run of ``next_frame``)."""
        del self.buffer[: self._pos]
        self._pos = 0

    def _join(self, first: int, data: bytes) -> tuple[int, bytes] | None:
        """A frame as it comes out: None while its message is still fragmented."""
        opcode = first & OPCODE_BITS
        if opcode == OP_CONTINUATION:
            fragments = self._fragments
            if fragments is None:  # frame_problem has refused it already
                raise FrameError(CLOSE_PROTOCOL_ERROR, "continuation without a message")
            fragments.extend(data)
            if not first & FIN_BIT:
                return None
            self._fragments = None
            return self._fragments_opcode, bytes(fragments)
        if opcode in (OP_TEXT, OP_BINARY) and not first & FIN_BIT:
            self._fragments_opcode, self._fragments = opcode, bytearray(data)
            return None
        return opcode, data
