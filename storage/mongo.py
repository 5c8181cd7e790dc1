"""The cluster backend: MongoDB through PyMongo's asyncio API (``AsyncMongoClient``).

Every state change is one multi-document transaction (``storage/mongo_txn.py``):
a claim (the session, the admin's count, the ``admin_connected`` message and
the events), a release, a close and a message (the seq, the message, the
session and the event) become visible whole or not at all. Transactions need a
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
"""

from __future__ import annotations

import functools
import time
from typing import Any, Callable

import pymongo
from pymongo import ASCENDING, DESCENDING, ReturnDocument

from storage.base import (
    Admin, ClaimOutcome, ClaimResult, Event, Message, PostResult, Principal, Role,
    Session, SessionStatus, SessionWrite, Store, StorageMisconfigured, StorageUnavailable,
    WriteOutcome, digest_key, holder_refusal, message_from_doc, message_to_doc, new_api_key,
    session_from_doc, session_to_doc, utc_now_iso, why_claim_failed,
)
from storage.mongo_accounts import MongoAccounts
from storage.mongo_follow import InsertFollower
from storage.mongo_ids import IdBlocks
from storage.mongo_keys import KeyCache
from storage.mongo_outbox import MongoOutbox
from storage.mongo_txn import ChangeRunner, Refused, available as _available
from storage.mongo_workflow import MongoWorkflow

# The default audience of a message's event: whoever holds the session after it.
HOLDER = object()


