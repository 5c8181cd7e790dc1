#!/usr/bin/env python3
"""The store support chat server: command line, worker processes and wiring.

    python server.py [serve] [--config PATH] [--port N] [--storage URL] [--demo]
    python server.py check-config
    python server.py create-admin --name NAME [--email EMAIL]
    python server.py create-store --name NAME [--email EMAIL] [--logo-url URL]
    python server.py list-admins | list-stores
    python server.py rotate-key --admin ID | --store ID
    python server.py revoke-key --admin ID | --store ID

Settings (``handlers/settings.py``) come from ``config.yaml`` beside this file,
then the file named by ``--config`` or CHAT_CONFIG, then CHAT_* environment
variables, then flags. Exit status: 0 done, 1 the server or command could not
do its work (port in use, database unreachable, no such account), 2 bad
settings or arguments; each failure is one line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import gc
import logging
import os
import shlex
import shutil
import signal
import sys
import tempfile
from typing import Any, AsyncIterator

from handlers.settings import (  # noqa: F401  (_merge: tests build configs with it)
    DEFAULT_CONFIG_PATH, ConfigError, load_config, merge as _merge,
)
from handlers.shown_settings import describe_storage, dump_config
from storage.base import Role, StorageUnavailable

from storage.base import StorageMisconfigured

HERE = os.path.dirname(os.path.abspath(__file__))
# The largest id storage can hold (SQLite's INTEGER, MongoDB's int64).
MAX_ID = 2**63 - 1
log = logging.getLogger("chat.server")


class StartupError(Exception):
    """The server cannot start (port in use, storage unreachable): one line, exit 1."""


def worker_count(config: dict[str, Any]) -> int:
    processes = int(config["server"]["processes"])
    return processes if processes > 0 else (os.cpu_count() or 1)


# --- serving -------------------------------------------------------------------
def serve(config: dict[str, Any], demo: bool, cli: str = "server.py") -> int:
    """Bind, prepare storage, fork the workers (if more than one) and serve.

    Raises ``StartupError`` before serving when a port or the storage fails.
    ``cli`` is how to run this program again, for the demo's hints.
    """
    workers = worker_count(config)
    if config["server"]["pin_to_cpus"] and not hasattr(os, "sched_setaffinity"):
        raise StartupError("server.pin_to_cpus needs Linux (os.sched_setaffinity); "
                           "set it to false here")
    metrics_dir = None
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Must be set before prometheus_client is first imported (below), so
        # all workers write their values where /metrics reads them.
        metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(
            prefix="chat-metrics-")
    try:
        _setup_logging(config)
        srv = config["server"]
        # Bind before touching storage: a second `make run` on a busy port
        # stops here, before --demo changes anything.
        sockets = _bind(srv["host"], int(srv["port"]), "--port or server.port")
        ops_sockets = None
        if config["ops"]["bind"]:
            host, _, port = config["ops"]["bind"].rpartition(":")
            ops_sockets = _bind(host or srv["host"], int(port), "ops.bind")
        asyncio.run(_prepare_storage(config, demo, cli))
    except StartupError:
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)
        raise
    port = sockets[0].getsockname()[1]
    print(f"Serving on http://{srv['host']}:{port} with {workers} worker process(es); "
          f"{describe_storage(config['storage']['url'])}", flush=True)
    index = 0  # this worker's number
    if workers > 1:
        child = supervise_workers(workers)
        if child is None:  # the parent, once every worker has exited
            if metrics_dir:
                shutil.rmtree(metrics_dir, ignore_errors=True)
            return 0
        index = child
        if config["events"].get("node"):  # each worker follows the feed on its own
            config["events"]["node"] = f"{config['events']['node']}/{index}"
    if config["server"]["pin_to_cpus"]:
        log.info("worker %d runs on CPU %d", index, pin_to_cpu(index))
    return run_event_loop(_run_worker(config, sockets, ops_sockets))


# Young-generation collections happen after this many more container
# allocations than frees (CPython's default is 700). A chat message allocates
# dozens (frames, dicts, closures), and short-lived ones are freed by reference
# counting anyway: at 700 the cyclic collector ran a few times per message
# batch and took ~12% of the loop's CPU (perf, issue 9).
GC_YOUNG_THRESHOLD = 10_000


def tune_garbage_collector() -> None:
    """Runs once the worker is set up, before it serves: what exists now lives
    as long as the process (modules, settings, the app), so the collector
    stops walking it (``gc.freeze``), and young objects are collected less
    often. Measured by ``make bench``: ~18% less CPU per message."""
    gc.freeze()
    _young, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


def pin_to_cpu(index: int) -> int:
    """Runs in worker ``index`` before it starts its threads, when
    ``server.pin_to_cpus`` is set: every thread of the worker (the loop, the
    SQLite writer and readers, and those started later, which inherit it) runs
    on one CPU, the index-th of those this process may use. The GIL lets a
    worker use about one core anyway; kept on one, its threads hand the GIL to
    each other without waking a second core, and the caches stay warm: 4-26%
    less CPU per message in 12 of 13 side-by-side runs (``make bench`` prints
    both).
    Returns the CPU."""
    cpus = sorted(os.sched_getaffinity(0))
    cpu = cpus[index % len(cpus)]
    try:
        threads = [int(thread_id) for thread_id in os.listdir("/proc/self/task")]
    except OSError:  # no /proc: this thread, and the threads it starts later
        threads = [0]
    for thread_id in threads:
        try:
            os.sched_setaffinity(thread_id, {cpu})
        except ProcessLookupError:  # a thread that has just ended
            pass
    return cpu


def run_event_loop(main: Any) -> Any:
    """Run the worker on uvloop where it is installed (a Linux dependency: a
    cheaper loop under every callback of the message path), else on asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def _bind(host: str, port: int, setting: str) -> list:
    import tornado.netutil

    try:
        return tornado.netutil.bind_sockets(port, host)
    except OSError as exc:
        why = ("the address is already in use (another server running?)"
               if exc.errno == errno.EADDRINUSE else exc.strerror or str(exc))
        raise StartupError(f"cannot listen on {host}:{port}: {why}; "
                           f"set another with {setting}") from None


