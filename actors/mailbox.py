"""One actor's mailbox as the runtime (``actors/runtime.py``) keeps it: the
queue of commands with whoever waits on each, the loop's wake-up, and how a
waiter is answered."""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Hashable
from typing import Any

from actors.actor import Actor
from actors.errors import ChatError
from storage.base import Reply

# Who waits for a command's outcome: an ask's future, a reply callback, or no
# one (a tell).
Waiter = asyncio.Future[Any] | Reply | None

log = logging.getLogger("actors.runtime")

# Queued to stop an actor's loop once the commands ahead of it are done.
STOP = object()
# Queued at the head of a mailbox when a command started by ``start_now``
# failed unexpectedly: the loop restarts the actor before the next command.
RESTART = object()


class Cell:
    """The runtime's record of one live actor: its mailbox and bookkeeping."""

    def __init__(self, key: Hashable, actor: Actor):
        self.key = key
        self.actor = actor
        self.mailbox: collections.deque[tuple[Any, Waiter]] = collections.deque()
        self.wake: asyncio.Future[None] | None = None  # set while the loop waits for work
        self.started = False
        # Commands running (in the loop, inline in an ask, or started now);
        # more than one only for commands of one overlap key.
        self.running = 0
        self.running_key: Any = None  # their overlap key while some run beside others
        self.stopped = False
        self.last_active = time.monotonic()
        self.restarts: collections.deque[float] = collections.deque()
        self.task: asyncio.Task[None] | None = None


def wake(cell: Cell) -> None:
    """Let the actor's loop look at its mailbox again (it may be waiting)."""
    if cell.wake is not None and not cell.wake.done():
        cell.wake.set_result(None)


def settle(future: Waiter, result: Any = None, exc: BaseException | None = None) -> None:
    """Answer whoever waits on a command: its ask's future, its reply callback, or no one."""
    if future is None:
        return
    if not isinstance(future, asyncio.Future):  # a reply callback
        try:
            future(result, exc)
        except Exception:
            log.exception("an actor's reply callback failed")
        return
    if future.done():
        return
    if exc is not None:
        if isinstance(exc, ChatError):
            # An answer, never shown with a traceback; its frames (which hold
            # this future) would make each refusal a cycle for the GC.
            exc.__traceback__ = None
        future.set_exception(exc)
    else:
        future.set_result(result)
