"""Ops endpoints: ``/metrics``, ``/healthz``, ``/readyz`` (no auth; API.md "Ops")."""

from __future__ import annotations

import asyncio
import datetime
import os

import prometheus_client
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

from actors import metrics
from handlers.errors import JSONErrors
from storage.base import ChatStorage

# /readyz answers 503 when storage has not answered within this bound.
READY_TIMEOUT_SECS = 2.0


class MetricsHandler(JSONErrors):
    """``GET /metrics``: the Prometheus metrics, with storage's gauges read at scrape."""

    metric_name = "metrics"

    def initialize(self, storage: ChatStorage) -> None:
        """Runs once per request: the storage whose gauges the scrape reads."""
        self.storage = storage

    async def get(self) -> None:
        """Runs for a GET: check storage (the readiness gauge), read the queue's gauges, and
        render every metric."""
        try:
            await check_storage(self.storage)  # the same check as /readyz, for its gauge
            # The queue's length and oldest wait are read from storage, so they
            # are right across every process and node, not just what this one saw.
            count = await asyncio.wait_for(self.storage.count_open_sessions(), READY_TIMEOUT_SECS)
            oldest = await asyncio.wait_for(
                self.storage.list_open_sessions(1, None), READY_TIMEOUT_SECS
            )
            metrics.SESSIONS_OPEN.set(count)
            metrics.QUEUE_OLDEST_WAIT.set(seconds_since(oldest[0].queued_at) if oldest else 0)
        except Exception:
            pass  # storage down: /readyz says so; still expose everything else
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(generate_latest(metrics_registry()))


async def check_storage(storage: ChatStorage) -> None:
    """Ping storage within READY_TIMEOUT_SECS (raises if not), and record the
    outcome in ``chat_storage_ready``. Runs for /readyz and for each scrape."""
    try:
        await asyncio.wait_for(storage.ping(), READY_TIMEOUT_SECS)
    except Exception:
        metrics.STORAGE_READY.set(0)
        raise
    metrics.STORAGE_READY.set(1)


def seconds_since(iso: str) -> float:
    """Seconds from the stored timestamp ``iso`` until now (never negative)."""
    then = datetime.datetime.fromisoformat(iso.rstrip("Z")).replace(tzinfo=datetime.UTC)
    return max(0.0, (datetime.datetime.now(datetime.UTC) - then).total_seconds())


def metrics_registry() -> CollectorRegistry:
    """All workers' values together in multiprocess mode, else this process's."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return prometheus_client.REGISTRY


class HealthHandler(JSONErrors):
    """``GET /healthz``: the process is up (liveness); it does not ask storage."""

    metric_name = "healthz"

    def get(self) -> None:
        """Runs for a GET: 200 with this worker's pid."""
        # The pid tells operators (and tests) which worker answered.
        self.finish({"status": "ok", "pid": os.getpid()})


class ReadyHandler(JSONErrors):
    """``GET /readyz``: the process can serve, storage answering (readiness)."""

    metric_name = "readyz"

    def initialize(self, storage: ChatStorage) -> None:
        """Runs once per request: the storage the check pings."""
        self.storage = storage

    async def get(self) -> None:
        """Runs for a GET: 200 if storage answers, else 503 with the reason."""
        try:
            await check_storage(self.storage)
        except Exception as exc:
            self.set_status(503)
            self.set_header("Retry-After", "5")
            self.finish({"status": "unavailable", "detail": str(exc) or type(exc).__name__})
            return
        self.finish({"status": "ready"})


class _EveryMethod(tuple):
    """A ``SUPPORTED_METHODS`` that holds any method name: Tornado answers a
    name outside it with 405 before ``prepare``, and a path that does not
    exist has no methods to allow, whatever the request's (TRACE included)."""

    def __contains__(self, method: object) -> bool:
        return True


class NotFoundHandler(JSONErrors):
    """Any path the API does not have: DRF's 404 body, whatever the method."""

    metric_name = "not_found"
    SUPPORTED_METHODS = _EveryMethod(JSONErrors.SUPPORTED_METHODS)

    def prepare(self) -> None:
        """Runs before any method: answer 404 as JSON."""
        self.set_status(404)
        self.set_header("Content-Type", "application/json")
        self.finish({"detail": "Not found."})
