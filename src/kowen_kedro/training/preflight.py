"""Preflight: does every stage of a recipe fit its GPUs, how many tokens, how long, what cost, before a
cluster is booked (``kedro preflight --env kowen_7b``).

Everything is read from the recipe's parameters and the models' real configurations, never from weights:

* **models**: a ``config.json`` shipped in ``model_configs/`` for every model the shipped recipes name
  (``Qwen/Qwen2.5-7B`` -> ``Qwen--Qwen2.5-7B.json``), a local folder's own, or the tiny default's sizes;
  parameters counted by instantiating the architecture on the meta device (no memory, no download).
* **training memory per GPU**: model states through DeepSpeed's own estimators
  (``estimate_zero3_model_states_mem_needs``, ``estimate_zero2_model_states_mem_needs``) for the
  trainable parameters, frozen weights at 2 bytes, a held DPO reference model at 2 bytes per parameter
  (partitioned under ZeRO-3); activations from the shape (:func:`activation_bytes_per_token`);
* **generation memory per GPU** (vLLM): weights / tensor parallel degree, the KV cache that
  ``gpu_memory_utilization`` leaves, how many sequences of the stage's length run at once;
* **time**: tokens x FLOPs per token at the project's measured throughput (:data:`MEASURED`, the GPU
  rows of docs/benchmarks.md) scaled to the configured GPU's peak; vLLM decoding on a bandwidth
  roofline (assumptions shown in the table); GPU-hours and cost at ``training.price_per_gpu_hour``.

Each figure says where it came from (``basis``). A stage that cannot fit, or whose batch, sequence length
or tensor parallel degree is inconsistent, is a :class:`Problem` naming the stage, the figure and what
would make it fit.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from kowen_kedro.groups import Preflight, Training

GIB = 1024 ** 3
AUTO = "auto"
MODEL_CONFIGS = Path(__file__).parent / "model_configs"
TINY_PREFIX = "tiny:"


@dataclass(frozen=True)
class GPU:
    """A GPU kind: usable memory (GiB, as ``nvidia-smi`` reports it), dense bf16 peak, HBM bandwidth."""

    name: str
    memory_gib: float
    peak_tflops: float
    bandwidth_tbs: float


GPUS = {g.name: g for g in (
    GPU("a100-40gb", 40.0, 312.0, 1.555),
    GPU("a100-80gb", 80.0, 312.0, 2.039),
    GPU("h100-80gb", 79.6, 989.0, 3.35),
    GPU("h200", 140.4, 989.0, 4.8),
    GPU("l40s", 45.0, 362.0, 0.864),
)}

def gpu_kind(device_name: str, memory_gib: float | None = None) -> str | None:
    """The :data:`GPUS` kind of a CUDA device (``torch.cuda.get_device_name()``), else None."""
    name = device_name.upper()
    if "H200" in name:
        return "h200"
    if "H100" in name:
        return "h100-80gb"
    if "A100" in name:
        return "a100-80gb" if "80GB" in name.replace(" ", "") or (memory_gib or 0) > 60 else "a100-40gb"
    if "L40S" in name:
        return "l40s"
    return None


#: What the project measured through its own code paths (docs/benchmarks.md, GPU section): model FLOP/s as a
#: share of the GPU's dense bf16 peak. Training: SFT and DPO through the launcher (bf16, ZeRO-3, one H100)
#: for the Qwen2.5-0.5B and 1.5B shapes; the figure of the measured shape nearest in size is used.
#: Scoring: RM scoring at batch 64 (169k tokens/s, 0.5B shape, H100). Generation through the
#: transformers backend: 2,281 tokens/s at batch 64 (0.5B shape, H200).
MEASURED = {
    "sft": [(0.494e9, 0.139), (1.544e9, 0.152)],
    "dpo": [(0.494e9, 0.131), (1.544e9, 0.164)],
    "scoring": [(0.494e9, 169e3 * 2 * 0.494e9 / 989e12)],
    "transformers_generation": [(0.494e9, 2281 * 2 * 0.494e9 / 989e12)],
}


class PreflightError(ValueError):
    """A model whose size cannot be known (no configuration shipped, no local folder)."""


# ---------------------------------------------------------------------------------------------- models


@dataclass(frozen=True)
class ModelShape:
    """What the estimates need of a model: counted parameters and the shape of one layer."""

    name: str
    params: int
    largest_layer: int  # the most parameters held directly by one module (DeepSpeed's ZeRO-3 estimator)
    embedding: int
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    positions: int


def tiny_config(role: str, tiny: dict[str, Any]) -> dict[str, Any]:
    """The config of a built-in tiny model (``tiny:<role>``) from ``params:tiny_models``, as the build makes it."""
    from kowen_kedro.groups import TinyModels

    c = TinyModels.of(tiny)
    if role == "qe":
        return {"model_type": "xlm-roberta", "architectures": ["XLMRobertaModel"], "vocab_size": c.qe_vocab_size,
                "hidden_size": c.qe_hidden_size, "num_hidden_layers": c.qe_layers, "num_attention_heads": 2,
                "intermediate_size": 2 * c.qe_hidden_size, "max_position_embeddings": 514, "type_vocab_size": 1}
    if role == "mt":
        return {"model_type": "m2m_100", "architectures": ["M2M100ForConditionalGeneration"], "vocab_size": c.vocab_size,
                "d_model": c.hidden_size, "encoder_layers": 2, "decoder_layers": 2, "encoder_attention_heads": 4,
                "decoder_attention_heads": 4, "encoder_ffn_dim": 2 * c.hidden_size, "decoder_ffn_dim": 2 * c.hidden_size,
                "max_position_embeddings": 256}
    return {"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "vocab_size": c.vocab_size,
            "hidden_size": c.hidden_size, "intermediate_size": c.intermediate_size,
            "num_hidden_layers": c.num_hidden_layers, "num_attention_heads": c.num_attention_heads,
            "num_key_value_heads": c.num_key_value_heads, "max_position_embeddings": c.max_position_embeddings,
            "tie_word_embeddings": True}


def model_config(ref: str, tiny: dict[str, Any] | None = None) -> dict[str, Any]:
    """The configuration of model ``ref``: ``tiny:<role>``, a local folder (its ``config.json``) or a hub id
    whose ``config.json`` the project ships.

    Raises:
        PreflightError: none of those.
    """
    if ref.startswith(TINY_PREFIX):
        return tiny_config(ref[len(TINY_PREFIX):], tiny or {})
    local = Path(ref) / "config.json"
    if local.is_file():
        return json.loads(local.read_text())
    shipped = MODEL_CONFIGS / (ref.replace("/", "--") + ".json")
    if shipped.is_file():
        return json.loads(shipped.read_text())
    raise PreflightError(f"no configuration for model {ref!r}: give a local folder with its config.json, or add "
                         f"it as {shipped.name} to {MODEL_CONFIGS} (shipped: {', '.join(shipped_models())})")


def shipped_models() -> list[str]:
    """Hub ids whose configuration ships with the project."""
    return sorted(p.stem.replace("--", "/") for p in MODEL_CONFIGS.glob("*.json"))


@lru_cache(maxsize=64)
def _shape(name: str, config_json: str, head: str) -> ModelShape:
    import torch
    from transformers import (CONFIG_MAPPING, AutoModel, AutoModelForCausalLM, AutoModelForSeq2SeqLM,
                              AutoModelForSequenceClassification)

    cfg = dict(json.loads(config_json))
    model_type = cfg.pop("model_type")
    config = CONFIG_MAPPING[model_type](**cfg)
    arch = " ".join(cfg.get("architectures") or [])
    if head == "score":
        config.num_labels = 1
        auto = AutoModelForSequenceClassification
    else:
        auto = (AutoModelForCausalLM if "CausalLM" in arch else AutoModelForSeq2SeqLM if "ConditionalGeneration" in arch
                else AutoModel)
    with torch.device("meta"):
        model = auto.from_config(config)
    params = sum(p.numel() for p in model.parameters())
    largest = max(sum(p.numel() for p in m.parameters(recurse=False)) for m in model.modules())
    embedding = model.get_input_embeddings().weight.numel()
    get = lambda *keys, default=0: next((config.to_dict()[k] for k in keys if config.to_dict().get(k)), default)  # noqa: E731
    hidden = get("hidden_size", "d_model")
    heads = get("num_attention_heads", "encoder_attention_heads", default=1)
    return ModelShape(
        name=name, params=params, largest_layer=largest, embedding=embedding,
        layers=get("num_hidden_layers", "decoder_layers"), hidden=hidden,
        intermediate=get("intermediate_size", "decoder_ffn_dim", default=4 * hidden),
        heads=heads, kv_heads=get("num_key_value_heads", default=heads),
        head_dim=get("head_dim", default=hidden // heads), vocab=get("vocab_size"),
        positions=get("max_position_embeddings"),
    )


def model_shape(ref: str, tiny: dict[str, Any] | None = None, head: str = "lm") -> ModelShape:
    """Counted parameters and layer shape of ``ref`` (``head``: ``lm`` for a causal LM, ``score`` for a
    reward model, whose scalar head replaces the LM head)."""
    return _shape(ref, json.dumps(model_config(ref, tiny), sort_keys=True), head)


def trainable_params(shape: ModelShape, finetuning: str, lora: dict[str, Any] | None = None) -> int:
    """Parameters the optimizer holds: all (``full``), the attention projections (``attention_only``), or
    LoRA's A and B matrices on the target modules (rank ``r``; XL-Instruct's defaults: 8 on q and v)."""
    kv = shape.kv_heads * shape.head_dim
    q_out = shape.heads * shape.head_dim
    dims = {"q_proj": (shape.hidden, q_out), "k_proj": (shape.hidden, kv), "v_proj": (shape.hidden, kv),
            "o_proj": (q_out, shape.hidden), "gate_proj": (shape.hidden, shape.intermediate),
            "up_proj": (shape.hidden, shape.intermediate), "down_proj": (shape.intermediate, shape.hidden)}
    if finetuning == "full":
        return shape.params
    if finetuning == "attention_only":
        return shape.layers * (sum(i * o for i, o in (dims[k] for k in ("q_proj", "k_proj", "v_proj", "o_proj"))) + q_out + 2 * kv)
    if finetuning == "lora":
        from kowen_kedro.training.finetuning import LORA_DEFAULTS

        cfg = {**LORA_DEFAULTS, **(lora or {})}
        return shape.layers * sum(int(cfg["r"]) * (dims[m][0] + dims[m][1]) for m in cfg["target_modules"] if m in dims)
    raise ValueError(f"finetuning {finetuning!r}: expected full, lora or attention_only")


# ---------------------------------------------------------------------------------------------- memory


def activation_bytes_per_token(shape: ModelShape, gradient_checkpointing: bool) -> float:
    """Activation memory kept for the backward pass, per token of the micro-batch, bf16, with a fused
    (flash / SDPA) attention that keeps no score matrix.

    Per decoder layer: the two RMSNorms keep their fp32 input and bf16 output (2 x 6h bytes), attention
    keeps its input, Q, K, V and output (2 x (3h + 2 kv)), the SwiGLU MLP its input and the gate, up,
    activated and product tensors (2 x (h + 4 i)): 20h + 4kv + 8i bytes in all. With gradient
    checkpointing only each layer's input (2h bytes) is kept, plus one layer's full set while it is recomputed.
    """
    kv = shape.kv_heads * shape.head_dim
    per_layer = 20 * shape.hidden + 4 * kv + 8 * shape.intermediate
    if gradient_checkpointing:
        return shape.layers * 2 * shape.hidden + per_layer
    return shape.layers * per_layer


def model_states_bytes(trainable: int, frozen: int, largest_layer: int, gpus_per_node: int, nodes: int,
                       zero_stage: int, offload_optimizer: bool, offload_param: bool) -> int:
    """Model states per GPU (bf16 mixed precision, AdamW) through DeepSpeed's estimators: ZeRO-3's for stage 3,
    ZeRO-1/2's for stages 1 and 2 (DeepSpeed has one estimator for both), and the same with nothing
    partitioned for stage 0; frozen weights add 2 bytes each (partitioned under ZeRO-3)."""
    import os

    os.environ.setdefault("DS_ACCELERATOR", "cpu")  # the estimators are arithmetic: no accelerator probe (and its warning)
    total_gpus = gpus_per_node * nodes
    if zero_stage == 3:
        from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs

        _, gpu, _ = estimate_zero3_model_states_mem_needs(
            trainable, largest_layer,  # the largest module is gathered whole, trained or frozen
            num_gpus_per_node=gpus_per_node, num_nodes=nodes, cpu_offload=offload_optimizer,
            cpu_offload_params=offload_optimizer and offload_param, zero_init=True)
        return int(gpu + (0 if offload_param else 2 * frozen / total_gpus))
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    partitioned_over = (gpus_per_node, nodes) if zero_stage in (1, 2) else (1, 1)
    _, gpu = estimate_zero2_model_states_mem_needs(trainable, num_gpus_per_node=partitioned_over[0],
                                                   num_nodes=partitioned_over[1], cpu_offload=offload_optimizer)
    return int(gpu + 2 * frozen)


def kv_bytes_per_token(shape: ModelShape, tensor_parallel: int) -> float:
    """KV cache per token per GPU in bf16: keys and values of every layer, heads split over the GPUs
    (a KV head shared by several GPUs is held by each)."""
    heads_per_gpu = max(1, math.ceil(shape.kv_heads / tensor_parallel))
    return 2 * shape.layers * heads_per_gpu * shape.head_dim * 2


# ---------------------------------------------------------------------------------------------- stages


@dataclass
class Stage:
    """One row of the preflight table."""

    stage: str
    kind: str  # training | generation | scoring | api
    model: str
    params: int | None = None
    gpus: int = 0
    zero_stage: int | None = None
    launcher: str | None = None
    tensor_parallel: int | None = None
    micro_batch: int | None = None
    seq_len: int | None = None
    gradient_checkpointing: bool | None = None
    finetuning: str | None = None
    trainable_params: int | None = None
    model_states_gib: float | None = None
    activations_gib: float | None = None
    reference_gib: float | None = None
    weights_gib: float | None = None
    kv_cache_gib: float | None = None
    concurrent_sequences: int | None = None
    memory_gib_per_gpu: float | None = None
    gpu_memory_gib: float | None = None
    fits: bool | None = None
    rows: int | None = None
    tokens: int | None = None
    tflop: float | None = None
    hours: float | None = None
    gpu_hours: float | None = None
    cost: float | None = None
    basis: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Settings:
    """``params:training`` and ``params:preflight`` as the estimates read them."""

    gpu: GPU
    world_size: int
    num_nodes: int
    zero_stage: int | None  # None: auto (the lowest stage that fits, :func:`choose_settings`)
    offload_optimizer: bool
    offload_param: bool
    launcher: str
    gradient_checkpointing: bool | str | None  # "auto": only where memory needs it
    price_per_gpu_hour: float
    sequence_fill: float
    prompt_tokens: int
    output_fill: float
    rows: dict[str, int]
    vllm: dict[str, float]
    headroom_gib: float

    @classmethod
    def of(cls, training: Training, preflight: Preflight) -> "Settings":
        """From the ``training`` and ``preflight`` parameter groups."""
        if training.gpu not in GPUS:
            raise PreflightError(f"training.gpu {training.gpu!r}: expected one of {sorted(GPUS)}")
        ds, launcher = training.deepspeed, training.launcher
        return cls(
            gpu=GPUS[training.gpu], world_size=training.world_size, num_nodes=training.num_nodes,
            zero_stage=None if launcher == "auto" or ds.zero_stage == AUTO else int(ds.zero_stage) if launcher == "deepspeed" else 0,
            offload_optimizer=ds.offload_optimizer == "cpu", offload_param=ds.offload_param == "cpu",
            launcher=launcher, gradient_checkpointing=training.gradient_checkpointing,
            price_per_gpu_hour=training.price_per_gpu_hour, sequence_fill=preflight.sequence_fill,
            prompt_tokens=preflight.prompt_tokens, output_fill=preflight.output_fill, rows=dict(preflight.rows),
            vllm=asdict(preflight.vllm), headroom_gib=preflight.headroom_gib,
        )

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "Settings":
        """From a recipe's parameters (its ``training`` and ``preflight`` blocks)."""
        return cls.of(Training.of(params["training"]), Preflight.of(params["preflight"]))


