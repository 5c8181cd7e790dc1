#!/usr/bin/env python3
"""The store support chat server: configuration, command line and wiring.

    python server.py [serve] [--config PATH] [--port N] [--storage URL] [--demo]
    python server.py create-admin --name NAME [--email EMAIL]
    python server.py create-store --name NAME [--email EMAIL] [--logo-url URL]

Settings come from ``config.yaml`` beside this file, then the file named by
``--config`` or CHAT_CONFIG, then CHAT_* environment variables, then flags.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import logging
import os
import shutil
import signal
import sys
import tempfile
from typing import Any

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CONFIG_PATH = os.path.join(HERE, "config.yaml")
ENV_OVERRIDES = {
    "CHAT_STORAGE_URL": ("storage", "url", str),
    "CHAT_HOST": ("server", "host", str),
    "CHAT_PORT": ("server", "port", int),
    "CHAT_PROCESSES": ("server", "processes", int),
}
log = logging.getLogger("chat.server")


# --- configuration -----------------------------------------------------------
def load_config(path: str | None = None, environ: dict[str, str] | None = None,
                overrides: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Defaults from config.yaml, merged with ``path``, the environment and flags."""
    environ = os.environ if environ is None else environ
    with open(DEFAULT_CONFIG_PATH, encoding="utf-8") as f:
        config = yaml.safe_load(f)
    path = path or environ.get("CHAT_CONFIG")
    if path:
        with open(path, encoding="utf-8") as f:
            _merge(config, yaml.safe_load(f) or {})
    for name, (section, key, kind) in ENV_OVERRIDES.items():
        if environ.get(name):
            config[section][key] = kind(environ[name])
    _merge(config, overrides or {})
    return config


def _merge(into: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)


def worker_count(config: dict[str, Any]) -> int:
    processes = int(config["server"]["processes"])
    return processes if processes > 0 else (os.cpu_count() or 1)


# --- serving -------------------------------------------------------------------
def serve(config: dict[str, Any], demo: bool) -> int:
    """Bind, prepare storage, fork the workers (if more than one) and serve."""
    import tornado.netutil

    workers = worker_count(config)
    metrics_dir = None
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Must be set before prometheus_client is first imported (below), so
        # all workers write their values where /metrics reads them.
        metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(
            prefix="chat-metrics-")
    _setup_logging(config)
    asyncio.run(_prepare_storage(config, demo))
    srv = config["server"]
    sockets = tornado.netutil.bind_sockets(int(srv["port"]), srv["host"])
    ops_sockets = None
    if config["ops"]["bind"]:
        host, _, port = config["ops"]["bind"].rpartition(":")
        ops_sockets = tornado.netutil.bind_sockets(int(port), host or srv["host"])
    port = sockets[0].getsockname()[1]
    print(f"Serving on http://{srv['host']}:{port} with {workers} worker process(es)",
          flush=True)
    if workers > 1:
        index = supervise_workers(workers)
        if index is None:  # the parent, once every worker has exited
            if metrics_dir:
                shutil.rmtree(metrics_dir, ignore_errors=True)
            return 0
        if config["events"].get("node"):  # each worker follows the feed on its own
            config["events"]["node"] = f"{config['events']['node']}/{index}"
    return run_event_loop(_run_worker(config, sockets, ops_sockets))


