"""One model-loading policy for every model the project loads in its own process.

Generation, reward scoring, the local judges, seq2seq MT, the representation analysis and COMET QE
load through these functions, so one rule decides for all of them:

* **device** - the configured one, else CUDA when available, else CPU;
* **dtype** - the configured one, else bf16 on a GPU that supports it (fp16 on one that does not),
  fp32 on CPU (CPU bf16 matmuls are slow and lossy);
* **attention** - transformers' default (PyTorch's fused ``sdpa`` where the architecture has it), or
  the configured one (``flash_attention_2`` where installed);
* **local files only** when the hub is switched off (``HF_HUB_OFFLINE=1``, the default here);
* **tokenizer padding** - left for generation and next-token verdicts, right for scoring a whole
  sequence; a tokenizer without a pad token pads with its end-of-sequence token.

Models are returned in eval mode on their device. (Training loads in the DeepSpeed child
(:mod:`kowen_kedro.training.entry`), where DeepSpeed places the weights.)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

DTYPES = ("float32", "bfloat16", "float16")


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _bf16_supported() -> bool:
    import torch

    return torch.cuda.is_bf16_supported()


def local_files_only() -> bool:
    """The hub is switched off (``HF_HUB_OFFLINE``): load from local folders / the HF cache only."""
    return os.environ.get("HF_HUB_OFFLINE", "0").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Placement:
    """Where and in which precision a model runs."""

    device: str
    dtype: str
    attn_implementation: str | None = None

    @property
    def on_gpu(self) -> bool:
        return self.device.startswith("cuda")

    def torch_dtype(self):
        import torch

        return getattr(torch, self.dtype)


def placement(device: str | None = None, dtype: str | None = None, attn_implementation: str | None = None) -> Placement:
    """The loading decision for one model (``None`` / ``"auto"`` = the project's rule; see the module docstring)."""
    if device in (None, "auto"):
        device = "cuda" if cuda_available() else "cpu"
    if dtype in (None, "auto"):
        dtype = ("bfloat16" if _bf16_supported() else "float16") if device.startswith("cuda") else "float32"
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES} or auto, not {dtype!r}")
    return Placement(device=device, dtype=dtype, attn_implementation=attn_implementation)


def load_tokenizer(path: str, padding_side: str | None = None, **kwargs):
    """``AutoTokenizer`` with the padding side the use needs and a pad token (EOS when it has none)."""
    from transformers import AutoTokenizer

    if padding_side is not None:
        kwargs["padding_side"] = padding_side
    tok = AutoTokenizer.from_pretrained(path, local_files_only=local_files_only(), **kwargs)
    if tok.pad_token is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token
    return tok


def _load(auto_class: Any, path: str, where: Placement, **kwargs):
    from kowen_kedro.floats import deterministic_torch

    deterministic_torch()  # every model the project loads runs torch's deterministic kernels
    if where.attn_implementation:
        kwargs["attn_implementation"] = where.attn_implementation
    model = auto_class.from_pretrained(path, dtype=where.torch_dtype(), local_files_only=local_files_only(), **kwargs)
    return model.to(where.device).eval()


def load_causal_lm(path: str, where: Placement | None = None, **kwargs):
    from transformers import AutoModelForCausalLM

    return _load(AutoModelForCausalLM, path, where or placement(), **kwargs)


def load_sequence_classifier(path: str, where: Placement | None = None, **kwargs):
    from transformers import AutoModelForSequenceClassification

    return _load(AutoModelForSequenceClassification, path, where or placement(), **kwargs)


def load_seq2seq(path: str, where: Placement | None = None, **kwargs):
    from transformers import AutoModelForSeq2SeqLM

    return _load(AutoModelForSeq2SeqLM, path, where or placement(), **kwargs)


def load_body(path: str, where: Placement | None = None, **kwargs):
    """The transformer body (``AutoModel``) of an LM or an RM: hidden states, no head."""
    from transformers import AutoModel

    return _load(AutoModel, path, where or placement(), **kwargs)


def comet_gpus(device: str | None = None) -> int:
    """COMET's ``predict(gpus=...)`` under the same rule: 1 on a GPU, 0 on CPU."""
    return 1 if placement(device, "float32").on_gpu else 0


def scoring_batch_size(value: int | str | None, accelerated: bool, on_accelerator: int, key: str) -> int:
    """The ``key`` setting of a forward-only scorer (QE, the local judge): a number of items per forward pass, or
    ``auto`` / None: ``on_accelerator`` on a GPU, 1 on the CPU. A batched score depends on its batch-mates in the
    last bits (a batch is padded to its longest item, and the kernels sum over other shapes in another order), and
    which items share a batch depends on what the call cache already holds - an item another node scored first is
    not scored again - so on the CPU, where the project promises the same numbers for the same commit and seed,
    each item is scored alone: its score is then a function of the item."""
    if value in (None, "auto"):
        return on_accelerator if accelerated else 1
    size = int(value)
    if size < 1:
        raise ValueError(f"{key} must be >= 1 or auto, not {value!r}")
    return size


def judge_batch_size(value: int | str | None, cuda: bool) -> int:
    """``evaluation.judge.batch_size`` of the local judge: a number of verdicts per forward pass, or ``auto`` /
    None: 8 on a GPU, 1 on the CPU, where each verdict is then a function of its prompt
    (:func:`scoring_batch_size`). A left-padded batch moved a verdict's probability in its
    seventh digit, and a verdict is cached and reused by other nodes (two policies that give the same answer, the
    aligned policy and its last iteration), so which verdicts shared a batch followed the node order. As fast as
    batches of 8 with the tiny judge. Here, below the judge, so that the preflight sizes a GPU judge by it."""
    return scoring_batch_size(value, cuda, 8, "evaluation.judge.batch_size")
