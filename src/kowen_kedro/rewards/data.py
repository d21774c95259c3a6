"""Preference data for reward models: cleaning with counts, chat-format conversion, splits."""

from __future__ import annotations

import pandas as pd

from kowen_kedro.data.prompts import normalise
from kowen_kedro.data.validation import DataValidationError, line_of, source_of
from kowen_kedro.rewards.metrics import CATEGORIES

PAIR_COLUMNS = ["pair_id", "language", "category", "prompt", "chosen", "rejected"]


def require_columns(df: pd.DataFrame, columns: list[str]) -> None:
    """A missing column is an error naming the file and the column."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataValidationError(source_of(df), None, missing[0], f"required column missing (need {columns})")


def clean_pairs(df: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Exclude pairs that cannot train or evaluate an RM, and count each reason.

    Reasons, checked in this order: ``empty`` (prompt, chosen or rejected missing/blank),
    ``identical`` (chosen == rejected after normalisation), ``unknown_category``.
    Excluded rows are logged with their file line; nothing is dropped silently.
    """
    require_columns(df, PAIR_COLUMNS)
    reasons = []
    for row in df.to_dict("records"):
        texts = [row.get(k) for k in ("prompt", "chosen", "rejected")]
        if any(not isinstance(t, str) or not t.strip() for t in texts):
            reasons.append("empty")
        elif normalise(row["chosen"]) == normalise(row["rejected"]):
            reasons.append("identical")
        elif row.get("category") not in CATEGORIES:
            reasons.append("unknown_category")
        else:
            reasons.append(None)
    reason = pd.Series(reasons, index=df.index, dtype=object)
    report = {"pairs": len(df), "kept": int(reason.isna().sum())}
    for name in ("empty", "identical", "unknown_category"):
        report[f"excluded_{name}"] = int((reason == name).sum())
    if report["kept"] < len(df):
        import logging

        bad = [f"line {line_of(df, i)}: {x}" for i, x in enumerate(reasons) if x]
        logging.getLogger(__name__).warning("%s: excluded %d pairs (%s)", source_of(df), len(bad), "; ".join(bad[:10]))
    return df[reason.isna()].reset_index(drop=True), report


def to_chat_pairs(df: pd.DataFrame) -> list[dict]:
    """TRL's conversational preference format: ``{chosen: [user, assistant], rejected: [...]}``."""
    return [
        {
            "chosen": [{"role": "user", "content": r["prompt"]}, {"role": "assistant", "content": r["chosen"]}],
            "rejected": [{"role": "user", "content": r["prompt"]}, {"role": "assistant", "content": r["rejected"]}],
        }
        for r in df.to_dict("records")
    ]


def stratified_split(pairs: pd.DataFrame, eval_fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train / eval split per (language, category) cell: round(fraction x cell) eval pairs, at least one
    when the cell has two or more."""
    eval_parts = [
        cell.sample(n=max(1, round(eval_fraction * len(cell))) if len(cell) > 1 else 0, random_state=seed)
        for _, cell in pairs.groupby(["language", "category"], sort=True)
    ]
    eval_df = pd.concat(eval_parts) if eval_parts else pairs.iloc[:0]
    return pairs.drop(index=eval_df.index).reset_index(drop=True), eval_df.reset_index(drop=True)


def swap_preferences(pairs: pd.DataFrame) -> pd.DataFrame:
    """The same pairs with chosen and rejected exchanged (the ablation an RM metric must fail)."""
    return pairs.assign(chosen=pairs["rejected"].values, rejected=pairs["chosen"].values)


def from_rewardbench(df: pd.DataFrame, language: str = "en") -> pd.DataFrame:
    """RewardBench's ``filtered`` split or M-RewardBench rows, as published (``prompt, chosen, rejected,
    subset, id``; M-RewardBench adds ``language``), in the project's pair format: ``pair_id`` from ``id``,
    ``category`` from the subset's section, ``language`` where the rows lack one (an M-RewardBench code
    such as ``kor_Hang`` stays as published), ``subset`` kept for RewardBench's weighting
    (:func:`kowen_kedro.rewards.metrics.accuracy_table`).

    Raises:
        DataValidationError: a required column is missing, or a row's subset is not RewardBench's (file,
            line, field).
    """
    from kowen_kedro.rewards.rewardbench import SECTION_OF, category_of

    require_columns(df, ["prompt", "chosen", "rejected", "subset", "id"])
    for i, subset in enumerate(df["subset"]):
        if subset not in SECTION_OF:
            raise DataValidationError(source_of(df), line_of(df, i), "subset",
                                      f"{subset!r} is not a RewardBench subset (known: {sorted(SECTION_OF)})")
    out = pd.DataFrame({
        "pair_id": df["id"].astype(str), "language": df["language"] if "language" in df.columns else language,
        "category": [category_of(s) for s in df["subset"]], "subset": df["subset"],
        "prompt": df["prompt"], "chosen": df["chosen"], "rejected": df["rejected"],
    })
    out.attrs = dict(df.attrs)
    return out
