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
    """``tiny_models`` of the session's tiny models: conf/base's with fewer steps (a quarter of the QE model's: its
    child process is the build's longest part), the world's text as it is."""
    return {**base_params()["tiny_models"], "out_dir": str(out_dir), "pretrain_steps": 60, "teacher_steps": 60,
            "qe_steps": 300, "pretrain_english_share": None}


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


def copy_project(project: Path, to: Path) -> Path:
    """A copy of a run's ``project`` at ``to`` (every file's time kept) whose MLflow store is its own: the copied
    store names the original's folder in its artifact locations (MLflow stores them absolute), so a run in the
    copy would write its artifacts into the original's ``mlruns``; here they point into the copy's. Its tracking
    URI is the copy's absolute path (MLflow keeps one store per URI in a process, and the project's
    ``sqlite:///mlflow.db`` is relative, so a second project's session in one process would log into the first's)."""
    import shutil
    import sqlite3

    shutil.copytree(project, to, symlinks=True)
    db = to / "mlflow.db"
    if db.exists():
        con = sqlite3.connect(db)
        with con:
            for old, new in ((project.resolve().as_uri(), to.resolve().as_uri()), (str(project.resolve()), str(to.resolve()))):
                for table, column in (("experiments", "artifact_location"), ("runs", "artifact_uri")):
                    con.execute(f"UPDATE {table} SET {column} = replace({column}, ?, ?)", (old, new))
        con.close()
    (to / "conf" / "local" / "mlflow.yml").write_text(
        f"server:\n  mlflow_tracking_uri: sqlite:///{db}\n  mlflow_registry_uri: null\n")
    return to


def kedro_run(project: str | Path, params: dict | None = None, **run: object) -> None:
    """``kedro run`` of ``project`` in this process, as the command line runs it (:class:`StageRunner`), with
    the runtime ``params`` and ``session.run``'s own arguments (``to_outputs``, ``node_names``): its own
    MLflow run, whatever this process ran before."""
    import os

    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    from kowen_kedro.runner import StageRunner

    project = Path(project)
    os.chdir(project)
    bootstrap_project(project)
    end_active_runs()
    with KedroSession.create(project_path=project, runtime_params=params or {}) as session:
        session.run(runner=StageRunner(), **run)


def run_reruns(project: str | Path, root: str | Path, steps: dict[str, dict]) -> None:
    """For each step ``{name: {"params": ..., "nodes": [...] or None}}`` in order, ``kedro run --params ...
    --nodes ...`` on top of the finished run ``project``, in a copy of it (``root/<name>``, its own MLflow
    store), in this process one after the other (its imports and the warm interpreter the launches fork from
    serve them all; each its own MLflow run, as from the command line); ``root/<name>.done`` once it finished,
    or ``root/<name>.failed`` with the traceback (and on to the next)."""
    import traceback

    project, root = Path(project), Path(root)
    for name, step in steps.items():
        try:
            kedro_run(copy_project(project, root / name), step.get("params"), node_names=step.get("nodes"))
            (root / f"{name}.done").touch()
        except Exception:
            (root / f"{name}.failed").write_text(traceback.format_exc())


#: What a background process runs: a function of this file, its arguments given as JSON (the tests' folder, the
#: function's name, ``[args, kwargs]``; paths as strings)
BACKGROUND = """
import json, sys
sys.path.insert(0, sys.argv[1])
import conftest
args, kwargs = json.loads(sys.argv[3])
getattr(conftest, sys.argv[2])(*args, **kwargs)
"""


def start_background(root: Path, function: str, *args, env: dict[str, str] | None = None, nice: int = 19, **kwargs):
    """``function(*args, **kwargs)`` of this file (:data:`BACKGROUND`) in a process of its own in ``root``, logged
    to ``root/run.log``, at CPU priority ``nice``, with ``env`` on top of this environment less its hash seed
    (a process of its own, so its own hash seed, as another clone's run)."""
    import os
    import subprocess
    import sys

    log = open(root / "run.log", "w")
    child = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    child.pop("PYTHONHASHSEED", None)
    return subprocess.Popen([sys.executable, "-c", BACKGROUND, str(Path(__file__).parent), function, json.dumps([args, kwargs])],
                            cwd=root, stdout=log, stderr=subprocess.STDOUT, env=child, preexec_fn=lambda: os.nice(nice))


