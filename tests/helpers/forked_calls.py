"""Module-level functions for tests/test_forked.py: what a forked child runs is pickled by name."""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path

logger = logging.getLogger("kowen_kedro.tests.forked")


def doubled(x: int) -> tuple[int, int]:
    """``(this process's id, 2 x)``, logged."""
    logger.info("doubled %d in process %d", x, os.getpid())
    return os.getpid(), 2 * x


def fails(row: int) -> None:
    raise ValueError(f"bad pairs in row {row}")


class Unpicklable(Exception):
    def __init__(self, a, b):  # unpickling calls Unpicklable(*args) with args=(message,): a TypeError
        super().__init__(f"{a} and {b}")


def fails_unpicklably() -> None:
    raise Unpicklable("first", "second")


def killed() -> None:
    print("about to be killed", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def chatty() -> str:
    """Prints a line and draws a progress bar (carriage-return redraws) on stderr."""
    import sys

    print("hello from the child")
    sys.stderr.write("progress 1/3\rprogress 2/3\rprogress 3/3\n")
    return "said"


def meets(folder: str, me: str, other: str) -> str:
    """Say ``me`` has started (a file in ``folder``), then wait (at most 60 s) until ``other`` has too: two calls
    of it return only if they ran at the same time."""
    Path(folder, me).touch()
    deadline = time.monotonic() + 60
    while not Path(folder, other).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{other} did not start while {me} ran")
        time.sleep(0.02)
    return f"{me} met {other} in process {os.getpid()}"
