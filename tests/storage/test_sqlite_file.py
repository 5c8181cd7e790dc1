"""The SQLite backend's database file: made once, at setup, and never again.

A connection opened after start (a reader thread's, the checkpointer's) must
not make a new, empty database where the file was: a server serving that
would look healthy with every account and session gone."""

from __future__ import annotations

import os

import pytest

from storage.errors import StorageUnavailable
from storage.sqlite import SQLiteStorage
from tests.helpers import Api


@pytest.mark.gen_test(timeout=30)
async def test_a_missing_database_file_is_an_outage_not_a_new_empty_database(tmp_path):
    path = str(tmp_path / "chat.sqlite3")
    storage = SQLiteStorage(path)
    await storage.setup()
    try:
        # No reader thread has a connection yet: the first read opens one.
        os.rename(path, path + ".away")
        with pytest.raises(StorageUnavailable):
            await storage.count_accounts()
        assert not os.path.exists(path)
    finally:
        await storage.close()


@pytest.mark.gen_test(timeout=30)
async def test_a_server_whose_database_file_went_missing_is_unready(server, config):
    path = config["storage"]["url"][len("sqlite:///") :]
    os.rename(path, path + ".away")
    api = Api(server.url)
    try:
        assert (await api.get("/readyz")).status == 503
        assert not os.path.exists(path)
    finally:
        os.rename(path + ".away", path)
    assert (await api.get("/readyz")).status == 200
    api.close()
