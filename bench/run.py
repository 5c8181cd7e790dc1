"""Run every benchmark with its default, bounded settings (``make bench``)."""

from __future__ import annotations

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

for script in ("storage_writes.py", "ws_throughput.py", "cross_process_latency.py",
               "mongo_paths.py"):
    print(f"== {script}", flush=True)
    subprocess.run([sys.executable, os.path.join(HERE, script)], check=True)
