"""The MLflow layout (kowen_kedro.tracking, the layout hook, the metrics dataset, the training callback)
on a local store: names, child runs, tags, inputs."""

from __future__ import annotations

import json
import time

import pytest

from conftest import end_active_runs

from kowen_kedro.tracking import dotted, flat_params, gold_by_child, kind, metric_key


@pytest.fixture
def store(tmp_path, monkeypatch):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    end_active_runs()
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    monkeypatch.chdir(tmp_path)
    yield mlflow.tracking.MlflowClient(tracking_uri=uri)
    end_active_runs()
    mlflow.set_tracking_uri(previous)


def test_names_are_grouped_with_slashes_and_read_back():
    assert metric_key("gold.sft.ko.vs_base.se") == "gold/sft/ko/vs_base/se"
    assert dotted({"gold/sft/ko": 0.5, "train/loss": 1.0}) == {"gold.sft.ko": 0.5, "train.loss": 1.0}
    assert (kind("rm_transfer_source"), kind("translator"), kind("dpo_iter_3")) == ("reward_model", "translator", "policy")


def test_gold_metrics_go_to_their_model_under_shared_names():
    gold = {"sft.en": 0.5, "sft.ko.fidelity": {"value": 0.9, "step": 0}, "dpo_iter_1.ko.vs_sft.se": 0.02,
            "rm.accuracy.ko.unsafe": 1.0, "qe.spearman": 0.6, "best_of_k.gain": 0.1, "judge.agreement": 0.8,
            "sft.en.n": float("nan"), "teacher.en": True}
    assert gold_by_child(gold) == {"sft": {"gold/en": 0.5, "gold/ko/fidelity": 0.9},
                                   "dpo_iter_1": {"gold/ko/vs_sft/se": 0.02}, "rm": {"gold/accuracy/ko/unsafe": 1.0}}


def test_nested_hyper_parameters_flatten_to_dotted_params():
    assert flat_params({"trainer_args": {"beta": 0.1, "loss_type": ["sigmoid"]}, "lora": {}, "seed": 0, "x": None}) == {
        "trainer_args.beta": "0.1", "trainer_args.loss_type": "['sigmoid']", "seed": "0"}


def test_children_are_found_by_name_tagged_and_ended_with_the_parent(store):
    from kowen_kedro.tracking import KIND_TAG, RunLayout

    exp = store.create_experiment("kowen_kedro")
    parent = store.create_run(exp, run_name="base · en-ko · seed 0", tags={"kedro_session_id": "s1"}).info.run_id
    layout = RunLayout(parent)
    sft = layout.child("sft")
    assert RunLayout(parent).child("sft") == sft  # a second launch of the stage: the same child
    written = layout.log_gold({"sft.en": 0.5, "rm.accuracy.en": 0.75})
    layout.log_params(sft, {"trainer_args": {"beta": 0.1}})
    layout.log_params(sft, {"trainer_args": {"beta": 0.2}, "seed": 1})  # a changed value keeps the first
    layout.end()
    children = {r.info.run_name: r for r in store.search_runs([exp]) if r.info.run_id != parent}
    assert sorted(written) == sorted(children) == ["rm", "sft"]
    for name, run in children.items():
        assert run.data.tags["mlflow.parentRunId"] == parent and run.info.status == "FINISHED"
        assert run.data.tags["kedro_session_id"] == "s1"
    assert (children["sft"].data.tags[KIND_TAG], children["rm"].data.tags[KIND_TAG]) == ("policy", "reward_model")
    assert children["sft"].data.metrics == {"gold/en": 0.5} and children["rm"].data.metrics == {"gold/accuracy/en": 0.75}
    assert children["sft"].data.params == {"trainer_args.beta": "0.1", "seed": "1"}
    second = store.create_run(exp).info.run_id
    other = RunLayout(second)
    assert other.child("sft") != sft  # children belong to their parent
    launched = RunLayout(second).child("dpo_iter_1")  # made by another layout (the training launcher's)
    other.end("FAILED")
    assert store.get_run(other.child("sft")).info.status == "FAILED"
    assert store.get_run(launched).info.status == "FAILED"  # every running child ends with the parent
    assert store.get_run(sft).info.status == "FINISHED"  # another parent's child is left alone


