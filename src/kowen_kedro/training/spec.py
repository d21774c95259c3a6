"""Launch specs: everything a training child process needs, written to JSON before the launch.

One spec shape serves every training in the project (SFT, reward model, DPO, CLO); ``kind`` picks the
trainer in :mod:`kowen_kedro.training.entry`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

Kind = Literal["sft", "reward", "dpo", "clo"]


def config_class(kind: Kind) -> type:
    """The TRL config class a ``kind`` of stage trains with (CLO's subclasses DPO's)."""
    if kind == "clo":
        from kowen_kedro.preference.clo_trainer import CLOConfig

        return CLOConfig
    from trl import DPOConfig, RewardConfig, SFTConfig

    return {"sft": SFTConfig, "reward": RewardConfig, "dpo": DPOConfig}[kind]


COMPLETE_MARKER = "_COMPLETE.json"
FINAL_DIR = "final"
NOT_FINGERPRINTED = frozenset(
    {"output_dir", "train_file", "eval_file", "hostfile", "keep_checkpoints", "mlflow_run_id", "mlflow_tracking_uri",
     "mlflow_child_run_id"}
)


def write_completion(output_dir: str | Path, record: dict[str, Any]) -> None:
    """Write a launch's completion record (``<output_dir>/_COMPLETE.json``) through a temporary file: a reader
    finds the whole record or none."""
    marker = Path(output_dir) / COMPLETE_MARKER
    tmp = marker.with_name(marker.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str))
    tmp.replace(marker)


@dataclass
class LaunchSpec:
    """One training run, as the child process sees it."""

    kind: Kind
    model: str
    train_file: str
    output_dir: str
    eval_file: str | None = None
    ref_model: str | None = None
    # TRL config fields (SFTConfig / RewardConfig / DPOConfig); unknown names fail in the child.
    trainer_args: dict[str, Any] = field(default_factory=dict)
    global_batch_size: int | None = None
    finetuning: Literal["full", "lora", "attention_only"] = "full"
    lora: dict[str, Any] = field(default_factory=dict)
    deepspeed: dict[str, Any] | None = None
    world_size: int = 1  # processes in all (GPUs in production)
    num_nodes: int = 1
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"  # auto: bf16 where the GPU has it, else fp32
    # Fused layer kernels and the attention implementation, chosen in the child (kowen_kedro.training.kernels).
    kernels: Literal["auto", "none", "liger", "compile"] = "none"
    attn_implementation: str | None = None  # None: the model's default (SDPA); auto: FlashAttention 2 where installed
    # TrainerCallbacks to add, as "package.module:Class" or {"class": "...", "kwargs": {...}}.
    callbacks: list[Any] = field(default_factory=list)
    mlflow_prefix: str = "train"
    seed: int = 0
    # Where the run happens and is tracked, not what it computes: left out of the fingerprint.
    hostfile: str | None = None
    keep_checkpoints: bool = False
    mlflow_run_id: str | None = None
    mlflow_tracking_uri: str | None = None
    mlflow_child_run_id: str | None = None  # the trained model's child run (kowen_kedro.tracking)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "LaunchSpec":
        return cls(**json.loads(text))

    def fingerprint(self) -> str:
        """Hash of the spec plus the content of its data files: equal fingerprints train the same model.

        Paths (output folder, data file names, model folders) are left out: data files and local
        model folders count by content. Where the run executes and is tracked (hostfile, MLflow run,
        checkpoint retention) is left out too, so a resumed run under a new MLflow run is the same run.
        """
        from kowen_kedro.model_identity import model_identity

        fields = {k: v for k, v in asdict(self).items() if k not in NOT_FINGERPRINTED}
        fields["model"] = model_identity(self.model)  # content, not the (versioned) path
        fields["ref_model"] = model_identity(self.ref_model) if self.ref_model else None
        h = hashlib.sha256(json.dumps(fields, sort_keys=True).encode())
        for path in (self.train_file, self.eval_file):
            if path and Path(path).exists():
                h.update(Path(path).read_bytes())
        return h.hexdigest()[:16]

    @property
    def zero_stage(self) -> int | None:
        """The ZeRO stage of the DeepSpeed config (None: no DeepSpeed)."""
        return (self.deepspeed or {}).get("zero_optimization", {}).get("stage") if self.deepspeed else None

    @property
    def final_dir(self) -> Path:
        return Path(self.output_dir) / FINAL_DIR

    @property
    def processes_per_node(self) -> int:
        """``world_size / num_nodes``; raises when that is not a whole number or a multi-node run has no hostfile."""
        if self.world_size < 1 or self.num_nodes < 1 or self.world_size % self.num_nodes:
            raise ValueError(f"world_size={self.world_size} is not a positive multiple of num_nodes={self.num_nodes}")
        if self.num_nodes > 1 and not self.hostfile:
            raise ValueError(f"num_nodes={self.num_nodes} needs a hostfile (training.hostfile) listing the nodes")
        return self.world_size // self.num_nodes


def gradient_accumulation_steps(global_batch_size: int, per_device_batch_size: int, world_size: int) -> int:
    """Grad-acc steps so that per-device batch x grad-acc x world size equals the global batch.

    Raises:
        ValueError: when the global batch is not a multiple of per-device batch x world size.
    """
    per_step = per_device_batch_size * world_size
    if global_batch_size <= 0 or per_step <= 0 or global_batch_size % per_step:
        raise ValueError(
            f"global_batch_size={global_batch_size} is not a positive multiple of "
            f"per_device_train_batch_size x world_size = {per_device_batch_size} x {world_size}"
        )
    return global_batch_size // per_step


def zero_config(stage: int = 3, offload_optimizer: str = "none", offload_param: str = "none") -> dict:
    """A DeepSpeed ZeRO config whose batch/precision fields are filled by the HF Trainer ("auto")."""
    zero: dict[str, Any] = {
        "stage": stage,
        "overlap_comm": False,
        "contiguous_gradients": True,
        # the gradient bucket sized by transformers from the model (hidden size squared), not DeepSpeed's
        # default of 5e8 elements: a 2 GB buffer allocated at every launch even for a 64-wide model
        "reduce_bucket_size": "auto",
    }
    if stage == 3:
        zero.update(
            {
                "stage3_gather_16bit_weights_on_model_save": True,
                "offload_param": {"device": offload_param},
            }
        )
    zero["offload_optimizer"] = {"device": offload_optimizer}
    return {
        "zero_optimization": zero,
        "bf16": {"enabled": "auto"},
        "fp16": {"enabled": "auto"},
        "train_batch_size": "auto",
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 1000000,
        "wall_clock_breakdown": False,
    }
