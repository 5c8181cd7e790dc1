"""The support workflow over a real server and real sockets: transfer, read
state, presence (one process), stale claims back to the queue."""

from __future__ import annotations

import asyncio

import pytest

from tests.helpers import Socket, claimed_session, make_admin, make_store, open_session


async def hello(server, role: str, key: str) -> Socket:
    sock = await Socket.connect(f"{server.ws_url}/v1/chat/{role}/ws/", key)
    assert (await sock.recv())["type"] == "hello"
    return sock


# --- transfer ------------------------------------------------------------------------
@pytest.mark.gen_test(timeout=30)
async def test_a_transfer_hands_the_session_over_and_the_old_holder_loses_it_at_once(server, api):
    store_key, dana_key, session = await claimed_session(server, api)
    omar, omar_key = await make_admin(server, "Omar")
    sid = session["id"]
    store_ws = await hello(server, "store", store_key)
    omar_ws = await hello(server, "admin", omar_key)
    dana_ws = await hello(server, "admin", dana_key)
    assert (await dana_ws.request({"type": "resume", "session_id": sid}))["type"] == "ack"
    reply = await api.post(
        "/admin/session/transfer/", dana_key, {"session_id": sid, "admin_id": omar.id}
    )
    assert reply.status == 200, reply
    assert (reply.json["admin_id"], reply.json["status"]) == (omar.id, "claimed")
    told = await omar_ws.recv_type("session_transferred")
    assert told["session"]["admin_id"] == omar.id and told["from_admin"]["name"] == "Dana"
    assert (await dana_ws.recv_type("session_transferred"))["admin"]["id"] == omar.id
    joined = await store_ws.recv_type("admin_connected")
    assert joined == {
        "type": "admin_connected",
        "session_id": sid,
        "admin": {"id": omar.id, "name": "Omar"},
    }
    system = await store_ws.recv_type("message")
    while system["message"].get("event") != "session_transferred":
        system = await store_ws.recv_type("message")
    assert system["message"]["body"] == "Dana transferred the chat to Omar"
    # The old holder: 403 on REST and on every frame from now on.
    for path, body in (
        ("/admin/message/", {"session_id": sid, "body": "x"}),
        ("/admin/session/close/", {"session_id": sid}),
        ("/admin/session/transfer/", {"session_id": sid, "admin_id": omar.id}),
    ):
        assert (await api.post(path, dana_key, body)).status == 403
    assert (await api.get(f"/admin/session/{sid}/", dana_key)).status == 403
    for frame in (
        {"type": "message", "session_id": sid, "body": "x"},
        {"type": "typing", "session_id": sid},
        {"type": "resume", "session_id": sid},
        {"type": "read", "session_id": sid, "seq": 1},
    ):
        answer = await dana_ws.request(frame)
        assert (answer["type"], answer["status"]) == ("error", 403), frame
    # ... and no longer hears the session's messages, which the new holder does.
    await api.post("/store/message/", store_key, {"body": "still there?"})
    heard = await omar_ws.recv_type("message")
    while heard["message"]["sender"] == "system":
        heard = await omar_ws.recv_type("message")
    assert heard["message"]["body"] == "still there?"
    assert [f for f in await dana_ws.expect_silence(0.3) if f["type"] == "message"] == []
    mine = await api.get("/admin/sessions/mine/", omar_key)
    assert [s["id"] for s in mine.json["results"]] == [sid]
    assert (await api.get("/admin/sessions/mine/", dana_key)).json["results"] == []
    for sock in (store_ws, omar_ws, dana_ws):
        sock.close()


@pytest.mark.gen_test(timeout=30)
async def test_transfer_errors_follow_the_order_of_checks(server, api):
    store_key, dana_key, session = await claimed_session(server, api)
    omar, omar_key = await make_admin(server, "Omar")
    sid = session["id"]
    bad = await api.post("/admin/session/transfer/", dana_key, {"session_id": sid})
    assert bad.status == 400 and bad.json == {"admin_id": ["This field is required."]}
    bad = await api.post(
        "/admin/session/transfer/", dana_key, {"session_id": sid, "admin_id": 2**63}
    )
    assert bad.status == 400 and "admin_id" in bad.json
    assert (
        await api.post(
            "/admin/session/transfer/", store_key, {"session_id": sid, "admin_id": omar.id}
        )
    ).status == 403
    for body in ({"session_id": 999, "admin_id": omar.id}, {"session_id": sid, "admin_id": 999}):
        reply = await api.post("/admin/session/transfer/", dana_key, body)
        assert (reply.status, reply.json) == (404, {"detail": "Not found."})
    assert (
        await api.post(
            "/admin/session/transfer/", omar_key, {"session_id": sid, "admin_id": omar.id}
        )
    ).status == 403
    await api.post("/admin/session/close/", dana_key, {"session_id": sid})
    closed = await api.post(
        "/admin/session/transfer/", dana_key, {"session_id": sid, "admin_id": omar.id}
    )
    assert (closed.status, closed.json) == (409, {"detail": "Session is closed."})


