"""Translated datasets: any set of text columns through best-of-k translation + QE, then filtering.

Used by translation_qe for the translated prompt sets, the translated preference data (RM transfer),
the CLO cross-lingual dataset and XL-Instruct's cross-lingual SFT rows.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from kowen_kedro.langid import language_name
from kowen_kedro.translation.best_of_k import (
    QualityEstimator,
    Translator,
    translate_best_of_k,
)
from kowen_kedro.translation.qe import filter_bottom_fraction


def translate_columns(
    df: pd.DataFrame,
    columns: Sequence[str],
    translators: Sequence[Translator],
    qe: QualityEstimator,
    src: str,
    tgt: str,
    max_sentence_chars: int,
    splitter=None,
) -> pd.DataFrame:
    """Adds ``<col>_<tgt>`` (translation), ``<col>_qe`` (passage QE), ``<col>_winners`` per column,
    then ``qe_score`` (mean over the columns) and ``reject_reason`` (why a row was not translated, or None)."""
    language_name(src), language_name(tgt)  # unknown codes fail before any work
    out = df.copy()
    reasons: list[str | None] = [None] * len(df)
    col_scores = []
    for col in columns:
        extra = {"splitter": splitter} if splitter is not None else {}
        results = translate_best_of_k(list(df[col]), translators, qe, src, tgt, max_sentence_chars, **extra)
        out[f"{col}_{tgt}"] = [r.text for r in results]
        out[f"{col}_qe"] = [r.passage_score for r in results]
        out[f"{col}_winners"] = [r.winners for r in results]
        col_scores.append([r.passage_score for r in results])
        for i, r in enumerate(results):
            if r.rejected and reasons[i] is None:
                reasons[i] = f"{col}: {r.rejected}"
            elif reasons[i] is None and not r.text.strip():  # a translator returned nothing for a real source
                reasons[i] = f"{col}: empty translation"
    out["qe_score"] = np.mean(np.array(col_scores, dtype=float), axis=0) if len(df) else []
    out["reject_reason"] = reasons
    return out


def keep_best(translated: pd.DataFrame, drop_bottom_fraction: float) -> tuple[pd.DataFrame, dict]:
    """Drop rejected rows, then the bottom fraction by ``qe_score``; returns (kept, counts)."""
    ok = translated[translated["reject_reason"].isna()]
    kept, dropped = filter_bottom_fraction(ok, "qe_score", drop_bottom_fraction)
    scores = ok["qe_score"]
    report = {
        "rows": len(translated),
        "rejected": len(translated) - len(ok),
        "dropped_low_qe": len(dropped),
        "kept": len(kept),
        "qe_mean": float(scores.mean()) if len(scores) else math.nan,
        "qe_min_kept": float(kept["qe_score"].min()) if len(kept) else math.nan,
    }
    return kept.reset_index(drop=True), report


def clo_rows(pairs: pd.DataFrame, tgt: str) -> pd.DataFrame:
    """The CLO dataset: one row per source pair with ``x_en, y_en, x_l, y_l`` (+ QE, provenance)."""
    return pd.DataFrame(
        {
            "pair_id": pairs["prompt_id"],
            "language": tgt,
            "x_en": pairs["x_en"],
            "y_en": pairs["y_en"],
            "x_l": pairs[f"x_en_{tgt}"],
            "y_l": pairs[f"y_en_{tgt}"],
            "qe_score": pairs["qe_score"],
        }
    )
