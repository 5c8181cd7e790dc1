"""``python server.py [serve]``: bind, prepare storage, fork the workers, serve.

Runs in the parent once (bind, storage schema, ``--demo``), then in every
worker (its own event loop and ``ChatServer`` on the shared sockets).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import os
import shutil
import signal
import tempfile
from typing import Any

from cli.startup import StartupError, opened_storage
from cli.workers import supervise_workers
from settings.shown import describe_storage

log = logging.getLogger("chat.server")


def worker_count(config: dict[str, Any]) -> int:
    """``server.processes``, where 0 means one per CPU."""
    processes = int(config["server"]["processes"])
    return processes if processes > 0 else (os.cpu_count() or 1)


def serve(config: dict[str, Any], demo: bool, cli: str = "server.py") -> int:
    """Bind, prepare storage, fork the workers (if more than one) and serve.

    Raises ``StartupError`` before serving when a port or the storage fails.
    ``cli`` is how to run this program again, for the demo's hints.
    """
    workers = worker_count(config)
    if config["server"]["pin_to_cpus"] and not hasattr(os, "sched_setaffinity"):
        raise StartupError(
            "server.pin_to_cpus needs Linux (os.sched_setaffinity); set it to false here"
        )
    metrics_dir = None
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Must be set before prometheus_client is first imported (below), so
        # all workers write their values where /metrics reads them.
        metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(
            prefix="chat-metrics-"
        )
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
    print(
        f"Serving on http://{srv['host']}:{port} with {workers} worker process(es); "
        f"{describe_storage(config['storage']['url'])}",
        flush=True,
    )
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
        with contextlib.suppress(ProcessLookupError):  # a thread that has just ended
            os.sched_setaffinity(thread_id, {cpu})
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
        why = (
            "the address is already in use (another server running?)"
            if exc.errno == errno.EADDRINUSE
            else exc.strerror or str(exc)
        )
        raise StartupError(
            f"cannot listen on {host}:{port}: {why}; set another with {setting}"
        ) from None


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
    except TimeoutError:
        log.error("shutdown took longer than %.0fs; exiting anyway", timeout)
        return 1
    return 0


async def _prepare_storage(config: dict[str, Any], demo: bool, cli: str) -> None:
    """Create the schema once, before any worker starts; seed the demo data."""
    from cli.demo import seed_demo

    async with opened_storage(config) as storage:
        if demo:
            await seed_demo(storage, config, cli)


def _setup_logging(config: dict[str, Any]) -> None:
    from handlers.logs import setup_logging

    setup_logging(config["logging"]["level"], config["logging"]["format"])
