"""Hostile input over a real server: every bad value gets a clear 4xx (or an
error frame), the socket stays open, nothing stored is harmed, and the server
log has no traceback (issue: "a clear answer every time")."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import socket
import urllib.parse

import msgpack
import pytest

from tests.helpers import Socket, claimed_session, make_admin, make_store, open_session

MAX_INT = 2**63 - 1
TOO_LARGE = "Ensure this value is less than or equal to 9223372036854775807."


@pytest.fixture(autouse=True)
def no_tracebacks(caplog):
    """Fails the test if the server logged an error or a traceback."""
    yield
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, [r.getMessage() for r in bad]


async def admin_socket(server, key, protocol="json") -> Socket:
    sock = await Socket.connect(server.ws_url + "/v1/chat/admin/ws/", key, protocol=protocol)
    assert (await sock.recv())["type"] == "hello"
    return sock


async def store_socket(server, key, protocol="json") -> Socket:
    sock = await Socket.connect(server.ws_url + "/v1/chat/store/ws/", key, protocol=protocol)
    assert (await sock.recv())["type"] == "hello"
    return sock


def raw_exchange(port: int, request: bytes, timeout: float = 10.0) -> bytes:
    """Send ``request`` on a fresh TCP connection; read one response (by its
    Content-Length) or until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.sendall(request)
        data = b""
        while True:
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep:
                length = [
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ]
                if length and len(body) >= length[0]:
                    return data
            try:
                chunk = conn.recv(65536)
            except ConnectionResetError:
                return data
            if not chunk:
                return data
            data += chunk


