"""Admin presence on MongoDB: ``MongoPresence``, a part of ``MongoStorage``.

Each node counts its admins' sockets in ``admin_presence`` (one document per
node and admin, refreshed by a heartbeat; a node no longer refreshing is dead
and its counts drop to 0); an admin's announced status lives in
``admin_status``, changed by a conditional update with its ``presence`` event
in one change, so of several processes one announces. The rules are in
storage/workflow.py; the changes' helpers (``_wf_change``, ``_wf_system_message``;
events go through the feed's ``_append_event``) are here, used by the workflow's other parts
(storage/mongo_requeue.py, storage/mongo_workflow.py).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pymongo import ASCENDING
from pymongo.errors import DuplicateKeyError

from storage.mongo_docs import maybe_session
from storage.mongo_messages import MongoMessages
from storage.mongo_txn import available_but_duplicates as _available
from storage.records import Admin, Session
from storage.workflow import (
    OFFLINE,
    AdminPresence,
    effective_presence,
)

T = TypeVar("T")


class MongoPresence(MongoMessages):
    """Presence of admins across nodes, and the helpers of the workflow's changes."""

    # --- the adapters the workflow's changes use ---------------------------------
    async def _wf_change(self, change: Callable[[Any], Awaitable[T]], key: Any = None) -> T:
        """Run ``change(s)`` as one change: one transaction, retried as a whole
        (one at a time per ``key`` in this process)."""
        return await self.changes.run(change, key)

    async def _wf_system_message(
        self, s: Any, session: Session, body: str, event: str, audience: int | None
    ) -> Session:
        _, stored = await self._insert_message(
            s, session.id, "system", None, body, None, event=event, audience=audience
        )
        assert stored is not None  # written by its id, in this transaction
        return stored

    async def _find_session(self, session_id: int, s: Any) -> Session | None:
        return maybe_session(await self.db.sessions.find_one({"_id": session_id}, session=s))

    async def _find_admin(self, admin_id: int, s: Any) -> Admin | None:
        doc = await self.db.admins.find_one({"_id": admin_id}, session=s)
        return Admin(doc["_id"], doc["name"], doc.get("email")) if doc else None

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
            await self._append_event(
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


class _NoSession:
    """Where a feed event needs a session but is about an admin: ids 0."""

    id = 0
    store_id = 0
