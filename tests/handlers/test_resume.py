"""resume: every stored message after ``after_seq``, then live ones, each once, in order."""

from __future__ import annotations

import asyncio

import pytest

from tests.handlers.test_websocket import admin_socket, store_socket
from tests.helpers import claimed_session, make_admin, make_store, open_session


async def collect_until(sock, last_seq: int, ref: str, timeout: float = 20.0) -> list[int]:
    """Message seqs received until the resume's ack and then ``last_seq`` arrive."""
    seqs, acked = [], False
    while not (acked and seqs and seqs[-1] >= last_seq):
        frame = await sock.recv(timeout)
        assert frame is not None
        if frame["type"] == "message":
            seqs.append(frame["message"]["seq"])
        acked = acked or (frame["type"] == "ack" and frame.get("ref") == ref)
    return seqs


@pytest.mark.gen_test(timeout=60)
async def test_resume_with_live_traffic_during_the_replay_gets_every_seq_once_in_order(server, api):
    store_key, admin_key, session = await claimed_session(server, api, "m0")
    sid = session["id"]
    for i in range(1, 1500):  # more than one replay page
        await server.raw_storage.post_store_message(
            (await server.raw_storage.get_session(sid)).store_id, f"m{i}", None
        )
    admin = await admin_socket(server, admin_key)

    async def live_traffic():
        for i in range(100):
            await api.post("/store/message/", store_key, {"body": f"live{i}"})

    traffic = asyncio.ensure_future(live_traffic())
    await asyncio.sleep(0.01)  # some live messages land before, some during the replay
    await admin.send({"type": "resume", "session_id": sid, "after_seq": 0, "ref": "r"})
    await traffic
    total = 1 + 1500 + 100  # the admin_connected system message is seq 2
    seqs = await collect_until(admin, total, "r")
    # Live frames that reached the socket before the server took the resume
    # may come first; from the replay's first frame (seq 1) on, the contract holds.
    seqs = seqs[seqs.index(1) :]
    assert seqs == list(range(1, total + 1))
    assert await admin.expect_silence(0.3) == []


@pytest.mark.gen_test
async def test_resume_replays_system_events_and_answers_with_the_last_seq(server, api):
    store_key, admin_key, session = await claimed_session(server, api, "hi")
    sid = session["id"]
    await api.post("/admin/message/", admin_key, {"session_id": sid, "body": "hello"})
    store = await store_socket(server, store_key)
    await store.send({"type": "resume", "session_id": sid, "after_seq": 1, "ref": 7})
    frames = [await store.recv() for _ in range(3)]
    assert [f["type"] for f in frames] == ["message", "message", "ack"]
    assert frames[0]["message"]["event"] == "admin_connected"
    assert frames[1]["message"]["body"] == "hello"
    assert frames[2] == {"type": "ack", "ref": 7, "session_id": sid, "last_seq": 3}


@pytest.mark.gen_test
async def test_a_store_may_resume_only_its_own_sessions(server, api):
    _, key_a = await make_store(server, "A")
    _, key_b = await make_store(server, "B")
    sid = (await open_session(api, key_a))["id"]
    b = await store_socket(server, key_b)
    error = await b.request({"type": "resume", "session_id": sid, "after_seq": 0})
    assert (error["type"], error["status"]) == ("error", 403)


@pytest.mark.gen_test
async def test_an_admin_resuming_an_open_session_watches_it_until_someone_else_claims_it(
    server, api
):
    _, store_key = await make_store(server)
    _, dana_key = await make_admin(server, "Dana")
    _, omar_key = await make_admin(server, "Omar")
    sid = (await open_session(api, store_key, "first"))["id"]
    omar = await admin_socket(server, omar_key)
    ack = await omar.request({"type": "resume", "session_id": sid, "after_seq": 0})
    assert ack["last_seq"] == 1
    await api.post("/store/message/", store_key, {"body": "second"})
    assert (await omar.recv_type("message"))["message"]["body"] == "second"
    await api.post("/admin/session/claim/", dana_key, {"session_id": sid})
    await api.post("/store/message/", store_key, {"body": "private now"})
    later = [f for f in await omar.expect_silence(0.4) if f["type"] == "message"]
    assert later == []
