"""The lean message path (issue 9): one frame fewer, frames coalesced, storage
per batch, local delivery from the commit, all without giving up ordering."""

from __future__ import annotations

import asyncio
import struct

import pytest

from tests.handlers.test_ws_framing import CLOSE, TEXT, RawSocket, masked_frame
from tests.helpers import Socket, claimed_session, make_admin, make_store, open_session


async def connect(server, role, key, **kw) -> Socket:
    sock = await Socket.connect(f"{server.ws_url}/v1/chat/{role}/ws/", key, **kw)
    assert (await sock.recv())["type"] == "hello"
    return sock


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("protocol", ["json", "msgpack"])
async def test_the_sending_socket_gets_its_ack_and_not_an_echo_other_sockets_get_message(
    server, api, protocol
):
    store_key, admin_key, session = await claimed_session(server, api)
    sender = await connect(server, "store", store_key, protocol=protocol)
    other_tab = await connect(server, "store", store_key, protocol=protocol)
    admin = await connect(server, "admin", admin_key, protocol=protocol)

    ack = await sender.request({"type": "message", "body": "one", "client_id": "c-1"})
    assert ack["type"] == "ack" and ack["message"]["body"] == "one"
    assert ack["message"]["session_id"] == session["id"]
    seen_by_tab = await other_tab.recv_type("message")
    seen_by_admin = await admin.recv_type("message")
    assert seen_by_tab["message"] == ack["message"] == seen_by_admin["message"]
    assert await sender.expect_silence(0.3) == []

    # An admin's reply still reaches both of the store's sockets, in seq order.
    await admin.request({"type": "message", "session_id": session["id"], "body": "two"})
    for sock in (sender, other_tab):
        frame = await sock.recv_type("message")
        assert frame["message"]["body"] == "two"
        assert frame["message"]["seq"] == ack["message"]["seq"] + 1
    assert await admin.expect_silence(0.3) == []


@pytest.mark.gen_test(timeout=30)
async def test_a_repeated_client_id_is_acked_with_the_first_message_and_not_echoed(server, api):
    store_key, _admin_key, _session = await claimed_session(server, api)
    sender = await connect(server, "store", store_key)
    first = await sender.request({"type": "message", "body": "once", "client_id": "same"})
    again = await sender.request({"type": "message", "body": "once", "client_id": "same"})
    assert again["message"] == first["message"]
    assert await sender.expect_silence(0.3) == []


@pytest.mark.gen_test(timeout=60)
async def test_concurrent_senders_get_gap_free_seqs_and_every_reader_sees_them_in_order(
    server, api
):
    store_key, admin_key, session = await claimed_session(server, api)
    admin = await connect(server, "admin", admin_key)
    watcher = await connect(server, "admin", admin_key)  # the holder's second tab
    observer = await connect(server, "store", store_key)  # a store tab that only reads
    stores = [await connect(server, "store", store_key) for _ in range(4)]
    per_socket = 25

    async def send_all(sock: Socket, name: str) -> list[int]:
        return [
            (await sock.request({"type": "message", "body": f"{name}{i}"}))["message"]["seq"]
            for i in range(per_socket)
        ]

    async def admin_sends() -> list[int]:
        return [
            (
                await admin.request(
                    {"type": "message", "session_id": session["id"], "body": f"a{i}"}
                )
            )["message"]["seq"]
            for i in range(per_socket)
        ]

    acked = await asyncio.gather(
        *[send_all(s, f"s{n}-") for n, s in enumerate(stores)], admin_sends()
    )
    seqs = sorted(seq for chunk in acked for seq in chunk)
    first = seqs[0]
    assert seqs == list(range(first, first + 5 * per_socket))  # no gap, no repeat
    for reader in (watcher, observer):
        got = [
            f["message"]["seq"] for f in await reader.expect_silence(0.5) if f["type"] == "message"
        ]
        assert got == seqs  # each exactly once, in order


