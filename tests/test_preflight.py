"""`kedro preflight`: parameter counts from the shipped configurations, memory per GPU against DeepSpeed's
formulas worked by hand and against the peaks measured on a GPU, consistency checks, and the command."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, preflight_group, stage_group, training_group

from kowen_kedro.training import preflight as pf

GIB = 1024 ** 3


def recipe(env: str | None = None, **overrides) -> dict:
    """The resolved parameters of ``env`` over conf/base with ``overrides`` as ``--params`` gives them
    (``training={"world_size": 1}``)."""
    from kowen_kedro.parameters import recipe_params

    return recipe_params(ROOT / "conf", env, overrides)


def test_parameter_counts_come_from_the_shipped_configurations_on_the_meta_device():
    # the published counts: Qwen2.5-7B 7.61B, 72B 72.7B, Llama-3.1-8B 8.03B, 70B 70.6B, CometKiwi-XL's encoder 3.5B
    assert pf.model_shape("Qwen/Qwen2.5-7B").params == 7_615_616_512
    assert pf.model_shape("Qwen/Qwen2.5-72B-Instruct").params == 72_706_203_648
    assert pf.model_shape("meta-llama/Llama-3.1-8B-Instruct").params == 8_030_261_248
    assert pf.model_shape("meta-llama/Llama-3.1-70B-Instruct").params == 70_553_706_496
    assert pf.model_shape("Unbabel/wmt23-cometkiwi-da-xl", head="encoder").params == pytest.approx(3.48e9, rel=0.01)
    seven = pf.model_shape("Qwen/Qwen2.5-7B")
    assert seven.largest_layer == 152064 * 3584  # an (untied) embedding, the largest single module
    # a reward model: the scalar score head replaces the 152064 x 3584 LM head
    assert pf.model_shape("Qwen/Qwen2.5-7B", head="score").params == seven.params - 152064 * 3584 + 3584


def test_every_model_the_shipped_recipes_name_has_a_configuration():
    shipped = set(pf.shipped_models())
    for env in ("kowen_7b", "clo", "xl_instruct"):
        for role, ref in recipe(env)["models"].items():
            if ref.startswith(("tiny:", "world:")) or ref.startswith("gpt-"):
                continue
            assert ref in shipped, f"conf/{env}: models.{role} = {ref} has no configuration in {pf.MODEL_CONFIGS}"


def test_model_states_follow_deepspeeds_estimators_worked_by_hand():
    seven = pf.model_shape("Qwen/Qwen2.5-7B")
    n, largest = seven.params, seven.largest_layer
    # ZeRO-3, 4 GPUs, no offload: 4 bytes x the largest layer + 18 bytes x parameters / GPUs -> about 34 GiB
    zero3 = pf.model_states_bytes(n, 0, largest, 4, 1, 3, False, False)
    assert zero3 == 4 * largest + int(18 * n / 4)
    assert 33.5 < zero3 / GIB < 34.5
    # ZeRO-2, 4 GPUs: 2 bytes of bf16 weights + 18 / GPUs; nothing partitioned (stage 0) on one GPU: 20 bytes each
    assert pf.model_states_bytes(n, 0, largest, 4, 1, 2, False, False) == 2 * n + int(18 * n / 4)
    assert pf.model_states_bytes(n, 0, largest, 4, 1, 0, False, False) == 20 * n
    # frozen weights add 2 bytes each, partitioned under ZeRO-3
    lora = pf.trainable_params(seven, "lora")
    assert pf.model_states_bytes(lora, n - lora, largest, 4, 1, 3, False, False) == \
        4 * largest + int(18 * lora / 4) + int(2 * (n - lora) / 4)


def test_trainable_parameters_match_the_model_itself():
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    cfg = pf.model_config("Qwen/Qwen2.5-0.5B")
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(Qwen2Config(**{k: v for k, v in cfg.items() if k != "model_type"}))
    shape = pf.model_shape("Qwen/Qwen2.5-0.5B")
    attention = sum(p.numel() for name, p in model.named_parameters() if ".self_attn." in name)
    assert pf.trainable_params(shape, "attention_only") == attention
    assert pf.trainable_params(shape, "full") == sum(p.numel() for p in model.parameters())
    # LoRA rank 8 on q and v: 24 layers x 8 x ((896 + 896) + (896 + 128))
    assert pf.trainable_params(shape, "lora") == 24 * 8 * (1792 + 1024)
    assert pf.trainable_params(shape, "lora", {"r": 16, "target_modules": ["q_proj"]}) == 24 * 16 * 1792


def test_activations_per_token_worked_by_hand():
    shape = pf.model_shape("Qwen/Qwen2.5-0.5B")  # h 896, 2 KV heads of 64, MLP 4864, 24 layers
    per_layer = 20 * 896 + 4 * 128 + 8 * 4864
    assert pf.activation_bytes_per_token(shape, False) == 24 * per_layer
    assert pf.activation_bytes_per_token(shape, True) == 24 * 2 * 896 + per_layer


#: (shape, kind, micro-batch of sequences of 2048 tokens, peak GiB measured on one H100: docs/benchmarks.md, bf16,
#: ZeRO-3 on one GPU, no gradient checkpointing, DPO holding its reference model)
MEASURED_PEAKS = [("Qwen/Qwen2.5-0.5B", "sft", 8, 30.6), ("Qwen/Qwen2.5-0.5B", "dpo", 4, 31.5),
                  ("Qwen/Qwen2.5-1.5B", "sft", 4, 47.8), ("Qwen/Qwen2.5-1.5B", "dpo", 2, 50.7)]


@pytest.mark.parametrize("model,kind,batch,measured", MEASURED_PEAKS)
def test_training_memory_is_within_ten_percent_of_the_measured_peak(model, kind, batch, measured):
    params = recipe(training={"world_size": 1, "gpu": "h100-80gb", "deepspeed": {"zero_stage": 3}})
    stage = pf.size_training(pf.Stage("bench", "training", model), pf.model_shape(model), pf.Settings.from_params(params),
                             trainer_args={"per_device_train_batch_size": batch, "max_length": 2048, "gradient_checkpointing": False},
                             global_batch=None, finetuning="full", lora=None, sequences_per_row=2 if kind == "dpo" else 1,
                             reference=kind == "dpo", rows=None, rows_basis="", epochs=1, flops_kind=kind)
    assert stage.memory_gib_per_gpu == pytest.approx(measured, rel=0.10)
    assert stage.fits and not stage.problems


def test_kowen_7b_fits_four_a100s_with_every_stage_present():
    stages = pf.plan(recipe("kowen_7b"), ROOT)
    by_name = {s.stage: s for s in stages}
    assert {"data_synthesis.teacher", "translation_qe.translate.translator", "translation_qe.qe", "reward_model.reward_model",
            "sft.sft", "dpo_iter_1.sampling", "dpo_iter_1.scoring", "dpo_iter_1.training", "dpo_iter_2.training",
            "evaluation.generation", "evaluation.judge"} <= set(by_name)
    assert not [s.problems for s in stages if s.problems]
    assert all(s.fits for s in stages if s.kind != "api")
    sft = by_name["sft.sft"]
    # zero_stage auto: ZeRO-2 on 4 GPUs (2 + 18 / 4 bytes per parameter) fits, so no per-layer gathers of ZeRO-3
    assert (sft.params, sft.gpus, sft.zero_stage, sft.launcher) == (7_615_616_512, 4, 2, "deepspeed")
    assert sft.model_states_gib == pytest.approx((2 + 18 / 4) * 7_615_616_512 / GIB)
    assert sft.tokens == 1_100_000 * 2048  # the mixture's 1.1M rows at half of max_length 4096
    zero3 = next(s for s in pf.plan(recipe("kowen_7b", training={"deepspeed": {"zero_stage": 3}}), ROOT) if s.stage == "sft.sft")
    assert zero3.zero_stage == 3 and zero3.model_states_gib == pytest.approx(34.0, rel=0.05)
    teacher = by_name["data_synthesis.teacher"]
    assert teacher.tensor_parallel == 4 and teacher.weights_gib == pytest.approx(72_706_203_648 * 2 / 4 / GIB)
    assert 33 < teacher.weights_gib < 35 and teacher.concurrent_sequences >= 1
    assert teacher.kv_cache_gib == pytest.approx(80 * 0.9 - teacher.weights_gib - 2.0)
    # GPU-hours: FLOPs at the measured MFU of the nearest measured shape (1.5B SFT: 15.2%) on the A100's 312 TFLOP/s,
    # a third more where gradient checkpointing recomputes the forward
    assert sft.gpu_hours == pytest.approx(sft.tflop * 1e12 / (312e12 * 0.152) / 3600 * (4 / 3 if sft.gradient_checkpointing else 1))
    assert sft.cost == pytest.approx(sft.gpu_hours * 2.0)


def test_a_stage_that_cannot_fit_names_the_figure_and_what_would_fit():
    stages = pf.plan(recipe("kowen_7b", training={"world_size": 1, "deepspeed": {"zero_stage": 0}}), ROOT)
    sft = next(s for s in stages if s.stage == "sft.sft")
    assert sft.fits is False and sft.memory_gib_per_gpu > 140  # 20 bytes x 7.6B parameters alone
    assert "needs 143.5 GiB per GPU" in sft.problems[0] and "2 GPUs (training.world_size: 2, ZeRO-3)" in sft.problems[0]
    assert "LoRA" in sft.problems[0]


def test_inconsistent_batches_lengths_and_tensor_parallelism_are_problems():
    params = recipe("kowen_7b")
    params["sft"]["global_batch_size"] = 100  # not a multiple of 4 per device x 4 GPUs
    params["sft"]["trainer_args"]["per_device_train_batch_size"] = 4
    params["dpo_iter_1"]["dpo"]["trainer_args"]["max_length"] = 200_000  # Qwen2.5-7B has 131072 positions
    params["data_synthesis"]["teacher"]["backend"]["tensor_parallel_size"] = 3  # 64 heads, 8 KV heads
    problems = {s.stage: " ".join(s.problems) for s in pf.plan(params, ROOT) if s.problems}
    assert "global_batch_size=100 is not a positive multiple" in problems["sft.sft"]
    assert "max_length 200000 is over the model's 131072 positions" in problems["dpo_iter_1.training"]
    assert "tensor_parallel_size 3 does not divide the model's 64 attention heads" in problems["data_synthesis.teacher"]


def test_a_mixture_asking_for_more_rows_than_the_run_makes_is_a_problem():
    """kowen_7b's 400K Korean single-turn rows come from 500K translated prompts (80% kept by the QE filter);
    with base's 40 the run would stop at the mixture after the teacher's hours."""
    assert not pf.mixture_supply(*_supply_args(recipe("kowen_7b")))
    short = recipe("kowen_7b", translation_qe={"prompts": {"max_prompts": 40}},
                   data_synthesis={"multi_turn": {"max_conversations": 1000}})
    problems = next(s for s in pf.plan(short, ROOT) if s.stage == "sft.sft").problems
    assert problems == [
        "data_synthesis.mixture.sizes.target_multi_turn asks 400000 conversations, data_synthesis.multi_turn.max_conversations "
        "makes at most 1000: raise it or lower the size",
        "data_synthesis.mixture.sizes.target_single_turn asks 400000 target-language prompts, the run makes at most 32: "
        "translation_qe.prompts.max_prompts 40 translated, 0.8 of them kept by the QE filter, + 0 native "
        "(preflight.rows.native_target_prompts): raise translation_qe.prompts.max_prompts to 500000, count the native "
        "prompts in preflight.rows.native_target_prompts, or lower the size"]
    # native target-language prompts of the ingested data count: 40 x 0.8 + 399968 is enough
    assert not pf.mixture_supply(*_supply_args(recipe("kowen_7b", translation_qe={"prompts": {"max_prompts": 40}},
                                                      preflight={"rows": {"native_target_prompts": 399_968}})))
    # shares (the tiny default's 1.0 of each part) ask for no number of rows
    assert not pf.mixture_supply(*_supply_args(recipe(None)))


def _supply_args(params: dict) -> tuple:
    from kowen_kedro.groups import DataSynthesis, TranslationQE

    return DataSynthesis.of(params["data_synthesis"]), TranslationQE.of(params["translation_qe"]), pf.Settings.from_params(params)


def test_a_model_without_a_configuration_is_a_problem_naming_where_to_put_one():
    params = recipe("kowen_7b")
    params["models"]["student"] = "org/unknown-13b"
    sft = next(s for s in pf.plan(params, ROOT) if s.stage == "sft.sft")
    assert "no configuration for model 'org/unknown-13b'" in sft.problems[0] and "org--unknown-13b.json" in sft.problems[0]


def test_rows_at_hand_count_the_newest_version(tmp_path):
    folder = tmp_path / "data/05_model_input/sft_dataset.jsonl"
    for version, lines in (("2026-01-01T00.00.00.000Z", 3), ("2026-02-01T00.00.00.000Z", 5)):
        (folder / version).mkdir(parents=True)
        (folder / version / "sft_dataset.jsonl").write_text("{}\n" * lines)
    assert pf.rows_at_hand(tmp_path, "data/05_model_input/sft_dataset.jsonl") == 5
    stage = next(s for s in pf.plan(recipe(), tmp_path) if s.stage == "sft.sft")
    assert stage.rows == 5 and "counted in data/05_model_input/sft_dataset.jsonl" in " ".join(stage.basis)


@pytest.mark.slow
def test_kedro_preflight_prints_json_exits_one_naming_the_stage_and_logs_to_mlflow(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "pyproject.toml", project / "pyproject.toml")
    shutil.copy(ROOT / ".telemetry", project / ".telemetry")
    shutil.copytree(ROOT / "conf", project / "conf", ignore=shutil.ignore_patterns("local"))
    (project / "conf" / "local").mkdir()
    (project / "src").mkdir()
    kedro = [sys.executable, "-m", "kedro", "preflight", "--env", "kowen_7b"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    ok = subprocess.run(kedro + ["--json"], cwd=project, capture_output=True, text=True, env=env, timeout=300)
    assert ok.returncode == 0, ok.stderr[-3000:]
    stages = json.loads(ok.stdout)
    keys = {"stage", "model", "params", "gpus", "zero_stage", "tensor_parallel", "model_states_gib", "activations_gib",
            "weights_gib", "kv_cache_gib", "memory_gib_per_gpu", "fits", "tokens", "gpu_hours", "cost"}
    assert all(keys <= set(s) for s in stages) and "sft.sft" in {s["stage"] for s in stages}
    bad = subprocess.run(kedro + ["--params", "training.world_size=1,training.deepspeed.zero_stage=0"], cwd=project,
                         capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode == 1
    assert "  sft.sft: needs 143.5 GiB per GPU, the a100-80gb has 80 GiB" in bad.stderr
    assert "| sft.sft | Qwen/Qwen2.5-7B | 7.62B | 1 | ZeRO-0 x1 +GC |" in bad.stdout
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("kowen_kedro").experiment_id])
    assert sorted(r.info.run_name for r in runs) == ["preflight · kowen_7b", "preflight · kowen_7b"]
    failing = next(r for r in runs if r.data.metrics["preflight/stages_not_fitting"] > 0)
    table = client.download_artifacts(failing.info.run_id, "preflight/preflight.md", str(tmp_path))
    assert "sft.sft" in open(table).read()


def settings_for(world_size: int, zero_stage="auto", launcher="deepspeed", gpu="a100-80gb") -> pf.Settings:
    return pf.Settings.of(training_group(world_size=world_size, launcher=launcher, gpu=gpu, deepspeed={"zero_stage": zero_stage}),
                          preflight_group())


def test_auto_settings_take_the_lowest_zero_stage_no_checkpointing_and_the_largest_batch_that_fit():
    seven = pf.model_shape("Qwen/Qwen2.5-7B")
    auto = {"per_device_train_batch_size": "auto", "gradient_checkpointing": "auto", "max_length": 4096}

    def choose(s, args=auto, global_batch=128, finetuning="full", reference=False, sequences=1):
        return pf.choose_settings(seven, s, args, global_batch, finetuning, None, sequences, reference)

    # 4 x A100 80GB: ZeRO-2 fits (49 GiB of states); without checkpointing one 4096-token sequence (24 GiB of
    # activations) fits beside them, two do not
    four = choose(settings_for(4))
    assert (four["zero_stage"], four["gradient_checkpointing"], four["per_device_train_batch_size"]) == (2, False, 1)
    budget = (80 - 2) * GIB
    fits = lambda z, gc, m: pf.training_bytes(seven, settings_for(4), z, m, 4096, gc, "full", None, 1, False) <= budget  # noqa: E731
    assert fits(2, False, 1) and not fits(2, False, 2)
    # one GPU, LoRA: no partitioning, the one-process launcher, and the largest batch dividing 128 that fits
    one = choose(settings_for(1, launcher="auto"), finetuning="lora")
    assert one["zero_stage"] == 0 and one["launcher"] == "python" and one["gradient_checkpointing"] is False
    m = one["per_device_train_batch_size"]
    lora_fits = lambda m, gc=False: pf.training_bytes(seven, settings_for(1), 0, m, 4096, gc, "lora", None, 1, False) <= budget  # noqa: E731
    assert 128 % m == 0 and lora_fits(m) and not lora_fits(2 * m)
    # full fine-tuning on one GPU cannot fit at all: ZeRO-3 under DeepSpeed is the last resort, reported by the preflight
    assert choose(settings_for(1, launcher="auto"))["launcher"] == "deepspeed"
    # values the recipe sets are kept
    fixed = choose(settings_for(4, zero_stage=3), {"per_device_train_batch_size": 2, "gradient_checkpointing": True, "max_length": 4096})
    assert (fixed["zero_stage"], fixed["per_device_train_batch_size"], fixed["gradient_checkpointing"], fixed["auto"]) == (3, 2, True, [])


def test_the_training_child_receives_the_auto_settings(monkeypatch, tmp_path):
    """What the launch spec (the training child's input) holds when the recipe says auto, for a model given
    as a local folder with its config.json."""
    from kowen_kedro.training import stages

    launched = {}
    monkeypatch.setattr(stages, "launch", lambda spec, launcher, warm=True: launched.update(spec=spec, launcher=launcher) or {"final_dir": "x"})
    model = tmp_path / "qwen7b"
    model.mkdir()
    shutil.copy(pf.MODEL_CONFIGS / "Qwen--Qwen2.5-7B.json", model / "config.json")
    training = training_group(launcher="deepspeed", world_size=4, gpu="a100-80gb", gradient_checkpointing="auto",
                              deepspeed={"zero_stage": "auto", "offload_optimizer": "none", "offload_param": "none"},
                              work_dir=str(tmp_path / "runs"))
    stage = stage_group(trainer_args={"per_device_train_batch_size": "auto", "max_length": 4096, "precompute_ref_log_probs": True},
                        global_batch_size=128)
    stages.train_stage("dpo", "dpo_iter_1", str(model), [{"prompt": "p", "chosen": "a", "rejected": "b"}], stage, training,
                       preflight_cfg=preflight_group())
    spec = launched["spec"]
    assert launched["launcher"] == "deepspeed" and spec.deepspeed["zero_optimization"]["stage"] == 2
    assert spec.trainer_args["per_device_train_batch_size"] == 8 and spec.trainer_args["gradient_checkpointing"] is True
    assert spec.trainer_args["precompute_ref_log_probs"] is True and spec.global_batch_size == 128
    # a recipe without auto launches exactly what it says
    stages.train_stage("sft", "sft", str(model), [{"messages": []}], stage_group(trainer_args={"per_device_train_batch_size": 4}),
                       training_group(launcher="deepspeed", world_size=4, gradient_checkpointing=None, work_dir=str(tmp_path / "runs")),
                       preflight_cfg=preflight_group())
    assert launched["spec"].deepspeed["zero_optimization"]["stage"] == 3
    assert launched["spec"].trainer_args == {"per_device_train_batch_size": 4}


def test_zero3_across_gpus_overlaps_communication_and_keeps_small_parameters_resident():
    from kowen_kedro.training.entry import zero3_across_gpus
    from kowen_kedro.training.spec import zero_config

    config = zero_config(3)
    tuned = zero3_across_gpus(config, cuda=True, world_size=4)["zero_optimization"]
    assert tuned["overlap_comm"] is True and tuned["stage3_param_persistence_threshold"] == "auto"
    assert tuned["stage3_prefetch_bucket_size"] == "auto" and tuned["reduce_bucket_size"] == "auto"
    assert zero3_across_gpus(config, cuda=False, world_size=4) is config  # a CPU: nothing to overlap
    assert zero3_across_gpus(config, cuda=True, world_size=1) is config
    assert zero3_across_gpus(zero_config(2), cuda=True, world_size=4)["zero_optimization"]["overlap_comm"] is False
