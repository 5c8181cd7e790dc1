"""Input validation with DRF's wording, raising ``Invalid`` with a field map."""

from __future__ import annotations

import json
from typing import Any

from actors.errors import Invalid

REQUIRED = "This field is required."
NOT_NULL = "This field may not be null."
NOT_INTEGER = "A valid integer is required."
NOT_STRING = "Not a valid string."
BLANK = "This field may not be blank."

MAX_BODY_CHARS = 10_000
MAX_CLIENT_ID_CHARS = 64


def parse_json_object(raw: bytes | str) -> dict[str, Any]:
    """Decode a request body that must be a JSON object."""
    try:
        data = json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise Invalid(detail=f"JSON parse error - {exc}") from None
    if not isinstance(data, dict):
        kind = {list: "list", str: "str", int: "int", float: "float", bool: "bool"}.get(
            type(data), type(data).__name__)
        raise Invalid({"non_field_errors": [
            f"Invalid data. Expected a dictionary, but got {kind}."]})
    return data


class Fields:
    """Collects every field's error before raising, as DRF serializers do."""

    def __init__(self, data: dict[str, Any]):
        self.data = data
        self.errors: dict[str, list[str]] = {}

    def positive_int(self, name: str) -> int | None:
        if name not in self.data:
            return self._fail(name, REQUIRED)
        value = self.data[name]
        if value is None:
            return self._fail(name, NOT_NULL)
        # bool is an int subclass in Python; JSON's true is not an id.
        if isinstance(value, bool) or not isinstance(value, int):
            return self._fail(name, NOT_INTEGER)
        if value < 1:
            return self._fail(name, "Ensure this value is greater than or equal to 1.")
        return value

    def text(self, name: str, max_chars: int, required: bool = True) -> str | None:
        value = self.data.get(name)
        if value is None:
            if required:
                return self._fail(name, REQUIRED if name not in self.data else NOT_NULL)
            return None
        if not isinstance(value, str):
            return self._fail(name, NOT_STRING)
        value = value.strip()
        if not value:
            return self._fail(name, BLANK)
        if len(value) > max_chars:
            return self._fail(name, f"Ensure this field has no more than {max_chars} characters.")
        return value

    def message_fields(self) -> tuple[str | None, str | None]:
        """``body`` (trimmed, 1..10,000 chars) and optional ``client_id`` (<= 64)."""
        return (self.text("body", MAX_BODY_CHARS),
                self.text("client_id", MAX_CLIENT_ID_CHARS, required=False))

    def check(self) -> None:
        """Raise ``Invalid`` with every error collected so far."""
        if self.errors:
            raise Invalid(self.errors)

    def _fail(self, name: str, message: str) -> None:
        self.errors.setdefault(name, []).append(message)
        return None


def query_int(raw: str | None, name: str, default: int, minimum: int, maximum: int) -> int:
    """A paging parameter from the query string, clamped to ``maximum``."""
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise Invalid({name: [NOT_INTEGER]}) from None
    if value < minimum:
        raise Invalid({name: [f"Ensure this value is greater than or equal to {minimum}."]})
    return min(value, maximum)
