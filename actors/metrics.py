"""The server's Prometheus metric families, defined once for every module.

With several worker processes ``server.py`` points PROMETHEUS_MULTIPROC_DIR at a
shared directory before this module is imported; the library then keeps each
worker's values in files there and ``/metrics`` adds them up. Gauges therefore
name their cross-process mode: ``livesum`` for per-process counts that add up,
``mostrecent`` for values read from the shared database.
"""

from __future__ import annotations

import asyncio
import bisect
from typing import Any

import prometheus_client
from prometheus_client import Counter, Gauge, Histogram

# The *_created series double the output and no dashboard here reads them.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]  # unannotated upstream

# Wide enough for a claim that waited a working day in the queue.
WAIT_BUCKETS_SECS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 28800)
MAILBOX_DEPTH_BUCKETS = (0, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000)


class BulkMetric:
    """A Counter or Histogram counted in bulk, for the families the message
    path touches several times per message: ``labels(...).inc()`` and
    ``.observe(v)`` only note the value (a dict or list update); the notes
    reach the Prometheus family once per event-loop pass, added up. A scrape
    runs in a later pass than any increment, so it sees every one."""

    def __init__(self, family: Any):
        self.family = family
        self._children: dict[tuple[str, ...], _BulkChild] = {}
        self._pending: dict[tuple[str, ...], list[float]] = {}

    def labels(self, *values: str) -> _BulkChild:
        """The child for these label values (made once, then reused)."""
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = _BulkChild(self, values)
        return child

    def inc(self, amount: float = 1) -> None:
        """Note an increment; it reaches the family at the end of this loop pass."""
        self._note((), amount)

    def observe(self, amount: float) -> None:
        """Note an observation; it reaches the family at the end of this loop pass."""
        self._note((), amount)

    def _note(self, values: tuple[str, ...], amount: float) -> None:
        pending = self._pending
        if not pending:
            if not _DIRTY:
                try:
                    asyncio.get_running_loop().call_soon(_flush_dirty)
                except RuntimeError:  # no loop (a script): record at once
                    pending[values] = [amount]
                    self.flush()
                    return
            _DIRTY.append(self)
        notes = pending.get(values)
        if notes is None:
            pending[values] = [amount]
        else:
            notes.append(amount)

    def flush(self) -> None:
        """Hand the notes to the family (runs at the end of a loop pass)."""
        pending, self._pending = self._pending, {}
        for values, notes in pending.items():
            target = self.family.labels(*values) if values else self.family
            if isinstance(self.family, Histogram):
                _observe_all(target, notes)
            else:
                target.inc(sum(notes))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.family, name)


# Bulk metrics with notes in this loop pass: one flush call for all of them.
_DIRTY: list[BulkMetric] = []


def _flush_dirty() -> None:
    """Runs once at the end of each loop pass in which a bulk metric was noted."""
    dirty = _DIRTY[:]
    _DIRTY.clear()
    for metric in dirty:
        metric.flush()


class _BulkChild:
    __slots__ = ("metric", "values")

    def __init__(self, metric: BulkMetric, values: tuple[str, ...]):
        self.metric = metric
        self.values = values

    def inc(self, amount: float = 1) -> None:
        notes = self.metric._pending.get(self.values)
        if notes is None:
            self.metric._note(self.values, amount)
        else:  # noted already in this pass: the common case, one append
            notes.append(amount)

    observe = inc


def _observe_all(histogram: Any, amounts: list[float]) -> None:
    """Observe many values: one update per bucket touched, not per value."""
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None:  # another client version
        for amount in amounts:
            histogram.observe(amount)
        return
    counts: dict[int, int] = {}
    for amount in amounts:
        i = bisect.bisect_left(bounds, amount)
        counts[i] = counts.get(i, 0) + 1
    total.inc(sum(amounts))
    for i, n in counts.items():
        buckets[i].inc(n)


def _bulk(family: Any) -> BulkMetric:
    return BulkMetric(family)


