"""The lean REST request path (issue 9's claim storm): what it must still do.

Keys are read from storage on every request, on the event loop's thread when
the database answers at once and through the reader threads when it is locked;
a key changed by this process or by another one is refused at once.
"""

from __future__ import annotations

import sqlite3

import pytest

from storage.base import Role
from storage.sqlite import SQLiteStorage
from tests.conftest import make_admin


@pytest.fixture
def sqlite_storage(tmp_path, io_loop):
    backend = SQLiteStorage(str(tmp_path / "auth.sqlite3"))
    io_loop.run_sync(backend.setup)
    yield backend
    io_loop.run_sync(backend.close)


@pytest.mark.gen_test
async def test_a_key_changed_through_this_storage_is_refused_by_the_next_lookup(sqlite_storage):
    admin, key = await sqlite_storage.create_admin("Dana", None)
    assert (await sqlite_storage.authenticate(key)).id == admin.id
    new = await sqlite_storage.rotate_key(Role.ADMIN, admin.id)
    assert await sqlite_storage.authenticate(key) is None
    assert (await sqlite_storage.authenticate(new)).id == admin.id
    assert await sqlite_storage.revoke_key(Role.ADMIN, admin.id)
    assert await sqlite_storage.authenticate(new) is None


@pytest.mark.gen_test
async def test_a_key_changed_by_another_connection_is_refused_by_the_next_lookup(
        sqlite_storage):
    store, key = await sqlite_storage.create_store("Tech", None, "https://x/l.png")
    who = await sqlite_storage.authenticate(key)
    assert (who.role, who.id, who.logo_url) == (Role.STORE, store.id, "https://x/l.png")
    other = sqlite3.connect(sqlite_storage.path, isolation_level=None)
    try:
        other.execute("UPDATE stores SET key_digest = 'x' WHERE id = ?", (store.id,))
    finally:
        other.close()
    assert await sqlite_storage.authenticate(key) is None


class LockedOnTheLoop(SQLiteStorage):
    """A real SQLite storage whose loop-thread read finds the database locked
    (a WAL reader meets SQLITE_BUSY only in rare moments, such as another
    process's recovery, which a test cannot stage reliably)."""

    def _lookup_now(self, digest):
        raise sqlite3.OperationalError("database is locked")


@pytest.mark.gen_test
async def test_a_lookup_that_finds_the_database_locked_is_read_by_a_reader_thread(tmp_path):
    storage = LockedOnTheLoop(str(tmp_path / "locked.sqlite3"))
    await storage.setup()
    try:
        admin, key = await storage.create_admin("Dana", None)
        assert (await storage.authenticate(key)).id == admin.id
        assert await storage.authenticate("0" * 40) is None
    finally:
        await storage.close()


@pytest.mark.gen_test
async def test_a_key_rotated_in_the_server_process_gets_401_on_the_next_request(server, api):
    admin, key = await make_admin(server)
    assert (await api.get("/admin/sessions/open/", key)).status == 200
    await server.storage.rotate_key(Role.ADMIN, admin.id)
    reply = await api.get("/admin/sessions/open/", key)
    assert (reply.status, reply.json) == (401, {"detail": "Invalid token."})
