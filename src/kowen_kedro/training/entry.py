"""The one training entry point: ``python -m kowen_kedro.training.entry --spec spec.json``.

Started by :mod:`kowen_kedro.training.launcher` under ``deepspeed`` (any world size) or plain python.
``spec.kind`` picks TRL's ``SFTTrainer``, ``RewardTrainer``, ``DPOTrainer`` or the CLO trainer (a
``DPOTrainer`` subclass, :mod:`kowen_kedro.preference.clo_trainer`); every other knob is in the spec.

Crash safety: checkpoints are committed with a marker and a relaunch resumes from the newest committed
one (:mod:`kowen_kedro.training.checkpoints`); a NaN/inf loss stops the run. The final model is written
to ``<output_dir>/final.partial`` (ZeRO-3 weights gathered; LoRA adapters merged into a fresh copy of
the base), gets the chat template's stop tokens in ``generation_config.json``, is renamed to
``final`` and only then is the completion marker written, by rank 0.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from kowen_kedro.training.checkpoints import (
    commit_callback,
    committed_checkpoints,
    install_nonfinite_guard,
    prepare_resume,
    remove_checkpoints,
)
from kowen_kedro.training.finetuning import (
    check_optimizer,
    drop_empty_param_groups,
    freeze_all_but_attention,
    lora_config,
    merge_lora_adapter,
    parameter_counts,
)
from kowen_kedro.training.spec import LaunchSpec, gradient_accumulation_steps, write_completion

logger = logging.getLogger("kowen_kedro.training.entry")



def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


#: How often a launch writes the training logs it has gathered into MLflow, in seconds (and at each checkpoint,
#: at the end of training and when training fails): one transaction per run and write instead of one per logged
#: step, which MLflow's SQLite store commits one by one (a default SFT launch logs 440 steps: 7% of its time).
FLUSH_SECONDS = 2.0


def mlflow_callback(prefix: str, run_id: str | None = None, tracking_uri: str | None = None,
                    child_run_id: str | None = None):
    """A TrainerCallback that logs every ``on_log`` dict into the parent's MLflow run as ``<prefix>/<key>``
    and into the trained model's child run as ``train/<key>`` (the name every child shares,
    :mod:`kowen_kedro.tracking`), each metric with the step and time it was logged at, written every
    :data:`FLUSH_SECONDS` and at every checkpoint (a resumed launch, which starts after its checkpoint, lost
    none of the metrics before it), at the end of training and by :meth:`flush`.

    The runs come from the spec (they reach every node of a multi-node launch); ``$KOWEN_MLFLOW_RUN_ID``
    is the fallback for a child started by hand.
    """
    import time

    from transformers import TrainerCallback

    from kowen_kedro.tracking import log_metric_batch, metric_key

    class MlflowParentRunCallback(TrainerCallback):
        def __init__(self) -> None:
            self.run_id = run_id or os.environ.get("KOWEN_MLFLOW_RUN_ID")
            self.child_run_id = child_run_id
            self._client = None
            self._pending: list[tuple[str, str, float, int, int]] = []  # (run, key, value, step, time in ms)
            self._written = time.monotonic()

        def log_now(self, metrics: dict[str, Any], step: int = 0) -> None:
            """Log outside the Trainer's logging (rank 0 only), e.g. parameter counts before training."""
            if _rank() == 0:
                self._add(metrics, step)
                self.flush()

        def _add(self, metrics: dict[str, Any], step: int) -> None:
            if not self.run_id:
                return
            now = int(time.time() * 1000)
            numbers = {metric_key(k): float(v) for k, v in metrics.items()
                       if isinstance(v, (int, float)) and not isinstance(v, bool)}
            for target, head in ((self.run_id, prefix), (self.child_run_id, "train")):
                if target:
                    self._pending += [(target, f"{metric_key(head)}/{k}", v, step, now) for k, v in numbers.items()]

        def flush(self) -> None:
            """Write the gathered metrics now (rank 0; a no-op elsewhere and when nothing is pending)."""
            pending, self._pending, self._written = self._pending, [], time.monotonic()
            if not pending or not self.run_id:
                return
            from mlflow.tracking import MlflowClient

            try:
                self._client = self._client or MlflowClient(tracking_uri=tracking_uri)
                for target in dict.fromkeys(p[0] for p in pending):
                    log_metric_batch(self._client, target, [p[1:] for p in pending if p[0] == target])
            except Exception as err:  # tracking trouble must never stop a training run
                logger.warning("MLflow logging disabled for this run: %s", err)
                self.run_id = None

        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs:
                self._add(logs, state.global_step)
                if time.monotonic() - self._written >= FLUSH_SECONDS:
                    self.flush()

        def on_save(self, args, state, control, **kwargs):
            self.flush()

        def on_train_end(self, args, state, control, **kwargs):
            self.flush()

    return MlflowParentRunCallback()


