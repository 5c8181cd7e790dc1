"""``/v1/chat/schema/``: the OpenAPI 3.1 document of the REST API, as JSON.

``docs/openapi.yaml`` is the hand-written source of truth; it is read and
encoded once, when the application is built, so a broken document stops the
server at start-up instead of failing a client later.
"""

from __future__ import annotations

import json
import os

import yaml

from handlers.errors import JSONErrors

DOCUMENT_PATH = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "openapi.yaml"
)


def load_document(path: str = DOCUMENT_PATH) -> bytes:
    """The document as JSON bytes; runs once per application, at start-up."""
    with open(path, encoding="utf-8") as f:
        document = yaml.safe_load(f)
    return json.dumps(document).encode()


class SchemaHandler(JSONErrors):
    """No auth: the document describes the API, it holds nothing of a user's."""

    metric_name = "schema"

    def initialize(self, document: bytes) -> None:
        """Runs once per request: the OpenAPI document, as JSON bytes."""
        self.document = document

    def get(self) -> None:
        """Runs for a GET: the document."""
        self.set_header("Content-Type", "application/json")
        self.finish(self.document)