def measured_efficiency(kind: str, params: int) -> float:
    """The measured share of peak for ``kind`` at the measured shape nearest ``params`` (log scale)."""
    return min(MEASURED[kind], key=lambda row: abs(math.log(row[0] / max(params, 1))))[1]


def training_flops_per_token(shape: ModelShape, seq_len: int, trainable: int, reference_forward: bool) -> float:
    """Model FLOPs per trained token: 6 N + 12 L h S (PaLM's convention); a frozen weight needs no weight
    gradient (4 instead of 6 per parameter); a DPO-style reference forward adds 2 N + 4 L h S."""
    attention = 12 * shape.layers * shape.hidden * seq_len
    flops = 4 * shape.params + 2 * trainable + attention
    return flops + (2 * shape.params + attention / 3 if reference_forward else 0)


def holds_reference(reference: bool, trainer_args: dict, finetuning: str) -> bool:
    """Whether a DPO-style stage keeps a reference model in memory: not with precomputed reference
    log-probabilities, not with LoRA (the adapter-free base serves as the reference)."""
    return reference and not trainer_args.get("precompute_ref_log_probs", False) and finetuning != "lora"


def training_memory(shape: ModelShape, s: Settings, zero_stage: int, micro: int, seq: int, gradient_checkpointing: bool,
                    finetuning: str, lora: dict | None, sequences_per_row: int, held_reference: bool) -> tuple[float, float, float]:
    """Memory per GPU of a training stage in bytes: (model states, one micro-batch's activations, a held
    reference model)."""
    trainable = trainable_params(shape, finetuning, lora)
    gpus = s.world_size
    states = model_states_bytes(trainable, shape.params - trainable, shape.largest_layer, gpus // max(s.num_nodes, 1), s.num_nodes,
                                zero_stage, s.offload_optimizer, s.offload_param)
    activations = activation_bytes_per_token(shape, gradient_checkpointing) * micro * sequences_per_row * seq
    reference = (2 * shape.params / (gpus if zero_stage == 3 else 1)) if held_reference else 0
    return states, activations, reference


