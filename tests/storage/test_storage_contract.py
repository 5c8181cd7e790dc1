"""One storage contract, run over every backend.

* ``sqlite``: always, on a real file.
* ``mongomock-standin``: MongoStorage over mongomock, a stand-in for MongoDB's
  query semantics only (not a server; no replication, no real concurrency).
* ``mongodb-compatible-wire-server``: MongoStorage over a real TCP port against
  a MongoDB-compatible wire-protocol server (SecantusDB, started for the test
  run), or the server in CHAT_TEST_MONGO_URL; skipped, with the reason shown,
  where neither is available.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from storage.mongo import MongoStorage
from storage.outcomes import ClaimOutcome, WriteOutcome
from storage.records import Role, SessionStatus
from storage.sqlite import SQLiteStorage
from storage.workflow import (
    AWAY,
    OFFLINE,
    ONLINE,
    RequeueReason,
    StaleCutoffs,
    TransferOutcome,
)
from tests.mongomock_async import AsyncDatabase


@pytest.fixture(params=["sqlite", "mongomock-standin", "mongodb-compatible-wire-server"])
def storage(request, tmp_path, io_loop):
    if request.param == "sqlite":
        backend = SQLiteStorage(str(tmp_path / "contract.sqlite3"))
    elif request.param == "mongomock-standin":
        backend = MongoStorage(AsyncDatabase())
    else:
        wire_server = request.getfixturevalue("wire_server")
        backend = MongoStorage.from_url(wire_server.url_for())
    io_loop.run_sync(backend.setup)
    yield backend
    if request.param == "mongodb-compatible-wire-server":
        io_loop.run_sync(lambda: backend.client.drop_database(backend.db.name))
    io_loop.run_sync(backend.close)


async def a_store(storage, name="Tech"):
    store, key = await storage.create_store(name, "s@example.com", "https://x/l.png")
    return store, key


@pytest.mark.gen_test
async def test_accounts_authenticate_by_key_and_count(storage):
    assert await storage.count_accounts() == 0
    admin, admin_key = await storage.create_admin("Dana", "d@example.com")
    store, store_key = await a_store(storage)
    who = await storage.authenticate(admin_key)
    assert (who.role, who.id, who.name) == (Role.ADMIN, admin.id, "Dana")
    who = await storage.authenticate(store_key)
    assert (who.role, who.id, who.logo_url) == (Role.STORE, store.id, "https://x/l.png")
    assert await storage.authenticate("nope") is None
    assert (await storage.get_admin(admin.id)).name == "Dana"
    assert await storage.count_accounts() == 2


@pytest.mark.gen_test
async def test_a_store_message_opens_one_session_and_numbers_messages(storage):
    store, _ = await a_store(storage)
    first = await storage.post_store_message(store.id, "one", None)
    second = await storage.post_store_message(store.id, "two", "c1")
    assert first.created and first.session.status is SessionStatus.OPEN
    assert second.session.id == first.session.id
    assert [first.message.seq, second.message.seq] == [1, 2]
    assert (await storage.get_active_session(store.id)).id == first.session.id
    assert await storage.count_open_sessions() == 1
    history = await storage.list_messages(first.session.id, 0, 10)
    assert [m.body for m in history] == ["one", "two"]
    assert [m.seq for m in await storage.list_messages(first.session.id, 1, 10)] == [2]


@pytest.mark.gen_test
async def test_claim_outcomes(storage):
    store, _ = await a_store(storage)
    dana, _ = await storage.create_admin("Dana", None)
    omar, _ = await storage.create_admin("Omar", None)
    sid = (await storage.post_store_message(store.id, "hi", None)).session.id
    assert (await storage.claim_session(999, dana, 0)).outcome is ClaimOutcome.NOT_FOUND
    won = await storage.claim_session(sid, dana, 0)
    assert won.outcome is ClaimOutcome.WON and won.session.admin_id == dana.id
    assert (await storage.claim_session(sid, dana, 0)).outcome is ClaimOutcome.ALREADY_HELD
    assert (await storage.claim_session(sid, omar, 0)).outcome is ClaimOutcome.CONFLICT
    history = await storage.list_messages(sid, 0, 10)
    assert [(m.sender, m.event) for m in history] == [
        ("store", None),
        ("system", "admin_connected"),
    ]
    assert (await storage.close_session(sid, dana.id)).outcome is WriteOutcome.DONE
    assert (await storage.claim_session(sid, omar, 0)).outcome is ClaimOutcome.CLOSED


@pytest.mark.gen_test
async def test_the_claim_race_has_one_winner(storage):
    store, _ = await a_store(storage)
    admins = [(await storage.create_admin(f"A{i}", None))[0] for i in range(20)]
    sid = (await storage.post_store_message(store.id, "hi", None)).session.id
    results = await asyncio.gather(*[storage.claim_session(sid, a, 0) for a in admins])
    assert sorted(r.outcome.value for r in results).count("won") == 1
    assert {r.outcome for r in results} == {ClaimOutcome.WON, ClaimOutcome.CONFLICT}


@pytest.mark.gen_test
async def test_the_per_admin_limit_holds_under_concurrent_claims(storage):
    dana, _ = await storage.create_admin("Dana", None)
    sids = []
    for i in range(6):
        store, _ = await a_store(storage, f"S{i}")
        sids.append((await storage.post_store_message(store.id, "hi", None)).session.id)
    results = await asyncio.gather(*[storage.claim_session(s, dana, 2) for s in sids])
    outcomes = [r.outcome for r in results]
    assert outcomes.count(ClaimOutcome.WON) == 2 and outcomes.count(ClaimOutcome.LIMIT) == 4
    assert len(await storage.list_admin_sessions(dana.id, 10, None)) == 2
    # releasing frees a place
    won = next(r.session.id for r in results if r.outcome is ClaimOutcome.WON)
    assert (await storage.release_session(won, dana.id)).outcome is WriteOutcome.DONE
    lost = next(r.session.id for r in results if r.outcome is ClaimOutcome.LIMIT)
    assert (await storage.claim_session(lost, dana, 2)).outcome is ClaimOutcome.WON


@pytest.mark.gen_test
async def test_seq_stays_contiguous_under_concurrent_posts(storage):
    store, _ = await a_store(storage)
    dana, _ = await storage.create_admin("Dana", None)
    sid = (await storage.post_store_message(store.id, "0", None)).session.id
    await storage.claim_session(sid, dana, 0)
    posts = [storage.post_store_message(store.id, f"s{i}", None) for i in range(40)]
    posts += [storage.post_admin_message(sid, dana.id, f"a{i}", None) for i in range(40)]
    results = await asyncio.gather(*posts)
    assert all(r.outcome is WriteOutcome.DONE for r in results)
    seqs = [m.seq for m in await storage.list_messages(sid, 0, 1000)]
    assert seqs == list(range(1, 83))


@pytest.mark.gen_test
async def test_client_id_is_idempotent_per_sender(storage):
    store, _ = await a_store(storage)
    first = await storage.post_store_message(store.id, "hi", "k")
    again = await storage.post_store_message(store.id, "hi", "k")
    assert first.created and not again.created and again.message == first.message
    assert len(await storage.list_messages(first.session.id, 0, 10)) == 1


@pytest.mark.gen_test
async def test_one_active_session_per_store_and_a_new_one_after_close(storage):
    store, _ = await a_store(storage)
    dana, _ = await storage.create_admin("Dana", None)
    results = await asyncio.gather(
        *[storage.post_store_message(store.id, f"{i}", None) for i in range(10)]
    )
    assert len({r.session.id for r in results}) == 1
    sid = results[0].session.id
    await storage.claim_session(sid, dana, 0)
    await storage.close_session(sid, dana.id)
    assert await storage.get_active_session(store.id) is None
    fresh = await storage.post_store_message(store.id, "again", None)
    assert fresh.session.id != sid and fresh.message.seq == 1


@pytest.mark.gen_test
async def test_holder_writes_refuse_others_and_closed_sessions(storage):
    store, _ = await a_store(storage)
    dana, _ = await storage.create_admin("Dana", None)
    omar, _ = await storage.create_admin("Omar", None)
    sid = (await storage.post_store_message(store.id, "hi", None)).session.id
    assert (
        await storage.post_admin_message(sid, dana.id, "x", None)
    ).outcome is WriteOutcome.FORBIDDEN  # open: nobody holds it yet
    await storage.claim_session(sid, dana, 0)
    assert (await storage.release_session(sid, omar.id)).outcome is WriteOutcome.FORBIDDEN
    assert (await storage.close_session(sid, omar.id)).outcome is WriteOutcome.FORBIDDEN
    assert (
        await storage.post_admin_message(999, dana.id, "x", None)
    ).outcome is WriteOutcome.NOT_FOUND
    assert (await storage.close_session(sid, dana.id)).outcome is WriteOutcome.DONE
    assert (await storage.close_session(sid, dana.id)).outcome is WriteOutcome.UNCHANGED
    assert (await storage.release_session(sid, dana.id)).outcome is WriteOutcome.CLOSED
    assert (
        await storage.post_admin_message(sid, dana.id, "x", None)
    ).outcome is WriteOutcome.CLOSED


@pytest.mark.gen_test
async def test_lists_page_by_position(storage):
    dana, _ = await storage.create_admin("Dana", None)
    sids = []
    for i in range(4):
        store, _ = await a_store(storage, f"S{i}")
        sids.append((await storage.post_store_message(store.id, "hi", None)).session.id)
    page = await storage.list_open_sessions(2, None)
    assert [s.id for s in page] == sids[:2]
    rest = await storage.list_open_sessions(10, (page[-1].queued_at, page[-1].id))
    assert [s.id for s in rest] == sids[2:]
    for sid in sids[:3]:
        await storage.claim_session(sid, dana, 0)
    mine = await storage.list_admin_sessions(dana.id, 2, None)
    assert [s.id for s in mine] == [sids[2], sids[1]]
    more = await storage.list_admin_sessions(dana.id, 2, (mine[-1].activity_at, mine[-1].id))
    assert [s.id for s in more] == [sids[0]]


@pytest.mark.gen_test
async def test_a_stores_sessions_list_newest_first_whoever_held_them_and_page_by_position(storage):
    store, _ = await a_store(storage)
    other, _ = await a_store(storage, "Other")
    dana, _ = await storage.create_admin("Dana", None)
    omar, _ = await storage.create_admin("Omar", None)
    sids = []
    for holder in (dana, omar, None):  # closed by Dana, closed by Omar, still open
        sid = (await storage.post_store_message(store.id, "hi", None)).session.id
        sids.append(sid)
        if holder is not None:
            await storage.claim_session(sid, holder, 0)
            await storage.close_session(sid, holder.id)
    await storage.post_store_message(other.id, "not this store's", None)
    page = await storage.list_store_sessions(store.id, 2, None)
    assert [s.id for s in page] == [sids[2], sids[1]]
    assert [s.status.value for s in page] == ["open", "closed"]
    assert page[1].admin_id == omar.id
    rest = await storage.list_store_sessions(store.id, 10, (page[-1].created, page[-1].id))
    assert [(s.id, s.admin_id) for s in rest] == [(sids[0], dana.id)]
    assert await storage.list_store_sessions(999, 10, None) == []
    assert (await storage.get_store(store.id)).name == "Tech"
    assert await storage.get_store(999) is None


@pytest.mark.gen_test
async def test_the_change_feed_reports_every_change_in_order(storage):
    start = await storage.feed_head()
    store, _ = await a_store(storage)
    dana, _ = await storage.create_admin("Dana", None)
    sid = (await storage.post_store_message(store.id, "hi", None)).session.id
    await storage.claim_session(sid, dana, 0)
    session = await storage.get_session(sid)
    await storage.append_typing(session, "admin")
    await storage.release_session(sid, dana.id)
    events = await storage.read_events(start, 100)
    assert [e.kind for e in events] == [
        "session_opened",
        "message",
        "session_claimed",
        "message",
        "typing",
        "message",
        "session_released",
    ]
    assert events[1].payload["message"]["body"] == "hi"
    assert events[2].payload["admin"] == {"id": dana.id, "name": "Dana"}
    assert len({e.id for e in events}) == len(events)  # each its own id
    assert await storage.read_events(events[-1].position, 100) == []
    assert await storage.read_events(await storage.feed_head(), 100) == []
    assert await storage.read_events(events[2].position, 2) == events[3:5]
    assert await storage.prune_events(0) >= len(events)
    await storage.ping()


@pytest.mark.gen_test
async def test_a_mongodb_url_selects_the_mongo_backend_and_an_outage_is_unavailable():
    """A real AsyncMongoClient pointed at a port with no server: calls fail as
    StorageUnavailable (503 upstream) instead of hanging or crashing."""
    from storage import open_storage
    from storage.errors import StorageUnavailable

    backend = open_storage("mongodb://127.0.0.1:9/chat", {"mongo_timeout_ms": 200})
    assert isinstance(backend, MongoStorage) and backend.db.name == "chat"
    with pytest.raises(StorageUnavailable):
        await backend.ping()
    with pytest.raises(StorageUnavailable):
        await backend.get_session(1)
    await backend.close()


@pytest.mark.gen_test
async def test_a_feed_position_is_saved_per_node(storage):
    assert await storage.load_feed_position("node-a") is None
    await storage.save_feed_position("node-a", 7)
    await storage.save_feed_position("node-a", 9)
    await storage.save_feed_position("node-b", 3)
    assert await storage.load_feed_position("node-a") == 9
    assert await storage.load_feed_position("node-b") == 3


# --- the support workflow (issue 12): each decision's race --------------------------


async def a_claimed_session(storage, admin, store_name="Tech", limit=0):
    store, _ = await a_store(storage, store_name)
    sid = (await storage.post_store_message(store.id, "hi", None)).session.id
    assert (await storage.claim_session(sid, admin, limit)).outcome is ClaimOutcome.WON
    return store, sid


@pytest.mark.gen_test
async def test_transfer_outcomes_follow_the_order_of_checks(storage):
    dana, _ = await storage.create_admin("Dana", None)
    omar, _ = await storage.create_admin("Omar", None)
    lena, _ = await storage.create_admin("Lena", None)
    _, sid = await a_claimed_session(storage, dana)
    assert (
        await storage.transfer_session(999, dana.id, omar.id, 0)
    ).outcome is TransferOutcome.NOT_FOUND
    assert (
        await storage.transfer_session(sid, dana.id, 999, 0)
    ).outcome is TransferOutcome.ADMIN_NOT_FOUND
    assert (
        await storage.transfer_session(sid, lena.id, omar.id, 0)
    ).outcome is TransferOutcome.FORBIDDEN
    done = await storage.transfer_session(sid, dana.id, omar.id, 0)
    assert done.outcome is TransferOutcome.DONE and done.session.admin_id == omar.id
    assert (
        await storage.transfer_session(sid, dana.id, lena.id, 0)
    ).outcome is TransferOutcome.FORBIDDEN  # the old holder lost it at once
    assert (
        await storage.post_admin_message(sid, dana.id, "x", None)
    ).outcome is WriteOutcome.FORBIDDEN
    assert (await storage.post_admin_message(sid, omar.id, "x", None)).outcome is WriteOutcome.DONE
    history = await storage.list_messages(sid, 0, 10)
    assert [m.event for m in history] == [None, "admin_connected", "session_transferred", None]
    assert [s.id for s in await storage.list_admin_sessions(omar.id, 10, None)] == [sid]
    assert await storage.list_admin_sessions(dana.id, 10, None) == []
    await storage.close_session(sid, omar.id)
    assert (
        await storage.transfer_session(sid, omar.id, dana.id, 0)
    ).outcome is TransferOutcome.CLOSED


@pytest.mark.gen_test
async def test_a_transfer_to_an_admin_at_the_limit_is_refused_and_changes_nothing(storage):
    dana, _ = await storage.create_admin("Dana", None)
    omar, _ = await storage.create_admin("Omar", None)
    # one deployment, one limit: the claims ran under it too
    _, sid = await a_claimed_session(storage, dana, "S1", limit=1)
    _, full = await a_claimed_session(storage, omar, "S2", limit=1)
    before = await storage.list_messages(sid, 0, 10)
    refused = await storage.transfer_session(sid, dana.id, omar.id, 1)
    assert refused.outcome is TransferOutcome.LIMIT
    assert (await storage.get_session(sid)).admin_id == dana.id
    assert await storage.list_messages(sid, 0, 10) == before
    await storage.close_session(full, omar.id)  # a place frees up
    assert (
        await storage.transfer_session(sid, dana.id, omar.id, 1)
    ).outcome is TransferOutcome.DONE
    assert (await storage.claim_session(full, dana, 1)).outcome is ClaimOutcome.CLOSED


@pytest.mark.gen_test
async def test_a_transfer_raced_against_the_close_and_a_second_transfer_has_one_winner(storage):
    dana, _ = await storage.create_admin("Dana", None)
    omar, _ = await storage.create_admin("Omar", None)
    lena, _ = await storage.create_admin("Lena", None)
    for round_ in range(4):
        _, sid = await a_claimed_session(storage, dana, f"S{round_}")
        to_omar, to_lena, closed = await asyncio.gather(
            storage.transfer_session(sid, dana.id, omar.id, 0),
            storage.transfer_session(sid, dana.id, lena.id, 0),
            storage.close_session(sid, dana.id),
        )
        winners = [
            to_omar.outcome is TransferOutcome.DONE,
            to_lena.outcome is TransferOutcome.DONE,
            closed.outcome is WriteOutcome.DONE,
        ]
        assert winners.count(True) == 1
        final = await storage.get_session(sid)
        history = await storage.list_messages(sid, 0, 20)
        events = [m.event for m in history if m.event]
        assert events.count("session_transferred") + events.count("session_closed") == 1
        if closed.outcome is WriteOutcome.DONE:
            assert final.status is SessionStatus.CLOSED and final.admin_id == dana.id
        else:
            winner = omar if winners[0] else lena
            assert final.status is SessionStatus.CLAIMED and final.admin_id == winner.id
        if final.status is SessionStatus.CLAIMED:
            await storage.close_session(sid, final.admin_id)


@pytest.mark.gen_test
async def test_read_positions_only_move_forward_and_count_unread(storage):
    dana, _ = await storage.create_admin("Dana", None)
    omar, _ = await storage.create_admin("Omar", None)
    store, sid = await a_claimed_session(storage, dana)
    for i in range(3):
        await storage.post_store_message(store.id, f"s{i}", None)  # seq 3, 4, 5
    await storage.post_admin_message(sid, dana.id, "a", None)  # seq 6
    assert (await storage.unread_counts([sid], "admin")) == {sid: 4}
    assert (await storage.unread_counts([sid], "store")) == {sid: 1}
    start = await storage.feed_head()
    marks = await asyncio.gather(
        *[storage.mark_read(sid, "admin", dana.id, s) for s in (4, 2, 5, 3, 1)]
    )
    assert max(m.seq for m in marks) == 5 and (await storage.read_positions(sid))["admin"] == 5
    again = await storage.mark_read(sid, "admin", dana.id, 2)
    assert (again.seq, again.moved) == (5, False)
    assert (await storage.unread_counts([sid], "admin")) == {sid: 0}
    past_end = await storage.mark_read(sid, "store", store.id, 999)
    assert past_end.seq == 6 and past_end.moved  # capped at the last message
    reads = [e for e in await storage.read_events(start, 100) if e.kind == "read"]
    assert [e.payload["seq"] for e in reads if e.payload["sender"] == "admin"] == sorted(
        {m.seq for m in marks if m.moved}
    )
    assert (await storage.mark_read(sid, "admin", omar.id, 1)).outcome is WriteOutcome.FORBIDDEN
    assert (await storage.mark_read(999, "store", store.id, 1)).outcome is WriteOutcome.NOT_FOUND


@pytest.mark.gen_test
async def test_presence_counts_live_heartbeats_and_announces_each_change_once(storage):
    dana, _ = await storage.create_admin("Dana", None)
    omar, _ = await storage.create_admin("Omar", None)
    now = time.time()
    assert await storage.set_presence_sockets("n1", dana.id, 1, now - 10) == ONLINE
    assert await storage.set_presence_sockets("n2", dana.id, 2, now - 10) is None
    assert await storage.set_admin_away(dana.id, True, now - 10) == AWAY
    assert await storage.set_presence_sockets("n1", dana.id, 0, now - 10) is None  # n2 holds
    listed = {a.admin.id: a for a in await storage.list_admins_with_presence(10, 0, now - 10)}
    assert (listed[dana.id].presence, listed[omar.id].presence) == (AWAY, OFFLINE)
    # n2 stops heartbeating (a SIGKILLed process): once its rows are older than
    # the expiry, however many processes sweep, one of them announces offline.
    later = time.time() + 0.001
    results = await asyncio.gather(
        *[storage.heartbeat_presence(f"sweeper{i}", {}, later) for i in range(5)]
    )
    assert [change for result in results for change in result] == [(dana.id, OFFLINE)]
    listed = {a.admin.id: a for a in await storage.list_admins_with_presence(10, 0, later)}
    assert listed[dana.id].presence == OFFLINE
    assert [a.admin.id for a in await storage.list_admins_with_presence(1, dana.id, later)] == [
        omar.id
    ]
    # n2 was only slow: its next heartbeat brings dana back, announced once
    assert await storage.heartbeat_presence("n2", {dana.id: 2}, time.time() - 10) == [
        (dana.id, AWAY)
    ]


@pytest.mark.gen_test
async def test_a_stale_claim_is_requeued_once_and_keeps_its_place(storage):
    dana, _ = await storage.create_admin("Dana", None)
    _store, sid = await a_claimed_session(storage, dana)
    queued_at = (await storage.get_session(sid)).queued_at
    await asyncio.sleep(0.01)
    cutoffs = StaleCutoffs(
        offline_before=time.time(), unanswered_before=None, live_after=time.time() - 10
    )
    stale = await storage.find_stale_claims(cutoffs, 10)
    assert [(s.session_id, s.reason) for s in stale] == [(sid, RequeueReason.OFFLINE)]
    results = await asyncio.gather(*[storage.requeue_session(stale[0], cutoffs) for _ in range(5)])
    assert [r.outcome for r in results].count(WriteOutcome.DONE) == 1
    session = await storage.get_session(sid)
    assert (session.status, session.admin_id, session.queued_at) == (
        SessionStatus.OPEN,
        None,
        queued_at,
    )
    assert [m.event for m in await storage.list_messages(sid, 0, 10)][-1] == "session_requeued"
    assert await storage.find_stale_claims(cutoffs, 10) == []


@pytest.mark.gen_test
async def test_a_reply_or_a_reconnect_after_the_judgement_wins_over_the_requeue(storage):
    dana, _ = await storage.create_admin("Dana", None)
    store, sid = await a_claimed_session(storage, dana)
    await storage.post_store_message(store.id, "anyone?", None)
    await asyncio.sleep(0.01)
    cutoffs = StaleCutoffs(
        offline_before=None, unanswered_before=time.time(), live_after=time.time() - 10
    )
    [stale] = await storage.find_stale_claims(cutoffs, 10)
    assert stale.reason is RequeueReason.UNANSWERED
    await storage.post_admin_message(sid, dana.id, "here", None)  # the reply wins
    assert (await storage.requeue_session(stale, cutoffs)).outcome is WriteOutcome.UNCHANGED
    assert (await storage.get_session(sid)).admin_id == dana.id
    assert await storage.find_stale_claims(cutoffs, 10) == []  # answered: not stale
    offline = StaleCutoffs(
        offline_before=time.time() + 1, unanswered_before=None, live_after=time.time() - 10
    )
    [stale] = await storage.find_stale_claims(offline, 10)
    await storage.set_presence_sockets("n1", dana.id, 1, offline.live_after)  # reconnects
    assert (await storage.requeue_session(stale, offline)).outcome is WriteOutcome.UNCHANGED
    assert (await storage.get_session(sid)).status is SessionStatus.CLAIMED


@pytest.mark.gen_test
async def test_the_webhook_outbox_holds_each_change_and_a_lease_has_one_holder(storage):
    kinds = ("session_opened", "session_claimed", "message")
    await storage.set_webhook_outbox(kinds)
    dana, _ = await storage.create_admin("Dana", None)
    store, sid = await a_claimed_session(storage, dana)
    entries = await storage.read_outbox(0, 100)
    assert [e.kind for e in entries] == ["session_opened", "message", "session_claimed", "message"]
    assert entries[1].payload["message"]["body"] == "hi" and entries[0].session_id == sid
    await storage.prune_events(0)  # the feed's pruning leaves the outbox alone
    assert len(await storage.read_outbox(0, 100)) == 4
    await storage.save_webhook_cursor("h1", entries[1].id)
    await storage.save_webhook_cursor("h1", entries[0].id)  # never backwards
    assert await storage.load_webhook_cursor("h1") == entries[1].id
    assert await storage.load_webhook_cursor("h2") == 0
    assert await storage.prune_outbox(("h1", "h2")) == 0  # h2 still needs them
    assert await storage.prune_outbox(("h1",)) == 2
    assert [e.id for e in await storage.read_outbox(entries[1].id, 100)] == [
        e.id for e in entries[2:]
    ]
    holders = await asyncio.gather(*[storage.take_lease("webhooks", f"p{i}", 5) for i in range(5)])
    assert holders.count(True) == 1
    winner = f"p{holders.index(True)}"
    assert await storage.take_lease("webhooks", winner, 0.01)  # renewal; then it lapses
    await asyncio.sleep(0.02)
    assert await storage.take_lease("webhooks", "other", 5)
    await storage.set_webhook_outbox(())
    await storage.post_store_message(store.id, "more", None)
    assert await storage.read_outbox(entries[1].id, 100) == []


@pytest.mark.gen_test
async def test_with_both_rules_on_each_finds_what_it_judges_stale(storage):
    dana, _ = await storage.create_admin("Dana", None)
    store, sid = await a_claimed_session(storage, dana)
    await storage.set_presence_sockets("n1", dana.id, 1, time.time() - 10)  # dana is online
    await storage.post_store_message(store.id, "anyone?", None)
    await asyncio.sleep(0.01)
    cutoffs = StaleCutoffs(
        offline_before=time.time() - 3600,
        unanswered_before=time.time(),
        live_after=time.time() - 10,
    )
    assert [(s.session_id, s.reason) for s in await storage.find_stale_claims(cutoffs, 10)] == [
        (sid, RequeueReason.UNANSWERED)
    ]


@pytest.mark.gen_test
async def test_a_store_writing_on_does_not_keep_an_offline_admins_claim(storage):
    dana, _ = await storage.create_admin("Dana", None)
    store, sid = await a_claimed_session(storage, dana)
    await asyncio.sleep(0.01)
    quiet_since = time.time()
    await storage.post_store_message(store.id, "hello?", None)
    await storage.post_store_message(store.id, "anyone?", None)
    cutoffs = StaleCutoffs(
        offline_before=quiet_since, unanswered_before=None, live_after=time.time() - 10
    )
    [stale] = await storage.find_stale_claims(cutoffs, 10)
    assert (stale.session_id, stale.reason) == (sid, RequeueReason.OFFLINE)
    # ... but a claim since the cutoff does: a transfer to a fresh holder.
    omar, _ = await storage.create_admin("Omar", None)
    assert (
        await storage.transfer_session(sid, dana.id, omar.id, 0)
    ).outcome is TransferOutcome.DONE
    assert await storage.find_stale_claims(cutoffs, 10) == []
    assert (await storage.requeue_session(stale, cutoffs)).outcome is WriteOutcome.UNCHANGED
