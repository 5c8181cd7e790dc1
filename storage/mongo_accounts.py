"""Account administration on MongoDB: ``MongoAccounts``, a base of ``MongoStorage``.

Listing accounts, and changing a key: ``rotate_key`` / ``revoke_key`` replace the
stored digest and announce the change in ``key_changes`` in one transaction
(``MongoStorage.changes``), so a watcher that sees the announcement finds the
old key already refused, and no key changes without its sockets being told.
Running servers poll ``key_changes_since`` (actors/key_watch.py), which reads
the inserts into ``key_changes`` from a change stream, in commit order: the
changes' ids come from this process's id block, never from a counter written
inside the transaction (``storage/mongo_ids.py``).
"""

from __future__ import annotations

import time
from typing import Any

from pymongo import ASCENDING

from storage.base import Admin, KeyChange, Role, Store, digest_key, new_api_key, revoked_digest
from storage.mongo_txn import available

# Key changes handed out per read: far more than are ever made in a poll.
KEY_CHANGES_PAGE = 1000


class MongoAccounts:
    db: Any  # provided by MongoStorage, as are ``changes``, ``_next_id`` and
    key_changes_follower: Any  # ``InsertFollower`` of ``key_changes``

    @available
    async def list_admins(self) -> list[Admin]:
        docs = await self.db.admins.find({}).sort("_id", ASCENDING).to_list(None)
        return [Admin(d["_id"], d["name"], d.get("email")) for d in docs]

    @available
    async def list_stores(self) -> list[Store]:
        docs = await self.db.stores.find({}).sort("_id", ASCENDING).to_list(None)
        return [Store(d["_id"], d["name"], d.get("email"), d.get("logo_url")) for d in docs]

    @available
    async def get_store(self, store_id: int) -> Store | None:
        d = await self.db.stores.find_one({"_id": store_id})
        return Store(d["_id"], d["name"], d.get("email"), d.get("logo_url")) if d else None

    @available
    async def rotate_key(self, role: Role, account_id: int) -> str | None:
        key = new_api_key()
        changed = await self._change_key(role, account_id, digest_key(key), "rotated")
        return key if changed else None

    @available
    async def revoke_key(self, role: Role, account_id: int) -> bool:
        return await self._change_key(role, account_id, revoked_digest(), "revoked")

    async def _change_key(self, role: Role, account_id: int, digest: str, kind: str) -> bool:
        collection = self.db.admins if role is Role.ADMIN else self.db.stores

        async def change(s: Any) -> bool:
            result = await collection.update_one({"_id": account_id},
                                                 {"$set": {"key_digest": digest}}, session=s)
            if result.matched_count != 1:
                return False
            await self.db.key_changes.insert_one({
                "_id": await self._next_id("key_changes"), "role": role.value,
                "account_id": account_id, "kind": kind, "created": time.time()}, session=s)
            return True

        return await self.changes.run(change)

    @available
    async def key_changes_head(self) -> Any:
        return await self.key_changes_follower.head()

    @available
    async def key_changes_since(self, after: Any) -> list[KeyChange]:
        return [KeyChange(d["_id"], Role(d["role"]), d["account_id"], d["kind"], position)
                for _, d, position in await self.key_changes_follower.read(after,
                                                                           KEY_CHANGES_PAGE)]
