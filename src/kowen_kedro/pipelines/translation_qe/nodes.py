"""Nodes of translation_qe: best-of-k sentence-level translation with COMET QE, filtering, and the
translated datasets (prompts, preference pairs, CLO, XL-Instruct)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from kowen_kedro.data.xl_instruct import xl_instruct_rows
from kowen_kedro.groups import TranslationQE
from kowen_kedro.langid import language_name
from kowen_kedro.runtime import as_mlflow_metrics
from kowen_kedro.translation.datasets import clo_rows, keep_best
from kowen_kedro.translation.tools import TranslationTools


def _run(df: pd.DataFrame, columns: list[str], registry: dict, params: TranslationQE, llm: dict, src: str, tgt: str) -> pd.DataFrame:
    with TranslationTools(registry, params, llm) as tools:
        return tools.run(df, columns, src, tgt)


def _check_languages(*codes: str) -> None:
    for code in codes:
        language_name(code)


def translate_prompts_node(prompts: pd.DataFrame, registry: dict, params: dict, src: str, tgt: str, llm: dict) -> pd.DataFrame:
    """Single-turn source-language prompts -> target language (Kowen translates prompts before completion)."""
    _check_languages(src, tgt)
    params = TranslationQE.of(params)
    pool = prompts[(prompts["language"] == src) & (prompts["n_turns"] == 1)].head(params.prompts.max_prompts)
    out = _run(pool[["prompt_id", "prompt"]].reset_index(drop=True), ["prompt"], registry, params, llm, src, tgt)
    return pd.DataFrame({
        "prompt_id": [f"{pid}-{tgt}" for pid in out["prompt_id"]],
        "source_prompt_id": out["prompt_id"],
        "source_language": src,
        "source_prompt": out["prompt"],
        "language": tgt,
        "prompt": out[f"prompt_{tgt}"],
        "qe_score": out["qe_score"],
        "winners": out["prompt_winners"],
        "reject_reason": out["reject_reason"],
    })


def filter_translations_node(translations: pd.DataFrame, params: dict) -> tuple[pd.DataFrame, dict]:
    """Drop rejected rows and the bottom fraction by QE (XL-Instruct: 20%)."""
    kept, report = keep_best(translations, TranslationQE.of(params).filter.drop_bottom_fraction)
    return kept, as_mlflow_metrics(report)


def translate_preferences_node(pairs: pd.DataFrame, registry: dict, params: dict, src: str, llm: dict) -> tuple[pd.DataFrame, dict]:
    """Source-language preference pairs translated into each of ``preferences.languages`` (RM transfer).

    A pair with a prompt, chosen or rejected text not in the source language (a wrong-language
    rejected answer) is not translated: translating it would put both answers in the target language
    and keep the label of a preference that no longer holds. Such pairs are counted (``not_source_language``)."""
    from kowen_kedro.langid import fidelity

    params = TranslationQE.of(params)
    cfg = params.preferences
    _check_languages(src, *cfg.languages)
    pool = pairs[pairs["language"] == src].reset_index(drop=True)
    texts = [t for col in ("prompt", "chosen", "rejected") for t in pool[col]]
    in_source = pd.DataFrame(pd.Series(fidelity(texts, [src] * len(texts), [src, *cfg.languages])).to_numpy().reshape(3, -1).T)
    mask = in_source.all(axis=1).to_numpy()
    skipped = int((~mask).sum())
    pool = pool[mask].head(cfg.max_pairs).reset_index(drop=True)
    parts, metrics = [], {"not_source_language": skipped}
    with TranslationTools(registry, params, llm) as tools:  # models loaded once for all target languages
        outputs = {tgt: tools.run(pool, ["prompt", "chosen", "rejected"], src, tgt) for tgt in cfg.languages}
    for tgt, out in outputs.items():
        kept, report = keep_best(out, cfg.drop_bottom_fraction)
        parts.append(pd.DataFrame({
            "pair_id": [f"{p}-{tgt}" for p in kept["pair_id"]],
            "source_pair_id": kept["pair_id"],
            "language": tgt,
            "category": kept["category"],
            "prompt": kept[f"prompt_{tgt}"],
            "chosen": kept[f"chosen_{tgt}"],
            "rejected": kept[f"rejected_{tgt}"],
            "qe_score": kept["qe_score"],
        }))
        metrics.update({f"{tgt}.{k}": v for k, v in report.items()})
    return pd.concat(parts, ignore_index=True), as_mlflow_metrics(metrics)


def build_clo_dataset_node(en_single_turn: pd.DataFrame, registry: dict, params: dict, src: str, tgt: str, llm: dict) -> tuple[pd.DataFrame, dict]:
    """CLO's cross-lingual pairs (x_en, y_en, x_l, y_l) from English SFT pairs, QE-filtered."""
    _check_languages(src, tgt)
    params = TranslationQE.of(params)
    pool = en_single_turn.head(params.clo.max_pairs)
    base = pd.DataFrame({
        "prompt_id": pool["prompt_id"].values,
        "x_en": [m[0]["content"] for m in pool["messages"]],
        "y_en": [m[1]["content"] for m in pool["messages"]],
    })
    out = _run(base, ["x_en", "y_en"], registry, params, llm, src, tgt)
    kept, report = keep_best(out, params.filter.drop_bottom_fraction)
    return clo_rows(kept, tgt), as_mlflow_metrics(report)


