"""Ops endpoints: ``/metrics``, ``/healthz``, ``/readyz`` (no auth; API.md "Ops")."""

from __future__ import annotations

import asyncio
import os

import prometheus_client
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client import multiprocess

from actors import metrics
from handlers.errors import JSONErrors
from storage.base import ChatStorage

# /readyz answers 503 when storage has not answered within this bound.
READY_TIMEOUT_SECS = 2.0


class MetricsHandler(JSONErrors):
    metric_name = "metrics"

    def initialize(self, storage: ChatStorage) -> None:
        self.storage = storage

    async def get(self) -> None:
        try:
            # The queue's length is read from storage, so it is right across
            # every process and node, not just what this one saw.
            count = await asyncio.wait_for(self.storage.count_open_sessions(),
                                           READY_TIMEOUT_SECS)
            metrics.SESSIONS_OPEN.set(count)
        except Exception:
            pass  # storage down: /readyz says so; still expose everything else
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(generate_latest(metrics_registry()))


def metrics_registry() -> CollectorRegistry:
    """All workers' values together in multiprocess mode, else this process's."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return prometheus_client.REGISTRY


class HealthHandler(JSONErrors):
    metric_name = "healthz"

    def get(self) -> None:
        # The pid tells operators (and tests) which worker answered.
        self.finish({"status": "ok", "pid": os.getpid()})


class ReadyHandler(JSONErrors):
    metric_name = "readyz"

    def initialize(self, storage: ChatStorage) -> None:
        self.storage = storage

    async def get(self) -> None:
        try:
            await asyncio.wait_for(self.storage.ping(), READY_TIMEOUT_SECS)
        except Exception as exc:
            self.set_status(503)
            self.set_header("Retry-After", "5")
            self.finish({"status": "unavailable", "detail": str(exc) or type(exc).__name__})
            return
        self.finish({"status": "ready"})


class NotFoundHandler(JSONErrors):
    """Any path the API does not have: DRF's 404 body."""

    metric_name = "not_found"

    def prepare(self) -> None:
        self.set_status(404)
        self.set_header("Content-Type", "application/json")
        self.finish({"detail": "Not found."})
