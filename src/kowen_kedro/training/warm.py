"""Warm launches: a training child forked from an interpreter that has torch, transformers, TRL and DeepSpeed
imported already, instead of a fresh ``python -m deepspeed.launcher.launch`` (two interpreters, each paying
those imports, for every launch).

The warm interpreter is multiprocessing's *forkserver*, started once per ``kedro run`` with the training
libraries preloaded (:data:`PRELOAD`); each launch forks a child from it. The child is what DeepSpeed's
per-node launcher would start for one local rank: the same environment (``RANK``, ``LOCAL_RANK``,
``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``, ``CROSS_RANK``, ``CROSS_SIZE``, ``LOCAL_SIZE``), the same
entry point (:mod:`kowen_kedro.training.entry`) reading the same spec and writing the same outputs, its
output appended to the run's ``train.log``. DeepSpeed still drives training inside the child
(``deepspeed.init_distributed`` and its engine, as under the launcher).

A ``kill -9`` of the ``kedro run`` ends every launch it forked (each watches a pipe only the run holds
open, :func:`kowen_kedro.lifeline.exit_when_closed`): the rerun resumes each from its last committed checkpoint.

Where: one process on one node on a machine without CUDA (:func:`eligible`). Several processes or nodes
keep DeepSpeed's launcher; so does a GPU machine, where a fork must not inherit a CUDA context and a
launch's start-up is small next to its training. ``training.warm_launches: false`` turns it off.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import sys
import threading
import time
import types
from collections import deque
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from kowen_kedro.lifeline import exit_when_closed

#: Imported once in the warm interpreter (what every training child needs before its first step).
PRELOAD = [
    "torch", "transformers", "trl", "deepspeed", "datasets", "peft",
    # what the libraries import lazily on first use: the trainers, the model classes, DeepSpeed's engine
    # and ZeRO stages, the JSON data builder
    "trl.trainer.sft_trainer", "trl.trainer.dpo_trainer", "trl.trainer.reward_trainer",
    "transformers.models.qwen2.modeling_qwen2", "transformers.models.auto.modeling_auto",
    "deepspeed.runtime.engine", "deepspeed.runtime.zero.stage3", "deepspeed.runtime.zero.stage_1_and_2",
    # DeepSpeed's optimizer check at every engine build imports its Muon optimizer, which calls torch.compile
    # at import (TorchDynamo, Inductor, functorch: about 2 s a launch); its config imports the EP presets
    "deepspeed.runtime.zero.muon.muon_optimizer", "deepspeed.module_inject.auto_ep_config",
    "deepspeed.module_inject.auto_ep_layer", "deepspeed.runtime.superoffload.superoffload_stage3",
    "deepspeed.ops.op_builder.all_ops", "torch.utils.serialization", "torch.profiler._cupti_monitor",
    "datasets.packaged_modules.json.json",
    "kowen_kedro.training.entry", "kowen_kedro.preference.clo_trainer", "kowen_kedro.training.generation_config",
    "kowen_kedro.training.preflight", "kowen_kedro.training.kernels", "kowen_kedro.tracking", "kowen_kedro.loading",
    "kowen_kedro.model_identity", "kowen_kedro.allocator",
    # the launch's MLflow logging: the client and its SQLite store (SQLAlchemy, Alembic), about 0.8 s a launch
    "mlflow.tracking", "mlflow.store.tracking.sqlalchemy_store", "mlflow.store.tracking.sqlalchemy_workspace_store",
    "sqlalchemy.dialects.sqlite", "alembic.command",
    # what the datasets library's streaming patches import for the JSON builder
    "scipy.io",
]

_CONTEXT: multiprocessing.context.BaseContext | None = None


def eligible(world_size: int, num_nodes: int, hostfile: str | None, cuda: bool) -> bool:
    """Whether a launch can fork from the warm interpreter: one process, one node, no CUDA."""
    return world_size == 1 and num_nodes == 1 and not hostfile and not cuda


def context() -> multiprocessing.context.BaseContext:
    """The forkserver context with the training libraries preloaded (the server starts at the first launch,
    with this process's environment: the float pins are in it, :mod:`kowen_kedro.floats`)."""
    global _CONTEXT
    if _CONTEXT is None:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        _CONTEXT = ctx
    return _CONTEXT


def rank_env(env: dict[str, str], launcher: str, master_port: int) -> dict[str, str]:
    """``env`` plus what DeepSpeed's per-node launcher sets for the single local rank (``launcher``
    ``deepspeed``); the ``python`` launcher sets nothing."""
    if launcher != "deepspeed":
        return dict(env)
    return {**env, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(master_port), "WORLD_SIZE": "1", "CROSS_RANK": "0",
            "CROSS_SIZE": "1", "LOCAL_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0"}


def output_to(path: str) -> None:
    """This process's stdout and stderr (its file descriptors 1 and 2, and Python's streams on them, line-buffered)
    appended to the file ``path``."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 - the process's own stdout
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115


def in_setting(env: dict[str, str], cwd: str) -> None:
    """The caller's environment and folder in the forked child (the warm interpreter has those it started with)."""
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)


