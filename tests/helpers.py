"""Test clients over real sockets: REST (tornado's HTTP client), WebSocket, and
server processes started with the real command line."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import msgpack
import tornado.httpclient
import tornado.websocket

if TYPE_CHECKING:  # the helpers take a server the fixtures started
    from handlers.app import ChatServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Api:
    """A REST client for one server: ``await api.post(path, key, body)``."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.client = tornado.httpclient.AsyncHTTPClient(force_instance=True, max_clients=300)

    async def call(
        self,
        method: str,
        path: str,
        key: str | None = None,
        body: Any = None,
        raw: bytes | str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        headers = dict(headers or {})
        if key is not None:
            headers["Authorization"] = f"Token {key}"
        if body is not None:
            raw = json.dumps(body)
        if raw is None and method in ("POST", "PUT", "PATCH"):
            raw = b""
        response = await self.client.fetch(
            self.base_url + path,
            method=method,
            headers=headers,
            body=raw,
            raise_error=False,
            request_timeout=60,
            allow_nonstandard_methods=True,
        )
        return Reply(response)

    async def get(self, path: str, key: str | None = None, **kw: Any) -> Reply:
        return await self.call("GET", path, key, **kw)

    async def post(self, path: str, key: str | None = None, body: Any = None, **kw: Any) -> Reply:
        return await self.call("POST", path, key, body, **kw)

    def close(self) -> None:
        self.client.close()


class Reply:
    def __init__(self, response: tornado.httpclient.HTTPResponse):
        self.status = response.code
        self.headers = response.headers
        text = response.body.decode() if response.body else ""
        try:
            self.json = json.loads(text) if text else None
        except ValueError:
            self.json = text

    def __repr__(self) -> str:
        return f"<Reply {self.status} {self.json!r}>"


class Socket:
    """A WebSocket client speaking ``json`` or ``msgpack`` frames."""

    def __init__(self, conn: tornado.websocket.WebSocketClientConnection, protocol: str):
        self.conn = conn
        self.protocol = protocol

    @classmethod
    async def connect(
        cls,
        url: str,
        key: str | None = None,
        protocol: str = "json",
        origin: str | None = None,
        **kw: Any,
    ) -> Socket:
        headers = {}
        if key is not None:
            headers["Authorization"] = f"Token {key}"
        if origin is not None:
            headers["Origin"] = origin
        request = tornado.httpclient.HTTPRequest(url, headers=headers)
        conn = await tornado.websocket.websocket_connect(request, subprotocols=[protocol], **kw)
        conn.protocol.set_nodelay(True)  # small frames, each awaited: no Nagle delay
        return cls(conn, protocol)

    async def send(self, frame: dict[str, Any]) -> None:
        if self.protocol == "msgpack":
            await self.conn.write_message(msgpack.packb(frame), binary=True)
        else:
            await self.conn.write_message(json.dumps(frame))

    async def send_raw(self, data: str | bytes) -> None:
        await self.conn.write_message(data, binary=isinstance(data, bytes))

    async def recv(self, timeout: float = 5.0) -> dict[str, Any] | None:
        """The next frame, or None once the socket is closed."""
        raw = await asyncio.wait_for(self.conn.read_message(), timeout)
        if raw is None:
            return None
        if isinstance(raw, bytes):
            return msgpack.unpackb(raw, raw=False)
        return json.loads(raw)

    async def recv_type(self, kind: str, timeout: float = 5.0) -> dict[str, Any]:
        """Skip frames until one of type ``kind`` arrives."""
        deadline = time.monotonic() + timeout
        while True:
            frame = await self.recv(max(0.01, deadline - time.monotonic()))
            assert frame is not None, f"socket closed while waiting for {kind}"
            if frame["type"] == kind:
                return frame

    async def expect_silence(self, seconds: float = 0.3) -> list[dict[str, Any]]:
        """Frames that arrive within ``seconds`` (tests assert this is empty)."""
        frames = []
        try:
            while True:
                frame = await self.recv(seconds)
                if frame is None:
                    break
                frames.append(frame)
        except TimeoutError:
            pass
        return frames

    async def request(
        self, frame: dict[str, Any], answer: str = "ack", timeout: float = 5.0
    ) -> dict[str, Any]:
        """Send a frame with a fresh ``ref`` and wait for its answer or error."""
        ref = frame.setdefault("ref", f"r{time.monotonic_ns()}")
        await self.send(frame)
        deadline = time.monotonic() + timeout
        while True:
            reply = await self.recv(max(0.01, deadline - time.monotonic()))
            assert reply is not None, "socket closed while waiting for an answer"
            if reply.get("ref") == ref and reply["type"] in (answer, "error"):
                return reply

    def close(self) -> None:
        self.conn.close()

    @property
    def close_code(self) -> int | None:
        return self.conn.close_code


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``python server.py`` as a real process, on its own port."""

    def __init__(
        self,
        storage_url: str,
        port: int | None = None,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
        config_path: str | None = None,
        ready_port: int | None = None,
    ):
        self.port = port or free_port()
        self.ready_port = ready_port or self.port  # where /healthz answers
        self.env = {
            **os.environ,
            "CHAT_STORAGE_URL": storage_url,
            "CHAT_PORT": str(self.port),
            "CHAT_HOST": "127.0.0.1",
            **(env or {}),
        }
        self.env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        if config_path:
            self.env["CHAT_CONFIG"] = config_path
        self.args = args or []
        self.proc: subprocess.Popen | None = None
        self.log_path = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, log_path: str | None = None) -> ServerProcess:
        self.log_path = log_path
        # The child keeps its own copy of the log file; ours closes at once.
        with contextlib.ExitStack() as files:
            out = files.enter_context(open(log_path, "ab")) if log_path else subprocess.DEVNULL
            self.proc = subprocess.Popen(
                [sys.executable, "server.py", *self.args],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=out,
            )
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.ready_port), timeout=0.2) as s:
                    s.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
                    if b" 200 " in s.recv(100):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("server did not become ready")

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)


def run_cli(*args: str, env: dict[str, str] | None = None) -> str:
    """Run ``python server.py ARGS`` to completion; return its stdout."""
    result = subprocess.run(
        [sys.executable, "server.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )
    assert result.returncode == 0, (args, result.returncode, result.stderr)
    return result.stdout


def copy_database(template_url: str, folder: str) -> str:
    """A copy, in ``folder``, of the SQLite database at ``template_url`` (with
    its WAL, if one was left); the copy's URL. Accounts made once by the CLI
    then serve each test a database of its own without running the CLI again."""
    template = template_url.removeprefix("sqlite:///")
    copy = os.path.join(folder, os.path.basename(template))
    for suffix in ("", "-wal"):
        if os.path.exists(template + suffix):
            shutil.copyfile(template + suffix, copy + suffix)
    return f"sqlite:///{copy}"


def run_server_py(
    *args: str, env: dict[str, str] | None = None, cwd: str = ROOT, timeout: float = 60
) -> subprocess.CompletedProcess:
    """Run ``python server.py ARGS`` (found by absolute path, so ``cwd`` may be
    anywhere) with no CHAT_* variables but ``env``'s; return the finished
    process, whatever its exit status."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("CHAT_")}
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "server.py"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        timeout=timeout,
    )


