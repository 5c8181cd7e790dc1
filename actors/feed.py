"""``EventFeed``: hands every stored event to the hub, once, in commit order.

Where the feed stands is storage's opaque position (``FeedPosition``: an event
id on SQLite, a change stream's resume token on MongoDB); with ``events.node``
set it is saved, so a restarted node continues where it was. Two ways in:

* **local**: with a backend that has a commit listener (SQLite), the events
  this process commits reach the feed straight from the commit, in the same
  loop wake-up that answers the writers: no read-back of our own writes;
* **read**: what other processes and nodes stored is read from storage's
  change feed (leaving ours out where the backend can), polled, or at once
  when storage wakes the feed (MongoDB's change stream, which carries every
  node's events, ours included), or when a local group shows that others
  committed before it.

A local group carries the id of the last event committed before it (on that
backend ids are positions); it is delivered as soon as everything up to that
id has been, so each session's events reach every client in order whoever
stored them. A backend without the listener (MongoDB) has only the read way.
There a read may repeat what was delivered (a restart from a position saved
up to a second earlier; a stream reopened at a position it had passed), so
the read way drops what it delivered already: messages by ``(session_id,
seq)``, every other event by its own id.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable, Hashable

from storage.base import (
    ChatStorage,
    CommitsToListener,
    WakesTheFeed,
    commits_to_listener,
    wakes_the_feed,
)
from storage.records import Event, FeedPosition

log = logging.getLogger(__name__)

FEED_BATCH = 500
# Entries older than this are dropped; a client away longer resumes from history.
FEED_RETENTION_SECS = 3600.0
PRUNE_INTERVAL_SECS = 60.0
# After a storage error, wait this long before reading again.
ERROR_BACKOFF_SECS = 1.0
# How often a named node saves its feed position: at most this much is
# delivered again after a crash (messages carry seq, so clients can tell).
POSITION_SAVE_INTERVAL_SECS = 1.0
# Events remembered for dropping repeats: far more than a second's worth.
SEEN_EVENTS = 50000


def event_key(event: Event) -> Hashable:
    """What makes a delivered event the same one again: a message's place in
    its session, any other event's own id."""
    if event.kind == "message":
        message = event.payload["message"]
        return ("message", event.session_id, message["seq"])
    return event.id


