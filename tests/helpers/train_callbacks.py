"""TrainerCallbacks that tests put into launch specs (``callbacks: ["tests.helpers.train_callbacks:..."]``)."""

from __future__ import annotations

import os
import time

from transformers import TrainerCallback


class SlowDown(TrainerCallback):
    """Sleep after every optimizer step, so a test can kill the run mid-training."""

    def __init__(self, seconds: float = 0.5):
        self.seconds = seconds

    def on_step_end(self, args, state, control, **kwargs):
        time.sleep(self.seconds)


class InjectNaN(TrainerCallback):
    """From optimizer step ``at_step`` on, rank ``rank``'s input embeddings output NaN (so does its loss)."""

    def __init__(self, at_step: int, rank: int = 0):
        self.at_step, self.rank, self.handle = at_step, rank, None

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if state.global_step == self.at_step and self.handle is None and int(os.environ.get("RANK", "0")) == self.rank:
            self.handle = model.get_input_embeddings().register_forward_hook(lambda m, i, out: out * float("nan"))
