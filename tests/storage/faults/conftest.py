"""Fixtures of the Mongo fault tests (tests/storage/faults/test_mongo_faults.py and
tests/storage/faults/test_workflow_mongo_faults.py): the client name a failpoint
aims at, the control client that sets failpoints, the app's settings."""

from __future__ import annotations

import uuid

import pymongo.common
import pytest


@pytest.fixture
def app_name() -> str:
    return f"chat-fault-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def fast_recovery(monkeypatch):
    # After a "not primary" error the driver re-checks the server at once but
    # no sooner than this after its last check (0.5 s): shortened so that
    # a hundred faults fit in seconds. The recovery path itself is unchanged.
    monkeypatch.setattr(pymongo.common, "MIN_HEARTBEAT_INTERVAL", 0.05)


@pytest.fixture
def no_key_memory(monkeypatch):
    # Every request looks its key up (storage/mongo_keys.py remembers keys
    # once the key-change stream is caught up): the steps stay the same
    # commands whenever the case runs.
    monkeypatch.setattr("storage.mongo_keys.KeyCache.get", lambda self, digest: None)


@pytest.fixture
def overrides(wire_server, app_name, fast_recovery, no_key_memory):
    # The feed polls rarely (its change stream wakes it), so that its reads
    # seldom take a "find" fault meant for the request.
    return {
        "storage": {"url": wire_server.url_for(app_name=app_name), "mongo_timeout_ms": 1000},
        "events": {"poll_interval_secs": 5.0},
    }


@pytest.fixture
def control(wire_server, io_loop):
    client = wire_server.control_client()
    io_loop.run_sync(lambda: wire_server.require_test_commands(client))
    yield client
    io_loop.run_sync(
        lambda: client.admin.command({"configureFailPoint": "failCommand", "mode": "off"})
    )
    io_loop.run_sync(client.close)