def training_bytes(*args, **kwargs) -> float:
    """:func:`training_memory` in all."""
    return sum(training_memory(*args, **kwargs))


def choose_settings(shape: ModelShape, s: Settings, trainer_args: dict, global_batch: int | None, finetuning: str,
                    lora: dict | None, sequences_per_row: int, reference: bool) -> dict[str, Any]:
    """The training settings for the GPU, where the recipe says ``auto``: the lowest ZeRO stage whose memory
    fits (one GPU: 0, i.e. no partitioning, and the one-process launcher without DeepSpeed; several: 2, else 3),
    gradient checkpointing only where it is needed to fit, and the largest per-device batch that fits and
    divides the global batch (powers of two). Values the recipe sets are kept. Returns the settings and,
    under ``auto``, the names of those chosen."""
    args_gc = trainer_args.get("gradient_checkpointing", s.gradient_checkpointing)
    args_micro = trainer_args.get("per_device_train_batch_size", 8)
    seq = int(trainer_args.get("max_length", 1024))
    held = holds_reference(reference, trainer_args, finetuning)
    gpus = s.world_size
    zeros = ([0, 3] if gpus == 1 else [2, 3]) if s.zero_stage is None else [s.zero_stage]
    gcs = [False, True] if args_gc == AUTO else [True if args_gc is None else bool(args_gc)]  # unset: TRL's default (on)
    if args_micro == AUTO:
        per_gpu = int(global_batch) // gpus if global_batch else 64
        micros = [m for m in (64, 32, 16, 8, 4, 2, 1) if m <= max(per_gpu, 1) and (not global_batch or per_gpu % m == 0)] or [1]
    else:
        micros = [int(args_micro)]
    budget = (s.gpu.memory_gib - s.headroom_gib) * GIB
    options = [(z, gc, m) for z in zeros for gc in gcs for m in micros]
    fitting = [o for o in options if training_bytes(shape, s, o[0], o[2], seq, o[1], finetuning, lora, sequences_per_row, held) <= budget]
    zero, gc, micro = (fitting or options[-1:])[0]
    launcher = s.launcher
    if launcher == AUTO:
        launcher = "python" if gpus == 1 and s.num_nodes == 1 and zero == 0 else "deepspeed"
    auto = [name for name, is_auto in (("ZeRO stage", s.zero_stage is None), ("launcher", s.launcher == AUTO),
                                       ("per-device batch", args_micro == AUTO), ("gradient checkpointing", args_gc == AUTO)) if is_auto]
    return {"zero_stage": zero if launcher == "deepspeed" else 0, "launcher": launcher, "per_device_train_batch_size": micro,
            "gradient_checkpointing": gc, "auto": auto}


