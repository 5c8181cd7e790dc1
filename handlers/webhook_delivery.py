"""The HTTP edge of webhooks: render an outbox entry, sign it, POST it.

Body (API.md "Webhooks"): ``{"id", "type", "created", "session", "message"?}``
(plus ``admin`` / ``from_admin`` for claims and transfers, ``reason`` for a
requeue), with ``X-Chat-Delivery: <id>`` (the same on every retry, so a
receiver can drop repeats) and ``X-Chat-Signature: sha256=<hex HMAC-SHA256 of
the raw body with the hook's secret>``. Any 2xx is a delivery; anything else,
a timeout or a refused connection is a failure to retry.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from typing import Any

import tornado.httpclient

from actors.webhooks import WebhookTarget
from handlers.render import message_json, session_json
from storage.documents import message_from_doc, session_from_doc
from storage.workflow import OutboxEntry, iso_from_epoch

log = logging.getLogger(__name__)

# Fields of an event's payload passed through to the body as they are.
PASSED_THROUGH = ("admin", "from_admin", "reason")


def render_body(entry: OutboxEntry) -> bytes:
    """The JSON body POSTed for one outbox entry."""
    payload = entry.payload
    body: dict[str, Any] = {
        "id": entry.id,
        "type": entry.kind,
        "created": iso_from_epoch(entry.created),
    }
    if "session" in payload:
        body["session"] = session_json(session_from_doc(payload["session"]))
    if "message" in payload:
        body["message"] = message_json(message_from_doc(payload["message"]))
    for name in PASSED_THROUGH:
        if name in payload:
            body[name] = payload[name]
    return json.dumps(body, separators=(",", ":")).encode()


def sign(secret: str, body: bytes) -> str:
    """The signature header's value: HMAC-SHA256 of ``body`` under ``secret``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookSender:
    """POSTs with Tornado's ``AsyncHTTPClient`` (one instance per process)."""

    def __init__(self, timeout_secs: float):
        self.timeout_secs = timeout_secs
        self.client = tornado.httpclient.AsyncHTTPClient(force_instance=True)

    async def __call__(self, target: WebhookTarget, entry: OutboxEntry) -> bool:
        """POST ``entry`` to ``target``, signed; whether it was delivered (a 2xx answer)."""
        body = render_body(entry)
        request = tornado.httpclient.HTTPRequest(
            target.url,
            method="POST",
            body=body,
            headers={
                "Content-Type": "application/json",
                "User-Agent": "store-support-chat",
                "X-Chat-Delivery": str(entry.id),
                "X-Chat-Event": entry.kind,
                "X-Chat-Signature": sign(target.secret, body),
            },
            connect_timeout=self.timeout_secs,
            request_timeout=self.timeout_secs,
            follow_redirects=False,
        )
        try:
            response = await self.client.fetch(request, raise_error=False)
        except (OSError, tornado.httpclient.HTTPClientError) as exc:
            log.info("webhook %s: event %d not delivered: %s", target.url, entry.id, exc)
            return False
        if 200 <= response.code < 300:
            return True
        log.info("webhook %s: event %d answered %s", target.url, entry.id, response.code)
        return False

    def close(self) -> None:
        """Close the HTTP client (at shutdown)."""
        self.client.close()