@pytest.mark.gen_test(timeout=30)
async def test_frames_queued_in_one_pass_arrive_whole_and_in_order(server, api):
    # A burst of store messages with the admin reading: every frame arrives,
    # in seq order, though many of them shared one write.
    store_key, admin_key, _session = await claimed_session(server, api)
    admin = await connect(server, "admin", admin_key, protocol="msgpack")
    senders = [await connect(server, "store", store_key) for _ in range(3)]
    await asyncio.gather(
        *[
            s.request({"type": "message", "body": "x" * 300 * (i + 1)})
            for i, s in enumerate(senders)
        ]
    )
    frames = [f for f in await admin.expect_silence(0.5) if f["type"] == "message"]
    assert sorted(len(f["message"]["body"]) for f in frames) == [300, 600, 900]
    assert [f["message"]["seq"] for f in frames] == sorted(f["message"]["seq"] for f in frames)


@pytest.mark.gen_test(timeout=30)
async def test_a_new_stores_first_message_over_the_socket_opens_a_session_once(server, api):
    _store, key = await make_store(server, "Fresh")
    tabs = [await connect(server, "store", key) for _ in range(3)]
    acks = await asyncio.gather(
        *[t.request({"type": "message", "body": f"hi {i}"}) for i, t in enumerate(tabs)]
    )
    assert len({a["message"]["session_id"] for a in acks}) == 1
    assert sorted(a["message"]["seq"] for a in acks) == [1, 2, 3]


@pytest.mark.gen_test(timeout=60)
async def test_each_process_delivers_its_own_and_the_others_events_once_in_commit_order(tmp_path):
    # Two storages on one file stand for two server processes: each feed gets
    # its own events from the commit and the other's from the file, and must
    # hand the hub every event exactly once, in id (commit) order.
    from actors.feed import EventFeed
    from storage.sqlite import SQLiteStorage

    path = str(tmp_path / "two.sqlite3")
    a, b = SQLiteStorage(path), SQLiteStorage(path)
    await a.setup()
    await b.setup()
    store, _ = await a.create_store("S", None, None)
    admin, _ = await a.create_admin("Dana", None)
    first = await a.post_store_message(store.id, "open", None)
    await a.claim_session(first.session.id, admin, 0)
    seen_a, seen_b = [], []
    feed_a = EventFeed(a, seen_a.append, poll_interval_secs=0.005)
    feed_b = EventFeed(b, seen_b.append, poll_interval_secs=0.005)
    await feed_a.start()
    await feed_b.start()

    async def store_side(n: int) -> None:
        for i in range(n):
            await a.post_store_message(store.id, f"s{i}", None)

    async def admin_side(n: int) -> None:
        for i in range(n):
            await b.post_admin_message(first.session.id, admin.id, f"a{i}", None)

    await asyncio.gather(store_side(60), admin_side(60), store_side(40))
    await asyncio.sleep(0.2)
    await feed_a.catch_up()
    await feed_b.catch_up()
    for seen in (seen_a, seen_b):
        ids = [e.id for e in seen]
        assert ids == sorted(set(ids))  # once each, in commit order
        seqs = [e.payload["message"]["seq"] for e in seen if e.kind == "message"]
        assert seqs == list(range(seqs[0], seqs[0] + 160))  # gap-free, in order
    assert [e.id for e in seen_a] == [e.id for e in seen_b]
    await feed_a.stop()
    await feed_b.stop()
    await a.close()
    await b.close()


