"""``ChatServer``: one process's server, wired together, with its lifecycle.

``start`` opens storage, starts the event feed, and listens; ``shutdown`` is the
graceful stop of API.md: stop accepting, let in-flight requests finish, close
WebSockets with 1001, drain the actors, deliver what is stored, close storage.
"""

from __future__ import annotations

import logging
from typing import Any

import tornado.httpserver
import tornado.web

from actors.chat import ChatService, ChatSettings
from actors.feed import EventFeed
from actors.hub import Hub
from actors.instrumented import InstrumentedStorage
from actors.key_watch import KeyWatch
from actors.presence import PresenceSettings, PresenceTracker
from actors.requeue import RequeueSettings, RequeueSweeper
from actors.webhooks import WebhookDispatcher, WebhookSettings, WebhookTarget
from actors.workflow_events import deliver_workflow_event
from handlers import admin, ops, pages, schema, store, workflow
from handlers.base import InFlight
from handlers.errors import WS_CLOSE_BAD_KEY, WS_CLOSE_GOING_AWAY
from handlers.logs import log_request
from handlers.proxies import ChatHTTPServer
from handlers.throttle import Throttle
from handlers.webhook_delivery import WebhookSender
from handlers.websocket import AdminSocket, SocketSettings, StoreSocket
from storage import open_storage

log = logging.getLogger("chat.server")

# Tornado's own cap on a request body (it drops the connection past it). Ours,
# server.max_body_bytes, answers 413: from Content-Length before the body is
# read, or for a chunked body once it has arrived, read and dropped past our
# limit, so that a client still sending is not reset before it reads the 413.
# This bounds what such a client may send in vain.
DISCARDED_BODY_LIMIT_BYTES = 64 * 1024 * 1024


