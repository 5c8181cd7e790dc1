"""Fixtures of the handler tests run against a live server in a thread
(tests/live_server.py): test_fuzz_api.py and test_schemathesis_cli.py."""

from __future__ import annotations

import pytest

from settings import load_config
from tests.live_server import LiveServer, World


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """One server for the module (its tests only add data), as conftest's ``config``."""
    config = load_config(
        environ={},
        overrides={
            "storage": {"url": f"sqlite:///{tmp_path_factory.mktemp('fuzz')}/chat.sqlite3"},
            "server": {"host": "127.0.0.1"},
            "events": {"poll_interval_secs": 0.01},
        },
    )
    live = LiveServer(config).start()
    world = None
    try:
        world = World(live)
        yield world
    finally:
        if world is not None:
            world.http.close()
        live.stop()
