"""RewardBench-style accuracy tables."""

from __future__ import annotations

import pandas as pd

CATEGORIES = ["chat", "chat_hard", "safety", "reasoning"]


def accuracy_table(df: pd.DataFrame) -> pd.DataFrame:
    """Share of pairs with r(chosen) > r(rejected) (ties are wrong), per language x category.

    Args:
        df: columns ``language, category, chosen_reward, rejected_reward``.

    Returns:
        A DataFrame indexed by language with columns ``chat, chat_hard, safety, reasoning, avg``
        (fractions in [0, 1]; ``avg`` is the mean of the four category accuracies; NaN where a
        language has no pair of a category).
    """
    missing = {"language", "category", "chosen_reward", "rejected_reward"} - set(df.columns)
    if missing:
        raise ValueError(f"accuracy_table needs columns {sorted(missing)}")
    unknown = set(df["category"]) - set(CATEGORIES)
    if unknown:
        raise ValueError(f"unknown categories {sorted(unknown)}; expected {CATEGORIES}")
    correct = (df["chosen_reward"] > df["rejected_reward"]).astype(float)
    table = correct.groupby([df["language"], df["category"]]).mean().unstack("category")
    table = table.reindex(columns=CATEGORIES)
    table["avg"] = table[CATEGORIES].mean(axis=1, skipna=False)
    table.index.name = "language"
    table.columns.name = None
    return table
