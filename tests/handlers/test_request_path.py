"""The lean REST request path (issue 9's claim storm): what it must still do.

Keys are read from storage on every request, on the event loop's thread when
the database answers at once and through the reader threads when it is locked;
a key changed by this process or by another one is refused at once. Headers
and bodies still have to arrive in time.
"""

from __future__ import annotations

import asyncio
import email.utils
import gc
import re
import socket
import sqlite3
import time

import pytest
from tornado import httputil

from actors.errors import ChatError
from handlers.base import APIHandler
from handlers.http_date import http_date
from storage.outcomes import ClaimOutcome, WriteOutcome
from storage.records import Role, SessionStatus
from storage.sqlite import SQLiteStorage
from tests.helpers import make_admin, make_store, open_session


@pytest.fixture
def sqlite_storage(tmp_path, io_loop):
    backend = SQLiteStorage(str(tmp_path / "auth.sqlite3"))
    io_loop.run_sync(backend.setup)
    yield backend
    io_loop.run_sync(backend.close)


@pytest.mark.gen_test
async def test_a_key_changed_through_this_storage_is_refused_by_the_next_lookup(sqlite_storage):
    admin, key = await sqlite_storage.create_admin("Dana", None)
    assert (await sqlite_storage.authenticate(key)).id == admin.id
    new = await sqlite_storage.rotate_key(Role.ADMIN, admin.id)
    assert await sqlite_storage.authenticate(key) is None
    assert (await sqlite_storage.authenticate(new)).id == admin.id
    assert await sqlite_storage.revoke_key(Role.ADMIN, admin.id)
    assert await sqlite_storage.authenticate(new) is None


@pytest.mark.gen_test
async def test_a_key_changed_by_another_connection_is_refused_by_the_next_lookup(sqlite_storage):
    store, key = await sqlite_storage.create_store("Tech", None, "https://x/l.png")
    who = await sqlite_storage.authenticate(key)
    assert (who.role, who.id, who.logo_url) == (Role.STORE, store.id, "https://x/l.png")
    other = sqlite3.connect(sqlite_storage.path, isolation_level=None)
    try:
        other.execute("UPDATE stores SET key_digest = 'x' WHERE id = ?", (store.id,))
    finally:
        other.close()
    assert await sqlite_storage.authenticate(key) is None


class LockedOnTheLoop(SQLiteStorage):
    """A real SQLite storage whose loop-thread read finds the database locked
    (a WAL reader meets SQLITE_BUSY only in rare moments, such as another
    process's recovery, which a test cannot stage reliably)."""

    def _lookup_now(self, digest):
        raise sqlite3.OperationalError("database is locked")


@pytest.mark.gen_test
async def test_a_lookup_that_finds_the_database_locked_is_read_by_a_reader_thread(tmp_path):
    storage = LockedOnTheLoop(str(tmp_path / "locked.sqlite3"))
    await storage.setup()
    try:
        admin, key = await storage.create_admin("Dana", None)
        assert (await storage.authenticate(key)).id == admin.id
        assert await storage.authenticate("0" * 40) is None
    finally:
        await storage.close()


@pytest.mark.gen_test
async def test_a_key_rotated_in_the_server_process_gets_401_on_the_next_request(server, api):
    admin, key = await make_admin(server)
    assert (await api.get("/admin/sessions/open/", key)).status == 200
    await server.storage.rotate_key(Role.ADMIN, admin.id)
    reply = await api.get("/admin/sessions/open/", key)
    assert (reply.status, reply.json) == (401, {"detail": "Invalid token."})


@pytest.mark.gen_test
async def test_session_writes_of_one_loop_pass_apply_in_the_order_submitted(sqlite_storage):
    store, _ = await sqlite_storage.create_store("Tech", None, None)
    dana, _ = await sqlite_storage.create_admin("Dana", None)
    eve, _ = await sqlite_storage.create_admin("Eve", None)
    sid = (await sqlite_storage.post_store_message(store.id, "Hello", None)).session.id
    # One pass, one savepoint: each write must see the ones submitted before it.
    claimed, released, taken, refused, closed = await asyncio.gather(
        sqlite_storage.claim_session(sid, dana, 0),
        sqlite_storage.release_session(sid, dana.id),
        sqlite_storage.claim_session(sid, eve, 0),
        sqlite_storage.claim_session(sid, dana, 0),
        sqlite_storage.close_session(sid, eve.id),
    )
    assert (claimed.outcome, released.outcome) == (ClaimOutcome.WON, WriteOutcome.DONE)
    assert (taken.outcome, taken.session.admin_id) == (ClaimOutcome.WON, eve.id)
    assert refused.outcome is ClaimOutcome.CONFLICT
    assert closed.outcome is WriteOutcome.DONE
    final = await sqlite_storage.get_session(sid)
    assert (final.status, final.admin_id) == (SessionStatus.CLOSED, eve.id)
    events = [m.event for m in await sqlite_storage.list_messages(sid, 0, 10)]
    assert events == [
        None,
        "admin_connected",
        "session_released",
        "admin_connected",
        "session_closed",
    ]