PROBE_SIZE = 8


def probe_rewards(trainer, tokenizer, eval_data) -> dict | None:
    """Rewards of the first eval ``chosen`` chats from the trained model *before* it is saved, so a
    reload can be checked against them (a random head after save is a classic RM bug). All ranks
    run the forward pass (ZeRO-3 gathers parameters collectively)."""
    import torch

    if eval_data is None or len(eval_data) == 0:
        return None
    chats = [eval_data[i]["chosen"] for i in range(min(PROBE_SIZE, len(eval_data)))]
    texts = [tokenizer.apply_chat_template(c, tokenize=False) for c in chats]
    model = trainer.model
    device = next(model.parameters()).device
    model.eval()
    scores = []
    with torch.no_grad():
        for text in texts:  # one at a time: no padding effects in the comparison
            enc = tokenizer(text, return_tensors="pt", add_special_tokens=False).to(device)
            scores.append(float(model(**enc).logits[0, 0].float()))
    return {"chats": chats, "rewards": scores}


#: Trainer defaults of every launch (a recipe's trainer_args override them).
DEFAULT_TRAINER_ARGS: dict[str, Any] = {
    "report_to": [],
    "logging_steps": 1,
    # Checkpoints for resume: committed by a marker, the newest two kept (one always survives a crash
    # during the next save), all removed once the final model is saved unless keep_checkpoints.
    "save_strategy": "steps",
    "save_steps": 500,
    "save_total_limit": 2,
    # The Trainer would hide a NaN loss from the logs and keep training; the guard stops instead.
    "logging_nan_inf_filter": False,
    "dataloader_num_workers": 0,
    "disable_tqdm": True,
}


def precision_flags(precision: str, cuda: bool, bf16_supported: bool) -> dict[str, bool]:
    """``{"bf16", "fp16"}`` for a spec's precision (``auto``: bf16 on a GPU that has it, else fp32)."""
    if precision == "auto":
        return {"bf16": cuda and bf16_supported, "fp16": False}
    if precision in ("bf16", "fp16", "fp32"):
        return {"bf16": precision == "bf16", "fp16": precision == "fp16"}
    raise ValueError(f"precision must be auto, bf16, fp16 or fp32, not {precision!r}")


def keep_host_memory() -> None:
    """On a machine without CUDA, glibc's malloc keeps what training frees for the next step instead of faulting it
    in again (:mod:`kowen_kedro.allocator`); said in the launch's log."""
    import torch

    from kowen_kedro.allocator import keep_freed_memory

    if not torch.cuda.is_available() and keep_freed_memory():
        logger.info("malloc keeps freed memory for the next step (kowen_kedro.allocator)")


def hardware_choices(spec: LaunchSpec) -> dict[str, Any]:
    """Kernels, attention implementation and SFT packing for ``spec`` on this machine
    (:mod:`kowen_kedro.training.kernels`)."""
    import torch

    from kowen_kedro.training.kernels import hardware_choices as choose

    return choose(spec.kernels, spec.attn_implementation, spec.trainer_args.get("packing", False),
                  cuda=torch.cuda.is_available(), zero_stage=spec.zero_stage)


