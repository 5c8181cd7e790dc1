"""The support workflow's races across real server processes on one SQLite file:
presence with a SIGKILLed process, a stale-claim sweep run by two processes,
a reply during the sweep, and a transfer raced against a close and a second
transfer."""

from __future__ import annotations

import asyncio
import time

import pytest
import yaml

from tests.helpers import Api, ServerProcess, Socket, create_keys


def start_two(db_url, processes, tmp_path, settings: dict) -> list[ServerProcess]:
    path = tmp_path / "workflow.yaml"
    path.write_text(yaml.safe_dump({"events": {"poll_interval_secs": 0.02}, **settings}))
    started = [
        ServerProcess(db_url, config_path=str(path)).start(str(tmp_path / f"log{i}"))
        for i in range(2)
    ]
    processes.extend(started)
    return started


async def admin_socket(proc: ServerProcess, key: str) -> Socket:
    sock = await Socket.connect(f"ws://127.0.0.1:{proc.port}/v1/chat/admin/ws/", key)
    assert (await sock.recv())["type"] == "hello"
    return sock


async def presence_event(sock: Socket, admin_id: int, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        frame = await sock.recv_type("presence", max(0.1, deadline - time.monotonic()))
        if frame["admin_id"] == admin_id:
            return frame["status"]


async def listed_presence(api: Api, key: str, admin_id: int) -> str:
    rows = (await api.get("/admin/admins/", key)).json["results"]
    return next(r["presence"] for r in rows if r["id"] == admin_id)


@pytest.mark.gen_test(timeout=120)
async def test_presence_spans_processes_and_a_sigkilled_process_stops_counting(
    db_url, processes, tmp_path
):
    admin_keys, _ = create_keys(db_url, admins=2, stores=0)
    dana_key, watcher_key = admin_keys
    # Expiry well past the heartbeat: a busy machine must not make live rows lapse.
    one, two = start_two(
        db_url, processes, tmp_path, {"presence": {"heartbeat_secs": 0.3, "expiry_secs": 3.0}}
    )
    api_two = Api(two.base_url + "/v1/chat")
    dana_id = (await api_two.get("/admin/admins/", dana_key)).json["results"][0]["id"]
    watcher = await admin_socket(two, watcher_key)
    on_one = await admin_socket(one, dana_key)
    assert await presence_event(watcher, dana_id) == "online"  # heard across processes
    on_two = await admin_socket(two, dana_key)
    away = await on_two.request({"type": "presence", "status": "away"})
    assert away["status"] == "away"
    assert await presence_event(watcher, dana_id) == "away"
    # Process one dies with Dana's socket open: she still has one on two.
    one.kill()
    await asyncio.sleep(4.0)  # past the expiry: the killed process's socket no longer counts
    assert await listed_presence(api_two, watcher_key, dana_id) == "away"
    await on_two.request({"type": "presence", "status": "online"})
    assert await presence_event(watcher, dana_id) == "online"
    on_two.close()
    assert await presence_event(watcher, dana_id) == "offline"
    # Her socket on the killed process is gone for good; now one that dies
    # with no goodbye on a process of its own, noticed by the other's heartbeat.
    three = ServerProcess(db_url, config_path=str(tmp_path / "workflow.yaml")).start()
    processes.append(three)
    await admin_socket(three, dana_key)
    assert await presence_event(watcher, dana_id) == "online"
    killed_at = time.monotonic()
    three.kill()
    assert await presence_event(watcher, dana_id) == "offline"
    assert time.monotonic() - killed_at < 3.0 + 0.3 + 4.0  # expiry + heartbeat + slack
    assert await listed_presence(api_two, watcher_key, dana_id) == "offline"
    watcher.close()
    on_one.close()


@pytest.mark.gen_test(timeout=120)
async def test_a_sweep_run_by_two_processes_requeues_each_stale_claim_once(
    db_url, processes, tmp_path
):
    admin_keys, store_keys = create_keys(db_url, admins=2, stores=6)
    one, two = start_two(
        db_url,
        processes,
        tmp_path,
        {
            "chat": {"requeue_offline_secs": 0.5, "requeue_sweep_secs": 0.05},
            "presence": {"heartbeat_secs": 0.3, "expiry_secs": 3.0},
        },
    )
    apis = [Api(p.base_url + "/v1/chat") for p in (one, two)]
    offline_key, online_key = admin_keys
    online = await admin_socket(one, online_key)  # stays connected: keeps its claims
    sids = []
    for i, store_key in enumerate(store_keys):
        sid = (await apis[0].post("/store/message/", store_key, {"body": "hi"})).json["session_id"]
        holder = offline_key if i % 2 == 0 else online_key  # the first never connects
        assert (
            await apis[i % 2].post("/admin/session/claim/", holder, {"session_id": sid})
        ).status == 200
        sids.append((sid, holder))
    await asyncio.sleep(3.0)
    for sid, holder in sids:
        detail = (await apis[1].get(f"/admin/session/{sid}/", online_key)).json
        events = [m.get("event") for m in detail.get("messages", [])]
        if holder == offline_key:
            assert detail["status"] == "open", detail
            assert events.count("session_requeued") == 1, events
        else:
            assert detail["status"] == "claimed" and "session_requeued" not in events
    queue = (await apis[0].get("/admin/sessions/open/", online_key)).json["results"]
    assert [s["id"] for s in queue] == [sid for sid, h in sids if h == offline_key]
    online.close()


@pytest.mark.gen_test(timeout=120)
async def test_replies_during_the_sweep_keep_the_claim(db_url, processes, tmp_path):
    admin_keys, store_keys = create_keys(db_url, admins=1, stores=2)
    one, two = start_two(
        db_url,
        processes,
        tmp_path,
        {"chat": {"requeue_unanswered_secs": 1.5, "requeue_sweep_secs": 0.02}},
    )
    apis = [Api(p.base_url + "/v1/chat") for p in (one, two)]
    key = admin_keys[0]
    answered, ignored = [
        (await apis[0].post("/store/message/", s, {"body": "help"})).json["session_id"]
        for s in store_keys
    ]
    for sid in (answered, ignored):
        assert (await apis[1].post("/admin/session/claim/", key, {"session_id": sid})).status == 200
    # The store writes and the admin answers, back and forth, while both
    # processes sweep every 20 ms: every store message is answered in time.
    until = time.monotonic() + 4.0
    turn = 0
    while time.monotonic() < until:
        await apis[turn % 2].post("/store/message/", store_keys[0], {"body": f"q{turn}"})
        await asyncio.sleep(0.3)
        reply = await apis[(turn + 1) % 2].post(
            "/admin/message/", key, {"session_id": answered, "body": f"a{turn}"}
        )
        assert reply.status == 201, reply
        turn += 1
    detail = (await apis[0].get(f"/admin/session/{answered}/?limit=1000", key)).json
    assert detail["status"] == "claimed"
    assert "session_requeued" not in [m.get("event") for m in detail["messages"]]
    detail = (await apis[0].get(f"/admin/session/{ignored}/", key)).json
    assert detail["status"] == "open"
    assert [m.get("event") for m in detail["messages"]].count("session_requeued") == 1


@pytest.mark.gen_test(timeout=120)
async def test_a_transfer_raced_against_a_close_and_a_second_transfer_across_processes(
    db_url, processes, tmp_path
):
    admin_keys, store_keys = create_keys(db_url, admins=3, stores=6)
    one, two = start_two(db_url, processes, tmp_path, {})
    apis = [Api(p.base_url + "/v1/chat") for p in (one, two)]
    dana, omar, lena = admin_keys
    ids = {}
    for key in admin_keys:
        ids[key] = next(
            r["id"]
            for r in (await apis[0].get("/admin/admins/", key)).json["results"]
            if r["name"] == f"Admin{admin_keys.index(key)}"
        )
    outcomes = set()
    for store_key in store_keys:
        sid = (await apis[0].post("/store/message/", store_key, {"body": "hi"})).json["session_id"]
        await apis[0].post("/admin/session/claim/", dana, {"session_id": sid})
        to_omar, to_lena, close = await asyncio.gather(
            apis[0].post(
                "/admin/session/transfer/", dana, {"session_id": sid, "admin_id": ids[omar]}
            ),
            apis[1].post(
                "/admin/session/transfer/", dana, {"session_id": sid, "admin_id": ids[lena]}
            ),
            apis[0].post("/admin/session/close/", dana, {"session_id": sid}),
        )
        statuses = [r.status for r in (to_omar, to_lena, close)]
        assert statuses.count(200) == 1, statuses
        assert set(statuses) <= {200, 403, 409}
        winner = statuses.index(200)
        outcomes.add(winner)
        holder_key = (omar, lena, dana)[winner]
        detail = (await apis[1].get(f"/admin/session/{sid}/", holder_key)).json
        events = [m.get("event") for m in detail["messages"] if m.get("event")]
        if winner == 2:
            assert detail["status"] == "closed" and detail["admin_id"] == ids[dana]
            assert events == ["admin_connected", "session_closed"]
        else:
            assert detail["status"] == "claimed" and detail["admin_id"] == ids[holder_key]
            assert events == ["admin_connected", "session_transferred"]
            mine = (await apis[0].get("/admin/sessions/mine/", holder_key)).json["results"]
            assert sid in [s["id"] for s in mine]
        assert (await apis[0].get("/admin/sessions/mine/", dana)).json["results"] == []


@pytest.mark.gen_test(timeout=120)
async def test_a_graceful_stop_takes_its_sockets_offline_at_once_not_at_expiry(
    db_url, processes, tmp_path
):
    admin_keys, _ = create_keys(db_url, admins=2, stores=0)
    dana_key, watcher_key = admin_keys
    one, two = start_two(
        db_url, processes, tmp_path, {"presence": {"heartbeat_secs": 10, "expiry_secs": 60}}
    )
    api_two = Api(two.base_url + "/v1/chat")
    dana_id = next(
        r["id"]
        for r in (await api_two.get("/admin/admins/", dana_key)).json["results"]
        if r["name"] == "Admin0"
    )
    watcher = await admin_socket(two, watcher_key)
    await admin_socket(one, dana_key)
    assert await presence_event(watcher, dana_id) == "online"
    stopped_at = time.monotonic()
    assert one.stop() == 0  # SIGTERM: sockets closed with 1001, rows cleared
    assert await presence_event(watcher, dana_id, timeout=10) == "offline"
    assert time.monotonic() - stopped_at < 10  # far sooner than the 60 s expiry
    watcher.close()