def create_keys(db_url: str, admins: int = 1, stores: int = 1) -> tuple[list[str], list[str]]:
    """Keys of ``admins`` new admins and ``stores`` new stores in the database at
    ``db_url``. The first account is made by the real CLI (which also creates
    the file, with the default settings), the others in-process through
    storage: a ``server.py`` process per key took about a second each, and a
    test that made fifty ran out of its time on a loaded machine."""
    env = {"CHAT_STORAGE_URL": db_url}
    admin_keys: list[str] = []
    store_keys: list[str] = []
    if admins:
        admin_keys.append(run_cli("create-admin", "--name", "Admin0", env=env).splitlines()[-1])
    elif stores:
        store_keys.append(
            run_cli(
                "create-store",
                "--name",
                "Store0",
                "--logo-url",
                "https://example.com/l.png",
                env=env,
            ).splitlines()[-1]
        )

    async def create_the_others() -> None:
        from settings import load_config
        from storage import open_storage

        config = load_config(environ={}, overrides={"storage": {"url": db_url}})
        storage = open_storage(db_url, config["storage"])
        await storage.setup()
        try:
            for i in range(len(admin_keys), admins):
                admin_keys.append((await storage.create_admin(f"Admin{i}", None))[1])
            for i in range(len(store_keys), stores):
                store_keys.append(
                    (await storage.create_store(f"Store{i}", None, "https://example.com/l.png"))[1]
                )
        finally:
            await storage.close()

    # Callers are coroutines on a running loop: storage gets a loop of its own.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, create_the_others()).result()
    return admin_keys, store_keys


# --- accounts and sessions made for a test ---------------------------------------
async def make_admin(server: ChatServer, name: str = "Dana") -> tuple[Any, str]:
    """A new admin in the server's storage and its key."""
    admin, key = await server.raw_storage.create_admin(name, f"{name.lower()}@example.com")
    return admin, key


async def make_store(server: ChatServer, name: str = "Tech Store") -> tuple[Any, str]:
    store, key = await server.raw_storage.create_store(
        name, "store@example.com", "https://example.com/logo.jpg"
    )
    return store, key


async def claimed_session(
    server: ChatServer, api: Api, body: str = "Hello", admin_name: str = "Dana"
) -> tuple[str, str, dict[str, Any]]:
    """A new store's session, opened with ``body`` and claimed by a new admin:
    ``(store_key, admin_key, session JSON as opened)``."""
    _, store_key = await make_store(server)
    _, admin_key = await make_admin(server, admin_name)
    session = await open_session(api, store_key, body)
    reply = await api.post("/admin/session/claim/", admin_key, {"session_id": session["id"]})
    assert reply.status == 200, reply
    return store_key, admin_key, session


async def open_session(api: Api, store_key: str, body: str = "Hello") -> dict[str, Any]:
    """Have a store write, which opens its session; return the session JSON."""
    reply = await api.post("/store/message/", store_key, {"body": body})
    assert reply.status in (200, 201), reply
    return reply.json["session"]
