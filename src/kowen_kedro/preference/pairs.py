"""On-policy preference pairs: best vs worst reward among k samples of the same prompt (Kowen)."""

from __future__ import annotations

import pandas as pd

PAIR_COLUMNS = ["prompt_id", "prompt", "chosen", "rejected", "chosen_reward", "rejected_reward"]


def best_worst_pairs(df: pd.DataFrame) -> pd.DataFrame:
    """One row per prompt: highest-reward completion as chosen, lowest as rejected.

    Args:
        df: columns ``prompt_id, prompt, completion, reward``; several rows per prompt.

    Returns:
        ``prompt_id, prompt, chosen, rejected, chosen_reward, rejected_reward``. Prompts whose highest
        and lowest rewards are equal (including single-completion prompts) are dropped. Among equal
        rewards the first row in input order wins.
    """
    missing = {"prompt_id", "prompt", "completion", "reward"} - set(df.columns)
    if missing:
        raise ValueError(f"best_worst_pairs needs columns {sorted(missing)}")
    rows = []
    for prompt_id, group in df.groupby("prompt_id", sort=False):
        best = group.loc[group["reward"].idxmax()]
        worst = group.loc[group["reward"].idxmin()]
        if best["reward"] == worst["reward"]:
            continue
        rows.append(
            {
                "prompt_id": prompt_id,
                "prompt": best["prompt"],
                "chosen": best["completion"],
                "rejected": worst["completion"],
                "chosen_reward": float(best["reward"]),
                "rejected_reward": float(worst["reward"]),
            }
        )
    return pd.DataFrame(rows, columns=PAIR_COLUMNS)
