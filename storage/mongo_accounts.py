"""Accounts on MongoDB: ``MongoAccounts``, a part of ``MongoStorage``.

Creating and listing accounts, authenticating a key (remembered by this
process while it follows key changes: storage/mongo_keys.py), and changing a
key: ``rotate_key`` / ``revoke_key`` replace the
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

from storage.keys import digest_key, new_api_key, revoked_digest
from storage.mongo_base import MongoBase
from storage.mongo_txn import available
from storage.records import Admin, KeyChange, Principal, Role, Store, utc_now_iso

# Key changes handed out per read: far more than are ever made in a poll.
KEY_CHANGES_PAGE = 1000


class MongoAccounts(MongoBase):
    """Admins and stores, and their keys."""

    @available
    async def create_admin(self, name: str, email: str | None) -> tuple[Admin, str]:
        """A new admin and its key (shown once)."""
        key = new_api_key()
        admin = Admin(await self._next_id("admins"), name, email)
        await self.db.admins.insert_one(
            {
                "_id": admin.id,
                "name": name,
                "email": email,
                "key_digest": digest_key(key),
                "active": 0,
                "created": utc_now_iso(),
            }
        )
        return admin, key

    @available
    async def create_store(
        self, name: str, email: str | None, logo_url: str | None
    ) -> tuple[Store, str]:
        """A new store and its key (shown once)."""
        key = new_api_key()
        store = Store(await self._next_id("stores"), name, email, logo_url)
        await self.db.stores.insert_one(
            {
                "_id": store.id,
                "name": name,
                "email": email,
                "logo_url": logo_url,
                "key_digest": digest_key(key),
                "created": utc_now_iso(),
            }
        )
        return store, key

    @available
    async def authenticate(self, key: str) -> Principal | None:
        """The owner of ``key``, or None. Runs on every request."""
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
            return Principal(
                Role.STORE, doc["_id"], doc["name"], doc.get("email"), doc.get("logo_url")
            )
        doc = await self.db.admins.find_one({"key_digest": digest})
        if doc:
            return Principal(Role.ADMIN, doc["_id"], doc["name"], doc.get("email"))
        return None

    @available
    async def get_admin(self, admin_id: int) -> Admin | None:
        """The admin, or None."""
        doc = await self.db.admins.find_one({"_id": admin_id})
        return Admin(doc["_id"], doc["name"], doc.get("email")) if doc else None

    @available
    async def count_accounts(self) -> int:
        """How many admins and stores there are."""
        return int(
            await self.db.admins.count_documents({}) + await self.db.stores.count_documents({})
        )

    @available
    async def list_admins(self) -> list[Admin]:
        """Every admin, by id."""
        docs = await self.db.admins.find({}).sort("_id", ASCENDING).to_list(None)
        return [Admin(d["_id"], d["name"], d.get("email")) for d in docs]

    @available
    async def list_stores(self) -> list[Store]:
        """Every store, by id."""
        docs = await self.db.stores.find({}).sort("_id", ASCENDING).to_list(None)
        return [Store(d["_id"], d["name"], d.get("email"), d.get("logo_url")) for d in docs]

    @available
    async def get_store(self, store_id: int) -> Store | None:
        """The store, or None."""
        d = await self.db.stores.find_one({"_id": store_id})
        return Store(d["_id"], d["name"], d.get("email"), d.get("logo_url")) if d else None

    @available
    async def rotate_key(self, role: Role, account_id: int) -> str | None:
        """A new key for the account (the old one refused from now on), or None."""
        key = new_api_key()
        changed = await self._change_key(role, account_id, digest_key(key), "rotated")
        return key if changed else None

    @available
    async def revoke_key(self, role: Role, account_id: int) -> bool:
        """Refuse the account's key from now on; False for no such account."""
        return await self._change_key(role, account_id, revoked_digest(), "revoked")

    async def _change_key(self, role: Role, account_id: int, digest: str, kind: str) -> bool:
        collection = self.db.admins if role is Role.ADMIN else self.db.stores

        async def change(s: Any) -> bool:
            result = await collection.update_one(
                {"_id": account_id}, {"$set": {"key_digest": digest}}, session=s
            )
            if result.matched_count != 1:
                return False
            await self.db.key_changes.insert_one(
                {
                    "_id": await self._next_id("key_changes"),
                    "role": role.value,
                    "account_id": account_id,
                    "kind": kind,
                    "created": time.time(),
                },
                session=s,
            )
            return True

        return await self.changes.run(change)

    @available
    async def key_changes_head(self) -> Any:
        """The position of "now" in the key changes."""
        return await self.key_changes_follower.head()

    @available
    async def key_changes_since(self, after: Any) -> list[KeyChange]:
        """Key changes after ``after``, in commit order."""
        return [
            KeyChange(d["_id"], Role(d["role"]), d["account_id"], d["kind"], position)
            for _, d, position in await self.key_changes_follower.read(after, KEY_CHANGES_PAGE)
        ]
