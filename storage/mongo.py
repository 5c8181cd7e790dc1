"""The cluster backend: MongoDB through PyMongo's asyncio API (``AsyncMongoClient``).

Guards, without multi-document transactions (DESIGN.md "Storage"):

* ids come from a ``counters`` collection (``$inc`` in ``find_one_and_update``);
* a claim is one ``find_one_and_update`` whose filter only matches an open
  session with no admin; a retry by the holder is recognised by reading after
  the guard refused. The per-admin limit is a conditional ``$inc`` of the
  admin's ``active`` count (``{active: {$lt: limit}}``), undone when the claim
  then loses and recounted from the sessions at start-up;
* a message's ``seq`` is claimed by inserting the message itself under the
  unique ``(session_id, seq)`` index, with ``seq`` = the session's last + 1; a
  duplicate-key error means another node got there first: re-read and retry.
  Nothing is consumed until the insert succeeds, so there are no gaps;
* one open-or-claimed session per store: a unique index on ``store_id`` over
  documents with ``active: true`` (the flag is removed on close);
* ``client_id``: a unique index on ``(sender, sender_id, client_id)``.

Writes use write concern ``majority`` and retryable writes by default: a ``w:1``
claim can be rolled back by a failover and hand one session to two admins.
Connection failures and timeouts become ``StorageUnavailable`` (503); the
driver reconnects by itself when the database is back.
"""

from __future__ import annotations

import functools
import time
from typing import Any, Callable

import pymongo
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.errors import ConnectionFailure, DuplicateKeyError, OperationFailure, PyMongoError

from storage.base import (
    Admin, ClaimOutcome, ClaimResult, Event, KeyChange, Message, PostResult, Principal, Role,
    Session, SessionWrite, Store, StorageUnavailable, WriteOutcome, digest_key,
    holder_refusal, message_from_doc, message_to_doc, new_api_key, revoked_digest,
    session_from_doc, session_to_doc, utc_now_iso, why_claim_failed,
)

# Attempts at a seq before giving up (each loss means another node just wrote).
SEQ_ATTEMPTS = 50
# The feed is numbered from a counter, so an event can become visible after a
# later-numbered one. A reader waits this long for a missing id before it
# decides the id is gone for good (its writer died between $inc and insert).
FEED_GAP_WAIT_SECS = 2.0


def _available(method):
    """Turn connection failures into ``StorageUnavailable`` (503, retry later)."""

    @functools.wraps(method)
    async def wrapper(*args, **kwargs):
        try:
            return await method(*args, **kwargs)
        except ConnectionFailure as exc:
            raise StorageUnavailable(str(exc)) from exc
        except PyMongoError as exc:
            if isinstance(exc, DuplicateKeyError):
                raise
            raise StorageUnavailable(str(exc)) from exc

    return wrapper


