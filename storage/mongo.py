"""The cluster backend: MongoDB through PyMongo's asyncio API (``AsyncMongoClient``).

Every state change is one multi-document transaction (``storage/mongo_txn.py``):
a claim (the session, the admin's count, the ``admin_connected`` message and
the events), a release, a close and a message (the seq, the message with its
event, the session) become visible whole or not at all. Transactions need a
replica set (a single-node one will do); ``setup`` refuses a standalone server.

Guards inside the transactions:

* the claim's update only matches an open session with no admin; the per-admin
  limit is a conditional ``$inc`` of the admin's ``active`` count, which every
  claim raises and every release and close lowers in the same transaction;
* ``seq`` is ``$inc``-ed on the session document, so two writers of one session
  conflict and one retries: numbered 1, 2, 3, ... with no gap and no repeat
  (the unique ``(session_id, seq)`` index stays as a backstop);
* no document is written by every change: integer ids come from blocks each
  process reserves outside any transaction (``storage/mongo_ids.py``), and the
  cross-node feed is the oplog, read by change streams
  (``storage/mongo_follow.py``). Two changes conflict only when they touch the
  same session (or the same admin's count, or the same store's first session),
  so changes run in parallel, and a node that dies mid-change blocks only the
  documents its open transactions touched, until the server reaps them;
* one open-or-claimed session per store: a unique index on ``store_id`` over
  documents with ``active: true`` (the flag is removed on close);
* ``client_id``: a unique index on ``(sender, sender_id, client_id)``, and a
  retry with a stored ``client_id`` answers the stored message.

Transactions commit with write concern ``majority`` (the default) and read at
``snapshot``: a ``w:1`` claim can be rolled back by a failover and hand one
session to two admins. Connection failures, timeouts and errors the driver
gave up retrying become ``StorageUnavailable`` (503); a retry completes the
change or answers what is stored, and never does it twice.

The parts, one concept each, are listed in ``storage/mongo_base.py``; this
module puts them together and sets the database up.
"""

from __future__ import annotations

import functools
from typing import Any

import pymongo
from pymongo import ASCENDING, DESCENDING

from storage.errors import StorageMisconfigured
from storage.mongo_accounts import MongoAccounts
from storage.mongo_sessions import MongoSessions
from storage.mongo_txn import available
from storage.mongo_workflow import MongoWorkflow


class MongoStorage(MongoAccounts, MongoWorkflow, MongoSessions):
    """``ChatStorage`` over a MongoDB database (a ready ``AsyncDatabase``).

    ``client`` is None only for the mongomock stand-in of the tests, which has
    no transactions: there each change just runs (its calls never suspend).
    """

    @classmethod
    def from_url(
        cls,
        url: str,
        write_concern: str = "majority",
        retry_writes: bool = True,
        timeout_ms: int = 5000,
    ) -> MongoStorage:
        """``mongodb://host[:port]/dbname?...``; the database defaults to ``chat``.

        ``timeout_ms`` bounds server selection, each socket operation, and each
        state change as a whole (its retries included).
        """
        w: int | str = int(write_concern) if str(write_concern).isdigit() else write_concern
        client: pymongo.AsyncMongoClient[dict[str, Any]] = pymongo.AsyncMongoClient(
            url,
            w=w,
            retryWrites=retry_writes,
            serverSelectionTimeoutMS=timeout_ms,
            socketTimeoutMS=timeout_ms,
            connectTimeoutMS=timeout_ms,
            tz_aware=True,
        )
        db = client.get_default_database(default="chat")
        return cls(db, client, timeout_ms / 1000.0)

    # --- lifecycle ------------------------------------------------------
    @available
    async def setup(self) -> None:
        """Refuse a standalone server, create the indexes, repair old counts."""
        await self._require_replica_set()
        db = self.db
        await db.admins.create_index("key_digest", unique=True)
        await db.stores.create_index("key_digest", unique=True)
        await db.sessions.create_index(
            [("store_id", ASCENDING)], unique=True, partialFilterExpression={"active": True}
        )
        await db.sessions.create_index(
            [("status", ASCENDING), ("queued_at", ASCENDING), ("_id", ASCENDING)]
        )
        await db.sessions.create_index(
            [("admin_id", ASCENDING), ("status", ASCENDING), ("activity_at", DESCENDING)]
        )
        await db.sessions.create_index(
            [("store_id", ASCENDING), ("created", DESCENDING), ("_id", DESCENDING)]
        )
        await db.messages.create_index([("session_id", ASCENDING), ("seq", ASCENDING)], unique=True)
        await db.messages.create_index(
            [("sender", ASCENDING), ("sender_id", ASCENDING), ("client_id", ASCENDING)],
            unique=True,
            partialFilterExpression={"client_id": {"$type": "string"}},
        )
        await db.events.create_index("created")
        # Sparse: a message leaves it when the feed's pruning drops its event.
        await db.messages.create_index("feed.created", sparse=True)
        await self._repair_admin_loads()
        await self._setup_workflow()
        await self._setup_outbox()

    async def _require_replica_set(self) -> None:
        """Refuse a standalone server: without transactions a failure between
        a change's writes would leave it half done."""
        if self.client is None:
            return
        hello = await self.client.admin.command("hello")
        if not hello.get("setName") and hello.get("msg") != "isdbgrid":
            raise StorageMisconfigured(
                "MongoDB at the storage URL is a standalone server; the chat needs a "
                "replica set for transactions (a single-node one will do: start mongod "
                "with --replSet rs0 and run rs.initiate() once)"
            )

    async def _repair_admin_loads(self) -> None:
        """Set each admin's ``active`` count to the sessions it holds where it
        differs (data written before counts were kept in every transaction).
        Each fix is a transaction of its own, so a claim racing it on another
        node conflicts and retries instead of being lost."""
        held: dict[int, int] = {}
        for doc in await self.db.sessions.find({"status": "claimed"}).to_list(None):
            held[doc["admin_id"]] = held.get(doc["admin_id"], 0) + 1
        for admin in await self.db.admins.find({}).to_list(None):
            if admin.get("active") != held.get(admin["_id"], 0):
                await self.changes.run(functools.partial(self._recount, admin["_id"]))

    async def _recount(self, admin_id: int, s: Any) -> None:
        held = await self.db.sessions.count_documents(
            {"status": "claimed", "admin_id": admin_id}, session=s
        )
        await self.db.admins.update_one({"_id": admin_id}, {"$set": {"active": held}}, session=s)

    async def close(self) -> None:
        """Stop following the streams and close the client (shutdown)."""
        await self.events_follower.close()
        await self.key_changes_follower.close()
        if self.client is not None:
            await self.client.close()

    @available
    async def ping(self) -> None:
        """Ask the server to answer (readiness)."""
        await self.db.command("ping")