async def _run_worker(config: dict[str, Any], sockets: list, ops_sockets: list | None) -> int:
    from handlers.app import ChatServer

    server = ChatServer(config)
    await server.start(sockets, ops_sockets)
    tune_garbage_collector()
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


async def _prepare_storage(config: dict[str, Any], demo: bool, cli: str) -> None:
    """Create the schema once, before any worker starts; seed the demo data."""
    from handlers.demo import seed_demo

    async with opened_storage(config) as storage:
        if demo:
            await seed_demo(storage, config, cli)


@contextlib.asynccontextmanager
async def opened_storage(config: dict[str, Any]) -> AsyncIterator[Any]:
    """The configured storage, set up, closed on the way out; an unreachable or
    unwritable database becomes a one-line ``StartupError``."""
    from storage import open_storage

    storage = open_storage(config["storage"]["url"], config["storage"])
    try:
        await storage.setup()
        yield storage
    except StorageUnavailable as exc:
        where = describe_storage(config["storage"]["url"])
        raise StartupError(f"storage unavailable ({where}): {_one_line(exc)}") from None
    finally:
        await storage.close()


def _one_line(exc: BaseException) -> str:
    # PyMongo appends a long topology description; the cause comes before it.
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text.split(", Timeout:")[0].split(" Topology Description:")[0][:300]


def _setup_logging(config: dict[str, Any]) -> None:
    from handlers.logs import setup_logging

    setup_logging(config["logging"]["level"], config["logging"]["format"])


