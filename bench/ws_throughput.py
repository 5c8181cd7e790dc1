"""Store message throughput over WebSockets, against a bare relay, in one run.

Each of ``--sockets`` store clients sends ``--per-socket`` message frames, one
at a time, waiting for each ``ack`` (which our server sends only after the
group commit). The baseline is a bare Tornado WebSocket server in a separate
process that acks every frame at once (no auth, no storage): the ceiling of
the transport on this machine. Bounded in count; 127.0.0.1 only.

    .venv/bin/python bench/ws_throughput.py --sockets 50 --per-socket 100 --rounds 3
    .venv/bin/python bench/ws_throughput.py --processes 2   # both cores
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.helpers import ServerProcess, Socket, free_port, run_cli

BARE_RELAY = """
import json, sys, tornado.ioloop, tornado.web, tornado.websocket
class Relay(tornado.websocket.WebSocketHandler):
    def open(self):
        self.set_nodelay(True)  # as the chat server does
    def on_message(self, raw):
        frame = json.loads(raw)
        self.write_message(json.dumps({"type": "ack", "ref": frame.get("ref"),
                                       "message": {"body": frame.get("body")}}))
app = tornado.web.Application([(r"/ws", Relay)])
app.listen(int(sys.argv[1]), "127.0.0.1")
print("ready", flush=True)
tornado.ioloop.IOLoop.current().start()
"""


async def drive(urls_keys: list[tuple[str, str | None]], per_socket: int) -> float:
    """Messages acknowledged per second across all sockets."""
    sockets = []
    for url, key in urls_keys:
        sock = await Socket.connect(url, key)
        if key:
            await sock.recv()  # hello
        sockets.append(sock)

    async def one(sock: Socket, n: int) -> None:
        for i in range(n):
            await sock.request({"type": "message", "body": f"m{i}"}, timeout=30)

    started = time.perf_counter()
    await asyncio.gather(*[one(s, per_socket) for s in sockets])
    elapsed = time.perf_counter() - started
    for s in sockets:
        s.close()
    return len(sockets) * per_socket / elapsed


async def main_async(args: argparse.Namespace) -> None:
    workdir = tempfile.mkdtemp(prefix="chat-bench-")
    url = f"sqlite:///{workdir}/bench.sqlite3"
    keys = [
        run_cli("create-store", "--name", f"S{i}", env={"CHAT_STORAGE_URL": url}).splitlines()[-1]
        for i in range(args.sockets)
    ]
    config = os.path.join(workdir, "bench.yaml")
    with open(config, "w") as f:
        f.write("logging:\n  level: WARNING\n")
    chat = ServerProcess(
        url, config_path=config, env={"CHAT_PROCESSES": str(args.processes)}
    ).start()
    relay_port = free_port()
    relay = subprocess.Popen(
        [sys.executable, "-c", BARE_RELAY, str(relay_port)], stdout=subprocess.PIPE, text=True
    )
    relay.stdout.readline()
    ours, bare = [], []
    try:
        for _ in range(args.rounds):  # alternate, so both see the same machine noise
            bare.append(
                await drive(
                    [(f"ws://127.0.0.1:{relay_port}/ws", None)] * args.sockets, args.per_socket
                )
            )
            ours.append(
                await drive(
                    [(f"ws://127.0.0.1:{chat.port}/v1/chat/store/ws/", k) for k in keys],
                    args.per_socket,
                )
            )
    finally:
        chat.stop()
        relay.kill()
    print(
        json.dumps(
            {
                "chat_worker_processes": args.processes,
                "sockets": args.sockets,
                "per_socket": args.per_socket,
                "rounds": args.rounds,
                "bare_relay_msgs_per_sec_median": round(statistics.median(bare)),
                "chat_server_msgs_per_sec_median": round(statistics.median(ours)),
                "ratio_chat_to_bare": round(statistics.median(ours) / statistics.median(bare), 2),
            },
            indent=2,
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sockets", type=int, default=50)
    parser.add_argument("--per-socket", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--processes", type=int, default=1, help="chat server workers")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