def _child(spec_path: str, log_path: str, env: dict[str, str], cwd: str) -> None:
    """In the forked child: output to ``log_path``, the launch's environment and folder, then the entry point."""
    output_to(log_path)
    in_setting(env, cwd)
    from kowen_kedro.training import entry

    forked_with = set(sys.modules)
    entry.main(["--spec", spec_path])
    print(f"warm launch: imported after the fork: {late_imports(forked_with) or 'nothing'}")
    sys.stdout.flush()
    sys.stderr.flush()


def late_imports(forked_with: set[str]) -> str:
    """The modules imported since the fork (absent from ``forked_with``), by top-level package with their
    count, most first: what :data:`PRELOAD` could have imported once for every launch."""
    from collections import Counter

    packages = Counter(name.split(".")[0] for name in set(sys.modules) - forked_with)
    return ", ".join(f"{package} ({count})" for package, count in sorted(packages.items(), key=lambda kv: (-kv[1], kv[0])))


_START = threading.Lock()


def prestart() -> None:
    """Start the warm interpreter now (it imports the training libraries while the run does other work), so
    that the first launch finds it ready."""
    from multiprocessing import forkserver

    context()
    with _without_main_module():
        forkserver.ensure_running()


@contextmanager
def _without_main_module():
    """Start a child without multiprocessing re-running this process's main script in it (``kedro``'s console
    script: its CLI imports, Kedro's logging set-up): the child's target lives in this module, so it needs
    nothing from ``__main__``."""
    with _START:
        main = sys.modules["__main__"]
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            yield
        finally:
            sys.modules["__main__"] = main


def fork(target: Callable[..., None], args: tuple, name: str) -> int:
    """``target(*args)`` in a child forked from the warm interpreter (``target`` a module-level function), which ends
    with this process; its exit code once it has ended."""
    proc, keep_alive = _start(target, args, name)
    try:
        proc.join()
    finally:
        keep_alive.close()
    return _exit_code(proc)


def _start(target: Callable[..., None], args: tuple, name: str):
    """The child running ``target(*args)``, started, and the write end of the pipe whose closing ends it."""
    run_alive, keep_alive = context().Pipe(duplex=False)  # the child reads; only this process can write
    proc = context().Process(target=_forked, args=(target, args, run_alive), name=name)
    with _without_main_module():
        proc.start()
    run_alive.close()
    return proc, keep_alive


def _forked(target: Callable[..., None], args: tuple, run_alive) -> None:
    exit_when_closed(run_alive.fileno(), "run-alive")  # a kill -9 of the run ends this child too
    gc.freeze()  # the preloaded libraries' objects: never collected, so not scanned by the collections the work triggers
    target(*args)


def _exit_code(proc) -> int:
    """``proc``'s exit code once joined (a negative one: killed by that signal)."""
    return proc.exitcode if proc.exitcode is not None else 1


def run(spec_path: Path, log_path: Path, env: dict[str, str], on_line: Callable[[str], None],
        tail: deque[str], poll_s: float = 0.2) -> int:
    """Fork a training child on ``spec_path`` from the warm interpreter; every new line of ``log_path`` goes to
    ``on_line`` and ``tail`` as it appears; returns the child's exit code (a negative one: killed by that signal)."""
    log_path.touch()
    with open(log_path, encoding="utf-8", errors="replace") as reader:
        reader.seek(0, os.SEEK_END)
        proc, keep_alive = _start(_child, (str(spec_path), str(log_path), env, os.getcwd()), f"train-{spec_path.parent.name}")
        pending = ""
        while True:
            alive = proc.is_alive()
            chunk = reader.read()
            if chunk:
                pending += chunk
                *lines, pending = pending.split("\n")
                for line in lines:
                    tail.append(line)
                    on_line(line)
            elif not alive:
                break
            else:
                time.sleep(poll_s)
        if pending:
            tail.append(pending)
            on_line(pending)
        proc.join()
        keep_alive.close()
        return _exit_code(proc)
