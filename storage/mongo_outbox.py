"""The webhook outbox on MongoDB: ``MongoOutbox``, a base of ``MongoStorage``.

An event a webhook may want is copied to ``webhook_outbox`` in the same
transaction as the change that stores it (storage/workflow.py), so a change is
never delivered without being stored nor stored without being delivered. The
dispatcher (actors/webhooks.py) reads the outbox by number after a per-hook
cursor, under a lease that gives one process the delivery at a time.

Nothing in a change's transaction is numbered from a shared counter (that
document made every change conflict, and a node dying mid-change stalled
every other node's writes until the server reaped its transaction):

* inside the change an entry gets an id from this process's block
  (``storage/mongo_ids.py``) and ``n``, its place among its session's
  entries, from a ``$inc`` of the session document, which every change that
  stores a webhook event writes anyway (so no new conflict);
* after the commit, the reader (the lease holder) **numbers** the entries not
  numbered yet, each session's in ``n`` order, in a short transaction of its
  own that also advances the number's counter: two numberers conflict on that
  counter and one retries, so numbers become visible in order and a cursor
  never passes an entry that gets a smaller number later.

Delivery stays at least once and in order per session (per hook: one entry at
a time, in number order); a dead numberer holds up only webhooks, never writes.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from storage.mongo_base import MongoBase
from storage.mongo_txn import available
from storage.workflow import OutboxEntry

# Entries numbered in one transaction (and read per call at most).
NUMBER_BATCH = 500
# The counter of outbox numbers: written only by the numberer, never by a change.
NUMBER_COUNTER = "webhook_outbox_numbers"


class MongoOutbox(MongoBase):
    """The webhook outbox: written in a change, numbered and read by its deliverer."""

    # Kinds copied to the webhook outbox with their event (set at start-up).
    webhook_kinds: frozenset[str] = frozenset()

    async def _setup_outbox(self) -> None:
        """Indexes of the outbox (runs within ``setup``)."""
        await self.db.webhook_outbox.create_index([("num", ASCENDING)])
        await self.db.webhook_outbox.create_index(
            [("session_id", ASCENDING), ("n", ASCENDING)],
            partialFilterExpression={"unnumbered": True},
        )

    @available
    async def set_webhook_outbox(self, kinds: tuple[str, ...]) -> None:
        """Copy events of ``kinds`` to the outbox from now on (none: empty it)."""
        self.webhook_kinds = frozenset(kinds)
        if not kinds:
            await self.db.webhook_outbox.delete_many({})

    async def _append_to_outbox(self, s: Any, event: dict[str, Any]) -> None:
        """Copy an event to the outbox in the change ``s`` that stores it."""
        if event["kind"] not in self.webhook_kinds:
            return
        session = await self.db.sessions.find_one_and_update(
            {"_id": event["session_id"]},
            {"$inc": {"hook_seq": 1}},
            projection={"hook_seq": 1},
            return_document=ReturnDocument.AFTER,
            session=s,
        )
        entry = {k: event[k] for k in ("kind", "session_id", "payload", "created")}
        await self.db.webhook_outbox.insert_one(
            {
                "_id": await self._next_id("webhook_outbox"),
                "n": session["hook_seq"],
                "unnumbered": True,
                **entry,
            },
            session=s,
        )

    async def _number_outbox(self) -> None:
        """Number the entries not numbered yet, each session's in order."""

        async def number(s: Any) -> None:
            docs = (
                await self.db.webhook_outbox.find({"unnumbered": True}, {"_id": 1}, session=s)
                .sort([("session_id", ASCENDING), ("n", ASCENDING)])
                .limit(NUMBER_BATCH)
                .to_list(None)
            )
            if not docs:
                return
            counter = await self.db.counters.find_one_and_update(
                {"_id": NUMBER_COUNTER},
                {"$inc": {"value": len(docs)}},
                return_document=ReturnDocument.AFTER,
                session=s,
            )
            first = counter["value"] - len(docs) + 1
            for offset, doc in enumerate(docs):
                await self.db.webhook_outbox.update_one(
                    {"_id": doc["_id"]},
                    {"$set": {"num": first + offset}, "$unset": {"unnumbered": ""}},
                    session=s,
                )

        # Created outside the transaction (no first-time upsert inside one); a
        # duplicate is another process creating it at the same moment.
        with contextlib.suppress(DuplicateKeyError):
            await self.db.counters.update_one(
                {"_id": NUMBER_COUNTER}, {"$setOnInsert": {"value": 0}}, upsert=True
            )
        await self.changes.run(number)

    @available
    async def read_outbox(self, after_id: int, limit: int) -> list[OutboxEntry]:
        """Up to ``limit`` numbered entries after ``after_id``, numbering new ones first."""
        await self._number_outbox()
        docs = (
            await self.db.webhook_outbox.find({"num": {"$gt": after_id}})
            .sort("num", ASCENDING)
            .limit(limit)
            .to_list(None)
        )
        return [
            OutboxEntry(d["num"], d["kind"], d["session_id"], d["payload"], d["created"])
            for d in docs
        ]

    @available
    async def load_webhook_cursor(self, hook: str) -> int:
        """The last entry number ``hook`` delivered (0: none)."""
        doc = await self.db.webhook_cursors.find_one({"_id": hook})
        return doc["last_id"] if doc else 0

    @available
    async def save_webhook_cursor(self, hook: str, last_id: int) -> None:
        """Remember that ``hook`` delivered up to ``last_id`` (never moves back)."""
        await self.db.webhook_cursors.update_one(
            {"_id": hook}, {"$max": {"last_id": last_id}}, upsert=True
        )

    @available
    async def prune_outbox(self, hooks: tuple[str, ...]) -> int:
        """Delete the entries every one of ``hooks`` delivered: how many went."""
        docs = await self.db.webhook_cursors.find({"_id": {"$in": list(hooks)}}).to_list(None)
        if not hooks or len(docs) < len(hooks):
            return 0
        done = min(d["last_id"] for d in docs)
        result = await self.db.webhook_outbox.delete_many({"num": {"$lte": done}})
        return int(result.deleted_count)

    @available
    async def take_lease(self, name: str, holder: str, duration_secs: float) -> bool:
        """Take or renew the lease ``name`` for ``holder``: whether it holds it now."""
        now = time.time()
        try:
            doc = await self.db.leases.find_one_and_update(
                {"_id": name, "$or": [{"holder": holder}, {"expires": {"$lt": now}}]},
                {"$set": {"holder": holder, "expires": now + duration_secs}},
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )
        except DuplicateKeyError:  # held by another, not expired
            return False
        if doc is None:  # some servers return nothing for a racing first upsert
            doc = await self.db.leases.find_one({"_id": name})
        return doc is not None and doc["holder"] == holder
