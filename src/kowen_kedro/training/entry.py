"""The one training entry point: ``python -m kowen_kedro.training.entry --spec spec.json``.

Started by :mod:`kowen_kedro.training.launcher` under ``deepspeed`` (any world size) or plain python.
``spec.kind`` picks TRL's ``SFTTrainer``, ``RewardTrainer`` or ``DPOTrainer``; every other knob is
in the spec. The model is saved to ``<output_dir>/final`` (ZeRO-3 weights gathered) and a completion
marker is written last, by rank 0.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

from kowen_kedro.training.spec import COMPLETE_MARKER, LaunchSpec, gradient_accumulation_steps

logger = logging.getLogger("kowen_kedro.training.entry")

ATTENTION_PARAM_KEYS = ("self_attn.",)


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def mlflow_callback(prefix: str):
    """A TrainerCallback that logs every ``on_log`` dict into the parent's MLflow run as ``<prefix>.<key>``."""
    from transformers import TrainerCallback

    class MlflowParentRunCallback(TrainerCallback):
        def __init__(self) -> None:
            self.run_id = os.environ.get("KOWEN_MLFLOW_RUN_ID")
            self._client = None

        def _log(self, metrics: dict[str, Any], step: int) -> None:
            if not self.run_id:
                return
            from mlflow.entities import Metric
            from mlflow.tracking import MlflowClient

            self._client = self._client or MlflowClient()
            now = int(time.time() * 1000)
            batch = [
                Metric(key=f"{prefix}.{k}", value=float(v), timestamp=now, step=step)
                for k, v in metrics.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)
            ]
            if batch:
                self._client.log_batch(self.run_id, metrics=batch)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs and self.run_id:
                try:
                    self._log(logs, state.global_step)
                except Exception as err:  # tracking trouble must never stop a training run
                    logger.warning("MLflow logging disabled for this run: %s", err)
                    self.run_id = None

    return MlflowParentRunCallback()


def freeze_all_but_attention(model) -> int:
    """Train attention projections only (CLO); returns the number of trainable parameters."""
    trainable = 0
    for name, param in model.named_parameters():
        param.requires_grad = any(k in name for k in ATTENTION_PARAM_KEYS)
        trainable += param.numel() if param.requires_grad else 0
    if trainable == 0:
        raise ValueError("attention_only fine-tuning found no parameter named like " + repr(ATTENTION_PARAM_KEYS))
    return trainable


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


def build_config(spec: LaunchSpec):
    """The TRL config object for ``spec`` (created before the model so ZeRO-3 can partition at load)."""
    import torch
    from trl import DPOConfig, RewardConfig, SFTConfig

    cls = {"sft": SFTConfig, "reward": RewardConfig, "dpo": DPOConfig}[spec.kind]
    args: dict[str, Any] = {
        "output_dir": spec.output_dir,
        "report_to": [],
        "logging_steps": 1,
        "save_strategy": "no",
        "seed": spec.seed,
        "bf16": torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
        # On CPU, accelerate counts the processes only when use_cpu is set (MULTI_CPU); DeepSpeed still
        # drives training (its CPU accelerator) - see run() for the process-group side.
        "use_cpu": not torch.cuda.is_available(),
        "dataloader_num_workers": 0,
        "disable_tqdm": True,
    }
    args.update(spec.trainer_args)
    if spec.global_batch_size:
        per_device = int(args.get("per_device_train_batch_size", 8))
        args["per_device_train_batch_size"] = per_device
        args["gradient_accumulation_steps"] = gradient_accumulation_steps(
            spec.global_batch_size, per_device, spec.world_size
        )
    if spec.deepspeed:
        args["deepspeed"] = spec.deepspeed
    return cls(**args)


