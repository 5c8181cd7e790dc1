"""The web pages: ``/console/`` (admins) and ``/widget/`` (stores), static files
from ``web/`` served with a strict Content-Security-Policy (API.md "Web pages").

The pages are plain ES modules talking to the public API only, so the server
has nothing to render: no templates, no inline script, no key in any URL.
"""

from __future__ import annotations

import os

import tornado.web

from handlers.methods import AllowOn405

WEB_ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "web")

# Only our own files run; no inline script or style, so an injected body could
# not execute even if a view forgot to escape it. Logos are the stores' own
# https URLs. The pages open WebSockets to this same host ('self' covers ws:
# and wss: in current browsers).
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' https: data:",
        "connect-src 'self'",
        "manifest-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
# The only folders of web/ that are served (the regex below repeats them).
PAGE_DIRS = ("console", "widget", "shared")


class PageHandler(AllowOn405, tornado.web.StaticFileHandler):
    """Files under ``web/console/``, ``web/widget/`` and ``web/shared/``."""

    metric_name = "pages"

    def set_default_headers(self) -> None:
        """Runs for every response of this handler, errors included."""
        for name, value in SECURITY_HEADERS.items():
            self.set_header(name, value)

    def set_extra_headers(self, path: str) -> None:
        """Runs before a file is sent: revalidate each load (the ETag makes that
        cheap), so a deploy reaches open consoles on their next reload."""
        self.set_header("Cache-Control", "no-cache")


class FolderRedirect(AllowOn405, tornado.web.RedirectHandler):
    """``/console`` to ``/console/``; its 405s carry ``Allow`` too."""


def page_routes() -> list:
    """The routes to add to the application."""
    dirs = "|".join(PAGE_DIRS)
    return [
        (rf"/({dirs})", FolderRedirect, {"url": "/{0}/"}),
        (rf"/((?:{dirs})/.*)", PageHandler, {"path": WEB_ROOT, "default_filename": "index.html"}),
    ]
