"""The change feed: a named node continues after a restart without a gap."""

from __future__ import annotations

import pytest

from actors.feed import EventFeed
from storage.sqlite import SQLiteStorage


@pytest.mark.gen_test
async def test_a_named_node_restarted_delivers_what_was_stored_while_it_was_down(tmp_path):
    storage = SQLiteStorage(str(tmp_path / "feed.sqlite3"))
    await storage.setup()
    store, _ = await storage.create_store("S", None, None)
    seen = []
    feed = EventFeed(storage, seen.append, node="node-1")
    await feed.start()
    await storage.post_store_message(store.id, "before", None)
    await feed.catch_up()
    await feed.stop()
    delivered_before = len(seen)
    await storage.post_store_message(store.id, "while down", None)  # nobody follows now
    restarted = EventFeed(storage, seen.append, node="node-1")
    await restarted.start()
    await restarted.catch_up()
    await restarted.stop()
    bodies = [e.payload["message"]["body"] for e in seen if e.kind == "message"]
    assert delivered_before >= 1 and bodies == ["before", "while down"]
    # an unnamed node starts at the newest event instead
    fresh = []
    unnamed = EventFeed(storage, fresh.append)
    await unnamed.start()
    await unnamed.catch_up()
    await unnamed.stop()
    assert fresh == []
    await storage.close()