@pytest.mark.gen_test
async def test_refused_claims_are_freed_once_answered_without_the_gc(server, api):
    _, store_key = await make_store(server)
    _, winner = await make_admin(server, "Win")
    _, loser = await make_admin(server, "Lose")
    session = await open_session(api, store_key)
    claim = {"session_id": session["id"]}
    assert (await api.post("/admin/session/claim/", winner, claim)).status == 200
    gc.collect()
    gc.disable()
    try:
        # Ten at once: the first runs in its asker, the rest queue in the mailbox.
        replies = await asyncio.gather(
            *[api.post("/admin/session/claim/", loser, claim) for _ in range(10)]
        )
        assert [r.status for r in replies] == [409] * 10
        await asyncio.sleep(0.05)
        alive = [
            type(o).__name__ for o in gc.get_objects() if isinstance(o, (APIHandler, ChatError))
        ]
    finally:
        gc.enable()
    # Neither kept by the session's idle actor nor left in reference cycles
    # (which only the GC's full passes would free, at a cost per object alive).
    assert alive == []


# --- read deadlines (handlers/deadlines.py) ---------------------------------------------
def send_and_time_the_close(port: int, pieces: list[bytes], pause: float) -> tuple[float, bytes]:
    """Send ``pieces`` ``pause`` seconds apart, then read until the server
    closes; seconds from the first byte to the close, and what was read."""
    started = time.monotonic()
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        try:
            for i, piece in enumerate(pieces):
                if i:
                    time.sleep(pause)
                conn.sendall(piece)
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                received += chunk
        except (BrokenPipeError, ConnectionResetError):
            pass
    return time.monotonic() - started, received


def port_of(server) -> int:
    return int(server.url.rsplit(":", 1)[1])


def claim_request(key: str, session_id: int) -> bytes:
    body = b'{"session_id": %d}' % session_id
    return (
        b"POST /v1/chat/admin/session/claim/ HTTP/1.1\r\nHost: x\r\n"
        b"Authorization: Token "
        + key.encode()
        + b"\r\nContent-Length: %d\r\n\r\n" % len(body)
        + body
    )


class TestReadDeadlines:
    @pytest.fixture
    def overrides(self):
        return {"server": {"header_timeout_secs": 0.5, "body_timeout_secs": 0.5}}

    @pytest.mark.gen_test(timeout=20)
    async def test_an_authenticated_body_that_stops_arriving_is_cut_off(self, server):
        _, key = await make_admin(server)
        head = (
            b"POST /v1/chat/admin/session/claim/ HTTP/1.1\r\nHost: x\r\n"
            b"Authorization: Token " + key.encode() + b"\r\nContent-Length: 40\r\n\r\n{"
        )
        elapsed, received = await asyncio.get_running_loop().run_in_executor(
            None, send_and_time_the_close, port_of(server), [head], 0
        )
        assert received == b""  # closed, no answer to half a request
        assert 0.4 < elapsed < 3.0
        await asyncio.sleep(0.1)
        assert server.inflight.count == 0  # so a graceful shutdown does not wait for it

    @pytest.mark.gen_test(timeout=20)
    async def test_a_busy_keep_alive_connection_lives_and_an_idle_one_is_closed(self, server, api):
        _, store_key = await make_store(server)
        _, key = await make_admin(server)
        session = await open_session(api, store_key)
        # Eight requests 0.2 s apart: 1.4 s on one connection, each request in time.
        elapsed, received = await asyncio.get_running_loop().run_in_executor(
            None,
            send_and_time_the_close,
            port_of(server),
            [claim_request(key, session["id"])] * 8,
            0.2,
        )
        assert received.count(b"HTTP/1.1 200 OK") == 8
        # Then idle: closed by the header deadline, within a timer tick of it.
        assert 1.4 + 0.4 < elapsed < 1.4 + 3.0


# --- response headers and the connection (handlers/http_date.py, ChatHTTPServer) -------
def _assert_current_date(value: str) -> None:
    sent = email.utils.parsedate_to_datetime(value).timestamp()
    assert abs(sent - time.time()) <= 2, value
    assert value.endswith(" GMT")


