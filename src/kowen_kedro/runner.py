"""The project's default runner: independent training launches side by side, everything else one at a time.

``kedro run`` uses :class:`StageRunner` unless ``--runner`` names another. It is Kedro's ``ThreadRunner``
(nodes start as soon as their inputs exist, each in a worker thread) with one rule added: only nodes
tagged :data:`LAUNCH_TAG` (the training nodes, whose work happens in a child process of its own,
:mod:`kowen_kedro.training.launcher`) may overlap other nodes; every other node holds the run's
in-process lock while it runs, so no two of them share this interpreter's torch (its thread pool, its
global random state) at once. On a 2-core CPU that keeps both cores busy while the three reward models,
SFT, CLO, its baseline, XL-Instruct and the DPO chain train, with one thread per stage
(:mod:`kowen_kedro.floats`), and the results do not depend on which stage finishes first. At most one
node per core computes at a time (launches and in-process nodes alike: no core is oversubscribed), and
of the nodes waiting, the one with the most training launches downstream goes first (then the one with
the most nodes downstream), so the stages on the critical path start early.

Where a GPU is present, launches use all of it (or all GPUs of the node): there they run one at a time
too (``max_launches`` 1), as under the sequential runner.

MLflow: kedro-mlflow reopens the pipeline's run in every worker thread before a node runs, so every
metric lands in the one run of the ``kedro run`` (tests/test_end_to_end.py counts them).

A failing node stops the run with its own error; a launch running beside it finishes and keeps its
model (a rerun reuses it, :mod:`kowen_kedro.training.stages`); nothing is half-written (every dataset
saves through a temporary file).
"""

from __future__ import annotations

import heapq
import os
import threading
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Callable

from kedro.runner import ThreadRunner

#: The tag of nodes whose work runs in a training child process (they may overlap other nodes).
LAUNCH_TAG = "launch"


def default_launch_slots() -> int:
    """Launches that may run at once: one per CPU core without CUDA (each child runs one torch thread), one
    where a GPU is present (a launch takes the node's GPUs)."""
    import torch

    return 1 if torch.cuda.is_available() else max(1, os.cpu_count() or 1)


class PrioritySlots:
    """``n`` slots whose waiters get one in the order of their priority (highest first, then first come)."""

    def __init__(self, n: int = 1) -> None:
        self._cv = threading.Condition()
        self._free = n
        self._waiting: list[tuple[tuple, int]] = []
        self._count = 0

    def acquire(self, priority: tuple = ()) -> None:
        with self._cv:
            self._count += 1
            me = (tuple(-p for p in priority), self._count)
            heapq.heappush(self._waiting, me)
            while not self._free or self._waiting[0] != me:
                self._cv.wait()
            heapq.heappop(self._waiting)
            self._free -= 1
            self._cv.notify_all()  # the next waiter may take another free slot

    def release(self) -> None:
        with self._cv:
            self._free += 1
            self._cv.notify_all()

    @contextmanager
    def held(self, priority: tuple = ()):
        self.acquire(priority)
        try:
            yield
        finally:
            self.release()


class PriorityLock(PrioritySlots):
    """One slot: a lock whose waiters get it in the order of their priority."""

    def __init__(self) -> None:
        super().__init__(1)


def priorities(pipeline) -> dict[str, tuple[int, int]]:
    """Per node: (training launches downstream of it, nodes downstream of it). The in-process node that
    unblocks the most training runs first: the launches, one thread each, then overlap the rest."""
    children: dict[str, set[str]] = {n.name: set() for n in pipeline.nodes}
    for node, parents in pipeline.node_dependencies.items():
        for parent in parents:
            children[parent.name].add(node.name)
    launches = {n.name for n in pipeline.nodes if LAUNCH_TAG in n.tags}
    below: dict[str, set[str]] = {}

    def downstream(name: str) -> set[str]:
        if name not in below:
            found: set[str] = set()
            for child in children[name]:
                found |= {child} | downstream(child)
            below[name] = found
        return below[name]

    for node in reversed(pipeline.nodes):  # toposorted: children first, so each recursion is shallow
        downstream(node.name)
    return {name: (len(nodes & launches), len(nodes)) for name, nodes in below.items()}


class _Guarded(Executor):
    """A thread pool whose tasks each hold a slot of the machine (``busy`` nodes compute at once, so a launch
    and an in-process node never oversubscribe the cores) and, an in-process node, the in-process lock; a
    launch holds a launch slot. Waiters are served by priority (:func:`priorities`)."""

    def __init__(self, pool: ThreadPoolExecutor, launch_slots: int, busy: int, priority: dict[str, tuple[int, int]]) -> None:
        self._pool = pool
        self._in_process = PriorityLock()
        self._launches = PrioritySlots(launch_slots)
        self._busy = PrioritySlots(busy)
        self._priority = priority

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        node = getattr(fn, "node", None)
        rank = self._priority.get(node.name, ()) if node is not None else ()
        first = self._launches if node is not None and LAUNCH_TAG in node.tags else self._in_process

        def guarded() -> Any:
            with first.held(rank), self._busy.held(rank):  # always in this order: no two tasks wait on each other
                return fn(*args, **kwargs)

        return self._pool.submit(guarded)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)


class StageRunner(ThreadRunner):
    """Kedro's ``ThreadRunner`` with training launches side by side and every other node alone (module doc)."""

    def __init__(self, max_workers: int | None = None, is_async: bool = False, max_launches: int | None = None,
                 max_busy: int | None = None) -> None:
        cores = max(2, os.cpu_count() or 1)
        self._launch_slots = max_launches
        self._busy = max_busy or cores  # nodes computing at once: one per core
        super().__init__(max_workers=max_workers or cores, is_async=is_async)

    def _run(self, pipeline, catalog, hook_manager=None, run_id=None) -> None:
        self._priority = priorities(pipeline)
        if any(LAUNCH_TAG in node.tags for node in pipeline.nodes):
            import torch

            from kowen_kedro.training import warm

            if not torch.cuda.is_available():
                warm.prestart()  # the training libraries load in the warm interpreter while the first nodes run
        super()._run(pipeline, catalog, hook_manager=hook_manager, run_id=run_id)

    def _get_executor(self, max_workers: int) -> Executor:
        slots = self._launch_slots or default_launch_slots()
        # blocked workers cost nothing: enough of them that a ready launch never waits behind in-process nodes
        workers = max(max_workers, slots + 8)
        return _Guarded(ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kedro-node"), slots, self._busy,
                        getattr(self, "_priority", {}))
