"""The MLflow layout a run leaves for comparison: one parent run per ``kedro run``, one child run per policy
and reward model, metric names grouped with ``/``.

kedro-mlflow opens the parent run (``conf/base/mlflow.yml``) and every ``*_metrics`` dataset logs into it.
This module adds what the compare view needs, through :class:`mlflow.MlflowClient` with explicit run ids
(never the fluent, thread-local active run):

* **names**: the project computes metrics as dotted names (``sft.en.vs_base``); MLflow groups charts by
  ``/``, so every name is logged as ``gold/sft/en/vs_base`` (:func:`metric_key`; :func:`dotted` reads it
  back). The parent holds every metric of the run under its stage.
* **children**: each policy (``base``, ``teacher``, ``sft``, ``dpo_iter_<i>``, ``cross_lingual``,
  ``sft_dpo_baseline``, ``xl_instruct``) and each reward model (``rm``, ``rm_transfer_source``,
  ``rm_transfer_target``) is a child run, named as in ``gold/effects.md``, whose metrics have the *same*
  names in every child: ``gold/en``, ``gold/ko/fidelity``, ``gold/ko/vs_sft`` (from the gold
  measurement), ``train/loss``, ``train/eval_loss`` (from its training launch), with the launch's
  hyper-parameters as parameters and its training data as an input dataset. Selecting two children in
  the runs table and pressing *Compare* lines the policies up, in one run or across runs.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Any, Iterable, Mapping

logger = logging.getLogger(__name__)

SEP = "/"
#: The tag that marks a child run's kind (:func:`kind`), for filtering the runs table.
KIND_TAG = "kowen.kind"
#: First parts of gold metric names that are not a model (the QE, best-of-k and judge checks stay in the parent).
NOT_MODELS = frozenset({"qe", "best_of_k", "judge"})
REWARD_MODELS = ("rm", "rm_transfer_source", "rm_transfer_target")
#: Training stages (``LaunchSpec.mlflow_prefix``) whose child run has another name than the stage.
CHILD_OF_STAGE = {"reward_model": "rm", "cross_lingual_baseline": "sft_dpo_baseline",
                  "cross_lingual_baseline_sft": "sft_dpo_baseline_sft"}
#: What the MLflow UI opens an experiment in (MLflow 3: the GenAI view otherwise, with traces and costs).
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")


def metric_key(name: str) -> str:
    """A dotted metric name as MLflow shows it: ``gold.sft.en.se`` -> ``gold/sft/en/se``."""
    return name.replace(".", SEP)


def dotted(metrics: Mapping[str, float]) -> dict[str, float]:
    """Metrics read from MLflow, under the project's dotted names (the inverse of :func:`metric_key`)."""
    return {k.replace(SEP, "."): v for k, v in metrics.items()}


def kind(name: str) -> str:
    """A child run's kind: ``reward_model``, ``translator`` (the machine translators' gold chrF) or ``policy``."""
    return "reward_model" if name in REWARD_MODELS else "translator" if name == "translator" else "policy"


def parent_runs(client, experiment_id: str) -> list:
    """The experiment's ``kedro run``s (runs without a parent), newest first."""
    runs = client.search_runs([experiment_id], order_by=["attributes.start_time DESC"])
    return [r for r in runs if "mlflow.parentRunId" not in r.data.tags]


def child_name(stage: str) -> str:
    """The child run a training stage logs into: the policy or reward model it trains."""
    return CHILD_OF_STAGE.get(stage, stage)


