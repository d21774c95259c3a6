"""Nodes of reward_model: seeded stratified split, Bradley-Terry training (TRL, DeepSpeed), per-language x category accuracy."""

from __future__ import annotations

import pandas as pd

from kowen_kedro.data.validation import validate_records
from kowen_kedro.rewards.metrics import CATEGORIES, accuracy_table
from kowen_kedro.rewards.scoring import RewardScorer
from kowen_kedro.runtime import as_mlflow_metrics, registry_model
from kowen_kedro.training.stages import train_stage

PAIR_FIELDS = {"pair_id": str, "language": str, "category": str, "prompt": str, "chosen": str, "rejected": str}


def split_preferences_node(pairs: pd.DataFrame, params: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Validate, then split each (language, category) cell into train / eval (at least one eval pair per cell)."""
    validate_records(pairs, PAIR_FIELDS, allowed={"category": set(CATEGORIES)})
    frac, seed = float(params["eval_fraction"]), int(params["seed"])
    eval_parts = []
    for _, cell in pairs.groupby(["language", "category"], sort=True):
        n = max(1, round(frac * len(cell))) if len(cell) > 1 else 0
        eval_parts.append(cell.sample(n=n, random_state=seed))
    eval_df = pd.concat(eval_parts)
    train_df = pairs.drop(index=eval_df.index)
    return train_df.reset_index(drop=True), eval_df.reset_index(drop=True)


def _conversational(df: pd.DataFrame) -> list[dict]:
    return [
        {
            "chosen": [{"role": "user", "content": r["prompt"]}, {"role": "assistant", "content": r["chosen"]}],
            "rejected": [{"role": "user", "content": r["prompt"]}, {"role": "assistant", "content": r["rejected"]}],
        }
        for r in df.to_dict("records")
    ]


def train_reward_model_node(train: pd.DataFrame, evaluation: pd.DataFrame, registry: dict, params: dict, training: dict) -> str:
    """Bradley-Terry RM with TRL's RewardTrainer, launched like every training; returns the model folder."""
    record = train_stage(
        "reward", "reward_model", registry_model(registry, "reward_model_init"),
        _conversational(train), params, training, eval_records=_conversational(evaluation),
    )
    return record["final_dir"]


def evaluate_reward_model_node(reward_model: str, evaluation: pd.DataFrame, params: dict) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Score chosen/rejected; accuracy per language x category (RewardBench style) + MLflow metrics."""
    scorer = RewardScorer(reward_model, batch_size=int(params["batch_size"]), max_length=int(params["max_length"]))
    prompts = list(evaluation["prompt"])
    scored = evaluation.assign(
        chosen_reward=scorer.score(prompts, list(evaluation["chosen"])),
        rejected_reward=scorer.score(prompts, list(evaluation["rejected"])),
    )
    table = accuracy_table(scored)
    metrics = {f"accuracy.{lang}.{col}": v for lang, row in table.iterrows() for col, v in row.items()}
    return scored, table.reset_index(), as_mlflow_metrics(metrics)
