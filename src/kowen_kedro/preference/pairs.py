"""On-policy preference pairs: best vs worst reward among k samples of the same prompt (Kowen)."""

from __future__ import annotations

import pandas as pd

PAIR_COLUMNS = ["prompt_id", "prompt", "chosen", "rejected", "chosen_reward", "rejected_reward"]


def best_worst_pairs(df: pd.DataFrame, min_margin_sd: float = 0.0) -> pd.DataFrame:
    """One row per prompt: highest-reward completion as chosen, lowest as rejected.

    Args:
        df: columns ``prompt_id, prompt, completion, reward``; several rows per prompt.
        min_margin_sd: keep a pair only when its reward margin is at least this many standard
            deviations of all the rewards in ``df`` (0: every pair, Kowen's rule). A learned RM's small
            margins are mostly noise about what it cannot judge; training on them moves the policy
            where the RM is blind (reward-gap filtering).

    Returns:
        ``prompt_id, prompt, chosen, rejected, chosen_reward, rejected_reward``. Prompts whose highest
        and lowest rewards are equal (including single-completion prompts) are dropped. Among equal
        rewards the first row in input order wins.
    """
    missing = {"prompt_id", "prompt", "completion", "reward"} - set(df.columns)
    if missing:
        raise ValueError(f"best_worst_pairs needs columns {sorted(missing)}")
    if min_margin_sd < 0:
        raise ValueError(f"min_margin_sd must be >= 0, not {min_margin_sd}")
    min_margin = min_margin_sd * float(df["reward"].std()) if min_margin_sd and len(df) > 1 else 0.0
    rows = []
    for prompt_id, group in df.groupby("prompt_id", sort=False):
        best = group.loc[group["reward"].idxmax()]
        worst = group.loc[group["reward"].idxmin()]
        if best["reward"] == worst["reward"] or best["reward"] - worst["reward"] < min_margin:
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
