"""Shared fixtures. The tiny models are built once per session (offline, from the shipped data)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pandas as pd
import pytest

from kowen_kedro.offline import configure_offline

configure_offline()

ROOT = Path(__file__).resolve().parents[1]
RAW = ROOT / "data" / "01_raw"


def read_jsonl(path: Path) -> pd.DataFrame:
    from kowen_kedro.datasets import JSONLinesDataset

    return JSONLinesDataset(str(path)).load()


@pytest.fixture(scope="session")
def raw_data() -> dict[str, pd.DataFrame]:
    return {name: read_jsonl(RAW / f"{name}.jsonl") for name in ("user_prompts", "preference_pairs", "seed_passages", "eval_prompts")}


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> dict[str, pd.DataFrame]:
    """The default's raw inputs: the tiny world of seed 0, read through the catalog's dataset."""
    from kowen_kedro.datasets import WorldPartDataset
    from kowen_kedro.world.generate import PARTS

    out = tmp_path_factory.mktemp("world")
    return {part: WorldPartDataset(part, seed=0, directory=str(out)).load() for part in PARTS}


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory, world) -> dict:
    """The built-in tiny models, built by the project's own node from the tiny world."""
    from kowen_kedro.pipelines.models.nodes import build_tiny_models_node

    out = tmp_path_factory.mktemp("tiny")
    return build_tiny_models_node(world["user_prompts"], world["preference_pairs"], world["seed_passages"], tiny_params(out),
                                  ["en", "ko"], None, world["parallel_sentences"])


def tiny_params(out_dir) -> dict:
    """``tiny_models`` of the session's tiny models: conf/base's with fewer steps, the world's text as it is."""
    return {**base_params()["tiny_models"], "out_dir": str(out_dir), "pretrain_steps": 60, "teacher_steps": 60,
            "pretrain_english_share": None}


def base_params() -> dict:
    """conf/base's parameters, resolved (the default run's, without --params)."""
    from kowen_kedro.parameters import recipe_params

    return recipe_params(ROOT / "conf")


def training_group(**overrides):
    """conf/base's ``training`` group with ``overrides`` merged in (``deepspeed={"zero_stage": 2}`` keeps the rest)."""
    from kowen_kedro.groups import Training
    from kowen_kedro.parameters import merge

    return Training.of(merge([base_params()["training"], overrides]))


def preflight_group():
    """conf/base's ``preflight`` group (the assumptions auto training settings are sized with)."""
    from kowen_kedro.groups import Preflight

    return Preflight.of(base_params()["preflight"])


def stage_group(**overrides):
    """A training stage group: conf/base's ``sft`` block (without its ``languages``) with ``overrides`` set."""
    from kowen_kedro.groups import Stage

    sft = {k: v for k, v in base_params()["sft"].items() if k != "languages"}
    return Stage.of({**sft, **overrides}, "sft")


def end_active_runs() -> None:
    """End the MLflow runs this process has active, so that the next kedro session starts its own (else
    kedro-mlflow logs into the active one); one of a store that is gone (an earlier test's project whose
    kedro session failed before kedro-mlflow could end it) is only let go."""
    import mlflow
    from mlflow.tracking import fluent

    while mlflow.active_run() is not None:
        try:
            mlflow.end_run()
        except mlflow.exceptions.MlflowException:
            fluent._active_run_stack.get().pop()


@pytest.fixture(scope="session")
def vllm_python() -> str:
    """The interpreter of vLLM's environment (``make vllm-env``; ``make test`` builds it first): a test
    that needs it is skipped without it, and fails without it under CI, where its absence is a defect."""
    import os
    import sys

    from kowen_kedro.llm.envs import worker_python

    python = worker_python("vllm")
    if python == sys.executable:
        message = "no vLLM environment: `make vllm-env` (make test builds it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return python


@pytest.fixture
def write_jsonl(tmp_path):
    def _write(name: str, lines: list) -> Path:
        path = tmp_path / name
        path.write_text("".join((l if isinstance(l, str) else json.dumps(l, ensure_ascii=False)) + "\n" for l in lines))
        return path

    return _write