def size_training(stage: Stage, shape: ModelShape, s: Settings, *, trainer_args: dict, global_batch: int | None,
                  finetuning: str, lora: dict | None, sequences_per_row: int, reference: bool, rows: int | None,
                  rows_basis: str, epochs: float, flops_kind: str) -> Stage:
    """Memory per GPU, tokens, time and cost of one training stage; consistency problems added to ``stage``."""
    from kowen_kedro.training.spec import gradient_accumulation_steps

    gpus = s.world_size
    chosen = choose_settings(shape, s, trainer_args, global_batch, finetuning, lora, sequences_per_row, reference)
    s = replace(s, zero_stage=chosen["zero_stage"], launcher=chosen["launcher"])
    trainer_args = {**trainer_args, "per_device_train_batch_size": chosen["per_device_train_batch_size"],
                    "gradient_checkpointing": chosen["gradient_checkpointing"]}
    micro = chosen["per_device_train_batch_size"]
    seq = int(trainer_args.get("max_length", 1024))
    gc = chosen["gradient_checkpointing"]
    if chosen["auto"]:
        stage.basis.append("chosen for the GPU (auto): " + ", ".join(chosen["auto"]))
    trainable = trainable_params(shape, finetuning, lora)
    held_reference = holds_reference(reference, trainer_args, finetuning)
    stage.params, stage.gpus, stage.micro_batch, stage.seq_len = shape.params, gpus, micro, seq
    stage.zero_stage, stage.gradient_checkpointing, stage.finetuning, stage.trainable_params = s.zero_stage, gc, finetuning, trainable
    stage.launcher = s.launcher
    states, activations, ref = training_memory(shape, s, s.zero_stage, micro, seq, gc, finetuning, lora, sequences_per_row,
                                               held_reference)
    stage.model_states_gib, stage.activations_gib = states / GIB, activations / GIB
    stage.reference_gib = ref / GIB
    stage.memory_gib_per_gpu = (states + activations + ref) / GIB
    stage.gpu_memory_gib = s.gpu.memory_gib
    stage.fits = stage.memory_gib_per_gpu <= s.gpu.memory_gib - s.headroom_gib
    stage.basis.append(f"memory: DeepSpeed ZeRO-{s.zero_stage} estimator + activations of {micro} x {sequences_per_row} x {seq} tokens"
                       f"{' (gradient checkpointing)' if gc else ''}{' + reference model' if held_reference else ''}")
    if seq > shape.positions:
        stage.problems.append(f"max_length {seq} is over the model's {shape.positions} positions: set trainer_args.max_length <= {shape.positions}")
    if global_batch:
        try:
            gradient_accumulation_steps(int(global_batch), micro, gpus)
        except ValueError as exc:
            stage.problems.append(f"global batch inconsistent: {exc}")
    if s.launcher != "deepspeed" and gpus > 1:
        stage.problems.append(f"launcher {s.launcher!r} runs one process, world_size is {gpus}: use launcher deepspeed")
    if not stage.fits:
        stage.problems.append(f"needs {stage.memory_gib_per_gpu:.1f} GiB per GPU, the {s.gpu.name} has {s.gpu.memory_gib:.0f} GiB "
                              f"(less {s.headroom_gib:.0f} GiB headroom); " + fixes(stage, shape, s, trainer_args, finetuning, lora,
                                                                                      sequences_per_row, held_reference))
    fill_tokens = max(1, int(seq * s.sequence_fill))
    if rows is not None:
        stage.rows = rows
        stage.tokens = int(rows * epochs * sequences_per_row * fill_tokens)
        stage.basis.append(f"rows: {rows_basis}; tokens: {sequences_per_row} x {fill_tokens} per row (preflight.sequence_fill "
                           f"{s.sequence_fill} of max_length) x {epochs:g} epochs")
        stage.tflop = stage.tokens * training_flops_per_token(shape, fill_tokens, trainable, reference) / 1e12
        eff = measured_efficiency(flops_kind, shape.params)
        recompute = 4 / 3 if gc else 1.0  # checkpointing runs each forward twice: 8N instead of 6N per token, not in MFU
        seconds = recompute * stage.tflop * 1e12 / (gpus * s.gpu.peak_tflops * 1e12 * eff)
        _time(stage, seconds, gpus, s)
        stage.basis.append(f"time: {eff:.1%} of the {s.gpu.name}'s {s.gpu.peak_tflops:.0f} TFLOP/s (measured {flops_kind} MFU)"
                           + (", x 4/3 for the recomputed forward" if gc else ""))
    return stage


