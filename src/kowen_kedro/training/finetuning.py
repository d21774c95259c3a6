"""What gets trained: full fine-tuning, LoRA (peft) or attention projections only; optimizer checks.

Parameter counts are ZeRO-3 aware (a partitioned parameter reports its full size in ``ds_numel``).
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: Parameter-name fragment of the attention block in Qwen2 / Llama / Mistral style models.
ATTENTION_PARAM_KEYS = ("self_attn.",)
#: LoRA defaults = XL-Instruct's setup (rank 8 on q and v).
LORA_DEFAULTS: dict[str, Any] = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.05, "target_modules": ["q_proj", "v_proj"]}
#: HF Trainer ``optim`` values that need bitsandbytes (CUDA only).
BNB_OPTIMIZERS = ("adamw_8bit", "adamw_bnb_8bit", "paged_adamw_8bit", "paged_adamw_32bit", "paged_adamw",
                  "paged_lion_8bit", "paged_lion_32bit", "lion_8bit", "lion_32bit", "rmsprop_bnb_8bit",
                  "ademamix_8bit", "paged_ademamix_8bit", "paged_ademamix_32bit")


def _numel(param) -> int:
    return int(getattr(param, "ds_numel", 0) or param.numel())


def parameter_counts(model) -> dict[str, int]:
    """``{"trainable_params", "total_params"}`` of ``model`` (ZeRO-3 partitions counted at full size)."""
    trainable = total = 0
    for _, param in model.named_parameters():
        n = _numel(param)
        total += n
        trainable += n if param.requires_grad else 0
    return {"trainable_params": trainable, "total_params": total}


def freeze_all_but_attention(model) -> int:
    """Train the attention projections only (CLO); returns the number of trainable parameters."""
    trainable = 0
    for name, param in model.named_parameters():
        param.requires_grad = any(k in name for k in ATTENTION_PARAM_KEYS)
        trainable += _numel(param) if param.requires_grad else 0
    if trainable == 0:
        raise ValueError("attention_only fine-tuning found no parameter named like " + repr(ATTENTION_PARAM_KEYS))
    return trainable


def lora_config(kind: str, overrides: dict[str, Any] | None = None):
    """A peft ``LoraConfig``: XL-Instruct defaults, the recipe's ``lora:`` overrides, the task type of ``kind``.

    A reward model also trains (and saves) its new score head in full (``modules_to_save: [score]``).
    """
    from peft import LoraConfig

    cfg = copy.deepcopy(LORA_DEFAULTS)
    cfg.update(copy.deepcopy(overrides or {}))  # peft extends modules_to_save in place: never hand it ours
    if kind == "reward":
        cfg.setdefault("task_type", "SEQ_CLS")
        cfg.setdefault("modules_to_save", ["score"])
    else:
        cfg.setdefault("task_type", "CAUSAL_LM")
    return LoraConfig(**cfg)


def check_optimizer(optim: str | None, cuda_available: bool) -> None:
    """Fail early, with the fix, when a bitsandbytes optimizer (paged AdamW 8-bit...) is asked for off-GPU."""
    if optim and optim.lower() in BNB_OPTIMIZERS:
        if not cuda_available:
            raise ValueError(
                f"trainer_args.optim={optim!r} needs a CUDA GPU (bitsandbytes); this process has none. "
                "Use optim: adamw_torch on CPU, or run on GPU with the 'gpu' extra installed."
            )
        try:
            import bitsandbytes  # noqa: F401
        except ImportError as err:
            raise ValueError(f"trainer_args.optim={optim!r} needs bitsandbytes: pip install -e '.[gpu]'") from err


def merge_lora_adapter(kind: str, base_model: str, adapter_dir: str | Path, out_dir: str | Path, dtype=None) -> Path:
    """Load ``base_model`` fresh on CPU, apply the saved adapter, merge it and save a plain model folder.

    Done by one process after training, outside any ZeRO-3 context: under ZeRO-3 the live model's
    weights are partitioned, so merging in place would save shards of the base weights.
    """
    from peft import PeftModel
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    from kowen_kedro.loading import Placement, load_causal_lm, load_sequence_classifier, load_tokenizer

    unset_hf_deepspeed_config()  # from_pretrained must not start zero.Init (a collective) in one process
    on_cpu = Placement("cpu", str(dtype).replace("torch.", "") if dtype is not None else "float32")
    if kind == "reward":
        tok = load_tokenizer(str(adapter_dir))
        base = load_sequence_classifier(base_model, on_cpu, num_labels=1, pad_token_id=tok.pad_token_id)
    else:
        base = load_causal_lm(base_model, on_cpu)
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    merged.save_pretrained(out_dir)
    logger.info("merged LoRA adapter %s into %s -> %s", adapter_dir, base_model, out_dir)
    return Path(out_dir)


def drop_empty_param_groups(trainer) -> None:
    """Make the Trainer's optimizer drop empty parameter groups before its LR scheduler is built.

    The Trainer always builds two groups (weight decay / none); with LoRA the second is empty.
    DeepSpeed deletes empty groups after the scheduler has counted them, and torch >= 2.10's
    ``LRScheduler`` then fails with "zip() argument 2 is longer than argument 1" (fixed upstream in
    transformers 5 by huggingface/transformers#43711; our pin is 4.57).
    """
    original = trainer.create_optimizer

    def create_optimizer(*args, **kwargs):
        optimizer = original(*args, **kwargs)
        inner = getattr(optimizer, "optimizer", optimizer)
        inner.param_groups[:] = [g for g in inner.param_groups if len(g["params"])]
        return optimizer

    trainer.create_optimizer = create_optimizer
