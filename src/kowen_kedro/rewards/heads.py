"""Reward-model score head initialisation (RM-transfer paper: N(0, 1/sqrt(d_model + 1)))."""

from __future__ import annotations

import math


def score_head_std(hidden_size: int) -> float:
    """Standard deviation of the score-head initialisation: 1 / sqrt(d_model + 1)."""
    return 1.0 / math.sqrt(hidden_size + 1)


def init_score_head(model, seed: int = 0) -> None:
    """Draw ``model.score.weight`` from N(0, 1/sqrt(d_model+1)) with a seeded generator.

    Under ZeRO-3 the weight is partitioned: it is gathered, set on rank 0 and re-partitioned.
    """
    import torch

    w = model.score.weight
    if hasattr(w, "ds_id"):  # a ZeRO-3 partitioned parameter
        import deepspeed

        ctx = deepspeed.zero.GatheredParameters([w], modifier_rank=0)
    else:
        import contextlib

        ctx = contextlib.nullcontext()
    with ctx, torch.no_grad():
        gen = torch.Generator().manual_seed(seed)
        w.copy_((torch.randn(tuple(w.shape), generator=gen) * score_head_std(model.config.hidden_size)).to(w.dtype))
