"""The training launcher's guarantees: what each fine-tuning mode trains, committed checkpoints and
resume after kill -9, the NaN guard, and stop tokens of the saved model."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from kowen_kedro.data.prompts import select_languages
from kowen_kedro.training.checkpoints import CHECKPOINT_MARKER, committed_checkpoints, prepare_resume, remove_checkpoints
from kowen_kedro.training.finetuning import check_optimizer, freeze_all_but_attention, lora_config, parameter_counts

ROOT = Path(__file__).resolve().parents[1]
ATTN = ("q_proj", "k_proj", "v_proj", "o_proj")


def _dims(cfg):
    h, layers = cfg.hidden_size, cfg.num_hidden_layers
    head = h // cfg.num_attention_heads
    return h, layers, cfg.num_attention_heads * head, cfg.num_key_value_heads * head


# ---------------------------------------------------------------- what is trained

def test_attention_only_trains_exactly_the_attention_projections(tiny_models):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_models["models"]["base"])
    h, layers, q_out, kv_out = _dims(model.config)
    n = freeze_all_but_attention(model)
    # Qwen2 attention: q, k, v with bias, o without: per layer h*q + q + 2*(h*kv + kv) + q*h
    expected = layers * (h * q_out + q_out + 2 * (h * kv_out + kv_out) + q_out * h)
    assert n == expected == parameter_counts(model)["trainable_params"]
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {
        f"model.layers.{i}.self_attn.{proj}.{kind}"
        for i in range(layers) for proj in ATTN for kind in ("weight", "bias") if not (proj == "o_proj" and kind == "bias")
    }
    assert parameter_counts(model)["total_params"] == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("kind", ["sft", "reward"])
def test_lora_trains_rank_8_q_v_adapters_and_a_new_reward_head(kind, tiny_models):
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    path = tiny_models["models"]["base"]
    model = (AutoModelForSequenceClassification.from_pretrained(path, num_labels=1) if kind == "reward"
             else AutoModelForCausalLM.from_pretrained(path))
    h, layers, q_out, kv_out = _dims(model.config)
    peft_model = get_peft_model(model, lora_config(kind))
    r = 8  # XL-Instruct: rank 8 on q and v
    expected = layers * (r * (h + q_out) + r * (h + kv_out)) + (h if kind == "reward" else 0)  # + score head copy
    assert parameter_counts(peft_model)["trainable_params"] == expected
    names = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert all(("lora_" in n and ("q_proj" in n or "v_proj" in n)) or "score" in n for n in names)
    assert lora_config("sft", {"r": 16}).r == 16 and lora_config("sft").target_modules == {"q_proj", "v_proj"}


def test_bitsandbytes_optimizers_need_a_gpu():
    with pytest.raises(ValueError, match="needs a CUDA GPU"):
        check_optimizer("paged_adamw_8bit", cuda_available=False)
    check_optimizer("adamw_torch", cuda_available=False)
    check_optimizer(None, cuda_available=False)


def test_cpu_training_does_not_compile_deepspeeds_shared_memory_op():
    """A clean machine has no compiled ``deepspeed_shm_comm``; building it on CPU took minutes and was OOM-killed in CI."""
    import importlib

    from kowen_kedro.training.entry import skip_cpu_inference_kernels

    ds_torch = importlib.import_module("deepspeed.comm.torch")  # `from deepspeed.comm import torch` is torch itself
    skip_cpu_inference_kernels()
    assert ds_torch.build_shm_op() is None


def test_precision_and_trainer_defaults(tmp_path):
    from kowen_kedro.training.entry import build_config, precision_flags
    from kowen_kedro.training.spec import LaunchSpec

    assert precision_flags("auto", cuda=True, bf16_supported=True) == {"bf16": True, "fp16": False}
    assert precision_flags("auto", cuda=False, bf16_supported=False) == {"bf16": False, "fp16": False}
    assert precision_flags("fp16", cuda=True, bf16_supported=True) == {"bf16": False, "fp16": True}
    with pytest.raises(ValueError, match="precision must be"):
        precision_flags("int8", cuda=True, bf16_supported=True)
    spec = LaunchSpec(kind="sft", model="m", train_file="t", output_dir=str(tmp_path),
                      trainer_args={"per_device_train_batch_size": 4}, global_batch_size=128, world_size=4)
    cfg = build_config(spec)
    assert cfg.gradient_accumulation_steps == 8 and cfg.logging_nan_inf_filter is False
    assert (cfg.save_strategy, cfg.save_total_limit) == ("steps", 2)
    with pytest.raises(ValueError, match="keep at least 2 checkpoints"):
        build_config(LaunchSpec(kind="sft", model="m", train_file="t", output_dir=str(tmp_path),
                                trainer_args={"save_total_limit": 1}))
    with pytest.raises(ValueError, match="needs a CUDA GPU"):
        build_config(LaunchSpec(kind="sft", model="m", train_file="t", output_dir=str(tmp_path),
                                trainer_args={"optim": "paged_adamw_8bit"}))


def test_select_languages_gives_the_clo_baselines():
    df = pd.DataFrame({"language": ["en", "ko", "en", "ja"], "x": [1, 2, 3, 4]})
    assert list(select_languages(df, "all", "en", "ko")["x"]) == [1, 2, 3, 4]
    assert list(select_languages(df, ["source", "target"], "en", "ko")["x"]) == [1, 2, 3]  # SFT
    assert list(select_languages(df, "source", "en", "ko")["x"]) == [1, 3]  # SFT-eng
    assert list(select_languages(df, ["target"], "en", "ko")["x"]) == [2]  # SFT-tgt
    with pytest.raises(ValueError, match=r"no rows in languages \['zh'\]"):
        select_languages(df, ["zh"], "en", "ko")


# ---------------------------------------------------------------- checkpoints

def _checkpoint(out: Path, step: int, committed: bool) -> Path:
    folder = out / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    (folder / "trainer_state.json").write_text("{}")
    if committed:
        (folder / CHECKPOINT_MARKER).write_text(json.dumps({"global_step": step}))
    return folder


def test_resume_picks_the_newest_committed_checkpoint_and_drops_torn_ones(tmp_path):
    for step, committed in ((2, True), (10, True), (12, False), (100, False)):
        _checkpoint(tmp_path, step, committed)
    (tmp_path / "checkpoint-notanumber").mkdir()
    assert prepare_resume(tmp_path) == tmp_path / "checkpoint-10"  # numeric order, not lexical
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-10", "checkpoint-2", "checkpoint-notanumber"]
    assert committed_checkpoints(tmp_path) == [tmp_path / "checkpoint-2", tmp_path / "checkpoint-10"]
    assert remove_checkpoints(tmp_path) == 2 and prepare_resume(tmp_path) is None
    assert prepare_resume(tmp_path / "missing") is None


# ---------------------------------------------------------------- stop tokens

def qwen_base_like(tiny_models, dest: Path) -> Path:
    """A copy of the tiny base that ships Qwen2.5-base's mismatch: EOS <|endoftext|>, template ends turns with <|im_end|>."""
    from transformers import AutoTokenizer, GenerationConfig

    shutil.copytree(tiny_models["models"]["base"], dest)
    tok = AutoTokenizer.from_pretrained(dest)
    tok.eos_token = "<|endoftext|>"
    tok.save_pretrained(dest)
    GenerationConfig(eos_token_id=tok.convert_tokens_to_ids("<|endoftext|>"), do_sample=False).save_pretrained(dest)
    (dest / ".kowen_model_id").unlink(missing_ok=True)
    return dest


