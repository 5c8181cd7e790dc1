"""Stale claims back to the queue on MongoDB: ``MongoRequeue``, a part of ``MongoStorage``.

A claim whose holder has been offline (every node's socket count 0 since the
cutoff) and quiet, or whose store has waited unanswered past its cutoff, is
found by a sweep and put back in the queue by a change whose guard is the
session exactly as judged (holder, ``last_seq``, ``updated``): a claim that
moved on in between is left alone. The rules are in storage/workflow.py.
"""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, DESCENDING, ReturnDocument

from storage.documents import session_to_doc
from storage.mongo_docs import session_of
from storage.mongo_presence import MongoPresence
from storage.mongo_txn import available_but_duplicates as _available
from storage.outcomes import SessionWrite, WriteOutcome
from storage.records import utc_now_iso
from storage.workflow import (
    REQUEUE_BODIES,
    RequeueReason,
    StaleClaim,
    StaleCutoffs,
    iso_from_epoch,
)


class MongoRequeue(MongoPresence):
    """The requeue sweep: finding stale claims and putting them back."""

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
            await self._append_event(
                s,
                "session_released",
                session,
                stale.admin_id,
                {"session": session_to_doc(session), "reason": stale.reason.value},
            )
            return SessionWrite(WriteOutcome.DONE, session)

        return await self._wf_change(requeue, ("session", stale.session_id))
