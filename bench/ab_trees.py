"""Side by side across checkouts: the message path of two or more source trees.

Each argument is a checkout of the project (say a worktree of an older commit:
``git worktree add --detach /tmp/old d3a3053``). Each tree's chat server runs
from that tree (``python server.py`` with this interpreter, so the trees'
dependencies must match this venv's) on its own database, which that tree's
own ``bench/run.py`` prepares (its schema). The bare relay runs beside them.
The closed loop of ``bench/run.py`` then runs on each in turn, relay first,
the trees in order and then reversed (R A B C, R C B A, ...: no tree always
follows the relay), ``--reps`` times; medians are printed: msgs/s, server CPU
µs per message (all threads, and per thread), each against the relay's, and
the load average seen during the run. One run sees the same machine noise
for every tree, which separate ``make bench`` runs do not.

    git worktree add --detach /tmp/wt-old d3a3053
    .venv/bin/python bench/ab_trees.py /tmp/wt-old . --reps 10 --idle-sockets 500

Bounded like ``run.py``: ``--reps`` x (trees + 1) closed loops of ``--pairs``
x ``--messages`` messages, each abandoned after a minute; 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from bench.run import (  # noqa: E402  (after sys.path: run as a script)
    Target,
    add_closed_loop_arguments,
    closed_loop,
    idle_socket_rss,
    median_threads,
    run_on_uvloop,
    start_relay,
    write_bench_config,
)
from tests.helpers import ServerProcess  # noqa: E402  (after sys.path)

# Run inside a tree: that tree's prepare_database, its keys printed as JSON.
PREPARE = (
    "import asyncio, json, sys\n"
    "sys.path.insert(0, '.')\n"
    "from bench.run import prepare_database\n"
    "print(json.dumps(asyncio.run(prepare_database(sys.argv[1], int(sys.argv[2]), 0, 0))))\n"
)


def start_tree(index: int, tree: str, pairs: int, workdir: str) -> tuple[ServerProcess, Target]:
    """Prepare a database with ``tree``'s code and start its server on it."""
    db = os.path.join(workdir, f"tree{index}.sqlite3")
    out = subprocess.run(
        [sys.executable, "-c", PREPARE, db, str(pairs)],
        cwd=tree,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    data = json.loads(out.stdout.strip().splitlines()[-1])
    server = ServerProcess(f"sqlite:///{db}", config_path=write_bench_config(workdir))
    server.proc = subprocess.Popen(
        [sys.executable, "server.py"],
        cwd=tree,
        env=server.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server.wait_ready()
    target = Target(f"t{index}", server.port, server.proc.pid)
    target.store_keys, target.admin_keys = data["store_keys"], data["admin_keys"]
    return server, target


def load_average() -> float:
    """The machine's one-minute load average."""
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def report(trees: list[str], runs: dict[str, list[dict[str, Any]]], loads: list[float]) -> None:
    relay_rate = statistics.median(r["msgs_per_sec"] for r in runs["relay"])
    relay_cpu = statistics.median(r["cpu_us_per_msg"] for r in runs["relay"])
    print(
        f"\nload average during the run: median {statistics.median(loads):.1f} "
        f"(min {min(loads):.1f}, max {max(loads):.1f})"
    )
    for name, label in zip(runs, ["bare relay", *trees], strict=True):
        rs = runs[name]
        rate = statistics.median(r["msgs_per_sec"] for r in rs)
        cpu = statistics.median(r["cpu_us_per_msg"] for r in rs)
        print(
            f"{name} {label}: {rate:,.0f} msgs/s ({rate / relay_rate:.2f}× the relay's), "
            f"{cpu:.1f} µs/msg ({cpu / relay_cpu:.2f}× the relay's) {median_threads(rs)}"
        )


async def main_async(args: argparse.Namespace) -> None:
    workdir = tempfile.mkdtemp(prefix="chat-ab-trees-")
    relay, relay_port = start_relay()
    bare = Target("relay", relay_port, relay.pid)
    started: list[tuple[ServerProcess, Target]] = []
    runs: dict[str, list[dict[str, Any]]] = {"relay": []}
    loads: list[float] = []
    try:
        for i, tree in enumerate(args.trees):
            started.append(start_tree(i, os.path.abspath(tree), args.pairs, workdir))
            runs[f"t{i}"] = []
        trees = [t for _s, t in started]
        print("pids:", {t.name: t.pid for t in [bare, *trees]}, flush=True)
        if args.idle_sockets:  # as make bench does first
            for t in [bare, *trees]:
                kib = await idle_socket_rss(t, args.idle_sockets)
                print(f"  {t.name}: {kib:.1f} KiB per idle socket", flush=True)
        for t in [bare, *trees]:  # warm-up
            await closed_loop(t, args.pairs, args.window, 20)
        for rep in range(args.reps):
            for t in [bare, *(trees if rep % 2 == 0 else trees[::-1])]:
                r = await closed_loop(t, args.pairs, args.window, args.messages)
                runs[t.name].append(r)
                loads.append(load_average())
                print(
                    f"  rep {rep + 1} {t.name:5}: {r['msgs_per_sec']:7.0f} msgs/s "
                    f"cpu {r['cpu_us_per_msg']:6.1f} µs/msg {r['cpu_us_per_msg_by_thread']} "
                    f"load {loads[-1]:.1f}",
                    flush=True,
                )
    finally:
        for server, _t in started:
            server.stop()
        relay.kill()
        relay.wait()
    report(args.trees, runs, loads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs="+", help="checkouts of the project, e.g. worktrees")
    add_closed_loop_arguments(parser, reps=10)
    parser.add_argument("--idle-sockets", type=int, default=0, help="open and close first")
    args = parser.parse_args()
    run_on_uvloop(main_async(args))


if __name__ == "__main__":
    main()
