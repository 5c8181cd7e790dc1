"""The parent process of several workers: fork them, replace one that dies,
pass a stop signal on."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from typing import Any

log = logging.getLogger("chat.server")


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
            with contextlib.suppress(ProcessLookupError):  # it has just exited
                os.kill(child, signal.SIGTERM)

    signal.signal(signal.SIGTERM, pass_on)
    signal.signal(signal.SIGINT, pass_on)
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        if pid not in children:
            continue
        index = children.pop(pid)
        _mark_metrics_dead(pid)
        if not stopping:
            log.warning(
                "worker %d (pid %d) died with status %d; starting another", index, pid, status
            )
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
