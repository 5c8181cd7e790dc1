"""Admin REST endpoints (API.md "Admin endpoints")."""

from __future__ import annotations

from actors.errors import NotFound
from handlers.base import APIHandler
from handlers.paging import decode_cursor, history_window, list_limit, next_url
from handlers.render import message_json, posted, session_json
from handlers.validation import Fields, path_id, required
from storage.records import Role


class AdminHandler(APIHandler):
    """Base of the admin API's handlers: only an admin's key is let in."""

    role = Role.ADMIN

    def session_id_from_body(self) -> int:
        """The ``session_id`` of the JSON body (a positive integer), or 400."""
        fields = Fields(self.json_body())
        session_id = fields.positive_int("session_id")
        fields.check()
        return required(session_id)


class OpenSessionsHandler(AdminHandler):
    """``GET /v1/chat/admin/sessions/open/``: the queue, oldest first, paged by cursor."""

    metric_name = "admin_open_sessions"

    async def get(self) -> None:
        """Runs for a GET: one page of open sessions and the cursor of the next."""
        limit = list_limit(self)
        rows = await self.service.open_sessions(limit + 1, decode_cursor(self))
        self.respond(
            {
                "results": [session_json(s) for s in rows[:limit]],
                "next": next_url(self, rows, limit, "queued_at"),
            }
        )


class MySessionsHandler(AdminHandler):
    """``GET /v1/chat/admin/sessions/mine/``: the sessions this admin holds, latest
    activity first."""

    metric_name = "admin_my_sessions"

    async def get(self) -> None:
        """Runs for a GET: one page of the admin's claimed sessions, with unread counts."""
        limit = list_limit(self)
        rows = await self.service.admin_sessions(self.who, limit + 1, decode_cursor(self))
        unread = await self.service.with_unread(self.who, rows[:limit])
        self.respond(
            {
                "results": [{**session_json(s), "unread": n} for s, n in unread],
                "next": next_url(self, rows, limit, "activity_at"),
            }
        )


class StoreSessionsHandler(AdminHandler):
    """``GET admin/stores/<id>/sessions/``: the store's sessions, newest first,
    paged like My Sessions; only for the admin holding its current session."""

    metric_name = "admin_store_sessions"

    async def get(self, store_id: str) -> None:
        """Runs for a GET: one page of the store's sessions, newest first."""
        limit = list_limit(self)
        before = decode_cursor(self)
        wanted = path_id(store_id)
        if wanted is None:
            raise NotFound()
        rows = await self.service.store_sessions(self.who, wanted, limit + 1, before)
        self.respond(
            {
                "results": [session_json(s) for s in rows[:limit]],
                "next": next_url(self, rows, limit, "created"),
            }
        )


class SessionDetailHandler(AdminHandler):
    """``GET /v1/chat/admin/session/<id>/``: a session and a window of its history."""

    metric_name = "admin_session"

    async def get(self, session_id: str) -> None:
        """Runs for a GET: the session and its messages after ``after_seq``."""
        after_seq, limit = history_window(self)
        wanted = path_id(session_id)
        if wanted is None:
            raise NotFound()
        session = await self.service.readable_session(self.who, wanted)
        await self.respond_with_history(session, after_seq, limit)


class ClaimHandler(AdminHandler):
    """``POST /v1/chat/admin/session/claim/``: take a queued session."""

    metric_name = "admin_claim"

    async def post(self) -> None:
        """Runs for a POST: claim the session for this admin (refusals map to statuses in
        handlers/errors.py)."""
        session = await self.service.claim(self.who, self.session_id_from_body())
        self.respond(session_json(session))


class ReleaseHandler(AdminHandler):
    """``POST /v1/chat/admin/session/release/``: put a held session back in the queue."""

    metric_name = "admin_release"

    async def post(self) -> None:
        """Runs for a POST: release the session this admin holds."""
        session = await self.service.release(self.who, self.session_id_from_body())
        self.respond(session_json(session))


class CloseHandler(AdminHandler):
    """``POST /v1/chat/admin/session/close/``: end a held session."""

    metric_name = "admin_close"

    async def post(self) -> None:
        """Runs for a POST: close the session this admin holds."""
        session = await self.service.close(self.who, self.session_id_from_body())
        self.respond(session_json(session))


class AdminMessageHandler(AdminHandler):
    """``POST /v1/chat/admin/message/``: an admin writes in a session it holds."""

    metric_name = "admin_message"

    async def post(self) -> None:
        """Runs for a POST: store the message (201; 200 when its ``client_id`` repeats)."""
        fields = Fields(self.json_body())
        session_id = fields.positive_int("session_id")
        body, client_id = fields.message_fields()
        fields.check()
        result = await self.service.post_admin_message(
            self.who, required(session_id), required(body), client_id
        )
        message, _session = posted(result)
        self.respond(message_json(message), 201 if result.created else 200)
