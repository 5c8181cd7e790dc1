"""The support workflow on MongoDB: ``MongoWorkflow``, a part of ``MongoStorage``.

The rules are in storage/workflow.py. Each decision is one conditional write
(``find_one_and_update`` / ``update_one`` whose filter is the guard) inside one
change: ``MongoStorage._wf_change`` runs a function of a driver session ``s``
as one unit (a multi-document transaction where the backend has them; plain
sequential writes otherwise). Everything a change writes goes through ``s``;
where the guard refuses after an earlier write of the change (a count taken
for the transfer's target), the change undoes that write itself, so it is
right with or without a transaction around it.

The adapters used here are ``_wf_change``, ``_wf_event`` (append a feed
event) and ``_wf_system_message``. The webhook outbox is in
``storage/mongo_outbox.py``.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError, PyMongoError

from storage.base import (
    Admin,
    Session,
    SessionWrite,
    StorageUnavailable,
    WriteOutcome,
    session_to_doc,
    utc_now_iso,
)
from storage.mongo_docs import SessionIds, maybe_session, session_of
from storage.mongo_messages import MongoMessages
from storage.workflow import (
    OFFLINE,
    REQUEUE_BODIES,
    AdminPresence,
    ReadResult,
    RequeueReason,
    StaleClaim,
    StaleCutoffs,
    TransferOutcome,
    TransferResult,
    effective_presence,
    iso_from_epoch,
    may_mark_read,
    transfer_payload,
    why_transfer_refused,
)

P = ParamSpec("P")
T = TypeVar("T")


def _available(method: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """Driver failures become ``StorageUnavailable`` (503, retry later); a
    duplicate key is the caller's to handle."""

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await method(*args, **kwargs)
        except DuplicateKeyError:
            raise
        except PyMongoError as exc:
            raise StorageUnavailable(str(exc)) from exc

    return wrapper


