"""Nodes of reward_model: cleaning + stratified split, Bradley-Terry training (TRL, DeepSpeed),
RewardBench-style accuracy per language x category, the RM-transfer comparison (English-trained vs
target-language-trained RM) and representation-collapse analysis."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from kowen_kedro.data.parallel import parallel_sentences
from kowen_kedro.groups import Preflight, RewardModel, RMBenchmark, RMData, RMScoring, Training
from kowen_kedro.rewards.analysis import collapse_scores
from kowen_kedro.rewards.data import clean_pairs, stratified_split, swap_preferences, to_chat_pairs
from kowen_kedro.rewards.metrics import CATEGORIES, accuracy_table
from kowen_kedro.rewards.scoring import RewardScorer
from kowen_kedro.runtime import as_mlflow_metrics, registry_model
from kowen_kedro.training.stages import train_stage

logger = logging.getLogger(__name__)


def split_preferences_node(pairs: pd.DataFrame, params: dict, languages: list[str]) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Exclude unusable pairs (counted), then a seeded 80/20 split per language x category. Pairs in a
    language the run does not train in (not in ``languages``) only evaluate: their training share is left out.

    ``ablation_swap_pairs: true`` exchanges chosen and rejected in the training pairs only (every RM of
    the run learns the reversed preference; the gold RM accuracy must then fall below chance)."""
    data = RMData.of(params)
    clean, report = clean_pairs(pairs)
    train, evaluation = stratified_split(clean, data.eval_fraction, data.seed)
    evaluation_only = sorted(set(train["language"]) - set(languages))
    if evaluation_only:
        logger.info("preference pairs in %s evaluate the reward models only", evaluation_only)
        train = train[train["language"].isin(languages)].reset_index(drop=True)
    if data.ablation_swap_pairs:
        train = swap_preferences(train)
        logger.warning("ablation: chosen and rejected exchanged in all %d training pairs", len(train))
    report.update({"train": len(train), "eval": len(evaluation), "swapped": len(train) if data.ablation_swap_pairs else 0})
    return train, evaluation, as_mlflow_metrics(report)


def train_reward_model_node(train: pd.DataFrame, evaluation: pd.DataFrame, registry: dict, reward_model: dict, training: dict,
                            preflight: dict) -> str:
    """Bradley-Terry RM with TRL's RewardTrainer (``reward_model.training``), launched like every training;
    returns the model folder."""
    return _train_rm(train, evaluation, registry, reward_model, training, preflight, "reward_model")


def _train_rm(train: pd.DataFrame, evaluation: pd.DataFrame, registry: dict, reward_model: dict, training: dict, preflight: dict,
              stage: str) -> str:
    record = train_stage(
        "reward", stage, registry_model(registry, "reward_model_init"), to_chat_pairs(train), RewardModel.of(reward_model).training,
        Training.of(training), eval_records=to_chat_pairs(evaluation), preflight_cfg=Preflight.of(preflight),
    )
    return record["final_dir"]


def score_pairs(reward_model: str, pairs: pd.DataFrame, params: dict) -> pd.DataFrame:
    """``pairs`` with the RM's ``chosen_reward`` and ``rejected_reward`` (``params``: ``reward_model.scoring``)."""
    scoring = RMScoring.of(params)
    scorer = RewardScorer(reward_model, batch_size=scoring.batch_size, max_length=scoring.max_length)
    prompts = list(pairs["prompt"])
    return pairs.assign(
        chosen_reward=scorer.score(prompts, list(pairs["chosen"])),
        rejected_reward=scorer.score(prompts, list(pairs["rejected"])),
    )


def evaluate_reward_model_node(reward_model: str, evaluation: pd.DataFrame, params: dict) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Score chosen/rejected; accuracy per language x category (RewardBench style) + MLflow metrics."""
    scored = score_pairs(reward_model, evaluation, params)
    table = accuracy_table(scored)
    metrics = {f"accuracy.{lang}.{col}": v for lang, row in table.iterrows() for col, v in row.items()}
    return scored, table.reset_index(), as_mlflow_metrics(metrics)


def benchmark_reward_model_node(reward_model: str, rows: pd.DataFrame, scoring: dict, params: dict) -> tuple[pd.DataFrame, dict]:
    """The RM on RewardBench / M-RewardBench rows as published: accuracy per subset, sections weighted by
    the published counts (``params["weights"]``), and the RewardBench score (the mean of the sections), per
    language; ties are wrong (a classifier RM)."""
    from kowen_kedro.rewards.data import from_rewardbench

    benchmark = RMBenchmark.of(params)
    pairs, report = clean_pairs(from_rewardbench(rows, benchmark.language))
    scored = score_pairs(reward_model, pairs, scoring)
    table = accuracy_table(scored, benchmark.weights)
    metrics = {f"{lang}.{'score' if col == 'avg' else col}": v for lang, row in table.iterrows() for col, v in row.items()}
    return table.reset_index(), as_mlflow_metrics({**metrics, "pairs": report["kept"], "excluded": report["pairs"] - report["kept"]})


# ---------------------------------------------------------------- RM transfer (namespaced per RM)

def _train_language(role: str, source_language: str, target_language: str) -> str:
    if role not in ("source", "target"):
        raise ValueError(f"RM-transfer role must be 'source' or 'target', got {role!r}")
    return source_language if role == "source" else target_language


def transfer_training_pairs_node(
    train: pd.DataFrame, translated: pd.DataFrame, role: str, source_language: str, target_language: str, reward_model: dict,
) -> pd.DataFrame:
    """The RM's training data: the source-language training pairs themselves (role ``source``), or
    their translated copies in the target language (role ``target``). With ``reward_model.data.transfer_source:
    translated`` the source RM trains only on the pairs whose copies the target RM trains on, so that the two
    differ in language only (the pairs with a wrong-language answer, which are not translated, and those the
    QE filter dropped are left out)."""
    train_language = _train_language(role, source_language, target_language)
    source = train[train["language"] == source_language]
    if train_language == source_language:
        if RewardModel.of(reward_model).data.transfer_source == "translated":
            copied = translated.loc[translated["language"] == target_language, "source_pair_id"]
            source = source[source["pair_id"].isin(copied)]
        return source.reset_index(drop=True)
    copies = translated[(translated["language"] == train_language) & translated["source_pair_id"].isin(source["pair_id"])]
    if copies.empty:
        raise ValueError(f"no translated preference pairs in {train_language!r}: add it to translation_qe.preferences.languages")
    return copies[["pair_id", "language", "category", "prompt", "chosen", "rejected"]].reset_index(drop=True)


def train_transfer_rm_node(train: pd.DataFrame, evaluation: pd.DataFrame, registry: dict, reward_model: dict, training: dict,
                           preflight: dict, role: str) -> str:
    """One RM of the transfer experiment (run folder ``rm_transfer_<role>``)."""
    return _train_rm(train, evaluation, registry, reward_model, training, preflight, f"rm_transfer_{role}")


def transfer_accuracy_node(
    reward_model: str, evaluation: pd.DataFrame, params: dict, role: str, source_language: str, target_language: str
) -> tuple[pd.DataFrame, dict]:
    """This RM's accuracy on every evaluation language (one row per language, ``train_language`` column)."""
    train_language = _train_language(role, source_language, target_language)
    table = accuracy_table(score_pairs(reward_model, evaluation, params)).reset_index()
    metrics = {f"accuracy.{r['language']}.avg": r["avg"] for r in table.to_dict("records")}
    return table.assign(train_language=train_language), as_mlflow_metrics(metrics)


