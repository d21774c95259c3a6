"""Node of sft: TRL SFT (loss on assistant tokens) launched through DeepSpeed."""

from __future__ import annotations

import logging

import pandas as pd

from kowen_kedro.data.prompts import select_languages
from kowen_kedro.runtime import registry_model
from kowen_kedro.training.stages import train_stage

logger = logging.getLogger(__name__)


def train_sft_node(
    sft_dataset: pd.DataFrame, registry: dict, params: dict, training: dict, source_language: str, target_language: str
) -> str:
    """Fine-tune the student on the SFT mixture (or the languages ``params.languages`` names)."""
    stage_params = {k: v for k, v in params.items() if k != "languages"}
    data = select_languages(sft_dataset, params.get("languages", "all"), source_language, target_language)
    logger.info("SFT on %d of %d rows (languages: %s)", len(data), len(sft_dataset), params.get("languages", "all"))
    records = [{"messages": m} for m in data["messages"]]
    model = registry_model(registry, "student")
    return train_stage("sft", "sft", model, records, stage_params, training)["final_dir"]
