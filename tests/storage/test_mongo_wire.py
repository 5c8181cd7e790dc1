"""MongoStorage against the wire server itself: where a server falls short
of the contract (no transactions) and a known driver-level race."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from storage.mongo import MongoStorage
from tests.helpers import ROOT, free_port
from tests.wire_server import start_secantus


def test_a_standalone_server_is_refused_at_start_with_one_line(wire_server, tmp_path):
    if wire_server.proc is None:
        pytest.skip("CHAT_TEST_MONGO_URL is set: no local wire server to start standalone")
    standalone = start_secantus(str(tmp_path), "--standalone")
    try:
        result = subprocess.run(
            [sys.executable, "server.py"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            env={
                **os.environ,
                "CHAT_PORT": str(free_port()),
                "CHAT_STORAGE_URL": standalone.url_for("chat"),
            },
        )
    finally:
        standalone.stop()
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "server.py: MongoDB at the storage URL is a standalone server; the chat needs a "
        "replica set for transactions (a single-node one will do: start mongod with "
        "--replSet rs0 and run rs.initiate() once)"
    ]


@pytest.mark.gen_test(timeout=30)
async def test_accounts_created_at_once_on_a_fresh_database_get_distinct_ids(wire_server):
    # Before setup the id counters do not exist: the first-time upserts race,
    # and the wire server can answer one of them with no document.
    storage = MongoStorage.from_url(wire_server.url_for())
    try:
        admins = await asyncio.gather(*[storage.create_admin(f"A{i}", None) for i in range(30)])
        ids = [admin.id for admin, _key in admins]
        assert len(set(ids)) == 30 and all(isinstance(i, int) and i > 0 for i in ids)
    finally:
        await storage.client.drop_database(storage.db.name)
        await storage.close()
