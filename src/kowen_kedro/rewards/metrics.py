"""RewardBench-style accuracy tables."""

from __future__ import annotations

import pandas as pd

CATEGORIES = ["chat", "chat_hard", "safety", "reasoning"]


def accuracy_table(df: pd.DataFrame, weights: str = "rewardbench") -> pd.DataFrame:
    """Share of pairs with r(chosen) > r(rejected) (ties are wrong, as for classifier RMs), per language
    and section, aggregated as RewardBench does.

    With a ``subset`` column (RewardBench / M-RewardBench rows): accuracy per (language, subset), each
    section the mean of its subsets weighted by the published counts (``weights``: ``rewardbench`` or
    ``m-rewardbench``, :mod:`kowen_kedro.rewards.rewardbench`). Without one (the project's own pairs),
    each category is one subset, so a section is the accuracy over its pairs.

    Args:
        df: columns ``language, category, chosen_reward, rejected_reward`` (+ ``subset``).

    Returns:
        A DataFrame indexed by language with columns ``chat, chat_hard, safety, reasoning, avg``
        (fractions in [0, 1]; ``avg`` is the mean of the four section scores, RewardBench's score; NaN
        where a language has no pair of a section).
    """
    from kowen_kedro.rewards.rewardbench import SECTION_CATEGORY, section_scores

    missing = {"language", "category", "chosen_reward", "rejected_reward"} - set(df.columns)
    if missing:
        raise ValueError(f"accuracy_table needs columns {sorted(missing)}")
    unknown = set(df["category"]) - set(CATEGORIES)
    if unknown:
        raise ValueError(f"unknown categories {sorted(unknown)}; expected {CATEGORIES}")
    correct = (df["chosen_reward"] > df["rejected_reward"]).astype(float)
    if "subset" in df.columns:
        per_subset = correct.groupby([df["language"], df["subset"]]).mean()
        rows = {}
        for lang in per_subset.index.get_level_values(0).unique():
            sections = section_scores(per_subset.loc[lang].to_dict(), weights)
            rows[lang] = {SECTION_CATEGORY[s]: v for s, v in sections.items()}
        table = pd.DataFrame.from_dict(rows, orient="index")
    else:
        table = correct.groupby([df["language"], df["category"]]).mean().unstack("category")
    table = table.reindex(columns=CATEGORIES)
    table["avg"] = table[CATEGORIES].mean(axis=1, skipna=False)
    table.index.name = "language"
    table.columns.name = None
    return table
