"""Logging: one line per request, text or JSON, with keys never written out.

``log_request`` is tornado's ``log_function``: it runs once after every
response (REST, ops, and WebSocket upgrades alike), counts the request in the
metrics and writes the access line. The line carries the path without its
query string, and every formatter passes its output through ``redact_secrets``
as a second guard, so a key sent in a header, a query string or an auth frame
never reaches the logs.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

from actors import metrics

access_log = logging.getLogger("chat.access")

# A key is 40 hex digits; also catch "token=...", "Token ..." and "token": "..."
# whatever their shape, in case a client sends something key-like.
_SECRET_PATTERNS = (
    re.compile(r"(?i)(token[\"']?\s*[:=]\s*[\"']?|token\s+)[^\s\"'&,}]+"),
    re.compile(r"\b[0-9a-f]{40}\b"),
)


def redact_secrets(text: str) -> str:
    """``text`` with API keys and other secrets replaced by ``[redacted]``."""
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + "[redacted]", text)
    return text


def log_request(handler: Any) -> None:
    """Tornado's per-request hook: metrics and one access-log line."""
    request = handler.request
    status = handler.get_status()
    elapsed = request.request_time()
    name = getattr(handler, "metric_name", "other")  # a bounded set of labels
    metrics.HTTP_REQUESTS.labels(name, request.method, str(status)).inc()
    metrics.HTTP_DURATION.labels(name).observe(elapsed)
    level = logging.WARNING if status >= 500 else logging.INFO
    if not access_log.isEnabledFor(level):
        return  # the line's fields are not even built (logging.level above INFO)
    principal = getattr(handler, "principal", None)
    who = f"{principal.role.value}:{principal.id}" if principal else "-"
    access_log.log(
        level,
        "%s %s %d %.1fms %s",
        request.method,
        request.path,
        status,
        elapsed * 1000,
        who,
        extra={
            "fields": {
                "method": request.method,
                "path": request.path,
                "status": status,
                "ms": round(elapsed * 1000, 1),
                "who": who,
                "remote": request.remote_ip,
            }
        },
    )


class TextFormatter(logging.Formatter):
    """Log lines as text, secrets redacted."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """Runs for each record: the text line, secrets redacted."""
        return redact_secrets(super().format(record))


class JSONFormatter(logging.Formatter):
    """Log lines as one JSON object each, secrets redacted."""

    def format(self, record: logging.LogRecord) -> str:
        """Runs for each record: one JSON line, secrets redacted."""
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return redact_secrets(json.dumps(entry, default=str))


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Configure the root logger once, at start-up (before serving)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Tornado's own access log would repeat ours, query string included.
    logging.getLogger("tornado.access").setLevel(logging.WARNING)
