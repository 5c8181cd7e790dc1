"""``MongoBase``: what every part of the MongoDB backend shares.

``MongoStorage`` (storage/mongo.py) is put together from parts, one concept
each, every one a subclass of the one it builds on:

* ``MongoBase``: the database, the client, the change runner
  (storage/mongo_txn.py), the id blocks (storage/mongo_ids.py), the change
  streams it follows (storage/mongo_follow.py) and the key cache
  (storage/mongo_keys.py);
* ``MongoOutbox`` (storage/mongo_outbox.py): the webhook outbox;
* ``MongoFeed`` (storage/mongo_feed.py): the cross-node event feed;
* ``MongoMessages`` (storage/mongo_messages.py): messages and their seq;
* ``MongoSessions`` (storage/mongo_sessions.py): claims, releases, closes;
* ``MongoPresence`` (storage/mongo_presence.py): admins' presence across
  nodes, and the helpers the workflow's changes use;
* ``MongoRequeue`` (storage/mongo_requeue.py): stale claims back to the queue;
* ``MongoWorkflow`` (storage/mongo_workflow.py): transfers and read state;
* ``MongoAccounts`` (storage/mongo_accounts.py): accounts and their keys.
"""

from __future__ import annotations

from typing import Any

from storage.mongo_follow import InsertFollower
from storage.mongo_ids import IdBlocks
from storage.mongo_keys import KeyCache
from storage.mongo_txn import ChangeRunner


class MongoBase:
    """A MongoDB database (a ready ``AsyncDatabase``) and this process's state for it.

    ``client`` is None only for the mongomock stand-in of the tests, which has
    no transactions: there each change just runs (its calls never suspend).
    """

    def __init__(self, db: Any, client: Any = None, timeout_secs: float = 5.0) -> None:
        self.db = db
        self.client = client
        self.changes = ChangeRunner(client, timeout_secs)
        self.ids = IdBlocks(db.counters)
        # Change streams need a server; the mongomock stand-in reads by id.
        # The feed: state changes' events and messages (which carry their own
        # event, see ``MongoMessages._insert_message``), in one stream, in
        # commit order.
        self.events_follower = InsertFollower(
            db, ("events", "messages"), streams=client is not None, order={"messages": "feed.id"}
        )
        self.key_changes_follower = InsertFollower(db, ("key_changes",), streams=client is not None)
        # REST keys' principals, while this node follows key changes.
        self.key_cache = KeyCache(lambda: self.key_changes_follower.following)
        self.key_changes_follower.on_change = self.key_cache.forget_all

    async def _next_id(self, name: str) -> int:
        """A fresh id of ``name``'s kind, from this process's block: never a
        write inside the caller's transaction (``storage/mongo_ids.py``)."""
        return await self.ids.next(name)
