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

import pytest

from storage.base import ClaimOutcome, Role, SessionStatus, WriteOutcome
from storage.mongo import MongoStorage
from storage.sqlite import SQLiteStorage
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
    assert [(m.sender, m.event) for m in history] == [("store", None),
                                                     ("system", "admin_connected")]
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
    results = await asyncio.gather(*[storage.post_store_message(store.id, f"{i}", None)
                                     for i in range(10)])
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
    assert (await storage.post_admin_message(sid, dana.id, "x", None)).outcome \
        is WriteOutcome.FORBIDDEN  # open: nobody holds it yet
    await storage.claim_session(sid, dana, 0)
    assert (await storage.release_session(sid, omar.id)).outcome is WriteOutcome.FORBIDDEN
    assert (await storage.close_session(sid, omar.id)).outcome is WriteOutcome.FORBIDDEN
    assert (await storage.post_admin_message(999, dana.id, "x", None)).outcome \
        is WriteOutcome.NOT_FOUND
    assert (await storage.close_session(sid, dana.id)).outcome is WriteOutcome.DONE
    assert (await storage.close_session(sid, dana.id)).outcome is WriteOutcome.UNCHANGED
    assert (await storage.release_session(sid, dana.id)).outcome is WriteOutcome.CLOSED
    assert (await storage.post_admin_message(sid, dana.id, "x", None)).outcome \
        is WriteOutcome.CLOSED


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
async def test_the_change_feed_reports_every_change_in_order(storage):
    start = await storage.last_event_id()
    store, _ = await a_store(storage)
    dana, _ = await storage.create_admin("Dana", None)
    sid = (await storage.post_store_message(store.id, "hi", None)).session.id
    await storage.claim_session(sid, dana, 0)
    session = await storage.get_session(sid)
    await storage.append_typing(session, "admin")
    await storage.release_session(sid, dana.id)
    events = await storage.read_events(start, 100)
    assert [e.kind for e in events] == [
        "session_opened", "message", "session_claimed", "message", "typing", "message",
        "session_released"]
    assert [e.id for e in events] == sorted(e.id for e in events)
    assert events[1].payload["message"]["body"] == "hi"
    assert events[2].payload["admin"] == {"id": dana.id, "name": "Dana"}
    assert await storage.last_event_id() == events[-1].id
    assert await storage.read_events(events[2].id, 2) == events[3:5]
    assert await storage.prune_events(0) >= len(events)
    await storage.ping()


@pytest.mark.gen_test
async def test_a_mongodb_url_selects_the_mongo_backend_and_an_outage_is_unavailable():
    """A real AsyncMongoClient pointed at a port with no server: calls fail as
    StorageUnavailable (503 upstream) instead of hanging or crashing."""
    from storage import open_storage
    from storage.base import StorageUnavailable

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