def build_config(spec: LaunchSpec, choices: dict[str, Any] | None = None):
    """The TRL config object for ``spec`` (created before the model so ZeRO-3 can partition at load);
    ``choices``: :func:`hardware_choices` of ``spec``, when the caller has them."""
    import torch

    from kowen_kedro.training.kernels import LIGER_LAYERS
    from kowen_kedro.training.spec import config_class

    cls = config_class(spec.kind)
    cuda = torch.cuda.is_available()
    args: dict[str, Any] = {
        **DEFAULT_TRAINER_ARGS,
        "output_dir": spec.output_dir,
        "seed": spec.seed,
        **precision_flags(spec.precision, cuda, cuda and torch.cuda.is_bf16_supported()),
        # On CPU, accelerate counts the processes only when use_cpu is set (MULTI_CPU); DeepSpeed still
        # drives training (its CPU accelerator) - see run() for the process-group side.
        "use_cpu": not cuda,
    }
    args.update(spec.trainer_args)
    choices = choices or hardware_choices(spec)
    if "packing" in args:  # SFT: `auto` resolved for the attention implementation
        args["packing"] = choices["packing"]
    if choices["kernels"] == "liger":
        args["use_liger_kernel"] = True
        args.setdefault("liger_kernel_config", dict(LIGER_LAYERS))
    # TrainingArguments takes its mixed-precision default from $ACCELERATE_MIXED_PRECISION, which any
    # earlier TRL config in a parent process may have set (TRL configs default to bf16=True): the spec decides.
    os.environ["ACCELERATE_MIXED_PRECISION"] = "bf16" if args.get("bf16") else "fp16" if args.get("fp16") else "no"
    limit = args.get("save_total_limit")
    if limit is not None and int(limit) < 2:
        raise ValueError(f"save_total_limit={limit}: keep at least 2 checkpoints, so that a crash while one is "
                         "being written leaves a complete one to resume from")
    check_optimizer(args.get("optim"), cuda)
    if spec.global_batch_size:
        per_device = int(args.get("per_device_train_batch_size", 8))
        args["per_device_train_batch_size"] = per_device
        args["gradient_accumulation_steps"] = gradient_accumulation_steps(
            spec.global_batch_size, per_device, spec.world_size
        )
    if spec.deepspeed:
        args["deepspeed"] = zero3_across_gpus(spec.deepspeed, cuda, spec.world_size)
    return cls(**args)


def zero3_across_gpus(config: dict[str, Any], cuda: bool, world_size: int) -> dict[str, Any]:
    """ZeRO-3 over several GPUs: its parameter all-gathers and gradient reduce-scatters overlap compute, small
    parameters (norms, biases: below the persistence threshold) stay resident instead of being gathered every
    step, and the next layers are prefetched; ``auto`` sizes are filled by transformers from the model's hidden
    size. One process or a CPU keeps the config as it is (nothing to overlap)."""
    zero = config.get("zero_optimization") or {}
    if not cuda or world_size < 2 or zero.get("stage") != 3:
        return config
    tuned = {**zero, "overlap_comm": True}
    for key in ("stage3_param_persistence_threshold", "stage3_prefetch_bucket_size", "reduce_bucket_size"):
        tuned.setdefault(key, "auto")
    return {**config, "zero_optimization": tuned}


def torch_dtype(config):
    """The weight dtype matching a trainer config's precision flags."""
    import torch

    return torch.bfloat16 if config.bf16 else torch.float16 if config.fp16 else torch.float32


