"""Messages on MongoDB: ``MongoMessages``, a part of ``MongoStorage``.

A message is one transaction (storage/mongo_txn.py): the session's ``$inc``
of ``last_seq`` gives its seq (a second writer of the session conflicts and
retries, so seqs are 1, 2, 3, ... with no gap and no repeat), and one insert
stores the message **with its feed event** (``feed``: the event's id from the
events' block, its audience, the session as it stands after the message, when
it was stored). The feed follows inserts into ``messages`` as well as
``events`` (storage/mongo_feed.py), so a message costs no separate event
insert; the feed's pruning drops ``feed`` from old messages.

A retry with a stored ``client_id`` answers the stored message: the unique
index on ``(sender, sender_id, client_id)`` refuses its insert, the change
rolls back whole (its seq too), and the stored message is read after it; no
read before each message. (The mongomock stand-in, without transactions,
reads first.)
"""

from __future__ import annotations

import time
from typing import Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from storage.documents import message_to_doc, session_to_doc
from storage.errors import StorageUnavailable
from storage.mongo_docs import maybe_session, message_of, session_of
from storage.mongo_feed import MongoFeed
from storage.mongo_txn import Refused, available
from storage.outcomes import PostResult, SessionWrite, WriteOutcome, holder_refusal
from storage.records import Message, Session, utc_now_iso

# What a change answers when the unique index refused its message's
# ``client_id``: the caller reads the stored message instead.
SEEN_BEFORE = PostResult(WriteOutcome.DONE)


def _on_client_id(exc: DuplicateKeyError) -> bool:
    """Whether the duplicate is a ``client_id`` (not a seq or a session)."""
    details = exc.details or {}
    return "client_id" in str(details.get("keyPattern", "")) or "client_id" in str(exc)


class _Holder:
    """The default audience of a message's event: whoever holds the session after it."""


HOLDER = _Holder()