def test_the_metrics_dataset_logs_slash_names_and_loads_its_own(store):
    import mlflow

    from kowen_kedro.datasets import MlflowMetricsDataset

    mlflow.set_experiment("kowen_kedro")
    with mlflow.start_run() as run:
        gold = MlflowMetricsDataset(prefix="gold")
        gold.save({"sft.en": {"value": 0.5, "step": 0}, "sft.en.se": {"value": 0.1, "step": 0}})
        MlflowMetricsDataset(prefix="translation_qe.m_alpacaeval").save({"kept": {"value": 3.0, "step": 0}})
        MlflowMetricsDataset(prefix="gold_x").save({"a": {"value": 1.0, "step": 0}})
        loaded = MlflowMetricsDataset(prefix="gold", run_id=run.info.run_id).load()
    assert store.get_run(run.info.run_id).data.metrics == {"gold/sft/en": 0.5, "gold/sft/en/se": 0.1,
                                                           "translation_qe/m_alpacaeval/kept": 3.0, "gold_x/a": 1.0}
    assert set(loaded) == {"gold/sft/en", "gold/sft/en/se"}  # not gold_x's


def test_the_metrics_dataset_logs_what_kedro_mlflow_logs_in_batches(store, monkeypatch):
    """The same metric histories (keys, values, steps) as kedro-mlflow's own save, values with steps and lists of
    them, in MLflow's batch calls: no call per metric; nothing with logging switched off."""
    import mlflow
    from kedro_mlflow.io.metrics import MlflowMetricsHistoryDataset
    from mlflow.tracking import MlflowClient

    from kowen_kedro.datasets import MlflowMetricsDataset

    data = {"sft.en": {"value": 0.5, "step": 0}, "loss": [{"value": 3.0, "step": 0}, {"value": 2.5, "step": 1}],
            **{f"many.m{i}": {"value": float(i), "step": 2} for i in range(1203)}}  # more than one batch of 1,000
    mlflow.set_experiment("kowen_kedro")
    with mlflow.start_run() as theirs:
        MlflowMetricsHistoryDataset(prefix="gold").save(data)
    with mlflow.start_run() as ours:
        with monkeypatch.context() as patched:
            patched.setattr(MlflowClient, "log_metric", lambda *a, **k: pytest.fail("one call per metric"))
            MlflowMetricsDataset(prefix="gold").save(data)
        off = MlflowMetricsDataset(prefix="off")
        off._logging_activated = False
        off.save({"a": {"value": 1.0, "step": 0}})

    def histories(run_id):
        keys = store.get_run(run_id).data.metrics
        return {k: sorted((m.step, m.value) for m in store.get_metric_history(run_id, k)) for k in keys}

    from kowen_kedro.tracking import metric_key

    expected = {metric_key(k): v for k, v in histories(theirs.info.run_id).items()}
    assert len(expected) == 1205 and expected["gold/loss"] == [(0, 3.0), (1, 2.5)]
    assert histories(ours.info.run_id) == expected


def child_tags(store, experiment_id, parent_id) -> dict:
    (child,) = [r for r in store.search_runs([experiment_id]) if r.data.tags.get("mlflow.parentRunId") == parent_id]
    return {k: v for k, v in child.data.tags.items() if k in ("env", "kedro_session_id")}


class _Catalog:
    def __init__(self, **datasets):
        self.datasets = datasets

    def load(self, name):
        return self.datasets[name]


class _Pipeline:
    def __init__(self, outputs, n=3):
        self.nodes, self._outputs = [object()] * n, set(outputs)

    def all_outputs(self):
        return self._outputs


