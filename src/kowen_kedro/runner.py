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
the most nodes downstream), so the stages on the critical path start early: the in-process nodes that
lead to SFT run before the reports, and the reports fill the other core while SFT trains. A node that
its parent's end has just made ready counts as waiting at once (:class:`Machine`), so a lower node
that was waiting already does not slip in before the runner has handed it over.

Nodes tagged ``forked`` (:data:`kowen_kedro.forked.FORK_TAG`: the gold evaluations, MT-Bench's grading and the
rubric) compute, on a machine without
CUDA, in a process forked from the warm interpreter the launches fork from (:mod:`kowen_kedro.forked`); the runner
counts each as it counts a launch (a core and a launch slot), so two of them, or one and an in-process node, run at
once.

Where a GPU is present, launches use all of it (or all GPUs of the node): there they run one at a time
too (``max_launches`` 1), as under the sequential runner.

MLflow: kedro-mlflow reopens the pipeline's run in every worker thread before a node runs, so every
metric lands in the one run of the ``kedro run`` (tests/test_end_to_end.py counts them).

A failing node stops the run with its own error; a launch running beside it finishes and keeps its
model (a rerun reuses it, :mod:`kowen_kedro.training.stages`); nothing is half-written (every dataset
saves through a temporary file).
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Callable

from kedro.runner import ThreadRunner

from kowen_kedro.forked import FORK_TAG, check_forked, forking

#: The tag of nodes whose work runs in a training child process (they may overlap other nodes).
LAUNCH_TAG = "launch"


def default_launch_slots() -> int:
    """Launches that may run at once: one per CPU core without CUDA (each child runs one torch thread), one
    where a GPU is present (a launch takes the node's GPUs)."""
    import torch

    return 1 if torch.cuda.is_available() else max(1, os.cpu_count() or 1)


class Machine:
    """The machine's slots, handed out by priority: ``cores`` (every computing node takes one), ``launches``
    (a training launch takes one) and the one in-process slot (every other node takes it). A waiter gets its
    slots as soon as they are free and no waiter of a higher priority (then an earlier one) could take
    them now; a waiter that cannot be served does not hold up one of a lower priority that can (an
    in-process node waiting for the in-process slot leaves a free core to a launch: the node that holds
    the slot frees a core too when it ends).

    A node that has just become ready may not have been handed to the pool yet when its parent frees its
    slots: :meth:`expect` keeps its place for ``grace`` seconds (its priority counts at once), so a
    node of a lower priority that was already waiting does not take the slots meanwhile."""

    def __init__(self, cores: int, launches: int, grace: float = 5.0) -> None:
        self._cv = threading.Condition()
        self._free = {"core": cores, "launch": launches, "in_process": 1}
        self._waiting: dict[int, tuple[tuple, tuple[str, ...]]] = {}  # ticket -> (order key, slots needed)
        self._expected: dict[str, tuple[int, float]] = {}  # node name -> (its ticket, until when it is kept)
        self._count = 0
        self._grace = grace

    @staticmethod
    def needs(launch: bool) -> tuple[str, ...]:
        return ("launch", "core") if launch else ("in_process", "core")

    def _ticket(self, priority: tuple, needs: tuple[str, ...]) -> int:
        self._count += 1
        self._waiting[self._count] = ((tuple(-p for p in priority), self._count), needs)
        return self._count

    def expect(self, name: str, priority: tuple, launch: bool) -> None:
        """Keep a place for the node ``name``, ready but not yet handed to the pool."""
        with self._cv:
            if name not in self._expected:
                self._expected[name] = (self._ticket(priority, self.needs(launch)), time.monotonic() + self._grace)

    def _drop_stale(self) -> float | None:
        """Forget expected nodes whose grace ran out; the seconds until the next one runs out (None: none)."""
        now = time.monotonic()
        for name, (ticket, until) in list(self._expected.items()):
            if until <= now:
                del self._expected[name], self._waiting[ticket]
        return min((until - now for _, until in self._expected.values()), default=None)

    def _served(self) -> set[int]:
        """The waiters the free slots serve now, in priority order, each taking what it needs."""
        free, served = dict(self._free), set()
        for key, needs in sorted(self._waiting.values()):
            if all(free[slot] > 0 for slot in needs):
                for slot in needs:
                    free[slot] -= 1
                served.add(key[1])
        return served

    def acquire(self, name: str, priority: tuple = (), launch: bool = False) -> None:
        with self._cv:
            if name in self._expected:  # its place was kept
                ticket, _ = self._expected.pop(name)
            else:
                ticket = self._ticket(priority, self.needs(launch))
            while True:
                wait = self._drop_stale()
                if ticket in self._served():
                    break
                self._cv.wait(wait)
            for slot in self._waiting.pop(ticket)[1]:
                self._free[slot] -= 1
            self._cv.notify_all()

    def release(self, launch: bool = False) -> None:
        with self._cv:
            for slot in self.needs(launch):
                self._free[slot] += 1
            self._cv.notify_all()

    @contextmanager
    def held(self, name: str, priority: tuple = (), launch: bool = False):
        self.acquire(name, priority, launch)
        try:
            yield
        finally:
            self.release(launch)


