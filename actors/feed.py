"""``EventFeed``: follows storage's change feed and hands events to the hub.

Every process learns what was stored, by itself or by any other process or
node, from the same feed, in commit order; that single path is what keeps each
session's events in order for every client. The process that wrote an event
``poke``s the feed so it is read at once instead of at the next poll.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

from storage.base import ChatStorage, Event

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


class EventFeed:
    def __init__(self, storage: ChatStorage, deliver: Callable[[Event], None],
                 poll_interval_secs: float = 0.02, node: str = ""):
        self.storage = storage
        self.deliver = deliver
        self.poll_interval_secs = poll_interval_secs
        self.last_id = 0
        # With a node name the reader's position is saved, and a restart
        # continues where it stopped; without one it starts at the newest event.
        self.node = node
        self._saved_id = 0
        self._saved_at = 0.0
        self._wake = asyncio.Event()
        self._reading = asyncio.Lock()
        self._task: asyncio.Task | None = None
        self._watcher: asyncio.Task | None = None
        self._pruned_at = 0.0

    async def start(self) -> None:
        """Start where this node stopped, or after the newest event (runs once,
        before serving)."""
        saved = await self.storage.load_feed_position(self.node) if self.node else None
        self.last_id = saved if saved is not None else await self.storage.last_event_id()
        self._saved_id = self.last_id
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._follow())
        watch = getattr(self.storage, "watch_event_inserts", None)
        if watch is not None:  # a backend that can push: poll only as a fallback
            self._watcher = loop.create_task(self._watch(watch))

    async def _watch(self, watch: Callable) -> None:
        try:
            if not await watch(self.poke):
                log.info("change streams unavailable; reading the feed by polling")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("change stream ended (%s); reading the feed by polling", exc)

    def poke(self) -> None:
        """Read the feed now: this process just stored something."""
        self._wake.set()

    async def catch_up(self) -> None:
        """Deliver everything stored so far (graceful stop, before sockets close)."""
        while await self._read_batch() == FEED_BATCH:
            pass

    async def stop(self) -> None:
        await self._save_position(force=True)
        for task in (self._watcher, self._task):
            if task:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass

    async def _follow(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_interval_secs)
            except asyncio.TimeoutError:
                pass
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
        """Persist ``last_id`` at most once per interval (and at stop)."""
        now = asyncio.get_running_loop().time()
        if not self.node or self.last_id == self._saved_id:
            return
        if force or now - self._saved_at >= POSITION_SAVE_INTERVAL_SECS:
            await self.storage.save_feed_position(self.node, self.last_id)
            self._saved_id, self._saved_at = self.last_id, now

    async def _read_batch(self) -> int:
        # One reader at a time (the follower and catch_up), or both would read
        # from the same last_id and deliver the same events twice.
        async with self._reading:
            events = await self.storage.read_events(self.last_id, FEED_BATCH)
            for event in events:
                self.last_id = event.id
                try:
                    self.deliver(event)
                except Exception:
                    log.exception("delivering event %s failed", event.id)
            return len(events)
