"""Comparisons across runs in the MLflow store (used by ``notebooks/compare_runs.ipynb``).

* :func:`runs_table` - one row per ``kedro run`` (the parent runs): run id, start time, params and
  metrics (MLflow's own ``search_runs`` frame, columns ``params.*`` / ``metrics.*``, metric names read
  back from MLflow's ``gold/sft/en`` to the project's ``gold.sft.en``).
* :func:`policies_table` - one row per child run of a ``kedro run`` (each policy and reward model) with
  the metric names the children share (``gold.en``, ``gold.ko.fidelity``, ``train.loss``).
* :func:`compare_by_param` - the evaluation metrics of the newest run per value of a parameter, e.g.
  ``cross_lingual.method`` (CLO vs SFT+DPO) with win rate, XL-AlpacaEval, fidelity and MT-Bench per language.
* :func:`rm_transfer_table` - English-trained vs target-language-trained RM accuracy per language and
  category from one run's ``rm_transfer_source/target.accuracy.*`` metrics, with the delta.
* :func:`run_artifact_csv` - a CSV artifact of one run (``gold/effects.csv``, ``evaluation/iteration_curve.csv``).
* :func:`same_run_cross_lingual` - CLO vs its SFT+DPO baseline vs SFT in one run, per language, from the
  gold metrics (``gold.cross_lingual.*``, ``gold.sft_dpo_baseline.*``, ``gold.sft.*``).
"""

from __future__ import annotations

import pandas as pd

DEFAULT_METRICS = ("evaluation.win_rate", "evaluation.xl_alpacaeval.win_rate", "evaluation.language_fidelity",
                   "evaluation.xl_alpacaeval.language_fidelity", "evaluation.mt_bench.turn1", "evaluation.mt_bench.turn2")


PARENT_TAG = "tags.mlflow.parentRunId"


def _search(tracking_uri: str, experiment: str) -> pd.DataFrame:
    import mlflow

    from kowen_kedro.tracking import SEP

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(tracking_uri)
    try:
        runs = mlflow.search_runs(experiment_names=[experiment])
    finally:
        mlflow.set_tracking_uri(previous)
    runs = runs.rename(columns={c: "metrics." + c[len("metrics."):].replace(SEP, ".") for c in runs.columns
                                if c.startswith("metrics.")})
    if PARENT_TAG not in runs.columns:
        runs[PARENT_TAG] = None
    return runs


def runs_table(tracking_uri: str = "sqlite:///mlflow.db", experiment: str = "kowen_kedro") -> pd.DataFrame:
    """One row per ``kedro run`` (parent runs only), oldest first."""
    runs = _search(tracking_uri, experiment)
    runs = runs[runs[PARENT_TAG].isna()].dropna(axis=1, how="all")
    return runs.sort_values("start_time").reset_index(drop=True)


def policies_table(parent_run_id: str, tracking_uri: str = "sqlite:///mlflow.db", experiment: str = "kowen_kedro") -> pd.DataFrame:
    """One row per child run (policy or reward model) of the ``kedro run`` ``parent_run_id``: ``name``,
    ``kind`` and the shared metrics (``metrics.gold.en``, ``metrics.train.loss`` ...), by name."""
    runs = _search(tracking_uri, experiment)
    children = runs[runs[PARENT_TAG] == parent_run_id]
    if children.empty:  # a run that trained and measured nothing
        return pd.DataFrame(columns=["name", "kind", "run_id"])
    children = children.dropna(axis=1, how="all")
    children = children.assign(name=children["tags.mlflow.runName"], kind=children.get("tags.kowen.kind"))
    return children.sort_values("name").reset_index(drop=True)


def compare_by_param(runs: pd.DataFrame, param: str, metric_prefixes=DEFAULT_METRICS) -> pd.DataFrame:
    """``value, metric, language, score`` rows of the newest run for each value of ``params.<param>``."""
    col = f"params.{param}"
    if col not in runs.columns:
        raise ValueError(f"no run logged parameter {param!r}")
    newest = runs.dropna(subset=[col]).sort_values("start_time").groupby(col).tail(1)
    rows = []
    for _, run in newest.iterrows():
        for prefix in metric_prefixes:
            for c in runs.columns:
                if c.startswith(f"metrics.{prefix}.") and c.count(".") == prefix.count(".") + 2 and pd.notna(run[c]):
                    rows.append({"value": run[col], "metric": prefix, "language": c.rsplit(".", 1)[1], "score": float(run[c])})
    return pd.DataFrame(rows, columns=["value", "metric", "language", "score"])


def rm_transfer_table(run: pd.Series, source: str = "rm_transfer_source", target: str = "rm_transfer_target") -> pd.DataFrame:
    """``eval_language, category, source_rm, target_rm, delta`` from one run's RM-transfer metrics."""
    rows = []
    prefix = f"metrics.{source}.accuracy."
    for c in run.index:
        if c.startswith(prefix) and pd.notna(run[c]):
            lang, category = c[len(prefix):].split(".", 1)
            other = run.get(f"metrics.{target}.accuracy.{lang}.{category}")
            rows.append({"eval_language": lang, "category": category, "source_rm": float(run[c]),
                         "target_rm": float(other) if pd.notna(other) else float("nan")})
    table = pd.DataFrame(rows, columns=["eval_language", "category", "source_rm", "target_rm"])
    return table.assign(delta=table["source_rm"] - table["target_rm"]).sort_values(["eval_language", "category"]).reset_index(drop=True)


def run_artifact_csv(run: pd.Series, path: str, tracking_uri: str = "sqlite:///mlflow.db") -> pd.DataFrame:
    """The CSV artifact ``path`` of ``run`` (a row of :func:`runs_table`)."""
    import mlflow

    local = mlflow.artifacts.download_artifacts(run_id=run["run_id"], artifact_path=path, tracking_uri=tracking_uri)
    return pd.read_csv(local)


def same_run_cross_lingual(run: pd.Series) -> pd.DataFrame:
    """``language, sft, cross_lingual, sft_dpo_baseline`` gold rewards (and SEs) of one run; empty when the
    run trained neither cross-lingual policy."""
    rows = []
    for c in run.index:
        if c.startswith("metrics.gold.sft.") and c.count(".") == 3 and pd.notna(run[c]):  # gold.sft.<lang>, not its parts
            lang = c.rsplit(".", 1)[1]
            row = {"language": lang}
            for model in ("sft", "cross_lingual", "sft_dpo_baseline"):
                row[model] = run.get(f"metrics.gold.{model}.{lang}", float("nan"))
                row[f"{model}.se"] = run.get(f"metrics.gold.{model}.{lang}.se", float("nan"))
            if pd.notna(row["cross_lingual"]) or pd.notna(row["sft_dpo_baseline"]):
                rows.append(row)
    cols = ["language", "sft", "sft.se", "cross_lingual", "cross_lingual.se", "sft_dpo_baseline", "sft_dpo_baseline.se"]
    return pd.DataFrame(rows, columns=cols).sort_values("language").reset_index(drop=True)
