"""The support workflow's races across two nodes on a MongoDB-compatible
wire-protocol server (SecantusDB, or CHAT_TEST_MONGO_URL): a transfer raced
against a close and a second transfer, presence with a SIGKILLed node, and a
stale-claim sweep run by both nodes. Skipped where that tier is not available."""

from __future__ import annotations

import asyncio
import time

import pytest

pytest.importorskip("tests.wire_server", reason="the MongoDB wire-server tier is not here")

from tests.helpers import Api, ServerProcess
from tests.mongo_checks import assert_consistent
from tests.processes.test_mongo_cluster import accounts, hello


def start_nodes(wire_server, tmp_path, processes, settings: str) -> tuple[str, list]:
    db = f"chat_workflow_{time.monotonic_ns()}"
    nodes = []
    for name in ("node-a", "node-b"):
        path = tmp_path / f"{name}.yaml"
        path.write_text(
            "storage:\n  mongo_timeout_ms: 2000\nevents:\n  poll_interval_secs: 0.02\n" + settings
        )
        node = ServerProcess(wire_server.url_for(db, app_name=name), config_path=str(path))
        processes.append(node)
        nodes.append(node.start(str(tmp_path / f"{name}.log")))
    return db, nodes


async def admin_ids(api: Api, key: str) -> dict[str, int]:
    return {a["name"]: a["id"] for a in (await api.get("/admin/admins/", key)).json["results"]}


@pytest.mark.gen_test(timeout=90)
async def test_a_transfer_raced_against_a_close_and_a_second_transfer_on_two_nodes(
    wire_server, tmp_path, processes
):
    db, (a, b) = start_nodes(wire_server, tmp_path, processes, "")
    (dana, omar, lena), store_keys = await accounts(wire_server, db, admins=3, stores=5)
    apis = [Api(a.base_url + "/v1/chat"), Api(b.base_url + "/v1/chat")]
    ids = await admin_ids(apis[0], dana)
    for store_key in store_keys:
        sid = (await apis[0].post("/store/message/", store_key, {"body": "hi"})).json["session_id"]
        assert (
            await apis[1].post("/admin/session/claim/", dana, {"session_id": sid})
        ).status == 200
        replies = await asyncio.gather(
            apis[0].post(
                "/admin/session/transfer/", dana, {"session_id": sid, "admin_id": ids["Admin1"]}
            ),
            apis[1].post(
                "/admin/session/transfer/", dana, {"session_id": sid, "admin_id": ids["Admin2"]}
            ),
            apis[1].post("/admin/session/close/", dana, {"session_id": sid}),
        )
        statuses = [r.status for r in replies]
        assert statuses.count(200) == 1 and set(statuses) <= {200, 403, 409}, statuses
        winner = statuses.index(200)
        holder = (omar, lena, dana)[winner]
        detail = (await apis[0].get(f"/admin/session/{sid}/", holder)).json
        events = [m.get("event") for m in detail["messages"] if m.get("event")]
        expected = "session_closed" if winner == 2 else "session_transferred"
        assert events == ["admin_connected", expected]
    mine = {
        key: len((await apis[0].get("/admin/sessions/mine/", key)).json["results"])
        for key in (dana, omar, lena)
    }
    assert mine[dana] == 0
    control = wire_server.control_client()
    await assert_consistent(control[db])  # every admin's count matches what it holds
    await control.close()


@pytest.mark.gen_test(timeout=90)
async def test_presence_across_two_nodes_and_a_sigkilled_node(wire_server, tmp_path, processes):
    db, (a, b) = start_nodes(
        wire_server, tmp_path, processes, "presence:\n  heartbeat_secs: 0.3\n  expiry_secs: 3.0\n"
    )
    (dana, watcher_key), _ = await accounts(wire_server, db, admins=2, stores=0)
    api_b = Api(b.base_url + "/v1/chat")
    dana_id = (await admin_ids(api_b, watcher_key))["Admin0"]
    watcher = await hello(b, "admin", watcher_key)
    await hello(a, "admin", dana)

    async def status_of_dana(timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            frame = await watcher.recv_type("presence", max(0.1, deadline - time.monotonic()))
            if frame["admin_id"] == dana_id:
                return frame["status"]

    assert await status_of_dana() == "online"
    a.kill()  # node a dies with Dana's socket open: node b's heartbeat notices
    assert await status_of_dana() == "offline"
    listed = {
        r["id"]: r["presence"]
        for r in (await api_b.get("/admin/admins/", watcher_key)).json["results"]
    }
    assert listed[dana_id] == "offline"
    watcher.close()


@pytest.mark.gen_test(timeout=90)
async def test_a_sweep_on_two_nodes_requeues_each_stale_claim_once(
    wire_server, tmp_path, processes
):
    db, (a, b) = start_nodes(
        wire_server,
        tmp_path,
        processes,
        "chat:\n  requeue_offline_secs: 0.5\n  requeue_sweep_secs: 0.05\n",
    )
    (admin_key,), store_keys = await accounts(wire_server, db, admins=1, stores=4)
    apis = [Api(a.base_url + "/v1/chat"), Api(b.base_url + "/v1/chat")]
    sids = []
    for i, store_key in enumerate(store_keys):
        sid = (await apis[i % 2].post("/store/message/", store_key, {"body": "hi"})).json[
            "session_id"
        ]
        await apis[i % 2].post("/admin/session/claim/", admin_key, {"session_id": sid})
        sids.append(sid)
    await asyncio.sleep(3.0)  # the admin never connects: offline all along
    for sid in sids:
        detail = (await apis[0].get(f"/admin/session/{sid}/", admin_key)).json
        assert detail["status"] == "open"
        assert [m.get("event") for m in detail["messages"]].count("session_requeued") == 1
    queue = (await apis[1].get("/admin/sessions/open/", admin_key)).json["results"]
    assert [s["id"] for s in queue] == sids  # each at its original place
    control = wire_server.control_client()
    released = await control[db].events.count_documents({"kind": "session_released"})
    assert released == len(sids)  # one announcement each, whichever node did it
    await assert_consistent(control[db])  # the admin's count gave its places back
    await control.close()
