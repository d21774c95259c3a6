"""Start a training child process (``deepspeed`` or plain ``python``) on a launch spec.

* The spec is written to ``<output_dir>/spec.json``; the child is
  ``deepspeed --num_gpus N --module kowen_kedro.training.entry --spec <spec.json>``.
* The child logs its metrics into the parent's MLflow run: the run id and tracking URI travel in the
  spec (``mlflow_run_id`` / ``mlflow_tracking_uri``), which reaches every node of a multi-node launch.
* A finished run leaves ``_COMPLETE.json`` holding the spec fingerprint: launching the same spec
  again returns at once (resume after a crash of a later step costs nothing).
* A failed child raises :class:`TrainingLaunchError` with its exit code, the exception that ended it
  and the tail of its log.
* A killed run relaunched with the same spec lands in the same folder (see
  :mod:`kowen_kedro.training.stages`) and resumes from its last committed checkpoint
  (:mod:`kowen_kedro.training.checkpoints`).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

from kowen_kedro.ports import free_port
from kowen_kedro.training.spec import COMPLETE_MARKER, LaunchSpec, write_completion

logger = logging.getLogger(__name__)

ENTRY_MODULE = "kowen_kedro.training.entry"


class TrainingLaunchError(RuntimeError):
    """The training child process failed."""

    def __init__(self, returncode: int, log_path: Path, tail: str, cause: str | None = None):
        self.returncode = returncode
        self.log_path = log_path
        self.cause = cause
        head = f"training child exited with code {returncode}" + (f": {cause}" if cause else "")
        super().__init__(f"{head}\n(log: {log_path}); last lines:\n{tail}")


def build_command(spec_path: Path, spec: LaunchSpec, launcher: str = "deepspeed") -> list[str]:
    """The command line that runs the entry point on ``spec_path``.

    ``deepspeed``: one node = DeepSpeed's per-node launcher (``python -m deepspeed.launcher.launch``)
    with ``<world_size>`` local ranks on 127.0.0.1, exactly the command the ``deepspeed`` runner would
    start, without the runner's own interpreter (a few seconds per launch); several nodes = the
    ``deepspeed`` runner with ``--hostfile``, ``--num_nodes`` and ``--num_gpus <world_size / num_nodes>``
    (the first host is the master).
    """
    if launcher == "deepspeed":
        per_node = spec.processes_per_node
        if not spec.hostfile:
            world_info = base64.urlsafe_b64encode(json.dumps({"localhost": list(range(per_node))}).encode()).decode()
            return [sys.executable, "-u", "-m", "deepspeed.launcher.launch", f"--world_info={world_info}",
                    "--master_addr=127.0.0.1", f"--master_port={free_port()}", "--module", ENTRY_MODULE, "--spec", str(spec_path)]
        if not Path(spec.hostfile).exists():
            raise FileNotFoundError(f"training.hostfile {spec.hostfile} does not exist")
        exe = shutil.which("deepspeed", path=str(Path(sys.executable).parent)) or "deepspeed"
        return [exe, "--hostfile", str(spec.hostfile), "--num_nodes", str(spec.num_nodes), "--num_gpus", str(per_node),
                "--master_port", str(free_port()), "--module", ENTRY_MODULE, "--spec", str(spec_path)]
    if launcher == "python":
        if spec.world_size != 1:
            raise ValueError("launcher 'python' runs one process; use 'deepspeed' for world_size > 1")
        return [sys.executable, "-m", ENTRY_MODULE, "--spec", str(spec_path)]
    raise ValueError(f"unknown launcher {launcher!r}: expected 'deepspeed' or 'python'")


def _cause(tail: list[str]) -> str | None:
    """The last ``SomethingError: message`` line of a child's log (the exception that ended it)."""
    for line in reversed(tail):
        if "CalledProcessError" in line:  # the deepspeed launcher's own report of the failed worker
            continue
        m = re.search(r"\b([A-Za-z_.]*(?:Error|Exception)): (.+)$", line)
        if m:
            return f"{m.group(1).rsplit('.', 1)[-1]}: {m.group(2)}"
    return None


def completed(spec: LaunchSpec) -> dict | None:
    """The completion record when ``spec`` already finished (same fingerprint), else None."""
    marker = Path(spec.output_dir) / COMPLETE_MARKER
    if not marker.exists():
        return None
    record = json.loads(marker.read_text())
    return record if record.get("fingerprint") == spec.fingerprint() and spec.final_dir.exists() else None