class MongoStorage(MongoAccounts, MongoWorkflow, MongoOutbox):
    """``ChatStorage`` over a MongoDB database (a ready ``AsyncDatabase``).

    ``client`` is None only for the mongomock stand-in of the tests, which has
    no transactions: there each change just runs (its calls never suspend).
    """

    def __init__(self, db: Any, client: Any = None, timeout_secs: float = 5.0):
        self.db = db
        self.client = client
        self.changes = ChangeRunner(client, timeout_secs)
        self.ids = IdBlocks(db.counters)
        # Change streams need a server; the mongomock stand-in reads by id.
        # The feed: state changes' events and messages (which carry their own
        # event, see ``_insert_message``), in one stream, in commit order.
        self.events_follower = InsertFollower(db, ("events", "messages"),
                                              streams=client is not None,
                                              order={"messages": "feed.id"})
        self.key_changes_follower = InsertFollower(db, ("key_changes",),
                                                   streams=client is not None)
        # REST keys' principals, while this node follows key changes.
        self.key_cache = KeyCache(lambda: self.key_changes_follower.following)
        self.key_changes_follower.on_change = self.key_cache.forget_all

    @classmethod
    def from_url(cls, url: str, write_concern: str = "majority", retry_writes: bool = True,
                 timeout_ms: int = 5000) -> "MongoStorage":
        """``mongodb://host[:port]/dbname?...``; the database defaults to ``chat``.

        ``timeout_ms`` bounds server selection, each socket operation, and each
        state change as a whole (its retries included).
        """
        w: Any = int(write_concern) if str(write_concern).isdigit() else write_concern
        client = pymongo.AsyncMongoClient(
            url, w=w, retryWrites=retry_writes, serverSelectionTimeoutMS=timeout_ms,
            socketTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms, tz_aware=True)
        db = client.get_default_database(default="chat")
        return cls(db, client, timeout_ms / 1000.0)

    # --- lifecycle ------------------------------------------------------
    @_available
    async def setup(self) -> None:
        await self._require_replica_set()
        db = self.db
        await db.admins.create_index("key_digest", unique=True)
        await db.stores.create_index("key_digest", unique=True)
        await db.sessions.create_index([("store_id", ASCENDING)], unique=True,
                                       partialFilterExpression={"active": True})
        await db.sessions.create_index([("status", ASCENDING), ("queued_at", ASCENDING),
                                        ("_id", ASCENDING)])
        await db.sessions.create_index([("admin_id", ASCENDING), ("status", ASCENDING),
                                        ("activity_at", DESCENDING)])
        await db.sessions.create_index([("store_id", ASCENDING), ("created", DESCENDING),
                                        ("_id", DESCENDING)])
        await db.messages.create_index([("session_id", ASCENDING), ("seq", ASCENDING)],
                                       unique=True)
        await db.messages.create_index(
            [("sender", ASCENDING), ("sender_id", ASCENDING), ("client_id", ASCENDING)],
            unique=True, partialFilterExpression={"client_id": {"$type": "string"}})
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
                "with --replSet rs0 and run rs.initiate() once)")

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
            {"status": "claimed", "admin_id": admin_id}, session=s)
        await self.db.admins.update_one({"_id": admin_id}, {"$set": {"active": held}},
                                        session=s)

    async def close(self) -> None:
        await self.events_follower.close()
        await self.key_changes_follower.close()
        if self.client is not None:
            await self.client.close()

    @_available
    async def ping(self) -> None:
        await self.db.command("ping")

    async def _next_id(self, name: str) -> int:
        """A fresh id of ``name``'s kind, from this process's block: never a
        write inside the caller's transaction (``storage/mongo_ids.py``)."""
        return await self.ids.next(name)

    # --- accounts -------------------------------------------------------
    @_available
    async def create_admin(self, name: str, email: str | None) -> tuple[Admin, str]:
        key = new_api_key()
        admin = Admin(await self._next_id("admins"), name, email)
        await self.db.admins.insert_one({"_id": admin.id, "name": name, "email": email,
                                         "key_digest": digest_key(key), "active": 0,
                                         "created": utc_now_iso()})
        return admin, key

    @_available
    async def create_store(self, name: str, email: str | None,
                           logo_url: str | None) -> tuple[Store, str]:
        key = new_api_key()
        store = Store(await self._next_id("stores"), name, email, logo_url)
        await self.db.stores.insert_one({"_id": store.id, "name": name, "email": email,
                                         "logo_url": logo_url, "key_digest": digest_key(key),
                                         "created": utc_now_iso()})
        return store, key

    @_available
    async def authenticate(self, key: str) -> Principal | None:
        digest = digest_key(key)
        principal = self.key_cache.get(digest)
        if principal is not None:
            return principal
        generation = self.key_cache.generation
        principal = await self._look_up_key(digest)
        if principal is not None:
            self.key_cache.put(digest, principal, generation)
        return principal

    async def _look_up_key(self, digest: str) -> Principal | None:
        # Stores first: they send most requests, and each lookup is a round trip.
        doc = await self.db.stores.find_one({"key_digest": digest})
        if doc:
            return Principal(Role.STORE, doc["_id"], doc["name"], doc.get("email"),
                             doc.get("logo_url"))
        doc = await self.db.admins.find_one({"key_digest": digest})
        if doc:
            return Principal(Role.ADMIN, doc["_id"], doc["name"], doc.get("email"))
        return None

    @_available
    async def get_admin(self, admin_id: int) -> Admin | None:
        doc = await self.db.admins.find_one({"_id": admin_id})
        return Admin(doc["_id"], doc["name"], doc.get("email")) if doc else None

    @_available
    async def count_accounts(self) -> int:
        return (await self.db.admins.count_documents({})
                + await self.db.stores.count_documents({}))

    # --- sessions -------------------------------------------------------
    @_available
    async def get_session(self, session_id: int) -> Session | None:
        return _session(await self.db.sessions.find_one({"_id": session_id}))

    @_available
    async def get_active_session(self, store_id: int) -> Session | None:
        return _session(await self.db.sessions.find_one({"store_id": store_id, "active": True}))

    @_available
    async def list_open_sessions(self, limit: int,
                                 after: tuple[str, int] | None) -> list[Session]:
        query: dict[str, Any] = {"status": "open"}
        if after:
            query["$or"] = [{"queued_at": {"$gt": after[0]}},
                            {"queued_at": after[0], "_id": {"$gt": after[1]}}]
        docs = await self.db.sessions.find(query).sort(
            [("queued_at", ASCENDING), ("_id", ASCENDING)]).limit(limit).to_list(None)
        return [_session(d) for d in docs]

    @_available
    async def list_admin_sessions(self, admin_id: int, limit: int,
                                  before: tuple[str, int] | None) -> list[Session]:
        query: dict[str, Any] = {"status": "claimed", "admin_id": admin_id}
        if before:
            query["$or"] = [{"activity_at": {"$lt": before[0]}},
                            {"activity_at": before[0], "_id": {"$lt": before[1]}}]
        docs = await self.db.sessions.find(query).sort(
            [("activity_at", DESCENDING), ("_id", DESCENDING)]).limit(limit).to_list(None)
        return [_session(d) for d in docs]

    @_available
    async def list_store_sessions(self, store_id: int, limit: int,
                                  before: tuple[str, int] | None) -> list[Session]:
        query: dict[str, Any] = {"store_id": store_id}
        if before:
            query["$or"] = [{"created": {"$lt": before[0]}},
                            {"created": before[0], "_id": {"$lt": before[1]}}]
        docs = await self.db.sessions.find(query).sort(
            [("created", DESCENDING), ("_id", DESCENDING)]).limit(limit).to_list(None)
        return [_session(d) for d in docs]

    @_available
    async def count_open_sessions(self) -> int:
        return await self.db.sessions.count_documents({"status": "open"})

    # --- state changes: each one transaction ------------------------------
    @_available
    async def claim_session(self, session_id: int, admin: Admin,
                            max_sessions: int) -> ClaimResult:
        async def claim(s: Any) -> ClaimResult:
            current = _session(await self.db.sessions.find_one({"_id": session_id}, session=s))
            if current is None or current.status is not SessionStatus.OPEN \
                    or current.admin_id is not None:
                return ClaimResult(why_claim_failed(current, admin.id), current)
            limit = {"active": {"$lt": max_sessions}} if max_sessions > 0 else {}
            counted = await self.db.admins.find_one_and_update(
                {"_id": admin.id, **limit}, {"$inc": {"active": 1}}, session=s)
            if counted is None:
                return ClaimResult(why_claim_failed(current, admin.id, limit_hit=True), current)
            now = utc_now_iso()
            doc = await self.db.sessions.find_one_and_update(
                {"_id": session_id, "status": "open", "admin_id": None},
                {"$set": {"status": "claimed", "admin_id": admin.id, "updated": now,
                          "activity_at": now}},
                return_document=ReturnDocument.AFTER, session=s)
            if doc is None:  # changed since the read: undo the count with the rest
                raise Refused(ClaimResult(ClaimOutcome.CONFLICT, current))
            session = _session(doc)
            await self._append_event(s, "session_claimed", session, admin.id,
                                     {"session": session_to_doc(session),
                                      "admin": {"id": admin.id, "name": admin.name}})
            _, session = await self._insert_message(s, session.id, "system", None,
                                                    f"{admin.name} joined the chat", None,
                                                    event="admin_connected", audience=admin.id)
            return ClaimResult(ClaimOutcome.WON, session)

        return await self.changes.run(claim, key=("session", session_id))

    @_available
    async def release_session(self, session_id: int, admin_id: int) -> SessionWrite:
        async def release(s: Any) -> SessionWrite:
            now = utc_now_iso()
            return await self._hand_back(
                s, session_id, admin_id,
                {"$set": {"status": "open", "admin_id": None, "updated": now, "queued_at": now,
                          "activity_at": now}},
                "The session went back to the queue", "session_released", closed_ok=False)

        return await self.changes.run(release, key=("session", session_id))

    @_available
    async def close_session(self, session_id: int, admin_id: int) -> SessionWrite:
        async def close(s: Any) -> SessionWrite:
            now = utc_now_iso()
            return await self._hand_back(
                s, session_id, admin_id,
                {"$set": {"status": "closed", "updated": now, "activity_at": now},
                 "$unset": {"active": ""}},
                "The session was closed", "session_closed", closed_ok=True)

        return await self.changes.run(close, key=("session", session_id))

    async def _hand_back(self, s: Any, session_id: int, admin_id: int, update: dict,
                         text: str, kind: str, closed_ok: bool) -> SessionWrite:
        """Release or close, in ``s``: the guarded update, the admin's count, the
        system message and the event."""
        doc = await self.db.sessions.find_one_and_update(
            {"_id": session_id, "status": "claimed", "admin_id": admin_id}, update,
            return_document=ReturnDocument.AFTER, session=s)
        if doc is None:
            session = _session(await self.db.sessions.find_one({"_id": session_id}, session=s))
            return holder_refusal(session, admin_id, closed_ok) or SessionWrite(
                WriteOutcome.FORBIDDEN, session)
        await self.db.admins.update_one({"_id": admin_id}, {"$inc": {"active": -1}}, session=s)
        _, session = await self._insert_message(s, doc["_id"], "system", None, text, None,
                                                event=kind, audience=admin_id)
        await self._append_event(s, kind, session, admin_id,
                                 {"session": session_to_doc(session)})
        return SessionWrite(WriteOutcome.DONE, session)

    # --- messages -------------------------------------------------------
    @_available
    async def post_admin_message(self, session_id: int, admin_id: int, body: str,
                                 client_id: str | None) -> PostResult:
        async def post(s: Any) -> PostResult:
            repeated = await self._repeat(s, "admin", admin_id, client_id)
            if repeated:
                return repeated
            # The guard is the seq's own write: no read of the session first.
            message, session = await self._insert_message(
                s, session_id, "admin", admin_id, body, client_id, audience=admin_id,
                guard={"_id": session_id, "status": "claimed", "admin_id": admin_id})
            if message is None:
                session = _session(await self.db.sessions.find_one({"_id": session_id},
                                                                   session=s))
                refused = holder_refusal(session, admin_id) or SessionWrite(
                    WriteOutcome.FORBIDDEN, session)
                return PostResult(refused.outcome, session=refused.session)
            return PostResult(WriteOutcome.DONE, message, session, created=True)

        return await self.changes.run(post, key=("session", session_id))

    @_available
    async def post_store_message(self, store_id: int, body: str,
                                 client_id: str | None) -> PostResult:
        async def post(s: Any) -> PostResult:
            repeated = await self._repeat(s, "store", store_id, client_id)
            if repeated:
                return repeated
            # The store's active session takes the seq's write directly; only
            # when there is none is one opened (and written by its id).
            message, session = await self._insert_message(
                s, None, "store", store_id, body, client_id,
                guard={"store_id": store_id, "active": True})
            if message is None:
                opened = await self._open_session(s, store_id)
                message, session = await self._insert_message(s, opened.id, "store", store_id,
                                                              body, client_id)
            return PostResult(WriteOutcome.DONE, message, session, created=True)

        return await self.changes.run(post, key=("store", store_id))

    async def _open_session(self, s: Any, store_id: int) -> Session:
        """A new open session for the store, in ``s``. Another node opening one
        at the same time makes this transaction fail on the unique index, and
        its retry finds that session."""
        store = await self.db.stores.find_one({"_id": store_id}, session=s)
        now = utc_now_iso()
        doc = {"_id": await self._next_id("sessions"), "store_id": store_id,
               "store": {"id": store_id, "name": store["name"], "email": store.get("email"),
                         "logo_url": store.get("logo_url")},
               "admin_id": None, "status": "open", "active": True, "last_message_at": None,
               "created": now, "updated": now, "queued_at": now, "activity_at": now,
               "last_seq": 0}
        await self.db.sessions.insert_one(doc, session=s)
        session = _session(doc)
        await self._append_event(s, "session_opened", session, None,
                                 {"session": session_to_doc(session)})
        return session

    async def _repeat(self, s: Any, sender: str, sender_id: int,
                      client_id: str | None) -> PostResult | None:
        """The stored answer to a post whose ``client_id`` was seen before."""
        if client_id is None:
            return None
        doc = await self.db.messages.find_one({"sender": sender, "sender_id": sender_id,
                                               "client_id": client_id}, session=s)
        if doc is None:
            return None
        message = _message(doc)
        session = await self.db.sessions.find_one({"_id": message.session_id}, session=s)
        return PostResult(WriteOutcome.DONE, message, _session(session))

    async def _insert_message(self, s: Any, session_id: int | None, sender: str,
                              sender_id: int | None, body: str, client_id: str | None,
                              event: str | None = None, audience: Any = HOLDER,
                              guard: dict[str, Any] | None = None
                              ) -> tuple[Message | None, Session | None]:
        """Store a message with its event in ``s``: the session's ``$inc`` of
        ``last_seq`` gives the seq (a second writer of the session conflicts).
        With ``guard`` the session is the one it matches, and (None, None)
        says none did. The event's audience defaults to the session's holder.

        The event is not a document of its own: the message carries it under
        ``feed`` (its id from the events' block, its audience, the session as
        it stands after the message, when it was stored), and the feed follows
        inserts into ``messages`` as well as ``events`` (one insert fewer per
        message). The feed's pruning drops ``feed`` from old messages."""
        now = utc_now_iso()
        update: dict[str, Any] = {"$inc": {"last_seq": 1}, "$max": {"activity_at": now}}
        if sender != "system":
            update["$set"] = {"last_message_at": now, "updated": now}
            # Set once: a session document is created without these fields.
            first = "first_store_message_at" if sender == "store" else "first_admin_reply_at"
            update["$min"] = {first: now}
        doc = await self.db.sessions.find_one_and_update(
            guard or {"_id": session_id}, update, return_document=ReturnDocument.AFTER,
            session=s)
        if doc is None:
            return None, None
        session = _session(doc)
        message = Message(await self._next_id("messages"), session.id, session.last_seq,
                          sender, sender_id, body, client_id, now, event)
        stored = message_to_doc(message)
        stored["_id"] = stored.pop("id")
        feed = {"id": await self._next_id("events"),
                "admin_id": session.admin_id if audience is HOLDER else audience,
                "store_id": session.store_id, "session": session_to_doc(session),
                "created": time.time()}
        await self.db.messages.insert_one({**stored, "feed": feed}, session=s)
        if "message" in self.webhook_kinds:
            await self._append_to_outbox(s, {
                "kind": "message", "session_id": session.id, "created": feed["created"],
                "payload": {"message": message_to_doc(message), "session": feed["session"]}})
        return message, session

    @_available
    async def list_messages(self, session_id: int, after_seq: int,
                            limit: int) -> list[Message]:
        docs = await self.db.messages.find(
            {"session_id": session_id, "seq": {"$gt": after_seq}}).sort(
            "seq", ASCENDING).limit(limit).to_list(None)
        return [_message(d) for d in docs]

    # --- change feed ----------------------------------------------------
    async def _append_event(self, s: Any, kind: str, session: Session, admin_id: int | None,
                            payload: dict[str, Any]) -> None:
        event = {
            "_id": await self._next_id("events"), "kind": kind, "session_id": session.id,
            "store_id": session.store_id, "admin_id": admin_id, "payload": payload,
            "created": time.time()}
        await self.db.events.insert_one(event, session=s)
        await self._append_to_outbox(s, event)

    @_available
    async def append_typing(self, session: Session, sender: str) -> None:
        async def typing(s: Any) -> None:
            await self._append_event(s, "typing", session, session.admin_id,
                                     {"session_id": session.id, "sender": sender})

        await self.changes.run(typing)

    def set_event_wake(self, wake: Callable[[], None] | None) -> None:
        """Call ``wake`` whenever any node's events can be read (set by the
        feed at start): the change stream pushes, the feed need not poll."""
        self.events_follower.set_wake(wake)

    @_available
    async def feed_head(self) -> Any:
        return await self.events_follower.head()

    @_available
    async def read_events(self, after: Any, limit: int) -> list[Event]:
        return [_event(name, d, position)
                for name, d, position in await self.events_follower.read(after, limit)]

    @_available
    async def prune_events(self, older_than_secs: float) -> int:
        """Delete old state-change events and drop old messages' events (their
        ``feed``; the messages stay): how many events went."""
        cutoff = time.time() - older_than_secs
        result = await self.db.events.delete_many({"created": {"$lt": cutoff}})
        dropped = await self.db.messages.update_many({"feed.created": {"$lt": cutoff}},
                                                     {"$unset": {"feed": ""}})
        return result.deleted_count + dropped.modified_count

    @_available
    async def load_feed_position(self, node: str) -> Any:
        doc = await self.db.feed_positions.find_one({"_id": node})
        return doc["position"] if doc else None

    @_available
    async def save_feed_position(self, node: str, position: Any) -> None:
        await self.db.feed_positions.update_one({"_id": node}, {"$set": {"position": position}},
                                                upsert=True)

    # --- the support workflow's adapters (storage/mongo_workflow.py) --------------
    async def _wf_change(self, change: Callable[[Any], Any], key: Any = None) -> Any:
        """Run ``change(s)`` as one change: one transaction, retried as a whole
        (one at a time per ``key`` in this process)."""
        return await self.changes.run(change, key)

    async def _wf_event(self, s: Any, kind: str, session: Any, admin_id: int | None,
                        payload: dict[str, Any]) -> None:
        await self._append_event(s, kind, session, admin_id, payload)

    async def _wf_system_message(self, s: Any, session: Session, body: str, event: str,
                                 audience: int | None) -> Session:
        _, session = await self._insert_message(s, session.id, "system", None, body, None,
                                                event=event, audience=audience)
        return session


def _session(doc: dict[str, Any] | None) -> Session | None:
    if doc is None:
        return None
    return session_from_doc({**doc, "id": doc["_id"]})


def _message(doc: dict[str, Any]) -> Message:
    return message_from_doc({**doc, "id": doc["_id"]})


def _event(collection: str, doc: dict[str, Any], position: Any) -> Event:
    """The feed's event from an insert: an ``events`` document, or a message
    with the event it carries (the same record a separate event had)."""
    if collection == "messages":
        feed = doc["feed"]
        return Event(feed["id"], "message", doc["session_id"], feed["store_id"],
                     feed["admin_id"], {"message": message_to_doc(_message(doc)),
                                        "session": feed["session"]}, position)
    return Event(doc["_id"], doc["kind"], doc["session_id"], doc["store_id"], doc["admin_id"],
                 doc["payload"], position)

