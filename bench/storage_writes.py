"""Storage alone: concurrent store-message posts through ``SQLiteStorage``.

``--writers`` tasks in one process each post ``--per-writer`` messages to their
own store's session; every post is one savepoint in a group commit. Bounded in
count; a fresh file in a temporary directory.

    .venv/bin/python bench/storage_writes.py --writers 50 --per-writer 100
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from storage.sqlite import SQLiteStorage


async def main_async(writers: int, per_writer: int) -> None:
    storage = SQLiteStorage(os.path.join(tempfile.mkdtemp(prefix="chat-bench-"), "s.sqlite3"))
    await storage.setup()
    stores = [(await storage.create_store(f"S{i}", None, None))[0] for i in range(writers)]

    async def write(store_id: int) -> None:
        for i in range(per_writer):
            await storage.post_store_message(store_id, f"m{i}", None)

    started = time.perf_counter()
    await asyncio.gather(*[write(s.id) for s in stores])
    elapsed = time.perf_counter() - started
    await storage.close()
    print(
        f"{writers * per_writer / elapsed:.0f} posts/s "
        f"({writers} writers x {per_writer}, synchronous=FULL)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--writers", type=int, default=50)
    parser.add_argument("--per-writer", type=int, default=100)
    args = parser.parse_args()
    asyncio.run(main_async(args.writers, args.per_writer))


if __name__ == "__main__":
    main()