class MongoWorkflow(MongoMessages):
    """Transfers, read state, presence and requeue sweeps."""

    # --- the adapters the workflow's changes use ---------------------------------
    async def _wf_change(self, change: Callable[[Any], Awaitable[T]], key: Any = None) -> T:
        """Run ``change(s)`` as one change: one transaction, retried as a whole
        (one at a time per ``key`` in this process)."""
        return await self.changes.run(change, key)

    async def _wf_event(
        self,
        s: Any,
        kind: str,
        session: SessionIds,
        admin_id: int | None,
        payload: dict[str, Any],
    ) -> None:
        await self._append_event(s, kind, session, admin_id, payload)

    async def _wf_system_message(
        self, s: Any, session: Session, body: str, event: str, audience: int | None
    ) -> Session:
        _, stored = await self._insert_message(
            s, session.id, "system", None, body, None, event=event, audience=audience
        )
        assert stored is not None  # written by its id, in this transaction
        return stored

    async def _setup_workflow(self) -> None:
        """Indexes of the workflow (runs within ``setup``)."""
        await self.db.admin_presence.create_index([("admin_id", ASCENDING), ("seen", ASCENDING)])
        await self.db.session_reads.create_index("session_id")

    async def _find_session(self, session_id: int, s: Any) -> Session | None:
        return maybe_session(await self.db.sessions.find_one({"_id": session_id}, session=s))

    # --- transfer ---------------------------------------------------------------
    @_available
    async def transfer_session(
        self, session_id: int, admin_id: int, target_id: int, max_sessions: int
    ) -> TransferResult:
        """Hand the holder's session to ``target_id`` (within its limit), or say why not."""

        async def transfer(s: Any) -> TransferResult:
            session = await self._find_session(session_id, s)
            target = await self._find_admin(target_id, s)
            refused = why_transfer_refused(session, admin_id, target)
            if refused is not None:
                return TransferResult(refused, session)
            assert target is not None  # why_transfer_refused refuses a missing target
            limit = {"active": {"$lt": max_sessions}} if max_sessions > 0 else {}
            counted = await self.db.admins.find_one_and_update(
                {"_id": target_id, **limit}, {"$inc": {"active": 1}}, session=s
            )
            if counted is None:
                return TransferResult(TransferOutcome.LIMIT, session)
            now = utc_now_iso()
            doc = await self.db.sessions.find_one_and_update(  # the guard
                {"_id": session_id, "status": "claimed", "admin_id": admin_id},
                {"$set": {"admin_id": target_id, "updated": now, "activity_at": now}},
                return_document=ReturnDocument.AFTER,
                session=s,
            )
            if doc is None:  # closed or handed on since the read: give the place back
                await self.db.admins.update_one(
                    {"_id": target_id}, {"$inc": {"active": -1}}, session=s
                )
                current = await self._find_session(session_id, s)
                return TransferResult(
                    why_transfer_refused(current, admin_id, target) or TransferOutcome.FORBIDDEN,
                    current,
                )
            await self.db.admins.update_one(
                {"_id": admin_id, "active": {"$gt": 0}}, {"$inc": {"active": -1}}, session=s
            )
            caller = await self._find_admin(admin_id, s)
            assert caller is not None  # the holder, who asks: admins are never deleted
            session = session_of(doc)
            await self._wf_event(
                s,
                "session_transferred",
                session,
                target_id,
                transfer_payload(session, caller, target),
            )
            session = await self._wf_system_message(
                s,
                session,
                f"{caller.name} transferred the chat to {target.name}",
                "session_transferred",
                target_id,
            )
            return TransferResult(TransferOutcome.DONE, session)

        return await self._wf_change(transfer, ("session", session_id))

    async def _find_admin(self, admin_id: int, s: Any) -> Admin | None:
        doc = await self.db.admins.find_one({"_id": admin_id}, session=s)
        return Admin(doc["_id"], doc["name"], doc.get("email")) if doc else None

    # --- read state ---------------------------------------------------------------
    @_available
    async def mark_read(self, session_id: int, side: str, reader_id: int, seq: int) -> ReadResult:
        """Raise ``side``'s read position in the session to ``seq`` (never lowers it)."""
        key = f"{session_id}:{side}"
        # The position's document exists before the change (no upsert inside
        # it); a duplicate is a racing first mark creating it.
        with contextlib.suppress(DuplicateKeyError):
            await self.db.session_reads.update_one(
                {"_id": key},
                {"$setOnInsert": {"session_id": session_id, "side": side, "seq": 0}},
                upsert=True,
            )

        async def mark(s: Any) -> ReadResult:
            session = await self._find_session(session_id, s)
            if session is None:
                return ReadResult(WriteOutcome.NOT_FOUND)
            if not may_mark_read(session, side, reader_id):
                return ReadResult(WriteOutcome.FORBIDDEN, session=session)
            wanted = min(seq, session.last_seq)
            # The guard: only a lower position is raised.
            doc = await self.db.session_reads.find_one_and_update(
                {"_id": key, "seq": {"$lt": wanted}},
                {"$set": {"seq": wanted}},
                return_document=ReturnDocument.AFTER,
                session=s,
            )
            if doc is None:
                stored = (await self.db.session_reads.find_one({"_id": key}, session=s))["seq"]
                return ReadResult(WriteOutcome.DONE, stored, False, session)
            await self._wf_event(
                s,
                "read",
                session,
                session.admin_id,
                {"session_id": session_id, "sender": side, "seq": wanted},
            )
            return ReadResult(WriteOutcome.DONE, wanted, True, session)

        return await self._wf_change(mark, ("session", session_id))

    @_available
    async def unread_counts(self, session_ids: list[int], side: str) -> dict[int, int]:
        """Per session, the other side's messages after ``side``'s read position."""
        other = "store" if side == "admin" else "admin"
        marks = {
            d["session_id"]: d["seq"]
            for d in await self.db.session_reads.find(
                {"session_id": {"$in": list(session_ids)}, "side": side}
            ).to_list(None)
        }
        return {
            sid: await self.db.messages.count_documents(
                {"session_id": sid, "sender": other, "seq": {"$gt": marks.get(sid, 0)}}
            )
            for sid in session_ids
        }

    @_available
    async def read_positions(self, session_id: int) -> dict[str, int]:
        """Each side's read position in the session (sides at 0 left out)."""
        docs = await self.db.session_reads.find({"session_id": session_id}).to_list(None)
        return {d["side"]: d["seq"] for d in docs if d["seq"] > 0}

    # --- presence -------------------------------------------------------------------
    async def _admin_live(self, admin_id: int, live_after: float, s: Any = None) -> bool:
        return (
            await self.db.admin_presence.find_one(
                {"admin_id": admin_id, "sockets": {"$gt": 0}, "seen": {"$gte": live_after}},
                session=s,
            )
            is not None
        )

    async def _announce(self, admin_id: int, live_after: float) -> str | None:
        """Announce the admin's presence if it changed: a conditional update of
        ``announced`` with its event, so of several processes one announces."""
        with contextlib.suppress(DuplicateKeyError):
            await self.db.admin_status.update_one(
                {"_id": admin_id},
                {"$setOnInsert": {"away": False, "announced": OFFLINE}},
                upsert=True,
            )

        async def announce(s: Any) -> str | None:
            status_doc = await self.db.admin_status.find_one({"_id": admin_id}, session=s)
            status = effective_presence(
                await self._admin_live(admin_id, live_after, s), bool(status_doc.get("away"))
            )
            changed = await self.db.admin_status.find_one_and_update(
                {"_id": admin_id, "announced": {"$ne": status}},
                {"$set": {"announced": status}},
                session=s,
            )
            if changed is None:
                return None
            await self._wf_event(
                s, "presence", _NoSession(), admin_id, {"admin_id": admin_id, "status": status}
            )
            return status

        return await self._wf_change(announce, ("admin", admin_id))

    @_available
    async def set_presence_sockets(
        self, node: str, admin_id: int, sockets: int, live_after: float
    ) -> str | None:
        """Record this node's socket count for the admin; the new presence if it changed."""
        await self.db.admin_presence.update_one(
            {"_id": f"{node}|{admin_id}"},
            {"$set": {"node": node, "admin_id": admin_id, "sockets": sockets, "seen": time.time()}},
            upsert=True,
        )
        return await self._announce(admin_id, live_after)

    @_available
    async def set_admin_away(self, admin_id: int, away: bool, live_after: float) -> str | None:
        """Set or clear the admin's away flag; the new presence if it changed."""
        await self.db.admin_status.update_one(
            {"_id": admin_id},
            {"$set": {"away": away}, "$setOnInsert": {"announced": OFFLINE}},
            upsert=True,
        )
        return await self._announce(admin_id, live_after)

    @_available
    async def heartbeat_presence(
        self, node: str, sockets: dict[int, int], live_after: float
    ) -> list[tuple[int, str]]:
        """Refresh this node's socket counts, expire dead nodes': presences that changed."""
        now = time.time()
        await self.db.admin_presence.update_many(
            {"node": node, "sockets": {"$gt": 0}}, {"$set": {"sockets": 0, "seen": now}}
        )
        for admin_id, count in sockets.items():
            if count > 0:
                await self.db.admin_presence.update_one(
                    {"_id": f"{node}|{admin_id}"},
                    {"$set": {"node": node, "admin_id": admin_id, "sockets": count, "seen": now}},
                    upsert=True,
                )
        # A row no longer refreshed is a dead process: its sockets are gone.
        await self.db.admin_presence.update_many(
            {"sockets": {"$gt": 0}, "seen": {"$lt": live_after}}, {"$set": {"sockets": 0}}
        )
        changes = []
        for doc in await self.db.admin_status.find({}).to_list(None):
            status = await self._announce(doc["_id"], live_after)
            if status is not None:
                changes.append((doc["_id"], status))
        return changes

    @_available
    async def list_admins_with_presence(
        self, limit: int, after_id: int, live_after: float
    ) -> list[AdminPresence]:
        """Admins after ``after_id`` with their presence and active sessions."""
        docs = (
            await self.db.admins.find({"_id": {"$gt": after_id}})
            .sort("_id", ASCENDING)
            .limit(limit)
            .to_list(None)
        )
        result = []
        for doc in docs:
            status_doc = await self.db.admin_status.find_one({"_id": doc["_id"]}) or {}
            live = await self._admin_live(doc["_id"], live_after)
            active = await self.db.sessions.count_documents(
                {"admin_id": doc["_id"], "status": "claimed"}
            )
            result.append(
                AdminPresence(
                    Admin(doc["_id"], doc["name"], doc.get("email")),
                    effective_presence(live, bool(status_doc.get("away"))),
                    active,
                )
            )
        return result

    # --- stale claims back to the queue ---------------------------------------------
    async def _holder_offline_before(
        self, admin_id: int, cutoffs: StaleCutoffs, s: Any = None
    ) -> bool:
        if cutoffs.offline_before is None or await self._admin_live(
            admin_id, cutoffs.live_after, s
        ):
            return False
        last = (
            await self.db.admin_presence.find({"admin_id": admin_id}, session=s)
            .sort("seen", DESCENDING)
            .limit(1)
            .to_list(1)
        )
        return (last[0]["seen"] if last else 0) < cutoffs.offline_before

    async def _awaits_reply(self, session_id: int) -> bool:
        last = (
            await self.db.messages.find({"session_id": session_id, "sender": {"$ne": "system"}})
            .sort("seq", DESCENDING)
            .limit(1)
            .to_list(1)
        )
        return bool(last) and last[0]["sender"] == "store"

    async def _holder_quiet_before(self, session_id: int, before: float, s: Any = None) -> bool:
        """The holder has not claimed, taken over or written in the session
        since ``before`` (the store writing on does not keep the claim)."""
        last = (
            await self.db.messages.find(
                {
                    "session_id": session_id,
                    "$or": [
                        {"sender": "admin"},
                        {"event": {"$in": ["admin_connected", "session_transferred"]}},
                    ],
                },
                session=s,
            )
            .sort("seq", DESCENDING)
            .limit(1)
            .to_list(1)
        )
        return not last or last[0]["created"] < iso_from_epoch(before)

    @_available
    async def find_stale_claims(self, cutoffs: StaleCutoffs, limit: int) -> list[StaleClaim]:
        """Claims to put back in the queue (holder offline, or store unanswered)."""
        found: dict[int, StaleClaim] = {}
        if cutoffs.offline_before is not None:
            offline: dict[int, bool] = {}  # per holder, judged once per sweep
            claimed = await self.db.sessions.find(
                {"status": "claimed"}, {"admin_id": 1, "last_seq": 1, "updated": 1}
            ).to_list(None)
            for doc in claimed:
                if len(found) >= limit:
                    break
                admin_id = doc["admin_id"]
                if admin_id not in offline:
                    offline[admin_id] = await self._holder_offline_before(admin_id, cutoffs)
                if offline[admin_id] and await self._holder_quiet_before(
                    doc["_id"], cutoffs.offline_before
                ):
                    found[doc["_id"]] = StaleClaim(
                        doc["_id"], admin_id, doc["last_seq"], doc["updated"], RequeueReason.OFFLINE
                    )
        if cutoffs.unanswered_before is not None:
            docs = (
                await self.db.sessions.find(
                    {
                        "status": "claimed",
                        "updated": {"$lt": iso_from_epoch(cutoffs.unanswered_before)},
                    }
                )
                .sort("updated", ASCENDING)
                .limit(limit)
                .to_list(None)
            )
            for doc in docs:
                if doc["_id"] not in found and await self._awaits_reply(doc["_id"]):
                    found[doc["_id"]] = StaleClaim(
                        doc["_id"],
                        doc["admin_id"],
                        doc["last_seq"],
                        doc["updated"],
                        RequeueReason.UNANSWERED,
                    )
        return list(found.values())[:limit]

    @_available
    async def requeue_session(self, stale: StaleClaim, cutoffs: StaleCutoffs) -> SessionWrite:
        """Put a stale claim back in the queue if it is still exactly as judged."""

        async def requeue(s: Any) -> SessionWrite:
            if stale.reason is RequeueReason.OFFLINE and (
                cutoffs.offline_before is None
                or not await self._holder_offline_before(stale.admin_id, cutoffs, s)
                or not await self._holder_quiet_before(stale.session_id, cutoffs.offline_before, s)
            ):
                return SessionWrite(
                    WriteOutcome.UNCHANGED, await self._find_session(stale.session_id, s)
                )
            now = utc_now_iso()
            # The guard: exactly as judged (holder, last_seq, updated); queued_at kept.
            doc = await self.db.sessions.find_one_and_update(
                {
                    "_id": stale.session_id,
                    "status": "claimed",
                    "admin_id": stale.admin_id,
                    "last_seq": stale.last_seq,
                    "updated": stale.updated,
                },
                {"$set": {"status": "open", "admin_id": None, "updated": now, "activity_at": now}},
                return_document=ReturnDocument.AFTER,
                session=s,
            )
            if doc is None:
                return SessionWrite(
                    WriteOutcome.UNCHANGED, await self._find_session(stale.session_id, s)
                )
            await self.db.admins.update_one(
                {"_id": stale.admin_id, "active": {"$gt": 0}}, {"$inc": {"active": -1}}, session=s
            )
            session = await self._wf_system_message(
                s, session_of(doc), REQUEUE_BODIES[stale.reason], "session_requeued", stale.admin_id
            )
            await self._wf_event(
                s,
                "session_released",
                session,
                stale.admin_id,
                {"session": session_to_doc(session), "reason": stale.reason.value},
            )
            return SessionWrite(WriteOutcome.DONE, session)

        return await self._wf_change(requeue, ("session", stale.session_id))


class _NoSession:
    """Where a feed event needs a session but is about an admin: ids 0."""

    id = 0
    store_id = 0
