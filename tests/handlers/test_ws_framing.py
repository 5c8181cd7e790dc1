"""RFC 6455 at the framing layer (handlers/ws_protocol.py, handlers/ws_frames.py), over a
raw TCP socket.

The handshake and every frame are built by hand so that each bit is ours to
get wrong; the server's close frame is parsed for its code, and TCP must then
be closed by the server.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import os
import socket
import struct
import time
import urllib.parse

import pytest

from tests.helpers import ServerProcess, make_store

TEXT, BINARY, CLOSE, PING, PONG, CONTINUATION = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0
STORE_WS = "/v1/chat/store/ws/"


class RawSocket:
    """A WebSocket client that writes frames bit by bit and reads the server's."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, server, key: str | None = None) -> RawSocket:
        port = urllib.parse.urlsplit(server.url).port
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        nonce = base64.b64encode(os.urandom(16)).decode()
        auth = f"Authorization: Token {key}\r\n" if key else ""
        writer.write(
            (
                f"GET {STORE_WS} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {nonce}\r\nSec-WebSocket-Version: 13\r\n"
                f"{auth}\r\n"
            ).encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 101 "), head
        accept = base64.b64encode(
            hashlib.sha1((nonce + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
        )
        assert b"Sec-Websocket-Accept: " + accept in head, head
        return cls(reader, writer)

    async def send_frame(
        self,
        opcode: int,
        payload: bytes = b"",
        fin: bool = True,
        masked: bool = True,
        rsv: int = 0,
        length: int | None = None,
    ) -> None:
        """One frame; ``length`` overrides the announced payload length."""
        length = len(payload) if length is None else length
        head = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
        mask_bit = 0x80 if masked else 0
        if length < 126:
            head += bytes([mask_bit | length])
        elif length <= 0xFFFF:
            head += bytes([mask_bit | 126]) + struct.pack("!H", length)
        else:
            head += bytes([mask_bit | 127]) + struct.pack("!Q", length)
        if masked:
            mask = os.urandom(4)
            head += mask
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.writer.write(head + payload)
        await self.writer.drain()

    async def send_close(self, code: int | None = None, reason: bytes = b"") -> None:
        await self.send_frame(
            CLOSE, (struct.pack("!H", code) if code is not None else b"") + reason
        )

    async def read_frame(self, timeout: float = 5.0) -> tuple[int, bytes]:
        """The server's next frame as (opcode, payload); servers never mask."""
        first, second = await asyncio.wait_for(self.reader.readexactly(2), timeout)
        assert not first & 0x70 and not second & 0x80, (first, second)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
        return first & 0x0F, await asyncio.wait_for(self.reader.readexactly(length), timeout)

    async def read_json(self) -> dict:
        opcode, payload = await self.read_frame()
        assert opcode == TEXT, (opcode, payload)
        return json.loads(payload)

    async def closed_with(self) -> int | None:
        """The code of the server's close frame (None if it had none), once the
        server has also closed TCP. Frames before the close must be JSON text."""
        while True:
            opcode, payload = await self.read_frame()
            if opcode == CLOSE:
                break
            assert opcode == TEXT, (opcode, payload)
        rest = await asyncio.wait_for(self.reader.read(), 5)  # EOF: the server closed TCP
        assert rest == b"", rest
        assert len(payload) != 1, payload
        payload[2:].decode("utf-8")  # the server's reason is valid UTF-8 too
        return struct.unpack("!H", payload[:2])[0] if payload else None

    def close(self) -> None:
        self.writer.close()


@pytest.fixture(autouse=True)
def no_traceback_in_server_log(caplog):
    """Runs around each test, its check after the server's shutdown: nothing
    logged an error or a traceback."""
    caplog.set_level(logging.DEBUG)  # a traceback at any level counts
    yield
    records = caplog.get_records("setup") + caplog.get_records("call") + caplog.records
    bad = [r for r in records if r.exc_info or r.levelno >= logging.ERROR]
    assert not bad, [r.getMessage() for r in bad]


# --- protocol errors: close 1002, then TCP closed -------------------------------------
PROTOCOL_ERRORS = {
    "unmasked_frame": [(TEXT, b'{"type": "ping"}', {"masked": False})],
    "unmasked_close": [(CLOSE, struct.pack("!H", 1000), {"masked": False})],
    "rsv1_without_extension": [(TEXT, b"{}", {"rsv": 4})],
    "rsv2_without_extension": [(BINARY, b"{}", {"rsv": 2})],
    "rsv3_on_a_ping": [(PING, b"", {"rsv": 1})],
    "unknown_data_opcode": [(0x3, b"x", {})],
    "unknown_control_opcode": [(0xB, b"x", {})],
    "fragmented_ping": [(PING, b"a", {"fin": False})],
    "ping_of_126_bytes": [(PING, b"p" * 126, {})],
    "close_of_126_bytes": [(CLOSE, struct.pack("!H", 1000) + b"r" * 124, {})],
    "continuation_without_a_start": [(CONTINUATION, b"x", {})],
    "final_continuation_without_a_start": [(CONTINUATION, b"x", {"fin": False})],
    "new_text_inside_a_fragmented_message": [(TEXT, b'{"ty', {"fin": False}), (TEXT, b"{}", {})],
    "new_binary_inside_a_fragmented_message": [
        (BINARY, b"\x81", {"fin": False}),
        (BINARY, b"\x80", {}),
    ],
    "close_with_a_1_byte_payload": [(CLOSE, b"\x03", {})],
}


@pytest.mark.gen_test
@pytest.mark.parametrize("frames", PROTOCOL_ERRORS.values(), ids=PROTOCOL_ERRORS.keys())
async def test_a_protocol_error_closes_with_1002_then_drops_tcp(server, frames):
    sock = await RawSocket.connect(server)
    for opcode, payload, options in frames:
        await sock.send_frame(opcode, payload, **options)
    assert await sock.closed_with() == 1002
    sock.close()


@pytest.mark.gen_test
async def test_a_protocol_error_after_auth_also_closes_with_1002(server):
    _, key = await make_store(server)
    sock = await RawSocket.connect(server, key)
    assert (await sock.read_json())["type"] == "hello"
    await sock.send_frame(TEXT, b'{"type": "ping"}', masked=False)
    assert await sock.closed_with() == 1002
    sock.close()


# --- close codes -----------------------------------------------------------------------
@pytest.mark.gen_test
@pytest.mark.parametrize(
    "code", [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]
)
async def test_an_invalid_or_reserved_close_code_is_answered_with_1002_never_echoed(server, code):
    sock = await RawSocket.connect(server)
    await sock.send_close(code, b"bye")
    assert await sock.closed_with() == 1002
    sock.close()


@pytest.mark.gen_test
@pytest.mark.parametrize("code", [1000, 1001, 1003, 1011, 3000, 4000, 4999])
async def test_a_valid_close_code_is_echoed(server, code):
    sock = await RawSocket.connect(server)
    await sock.send_close(code, "à bientôt".encode())
    assert await sock.closed_with() == code
    sock.close()


@pytest.mark.gen_test
async def test_a_close_without_a_code_is_answered_by_a_close_without_a_code(server):
    sock = await RawSocket.connect(server)
    await sock.send_close()
    assert await sock.closed_with() is None
    sock.close()


# --- invalid UTF-8: 1007 ---------------------------------------------------------------
@pytest.mark.gen_test
@pytest.mark.parametrize(
    "payload",
    [
        b'{"body": "\xff"}',
        b"\xed\xa0\x80",  # a lone surrogate
        b"\xc3",
    ],
    ids=["bad_byte", "surrogate", "truncated"],
)
async def test_invalid_utf8_in_a_text_message_closes_with_1007(server, payload):
    sock = await RawSocket.connect(server)
    await sock.send_frame(TEXT, payload)
    assert await sock.closed_with() == 1007
    sock.close()


@pytest.mark.gen_test
async def test_invalid_utf8_across_fragments_closes_with_1007(server):
    sock = await RawSocket.connect(server)
    await sock.send_frame(TEXT, b'{"a": "\xc3', fin=False)
    await sock.send_frame(CONTINUATION, b'("}')  # \xc3 must be followed by 0x80-0xBF
    assert await sock.closed_with() == 1007
    sock.close()


@pytest.mark.gen_test
async def test_invalid_utf8_in_a_close_reason_closes_with_1007(server):
    sock = await RawSocket.connect(server)
    await sock.send_close(1000, b"\xff\xfe")
    assert await sock.closed_with() == 1007
    sock.close()


# --- what stays as it was --------------------------------------------------------------
@pytest.mark.gen_test
async def test_a_frame_over_the_size_limit_still_closes_with_1009(server):
    sock = await RawSocket.connect(server)
    # Only the header: the server refuses the frame before any of it arrives,
    # then waits for the rest of it (so a client still sending is not reset)
    # until the client gives up and closes its side.
    await sock.send_frame(BINARY, length=server.config["websocket"]["max_message_bytes"] + 1)
    opcode, payload = await sock.read_frame()
    assert (opcode, struct.unpack("!H", payload[:2])[0]) == (CLOSE, 1009)
    sock.writer.write_eof()
    assert await asyncio.wait_for(sock.reader.read(), 5) == b""  # then TCP is closed
    sock.close()


@pytest.mark.gen_test
async def test_well_formed_masked_frames_still_work_after_header_auth(server):
    _, key = await make_store(server)
    sock = await RawSocket.connect(server, key)
    assert (await sock.read_json())["type"] == "hello"
    await sock.send_frame(TEXT, b'{"type": "ping", "ref": 1}')
    assert await sock.read_json() == {"type": "pong", "ref": 1}
    # A message split inside a character, with a ping between its fragments.
    text = json.dumps({"type": "ping", "ref": "café"}, ensure_ascii=False).encode()
    cut = text.index("é".encode()) + 1
    await sock.send_frame(TEXT, text[:cut], fin=False)
    await sock.send_frame(PING, b"are you there")
    assert await sock.read_frame() == (PONG, b"are you there")
    await sock.send_frame(CONTINUATION, text[cut:])
    assert await sock.read_json() == {"type": "pong", "ref": "café"}
    await sock.send_close(1000)
    assert await sock.closed_with() == 1000
    sock.close()


def masked_frame(opcode: int, payload: bytes) -> bytes:
    """One final client frame, masked with a random key."""
    mask = os.urandom(4)
    head = bytes([0x80 | opcode]) + (
        bytes([0x80 | len(payload)])
        if len(payload) < 126
        else bytes([0x80 | 126]) + struct.pack("!H", len(payload))
    )
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


@pytest.mark.gen_test
async def test_frames_sent_with_the_handshake_are_handled_in_order_after_auth(server, api):
    # The upgrade request, an auth frame and two messages in one write: the
    # server reads past the handshake before it takes the socket over, and
    # must still handle each frame once, in order, the messages after auth.
    _, key = await make_store(server)
    port = urllib.parse.urlsplit(server.url).port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    nonce = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET {STORE_WS} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {nonce}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        + masked_frame(TEXT, json.dumps({"type": "auth", "token": key}).encode())
        + masked_frame(TEXT, b'{"type": "message", "body": "first", "ref": 1}')
        + masked_frame(TEXT, b'{"type": "message", "body": "second", "ref": 2}')
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101 "), head
    sock = RawSocket(reader, writer)
    assert (await sock.read_json())["type"] == "hello"
    first, second = await sock.read_json(), await sock.read_json()
    assert (first["type"], first["ref"], first["message"]["body"]) == ("ack", 1, "first")
    assert (second["type"], second["ref"], second["message"]["body"]) == ("ack", 2, "second")
    assert second["message"]["seq"] == first["message"]["seq"] + 1
    await sock.send_close(1000)
    assert await sock.closed_with() == 1000
    sock.close()


def _close_code_after_split_auth(port: int, delay: float) -> object:
    """Handshake + the first 3 bytes of an auth frame in one write, the rest
    ``delay`` later; the server's close code (the key is bad: 4001)."""
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    nonce = base64.b64encode(os.urandom(16)).decode()
    head = (
        f"GET /v1/chat/store/ws/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {nonce}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    frame = masked_frame(TEXT, b'{"type": "auth", "token": "not-a-key-of-ours"}')
    s.sendall(head + frame[:3])
    started = time.perf_counter()
    while time.perf_counter() - started < delay:
        pass
    s.sendall(frame[3:])
    s.settimeout(3)
    data = b""
    try:
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < 4:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    except TimeoutError:
        pass
    finally:
        s.close()
    body = data.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in data else b""
    return struct.unpack("!H", body[2:4])[0] if body[:1] == b"\x88" else ("no close", body)


def test_bytes_sent_with_the_handshake_stay_ahead_of_later_bytes_on_uvloop(db_url, processes):
    # server.py runs on uvloop, which ignores pause_reading() in connection_made:
    # bytes read by the new transport can land in the buffer before the bytes
    # Tornado had read past the handshake (``_take_over`` appends those last).
    srv = ServerProcess(db_url)
    processes.append(srv)
    srv.start()
    codes = [_close_code_after_split_auth(srv.port, (i % 30) * 0.0001) for i in range(300)]
    assert set(codes) == {4001}, codes