@pytest.fixture
def overrides(request):
    return getattr(request, "param", {})


@pytest.mark.parametrize("overrides", [{"chat": {"max_sessions_per_admin": 1}}], indirect=True)
@pytest.mark.gen_test(timeout=30)
async def test_a_transfer_to_an_admin_at_the_limit_gets_409_and_changes_nothing(server, api):
    _, dana_key, session = await claimed_session(server, api)
    _, omar_key, _ = await claimed_session(server, api, admin_name="Omar")
    omar_id = (await api.get("/admin/sessions/mine/", omar_key)).json["results"][0]["admin_id"]
    reply = await api.post(
        "/admin/session/transfer/", dana_key, {"session_id": session["id"], "admin_id": omar_id}
    )
    assert (reply.status, reply.json) == (409, {"detail": "Session limit reached."})
    detail = await api.get(f"/admin/session/{session['id']}/", dana_key)
    assert detail.json["admin_id"] != omar_id
    assert [m.get("event") for m in detail.json["messages"]] == [None, "admin_connected"]


# --- read state ------------------------------------------------------------------------
@pytest.mark.gen_test(timeout=30)
async def test_read_positions_never_move_back_and_the_other_side_hears_them(server, api):
    store_key, admin_key, session = await claimed_session(server, api)
    sid = session["id"]
    for body in ("two", "three"):
        await api.post("/store/message/", store_key, {"body": body})  # seq 3, 4
    store_ws = await hello(server, "store", store_key)
    admin_ws = await hello(server, "admin", admin_key)
    mine = await api.get("/admin/sessions/mine/", admin_key)
    assert mine.json["results"][0]["unread"] == 3
    reply = await api.post("/admin/session/read/", admin_key, {"session_id": sid, "seq": 3})
    assert (reply.status, reply.json) == (200, {"session_id": sid, "seq": 3})
    receipt = await store_ws.recv_type("read")
    assert receipt == {"type": "read", "session_id": sid, "sender": "admin", "seq": 3}
    back = await api.post("/admin/session/read/", admin_key, {"session_id": sid, "seq": 1})
    assert back.json["seq"] == 3  # never moves back, and no receipt for it
    assert [f for f in await store_ws.expect_silence(0.3) if f["type"] == "read"] == []
    ack = await admin_ws.request({"type": "read", "session_id": sid, "seq": 4})
    assert (ack["type"], ack["seq"]) == ("ack", 4)
    assert (await api.get("/admin/sessions/mine/", admin_key)).json["results"][0]["unread"] == 0
    await api.post("/admin/message/", admin_key, {"session_id": sid, "body": "hi"})
    assert (await api.get("/store/session/", store_key)).json["unread"] == 1
    ack = await store_ws.request({"type": "read", "session_id": sid, "seq": 5})
    assert ack["seq"] == 5
    heard = await admin_ws.recv_type("read")
    while heard["sender"] == "admin":  # its own reads (seq 3, 4) reach its other tabs too
        heard = await admin_ws.recv_type("read")
    assert (heard["sender"], heard["seq"]) == ("store", 5)
    assert (await api.get("/store/session/", store_key)).json["unread"] == 0
    rest = await api.post("/store/session/read/", store_key, {"session_id": sid, "seq": 2})
    assert rest.json == {"session_id": sid, "seq": 5}
    bad = await api.post("/admin/session/read/", admin_key, {"session_id": sid, "seq": 0})
    assert bad.status == 400 and "seq" in bad.json
    _, other_store = await make_store(server, "Other")
    assert (
        await api.post("/store/session/read/", other_store, {"session_id": sid, "seq": 1})
    ).status == 403
    store_ws.close()
    admin_ws.close()


# --- presence (one process; several processes in test_workflow_processes.py) ----------------
@pytest.mark.gen_test(timeout=30)
async def test_presence_follows_sockets_and_the_away_frame(server, api):
    dana, dana_key = await make_admin(server, "Dana")
    _omar, omar_key = await make_admin(server, "Omar")

    async def presence_of(admin_id):
        listed = await api.get("/admin/admins/", omar_key)
        return {a["id"]: (a["presence"], a["active_sessions"]) for a in listed.json["results"]}[
            admin_id
        ]

    assert await presence_of(dana.id) == ("offline", 0)
    watcher = await hello(server, "admin", omar_key)
    first = await hello(server, "admin", dana_key)
    seen = await watcher.recv_type("presence")
    while seen["admin_id"] != dana.id:
        seen = await watcher.recv_type("presence")
    assert seen == {"type": "presence", "admin_id": dana.id, "status": "online"}
    second = await hello(server, "admin", dana_key)
    answer = await second.request({"type": "presence", "status": "away"})
    assert (answer["type"], answer["status"]) == ("ack", "away")
    assert (await watcher.recv_type("presence"))["status"] == "away"
    assert await presence_of(dana.id) == ("away", 0)
    first.close()
    await asyncio.sleep(0.3)
    assert await presence_of(dana.id) == ("away", 0)  # one socket still open
    bad = await second.request({"type": "presence", "status": "busy"})
    assert (bad["status"], bad["errors"]) == (400, {"status": ['"busy" is not a valid choice.']})
    second.close()
    assert (await watcher.recv_type("presence"))["status"] == "offline"
    assert await presence_of(dana.id) == ("offline", 0)
    _store, store_key = await make_store(server)
    store_ws = await hello(server, "store", store_key)
    refused = await store_ws.request({"type": "presence", "status": "away"})
    assert refused["status"] == 403
    store_ws.close()
    watcher.close()


