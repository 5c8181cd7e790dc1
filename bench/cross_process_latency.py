"""Cross-process delivery latency: stored by one server process, delivered by another.

Two ``server.py`` processes share one SQLite file. A store's WebSocket is
connected to process A; an admin posts over REST to process B. Each sample is
the time from B's 201 (the message is committed) to the frame's arrival on A's
socket, and also from the POST's start. Bounded: ``--messages`` posts, one at a
time, all to 127.0.0.1.

    .venv/bin/python bench/cross_process_latency.py --messages 300
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

from tests.helpers import Api, ServerProcess, Socket, run_cli


async def measure(messages: int, poll_interval: str) -> dict[str, float]:
    workdir = tempfile.mkdtemp(prefix="chat-bench-")
    url = f"sqlite:///{workdir}/bench.sqlite3"
    env = {"CHAT_STORAGE_URL": url}
    admin_key = run_cli("create-admin", "--name", "Bench", env=env).splitlines()[-1]
    store_key = run_cli("create-store", "--name", "Bench", env=env).splitlines()[-1]
    config = os.path.join(workdir, "bench.yaml")
    with open(config, "w") as f:
        f.write(f"events:\n  poll_interval_secs: {poll_interval}\nlogging:\n  level: WARNING\n")
    a = ServerProcess(url, config_path=config).start()
    b = ServerProcess(url, config_path=config).start()
    try:
        store = await Socket.connect(f"ws://127.0.0.1:{a.port}/v1/chat/store/ws/", store_key)
        await store.recv()
        api_b = Api(b.base_url + "/v1/chat")
        sid = (await store.request({"type": "message", "body": "hi"}))["message"]["session_id"]
        await api_b.post("/admin/session/claim/", admin_key, {"session_id": sid})
        after_commit, after_post = [], []
        for i in range(messages):
            started = time.perf_counter()
            reply = await api_b.post(
                "/admin/message/", admin_key, {"session_id": sid, "body": f"b{i}"}
            )
            committed = time.perf_counter()
            while True:
                frame = await store.recv(10)
                if frame["type"] == "message" and frame["message"]["id"] == reply.json["id"]:
                    break
            arrived = time.perf_counter()
            after_commit.append(max(0.0, arrived - committed))
            after_post.append(arrived - started)
        return {
            "median_ms_after_commit": statistics.median(after_commit) * 1000,
            "p95_ms_after_commit": statistics.quantiles(after_commit, n=20)[18] * 1000,
            "median_ms_from_post_start": statistics.median(after_post) * 1000,
        }
    finally:
        a.stop()
        b.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--poll-interval", default="0.02")
    args = parser.parse_args()
    result = asyncio.run(measure(args.messages, args.poll_interval))
    print(
        f"cross-process delivery over {args.messages} messages "
        f"(events.poll_interval_secs={args.poll_interval}):"
    )
    for name, value in result.items():
        print(f"  {name}: {value:.1f}")


if __name__ == "__main__":
    main()
