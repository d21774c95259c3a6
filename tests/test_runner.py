"""The project's runner (kowen_kedro.runner.StageRunner): launches side by side, every other node alone, a
failure that keeps what ran beside it, and `kedro run` using it by default."""

from __future__ import annotations

import threading
import time

import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Node, Pipeline

from kowen_kedro.runner import LAUNCH_TAG, StageRunner


class Overlap:
    """Counts how many of a group of nodes run at the same moment (the peak). Each node, once started, waits
    (at most 60 s) until ``together`` of the group have been running at once, then works ``seconds``: the
    overlap the runner allows shows however slowly a loaded machine starts the threads."""

    def __init__(self, together: int = 1) -> None:
        self.cond, self.now, self.peak, self.together = threading.Condition(), 0, 0, together

    def work(self, seconds: float):
        def run(x):
            with self.cond:
                self.now += 1
                self.peak = max(self.peak, self.now)
                self.cond.notify_all()
                self.cond.wait_for(lambda: self.peak >= self.together, timeout=60)
            time.sleep(seconds)
            with self.cond:
                self.now -= 1
            return x + 1
        return run


def _catalog(**values) -> DataCatalog:
    return DataCatalog({name: MemoryDataset(value) for name, value in values.items()})


def test_launches_overlap_and_in_process_nodes_never_do():
    launches, in_process = Overlap(together=2), Overlap()
    nodes = [Node(launches.work(0.3), "x", f"launch_{i}", name=f"launch_{i}", tags=[LAUNCH_TAG]) for i in range(3)]
    nodes += [Node(in_process.work(0.1), "x", f"local_{i}", name=f"local_{i}") for i in range(4)]
    out = StageRunner(max_launches=2, max_busy=3).run(Pipeline(nodes), _catalog(x=1))
    assert {name: ds.load() if hasattr(ds, "load") else ds for name, ds in out.items()} == {
        **{f"launch_{i}": 2 for i in range(3)}, **{f"local_{i}": 2 for i in range(4)}}
    assert launches.peak == 2  # two launch slots, three launches: two at once, never three
    assert launches.peak + in_process.peak <= 3
    assert in_process.peak == 1  # the in-process nodes one at a time, although they were all ready together


def test_a_failing_node_stops_the_run_with_its_error_and_the_launch_beside_it_finishes(tmp_path):
    finished = tmp_path / "finished"

    def slow_launch(x):
        time.sleep(0.5)
        finished.write_text("model")
        return x

    def broken(x):
        time.sleep(0.1)
        raise ValueError("stage B: bad pairs in row 3")

    nodes = [Node(slow_launch, "x", "a", name="launch_a", tags=[LAUNCH_TAG]),
             Node(broken, "x", "b", name="launch_b", tags=[LAUNCH_TAG]),
             Node(lambda a, b: a, ["a", "b"], "c", name="after_both")]
    catalog = _catalog(x=1)
    with pytest.raises(ValueError, match="stage B: bad pairs in row 3"):
        StageRunner(max_launches=2).run(Pipeline(nodes), catalog)
    assert finished.read_text() == "model"  # the other stage ran to its end before the run stopped
    assert catalog["a"].load() == 1  # and its output was saved


def test_a_gpu_machine_runs_one_launch_at_a_time(monkeypatch):
    import torch

    from kowen_kedro import runner

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert runner.default_launch_slots() == 1
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(runner.os, "cpu_count", lambda: 2)
    assert runner.default_launch_slots() == 2


def test_kedro_run_uses_the_stage_runner_unless_told_otherwise(monkeypatch):
    from kowen_kedro import cli

    seen = {}
    monkeypatch.setattr(cli.kedro_run, "callback", lambda **kwargs: seen.update(kwargs))
    cli._run(runner=None, pipeline=None)
    assert seen["runner"] == "kowen_kedro.runner.StageRunner"
    cli._run(runner="SequentialRunner", pipeline=None)
    assert seen["runner"] == "SequentialRunner"



def test_the_in_process_node_that_unblocks_training_goes_first():
    from kowen_kedro.runner import Graph, Machine

    def same(x):
        return x

    pipe = Pipeline([Node(same, "x", "ra", name="report_a"), Node(same, "x", "rb", name="report_b"),
                     Node(same, "x", "data", name="prepare"),
                     Node(same, "data", "model", name="train", tags=[LAUNCH_TAG]),
                     Node(same, "model", "scores", name="score")])
    graph = Graph.of(pipe)
    assert graph.parents["train"] == {"prepare"} and graph.children["prepare"] == {"train"} and not graph.parents["prepare"]
    assert graph.launches == {"train"}
    rank = graph.priority
    assert rank == {"report_a": (0, 0), "report_b": (0, 0), "prepare": (1, 2), "train": (0, 1), "score": (0, 0)}

    machine, order = Machine(cores=2, launches=2), []
    machine.acquire("running")  # the in-process slot, held while the three queue up in the order report_a, prepare, report_b

    def wait_for(name):
        machine.acquire(name, rank[name])
        order.append(name)
        machine.release()

    threads = []
    for name in ("report_a", "prepare", "report_b"):
        threads.append(threading.Thread(target=wait_for, args=(name,)))
        threads[-1].start()
        while len(machine._waiting) < len(threads):
            time.sleep(0.01)
    machine.release()
    for t in threads:
        t.join(60)
    assert order == ["prepare", "report_a", "report_b"]  # the one training waits on first, then first come


