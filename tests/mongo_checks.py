"""What must hold in a Mongo database after anything, faults included: read
straight from the documents, not through the code under test."""

from __future__ import annotations

import collections
from typing import Any

# The system message each state change stores, by the event that announces it.
SYSTEM_MESSAGE_OF = {
    "session_claimed": ("admin_connected",),
    # a stale claim's requeue is announced as a release
    "session_released": ("session_released", "session_requeued"),
    "session_closed": ("session_closed",),
    "session_transferred": ("session_transferred",),
}


async def assert_consistent(db: Any) -> None:
    """Every session's messages are numbered 1..n with ``last_seq`` = n; no
    sender's ``client_id`` is stored twice; every message carries its event
    and every claim, release and close its system message
    and its event; each admin's ``active`` count equals the sessions it holds."""
    messages = await db.messages.find({}).sort([("session_id", 1), ("seq", 1)]).to_list(None)
    events = await db.events.find({}).sort("_id", 1).to_list(None)
    sessions = {d["_id"]: d for d in await db.sessions.find({}).to_list(None)}
    by_session = collections.defaultdict(list)
    for message in messages:
        by_session[message["session_id"]].append(message["seq"])
    for sid, session in sessions.items():
        seqs = by_session.get(sid, [])
        assert seqs == list(range(1, len(seqs) + 1)), f"session {sid}: seqs {seqs}"
        assert session.get("last_seq", 0) == len(seqs), f"session {sid}: last_seq"
    keyed = [
        (m["sender"], m["sender_id"], m["client_id"])
        for m in messages
        if m.get("client_id") is not None
    ]
    assert len(keyed) == len(set(keyed)), "a client_id stored twice"
    # A message carries its own event (``feed``), written in the same insert.
    assert all("id" in m.get("feed", {}) for m in messages), "a message without its event"
    assert not [e for e in events if e["kind"] == "message"], "a message event apart"
    feed_ids = [m["feed"]["id"] for m in messages] + [e["_id"] for e in events]
    assert len(feed_ids) == len(set(feed_ids)), "two events with one id"
    for kind, system in SYSTEM_MESSAGE_OF.items():
        changes = collections.Counter(e["session_id"] for e in events if e["kind"] == kind)
        stored = collections.Counter(m["session_id"] for m in messages if m.get("event") in system)
        assert changes == stored, f"{kind} events {dict(changes)} vs {system} {dict(stored)}"
    held = collections.Counter(s["admin_id"] for s in sessions.values() if s["status"] == "claimed")
    for admin in await db.admins.find({}).to_list(None):
        assert admin.get("active", 0) == held.get(admin["_id"], 0), (
            f"admin {admin['_id']}: count {admin.get('active')} holds {held.get(admin['_id'], 0)}"
        )
