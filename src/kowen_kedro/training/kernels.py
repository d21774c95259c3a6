"""Fused layer kernels, the attention implementation and padding-free packing, chosen for the hardware.

Three settings of the training child, each ``auto`` by default (``training.kernels``,
``training.attn_implementation``, SFT's ``trainer_args.packing``), resolved where the child runs:

* **kernels**: ``liger`` swaps the decoder's RMSNorm, RoPE and SwiGLU for Liger's fused Triton kernels
  (through transformers' ``use_liger_kernel``; the LM head's loss is left to TRL, which computes it in
  chunks already); ``compile`` compiles each decoder layer with ``torch.compile`` (regional compilation:
  the layers share one graph, so it compiles once); ``none`` leaves the model eager. ``auto``: Liger where a
  GPU and the ``liger-kernel`` wheel are there (the ``gpu`` extra), else compiled layers on a GPU unless
  ZeRO-3 partitions the parameters (its gather hooks break the graphs), else none (a CPU: nothing to gain
  in a run of minutes that would pay the compilation).
* **attention**: ``auto`` is FlashAttention 2 where a GPU and the ``flash-attn`` wheel are there, else the
  model's default (PyTorch SDPA).
* **packing** (SFT): ``auto`` packs the rows best-fit into ``max_length`` blocks without padding (TRL's
  ``bfd`` strategy, padding-free) where the attention keeps the packed sequences apart (FlashAttention's
  variable-length kernels), else one row per sequence, padded. Packing changes which rows share a batch,
  not what each row teaches; it pays on real data of mixed lengths.

Every function here is pure given what is installed, so tests check each choice on a CPU.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from kowen_kedro.training.preflight import AUTO
KERNELS = ("none", "liger", "compile", AUTO)
#: Attention implementations that run a flattened (padding-free) batch without mixing its sequences.
VARLEN_ATTENTION = ("flash_attention_2", "flash_attention_3")
#: What Liger swaps (transformers' ``liger_kernel_config``): the layers' kernels; the loss stays TRL's chunked one.
LIGER_LAYERS = {"rms_norm": True, "rope": True, "swiglu": True, "cross_entropy": False, "fused_linear_cross_entropy": False}


def installed(module: str) -> bool:
    """Whether ``module`` can be imported (without importing it)."""
    return importlib.util.find_spec(module) is not None


def choose_kernels(kernels: str, cuda: bool, zero_stage: int | None, liger_available: bool) -> str:
    """``none`` | ``liger`` | ``compile`` for a configured ``kernels`` value (see the module docstring).

    Raises:
        ValueError: an unknown value, or ``liger`` asked for where the wheel is missing.
    """
    if kernels not in KERNELS:
        raise ValueError(f"training.kernels {kernels!r}: expected one of {', '.join(KERNELS)}")
    if kernels == "liger" and not liger_available:
        raise ValueError("training.kernels liger needs the liger-kernel wheel (pip install -e '.[gpu]'), "
                         "or set training.kernels to auto, compile or none")
    if kernels != AUTO:
        return kernels
    if not cuda:
        return "none"
    if liger_available:
        return "liger"
    return "none" if zero_stage == 3 else "compile"


def choose_attention(attn: str | None, cuda: bool, flash_available: bool) -> str | None:
    """The ``attn_implementation`` to load the model with (None: the model's default, SDPA)."""
    if attn in (None, AUTO):
        return "flash_attention_2" if cuda and flash_available else None
    return attn


def choose_packing(packing: Any, attn_implementation: str | None) -> bool:
    """SFT packing for a configured ``packing`` (``auto``: where the attention keeps packed rows apart)."""
    if packing == AUTO:
        return attn_implementation in VARLEN_ATTENTION
    return bool(packing)


def hardware_choices(kernels: str, attn: str | None, packing: Any, *, cuda: bool, zero_stage: int | None,
                     liger_available: bool | None = None, flash_available: bool | None = None) -> dict[str, Any]:
    """``{"kernels", "attn_implementation", "packing"}`` for a child on this machine (availability looked up
    when not given)."""
    liger = installed("liger_kernel") if liger_available is None else liger_available
    flash = installed("flash_attn") if flash_available is None else flash_available
    attention = choose_attention(attn, cuda, flash)
    return {"kernels": choose_kernels(kernels, cuda, zero_stage, liger),
            "attn_implementation": attention,
            "packing": choose_packing(packing, attention)}


def decoder_layers(model) -> list:
    """The decoder layers of a causal LM or a sequence classifier (``model.model.layers``), or of the model
    a peft wrapper holds."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    inner = getattr(base, base.base_model_prefix, None) if hasattr(base, "base_model_prefix") else None
    layers = getattr(inner, "layers", None)
    if layers is None:
        raise ValueError(f"{type(base).__name__}: no decoder layers found at .{getattr(base, 'base_model_prefix', 'model')}.layers")
    return list(layers)


def compile_decoder_layers(model, backend: str = "inductor") -> int:
    """Compile each decoder layer in place (``nn.Module.compile``); returns how many were compiled."""
    layers = decoder_layers(model)
    for layer in layers:
        layer.compile(backend=backend, dynamic=None)
    return len(layers)
