"""Cross-lingual preference training on the CLO data: CLO itself, or the SFT+DPO baseline.

``method: clo`` -> one CLO training (paired rows, NLL + two DPO terms, attention only).
``method: sft_dpo`` -> the paper's baseline on the same data: SFT on ``x_en -> y_en`` and
``x_l -> y_l``, then standard DPO with the same preference rows, unpaired.
``method: sft`` -> that SFT step alone (the paper's "SFT" on the cross-lingual data, its data-efficiency
comparison: CLO on half the pairs against SFT on all of them).
``train_fraction`` < 1 trains on that share of the training examples (seeded; the held-out ones stay).
With ``baseline_in_same_run: true`` (the default) a ``clo`` run also trains the baseline from the same
SFT model on the same rows, so CLO vs SFT+DPO is measured in one run (``gold.cross_lingual`` vs
``gold.sft_dpo_baseline``, paper 002's comparison).
"""

from __future__ import annotations

import pandas as pd

from kowen_kedro.groups import CrossLingual, Preflight, Training
from kowen_kedro.preference.clo_data import clo_records, dpo_baseline_records, sft_baseline_records
from kowen_kedro.training.stages import train_stage

# the name each method's policy is reported under (gold.<name>.*)
REPORTED_AS = {"clo": "cross_lingual", "sft_dpo": "sft_dpo_baseline", "sft": "sft_on_pairs"}


def baseline_in_same_run(params: CrossLingual) -> bool:
    """Whether a ``clo`` run also trains the SFT+DPO baseline (``cross_lingual.baseline_in_same_run``)."""
    return params.enabled and params.method == "clo" and params.baseline_in_same_run


def split_examples(pairs: pd.DataFrame, eval_fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Seeded split of source examples (both rows of an example always land on the same side)."""
    if not 0 <= eval_fraction < 1:
        raise ValueError(f"eval_fraction must be in [0, 1), got {eval_fraction}")
    n_eval = int(round(eval_fraction * len(pairs)))
    shuffled = pairs.sample(frac=1.0, random_state=seed)
    evaluation, train = shuffled.iloc[:n_eval], shuffled.iloc[n_eval:]
    return train.reset_index(drop=True), evaluation.reset_index(drop=True)


def cross_lingual_examples(pairs: pd.DataFrame, params: CrossLingual) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The training and held-out examples of a cross-lingual run: the pairs validated (errors name the file,
    line and field), split by ``eval_fraction`` / ``seed``, the training side cut to ``train_fraction``."""
    clo_records(pairs)  # validate in file order first
    train, evaluation = split_examples(pairs, params.eval_fraction, params.seed)
    fraction = params.train_fraction
    if not 0 < fraction <= 1:
        raise ValueError(f"cross_lingual.train_fraction must be in (0, 1], got {fraction}")
    return train.head(max(1, round(fraction * len(train)))), evaluation  # already shuffled by the split


def _result(record: dict, train: pd.DataFrame, evaluation: pd.DataFrame) -> tuple[str, dict]:
    metrics = {k: v for k, v in record["metrics"].items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    metrics.update({"train_examples": len(train), "eval_examples": len(evaluation)})
    return record["final_dir"], metrics


def train_baseline_sft(init_policy: str, pairs: pd.DataFrame, params: CrossLingual, training: Training, preflight: Preflight,
                       stage: str = "cross_lingual") -> tuple[str, dict]:
    """The baseline's SFT step (run folder ``<stage>_sft``): SFT on both languages' rows from ``init_policy``."""
    train, evaluation = cross_lingual_examples(pairs, params)
    record = train_stage("sft", f"{stage}_sft", init_policy, sft_baseline_records(train), params.baseline_sft, training,
                         preflight_cfg=preflight)
    return _result(record, train, evaluation)


def train_baseline_dpo(sft_model: str, pairs: pd.DataFrame, params: CrossLingual, training: Training, preflight: Preflight,
                       stage: str = "cross_lingual") -> tuple[str, dict]:
    """The baseline's DPO step (run folder ``<stage>``): standard DPO on the same rows, unpaired, from the
    baseline's SFT model."""
    train, evaluation = cross_lingual_examples(pairs, params)
    record = train_stage("dpo", stage, sft_model, dpo_baseline_records(train), params.baseline_dpo, training,
                         eval_records=dpo_baseline_records(evaluation) if len(evaluation) else None, preflight_cfg=preflight)
    return _result(record, train, evaluation)


def train_cross_lingual(init_policy: str, pairs: pd.DataFrame, params: CrossLingual, training: Training, preflight: Preflight,
                        stage: str = "cross_lingual") -> tuple[str, dict]:
    """Train ``params.method`` from ``init_policy``; returns the final model folder and its metrics.

    ``stage`` names the training runs (``<stage>`` and, for the baseline's SFT step, ``<stage>_sft``). Beside
    CLO in one run, the pipeline trains the baseline as two nodes (:func:`train_baseline_sft`, then
    :func:`train_baseline_dpo`), so its SFT model is a dataset of the catalog."""
    if params.method == "sft":
        return train_baseline_sft(init_policy, pairs, params, training, preflight, stage)
    if params.method == "sft_dpo":
        sft_model, _ = train_baseline_sft(init_policy, pairs, params, training, preflight, stage)
        return train_baseline_dpo(sft_model, pairs, params, training, preflight, stage)
    train, evaluation = cross_lingual_examples(pairs, params)
    record = train_stage("clo", stage, init_policy, clo_records(train), params.clo, training,
                         eval_records=clo_records(evaluation) if len(evaluation) else None, preflight_cfg=preflight)
    return _result(record, train, evaluation)
