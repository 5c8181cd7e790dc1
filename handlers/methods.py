"""The ``Allow`` header of a 405 (RFC 9110 §15.5.6): the methods a path serves.

A handler class serves the HTTP methods it defines itself; Tornado's
``RequestHandler`` answers every other one with 405. Which ones a class
defines never changes, so the header is worked out once per class.
"""

from __future__ import annotations

from typing import Any

import tornado.web

_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


# allowed_methods' answers by class (a handful: one per handler class).
_ALLOWED: dict[type, str] = {}


def allowed_methods(handler_class: type) -> str:
    """``Allow``'s value for ``handler_class``: its own methods, e.g. ``"GET"``."""
    allowed = _ALLOWED.get(handler_class)
    if allowed is None:
        base = tornado.web.RequestHandler
        allowed = _ALLOWED[handler_class] = ", ".join(
            m for m in _METHODS if getattr(handler_class, m.lower()) is not getattr(base, m.lower())
        )
    return allowed


class AllowOn405(tornado.web.RequestHandler):
    """Mix in first, for handlers whose errors Tornado renders (the web pages):
    their 405s carry ``Allow`` too."""

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Runs when Tornado ends a request with an error."""
        if status_code == 405:
            self.set_header("Allow", allowed_methods(type(self)))
        super().write_error(status_code, **kwargs)
