"""Nodes of data_synthesis: prompt ingest, teacher completions (single/multi-turn), SFT mixture."""

from __future__ import annotations

import logging

import pandas as pd

from kowen_kedro.data.prompts import build_mixture, ingest_prompts
from kowen_kedro.data.synthesis import multi_turn_conversations, single_turn_completions
from kowen_kedro.runtime import as_mlflow_metrics, cached_generator, registry_model

logger = logging.getLogger(__name__)


def ingest_prompts_node(raw: pd.DataFrame, params: dict, languages: list[str]) -> tuple[pd.DataFrame, dict]:
    """Validated, de-duplicated, language-tagged first user turns."""
    prompts, report = ingest_prompts(raw, max_chars=int(params["max_chars"]), languages=languages)
    return prompts, as_mlflow_metrics(report)


def korean_prompt_pool_node(prompts: pd.DataFrame, translated_prompts: pd.DataFrame, target_language: str) -> pd.DataFrame:
    """Target-language prompts: native ones plus English prompts translated by translation_qe."""
    native = prompts[prompts["language"] == target_language][["prompt_id", "language", "prompt"]].assign(origin="native")
    translated = translated_prompts[["prompt_id", "language", "prompt"]].assign(origin="translated")
    return pd.concat([native, translated], ignore_index=True)


def single_turn_node(
    prompts: pd.DataFrame, registry: dict, language: str, teacher: dict, llm: dict
) -> pd.DataFrame:
    """Teacher answers to single-turn prompts of ``language`` (chat format with provenance)."""
    pool = prompts[prompts["language"] == language]
    gen = cached_generator(registry_model(registry, "teacher"), teacher["backend"], llm)
    return single_turn_completions(pool, gen, teacher["sampling"], teacher_name=registry_model(registry, "teacher"))


def multi_turn_node(prompts: pd.DataFrame, registry: dict, params: dict, teacher: dict, llm: dict) -> pd.DataFrame:
    """Multi-turn target-language conversations: the teacher writes each next user turn, then answers it."""
    pool = prompts.head(int(params["max_conversations"]))
    gen = cached_generator(registry_model(registry, "teacher"), teacher["backend"], llm)
    return multi_turn_conversations(
        pool, gen, teacher["sampling"], turns=int(params["turns"]), language=params["language"],
        teacher_name=registry_model(registry, "teacher"),
    )


def build_sft_mixture_node(
    en_single_turn: pd.DataFrame, ko_single_turn: pd.DataFrame, ko_multi_turn: pd.DataFrame, params: dict
) -> tuple[pd.DataFrame, dict]:
    """Compose the SFT set from parts by size or ratio (Kowen Table 3 mixtures are parameter sets)."""
    parts = {"en_single_turn": en_single_turn, "ko_single_turn": ko_single_turn, "ko_multi_turn": ko_multi_turn}
    mixed, report = build_mixture(parts, dict(params["sizes"]), seed=int(params["seed"]))
    metrics = {f"mixture.{k}": v for k, v in report.items()}
    for name, part in parts.items():
        metrics[f"{name}.rows"] = len(part)
        if len(part):
            metrics[f"{name}.truncated_share"] = float((part["finish_reason"] == "length").mean())
    return mixed, as_mlflow_metrics(metrics)