# Counted in bulk too: every REST request touches both (handlers/logs.py).
HTTP_REQUESTS = _bulk(
    Counter("chat_http_requests_total", "HTTP requests answered.", ["handler", "method", "status"])
)
HTTP_DURATION = _bulk(
    Histogram("chat_http_request_duration_seconds", "Time to answer an HTTP request.", ["handler"])
)

WS_CONNECTIONS = Gauge(
    "chat_websocket_connections",
    "Open authenticated WebSocket connections.",
    ["role"],
    multiprocess_mode="livesum",
)
WS_FRAMES = _bulk(
    Counter(
        "chat_websocket_frames_total",
        "WebSocket frames by direction (in/out) and type.",
        ["direction", "type"],
    )
)

ACTORS_ACTIVE = Gauge(
    "chat_actors_active", "Session actors alive in memory.", multiprocess_mode="livesum"
)
ACTOR_MAILBOX_DEPTH = _bulk(
    Histogram(
        "chat_actor_mailbox_depth",
        "Commands already waiting when one more is enqueued.",
        buckets=MAILBOX_DEPTH_BUCKETS,
    )
)
ACTOR_RESTARTS = Counter("chat_actor_restarts_total", "Actors restarted after a failed command.")
ACTOR_PASSIVATIONS = Counter("chat_actor_passivations_total", "Idle actors stopped to free memory.")

CLAIMS = _bulk(
    Counter(
        "chat_claims_total",
        "Claim attempts by outcome (won, conflict, limit, not_found, closed).",
        ["outcome"],
    )
)
MESSAGES = _bulk(
    Counter("chat_messages_total", "Messages stored, by sender (store, admin, system).", ["sender"])
)

STORAGE_DURATION = _bulk(
    Histogram("chat_storage_operation_duration_seconds", "Time of one storage call.", ["op"])
)
STORAGE_ERRORS = Counter(
    "chat_storage_errors_total", "Storage calls that failed on the database's side.", ["op"]
)

SESSIONS_OPEN = Gauge(
    "chat_sessions_open",
    "Sessions waiting in the queue (read from storage at scrape).",
    multiprocess_mode="mostrecent",
)
SESSION_WAIT = Histogram(
    "chat_session_wait_seconds",
    "From a session entering the queue to its claim.",
    buckets=WAIT_BUCKETS_SECS,
)
FIRST_RESPONSE = Histogram(
    "chat_first_response_seconds",
    "From a session's first store message to the first admin reply.",
    buckets=WAIT_BUCKETS_SECS,
)
QUEUE_OLDEST_WAIT = Gauge(
    "chat_queue_oldest_wait_seconds",
    "How long the oldest session in the queue has waited"
    " (read from storage at scrape; 0 when empty).",
    multiprocess_mode="mostrecent",
)
STORAGE_READY = Gauge(
    "chat_storage_ready",
    "1 when storage answered the last check (/readyz or a scrape), else 0.",
    multiprocess_mode="mostrecent",
)

# --- the support workflow (issue 12) -----------------------------------------------
TRANSFERS = Counter("chat_transfers_total", "Sessions handed from one admin to another.")
REQUEUES = Counter(
    "chat_requeues_total",
    "Stale claims put back in the queue, by reason (offline, unanswered).",
    ["reason"],
)
WEBHOOK_DELIVERIES = Counter(
    "chat_webhook_deliveries_total",
    "Webhook delivery attempts by outcome (delivered, failed: retried later, expired: given up).",
    ["outcome"],
)
WEBHOOK_LAG = Gauge(
    "chat_webhook_lag_seconds",
    "Age of the oldest webhook event not yet delivered (0 when caught up).",
    multiprocess_mode="mostrecent",
)
# Every outcome and reason is exported from the start (at 0), so dashboards and
# alerts see the series before the first one happens.
for _reason in ("offline", "unanswered"):
    REQUEUES.labels(_reason)
for _outcome in ("delivered", "failed", "expired"):
    WEBHOOK_DELIVERIES.labels(_outcome)