def load_model(spec: LaunchSpec, config, choices: dict[str, Any] | None = None):
    """The policy / reward model from ``spec.model`` (a local folder or a hub id), with the attention
    implementation of ``choices`` (:func:`hardware_choices`, computed when not given)."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from kowen_kedro.loading import load_tokenizer, local_files_only

    dtype = torch_dtype(config)
    tokenizer = load_tokenizer(spec.model)  # the project's rule (pad = EOS when missing); DeepSpeed places the weights
    local = local_files_only()
    attention = (choices or hardware_choices(spec))["attn_implementation"]
    extra = {"attn_implementation": attention} if attention else {}
    if spec.kind == "reward":
        model, info = AutoModelForSequenceClassification.from_pretrained(
            spec.model, num_labels=1, dtype=dtype, pad_token_id=tokenizer.pad_token_id, output_loading_info=True,
            local_files_only=local, **extra,
        )
        if "score.weight" in info.get("missing_keys", []):  # a base LM: the head is new
            from kowen_kedro.rewards.heads import init_score_head

            init_score_head(model, seed=spec.seed)
            logger.info("new score head initialised from N(0, 1/sqrt(d_model + 1))")
    else:
        model = AutoModelForCausalLM.from_pretrained(spec.model, dtype=dtype, local_files_only=local, **extra)
    return model, tokenizer


def load_callbacks(entries: list[Any]) -> list:
    """TrainerCallbacks from ``"package.module:Class"`` or ``{"class": ..., "kwargs": {...}}`` entries."""
    out = []
    for entry in entries:
        path, kwargs = (entry, {}) if isinstance(entry, str) else (entry["class"], entry.get("kwargs", {}))
        module, _, name = path.partition(":")
        if not name:
            raise ValueError(f"callback {path!r}: expected 'package.module:ClassName'")
        out.append(getattr(importlib.import_module(module), name)(**kwargs))
    return out


def _build_trainer(spec: LaunchSpec, config, model, tokenizer, data, callbacks, peft_config):
    common = dict(
        args=config,
        train_dataset=data["train"],
        eval_dataset=data.get("eval"),
        processing_class=tokenizer,
        callbacks=callbacks,
        peft_config=peft_config,
    )
    if spec.kind == "sft":
        from trl import SFTTrainer

        return SFTTrainer(model=model, **common)
    if spec.kind == "reward":
        from trl import RewardTrainer

        return RewardTrainer(model=model, **common)
    from trl import DPOTrainer

    if spec.kind == "clo":
        from kowen_kedro.preference.clo_trainer import CLOTrainer as DPOTrainer  # noqa: N814
    ref = None
    if spec.ref_model:  # else TRL's default: a frozen copy of the start model (or the LoRA-disabled base)
        ref, _ = load_model(LaunchSpec(**{**spec.__dict__, "model": spec.ref_model}), config)
    return DPOTrainer(model=model, ref_model=ref, **common)


def skip_cpu_inference_kernels() -> None:
    """Keep DeepSpeed from JIT-compiling its shared-memory all-reduce op on a machine without CUDA.

    On the CPU accelerator ``init_distributed`` builds ``deepspeed_shm_comm`` (a C++ extension compiled
    with ninja on first use: minutes, and it was OOM-killed on a clean CI machine). Only
    ``inference_all_reduce`` uses it; training collectives go through torch.distributed (gloo). DeepSpeed
    caches its op-compatibility table in ``deepspeed.ops`` and reads it before building, so marking the op
    incompatible there makes ``build_shm_op`` return None.
    """
    import torch

    if torch.cuda.is_available():
        return
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False


#: The folder of a launch's output folder that holds the Arrow copies of its data while it trains.
DATASETS_CACHE = "datasets_cache"


def run(spec: LaunchSpec) -> dict:
    """Train according to ``spec`` (resuming from a committed checkpoint) and save the final model."""
    from datasets import load_dataset
    from transformers import set_seed

    from kowen_kedro.floats import deterministic_torch

    fingerprint = spec.fingerprint()  # before anything runs: libraries may mutate what they are given
    out = Path(spec.output_dir)
    set_seed(spec.seed)
    deterministic_torch()
    keep_host_memory()
    if spec.deepspeed:
        # deepspeed.comm must be initialised before the model loads: under ZeRO-3, from_pretrained runs
        # zero.Init, whose batch-size check otherwise assumes world size 1 (seen with 2 CPU processes).
        import deepspeed

        skip_cpu_inference_kernels()
        deepspeed.init_distributed()
        logger.info("DeepSpeed initialised: rank %d of %d (ZeRO-%s)", deepspeed.comm.get_rank(), deepspeed.comm.get_world_size(),
                    spec.zero_stage)
    choices = hardware_choices(spec)
    config = build_config(spec, choices)
    model, tokenizer = load_model(spec, config, choices)
    logger.info("kernels %s, attention %s, packing %s", choices["kernels"], choices["attn_implementation"] or "model default",
                choices["packing"])
    if choices["kernels"] == "compile":
        from kowen_kedro.training.kernels import compile_decoder_layers

        logger.info("compiled %d decoder layers (torch.compile)", compile_decoder_layers(model))
    peft_config = None
    if spec.finetuning == "lora":
        peft_config = lora_config(spec.kind, spec.lora)
    elif spec.finetuning == "attention_only":
        freeze_all_but_attention(model)
    elif spec.finetuning != "full":
        raise ValueError(f"finetuning must be full, lora or attention_only, not {spec.finetuning!r}")

    data_files = {"train": spec.train_file}
    if spec.eval_file:
        data_files["eval"] = spec.eval_file
    # the Arrow copies of the data (and of what the trainer maps them to) in the launch's own folder, removed once
    # it has finished: not in ~/.cache/huggingface/datasets, where every launch of every run left its copies
    data = load_dataset("json", data_files=data_files, cache_dir=str(out / DATASETS_CACHE))
    tracker = mlflow_callback(spec.mlflow_prefix, spec.mlflow_run_id, spec.mlflow_tracking_uri, spec.mlflow_child_run_id)
    callbacks = [tracker, commit_callback(), *load_callbacks(spec.callbacks)]
    trainer = _build_trainer(spec, config, model, tokenizer, data, callbacks, peft_config)
    install_nonfinite_guard(trainer)
    drop_empty_param_groups(trainer)
    counts = parameter_counts(trainer.model)  # after peft wrapping (done by the trainer)
    logger.info("%s fine-tuning: %d of %d parameters trainable", spec.finetuning, counts["trainable_params"], counts["total_params"])
    tracker.log_now(counts)

    if _rank() == 0:
        prepare_resume(out)
    trainer.accelerator.wait_for_everyone()
    committed = committed_checkpoints(out)
    resume = committed[-1] if committed else None
    if resume is not None:
        logger.info("resuming from committed checkpoint %s", resume)
    try:
        result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        metrics = {**result.metrics, **counts, "global_step": result.global_step,
                   "resumed_from_step": int(resume.name.split("-")[1]) if resume else 0}
        if data.get("eval") is not None:
            metrics.update(trainer.evaluate())
    finally:  # what was logged before a failure too
        tracker.flush()
    probe = probe_rewards(trainer, tokenizer, data.get("eval")) if spec.kind == "reward" else None

    final, partial = spec.final_dir, out / "final.partial"
    if _rank() == 0:
        for stale in (partial, final, out / "adapter"):  # left by a run killed while saving
            shutil.rmtree(stale, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    if peft_config is not None:
        trainer.save_model(str(out / "adapter"))  # adapter weights only (gathered under ZeRO-3)
    else:
        trainer.save_model(str(partial))
    trainer.accelerator.wait_for_everyone()
    if _rank() == 0:
        if peft_config is not None:
            merge_lora_adapter(spec.kind, spec.model, out / "adapter", partial, dtype=torch_dtype(config))
        tokenizer.save_pretrained(partial)
        if spec.kind != "reward":
            from kowen_kedro.training.generation_config import finalize_generation_config

            finalize_generation_config(partial, tokenizer, base_model=spec.model)
        partial.replace(final)
        from kowen_kedro.model_identity import model_identity

        model_identity(final)  # hash once here; versioned copies carry the stored identity
        record = {"fingerprint": fingerprint, "final_dir": str(final), "metrics": metrics,
                  "settings": choices}
        if probe is not None:
            record["probe"] = probe
        write_completion(out, record)
        if not spec.keep_checkpoints:
            removed = remove_checkpoints(out)
            if removed:
                logger.info("removed %d checkpoint folder(s) now that %s is saved", removed, final)
    trainer.accelerator.wait_for_everyone()
    if _rank() == 0:
        shutil.rmtree(out / DATASETS_CACHE, ignore_errors=True)
    return metrics


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spec", required=True, help="path to a LaunchSpec JSON file")
    parser.add_argument("--local_rank", type=int, default=None, help="set by the deepspeed launcher")
    ns = parser.parse_args(argv)
    # force: a child forked from a warm interpreter may hold the handlers of the process that started it
    logging.basicConfig(level=logging.INFO if _rank() == 0 else logging.WARNING, format="%(asctime)s %(name)s %(message)s",
                        force=True)
    from kowen_kedro.offline import configure_offline

    configure_offline()
    run(LaunchSpec.from_json(Path(ns.spec).read_text()))
    shutdown_distributed()


def shutdown_distributed() -> None:
    """Destroy the process group before the interpreter exits (its communication threads otherwise
    get torn down at exit, where one rank of a 2-process gloo run was seen to abort)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