def test_the_layout_hook_names_the_run_cleans_its_tags_and_fans_out_gold(store):
    import time

    import mlflow
    import pandas as pd

    from kowen_kedro.hooks import MlflowLayoutHook, run_name
    from kowen_kedro.tracking import EXPERIMENT_KIND

    params = {"source_language": "en", "target_language": "ko", "tiny_world": {"seed": 2}}
    assert run_name({"env": None, "pipeline_names": ["__default__"]}, params) == "base · en-ko · seed 2"
    assert run_name({"env": "clo", "pipeline_names": ["sft"], "node_names": ["a"]}, params) == "clo · en-ko · seed 2 · sft · partial"

    exp = mlflow.set_experiment("kowen_kedro")
    hook = MlflowLayoutHook()
    hook.SYSTEM_METRICS_INTERVAL = 0.2
    with mlflow.start_run(run_name="__default__") as run:  # as kedro-mlflow starts it, with its tags
        # "None" is what kedro-mlflow records for `kedro run` without --runner (Kedro then runs its default)
        mlflow.set_tags({"runner": "None", "run_id": "2026-12-03T19.00.00.000Z"})
        hook.before_pipeline_run({"env": None, "pipeline_names": ["__default__"]}, _Catalog(parameters=params))
        hook.after_dataset_loaded("gold_prompts", pd.DataFrame({"id": [1, 2], "turns": [["a"], ["b"]]}))
        hook.after_dataset_loaded("gold_prompts", pd.DataFrame({"id": [1, 2], "turns": [["a"], ["b"]]}))  # once
        hook.after_dataset_saved("sft_dataset", pd.DataFrame({"messages": [[{"role": "user", "content": "x"}]]}))
        hook.after_dataset_saved("prompts_metrics", {"x": {"value": 1.0, "step": 0}})  # not an input
        hook.after_dataset_saved("gold_metrics", {"sft.ko": {"value": 0.5, "step": 0}, "qe.spearman": {"value": 0.6, "step": 0}})
        deadline = time.time() + 60  # until the monitor has logged a sample (late on a loaded machine)
        while time.time() < deadline and "system/cpu_utilization_percentage" not in mlflow.get_run(run.info.run_id).data.metrics:
            time.sleep(0.2)
        md = "# Claims\n\n| claim | held |\n|---|---|\n| a | yes |\n\n## Gold decomposed\n..."
        hook.after_pipeline_run(_Pipeline({"gold_effects_md"}), _Catalog(gold_effects_md=md))
    parent = store.get_run(run.info.run_id)
    tags = parent.data.tags
    assert tags["mlflow.runName"] == "base · en-ko · seed 2" and tags["runner"] == "SequentialRunner"
    assert tags["kedro_session_id"] == "2026-12-03T19.00.00.000Z" and "run_id" not in tags and tags["env"] == "base"
    assert child_tags(store, exp.experiment_id, run.info.run_id) == {"env": "base", "kedro_session_id": "2026-12-03T19.00.00.000Z"}
    assert tags["mlflow.note.content"].startswith("# Claims\n\n| claim | held |") and "Gold decomposed" not in tags["mlflow.note.content"]
    assert store.get_experiment(exp.experiment_id).tags[EXPERIMENT_KIND[0]] == EXPERIMENT_KIND[1]
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= set(parent.data.metrics)
    assert hook._monitor is None  # stopped with the run
    inputs = {(d.dataset.name, [t.value for t in d.tags][0]) for d in parent.inputs.dataset_inputs}
    assert inputs == {("gold_prompts", "world"), ("sft_dataset", "training")}
    (child,) = [r for r in store.search_runs([exp.experiment_id]) if r.info.run_id != run.info.run_id]
    assert (child.info.run_name, child.info.status, child.data.metrics) == ("sft", "FINISHED", {"gold/ko": 0.5})


