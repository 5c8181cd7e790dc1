"""A lean WebSocket client for load generation (bench only, 127.0.0.1 only).

The server's cost per message is what the benchmark judges, so the load
generator must cost less than the server: no task per frame, no future per
send. Each ``WSClient`` is an ``asyncio.Protocol`` that parses unmasked server
frames by hand and calls ``on_frame(text)`` for each; sends are masked with a
zero key (valid per RFC 6455, and free to apply).
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
from collections.abc import Callable

_HANDSHAKE_TIMEOUT_SECS = 10.0
# A zero masking key: the payload goes out as it is (RFC 6455 allows any key).
_ZERO_MASK = b"\x00\x00\x00\x00"


def encode_client_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """One masked client frame (FIN set)."""
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n <= 0xFFFF:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return header + _ZERO_MASK + payload


class WSClient(asyncio.Protocol):
    def __init__(
        self, host: str, path: str, headers: dict[str, str], on_frame: Callable[[bytes], None]
    ):
        self.host, self.path, self.headers = host, path, headers
        self.on_frame = on_frame
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.handshaken = asyncio.get_running_loop().create_future()
        self.closed = asyncio.get_running_loop().create_future()

    # --- connection -----------------------------------------------------
    @classmethod
    async def connect(
        cls,
        port: int,
        path: str,
        on_frame: Callable[[bytes], None],
        key: str | None = None,
        protocol: str = "json",
    ) -> WSClient:
        headers = {"Sec-WebSocket-Protocol": protocol}
        if key:
            headers["Authorization"] = f"Token {key}"
        loop = asyncio.get_running_loop()
        _transport, client = await loop.create_connection(
            lambda: cls(f"127.0.0.1:{port}", path, headers, on_frame), "127.0.0.1", port
        )
        await asyncio.wait_for(client.handshaken, _HANDSHAKE_TIMEOUT_SECS)
        return client

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream socket's transport: an asyncio.Transport (declared as its base).
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            import socket

            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {self.path} HTTP/1.1",
            f"Host: {self.host}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ]
        lines += [f"{k}: {v}" for k, v in self.headers.items()]
        # An asyncio.Transport (declared as its base), as in connection_made.
        transport.write(("\r\n".join(lines) + "\r\n\r\n").encode())  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.handshaken.done():
            self.handshaken.set_exception(ConnectionError("closed during the handshake"))
        if not self.closed.done():
            self.closed.set_result(None)

    def send(self, payload: bytes) -> None:
        self.transport.write(encode_client_frame(payload))

    def send_many(self, payloads: list[bytes]) -> None:
        self.transport.write(b"".join(encode_client_frame(p) for p in payloads))

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(encode_client_frame(struct.pack("!H", 1000), 0x8))
            self.transport.close()

    # --- frames -----------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        if not self.handshaken.done():
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buf[: buf.find(b"\r\n")])
            del buf[: end + 4]
            if b" 101 " not in status:
                self.handshaken.set_exception(ConnectionError(status.decode(errors="replace")))
                return
            self.handshaken.set_result(None)
        pos, n = 0, len(buf)
        while n - pos >= 2:
            opcode = buf[pos] & 0x0F
            length = buf[pos + 1] & 0x7F
            start = pos + 2
            if length == 126:
                if n - pos < 4:
                    break
                length = (buf[pos + 2] << 8) | buf[pos + 3]
                start = pos + 4
            elif length == 127:
                if n - pos < 10:
                    break
                length = struct.unpack_from("!Q", buf, pos + 2)[0]
                start = pos + 10
            end = start + length
            if end > n:
                break
            if opcode in (0x1, 0x2):
                self.on_frame(bytes(buf[start:end]))
            elif opcode == 0x8:
                self.transport.close()
            elif opcode == 0x9:  # ping: answer with a pong
                self.transport.write(encode_client_frame(bytes(buf[start:end]), 0xA))
            pos = end
        if pos:
            del buf[:pos]