def start_kedro_run(root: Path, params: dict | None = None, to_outputs: list[str] | None = None,
                    env: dict[str, str] | None = None, nice: int = 19):
    """``kedro run`` (``--params``, ``--to-outputs``) in the scratch project ``root``, logged to ``run.log``,
    at CPU priority ``nice`` (by default the lowest: it takes only the core the other tests leave idle, so
    they do not slow down). Its own process, so its own hash seed, as another clone's run; its thread count
    and kernel paths are the project's pins (:mod:`kowen_kedro.floats`), whatever ``env`` adds to this
    environment."""
    return start_background(root, "kedro_run", str(root), params, to_outputs=to_outputs, env=env, nice=nice)


#: a competing CPU load: a loop that spins a third of the time (20 ms of every 60: it takes the core from the run
#: beside it again and again, without taking a third of the machine) for ``sys.argv[1]`` seconds at most, or until
#: its parent dies, or until the process ``sys.argv[2]`` (0: none) has ended
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
    for _ in range(20):
        spin = time.monotonic() + 0.02
        while time.monotonic() < spin:
            sum(i * i for i in range(1_000))
        time.sleep(0.04)
"""


def start_busy_loop(seconds: float, while_running: int = 0, nice: int = 19):
    """A bounded busy loop (:data:`BUSY_LOOP`) in a process of its own, at CPU priority ``nice``: that of the
    background run it competes with (so it takes that run's time, not the tests'); it ends after ``seconds``,
    when the process ``while_running`` (a pid) has ended, or with the session, whichever comes first."""
    import os
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-c", BUSY_LOOP, str(seconds), str(while_running)], preexec_fn=lambda: os.nice(nice))


def pytest_report_header(config):
    from kowen_kedro import floats

    return [f"kowen-kedro: {floats.describe()}"]


class After:
    """A background run that starts when the module's background run ``parent`` has finished:
    ``start(root, parent_root) -> Popen`` (for runs on top of another, e.g. in copies of its project);
    ``provides``: the names of the fixtures that take it, besides its own name."""

    def __init__(self, parent: str, start, provides: tuple[str, ...] = ()) -> None:
        self.parent, self.start, self.provides = parent, start, set(provides)


class Follower:
    """The process of an :class:`After` run, as far as the fixtures use a ``Popen``: a thread waits for the
    run it follows, then starts it (not when that run failed: then it fails, saying so in its ``run.log``)."""

    def __init__(self, after: After, root: Path, parent_root: Path, parent) -> None:
        import threading

        self.proc, self._code, self._killed, self._lock = None, None, False, threading.Lock()
        self._thread = threading.Thread(target=self._follow, args=(after, root, parent_root, parent), daemon=True)
        self._thread.start()

    def _follow(self, after: After, root: Path, parent_root: Path, parent) -> None:
        code = parent.wait()
        with self._lock:
            if self._killed:
                self._code = -9
            elif code:
                (root / "run.log").write_text(f"not started: the run it follows ({after.parent}, {parent_root}) failed (exit {code})\n")
                self._code = 1
            else:
                self.proc = after.start(root, parent_root)

    def wait(self, timeout: float | None = None) -> int | None:
        self._thread.join(timeout)
        return self._code if self.proc is None else self.proc.wait(timeout)

    def poll(self) -> int | None:
        if self._thread.is_alive():
            return None
        return self._code if self.proc is None else self.proc.poll()

    def kill(self) -> None:
        with self._lock:
            self._killed = True
            if self.proc is not None:
                self.proc.kill()


def reruns_after(parent: str, steps: dict[str, dict], nice: int = 10) -> After:
    """The ``steps`` of :func:`run_reruns` on top of the module's background run ``parent``, one process for
    all, started when ``parent`` has finished, at CPU priority ``nice`` (by default below the tests, above the
    other background runs: its module's tests wait for it before theirs); each step's fixture
    (:func:`finished_rerun`) takes its name."""
    def start(root: Path, parent_root: Path):
        return start_background(root, "run_reruns", str(parent_root), str(root), steps, nice=nice)

    return After(parent, start, provides=tuple(steps))


def finished_rerun(request, tmp_path_factory, chain: str, name: str) -> Path:
    """The project of step ``name`` of the module's background reruns ``chain`` (:func:`reruns_after`) once
    that step has finished; fails with its traceback, or with the end of the chain's log."""
    import time

    root, proc = _background_run(request, tmp_path_factory, chain)
    deadline = time.monotonic() + 1800
    while not (root / f"{name}.done").exists():
        if (root / f"{name}.failed").exists():
            pytest.fail(f"the rerun {name} failed:\n{(root / f'{name}.failed').read_text()[-4000:]}")
        if proc.poll() is not None or time.monotonic() > deadline:
            log = root / "run.log"
            pytest.fail(f"the reruns ended (exit {proc.poll()}) before {name} finished:\n"
                        f"{log.read_text(errors='replace')[-4000:] if log.exists() else ''}")
        time.sleep(1)
    return root / name


def _background_run(request, tmp_path_factory, name: str):
    """(folder, process) of the requesting module's background run ``name``: the one the session started, or
    one started here, now, when the session started without it."""
    runs = getattr(request.config, "kowen_background_runs", {})
    key = f"{request.module.__name__.rpartition('.')[2]}:{name}"
    root, proc = runs.get(key) or (None, None)
    if proc is None:
        root = tmp_path_factory.mktemp(name)
        start = request.module.BACKGROUND_RUNS[name]
        proc = (start.start(root, finished_background_run(request, tmp_path_factory, start.parent)) if isinstance(start, After)
                else start(root))
        runs[key] = (root, proc)
    return root, proc


def finished_background_run(request, tmp_path_factory, name: str) -> Path:
    """The project of the requesting module's background run ``name`` once it has finished (started by the
    session fixture below, or here, now, when the session started without it); fails with its log's end."""
    root, proc = _background_run(request, tmp_path_factory, name)
    assert proc.wait(timeout=1800) == 0, (root / "run.log").read_text(errors="replace")[-4000:]
    return root


#: A test module with ``BACKGROUND_RUNS = {name: start(root) -> Popen, or After(parent, start)}`` gets each run that
#: a selected test takes (through the fixture of the run's name, or one an :class:`After` provides), and each run
#: those follow, started when the session's first test sets up, each in an empty folder of its own (such a run
#: takes minutes of one core, and the machine has two), an :class:`After` run once the run it follows has
#: finished; and its tests moved to the end of the session, so that the other tests run meanwhile; its fixtures
#: wait for them (:func:`finished_background_run`, :func:`finished_rerun`). Collection starts nothing; the
#: folders are removed when the session ends.
@pytest.hookimpl(trylast=True)  # after -m / -k deselection
def pytest_collection_modifyitems(session, config, items):
    items.sort(key=lambda item: bool(getattr(item.module, "BACKGROUND_RUNS", None)))  # stable: those modules last


@pytest.fixture(scope="session", autouse=True)
def background_runs(request):
    """Start the background runs the selected tests take (deselected tests start none); kill what is still
    running and remove every run's folder when the session ends."""
    import shutil
    import tempfile

    started, needed = {}, {}
    for item in request.session.items:
        runs = getattr(item.module, "BACKGROUND_RUNS", {})
        for name, start in runs.items():
            if name in item.fixturenames or (isinstance(start, After) and start.provides & set(item.fixturenames)):
                needed.setdefault(Path(str(item.fspath)).stem, (runs, set()))[1].add(name)
    for module, (runs, names) in needed.items():
        while any(isinstance(runs[n], After) and runs[n].parent not in names for n in names):  # and the runs they follow
            names |= {runs[n].parent for n in names if isinstance(runs[n], After)}
        for name in sorted(names, key=lambda n: isinstance(runs[n], After)):  # the runs followed first
            root = Path(tempfile.mkdtemp(prefix=f"kowen-{module}-{name}-"))
            start = runs[name]
            if isinstance(start, After):
                parent_root, parent = started[f"{module}:{start.parent}"]
                started[f"{module}:{name}"] = (root, Follower(start, root, parent_root, parent))
            else:
                started[f"{module}:{name}"] = (root, start(root))
    request.config.kowen_background_runs = started
    yield started
    for root, proc in reversed(list(started.values())):  # the followers first: none starts after its parent is killed
        if proc.poll() is None:
            proc.kill()
    for root, proc in started.values():
        proc.wait()
        shutil.rmtree(root, ignore_errors=True)
