"""Account administration on MongoDB: ``MongoAccounts``, a base of ``MongoStorage``.

Listing accounts, and changing a key: ``rotate_key`` / ``revoke_key`` replace the
stored digest and announce the change in ``key_changes`` in one transaction
(``MongoStorage.changes``), so a watcher that sees the announcement finds the
old key already refused, and no key changes without its sockets being told.
Running servers poll ``key_changes_since`` (actors/key_watch.py).
"""

from __future__ import annotations

import time
from typing import Any

from pymongo import ASCENDING

from storage.base import Admin, KeyChange, Role, Store, digest_key, new_api_key, revoked_digest
from storage.mongo_txn import available, read_numbered

# Ids come from a counter, so a later id can become visible before an earlier
# one; a reader waits this long for the hole to fill, as the event feed does.
KEY_CHANGE_GAP_WAIT_SECS = 2.0


class MongoAccounts:
    db: Any  # provided by MongoStorage, as are ``changes`` and ``_next_id``

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
                "_id": await self._next_id("key_changes", s), "role": role.value,
                "account_id": account_id, "kind": kind, "created": time.time()}, session=s)
            return True

        return await self.changes.run(change)

    @available
    async def last_key_change_id(self) -> int:
        doc = await self.db.counters.find_one({"_id": "key_changes"})
        return doc["value"] if doc else 0

    @available
    async def key_changes_since(self, after_id: int) -> list[KeyChange]:
        docs = await read_numbered(self.db.key_changes, after_id, None,
                                   KEY_CHANGE_GAP_WAIT_SECS)
        return [KeyChange(d["_id"], Role(d["role"]), d["account_id"], d["kind"]) for d in docs]
