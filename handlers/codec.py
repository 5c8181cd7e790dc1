"""WebSocket subprotocols: ``json`` (text frames) and ``msgpack`` (binary frames
holding the same maps)."""

from __future__ import annotations

import json
from typing import Any

import msgpack

from actors.errors import Invalid
from actors.hub import Frame
from handlers.render import render_value

JSON = "json"
MSGPACK = "msgpack"


def decode_frame(raw: str | bytes) -> dict[str, Any]:
    """A client frame as a dict; text frames are JSON, binary frames msgpack."""
    try:
        if isinstance(raw, bytes):
            data = msgpack.unpackb(raw, raw=False, strict_map_key=True)
        else:
            data = json.loads(raw)
    except (ValueError, msgpack.UnpackException, UnicodeDecodeError) as exc:
        raise Invalid(detail=f"JSON parse error - {exc}" if isinstance(raw, str)
                      else f"msgpack parse error - {exc}") from None
    if not isinstance(data, dict):
        raise Invalid(detail="A frame must be a map with a \"type\".")
    return data


def encode(protocol: str, data: dict[str, Any]) -> str | bytes:
    if protocol == MSGPACK:
        return msgpack.packb(data, use_bin_type=True)
    return json.dumps(data, separators=(",", ":"))


def encode_event(protocol: str, frame: Frame) -> str | bytes:
    """Encode a hub frame, once per protocol however many sockets it goes to."""
    payload = frame.encoded.get(protocol)
    if payload is None:
        data = {"type": frame.type}
        for name, value in frame.fields.items():
            data[name] = render_value(value)
        payload = frame.encoded[protocol] = encode(protocol, data)
    return payload