# --- account commands ----------------------------------------------------------
async def run_account_command(config: dict[str, Any], args: argparse.Namespace) -> str:
    """Run one account command; return what to print last (a key, a table, a line)."""
    from handlers import accounts

    command = args.command
    if command.startswith("create-"):
        name = accounts.clean_name(args.name)
        email = accounts.clean_email(args.email)
        logo_url = accounts.clean_logo_url(getattr(args, "logo_url", None))
    async with opened_storage(config) as storage:
        if command == "create-admin":
            return await accounts.create_account(storage, Role.ADMIN, name, email)
        if command == "create-store":
            return await accounts.create_account(storage, Role.STORE, name, email, logo_url)
        if command in ("list-admins", "list-stores"):
            role = Role.ADMIN if command == "list-admins" else Role.STORE
            return await accounts.list_accounts(storage, role)
        role, account_id = (Role.ADMIN, args.admin) if args.admin else (Role.STORE, args.store)
        if command == "rotate-key":
            return await accounts.rotate_key(storage, role, account_id)
        return await accounts.revoke_key(storage, role, account_id)


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
                       help="create demo accounts on an empty database (or reuse them) "
                            "and print a walkthrough")
    commands.add_parser("check-config", help="print the effective settings, or the bad one")
    admin = commands.add_parser("create-admin", help="create an admin; prints its key last")
    admin.add_argument("--name", required=True)
    admin.add_argument("--email")
    store = commands.add_parser("create-store", help="create a store; prints its key last")
    store.add_argument("--name", required=True)
    store.add_argument("--email")
    store.add_argument("--logo-url", help="https:// URL of the store's logo")
    commands.add_parser("list-admins", help="list admins (id, name, email); never keys")
    commands.add_parser("list-stores", help="list stores (id, name, email, logo); never keys")
    for name, what in (("rotate-key", "give a new key (printed last); the old one stops working"),
                       ("revoke-key", "leave the account with no working key")):
        cmd = commands.add_parser(name, help=what)
        who = cmd.add_mutually_exclusive_group(required=True)
        who.add_argument("--admin", type=_account_id, metavar="ID")
        who.add_argument("--store", type=_account_id, metavar="ID")
    return parser.parse_args(argv)


def _account_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an id (a whole number)") from None
    if not 1 <= value <= MAX_ID:
        raise argparse.ArgumentTypeError(f"{text} is not an id (1 to {MAX_ID})")
    return value


def cli_hint(args: argparse.Namespace, config: dict[str, Any]) -> str:
    """How to run this program again on the same database (the venv's python,
    the same settings file, the storage if it is not the default), for hints
    printed to the user."""
    words = [_short_path(sys.executable), _short_path(os.path.join(HERE, "server.py"))]
    settings_file = args.config or os.environ.get("CHAT_CONFIG")
    if settings_file:
        words += ["--config", settings_file]
    url = config["storage"]["url"]
    if url != load_config(settings_file, environ={})["storage"]["url"]:
        words += ["--storage", url]
    return shlex.join(words)


def _short_path(path: str) -> str:
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    overrides: dict[str, dict[str, Any]] = {}
    if args.storage:
        overrides["storage"] = {"url": args.storage}
    if getattr(args, "port", None) is not None:
        overrides["server"] = {"port": args.port}
    from handlers.accounts import AccountError, NoSuchAccount

    try:
        config = load_config(args.config, overrides=overrides)
        if args.command == "check-config":
            print(f"# effective settings: {DEFAULT_CONFIG_PATH} < "
                  f"{args.config or os.environ.get('CHAT_CONFIG') or '(no --config)'} "
                  f"< environment < flags; secrets shown as ***")
            print(dump_config(config), end="")
            return 0
        if args.command not in (None, "serve"):
            print(asyncio.run(run_account_command(config, args)))
            return 0
        return serve(config, demo=args.demo, cli=cli_hint(args, config))
    except (ConfigError, AccountError, StorageMisconfigured) as exc:  # exit 2
        print(f"server.py: {exc}", file=sys.stderr)
        return 2
    except (StartupError, NoSuchAccount) as exc:
        print(f"server.py: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