def read_all(conn: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            chunk = conn.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def split_response(data: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


def port_of(server) -> int:
    return int(server.url.rsplit(":", 1)[1])


# --- integers past 64 bits -----------------------------------------------------------
@pytest.mark.parametrize(
    "path",
    [
        "/admin/session/claim/",
        "/admin/session/release/",
        "/admin/session/close/",
        "/admin/message/",
    ],
)
@pytest.mark.gen_test
async def test_a_session_id_past_int64_is_a_400_with_drfs_wording(server, api, path):
    _, admin_key = await make_admin(server)
    for value in (2**63, 2**64, 10**40):
        reply = await api.post(path, admin_key, {"session_id": value, "body": "hi"})
        assert (reply.status, reply.json) == (400, {"session_id": [TOO_LARGE]}), value
    reply = await api.post(path, admin_key, {"session_id": MAX_INT, "body": "hi"})
    assert reply.status == 404  # in range: simply no such session


@pytest.mark.gen_test
async def test_an_out_of_range_id_in_a_path_is_not_found(server, api):
    _, admin_key = await make_admin(server)
    for raw in (str(2**63), str(2**64), "9" * 5000, "0"):
        reply = await api.get(f"/admin/session/{raw}/", admin_key)
        assert (reply.status, reply.json) == (404, {"detail": "Not found."}), raw[:30]


@pytest.mark.gen_test
async def test_after_seq_is_decimal_digits_in_range(server, api):
    store_key, admin_key, session = await claimed_session(server, api)
    path = f"/admin/session/{session['id']}/"
    reply = await api.get(f"{path}?after_seq={2**63}", admin_key)
    assert (reply.status, reply.json) == (400, {"after_seq": [TOO_LARGE]})
    for raw in ("abc", "%2B5", "-", "5_0", "1e3", "%D9%A5", "9" * 5000):
        reply = await api.get(f"{path}?after_seq={raw}", admin_key)
        assert (reply.status, reply.json) == (
            400,
            {"after_seq": ["A valid integer is required."]},
        ), raw[:30]
    reply = await api.get(f"/store/session/?after_seq={MAX_INT}", store_key)
    assert reply.status == 200 and reply.json["messages"] == []


@pytest.mark.gen_test
async def test_a_malformed_cursor_is_not_found(server, api):
    _, admin_key = await make_admin(server)
    bad = [
        base64.urlsafe_b64encode(b"[" * 5000).decode(),
        base64.urlsafe_b64encode(
            json.dumps(["2025-01-01T00:00:00.000000Z", 2**63]).encode()
        ).decode(),
        base64.urlsafe_b64encode(json.dumps(["\ud800", 1]).encode()).decode(),
        base64.urlsafe_b64encode(json.dumps(["yesterday", 1]).encode()).decode(),
        "not base64 at all!",
        "%F0%9F%92%A9",
        "A" * 5000,
    ]
    for cursor in bad:
        reply = await api.get(
            f"/admin/sessions/open/?cursor={urllib.parse.quote(cursor)}", admin_key
        )
        assert (reply.status, reply.json) == (404, {"detail": "Not found."}), cursor[:40]


# --- strings -----------------------------------------------------------------------
@pytest.mark.gen_test
async def test_lone_surrogates_and_nul_are_refused_and_the_session_lives_on(server, api):
    store_key, admin_key, session = await claimed_session(server, api)
    cases = [
        ({"body": "a\ud800b"}, {"body": ["Not a valid string."]}),
        ({"body": "a\x00b"}, {"body": ["Null characters are not allowed."]}),
        ({"body": "ok", "client_id": "\udfff"}, {"client_id": ["Not a valid string."]}),
        ({"body": "ok", "client_id": "c\x00"}, {"client_id": ["Null characters are not allowed."]}),
    ]
    for body, errors in cases:
        reply = await api.post("/store/message/", store_key, body)
        assert (reply.status, reply.json) == (400, errors), body
        reply = await api.post("/admin/message/", admin_key, {**body, "session_id": session["id"]})
        assert (reply.status, reply.json) == (400, errors), body
    # The session's actor did not die of it: both sides still write.
    reply = await api.post(
        "/admin/message/", admin_key, {"session_id": session["id"], "body": "still here \U0001f600"}
    )
    assert reply.status == 201 and reply.json["body"] == "still here \U0001f600"
    assert (await api.post("/store/message/", store_key, {"body": "me too"})).status == 201


@pytest.mark.gen_test
async def test_a_key_that_cannot_be_a_key_is_401(server, api):
    for key in ("\u00e9" * 40, "k" * 5000):
        reply = await api.get("/admin/sessions/open/", key)
        assert (reply.status, reply.json) == (401, {"detail": "Invalid token."})


# --- JSON nesting ------------------------------------------------------------------
@pytest.mark.gen_test
async def test_deep_json_is_a_parse_error_at_the_bound(server, api):
    _, store_key = await make_store(server)
    for raw in ("[" * 20_000, '{"body": ' + "[" * 33 + "]" * 33 + "}", '{"body": NaN}'):
        reply = await api.post("/store/message/", store_key, raw=raw)
        assert reply.status == 400, raw[:40]
        assert list(reply.json) == ["detail"]
        assert reply.json["detail"].startswith("JSON parse error - "), reply.json
    # 32 levels in all is still JSON we read: the answer is about the field.
    reply = await api.post(
        "/store/message/", store_key, raw='{"body": ' + "[" * 31 + "]" * 31 + "}"
    )
    assert (reply.status, reply.json) == (400, {"body": ["Not a valid string."]})


# --- HTTP edges --------------------------------------------------------------------
@pytest.mark.parametrize("size", [128 * 1024, 10 * 1024 * 1024])
@pytest.mark.gen_test(timeout=60)
async def test_a_chunked_body_over_the_limit_gets_a_json_413(server, size):
    _, store_key = await make_store(server)
    chunk = b"x" * 65536
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(size // len(chunk)))
    request = (
        b"POST /v1/chat/store/message/ HTTP/1.1\r\nHost: x\r\n"
        b"Authorization: Token " + store_key.encode() + b"\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        + chunks
        + b"0\r\n\r\n"
    )
    data = await asyncio.get_running_loop().run_in_executor(
        None, raw_exchange, port_of(server), request
    )
    status, headers, body = split_response(data)
    assert status == 413 and headers["content-type"] == "application/json"
    assert json.loads(body[: body.index(b"}") + 1]) == {"detail": "Request body too large."}


@pytest.mark.gen_test
async def test_every_error_body_is_json_405_and_upgrade_refusals_included(server, api):
    _, admin_key = await make_admin(server)
    cases = [
        ("GET", "/admin/session/claim/", {"detail": 'Method "GET" not allowed.'}, 405),
        ("POST", "/store/ws/", {"detail": 'Method "POST" not allowed.'}, 405),
        ("GET", "/admin/ws/", {"detail": 'Can "Upgrade" only to "WebSocket".'}, 400),
    ]
    for method, path, body, status in cases:
        reply = await api.call(method, path, admin_key, raw=b"" if method == "POST" else None)
        assert (reply.status, reply.json) == (status, body), path
        assert reply.headers["Content-Type"] == "application/json"
    base = api.base_url.rsplit("/v1/chat", 1)[0]
    for path in ("/metrics", "/healthz", "/readyz"):
        reply = (
            await api.call("POST", "/../.." + path if False else path, raw=b"", headers={})
            if False
            else None
        )
        response = await api.client.fetch(base + path, method="POST", body=b"", raise_error=False)
        assert response.code == 405 and json.loads(response.body) == {
            "detail": 'Method "POST" not allowed.'
        }, path


@pytest.mark.gen_test
async def test_a_websocket_of_another_version_gets_a_json_426(server):
    request = (
        b"GET /v1/chat/store/ws/ HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 8\r\nConnection: close\r\n\r\n"
    )
    data = await asyncio.get_running_loop().run_in_executor(
        None, raw_exchange, port_of(server), request
    )
    status, headers, body = split_response(data)
    assert status == 426 and headers["sec-websocket-version"] == "13"
    assert json.loads(body)["detail"].startswith("Upgrade required")


class TestSlowClients:
    @pytest.fixture
    def overrides(self):
        return {"server": {"header_timeout_secs": 0.5, "body_timeout_secs": 0.5}}

    @pytest.mark.gen_test(timeout=20)
    async def test_a_client_trickling_its_headers_is_cut_off(self, server):
        def trickle() -> float:
            import time

            started = time.monotonic()
            with socket.create_connection(("127.0.0.1", port_of(server)), timeout=10) as conn:
                try:
                    for piece in (b"GET /healthz HTTP/1.1\r\n", b"Host: x\r\n") + (
                        b"X: y\r\n",
                    ) * 50:
                        conn.sendall(piece)
                        time.sleep(0.1)
                    return -1.0  # never cut off
                except (BrokenPipeError, ConnectionResetError):
                    pass
                read_all(conn)
            return time.monotonic() - started

        elapsed = await asyncio.get_running_loop().run_in_executor(None, trickle)
        assert 0.4 < elapsed < 3.0

    @pytest.mark.gen_test(timeout=20)
    async def test_a_body_that_stops_arriving_is_cut_off(self, server):
        def stall() -> bytes:
            with socket.create_connection(("127.0.0.1", port_of(server)), timeout=10) as conn:
                conn.sendall(
                    b"POST /v1/chat/store/message/ HTTP/1.1\r\nHost: x\r\n"
                    b"Content-Length: 100\r\n\r\n{"
                )
                return read_all(conn)

        data = await asyncio.get_running_loop().run_in_executor(None, stall)
        assert data == b"" or b" 401 " in data  # closed, never a hang


class TestTrustedProxies:
    @pytest.fixture
    def overrides(self):
        return {"server": {"trusted_proxies": ["127.0.0.0/8"]}}

    @pytest.mark.gen_test
    async def test_forwarded_headers_are_believed_from_a_trusted_proxy(self, server, api, caplog):
        caplog.set_level(logging.INFO, logger="chat.access")
        _, admin_key = await make_admin(server)
        for _ in range(3):
            await open_session(api, (await make_store(server))[1])
        reply = await api.get(
            "/admin/sessions/open/?limit=1",
            admin_key,
            headers={
                "X-Forwarded-For": "6.6.6.6, 10.1.2.3, 127.0.0.5",
                "X-Forwarded-Proto": "https",
            },
        )
        assert reply.json["next"].startswith("https://")
        remotes = [r.fields["remote"] for r in caplog.records if hasattr(r, "fields")]
        assert remotes[-1] == "10.1.2.3"


@pytest.mark.gen_test
async def test_forwarded_headers_from_anyone_else_are_ignored(server, api, caplog):
    caplog.set_level(logging.INFO, logger="chat.access")
    _, admin_key = await make_admin(server)
    await api.get(
        "/admin/sessions/open/",
        admin_key,
        headers={"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "https"},
    )
    remotes = [r.fields["remote"] for r in caplog.records if hasattr(r, "fields")]
    assert remotes[-1] == "127.0.0.1"


# --- WebSocket frames ------------------------------------------------------------
@pytest.mark.gen_test
async def test_a_deep_frame_before_auth_closes_4001(server):
    for frame in ("[" * 30_000, json.dumps({"type": "auth", "token": "\ud800"})):
        sock = await Socket.connect(server.ws_url + "/v1/chat/store/ws/")
        await sock.send_raw(frame)
        assert await sock.recv() is None and sock.close_code == 4001


@pytest.mark.parametrize("protocol", ["json", "msgpack"])
@pytest.mark.gen_test
async def test_every_bad_frame_gets_an_error_and_the_socket_stays_open(server, api, protocol):
    _store_key, admin_key, session = await claimed_session(server, api)
    sock = await admin_socket(server, admin_key, protocol)
    await sock.recv_type("presence")  # its own: online (every admin socket hears it)
    sid = session["id"]
    deep = {"type": "ping"}
    for _ in range(40):
        deep = {"type": "ping", "x": deep}
    frames = [
        ({"type": "message", "session_id": 2**63, "body": "x"}, {"session_id": [TOO_LARGE]}),
        (
            {"type": "message", "session_id": sid, "body": "\ud800"},
            {"body": ["Not a valid string."]},
        )
        if protocol == "json"
        else (
            {"type": "message", "session_id": sid, "body": b"bytes"},
            {"body": ["Not a valid string."]},
        ),
        (
            {"type": "message", "session_id": sid, "body": "a\x00"},
            {"body": ["Null characters are not allowed."]},
        ),
        ({"type": "resume", "session_id": sid, "after_seq": 2**63}, {"after_seq": [TOO_LARGE]}),
        ({"type": {"a": [1]}}, {"type": ["Not a valid string."]}),
        ({"type": "x" * 500}, {"type": ["Not a valid choice."]}),
    ]
    for frame, errors in frames:
        await sock.send({**frame, "ref": "r1"})
        reply = await sock.recv()
        assert reply["type"] == "error" and reply["status"] == 400, reply
        assert (reply["ref"], reply["errors"]) == ("r1", errors)
    await sock.send(deep)  # not read at all, so its ref is not known either
    reply = await sock.recv()
    assert reply["type"] == "error" and reply["status"] == 400 and "ref" not in reply
    assert "parse error - nesting deeper than 32 levels" in reply["detail"]
    # The actor and the socket are fine: a good message is stored and acked.
    ack = await sock.request({"type": "message", "session_id": sid, "body": "fine"})
    assert ack["type"] == "ack" and ack["message"]["body"] == "fine"


@pytest.mark.gen_test
async def test_a_ref_that_cannot_be_echoed_is_answered_with_ref_null(server):
    _, store_key = await make_store(server)
    sock = await store_socket(server, store_key, "msgpack")
    for ref in (b"bytes", {b"k": 1}, 2**64 - 1, -1, "r" * 65, [1]):
        await sock.send_raw(msgpack.packb({"type": "ping", "ref": ref}))
        reply = await sock.recv()
        assert reply["type"] == "error" and reply["status"] == 400, ref
        assert "ref" in reply and reply["ref"] is None
        assert list(reply["errors"]) == ["ref"]
    for ref in ("r" * 64, 0, MAX_INT):
        reply = await sock.request({"type": "ping", "ref": ref}, answer="pong")
        assert reply == {"type": "pong", "ref": ref}


@pytest.mark.gen_test
async def test_malformed_msgpack_and_json_frames_get_parse_errors(server):
    _, store_key = await make_store(server)
    sock = await store_socket(server, store_key, "msgpack")
    for raw in (b"\xc1", b"\x91" * 40_000, msgpack.packb([1, 2]), b"\x82\xa1a"):
        await sock.send_raw(raw)
        reply = await sock.recv()
        assert reply["type"] == "error" and reply["status"] == 400, raw[:10]
    for raw in ("[" * 30_000, "{bad json", '{"type": "ping", "x": Infinity}'):
        await sock.send_raw(raw)
        reply = await sock.recv()
        assert reply["type"] == "error" and reply["detail"].startswith("JSON parse error"), raw[:10]
    assert (await sock.request({"type": "ping"}, answer="pong"))["type"] == "pong"


@pytest.mark.gen_test
async def test_a_scalar_document_is_a_dictionary_error_not_a_crash(server, api):
    _, store_key = await make_store(server)
    for raw, kind in (("5", "int"), ("true", "bool"), ('"x"', "str")):
        reply = await api.post("/store/message/", store_key, raw=raw)
        assert reply.status == 400, raw
        assert reply.json == {
            "non_field_errors": [f"Invalid data. Expected a dictionary, but got {kind}."]
        }, raw
    reply = await api.post("/store/message/", store_key, raw="null")
    assert (reply.status, reply.json) == (400, {"non_field_errors": ["No data provided"]})
    sock = await store_socket(server, store_key)
    for raw in ("5", "null", "true"):
        await sock.send_raw(raw)
        reply = await sock.recv()
        assert (reply["type"], reply["status"]) == ("error", 400), raw


@pytest.mark.parametrize("authenticated", [False, True])
@pytest.mark.gen_test(timeout=60)
async def test_an_oversized_frame_still_being_sent_gets_its_1009(server, authenticated):
    """The server reads and drops the refused frame before it closes TCP, so a
    client still writing it is not reset before it reads the close frame."""
    _, store_key = await make_store(server)
    for _ in range(3):
        sock = await Socket.connect(
            server.ws_url + "/v1/chat/store/ws/", store_key if authenticated else None
        )
        if authenticated:
            assert (await sock.recv())["type"] == "hello"
        sending = asyncio.ensure_future(sock.send_raw("x" * (8 * 2**20)))
        assert await sock.recv(timeout=30) is None and sock.close_code == 1009
        await asyncio.gather(sending, return_exceptions=True)
