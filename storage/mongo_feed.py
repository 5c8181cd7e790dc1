"""The cross-node event feed on MongoDB: ``MongoFeed``, a part of ``MongoStorage``.

A state change's event is a document of ``events``, inserted in the change's
transaction; a message carries its own event (``feed``, see
storage/mongo_messages.py). Every node follows the inserts into both
collections with one change stream (storage/mongo_follow.py), in commit
order, and turns each into the same ``Event`` record. A feed position is the
stream's resume token, saved under the node's name in ``feed_positions``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from storage.documents import message_to_doc
from storage.mongo_docs import Doc, SessionIds, message_of
from storage.mongo_outbox import MongoOutbox
from storage.mongo_txn import available
from storage.records import Event, Session


class MongoFeed(MongoOutbox):
    """Appends events in a change, and reads every node's events in commit order."""

    async def _append_event(
        self,
        s: Any,
        kind: str,
        session: SessionIds,
        admin_id: int | None,
        payload: dict[str, Any],
    ) -> None:
        """Store a state change's event in the change ``s`` (and its outbox copy)."""
        event = {
            "_id": await self._next_id("events"),
            "kind": kind,
            "session_id": session.id,
            "store_id": session.store_id,
            "admin_id": admin_id,
            "payload": payload,
            "created": time.time(),
        }
        await self.db.events.insert_one(event, session=s)
        await self._append_to_outbox(s, event)

    @available
    async def append_typing(self, session: Session, sender: str) -> None:
        """Announce that ``sender`` is typing in ``session`` (an event only)."""

        async def typing(s: Any) -> None:
            await self._append_event(
                s, "typing", session, session.admin_id, {"session_id": session.id, "sender": sender}
            )

        await self.changes.run(typing)

    def set_event_wake(self, wake: Callable[[], None] | None) -> None:
        """Call ``wake`` whenever any node's events can be read (set by the
        feed at start): the change stream pushes, the feed need not poll."""
        self.events_follower.set_wake(wake)

    @available
    async def feed_head(self) -> Any:
        """The feed's position of "now"."""
        return await self.events_follower.head()

    @available
    async def read_events(self, after: Any, limit: int) -> list[Event]:
        """Up to ``limit`` events after ``after``, in commit order."""
        return [
            _event(name, d, position)
            for name, d, position in await self.events_follower.read(after, limit)
        ]

    @available
    async def prune_events(self, older_than_secs: float) -> int:
        """Delete old state-change events and drop old messages' events (their
        ``feed``; the messages stay): how many events went."""
        cutoff = time.time() - older_than_secs
        result = await self.db.events.delete_many({"created": {"$lt": cutoff}})
        dropped = await self.db.messages.update_many(
            {"feed.created": {"$lt": cutoff}}, {"$unset": {"feed": ""}}
        )
        return int(result.deleted_count) + int(dropped.modified_count)

    @available
    async def load_feed_position(self, node: str) -> Any:
        """Where the feed of ``node`` stood when last saved (None: never)."""
        doc = await self.db.feed_positions.find_one({"_id": node})
        return doc["position"] if doc else None

    @available
    async def save_feed_position(self, node: str, position: Any) -> None:
        """Remember where the feed of ``node`` stands."""
        await self.db.feed_positions.update_one(
            {"_id": node}, {"$set": {"position": position}}, upsert=True
        )


def _event(collection: str, doc: Doc, position: Any) -> Event:
    """The feed's event from an insert: an ``events`` document, or a message
    with the event it carries (the same record a separate event had)."""
    if collection == "messages":
        feed = doc["feed"]
        payload = {"message": message_to_doc(message_of(doc)), "session": feed["session"]}
        return Event(
            feed["id"],
            "message",
            doc["session_id"],
            feed["store_id"],
            feed["admin_id"],
            payload,
            position,
        )
    return Event(
        doc["_id"],
        doc["kind"],
        doc["session_id"],
        doc["store_id"],
        doc["admin_id"],
        doc["payload"],
        position,
    )
