"""The server's Prometheus metric families, defined once for every module.

With several worker processes ``server.py`` points PROMETHEUS_MULTIPROC_DIR at a
shared directory before this module is imported; the library then keeps each
worker's values in files there and ``/metrics`` adds them up. Gauges therefore
name their cross-process mode: ``livesum`` for per-process counts that add up,
``mostrecent`` for values read from the shared database.
"""

from __future__ import annotations

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
QUEUE_OLDEST_WAIT = Gauge(
    "chat_queue_oldest_wait_seconds",
    "How long the oldest session in the queue has waited (read from storage at scrape; 0 when empty).",
    multiprocess_mode="mostrecent")
STORAGE_READY = Gauge(
    "chat_storage_ready", "1 when storage answered the last check (/readyz or a scrape), else 0.",
    multiprocess_mode="mostrecent")
