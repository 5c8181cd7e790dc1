"""Several processes on one SQLite file: workers from one command, and separate
server processes; claims, seq, events across them, and a worker's SIGKILL."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from tests.helpers import Api, ServerProcess, Socket, create_keys


async def worker_pids(api_base: str, expected: int = 2, within_secs: float = 15.0) -> set[int]:
    """The pids of the workers that answer /healthz, asked in concurrent bursts
    (sequential requests may all land on one worker of a busy machine) until
    ``expected`` have answered or time is up."""
    api = Api(api_base)
    pids: set[int] = set()
    deadline = time.monotonic() + within_secs
    while len(pids) < expected and time.monotonic() < deadline:
        replies = await asyncio.gather(*[api.get("/healthz") for _ in range(10)])
        pids.update(reply.json["pid"] for reply in replies)
    api.close()
    return pids


async def hello(url: str, key: str) -> Socket:
    sock = await Socket.connect(url, key)
    assert (await sock.recv())["type"] == "hello"
    return sock


@pytest.mark.gen_test(timeout=120)
async def test_two_workers_from_one_command_share_the_port_and_the_guards(
    db_url, processes, tmp_path
):
    admin_keys, store_keys = create_keys(db_url, admins=30, stores=1)
    proc = ServerProcess(db_url, env={"CHAT_PROCESSES": "2"}).start(str(tmp_path / "log"))
    processes.append(proc)
    assert len(await worker_pids(proc.base_url)) == 2  # both workers answer
    api = Api(proc.base_url + "/v1/chat")
    sid = (await api.post("/store/message/", store_keys[0], {"body": "0"})).json["session_id"]
    claims = await asyncio.gather(
        *[
            Api(proc.base_url + "/v1/chat").post("/admin/session/claim/", key, {"session_id": sid})
            for key in admin_keys
        ]
    )
    assert sorted(r.status for r in claims) == [200] + [409] * 29
    winner = admin_keys[[r.status for r in claims].index(200)]
    sends = [
        Api(proc.base_url + "/v1/chat").post("/store/message/", store_keys[0], {"body": f"s{i}"})
        for i in range(60)
    ]
    sends += [
        Api(proc.base_url + "/v1/chat").post(
            "/admin/message/", winner, {"session_id": sid, "body": f"a{i}"}
        )
        for i in range(60)
    ]
    assert {r.status for r in await asyncio.gather(*sends)} == {201}
    history = await api.get(f"/admin/session/{sid}/?limit=1000", winner)
    assert [m["seq"] for m in history.json["messages"]] == list(range(1, 123))
    assert proc.stop() == 0


@pytest.mark.gen_test(timeout=120)
async def test_a_killed_worker_is_replaced(db_url, processes, tmp_path):
    proc = ServerProcess(db_url, env={"CHAT_PROCESSES": "2"}).start(str(tmp_path / "log"))
    processes.append(proc)
    before = await worker_pids(proc.base_url)
    victim = before.pop()
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        now = await worker_pids(proc.base_url, within_secs=2)
        if len(now) == 2 and victim not in now:
            break
        await asyncio.sleep(0.2)
    assert len(now) == 2 and victim not in now
    assert proc.stop() == 0


@pytest.mark.gen_test(timeout=120)
async def test_a_stores_socket_on_one_process_hears_what_the_other_stored(
    db_url, processes, tmp_path
):
    admin_keys, store_keys = create_keys(db_url)
    one, two = (ServerProcess(db_url).start(str(tmp_path / "log")) for _ in range(2))
    processes += [one, two]
    store = await hello(f"ws://127.0.0.1:{one.port}/v1/chat/store/ws/", store_keys[0])
    admin_elsewhere = await hello(f"ws://127.0.0.1:{one.port}/v1/chat/admin/ws/", admin_keys[0])
    api_two = Api(two.base_url + "/v1/chat")
    ack = await store.request({"type": "message", "body": "help"})
    sid = ack["message"]["session_id"]
    opened = await admin_elsewhere.recv_type("session_opened")
    assert opened["session"]["id"] == sid
    await api_two.post("/admin/session/claim/", admin_keys[0], {"session_id": sid})
    assert (await store.recv_type("admin_connected"))["session_id"] == sid
    await api_two.post("/admin/message/", admin_keys[0], {"session_id": sid, "body": "from two"})
    got = await store.recv_type("message")
    while got["message"]["sender"] != "admin":
        got = await store.recv_type("message")
    assert got["message"]["body"] == "from two"
    await api_two.post("/admin/session/close/", admin_keys[0], {"session_id": sid})
    assert (await store.recv_type("session_closed"))["session"]["status"] == "closed"


@pytest.mark.gen_test(timeout=120)
async def test_clients_of_a_killed_process_reconnect_elsewhere_resume_and_miss_nothing(
    db_url, processes, tmp_path
):
    admin_keys, store_keys = create_keys(db_url)
    one, two = (ServerProcess(db_url).start(str(tmp_path / "log")) for _ in range(2))
    processes += [one, two]
    store = await hello(f"ws://127.0.0.1:{one.port}/v1/chat/store/ws/", store_keys[0])
    sid = (await store.request({"type": "message", "body": "m0"}))["message"]["session_id"]
    api_two = Api(two.base_url + "/v1/chat")
    await api_two.post("/admin/session/claim/", admin_keys[0], {"session_id": sid})
    admin = await hello(f"ws://127.0.0.1:{one.port}/v1/chat/admin/ws/", admin_keys[0])
    seen = 0
    for i in range(20):
        await api_two.post("/admin/message/", admin_keys[0], {"session_id": sid, "body": f"a{i}"})
    while seen < 22:  # m0, admin_connected, a0..a19
        frame = await store.recv_type("message")
        seen = frame["message"]["seq"]
    one.kill()  # SIGKILL, with both sockets connected
    assert await store.recv() is None
    # traffic goes on through the other process while the clients are away
    for i in range(20, 40):
        await api_two.post("/admin/message/", admin_keys[0], {"session_id": sid, "body": f"a{i}"})
    await api_two.post("/store/message/", store_keys[0], {"body": "still here"})
    store = await hello(f"ws://127.0.0.1:{two.port}/v1/chat/store/ws/", store_keys[0])
    admin = await hello(f"ws://127.0.0.1:{two.port}/v1/chat/admin/ws/", admin_keys[0])
    for sock in (store, admin):
        await sock.send({"type": "resume", "session_id": sid, "after_seq": seen, "ref": "r"})
    got = []
    while True:
        frame = await store.recv()
        if frame["type"] == "ack":
            break
        got.append(frame["message"]["seq"])
    assert got == list(range(seen + 1, 44)) and frame["last_seq"] == 43
    admin_got = []
    while True:
        frame = await admin.recv()
        if frame["type"] == "ack":
            break
        if frame["type"] == "message":
            admin_got.append(frame["message"]["seq"])
    assert admin_got == got


def cpus_of_threads(pid: int) -> dict[str, str]:
    """Each thread of ``pid`` (by name) -> the CPUs it may run on, as /proc lists them."""
    cpus = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                fields = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
        except FileNotFoundError:  # a thread that has just ended
            continue
        cpus[f"{fields['Name']}/{tid}"] = fields["Cpus_allowed_list"]
    return cpus


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="CPU affinity is Linux-only")
@pytest.mark.gen_test(timeout=120)
async def test_pinned_workers_each_keep_every_thread_on_a_cpu_of_their_own(
    db_url, processes, tmp_path
):
    _admin_keys, store_keys = create_keys(db_url, admins=1, stores=1)
    proc = ServerProcess(
        db_url, env={"CHAT_PROCESSES": "2", "CHAT_SERVER__PIN_TO_CPUS": "true"}
    ).start(str(tmp_path / "log"))
    processes.append(proc)
    pids = await worker_pids(proc.base_url)
    assert len(pids) == 2
    api = Api(proc.base_url + "/v1/chat")  # the pinned workers serve (and start their writers)
    assert (await api.post("/store/message/", store_keys[0], {"body": "hi"})).status == 201
    usable = sorted(os.sched_getaffinity(0))
    pinned = []
    for pid in pids:
        threads = cpus_of_threads(pid)
        assert any(name.startswith("sqlite-writer") for name in threads), threads
        assert len(set(threads.values())) == 1, threads  # every thread on the same CPU...
        (cpu,) = set(threads.values())
        assert int(cpu) in usable  # ...one CPU, one this process may use
        pinned.append(int(cpu))
    if len(usable) >= 2:
        assert len(set(pinned)) == 2  # and the two workers on different ones
    assert proc.stop() == 0


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="CPU affinity is Linux-only")
@pytest.mark.gen_test(timeout=60)
async def test_by_default_a_worker_may_run_on_every_cpu(db_url, processes, tmp_path):
    proc = ServerProcess(db_url).start(str(tmp_path / "log"))
    processes.append(proc)
    with open("/proc/self/status") as f:
        ours = next(
            line.split(":\t")[1].strip() for line in f if line.startswith("Cpus_allowed_list")
        )
    assert set(cpus_of_threads(proc.proc.pid).values()) == {ours}
    assert proc.stop() == 0
