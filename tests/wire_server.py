"""The real-Mongo tier's server: a MongoDB-compatible wire-protocol server.

By default a SecantusDB (PyPI ``secantusdb``, test-only) started for the test
run on a free port over a fresh data directory; ``CHAT_TEST_MONGO_URL`` points
the tier at another server instead (a real mongod replica set). SecantusDB is
a single-node replica set that speaks the wire protocol: what passes here is
the driver path, transactions, change streams and failpoints, not MongoDB's
own replication (no rollback after a failover of a multi-node set).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import uuid
from typing import Any

import pymongo
import pytest

from tests.helpers import free_port

WIRE_SERVER = "a MongoDB-compatible wire-protocol server (SecantusDB)"
# Driver options every URL of the tier gets. The server is checked by polling
# every 0.5 s (the driver's minimum) instead of the streaming protocol, so a
# "not primary" error is followed by a fresh check within 0.5 s; the wire
# server's streamed check otherwise lets server selection wait ~5 s.
DRIVER_OPTIONS = {"heartbeatFrequencyMS": "500", "serverMonitoringMode": "poll"}
START_TIMEOUT_SECS = 20.0


class WireServer:
    """Where the tier's databases live; ``url_for`` names a fresh one."""

    def __init__(
        self, base_url: str, proc: subprocess.Popen | None = None, log_path: str | None = None
    ):
        parts = urllib.parse.urlsplit(base_url)
        self.scheme, self.hosts = parts.scheme, parts.netloc
        self.query = dict(urllib.parse.parse_qsl(parts.query))
        self.proc = proc
        self.log_path = log_path

    def url_for(self, db: str | None = None, app_name: str | None = None, **options: str) -> str:
        """A URL for database ``db`` (a fresh name when None); ``app_name`` is
        what a failpoint's ``appName`` matches to hit only that client."""
        query = {**self.query, **DRIVER_OPTIONS, **options}
        if app_name:
            query["appName"] = app_name
        db = db or f"chat_test_{uuid.uuid4().hex[:10]}"
        return f"{self.scheme}://{self.hosts}/{db}?{urllib.parse.urlencode(query)}"

    def control_client(self) -> pymongo.AsyncMongoClient:
        """A client for the tests' own commands (failpoints, step-down, checks)."""
        return pymongo.AsyncMongoClient(
            self.url_for("admin", app_name="chat-tests"),
            serverSelectionTimeoutMS=5000,
            w="majority",
        )

    async def require_test_commands(self, client: pymongo.AsyncMongoClient) -> None:
        """Skip the test unless the server takes failpoints (test commands on)."""
        try:
            await client.admin.command({"configureFailPoint": "failCommand", "mode": "off"})
        except pymongo.errors.OperationFailure as exc:
            pytest.skip(
                f"the server refuses configureFailPoint ({exc.code}): start it "
                "with enableTestCommands=1"
            )

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def secantus_command() -> str | None:
    """The ``secantusd-py`` launcher beside this Python, or on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "secantusd-py")
    return beside if os.path.exists(beside) else shutil.which("secantusd-py")


def start_secantus(data_dir: str, *extra_args: str) -> WireServer:
    """Start SecantusDB with test commands on a free port; wait until it answers."""
    command = secantus_command()
    if command is None:
        raise RuntimeError("secantusd-py is not installed (pip install secantusdb)")
    port = free_port()
    log_path = os.path.join(data_dir, "secantusd.log")
    with open(log_path, "ab") as log:  # the child keeps its own copy
        proc = subprocess.Popen(
            [
                command,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--storage-path",
                os.path.join(data_dir, "data"),
                "--enable-test-commands",
                "--log-level",
                "WARNING",
                *extra_args,
            ],
            stdout=log,
            stderr=log,
        )
    server = WireServer(f"mongodb://127.0.0.1:{port}", proc, log_path)
    deadline = time.monotonic() + START_TIMEOUT_SECS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"secantusd-py exited with {proc.returncode}; see {log_path}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            with pymongo.MongoClient[dict[str, Any]](
                server.url_for("admin"), serverSelectionTimeoutMS=2000
            ) as client:
                client.admin.command("ping")
            return server
        except (OSError, pymongo.errors.PyMongoError):
            time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"secantusd-py did not answer within {START_TIMEOUT_SECS}s")
