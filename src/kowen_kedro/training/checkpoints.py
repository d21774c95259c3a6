"""Crash safety for training children: committed checkpoints, resume, and a non-finite loss guard.

* **Committed checkpoints.** The HF Trainer writes ``checkpoint-<step>/`` in place (weights, DeepSpeed
  optimizer shards, scheduler, RNG states, ``trainer_state.json``); a crash during that write leaves a
  folder that looks complete but is not. :class:`CheckpointCommitCallback` runs after the Trainer's
  save on every rank, waits for all ranks, and rank 0 then writes ``_CHECKPOINT_COMPLETE.json``
  (tmp file + rename). Only folders with that marker are ever resumed from.
* **Resume.** :func:`prepare_resume` removes uncommitted checkpoint folders and returns the newest
  committed one, which goes to ``trainer.train(resume_from_checkpoint=...)`` (optimizer, scheduler,
  RNG and data position are restored by the Trainer / DeepSpeed).
* **Non-finite loss.** :func:`install_nonfinite_guard` checks the loss of every micro-batch; at the end
  of each optimizer step the ranks agree (one all-reduce of a flag) and all of them raise
  :class:`NonFiniteLossError` *before* the Trainer logs or saves that step, so no committed checkpoint
  ever holds the diverged weights.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

logger = logging.getLogger(__name__)

CHECKPOINT_MARKER = "_CHECKPOINT_COMPLETE.json"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


def _checkpoints(output_dir: str | Path) -> list[tuple[int, Path]]:
    out = Path(output_dir)
    if not out.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in out.iterdir() if p.is_dir() and (m := _CHECKPOINT_RE.match(p.name))]
    return sorted(found)


def committed_checkpoints(output_dir: str | Path) -> list[Path]:
    """Checkpoint folders that carry the commit marker, oldest first."""
    return [p for _, p in _checkpoints(output_dir) if (p / CHECKPOINT_MARKER).exists()]


def prepare_resume(output_dir: str | Path) -> Path | None:
    """Delete uncommitted ``checkpoint-*`` folders (torn writes) and return the newest committed one."""
    for _, path in _checkpoints(output_dir):
        if not (path / CHECKPOINT_MARKER).exists():
            logger.warning("removing incomplete checkpoint %s (no %s: the save was interrupted)", path, CHECKPOINT_MARKER)
            shutil.rmtree(path)
    done = committed_checkpoints(output_dir)
    return done[-1] if done else None


def remove_checkpoints(output_dir: str | Path) -> int:
    """Delete every ``checkpoint-*`` folder (after the final model is safely saved); returns how many."""
    found = _checkpoints(output_dir)
    for _, path in found:
        shutil.rmtree(path, ignore_errors=True)
    return len(found)


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def commit_callback():
    """A TrainerCallback that marks a checkpoint complete once every rank has written its part."""
    from transformers import TrainerCallback

    class CheckpointCommitCallback(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            _barrier()  # every rank's shards and RNG file are on disk
            if state.is_world_process_zero:
                folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                if folder.is_dir():
                    record = {"global_step": state.global_step, "files": sorted(p.name for p in folder.iterdir())}
                    tmp = folder / (CHECKPOINT_MARKER + ".tmp")
                    tmp.write_text(json.dumps(record, indent=2))
                    tmp.replace(folder / CHECKPOINT_MARKER)
                    logger.info("checkpoint %s committed", folder.name)
            _barrier()

    return CheckpointCommitCallback()


def install_nonfinite_guard(trainer) -> None:
    """Stop training with :class:`NonFiniteLossError` when a micro-batch loss is NaN or inf, before the step
    that follows it is logged, evaluated or saved.

    The Trainer's own ``logging_nan_inf_filter`` only hides such losses from the logs while the
    weights go on being updated with NaN gradients; this guard ends the run instead. The check stays on
    the device (no host sync, no collective per step): the ranks read and agree on it only at the steps
    the Trainer logs, evaluates or saves, and at the last one, so no committed checkpoint and no logged
    metric comes after a non-finite loss.
    """
    from transformers import TrainerCallback

    state: dict = {}  # "bad": a device flag (1 once a loss was not finite), "loss": the first such loss, on device
    original = trainer.training_step

    def guarded_training_step(*args, **kwargs):
        import torch

        loss = original(*args, **kwargs)
        value = loss.detach().float().sum()
        bad = ~torch.isfinite(value)
        if "bad" not in state:
            state["bad"], state["loss"] = torch.zeros((), device=value.device), torch.zeros((), device=value.device)
        first = bad & (state["bad"] == 0)
        state["loss"] = torch.where(first, value, state["loss"])
        state["bad"] = torch.maximum(state["bad"], bad.float())
        return loss

    trainer.training_step = guarded_training_step

    class NonFiniteLossGuard(TrainerCallback):
        checked_step = 0

        def on_step_end(self, args, state_, control, **kwargs):
            import torch
            import torch.distributed as dist

            last = state_.max_steps and state_.global_step >= state_.max_steps
            if not (control.should_log or control.should_save or control.should_evaluate or control.should_training_stop or last):
                return
            since, self.checked_step = self.checked_step + 1, state_.global_step
            flag = state.get("bad", torch.zeros(())).to(args.device).reshape(1)
            if dist.is_available() and dist.is_initialized():
                dist.all_reduce(flag)
            if float(flag.item()):
                committed = committed_checkpoints(args.output_dir)
                where = f"at optimizer step {state_.global_step}" if since == state_.global_step else \
                    f"between optimizer steps {since} and {state_.global_step}"
                mine = float(state["loss"].item()) if "bad" in state and float(state["bad"].item()) else "on another rank"
                raise NonFiniteLossError(
                    f"training loss is not finite ({mine}) {where}: stopping before this step is logged or saved. "
                    f"Last committed checkpoint: {committed[-1].name if committed else 'none'}. Lower the learning "
                    "rate, check the data near this step, or use bf16 instead of fp16."
                )

    trainer.add_callback(NonFiniteLossGuard())