def active_mlflow_run() -> tuple[str | None, str | None]:
    """(run id, tracking URI) of the active MLflow run (kedro-mlflow's run of this ``kedro run``)."""
    import mlflow

    run = mlflow.active_run()
    return (run.info.run_id, mlflow.get_tracking_uri()) if run is not None else (None, None)


def track_launch(spec: LaunchSpec, done: dict | None = None) -> str | None:
    """The child run of the model this launch trains (:mod:`kowen_kedro.tracking`), with the launch's
    hyper-parameters as parameters and its training file as an input (digest included); for a launch that
    completed before, its final metrics as ``train/<key>``. None when tracking fails (training goes on)."""
    from kowen_kedro.tracking import RunLayout, child_name, dataset_input, log_dataset, metric_key

    try:
        layout = RunLayout(spec.mlflow_run_id, spec.mlflow_tracking_uri)
        child = layout.child(child_name(spec.mlflow_prefix))
        layout.log_params(child, {"kind": spec.kind, "finetuning": spec.finetuning, "seed": spec.seed,
                                  "global_batch_size": spec.global_batch_size, "world_size": spec.world_size,
                                  "precision": spec.precision, "trainer_args": spec.trainer_args,
                                  "zero_stage": (spec.deepspeed or {}).get("zero_optimization", {}).get("stage")})
        records = [json.loads(line) for line in Path(spec.train_file).read_text(encoding="utf-8").splitlines() if line]
        log_dataset(layout.client, child, dataset_input(records, f"{spec.mlflow_prefix}_train", spec.train_file), "training")
        if done is not None:
            layout.log_metrics(child, {f"train/{metric_key(k)}": v for k, v in (done.get("metrics") or {}).items()
                                       if isinstance(v, (int, float)) and not isinstance(v, bool)})
        return child
    except Exception as err:  # tracking trouble must never stop a training run
        logger.warning("MLflow child run for %s not created: %s", spec.mlflow_prefix, err)
        return None


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment of the child: the parent's, minus what must come from the spec instead."""
    env = dict(os.environ)
    # The child must not open a run of its own through transformers' callback.
    env["DISABLE_MLFLOW_INTEGRATION"] = "TRUE"
    # Precision comes from the spec, not from whatever an earlier in-process TRL config left here.
    env.pop("ACCELERATE_MIXED_PRECISION", None)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.update(extra or {})
    return env


def _stage_label(spec: LaunchSpec) -> str:
    """``dpo_iter_1 (dpo)``: the stage (the run folder's name) and, when it differs, the kind of training."""
    stage = Path(spec.output_dir).parent.name
    return stage if stage == spec.kind else f"{stage} ({spec.kind})"


class LossBar:
    """A console progress bar for one training launch: the logging steps seen, with the last loss and
    epoch (the step-by-step records go to the launch's ``train.log``, ``info.log`` and MLflow)."""

    def __init__(self, label: str) -> None:
        self.label, self._bar = label, None

    def __enter__(self) -> "LossBar":
        return self

    def update(self, line: str) -> None:
        import ast

        start = line.find("{'loss'")
        if start < 0:
            return
        try:
            record = ast.literal_eval(line[start:].strip())
        except (SyntaxError, ValueError):
            return
        if self._bar is None:
            from tqdm.auto import tqdm

            # position 0: launches side by side share the line (each bar redraws it), never push lines down
            self._bar = tqdm(desc=f"training {self.label}", unit=" logs", mininterval=1.0, position=0)
        self._bar.set_postfix({k: f"{record[k]:.4g}" for k in ("loss", "epoch") if isinstance(record.get(k), (int, float))},
                              refresh=False)
        self._bar.update(1)

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.close()


def _echo(spec: LaunchSpec, line: str, bar: LossBar) -> None:
    """A child's log line to the console where it says how training goes (losses, the run time, errors)."""
    if "{'loss'" in line or "'train_runtime'" in line or "Error" in line or "checkpoint" in line:
        # child lines may hold "[...]" (paths, rank tags): never let a Rich handler parse them as markup
        logger.info("%s: %s", spec.kind, line.rstrip(), extra={"markup": False})
        bar.update(line)


def warm_eligible(spec: LaunchSpec, launcher: str) -> bool:
    """Whether this launch forks from the warm interpreter (:mod:`kowen_kedro.training.warm`)."""
    import torch

    from kowen_kedro.training import warm

    return launcher in ("deepspeed", "python") and warm.eligible(spec.world_size, spec.num_nodes, spec.hostfile,
                                                                 torch.cuda.is_available())


