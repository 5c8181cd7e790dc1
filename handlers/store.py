"""Store REST endpoints (API.md "Store endpoints")."""

from __future__ import annotations

from handlers.base import APIHandler
from handlers.paging import history_window
from handlers.render import message_json, posted, session_json
from handlers.validation import Fields, required
from storage.records import Role


class StoreMessageHandler(APIHandler):
    """``POST /v1/chat/store/message/``: a store writes, opening its session if none is open."""

    role = Role.STORE
    metric_name = "store_message"

    async def post(self) -> None:
        """Runs for a POST: store the message (201; 200 when its ``client_id`` repeats)."""
        fields = Fields(self.json_body())
        body, client_id = fields.message_fields()
        fields.check()
        result = await self.service.post_store_message(self.who, required(body), client_id)
        message, session = posted(result)
        self.respond(
            {**message_json(message), "session": session_json(session)},
            201 if result.created else 200,
        )


class StoreSessionHandler(APIHandler):
    """``GET /v1/chat/store/session/``: the store's current session and a window of its history."""

    role = Role.STORE
    metric_name = "store_session"

    async def get(self) -> None:
        """Runs for a GET: the session and its messages after ``after_seq``."""
        after_seq, limit = history_window(self)
        session = await self.service.current_store_session(self.who)
        await self.respond_with_history(session, after_seq, limit)
