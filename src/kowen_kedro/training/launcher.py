"""Start a training child process (``deepspeed`` or plain ``python``) on a launch spec.

* The spec is written to ``<output_dir>/spec.json``; the child is
  ``deepspeed --num_gpus N --module kowen_kedro.training.entry --spec <spec.json>``.
* The child logs its metrics into the parent's MLflow run: the run id and tracking URI travel in
  ``KOWEN_MLFLOW_RUN_ID`` / ``MLFLOW_TRACKING_URI``.
* A finished run leaves ``_COMPLETE.json`` holding the spec fingerprint: launching the same spec
  again returns at once (resume after a crash of a later step costs nothing).
* A failed child raises :class:`TrainingLaunchError` with its exit code and the tail of its log.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
from collections import deque
from pathlib import Path

from kowen_kedro.training.spec import COMPLETE_MARKER, LaunchSpec

logger = logging.getLogger(__name__)

ENTRY_MODULE = "kowen_kedro.training.entry"


class TrainingLaunchError(RuntimeError):
    """The training child process failed."""

    def __init__(self, returncode: int, log_path: Path, tail: str):
        self.returncode = returncode
        self.log_path = log_path
        super().__init__(f"training child exited with code {returncode} (log: {log_path}); last lines:\n{tail}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_command(spec_path: Path, world_size: int, launcher: str = "deepspeed") -> list[str]:
    """The command line that runs the entry point on ``spec_path``."""
    if launcher == "deepspeed":
        exe = shutil.which("deepspeed", path=str(Path(sys.executable).parent)) or "deepspeed"
        return [
            exe,
            "--num_gpus", str(world_size),
            "--master_addr", "127.0.0.1",
            "--master_port", str(_free_port()),
            "--module", ENTRY_MODULE,
            "--spec", str(spec_path),
        ]
    if launcher == "python":
        if world_size != 1:
            raise ValueError("launcher 'python' runs one process; use 'deepspeed' for world_size > 1")
        return [sys.executable, "-m", ENTRY_MODULE, "--spec", str(spec_path)]
    raise ValueError(f"unknown launcher {launcher!r}: expected 'deepspeed' or 'python'")


def completed(spec: LaunchSpec) -> dict | None:
    """The completion record when ``spec`` already finished (same fingerprint), else None."""
    marker = Path(spec.output_dir) / COMPLETE_MARKER
    if not marker.exists():
        return None
    record = json.loads(marker.read_text())
    return record if record.get("fingerprint") == spec.fingerprint() and spec.final_dir.exists() else None


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment of the child: the parent's, plus the active MLflow run so the child logs into it."""
    env = dict(os.environ)
    try:
        import mlflow

        run = mlflow.active_run()
        if run is not None:
            env["KOWEN_MLFLOW_RUN_ID"] = run.info.run_id
            env["MLFLOW_TRACKING_URI"] = mlflow.get_tracking_uri()
    except ImportError:  # pragma: no cover - mlflow is a core dependency
        pass
    # The child must not open a run of its own through transformers' callback.
    env["DISABLE_MLFLOW_INTEGRATION"] = "TRUE"
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.update(extra or {})
    return env


def launch(spec: LaunchSpec, launcher: str = "deepspeed", tail_lines: int = 60) -> dict:
    """Run the training described by ``spec`` unless it already completed; return the completion record.

    The record holds ``final_dir`` (the saved model), ``fingerprint`` and the child's final metrics.
    """
    done = completed(spec)
    if done is not None:
        logger.info("Training %s already complete in %s: not relaunching", spec.kind, spec.output_dir)
        return done
    out = Path(spec.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    spec_path = out / "spec.json"
    spec_path.write_text(spec.to_json())
    log_path = out / "train.log"
    cmd = build_command(spec_path, spec.world_size, launcher)
    logger.info("Launching %s training: %s (log: %s)", spec.kind, " ".join(cmd), log_path)
    tail: deque[str] = deque(maxlen=tail_lines)
    with open(log_path, "a") as log, subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=child_env(), bufsize=1
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            tail.append(line.rstrip("\n"))
            if "{'loss'" in line or "'train_runtime'" in line or "Error" in line:
                # child lines may hold "[...]" (paths, rank tags): never let a Rich handler parse them as markup
                logger.info("%s: %s", spec.kind, line.rstrip(), extra={"markup": False})
        returncode = proc.wait()
    if returncode != 0:
        raise TrainingLaunchError(returncode, log_path, "\n".join(tail))
    done = completed(spec)
    if done is None:
        raise TrainingLaunchError(0, log_path, "child exited 0 but wrote no completion marker\n" + "\n".join(tail))
    return done
