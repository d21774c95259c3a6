"""Launch specs, batch arithmetic, DeepSpeed config, model-folder dataset."""

import base64
import json

import pytest
from kedro.io import DatasetError
from kedro.io.core import Version

from conftest import preflight_group, stage_group, training_group

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
    from kowen_kedro.groups import DeepSpeed, GroupError

    cfg = deepspeed_config(DeepSpeed(zero_stage=3, offload_optimizer="cpu", offload_param="none"))
    assert cfg["zero_optimization"]["stage"] == 3
    assert cfg["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    assert cfg["zero_optimization"]["offload_optimizer"] == {"device": "cpu"}
    assert cfg["train_batch_size"] == "auto"
    with pytest.raises(GroupError) as err:
        DeepSpeed.of({"stage": 3, "offload_optimizer": "cpu", "offload_param": "none"})
    assert err.value.problems == [("training.deepspeed.stage", "unknown key"),
                                  ("training.deepspeed.zero_stage", "missing (conf/base sets every key of this group)")]
    assert "stage3_gather_16bit_weights_on_model_save" not in zero_config(2)["zero_optimization"]


def test_unknown_stage_parameter_fails_before_launch():
    from conftest import stage_group
    from kowen_kedro.groups import GroupError

    with pytest.raises(GroupError, match=r"sft.learning_rate: unknown key"):
        stage_group(learning_rate=1e-5)


def test_commands_single_node_multi_node_and_python(tmp_path):
    from pathlib import Path

    spec = LaunchSpec(kind="sft", model="m", train_file="t", output_dir="o", world_size=2)
    cmd = build_command(Path("s.json"), spec)
    assert cmd[1:4] == ["-u", "-m", "deepspeed.launcher.launch"]  # DeepSpeed's per-node launcher, as its runner starts it
    world_info = next(a for a in cmd if a.startswith("--world_info=")).split("=", 1)[1]
    assert json.loads(base64.urlsafe_b64decode(world_info)) == {"localhost": [0, 1]}  # two local ranks
    assert "--master_addr=127.0.0.1" in cmd
    assert cmd[-4:] == ["--module", "kowen_kedro.training.entry", "--spec", "s.json"]
    with pytest.raises(ValueError, match="one process"):
        build_command(Path("s.json"), spec, launcher="python")
    hosts = tmp_path / "hostfile"
    hosts.write_text("node-a slots=4\nnode-b slots=4\n")
    multi = LaunchSpec(kind="sft", model="m", train_file="t", output_dir="o", world_size=8, num_nodes=2, hostfile=str(hosts))
    cmd = build_command(Path("s.json"), multi)
    assert cmd[1:7] == ["--hostfile", str(hosts), "--num_nodes", "2", "--num_gpus", "4"]  # 8 processes on 2 nodes
    assert "--master_addr" not in cmd  # the first host of the hostfile is the master
    assert multi.fingerprint() == LaunchSpec(**{**multi.__dict__, "hostfile": "elsewhere"}).fingerprint()
    with pytest.raises(ValueError, match="needs a hostfile"):
        build_command(Path("s.json"), LaunchSpec(kind="sft", model="m", train_file="t", output_dir="o", world_size=8, num_nodes=2))
    with pytest.raises(ValueError, match="not a positive multiple of num_nodes"):
        build_command(Path("s.json"), LaunchSpec(kind="sft", model="m", train_file="t", output_dir="o", world_size=3, num_nodes=2, hostfile=str(hosts)))


def test_failure_cause_is_the_childs_exception_not_the_launchers():
    from kowen_kedro.training.launcher import _cause

    tail = [
        "Traceback (most recent call last):",
        "kowen_kedro.training.checkpoints.NonFiniteLossError: training loss is not finite (nan) at optimizer step 3",
        "[launch.py:335:sigkill_handler] Killing subprocess 123",
        "subprocess.CalledProcessError: Command '['python', '-u']' returned non-zero exit status 1.",
    ]
    assert _cause(tail) == "NonFiniteLossError: training loss is not finite (nan) at optimizer step 3"
    assert _cause(["all fine"]) is None


def test_stage_parameters_reach_the_spec(tmp_path, monkeypatch):
    import kowen_kedro.training.stages as stages

    seen = {}
    monkeypatch.setattr(stages, "launch", lambda spec, launcher, warm=True: seen.setdefault("spec", spec) and {"final_dir": "x"})
    training = training_group(work_dir=str(tmp_path), launcher="python", precision="bf16", gradient_checkpointing=True,
                              keep_checkpoints=True)
    stage = stage_group(trainer_args={"learning_rate": 1e-5}, callbacks=["pkg.mod:Cb"], seed=3)
    train_stage("sft", "sft", "m", [{"messages": []}], stage, training, preflight_cfg=preflight_group())
    spec = seen["spec"]
    assert spec.trainer_args == {"learning_rate": 1e-5, "gradient_checkpointing": True}
    assert (spec.precision, spec.keep_checkpoints, spec.callbacks, spec.seed) == ("bf16", True, ["pkg.mod:Cb"], 3)
    assert spec.output_dir == str(tmp_path / "sft" / spec.fingerprint())
    stage = stage_group(trainer_args={"learning_rate": 1e-5, "gradient_checkpointing": False})  # the stage's own setting wins
    seen.clear()
    train_stage("sft", "sft", "m", [{"messages": []}], stage, training, preflight_cfg=preflight_group())
    assert seen["spec"].trainer_args["gradient_checkpointing"] is False


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


# ---------------------------------------------------------------- kernels, attention, packing

def test_kernels_attention_and_packing_are_chosen_for_the_hardware():
    from kowen_kedro.training.kernels import choose_attention, choose_kernels, choose_packing, hardware_choices

    # auto: nothing on a CPU; Liger on a GPU that has it; else compiled layers, except under ZeRO-3
    assert choose_kernels("auto", cuda=False, zero_stage=None, liger_available=True) == "none"
    assert choose_kernels("auto", cuda=True, zero_stage=3, liger_available=True) == "liger"
    assert choose_kernels("auto", cuda=True, zero_stage=2, liger_available=False) == "compile"
    assert choose_kernels("auto", cuda=True, zero_stage=3, liger_available=False) == "none"
    assert choose_kernels("compile", cuda=False, zero_stage=None, liger_available=False) == "compile"  # asked for: kept
    with pytest.raises(ValueError, match=r"liger-kernel wheel .*\.\[gpu\]"):
        choose_kernels("liger", cuda=True, zero_stage=0, liger_available=False)
    with pytest.raises(ValueError, match="training.kernels 'fast': expected one of none, liger, compile, auto"):
        choose_kernels("fast", cuda=True, zero_stage=0, liger_available=True)
    assert choose_attention("auto", cuda=True, flash_available=True) == "flash_attention_2"
    assert choose_attention("auto", cuda=True, flash_available=False) is None  # the model's default (SDPA)
    assert choose_attention("auto", cuda=False, flash_available=True) is None
    assert choose_attention("sdpa", cuda=True, flash_available=True) == "sdpa"
    # packing: only where the attention keeps the packed rows apart; an explicit value is kept
    assert choose_packing("auto", "flash_attention_2") is True
    assert choose_packing("auto", None) is False and choose_packing("auto", "sdpa") is False
    assert choose_packing(True, None) is True and choose_packing(False, "flash_attention_2") is False
    assert hardware_choices("auto", "auto", "auto", cuda=True, zero_stage=0, liger_available=True, flash_available=True) == {
        "kernels": "liger", "attn_implementation": "flash_attention_2", "packing": True}


def test_the_training_child_receives_the_chosen_kernels_and_packing(tmp_path, monkeypatch):
    """What a child builds from a spec the recipe's `auto` values wrote: on this CPU nothing changes (the tiny
    default's numbers stay); on a GPU with Liger and FlashAttention, Liger's layer kernels (its loss left to TRL)
    and padding-free packing."""
    import kowen_kedro.training.kernels as kernels
    import kowen_kedro.training.stages as stages
    from kowen_kedro.training.entry import build_config

    seen = {}
    monkeypatch.setattr(stages, "launch", lambda spec, launcher, warm=True: seen.setdefault("spec", spec) and {"final_dir": "x"})
    training = training_group(work_dir=str(tmp_path), launcher="python", kernels="auto", attn_implementation="auto")
    train_stage("sft", "sft", "m", [{"messages": []}], stage_group(trainer_args={"packing": "auto", "max_length": 64}), training,
                preflight_cfg=preflight_group())
    spec = seen["spec"]
    assert (spec.kernels, spec.attn_implementation, spec.trainer_args["packing"]) == ("auto", "auto", "auto")
    spec.output_dir = str(tmp_path / "out")
    config = build_config(spec)  # this CPU
    assert (config.packing, config.padding_free, config.use_liger_kernel) == (False, False, False)

    monkeypatch.setattr(kernels, "installed", lambda module: module in ("liger_kernel", "flash_attn"))
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    from kowen_kedro.training.entry import hardware_choices

    assert hardware_choices(spec) == {"kernels": "liger", "attn_implementation": "flash_attention_2", "packing": True}
    args = _config_args(spec, monkeypatch)
    assert args["packing"] is True and args["use_liger_kernel"] is True
    assert args["liger_kernel_config"] == {"rms_norm": True, "rope": True, "swiglu": True, "cross_entropy": False,
                                           "fused_linear_cross_entropy": False}


def _config_args(spec, monkeypatch) -> dict:
    """The keyword arguments build_config passes to the TRL config class (captured, not constructed: on a
    machine without CUDA the real class refuses bf16)."""
    import trl

    captured = {}

    class Capture:
        def __init__(self, **kwargs):
            captured.update(kwargs)

    monkeypatch.setattr(trl, "SFTConfig", Capture)
    from kowen_kedro.training.entry import build_config

    build_config(spec)
    return captured


def test_compiled_decoder_layers_compute_what_the_eager_ones_do():
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from kowen_kedro.training.kernels import compile_decoder_layers

    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                                         num_key_value_heads=1, vocab_size=128)).eval()
    ids = torch.randint(0, 128, (2, 9))
    with torch.no_grad():
        eager = model(ids).logits
        assert compile_decoder_layers(model, backend="eager") == 2
        assert all(layer._compiled_call_impl is not None for layer in model.model.layers)
        compiled = model(ids).logits
    torch.testing.assert_close(compiled, eager)
    with pytest.raises(ValueError, match="no decoder layers"):
        compile_decoder_layers(torch.nn.Linear(2, 2))