class MongoStorage:
    """``ChatStorage`` over a MongoDB database (a ready ``AsyncDatabase``)."""

    def __init__(self, db: Any, client: Any = None):
        self.db = db
        self.client = client

    @classmethod
    def from_url(cls, url: str, write_concern: str = "majority", retry_writes: bool = True,
                 timeout_ms: int = 5000) -> "MongoStorage":
        """``mongodb://host[:port]/dbname?...``; the database defaults to ``chat``."""
        w: Any = int(write_concern) if str(write_concern).isdigit() else write_concern
        client = pymongo.AsyncMongoClient(
            url, w=w, retryWrites=retry_writes, serverSelectionTimeoutMS=timeout_ms,
            socketTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms, tz_aware=True)
        db = client.get_default_database(default="chat")
        return cls(db, client)

    # --- lifecycle ------------------------------------------------------
    @_available
    async def setup(self) -> None:
        db = self.db
        await db.admins.create_index("key_digest", unique=True)
        await db.stores.create_index("key_digest", unique=True)
        await db.sessions.create_index([("store_id", ASCENDING)], unique=True,
                                       partialFilterExpression={"active": True})
        await db.sessions.create_index([("status", ASCENDING), ("queued_at", ASCENDING),
                                        ("_id", ASCENDING)])
        await db.sessions.create_index([("admin_id", ASCENDING), ("status", ASCENDING),
                                        ("activity_at", DESCENDING)])
        await db.messages.create_index([("session_id", ASCENDING), ("seq", ASCENDING)],
                                       unique=True)
        await db.messages.create_index(
            [("sender", ASCENDING), ("sender_id", ASCENDING), ("client_id", ASCENDING)],
            unique=True, partialFilterExpression={"client_id": {"$type": "string"}})
        await db.events.create_index("created")
        await self._recount_admin_loads()

    async def _recount_admin_loads(self) -> None:
        """Rebuild each admin's ``active`` count from the sessions (a crash
        between the $inc and its undo cannot leave it wrong past a restart)."""
        counts: dict[int, int] = {}
        for doc in await self.db.sessions.find({"status": "claimed"}).to_list(None):
            counts[doc["admin_id"]] = counts.get(doc["admin_id"], 0) + 1
        for admin in await self.db.admins.find({}).to_list(None):
            await self.db.admins.update_one({"_id": admin["_id"]},
                                            {"$set": {"active": counts.get(admin["_id"], 0)}})

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()

    @_available
    async def ping(self) -> None:
        await self.db.command("ping")

    async def _next_id(self, name: str) -> int:
        doc = await self.db.counters.find_one_and_update(
            {"_id": name}, {"$inc": {"value": 1}}, upsert=True,
            return_document=ReturnDocument.AFTER)
        return doc["value"]

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
        doc = await self.db.admins.find_one({"key_digest": digest})
        if doc:
            return Principal(Role.ADMIN, doc["_id"], doc["name"], doc.get("email"))
        doc = await self.db.stores.find_one({"key_digest": digest})
        if doc:
            return Principal(Role.STORE, doc["_id"], doc["name"], doc.get("email"),
                             doc.get("logo_url"))
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
    async def count_open_sessions(self) -> int:
        return await self.db.sessions.count_documents({"status": "open"})

    @_available
    async def claim_session(self, session_id: int, admin: Admin,
                            max_sessions: int) -> ClaimResult:
        if max_sessions > 0:
            counted = await self.db.admins.find_one_and_update(
                {"_id": admin.id, "active": {"$lt": max_sessions}}, {"$inc": {"active": 1}})
            if counted is None:
                current = await self.get_session(session_id)
                outcome = why_claim_failed(current, admin.id, limit_hit=True)
                return ClaimResult(outcome, current)
        now = utc_now_iso()
        doc = await self.db.sessions.find_one_and_update(
            {"_id": session_id, "status": "open", "admin_id": None},
            {"$set": {"status": "claimed", "admin_id": admin.id, "updated": now,
                      "activity_at": now}},
            return_document=ReturnDocument.AFTER)
        if doc is None:
            if max_sessions > 0:  # the claim lost: give the admin's place back
                await self.db.admins.update_one({"_id": admin.id}, {"$inc": {"active": -1}})
            current = await self.get_session(session_id)
            return ClaimResult(why_claim_failed(current, admin.id), current)
        session = _session(doc)
        await self._append_event("session_claimed", session, admin.id,
                                 {"session": session_to_doc(session),
                                  "admin": {"id": admin.id, "name": admin.name}})
        _, session = await self._insert_message(session, "system", None,
                                                f"{admin.name} joined the chat", None,
                                                event="admin_connected", audience=admin.id)
        return ClaimResult(ClaimOutcome.WON, session)

    @_available
    async def release_session(self, session_id: int, admin_id: int) -> SessionWrite:
        now = utc_now_iso()
        doc = await self.db.sessions.find_one_and_update(
            {"_id": session_id, "status": "claimed", "admin_id": admin_id},
            {"$set": {"status": "open", "admin_id": None, "updated": now, "queued_at": now,
                      "activity_at": now}}, return_document=ReturnDocument.AFTER)
        if doc is None:
            return await self._refused(session_id, admin_id)
        await self.db.admins.update_one({"_id": admin_id, "active": {"$gt": 0}},
                                        {"$inc": {"active": -1}})
        _, session = await self._insert_message(
            _session(doc), "system", None, "The session went back to the queue", None,
            event="session_released", audience=admin_id)
        await self._append_event("session_released", session, admin_id,
                                 {"session": session_to_doc(session)})
        return SessionWrite(WriteOutcome.DONE, session)

    @_available
    async def close_session(self, session_id: int, admin_id: int) -> SessionWrite:
        now = utc_now_iso()
        doc = await self.db.sessions.find_one_and_update(
            {"_id": session_id, "status": "claimed", "admin_id": admin_id},
            {"$set": {"status": "closed", "updated": now, "activity_at": now},
             "$unset": {"active": ""}}, return_document=ReturnDocument.AFTER)
        if doc is None:
            return await self._refused(session_id, admin_id, closed_ok=True)
        await self.db.admins.update_one({"_id": admin_id, "active": {"$gt": 0}},
                                        {"$inc": {"active": -1}})
        _, session = await self._insert_message(
            _session(doc), "system", None, "The session was closed", None,
            event="session_closed", audience=admin_id)
        await self._append_event("session_closed", session, admin_id,
                                 {"session": session_to_doc(session)})
        return SessionWrite(WriteOutcome.DONE, session)

    async def _refused(self, session_id: int, admin_id: int,
                       closed_ok: bool = False) -> SessionWrite:
        """Why a holder's guarded write matched nothing, in API.md's order."""
        session = await self.get_session(session_id)
        return holder_refusal(session, admin_id, closed_ok) or SessionWrite(
            WriteOutcome.FORBIDDEN, session)  # changed hands between guard and read

    # --- messages -------------------------------------------------------
    @_available
    async def post_admin_message(self, session_id: int, admin_id: int, body: str,
                                 client_id: str | None) -> PostResult:
        repeated = await self._repeat("admin", admin_id, client_id)
        if repeated:
            return repeated
        session = await self.get_session(session_id)
        refused = holder_refusal(session, admin_id)
        if refused:
            return PostResult(refused.outcome, session=refused.session)
        return await self._post(session, "admin", admin_id, body, client_id, admin_id)

    @_available
    async def post_store_message(self, store_id: int, body: str,
                                 client_id: str | None) -> PostResult:
        repeated = await self._repeat("store", store_id, client_id)
        if repeated:
            return repeated
        session = await self.get_active_session(store_id)
        if session is None:
            session = await self._open_session(store_id)
        return await self._post(session, "store", store_id, body, client_id, session.admin_id)

    async def _open_session(self, store_id: int) -> Session:
        store = await self.db.stores.find_one({"_id": store_id})
        now = utc_now_iso()
        doc = {"_id": await self._next_id("sessions"), "store_id": store_id,
               "store": {"id": store_id, "name": store["name"], "email": store.get("email"),
                         "logo_url": store.get("logo_url")},
               "admin_id": None, "status": "open", "active": True, "last_message_at": None,
               "created": now, "updated": now, "queued_at": now, "activity_at": now,
               "last_seq": 0}
        try:
            await self.db.sessions.insert_one(doc)
        except DuplicateKeyError:  # another node opened one first: use that
            return await self.get_active_session(store_id)
        session = _session(doc)
        await self._append_event("session_opened", session, None,
                                 {"session": session_to_doc(session)})
        return session

    async def _post(self, session: Session, sender: str, sender_id: int, body: str,
                    client_id: str | None, audience: int | None) -> PostResult:
        try:
            message, session = await self._insert_message(session, sender, sender_id, body,
                                                          client_id, audience=audience)
        except DuplicateKeyError:  # the same client_id won a race a moment ago
            repeated = await self._repeat(sender, sender_id, client_id)
            if repeated:
                return repeated
            raise
        return PostResult(WriteOutcome.DONE, message, session, created=True)

    async def _repeat(self, sender: str, sender_id: int,
                      client_id: str | None) -> PostResult | None:
        if client_id is None:
            return None
        doc = await self.db.messages.find_one({"sender": sender, "sender_id": sender_id,
                                               "client_id": client_id})
        if doc is None:
            return None
        message = _message(doc)
        return PostResult(WriteOutcome.DONE, message, await self.get_session(message.session_id))

    async def _insert_message(self, session: Session, sender: str, sender_id: int | None,
                              body: str, client_id: str | None, event: str | None = None,
                              audience: int | None = None) -> tuple[Message, Session]:
        """Claim the next seq by inserting under the unique (session_id, seq) index."""
        seq = session.last_seq + 1
        for _attempt in range(SEQ_ATTEMPTS):
            now = utc_now_iso()
            message = Message(await self._next_id("messages"), session.id, seq, sender,
                              sender_id, body, client_id, now, event)
            doc = message_to_doc(message)
            doc["_id"] = doc.pop("id")
            try:
                await self.db.messages.insert_one(doc)
                break
            except DuplicateKeyError as exc:
                if "client_id" in str(exc):
                    raise
                # another node took this seq: continue after the newest stored one
                newest = await self.db.messages.find({"session_id": session.id}).sort(
                    "seq", DESCENDING).limit(1).to_list(1)
                seq = newest[0]["seq"] + 1
        else:
            raise StorageUnavailable("could not allocate a message seq; too much contention")
        update: dict[str, Any] = {"$max": {"last_seq": seq, "activity_at": now}}
        if sender != "system":
            update["$set"] = {"last_message_at": now, "updated": now}
            first = "first_store_message_at" if sender == "store" else "first_admin_reply_at"
            await self.db.sessions.update_one({"_id": session.id, first: None},
                                              {"$set": {first: now}})
        doc = await self.db.sessions.find_one_and_update(
            {"_id": session.id}, update, return_document=ReturnDocument.AFTER)
        session = _session(doc)
        await self._append_event("message", session, audience,
                                 {"message": message_to_doc(message),
                                  "session": session_to_doc(session)})
        return message, session

    @_available
    async def list_messages(self, session_id: int, after_seq: int,
                            limit: int) -> list[Message]:
        docs = await self.db.messages.find(
            {"session_id": session_id, "seq": {"$gt": after_seq}}).sort(
            "seq", ASCENDING).limit(limit).to_list(None)
        return [_message(d) for d in docs]

    # --- change feed ----------------------------------------------------
    async def _append_event(self, kind: str, session: Session, admin_id: int | None,
                            payload: dict[str, Any]) -> None:
        await self.db.events.insert_one({
            "_id": await self._next_id("events"), "kind": kind, "session_id": session.id,
            "store_id": session.store_id, "admin_id": admin_id, "payload": payload,
            "created": time.time()})

    @_available
    async def append_typing(self, session: Session, sender: str) -> None:
        await self._append_event("typing", session, session.admin_id,
                                 {"session_id": session.id, "sender": sender})

    async def watch_event_inserts(self, on_insert: Callable[[], None]) -> bool:
        """Call ``on_insert`` for each event any node stores, until cancelled.

        Uses a change stream, so other nodes' events are read at once instead
        of at the next poll. The stream is only a wake-up: events are still
        read by id through ``read_events``, which keeps their order. Returns
        False at once where change streams are unsupported (a standalone
        server, or the mongomock stand-in): the feed then just polls.
        """
        try:
            stream = await self.db.events.watch([{"$match": {"operationType": "insert"}}])
        except (OperationFailure, NotImplementedError, AttributeError, TypeError):
            return False
        async with stream:
            async for _change in stream:
                on_insert()
        return True

    @_available
    async def last_event_id(self) -> int:
        doc = await self.db.counters.find_one({"_id": "events"})
        return doc["value"] if doc else 0

    @_available
    async def read_events(self, after_id: int, limit: int) -> list[Event]:
        docs = await self.db.events.find({"_id": {"$gt": after_id}}).sort(
            "_id", ASCENDING).limit(limit).to_list(None)
        events, expected = [], after_id + 1
        for doc in docs:
            # Stop at a hole in the numbering until it fills (an earlier-numbered
            # event not yet visible) or is old enough to be given up on.
            if doc["_id"] != expected and doc["created"] > time.time() - FEED_GAP_WAIT_SECS:
                break
            events.append(Event(doc["_id"], doc["kind"], doc["session_id"], doc["store_id"],
                                doc["admin_id"], doc["payload"]))
            expected = doc["_id"] + 1
        return events

    @_available
    async def prune_events(self, older_than_secs: float) -> int:
        result = await self.db.events.delete_many(
            {"created": {"$lt": time.time() - older_than_secs}})
        return result.deleted_count


    @_available
    async def load_feed_position(self, node: str) -> int | None:
        doc = await self.db.feed_positions.find_one({"_id": node})
        return doc["last_id"] if doc else None

    @_available
    async def save_feed_position(self, node: str, last_id: int) -> None:
        await self.db.feed_positions.update_one({"_id": node}, {"$set": {"last_id": last_id}},
                                                upsert=True)

    # --- account administration -----------------------------------------
    @_available
    async def list_admins(self) -> list[Admin]:
        docs = await self.db.admins.find({}).sort("_id", ASCENDING).to_list(None)
        return [Admin(d["_id"], d["name"], d.get("email")) for d in docs]

    @_available
    async def list_stores(self) -> list[Store]:
        docs = await self.db.stores.find({}).sort("_id", ASCENDING).to_list(None)
        return [Store(d["_id"], d["name"], d.get("email"), d.get("logo_url")) for d in docs]

    @_available
    async def rotate_key(self, role: Role, account_id: int) -> str | None:
        key = new_api_key()
        changed = await self._change_key(role, account_id, digest_key(key), "rotated")
        return key if changed else None

    @_available
    async def revoke_key(self, role: Role, account_id: int) -> bool:
        return await self._change_key(role, account_id, revoked_digest(), "revoked")

    async def _change_key(self, role: Role, account_id: int, digest: str, kind: str) -> bool:
        # The digest first, then the announcement: a watcher that sees the change
        # finds the old key already refused. (A crash between the two leaves the
        # key changed but its sockets open until they reconnect.)
        collection = self.db.admins if role is Role.ADMIN else self.db.stores
        result = await collection.update_one({"_id": account_id},
                                             {"$set": {"key_digest": digest}})
        if result.matched_count != 1:
            return False
        await self.db.key_changes.insert_one({
            "_id": await self._next_id("key_changes"), "role": role.value,
            "account_id": account_id, "kind": kind, "created": time.time()})
        return True

    @_available
    async def last_key_change_id(self) -> int:
        doc = await self.db.counters.find_one({"_id": "key_changes"})
        return doc["value"] if doc else 0

    @_available
    async def key_changes_since(self, after_id: int) -> list[KeyChange]:
        docs = await self.db.key_changes.find({"_id": {"$gt": after_id}}).sort(
            "_id", ASCENDING).to_list(None)
        changes, expected = [], after_id + 1
        for doc in docs:
            # Ids come from a counter, so a later id can be visible first: wait
            # for the hole to fill, as the event feed does.
            if doc["_id"] != expected and doc["created"] > time.time() - FEED_GAP_WAIT_SECS:
                break
            changes.append(KeyChange(doc["_id"], Role(doc["role"]), doc["account_id"],
                                     doc["kind"]))
            expected = doc["_id"] + 1
        return changes


def _session(doc: dict[str, Any] | None) -> Session | None:
    if doc is None:
        return None
    return session_from_doc({**doc, "id": doc["_id"]})


def _message(doc: dict[str, Any]) -> Message:
    return message_from_doc({**doc, "id": doc["_id"]})

