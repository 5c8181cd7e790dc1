"""The WebSockets: auth, audiences, acks, msgpack, bad frames, liveness bounds."""

from __future__ import annotations

import asyncio
import socket

import msgpack
import pytest
import tornado.httpclient

from tests.helpers import Socket, claimed_session, make_admin, make_store, open_session


async def admin_socket(server, key, **kw) -> Socket:
    sock = await Socket.connect(server.ws_url + "/v1/chat/admin/ws/", key, **kw)
    assert (await sock.recv())["type"] == "hello"
    return sock


async def store_socket(server, key, **kw) -> Socket:
    sock = await Socket.connect(server.ws_url + "/v1/chat/store/ws/", key, **kw)
    assert (await sock.recv())["type"] == "hello"
    return sock


# --- auth and handshake ------------------------------------------------------------
@pytest.mark.gen_test
async def test_header_auth_says_hello_with_the_principal(server):
    admin, key = await make_admin(server, "Dana")
    sock = await Socket.connect(server.ws_url + "/v1/chat/admin/ws/", key)
    assert await sock.recv() == {
        "type": "hello",
        "admin": {"id": admin.id, "name": "Dana", "email": "dana@example.com"},
    }


@pytest.mark.gen_test
async def test_first_frame_auth_works_for_browsers(server):
    store, key = await make_store(server)
    sock = await Socket.connect(server.ws_url + "/v1/chat/store/ws/")
    await sock.send({"type": "auth", "token": key})
    hello = await sock.recv()
    assert hello["type"] == "hello" and hello["store"]["id"] == store.id


@pytest.mark.gen_test
async def test_a_bad_key_closes_with_4001_by_header_or_frame(server):
    sock = await Socket.connect(server.ws_url + "/v1/chat/store/ws/", "f" * 40)
    assert await sock.recv() is None and sock.close_code == 4001
    sock = await Socket.connect(server.ws_url + "/v1/chat/store/ws/")
    await sock.send({"type": "auth", "token": "f" * 40})
    assert await sock.recv() is None and sock.close_code == 4001


@pytest.mark.gen_test
async def test_a_key_of_the_wrong_kind_closes_with_4003(server):
    _, store_key = await make_store(server)
    _, admin_key = await make_admin(server)
    sock = await Socket.connect(server.ws_url + "/v1/chat/admin/ws/", store_key)
    assert await sock.recv() is None and sock.close_code == 4003
    sock = await Socket.connect(server.ws_url + "/v1/chat/store/ws/")
    await sock.send({"type": "auth", "token": admin_key})
    assert await sock.recv() is None and sock.close_code == 4003


@pytest.mark.gen_test
async def test_any_frame_before_auth_closes_with_4001(server):
    sock = await Socket.connect(server.ws_url + "/v1/chat/store/ws/")
    await sock.send({"type": "message", "body": "sneaky"})
    assert await sock.recv() is None and sock.close_code == 4001
    sock = await Socket.connect(server.ws_url + "/v1/chat/store/ws/")
    await sock.send_raw("{not json")
    assert await sock.recv() is None and sock.close_code == 4001


class TestAuthTimeout:
    @pytest.fixture
    def overrides(self):
        return {"websocket": {"auth_timeout_secs": 0.2}}

    @pytest.mark.gen_test
    async def test_no_auth_frame_in_time_closes_with_4001(self, server):
        sock = await Socket.connect(server.ws_url + "/v1/chat/store/ws/")
        assert await sock.recv(timeout=3) is None and sock.close_code == 4001


@pytest.mark.gen_test
async def test_a_foreign_origin_is_refused_and_the_same_host_allowed(server):
    _, key = await make_store(server)
    url = server.ws_url + "/v1/chat/store/ws/"
    with pytest.raises(tornado.httpclient.HTTPClientError) as refused:
        await Socket.connect(url, key, origin="https://evil.example")
    assert refused.value.code == 403
    host = server.url.split("//", 1)[1]
    sock = await Socket.connect(url, key, origin=f"http://{host}")
    assert (await sock.recv())["type"] == "hello"


