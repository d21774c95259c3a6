"""Nodes of data_synthesis: prompt ingest, decontamination, teacher completions (single/multi-turn),
language-fidelity filter, XL-Instruct reverse instructions, SFT mixture."""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

import pandas as pd

from kowen_kedro.data.decontaminate import decontaminate
from kowen_kedro.data.prompts import as_frame, build_mixture, ingest_prompts
from kowen_kedro.data.synthesis import filter_language, multi_turn_conversations, single_turn_completions
from kowen_kedro.data.validation import validate_records
from kowen_kedro.data.xl_instruct import reverse_instructions
from kowen_kedro.groups import Decontamination, Ingest, Mixture, MultiTurn, Teacher, XLInstructSynthesis
from kowen_kedro.runtime import as_mlflow_metrics, cached_generator, registry_model

logger = logging.getLogger(__name__)


def ingest_prompts_node(raw: Any, params: dict, languages: list[str]) -> tuple[pd.DataFrame, dict]:
    """Validated, de-duplicated, language-tagged first user turns (LMSYS conversations, plain prompt
    lists, local JSONL/Parquet or a HF dataset)."""
    from kowen_kedro.data.prompts import as_frame

    ingest = Ingest.of(params)
    frame = as_frame(raw, split=ingest.split)
    prompts, report = ingest_prompts(frame, max_chars=ingest.max_chars, languages=languages, drop_redacted=ingest.drop_redacted)
    return prompts, as_mlflow_metrics(report)


def decontaminate_node(prompts: pd.DataFrame, eval_prompts: pd.DataFrame, params: dict) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Remove prompts whose word n-grams overlap the evaluation prompts (reported, kept for inspection)."""
    eval_prompts = as_frame(eval_prompts)  # a local file or a HF dataset (the real AlpacaEval)
    validate_records(eval_prompts, {"instruction": str})
    decon = Decontamination.of(params)
    kept, removed = decontaminate(prompts, eval_prompts["instruction"], n=decon.ngram, threshold=decon.threshold)
    logger.info("decontamination removed %d of %d prompts", len(removed), len(prompts))
    return kept.reset_index(drop=True), removed.reset_index(drop=True), as_mlflow_metrics({"removed": len(removed), "kept": len(kept)})


def target_prompt_pool_node(prompts: pd.DataFrame, translated_prompts: pd.DataFrame, target_language: str) -> pd.DataFrame:
    """Target-language prompts: native ones plus English prompts translated by translation_qe."""
    native = prompts[prompts["language"] == target_language][["prompt_id", "language", "prompt"]].assign(origin="native")
    translated = translated_prompts[["prompt_id", "language", "prompt"]].assign(origin="translated")
    return pd.concat([native, translated], ignore_index=True)


def _finish(rows: pd.DataFrame, gen, languages: list[str], fidelity_filter: bool) -> tuple[pd.DataFrame, dict]:
    """Language fidelity (rows with an assistant turn not in the row's language: counted always,
    dropped with the filter on) + the generation statistics for MLflow."""
    gen.close()
    metrics = gen.stats.as_dict("generation.")
    kept, wrong = filter_language(rows, languages)
    metrics["wrong_language"] = len(wrong)
    metrics["dropped_wrong_language"] = len(wrong) if fidelity_filter else 0
    if fidelity_filter:
        rows = kept
    metrics["rows"] = len(rows)
    metrics["truncated_rows"] = int((rows["finish_reason"] == "length").sum()) if len(rows) else 0
    return rows, as_mlflow_metrics(metrics)


def single_turn_node(
    prompts: pd.DataFrame, registry: dict, language: str, teacher: dict, llm: dict, languages: list[str]
) -> tuple[pd.DataFrame, dict]:
    """Teacher answers to single-turn prompts of ``language`` (chat format with provenance)."""
    teacher = Teacher.of(teacher)
    pool = prompts[prompts["language"] == language]
    gen = cached_generator(registry_model(registry, "teacher"), teacher.backend, llm)
    rows = single_turn_completions(pool, gen, teacher.sampling, teacher_name=registry_model(registry, "teacher"))
    return _finish(rows, gen, languages, teacher.language_filter)


def multi_turn_node(
    prompts: pd.DataFrame, registry: dict, params: dict, language: str, teacher: dict, llm: dict, languages: list[str]
) -> tuple[pd.DataFrame, dict]:
    """Multi-turn conversations in ``language`` (the target language): the teacher writes each next user
    turn, then answers it."""
    multi, teacher = MultiTurn.of(params), Teacher.of(teacher)
    pool = prompts.head(multi.max_conversations)
    gen = cached_generator(registry_model(registry, "teacher"), teacher.backend, llm)
    rows = multi_turn_conversations(
        pool, gen, teacher.sampling, turns=multi.turns, language=language, teacher_name=registry_model(registry, "teacher"),
    )
    return _finish(rows, gen, languages, teacher.language_filter)


def xl_instruct_node(passages: pd.DataFrame, registry: dict, params: dict, teacher: dict, llm: dict) -> tuple[pd.DataFrame, dict]:
    """XL-Instruct stages 1-2: reverse instruction per seed passage, then refinement."""
    validate_records(passages, {"passage_id": str, "text": str})
    xl, teacher = XLInstructSynthesis.of(params), Teacher.of(teacher)
    pool = passages.head(xl.max_passages)
    gen = cached_generator(registry_model(registry, "teacher"), teacher.backend, llm)
    rows, report = reverse_instructions(pool, gen, xl.sampling or teacher.sampling, refine=xl.refine)
    gen.close()
    return rows, as_mlflow_metrics({**report, **gen.stats.as_dict("generation.")})


def build_sft_mixture_node(
    en_single_turn: pd.DataFrame, target_single_turn: pd.DataFrame, target_multi_turn: pd.DataFrame, params: dict
) -> tuple[pd.DataFrame, dict]:
    """Compose the SFT set from parts by size or ratio (Kowen Table 3 mixtures are parameter sets)."""
    parts = {"en_single_turn": en_single_turn, "target_single_turn": target_single_turn, "target_multi_turn": target_multi_turn}
    mixture = Mixture.of(params)
    mixed, report = build_mixture(parts, asdict(mixture.sizes), seed=mixture.seed)
    return mixed, as_mlflow_metrics({f"mixture.{k}": v for k, v in report.items()})
