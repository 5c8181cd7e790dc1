"""The baseline: a bare Tornado WebSocket relay (no auth, no storage, no acks).

``/ws?pair=N&role=store|admin``: each frame a store socket sends is parsed and
relayed as one ``message`` frame to the admin socket of the same pair. It is
the transport's ceiling on this machine, run beside the chat server so both
see the same noise.

    python bench/bare_relay.py PORT
"""

from __future__ import annotations

import json
import sys

import tornado.ioloop
import tornado.web
import tornado.websocket

ADMINS: dict[str, Relay] = {}


class Relay(tornado.websocket.WebSocketHandler):
    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        return subprotocols[0] if subprotocols else None

    def open(self) -> None:
        self.set_nodelay(True)  # as the chat server does
        self.pair = self.get_argument("pair")
        if self.get_argument("role") == "admin":
            ADMINS[self.pair] = self

    def on_message(self, raw: str | bytes) -> None:
        frame = json.loads(raw)
        admin = ADMINS.get(self.pair)
        if admin is not None:
            admin.write_message(
                json.dumps(
                    {"type": "message", "message": {"sender": "store", "body": frame.get("body")}},
                    separators=(",", ":"),
                )
            )

    def on_close(self) -> None:
        if ADMINS.get(self.pair) is self:
            del ADMINS[self.pair]


def main() -> None:
    app = tornado.web.Application([(r"/ws", Relay)], websocket_ping_interval=None)
    app.listen(int(sys.argv[1]), "127.0.0.1")
    print("ready", flush=True)
    tornado.ioloop.IOLoop.current().start()


if __name__ == "__main__":
    main()