def load_model(spec: LaunchSpec, config):
    """The policy / reward model from ``spec.model`` (a local folder or a hub id)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    dtype = torch.bfloat16 if config.bf16 else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(spec.model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if spec.kind == "reward":
        model, info = AutoModelForSequenceClassification.from_pretrained(
            spec.model, num_labels=1, dtype=dtype, pad_token_id=tokenizer.pad_token_id, output_loading_info=True
        )
        if "score.weight" in info.get("missing_keys", []):  # a base LM: the head is new
            from kowen_kedro.rewards.heads import init_score_head

            init_score_head(model, seed=spec.seed)
            logger.info("new score head initialised from N(0, 1/sqrt(d_model + 1))")
    else:
        model = AutoModelForCausalLM.from_pretrained(spec.model, dtype=dtype)
    return model, tokenizer


def run(spec: LaunchSpec) -> dict:
    """Train according to ``spec`` and save the final model; returns the train metrics."""
    from datasets import load_dataset
    from transformers import set_seed

    fingerprint = spec.fingerprint()  # before anything runs: libraries may mutate what they are given
    set_seed(spec.seed)
    if spec.deepspeed:
        # deepspeed.comm must be initialised before the model loads: under ZeRO-3, from_pretrained runs
        # zero.Init, whose batch-size check otherwise assumes world size 1 (seen with 2 CPU processes).
        import deepspeed

        deepspeed.init_distributed()
    config = build_config(spec)
    model, tokenizer = load_model(spec, config)
    peft_config = None
    if spec.finetuning == "lora":
        if spec.deepspeed and spec.deepspeed.get("zero_optimization", {}).get("stage") == 3:
            raise ValueError("LoRA with ZeRO-3 is not supported here (the merged model cannot be gathered); "
                             "use training.deepspeed.zero_stage 2 or launcher 'python' for LoRA runs")
        from peft import LoraConfig

        lora = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.05, "target_modules": ["q_proj", "v_proj"]}
        lora.update(copy.deepcopy(spec.lora))  # peft extends modules_to_save in place
        if spec.kind == "reward":
            lora.setdefault("task_type", "SEQ_CLS")
            lora.setdefault("modules_to_save", ["score"])
        else:
            lora.setdefault("task_type", "CAUSAL_LM")
        peft_config = LoraConfig(**lora)
    elif spec.finetuning == "attention_only":
        n = freeze_all_but_attention(model)
        logger.info("attention-only fine-tuning: %d trainable parameters", n)

    data_files = {"train": spec.train_file}
    if spec.eval_file:
        data_files["eval"] = spec.eval_file
    data = load_dataset("json", data_files=data_files)
    common = dict(
        args=config,
        train_dataset=data["train"],
        eval_dataset=data.get("eval"),
        processing_class=tokenizer,
        callbacks=[mlflow_callback(spec.mlflow_prefix)],
        peft_config=peft_config,
    )
    if spec.kind == "sft":
        from trl import SFTTrainer

        trainer = SFTTrainer(model=model, **common)
    elif spec.kind == "reward":
        from trl import RewardTrainer

        trainer = RewardTrainer(model=model, **common)
    else:
        from trl import DPOTrainer

        ref = None
        if spec.ref_model:
            ref, _ = load_model(LaunchSpec(**{**spec.__dict__, "model": spec.ref_model}), config)
        trainer = DPOTrainer(model=model, ref_model=ref, **common)

    resume = any(Path(spec.output_dir).glob("checkpoint-*"))
    result = trainer.train(resume_from_checkpoint=True if resume else None)
    metrics = dict(result.metrics)
    if data.get("eval") is not None:
        metrics.update(trainer.evaluate())
    probe = probe_rewards(trainer, tokenizer, data.get("eval")) if spec.kind == "reward" else None
    final = spec.final_dir
    if peft_config is not None:
        trainer.model = trainer.model.merge_and_unload() if hasattr(trainer.model, "merge_and_unload") else trainer.model
    trainer.save_model(str(final))
    trainer.accelerator.wait_for_everyone()
    if _rank() == 0:
        tokenizer.save_pretrained(final)
        gen_cfg = Path(spec.model) / "generation_config.json"
        if spec.kind != "reward" and gen_cfg.exists():
            shutil.copy(gen_cfg, final / "generation_config.json")
        from kowen_kedro.model_identity import model_identity

        model_identity(final)  # hash once here; versioned copies carry the stored identity
        record = {"fingerprint": fingerprint, "final_dir": str(final), "metrics": metrics}
        if probe is not None:
            record["probe"] = probe
        tmp = Path(spec.output_dir) / (COMPLETE_MARKER + ".tmp")
        tmp.write_text(json.dumps(record, indent=2, default=str))
        tmp.replace(Path(spec.output_dir) / COMPLETE_MARKER)
    return metrics


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spec", required=True, help="path to a LaunchSpec JSON file")
    parser.add_argument("--local_rank", type=int, default=None, help="set by the deepspeed launcher")
    ns = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if _rank() == 0 else logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    from kowen_kedro.offline import configure_offline

    configure_offline()
    spec = LaunchSpec.from_json(Path(ns.spec).read_text())
    run(spec)


if __name__ == "__main__":
    main()
