"""Webhooks to a real receiver (a small Tornado app in the test) from real
server processes: down at first, failing and slow now and then, and the server
SIGKILLed and restarted in the middle. Every event arrives, at least once, in
order per session, signed."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time

import pytest
import tornado.httpserver
import tornado.web
import yaml

from handlers.webhook_delivery import render_body, sign
from storage.workflow import OutboxEntry
from tests.helpers import Api, ServerProcess, create_keys, free_port
from tests.processes.test_ops import parse_metrics

SECRET = "s3cret"


class Receiver:
    """What arrived (only requests answered 2xx count), and how to misbehave."""

    def __init__(self) -> None:
        self.requests = 0
        self.accepted: list[dict] = []
        self.bad_signatures = 0

    def app(self) -> tornado.web.Application:
        return tornado.web.Application([(r"/hook", ReceiverHandler, {"receiver": self})])


class ReceiverHandler(tornado.web.RequestHandler):
    def initialize(self, receiver: Receiver) -> None:
        self.receiver = receiver

    async def post(self) -> None:
        r = self.receiver
        r.requests += 1
        n = r.requests
        body = self.request.body
        # The receiver's check, as the README shows it.
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, self.request.headers.get("X-Chat-Signature", "")):
            r.bad_signatures += 1
            self.set_status(401)
            return
        if n % 5 == 2:
            self.set_status(500)  # sometimes broken
            return
        if n % 7 == 3:
            await asyncio.sleep(0.4)  # sometimes slow (within the sender's timeout)
        if n % 11 == 5:
            await asyncio.sleep(1.5)  # sometimes slower than the sender waits
        event = json.loads(body)
        assert self.request.headers["X-Chat-Delivery"] == str(event["id"])
        r.accepted.append(event)
        self.set_status(204)


def write_config(tmp_path, receiver_port: int) -> str:
    path = tmp_path / "hooks.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "webhooks": [
                    {
                        "url": f"http://127.0.0.1:{receiver_port}/hook",
                        "events": [
                            "session_opened",
                            "session_claimed",
                            "session_closed",
                            "message",
                        ],
                        "secret": SECRET,
                    }
                ],
                "webhook_delivery": {
                    "timeout_secs": 1,
                    "backoff_initial_secs": 0.05,
                    "backoff_max_secs": 0.4,
                    "lease_secs": 1,
                    "poll_secs": 0.05,
                },
                "events": {"poll_interval_secs": 0.05},
            }
        )
    )
    return str(path)


async def traffic(api: Api, store_keys: list[str], admin_key: str, rounds: range) -> list[int]:
    sids = []
    for i in rounds:
        key = store_keys[i]
        first = await api.post("/store/message/", key, {"body": f"help {i}"})
        assert first.status == 201, first
        sid = first.json["session"]["id"]
        sids.append(sid)
        await api.post("/store/message/", key, {"body": f"more {i}"})
        assert (
            await api.post("/admin/session/claim/", admin_key, {"session_id": sid})
        ).status == 200
        await api.post("/admin/message/", admin_key, {"session_id": sid, "body": f"reply {i}"})
        if i % 2 == 0:
            await api.post("/admin/session/close/", admin_key, {"session_id": sid})
    return sids


async def expected_events(api: Api, admin_key: str, sids: list[int]) -> dict[int, list]:
    """Per session, what must arrive: its opening, claim, messages and close."""
    wanted = {}
    for sid in sids:
        history = (await api.get(f"/admin/session/{sid}/?limit=1000", admin_key)).json
        kinds = [("session_opened", None)]
        for m in history["messages"]:
            kinds.append(("message", m["id"]))
        kinds.append(("session_claimed", None))
        if history["status"] == "closed":
            kinds.append(("session_closed", None))
        wanted[sid] = kinds
    return wanted


@pytest.fixture(params=["sqlite", "mongodb-compatible-wire-server"])
def storage_url(request, db_url) -> str:
    """The database both server processes share: a SQLite file, or a database
    on the MongoDB-compatible wire server (skipped where that tier is absent)."""
    if request.param == "sqlite":
        return db_url
    wire_server = request.getfixturevalue("wire_server")
    return wire_server.url_for(f"chat_hooks_{time.monotonic_ns()}")


@pytest.mark.gen_test(timeout=180)
async def test_every_event_arrives_in_order_per_session_signed_across_a_restart(
    storage_url, processes, tmp_path
):
    db_url = storage_url
    admin_keys, store_keys = create_keys(db_url, admins=1, stores=6)
    receiver = Receiver()
    receiver_port = free_port()
    config = write_config(tmp_path, receiver_port)
    first = ServerProcess(db_url, config_path=config).start(str(tmp_path / "log1"))
    processes.append(first)
    started = time.monotonic()
    api = Api(first.base_url + "/v1/chat")
    sids = await traffic(api, store_keys, admin_keys[0], range(0, 3))
    # The receiver is down so far; the server dies (no graceful stop) with
    # everything undelivered, and a new one takes over the same database.
    first.kill()
    second = ServerProcess(db_url, config_path=config).start(str(tmp_path / "log2"))
    processes.append(second)
    api = Api(second.base_url + "/v1/chat")
    await asyncio.sleep(max(0.0, 2.0 - (time.monotonic() - started)))
    server = tornado.httpserver.HTTPServer(receiver.app())
    server.listen(receiver_port, "127.0.0.1")  # the receiver comes up
    sids += await traffic(api, store_keys, admin_keys[0], range(3, 6))
    wanted = await expected_events(api, admin_keys[0], sids)
    total = sum(len(v) for v in wanted.values())

    def arrived() -> dict[int, list]:
        by_session: dict[int, list] = {}
        for event in receiver.accepted:
            by_session.setdefault(event["session"]["id"], []).append(event)
        return by_session

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        got = {
            (e["type"], e["session"]["id"], (e.get("message") or {}).get("id"))
            for e in receiver.accepted
        }
        if len(got) >= total:
            break
        await asyncio.sleep(0.2)
    server.stop()
    assert receiver.bad_signatures == 0
    by_session = arrived()
    for sid, kinds in wanted.items():
        events = by_session.get(sid, [])
        got = {(e["type"], (e.get("message") or {}).get("id")) for e in events}
        assert set(kinds) <= got, f"session {sid}: missing {set(kinds) - got}"
        # In order per session: ids (commit order) ascend, repeats aside.
        first_seen = []
        for e in events:
            if e["id"] not in first_seen:
                first_seen.append(e["id"])
        assert first_seen == sorted(first_seen), f"session {sid} out of order"
        seqs = [e["message"]["seq"] for e in events if e["type"] == "message"]
        assert sorted(set(seqs)) == list(range(1, len(set(seqs)) + 1))
    assert receiver.requests > len({e["id"] for e in receiver.accepted})  # it did misbehave
    metrics_api = Api(second.base_url)
    samples = parse_metrics((await metrics_api.get("/metrics")).json)
    # The lag gauge holds the age of the entry being delivered until the
    # deliverer finds the outbox empty: once it does, the lag is back to 0.
    lag_deadline = time.monotonic() + 10
    while samples["chat_webhook_lag_seconds"] > 0 and time.monotonic() < lag_deadline:
        await asyncio.sleep(0.2)
        samples = parse_metrics((await metrics_api.get("/metrics")).json)
    # The second server delivered what reached the receiver, after failures.
    assert samples['chat_webhook_deliveries_total{outcome="delivered"}'] >= total
    assert samples['chat_webhook_deliveries_total{outcome="failed"}'] > 0
    assert samples['chat_webhook_deliveries_total{outcome="expired"}'] == 0
    assert samples["chat_webhook_lag_seconds"] == 0  # caught up


def test_the_body_and_signature_a_receiver_sees():
    entry = OutboxEntry(
        7,
        "session_opened",
        3,
        {
            "session": {
                "id": 3,
                "admin_id": None,
                "status": "open",
                "last_message_at": None,
                "created": "2026-01-01T00:00:00.000000Z",
                "updated": "2026-01-01T00:00:00.000000Z",
                "queued_at": "2026-01-01T00:00:00.000000Z",
                "activity_at": "2026-01-01T00:00:00.000000Z",
                "last_seq": 0,
                "store": {"id": 1, "name": "Tech", "email": None, "logo_url": None},
            }
        },
        1767225600.0,
    )
    body = render_body(entry)
    event = json.loads(body)
    assert (event["id"], event["type"], event["created"]) == (
        7,
        "session_opened",
        "2026-01-01T00:00:00.000000Z",
    )
    assert event["session"]["store_id"] == 1 and "queued_at" not in event["session"]
    assert sign("k", body) == "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()
