"""``InsertFollower``: inserts into collections, in the cluster's commit order, from a position.

The order of a MongoDB cluster already exists: the oplog, which change streams
read. So the event feed and the key changes need no number of their own (a
counter bumped inside every change's transaction was the document every
change wrote). A follower keeps one change stream open on its collections (a
database-level stream matching their inserts when there are several, so their
inserts interleave in commit order) and buffers what it reads; ``read(after,
limit)`` hands the buffer out, each document with the collection it went to.

A **position** is opaque above ``storage/``: here ``{"token": <resume token>}``
(the ``_id`` of the change just read, or the stream's post-batch token for
"now"), which a node saves under its ``events.node`` name and continues from
after a restart. The rules:

* order: inserts come as the oplog has them, so each session's events (whose
  changes conflict on the session document) come in commit order, and the
  events of one transaction come together in the order they were inserted;
* nothing missed, nothing twice: a stream that dies for any reason (a
  non-resumable error, a step-down, a lost connection) is reopened with
  ``resume_after`` the last change buffered, waiting longer after each failure;
* under load, each getMore brings several changes: after a change that
  emptied the last getMore's batch the stream waits ``GATHER_SECS`` (5 ms)
  before the next one (a getMore costs this process and the server about one
  command of a change, and every node sends its own); a change committed
  after a quiet moment is read at once, by the getMore already waiting;
* a reader asking from a position other than where the buffer stands (a
  restart, a second reader) restarts the stream there, and its first read
  waits until the stream has caught up with what was stored before it.

The mongomock stand-in of the tests has no change streams: there (one process,
ids from ``IdBlocks`` rising, inserts never interleaving) the position is the
last feed id read (each collection names the field holding it, ``_id`` by
default), and reading is a query by that field in each collection, merged.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from pymongo import ASCENDING
from pymongo.errors import OperationFailure, PyMongoError

log = logging.getLogger(__name__)

# A getMore waits this long for new inserts before answering "none": the
# longest an idle stream holds a connection between checks of its task.
STREAM_AWAIT_MS = 200
# A reader restarting the stream waits at most this long for it to catch up
# (then it returns what it has; the rest comes with the next read).
CATCH_UP_WAIT_SECS = 3.0
# Reopening a stream that ended: the first wait, doubled up to the last; a
# stream that stayed open this long was healthy and resets the wait.
REOPEN_FIRST_SECS = 0.1
REOPEN_MAX_SECS = 5.0
HEALTHY_SECS = 10.0
# After a change that emptied the batch the last getMore brought, the stream
# waits this long before the next getMore, so that under load each getMore
# brings the changes of several commits instead of one: a getMore costs this
# process and the server about what one command of a change costs, and every
# node sends its own. Adds at most this much to the delivery of a change that
# commits within it after the previous one; none when the stream was idle (its
# getMore is then already waiting on the server).
GATHER_SECS = 0.005
# Past this many unread changes the stream stops reading until the reader
# takes some: memory stays bounded when nobody reads.
MAX_BUFFERED = 20000
# Server error codes: change streams cannot work here (a standalone server),
# and the position is no longer in the oplog.
CHANGE_STREAMS_UNSUPPORTED = frozenset({40573, 40324})
CHANGE_STREAM_HISTORY_LOST = 286

Position = Any
# What ``read`` hands out: the collection, the inserted document, its position.
Insert = tuple[str, dict[str, Any], Position]


class InsertFollower:
    """Follows the inserts into ``names`` (collections of ``db``).

    ``order`` names, per collection, the field the stream-less stand-in reads
    by (``_id`` where not named); documents without it are not followed there.
    """

    def __init__(
        self,
        db: Any,
        names: tuple[str, ...],
        streams: bool = True,
        order: dict[str, str] | None = None,
    ):
        self.db = db
        self.names = names
        self.label = "+".join(names)
        self.streams = streams
        self.order = {name: (order or {}).get(name, "_id") for name in names}
        self._wake: Callable[[], None] | None = None
        # Told of every insert read and of every end of the stream.
        self.on_change: Callable[[], None] | None = None
        # True while the stream is open and has read what was stored before it.
        self.following = False
        self._task: asyncio.Task[None] | None = None
        self._buffer: collections.deque[Insert] = collections.deque()
        self._handed: Position = None  # where the buffer continues from
        self._caught_up = asyncio.Event()
        self._room = asyncio.Event()  # the buffer has room (set while it has)
        self._room.set()

    def set_wake(self, wake: Callable[[], None] | None) -> None:
        """Call ``wake`` whenever new inserts are buffered (set by the reader
        at start, so it reads at once instead of at its next poll)."""
        self._wake = wake

    async def _watch(self, **options: Any) -> Any:
        """A change stream of the inserts into ``names``."""
        if len(self.names) == 1:
            return await getattr(self.db, self.names[0]).watch(
                [{"$match": {"operationType": "insert"}}], **options
            )
        return await self.db.watch(
            [{"$match": {"operationType": "insert", "ns.coll": {"$in": list(self.names)}}}],
            **options,
        )

    async def head(self) -> Position:
        """The position of "now": a new reader starts here."""
        if not self.streams:
            last = 0
            for name, field in self.order.items():
                docs = (
                    await getattr(self.db, name)
                    .find({field: {"$exists": True}})
                    .sort(field, -1)
                    .limit(1)
                    .to_list(1)
                )
                if docs:
                    last = max(last, _field(docs[0], field))
            return last
        async with await self._watch() as stream:
            return {"token": stream.resume_token}

    async def read(self, after: Position, limit: int) -> list[Insert]:
        """Up to ``limit`` inserted documents after ``after``, each with its
        collection and position, in commit order. Runs on every feed read."""
        if not self.streams:
            return await self._read_by_order(after, limit)
        if self._task is None or self._task.done() or after != self._handed:
            self._restart(after)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._caught_up.wait(), CATCH_UP_WAIT_SECS)
        taken: list[Insert] = []
        while self._buffer and len(taken) < limit:
            taken.append(self._buffer.popleft())
        if len(self._buffer) <= MAX_BUFFERED:
            self._room.set()
        if taken:
            self._handed = taken[-1][2]
        return taken

    async def _read_by_order(self, after: int, limit: int) -> list[Insert]:
        """The stand-in's read: each collection by its order field, merged."""
        found: list[Insert] = []
        for name, field in self.order.items():
            docs = (
                await getattr(self.db, name)
                .find({field: {"$gt": after}})
                .sort(field, ASCENDING)
                .limit(limit)
                .to_list(None)
            )
            found += [(name, d, _field(d, field)) for d in docs]
        found.sort(key=lambda insert: insert[2])
        return found[:limit]

    async def close(self) -> None:
        """Stop following (storage shutdown)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _restart(self, after: Position) -> None:
        if self._task is not None:
            self._task.cancel()
            self._changed(following=False)
        self._buffer.clear()
        self._room.set()
        self._handed = after
        self._caught_up = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._follow(after))

    async def _follow(self, at: Position) -> None:
        """Read the stream into the buffer until cancelled, reopening it from
        the last change buffered whenever it ends."""
        try:
            await self._follow_from(at)
        finally:
            self._changed(following=False)

    def _changed(self, following: bool) -> None:
        self.following = following
        if self.on_change is not None:
            self.on_change()

    async def _follow_from(self, at: Position) -> None:
        loop = asyncio.get_running_loop()
        wait, reopening = REOPEN_FIRST_SECS, False
        while True:
            opened_at = loop.time()
            try:
                async with await self._watch(
                    resume_after=at["token"], max_await_time_ms=STREAM_AWAIT_MS
                ) as stream:
                    if reopening:
                        log.info("change stream reopened on %s", self.label)
                    while stream.alive:
                        change = await stream.try_next()
                        if change is None:
                            self._caught_up.set()
                            self.following = True
                            continue
                        at = {"token": change["_id"]}
                        if self.on_change is not None:
                            self.on_change()
                        self._buffer.append((change["ns"]["coll"], change["fullDocument"], at))
                        if self._wake is not None:
                            self._wake()
                        if len(self._buffer) > MAX_BUFFERED:
                            self._room.clear()
                            await self._room.wait()  # set by read once there is room
                        if GATHER_SECS and not _batch_left(stream):
                            await asyncio.sleep(GATHER_SECS)  # the next read is a getMore
                reason = "the server closed it (invalidated: dropped or renamed)"
            except OperationFailure as exc:
                if exc.code in CHANGE_STREAMS_UNSUPPORTED:
                    log.error("change streams unsupported here (%s)", exc)
                    raise
                if exc.code == CHANGE_STREAM_HISTORY_LOST:
                    # The oplog no longer holds the position (down longer than
                    # it covers): go on from now; clients resume by seq.
                    log.error(
                        "change stream position lost from the oplog on %s; continuing from now",
                        self.label,
                    )
                    at = await self._head_or(at)
                reason = str(exc)
            except PyMongoError as exc:
                reason = str(exc)
            self._changed(following=False)
            if loop.time() - opened_at > HEALTHY_SECS:
                wait = REOPEN_FIRST_SECS
            log.warning(
                "change stream ended on %s (%s); reopening in %.1fs", self.label, reason, wait
            )
            reopening = True
            await asyncio.sleep(wait)
            wait = min(wait * 2, REOPEN_MAX_SECS)

    async def _head_or(self, at: Position) -> Position:
        try:
            return await self.head()
        except PyMongoError:
            return at


def _batch_left(stream: Any) -> int:
    """How many changes the stream holds from its last getMore, not yet
    read (0: the next ``try_next`` sends a getMore). PyMongo has no public
    name for it; where the attribute is missing, 0 (wait before each getMore
    that follows a change: only slower under load, never wrong)."""
    return len(getattr(getattr(stream, "_cursor", None), "_data", ()))


def _field(doc: dict[str, Any], path: str) -> Any:
    """``doc``'s value at a dotted ``path``."""
    for part in path.split("."):
        doc = doc[part]
    return doc
