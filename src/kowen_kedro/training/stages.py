"""Run one training stage from node-level inputs: write the data, build the spec, launch, return the model.

Parameters come in two dicts: the stage's own (``params:sft``, ``params:reward_model.training``,
``params:dpo``...) and the shared ``params:training`` (launcher, world size, DeepSpeed, work folder).
The run folder is ``<work_dir>/<stage>/<fingerprint>``, so identical inputs reuse a finished run
(a rerun after a crash of a later node costs nothing), a killed run resumes from its last committed
checkpoint, and different inputs never collide.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Iterable

from kowen_kedro.training.launcher import launch
from kowen_kedro.training.preflight import AUTO
from kowen_kedro.training.spec import Kind, LaunchSpec, zero_config

logger = logging.getLogger(__name__)
STAGE_KEYS = {"trainer_args", "global_batch_size", "finetuning", "lora", "seed", "ref_model", "callbacks"}
TRAINING_KEYS = {"launcher", "world_size", "num_nodes", "hostfile", "work_dir", "deepspeed", "precision",
                 "gradient_checkpointing", "keep_checkpoints", "kernels", "attn_implementation", "warm_launches",
                 "gpu", "price_per_gpu_hour"}  # the hardware `kedro preflight` sizes the recipe for


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


def deepspeed_config(cfg: dict[str, Any] | None) -> dict[str, Any] | None:
    """``{zero_stage, offload_optimizer, offload_param}`` -> a DeepSpeed config (None: no DeepSpeed)."""
    if not cfg:
        return None
    unknown = set(cfg) - {"zero_stage", "offload_optimizer", "offload_param"}
    if unknown:
        raise ValueError(f"unknown training.deepspeed keys {sorted(unknown)}")
    return zero_config(
        stage=int(cfg.get("zero_stage", 3)),
        offload_optimizer=cfg.get("offload_optimizer", "none"),
        offload_param=cfg.get("offload_param", "none"),
    )


def uses_auto(training_cfg: dict[str, Any], trainer_args: dict[str, Any]) -> bool:
    """Whether a setting of the stage is ``auto`` (chosen for the GPU, :func:`hardware_settings`)."""
    return AUTO in (training_cfg.get("launcher"), (training_cfg.get("deepspeed") or {}).get("zero_stage"),
                    trainer_args.get("per_device_train_batch_size"), trainer_args.get("gradient_checkpointing"))


def hardware_settings(kind: Kind, stage: str, model: str, stage_cfg: dict[str, Any], training_cfg: dict[str, Any],
                      trainer_args: dict[str, Any]) -> tuple[dict[str, Any], str, dict[str, Any] | None]:
    """The ``auto`` settings of a stage chosen for ``training.gpu`` x ``training.world_size`` by the preflight's
    estimates (:func:`kowen_kedro.training.preflight.choose_settings`): trainer arguments, launcher and DeepSpeed
    block as the launch takes them. Raises a ValueError where the model's configuration cannot be read."""
    from kowen_kedro.training import preflight

    settings = preflight.Settings.from_params({"training": training_cfg})
    try:
        shape = preflight.model_shape(model, head="score" if kind == "reward" else "lm")
    except preflight.PreflightError as exc:
        raise ValueError(f"{stage}: auto training settings need the model's configuration: {exc}") from None
    chosen = preflight.choose_settings(shape, settings, trainer_args, stage_cfg.get("global_batch_size"),
                                       stage_cfg.get("finetuning", "full"), stage_cfg.get("lora"),
                                       sequences_per_row=1 if kind == "sft" else 2, reference=kind in ("dpo", "clo"))
    args = {**trainer_args, "per_device_train_batch_size": chosen["per_device_train_batch_size"],
            "gradient_checkpointing": chosen["gradient_checkpointing"]}
    ds = {**(training_cfg.get("deepspeed") or {}), "zero_stage": chosen["zero_stage"]}
    logger.info("%s: for %d x %s: %s", stage, settings.world_size, settings.gpu.name,
                ", ".join(f"{k} {chosen[k]}" for k in ("launcher", "zero_stage", "per_device_train_batch_size", "gradient_checkpointing")))
    return args, chosen["launcher"], ds


def train_stage(
    kind: Kind,
    stage: str,
    model: str,
    train_records: list[dict],
    stage_cfg: dict[str, Any],
    training_cfg: dict[str, Any],
    eval_records: list[dict] | None = None,
) -> dict:
    """Launch (or reuse) a training run; returns the completion record (``final_dir``, ``metrics``)."""
    for name, cfg, keys in (("stage", stage_cfg, STAGE_KEYS), ("training", training_cfg, TRAINING_KEYS)):
        unknown = set(cfg) - keys - {"enabled"}
        if unknown:
            raise ValueError(f"unknown {name} parameters for {stage!r}: {sorted(unknown)}; expected {sorted(keys)}")
    if not train_records:
        raise ValueError(f"{stage}: no training records")
    work = Path(training_cfg.get("work_dir", "data/06_models/_runs")) / stage
    launcher = training_cfg.get("launcher", "deepspeed")
    trainer_args = dict(stage_cfg.get("trainer_args", {}))
    if training_cfg.get("gradient_checkpointing") is not None:  # a stage's own setting wins
        trainer_args.setdefault("gradient_checkpointing", training_cfg["gradient_checkpointing"])
    ds_cfg = training_cfg.get("deepspeed")
    if uses_auto(training_cfg, trainer_args):
        trainer_args, launcher, ds_cfg = hardware_settings(kind, stage, model, stage_cfg, training_cfg, trainer_args)
    if isinstance(trainer_args.get("gradient_checkpointing"), str):
        raise ValueError(f"{stage}: gradient_checkpointing {trainer_args['gradient_checkpointing']!r}: expected true, false or auto")
    spec = LaunchSpec(
        kind=kind,
        model=model,
        train_file=_write_jsonl(train_records, work / "data", "train"),
        eval_file=_write_jsonl(eval_records, work / "data", "eval") if eval_records else None,
        output_dir="",
        ref_model=stage_cfg.get("ref_model"),
        trainer_args=trainer_args,
        global_batch_size=stage_cfg.get("global_batch_size"),
        finetuning=stage_cfg.get("finetuning", "full"),
        lora=dict(stage_cfg.get("lora", {})),
        deepspeed=deepspeed_config(ds_cfg) if launcher == "deepspeed" else None,
        world_size=int(training_cfg.get("world_size", 1)),
        num_nodes=int(training_cfg.get("num_nodes", 1)),
        hostfile=training_cfg.get("hostfile"),
        precision=training_cfg.get("precision", "auto"),
        kernels=training_cfg.get("kernels", "auto"),
        attn_implementation=training_cfg.get("attn_implementation"),
        callbacks=list(stage_cfg.get("callbacks", [])),
        keep_checkpoints=bool(training_cfg.get("keep_checkpoints", False)),
        mlflow_prefix=stage,
        seed=int(stage_cfg.get("seed", 0)),
    )
    spec.processes_per_node  # noqa: B018 - validates world_size / num_nodes / hostfile before any work
    spec.output_dir = str(work / spec.fingerprint())
    return launch(spec, launcher=launcher, warm=bool(training_cfg.get("warm_launches", True)))
