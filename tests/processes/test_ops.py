"""Operations: /metrics, /healthz, /readyz, logs without keys, graceful shutdown."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time

import pytest

from tests.helpers import Api, ServerProcess, Socket, create_keys, free_port


def parse_metrics(text: str) -> dict[str, float]:
    """``{'name{labels}': value}`` for every sample line (labels as written)."""
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def total(samples: dict[str, float], prefix: str) -> float:
    return sum(v for k, v in samples.items() if k.startswith(prefix))


async def scripted_flow(base: str, admin_key: str, store_key: str) -> None:
    api = Api(base + "/v1/chat")
    opened = await api.post("/store/message/", store_key, {"body": "help"})
    sid = opened.json["session_id"]
    assert (await api.post("/admin/session/claim/", admin_key, {"session_id": sid})).status == 200
    assert (await api.post("/admin/session/claim/", admin_key, {"session_id": 999})).status == 404
    assert (
        await api.post("/admin/message/", admin_key, {"session_id": sid, "body": "on it"})
    ).status == 201
    api.close()


@pytest.mark.gen_test(timeout=60)
async def test_metrics_after_a_scripted_flow_show_every_family(db_url, processes, tmp_path):
    (admin_key,), (store_key, other_store) = create_keys(db_url, stores=2)
    proc = ServerProcess(db_url).start(str(tmp_path / "log"))
    processes.append(proc)
    await scripted_flow(proc.base_url, admin_key, store_key)
    await Api(proc.base_url + "/v1/chat").post("/store/message/", other_store, {"body": "q"})
    sock = await Socket.connect(f"ws://127.0.0.1:{proc.port}/v1/chat/store/ws/", store_key)
    await sock.recv()
    text = (await Api(proc.base_url).get("/metrics")).json
    m = parse_metrics(text)
    assert m['chat_claims_total{outcome="won"}'] == 1
    assert m['chat_claims_total{outcome="not_found"}'] == 1
    assert m['chat_messages_total{sender="store"}'] == 2
    assert m['chat_messages_total{sender="admin"}'] == 1
    assert m['chat_messages_total{sender="system"}'] == 1
    assert m['chat_http_requests_total{handler="admin_claim",method="POST",status="200"}'] == 1
    assert m['chat_http_requests_total{handler="admin_claim",method="POST",status="404"}'] == 1
    assert m['chat_http_requests_total{handler="store_message",method="POST",status="201"}'] == 2
    assert m['chat_http_request_duration_seconds_count{handler="admin_message"}'] == 1
    assert m['chat_websocket_connections{role="store"}'] == 1
    assert m['chat_websocket_frames_total{direction="out",type="hello"}'] == 1
    assert m["chat_actors_active"] >= 1
    assert m["chat_actor_mailbox_depth_count"] >= 2
    assert m["chat_actor_restarts_total"] == 0 and m["chat_actor_passivations_total"] == 0
    assert m['chat_storage_operation_duration_seconds_count{op="claim_session"}'] == 2
    assert (
        'chat_storage_errors_total{op="claim_session"}' not in m
        or m['chat_storage_errors_total{op="claim_session"}'] == 0
    )
    assert m["chat_sessions_open"] == 1  # the other store's session waits
    assert m["chat_session_wait_seconds_count"] == 1
    assert m["chat_first_response_seconds_count"] == 1
    for family in ("chat_storage_errors_total", "chat_actor_restarts_total"):
        assert f"# TYPE {family} counter" in text


@pytest.mark.gen_test(timeout=90)
async def test_with_two_workers_the_counters_add_up_across_both(db_url, processes, tmp_path):
    _admin_keys, store_keys = create_keys(db_url, admins=1, stores=10)
    proc = ServerProcess(db_url, env={"CHAT_PROCESSES": "2"}).start(str(tmp_path / "log"))
    processes.append(proc)
    pids = set()
    while len(pids) < 2:  # make sure both workers answered some of the requests
        pids.add((await Api(proc.base_url).get("/healthz")).json["pid"])
    await asyncio.gather(
        *[
            Api(proc.base_url + "/v1/chat").post("/store/message/", key, {"body": "hi"})
            for key in store_keys
        ]
    )
    m = parse_metrics((await Api(proc.base_url).get("/metrics")).json)
    assert m['chat_messages_total{sender="store"}'] == 10
    assert m['chat_http_requests_total{handler="store_message",method="POST",status="201"}'] == 10
    assert m["chat_sessions_open"] == 10
    assert proc.stop() == 0


@pytest.mark.gen_test(timeout=60)
async def test_readyz_turns_503_when_storage_is_unreachable_and_200_when_back(
    db_url, processes, tmp_path
):
    proc = ServerProcess(db_url).start(str(tmp_path / "log"))
    processes.append(proc)
    api = Api(proc.base_url)
    assert (await api.get("/readyz")).status == 200
    path = db_url[len("sqlite:///") :]
    os.rename(path, path + ".away")
    try:
        reply = await api.get("/readyz")
        assert reply.status == 503 and reply.json["status"] == "unavailable"
        assert (await api.get("/healthz")).status == 200  # the process still serves
    finally:
        os.rename(path + ".away", path)
    assert (await api.get("/readyz")).status == 200


@pytest.mark.gen_test(timeout=60)
async def test_ops_bind_moves_the_ops_endpoints_off_the_api_port(db_url, processes, tmp_path):
    ops_port = free_port()
    config = tmp_path / "ops.yaml"
    config.write_text(f"ops:\n  bind: 127.0.0.1:{ops_port}\n")
    proc = ServerProcess(db_url, config_path=str(config), ready_port=ops_port)
    processes.append(proc.start(str(tmp_path / "log")))
    assert (await Api(f"http://127.0.0.1:{ops_port}").get("/metrics")).status == 200
    assert (await Api(proc.base_url).get("/metrics")).status == 404
    assert (await Api(proc.base_url).get("/healthz")).status == 404


@pytest.mark.gen_test(timeout=60)
async def test_sigterm_closes_sockets_with_1001_exits_0_and_keeps_every_ack(
    db_url, processes, tmp_path
):
    _, (store_key,) = create_keys(db_url)
    proc = ServerProcess(db_url).start(str(tmp_path / "log"))
    processes.append(proc)
    sock = await Socket.connect(f"ws://127.0.0.1:{proc.port}/v1/chat/store/ws/", store_key)
    await sock.recv()
    api = Api(proc.base_url + "/v1/chat")
    acked = []

    async def send(i):
        reply = await api.post("/store/message/", store_key, {"body": f"m{i}"})
        if reply.status == 201:
            acked.append(reply.json["id"])

    sends = [asyncio.ensure_future(send(i)) for i in range(100)]
    while len(acked) < 20:
        await asyncio.sleep(0.002)
    started = time.monotonic()
    proc.signal(signal.SIGTERM)
    await asyncio.gather(*sends, return_exceptions=True)
    while await sock.recv(10) is not None:
        pass
    assert sock.close_code == 1001
    code = await asyncio.get_running_loop().run_in_executor(None, proc.proc.wait, 15)
    assert code == 0 and time.monotonic() - started < 10
    restarted = ServerProcess(db_url, port=proc.port).start(str(tmp_path / "log"))
    processes.append(restarted)
    history = await Api(restarted.base_url + "/v1/chat").get(
        "/store/session/?limit=1000", store_key
    )
    assert set(acked) <= {m["id"] for m in history.json["messages"]}


@pytest.mark.parametrize("log_format", ["text", "json"])
@pytest.mark.gen_test(timeout=60)
async def test_no_key_appears_in_the_logs(db_url, processes, tmp_path, log_format):
    (admin_key,), (store_key,) = create_keys(db_url)
    config = tmp_path / "log.yaml"
    config.write_text(f"logging:\n  format: {log_format}\n  level: DEBUG\n")
    log_path = tmp_path / "server.log"
    proc = ServerProcess(db_url, config_path=str(config)).start(str(log_path))
    processes.append(proc)
    api = Api(proc.base_url + "/v1/chat")
    await scripted_flow(proc.base_url, admin_key, store_key)
    await api.get(f"/admin/sessions/open/?token={admin_key}", admin_key)
    await api.get(f"/store/session/?key={store_key}&token={store_key}")
    await api.get("/admin/sessions/open/", "0" * 40)  # a bad key is a key too
    sock = await Socket.connect(f"ws://127.0.0.1:{proc.port}/v1/chat/store/ws/?token={store_key}")
    await sock.send({"type": "auth", "token": store_key})
    await sock.recv()
    sock.close()
    bad = await Socket.connect(f"ws://127.0.0.1:{proc.port}/v1/chat/admin/ws/")
    await bad.send({"type": "auth", "token": store_key})  # wrong kind: closed 4003
    await bad.recv()
    await asyncio.sleep(0.3)
    assert proc.stop() == 0
    text = log_path.read_text()
    assert "POST /v1/chat/admin/session/claim/ 200" in text or '"status": 200' in text
    assert re.search(r"ws (open|close)", text)
    for key in (admin_key, store_key, "0" * 40):
        assert key not in text
