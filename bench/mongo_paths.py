"""The Mongo paths on a MongoDB-compatible wire-protocol server (SecantusDB).

1. Cross-node delivery: two ``server.py`` processes on one database; a store's
   WebSocket on node A sends, the holding admin's WebSocket on node B receives.
   Each sample is the time from the send to the frame's arrival on B, and from
   A's ``ack`` (the message is committed) to that arrival. One at a time.
2. REST message throughput: ``--clients`` stores each POST ``--posts`` messages
   at once to one server process, on the wire server and on SQLite, in the same
   run. SecantusDB is a Python server, far slower than mongod: the figures
   describe this code's path (one transaction per change), not MongoDB.

Starts its own SecantusDB (test-only dependency) unless ``--mongo-url`` names a
server. Bounded: a few hundred messages, all on 127.0.0.1.

    .venv/bin/python bench/mongo_paths.py --messages 200 --clients 20 --posts 25
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from storage import open_storage  # noqa: E402
from tests.helpers import Api, ServerProcess, Socket  # noqa: E402
from tests.wire_server import WireServer, start_secantus  # noqa: E402


def write_config(workdir: str, name: str) -> str:
    path = os.path.join(workdir, f"{name}.yaml")
    with open(path, "w") as f:
        f.write("events:\n  poll_interval_secs: 0.02\nlogging:\n  level: WARNING\n")
    return path


async def make_keys(url: str, admins: int, stores: int) -> tuple[list[str], list[str]]:
    storage = open_storage(url)
    await storage.setup()
    try:
        admin_keys = [(await storage.create_admin(f"A{i}", None))[1] for i in range(admins)]
        store_keys = [(await storage.create_store(f"S{i}", None, None))[1]
                      for i in range(stores)]
    finally:
        await storage.close()
    return admin_keys, store_keys


def percentile(values: list[float], pct: int) -> float:
    return statistics.quantiles(values, n=100)[pct - 1]


async def cross_node_latency(wire: WireServer, workdir: str, messages: int) -> dict:
    db = f"bench_{time.monotonic_ns()}"
    (admin_key,), (store_key,) = await make_keys(wire.url_for(db), 1, 1)
    nodes = [ServerProcess(wire.url_for(db, app_name=name),
                           config_path=write_config(workdir, name)).start()
             for name in ("node-a", "node-b")]
    try:
        a, b = nodes
        store = await Socket.connect(f"ws://127.0.0.1:{a.port}/v1/chat/store/ws/", store_key)
        admin = await Socket.connect(f"ws://127.0.0.1:{b.port}/v1/chat/admin/ws/", admin_key)
        await store.recv(), await admin.recv()
        sid = (await store.request({"type": "message", "body": "hi"}))["message"]["session_id"]
        await Api(b.base_url + "/v1/chat").post("/admin/session/claim/", admin_key,
                                                {"session_id": sid})
        from_send, from_ack = [], []
        for i in range(messages):
            started = time.perf_counter()
            ack = await store.request({"type": "message", "body": f"m{i}"})
            acked = time.perf_counter()
            while True:
                frame = await admin.recv(10)
                if frame["type"] == "message" and frame["message"]["id"] == ack["message"]["id"]:
                    break
            arrived = time.perf_counter()
            from_send.append(arrived - started)
            from_ack.append(max(0.0, arrived - acked))
        return {"p50_ms_from_send": statistics.median(from_send) * 1000,
                "p95_ms_from_send": percentile(from_send, 95) * 1000,
                "p50_ms_after_ack": statistics.median(from_ack) * 1000,
                "p95_ms_after_ack": percentile(from_ack, 95) * 1000}
    finally:
        for node in nodes:
            node.stop()


async def rest_throughput(url: str, workdir: str, name: str, clients: int,
                          posts: int) -> float:
    _, store_keys = await make_keys(url, 0, clients)
    node = ServerProcess(url, config_path=write_config(workdir, name)).start()
    try:
        async def post_all(key: str) -> None:
            api = Api(node.base_url + "/v1/chat")
            for i in range(posts):
                reply = await api.post("/store/message/", key, {"body": f"m{i}"})
                assert reply.status in (200, 201), reply
            api.close()

        started = time.perf_counter()
        await asyncio.gather(*[post_all(key) for key in store_keys])
        return clients * posts / (time.perf_counter() - started)
    finally:
        node.stop()


async def main_async(args: argparse.Namespace) -> None:
    workdir = tempfile.mkdtemp(prefix="chat-bench-mongo-")
    wire = WireServer(args.mongo_url) if args.mongo_url else start_secantus(workdir)
    try:
        latency = await cross_node_latency(wire, workdir, args.messages)
        print(f"cross-node delivery, store WS on node A -> admin WS on node B, "
              f"{args.messages} messages:")
        for key, value in latency.items():
            print(f"  {key}: {value:.1f}")
        mongo = await rest_throughput(wire.url_for(f"bench_rest_{time.monotonic_ns()}"),
                                      workdir, "rest-mongo", args.clients, args.posts)
        sqlite = await rest_throughput(f"sqlite:///{workdir}/bench.sqlite3", workdir,
                                       "rest-sqlite", args.clients, args.posts)
        print(f"REST store messages, {args.clients} clients x {args.posts}, one process:")
        print(f"  wire server (SecantusDB): {mongo:.0f} msgs/s")
        print(f"  SQLite:                   {sqlite:.0f} msgs/s")
    finally:
        wire.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--posts", type=int, default=25)
    parser.add_argument("--mongo-url", help="a running server instead of a fresh SecantusDB")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
