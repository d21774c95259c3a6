"""kowen_kedro.lifeline: a child that ends with its parent, and hears the parent's lines meanwhile."""

from __future__ import annotations

import subprocess
import sys
import time

from kowen_kedro.lifeline import ORPHANED

CHILD = """
import sys, time
from kowen_kedro.lifeline import exit_when_closed
exit_when_closed(0, on_line=lambda line: print("got", line.decode(), flush=True))
print("ready", flush=True)
time.sleep(60)
"""


def test_the_child_hears_each_whole_line_and_ends_when_the_pipe_closes():
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert child.stdout.readline() == b"ready\n"
        child.stdin.write(b"first li")  # half a line: nothing yet
        child.stdin.flush()
        time.sleep(0.3)
        child.stdin.write(b"ne\nsecond\nthird, never ended")
        child.stdin.flush()
        assert child.stdout.readline() == b"got first line\n"
        assert child.stdout.readline() == b"got second\n"
        child.stdin.close()  # what the kernel does when the parent dies
        assert child.wait(timeout=30) == ORPHANED
        assert child.stdout.read() == b""  # the unended line is not handed on
    finally:
        child.kill()
