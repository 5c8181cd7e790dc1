"""Thread names the operating system can see.

Python names its threads for itself only; ``top -H``, py-spy and the benchmark's
per-thread CPU figures (read from ``/proc/<pid>/task/*/comm``) see "python" for
every one unless the kernel is told.
"""

from __future__ import annotations

import threading

# The kernel keeps at most 15 characters of a thread's name.
MAX_OS_NAME = 15


def name_os_thread(name: str) -> None:
    """Give the calling thread ``name`` in /proc (Linux; elsewhere a no-op).
    Runs first thing in each storage thread."""
    try:
        with open(f"/proc/self/task/{threading.get_native_id()}/comm", "w") as f:
            f.write(name[:MAX_OS_NAME])
    except OSError:
        pass
