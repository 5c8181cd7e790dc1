"""Group commit for SQLite: many small writes, one transaction, one fsync.

Committing each chat message in its own transaction costs an fsync per message
and a thread hand-off per message (DESIGN.md measured ~6k msg/s that way versus
~17.5k/s in groups). ``GroupCommitWriter`` owns the only write connection of a
process, on its own thread. It takes every pending write (up to ``max_batch``)
into a single ``BEGIN IMMEDIATE`` transaction, commits once, and only then
answers the callers. Two kinds of write:

* ``submit(fn)``: ``fn(conn)`` runs inside its own SAVEPOINT; one failing
  function rolls back its own savepoint, not its neighbours';
* ``submit_batched(handler, item)``: the items of one ``handler`` in a group are
  given to it together, ``handler(conn, items)``, which answers each (a result
  or an exception) and may do its work in one statement per table for the
  lot. If the handler fails as a whole, each item is retried on its own.

So:

* a caller learns its result only after its write is durable (ack after commit);
* ``BEGIN IMMEDIATE`` takes SQLite's write lock up front, so every write runs
  with the database serialised against other processes sharing the file: a
  read-then-write inside a transaction is atomic across processes;
* the loop is woken once per group (one ``call_soon_threadsafe``), not once per
  write; the group's events go to the commit listener, in commit order, in that
  same wake-up, before any caller is answered.

A batched item can be answered by a callback instead of a future
(``submit_batched_with_reply``): the hottest path, a chat message, then costs
no future and no task wake-up per write.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from storage.base import Reply
from storage.records import Event
from storage.threads import name_os_thread

log = logging.getLogger(__name__)

WriteFn = Callable[[sqlite3.Connection], Any]
# What a write function gives back, handed to its caller once committed.
T = TypeVar("T")
# A batched write: each item, and its answer.
Item = TypeVar("Item")
R = TypeVar("R")
# What a write came to: (result, None) or (None, the exception).
Outcome = tuple[Any, BaseException | None]
# A write waiting for the writer thread: (batch handler or None, its item or
# write function, the future or reply that gets the outcome).
Pending = tuple[Any, Any, Any]
# handler(conn, items) -> one result or exception per item, in order.
BatchHandler = Callable[[sqlite3.Connection, Sequence[Any]], list[Any]]
# listener(prior_event_id, events): the events one group stored, in id order;
# every event with an id up to prior_event_id was committed before them.
CommitListener = Callable[[int, list[Event]], None]

_STOP = object()


class WriterConnection(sqlite3.Connection):
    """The writer's connection: row helpers add the events they store to
    ``committed`` (collected per transaction) and stamp them with ``origin``."""

    origin: str | None = None
    committed: list[Event] | None = None


class GroupCommitWriter:
    """The one writer thread of a process: writes submitted from the event loop are committed in
    groups, one transaction each, in submission order."""

    def __init__(
        self,
        connect: Callable[[], WriterConnection],
        max_batch: int = 100,
        origin: str | None = None,
    ):
        self._connect = connect
        self._max_batch = max_batch
        self._origin = origin
        # A Pending, a list of them (one loop pass's hand-over), or _STOP.
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._handover: list[Pending] = []  # batched items of this loop pass, not yet queued
        self._listener: tuple[CommitListener, asyncio.AbstractEventLoop] | None = None
        # First event id of each group committed (or committing) here whose
        # events the listener has not had yet, oldest first.
        self._unannounced: collections.deque[int] = collections.deque()
        self._thread = threading.Thread(target=self._run, name="sqlite-writer", daemon=True)
        self._thread.start()

    def set_commit_listener(self, listener: CommitListener | None) -> None:
        """Hand every committed group's events to ``listener`` on the calling
        thread's event loop (set before the first write; None to stop). Only
        events written while a listener is set carry this writer's origin: the
        others are left for the feed to read like anyone else's."""
        self._listener = (listener, asyncio.get_running_loop()) if listener else None

    def first_unannounced_event_id(self) -> int | None:
        """The smallest event id committed here that the listener has not had
        yet; a reader of the feed must not pass it. Safe from any thread."""
        try:
            return self._unannounced[0]
        except IndexError:
            return None

    async def submit(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` in the next group; return its result once committed."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put((None, fn, future))
        return await future

    async def submit_batched(
        self, handler: Callable[[sqlite3.Connection, Sequence[Item]], list[R]], item: Item
    ) -> R:
        """Give ``item`` to ``handler`` with the group's other items for it;
        return its answer once committed.

        Items submitted in one loop pass reach the writer thread together, in
        one hand-over at the end of the pass: one thread wake-up, not one each.
        """
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._hand_over_later(handler, item, future)
        return await future

    def submit_batched_with_reply(self, handler: BatchHandler, item: Any, reply: Reply) -> None:
        """``submit_batched`` answered by ``reply(result, error)`` on the
        calling loop once committed (or failed), instead of a future."""
        self._hand_over_later(handler, item, _ReplyCallback(asyncio.get_running_loop(), reply))

    def _hand_over_later(self, handler: BatchHandler, item: Any, answer: Any) -> None:
        if not self._handover:
            asyncio.get_running_loop().call_soon(self.hand_over)
        self._handover.append((handler, item, answer))

    def hand_over(self) -> None:
        """Queue this pass's batched items for the writer (end of the pass; and
        at stop, so none is left behind the stop marker)."""
        items, self._handover = self._handover, []
        if items:
            self._queue.put(items)

    def stop(self) -> None:
        """Finish the pending writes, then end the thread (runs at shutdown,
        after ``hand_over`` on the loop)."""
        self._queue.put(_STOP)
        self._thread.join(timeout=30)

    # --- the writer thread -------------------------------------------------
    def _run(self) -> None:
        name_os_thread("sqlite-writer")
        # Connected for the first group, and again after a failed connect: a
        # database file gone at that moment fails those writes, not the thread
        # (every later write would wait for an answer that never came).
        conn: WriterConnection | None = None
        try:
            while True:
                item = self._queue.get()
                if item is _STOP:
                    return
                batch = item if isinstance(item, list) else [item]
                stopping = False
                while len(batch) < self._max_batch:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is _STOP:
                        stopping = True
                        break
                    if isinstance(nxt, list):  # one loop pass's hand-over, kept whole
                        batch.extend(nxt)
                    else:
                        batch.append(nxt)
                conn = conn or self._connect_or_refuse(batch)
                if conn is not None:
                    self._commit_batch(conn, batch)
                if stopping:
                    return
        finally:
            if conn is not None:
                conn.close()

    def _connect_or_refuse(self, batch: list[Pending]) -> WriterConnection | None:
        """The writer's connection; None, with ``batch`` answered by the error,
        when the database cannot be opened."""
        try:
            conn = self._connect()
        except sqlite3.Error as exc:
            log.warning("sqlite writer cannot open the database: %s", exc)
            self._answer(batch, [(None, exc)] * len(batch), 0, [], None)
            return None
        conn.origin = self._origin
        return conn

    def _commit_batch(self, conn: WriterConnection, batch: list[Pending]) -> None:
        outcomes: list[tuple[Any, BaseException | None]] = [(None, None)] * len(batch)
        events: list[Event] = []
        conn.committed = events
        listener = self._listener  # one listener for the whole group
        conn.origin = self._origin if listener is not None else None
        prior = 0
        announced = False
        try:
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
            prior = row[0] if row else 0
            grouped: dict[BatchHandler, list[int]] = {}
            for index, (handler, fn, _future) in enumerate(batch):
                if handler is None:
                    outcomes[index] = _run_in_savepoint(conn, fn)
                else:
                    grouped.setdefault(handler, []).append(index)
            for handler, indexes in grouped.items():
                self._run_handler(conn, handler, [batch[i][1] for i in indexes], indexes, outcomes)
            if events and listener is not None:
                self._unannounced.append(events[0].id)
                announced = True
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            log.warning("sqlite group commit failed: %s", exc)
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if announced:
                self._unannounced.pop()
            outcomes = [(None, exc)] * len(batch)
            events = []
        finally:
            conn.committed = None
        self._answer(batch, outcomes, prior, events if listener else [], listener)

    @staticmethod
    def _run_handler(
        conn: WriterConnection,
        handler: BatchHandler,
        items: list[Any],
        indexes: list[int],
        outcomes: list[Outcome],
    ) -> None:
        mark = len(_collected(conn))
        conn.execute("SAVEPOINT op")
        try:
            answers = handler(conn, items)
        except Exception as exc:  # one bad item must not fail the rest: one by one
            conn.execute("ROLLBACK TO op")
            conn.execute("RELEASE op")
            del _collected(conn)[mark:]
            log.debug("batched write failed (%s); retrying item by item", exc)
            for item, index in zip(items, indexes, strict=True):
                result, error = _run_in_savepoint(
                    conn, functools.partial(_handle_alone, handler, item)
                )
                if error is not None:
                    outcomes[index] = (None, error)
                else:
                    outcomes[index] = _as_outcome(result)
            return
        conn.execute("RELEASE op")
        for index, answer in zip(indexes, answers, strict=True):
            outcomes[index] = _as_outcome(answer)

    def _answer(
        self,
        batch: list[Pending],
        outcomes: list[Outcome],
        prior: int,
        events: list[Event],
        listener: tuple[CommitListener, asyncio.AbstractEventLoop] | None,
    ) -> None:
        """Wake each loop once: the listener first, then every caller."""
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Any, Outcome]]] = {}
        for (_handler, _fn, future), outcome in zip(batch, outcomes, strict=True):
            by_loop.setdefault(future.get_loop(), []).append((future, outcome))
        if events and listener is not None:
            by_loop.setdefault(listener[1], [])
        for loop, answers in by_loop.items():
            announce = listener[0] if events and listener and listener[1] is loop else None
            try:
                loop.call_soon_threadsafe(self._settle, announce, prior, events, answers)
            except RuntimeError:  # that loop has closed; nobody is waiting there
                if announce is not None:
                    self._unannounced.popleft()

    def _settle(
        self,
        listener: CommitListener | None,
        prior: int,
        events: list[Event],
        answers: list[tuple[Any, Outcome]],
    ) -> None:
        if listener is not None:
            self._unannounced.popleft()
            try:
                listener(prior, events)
            except Exception:
                log.exception("commit listener failed")
        for future, (result, exc) in answers:
            if future.cancelled():
                continue
            try:  # a reply callback runs its caller's code: one failing must not strand the rest
                if exc is not None:
                    future.set_exception(exc)
                else:
                    future.set_result(result)
            except Exception:
                log.exception("answering a write failed")


class _ReplyCallback:
    """A reply callback dressed as the part of a future the writer uses."""

    __slots__ = ("_loop", "_reply")

    def __init__(self, loop: asyncio.AbstractEventLoop, reply: Reply):
        self._loop = loop
        self._reply = reply

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def cancelled(self) -> bool:
        return False

    def set_result(self, result: Any) -> None:
        self._reply(result, None)

    def set_exception(self, exc: BaseException) -> None:
        self._reply(None, exc)


def _collected(conn: WriterConnection) -> list[Event]:
    """The events the group being committed has stored so far (a list for
    the whole of ``_commit_batch``, which is where every write runs)."""
    if conn.committed is None:
        raise RuntimeError("a write ran outside a group commit")
    return conn.committed


def _handle_alone(handler: BatchHandler, item: Any, conn: sqlite3.Connection) -> Any:
    """``handler`` run for ``item`` alone: a batch's retry, item by item."""
    return handler(conn, [item])[0]


def _run_in_savepoint(conn: WriterConnection, fn: WriteFn) -> Outcome:
    mark = len(_collected(conn))
    conn.execute("SAVEPOINT op")
    try:
        result = fn(conn)
    except Exception as exc:  # the caller gets it; neighbours go on
        conn.execute("ROLLBACK TO op")
        conn.execute("RELEASE op")
        del _collected(conn)[mark:]
        return None, exc
    conn.execute("RELEASE op")
    return result, None


def _as_outcome(answer: Any) -> tuple[Any, BaseException | None]:
    if isinstance(answer, BaseException):
        return None, answer
    return answer, None