def build_xl_instruct_sft_node(xl_pairs: pd.DataFrame, registry: dict, params: dict, src: str, tgt: str, llm: dict) -> tuple[pd.DataFrame, dict]:
    """XL-Instruct stage 3-4: translate the response, append a cross-lingual instruction, QE filter."""
    _check_languages(src, tgt)
    params = TranslationQE.of(params)
    out = _run(xl_pairs.reset_index(drop=True), ["response"], registry, params, llm, src, tgt)
    kept, report = keep_best(out, params.filter.drop_bottom_fraction)
    return xl_instruct_rows(kept, tgt, seed=params.xl_instruct.seed), as_mlflow_metrics(report)


def qe_histogram_node(*tables: pd.DataFrame) -> Any:
    """One figure: the QE score distribution of every translated set (MLflow artifact). Outlined
    histograms of the share of each set's rows on shared bins, so a small set shows beside a large one and
    none hides another; the legend above the axes."""
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from kowen_kedro.evaluation.reports import legend_above

    names = ["prompts", "preference pairs", "CLO pairs", "XL-Instruct"]
    sets = [(name, table["qe_score"].dropna().to_numpy()) for name, table in zip(names, tables) if "qe_score" in table]
    sets = [(name, scores) for name, scores in sets if len(scores)]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    if sets:
        every = np.concatenate([scores for _, scores in sets])
        low, high = float(every.min()), float(every.max())
        bins = np.linspace(low, high if high > low else low + 1e-6, 21)
        for i, (name, scores) in enumerate(sets):
            ax.hist(scores, bins=bins, weights=np.full(len(scores), 100 / len(scores)), histtype="step",
                    linewidth=1.8, linestyle=("-", "--", "-.", ":")[i % 4], label=f"{name} (n={len(scores)})")
    ax.set_xlabel("passage QE score (mean of sentence scores)")
    ax.set_ylabel("rows of the set (%)")
    ax.set_title("Translation quality estimation")
    return legend_above(fig, ax, rows=0.1)


def translate_eval_set_node(eval_prompts: pd.DataFrame, registry: dict, params: dict, src: str, tgt: str, llm: dict) -> tuple[pd.DataFrame, dict]:
    """m-AlpacaEval style set: the source-language evaluation instructions machine-translated to ``tgt``
    (best-of-k + QE like every translation here; rejected rows dropped, no QE floor: it is a test set)."""
    from kowen_kedro.evaluation.benchmarks import alpacaeval_prompts

    _check_languages(src, tgt)
    prompts = alpacaeval_prompts(eval_prompts, src)
    index = ["alpacaeval_index"] if "alpacaeval_index" in prompts.columns else []  # kept for AlpacaEval's LC fit
    pool = prompts[prompts["language"] == src][["id", "instruction", *index]].reset_index(drop=True)
    out = _run(pool, ["instruction"], registry, TranslationQE.of(params), llm, src, tgt)
    kept, report = keep_best(out, 0.0)
    extra = {c: kept[c] for c in index}
    return pd.DataFrame({
        "id": [f"{i}-m-{tgt}" for i in kept["id"]],
        "language": tgt,
        "instruction": kept[f"instruction_{tgt}"],
        "source_instruction": kept["instruction"],
        "qe_score": kept["qe_score"],
        "dataset": "m_alpacaeval",
        **extra,
    }), as_mlflow_metrics(report)
