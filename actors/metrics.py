"""The server's Prometheus metric families, defined once for every module.

With several worker processes ``server.py`` points PROMETHEUS_MULTIPROC_DIR at a
shared directory before this module is imported; the library then keeps each
worker's values in files there and ``/metrics`` adds them up. Gauges therefore
name their cross-process mode: ``livesum`` for per-process counts that add up,
``mostrecent`` for values read from the shared database.
"""

from __future__ import annotations

import asyncio
from typing import Any

import prometheus_client
from prometheus_client import Counter, Gauge, Histogram

# The *_created series double the output and no dashboard here reads them.
prometheus_client.disable_created_metrics()

# Wide enough for a claim that waited a working day in the queue.
WAIT_BUCKETS_SECS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 28800)
MAILBOX_DEPTH_BUCKETS = (0, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000)

HTTP_REQUESTS = Counter(
    "chat_http_requests_total", "HTTP requests answered.", ["handler", "method", "status"])
HTTP_DURATION = Histogram(
    "chat_http_request_duration_seconds", "Time to answer an HTTP request.", ["handler"])

WS_CONNECTIONS = Gauge(
    "chat_websocket_connections", "Open authenticated WebSocket connections.", ["role"],
    multiprocess_mode="livesum")
WS_FRAMES = Counter(
    "chat_websocket_frames_total", "WebSocket frames by direction (in/out) and type.",
    ["direction", "type"])

ACTORS_ACTIVE = Gauge(
    "chat_actors_active", "Session actors alive in memory.", multiprocess_mode="livesum")
ACTOR_MAILBOX_DEPTH = Histogram(
    "chat_actor_mailbox_depth", "Commands already waiting when one more is enqueued.",
    buckets=MAILBOX_DEPTH_BUCKETS)
ACTOR_RESTARTS = Counter(
    "chat_actor_restarts_total", "Actors restarted after a failed command.")
ACTOR_PASSIVATIONS = Counter(
    "chat_actor_passivations_total", "Idle actors stopped to free memory.")

CLAIMS = Counter(
    "chat_claims_total", "Claim attempts by outcome (won, conflict, limit, not_found, closed).",
    ["outcome"])
MESSAGES = Counter(
    "chat_messages_total", "Messages stored, by sender (store, admin, system).", ["sender"])

STORAGE_DURATION = Histogram(
    "chat_storage_operation_duration_seconds", "Time of one storage call.", ["op"])
STORAGE_ERRORS = Counter(
    "chat_storage_errors_total", "Storage calls that failed on the database's side.", ["op"])

SESSIONS_OPEN = Gauge(
    "chat_sessions_open", "Sessions waiting in the queue (read from storage at scrape).",
    multiprocess_mode="mostrecent")
SESSION_WAIT = Histogram(
    "chat_session_wait_seconds", "From a session entering the queue to its claim.",
    buckets=WAIT_BUCKETS_SECS)
FIRST_RESPONSE = Histogram(
    "chat_first_response_seconds", "From a session's first store message to the first admin reply.",
    buckets=WAIT_BUCKETS_SECS)


class Tally:
    """A labelled counter counted in bulk: increments collect in a dict and
    reach the Prometheus counter once per event-loop pass, so the hot path pays
    a dict update per event instead of a locked counter update (or several).
    A scrape runs in a later pass, so it always sees every increment."""

    def __init__(self, counter: Counter, *leading_labels: str):
        self._counter = counter
        self._leading = leading_labels
        self._counts: dict[str, int] = {}
        self._children: dict[str, Any] = {}

    def add(self, label: str, n: int = 1) -> None:
        counts = self._counts
        if not counts:
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:  # no loop (a script, a test): count at once
                counts[label] = n
                self.flush()
                return
        counts[label] = counts.get(label, 0) + n

    def flush(self) -> None:
        """Add the collected counts to the counter (runs at the end of a pass)."""
        counts, self._counts = self._counts, {}
        for label, n in counts.items():
            child = self._children.get(label)
            if child is None:
                child = self._children[label] = self._counter.labels(*self._leading, label)
            child.inc(n)


FRAMES_OUT = Tally(WS_FRAMES, "out")
MESSAGES_STORED = Tally(MESSAGES)