def run_event_loop(main: Any) -> Any:
    """Run the worker on uvloop where it is installed (a Linux dependency: a
    cheaper loop under every callback of the message path), else on asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


async def _run_worker(config: dict[str, Any], sockets: list, ops_sockets: list | None) -> int:
    from handlers.app import ChatServer

    server = ChatServer(config)
    await server.start(sockets, ops_sockets)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    timeout = float(config["server"]["shutdown_timeout_secs"])
    try:
        await asyncio.wait_for(server.shutdown(), timeout)
    except asyncio.TimeoutError:
        log.error("shutdown took longer than %.0fs; exiting anyway", timeout)
        return 1
    return 0


def supervise_workers(count: int) -> int | None:
    """Fork ``count`` workers sharing the bound sockets and watch over them.

    Returns the worker's index in a child. In the parent it returns None once
    every worker has exited: SIGTERM/SIGINT are passed on to the workers (each
    shuts down gracefully); a worker that dies otherwise is replaced, so the
    host keeps its capacity after a crash.
    """
    children: dict[int, int] = {}
    for index in range(count):
        pid = os.fork()
        if pid == 0:
            return index
        children[pid] = index
    stopping = False

    def pass_on(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for child in list(children):
            try:
                os.kill(child, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, pass_on)
    signal.signal(signal.SIGINT, pass_on)
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        index = children.pop(pid, None)
        if index is None:
            continue
        _mark_metrics_dead(pid)
        if not stopping:
            log.warning("worker %d (pid %d) died with status %d; starting another",
                        index, pid, status)
            new_pid = os.fork()
            if new_pid == 0:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                return index
            children[new_pid] = index
    return None


def _mark_metrics_dead(pid: int) -> None:
    # Live gauges (connections, actors) of a dead worker must stop counting.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)


async def _prepare_storage(config: dict[str, Any], demo: bool) -> None:
    """Create the schema once, before any worker starts; seed the demo data."""
    storage = _open_storage(config)
    await storage.setup()
    try:
        if demo:
            await _seed_demo(storage, config)
    finally:
        await storage.close()


async def _seed_demo(storage: Any, config: dict[str, Any]) -> None:
    if await storage.count_accounts():
        print("--demo: the database already has accounts; not creating demo keys.\n"
              "Create new ones with: python server.py create-admin --name NAME", flush=True)
        return
    admin, admin_key = await storage.create_admin("Dana (demo admin)", "dana@example.com")
    store, store_key = await storage.create_store("Tech Store (demo)", "store@example.com",
                                                  "https://example.com/logo.jpg")
    base = f"http://{config['server']['host']}:{config['server']['port']}/v1/chat"
    print(DEMO_WALKTHROUGH.format(admin_key=admin_key, store_key=store_key, base=base),
          flush=True)


DEMO_WALKTHROUGH = """
Demo accounts created (these keys are shown only now):
  admin key: {admin_key}
  store key: {store_key}

Try the whole flow in another terminal:
  ADMIN={admin_key}
  STORE={store_key}
  # the store writes to support (this opens a session)
  curl -s -X POST {base}/store/message/ -H "Authorization: Token $STORE" \\
       -H "Content-Type: application/json" -d '{{"body": "Hello, my payouts stopped"}}'
  # the admin looks at the queue
  curl -s {base}/admin/sessions/open/ -H "Authorization: Token $ADMIN"
  # the admin claims the session (use the id from the queue)
  curl -s -X POST {base}/admin/session/claim/ -H "Authorization: Token $ADMIN" \\
       -H "Content-Type: application/json" -d '{{"session_id": 1}}'
  # the admin replies
  curl -s -X POST {base}/admin/message/ -H "Authorization: Token $ADMIN" \\
       -H "Content-Type: application/json" -d '{{"session_id": 1, "body": "Looking into it now"}}'
  # the store reads its session with the whole history
  curl -s {base}/store/session/ -H "Authorization: Token $STORE"
"""


def _open_storage(config: dict[str, Any]) -> Any:
    from storage import open_storage

    return open_storage(config["storage"]["url"], config["storage"])


def _setup_logging(config: dict[str, Any]) -> None:
    from handlers.logs import setup_logging

    setup_logging(config["logging"]["level"], config["logging"]["format"])


# --- account commands ----------------------------------------------------------
async def _create_account(config: dict[str, Any], kind: str, args: argparse.Namespace) -> str:
    storage = _open_storage(config)
    await storage.setup()
    try:
        if kind == "admin":
            account, key = await storage.create_admin(args.name, args.email)
        else:
            account, key = await storage.create_store(args.name, args.email, args.logo_url)
    finally:
        await storage.close()
    print(f"Created {kind} {account.id} ({account.name}). Its key, shown only now:")
    return key


# --- command line ---------------------------------------------------------------
def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="server.py", description="Store support chat server")
    parser.add_argument("--config", help="YAML file of settings (or CHAT_CONFIG)")
    parser.add_argument("--storage", help="storage URL (or CHAT_STORAGE_URL)")
    commands = parser.add_subparsers(dest="command")
    run = commands.add_parser("serve", help="run the server (the default)")
    for p in (parser, run):
        p.add_argument("--port", type=int, help="API port (or CHAT_PORT)")
        p.add_argument("--demo", action="store_true",
                       help="on an empty database, create demo keys and print a walkthrough")
    admin = commands.add_parser("create-admin", help="create an admin; prints its key last")
    admin.add_argument("--name", required=True)
    admin.add_argument("--email")
    store = commands.add_parser("create-store", help="create a store; prints its key last")
    store.add_argument("--name", required=True)
    store.add_argument("--email")
    store.add_argument("--logo-url")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    overrides: dict[str, dict[str, Any]] = {}
    if args.storage:
        overrides["storage"] = {"url": args.storage}
    if getattr(args, "port", None) is not None:
        overrides["server"] = {"port": args.port}
    config = load_config(args.config, overrides=overrides)
    if args.command in ("create-admin", "create-store"):
        key = asyncio.run(_create_account(config, args.command.split("-")[1], args))
        print(key)
        return 0
    return serve(config, demo=args.demo)


if __name__ == "__main__":
    sys.exit(main())