def launch(spec: LaunchSpec, launcher: str = "deepspeed", tail_lines: int = 60, warm: bool = True) -> dict:
    """Run the training described by ``spec`` unless it already completed; return the completion record.

    The record holds ``final_dir`` (the saved model), ``fingerprint``, the child's final metrics and
    ``launch_seconds`` (the launch's wall time, start-up and saving included). ``warm``: fork a one-process
    launch on a CPU from the warm interpreter instead of starting DeepSpeed's launcher.
    """
    if spec.mlflow_run_id is None:
        spec.mlflow_run_id, spec.mlflow_tracking_uri = active_mlflow_run()
    done = completed(spec)
    if spec.mlflow_run_id and spec.mlflow_child_run_id is None:
        spec.mlflow_child_run_id = track_launch(spec, done)
    if done is not None:
        logger.info("Training %s already complete in %s: not relaunching", spec.kind, spec.output_dir)
        return done
    out = Path(spec.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    spec_path = out / "spec.json"
    spec_path.write_text(spec.to_json())
    log_path = out / "train.log"
    tail: deque[str] = deque(maxlen=tail_lines)
    started = time.perf_counter()
    if warm and warm_eligible(spec, launcher):
        from kowen_kedro.training import warm as warm_start

        logger.info("Launching %s training in a child of the warm interpreter (%s rank environment; log: %s)",
                    spec.kind, launcher, log_path)
        with LossBar(_stage_label(spec)) as bar:
            returncode = warm_start.run(spec_path, log_path, warm_start.rank_env(child_env(), launcher, free_port()),
                                        on_line=lambda line: _echo(spec, line, bar), tail=tail)
    else:
        cmd = build_command(spec_path, spec, launcher)
        logger.info("Launching %s training: %s (log: %s)", spec.kind, " ".join(cmd), log_path)
        with open(log_path, "a") as log, subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=child_env(), bufsize=1
        ) as proc, LossBar(_stage_label(spec)) as bar:
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                tail.append(line.rstrip("\n"))
                _echo(spec, line, bar)
            returncode = proc.wait()
    seconds = time.perf_counter() - started
    done = completed(spec)
    if returncode != 0:
        if done is None:
            raise TrainingLaunchError(returncode, log_path, "\n".join(tail), _cause(list(tail)))
        # Every rank passed the last barrier after the final model and its marker were written: a crash
        # while the processes tear down (seen once: a gloo rank aborting with "terminate called without
        # an active exception") loses nothing, and a relaunch would return this record anyway.
        logger.warning("training %s exited with code %d after it completed (log: %s): keeping the result",
                       spec.kind, returncode, log_path)
        return done
    if done is None:
        raise TrainingLaunchError(0, log_path, "child exited 0 but wrote no completion marker\n" + "\n".join(tail))
    return record_launch_time(spec, done, seconds)


def record_launch_time(spec: LaunchSpec, done: dict, seconds: float) -> dict:
    """The launch's wall time beside the time inside its trainer (TRL's ``train_runtime`` + ``eval_runtime``):
    kept in the completion record (``launch_seconds``, ``launch_overhead_seconds``: start-up, loading and
    saving) and logged into the run as ``<stage>/launch_seconds`` and ``<stage>/launch_overhead_seconds``."""
    from kowen_kedro.tracking import metric_key

    metrics = done.get("metrics") or {}
    trainer = float(metrics.get("train_runtime", 0.0)) + float(metrics.get("eval_runtime", 0.0))
    record = {**done, "launch_seconds": round(seconds, 3), "launch_overhead_seconds": round(seconds - trainer, 3)}
    write_completion(spec.output_dir, record)
    if spec.mlflow_run_id:
        try:
            from kowen_kedro.tracking import RunLayout

            layout = RunLayout(spec.mlflow_run_id, spec.mlflow_tracking_uri)
            prefix = metric_key(spec.mlflow_prefix)
            layout.log_metrics(layout.parent_id, {f"{prefix}/launch_seconds": record["launch_seconds"],
                                                  f"{prefix}/launch_overhead_seconds": record["launch_overhead_seconds"]})
        except Exception as err:  # tracking trouble must never stop a training run
            logger.warning("launch time of %s not logged: %s", spec.mlflow_prefix, err)
    logger.info("%s: launch %.1f s, of which the trainer %.1f s (overhead %.1f s)", _stage_label(spec), seconds, trainer,
                seconds - trainer)
    return record
