"""Sessions and messages as plain dicts: event payloads, and the documents
of a document store (MongoDB)."""

from __future__ import annotations

from typing import Any

from storage.records import Message, Session, SessionStatus, Store


def session_to_doc(session: Session) -> dict[str, Any]:
    """The session as a plain dict: an event's payload, a document's fields."""
    doc = {k: getattr(session, k) for k in _SESSION_SCALARS}
    doc["status"] = session.status.value
    doc["store"] = {
        "id": session.store.id,
        "name": session.store.name,
        "email": session.store.email,
        "logo_url": session.store.logo_url,
    }
    return doc


def session_from_doc(doc: dict[str, Any]) -> Session:
    """The session a ``session_to_doc`` dict describes."""
    values: dict[str, Any] = {k: doc.get(k) for k in _SESSION_SCALARS}
    values["status"] = SessionStatus(doc["status"])
    return Session(store=Store(**doc["store"]), **values)


def message_to_doc(message: Message) -> dict[str, Any]:
    """The message as a plain dict (a document's fields)."""
    return {k: getattr(message, k) for k in _MESSAGE_FIELDS}


def message_from_doc(doc: dict[str, Any]) -> Message:
    """The message a ``message_to_doc`` dict describes."""
    values: dict[str, Any] = {k: doc.get(k) for k in _MESSAGE_FIELDS}
    return Message(**values)


_SESSION_SCALARS = (
    "id",
    "admin_id",
    "last_message_at",
    "created",
    "updated",
    "queued_at",
    "activity_at",
    "last_seq",
    "first_store_message_at",
    "first_admin_reply_at",
)
_MESSAGE_FIELDS = (
    "id",
    "session_id",
    "seq",
    "sender",
    "sender_id",
    "body",
    "client_id",
    "created",
    "event",
)
