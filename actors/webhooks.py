"""``WebhookDispatcher``: delivers the webhook outbox, at least once, in order.

Every change a webhook may want is copied to a durable outbox by storage in
the same atomic step as the change itself (storage/workflow.py). This module
only reads that outbox and hands entries to ``send`` (the HTTP edge,
``handlers/webhook_delivery.py``):

* **one process at a time**: whichever process holds the ``webhooks`` lease in
  storage delivers; it renews the lease every third of its duration, and a
  process that died loses it when it expires, after which another takes over;
* **in order**: per hook, entries go out one at a time in commit order (so in
  order per session), each retried until it succeeds before the next;
* **at least once**: a hook's cursor in storage advances only after its entry
  was delivered, so a crash or a lost lease means an entry may be sent again
  (receivers deduplicate by ``X-Chat-Delivery``), never that one is skipped;
* **retries** back off exponentially with jitter, up to ``max_retry_secs``
  after the event; past that the entry is given up (counted as ``expired``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from actors import metrics
from storage.base import ChatStorage
from storage.workflow import OutboxEntry

log = logging.getLogger(__name__)

LEASE_NAME = "webhooks"
OUTBOX_BATCH = 100
# Delivered entries are pruned from the outbox at most this often.
PRUNE_INTERVAL_SECS = 30.0


@dataclass(frozen=True)
class WebhookTarget:
    """One webhook: where events of which kinds are POSTed, signed with ``secret``."""

    url: str
    events: frozenset[str]
    secret: str


@dataclass(frozen=True)
class WebhookSettings:
    """How webhook deliveries are timed and retried."""

    timeout_secs: float = 10.0  # one POST's time limit
    max_retry_secs: float = 86400.0  # give an event up this long after it happened
    backoff_initial_secs: float = 1.0  # first retry after about this long...
    backoff_max_secs: float = 300.0  # ...doubling up to this
    lease_secs: float = 10.0  # a dead deliverer is replaced within this
    poll_secs: float = 0.5  # how often an idle deliverer looks at the outbox


Send = Callable[[WebhookTarget, OutboxEntry], Awaitable[bool]]


def retry_delay(attempt: int, settings: WebhookSettings) -> float:
    """Exponential backoff with jitter (half to all of the step), so receivers
    coming back are not hit by every sender at the same instant."""
    step = min(settings.backoff_max_secs, settings.backoff_initial_secs * 2.0 ** min(attempt, 30))
    return step * random.uniform(0.5, 1.0)


class WebhookDispatcher:
    """Delivers the outbox's events to the webhooks, in commit order, from the one process
    holding the lease."""

    def __init__(
        self,
        storage: ChatStorage,
        targets: list[WebhookTarget],
        settings: WebhookSettings,
        send: Send,
        node: str,
    ):
        self.storage = storage
        self.targets = targets
        self.settings = settings
        self.send = send
        self.node = node
        self.leader = False
        self._leading = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._pruned_at = 0.0

    async def start(self) -> None:
        """Switch the outbox on for the configured events (off with none), and
        start delivering (runs once, before serving)."""
        kinds = sorted(set().union(*(t.events for t in self.targets))) if self.targets else []
        await self.storage.set_webhook_outbox(tuple(kinds))
        if not self.targets:
            return
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._hold_lease())]
        self._tasks += [loop.create_task(self._deliver_all(t)) for t in self.targets]

    async def stop(self) -> None:
        """Stop delivering (shutdown); the lease lapses and another process,
        or this one's successor, continues from the stored cursors."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _hold_lease(self) -> None:
        while True:
            try:
                self.leader = await self.storage.take_lease(
                    LEASE_NAME, self.node, self.settings.lease_secs
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("webhook lease: %s", exc)
                self.leader = False
            if self.leader:
                self._leading.set()
            else:
                self._leading.clear()
            await asyncio.sleep(self.settings.lease_secs / 3)

    async def _deliver_all(self, target: WebhookTarget) -> None:
        while True:
            await self._leading.wait()
            try:
                if not await self._deliver_batch(target):
                    metrics.WEBHOOK_LAG.set(0)
                    await asyncio.sleep(self.settings.poll_secs)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # storage trouble: try again shortly
                log.warning("webhook delivery to %s paused: %s", target.url, exc)
                await asyncio.sleep(self.settings.poll_secs)

    async def _deliver_batch(self, target: WebhookTarget) -> int:
        """Deliver the next outbox entries for ``target``; how many were read."""
        saved = cursor = await self.storage.load_webhook_cursor(target.url)
        entries = await self.storage.read_outbox(cursor, OUTBOX_BATCH)
        for entry in entries:
            if entry.kind in target.events:
                if not await self._deliver_one(target, entry):
                    break  # lease lost: stop here, the next holder goes on
                # Saved after each delivery: a crash repeats at most this one.
                await self.storage.save_webhook_cursor(target.url, entry.id)
                saved = entry.id
            cursor = entry.id
        else:
            if cursor != saved:  # skipped entries (events this hook does not want)
                await self.storage.save_webhook_cursor(target.url, cursor)
        await self._prune()
        return len(entries)

    async def _deliver_one(self, target: WebhookTarget, entry: OutboxEntry) -> bool:
        """Send until delivered or expired (True), or until the lease is lost."""
        attempt = 0
        while self.leader:
            metrics.WEBHOOK_LAG.set(max(0.0, time.time() - entry.created))
            if await self.send(target, entry):
                metrics.WEBHOOK_DELIVERIES.labels("delivered").inc()
                return True
            metrics.WEBHOOK_DELIVERIES.labels("failed").inc()
            if time.time() - entry.created > self.settings.max_retry_secs:
                log.error(
                    "webhook %s: event %d given up after %.0fs",
                    target.url,
                    entry.id,
                    self.settings.max_retry_secs,
                )
                metrics.WEBHOOK_DELIVERIES.labels("expired").inc()
                return True
            await asyncio.sleep(retry_delay(attempt, self.settings))
            attempt += 1
        return False

    async def _prune(self) -> None:
        now = time.monotonic()
        if now - self._pruned_at >= PRUNE_INTERVAL_SECS:
            self._pruned_at = now
            await self.storage.prune_outbox(tuple(t.url for t in self.targets))