def fixes(stage: Stage, shape: ModelShape, s: Settings, trainer_args: dict, finetuning: str, lora: dict | None,
          sequences_per_row: int, held_reference: bool) -> str:
    """What would make a training stage fit: each change alone, checked with the same estimates."""
    budget = (s.gpu.memory_gib - s.headroom_gib) * GIB
    options = []

    def need(settings: Settings, args: dict, tuning: str = finetuning) -> float:
        return training_bytes(shape, settings, settings.zero_stage, int(args["per_device_train_batch_size"]), int(args.get("max_length", 1024)),
                              bool(args["gradient_checkpointing"]), tuning, lora, sequences_per_row, held_reference and tuning != "lora")

    if s.zero_stage < 3 and s.launcher == "deepspeed" and need(replace(s, zero_stage=3), trainer_args) <= budget:
        options.append("ZeRO-3 (training.deepspeed.zero_stage: 3)")
    if not trainer_args["gradient_checkpointing"] and need(s, {**trainer_args, "gradient_checkpointing": True}) <= budget:
        options.append("gradient checkpointing (trainer_args.gradient_checkpointing: true)")
    for gpus in (2, 4, 8, 16, 32, 64):
        if gpus > s.world_size and need(replace(s, world_size=gpus, zero_stage=3 if s.zero_stage == 0 else s.zero_stage,
                                                 launcher="deepspeed"), trainer_args) <= budget:
            options.append(f"{gpus} GPUs (training.world_size: {gpus}{', ZeRO-3' if s.zero_stage == 0 else ''})")
            break
    if not s.offload_optimizer and need(replace(s, offload_optimizer=True, zero_stage=max(s.zero_stage, 2)), trainer_args) <= budget:
        options.append("optimizer offload (training.deepspeed.offload_optimizer: cpu" + (", zero_stage: 2)" if s.zero_stage < 2 else ")"))
    if finetuning != "lora" and need(s, trainer_args, "lora") <= budget:
        options.append("LoRA (finetuning: lora)")
    micro = int(trainer_args.get("per_device_train_batch_size", 8))
    if micro > 1 and need(s, {**trainer_args, "per_device_train_batch_size": 1}) <= budget:
        options.append("a micro-batch of 1 with more gradient accumulation (per_device_train_batch_size: 1)")
    seq = int(trainer_args.get("max_length", 1024))
    shorter = next((n for n in (seq // 2, seq // 4, seq // 8) if n >= 128 and need(s, {**trainer_args, "max_length": n}) <= budget), None)
    if shorter:
        options.append(f"a shorter sequence (max_length: {shorter})")
    return "would fit with " + "; or ".join(options) if options else "no single change makes it fit: combine more GPUs with offload or LoRA"


def _time(stage: Stage, seconds: float, gpus: int, s: Settings) -> None:
    stage.hours = seconds / 3600
    stage.gpu_hours = stage.hours * gpus
    stage.cost = stage.gpu_hours * s.price_per_gpu_hour


def size_generation(stage: Stage, shape: ModelShape, s: Settings, backend: dict, *, requests: int | None, rows_basis: str,
                    max_new_tokens: int) -> Stage:
    """Memory per GPU and time of a generation stage (vLLM on the configured tensor parallel degree, or the
    transformers backend on one GPU)."""
    engine = backend.get("backend", "transformers")
    tp = int(backend.get("tensor_parallel_size", 1)) if engine == "vllm" else 1
    gpus = max(s.world_size, tp)
    stage.params, stage.tensor_parallel, stage.gpus, stage.gpu_memory_gib = shape.params, tp, gpus, s.gpu.memory_gib
    weights = 2 * shape.params / tp
    stage.weights_gib = weights / GIB
    seq = s.prompt_tokens + max_new_tokens
    stage.seq_len = seq
    max_len = backend.get("max_model_len")
    if shape.heads % tp or (shape.kv_heads % tp and tp % shape.kv_heads):
        stage.problems.append(f"tensor_parallel_size {tp} does not divide the model's {shape.heads} attention heads "
                              f"({shape.kv_heads} key/value heads): use a divisor, e.g. "
                              f"{max(d for d in (1, 2, 4, 8) if shape.heads % d == 0 and (shape.kv_heads % d == 0 or d % shape.kv_heads == 0))}")
    if max_len and int(max_len) > shape.positions:
        stage.problems.append(f"max_model_len {max_len} is over the model's {shape.positions} positions")
    if engine == "vllm":
        util = float(backend.get("gpu_memory_utilization", 0.9))
        kv = s.gpu.memory_gib * util * GIB - weights - s.vllm["activation_gib"] * GIB
        stage.kv_cache_gib = max(kv, 0) / GIB
        per_seq = kv_bytes_per_token(shape, tp) * int(max_len or seq)
        stage.concurrent_sequences = int(min(s.vllm["max_num_seqs"], max(kv, 0) // per_seq))
        stage.memory_gib_per_gpu = s.gpu.memory_gib * util
        stage.fits = stage.concurrent_sequences >= 1
        stage.basis.append(f"memory: bf16 weights / TP {tp}; KV cache = {util:g} x {s.gpu.memory_gib:.0f} GiB - weights - "
                           f"{s.vllm['activation_gib']:g} GiB activations (assumed)")
        if not stage.fits:
            need_tp = next((t for t in (2, 4, 8, 16) if t > tp and s.gpu.memory_gib * util * GIB - 2 * shape.params / t
                            - s.vllm["activation_gib"] * GIB >= kv_bytes_per_token(shape, t) * int(max_len or seq)), None)
            stage.problems.append(f"weights {stage.weights_gib:.1f} GiB per GPU leave no KV cache for one {int(max_len or seq)}-token "
                                  f"sequence on the {s.gpu.name}: " + (f"tensor_parallel_size {need_tp}" if need_tp else "a larger GPU"))
    else:
        activations = 2 * int(backend.get("batch_size", 8)) * seq * kv_bytes_per_token(shape, 1) / 2
        stage.kv_cache_gib = activations / GIB
        stage.memory_gib_per_gpu = (weights + activations) / GIB
        stage.fits = stage.memory_gib_per_gpu <= s.gpu.memory_gib - s.headroom_gib
        stage.basis.append("memory: bf16 weights + the batch's KV cache (transformers backend, one GPU)")
        if not stage.fits:
            stage.problems.append(f"needs {stage.memory_gib_per_gpu:.1f} GiB on one {s.gpu.name}: use backend vllm with tensor parallelism")
    if requests is None:
        return stage
    out_tokens = int(max_new_tokens * s.output_fill)
    stage.rows, stage.tokens = requests, requests * (s.prompt_tokens + out_tokens)
    stage.tflop = 2 * shape.params * stage.tokens / 1e12
    stage.basis.append(f"requests: {rows_basis}; tokens: {s.prompt_tokens} prompt (assumed) + {out_tokens} generated "
                       f"(preflight.output_fill {s.output_fill} of max_new_tokens)")
    if engine == "vllm":
        replicas = max(1, gpus // tp)
        batch = max(1, stage.concurrent_sequences or 1)
        step = max(weights / (s.gpu.bandwidth_tbs * 1e12 * s.vllm["bandwidth_efficiency"]),
                   2 * shape.params * batch / tp / (s.gpu.peak_tflops * 1e12 * s.vllm["compute_efficiency"]))
        decode = requests * out_tokens / (batch / step)
        prefill = requests * s.prompt_tokens * 2 * shape.params / (tp * s.gpu.peak_tflops * 1e12 * s.vllm["compute_efficiency"])
        seconds = (decode + prefill) / replicas
        stage.basis.append(f"time: vLLM roofline, {replicas} replica(s) of TP {tp}, {batch} sequences at once, decode at "
                           f"{s.vllm['bandwidth_efficiency']:.0%} of {s.gpu.bandwidth_tbs} TB/s (assumed), prefill at "
                           f"{s.vllm['compute_efficiency']:.0%} of peak (assumed)")
    else:
        eff = measured_efficiency("transformers_generation", shape.params)
        seconds = stage.tflop * 1e12 / (gpus * s.gpu.peak_tflops * 1e12 * eff)
        stage.basis.append(f"time: transformers backend at its measured {eff:.2%} of peak")
    _time(stage, seconds, gpus, s)
    return stage


def size_scoring(stage: Stage, shape: ModelShape, s: Settings, *, rows: int | None, rows_basis: str, tokens_per_row: int,
                 batch: int, bytes_per_param: int = 2) -> Stage:
    """A forward-only stage (reward scoring, a local judge's verdicts, QE): weights, the batch's activations, time."""
    gpus = s.world_size
    stage.params, stage.gpus, stage.gpu_memory_gib, stage.seq_len, stage.micro_batch = shape.params, gpus, s.gpu.memory_gib, tokens_per_row, batch
    stage.weights_gib = bytes_per_param * shape.params / GIB
    stage.activations_gib = batch * tokens_per_row * 2 * (4 * shape.hidden + shape.intermediate) / GIB
    stage.memory_gib_per_gpu = stage.weights_gib + stage.activations_gib
    stage.fits = stage.memory_gib_per_gpu <= s.gpu.memory_gib - s.headroom_gib
    stage.basis.append(f"memory: weights at {bytes_per_param} bytes + one batch of {batch} x {tokens_per_row} tokens, each GPU a replica")
    if not stage.fits:
        stage.problems.append(f"needs {stage.memory_gib_per_gpu:.1f} GiB on one {s.gpu.name}: a smaller scoring batch_size")
    if rows is not None:
        stage.rows, stage.tokens = rows, rows * tokens_per_row
        stage.tflop = 2 * shape.params * stage.tokens / 1e12
        eff = measured_efficiency("scoring", shape.params)
        _time(stage, stage.tflop * 1e12 / (gpus * s.gpu.peak_tflops * 1e12 * eff), gpus, s)
        stage.basis.append(f"rows: {rows_basis}; time: at the measured RM-scoring {eff:.1%} of peak")
    return stage


# ---------------------------------------------------------------------------------------------- the plan

#: Datasets whose rows, where a run left them at hand, size a stage that the configuration does not count.
AT_HAND = {
    "sft": "data/05_model_input/sft_dataset.jsonl",
    "reward_model": "data/05_model_input/rm_train_pairs.jsonl",
    "evaluation_prompts": "data/05_model_input/xl_alpacaeval_prompts.jsonl",
}


def rows_at_hand(project: Path, rel: str) -> int | None:
    """Lines of the newest version of the versioned JSON-lines dataset ``rel`` under ``project``, else None."""
    folder = project / rel
    if not folder.is_dir():
        return None
    versions = sorted(v / folder.name for v in folder.iterdir() if (v / folder.name).is_file())
    if not versions:
        return None
    with versions[-1].open("rb") as handle:
        return sum(1 for line in handle if line.strip())


def _rows(name: str, configured: int | None, configured_basis: str, s: Settings, project: Path,
          at_hand: str | None = None) -> tuple[int | None, str]:
    """Rows of a stage and where the number comes from: the configuration, the recipe's ``preflight.rows``, the
    data a run left at hand, else unknown (no time for that stage)."""
    if configured is not None:
        return int(configured), f"configured ({configured_basis})"
    if name in s.rows:
        return s.rows[name], f"given (preflight.rows.{name})"
    if at_hand:
        n = rows_at_hand(project, at_hand)
        if n is not None:
            return n, f"counted in {at_hand}"
    return None, f"unknown: set preflight.rows.{name}"


def _count(value: Any) -> int | None:
    """A configured size that is a number of rows (an int); a share (a float) or nothing is None."""
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


def _sum_counts(values: list[Any]) -> int | None:
    counts = [_count(v) for v in values]
    return sum(counts) if counts and all(c is not None for c in counts) else None


def _backend_kind(model: str, backend: dict) -> str | None:
    """``api`` where no GPU of the recipe's is involved (the tiny world's program, a hosted API), else None."""
    if model.startswith("world:"):
        return "the tiny world's answer program (no model)"
    if backend.get("backend") == "openai" and not backend.get("serve"):
        return f"served over the OpenAI API at {backend.get('base_url') or 'the provider'} (no GPU of this recipe)"
    return None


def plan(params: dict[str, Any], project: str | Path = ".") -> list[Stage]:
    """Every stage the parameters ``params`` (one environment's, resolved) run, each sized; a stage whose model
    has no configuration is a row with that problem. The blocks are read as their parameter groups
    (:mod:`kowen_kedro.groups`): a value the recipe leaves out is conf/base's, not a second default here."""
    from kowen_kedro import groups as g
    from kowen_kedro.loading import judge_batch_size
    from kowen_kedro.translation.qe import qe_batch_size

    project = Path(project)
    s = Settings.from_params(params)
    models, tiny = asdict(g.Models.of(params["models"])), params["tiny_models"]
    stages: list[Stage] = []

    def add(name: str, kind: str, role: str, size, head: str = "lm", **kwargs) -> None:
        ref = str(models.get(role, role))
        stage = Stage(stage=name, kind=kind, model=ref)
        try:
            shape = model_shape(ref, tiny, head)
        except PreflightError as exc:
            stage.problems.append(str(exc))
            stages.append(stage)
            return
        stages.append(size(stage, shape, s, **kwargs))

    def add_api(name: str, role_or_model: str, why: str, requests: int | None, basis: str) -> None:
        stages.append(Stage(stage=name, kind="api", model=str(models.get(role_or_model, role_or_model)), rows=requests,
                            basis=[why] + ([f"requests: {basis}"] if requests is not None else [])))

    def generation(name: str, role: str, backend: dict, requests: int | None, basis: str, max_new_tokens: int) -> None:
        why = _backend_kind(str(models.get(role, role)), backend)
        if why:
            add_api(name, role, why, requests, basis)
        else:
            add(name, "generation", role, size_generation, backend=backend, requests=requests, rows_basis=basis,
                max_new_tokens=max_new_tokens)

    # data synthesis: the teacher's single-turn answers and multi-turn conversations
    ds = g.DataSynthesis.of(params["data_synthesis"])
    sizes = asdict(ds.mixture.sizes)
    single = _sum_counts([sizes["target_single_turn"], sizes["en_single_turn"]])
    multi, turns = _count(ds.multi_turn.max_conversations), ds.multi_turn.turns
    configured = single + multi * (2 * turns - 1) if single is not None and multi is not None else None
    n, basis = _rows("teacher", configured, "mixture sizes + multi_turn.max_conversations x (2 turns - 1)", s, project)
    generation("data_synthesis.teacher", "teacher", ds.teacher.backend, n, basis, _new_tokens(ds.teacher.sampling))

    # translation and QE: every text that is translated, by every translator (best-of-k), then scored
    tq = g.TranslationQE.of(params["translation_qe"])
    xl = g.XLInstruct.of(params["xl_instruct"])
    xl_on = xl.enabled and ds.xl_instruct.max_passages > 0
    texts = (tq.prompts.max_prompts + 3 * tq.preferences.max_pairs * max(len(tq.preferences.languages), 1)
             + 2 * tq.clo.max_pairs + (ds.xl_instruct.max_passages if xl_on else 0))
    text_basis = "prompts.max_prompts + 3 x preferences.max_pairs per language + 2 x clo.max_pairs (+ XL-Instruct passages)"
    for tr in tq.translators:  # a translator's options are its class's (translation.seq2seq, translation.translators)
        role = tr["model_role"]
        name = f"translation_qe.translate.{role}"
        if tr["type"] == "seq2seq":
            add(name, "generation", role, size_generation, backend={"backend": "transformers", "batch_size": tr.get("batch_size", 32)},
                requests=texts, rows_basis=text_basis, max_new_tokens=int(tr.get("max_new_tokens", 256)))
        else:
            generation(name, role, tr.get("backend") or {}, texts, text_basis, int(tr.get("max_new_tokens", 256)))
    add("translation_qe.qe", "scoring", "qe", size_scoring, head="encoder", rows=texts * max(len(tq.translators), 1),
        rows_basis=f"configured (the texts x {len(tq.translators)} candidates)", tokens_per_row=2 * s.prompt_tokens,
        batch=qe_batch_size(tq.qe.batch_size, gpus=1), bytes_per_param=4)

    # reward models
    rm_train = g.RewardModel.of(params["reward_model"]).training
    for name in ("reward_model", "rm_transfer_source", "rm_transfer_target"):
        if name != "reward_model" and name not in params:
            continue
        n, basis = _rows("reward_model", None, "", s, project, AT_HAND["reward_model"])
        _add_training(add, f"reward_model.{name}", "reward_model_init", rm_train, n, basis, kind="reward")

    # SFT and XL-Instruct
    n, basis = _rows("sft", _sum_counts(list(sizes.values())), "data_synthesis.mixture.sizes", s, project, AT_HAND["sft"])
    _add_training(add, "sft.sft", "student", g.SFT.of(params["sft"]), n, basis, kind="sft")
    stages[-1].problems.extend(mixture_supply(ds, tq, s))
    if xl_on:
        kept = int(ds.xl_instruct.max_passages * (1 - tq.filter.drop_bottom_fraction))
        _add_training(add, "sft.xl_instruct", "student", xl, int(kept * (1 + xl.replay)),
                      f"configured (max_passages x {1 - tq.filter.drop_bottom_fraction:g} after the QE filter x (1 + replay {xl.replay:g}))",
                      kind="sft")

    # iterative DPO: sampling, reward scoring and training per enabled iteration
    pa = g.PreferenceAlignment.of(params["preference_alignment"])
    prompts, k, new = _count(pa.prompts.max_prompts), pa.sampling.k, _new_tokens(pa.sampling.params)
    iterations = sorted((key for key in params if key.startswith("dpo_iter_") and key[len("dpo_iter_"):].isdigit()),
                        key=lambda key: int(key[len("dpo_iter_"):]))
    policies = 1 + (1 if xl_on else 0)
    for it in iterations:
        dpo = g.DPOIteration.of(params[it], it).dpo
        if not dpo.enabled:
            continue
        policies += 1
        requests = prompts * k if prompts is not None else None
        generation(f"{it}.sampling", "student", {**pa.sampling.backend, **dpo.sampling_backend}, requests,
                   f"configured (max_prompts x k = {prompts} x {k})", new)
        if pa.scoring.reward == "model":
            add(f"{it}.scoring", "scoring", "reward_model_init", size_scoring, head="score", rows=requests,
                rows_basis=f"configured (max_prompts x k = {prompts} x {k})",
                tokens_per_row=min(pa.scoring.max_length, s.prompt_tokens + int(new * s.output_fill)), batch=pa.scoring.batch_size)
        _add_training(add, f"{it}.training", "student", dpo, prompts, "configured (at most one pair per prompt: max_prompts)", kind="dpo")

    # CLO and its SFT+DPO baseline on the paired data
    cl = g.CrossLingual.of(params["cross_lingual"])
    if cl.enabled:
        pairs = tq.clo.max_pairs
        train = int(pairs * (1 - cl.eval_fraction) * cl.train_fraction)
        basis = f"configured (2 rows, English and target, per clo.max_pairs {pairs} x (1 - eval_fraction) x train_fraction)"
        if cl.method == "clo":
            policies += 1
            _add_training(add, "cross_lingual.clo", "student", cl.clo, 2 * train, basis, kind="clo")
        if cl.method in ("sft_dpo", "sft") or cl.baseline_in_same_run:
            policies += 1
            _add_training(add, "cross_lingual.baseline_sft", "student", cl.baseline_sft, 2 * train, basis, kind="sft")
            if cl.method != "sft":
                _add_training(add, "cross_lingual.baseline_dpo", "student", cl.baseline_dpo, 2 * train, basis, kind="dpo")

    # evaluation: every policy answers the evaluation prompts; the judge compares each answer with a reference
    ev = g.Evaluation.of(params["evaluation"])
    n, basis = _rows("evaluation_prompts", None, "", s, project, AT_HAND["evaluation_prompts"])
    answers = n * policies if n is not None else None
    answers_basis = f"{basis} x {policies} policies"
    answer_tokens = _new_tokens(ev.generation.sampling)
    generation("evaluation.generation", "student", ev.generation.backend, answers, answers_basis, answer_tokens)
    if ev.judge.backend == "local":
        add("evaluation.judge", "scoring", "judge", size_scoring, rows=answers, rows_basis=answers_basis,
            tokens_per_row=2 * s.prompt_tokens + 2 * int(answer_tokens * s.output_fill), batch=judge_batch_size(ev.judge.batch_size, cuda=True))
    else:
        add_api("evaluation.judge", ev.judge.model or "judge",
                f"judged over the OpenAI API at {ev.judge.base_url or 'the provider'} (no GPU of this recipe)", answers, answers_basis)
    return stages


def _new_tokens(sampling: dict[str, Any]) -> int:
    """The most tokens a call site's sampling settings generate (SamplingParams' own value where unset)."""
    from kowen_kedro.llm.types import SamplingParams

    return SamplingParams.from_dict(sampling).max_new_tokens


def mixture_supply(ds: Any, tq: Any, s: Settings) -> list[str]:
    """The SFT mixture's parts that ask for more rows than the run makes (``ds``, ``tq``: the ``data_synthesis`` and
    ``translation_qe`` groups): the target-language single-turn part draws on the translated prompts
    (``translation_qe.prompts.max_prompts``, less the QE filter's bottom share) and the native target-language
    prompts of the ingested data (``preflight.rows.native_target_prompts``, 0 unless given); the multi-turn part
    on ``data_synthesis.multi_turn.max_conversations``. Caught here, a shortfall would otherwise stop the run at
    the mixture, after the translation and the teacher's hours."""
    problems = []
    sizes = ds.mixture.sizes
    multi, asked_multi = _count(ds.multi_turn.max_conversations), _count(sizes.target_multi_turn)
    if multi is not None and asked_multi is not None and asked_multi > multi:
        problems.append(f"data_synthesis.mixture.sizes.target_multi_turn asks {asked_multi} conversations, "
                        f"data_synthesis.multi_turn.max_conversations makes at most {multi}: raise it or lower the size")
    asked, translated = _count(sizes.target_single_turn), tq.prompts.max_prompts
    if asked is not None:
        drop = tq.filter.drop_bottom_fraction
        native = s.rows.get("native_target_prompts", 0)
        supply = int(translated * (1 - drop)) + native
        if asked > supply:
            need = math.ceil((asked - native) / (1 - drop)) if drop < 1 else None
            problems.append(
                f"data_synthesis.mixture.sizes.target_single_turn asks {asked} target-language prompts, the run makes at most "
                f"{supply}: translation_qe.prompts.max_prompts {translated} translated, {1 - drop:g} of them kept by the QE "
                f"filter, + {native} native (preflight.rows.native_target_prompts): "
                + (f"raise translation_qe.prompts.max_prompts to {need}, " if need else "")
                + "count the native prompts in preflight.rows.native_target_prompts, or lower the size")
    return problems


#: What a kind of training stage does per row: (sequences it forwards, whether a frozen reference model runs
#: beside it, whose FLOPs it costs, the model's head). A reward model reads chosen and rejected as an SFT step
#: reads one answer each; DPO and CLO forward both through the policy and the reference.
TRAINING_SHAPE = {"sft": (1, False, "sft", "lm"), "reward": (2, False, "sft", "score"),
                  "dpo": (2, True, "dpo", "lm"), "clo": (2, True, "dpo", "lm")}


def _add_training(add, name: str, role: str, cfg: Any, rows: int | None, basis: str, *, kind: str) -> None:
    """A training stage of group ``cfg`` (a :class:`~kowen_kedro.groups.Stage`) that trains with the TRL config of
    ``kind`` (its shape: :data:`TRAINING_SHAPE`); its epochs are its trainer arguments', else that config's default."""
    sequences_per_row, reference, flops_kind, head = TRAINING_SHAPE[kind]
    args = dict(cfg.trainer_args)
    add(name, "training", role, size_training, head=head, trainer_args=args, global_batch=cfg.global_batch_size,
        finetuning=cfg.finetuning, lora=cfg.lora, sequences_per_row=sequences_per_row, reference=reference, rows=rows,
        rows_basis=basis, epochs=float(args.get("num_train_epochs", _trl_default(kind, "num_train_epochs"))), flops_kind=flops_kind)


def _trl_default(kind: str, name: str) -> Any:
    """The default of field ``name`` of the TRL config class a ``kind`` of stage trains with."""
    from kowen_kedro.training.spec import config_class

    return config_class(kind).__dataclass_fields__[name].default


# ---------------------------------------------------------------------------------------------- output

#: The columns of the console table, with their headers.
COLUMNS = [("stage", "stage"), ("model", "model"), ("params", "params"), ("gpus", "GPUs"), ("layout", "layout: ZeRO x micro-batch / TP"),
           ("memory", "GiB/GPU: states+act / weights+KV"), ("memory_gib_per_gpu", "GiB/GPU"), ("fits", "fits"),
           ("tokens", "tokens"), ("hours", "hours"), ("gpu_hours", "GPU-h"), ("cost", "cost")]


def _human(n: float | None) -> str:
    if n is None:
        return "-"
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f}{unit}"
    return f"{n:.0f}"


def row_cells(stage: Stage) -> dict[str, str]:
    """A stage's console cells."""
    if stage.kind == "training":
        layout = (f"ZeRO-{stage.zero_stage}" if stage.launcher == "deepspeed" else "no DeepSpeed") + (
            f" x{stage.micro_batch}" if stage.micro_batch else "") + (" +GC" if stage.gradient_checkpointing else "")
        memory = f"{stage.model_states_gib:.1f} + {stage.activations_gib:.1f}" + (
            f" + ref {stage.reference_gib:.1f}" if stage.reference_gib else "") if stage.model_states_gib is not None else "-"
    elif stage.kind in ("generation", "scoring"):
        layout = f"TP {stage.tensor_parallel}" if stage.tensor_parallel else "replica"
        memory = (f"{stage.weights_gib:.1f} + {stage.kv_cache_gib:.1f} KV" + (f" ({stage.concurrent_sequences} seqs)" if stage.concurrent_sequences is not None else "")
                  if stage.kv_cache_gib is not None else f"{stage.weights_gib:.1f} + {stage.activations_gib:.1f}") if stage.weights_gib is not None else "-"
    else:
        layout, memory = "-", "-"
    return {
        "stage": stage.stage, "model": stage.model if len(stage.model) <= 40 else "..." + stage.model[-37:],
        "params": _human(stage.params), "gpus": str(stage.gpus or "-"), "layout": layout, "memory": memory,
        "memory_gib_per_gpu": f"{stage.memory_gib_per_gpu:.1f}" if stage.memory_gib_per_gpu is not None else "-",
        "fits": {True: "yes", False: "NO", None: "-"}[stage.fits] if not (stage.problems and stage.fits) else "yes*",
        "tokens": _human(stage.tokens), "hours": f"{stage.hours:.1f}" if stage.hours is not None else "-", "gpu_hours": f"{stage.gpu_hours:.1f}" if stage.gpu_hours is not None else "-",
        "cost": f"{stage.cost:,.0f}" if stage.cost is not None else "-",
    }


def totals(stages: list[Stage]) -> dict[str, float]:
    """The run's sums over its stages (one stage after another)."""
    return {"tokens": sum(st.tokens or 0 for st in stages), "hours": sum(st.hours or 0 for st in stages),
            "gpu_hours": sum(st.gpu_hours or 0 for st in stages), "cost": sum(st.cost or 0 for st in stages),
            "stages_not_fitting": sum(1 for st in stages if st.problems)}


def table(stages: list[Stage], env: str, settings: Settings) -> str:
    """The markdown table a user reads: one row per stage, totals, then each stage's problems and bases."""
    rows = [row_cells(st) for st in stages]
    lines = [f"Preflight of `{env}` on {settings.world_size} x {settings.gpu.name} ({settings.gpu.memory_gib:g} GiB, "
             f"{settings.gpu.peak_tflops:g} bf16 TFLOP/s) at {settings.price_per_gpu_hour:g} per GPU-hour", "",
             "| " + " | ".join(h for _, h in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(r[k] for k, _ in COLUMNS) + " |" for r in rows]
    total = totals(stages)
    lines += [f"| **total** (one stage after another) | | | | | | | | {_human(total['tokens'])} | {total['hours']:.1f} | "
              f"{total['gpu_hours']:.1f} | {total['cost']:,.0f} |", ""]
    problems = [(st.stage, p) for st in stages for p in st.problems]
    if problems:
        lines += ["Problems:", ""] + [f"- **{name}**: {p}" for name, p in problems] + [""]
    lines += ["Where each figure comes from:", ""] + [f"- {st.stage}: " + "; ".join(st.basis) for st in stages if st.basis]
    return "\n".join(lines) + "\n"


def as_json(stages: list[Stage]) -> str:
    return json.dumps([st.as_dict() for st in stages], indent=2)
