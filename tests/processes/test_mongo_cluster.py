"""Two server processes (two nodes) on one database of a MongoDB-compatible
wire-protocol server (SecantusDB, or CHAT_TEST_MONGO_URL): claims raced across
nodes, live messages between nodes, resume, readiness through a step-down, and
the change stream healing itself after it is killed."""

from __future__ import annotations

import asyncio
import statistics
import time

import pytest

from storage.mongo import MongoStorage
from storage.records import Role
from tests.helpers import Api, ServerProcess, Socket
from tests.mongo_checks import assert_consistent


def node_config(tmp_path, name: str, poll_interval_secs: float = 0.02) -> str:
    """A config file for one node: short storage timeouts (a fault costs a
    test seconds, not minutes) and the feed's poll interval."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        f"storage:\n  mongo_timeout_ms: 2000\nevents:\n  poll_interval_secs: {poll_interval_secs}\n"
    )
    return str(path)


def start_nodes(
    wire_server, tmp_path, processes, names=("node-a", "node-b"), poll_interval_secs: float = 0.02
) -> tuple[str, list[ServerProcess]]:
    db = f"chat_cluster_{time.monotonic_ns()}"
    nodes = []
    for name in names:
        node = ServerProcess(
            wire_server.url_for(db, app_name=name),
            config_path=node_config(tmp_path, name, poll_interval_secs),
        )
        processes.append(node)
        nodes.append(node.start(str(tmp_path / f"{name}.log")))
    return db, nodes


async def accounts(wire_server, db: str, admins: int = 1, stores: int = 1):
    """Admin and store keys, created straight in the nodes' database."""
    storage = MongoStorage.from_url(wire_server.url_for(db))
    admin_keys = [(await storage.create_admin(f"Admin{i}", None))[1] for i in range(admins)]
    store_keys = [(await storage.create_store(f"Store{i}", None, None))[1] for i in range(stores)]
    await storage.close()
    return admin_keys, store_keys


async def hello(node: ServerProcess, who: str, key: str) -> Socket:
    sock = await Socket.connect(f"ws://127.0.0.1:{node.port}/v1/chat/{who}/ws/", key)
    assert (await sock.recv())["type"] == "hello"
    return sock