class TestAllowedOrigins:
    @pytest.fixture
    def overrides(self):
        return {"server": {"allowed_origins": ["https://shop.example"]}}

    @pytest.mark.gen_test
    async def test_a_configured_origin_is_allowed(self, server):
        _, key = await make_store(server)
        sock = await Socket.connect(
            server.ws_url + "/v1/chat/store/ws/", key, origin="https://shop.example"
        )
        assert (await sock.recv())["type"] == "hello"


# --- audiences ---------------------------------------------------------------------------
@pytest.mark.gen_test(timeout=30)
async def test_each_event_reaches_exactly_its_audience(server, api):
    _store_a, key_a = await make_store(server, "A")
    _, key_b = await make_store(server, "B")
    dana, dana_key = await make_admin(server, "Dana")
    _, omar_key = await make_admin(server, "Omar")
    sa, sb = await store_socket(server, key_a), await store_socket(server, key_b)
    d, o = await admin_socket(server, dana_key), await admin_socket(server, omar_key)

    opened = await open_session(api, key_a, "hello")
    sid = opened["id"]
    for admin in (d, o):
        frame = await admin.recv_type("session_opened")
        assert frame["session"]["id"] == sid and frame["session"]["status"] == "open"
    assert (await sa.recv_type("message"))["message"]["body"] == "hello"

    await api.post("/admin/session/claim/", dana_key, {"session_id": sid})
    connected = await sa.recv_type("admin_connected")
    assert connected == {
        "type": "admin_connected",
        "session_id": sid,
        "admin": {"id": dana.id, "name": "Dana"},
    }
    system = await sa.recv_type("message")
    assert system["message"]["event"] == "admin_connected"
    for admin in (d, o):
        claimed = await admin.recv_type("session_claimed")
        assert claimed["session"]["admin_id"] == dana.id

    await api.post("/admin/message/", dana_key, {"session_id": sid, "body": "hi from Dana"})
    assert (await sa.recv_type("message"))["message"]["body"] == "hi from Dana"
    dana_view = [
        f["message"]["body"] for f in await d.expect_silence(0.3) if f["type"] == "message"
    ]
    assert dana_view == ["Dana joined the chat", "hi from Dana"]

    await sa.send({"type": "typing"})
    assert await d.recv_type("typing") == {"type": "typing", "session_id": sid, "sender": "store"}
    await api.post("/admin/session/close/", dana_key, {"session_id": sid})
    assert (await sa.recv_type("session_closed"))["session"]["status"] == "closed"
    assert (await d.recv_type("session_closed"))["session"]["id"] == sid
    omar_saw = [f["type"] for f in await o.expect_silence(0.3)]
    assert omar_saw == ["session_closed"]  # never a message or typing of Dana's session
    assert await sb.expect_silence(0.3) == []  # store B heard nothing of store A


@pytest.mark.gen_test
async def test_a_release_tells_every_admin(server, api):
    _, key = await make_store(server)
    _, dana_key = await make_admin(server, "Dana")
    _, omar_key = await make_admin(server, "Omar")
    sid = (await open_session(api, key))["id"]
    await api.post("/admin/session/claim/", dana_key, {"session_id": sid})
    o = await admin_socket(server, omar_key)
    await api.post("/admin/session/release/", dana_key, {"session_id": sid})
    released = await o.recv_type("session_released")
    assert released["session"]["status"] == "open" and released["session"]["admin_id"] is None


@pytest.mark.gen_test
async def test_every_socket_of_one_store_gets_the_events(server, api):
    _, key = await make_store(server)
    _, dana_key = await make_admin(server)
    tabs = [await store_socket(server, key) for _ in range(3)]
    sid = (await open_session(api, key))["id"]
    await api.post("/admin/session/claim/", dana_key, {"session_id": sid})
    for tab in tabs:
        assert (await tab.recv_type("admin_connected"))["session_id"] == sid


