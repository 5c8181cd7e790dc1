"""A small WebSocket client for trying the chat by hand (and scripting it).

Prints every frame it receives, one JSON object per line. Each line typed on
stdin is sent: a line that is a JSON object goes as it is; any other text goes
as a ``message`` frame (with ``--session`` as its ``session_id`` for admins).

    python bench/ws_client.py --role store --key $STORE
    python bench/ws_client.py --role admin --key $ADMIN --session 1 --protocol msgpack
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.helpers import Socket  # noqa: E402


async def main_async(args: argparse.Namespace) -> None:
    url = f"{args.url.rstrip('/')}/v1/chat/{args.role}/ws/"
    sock = await Socket.connect(url, args.key, protocol=args.protocol)
    loop = asyncio.get_running_loop()

    async def printer() -> None:
        while (frame := await sock.recv(timeout=10**9)) is not None:
            print(json.dumps(frame), flush=True)
        print(f"# closed with code {sock.close_code}", flush=True)
        os._exit(0)

    asyncio.ensure_future(printer())
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        line = line.strip()
        if not line:
            continue
        try:
            frame = json.loads(line)
            if not isinstance(frame, dict):
                raise ValueError
        except ValueError:
            frame = {"type": "message", "body": line}
            if args.session:
                frame["session_id"] = args.session
        await sock.send(frame)
    await asyncio.sleep(0.5)  # let the last answers arrive


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="ws://127.0.0.1:8000")
    parser.add_argument("--role", choices=["store", "admin"], required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--session", type=int, help="admin: session_id for typed messages")
    parser.add_argument("--protocol", choices=["json", "msgpack"], default="json")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
