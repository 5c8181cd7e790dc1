"""A WebSocket's handover from Tornado: the 101 answer, then the socket moved
from Tornado's IOStream to an asyncio transport (``ws_protocol.FramedConnection``)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from tornado.iostream import IOStream
from tornado.websocket import WebSocketProtocol13

if TYPE_CHECKING:
    from tornado.websocket import WebSocketHandler


def answer_upgrade(handler: WebSocketHandler) -> str | None:
    """Answer the upgrade request with 101 (RFC 6455 4.2.2) and return the
    subprotocol the handler chose from the client's offer, if any."""
    offered = handler.request.headers.get("Sec-WebSocket-Protocol", "")
    subprotocol = handler.select_subprotocol([s.strip() for s in offered.split(",") if s.strip()])
    if subprotocol:
        handler.set_header("Sec-WebSocket-Protocol", subprotocol)
    handler.clear_header("Content-Type")
    handler.set_status(101)
    handler.set_header("Upgrade", "websocket")
    handler.set_header("Connection", "Upgrade")
    handler.set_header(
        "Sec-WebSocket-Accept",
        WebSocketProtocol13.compute_accept_value(handler.request.headers["Sec-WebSocket-Key"]),
    )
    handler.finish()
    return subprotocol


async def take_over_socket(
    stream: IOStream, loop: asyncio.AbstractEventLoop, protocol: asyncio.Protocol, buffer: bytearray
) -> None:
    """Move the socket from Tornado's IOStream to an asyncio transport whose
    protocol is ``protocol``; bytes Tornado read past the handshake go to
    ``buffer``. (IOStream internals, read once: the stream is detached, so
    nothing else of Tornado's uses it any more.)"""
    if stream.writing():  # the 101 answer: out before anything of ours
        await stream.write(b"")
    # Ahead of anything the transport reads: uvloop starts reading right
    # after connection_made, whatever pause_reading() said there.
    buffer += stream._read_buffer[: stream._read_buffer_size]
    sock = stream.socket
    stream.io_loop.remove_handler(sock)
    stream._state = None
    await loop.connect_accepted_socket(lambda: protocol, sock=sock)
