"""A live server for runs that call it from outside its event loop: a
ChatServer on its own loop in a thread, on a real port (``LiveServer``), with
real keys and sessions in every state (``World``), and its log checked for
tracebacks. tests/handlers/test_fuzz_api.py (requests, hypothesis) and
tests/handlers/test_schemathesis_cli.py (the ``st`` command) run against it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import pytest
import requests
import tornado.testing

from handlers.app import ChatServer


class LiveServer:
    """A ChatServer on its own event loop in a thread, on a real port."""

    def __init__(self, config: dict[str, Any]):
        self.config = config
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="live-server", daemon=True
        )
        self.server: ChatServer | None = None
        self.url = ""

    def call(self, coro: Any, timeout: float = 30.0) -> Any:
        """Run ``coro`` on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> LiveServer:
        self.thread.start()
        self.call(self._start())
        return self

    async def _start(self) -> None:
        # Built on its own loop: the server's queues and tasks belong to it.
        self.server = ChatServer(self.config)
        sock, port = tornado.testing.bind_unused_port()
        await self.server.start([sock])
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.call(self.server.shutdown())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class World:
    """The live server with real keys and sessions in every state, so that the
    ids 1..N that generators try first hit real sessions."""

    def __init__(self, live: LiveServer):
        self.live = live
        self.url = live.url
        self.http = requests.Session()
        storage = live.server.raw_storage
        _, self.admin_key = live.call(storage.create_admin("Dana", "dana@example.com"))
        _, other_admin = live.call(storage.create_admin("Lee", "lee@example.com"))
        _, self.store_key = live.call(
            storage.create_store("Tech Store", "store@example.com", "https://example.com/logo.jpg")
        )
        others = [live.call(storage.create_store(f"Store {i}", None, None))[1] for i in range(3)]
        # 1: claimed by our admin; 2: claimed by another; 3: closed; 4: open.
        # Our own store holds session 5, open.
        for i, (store, admin, close) in enumerate(
            [
                (others[0], self.admin_key, False),
                (others[1], other_admin, False),
                (others[2], self.admin_key, True),
            ]
        ):
            session = self.post("/v1/chat/store/message/", store, {"body": f"hello {i}"})["session"]
            self.post("/v1/chat/admin/session/claim/", admin, {"session_id": session["id"]})
            if close:
                self.post("/v1/chat/admin/session/close/", admin, {"session_id": session["id"]})
        self.post("/v1/chat/store/message/", others[2], {"body": "open again"})
        self.post("/v1/chat/store/message/", self.store_key, {"body": "my own"})

    def post(self, path: str, key: str, body: Any) -> Any:
        reply = self.http.post(self.url + path, json=body, headers=auth(key), timeout=30)
        assert reply.status_code in (200, 201), (path, reply.status_code, reply.text)
        return reply.json()

    def key_for(self, who: str | None) -> str | None:
        return {"admin": self.admin_key, "store": self.store_key}.get(who)


def auth(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Token {key}"} if key else {}


@pytest.fixture(autouse=True)
def server_log(caplog):
    """Captures the server's log at every level: a traceback at any level counts."""
    caplog.set_level(logging.DEBUG)
    return caplog


def assert_no_traceback(caplog) -> None:
    """The server logged no error and no traceback (uncaught exceptions, crashed
    actors, failed writes all log one)."""
    broken = [
        f"{r.name}: {r.getMessage()}"
        for r in caplog.records
        if r.levelno >= logging.ERROR or r.exc_info
    ]
    assert broken == []
