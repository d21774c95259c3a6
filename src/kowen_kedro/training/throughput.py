"""Training throughput: model FLOPs per token, MFU, and a step timer callback.

FLOPs follow the PaLM / Megatron convention (Chowdhery et al. 2022, appendix B): a training token
costs ``6 N + 12 L h S`` FLOPs, where N counts the weights used in matrix multiplies per token
(attention and MLP projections of every layer plus the LM head; the embedding lookup is free) and
``12 L h S`` is the attention score and value products over a sequence of S tokens (forward +
backward, causal masking not discounted). Forward only is a third of that. MFU = achieved model
FLOP/s divided by the hardware's dense peak; recomputation (gradient checkpointing) is work the
hardware does but MFU does not count.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

#: Dense bf16 peak TFLOP/s by device-name fragment (vendor data sheets, no sparsity).
PEAK_BF16_TFLOPS = {
    "H200": 989.4,
    "H100 PCIe": 756.0,
    "H100": 989.4,  # SXM / NVL
    "A100": 312.0,
    "L40S": 362.0,
    "A10G": 125.0,
}


def matmul_params(cfg) -> int:
    """Weights used in matrix multiplies per token of a Qwen2 / Llama-style decoder (biases and norms left out)."""
    h, inter, layers = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    head = getattr(cfg, "head_dim", None) or h // cfg.num_attention_heads
    q, kv = cfg.num_attention_heads * head, cfg.num_key_value_heads * head
    per_layer = h * q + 2 * h * kv + q * h + 3 * h * inter  # q, k, v, o; gate, up, down
    return layers * per_layer + h * cfg.vocab_size  # + LM head (computed even when tied to the embedding)


def train_flops_per_token(cfg, seq_len: int) -> float:
    """Forward + backward model FLOPs of one training token: ``6 N + 12 L h S``."""
    return 6.0 * matmul_params(cfg) + 12.0 * cfg.num_hidden_layers * cfg.hidden_size * seq_len


def forward_flops_per_token(cfg, seq_len: int) -> float:
    """Forward-only model FLOPs of one token (a third of training)."""
    return train_flops_per_token(cfg, seq_len) / 3.0


def dpo_flops_per_token(cfg, seq_len: int, reference_forward: bool = True) -> float:
    """Per token of the chosen + rejected sequences: policy forward + backward, plus the reference forward."""
    return train_flops_per_token(cfg, seq_len) + (forward_flops_per_token(cfg, seq_len) if reference_forward else 0.0)


def peak_tflops(device_name: str) -> float | None:
    """Dense bf16 peak of a known GPU, else None (MFU is then not reported)."""
    for fragment, peak in PEAK_BF16_TFLOPS.items():
        if fragment.lower() in device_name.lower():
            return peak
    return None


def step_timer_callback(path: str | Path, warmup_steps: int = 3):
    """A TrainerCallback recording the wall time at the end of every optimizer step (after a device sync)
    and the peak GPU memory; rank 0 writes them to ``path`` as JSON when training ends.

    In a launch spec: ``callbacks: [{"class": "kowen_kedro.training.throughput:step_timer_callback",
    "kwargs": {"path": ".../steps.json"}}]``.
    """
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self.losses: list[tuple[int, float]] = []
            self.num_tokens: float | None = None

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:  # the mean training loss since the last log (no extra sync: logged anyway)
                self.losses.append((state.global_step, float(logs["loss"])))
            if logs and "num_tokens" in logs:  # TRL's count of the tokens trained on so far (padding left out)
                self.num_tokens = float(logs["num_tokens"])

        @staticmethod
        def _sync() -> None:
            import torch

            if torch.cuda.is_available():
                torch.cuda.synchronize()

        def on_train_begin(self, args, state, control, **kwargs):
            self._sync()
            self.times = [time.perf_counter()]

        def on_step_end(self, args, state, control, **kwargs):
            self._sync()
            self.times.append(time.perf_counter())

        def on_train_end(self, args, state, control, **kwargs):
            import torch

            if not state.is_world_process_zero:
                return
            steps = len(self.times) - 1
            timed = self.times[warmup_steps:] if steps > warmup_steps else self.times
            record = {
                "steps": steps,
                "warmup_steps": warmup_steps if steps > warmup_steps else 0,
                "seconds_per_step": (timed[-1] - timed[0]) / max(1, len(timed) - 1),
                "step_times": [b - a for a, b in zip(self.times, self.times[1:])],
                "max_memory_allocated_gib": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None,
                "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
                "losses": self.losses,
                "num_tokens": self.num_tokens,
            }
            Path(path).write_text(json.dumps(record, indent=2))

    return StepTimer()

