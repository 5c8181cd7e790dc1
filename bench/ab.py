"""Side by side: the message path under two or more sets of settings.

Each argument is one variant: ``KEY=VALUE`` settings for its chat server, as
environment variables (``CHAT_SECTION__KEY``), separated by spaces; ``""`` is
the defaults. Each variant gets its own server process and database (prepared
with ``CHAT_STORAGE__SQLITE_PAGE_SIZE`` where the variant sets it: the page size
is fixed when the file is made). The closed loop of ``bench/run.py`` then runs
on each in turn (A B A B ...), ``--reps`` times; medians are printed: msgs/s,
server CPU µs per message (all threads, and per thread) and bytes per message
the server sent to disk (``write_bytes`` of /proc/<pid>/io: the WAL, its
fsyncs, checkpoints).

    .venv/bin/python bench/ab.py "" "CHAT_SERVER__PIN_TO_CPUS=true"
    .venv/bin/python bench/ab.py "CHAT_STORAGE__SQLITE_PAGE_SIZE=4096" ""

Bounded like ``run.py``: ``--reps`` x variants closed loops of ``--pairs`` x
``--messages`` messages, each abandoned after a minute; 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from bench.run import (  # noqa: E402  (after sys.path: run as a script)
    Target,
    add_closed_loop_arguments,
    closed_loop,
    median_threads,
    prepare_database,
    run_on_uvloop,
    write_bench_config,
)
from tests.helpers import ServerProcess  # noqa: E402  (after sys.path)

PAGE_SIZE_ENV = "CHAT_STORAGE__SQLITE_PAGE_SIZE"


def disk_bytes_written(pid: int) -> int:
    """Bytes the process has sent to storage (``write_bytes`` of /proc/<pid>/io)."""
    with open(f"/proc/{pid}/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("write_bytes"))


def parse_variant(text: str) -> dict[str, str]:
    settings = {}
    for item in text.split():
        key, sep, value = item.partition("=")
        if not sep or not key.startswith("CHAT_"):
            raise SystemExit(f"ab.py: {item!r} is not CHAT_SECTION__KEY=VALUE")
        settings[key] = value
    return settings


async def start_variant(
    index: int, settings: dict[str, str], pairs: int, workdir: str
) -> tuple[ServerProcess, Target]:
    db = os.path.join(workdir, f"variant{index}.sqlite3")
    page_size = settings.get(PAGE_SIZE_ENV)  # prepare_database makes the file
    data = await prepare_database(db, pairs, 0, 0, page_size=int(page_size) if page_size else None)
    server = ServerProcess(
        f"sqlite:///{db}", config_path=write_bench_config(workdir), env=settings
    ).start()
    target = Target(
        f"v{index}", server.port, server.proc.pid, data["store_keys"], data["admin_keys"]
    )
    return server, target


async def main_async(args: argparse.Namespace) -> None:
    variants = [parse_variant(text) for text in args.variants]
    workdir = tempfile.mkdtemp(prefix="chat-ab-")
    started = [await start_variant(i, v, args.pairs, workdir) for i, v in enumerate(variants)]
    try:
        for _server, target in started:  # warm-up
            await closed_loop(target, args.pairs, args.window, 20)
        runs: dict[str, list[dict[str, Any]]] = {t.name: [] for _s, t in started}
        for rep in range(args.reps):
            for _server, target in started:
                written = disk_bytes_written(target.pid)
                r = await closed_loop(target, args.pairs, args.window, args.messages)
                r["disk_bytes_per_msg"] = (disk_bytes_written(target.pid) - written) / r["messages"]
                runs[target.name].append(r)
                print(
                    f"  rep {rep + 1} {target.name}: {r['msgs_per_sec']:8.0f} msgs/s "
                    f"cpu {r['cpu_us_per_msg']:6.1f} µs/msg "
                    f"disk {r['disk_bytes_per_msg']:6.0f} B/msg",
                    flush=True,
                )
    finally:
        for server, _target in started:
            server.stop()
    print()
    for text, (_server, target) in zip(args.variants, started, strict=True):
        rs = runs[target.name]
        print(
            f"{target.name} [{text or 'defaults'}]: "
            f"{statistics.median(r['msgs_per_sec'] for r in rs):,.0f} msgs/s, "
            f"{statistics.median(r['cpu_us_per_msg'] for r in rs):.1f} µs/msg, "
            f"{statistics.median(r['disk_bytes_per_msg'] for r in rs):,.0f} B/msg to disk "
            f"{median_threads(rs)}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "variants",
        nargs="+",
        help='settings of one server, e.g. "CHAT_SERVER__PIN_TO_CPUS=true"; "" for the defaults',
    )
    add_closed_loop_arguments(parser, reps=4)
    args = parser.parse_args()
    run_on_uvloop(main_async(args))


if __name__ == "__main__":
    main()
