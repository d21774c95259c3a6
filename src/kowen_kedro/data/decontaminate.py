"""Decontamination: drop training prompts whose word n-grams overlap the evaluation sets.

A prompt is contaminated when the share of its word n-grams that also occur in any evaluation prompt
reaches ``threshold`` (containment, not Jaccard: a short training prompt copied into a long evaluation
prompt still counts). Texts shorter than n words are compared as one n-gram of all their words.
"""

from __future__ import annotations

from typing import Iterable

import pandas as pd

from kowen_kedro.data.prompts import normalise


def word_ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = normalise(text).split()
    if len(words) < n:
        return {tuple(words)} if words else set()
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def decontaminate(
    prompts: pd.DataFrame, eval_texts: Iterable[str], n: int, threshold: float, column: str = "prompt"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split ``prompts`` into (kept, removed); ``removed`` has an ``overlap`` column in [0, 1]."""
    if n < 1 or not 0.0 < threshold <= 1.0:
        raise ValueError(f"need n >= 1 and 0 < threshold <= 1, got n={n}, threshold={threshold}")
    index: set[tuple[str, ...]] = set()
    for text in eval_texts:
        index |= word_ngrams(text, n)
    overlaps = []
    for text in prompts[column]:
        grams = word_ngrams(text, n)
        overlaps.append(len(grams & index) / len(grams) if grams else 0.0)
    overlap = pd.Series(overlaps, index=prompts.index, dtype=float)
    hit = overlap >= threshold
    return prompts[~hit], prompts[hit].assign(overlap=overlap[hit])
