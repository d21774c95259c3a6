"""Node of sft: TRL SFT (loss on assistant tokens) launched through DeepSpeed."""

from __future__ import annotations

import pandas as pd

from kowen_kedro.runtime import registry_model
from kowen_kedro.training.stages import train_stage


def train_sft_node(sft_dataset: pd.DataFrame, registry: dict, params: dict, training: dict) -> str:
    """Fine-tune the student on the SFT mixture; returns the saved model folder."""
    records = [{"messages": m} for m in sft_dataset["messages"]]
    return train_stage("sft", "sft", registry_model(registry, "student"), records, params, training)["final_dir"]
