"""Input validation with DRF's wording, raising ``Invalid`` with a field map.

Everything a client sends is checked here, at the edge, against what storage
can hold: integers within SQLite's and BSON's signed 64 bits, strings of
Unicode scalar values without NUL (a lone surrogate cannot be encoded as UTF-8;
NUL truncates strings in C APIs), JSON no deeper than ``MAX_JSON_DEPTH``. So no
client's input can make an actor or a storage call fail (API.md "Limits").
"""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

import orjson

from actors.errors import Invalid

REQUIRED = "This field is required."
NOT_NULL = "This field may not be null."
NOT_INTEGER = "A valid integer is required."
NOT_STRING = "Not a valid string."
NUL_CHARACTER = "Null characters are not allowed."
BLANK = "This field may not be blank."

MAX_BODY_CHARS = 10_000
MAX_CLIENT_ID_CHARS = 64
# The largest integer SQLite (INTEGER) and BSON (int64) store.
MAX_INT = 2**63 - 1
TOO_LARGE = f"Ensure this value is less than or equal to {MAX_INT}."
# Deep enough for any real request (ours are flat maps); shallow enough that
# no decoder or walk over the result comes near Python's recursion limit.
MAX_JSON_DEPTH = 32

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_DECIMAL = re.compile(r"-?[0-9]+\Z")


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored as text (DRF's message), or None if it can."""
    if "\x00" in value:
        return NUL_CHARACTER
    if not value.isascii() and _LONE_SURROGATE.search(value):  # ASCII: none to find
        return NOT_STRING
    return None


def is_storable_text(value: Any) -> bool:
    """Whether ``value`` is text storage can keep as it is."""
    return isinstance(value, str) and text_problem(value) is None


def is_int(value: Any) -> bool:
    """A JSON/msgpack integer (bool is an int subclass in Python; JSON's true is not)."""
    return isinstance(value, int) and not isinstance(value, bool)


def integral(value: Any) -> int | None:
    """``value`` as an int when it is a number with no fraction, else None.

    JSON Schema's ``integer`` (so OpenAPI 3.1's) includes ``5.0``, and DRF's
    ``IntegerField`` reads it as 5: so do we, in bodies and in frames alike.
    ``5.5``, ``true``, ``"5"``, NaN and the infinities (msgpack can carry
    them) are no integer. Callers try ``is_int`` first, so a plain integer,
    the common case, costs nothing more. A float holds 53 bits: a number
    written with a fraction or an exponent past 2**53 is read as the nearest
    float, as every JSON decoder that makes it a float does.
    """
    if is_int(value):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _reject_constant(name: str) -> float:
    raise ValueError(f"Out of range float values are not JSON compliant: {name}")


# orjson reads integers past 64 bits as floats; such documents take the
# stdlib's path, which keeps them integers (so range errors read as DRF's).
_LONG_INTEGER_TEXT = re.compile(r"[0-9]{19}")
_LONG_INTEGER_BYTES = re.compile(rb"[0-9]{19}")


def decode_json(raw: bytes | str) -> Any:
    """Strict JSON (no NaN/Infinity, bounded depth); ``Invalid`` with DRF's
    ``JSON parse error - ...`` otherwise.

    orjson first (a few times faster); anything it refuses or might read
    differently goes through the stdlib, whose errors are the ones we show."""
    if isinstance(raw, str):
        long_integer = _LONG_INTEGER_TEXT.search(raw) is not None
    else:
        long_integer = _LONG_INTEGER_BYTES.search(raw) is not None
    if not long_integer:
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
        else:
            if _openings(raw) > MAX_JSON_DEPTH:  # else it cannot nest that deep
                check_depth(data, "JSON")
            return data
    try:
        data = json.loads(raw, parse_constant=_reject_constant)
    except RecursionError:  # nesting far past the bound: the decoder gave up
        raise Invalid(
            detail=f"JSON parse error - nesting deeper than {MAX_JSON_DEPTH} levels"
        ) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise Invalid(detail=f"JSON parse error - {exc}") from None
    check_depth(data, "JSON")
    return data


def _openings(raw: bytes | str) -> int:
    """How many ``{`` and ``[`` the text has: a bound on its nesting."""
    if isinstance(raw, str):
        return raw.count("{") + raw.count("[")
    return raw.count(b"{") + raw.count(b"[")


def check_depth(data: Any, syntax: str) -> None:
    """``Invalid`` if ``data`` nests more than ``MAX_JSON_DEPTH`` lists/maps."""
    level = 0
    containers = [data] if isinstance(data, (dict, list)) else []
    while containers:  # breadth first, one level at a time: no recursion
        level += 1
        if level > MAX_JSON_DEPTH:
            raise Invalid(
                detail=f"{syntax} parse error - nesting deeper than {MAX_JSON_DEPTH} levels"
            )
        inner: list[Any] = []
        for item in containers:
            values = item.values() if isinstance(item, dict) else item
            inner.extend(v for v in values if isinstance(v, (dict, list)))
        containers = inner


def parse_json_object(raw: bytes | str) -> dict[str, Any]:
    """Decode a request body that must be a JSON object."""
    data = decode_json(raw or b"{}")
    if data is None:
        raise Invalid({"non_field_errors": ["No data provided"]})  # DRF's words for null
    if not isinstance(data, dict):
        kind = {list: "list", str: "str", int: "int", float: "float", bool: "bool"}.get(
            type(data), type(data).__name__
        )
        raise Invalid(
            {"non_field_errors": [f"Invalid data. Expected a dictionary, but got {kind}."]}
        )
    return data


class Fields:
    """Collects every field's error before raising, as DRF serializers do."""

    def __init__(self, data: dict[str, Any]):
        self.data = data
        self.errors: dict[str, list[str]] = {}

    def positive_int(self, name: str) -> int | None:
        """The field as an integer of at least 1, or None with the error noted."""
        return self.int_in_range(name, minimum=1)

    def int_in_range(self, name: str, minimum: int, default: int | None = None) -> int | None:
        """An integer ``minimum``..``MAX_INT``; ``default`` when absent (if given)."""
        if name not in self.data:
            if default is None:
                self._fail(name, REQUIRED)
            return default
        value = self.data[name]
        if value is None:
            self._fail(name, NOT_NULL)
            return None
        if not is_int(value):
            value = integral(value)  # 5.0 is 5; checked only past the common case
            if value is None:
                self._fail(name, NOT_INTEGER)
                return None
        if value < minimum:
            self._fail(name, f"Ensure this value is greater than or equal to {minimum}.")
            return None
        if value > MAX_INT:
            self._fail(name, TOO_LARGE)
            return None
        return value

    def text(self, name: str, max_chars: int, required: bool = True) -> str | None:
        """The field as text of at most ``max_chars``, or None with the error noted
        (``required``: missing is an error)."""
        value = self.data.get(name)
        if value is None:
            if required:
                self._fail(name, REQUIRED if name not in self.data else NOT_NULL)
                return None
            return None
        if not isinstance(value, str):
            self._fail(name, NOT_STRING)
            return None
        problem = text_problem(value)
        if problem:
            self._fail(name, problem)
            return None
        value = value.strip()
        if not value:
            self._fail(name, BLANK)
            return None
        if len(value) > max_chars:
            self._fail(name, f"Ensure this field has no more than {max_chars} characters.")
            return None
        return value

    def message_fields(self) -> tuple[str | None, str | None]:
        """``body`` (trimmed, 1..10,000 chars) and optional ``client_id`` (<= 64)."""
        return (
            self.text("body", MAX_BODY_CHARS),
            self.text("client_id", MAX_CLIENT_ID_CHARS, required=False),
        )

    def check(self) -> None:
        """Raise ``Invalid`` with every error collected so far."""
        if self.errors:
            raise Invalid(self.errors)

    def _fail(self, name: str, message: str) -> None:
        self.errors.setdefault(name, []).append(message)


T = TypeVar("T")


def required(value: T | None) -> T:
    """A required field's value once ``Fields.check`` passed: a field read
    as None has its error noted, so ``check`` raised before this runs."""
    if value is None:
        raise RuntimeError("a required field was used before Fields.check")
    return value


def query_int(
    raw: str | None, name: str, default: int, minimum: int, clamp_to: int | None = None
) -> int:
    """An integer parameter of the query string: plain decimal digits only,
    ``minimum``..``MAX_INT``, then lowered to ``clamp_to`` if given (page sizes).

    ``default`` only when the parameter is absent: an empty value (``limit=``)
    or one with spaces is no integer, as the document says (a 400, like DRF's
    ``IntegerField``), so ``raw`` must come unstripped."""
    if raw is None:
        return default
    if not _DECIMAL.match(raw):
        raise Invalid({name: [NOT_INTEGER]})
    if len(raw.lstrip("-").lstrip("0")) > 30:  # far past MAX_INT: not worth parsing
        raise Invalid({name: [NOT_INTEGER]})
    value = int(raw)
    if value < minimum:
        raise Invalid({name: [f"Ensure this value is greater than or equal to {minimum}."]})
    if value > MAX_INT:
        raise Invalid({name: [TOO_LARGE]})
    return value if clamp_to is None else min(value, clamp_to)


def path_id(raw: str) -> int | None:
    """An id from a URL path (the route admits digits only), or None when it
    cannot name a stored row: such a path is simply not found (404)."""
    if len(raw) > 30:
        return None
    value = int(raw)
    return value if 1 <= value <= MAX_INT else None