class MongoMessages(MongoFeed):
    """Posting and listing messages."""

    @available
    async def post_admin_message(
        self, session_id: int, admin_id: int, body: str, client_id: str | None
    ) -> PostResult:
        """Store the holder's message in its session (or say why not)."""

        async def post(s: Any) -> PostResult:
            repeated = await self._repeat_first(s, "admin", admin_id, client_id)
            if repeated:
                return repeated
            # The guard is the seq's own write: no read of the session first.
            message, session = await self._insert_message(
                s,
                session_id,
                "admin",
                admin_id,
                body,
                client_id,
                audience=admin_id,
                guard={"_id": session_id, "status": "claimed", "admin_id": admin_id},
            )
            if message is None:
                # A retry of a message stored before the session changed hands
                # answers the stored message, as a repeat does.
                repeated = await self._repeat(s, "admin", admin_id, client_id)
                if repeated:
                    return repeated
                session = maybe_session(
                    await self.db.sessions.find_one({"_id": session_id}, session=s)
                )
                refused = holder_refusal(session, admin_id) or SessionWrite(
                    WriteOutcome.FORBIDDEN, session
                )
                return PostResult(refused.outcome, session=refused.session)
            return PostResult(WriteOutcome.DONE, message, session, created=True)

        result = await self.changes.run(post, key=("session", session_id))
        return await self._answer(result, "admin", admin_id, client_id)

    @available
    async def post_store_message(
        self, store_id: int, body: str, client_id: str | None
    ) -> PostResult:
        """Store the store's message in its active session, opening one if none."""

        async def post(s: Any) -> PostResult:
            repeated = await self._repeat_first(s, "store", store_id, client_id)
            if repeated:
                return repeated
            # The store's active session takes the seq's write directly; only
            # when there is none is one opened (and written by its id).
            message, session = await self._insert_message(
                s,
                None,
                "store",
                store_id,
                body,
                client_id,
                guard={"store_id": store_id, "active": True},
            )
            if message is None:
                opened = await self._open_session(s, store_id)
                message, session = await self._insert_message(
                    s, opened.id, "store", store_id, body, client_id
                )
            return PostResult(WriteOutcome.DONE, message, session, created=True)

        result = await self.changes.run(post, key=("store", store_id))
        return await self._answer(result, "store", store_id, client_id)

    async def _repeat_first(
        self, s: Any, sender: str, sender_id: int, client_id: str | None
    ) -> PostResult | None:
        """The stored answer to a repeated ``client_id``, read before the
        change only where there is no transaction (the mongomock stand-in):
        with one, the unique index refuses the repeat's insert and the whole
        change rolls back (``_insert_message``), so no read is spent on the
        messages that are not repeats (nearly all)."""
        if self.client is not None:
            return None
        return await self._repeat(s, sender, sender_id, client_id)

    async def _answer(
        self, result: PostResult, sender: str, sender_id: int, client_id: str | None
    ) -> PostResult:
        """``result``, or for a repeat refused by the index the stored message
        (read after the rolled-back change)."""
        if result is not SEEN_BEFORE:
            return result
        repeated = await self._repeat(None, sender, sender_id, client_id)
        if repeated is None:  # refused by a message not readable yet: try again
            raise StorageUnavailable("a repeated client_id's message is not readable yet")
        return repeated

    async def _open_session(self, s: Any, store_id: int) -> Session:
        """A new open session for the store, in ``s``. Another node opening one
        at the same time makes this transaction fail on the unique index, and
        its retry finds that session."""
        store = await self.db.stores.find_one({"_id": store_id}, session=s)
        now = utc_now_iso()
        doc = {
            "_id": await self._next_id("sessions"),
            "store_id": store_id,
            "store": {
                "id": store_id,
                "name": store["name"],
                "email": store.get("email"),
                "logo_url": store.get("logo_url"),
            },
            "admin_id": None,
            "status": "open",
            "active": True,
            "last_message_at": None,
            "created": now,
            "updated": now,
            "queued_at": now,
            "activity_at": now,
            "last_seq": 0,
        }
        await self.db.sessions.insert_one(doc, session=s)
        session = session_of(doc)
        await self._append_event(
            s, "session_opened", session, None, {"session": session_to_doc(session)}
        )
        return session

    async def _repeat(
        self, s: Any, sender: str, sender_id: int, client_id: str | None
    ) -> PostResult | None:
        """The stored answer to a post whose ``client_id`` was seen before."""
        if client_id is None:
            return None
        doc = await self.db.messages.find_one(
            {"sender": sender, "sender_id": sender_id, "client_id": client_id}, session=s
        )
        if doc is None:
            return None
        message = message_of(doc)
        session = await self.db.sessions.find_one({"_id": message.session_id}, session=s)
        return PostResult(WriteOutcome.DONE, message, maybe_session(session))

    async def _insert_message(
        self,
        s: Any,
        session_id: int | None,
        sender: str,
        sender_id: int | None,
        body: str,
        client_id: str | None,
        event: str | None = None,
        audience: int | _Holder | None = HOLDER,
        guard: dict[str, Any] | None = None,
    ) -> tuple[Message | None, Session | None]:
        """Store a message with its event in ``s``: the session's ``$inc`` of
        ``last_seq`` gives the seq (a second writer of the session conflicts).
        With ``guard`` the session is the one it matches, and (None, None)
        says none did. The event's audience defaults to the session's holder."""
        now = utc_now_iso()
        update: dict[str, Any] = {"$inc": {"last_seq": 1}, "$max": {"activity_at": now}}
        if sender != "system":
            update["$set"] = {"last_message_at": now, "updated": now}
            # Set once: a session document is created without these fields.
            first = "first_store_message_at" if sender == "store" else "first_admin_reply_at"
            update["$min"] = {first: now}
        doc = await self.db.sessions.find_one_and_update(
            guard or {"_id": session_id},
            update,
            return_document=ReturnDocument.AFTER,
            session=s,
        )
        if doc is None:
            return None, None
        session = session_of(doc)
        message = Message(
            await self._next_id("messages"),
            session.id,
            session.last_seq,
            sender,
            sender_id,
            body,
            client_id,
            now,
            event,
        )
        stored = message_to_doc(message)
        stored["_id"] = stored.pop("id")
        feed = {
            "id": await self._next_id("events"),
            "admin_id": session.admin_id if isinstance(audience, _Holder) else audience,
            "store_id": session.store_id,
            "session": session_to_doc(session),
            "created": time.time(),
        }
        try:
            await self.db.messages.insert_one({**stored, "feed": feed}, session=s)
        except DuplicateKeyError as exc:
            if client_id is not None and _on_client_id(exc):
                raise Refused(SEEN_BEFORE) from exc  # roll back; answered from the index
            raise
        if "message" in self.webhook_kinds:
            payload = {"message": message_to_doc(message), "session": feed["session"]}
            await self._append_to_outbox(
                s,
                {
                    "kind": "message",
                    "session_id": session.id,
                    "created": feed["created"],
                    "payload": payload,
                },
            )
        return message, session

    @available
    async def list_messages(self, session_id: int, after_seq: int, limit: int) -> list[Message]:
        """A session's messages after ``after_seq``, in seq order."""
        docs = (
            await self.db.messages.find({"session_id": session_id, "seq": {"$gt": after_seq}})
            .sort("seq", ASCENDING)
            .limit(limit)
            .to_list(None)
        )
        return [message_of(d) for d in docs]
