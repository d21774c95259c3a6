"""Nodes that compute in a process of their own, forked from the warm interpreter, so that they use a core beside the
node that computes in the ``kedro`` process.

:class:`kowen_kedro.runner.StageRunner` lets one node at a time compute in the ``kedro`` process (they share its
torch: the thread pool, the global random state). Once the training launches are fast, those nodes are the run's
critical path, one core's worth, while the other core waits. A node whose function is wrapped with
:func:`in_child` and tagged :data:`FORK_TAG` runs, on a machine without CUDA under the StageRunner, in a child of
the warm interpreter the training launches fork from (:mod:`kowen_kedro.training.warm`, with torch and
transformers imported): its inputs go to the child pickled, its outputs (or its exception) come back pickled, its
log records are re-logged here when it ends (``info.log``, and the console for what the run shows there), and
what it prints (progress bars included) goes to ``info.log`` only: another process's bars would break into the
run's node lines. The runner counts it as one more process beside the ``kedro`` one, as it counts a launch.
Anywhere else (a GPU, another runner, a test calling the function) the function runs as it is, in the calling
process. :func:`forked_node` makes such a node.

What may be forked: a function that reads its inputs and returns its outputs, and writes nothing the ``kedro``
process reads back in memory: the gold evaluations, MT-Bench's grading and the rubric (a model loaded from its
folder, its answers, the world's gold reward or the judge's grades; the LLM call cache is SQLite, shared between
processes). It must not draw from torch's global generator without seeding it (a child starts from the warm
interpreter's state, not from this process's).
"""

from __future__ import annotations

import functools
import logging
import os
import pickle
import tempfile
import threading
import traceback
from pathlib import Path
from typing import Any, Callable

logger = logging.getLogger(__name__)

#: The tag of nodes whose wrapped function may compute in a forked child (:func:`in_child`).
FORK_TAG = "forked"

_LOCK = threading.Lock()
_RUNS = 0  # the runs forking now (a counter: two runs in one process, one ending, leave the other forking)


def in_child(fn: Callable) -> Callable:
    """``fn`` for a node: computed in a forked child while :func:`forking` is on, as it is otherwise. ``fn`` must be
    a module-level function (it is pickled by name)."""

    @functools.wraps(fn)
    def node_function(*args: Any, **kwargs: Any) -> Any:
        if not _RUNS:
            return fn(*args, **kwargs)
        return call(fn, args, kwargs)

    node_function.in_child = True
    return node_function


def forked_node(fn: Callable, inputs, outputs, *, name: str, tags: list[str] | None = None, **kwargs: Any):
    """A Kedro ``Node`` of ``fn`` that computes in a forked child where the runner forks: the wrapper
    (:func:`in_child`) and the tag (:data:`FORK_TAG`) the runner counts it by, together."""
    from kedro.pipeline import Node

    return Node(in_child(fn), inputs, outputs, name=name, tags=[FORK_TAG, *(tags or [])], **kwargs)


def check_forked(node) -> None:
    """A node tagged :data:`FORK_TAG` whose function is not wrapped with :func:`in_child` would compute in the
    ``kedro`` process while the runner counts it as a process of its own: an error that names it."""
    if FORK_TAG in node.tags and not getattr(node.func, "in_child", False):
        raise ValueError(f"node {node.name} is tagged '{FORK_TAG}' but its function is not wrapped with "
                         "kowen_kedro.forked.in_child (use forked_node): it would compute in the kedro process beside "
                         "another node")


class forking:
    """While entered, :func:`in_child` functions compute in forked children (the StageRunner's run, on a machine
    without CUDA)."""

    def __enter__(self) -> forking:
        global _RUNS
        with _LOCK:
            _RUNS += 1
        return self

    def __exit__(self, *exc: object) -> None:
        global _RUNS
        with _LOCK:
            _RUNS -= 1


def call(fn: Callable, args: tuple, kwargs: dict) -> Any:
    """``fn(*args, **kwargs)`` in a child forked from the warm interpreter; its result, or its exception raised here.
    The child ends with this process (a pipe only this process holds, :mod:`kowen_kedro.lifeline`)."""
    from kowen_kedro.training import warm

    with tempfile.TemporaryDirectory(prefix="kowen-node-") as tmp:
        payload, result, output = Path(tmp) / "call.pkl", Path(tmp) / "result.pkl", Path(tmp) / "output.txt"
        with open(payload, "wb") as f:
            pickle.dump((fn, args, kwargs), f, protocol=pickle.HIGHEST_PROTOCOL)
        code = warm.fork(_child, (str(payload), str(result), str(output), dict(os.environ), os.getcwd()),
                         name=f"node-{fn.__name__}")
        printed = printed_lines(output.read_bytes().decode(errors="replace")) if output.exists() else []
        for line in printed:
            logger.info("%s printed: %s", fn.__name__, line)
        if not result.exists():
            tail = "".join(f"\n  {line}" for line in printed[-20:])
            raise RuntimeError(f"{fn.__module__}.{fn.__name__} ended in its forked process without a result (exit {code})"
                               + (f"; the end of what it printed:{tail}" if tail else ""))
        with open(result, "rb") as f:
            ok, value, records = pickle.load(f)
    for record in records:
        logging.getLogger(record.name).handle(record)
    if not ok:
        raise value
    return value


def printed_lines(text: str) -> list[str]:
    """What a terminal would have kept of ``text``: each line's last carriage-return redraw (a progress bar's final
    state), blank lines dropped."""
    return [kept for line in text.split("\n") if (kept := line.split("\r")[-1].rstrip())]


class _Records(logging.Handler):
    """Keeps the child's log records, made picklable (the message formatted, the traceback as text)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        record.msg, record.args = record.getMessage(), None
        if record.exc_info:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        self.records.append(record)


def _child(payload: str, result: str, output: str, env: dict[str, str], cwd: str) -> None:
    """In the forked child: what it prints to ``output`` (not the run's console, whose node lines it would break
    into: :func:`call` logs it to info.log), the caller's environment and folder, log records kept, the call, its
    outcome written whole (a temporary file renamed) for :func:`call`."""
    from kowen_kedro.training.warm import in_setting, output_to

    output_to(output)
    in_setting(env, cwd)
    records = _Records()
    root = logging.getLogger()
    root.handlers[:] = [records]
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    from kowen_kedro.floats import deterministic_torch

    deterministic_torch()
    with open(payload, "rb") as f:
        fn, args, kwargs = pickle.load(f)
    try:
        outcome = (True, fn(*args, **kwargs))
    except Exception as exc:  # noqa: BLE001 - raised again in the caller's process, with this traceback as a note
        exc.add_note("".join(["in its forked process:\n", *traceback.format_exception(exc)]))
        outcome = (False, _picklable(exc))
    written = Path(f"{result}.tmp")
    try:
        blob = pickle.dumps((*outcome, records.records), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # noqa: BLE001 - an output that does not pickle: said as the node's error
        blob = pickle.dumps((False, RuntimeError(f"the output of {fn.__name__} cannot go back from its forked process: {exc}"),
                             records.records))
    written.write_bytes(blob)
    os.replace(written, result)


def _picklable(exc: Exception) -> Exception:
    """``exc`` itself where it pickles and unpickles, else a RuntimeError with its traceback's text."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001
        return RuntimeError("".join(traceback.format_exception(exc)))