@pytest.mark.gen_test(timeout=30)
async def test_the_admins_list_pages_with_a_cursor_and_counts_active_sessions(server, api):
    _, dana_key, _ = await claimed_session(server, api)
    for name in ("B", "C", "D"):
        await make_admin(server, name)
    page = await api.get("/admin/admins/?limit=2", dana_key)
    assert [a["name"] for a in page.json["results"]] == ["Dana", "B"]
    assert page.json["results"][0]["active_sessions"] == 1
    rest = await api.get(page.json["next"].split("/v1/chat")[1], dana_key)
    assert [a["name"] for a in rest.json["results"]] == ["C", "D"] and rest.json["next"] is None
    assert (await api.get("/admin/admins/?cursor=bogus", dana_key)).status == 404


# --- stale claims ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "overrides",
    [{"chat": {"requeue_unanswered_secs": 1.5, "requeue_sweep_secs": 0.1}}],
    indirect=True,
)
@pytest.mark.gen_test(timeout=30)
async def test_an_unanswered_claim_goes_back_to_the_queue_in_its_original_place(server, api):
    _, waiting_key = await make_store(server, "First")
    first = await open_session(api, waiting_key)  # waits in the queue meanwhile
    _store_key, admin_key, session = await claimed_session(server, api)
    sid = session["id"]
    admin_ws = await hello(server, "admin", admin_key)
    await admin_ws.recv_type("session_released", timeout=10)
    queue = await api.get("/admin/sessions/open/", admin_key)
    assert [s["id"] for s in queue.json["results"]] == [first["id"], sid]
    detail = await api.get(f"/admin/session/{sid}/", admin_key)
    assert detail.json["status"] == "open" and detail.json["admin_id"] is None
    assert detail.json["messages"][-1]["event"] == "session_requeued"
    # answered in time: stays claimed
    await api.post("/admin/session/claim/", admin_key, {"session_id": sid})
    await api.post("/admin/message/", admin_key, {"session_id": sid, "body": "on it"})
    await asyncio.sleep(2.5)
    assert (await api.get(f"/admin/session/{sid}/", admin_key)).json["status"] == "claimed"
    admin_ws.close()


@pytest.mark.parametrize(
    "env, expected",
    [
        ({"CHAT_PRESENCE__HEARTBEAT_SECS": "0"}, "presence.heartbeat_secs = '0'"),
        ({"CHAT_PRESENCE__EXPIRY_SECS": "2"}, "expiry_secs must be longer than heartbeat_secs"),
        ({"CHAT_CHAT__REQUEUE_OFFLINE_SECS": "-1"}, "chat.requeue_offline_secs = '-1'"),
        ({"CHAT_CHAT__REQUEUE_SWEEP_SECS": "often"}, "chat.requeue_sweep_secs = 'often'"),
        ({"CHAT_WEBHOOK_DELIVERY__RETRIES": "3"}, "unknown setting webhook_delivery.retries"),
        (
            {"CHAT_WEBHOOKS": '[{"url": "ftp://x", "events": ["message"], "secret": "k"}]'},
            "webhooks.0.url = 'ftp://x'",
        ),
        (
            {"CHAT_WEBHOOKS": '[{"url": "http://x", "events": ["typing"], "secret": "k"}]'},
            "webhooks.0.events.0 = 'typing'",
        ),
        (
            {"CHAT_WEBHOOKS": '[{"url": "http://x", "events": ["message"]}]'},
            "webhooks.0.secret is not set",
        ),
    ],
)
def test_bad_workflow_settings_are_one_line_naming_the_key(env, expected):
    from settings import ConfigError, load_config

    with pytest.raises(ConfigError) as refused:
        load_config(environ=env)
    assert expected in str(refused.value) and "\n" not in str(refused.value)


def test_check_config_shows_webhooks_with_their_secrets_hidden():
    from settings import load_config
    from settings.shown import dump_config

    config = load_config(
        environ={
            "CHAT_WEBHOOKS": '[{"url": "https://u:pw@crm.example/h",'
            ' "events": ["message"], "secret": "s3cret"}]'
        }
    )
    shown = dump_config(config)
    assert "s3cret" not in shown and "pw@" not in shown and "crm.example/h" in shown