def test_a_training_launch_logs_into_the_parent_and_its_models_child(store, tmp_path, monkeypatch):
    """The callback of the training child writes ``<stage>/<key>`` into the parent and ``train/<key>`` into
    the trained model's child (gathered, written at a checkpoint); the launcher gives that child the launch's parameters and training data,
    and for a launch that completed before, its final metrics."""
    from types import SimpleNamespace

    from kowen_kedro.training import entry
    from kowen_kedro.training.entry import mlflow_callback
    from kowen_kedro.training.launcher import track_launch
    from kowen_kedro.training.spec import LaunchSpec

    exp = store.create_experiment("kowen_kedro")
    parent = store.create_run(exp).info.run_id
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"prompt": p, "completion": "c"}) + "\n" for p in ("a", "b")))
    spec = LaunchSpec(kind="reward", model="m", train_file=str(train), output_dir=str(tmp_path / "out"),
                      trainer_args={"learning_rate": 1e-4}, mlflow_prefix="reward_model", mlflow_run_id=parent,
                      mlflow_tracking_uri=store.tracking_uri)
    child = track_launch(spec)
    callback = mlflow_callback(spec.mlflow_prefix, parent, store.tracking_uri, child)
    before = int(time.time() * 1000)
    callback.on_log(None, SimpleNamespace(is_world_process_zero=True, global_step=5), None,
                    logs={"loss": 0.7, "rewards/chosen": 1.5, "epoch": 1.0, "note": "text"})
    assert store.get_run(child).data.metrics == {}  # gathered: written every FLUSH_SECONDS and at each checkpoint
    callback.on_save(None, None, None)
    run = store.get_run(child)
    (loss,) = store.get_metric_history(child, "train/loss")
    assert before <= loss.timestamp <= int(time.time() * 1000)  # the time it was logged at
    assert run.info.run_name == "rm" and run.data.tags["mlflow.parentRunId"] == parent
    assert run.data.metrics == {"train/loss": 0.7, "train/rewards/chosen": 1.5, "train/epoch": 1.0}
    assert store.get_metric_history(child, "train/loss")[0].step == 5
    assert store.get_run(parent).data.metrics == {"reward_model/loss": 0.7, "reward_model/rewards/chosen": 1.5,
                                                  "reward_model/epoch": 1.0}
    assert run.data.params["trainer_args.learning_rate"] == "0.0001" and run.data.params["kind"] == "reward"
    (data,) = run.inputs.dataset_inputs
    assert data.dataset.name == "reward_model_train" and json.loads(data.dataset.profile)["num_rows"] == 2

    # every FLUSH_SECONDS a logged step is written at once; the end of training writes what is left
    monkeypatch.setattr(entry, "FLUSH_SECONDS", 0.0)
    callback.on_log(None, SimpleNamespace(is_world_process_zero=True, global_step=6), None, logs={"loss": 0.6})
    assert [m.value for m in store.get_metric_history(child, "train/loss")] == [0.7, 0.6]
    monkeypatch.setattr(entry, "FLUSH_SECONDS", 3600.0)
    callback.on_log(None, SimpleNamespace(is_world_process_zero=True, global_step=7), None, logs={"loss": 0.5})
    assert len(store.get_metric_history(parent, "reward_model/loss")) == 2
    callback.on_train_end(None, None, None)
    assert [(m.step, m.value) for m in store.get_metric_history(parent, "reward_model/loss")] == [(5, 0.7), (6, 0.6), (7, 0.5)]

    reused = track_launch(LaunchSpec(kind="sft", model="m", train_file=str(train), output_dir="x", mlflow_prefix="sft",
                                     mlflow_run_id=parent, mlflow_tracking_uri=store.tracking_uri),
                          done={"metrics": {"train_loss": 0.25, "final_dir": "x"}})
    assert store.get_run(reused).data.metrics == {"train/train_loss": 0.25}
    # tracking trouble never stops training: no such parent, no child, no error
    assert track_launch(LaunchSpec(kind="sft", model="m", train_file=str(train), output_dir="x", mlflow_run_id="0" * 32,
                                   mlflow_tracking_uri=store.tracking_uri)) is None
