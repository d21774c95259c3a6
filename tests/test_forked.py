"""Nodes computed in a process forked from the warm interpreter (kowen_kedro.forked): the result, the log and the
error come back; a node runs in place unless forking is on; under the StageRunner on a CPU two forked nodes run
side by side."""

from __future__ import annotations

import logging
import os

import pytest
from helpers import forked_calls
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Node, Pipeline

from kowen_kedro.forked import FORK_TAG, call, forked_node, forking, in_child
from kowen_kedro.runner import Graph, StageRunner


def test_a_call_computes_in_another_process_and_its_log_comes_back(caplog):
    with caplog.at_level(logging.INFO, logger="kowen_kedro.tests.forked"):
        pid, value = call(forked_calls.doubled, (21,), {})
    assert value == 42 and pid != os.getpid()
    assert f"doubled 21 in process {pid}" in [r.getMessage() for r in caplog.records]


def test_its_error_is_raised_here_with_the_child_traceback():
    with pytest.raises(ValueError, match="bad pairs in row 3") as raised:
        call(forked_calls.fails, (3,), {})
    (note,) = raised.value.__notes__
    assert note.startswith("in its forked process:") and "forked_calls.py" in note


def test_an_error_that_cannot_come_back_is_said_with_its_traceback():
    with pytest.raises(RuntimeError, match=r"(?s)Unpicklable: first and second"):
        call(forked_calls.fails_unpicklably, (), {})


def test_a_child_killed_is_an_error_that_names_the_function_and_ends_with_what_it_printed():
    with pytest.raises(RuntimeError, match=r"(?s)forked_calls\.killed ended in its forked process without a result "
                                           r"\(exit -9\); the end of what it printed:\n  about to be killed$"):
        call(forked_calls.killed, (), {})


def test_what_a_child_prints_goes_to_the_log_not_to_the_console(capfd, caplog):
    """A forked node's prints and progress bars would break into the run's node lines: they go to info.log, each
    bar at its last state."""
    with caplog.at_level(logging.INFO, logger="kowen_kedro.forked"):
        assert call(forked_calls.chatty, (), {}) == "said"
    out, err = capfd.readouterr()
    assert "hello" not in out + err and "progress" not in out + err
    printed = [r.getMessage() for r in caplog.records if r.name == "kowen_kedro.forked"]
    assert printed == ["chatty printed: hello from the child", "chatty printed: progress 3/3"]


def test_a_wrapped_function_computes_in_place_unless_forking_is_on():
    doubled = in_child(forked_calls.doubled)
    assert doubled(2) == (os.getpid(), 4)
    with forking():
        pid, value = doubled(2)
    assert value == 4 and pid != os.getpid()
    assert doubled(2)[0] == os.getpid()
    with forking():  # two runs in one process: the one that ends first leaves the other forking
        with forking():
            pass
        assert doubled(2)[0] != os.getpid()


def test_forked_nodes_take_a_core_beside_the_in_process_node_only_where_the_runner_forks():
    nodes = [forked_node(forked_calls.doubled, "x", "a", name="gold_a"), Node(lambda x: x, "x", "b", name="local_b")]
    assert Graph.of(Pipeline(nodes), forking=True).separate == {"gold_a"}
    assert Graph.of(Pipeline(nodes), forking=False).separate == frozenset()


def test_a_node_tagged_forked_whose_function_would_compute_in_place_is_an_error():
    nodes = [Node(forked_calls.doubled, "x", "a", name="gold_a", tags=[FORK_TAG])]
    with pytest.raises(ValueError, match="node gold_a is tagged 'forked' but its function is not wrapped"):
        Graph.of(Pipeline(nodes), forking=True)


def test_the_stage_runner_runs_two_forked_nodes_side_by_side(tmp_path):
    """Each of the two waits until the other has started: the run ends only if they computed at the same time
    (the in-process slot would have run them one after the other), each in a process of its own."""
    nodes = [forked_node(forked_calls.meets, ["folder", f"params:{me}", f"params:{other}"], f"said_{me}", name=f"gold_{me}")
             for me, other in (("a", "b"), ("b", "a"))]
    catalog = DataCatalog({"folder": MemoryDataset(str(tmp_path)), "params:a": MemoryDataset("a"),
                           "params:b": MemoryDataset("b")})
    out = StageRunner(max_launches=2).run(Pipeline(nodes), catalog)
    said = [out[f"said_{me}"].load() for me in ("a", "b")]
    assert said[0].startswith("a met b in process ") and said[1].startswith("b met a in process ")
    assert len({s.rsplit(" ", 1)[1] for s in said} | {str(os.getpid())}) == 3
