"""A small terminal client for the chat's WebSockets: try it by hand, or script it.

Prints every frame it receives, one JSON object per line. Each line typed on
stdin is sent: a line that is a JSON object goes as it is; any other text goes
as a ``message`` frame (with ``--session`` as its ``session_id`` for admins).
End of input (Ctrl-D) or Ctrl-C closes the socket properly (close code 1000).

    .venv/bin/python tools/chat_client.py --role store --key $STORE
    .venv/bin/python tools/chat_client.py --role admin --key $ADMIN --session 1 --protocol msgpack

It needs only tornado and msgpack, and nothing of the server or its tests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

import msgpack
import tornado.httpclient
import tornado.websocket

# Wait this long after the last line for the server's answers before closing.
LINGER_SECS = 0.5
CLOSE_NORMAL = 1000


def decode(raw: str | bytes) -> Any:
    """A received frame, msgpack or JSON."""
    return msgpack.unpackb(raw, raw=False) if isinstance(raw, bytes) else json.loads(raw)


def frame_from_line(line: str, session_id: int | None) -> dict[str, Any]:
    """The frame a typed line sends: a JSON object as it is, other text as a ``message``."""
    try:
        frame = json.loads(line)
        if isinstance(frame, dict):
            return frame
    except ValueError:
        pass
    frame = {"type": "message", "body": line}
    if session_id:
        frame["session_id"] = session_id
    return frame


async def run(args: argparse.Namespace) -> int:
    """Connect, then print frames and send typed lines until either side ends; the exit status."""
    request = tornado.httpclient.HTTPRequest(
        f"{args.url.rstrip('/')}/v1/chat/{args.role}/ws/",
        headers={"Authorization": f"Token {args.key}"},
    )
    conn = await tornado.websocket.websocket_connect(request, subprotocols=[args.protocol])
    loop = asyncio.get_running_loop()

    async def print_frames() -> None:
        while (raw := await conn.read_message()) is not None:
            print(json.dumps(decode(raw), default=repr), flush=True)
        print(f"# closed with code {conn.close_code}", flush=True)

    printer = asyncio.ensure_future(print_frames())
    try:
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            if printer.done():
                break
            if line.strip():
                frame = frame_from_line(line.strip(), args.session)
                data = msgpack.packb(frame) if args.protocol == "msgpack" else json.dumps(frame)
                await conn.write_message(data, binary=args.protocol == "msgpack")
        await asyncio.sleep(LINGER_SECS)
    finally:
        if not printer.done():
            conn.close(CLOSE_NORMAL, "Bye.")
            await asyncio.wait_for(printer, 5)
    return 0 if conn.close_code in (None, CLOSE_NORMAL) else 1


def main() -> int:
    """The command line: parse the arguments and run the client."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="ws://127.0.0.1:8000")
    parser.add_argument("--role", choices=["store", "admin"], required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--session", type=int, help="admin: session_id for typed messages")
    parser.add_argument("--protocol", choices=["json", "msgpack"], default="json")
    try:
        return asyncio.run(run(parser.parse_args()))
    except KeyboardInterrupt:  # asyncio.run has closed the socket's loop; just leave
        return 130


if __name__ == "__main__":
    sys.exit(main())
