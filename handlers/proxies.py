"""``ChatHTTPServer``: Tornado's HTTPServer with bounded timeouts and proxy
headers believed only from the proxies an operator names.

Tornado's own ``xheaders=True`` takes ``X-Forwarded-For`` from any peer, so any
client could choose the address we log. Here a request's address and scheme
come from ``X-Forwarded-For`` / ``X-Forwarded-Proto`` only when the TCP peer is
one of ``server.trusted_proxies`` (addresses or networks); the client address
is then the nearest hop in the chain that is not itself a trusted proxy.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

import tornado.httpserver
from tornado import httputil, iostream

from handlers.deadlines import ReadDeadline

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """``["10.0.0.1", "10.1.0.0/16"]`` as networks (a bare address is a /32 or /128)."""
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries)


def is_trusted(address: str, networks: tuple[Network, ...]) -> bool:
    """Whether ``address`` lies in one of the trusted proxies' ``networks``."""
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_address(peer: str, forwarded_for: str, networks: tuple[Network, ...]) -> str:
    """The client's address: the peer itself unless it is a trusted proxy; then
    the right-most hop of ``forwarded_for`` that is not a trusted proxy."""
    if not is_trusted(peer, networks):
        return peer
    for hop in reversed(forwarded_for.split(",")):
        hop = hop.strip()
        if not hop:
            continue
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            break  # garbage in the chain: believe nothing further left of it
        if not is_trusted(hop, networks):
            return hop
    return peer


class ChatHTTPServer(tornado.httpserver.HTTPServer):
    """``HTTPServer(app, trusted_proxies=[...], header_timeout=secs, ...)``."""

    def initialize(
        self,
        *args: Any,
        trusted_proxies: Iterable[str] = (),
        header_timeout: float | None = None,
        **kwargs: Any,
    ) -> None:
        """Runs when the server is made: Tornado's options, plus the trusted proxies and the
        header and body deadlines."""
        kwargs["xheaders"] = False  # the trusted proxies decide whose headers count
        super().initialize(*args, **kwargs)
        self.trusted_proxies = parse_networks(trusted_proxies)
        params = self.conn_params
        if header_timeout is not None:
            # Tornado times a request's headers from the moment the connection
            # is idle (idle_connection_timeout sets the same field); a client
            # trickling its headers is cut off by the shorter of the two.
            params.header_timeout = min(header_timeout, params.header_timeout or header_timeout)
        # Both limits are kept by a ReadDeadline per connection, not by Tornado
        # (handlers/deadlines.py says why).
        self.read_timeouts = (params.header_timeout, params.body_timeout)
        params.header_timeout = params.body_timeout = None
        self._deadlines: dict[object, ReadDeadline] = {}

    def handle_stream(self, stream: iostream.IOStream, address: tuple) -> None:
        """Runs for each accepted connection. Nagle off once, for good: Tornado
        turns it on and off again around every response (two setsockopt calls
        per request), only to flush a response it has already written whole."""
        stream.set_nodelay(True)
        # One stream's method replaced: Tornado's later calls become no-ops.
        stream.set_nodelay = _nodelay_stays_on  # type: ignore[method-assign]
        super().handle_stream(stream, address)

    def start_request(
        self, server_conn: object, request_conn: httputil.HTTPConnection
    ) -> httputil.HTTPMessageDelegate:
        """Runs for each request on a connection, before its headers are read."""
        delegate = super().start_request(server_conn, request_conn)
        if self.trusted_proxies:
            delegate = _ForwardedHeaders(delegate, request_conn, self.trusted_proxies)
        deadline = self._deadlines.get(server_conn)
        if deadline is None:
            deadline = self._deadlines[server_conn] = ReadDeadline(*self.read_timeouts)
        return deadline.watch(request_conn, delegate)

    def on_close(self, server_conn: object) -> None:
        """Runs when a connection has closed (or was handed to a WebSocket)."""
        deadline = self._deadlines.pop(server_conn, None)
        if deadline is not None:
            deadline.stop()
        super().on_close(server_conn)


class _ForwardedHeaders(httputil.HTTPMessageDelegate):
    """Rewrites one request's address and scheme (the connection's context, which
    Tornado copies into the request) and restores them when it ends, since
    the next request on a kept-alive connection starts from the peer again."""

    def __init__(
        self,
        delegate: httputil.HTTPMessageDelegate,
        request_conn: httputil.HTTPConnection,
        networks: tuple[Network, ...],
    ):
        self.delegate = delegate
        # An HTTP1Connection's, which HTTPConnection (the interface) does not declare.
        self.context = request_conn.context  # type: ignore[attr-defined]
        self.networks = networks
        self.peer = (self.context.remote_ip, self.context.protocol)

    def headers_received(self, start_line: Any, headers: httputil.HTTPHeaders) -> Any:
        remote_ip, _protocol = self.peer
        if is_trusted(remote_ip, self.networks):
            self.context.remote_ip = client_address(
                remote_ip, headers.get("X-Forwarded-For", ""), self.networks
            )
            proto = headers.get("X-Forwarded-Proto", "").split(",")[-1].strip().lower()
            if proto in ("http", "https"):
                self.context.protocol = proto
        return self.delegate.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Any:
        return self.delegate.data_received(chunk)

    def finish(self) -> None:
        self.delegate.finish()
        self._restore()

    def on_connection_close(self) -> None:
        self.delegate.on_connection_close()
        self._restore()

    def _restore(self) -> None:
        self.context.remote_ip, self.context.protocol = self.peer


def _nodelay_stays_on(value: bool) -> None:
    """A connection's ``set_nodelay`` once ``handle_stream`` has set it: a no-op."""
