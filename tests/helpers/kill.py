"""Killing a real run part-way: SIGKILL (no cleanup runs) once its call cache holds enough entries."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


def start_and_kill(cmd: list[str], cache: Path, min_entries: int, timeout: float = 120.0) -> int:
    """Start ``cmd``, SIGKILL it once the SQLite call cache at ``cache`` holds ``min_entries`` entries
    (or after ``timeout`` seconds); returns the number of entries stored when it died."""
    from kowen_kedro.llm.cache import CallCache

    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while time.time() < deadline and (not cache.exists() or len(CallCache(cache)) < min_entries):
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return len(CallCache(cache))