async def next_message(sock: Socket, sender: str, timeout: float = 5.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        frame = await sock.recv_type("message", max(0.01, deadline - time.monotonic()))
        if frame["message"]["sender"] == sender:
            return frame["message"]


@pytest.mark.gen_test(timeout=60)
async def test_a_claim_raced_across_two_nodes_has_one_winner(wire_server, tmp_path, processes):
    db, (a, b) = start_nodes(wire_server, tmp_path, processes)
    admin_keys, (store_key,) = await accounts(wire_server, db, admins=20)
    apis = [Api(a.base_url + "/v1/chat"), Api(b.base_url + "/v1/chat")]
    sid = (await apis[0].post("/store/message/", store_key, {"body": "help"})).json["session_id"]
    claims = await asyncio.gather(
        *[
            apis[i % 2].post("/admin/session/claim/", key, {"session_id": sid})
            for i, key in enumerate(admin_keys)
        ]
    )
    assert sorted(r.status for r in claims) == [200] + [409] * 19
    winner = admin_keys[[r.status for r in claims].index(200)]
    history = await apis[1].get(f"/admin/session/{sid}/", winner)
    assert [m.get("event") for m in history.json["messages"]] == [None, "admin_connected"]
    control = wire_server.control_client()
    await assert_consistent(control[db])
    await control.close()


@pytest.mark.gen_test(timeout=60)
async def test_a_first_message_sent_to_both_nodes_at_once_opens_one_session_once(
    wire_server, tmp_path, processes
):
    # A client that retries on the other node while its first try is still
    # going: the two transactions collide on the store's one active session
    # and on the client_id; one stores, the other answers what it stored.
    db, (a, b) = start_nodes(wire_server, tmp_path, processes)
    _, store_keys = await accounts(wire_server, db, admins=0, stores=10)
    apis = [Api(a.base_url + "/v1/chat"), Api(b.base_url + "/v1/chat")]
    replies = await asyncio.gather(
        *[
            api.post("/store/message/", key, {"body": "help", "client_id": "first"})
            for key in store_keys
            for api in apis
        ]
    )
    for i in range(0, len(replies), 2):
        pair = replies[i : i + 2]
        assert sorted(r.status for r in pair) == [200, 201], pair
        assert pair[0].json["id"] == pair[1].json["id"]
        assert pair[0].json["session_id"] == pair[1].json["session_id"]
    control = wire_server.control_client()
    assert await control[db].sessions.count_documents({}) == 10
    assert await control[db].messages.count_documents({}) == 10
    await assert_consistent(control[db])
    await control.close()


@pytest.mark.gen_test(timeout=60)
async def test_a_store_on_one_node_and_its_admin_on_the_other_talk_live_and_resume(
    wire_server, tmp_path, processes
):
    db, (a, b) = start_nodes(wire_server, tmp_path, processes)
    (admin_key,), (store_key,) = await accounts(wire_server, db)
    store = await hello(a, "store", store_key)
    admin = await hello(b, "admin", admin_key)
    sid = (await store.request({"type": "message", "body": "help"}))["message"]["session_id"]
    assert (await admin.recv_type("session_opened"))["session"]["id"] == sid
    claim = await Api(b.base_url + "/v1/chat").post(
        "/admin/session/claim/", admin_key, {"session_id": sid}
    )
    assert claim.status == 200
    assert (await store.recv_type("admin_connected"))["admin"]["name"] == "Admin0"
    await store.request({"type": "message", "body": "are you there?"})
    assert (await next_message(admin, "store"))["body"] == "are you there?"
    reply = await admin.request({"type": "message", "session_id": sid, "body": "yes"})
    heard = await next_message(store, "admin")
    assert heard["body"] == "yes" and heard["seq"] == reply["message"]["seq"] == 4
    # the admin drops off; the store goes on writing through node A
    admin.close()
    for i in range(5):
        await store.request({"type": "message", "body": f"m{i}", "client_id": f"c{i}"})
    admin = await hello(b, "admin", admin_key)
    await admin.send({"type": "resume", "session_id": sid, "after_seq": 4, "ref": "r"})
    replayed = []
    while (frame := await admin.recv())["type"] != "ack":
        if frame["type"] == "message":
            replayed.append((frame["message"]["seq"], frame["message"]["body"]))
    expected = [(5 + i, f"m{i}") for i in range(5)]
    # Node B may still be delivering the store's last messages live to the
    # reconnected holder when it takes the resume; those come before the replay,
    # which then has each seq after 4 exactly once, in order.
    assert replayed[-5:] == expected and set(replayed[:-5]) <= set(expected), replayed
    assert frame["last_seq"] == 9
    await store.request({"type": "message", "body": "live again"})
    assert (await next_message(admin, "store"))["seq"] == 10
    control = wire_server.control_client()
    await assert_consistent(control[db])
    await control.close()


@pytest.mark.gen_test(timeout=60)
async def test_readyz_is_503_while_the_database_is_stepped_down_and_200_after(
    wire_server, tmp_path, processes
):
    _, (a,) = start_nodes(wire_server, tmp_path, processes, names=("node-a",))
    ops = Api(a.base_url)
    assert (await ops.get("/readyz")).status == 200
    control = wire_server.control_client()
    await wire_server.require_test_commands(control)
    await control.admin.command("replSetStepDown", 5, force=True)
    stepped_down_until = time.monotonic() + 5
    while (down := await ops.get("/readyz")).status == 200:  # until the node's check sees it
        assert time.monotonic() < stepped_down_until - 1, "ready throughout the step-down"
        await asyncio.sleep(0.1)
    assert down.status == 503 and down.headers["Retry-After"], down
    deadline = time.monotonic() + 15
    while (await ops.get("/readyz")).status != 200:
        assert time.monotonic() < deadline, "never ready again after the step-down"
        await asyncio.sleep(0.2)
    await control.close()


async def cross_node_latencies(store: Socket, admin: Socket, count: int, label: str) -> list[float]:
    """Seconds from a store's send on one node to its arrival at the admin's
    socket on the other, for ``count`` messages one after another."""
    latencies = []
    for i in range(count):
        started = time.monotonic()
        await store.send({"type": "message", "body": f"{label}{i}"})
        while (await next_message(admin, "store"))["body"] != f"{label}{i}":
            pass
        latencies.append(time.monotonic() - started)
    return latencies


@pytest.mark.gen_test(timeout=90)
async def test_a_killed_change_stream_is_reopened_and_cross_node_latency_recovers(
    wire_server, tmp_path, processes
):
    # The feed polls only once a second here, so a node on polling alone
    # delivers another node's message ~0.5 s late on average; with its change
    # stream it is woken at once.
    db, (a, b) = start_nodes(wire_server, tmp_path, processes, poll_interval_secs=1.0)
    (admin_key,), (store_key,) = await accounts(wire_server, db)
    store = await hello(a, "store", store_key)
    admin = await hello(b, "admin", admin_key)
    sid = (await store.request({"type": "message", "body": "help"}))["message"]["session_id"]
    assert (
        await Api(b.base_url + "/v1/chat").post(
            "/admin/session/claim/", admin_key, {"session_id": sid}
        )
    ).status == 200
    before = await cross_node_latencies(store, admin, 8, "before")
    assert statistics.median(before) < 0.25, before
    control = wire_server.control_client()
    await wire_server.require_test_commands(control)
    # Node B's stream dies with an error the driver does not resume from
    # (ChangeStreamFatalError), and its reopening fails a few times more.
    await control.admin.command(
        {
            "configureFailPoint": "failCommand",
            "mode": {"times": 4},
            "data": {
                "failCommands": ["getMore", "aggregate"],
                "appName": "node-b",
                "errorCode": 280,
            },
        }
    )
    during = await cross_node_latencies(store, admin, 6, "during")  # polling bridges
    await control.admin.command({"configureFailPoint": "failCommand", "mode": "off"})
    deadline = time.monotonic() + 15
    while True:
        after = await cross_node_latencies(store, admin, 6, "after")
        if statistics.median(after) < 0.25 or time.monotonic() > deadline:
            break
    assert statistics.median(after) < 0.25, (before, during, after)
    assert max(during) > 0.3, during  # the stream really was down meanwhile
    with open(tmp_path / "node-b.log") as log:
        text = log.read()
    assert "change stream ended" in text and "change stream reopened" in text
    await control.close()


async def first_refusal(api: Api, key: str, timeout: float = 5.0) -> float:
    """Seconds until ``key`` gets 401 on ``api``'s node (asking every 10 ms)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        reply = await api.get("/store/session/", key)
        if reply.status == 401:
            return time.monotonic() - started
        assert reply.status in (200, 404), reply
        await asyncio.sleep(0.01)
    raise AssertionError(f"key still accepted {timeout}s after its change")


@pytest.mark.gen_test(timeout=60)
async def test_a_key_revoked_or_rotated_elsewhere_is_refused_on_a_node_that_cached_it(
    wire_server, tmp_path, processes
):
    """Node B remembers REST keys (storage/mongo_keys.py) while it follows key
    changes: a key revoked (or rotated) through another process is refused on
    B as soon as B's stream has read the change, and for good."""
    db, (_, b) = start_nodes(wire_server, tmp_path, processes)
    _, store_keys = await accounts(wire_server, db, stores=2)
    api = Api(b.base_url + "/v1/chat")
    await asyncio.sleep(1.0)  # B's key-change stream is open and caught up
    for key in store_keys:  # B looks each key up, then answers from memory
        for _ in range(5):
            assert (await api.get("/store/session/", key)).status in (200, 404)
    storage = MongoStorage.from_url(wire_server.url_for(db))
    stores = await storage.list_stores()
    assert await storage.revoke_key(Role.STORE, stores[0].id)
    assert await first_refusal(api, store_keys[0]) < 2.0
    new_key = await storage.rotate_key(Role.STORE, stores[1].id)
    assert await first_refusal(api, store_keys[1]) < 2.0
    await storage.close()
    for _ in range(20):  # refused for good; the new key works at once
        assert (await api.get("/store/session/", store_keys[0])).status == 401
        assert (await api.get("/store/session/", store_keys[1])).status == 401
        assert (await api.get("/store/session/", new_key)).status in (200, 404)
    api.close()