def gold_by_child(gold: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """``{"sft.en.se": 0.01, "qe.spearman": ...}`` (the gold metrics, without ``gold.``) -> ``{"sft":
    {"gold/en/se": 0.01}}``: every model's measurements under names shared by all models."""
    out: dict[str, dict[str, float]] = {}
    for name, value in gold.items():
        model, _, rest = name.partition(".")
        if not rest or model in NOT_MODELS:
            continue
        value = value.get("value") if isinstance(value, dict) else value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            continue
        out.setdefault(model, {})[metric_key(f"gold.{rest}")] = float(value)
    return out


def flat_params(values: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested hyper-parameters -> ``{"trainer_args.beta": "0.1"}`` (MLflow's 6000-character limit kept)."""
    out: dict[str, str] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flat_params(value, f"{name}."))
        elif value is not None:
            out[name] = str(value)[:6000]
    return out


class RunLayout:
    """The children of one parent run: found by name (a stage that logs twice reuses its child), created
    on first use, ended with the parent."""

    def __init__(self, parent_run_id: str, tracking_uri: str | None = None) -> None:
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.parent = self.client.get_run(parent_run_id)
        self._children: dict[str, str] = {}

    @property
    def parent_id(self) -> str:
        return self.parent.info.run_id

    def child(self, name: str) -> str:
        """The run id of child ``name`` of the parent, created when it does not exist yet."""
        if name in self._children:
            return self._children[name]
        found = self.client.search_runs(
            [self.parent.info.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{self.parent_id}' and attributes.run_name = '{name}'",
            max_results=1)
        if found:
            run_id = found[0].info.run_id
        else:
            tags = {"mlflow.parentRunId": self.parent_id,
                    KIND_TAG: kind(name),
                    **{k: v for k, v in self.parent.data.tags.items() if k in ("env", "kedro_session_id")}}
            run_id = self.client.create_run(self.parent.info.experiment_id, run_name=name, tags=tags).info.run_id
        self._children[name] = run_id
        return run_id

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        log_metric_batch(self.client, run_id, [(k, v, step) for k, v in metrics.items()])

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        """Parameters of a child; one already logged with the same value is skipped (MLflow refuses a change)."""
        from mlflow.entities import Param

        have = self.client.get_run(run_id).data.params
        new = [Param(k, v) for k, v in flat_params(params).items() if k not in have]
        changed = [k for k, v in flat_params(params).items() if k in have and have[k] != v]
        if changed:
            logger.warning("MLflow run %s keeps its first value of %s", run_id, ", ".join(changed[:5]))
        for i in range(0, len(new), 100):
            self.client.log_batch(run_id, params=new[i:i + 100])

    def log_gold(self, gold: Mapping[str, Any]) -> list[str]:
        """Every model's gold measurements into its child; returns the children written."""
        written = []
        for model, metrics in gold_by_child(gold).items():
            self.log_metrics(self.child(model), metrics)
            written.append(model)
        return written

    def end(self, status: str = "FINISHED") -> None:
        """End every child of the parent still running, whichever layout created it (the training launcher
        creates the children of the models it trains)."""
        running = self.client.search_runs(
            [self.parent.info.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{self.parent_id}' and attributes.status = 'RUNNING'")
        for run_id in {*self._children.values(), *(r.info.run_id for r in running)}:
            self.client.set_terminated(run_id, status=status)
        self._children.clear()


def log_metric_batch(client, run_id: str, metrics: Iterable[tuple]) -> None:
    """``(key, value, step)`` triples, or ``(key, value, step, timestamp_ms)`` where a metric was measured
    before it is logged, into the run ``run_id``, in MLflow's ``log_batch`` calls of at most 1,000 (one call
    per metric costs about 3 ms on the local SQLite store, a batch about 0.1 ms per metric)."""
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    batch = [Metric(key=m[0], value=float(m[1]), timestamp=int(m[3]) if len(m) > 3 else now, step=int(m[2]))
             for m in metrics]
    for i in range(0, len(batch), 1000):  # MLflow's log_batch limit
        client.log_batch(run_id, metrics=batch[i:i + 1000])


def dataset_input(records: Iterable[dict] | Any, name: str, source: str):
    """An :class:`mlflow.data` dataset of ``records`` (a DataFrame or a list of dicts) with its digest,
    named ``name``, read from ``source`` (a path)."""
    import mlflow.data
    import pandas as pd

    frame = records if isinstance(records, pd.DataFrame) else pd.DataFrame(list(records))
    # nested cells (chat messages) as JSON text: MLflow's digest and schema take flat columns
    frame = frame.map(lambda v: v if isinstance(v, (str, int, float, bool)) or v is None else _json(v))
    with _quiet_dataset_warnings():
        return mlflow.data.from_pandas(frame, source=str(source), name=name)


@contextmanager
def _quiet_dataset_warnings():
    """MLflow's dataset warnings that say nothing about the data: a local path matches its local-artifact
    source twice (it picks that one); an integer column's schema hint is for model serving."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted in multiple ways")
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer column")
        yield


def _json(value: Any) -> str:
    import json

    try:
        return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    except TypeError:
        return str(value)


def log_dataset(client, run_id: str, dataset, context: str) -> None:
    """``mlflow.log_input`` for a run given by id (the fluent call only reaches the active run)."""
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    with _quiet_dataset_warnings():  # the schema is inferred here
        entity = dataset._to_mlflow_entity()
    client.log_inputs(run_id, datasets=[DatasetInput(entity, tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)])])
