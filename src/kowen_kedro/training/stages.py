"""Run one training stage from node-level inputs: write the data, build the spec, launch, return the model.

Parameters come in two groups (:mod:`kowen_kedro.groups`): the stage's own (a :class:`~kowen_kedro.groups.Stage`:
``params:sft``, ``params:reward_model.training``, ``params:dpo``...) and the shared
:class:`~kowen_kedro.groups.Training` (launcher, world size, DeepSpeed, work folder).
The run folder is ``<work_dir>/<stage>/<fingerprint>``, so identical inputs reuse a finished run
(a rerun after a crash of a later node costs nothing), a killed run resumes from its last committed
checkpoint, and different inputs never collide.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from dataclasses import asdict
from typing import Any, Iterable

from kowen_kedro.groups import DeepSpeed, Preflight, Stage, Training
from kowen_kedro.training.launcher import launch
from kowen_kedro.training.preflight import AUTO
from kowen_kedro.training.spec import Kind, LaunchSpec, zero_config

logger = logging.getLogger(__name__)


def _write_jsonl(records: Iterable[dict], folder: Path, stem: str) -> str:
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    digest = hashlib.sha256(lines.encode()).hexdigest()[:12]
    path = folder / f"{stem}-{digest}.jsonl"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(lines, encoding="utf-8")
        tmp.replace(path)
    return str(path)


def deepspeed_config(cfg: DeepSpeed) -> dict[str, Any]:
    """``training.deepspeed`` (a chosen ZeRO stage, not ``auto``) -> a DeepSpeed config."""
    return zero_config(stage=int(cfg.zero_stage), offload_optimizer=cfg.offload_optimizer, offload_param=cfg.offload_param)


def uses_auto(training_cfg: Training, trainer_args: dict[str, Any]) -> bool:
    """Whether a setting of the stage is ``auto`` (chosen for the GPU, :func:`hardware_settings`)."""
    return AUTO in (training_cfg.launcher, training_cfg.deepspeed.zero_stage,
                    trainer_args.get("per_device_train_batch_size"), trainer_args.get("gradient_checkpointing"))


def hardware_settings(kind: Kind, stage: str, model: str, stage_cfg: Stage, training_cfg: Training, preflight_cfg: Preflight,
                      trainer_args: dict[str, Any]) -> tuple[dict[str, Any], str, DeepSpeed]:
    """The ``auto`` settings of a stage chosen for ``training.gpu`` x ``training.world_size`` by the preflight's
    estimates (:func:`kowen_kedro.training.preflight.choose_settings`): trainer arguments, launcher and DeepSpeed
    block as the launch takes them. Raises a ValueError where the model's configuration cannot be read."""
    from kowen_kedro.training import preflight

    settings = preflight.Settings.of(training_cfg, preflight_cfg)
    try:
        shape = preflight.model_shape(model, head="score" if kind == "reward" else "lm")
    except preflight.PreflightError as exc:
        raise ValueError(f"{stage}: auto training settings need the model's configuration: {exc}") from None
    chosen = preflight.choose_settings(shape, settings, trainer_args, stage_cfg.global_batch_size,
                                       stage_cfg.finetuning, stage_cfg.lora,
                                       sequences_per_row=1 if kind == "sft" else 2, reference=kind in ("dpo", "clo"))
    args = {**trainer_args, "per_device_train_batch_size": chosen["per_device_train_batch_size"],
            "gradient_checkpointing": chosen["gradient_checkpointing"]}
    ds = DeepSpeed(**{**asdict(training_cfg.deepspeed), "zero_stage": chosen["zero_stage"]})
    logger.info("%s: for %d x %s: %s", stage, settings.world_size, settings.gpu.name,
                ", ".join(f"{k} {chosen[k]}" for k in ("launcher", "zero_stage", "per_device_train_batch_size", "gradient_checkpointing")))
    return args, chosen["launcher"], ds


def train_stage(
    kind: Kind,
    stage: str,
    model: str,
    train_records: list[dict],
    stage_cfg: Stage,
    training_cfg: Training,
    eval_records: list[dict] | None = None,
    *,
    preflight_cfg: Preflight,
) -> dict:
    """Launch (or reuse) a training run; returns the completion record (``final_dir``, ``metrics``). ``preflight_cfg``
    (the preflight's assumptions, GPU memory headroom included) sizes the settings a recipe leaves ``auto``."""
    if not train_records:
        raise ValueError(f"{stage}: no training records")
    work = Path(training_cfg.work_dir) / stage
    launcher = training_cfg.launcher
    trainer_args = dict(stage_cfg.trainer_args)
    if training_cfg.gradient_checkpointing is not None:  # a stage's own setting wins
        trainer_args.setdefault("gradient_checkpointing", training_cfg.gradient_checkpointing)
    ds_cfg = training_cfg.deepspeed
    if uses_auto(training_cfg, trainer_args):
        trainer_args, launcher, ds_cfg = hardware_settings(kind, stage, model, stage_cfg, training_cfg, preflight_cfg, trainer_args)
    if isinstance(trainer_args.get("gradient_checkpointing"), str):
        raise ValueError(f"{stage}: gradient_checkpointing {trainer_args['gradient_checkpointing']!r}: expected true, false or auto")
    spec = LaunchSpec(
        kind=kind,
        model=model,
        train_file=_write_jsonl(train_records, work / "data", "train"),
        eval_file=_write_jsonl(eval_records, work / "data", "eval") if eval_records else None,
        output_dir="",
        ref_model=stage_cfg.ref_model,
        trainer_args=trainer_args,
        global_batch_size=stage_cfg.global_batch_size,
        finetuning=stage_cfg.finetuning,
        lora=dict(stage_cfg.lora or {}),
        deepspeed=deepspeed_config(ds_cfg) if launcher == "deepspeed" else None,
        world_size=training_cfg.world_size,
        num_nodes=training_cfg.num_nodes,
        hostfile=training_cfg.hostfile,
        precision=training_cfg.precision,
        kernels=training_cfg.kernels,
        attn_implementation=training_cfg.attn_implementation,
        callbacks=list(stage_cfg.callbacks or []),
        keep_checkpoints=training_cfg.keep_checkpoints,
        mlflow_prefix=stage,
        seed=stage_cfg.seed,
    )
    spec.processes_per_node  # noqa: B018 - validates world_size / num_nodes / hostfile before any work
    spec.output_dir = str(work / spec.fingerprint())
    return launch(spec, launcher=launcher, warm=training_cfg.warm_launches)
