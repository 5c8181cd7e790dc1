"""WebSocket subprotocols: ``json`` (text frames) and ``msgpack`` (binary frames
holding the same maps)."""

from __future__ import annotations

import json
from typing import Any

import msgpack
import orjson

from actors.errors import Invalid
from actors.hub import Frame
from handlers.render import render_value
from handlers.validation import check_depth, decode_json

JSON = "json"
MSGPACK = "msgpack"


def decode_frame(raw: str | bytes) -> dict[str, Any]:
    """A client frame as a dict; text frames are JSON, binary frames msgpack.
    Raises ``Invalid`` (a 400 error frame) for anything else, nesting included."""
    if isinstance(raw, str):
        data = decode_json(raw)
    else:
        try:
            data = msgpack.unpackb(raw, raw=False, strict_map_key=True)
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise Invalid(detail=f"msgpack parse error - {exc}") from None
        check_depth(data, "msgpack")
    if not isinstance(data, dict):
        raise Invalid(detail='A frame must be a map with a "type".')
    return data


def encode(protocol: str, data: dict[str, Any]) -> bytes:
    """One outgoing frame's payload: compact JSON (UTF-8) or msgpack."""
    if protocol == MSGPACK:
        return msgpack.packb(data, use_bin_type=True)
    try:
        return orjson.dumps(data)
    except orjson.JSONEncodeError:
        # A lone surrogate (which only \u escapes can carry) echoed back in an
        # error's detail: the stdlib escapes it instead of refusing.
        return json.dumps(data, separators=(",", ":")).encode()


def encode_event(protocol: str, frame: Frame) -> bytes:
    """Encode a hub frame, once per protocol however many sockets it goes to."""
    payload = frame.encoded.get(protocol)
    if payload is None:
        data = {"type": frame.type}
        for name, value in frame.fields.items():
            data[name] = render_value(value)
        payload = frame.encoded[protocol] = encode(protocol, data)
    return payload
