"""The actor runtime: the one mailbox loop, refs, supervision and passivation
(one actor's mailbox, and how its waiters are answered: ``actors/mailbox.py``).

An ``Actor`` subclass (``actors/actor.py``) implements ``receive`` (and optionally ``on_start`` /
``on_stop``). The ``ActorSystem`` owns one actor per key, started on the first
command for that key, and guarantees:

* commands for one key run one at a time, in arrival order;
* a mailbox holds at most ``mailbox_size`` commands; past that ``ask``/``tell``
  raise ``MailboxFull`` at once instead of queueing without bound;
* a command that raises a ``ChatError`` just answers with it; any other
  exception answers that command with the error and restarts the actor
  (``on_start`` again, reloading from storage), at most ``max_restarts`` per
  ``restart_window_secs``, after which the actor stops;
* an actor idle for ``idle_timeout_secs`` is passivated (stopped, forgotten); the
  next command for its key starts a fresh one;
* when an actor stops, every command still in its mailbox fails with
  ``ActorStopped``.

An ``ask`` that finds its actor started, idle and with an empty mailbox runs
the command at once in the asking task instead of queueing it for the actor's
loop: the same one-at-a-time guarantee (the actor is marked running, and
commands arriving meanwhile queue behind it), without two task wake-ups and a
future per command. The mailbox loop takes over whenever commands queue up.

``ask_with_reply`` goes one step further for the hottest commands (a chat
message): the reply is a callback, and an actor that can start the command
without a coroutine (``Actor.start_now``: it hands the command to storage
with a callback) does so at once, even beside other commands of the same
overlap key still running. No task, no future, no coroutine per command;
otherwise the command queues like any other and the callback gets the answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar, cast

from actors import metrics
from actors.actor import Actor, Command
from actors.errors import ActorStopped, ChatError, MailboxFull
from actors.mailbox import RESTART, STOP, Cell, Waiter, settle, wake
from storage.base import Reply

log = logging.getLogger(__name__)

# An actor's key (a session id), and what a command is answered with.
K = TypeVar("K", bound=Hashable)
R = TypeVar("R")

# Most commands one mailbox pass starts together (see Actor.overlap_key).
MAX_GROUP = 100


class ActorSystem(Generic[K]):
    """The live actors, one per key, made by ``factory`` on the first command
    for a key: ``tell`` / ``ask`` put a command in its mailbox (bounded:
    ``MailboxFull`` past ``mailbox_size``); an actor idle for
    ``idle_timeout_secs`` stops (passivation); one that fails restarts, at
    most ``max_restarts`` times per ``restart_window_secs``."""

    def __init__(
        self,
        factory: Callable[[K], Actor],
        *,
        mailbox_size: int = 1000,
        idle_timeout_secs: float = 300.0,
        max_restarts: int = 3,
        restart_window_secs: float = 60.0,
    ):
        self._factory = factory
        self._mailbox_size = mailbox_size
        self._idle_timeout_secs = idle_timeout_secs
        self._max_restarts = max_restarts
        self._restart_window_secs = restart_window_secs
        self._cells: dict[Hashable, Cell] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._closing = False

    def __len__(self) -> int:
        return len(self._cells)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._cells

    # --- sending ----------------------------------------------------------
    def tell(self, key: K, command: Command[Any]) -> None:
        """Enqueue without waiting for the reply."""
        self._enqueue(key, command, None)

    async def ask(self, key: K, command: Command[R]) -> R:
        """Enqueue and wait for the reply (or the command's error); run it at
        once if the actor has nothing else to do."""
        cell = self._cells.get(key)
        if (
            cell is not None
            and cell.started
            and not cell.running
            and not cell.mailbox
            and not self._closing
        ):
            metrics.ACTOR_MAILBOX_DEPTH.observe(0)
            # The actor's receive answers a Command[R] with an R (actors/actor.py).
            return cast("R", await self._run_inline(cell, command))
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._enqueue(key, command, future)
        return await future

    def ask_with_reply(self, key: K, command: Command[Any], reply: Reply) -> None:
        """Like ``ask``, answered by ``reply(result, error)``: once, on the loop,
        after this returns. A full mailbox or a stopping system raise here,
        as with ``ask``."""
        cell = self._cells.get(key)
        if cell is not None and cell.started and not cell.mailbox and not self._closing:
            overlap = cell.actor.overlap_key(command)
            # At most mailbox_size started at once: past that they queue (and
            # a full mailbox refuses), as with ask.
            if not cell.running or (
                overlap is not None
                and overlap == cell.running_key
                and cell.running < self._mailbox_size
            ):
                cell.running += 1
                cell.running_key = overlap
                started = False
                try:
                    started = cell.actor.start_now(
                        command,
                        lambda result, exc: self._finished_now(cell, command, reply, result, exc),
                    )
                finally:
                    if not started:  # declined, or raised: not running after all
                        cell.running -= 1
                        if not cell.running:
                            cell.running_key = None
                if started:
                    metrics.ACTOR_MAILBOX_DEPTH.observe(0)
                    return
        self._enqueue(key, command, reply)

    def _finished_now(
        self, cell: Cell, command: Any, reply: Reply, result: Any, exc: BaseException | None
    ) -> None:
        """A command ``start_now`` started is answered: book it, reply, and let
        queued commands run once nothing else does."""
        cell.running -= 1
        cell.last_active = time.monotonic()
        if exc is not None and not isinstance(exc, ChatError):
            log.error("actor %r failed on %r", cell.key, command, exc_info=exc)
            cell.mailbox.appendleft((RESTART, None))
        settle(reply, result, exc)
        if not cell.running:
            cell.running_key = None
            if cell.mailbox:
                wake(cell)

    async def _run_inline(self, cell: Cell, command: Any) -> Any:
        cell.running += 1
        try:
            return await cell.actor.receive(command)
        except ChatError:
            raise
        except Exception:
            log.exception("actor %r failed on %r", cell.key, command)
            if not await self._restart(cell):
                self._forget(cell)
                cell.mailbox.append((STOP, None))
            raise
        finally:
            cell.running -= 1
            cell.last_active = time.monotonic()
            if cell.mailbox:
                wake(cell)

    def _enqueue(self, key: K, command: Any, future: Waiter) -> None:
        # No await between lookup and put: a passivation (also synchronous)
        # cannot slip in between and strand the command in a dead mailbox.
        if self._closing:
            raise ActorStopped()
        cell = self._cells.get(key) or self._spawn(key)
        depth = len(cell.mailbox)
        if depth >= self._mailbox_size:
            raise MailboxFull()
        metrics.ACTOR_MAILBOX_DEPTH.observe(depth)
        cell.mailbox.append((command, future))
        wake(cell)

    # --- lifecycle --------------------------------------------------------
    def _spawn(self, key: K) -> Cell:
        cell = Cell(key, self._factory(key))
        self._cells[key] = cell
        metrics.ACTORS_ACTIVE.inc()
        cell.task = asyncio.get_running_loop().create_task(self._run(cell))
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_idle())
        return cell

    async def _run(self, cell: Cell) -> None:
        """The mailbox loop: the only one in the code base."""
        try:
            if not await self._start(cell):
                return
            cell.started = True
            while True:
                command = future = group = None  # an idle actor keeps no answered command
                while cell.running or not cell.mailbox:  # idle, or commands run inline
                    cell.wake = asyncio.get_running_loop().create_future()
                    await cell.wake
                command, future = cell.mailbox.popleft()
                if command is STOP:
                    return
                if command is RESTART:
                    cell.running += 1  # nothing starts beside on_start
                    try:
                        if not await self._restart(cell):
                            return
                    finally:
                        cell.running -= 1
                    continue
                group = self._take_group(cell, command, future)
                if len(group) > 1:
                    if not await self._run_group(cell, group):
                        return
                    continue
                cell.running += 1
                try:
                    result = await cell.actor.receive(command)
                except ChatError as exc:
                    settle(future, exc=exc)
                except Exception as exc:
                    log.exception("actor %r failed on %r", cell.key, command)
                    settle(future, exc=exc)
                    if not await self._restart(cell):
                        return
                else:
                    settle(future, result=result)
                finally:
                    cell.running -= 1
                    cell.last_active = time.monotonic()
        finally:
            self._forget(cell)
            while cell.mailbox:
                _command, future = cell.mailbox.popleft()
                settle(future, exc=ActorStopped())
            try:
                await cell.actor.on_stop()
            except Exception:
                log.exception("actor %r failed in on_stop", cell.key)

    def _take_group(self, cell: Cell, command: Any, future: Waiter) -> list[tuple[Any, Waiter]]:
        """The command, and the queued ones right behind it that may overlap it
        (same ``Actor.overlap_key``), up to ``MAX_GROUP``."""
        group = [(command, future)]
        key = cell.actor.overlap_key(command)
        if key is None:
            return group
        mailbox = cell.mailbox
        while mailbox and len(group) < MAX_GROUP:
            nxt = mailbox[0][0]
            if nxt is STOP or nxt is RESTART or cell.actor.overlap_key(nxt) != key:
                break
            group.append(mailbox.popleft())
        return group

    async def _run_group(self, cell: Cell, group: list[tuple[Any, Waiter]]) -> bool:
        """Start every command of the group at once (each reaches storage in
        mailbox order, so one commit can take them all), then answer each in
        order. False if the actor must stop."""
        cell.running += 1
        loop = asyncio.get_running_loop()
        failed = False
        try:
            tasks = [loop.create_task(cell.actor.receive(command)) for command, _f in group]
            for (command, future), task in zip(group, tasks, strict=True):
                try:
                    result = await task
                except ChatError as exc:
                    settle(future, exc=exc)
                except Exception as exc:
                    log.exception("actor %r failed on %r", cell.key, command)
                    settle(future, exc=exc)
                    failed = True
                else:
                    settle(future, result=result)
            return not failed or await self._restart(cell)
        finally:
            cell.running -= 1
            cell.last_active = time.monotonic()

    async def _start(self, cell: Cell) -> bool:
        while True:
            try:
                await cell.actor.on_start()
                return True
            except Exception:
                log.exception("actor %r failed to start", cell.key)
                if not self._may_restart(cell):
                    return False

    async def _restart(self, cell: Cell) -> bool:
        if not self._may_restart(cell):
            return False
        return await self._start(cell)

    def _may_restart(self, cell: Cell) -> bool:
        now = time.monotonic()
        while cell.restarts and now - cell.restarts[0] > self._restart_window_secs:
            cell.restarts.popleft()
        if len(cell.restarts) >= self._max_restarts:
            log.error(
                "actor %r restarted %d times in %.0fs; stopping it",
                cell.key,
                len(cell.restarts),
                self._restart_window_secs,
            )
            return False
        cell.restarts.append(now)
        metrics.ACTOR_RESTARTS.inc()
        return True

    def _forget(self, cell: Cell) -> None:
        if not cell.stopped:
            cell.stopped = True
            if self._cells.get(cell.key) is cell:
                del self._cells[cell.key]
            metrics.ACTORS_ACTIVE.dec()

    async def _sweep_idle(self) -> None:
        """Passivate actors idle longer than the timeout; runs while actors live."""
        interval = max(0.05, min(self._idle_timeout_secs / 4, 5.0))
        while self._cells and not self._closing:
            await asyncio.sleep(interval)
            cutoff = time.monotonic() - self._idle_timeout_secs
            for cell in list(self._cells.values()):
                if not cell.running and not cell.mailbox and cell.last_active < cutoff:
                    self._forget(cell)  # from now on, new commands start a fresh actor
                    cell.mailbox.append((STOP, None))
                    wake(cell)
                    metrics.ACTOR_PASSIVATIONS.inc()
        self._sweeper = None

    async def stop_all(self, timeout_secs: float = 10.0) -> None:
        """Refuse new commands, let every mailbox drain, then stop (shutdown)."""
        self._closing = True
        cells = list(self._cells.values())
        for cell in cells:
            cell.mailbox.append((STOP, None))  # after the commands already queued
            wake(cell)
        tasks = [c.task for c in cells if c.task]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout_secs)
        if self._sweeper:
            self._sweeper.cancel()