@pytest.mark.gen_test(timeout=90)
async def test_two_worker_processes_on_uvloop_keep_one_frame_fewer_and_every_seq_in_order(
    db_url, processes, tmp_path
):
    # Real server processes (the event loop server.py picks, uvloop where
    # installed), one store socket on each, one admin reading on the first.
    from tests.helpers import Api, ServerProcess, run_cli

    env = {"CHAT_STORAGE_URL": db_url}
    admin_key = run_cli("create-admin", "--name", "Dana", env=env).splitlines()[-1]
    store_key = run_cli("create-store", "--name", "Tech", env=env).splitlines()[-1]
    for _ in range(2):
        processes.append(ServerProcess(db_url).start(str(tmp_path / "log")))
    first = await Api(processes[0].base_url + "/v1/chat").post(
        "/store/message/", store_key, {"body": "open"}
    )
    sid = first.json["session"]["id"]
    claimed = await Api(processes[0].base_url + "/v1/chat").post(
        "/admin/session/claim/", admin_key, {"session_id": sid}
    )
    assert claimed.status == 200
    url = "ws://127.0.0.1:{}/v1/chat/{}/ws/"
    admin = await Socket.connect(url.format(processes[0].port, "admin"), admin_key)
    senders = [await Socket.connect(url.format(p.port, "store"), store_key) for p in processes]
    readers = [await Socket.connect(url.format(p.port, "store"), store_key) for p in processes]
    for sock in (admin, *senders, *readers):
        assert (await sock.recv())["type"] == "hello"
    seen_by_sender: list[list[dict]] = [[], []]

    async def send(n: int, name: str) -> list[int]:
        seqs = []
        for i in range(20):
            ref = f"{name}{i}"
            await senders[n].send({"type": "message", "body": ref, "ref": ref})
            while True:  # keep every frame that arrives before the ack
                frame = await senders[n].recv(10)
                if frame["type"] == "ack" and frame.get("ref") == ref:
                    seqs.append(frame["message"]["seq"])
                    break
                seen_by_sender[n].append(frame)
        return seqs

    acked = await asyncio.gather(send(0, "a"), send(1, "b"))
    everything = sorted(acked[0] + acked[1])
    assert everything == list(range(everything[0], everything[0] + 40))  # gap-free
    for n in (0, 1):  # a sender never gets a message frame of its own message
        seen_by_sender[n] += await senders[n].expect_silence(0.5)
        echoed = {f["message"]["seq"] for f in seen_by_sender[n] if f["type"] == "message"}
        assert not echoed & set(acked[n])
    for sock in (admin, *readers):  # everyone else: every message once, in order
        got: list[int] = []
        while len(got) < 40:
            frame = await sock.recv(10)
            # A socket may also get "open" (seq 1): the second process reads it
            # from the file a poll later, possibly after its sockets connected.
            if frame["type"] == "message" and frame["message"]["seq"] >= everything[0]:
                got.append(frame["message"]["seq"])
        assert got == everything


@pytest.mark.gen_test(timeout=10)
async def test_queued_commands_that_may_overlap_start_together_and_are_answered_in_order():
    from actors.actor import Actor
    from actors.runtime import ActorSystem

    started: list[str] = []
    gate = asyncio.Event()

    class Slow(Actor):
        def overlap_key(self, command):
            return None if command == "alone" else "write"

        async def receive(self, command):
            started.append(command)
            await gate.wait()
            return command.upper()

    system = ActorSystem(lambda key: Slow())
    asks = [asyncio.ensure_future(system.ask(1, c)) for c in ("a", "b", "c", "alone", "d")]
    for _ in range(20):
        await asyncio.sleep(0)
    assert started == ["a", "b", "c"]  # one group, all started; "alone" waits its turn
    gate.set()
    assert await asyncio.gather(*asks) == ["A", "B", "C", "ALONE", "D"]
    assert started == ["a", "b", "c", "alone", "d"]
    await system.stop_all()


@pytest.mark.gen_test(timeout=30)
async def test_ten_admins_racing_for_one_session_over_rest_get_one_winner(server, api):
    from tests.helpers import make_admin, open_session

    _store, store_key = await make_store(server, "Racer")
    session = await open_session(api, store_key)
    keys = [(await make_admin(server, f"A{i}"))[1] for i in range(10)]
    replies = await asyncio.gather(
        *[api.post("/admin/session/claim/", k, {"session_id": session["id"]}) for k in keys]
    )
    assert sorted(r.status for r in replies) == [200] + [409] * 9
    winner = next(r for r in replies if r.status == 200)
    stored = await server.raw_storage.get_session(session["id"])
    assert stored.admin_id == winner.json["admin_id"] and stored.last_seq == 2


