"""Nodes of translation_qe: sentence-level translation keeping formatting, COMET QE, bottom-fraction filter."""

from __future__ import annotations

import pandas as pd

from kowen_kedro.runtime import as_mlflow_metrics, cached_generator, call_cache, registry_model
from kowen_kedro.translation.qe import CometQE, filter_bottom_fraction
from kowen_kedro.translation.segment import translate_preserving_format
from kowen_kedro.translation.translators import LLMTranslator, language_name


def translate_prompts_node(
    prompts: pd.DataFrame, registry: dict, params: dict, source_language: str, target_language: str, llm: dict
) -> pd.DataFrame:
    """Translate the single-turn source-language prompts sentence by sentence."""
    language_name(source_language), language_name(target_language)  # fail before any work on a bad code
    pool = prompts[(prompts["language"] == source_language) & (prompts["n_turns"] == 1)]
    pool = pool.head(int(params["max_prompts"]))
    translator = LLMTranslator(
        cached_generator(registry_model(registry, "translator"), params["backend"], llm),
        max_new_tokens=int(params["max_new_tokens"]),
    )
    out = translate_preserving_format(
        list(pool["prompt"]), lambda sents: translator.translate(sents, source_language, target_language)
    )
    return pd.DataFrame(
        {
            "prompt_id": [f"{pid}-{target_language}" for pid in pool["prompt_id"]],
            "source_prompt_id": list(pool["prompt_id"]),
            "source_language": source_language,
            "source_prompt": list(pool["prompt"]),
            "language": target_language,
            "prompt": out,
        }
    )


def score_translations_node(translations: pd.DataFrame, registry: dict, params: dict, llm: dict) -> pd.DataFrame:
    """Reference-free COMET QE (src, mt) per translation."""
    qe = CometQE(registry_model(registry, "qe"), batch_size=int(params["batch_size"]), gpus=int(params["gpus"]), cache=call_cache(llm))
    scores = qe.score(list(translations["source_prompt"]), list(translations["prompt"])) if len(translations) else []
    return translations.assign(qe_score=scores)


def filter_translations_node(scored: pd.DataFrame, params: dict) -> tuple[pd.DataFrame, dict]:
    """Drop empty translations and the bottom fraction by QE (XL-Instruct: 20%)."""
    non_empty = scored[scored["prompt"].str.strip() != ""]
    kept, dropped = filter_bottom_fraction(non_empty, "qe_score", float(params["drop_bottom_fraction"]))
    metrics = {
        "qe.mean": float(scored["qe_score"].mean()) if len(scored) else float("nan"),
        "qe.kept": len(kept),
        "qe.dropped_low_qe": len(dropped),
        "qe.dropped_empty": len(scored) - len(non_empty),
    }
    return kept.reset_index(drop=True), as_mlflow_metrics(metrics)
