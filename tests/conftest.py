"""Fixtures: a real ChatServer on a real port over a real SQLite file."""

from __future__ import annotations

import os
import sys
from typing import Any

import pytest
import tornado.testing

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from handlers.app import ChatServer
from settings import load_config
from settings import merge as _merge
from tests.helpers import Api


def pytest_xdist_make_scheduler(config, log):
    """Runs in xdist's controller before tests are handed out: ``make test``'s
    ``--dist loadgroup`` uses the groups of tests/xdist_groups.py (a file per
    worker, the real-Mongo tier in two groups)."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from tests.xdist_groups import GroupScheduling

    # Hand groups out in the order pytest_collection_modifyitems gives them
    # (longest first), not re-sorted by their number of tests.
    config.option.loadscopereorder = False
    return GroupScheduling(config, log)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """Runs in each worker once the tests are collected; xdist hands out groups
    in this order. The longest groups go first (tests/xdist_groups.py's
    LONG_GROUPS: the real-Mongo tier's two, then the slowest files), so they
    start at once instead of finishing last."""
    # In a worker xdist sets ``dist`` to "no" and keeps ``loadgroup`` (a bool).
    if getattr(config.option, "loadgroup", False) or config.getvalue("dist") == "loadgroup":
        from tests.xdist_groups import group_of, start_rank

        items.sort(key=lambda item: start_rank(group_of(item.nodeid)))  # stable


@pytest.fixture
def overrides() -> dict[str, Any]:
    """Settings a test module or test changes (override this fixture)."""
    return {}


@pytest.fixture
def config(tmp_path, overrides) -> dict[str, Any]:
    config = load_config(
        environ={},
        overrides={
            "storage": {"url": f"sqlite:///{tmp_path}/chat.sqlite3"},
            "server": {"host": "127.0.0.1"},
            "events": {"poll_interval_secs": 0.01},
        },
    )
    _merge(config, overrides)
    return config


@pytest.fixture
def server(io_loop, config):
    """A started server; ``server.url`` is its base URL."""
    srv = ChatServer(config)
    sock, port = tornado.testing.bind_unused_port()
    io_loop.run_sync(lambda: srv.start([sock]))
    srv.url = f"http://127.0.0.1:{port}"
    srv.ws_url = f"ws://127.0.0.1:{port}"
    yield srv
    io_loop.run_sync(srv.shutdown, timeout=30)


@pytest.fixture
def db_url(tmp_path) -> str:
    """A SQLite file for server processes started by a test."""
    return f"sqlite:///{tmp_path}/shared.sqlite3"


@pytest.fixture
def processes():
    """Server processes a test starts; SIGKILLed after it, whatever happened."""
    started = []
    yield started
    for proc in started:
        proc.kill()


@pytest.fixture
def api(server):
    client = Api(server.url + "/v1/chat")
    yield client
    client.close()


@pytest.fixture(scope="session")
def wire_server(tmp_path_factory):
    """The real-Mongo tier's server, one per test process (tests/wire_server.py):
    CHAT_TEST_MONGO_URL, else a SecantusDB started here; skipped with the
    reason when neither is available.

    Under xdist each worker that runs a tier test starts its own SecantusDB
    (a second or two, on its own port and data folder), rather than sharing
    one across workers through a lock file: every test takes a database of
    its own anyway, a failpoint is server-wide state that one worker's test
    would set under another's, and the server slows down the longer it lives."""
    from tests.wire_server import WireServer, secantus_command, start_secantus

    url = os.environ.get("CHAT_TEST_MONGO_URL")
    if url:
        yield WireServer(url)
        return
    if secantus_command() is None:
        pytest.skip(
            "no MongoDB-compatible server: secantusdb (Linux x86_64, CPython "
            "3.11-3.13) is not installed and CHAT_TEST_MONGO_URL is not set"
        )
    server = start_secantus(str(tmp_path_factory.mktemp("secantus")))
    yield server
    server.stop()
