"""Launch specs, batch arithmetic, DeepSpeed config, model-folder dataset."""

import json

import pytest
from kedro.io import DatasetError
from kedro.io.core import Version

from kowen_kedro.datasets import ModelDirectoryDataset
from kowen_kedro.runtime import as_mlflow_metrics, resolve_models
from kowen_kedro.training.launcher import build_command
from kowen_kedro.training.spec import LaunchSpec, gradient_accumulation_steps, zero_config
from kowen_kedro.training.stages import deepspeed_config, train_stage


def test_gradient_accumulation_matches_kowen_dpo_setup():
    assert gradient_accumulation_steps(128, 2, 4) == 16  # Kowen DPO: 2 x 16 x 4 GPUs
    with pytest.raises(ValueError, match="not a positive multiple"):
        gradient_accumulation_steps(100, 8, 4)


def test_fingerprint_ignores_paths_but_not_data(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text('{"x": 1}\n')
    b.write_text('{"x": 1}\n')
    s1 = LaunchSpec(kind="sft", model="m", train_file=str(a), output_dir="o1")
    s2 = LaunchSpec(kind="sft", model="m", train_file=str(b), output_dir="o2")
    assert s1.fingerprint() == s2.fingerprint()
    b.write_text('{"x": 2}\n')
    assert s1.fingerprint() != s2.fingerprint()
    assert LaunchSpec.from_json(s1.to_json()) == s1


def test_zero3_config_and_keys():
    cfg = deepspeed_config({"zero_stage": 3, "offload_optimizer": "cpu"})
    assert cfg["zero_optimization"]["stage"] == 3
    assert cfg["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    assert cfg["zero_optimization"]["offload_optimizer"] == {"device": "cpu"}
    assert cfg["train_batch_size"] == "auto"
    assert deepspeed_config(None) is None
    with pytest.raises(ValueError, match="unknown training.deepspeed keys"):
        deepspeed_config({"stage": 3})
    assert "stage3_gather_16bit_weights_on_model_save" not in zero_config(2)["zero_optimization"]


def test_unknown_stage_parameter_fails_before_launch(tmp_path):
    with pytest.raises(ValueError, match="unknown stage parameters"):
        train_stage("sft", "sft", "m", [{"messages": []}], {"learning_rate": 1e-5}, {"work_dir": str(tmp_path)})


def test_commands():
    cmd = build_command(__import__("pathlib").Path("s.json"), 2)
    assert cmd[1:3] == ["--num_gpus", "2"] and cmd[-4:] == ["--module", "kowen_kedro.training.entry", "--spec", "s.json"]
    with pytest.raises(ValueError):
        build_command(__import__("pathlib").Path("s.json"), 2, launcher="python")


def _fake_model(folder, marker):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"marker": marker}))
    (folder / "model.safetensors").write_bytes(b"\0" * 16)


def test_model_directory_dataset_is_versioned(tmp_path):
    src1, src2 = tmp_path / "m1", tmp_path / "m2"
    _fake_model(src1, 1)
    _fake_model(src2, 2)
    target = str(tmp_path / "store" / "policy")
    ModelDirectoryDataset(target, version=Version(None, "2026-01-01T00.00.00.000Z")).save(str(src1))
    ModelDirectoryDataset(target, version=Version(None, "2026-01-02T00.00.00.000Z")).save(str(src2))
    latest = ModelDirectoryDataset(target, version=Version(None, None)).load()
    assert json.loads(open(f"{latest}/config.json").read()) == {"marker": 2}
    pinned = ModelDirectoryDataset(target, version=Version("2026-01-01T00.00.00.000Z", None)).load()
    assert json.loads(open(f"{pinned}/config.json").read()) == {"marker": 1}
    with pytest.raises(DatasetError, match="not a saved model folder"):
        ModelDirectoryDataset(target, version=Version(None, None)).save(str(tmp_path))


def test_resolve_models_and_metrics_helpers():
    manifest = {"models": {"teacher": "/t", "qe": "/q.ckpt"}}
    assert resolve_models(manifest, {"teacher": "tiny:teacher", "judge": "Qwen/Qwen2.5-72B-Instruct"}) == {
        "teacher": "/t", "judge": "Qwen/Qwen2.5-72B-Instruct"}
    with pytest.raises(ValueError, match="no tiny model"):
        resolve_models(manifest, {"x": "tiny:nope"})
    assert as_mlflow_metrics({"a": 1, "b": float("nan"), "c": "s", "d": True}) == {"a": {"value": 1.0, "step": 0}}


def test_model_identity_follows_content_not_path(tmp_path):
    from kowen_kedro.model_identity import ID_FILE, model_identity

    a, b = tmp_path / "a", tmp_path / "b"
    _fake_model(a, 1)
    _fake_model(b, 1)
    assert model_identity(a) == model_identity(b)  # same files, different paths
    assert (a / ID_FILE).exists()
    target = str(tmp_path / "store" / "m")
    ModelDirectoryDataset(target, version=Version(None, "2026-01-01T00.00.00.000Z")).save(str(a))
    assert model_identity(ModelDirectoryDataset(target, version=Version(None, None)).load()) == model_identity(a)
    c = tmp_path / "c"
    _fake_model(c, 2)
    assert model_identity(c) != model_identity(a)
    assert model_identity("Qwen/Qwen2.5-7B") == "Qwen/Qwen2.5-7B"
    s1 = LaunchSpec(kind="sft", model=str(a), train_file="x", output_dir="o")
    s2 = LaunchSpec(kind="sft", model=str(b), train_file="x", output_dir="o")
    assert s1.fingerprint() == s2.fingerprint()
