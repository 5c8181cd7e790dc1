"""Fan-out of the support workflow's events (issue 12) to this process's sockets.

The feed hands every stored event to ``Hub.publish`` and then to
``deliver_workflow_event``; the hub ignores the kinds handled here, and this
ignores the hub's. Like the hub, it runs in the feed's commit order and never
touches the network itself.

| event kind            | frames, to whom                                                  |
|-----------------------|------------------------------------------------------------------|
| `session_transferred` | `session_transferred` to the new and the old holder;             |
|                       | `admin_connected` to the store                                    |
| `read`                | `read` to both sides of the session (the reader's other tabs too) |
| `presence`            | `presence` to every admin socket                                   |
"""

from __future__ import annotations

from actors.hub import Frame, Hub
from storage.documents import session_from_doc
from storage.records import Event


def deliver_workflow_event(hub: Hub, event: Event) -> None:
    """Deliver one stored workflow event (the feed calls this in order)."""
    payload = event.payload
    if event.kind == "session_transferred":
        session = session_from_doc(payload["session"])
        old_holder = payload["from_admin"]["id"]
        # The old holder's sockets stop following the session at once.
        hub.stop_watching(old_holder, event.session_id)
        frame = Frame(
            "session_transferred",
            session=session,
            from_admin=payload["from_admin"],
            admin=payload["admin"],
        )
        hub.send_to_admin(event.admin_id, frame)
        hub.send_to_admin(old_holder, frame)
        hub.send_to_store(
            event.store_id,
            Frame("admin_connected", session_id=event.session_id, admin=payload["admin"]),
        )
    elif event.kind == "read":
        frame = Frame(
            "read", session_id=payload["session_id"], sender=payload["sender"], seq=payload["seq"]
        )
        # Both sides: the other side shows "Seen", and the reader's other tabs
        # (``sender`` is their own side) bring their unread counts down too.
        hub.send_to_admin(event.admin_id, frame)
        hub.send_to_store(event.store_id, frame)
    elif event.kind == "presence":
        hub.send_to_admins(
            Frame("presence", admin_id=payload["admin_id"], status=payload["status"])
        )