def test_generation_config_gets_the_templates_end_of_turn(tiny_models, tmp_path):
    from transformers import AutoTokenizer, GenerationConfig

    from kowen_kedro.training.generation_config import end_of_turn_token_id, finalize_generation_config

    base = qwen_base_like(tiny_models, tmp_path / "base")
    tok = AutoTokenizer.from_pretrained(base)
    im_end, endoftext = tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")
    assert end_of_turn_token_id(tok) == im_end != tok.eos_token_id == endoftext
    out = tmp_path / "final"
    out.mkdir()
    (out / "config.json").write_text((base / "config.json").read_text())
    finalize_generation_config(out, tok, base_model=str(base))
    saved = GenerationConfig.from_pretrained(out)
    assert saved.eos_token_id == [im_end, endoftext] and saved.pad_token_id == tok.pad_token_id
    assert saved.do_sample is False  # the base's other settings are kept


class ForceTokenAt:
    """Logits processor: the ``position``-th new token is ``token_id`` (greedy otherwise)."""

    def __init__(self, prompt_len: int, position: int, token_id: int):
        self.prompt_len, self.position, self.token_id = prompt_len, position, token_id

    def __call__(self, input_ids, scores):
        if input_ids.shape[1] - self.prompt_len == self.position:
            scores[:] = float("-inf")
            scores[:, self.token_id] = 0.0
        return scores


