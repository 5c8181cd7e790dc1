"""Review of f5fb0ff..main (issue 9 message path): failing tests for the defects found."""

from __future__ import annotations

import base64
import os
import socket
import struct
import time

import pytest

from tests.conftest import claimed_session
from tests.test_ws_framing import CLOSE, TEXT, RawSocket
from tests.helpers import ServerProcess


def masked_frame(opcode: int, payload: bytes) -> bytes:
    mask = os.urandom(4)
    return (bytes([0x80 | opcode, 0x80 | len(payload)]) + mask
            + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))


@pytest.mark.xfail(strict=True, reason="review finding, not fixed here: acks dropped by our close")
@pytest.mark.gen_test(timeout=30)
async def test_messages_then_close_in_one_write_still_get_their_acks(server, api):
    # Frames are handled in the order sent (docs/api.md): the close frame
    # comes after two messages, so their acks must go out before our close.
    store_key, _admin_key, _session = await claimed_session(server, api)
    sock = await RawSocket.connect(server, store_key)
    assert (await sock.read_json())["type"] == "hello"
    sock.writer.write(masked_frame(TEXT, b'{"type": "message", "body": "one", "ref": 1}')
                      + masked_frame(TEXT, b'{"type": "message", "body": "two", "ref": 2}')
                      + masked_frame(CLOSE, struct.pack("!H", 1000)))
    frames = []
    while True:
        opcode, payload = await sock.read_frame()
        if opcode == CLOSE:
            break
        frames.append(payload)
    sock.close()
    assert len(frames) == 2, frames  # main: [] (both messages stored, no ack)


def _close_code_after_split_auth(port: int, delay: float) -> object:
    """Handshake + the first 3 bytes of an auth frame in one write, the rest
    ``delay`` later; the server's close code (the key is bad: 4001)."""
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    nonce = base64.b64encode(os.urandom(16)).decode()
    head = (f"GET /v1/chat/store/ws/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {nonce}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()
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
    except socket.timeout:
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
    assert set(codes) == {4001}, codes  # main: a few 1002 or no close at all


# --- actors/runtime.py: commands started without a coroutine (start_now) -------------
import asyncio  # noqa: E402

from actors.runtime import Actor, ActorSystem  # noqa: E402


class Starter(Actor):
    """Posts ("post", n) start now and are answered by ``finish``; anything
    else goes through ``receive``. Records what overlaps ``on_start``."""

    def __init__(self) -> None:
        self.pending: list = []
        self.starting = False
        self.seen_while_starting: list = []
        self.starts = 0
        self.raise_in_start_now = False

    async def on_start(self) -> None:
        self.starts += 1
        self.starting = True
        await asyncio.sleep(0.05)
        self.starting = False

    def overlap_key(self, command):
        return "post" if command[0] == "post" else None

    def start_now(self, command, reply) -> bool:
        if command[0] != "post":
            return False
        if self.raise_in_start_now:
            raise RuntimeError("storage refused the hand-off")
        if self.starting:
            self.seen_while_starting.append(command)
        self.pending.append(reply)
        return True

    async def receive(self, command):
        if self.starting:
            self.seen_while_starting.append(command)
        return command


@pytest.mark.gen_test(timeout=10)
async def test_a_start_now_that_raises_does_not_wedge_the_actor():
    actor = Starter()
    system = ActorSystem(lambda key: actor)
    await system.ask(1, ("read", 0))  # started
    actor.raise_in_start_now = True
    with pytest.raises(RuntimeError):
        system.ask_with_reply(1, ("post", 1), lambda result, exc: None)
    # main: cell.running stays 1, so the mailbox loop never runs this:
    assert await asyncio.wait_for(system.ask(1, ("read", 2)), 2) == ("read", 2)
    await system.stop_all(1)


@pytest.mark.gen_test(timeout=10)
async def test_no_command_runs_while_a_restart_reloads_the_actor():
    actor = Starter()
    system = ActorSystem(lambda key: actor)
    await system.ask(1, ("read", 0))
    answers = []
    system.ask_with_reply(1, ("post", 1), lambda result, exc: answers.append((result, exc)))
    actor.pending.pop()(None, RuntimeError("disk I/O error"))  # unexpected: restart
    await asyncio.sleep(0.01)  # the loop is now in on_start (the restart)
    assert actor.starting and actor.starts == 2
    system.ask_with_reply(1, ("post", 2), lambda result, exc: answers.append((result, exc)))
    read = asyncio.ensure_future(system.ask(1, ("read", 3)))
    await asyncio.sleep(0.1)
    # main: both ran inside on_start (running was 0 while _RESTART was handled)
    assert actor.seen_while_starting == [], actor.seen_while_starting
    for reply in actor.pending:
        reply("ok", None)
    await read
    await system.stop_all(1)