def transfer_comparison_node(source_table: pd.DataFrame, target_table: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """RM-transfer Table 1: per evaluation language and category, source-language RM vs
    target-language RM accuracy and the delta (source - target), as a table and as markdown."""
    cols = CATEGORIES + ["avg"]
    src, tgt = source_table.set_index("language")[cols], target_table.set_index("language")[cols]
    src_name, tgt_name = source_table["train_language"].iloc[0], target_table["train_language"].iloc[0]
    rows = []
    for lang in src.index:
        for col in cols:
            a, b = float(src.loc[lang, col]), float(tgt.loc[lang, col])
            rows.append({"eval_language": lang, "category": col, f"rm_{src_name}": a, f"rm_{tgt_name}": b, "delta": a - b})
    table = pd.DataFrame(rows)
    wide = table.pivot(index="eval_language", columns="category", values=[f"rm_{src_name}", f"rm_{tgt_name}", "delta"])
    lines = [
        f"| eval language | RM | {' | '.join(cols)} |",
        "|---|---|" + "---|" * len(cols),
    ]
    for lang in wide.index:
        for label in (f"rm_{src_name}", f"rm_{tgt_name}", "delta"):
            vals = " | ".join(f"{100 * wide.loc[lang, (label, c)]:+.1f}" if label == "delta" else f"{100 * wide.loc[lang, (label, c)]:.1f}" for c in cols)
            lines.append(f"| {lang} | {label.replace('rm_', 'trained on ')} | {vals} |")
    return table, "\n".join(lines) + "\n"


def representation_collapse_node(
    registry: dict, rm_source: str, rm_target: str, pairs: pd.DataFrame, user_prompts: pd.DataFrame,
    languages: list[str], source_language: str, target_language: str, parallel_sentences_raw: pd.DataFrame | None = None,
    max_items: int = 200,
) -> tuple[pd.DataFrame, Any, dict]:
    """Mean f = sigma_1 / sum(sigma) over parallel texts, for the base model and each RM (Figure 1).

    The parallel texts are the pairs / conversations written as translations of each other
    (``<source>-NNN`` / ``<target>-NNN`` ids) or, where there are none, ``parallel_sentences_raw`` (the first ``max_items``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parallel = parallel_sentences(pairs, user_prompts, source_language, target_language)
    if not parallel and parallel_sentences_raw is not None:
        parallel = parallel_sentences_raw.head(max_items).to_dict("records")
    langs = [source_language, target_language]
    models = {"base": registry_model(registry, "student"), f"rm_{source_language}": rm_source, f"rm_{target_language}": rm_target}
    rows = []
    for name, path in models.items():
        (mean_f, fs), (centred_f, _) = collapse_scores(path, parallel, langs)
        rows.append({"model": name, "mean_f": mean_f, "mean_f_centred": centred_f, "n_items": len(fs), "uniform_baseline": 1 / len(langs)})
    table = pd.DataFrame(rows)
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    x = np.arange(len(table))
    ax.bar(x - 0.2, table["mean_f"], width=0.4, color="#888", label="raw (Figure 1)")
    ax.bar(x + 0.2, table["mean_f_centred"], width=0.4, color="#1f77b4", label="each language's mean removed")
    ax.set_xticks(x, table["model"])
    ax.axhline(1 / len(langs), ls="--", c="k", lw=0.8, label="orthogonal (1/L)")
    ax.set_ylabel("mean sigma_1 / sum(sigma)")
    ax.set_ylim(0, 1)
    ax.set_title("Representation collapse across languages")
    from kowen_kedro.evaluation.reports import legend_above

    metrics = {f"collapse.{r['model']}": r["mean_f"] for r in rows}
    metrics.update({f"collapse.{r['model']}.centred": r["mean_f_centred"] for r in rows})
    return table, legend_above(fig, ax), as_mlflow_metrics(metrics)