def _generate_new_tokens(model_dir: Path, generation_config=None) -> list[int]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LogitsProcessorList

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    prompt = tok.apply_chat_template([{"role": "user", "content": "Hello?"}], add_generation_prompt=True, return_tensors="pt")
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    with torch.no_grad():
        out = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=12, do_sample=False,
                             generation_config=generation_config,
                             logits_processor=LogitsProcessorList([ForceTokenAt(prompt.shape[1], 3, im_end)]))
    return out[0, prompt.shape[1]:].tolist()


# ---------------------------------------------------------------- launches (slow)

def _sft_file(tmp_path: Path, n: int = 16) -> str:
    rows = [{"messages": [{"role": "user", "content": f"Question {i}?"}, {"role": "assistant", "content": f"Answer number {i}."}]}
            for i in range(n)]
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _child_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


@pytest.mark.slow
def test_kill_9_mid_training_then_resume_matches_an_uninterrupted_run(tiny_models, tmp_path, monkeypatch):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    from kowen_kedro.training.launcher import launch
    from kowen_kedro.training.spec import LaunchSpec, zero_config

    monkeypatch.setenv("PYTHONPATH", _child_env()["PYTHONPATH"])  # the children import tests.helpers
    base = qwen_base_like(tiny_models, tmp_path / "qwen-base-like")
    spec_args = dict(
        kind="sft", model=str(base), train_file=_sft_file(tmp_path),
        # 16 rows / (2 per device x 2 grad-acc x 1 process) = 4 steps per epoch, x 3 epochs = 12 steps
        trainer_args={"num_train_epochs": 3, "learning_rate": 1e-3, "per_device_train_batch_size": 2, "max_length": 64,
                      "assistant_only_loss": True, "save_steps": 2},
        global_batch_size=4, deepspeed=zero_config(3), world_size=1,
        callbacks=[{"class": "tests.helpers.train_callbacks:SlowDown", "kwargs": {"seconds": 0.6}}],
    )
    reference = launch(LaunchSpec(**spec_args, output_dir=str(tmp_path / "reference")))
    assert reference["metrics"]["global_step"] == 12 and reference["metrics"]["resumed_from_step"] == 0

    spec = LaunchSpec(**spec_args, output_dir=str(tmp_path / "run"))
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(spec.to_json())
    code = ("import sys; from kowen_kedro.training.launcher import launch; from kowen_kedro.training.spec import LaunchSpec; "
            "launch(LaunchSpec.from_json(open(sys.argv[1]).read()))")
    proc = subprocess.Popen([sys.executable, "-c", code, str(spec_file)], cwd=ROOT, env=_child_env(),
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out = Path(spec.output_dir)
    deadline = time.time() + 300
    while time.time() < deadline and not any(int(p.name.split("-")[1]) >= 4 for p in committed_checkpoints(out)):
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the launcher, deepspeed and its worker: no cleanup runs
    proc.wait()
    assert not (out / "_COMPLETE.json").exists() and not (out / "final").exists()
    last = committed_checkpoints(out)[-1]
    last_step = int(last.name.split("-")[1])
    assert 4 <= last_step < 12
    torn = out / "checkpoint-99"  # a save cut short: files but no commit marker
    torn.mkdir()
    (torn / "trainer_state.json").write_text("{}")

    record = launch(spec)  # same spec, same folder: resumes
    log = (out / "train.log").read_text()
    assert "removing incomplete checkpoint" in log and f"resuming from committed checkpoint {last}" in log
    assert record["metrics"]["resumed_from_step"] == last_step and record["metrics"]["global_step"] == 12
    assert not list(out.glob("checkpoint-*"))  # deleted once the final model was saved

    resumed = AutoModelForCausalLM.from_pretrained(record["final_dir"])
    uninterrupted = AutoModelForCausalLM.from_pretrained(reference["final_dir"])
    initial = AutoModelForCausalLM.from_pretrained(base)
    for (name, a), (_, b) in zip(resumed.named_parameters(), uninterrupted.named_parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)
    assert any(not torch.equal(a, c) for a, c in zip(resumed.parameters(), initial.parameters()))

    # the saved model stops at the template's end of turn, although its base's EOS was <|endoftext|>
    tok = AutoTokenizer.from_pretrained(record["final_dir"])
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert GenerationConfig.from_pretrained(record["final_dir"]).eos_token_id[0] == im_end
    new = _generate_new_tokens(Path(record["final_dir"]))
    assert new[-1] == im_end and len(new) == 4  # stopped right after the forced end of turn
    with_base_config = _generate_new_tokens(Path(record["final_dir"]), GenerationConfig.from_pretrained(base))
    assert len(with_base_config) > 4  # the base's EOS alone runs past it


@pytest.mark.slow
def test_a_warm_launch_trains_the_same_bytes_as_deepspeeds_launcher(tiny_models, tmp_path, caplog, monkeypatch):
    """A one-process launch on a CPU forks from the warm interpreter (the training libraries imported once),
    runs under DeepSpeed with the rank environment its launcher sets, and writes the same model, byte for
    byte, as a launch through DeepSpeed's launcher; the launch's wall time and its overhead are recorded.
    Neither leaves an Arrow copy of its data behind: not in the datasets library's cache (the fresh
    interpreter of the launcher's launch reads its folder from the environment), not in the run's folder."""
    import logging

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_datasets"))

    from kowen_kedro.training.launcher import launch
    from kowen_kedro.training.spec import LaunchSpec, zero_config

    args = dict(kind="sft", model=tiny_models["models"]["base"], train_file=_sft_file(tmp_path),
                trainer_args={"num_train_epochs": 1, "learning_rate": 1e-3, "per_device_train_batch_size": 4, "max_length": 64},
                global_batch_size=4, deepspeed=zero_config(3), world_size=1)
    with caplog.at_level(logging.INFO, logger="kowen_kedro.training.launcher"):
        warm = launch(LaunchSpec(**args, output_dir=str(tmp_path / "warm")))
        cold = launch(LaunchSpec(**args, output_dir=str(tmp_path / "cold")), warm=False)
    said = caplog.text
    assert "in a child of the warm interpreter (deepspeed rank environment" in said
    assert "deepspeed.launcher.launch" in said  # the cold one
    warm_log = (tmp_path / "warm" / "train.log").read_text()
    assert "DeepSpeed initialised: rank 0 of 1 (ZeRO-3)" in warm_log  # DeepSpeed drives the warm child
    for name in ("model.safetensors", "config.json", "generation_config.json", "tokenizer.json"):
        assert (Path(warm["final_dir"]) / name).read_bytes() == (Path(cold["final_dir"]) / name).read_bytes(), name
    assert warm["metrics"]["train_loss"] == cold["metrics"]["train_loss"]
    for record in (warm, cold):
        assert record["launch_seconds"] > record["metrics"]["train_runtime"] > 0
        inside = record["metrics"]["train_runtime"] + record["metrics"].get("eval_runtime", 0.0)
        assert record["launch_overhead_seconds"] == pytest.approx(record["launch_seconds"] - inside, abs=2e-3)
        on_disk = json.loads((Path(record["final_dir"]).parent / "_COMPLETE.json").read_text())
        assert on_disk["launch_seconds"] == record["launch_seconds"]
    assert not (tmp_path / "hf_datasets").exists() or not any((tmp_path / "hf_datasets").iterdir())
    assert [p.name for p in (tmp_path / "warm").iterdir() if "datasets" in p.name] == []
    assert [p.name for p in (tmp_path / "cold").iterdir() if "datasets" in p.name] == []


@pytest.mark.slow
def test_kill_9_during_two_concurrent_launches_then_the_rerun_resumes_both(tiny_models, tmp_path):
    """``kill -9`` of a run (the process alone, as an OOM killer does) while two launches train side by side:
    the launches die with it (none goes on writing into its folder), and the rerun resumes each from its last
    committed checkpoint to the same end as an uninterrupted launch (12 steps)."""
    work = tmp_path / "work"
    work.mkdir()
    cmd = [sys.executable, "-m", "tests.helpers.two_launches", tiny_models["models"]["base"], str(work)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not all(committed_checkpoints(work / n) and
                                             int(committed_checkpoints(work / n)[-1].name.split("-")[1]) >= 4 for n in "ab"):
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.2)
    assert proc.poll() is None, "the launches did not reach a checkpoint in time"
    os.kill(proc.pid, signal.SIGKILL)  # the run only: its launches must not outlive it
    proc.wait()
    time.sleep(3)
    sizes = {n: (work / n / "train.log").stat().st_size for n in "ab"}
    time.sleep(3)
    assert {n: (work / n / "train.log").stat().st_size for n in "ab"} == sizes  # nothing trains on
    assert not any((work / n / "_COMPLETE.json").exists() for n in "ab")
    last = {n: int(committed_checkpoints(work / n)[-1].name.split("-")[1]) for n in "ab"}

    subprocess.run(cmd, cwd=ROOT, env=_child_env(), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    records = json.loads((work / "records.json").read_text())
    for n in "ab":
        assert records[n]["metrics"]["resumed_from_step"] == last[n] >= 4
        assert records[n]["metrics"]["global_step"] == 12


def test_only_one_process_on_one_node_without_cuda_forks_from_the_warm_interpreter():
    from kowen_kedro.training.warm import eligible, rank_env

    assert eligible(1, 1, None, cuda=False)
    assert not eligible(2, 1, None, cuda=False) and not eligible(1, 1, None, cuda=True) and not eligible(1, 1, "hosts", cuda=False)
    env = rank_env({"A": "1"}, "deepspeed", 29511)
    assert env == {"A": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29511", "WORLD_SIZE": "1", "CROSS_RANK": "0",
                   "CROSS_SIZE": "1", "LOCAL_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0"}
    assert rank_env({"A": "1"}, "python", 29511) == {"A": "1"}


@pytest.mark.slow
def test_injected_nan_stops_every_rank_before_it_is_saved(tiny_models, tmp_path, monkeypatch):
    import torch
    from safetensors.torch import load_file

    from kowen_kedro.training.launcher import TrainingLaunchError, launch
    from kowen_kedro.training.spec import LaunchSpec, zero_config

    monkeypatch.setenv("PYTHONPATH", _child_env()["PYTHONPATH"])
    spec = LaunchSpec(
        kind="sft", model=tiny_models["models"]["base"], train_file=_sft_file(tmp_path), output_dir=str(tmp_path / "run"),
        trainer_args={"num_train_epochs": 2, "learning_rate": 1e-3, "per_device_train_batch_size": 2, "max_length": 64,
                      "save_steps": 1},
        global_batch_size=4, deepspeed=zero_config(3), world_size=2,
        # NaN on rank 0 only, from the 3rd optimizer step: rank 1's own loss stays finite at that step
        callbacks=[{"class": "tests.helpers.train_callbacks:InjectNaN", "kwargs": {"at_step": 2, "rank": 0}}],
    )
    with pytest.raises(TrainingLaunchError) as err:
        launch(spec)
    assert err.value.returncode != 0
    assert err.value.cause.startswith("NonFiniteLossError: training loss is not finite")
    assert "at optimizer step 3" in err.value.cause and "Last committed checkpoint: checkpoint-2" in err.value.cause
    out = Path(spec.output_dir)
    assert [p.name for p in committed_checkpoints(out)] == ["checkpoint-1", "checkpoint-2"]
    assert not (out / "checkpoint-3").exists() and not (out / "_COMPLETE.json").exists()
    weights = load_file(str(out / "checkpoint-2" / "model.safetensors"))
    assert all(torch.isfinite(t).all() for t in weights.values())


# ---------------------------------------------------------------- throughput benchmark

def test_flops_per_token_of_a_qwen2_5_0_5b_shape():
    from transformers import Qwen2Config

    from kowen_kedro.training.throughput import dpo_flops_per_token, matmul_params, peak_tflops, train_flops_per_token

    cfg = Qwen2Config(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                      num_key_value_heads=2, vocab_size=151936)
    # per layer: q, o 896x896 each; k, v 896x128 each; gate/up/down 896x4864 each; + LM head 896 x 151936
    per_layer = 2 * 896 * 896 + 2 * 896 * 128 + 3 * 896 * 4864
    assert per_layer == 14_909_440
    assert matmul_params(cfg) == 24 * per_layer + 896 * 151936 == 493_961_216  # Qwen2.5-0.5B: "0.49B" params
    assert train_flops_per_token(cfg, 2048) == 6 * 493_961_216 + 12 * 24 * 896 * 2048 == 3_492_249_600
    assert dpo_flops_per_token(cfg, 2048) == pytest.approx(3_492_249_600 * 4 / 3)
    assert peak_tflops("NVIDIA H100 80GB HBM3") == 989.4 and peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert peak_tflops("cpu") is None


@pytest.mark.slow
def test_throughput_benchmark_counts_the_tokens_trl_trains_on(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import train_throughput

    results = train_throughput.main(["--shape", "micro", "--kinds", "sft", "--steps", "4", "--warmup", "1",
                                     "--seq-len", "48", "--batch", "2", "--work", str(tmp_path), "--out", str(tmp_path / "r.json")])
    (r,) = results
    assert r["steps_timed"] == 3 and r["seconds_per_step"] > 0
    assert r["tokens_per_s"] == pytest.approx(2 * 48 / r["seconds_per_step"])
    assert r["mfu"] is None  # no known peak on CPU
    # TRL's own token count of the run: 4 steps x 2 sequences x 48 tokens (every sequence truncated to seq-len)
    import ast

    logged = [ast.literal_eval(line[line.index("{"): line.rindex("}") + 1]) for line in
              (tmp_path / "run-sft" / "train.log").read_text().splitlines() if "'num_tokens'" in line]
    assert logged[-1]["num_tokens"] == 4 * 2 * 48
    assert json.loads((tmp_path / "r.json").read_text()) == results
    # --auto: the settings chosen for the device (on a CPU, as for an H100: a 64-wide model needs no
    # partitioning, so one process without DeepSpeed), the same data and steps: the same mean loss
    (auto,) = train_throughput.main(["--shape", "micro", "--kinds", "sft", "--steps", "4", "--warmup", "1", "--seq-len", "48",
                                     "--batch", "2", "--work", str(tmp_path / "auto"), "--out", str(tmp_path / "a.json"), "--auto"])
    assert (auto["path"], auto["launcher"], auto["zero_stage"], auto["per_device_batch"]) == ("auto", "python", None, 2)
    assert r["loss"] is not None and auto["loss"] == pytest.approx(r["loss"], rel=1e-3)
    # variable-length chats packed without padding: tokens are TRL's count of those trained on, at most the
    # packed blocks' capacity; the kernels and attention chosen on this CPU are the defaults
    (packed,) = train_throughput.main(["--shape", "micro", "--kinds", "sft", "--steps", "4", "--warmup", "1", "--seq-len", "48",
                                       "--batch", "2", "--work", str(tmp_path / "packed"), "--out", str(tmp_path / "p.json"),
                                       "--auto", "--data", "variable", "--packing"])
    assert (packed["data"], packed["packing"], packed["kernels"], packed["attn_implementation"]) == ("variable", True, "none", None)
    assert 0.5 * 2 * 48 < packed["tokens_per_step"] <= 2 * 48


@pytest.mark.slow
def test_gpu_inference_benchmark_measures_what_it_says(tmp_path, vllm_python):
    """The inference benchmark's CPU smoke run: every request of the transformers backend generates
    exactly the asked number of new tokens (EOS suppressed), vLLM's engine serves its requests, every RM
    row and QE segment is scored, and the JSON holds the printed rows."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import gpu_inference

    out = tmp_path / "inf.json"
    results = gpu_inference.main(["--shape", "micro", "--qe-shape", "micro", "--quick", "--out", str(out)])
    gen = [r for r in results["rows"] if r["what"] == "generation"]
    assert [(r["batch"], r["requests"]) for r in gen] == [(1, 1), (4, 4)]
    assert all(r["generated_tokens"] == r["requests"] * 8 for r in gen)
    assert all(r["tokens_per_s"] == pytest.approx(r["generated_tokens"] / r["seconds"]) for r in gen)
    (served,) = [r for r in results["rows"] if r["what"] == "vllm_generation"]  # vLLM's environment: make test builds it
    assert "skipped" not in served and served["requests"] == 8 and served["engine_start_s"] > 0
    assert 0 < served["generated_tokens"] <= 8 * 8 and served["tokens_per_s"] == pytest.approx(served["generated_tokens"] / served["seconds"])
    (rm,) = [r for r in results["rows"] if r["what"] == "rm_scoring"]
    assert rm["rows"] == 8 and rm["tokens"] > 8 * 2 * 16  # prompt and completion of > 16 tokens each
    (qe,) = [r for r in results["rows"] if r["what"] == "qe_scoring"]
    assert qe["segments"] == 16 and qe["segments_per_s"] == pytest.approx(16 / qe["seconds"])
    assert json.loads(out.read_text()) == results