def test_a_waiter_that_cannot_be_served_leaves_a_free_core_to_one_that_can():
    """An in-process node of the highest priority waits for the in-process slot; a launch of a lower priority
    takes the free core meanwhile, and the in-process node gets the slot and a core when the holder ends."""
    from kowen_kedro.runner import Machine

    machine, order = Machine(cores=2, launches=2), []
    machine.acquire("running")  # in process: the in-process slot and one core

    def wait_for(name, priority, launch):
        machine.acquire(name, priority, launch)
        order.append(name)

    first = threading.Thread(target=wait_for, args=("prepare", (5, 5), False))
    first.start()
    while len(machine._waiting) < 1:
        time.sleep(0.01)
    launch = threading.Thread(target=wait_for, args=("train", (0, 1), True))
    launch.start()
    launch.join(60)
    assert order == ["train"]  # the launch took the second core although a higher priority waits
    machine.release()  # the in-process holder ends: its slot and its core go to the waiting node
    first.join(60)
    assert order == ["train", "prepare"]


def test_a_node_made_ready_by_the_one_ending_goes_before_a_lower_one_already_waiting():
    """When a node ends, the node it was the last input of keeps its place before the runner hands it over:
    the run goes prepare_1, prepare_2 (which lead to a training launch), then the reports that had been
    waiting since the start, not prepare_1, a report, prepare_2 - however many reports wait (each blocked in
    a worker of its own: a node queued behind them in the pool could not take its place)."""
    order, lock = [], threading.Lock()

    def step(name, seconds=0.02):
        def run(*inputs):
            time.sleep(seconds)
            with lock:
                order.append(name)
            return 1
        return run

    reports = [f"report_{i}" for i in range(24)]
    nodes = [Node(step("prepare_1", 0.3), "x", "a", name="prepare_1"), Node(step("prepare_2"), "a", "b", name="prepare_2"),
             Node(step("train"), "b", "model", name="train", tags=[LAUNCH_TAG])]
    nodes += [Node(step(name), "x", name, name=name) for name in reports]
    StageRunner(max_launches=2, max_busy=2).run(Pipeline(nodes), _catalog(x=1))
    assert order[:2] == ["prepare_1", "prepare_2"], order  # (had prepare_2's kept place lapsed, a report would be first)
    assert sorted(order[2:]) == sorted(reports + ["train"])


def test_a_kept_place_that_is_not_taken_lapses():
    """A place kept for a node the runner never hands over (the run stopped) lapses after its grace."""
    from kowen_kedro.runner import Machine

    machine = Machine(cores=1, launches=1, grace=0.2)
    machine.expect("never_comes", (9, 9), launch=False)
    started = time.monotonic()
    machine.acquire("report", (0, 0))
    assert 0.15 < time.monotonic() - started < 60  # after the grace, not never
    machine.release()


def test_no_more_nodes_compute_at_once_than_the_machine_has_slots():
    busy = Overlap(together=2)
    nodes = [Node(busy.work(0.2), "x", f"launch_{i}", name=f"launch_{i}", tags=[LAUNCH_TAG]) for i in range(3)]
    nodes += [Node(busy.work(0.1), "x", f"local_{i}", name=f"local_{i}") for i in range(3)]
    StageRunner(max_launches=3, max_busy=2).run(Pipeline(nodes), _catalog(x=1))
    assert busy.peak == 2


def test_a_node_line_beside_a_progress_bar_is_a_line_of_its_own(monkeypatch):
    """While a run lasts, the console hook writes its node lines through tqdm (the bars cleared, the line
    written, the bars redrawn); a plain stream handler would continue the bar's line."""
    import io
    import logging

    from tqdm.auto import tqdm

    from kowen_kedro.hooks import ConsoleHook, console

    line = "[ 7/92] sft.train_sft_node  75.0 s"

    def captured(bars_aware: bool) -> list[str]:
        out = io.StringIO()
        monkeypatch.setattr("sys.stdout", out)  # the console handler's stream, as conf/logging.yml names it
        handler = logging.StreamHandler(out)
        handler.setFormatter(logging.Formatter("%(message)s"))
        console.addHandler(handler)
        hook = ConsoleHook()
        bar = tqdm(total=10, desc="training sft", file=out, position=0, mininterval=0)
        try:
            if bars_aware:
                hook._write_beside_bars()
            bar.update(3)
            console.info(line)
            bar.update(3)
        finally:
            hook._write_plainly()
            bar.close()
            console.removeHandler(handler)
        return out.getvalue().replace("\r", "\n").splitlines()

    assert line in captured(bars_aware=True)
    assert line not in captured(bars_aware=False)  # glued to the bar's line
