"""The support workflow on MongoDB: ``MongoWorkflow``, a part of ``MongoStorage``.

The rules are in storage/workflow.py. Each decision is one conditional write
(``find_one_and_update`` / ``update_one`` whose filter is the guard) inside one
change: ``_wf_change`` (storage/mongo_presence.py) runs a function of a driver session ``s``
as one unit (a multi-document transaction where the backend has them; plain
sequential writes otherwise). Everything a change writes goes through ``s``;
where the guard refuses after an earlier write of the change (a count taken
for the transfer's target), the change undoes that write itself, so it is
right with or without a transaction around it.

This module holds transfers and read state; presence is in
storage/mongo_presence.py, the requeue sweep in storage/mongo_requeue.py, the
webhook outbox in storage/mongo_outbox.py.
"""

from __future__ import annotations

import contextlib
from typing import Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from storage.mongo_docs import session_of
from storage.mongo_requeue import MongoRequeue
from storage.mongo_txn import available_but_duplicates as _available
from storage.outcomes import WriteOutcome
from storage.records import utc_now_iso
from storage.workflow import (
    ReadResult,
    TransferOutcome,
    TransferResult,
    may_mark_read,
    transfer_payload,
    why_transfer_refused,
)


class MongoWorkflow(MongoRequeue):
    """Transfers and read state (and, through its bases, presence and requeue sweeps)."""

    async def _setup_workflow(self) -> None:
        """Indexes of the workflow (runs within ``setup``)."""
        await self.db.admin_presence.create_index([("admin_id", ASCENDING), ("seen", ASCENDING)])
        await self.db.session_reads.create_index("session_id")

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
            await self._append_event(
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
            await self._append_event(
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