# --- frames ------------------------------------------------------------------------------
@pytest.mark.gen_test
async def test_a_message_is_acked_only_once_stored_and_is_in_the_rest_history(server, api):
    _, key = await make_store(server)
    sock = await store_socket(server, key)
    ack = await sock.request({"type": "message", "body": "over ws", "client_id": "w1"})
    assert ack["type"] == "ack" and ack["message"]["body"] == "over ws"
    history = (await api.get("/store/session/", key)).json
    assert history["messages"][-1] == ack["message"]


@pytest.mark.gen_test
async def test_json_and_msgpack_clients_talk_in_one_conversation(server, api):
    _, store_key = await make_store(server)
    _, admin_key = await make_admin(server)
    store = await store_socket(server, store_key, protocol="msgpack")
    assert store.conn.selected_subprotocol == "msgpack"
    admin = await admin_socket(server, admin_key, protocol="json")
    ack = await store.request({"type": "message", "body": "binary hello"})
    sid = ack["message"]["session_id"]
    await admin.recv_type("session_opened")
    await api.post("/admin/session/claim/", admin_key, {"session_id": sid})
    reply = await admin.request({"type": "message", "session_id": sid, "body": "text reply"})
    assert reply["type"] == "ack"
    got = await store.recv_type("message")
    while got["message"]["sender"] != "admin":
        got = await store.recv_type("message")
    assert got["message"]["body"] == "text reply"


@pytest.mark.gen_test
async def test_msgpack_frames_are_binary(server):
    _, key = await make_store(server)
    sock = await Socket.connect(server.ws_url + "/v1/chat/store/ws/", key, protocol="msgpack")
    raw = await sock.conn.read_message()
    assert isinstance(raw, bytes) and msgpack.unpackb(raw)["type"] == "hello"


@pytest.mark.gen_test
async def test_bad_frames_get_error_frames_and_the_socket_stays_usable(server):
    _, store_key = await make_store(server)
    _, admin_key = await make_admin(server)
    sock = await store_socket(server, store_key)
    await sock.send_raw("{not json")
    error = await sock.recv()
    assert error["type"] == "error" and error["status"] == 400
    assert error["detail"].startswith("JSON parse error - ")
    error = await sock.request({"type": "dance"}, answer="none")
    assert error["status"] == 400 and error["errors"] == {
        "type": ['"dance" is not a valid choice.']
    }
    error = await sock.request({"type": "message"}, answer="ack")
    assert error["type"] == "error" and error["errors"] == {"body": ["This field is required."]}
    error = await sock.request({"type": "message", "body": 5}, answer="ack")
    assert error["errors"] == {"body": ["Not a valid string."]}
    await sock.send_raw("[1, 2]")
    assert (await sock.recv())["status"] == 400
    error = await sock.request({"type": ["message"]}, answer="none")
    assert error["status"] == 400 and "type" in error["errors"]
    error = await sock.request({"type": "auth", "token": store_key}, answer="none")
    assert error["status"] == 400  # already authenticated
    admin = await admin_socket(server, admin_key)
    error = await admin.request({"type": "message", "session_id": "5", "body": "x"})
    assert error["errors"] == {"session_id": ["A valid integer is required."]}
    error = await admin.request({"type": "resume", "session_id": 999, "after_seq": 0})
    assert (error["status"], error["detail"]) == (404, "Not found.")
    # still open and working
    assert (await sock.request({"type": "ping"}, answer="pong"))["type"] == "pong"
    assert (await sock.request({"type": "message", "body": "fine"}))["type"] == "ack"