@pytest.mark.gen_test
async def test_answers_and_refusals_carry_a_current_date_and_tornados_other_headers(server, api):
    _, store_key = await make_store(server)
    _, first_key = await make_admin(server, "Ann")
    _, second_key = await make_admin(server, "Bob")
    session = await open_session(api, store_key)
    won = await api.post("/admin/session/claim/", first_key, {"session_id": session["id"]})
    lost = await api.post("/admin/session/claim/", second_key, {"session_id": session["id"]})
    assert (won.status, lost.status) == (200, 409)
    assert lost.json == {"detail": "Session already claimed."}
    for reply in (won, lost):
        _assert_current_date(reply.headers["Date"])
        assert reply.headers["Server"].startswith("TornadoServer/")
        assert reply.headers["Content-Type"] == "application/json"


def test_the_date_follows_the_clock_across_a_second():
    first = http_date()
    assert first in (httputil.format_timestamp(int(time.time()) - d) for d in (0, 1))
    time.sleep(1.05 - time.time() % 1)  # into the next second
    second = http_date()
    assert second != first
    assert second == httputil.format_timestamp(int(time.time()))


@pytest.mark.gen_test
async def test_nagle_stays_off_on_a_kept_alive_connection_between_requests(server):
    _, key = await make_admin(server)
    port = int(server.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for _ in range(2):
            writer.write(
                b"GET /v1/chat/admin/sessions/open/ HTTP/1.1\r\nHost: x\r\n"
                b"Authorization: Token %s\r\n\r\n" % key.encode()
            )
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 ")
            length = int(re.search(rb"Content-Length: (\d+)", head).group(1))
            await reader.readexactly(length)
            # The server's end of this connection, between two requests:
            # Tornado alone would have turned Nagle back on here.
            [conn] = [c for srv in server.servers for c in srv._connections]
            sock = conn.stream.socket
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        writer.close()


# --- claims, releases and closes queued together (storage/sqlite.py KnownSessions) ------
@pytest.mark.gen_test
async def test_session_writes_queued_together_are_decided_in_order_from_one_read(sqlite_storage):
    """Submitted together, these reach the writer in one group; each must be
    decided on the row the previous one left (one read, then what was written)."""
    storage = sqlite_storage
    store, _ = await storage.create_store("Tech", None, None)
    other_store, _ = await storage.create_store("Shoes", None, None)
    admins = [(await storage.create_admin(name, None))[0] for name in ("Ann", "Bob", "Cy")]
    ann, bob, cy = admins
    session = (await storage.post_store_message(store.id, "hi", None)).session
    held = (await storage.post_store_message(other_store.id, "hello", None)).session
    assert (await storage.claim_session(held.id, cy, 0)).outcome is ClaimOutcome.WON
    sid = session.id
    results = await asyncio.gather(
        storage.claim_session(sid, cy, 1),  # cy is at the limit of 1
        storage.claim_session(sid, ann, 0),  # wins
        storage.claim_session(sid, bob, 0),  # refused: held by ann
        storage.claim_session(sid, ann, 0),  # ann again: already hers
        storage.release_session(sid, bob.id),  # not bob's
        storage.release_session(sid, ann.id),  # back to the queue
        storage.claim_session(sid, bob, 0),  # wins the released session
        storage.claim_session(sid, ann, 0),  # refused: held by bob
        storage.close_session(sid, bob.id),  # closed
        storage.claim_session(sid, ann, 0),
    )  # refused: closed
    assert [r.outcome for r in results] == [
        ClaimOutcome.LIMIT,
        ClaimOutcome.WON,
        ClaimOutcome.CONFLICT,
        ClaimOutcome.ALREADY_HELD,
        WriteOutcome.FORBIDDEN,
        WriteOutcome.DONE,
        ClaimOutcome.WON,
        ClaimOutcome.CONFLICT,
        WriteOutcome.DONE,
        ClaimOutcome.CLOSED,
    ]
    holders = [(r.session.status, r.session.admin_id) for r in results]
    assert holders == [
        (SessionStatus.OPEN, None),
        (SessionStatus.CLAIMED, ann.id),
        (SessionStatus.CLAIMED, ann.id),
        (SessionStatus.CLAIMED, ann.id),
        (SessionStatus.CLAIMED, ann.id),
        (SessionStatus.OPEN, None),
        (SessionStatus.CLAIMED, bob.id),
        (SessionStatus.CLAIMED, bob.id),
        (SessionStatus.CLOSED, bob.id),
        (SessionStatus.CLOSED, bob.id),
    ]
    # Every answer is the row as stored at that point: the last equals a fresh read.
    assert results[-1].session == await storage.get_session(sid)
    messages = await storage.list_messages(sid, 0, 100)
    assert [m.seq for m in messages] == list(range(1, len(messages) + 1))
    assert [m.event for m in messages[1:]] == [
        "admin_connected",
        "session_released",
        "admin_connected",
        "session_closed",
    ]
    assert results[-1].session.last_seq == messages[-1].seq
