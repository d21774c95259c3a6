"""Training launches through deepspeed: a 2-process ZeRO-3 run, reuse of a finished run, failures reported."""

import json
from pathlib import Path

import pytest

from kowen_kedro.training.launcher import TrainingLaunchError, launch
from kowen_kedro.training.spec import LaunchSpec, zero_config

pytestmark = pytest.mark.slow


def sft_records():
    return [
        {"messages": [{"role": "user", "content": f"Question {i}?"}, {"role": "assistant", "content": f"Answer number {i}."}]}
        for i in range(16)
    ]


def test_two_process_zero3_attention_only_sft_trains_saves_and_is_reused(tiny_models, tmp_path):
    from transformers import AutoModelForCausalLM

    from kowen_kedro.training.finetuning import freeze_all_but_attention

    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in sft_records()))
    spec = LaunchSpec(
        kind="sft", model=tiny_models["models"]["base"], train_file=str(train), output_dir=str(tmp_path / "run"),
        trainer_args={"num_train_epochs": 1, "learning_rate": 1e-3, "per_device_train_batch_size": 2, "max_length": 64,
                      "assistant_only_loss": True},
        global_batch_size=8, deepspeed=zero_config(3), world_size=2, finetuning="attention_only",
    )
    record = launch(spec)
    log = (tmp_path / "run" / "train.log").read_text()
    assert "world_size=2" in log or "WORLD_SIZE=2" in log or "dist_world_size=2" in log
    assert record["metrics"]["train_loss"] > 0
    final = Path(record["final_dir"])
    before = AutoModelForCausalLM.from_pretrained(tiny_models["models"]["base"])
    after = AutoModelForCausalLM.from_pretrained(final)  # gathered ZeRO-3 weights, full shapes
    changed = {n for (n, a), (_, b) in zip(before.named_parameters(), after.named_parameters()) if not (a == b).all()}
    assert all(a.shape == b.shape for a, b in zip(before.parameters(), after.parameters()))
    attention = {n for n, _ in before.named_parameters() if ".self_attn." in n}
    assert changed and changed <= attention  # nothing outside attention moved under ZeRO-3 either
    # the count is taken on the ZeRO-3-partitioned model (ds_numel), and equals the unpartitioned one
    assert record["metrics"]["trainable_params"] == freeze_all_but_attention(before)
    assert json.loads((final / "generation_config.json").read_text())["eos_token_id"]
    log_size = len(log)
    assert launch(spec) == record  # same spec + data: not relaunched
    assert len((tmp_path / "run" / "train.log").read_text()) == log_size


def test_failed_child_raises_with_exit_code_and_log_tail(tiny_models, tmp_path):
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in sft_records()))
    spec = LaunchSpec(
        kind="sft", model=tiny_models["models"]["base"], train_file=str(train), output_dir=str(tmp_path / "bad"),
        trainer_args={"no_such_trl_field": 1},
    )
    with pytest.raises(TrainingLaunchError) as err:
        launch(spec, launcher="python")
    assert err.value.returncode != 0
    assert "no_such_trl_field" in str(err.value)
    assert not (tmp_path / "bad" / "_COMPLETE.json").exists()


def test_a_crash_after_the_completion_marker_keeps_the_result(tmp_path, monkeypatch, caplog):
    """The child wrote its final model and marker, then died tearing down: the result stands; before that it fails."""
    import sys

    from kowen_kedro.training import launcher

    spec = LaunchSpec(kind="sft", model="m", train_file="t.jsonl", output_dir=str(tmp_path / "run"))
    marker = {"fingerprint": spec.fingerprint(), "final_dir": str(spec.final_dir), "metrics": {"global_step": 4}}
    code = ("import os, pathlib, sys; out = pathlib.Path(sys.argv[1]); "
            "(out / 'final').mkdir(); (out / '_COMPLETE.json').write_text(sys.argv[2]); "
            "print('terminate called without an active exception', flush=True); os._exit(250)")
    monkeypatch.setattr(launcher, "build_command", lambda *a: [sys.executable, "-c", code, spec.output_dir, json.dumps(marker)])
    with caplog.at_level("WARNING"):
        record = launcher.launch(spec, warm=False)  # DeepSpeed's launcher path (its command replaced)
    assert record["metrics"] == {"global_step": 4} and "exited with code 250 after it completed" in caplog.text

    other = LaunchSpec(kind="sft", model="m", train_file="t.jsonl", output_dir=str(tmp_path / "other"))
    monkeypatch.setattr(launcher, "build_command", lambda *a: [sys.executable, "-c", "import os; os._exit(250)"])
    with pytest.raises(TrainingLaunchError) as err:
        launcher.launch(other, warm=False)
    assert err.value.returncode == 250