@pytest.mark.gen_test
async def test_authorization_is_checked_on_every_frame(server, api):
    _, store_key = await make_store(server)
    _, dana_key = await make_admin(server, "Dana")
    _, omar_key = await make_admin(server, "Omar")
    sid = (await open_session(api, store_key))["id"]
    omar = await admin_socket(server, omar_key)
    await api.post("/admin/session/claim/", dana_key, {"session_id": sid})
    for frame in (
        {"type": "message", "session_id": sid, "body": "x"},
        {"type": "resume", "session_id": sid, "after_seq": 0},
    ):
        error = await omar.request(frame)
        assert (error["type"], error["status"]) == ("error", 403)
    await omar.send({"type": "typing", "session_id": sid, "ref": "t"})
    assert (await omar.recv_type("error"))["status"] == 403


@pytest.mark.gen_test
async def test_a_frame_over_the_size_limit_closes_with_1009(server):
    _, key = await make_store(server)
    sock = await store_socket(server, key)
    await sock.send({"type": "message", "body": "x" * 70_000})
    assert await sock.recv() is None and sock.close_code == 1009


def open_unread_socket(server, key: str) -> socket.socket:
    """A WebSocket that completes the handshake and then never reads again,
    with a small receive window so the server's buffer is what fills."""
    port = int(server.url.rsplit(":", 1)[1])
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.connect(("127.0.0.1", port))
    raw.sendall(
        (
            "GET /v1/chat/store/ws/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            f"Sec-WebSocket-Version: 13\r\nAuthorization: Token {key}\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += raw.recv(1)
    assert head.startswith(b"HTTP/1.1 101")
    return raw


class TestSlowConsumer:
    @pytest.fixture
    def overrides(self):
        return {"websocket": {"max_buffered_bytes": 64 * 1024}}

    @pytest.mark.gen_test(timeout=90)
    async def test_a_client_that_never_reads_is_cut_off_and_others_keep_up(self, server, api):
        store_key, admin_key, session = await claimed_session(server, api)
        sid = session["id"]
        # blocking socket calls: off the loop, which also runs the server
        slow = await asyncio.get_running_loop().run_in_executor(
            None, open_unread_socket, server, store_key
        )
        fast = await store_socket(server, store_key)
        while len(server.hub) < 2:
            await asyncio.sleep(0.01)
        body = "y" * 9_000
        for i in range(2_000):  # bounded: ~18 MB at most
            reply = await api.post(
                "/admin/message/", admin_key, {"session_id": sid, "body": f"{i} {body}"}
            )
            assert reply.status == 201
            frame = await fast.recv_type("message", timeout=5)  # never held up
            assert frame["message"]["body"].startswith(f"{i} ")
            if len(server.hub) == 1:
                break
        assert len(server.hub) == 1, "the slow client was never cut off"
        # the fast tab is still connected and current
        assert (await fast.request({"type": "ping"}, answer="pong"))["type"] == "pong"
        slow.close()


class TestLimits:
    @pytest.fixture
    def overrides(self):
        return {
            "limits": {"rate_per_sec": 0.5, "burst": 2},
            "websocket": {"ping_interval_secs": 0.2, "ping_timeout_secs": 0.3},
        }

    @pytest.mark.gen_test
    async def test_message_frames_share_the_per_key_rate_limit(self, server):
        _, key = await make_store(server)
        sock = await store_socket(server, key)
        answers = [await sock.request({"type": "message", "body": f"{i}"}) for i in range(3)]
        assert [a["type"] for a in answers] == ["ack", "ack", "error"]
        assert answers[2]["status"] == 429 and "throttled" in answers[2]["detail"]

    @pytest.mark.gen_test(timeout=30)
    async def test_a_socket_that_stops_answering_pings_is_closed(self, server):
        _, key = await make_store(server)
        dead = await asyncio.get_running_loop().run_in_executor(
            None, open_unread_socket, server, key
        )  # never reads, so never pongs
        alive = await store_socket(server, key)  # tornado's client answers pings
        deadline = asyncio.get_running_loop().time() + 10
        while len(server.hub) != 1 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.1)
        assert len(server.hub) == 1
        assert (await alive.request({"type": "ping"}, answer="pong"))["type"] == "pong"
        dead.close()
