"""A chat socket's outgoing side: reply and event frames queued per loop pass,
written together, and a client that stops reading cut off.

``ChatSocket`` (``handlers/websocket.py``) mixes this in: frames come from its
frame handlers (``send``) and from the hub (``send_event``), and go out
through its ``FramedConnection``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import tornado.websocket

from actors import metrics
from actors.hub import Frame, Hub
from handlers import codec
from handlers.errors import WS_CLOSE_TRY_AGAIN_LATER
from handlers.ws_protocol import FramedConnection

log = logging.getLogger("chat.access")


class OutgoingFrames(tornado.websocket.WebSocketHandler):
    """The frames a socket sends: queued in one loop pass, written at its end
    in a single write (``_flush``), after which a close frame may follow."""

    # Set by the socket's ``initialize``.
    hub: Hub
    conn_id: int
    protocol: str
    # A client whose unsent frames pass this many bytes is cut off (it can resume).
    max_buffered_bytes: int
    _out: list[bytes]  # frames queued in this loop pass
    _out_bytes: int

    @property
    def connection(self) -> FramedConnection | None:
        """The socket's framing (``get_websocket_protocol`` makes every one a
        ``FramedConnection``); None before the handshake and once closed."""
        conn = self.ws_connection
        return conn if isinstance(conn, FramedConnection) else None

    def send(self, data: dict[str, Any]) -> None:
        """Send a reply frame (ack, error, hello, pong) to this socket only."""
        if data.get("ref", 0) is None:
            del data["ref"]
        self._queue(codec.encode(self.protocol, data), data["type"])

    def send_event(self, frame: Frame) -> None:
        """The hub's way in: must not block; cuts off a client that stopped reading."""
        self._queue(codec.encode_event(self.protocol, frame), frame.type)

    def _queue(self, payload: bytes, kind: str) -> None:
        """Queue one frame; every frame queued in one loop pass goes out in a
        single write when the pass ends (``_flush``), not one syscall each."""
        conn = self.connection
        if conn is None or not conn.writable():
            return
        pending = self._out_bytes + conn.buffered_bytes()
        if pending > self.max_buffered_bytes:
            log.warning("ws %d cut off: %d bytes unread", self.conn_id, pending)
            self._out, self._out_bytes = [], 0
            self.hub.remove(self.conn_id)
            self.close(WS_CLOSE_TRY_AGAIN_LATER, "Too slow; resume when ready.")
            return
        if not self._out:
            asyncio.get_running_loop().call_soon(self._flush)
        self._out.append(payload)
        self._out_bytes += len(payload)
        metrics.WS_FRAMES.labels("out", kind).inc()

    def _flush(self) -> None:
        """Write the frames queued in this loop pass (runs once per pass that queued)."""
        frames, self._out, self._out_bytes = self._out, [], 0
        conn = self.connection
        if not frames or conn is None or not conn.writable():
            return
        conn.write_frames(frames, binary=self.protocol == codec.MSGPACK)

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        """Close after the frames already queued (a close frame must come last)."""
        self._flush()
        super().close(code, reason)
