"""The SQLite backend's accounts: admins and stores, their keys, and the
key changes every process watches."""

from __future__ import annotations

import sqlite3

from storage import sqlite_schema as schema
from storage.errors import StorageUnavailable
from storage.keys import digest_key, new_api_key, revoked_digest
from storage.records import (
    Admin,
    KeyChange,
    Principal,
    Role,
    Store,
    utc_now_iso,
)
from storage.sqlite_connection import SQLiteConnection


class SQLiteAccounts(SQLiteConnection):
    """Accounts and API keys on SQLite (``ChatStorage``'s account methods)."""

    # --- accounts -------------------------------------------------------
    async def create_admin(self, name: str, email: str | None) -> tuple[Admin, str]:
        """``ChatStorage.create_admin``: one INSERT; the key is stored as its digest."""
        key = new_api_key()

        def write(conn: sqlite3.Connection) -> Admin:
            cur = conn.execute(
                "INSERT INTO admins (name, email, key_digest, created) VALUES (?, ?, ?, ?)",
                (name, email, digest_key(key), utc_now_iso()),
            )
            return Admin(schema.inserted_id(cur), name, email)

        return await self._write(write), key

    async def create_store(
        self, name: str, email: str | None, logo_url: str | None
    ) -> tuple[Store, str]:
        """``ChatStorage.create_store``: one INSERT; the key is stored as its digest."""
        key = new_api_key()

        def write(conn: sqlite3.Connection) -> Store:
            cur = conn.execute(
                "INSERT INTO stores (name, email, logo_url, key_digest, created)"
                " VALUES (?, ?, ?, ?, ?)",
                (name, email, logo_url, digest_key(key), utc_now_iso()),
            )
            return Store(schema.inserted_id(cur), name, email, logo_url)

        return await self._write(write), key

    async def authenticate(self, key: str) -> Principal | None:
        """``ChatStorage.authenticate``: read on the loop, or by a reader thread while the
        database is locked."""
        # Read every time, not cached: rotate-key and revoke-key (another
        # process) must take effect at once (API.md).
        if self._writer is None:
            raise StorageUnavailable("storage is closed")
        digest = digest_key(key)
        try:
            return _principal_of(self._lookup_now(digest))
        except sqlite3.OperationalError:
            # Locked (recovery, another process's exclusive lock) or failing:
            # the reader threads wait out the busy timeout and report outages.
            return _principal_of(await self._read(lambda c: _key_owner_row(c, digest)))

    def _lookup_now(self, digest: str) -> sqlite3.Row | None:
        """The key's owner, read on the calling (event loop) thread.

        One indexed point read costs less than the hand-off to a reader thread
        and back (every request and auth frame makes one). It never waits: its
        connection has no busy timeout, so a locked database raises at once
        and the caller falls back to the reader threads."""
        return _key_owner_row(self._loop_connection(), digest)

    async def get_store(self, store_id: int) -> Store | None:
        """``ChatStorage.get_store``: one point read."""
        row = await self._read(
            lambda c: c.execute(
                "SELECT id, name, email, logo_url FROM stores WHERE id = ?", (store_id,)
            ).fetchone()
        )
        return Store(row["id"], row["name"], row["email"], row["logo_url"]) if row else None

    async def get_admin(self, admin_id: int) -> Admin | None:
        """``ChatStorage.get_admin``: one point read."""
        row = await self._read(
            lambda c: c.execute(
                "SELECT id, name, email FROM admins WHERE id = ?", (admin_id,)
            ).fetchone()
        )
        return Admin(row["id"], row["name"], row["email"]) if row else None

    async def count_accounts(self) -> int:
        """``ChatStorage.count_accounts``: one statement counting both tables."""
        return await self._read(
            lambda c: c.execute(
                "SELECT (SELECT COUNT(*) FROM admins) + (SELECT COUNT(*) FROM stores)"
            ).fetchone()[0]
        )

    # --- account administration -----------------------------------------
    async def list_admins(self) -> list[Admin]:
        """Every admin, by id (the account commands)."""
        return await self._read(
            lambda c: [
                Admin(r["id"], r["name"], r["email"])
                for r in c.execute("SELECT id, name, email FROM admins ORDER BY id")
            ]
        )

    async def list_stores(self) -> list[Store]:
        """Every store, by id (the account commands)."""
        return await self._read(
            lambda c: [
                Store(r["id"], r["name"], r["email"], r["logo_url"])
                for r in c.execute("SELECT id, name, email, logo_url FROM stores ORDER BY id")
            ]
        )

    async def rotate_key(self, role: Role, account_id: int) -> str | None:
        """``ChatStorage.rotate_key``: a new key, its digest and a ``key_changes`` row in one
        write."""
        key = new_api_key()
        changed = await self._change_key(role, account_id, digest_key(key), "rotated")
        return key if changed else None

    async def revoke_key(self, role: Role, account_id: int) -> bool:
        """``ChatStorage.revoke_key``: a digest no key has, and a ``key_changes`` row, in one
        write."""
        return await self._change_key(role, account_id, revoked_digest(), "revoked")

    async def _change_key(self, role: Role, account_id: int, digest: str, kind: str) -> bool:
        table = "admins" if role is Role.ADMIN else "stores"

        def write(conn: sqlite3.Connection) -> bool:
            # The new digest and its announcement in one transaction: a watcher
            # that sees the change finds the old key already refused.
            cur = conn.execute(
                f"UPDATE {table} SET key_digest = ? WHERE id = ?", (digest, account_id)
            )
            if cur.rowcount != 1:
                return False
            conn.execute(
                "INSERT INTO key_changes (role, account_id, kind, created) VALUES (?, ?, ?, ?)",
                (role.value, account_id, kind, utc_now_iso()),
            )
            return True

        return await self._write(write)

    async def key_changes_head(self) -> int:
        """``ChatStorage.key_changes_head``: the newest ``key_changes`` id (0: none)."""
        return await self._read(
            lambda c: c.execute("SELECT COALESCE(MAX(id), 0) FROM key_changes").fetchone()[0]
        )

    async def key_changes_since(self, after_id: int) -> list[KeyChange]:
        """``ChatStorage.key_changes_since``: the rows after ``after_id``, in id (commit) order."""
        return await self._read(
            lambda c: [
                KeyChange(r["id"], Role(r["role"]), r["account_id"], r["kind"], r["id"])
                for r in c.execute(
                    "SELECT * FROM key_changes WHERE id > ? ORDER BY id", (after_id,)
                )
            ]
        )


def _key_owner_row(conn: sqlite3.Connection, digest: str) -> sqlite3.Row | None:
    """The admin or store whose key has ``digest`` (one statement, one snapshot;
    fetchall ends the read at once, so no snapshot is held open)."""
    rows = conn.execute(
        "SELECT 'admin' AS role, id, name, email, NULL AS logo_url FROM admins"
        " WHERE key_digest = ?1 UNION ALL"
        " SELECT 'store', id, name, email, logo_url FROM stores WHERE key_digest = ?1",
        (digest,),
    ).fetchall()
    return rows[0] if rows else None


def _principal_of(row: sqlite3.Row | None) -> Principal | None:
    if row is None:
        return None
    return Principal(Role(row["role"]), row["id"], row["name"], row["email"], row["logo_url"])