@pytest.mark.gen_test(timeout=30)
async def test_a_socket_sending_without_waiting_for_acks_gets_no_echo_and_frames_in_seq_order(
    server, api
):
    # Frames are answered as they are stored, so a client may send a burst
    # without waiting: each message is acked once, none comes back as an
    # echo, and the admin's interleaved replies arrive in seq order with
    # the acks.
    store_key, admin_key, session = await claimed_session(server, api)
    sender = await connect(server, "store", store_key)
    admin = await connect(server, "admin", admin_key)
    for round_ in range(5):
        await admin.send(
            {
                "type": "message",
                "session_id": session["id"],
                "body": f"admin {round_}",
                "ref": f"a{round_}",
            }
        )
        for n in range(10):
            await sender.send(
                {"type": "message", "body": f"store {round_}.{n}", "ref": round_ * 10 + n}
            )
    frames = []
    while len([f for f in frames if f["type"] == "ack"]) < 50:
        frames.append(await sender.recv())
    frames += await sender.expect_silence(0.5)
    acks = [f for f in frames if f["type"] == "ack"]
    assert sorted(a["ref"] for a in acks) == list(range(50))
    assert [a["ref"] for a in acks] == list(range(50))  # answered in the order sent
    echoes = [f for f in frames if f["type"] == "message" and f["message"]["sender"] == "store"]
    assert echoes == []
    replies = [f["message"]["body"] for f in frames if f["type"] == "message"]
    assert replies == [f"admin {i}" for i in range(5)]
    seqs = [f["message"]["seq"] for f in frames if f["type"] in ("ack", "message")]
    assert seqs == sorted(seqs) and len(set(seqs)) == 55


@pytest.mark.gen_test(timeout=30)
async def test_messages_then_close_in_one_write_still_get_their_acks(server, api):
    # Frames are handled in the order sent (docs/api.md): the close frame
    # comes after two messages, so their acks must go out before our close.
    store_key, _admin_key, _session = await claimed_session(server, api)
    sock = await RawSocket.connect(server, store_key)
    assert (await sock.read_json())["type"] == "hello"
    sock.writer.write(
        masked_frame(TEXT, b'{"type": "message", "body": "one", "ref": 1}')
        + masked_frame(TEXT, b'{"type": "message", "body": "two", "ref": 2}')
        + masked_frame(CLOSE, struct.pack("!H", 1000))
    )
    frames = []
    while True:
        opcode, payload = await sock.read_frame()
        if opcode == CLOSE:
            break
        frames.append(payload)
    sock.close()
    assert len(frames) == 2, frames


class TestAnActorThatStopsWithMessagesQueued:
    @pytest.fixture
    def overrides(self):
        return {"actors": {"max_restarts": 0}}  # one failure stops the actor

    @pytest.mark.gen_test(timeout=30)
    async def test_its_messages_are_stored_by_a_fresh_actor_in_the_order_sent(self, server, api):
        _, store_key = await make_store(server)
        _, admin_key = await make_admin(server)
        session = await open_session(api, store_key, "first")
        sender = await connect(server, "store", store_key)
        entered, gate = asyncio.Event(), asyncio.Event()

        async def claim_that_fails_like_a_bug(*_args, **_kwargs):
            entered.set()
            await gate.wait()
            raise RuntimeError("a bug in storage")

        server.raw_storage.claim_session = claim_that_fails_like_a_bug
        claim = asyncio.ensure_future(
            api.post("/admin/session/claim/", admin_key, {"session_id": session["id"]})
        )
        await asyncio.wait_for(entered.wait(), 10)
        # While the claim runs, the store's messages wait in the actor's mailbox.
        for n in range(1, 6):
            await sender.send({"type": "message", "body": f"m{n}", "ref": n})
        cell = server.service.actors._cells[session["id"]]
        for _ in range(500):
            if len(cell.mailbox) == 5:
                break
            await asyncio.sleep(0.01)
        assert len(cell.mailbox) == 5
        gate.set()  # the claim fails, the actor stops: each message gets ActorStopped
        assert (await claim).status == 500
        acks = [await sender.recv_type("ack") for _ in range(5)]
        assert [a["ref"] for a in acks] == [1, 2, 3, 4, 5]
        assert [a["message"]["seq"] for a in acks] == [2, 3, 4, 5, 6]
        history = await api.get("/store/session/?limit=10", store_key)
        assert [m["body"] for m in history.json["messages"]] == [
            "first",
            "m1",
            "m2",
            "m3",
            "m4",
            "m5",
        ]