class ChatServer:
    """The server of one process: its storage, actors and hub wired together, the Tornado
    application, and a graceful stop."""

    def __init__(self, config: dict[str, Any], storage: Any = None):
        self.config = config
        self.raw_storage = storage or open_storage(config["storage"]["url"], config["storage"])
        self.storage = InstrumentedStorage(self.raw_storage)
        self.hub = Hub()
        self.feed = EventFeed(
            self.storage,
            self._deliver,
            float(config["events"]["poll_interval_secs"]),
            node=str(config["events"].get("node") or ""),
        )
        actors_cfg = config["actors"]
        self.service = ChatService(
            self.storage,
            ChatSettings(
                max_sessions_per_admin=int(config["chat"]["max_sessions_per_admin"]),
                mailbox_size=int(actors_cfg["mailbox_size"]),
                idle_timeout_secs=float(actors_cfg["idle_timeout_secs"]),
                max_restarts=int(actors_cfg["max_restarts"]),
                restart_window_secs=float(actors_cfg["restart_window_secs"]),
            ),
            on_stored=self.feed.poke,
        )
        self.key_watch = KeyWatch(self.storage, self.hub, WS_CLOSE_BAD_KEY)
        self.inflight = InFlight()
        self.servers: list[tornado.httpserver.HTTPServer] = []
        self.presence, self.requeue = workflow_parts(
            config, self.service, self.storage, self.feed.poke
        )
        self.service.presence = self.presence
        self.webhook_sender, self.webhooks = webhook_parts(config, self.storage, self.presence.node)

    def _deliver(self, event: Any) -> None:
        """The feed's hand-off: the hub's events, then the support workflow's."""
        self.hub.publish(event)
        deliver_workflow_event(self.hub, event)

    def make_app(self, with_ops: bool = True) -> tornado.web.Application:
        """The Tornado application: the API's routes and sockets, the pages, and (``with_ops``)
        the ops routes."""
        srv, ws = self.config["server"], self.config["websocket"]
        limits = self.config["limits"]
        throttle = Throttle(float(limits["rate_per_sec"]), int(limits["burst"]))
        api = dict(
            service=self.service,
            max_body_bytes=int(srv["max_body_bytes"]),
            throttle=throttle,
            inflight=self.inflight,
        )
        sockets = dict(
            service=self.service,
            hub=self.hub,
            throttle=throttle,
            settings=SocketSettings(
                allowed_origins=tuple(srv["allowed_origins"] or ()),
                auth_timeout_secs=float(ws["auth_timeout_secs"]),
                max_buffered_bytes=int(ws["max_buffered_bytes"]),
            ),
        )
        p = r"/v1/chat"
        routes = [
            (rf"{p}/admin/sessions/open/?", admin.OpenSessionsHandler, api),
            (rf"{p}/admin/sessions/mine/?", admin.MySessionsHandler, api),
            (rf"{p}/admin/session/claim/?", admin.ClaimHandler, api),
            (rf"{p}/admin/session/release/?", admin.ReleaseHandler, api),
            (rf"{p}/admin/session/close/?", admin.CloseHandler, api),
            (rf"{p}/admin/session/([0-9]+)/?", admin.SessionDetailHandler, api),
            (rf"{p}/admin/stores/([0-9]+)/sessions/?", admin.StoreSessionsHandler, api),
            (rf"{p}/admin/message/?", admin.AdminMessageHandler, api),
            (rf"{p}/store/message/?", store.StoreMessageHandler, api),
            (rf"{p}/store/session/?", store.StoreSessionHandler, api),
            (rf"{p}/admin/session/transfer/?", workflow.TransferHandler, api),
            (rf"{p}/admin/session/read/?", workflow.AdminReadHandler, api),
            (rf"{p}/store/session/read/?", workflow.StoreReadHandler, api),
            (rf"{p}/admin/admins/?", workflow.AdminsHandler, api),
            (rf"{p}/schema/?", schema.SchemaHandler, dict(document=schema.load_document())),
            (rf"{p}/admin/ws/?", AdminSocket, sockets),
            (rf"{p}/store/ws/?", StoreSocket, sockets),
            *pages.page_routes(),
        ]
        if with_ops:
            routes += self.ops_routes()
        return tornado.web.Application(
            routes,
            default_handler_class=ops.NotFoundHandler,
            log_function=log_request,
            websocket_ping_interval=float(ws["ping_interval_secs"]) or None,
            websocket_ping_timeout=float(ws["ping_timeout_secs"]) or None,
            websocket_max_message_size=int(ws["max_message_bytes"]),
        )

    def ops_routes(self) -> list:
        """The ops routes (metrics, health, readiness), on the main port or their own."""
        return [
            (r"/metrics", ops.MetricsHandler, dict(storage=self.storage)),
            (r"/healthz", ops.HealthHandler),
            (r"/readyz", ops.ReadyHandler, dict(storage=self.storage)),
        ]

    def http_server(self, app: tornado.web.Application) -> ChatHTTPServer:
        """The HTTP server for ``app``, with the server settings' timeouts and limits."""
        srv = self.config["server"]
        return ChatHTTPServer(
            app,
            max_body_size=max(DISCARDED_BODY_LIMIT_BYTES, int(srv["max_body_bytes"])),
            trusted_proxies=srv["trusted_proxies"],
            idle_connection_timeout=srv["idle_connection_timeout_secs"],
            header_timeout=srv["header_timeout_secs"],
            body_timeout=srv["body_timeout_secs"],
        )

    async def start(
        self, sockets: list | None = None, ops_sockets: list | None = None, port: int | None = None
    ) -> None:
        """Open storage and start serving on ``sockets`` (or ``port``)."""
        await self.raw_storage.setup()
        await self.feed.start()
        await self.presence.start()
        await self.requeue.start()
        await self.webhooks.start()
        await self.key_watch.start()
        main = self.http_server(self.make_app(with_ops=ops_sockets is None))
        if sockets is not None:
            main.add_sockets(sockets)
        else:
            main.listen(port or 0, self.config["server"]["host"])
        self.servers.append(main)
        if ops_sockets is not None:
            ops_server = self.http_server(
                tornado.web.Application(
                    self.ops_routes(),
                    default_handler_class=ops.NotFoundHandler,
                    log_function=log_request,
                )
            )
            ops_server.add_sockets(ops_sockets)
            self.servers.append(ops_server)

    async def shutdown(self) -> None:
        """The graceful stop (SIGTERM/SIGINT), in the order API.md gives."""
        log.info(
            "shutting down: %d requests in flight, %d sockets", self.inflight.count, len(self.hub)
        )
        for server in self.servers:
            server.stop()  # no new connections
        await self.inflight.wait_idle()
        # Finish every queued command (their acks go out), then hand what was
        # stored to the sockets, then close them: clients resume elsewhere.
        await self.requeue.stop()  # before the actors stop: it asks them
        await self.service.shutdown(float(self.config["server"]["shutdown_timeout_secs"]))
        await self.feed.catch_up()
        await self.feed.stop()
        await self.key_watch.stop()
        self.hub.close_all(WS_CLOSE_GOING_AWAY, "Server shutting down; resume elsewhere.")
        for server in self.servers:
            await server.close_all_connections()
        await self.presence.stop()
        await self.webhooks.stop()
        self.webhook_sender.close()
        await self.raw_storage.close()
        log.info("shutdown complete")


def workflow_parts(
    config: dict[str, Any], service: ChatService, storage: Any, poke: Any
) -> tuple[PresenceTracker, RequeueSweeper]:
    """The support workflow's background parts, from ``presence`` and ``chat``
    (checked by settings/schema.py)."""
    presence = PresenceTracker(storage, PresenceSettings(**config["presence"]), on_stored=poke)
    chat = config["chat"]
    requeue = RequeueSweeper(
        service,
        RequeueSettings(
            offline_secs=float(chat["requeue_offline_secs"]),
            unanswered_secs=float(chat["requeue_unanswered_secs"]),
            sweep_secs=float(chat["requeue_sweep_secs"]),
        ),
        presence.live_after,
    )
    return presence, requeue


def webhook_parts(
    config: dict[str, Any], storage: Any, node: str
) -> tuple[WebhookSender, WebhookDispatcher]:
    """The webhook sender and dispatcher, from ``webhooks`` and ``webhook_delivery``."""
    settings = WebhookSettings(**config["webhook_delivery"])
    sender = WebhookSender(settings.timeout_secs)
    targets = [
        WebhookTarget(h["url"], frozenset(h["events"]), h["secret"]) for h in config["webhooks"]
    ]
    return sender, WebhookDispatcher(storage, targets, settings, sender, node)
