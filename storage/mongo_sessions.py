"""Sessions on MongoDB: ``MongoSessions``, a part of ``MongoStorage``.

Reading sessions, and the holder's state changes, each one transaction
(storage/mongo_txn.py): a claim (the session, the admin's ``active`` count,
the ``admin_connected`` message and the events), a release and a close (the
guarded update, the admin's count, the system message and the event). The
claim's update only matches an open session with no admin; the per-admin
limit is a conditional ``$inc`` of the admin's ``active`` count, which every
claim raises and every release and close lowers in the same transaction.
"""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, DESCENDING, ReturnDocument

from storage.documents import session_to_doc
from storage.mongo_docs import maybe_session, session_of
from storage.mongo_messages import MongoMessages
from storage.mongo_txn import Refused, available
from storage.outcomes import (
    ClaimOutcome,
    ClaimResult,
    SessionWrite,
    WriteOutcome,
    holder_refusal,
    why_claim_failed,
)
from storage.records import Admin, Session, SessionStatus, utc_now_iso


class MongoSessions(MongoMessages):
    """Session reads and the claim, release and close."""

    @available
    async def get_session(self, session_id: int) -> Session | None:
        """The session, or None."""
        return maybe_session(await self.db.sessions.find_one({"_id": session_id}))

    @available
    async def get_active_session(self, store_id: int) -> Session | None:
        """The store's open or claimed session, or None."""
        return maybe_session(
            await self.db.sessions.find_one({"store_id": store_id, "active": True})
        )

    @available
    async def list_open_sessions(self, limit: int, after: tuple[str, int] | None) -> list[Session]:
        """The queue, oldest first, after ``(queued_at, id)``."""
        query: dict[str, Any] = {"status": "open"}
        if after:
            query["$or"] = [
                {"queued_at": {"$gt": after[0]}},
                {"queued_at": after[0], "_id": {"$gt": after[1]}},
            ]
        docs = (
            await self.db.sessions.find(query)
            .sort([("queued_at", ASCENDING), ("_id", ASCENDING)])
            .limit(limit)
            .to_list(None)
        )
        return [session_of(d) for d in docs]

    @available
    async def list_admin_sessions(
        self, admin_id: int, limit: int, before: tuple[str, int] | None
    ) -> list[Session]:
        """The admin's claimed sessions, latest activity first."""
        query: dict[str, Any] = {"status": "claimed", "admin_id": admin_id}
        if before:
            query["$or"] = [
                {"activity_at": {"$lt": before[0]}},
                {"activity_at": before[0], "_id": {"$lt": before[1]}},
            ]
        docs = (
            await self.db.sessions.find(query)
            .sort([("activity_at", DESCENDING), ("_id", DESCENDING)])
            .limit(limit)
            .to_list(None)
        )
        return [session_of(d) for d in docs]

    @available
    async def list_store_sessions(
        self, store_id: int, limit: int, before: tuple[str, int] | None
    ) -> list[Session]:
        """The store's sessions, newest first."""
        query: dict[str, Any] = {"store_id": store_id}
        if before:
            query["$or"] = [
                {"created": {"$lt": before[0]}},
                {"created": before[0], "_id": {"$lt": before[1]}},
            ]
        docs = (
            await self.db.sessions.find(query)
            .sort([("created", DESCENDING), ("_id", DESCENDING)])
            .limit(limit)
            .to_list(None)
        )
        return [session_of(d) for d in docs]

    @available
    async def count_open_sessions(self) -> int:
        """How many sessions wait in the queue."""
        return int(await self.db.sessions.count_documents({"status": "open"}))

    # --- state changes: each one transaction ------------------------------
    @available
    async def claim_session(self, session_id: int, admin: Admin, max_sessions: int) -> ClaimResult:
        """Give an open session to ``admin`` (within its limit), or say why not."""

        async def claim(s: Any) -> ClaimResult:
            current = maybe_session(await self.db.sessions.find_one({"_id": session_id}, session=s))
            if (
                current is None
                or current.status is not SessionStatus.OPEN
                or current.admin_id is not None
            ):
                return ClaimResult(why_claim_failed(current, admin.id), current)
            limit = {"active": {"$lt": max_sessions}} if max_sessions > 0 else {}
            counted = await self.db.admins.find_one_and_update(
                {"_id": admin.id, **limit}, {"$inc": {"active": 1}}, session=s
            )
            if counted is None:
                return ClaimResult(why_claim_failed(current, admin.id, limit_hit=True), current)
            now = utc_now_iso()
            doc = await self.db.sessions.find_one_and_update(
                {"_id": session_id, "status": "open", "admin_id": None},
                {
                    "$set": {
                        "status": "claimed",
                        "admin_id": admin.id,
                        "updated": now,
                        "activity_at": now,
                    }
                },
                return_document=ReturnDocument.AFTER,
                session=s,
            )
            if doc is None:  # changed since the read: undo the count with the rest
                raise Refused(ClaimResult(ClaimOutcome.CONFLICT, current))
            session = session_of(doc)
            await self._append_event(
                s,
                "session_claimed",
                session,
                admin.id,
                {"session": session_to_doc(session), "admin": {"id": admin.id, "name": admin.name}},
            )
            _, joined = await self._insert_message(
                s,
                session.id,
                "system",
                None,
                f"{admin.name} joined the chat",
                None,
                event="admin_connected",
                audience=admin.id,
            )
            return ClaimResult(ClaimOutcome.WON, joined)

        return await self.changes.run(claim, key=("session", session_id))

    @available
    async def release_session(self, session_id: int, admin_id: int) -> SessionWrite:
        """Put the holder's session back in the queue."""

        async def release(s: Any) -> SessionWrite:
            now = utc_now_iso()
            return await self._hand_back(
                s,
                session_id,
                admin_id,
                {
                    "$set": {
                        "status": "open",
                        "admin_id": None,
                        "updated": now,
                        "queued_at": now,
                        "activity_at": now,
                    }
                },
                "The session went back to the queue",
                "session_released",
                closed_ok=False,
            )

        return await self.changes.run(release, key=("session", session_id))

    @available
    async def close_session(self, session_id: int, admin_id: int) -> SessionWrite:
        """Close the holder's session."""

        async def close(s: Any) -> SessionWrite:
            now = utc_now_iso()
            return await self._hand_back(
                s,
                session_id,
                admin_id,
                {
                    "$set": {"status": "closed", "updated": now, "activity_at": now},
                    "$unset": {"active": ""},
                },
                "The session was closed",
                "session_closed",
                closed_ok=True,
            )

        return await self.changes.run(close, key=("session", session_id))

    async def _hand_back(
        self,
        s: Any,
        session_id: int,
        admin_id: int,
        update: dict[str, Any],
        text: str,
        kind: str,
        closed_ok: bool,
    ) -> SessionWrite:
        """Release or close, in ``s``: the guarded update, the admin's count, the
        system message and the event."""
        doc = await self.db.sessions.find_one_and_update(
            {"_id": session_id, "status": "claimed", "admin_id": admin_id},
            update,
            return_document=ReturnDocument.AFTER,
            session=s,
        )
        if doc is None:
            current = maybe_session(await self.db.sessions.find_one({"_id": session_id}, session=s))
            return holder_refusal(current, admin_id, closed_ok) or SessionWrite(
                WriteOutcome.FORBIDDEN, current
            )
        await self.db.admins.update_one({"_id": admin_id}, {"$inc": {"active": -1}}, session=s)
        _, session = await self._insert_message(
            s, doc["_id"], "system", None, text, None, event=kind, audience=admin_id
        )
        assert session is not None  # written by its id, in this transaction
        await self._append_event(s, kind, session, admin_id, {"session": session_to_doc(session)})
        return SessionWrite(WriteOutcome.DONE, session)