@dataclass(frozen=True)
class Graph:
    """A pipeline's nodes by name: each one's parents and children, which are training launches, and each
    one's priority, (training launches downstream of it, nodes downstream of it). The in-process node that
    unblocks the most training runs first: the launches, one thread each, then overlap the rest."""

    parents: dict[str, frozenset[str]]
    children: dict[str, frozenset[str]]
    launches: frozenset[str]
    priority: dict[str, tuple[int, int]]
    #: the nodes that compute in a process of their own: the launches, and the forked nodes where forking is on
    separate: frozenset[str] = frozenset()

    @classmethod
    def of(cls, pipeline, forking: bool = False) -> Graph:
        parents = {node.name: frozenset(p.name for p in ups) for node, ups in pipeline.node_dependencies.items()}
        children: dict[str, set[str]] = {name: set() for name in parents}
        for name, ups in parents.items():
            for up in ups:
                children[up].add(name)
        launches = frozenset(n.name for n in pipeline.nodes if LAUNCH_TAG in n.tags)
        below: dict[str, set[str]] = {}
        for node in reversed(pipeline.nodes):  # toposorted: children first, each one's set is known already
            below[node.name] = set().union(*({child} | below[child] for child in children[node.name]))
        forked = frozenset()
        if forking:
            for node in pipeline.nodes:
                check_forked(node)
            forked = frozenset(n.name for n in pipeline.nodes if FORK_TAG in n.tags)
        return cls(parents, {name: frozenset(c) for name, c in children.items()}, launches,
                   {name: (len(nodes & launches), len(nodes)) for name, nodes in below.items()}, launches | forked)

    @classmethod
    def empty(cls) -> Graph:
        return cls({}, {}, frozenset(), {})


def forks(pipeline) -> bool:
    """Whether ``pipeline`` forks from the warm interpreter (:mod:`kowen_kedro.training.warm`): it has training
    launches or forked nodes (:mod:`kowen_kedro.forked`), and there is no GPU."""
    if not any({LAUNCH_TAG, FORK_TAG} & set(node.tags) for node in pipeline.nodes):
        return False
    import torch

    return not torch.cuda.is_available()


class _Guarded(Executor):
    """A thread pool whose tasks each take their slots of the :class:`Machine` while they run: a core, and
    a launch slot (a launch or a forked node) or the in-process slot (any other node); served by priority
    (:class:`Graph`). The first nodes keep their place from the start, and when a node ends, the nodes it
    was the last input of keep theirs at once (:meth:`Machine.expect`), before the runner hands them over."""

    def __init__(self, pool: ThreadPoolExecutor, launch_slots: int, busy: int, graph: Graph) -> None:
        self._pool = pool
        self._machine = Machine(busy, launch_slots)
        self._graph = graph
        self._done: set[str] = set()
        self._submitted: set[str] = set()
        self._state = threading.Lock()
        for name, ups in graph.parents.items():  # the first nodes: handed over one by one, served by priority
            if not ups:
                self._expect(name)

    def _expect(self, name: str) -> None:
        self._machine.expect(name, self._graph.priority.get(name, ()), name in self._graph.separate)

    def _ready_after(self, name: str) -> list[str]:
        """The nodes that ``name``'s end makes ready and that are not handed over yet."""
        with self._state:
            self._done.add(name)
            return [child for child in self._graph.children.get(name, ())
                    if child not in self._submitted and self._graph.parents[child] <= self._done]

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        node = getattr(fn, "node", None)
        name = node.name if node is not None else f"task-{id(fn)}"
        rank = self._graph.priority.get(name, ())
        launch = name in self._graph.separate
        with self._state:
            self._submitted.add(name)

        def guarded() -> Any:
            with self._machine.held(name, rank, launch):
                result = fn(*args, **kwargs)
                for child in self._ready_after(name):  # before this node's slots are free
                    self._expect(child)
                return result

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
        fork = forks(pipeline)
        self._graph = Graph.of(pipeline, forking=fork)
        if fork:  # the warm interpreter imports the training libraries while the first nodes run
            from kowen_kedro.training import warm

            warm.prestart()
        with forking() if fork else nullcontext():
            super()._run(pipeline, catalog, hook_manager=hook_manager, run_id=run_id)

    def _get_executor(self, max_workers: int) -> Executor:
        slots = self._launch_slots or default_launch_slots()
        # a worker per node: blocked workers cost nothing, and a ready node must reach the Machine to take its
        # slots (one queued in the pool behind nodes blocked there would wait for them, whatever its priority)
        graph = getattr(self, "_graph", None) or Graph.empty()
        workers = max(max_workers, slots + 8, len(graph.parents))
        return _Guarded(ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kedro-node"), slots, self._busy, graph)