@pytest.fixture
def no_network(monkeypatch):
    """Any connection attempt to a non-loopback address fails the test."""
    real = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and not (host.startswith("127.") or host in ("localhost", "::1") or host.startswith("/")):
            raise AssertionError(f"network access attempted: {address}")
        return real(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


def scratch_project(root: Path, raw_data: bool = True) -> Path:
    """A scratch copy of the project at ``root`` for a whole ``kedro run``: its configuration, and the
    shipped raw data (without ``raw_data``: the published-benchmark samples alone, which are English,
    and not the hand-written Korean samples; the world is generated on first load either way). The
    package itself is imported from the installed (editable) kowen_kedro."""
    import shutil

    for item in ("pyproject.toml", ".telemetry"):
        shutil.copy(ROOT / item, root / item)
    shutil.copytree(ROOT / "conf" / "base", root / "conf" / "base")
    shutil.copy(ROOT / "conf" / "logging.yml", root / "conf" / "logging.yml")  # the console a user sees
    (root / "conf" / "local").mkdir()
    (root / "src").mkdir()
    if raw_data:
        shutil.copytree(ROOT / "data" / "01_raw", root / "data" / "01_raw")
    else:
        shutil.copytree(ROOT / "data" / "01_raw" / "benchmarks", root / "data" / "01_raw" / "benchmarks")
    return root


#: ``kedro run`` in a scratch project, in a process of its own (see :func:`start_kedro_run`).
KEDRO_RUN = """
import json, sys
from pathlib import Path
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
root, params, to_outputs = Path(sys.argv[1]), json.loads(sys.argv[2]), json.loads(sys.argv[3])
bootstrap_project(root)
from kowen_kedro.runner import StageRunner
with KedroSession.create(project_path=root, runtime_params=params) as session:
    session.run(to_outputs=to_outputs, runner=StageRunner())  # what `kedro run` runs with
"""


def start_kedro_run(root: Path, params: dict | None = None, to_outputs: list[str] | None = None,
                    env: dict[str, str] | None = None, nice: int = 19):
    """``kedro run`` (``--params``, ``--to-outputs``) in the scratch project ``root``, logged to ``run.log``,
    at CPU priority ``nice`` (by default the lowest: it takes only the core the other tests leave idle, so
    they do not slow down). Its own process, so its own hash seed, as another clone's run; its thread count
    and kernel paths are the project's pins (:mod:`kowen_kedro.floats`), whatever ``env`` adds to this
    environment."""
    import os
    import subprocess
    import sys

    log = open(root / "run.log", "w")
    child = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    child.pop("PYTHONHASHSEED", None)
    return subprocess.Popen([sys.executable, "-c", KEDRO_RUN, str(root), json.dumps(params or {}), json.dumps(to_outputs)],
                            cwd=root, stdout=log, stderr=subprocess.STDOUT, env=child, preexec_fn=lambda: os.nice(nice))


#: a competing CPU load: a loop that spins for ``sys.argv[1]`` seconds at most, or until its parent dies, or until
#: the process ``sys.argv[2]`` (0: none) has ended
BUSY_LOOP = """
import os, sys, time
end, parent, watched = time.monotonic() + float(sys.argv[1]), os.getppid(), int(sys.argv[2])

def running(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in "ZX"
    except OSError:
        return False

while time.monotonic() < end and os.getppid() == parent and (not watched or running(watched)):
    for _ in range(50):
        sum(i * i for i in range(10_000))
"""


def start_busy_loop(seconds: float, while_running: int = 0):
    """A bounded busy loop in a process of its own, at the priority of the background runs (so it takes
    their core's time, not the tests'); it ends after ``seconds``, when the process ``while_running`` (a pid)
    has ended, or with the session, whichever comes first."""
    import os
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-c", BUSY_LOOP, str(seconds), str(while_running)], preexec_fn=lambda: os.nice(19))


def pytest_report_header(config):
    from kowen_kedro import floats

    return [f"kowen-kedro: {floats.describe()}"]


def finished_background_run(request, tmp_path_factory, name: str) -> Path:
    """The project of the requesting module's background run ``name`` once it has finished (started by the
    session fixture below, or here, now, when the session started without it); fails with its log's end."""
    runs = getattr(request.config, "kowen_background_runs", {})
    key = f"{request.module.__name__.rpartition('.')[2]}:{name}"
    root, proc = runs.get(key) or (None, None)
    if proc is None:
        root = tmp_path_factory.mktemp(name)
        proc = request.module.BACKGROUND_RUNS[name](root)
    assert proc.wait(timeout=1800) == 0, (root / "run.log").read_text(errors="replace")[-4000:]
    return root


#: A test module with ``BACKGROUND_RUNS = {name: start(root) -> Popen}`` gets each of its runs started, each in
#: an empty folder of its own, when the session's first test sets up (such a run takes minutes of one core,
#: and the machine has two), and its tests moved to the end of the session, so that the other tests run
#: meanwhile; its fixtures wait for them (:func:`finished_background_run`). Collection starts nothing; the
#: folders are removed when the session ends.
@pytest.hookimpl(trylast=True)  # after -m / -k deselection
def pytest_collection_modifyitems(session, config, items):
    items.sort(key=lambda item: bool(getattr(item.module, "BACKGROUND_RUNS", None)))  # stable: those modules last


@pytest.fixture(scope="session", autouse=True)
def background_runs(request):
    """Start the background runs of the selected tests' modules (deselected tests start none); kill what is
    still running and remove every run's folder when the session ends."""
    import shutil
    import tempfile

    started = {}
    for item in request.session.items:
        module = Path(str(item.fspath)).stem
        for name, start in getattr(item.module, "BACKGROUND_RUNS", {}).items():
            key = f"{module}:{name}"
            if key not in started:
                root = Path(tempfile.mkdtemp(prefix=f"kowen-{module}-{name}-"))
                started[key] = (root, start(root))
    request.config.kowen_background_runs = started
    yield started
    for root, proc in started.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(root, ignore_errors=True)
