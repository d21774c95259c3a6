"""A child process that ends with the process that started it.

The parent keeps the write end of a pipe; the child watches the read end. When the parent ends, ``kill -9``
included, the operating system closes the write end, the child reads end of file and exits at once, instead
of going on training (or building) unseen and writing into a folder the rerun starts again from. The same
pipe may carry what the parent has to tell the child later, one line per message (``on_line``). Used by the
training launches forked from the warm interpreter (:mod:`kowen_kedro.training.warm`) and by the tiny QE
model's build process (:class:`kowen_kedro.tiny.build.QEChild`, whose inputs come as a line)."""

from __future__ import annotations

import os
import threading
from typing import Callable

#: The exit code of a child whose parent went away (as after a ``kill -9``: 128 + 9).
ORPHANED = 137


def exit_when_closed(fd: int, name: str = "parent-alive", on_line: Callable[[bytes], None] | None = None) -> threading.Thread:
    """Watch the pipe's read end ``fd`` in a daemon thread; at its end of file end this process with
    :data:`ORPHANED`. Each whole line the parent writes meanwhile goes to ``on_line`` (without its newline;
    called in that thread), when given. The reads are unbuffered (``os.read``): no lock that the
    interpreter's shutdown would wait for."""

    def watch() -> None:
        pending = b""
        try:
            while chunk := os.read(fd, 1 << 16):
                if on_line is None:
                    continue
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    on_line(line)
        except OSError:
            pass
        os._exit(ORPHANED)

    thread = threading.Thread(target=watch, daemon=True, name=name)
    thread.start()
    return thread