class EventFeed:
    """Delivers every stored event to this process's clients, in commit order.

    Events this process stored arrive straight from the commit (SQLite's commit
    listener); other processes' and nodes' events come from storage itself:
    the numbered feed polled on SQLite, the change stream on MongoDB. A feed
    position is opaque here; with a node name it is saved and resumed.
    """

    def __init__(
        self,
        storage: ChatStorage,
        deliver: Callable[[Event], None],
        poll_interval_secs: float = 0.02,
        node: str = "",
    ):
        self.storage = storage
        self.deliver = deliver
        self.poll_interval_secs = poll_interval_secs
        self.position: FeedPosition = None  # storage's, opaque; set by start
        # With a node name the reader's position is saved, and a restart
        # continues where it stopped; without one it starts at the newest event.
        self.node = node
        self._saved: FeedPosition = None
        self._saved_at = 0.0
        self._wake = asyncio.Event()
        self._reading = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        # Set at start when storage wakes the feed when there is something to read.
        self._waker: WakesTheFeed | None = None
        self._seen: set[Hashable] = set()
        self._seen_order: collections.deque[Hashable] = collections.deque()
        self._pruned_at = 0.0
        # Groups this process committed, waiting for others' earlier events:
        # (prior event id, events), oldest first.
        self._local: collections.deque[tuple[int, list[Event]]] = collections.deque()
        # Set at start when storage hands this process's commits straight over.
        self._committer: CommitsToListener | None = None

    async def start(self) -> None:
        """Start where this node stopped, or after the newest event (runs once,
        before serving)."""
        saved = await self.storage.load_feed_position(self.node) if self.node else None
        self.position = saved if saved is not None else await self.storage.feed_head()
        self._saved = self.position
        if commits_to_listener(self.storage):
            self._committer = self.storage
            self._committer.set_commit_listener(self.on_commit)
        if wakes_the_feed(self.storage):  # a backend that pushes: polling is only a fallback
            self._waker = self.storage
            self._waker.set_event_wake(self._wake.set)
        self._task = asyncio.get_running_loop().create_task(self._follow())

    def poke(self) -> None:
        """This process just stored something: read the feed now (unless its
        events come straight from the commit, or storage wakes the feed)."""
        if self._committer is None and self._waker is None:
            self._wake.set()

    def on_commit(self, prior_id: int, events: list[Event]) -> None:
        """Runs on the loop right after each group this process committed:
        deliver its events now if everything before them has been."""
        if not events:
            return
        if self._local or prior_id > self.position:
            self._local.append((prior_id, events))  # others' events come first
            self._wake.set()
            return
        self._deliver_local(events)

    async def catch_up(self) -> None:
        """Deliver everything stored so far (graceful stop, before sockets close)."""
        while await self._read_batch() == FEED_BATCH:
            pass

    async def stop(self) -> None:
        """Stop following; runs once at shutdown, after ``catch_up``."""
        if self._committer is not None:  # from now on our events wait in storage for a reader
            self._committer.set_commit_listener(None)
            while self._local:
                self._deliver_local(self._local.popleft()[1])
        await self._save_position(force=True)
        if self._waker is not None:
            self._waker.set_event_wake(None)
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _follow(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            # The poll timer only sets the event: cheaper than wait_for, which
            # makes a task and a cancellation per poll.
            timer = loop.call_later(self.poll_interval_secs, self._wake.set)
            await self._wake.wait()
            timer.cancel()
            self._wake.clear()
            try:
                while await self._read_batch() == FEED_BATCH:
                    pass
                await self._save_position()
                if loop.time() - self._pruned_at > PRUNE_INTERVAL_SECS:
                    self._pruned_at = loop.time()
                    await self.storage.prune_events(FEED_RETENTION_SECS)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("event feed read failed: %s", exc)
                await asyncio.sleep(ERROR_BACKOFF_SECS)

    async def _save_position(self, force: bool = False) -> None:
        """Persist ``position`` at most once per interval (and at stop)."""
        now = asyncio.get_running_loop().time()
        if not self.node or self.position == self._saved:
            return
        if force or now - self._saved_at >= POSITION_SAVE_INTERVAL_SECS:
            position = self.position
            await self.storage.save_feed_position(self.node, position)
            self._saved, self._saved_at = position, now

    async def _read_batch(self) -> int:
        # One reader at a time (the follower and catch_up), or both would read
        # from the same position and deliver the same events twice.
        async with self._reading:
            if self._committer is None:
                events = await self.storage.read_events(self.position, FEED_BATCH)
                for event in events:
                    self.position = event.position
                    if self._first_time(event):
                        self._deliver(event)
                return len(events)
            waiting = len(self._local)  # groups committed before this read began
            events = await self._committer.read_foreign_events(self.position, FEED_BATCH)
            # Our own groups committed but not yet handed over: nothing past them.
            fence = self._committer.first_unannounced_event_id()
            for event in events:
                while self._local and self._local[0][1][0].id < event.id:
                    self._deliver_local(self._local.popleft()[1])
                    waiting -= 1
                if fence is not None and event.id > fence:
                    return len(events)  # read again once that group is delivered
                self.position = event.id
                self._deliver(event)
            if len(events) < FEED_BATCH:
                # Every event of others committed before those groups is in.
                for _ in range(max(0, waiting)):
                    self._deliver_local(self._local.popleft()[1])
            return len(events)

    def _deliver_local(self, events: list[Event]) -> None:
        for event in events:
            self._deliver(event)
        self.position = max(self.position, events[-1].id)

    def _first_time(self, event: Event) -> bool:
        """False for an event delivered already (remembered for the last
        ``SEEN_EVENTS``)."""
        key = event_key(event)
        if key in self._seen:
            return False
        self._seen.add(key)
        self._seen_order.append(key)
        if len(self._seen_order) > SEEN_EVENTS:
            self._seen.discard(self._seen_order.popleft())
        return True

    def _deliver(self, event: Event) -> None:
        try:
            self.deliver(event)
        except Exception:
            log.exception("delivering event %s failed", event.id)
