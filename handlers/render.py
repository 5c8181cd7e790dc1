"""The API's JSON shapes of the records (API.md "Objects")."""

from __future__ import annotations

from typing import Any

from actors.errors import NotFound
from storage.outcomes import PostResult
from storage.records import Message, Principal, Role, Session, Store


def store_json(store: Store) -> dict[str, Any]:
    """A store as the API shows it."""
    return {"id": store.id, "name": store.name, "logo_url": store.logo_url, "email": store.email}


def session_json(session: Session) -> dict[str, Any]:
    """Exactly the seed's fields, in the seed's order."""
    return {
        "id": session.id,
        "store_id": session.store_id,
        "admin_id": session.admin_id,
        "status": session.status.value,
        "last_message_at": session.last_message_at,
        "created": session.created,
        "updated": session.updated,
        "store": store_json(session.store),
    }


def message_json(message: Message) -> dict[str, Any]:
    """A message as the API shows it."""
    data = {
        "id": message.id,
        "session_id": message.session_id,
        "seq": message.seq,
        "sender": message.sender,
        "sender_id": message.sender_id,
        "body": message.body,
        "client_id": message.client_id,
        "created": message.created,
    }
    if message.event is not None:
        data["event"] = message.event
    return data


def principal_json(who: Principal) -> dict[str, Any]:
    """The ``hello`` payload: the admin or store object."""
    if who.role is Role.ADMIN:
        return {"id": who.id, "name": who.name, "email": who.email}
    return {"id": who.id, "name": who.name, "logo_url": who.logo_url, "email": who.email}


def render_value(value: Any) -> Any:
    """Records inside an event frame, rendered to their API shape."""
    if isinstance(value, Session):
        return session_json(value)
    if isinstance(value, Message):
        return message_json(value)
    return value


def posted(result: PostResult) -> tuple[Message, Session]:
    """The message and session a post that went through hands back (storage
    always does; a missing one is answered as not found rather than crashing)."""
    if result.message is None or result.session is None:
        raise NotFound()
    return result.message, result.session
