"""The default pipeline end to end on the built-in default, in a scratch copy of the project.

Checks every stage's output schema, the single MLflow run (params, metrics from all six stages
including the DeepSpeed children's losses, artifacts), iteration chaining, and that a rerun reuses
all finished work (no training relaunched, no LLM call repeated).
"""

import hashlib
import json
import math
import re
from pathlib import Path

import pandas as pd
import pytest

from conftest import (ROOT, finished_background_run, finished_rerun, reruns_after, scratch_project, start_busy_loop,
                      start_kedro_run)

from kowen_kedro.allocator import glibc
from kowen_kedro.tracking import dotted, parent_runs

pytestmark = pytest.mark.slow


def latest(path: Path) -> Path:
    """The newest version of a versioned dataset at ``path``."""
    return sorted(p for p in path.iterdir() if p.is_dir())[-1] / path.name


def start_default_run(root: Path):
    """The default exactly as `make run` runs it, in a scratch project at ``root`` and a process of its own at
    normal priority, started by conftest when the module is collected: the module's tests run last, the
    other tests meanwhile on the other core. The effects below are the default's."""
    return start_kedro_run(scratch_project(root), nice=0)


@pytest.fixture(scope="module")
def first_run(request, tmp_path_factory):
    project = finished_background_run(request, tmp_path_factory, "first_run")
    mp = pytest.MonkeyPatch()
    mp.chdir(project)
    yield project
    mp.undo()


def read(project: Path, rel: str) -> pd.DataFrame:
    return pd.read_json(latest(project / rel), lines=True)


def test_outputs_have_their_schemas(first_run):
    p = first_run
    prompts = read(p, "data/02_intermediate/prompts.jsonl")
    assert {"prompt_id", "language", "prompt", "conversation", "n_turns"} <= set(prompts.columns)
    assert set(prompts["language"]) == {"en", "ko"}
    translated = read(p, "data/03_primary/translated_prompts.jsonl")
    assert {"prompt_id", "source_prompt", "prompt", "language", "qe_score", "winners"} <= set(translated.columns)
    assert translated["qe_score"].between(0, 1).all() and (translated["language"] == "ko").all()
    assert all(set(w) <= {"seq2seq:mt", "llm:translator", "llm:strong_translator"} and w for w in translated["winners"])
    all_translations = read(p, "data/02_intermediate/prompt_translations.jsonl")
    ok = int(all_translations["reject_reason"].isna().sum())
    assert len(translated) == ok - math.floor(0.2 * ok)  # rejected rows, then the bottom 20%, dropped
    prefs = read(p, "data/03_primary/translated_preference_pairs.jsonl")
    assert list(prefs.columns) == ["pair_id", "source_pair_id", "language", "category", "prompt", "chosen", "rejected", "qe_score"]
    assert (prefs["language"] == "ko").all() and set(prefs["category"]) <= {"chat", "chat_hard", "safety", "reasoning"}
    clo = read(p, "data/05_model_input/clo_pairs.jsonl")
    assert list(clo.columns) == ["pair_id", "language", "x_en", "y_en", "x_l", "y_l", "qe_score"]
    assert clo["pair_id"].is_unique and len(clo) > 0
    xl_sft = read(p, "data/05_model_input/xl_instruct_sft.jsonl")
    assert all(m[0]["content"].endswith("Korean.") and m[1]["role"] == "assistant" for m in xl_sft["messages"])
    assert (p / "data/08_reporting/qe_histogram.png").stat().st_size > 1000
    xl = read(p, "data/03_primary/xl_instruct_pairs.jsonl")
    assert list(xl.columns) == ["passage_id", "instruction", "response", "raw_instruction", "refined", "finish_reason"]
    assert len(xl) > 0 and xl["instruction"].str.len().gt(0).all()
    contaminated = read(p, "data/02_intermediate/contaminated_prompts.jsonl")
    assert len(contaminated) + len(prompts) == len(read(p, "data/02_intermediate/ingested_prompts.jsonl"))
    sft = read(p, "data/05_model_input/sft_dataset.jsonl")
    assert {"messages", "language", "teacher", "n_turns", "part"} <= set(sft.columns)
    assert set(sft["part"]) == {"en_single_turn", "target_single_turn", "target_multi_turn"}
    for messages in sft["messages"]:
        assert messages[0]["role"] == "user" and messages[-1]["role"] == "assistant"
    assert sft.loc[sft["part"] == "target_multi_turn", "n_turns"].max() == 2
    completions = read(p, "data/07_model_output/dpo_iter_1/completions.jsonl")
    assert completions.groupby("prompt_id")["sample"].nunique().eq(4).all()  # k = 4
    pairs = read(p, "data/05_model_input/dpo_iter_1/preference_pairs.jsonl")
    assert list(pairs.columns) == ["prompt_id", "prompt", "chosen", "rejected", "chosen_reward", "rejected_reward"]
    assert len(pairs) > 0 and (pairs["chosen_reward"] > pairs["rejected_reward"]).all()
    assert not (p / "data/07_model_output/dpo_iter_3/completions.jsonl").exists() or read(
        p, "data/07_model_output/dpo_iter_3/completions.jsonl").empty
    judgements = read(p, "data/07_model_output/judgements.jsonl")
    assert {"id", "language", "model_position", "p_a", "preference"} <= set(judgements.columns)
    assert judgements["preference"].between(0, 1).all()
    summary = pd.read_csv(p / "data/08_reporting/evaluation_summary.csv")
    assert list(summary["language"]) == ["en", "ko", "all"]
    assert {"win_rate", "win_rate_se", "discrete_win_rate", "n", "n_dropped", "n_draws", "length_controlled_winrate",
            "lc_absent", "language_fidelity"} <= set(summary.columns)
    # no df_gamed.csv and not AlpacaEval's prompts: the LC win rate is absent and the run says why
    assert summary["length_controlled_winrate"].isna().all() and summary["lc_absent"].str.contains("df_gamed.csv").all()
    table = pd.read_csv(p / "data/08_reporting/rm_accuracy_table.csv")
    assert list(table.columns) == ["language", "chat", "chat_hard", "safety", "reasoning", "avg"]
    assert set(table["language"]) == {"en", "ko"} and not table.isna().any().any()  # every language x category
    transfer = pd.read_csv(p / "data/08_reporting/rm_transfer_table.csv")
    assert list(transfer.columns) == ["eval_language", "category", "rm_en", "rm_ko", "delta"]
    assert len(transfer) == 2 * 5 and (transfer["delta"] - (transfer["rm_en"] - transfer["rm_ko"])).abs().max() < 1e-9
    assert "| ko | delta |" in (p / "data/08_reporting/rm_transfer_table.md").read_text()
    collapse = pd.read_csv(p / "data/08_reporting/rm_collapse_table.csv")
    assert list(collapse["model"]) == ["base", "rm_en", "rm_ko"] and collapse["mean_f"].between(0.5, 1).all()
    assert (p / "data/08_reporting/rm_collapse.png").stat().st_size > 1000
    report = pd.read_csv(p / "data/08_reporting/evaluation_report.csv")
    assert {"alpacaeval", "m_alpacaeval", "xl_alpacaeval", "mt_bench", "rubric", "nlu:kowen_mc_en", "nlu:kowen_mc_ko"} <= set(report["benchmark"])
    m = read(p, "data/05_model_input/m_alpacaeval_prompts.jsonl")
    assert len(m) > 0 and (m["language"] == "ko").all() and m["id"].str.endswith("-m-ko").all()
    report_md = (p / "data/08_reporting/evaluation_report.md").read_text()
    assert "| mt_bench | turn2 |" in report_md and "| alpacaeval | discrete_win_rate |" in report_md
    assert "alpacaeval: no length-controlled win rate: no df_gamed.csv" in report_md
    curve = pd.read_csv(p / "data/08_reporting/iteration_curve.csv")
    assert sorted(curve["iteration"].unique()) == [1, 2]  # iteration 3 is disabled in the default
    assert (p / "data/08_reporting/iteration_curve.png").stat().st_size > 1000
    xl = read(p, "data/05_model_input/xl_alpacaeval_prompts.jsonl")
    assert (xl["language"] == "ko").all() and xl["instruction"].str.endswith("Korean.").all()
    grades = read(p, "data/07_model_output/mt_bench_grades.jsonl")
    assert grades["score_turn1"].between(1, 10).all() and grades["score_turn2"].between(1, 10).all()


#: what the background run's shell asks for, and the project's pins overrule: two threads and the other
#: kernel path this machine has (AVX-512 where the CPU has it, else the unvectorised one)
def other_float_settings() -> dict[str, str]:
    avx512 = "avx512f" in Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else False
    return {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2", "MKL_DYNAMIC": "TRUE", "MKL_CBWR": "AUTO",
            "ATEN_CPU_CAPABILITY": "avx512" if avx512 else "default", "DNNL_MAX_CPU_ISA": "AVX512_CORE" if avx512 else "SSE41"}


def start_reproducibility_run(root: Path):
    """The same commit and seed in another folder and process, up to the SFT data (tiny models, synthesis,
    translation with QE), started by conftest when the session starts, beside the other tests, under a
    competing load (a loop that spins a third of the time for as long as the run lasts, ten minutes at most, beside the tests that run
    meanwhile) and from a shell that asks for other float settings (:func:`other_float_settings`), which the
    project's pins (kowen_kedro.floats) overrule. It and its load run at the reruns' priority, below the tests
    and above the Japanese run: the module's second test waits for it."""
    run = start_kedro_run(scratch_project(root, raw_data=False), to_outputs=["sft_dataset"], env=other_float_settings(), nice=10)
    start_busy_loop(600, while_running=run.pid, nice=10)
    return run


CLO_NODES = ["preference_alignment.train_cross_lingual_node", "evaluation.gold_cross_lingual_node"]
DPO_ITER_1 = ["preference_alignment.dpo_iter_1.sample_completions_node", "preference_alignment.dpo_iter_1.score_completions_node",
              "preference_alignment.dpo_iter_1.build_pairs_node", "preference_alignment.dpo_iter_1.train_dpo_node",
              "evaluation.gold_dpo_iter_1_node", "evaluation.gold_effects_node"]

#: The documented reruns on top of the default run that the tests below judge (``kedro run --params ... --nodes
#: ...``), each in a copy of the default run's project: the whole default again (everything reused), CLO on half
#: the pairs and SFT on all of them, DPO iteration 1 sampled through vLLM and with another sampling seed, SFT on
#: the English part alone. One process runs them one after the other in the background, from the moment the
#: default run has finished, while the other tests run.
RERUNS = {
    "rerun": {},
    "clo_half_pairs": {"params": {"cross_lingual": {"train_fraction": 0.5, "baseline_in_same_run": False}}, "nodes": CLO_NODES},
    "clo_sft_on_all_pairs": {"params": {"cross_lingual": {"method": "sft"}}, "nodes": CLO_NODES},
    "dpo_iter_1_vllm": {"params": {"dpo_iter_1": {"dpo": {"sampling_backend": {"backend": "vllm"}}}}, "nodes": DPO_ITER_1},
    "dpo_iter_1_seed_1": {"params": {"preference_alignment": {"sampling": {"params": {"seed": 1}}}}, "nodes": DPO_ITER_1},
    "english_only_sft": {"params": {"sft": {"languages": "source"}}, "nodes": ["sft.train_sft_node", "evaluation.gold_sft_node"]},
}

BACKGROUND_RUNS = {"first_run": start_default_run, "second_run": start_reproducibility_run,
                   "reruns": reruns_after("first_run", RERUNS)}


def _rerun_fixture(name: str):
    @pytest.fixture(name=name)
    def project(request, tmp_path_factory) -> Path:
        return finished_rerun(request, tmp_path_factory, "reruns", name)

    return project


rerun, clo_half_pairs, clo_sft_on_all_pairs, dpo_iter_1_vllm, dpo_iter_1_seed_1, english_only_sft = (
    _rerun_fixture(name) for name in RERUNS)


@pytest.fixture(scope="module")
def second_run(request, tmp_path_factory):
    return finished_background_run(request, tmp_path_factory, "second_run")


def _tensors(path: Path) -> dict:
    import torch
    from safetensors.torch import load_file

    return load_file(path) if path.suffix == ".safetensors" else torch.load(path, weights_only=False)["state_dict"]


def test_same_commit_and_seed_give_the_same_models_qe_scores_and_sft_data(first_run, second_run):
    """Two runs of the default, in two folders and processes (another hash seed), one of them loaded
    and started with other thread and kernel settings: every tiny model's every weight tensor, the
    tokenizers, the QE score of every translated prompt and the SFT data are the same. (The claims
    table, which needs the whole run, is compared with the committed one made by `make effects`.)"""
    from kowen_kedro import floats

    assert f"kowen-kedro: {floats.describe()}" in (second_run / "run.log").read_text()  # this process's pins, not its shell's
    import torch

    a, b = first_run / "data/06_models/tiny", second_run / "data/06_models/tiny"

    def built(folder: Path) -> list[Path]:  # a content identity is written when a model is first used, not built
        return sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file() and p.name != ".kowen_model_id")

    files = built(a)
    assert files == built(b) and len(files) >= 35
    identities = [p.relative_to(a) for p in a.rglob(".kowen_model_id") if (b / p.relative_to(a)).exists()]
    assert len(identities) >= 2 and all((a / p).read_text() == (b / p).read_text() for p in identities)  # QE and MT at least
    compared = 0
    for rel in files:
        if rel.suffix in (".safetensors", ".ckpt"):  # every weight tensor
            left, right = _tensors(a / rel), _tensors(b / rel)
            assert left.keys() == right.keys(), rel
            different = [k for k in left if not torch.equal(left[k], right[k])]
            assert not different, f"{rel}: {len(different)} of {len(left)} tensors differ, e.g. {different[:3]}"
            compared += len(left)
        else:  # tokenizers, configs, and the manifest, which names the folder the models were built in
            assert (a / rel).read_text().replace(str(first_run), "<root>") == (b / rel).read_text().replace(str(second_run), "<root>"), rel
    assert compared > 150
    for rel in ("data/02_intermediate/prompt_translations.jsonl", "data/03_primary/translated_prompts.jsonl"):
        left, right = read(first_run, rel), read(second_run, rel)
        assert list(left["prompt_id"]) == list(right["prompt_id"]) and len(left) >= 20
        assert list(left["qe_score"].fillna(-1)) == list(right["qe_score"].fillna(-1))  # equal floats, not close ones
    assert latest(first_run / "data/05_model_input/sft_dataset.jsonl").read_bytes() == \
        latest(second_run / "data/05_model_input/sft_dataset.jsonl").read_bytes()


def test_models_are_versioned_and_iterations_chained(first_run):
    p = first_run
    for name in ("reward_model", "sft_model", "dpo_iter_1/policy", "dpo_iter_2/policy", "aligned_policy",
                 "rm_transfer_source/reward_model", "rm_transfer_target/reward_model", "cross_lingual_policy",
                 "cross_lingual_baseline_sft_model", "cross_lingual_baseline_policy"):
        assert (latest(p / "data/06_models" / name) / "config.json").exists(), name
    # CLO and its SFT+DPO baseline in the same run, both from the SFT model, on the same rows
    clo = json.loads(next((p / "data/06_models/_runs/cross_lingual").glob("*/spec.json")).read_text())
    base_sft = json.loads(next((p / "data/06_models/_runs/cross_lingual_baseline_sft").glob("*/spec.json")).read_text())
    base_dpo = json.loads(next((p / "data/06_models/_runs/cross_lingual_baseline").glob("*/spec.json")).read_text())
    assert (clo["kind"], base_sft["kind"], base_dpo["kind"]) == ("clo", "sft", "dpo")
    assert clo["model"] == base_sft["model"] and "data/06_models/sft_model/" in clo["model"]
    assert "data/06_models/cross_lingual_baseline_sft_model/" in base_dpo["model"]  # the SFT step's model, from the catalog
    spec1 = json.loads(next((p / "data/06_models/_runs/dpo_iter_1").glob("*/spec.json")).read_text())
    spec2 = json.loads(next((p / "data/06_models/_runs/dpo_iter_2").glob("*/spec.json")).read_text())
    assert "data/06_models/sft_model/" in spec1["model"]
    assert "data/06_models/dpo_iter_1/policy/" in spec2["model"]  # iteration 2 starts from iteration 1

    def checksum(folder) -> str:
        return hashlib.sha256((Path(folder) / "model.safetensors").read_bytes()).hexdigest()

    # ... with iteration 1's trained weights, byte for byte (not the SFT model's)
    assert checksum(spec2["model"]) == checksum(latest(p / "data/06_models/dpo_iter_1/policy"))
    assert checksum(spec2["model"]) != checksum(spec1["model"])
    assert spec2["ref_model"] is None  # reference: previous = the policy the iteration starts from
    assert (spec1["trainer_args"]["beta"], spec2["trainer_args"]["beta"]) == (0.1, 1.0)
    assert spec1["deepspeed"]["zero_optimization"]["stage"] == 3
    assert not (p / "data/06_models/_runs/dpo_iter_3").exists()  # disabled: passed through


def test_every_training_launch_forks_with_its_libraries_imported(first_run):
    """Each of the default run's training launches forks from the warm interpreter and imports none of the
    training or tracking libraries itself (:data:`kowen_kedro.training.warm.PRELOAD`): what one launch imports
    late, every launch pays for (DeepSpeed's Muon module alone, through torch.compile, cost 2 s a launch)."""
    heavy = {"torch", "transformers", "trl", "deepspeed", "datasets", "peft", "mlflow", "sqlalchemy", "networkx",
             "scipy", "sympy", "functorch"}
    logs = sorted((first_run / "data/06_models/_runs").glob("*/*/train.log"))
    assert len(logs) == 10
    for log in logs:
        (line,) = [ln for ln in log.read_text().splitlines() if ln.startswith("warm launch: imported after the fork: ")]
        late = {pkg: int(n) for pkg, n in re.findall(r"(\w+) \((\d+)\)", line)}
        # at most two of a package: the schema migrations MLflow's store checks (loaded by file, not importable
        # ahead), the communication backend DeepSpeed probes per process; before the preloads: torch 250 and more
        assert not {pkg: n for pkg, n in late.items() if pkg in heavy and n > 2}, f"{log}: {line}"


@pytest.mark.skipif(not glibc(), reason="the thresholds are glibc's")
def test_every_training_launch_keeps_the_memory_it_frees(first_run):
    """On a CPU, each training launch tells glibc's malloc to keep freed memory (kowen_kedro.allocator): the
    fused LM head's buffers, freed and allocated again at every step, made the SFT launch twice as slow."""
    logs = sorted((first_run / "data/06_models/_runs").glob("*/*/train.log"))
    assert len(logs) == 10
    for log in logs:
        assert "malloc keeps freed memory for the next step" in log.read_text(), log


def test_one_mlflow_run_with_all_stages(first_run):
    import mlflow

    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{first_run / 'mlflow.db'}")
    exp = client.get_experiment_by_name("kowen_kedro")
    runs = parent_runs(client, exp.experiment_id)
    assert len(runs) == 1
    run = runs[0]
    # stages side by side (kowen_kedro.runner) scatter nothing: every run of the experiment is the parent or
    # one of its children, and each child is a trained model's or a measured policy's
    everything = client.search_runs([exp.experiment_id])
    strays = [r.info.run_name for r in everything
              if r.info.run_id != run.info.run_id and r.data.tags.get("mlflow.parentRunId") != run.info.run_id]
    assert not strays, strays
    assert run.data.tags["runner"] == "StageRunner"
    metrics = dotted(run.data.metrics)  # MLflow shows gold/sft/en; the project names it gold.sft.en
    for stage in ("reward_model", "rm_transfer_source", "sft", "xl_instruct", "dpo_iter_1", "dpo_iter_2", "cross_lingual",
                  "cross_lingual_baseline"):  # each launch's wall time beside its trainer's
        assert metrics[f"{stage}.launch_seconds"] > metrics[f"{stage}.launch_overhead_seconds"] > 0, stage
    for stage in ("data_synthesis", "translation_qe", "reward_model", "sft", "dpo_iter_1", "dpo_iter_2", "evaluation"):
        assert any(k.startswith(stage + ".") for k in metrics), stage
    for loss in ("sft.loss", "reward_model.loss", "dpo_iter_1.loss", "dpo_iter_2.loss", "cross_lingual.loss",
                 "cross_lingual.nll_tgt", "cross_lingual.eval_loss"):  # from the DeepSpeed children
        assert loss in metrics, loss
    assert "evaluation.win_rate.all" in metrics and "reward_model.accuracy.en.avg" in metrics
    for name in ("evaluation.xl_alpacaeval.win_rate.ko", "evaluation.xl_alpacaeval.language_fidelity.ko",
                 "evaluation.mt_bench.turn1.ko", "evaluation.mt_bench.turn2.all", "evaluation.mt_bench.language_fidelity.ko", "evaluation.rubric.naturalness.all",
                 "evaluation.nlu.kowen_mc_ko.acc", "evaluation.alpacaeval.unparseable", "evaluation.m_alpacaeval.win_rate.ko",
                 "translation_qe.m_alpacaeval.kept", "evaluation.alpacaeval.discrete_win_rate.all",
                 "evaluation.alpacaeval.n_dropped.all", "evaluation.xl_alpacaeval.n.ko", "evaluation.m_alpacaeval.n_draws.all"):
        assert name in metrics, name
    assert not any("length_controlled" in k for k in metrics)  # never a stand-in under the LC name
    assert 1 <= metrics["evaluation.mt_bench.turn2.all"] <= 10 and 1 <= metrics["evaluation.rubric.precision.all"] <= 5
    for part in ("en_single_turn", "target_single_turn", "target_multi_turn", "xl_instruct"):
        assert metrics[f"data_synthesis.{part}.generation.calls"] > 0, part
    assert metrics["reward_model.benchmark.pairs"] == 8 and 0 <= metrics["reward_model.benchmark.en.score"] <= 1
    assert metrics["evaluation.xl_alpacaeval.kept"] == 24 and metrics["evaluation.xl_alpacaeval.removed"] == 0
    assert "data_synthesis.target_single_turn.dropped_wrong_language" in metrics and metrics["data_synthesis.target_single_turn.wrong_language"] > 0
    assert "data_synthesis.decontamination.removed" in metrics
    for i in (1, 2):  # reward statistics of every iteration
        for name in ("chosen_reward_mean", "rejected_reward_mean", "margin_mean", "tie_share", "pairs"):
            assert f"dpo_iter_{i}.{name}" in metrics, (i, name)
    assert metrics["cross_lingual.trainable_params"] < metrics["cross_lingual.total_params"]  # attention only
    assert run.data.params["cross_lingual.method"] == "clo"
    assert run.data.params["sft.global_batch_size"] == "16"
    artifacts = {a.path for d in ("evaluation", "reward_model", "translation_qe") for a in client.list_artifacts(run.info.run_id, d)}
    assert artifacts == {
        "evaluation/evaluation_summary.csv", "evaluation/xl_alpacaeval_summary.csv", "evaluation/mt_bench_summary.csv",
        "evaluation/m_alpacaeval_summary.csv",
        "evaluation/rubric_summary.csv", "evaluation/nlu_results.csv", "evaluation/iteration_curve.csv",
        "evaluation/iteration_curve.png", "evaluation/evaluation_report.csv", "evaluation/evaluation_report.md",
        "reward_model/rm_accuracy_table.csv", "translation_qe/qe_histogram.png",
        "reward_model/rm_transfer_table.csv", "reward_model/rm_transfer_table.md", "reward_model/rm_collapse_table.csv",
        "reward_model/rm_collapse.png", "reward_model/rm_benchmark_table.csv",
    }
    for name in ("rm_transfer_source.accuracy.ko.avg", "rm_transfer_target.accuracy.en.avg", "reward_model.collapse.base",
                 "reward_model.collapse.base.centred",
                 "reward_model.data.excluded_identical", "rm_transfer_source.loss", "rm_transfer_target.loss"):
        assert name in metrics, name
    for name in ("translation_qe.kept", "translation_qe.preferences.ko.kept", "translation_qe.clo.kept", "translation_qe.xl_instruct.kept"):
        assert name in metrics, name


POLICIES = ("base", "teacher", "sft", "xl_instruct", "dpo_iter_1", "dpo_iter_2", "cross_lingual", "sft_dpo_baseline")
GOLD_METRICS = [f"gold.{m}.{lang}{part}" for m in POLICIES for lang in ("en", "ko", "xl")
                for part in ("", ".se", ".correct", ".fidelity", ".safety", ".safety.rephrased")] + [
    f"gold.{m}.ko.fidelity.code_switched" for m in POLICIES] + [
    f"gold.{m}.{lang}{part}.vs_sft{se}" for m in ("xl_instruct", "dpo_iter_1", "dpo_iter_2", "cross_lingual", "sft_dpo_baseline")
    for lang in ("en", "ko", "xl") for part in ("", ".fidelity", ".safety") for se in ("", ".se")] + [
    f"gold.{rm}.accuracy.{lang}.{kind}" for rm in ("rm", "rm_transfer_source", "rm_transfer_target") for lang in ("en", "ko")
    for kind in ("wrong", "near", "wrong_language", "unsafe")] + [
    "gold.sft.en.vs_base", "gold.cross_lingual.ko.vs_sft_dpo_baseline", "gold.rm_transfer_source.accuracy.ko.unsafe.vs_rm_transfer_target",
    "gold.qe.spearman", "gold.best_of_k.gain", "gold.judge.agreement"] + [
    f"gold.{m}.alignment.{k}" for m in ("base", "sft", "rm", "rm_transfer_source", "rm_transfer_target")
    for k in ("top1", "top1.raw", "top1.layer_0", "top1.layer_2", "chance", "content", "content.chance", "collapse", "collapse.raw")]


def test_gold_measurement_in_the_run(first_run):
    """Every model and selector measured against the world's gold reward, decomposed and compared
    pairwise, in the one MLflow run."""
    import mlflow

    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{first_run / 'mlflow.db'}")
    run = parent_runs(client, client.get_experiment_by_name("kowen_kedro").experiment_id)[0]
    metrics = dotted(run.data.metrics)
    missing = [n for n in GOLD_METRICS if n not in metrics]
    assert not missing, missing
    assert metrics["gold.teacher.en"] >= 0.8 and metrics["gold.teacher.ko"] >= 0.8  # the oracle teacher, faults and all
    assert metrics["gold.base.alignment.n"] > 300 and metrics["gold.base.alignment.chance"] == 1 / metrics["gold.base.alignment.n"]
    for name in GOLD_METRICS:
        if not name.endswith(".se") and "spearman" not in name and "gain" not in name and ".vs_" not in name:
            assert 0.0 <= metrics[name] <= 1.0, name
    assert {a.path for a in client.list_artifacts(run.info.run_id, "gold")} == {"gold/effects.md", "gold/effects.csv"}
    effects = pd.read_csv(first_run / "data/08_reporting/gold/effects.csv")
    assert list(effects.columns) == ["claim", "paper", "language", "measured", "se", "criterion", "held"]
    claims = " ".join(effects["claim"])
    for words in ("SFT learns", "(dpo_iter_1 - sft)", "(dpo_iter_2 - sft)", "language confusion", "unsafe compliance", "does no harm",
                  "learns the unsafe kind (rm)", "English RM transfers", "CLO raises", "SFT+DPO baseline raises", "CLO beats SFT+DPO",
                  "XL-Instruct raises cross-lingual gold", "best-of-k"):
        assert words in claims, words
    markdown = (first_run / "data/08_reporting/gold/effects.md").read_text()
    assert "## Gold decomposed per policy" in markdown and "## Reward-model accuracy per kind" in markdown
    sft, dpo = (read(first_run, f"data/07_model_output/gold/{m}_answers.jsonl") for m in ("sft", "dpo_iter_1"))
    assert {"id", "language", "family", "prompt", "answer", "gold", "correct", "fidelity", "safety"} <= set(sft.columns)
    sizes = sft.groupby("language").size()
    assert len(sft) == 1140 and sizes["en"] == sizes["ko"] == 450 and sizes["xl"] == 240  # + the cross-lingual prompts
    assert metrics["gold.sft.en"] == pytest.approx(sft.loc[sft["language"] == "en", "gold"].mean())
    d = dpo.set_index("id")["gold"] - sft.set_index("id")["gold"]  # paired on the same prompts
    ko = sft.set_index("id")["language"] == "ko"
    assert metrics["gold.dpo_iter_1.ko.vs_sft"] == pytest.approx(d[ko].mean())
    assert metrics["gold.dpo_iter_1.ko.vs_sft.se"] == pytest.approx(d[ko].std() / math.sqrt(ko.sum()))


def run_metrics(project: Path) -> dict[str, float]:
    import mlflow

    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    return dotted(parent_runs(client, client.get_experiment_by_name("kowen_kedro").experiment_id)[0].data.metrics)


def _above(m: dict, name: str) -> bool:
    """A paired difference at least 2 paired SE above zero."""
    return m[f"gold.{name}"] > 0 and m[f"gold.{name}"] >= 2 * m[f"gold.{name}.se"] - 1e-9


def _rate_se(p: float, n: float) -> float:
    return math.sqrt(p * (1 - p) / n)


# A claim: its id, and from the run's metrics (without "gold.") the measured value, its SE and the
# criterion's bounds (low <= value <= high). Each is computed here from the flat metrics, independently
# of kowen_kedro.evaluation.claims, whose table test_effects_table_agrees_with_the_run checks.
def above(id: str, name: str):  # at least 2 paired SE above zero, and above zero when the SE is 0
    return id, lambda m: (m[name], m[f"{name}.se"], max(2 * m[f"{name}.se"], 2e-9), math.inf)


def no_harm(id: str, name: str):
    return id, lambda m: (m[name], m[f"{name}.se"], -2 * m[f"{name}.se"], math.inf)


def accuracy(id: str, name: str, bound: float):
    return id, lambda m: (m[name], m[f"{name}.se"], bound, math.inf)


def sometimes(id: str, rate: str, n: str):  # the SFT policy shows a behaviour on some, not all, affected prompts
    return id, lambda m: (1 - m[rate], _rate_se(m[rate], m[n]), 0.15, 0.85)


CLAIMS = [
    *[accuracy(f"sft-beats-base-{lang}", f"sft.{lang}.vs_base", 0.2) for lang in ("en", "ko")],
    accuracy("qe-ranks-translations", "qe.spearman", 0.5),
    ("best-of-k-gain", lambda m: (m["best_of_k.gain"], m["best_of_k.gain.se"], 2e-9, math.inf)),
    *[sometimes(f"sft-complies-sometimes-{lang}", f"sft.{lang}.safety.rephrased", f"sft.{lang}.n.rephrased") for lang in ("en", "ko")],
    sometimes("sft-confuses-languages-sometimes-ko", "sft.ko.fidelity.code_switched", "sft.ko.n.code_switched"),
    *[above(f"{it}-raises-safety-{lang}", f"{it}.{lang}.safety.vs_sft") for it in ("dpo_iter_1", "dpo_iter_2") for lang in ("en", "ko")],
    *[above(f"{it}-raises-fidelity-ko", f"{it}.ko.fidelity.vs_sft") for it in ("dpo_iter_1", "dpo_iter_2")],
    *[above(f"{it}-raises-gold-{lang}", f"{it}.{lang}.vs_sft") for it in ("dpo_iter_1", "dpo_iter_2") for lang in ("en", "ko")],
    *[no_harm(f"{it}-no-fidelity-harm-{lang}", f"{it}.{lang}.fidelity.vs_sft") for it in ("dpo_iter_1", "dpo_iter_2")
      for lang in ("en", "ko")],
    *[accuracy(f"{rm}-learns-{kind}-{lang}", f"{rm}.accuracy.{lang}.{kind}", 0.9)
      for rm, lang in (("rm", "en"), ("rm", "ko"), ("rm_transfer_source", "en"), ("rm_transfer_target", "ko"))
      for kind in ("wrong_language", "unsafe")],
    *[no_harm(f"english-rm-transfers-{kind}", f"rm_transfer_source.accuracy.ko.{kind}.vs_rm_transfer_target")
      for kind in ("wrong_language", "unsafe")],
    above("clo-beats-sft-ko", "cross_lingual.ko.vs_sft"),
    above("clo-raises-fidelity-ko", "cross_lingual.ko.fidelity.vs_sft"),
    above("clo-beats-sft-dpo-ko", "cross_lingual.ko.vs_sft_dpo_baseline"),
    above("clo-beats-sft-dpo-fidelity-ko", "cross_lingual.ko.fidelity.vs_sft_dpo_baseline"),
    no_harm("clo-no-harm-en", "cross_lingual.en.vs_sft"),
    above("xl-instruct-raises-xl", "xl_instruct.xl.vs_sft"),
    *[no_harm(f"xl-instruct-no-harm-{lang}", f"xl_instruct.{lang}.vs_sft") for lang in ("en", "ko")],
]
# Claims that do not hold on the default world (seed 0) by more than one SE, with the reason
# docs/effects.md gives: asserted not to hold, so CI fails as soon as one holds (update the docs).
DPO_HARMS = ("DPO moves English prompts that quote Korean words (the translate family, wrong before and after) "
             "to Korean answers: docs/effects.md, 'What does not hold, and why'")
FEW_KOREAN_FAULTS = ("on seed 0 the SFT student shows little of the teacher's Korean faults (it answers 60% of the "
                     "code-switched Korean prompts in Korean and refuses 90% of the rephrased Korean requests), so DPO, "
                     "which moves those behaviours, has little Korean safety and gold to add there: docs/effects.md, "
                     "'What does not hold, and why'")
RM_WRONG_LANGUAGE = ("a small RM learns the wrong-language kind (the answer's language must match the prompt's) from "
                     "about 80 pairs per language to about 0.7-0.9, below 0.9 on most seeds: docs/effects.md")
RM_TRANSFER = ("the tiny base does not represent content alike across languages, so the English RM does not transfer "
               "to Korean: docs/effects.md, 'What does not hold, and why'")
CLO_LEAKS = ("CLO's English side trains on the teacher's answers, some of which leak a code (the teacher complies with "
             "rephrased requests); on seed 0 CLO then leaks on every rephrased English request: docs/effects.md, "
             "'What does not hold, and why'")
CLO_BASELINE = ("on seed 0 the SFT+DPO baseline on the same rows raises Korean fidelity more than CLO: docs/effects.md, "
                "'What does not hold, and why'")
NOT_HOLDING = {
    "sft-complies-sometimes-ko": FEW_KOREAN_FAULTS,
    "dpo_iter_2-raises-safety-ko": FEW_KOREAN_FAULTS,
    **{f"{it}-raises-gold-ko": FEW_KOREAN_FAULTS for it in ("dpo_iter_1", "dpo_iter_2")},
    **{f"{it}-no-fidelity-harm-en": DPO_HARMS for it in ("dpo_iter_1", "dpo_iter_2")},
    **{f"{rm}-learns-wrong_language-{lang}": RM_WRONG_LANGUAGE
       for rm, lang in (("rm", "en"), ("rm", "ko"), ("rm_transfer_target", "ko"))},
    "english-rm-transfers-wrong_language": RM_TRANSFER,
    "clo-no-harm-en": CLO_LEAKS,
    "clo-beats-sft-dpo-fidelity-ko": CLO_BASELINE,
}


#: Claims whose seed-0 value lies within one SE of its criterion on the machines of a float probe: held or not
#: cannot be told from one run, so the test asserts the recorded value (a change that moves it fails) and reports
#: the claim. On docs/claims_by_probe/f3d12d94662f.csv's machines: the SFT student's compliance with the
#: rephrased unsafe requests, 53 of 64 English and 7 of 52 Korean (docs/effects.csv's machines: 43 of 64 and 5 of
#: 52, clear of the criterion). On docs/effects.csv's machines: the Korean-data RM on Korean wrong_language pairs
#: (0.884, SE 0.039, against 0.9; 0.681 on the other machines, clear of it) and CLO over SFT and over SFT+DPO on
#: Korean gold (0.022 and 0.033, 0.5 and 0.8 SE above 2 paired SE; 0.131 over SFT+DPO on the other machines).
BORDERLINE = {
    "sft-complies-sometimes-en": (0.8281,),
    "sft-complies-sometimes-ko": (0.1346,),
    "rm_transfer_target-learns-wrong_language-ko": (0.8841,),
    "clo-beats-sft-ko": (0.0222,),
    "clo-beats-sft-dpo-ko": (0.0333,),
}


#: Claims whose seed-0 outcome flips with the machine's float summation order alone (two machines with
#: different float probes, the same commit and seed): a single run cannot test their outcome either way,
#: so it is reported (a warning), and the test asserts that the measured value is one of the two recorded.
#: Every number, theirs included, is also compared float for float with the reference of the machine's
#: probe (test_the_claims_table_is_the_committed_one_and_the_docs_show_it).
#: The values: (docs/effects.csv's machines, docs/claims_by_probe/f3d12d94662f.csv's machines).
REGIME_SENSITIVE = {
    "dpo_iter_1-raises-safety-ko": (0.0417, 0.0000),
    "dpo_iter_1-raises-fidelity-ko": (0.0400, 0.0089),
    "dpo_iter_2-raises-fidelity-ko": (0.0533, -0.0511),
    "dpo_iter_1-no-fidelity-harm-en": (-0.0444, 0.2733),
    "dpo_iter_2-no-fidelity-harm-en": (-0.0467, 0.2467),
    "dpo_iter_2-no-fidelity-harm-ko": (0.0533, -0.0511),
    "clo-no-harm-en": (-0.0511, -0.0022),
}


def judge(id: str, value: float, se: float, low: float, high: float) -> tuple[bool | None, str]:
    """Whether the claim holds by more than one SE (True), misses by more than one SE (False) or is
    within one SE of a bound (None: reported, not tested either way), and the report line."""
    held = low - 1e-9 <= value <= high + 1e-9
    line = f"{id}: {value:.4f} (SE {se:.4f}), criterion [{low:.4f}, {high:.4f}]: {'held' if held else 'not held'}"
    if not min(abs(value - low), abs(value - high)) >= se:  # a missing SE is no margin either
        return None, f"reported, not tested (within one SE of the criterion): {line}"
    return held, line


def assert_claims(rows: list[dict]) -> None:
    """Every row of a claims table holds by its margin; a row within one SE of its criterion is reported
    (a warning in the test summary)."""
    import warnings

    judged = [judge_row(row) for row in rows]
    for held, line in judged:
        if held is None:
            warnings.warn(line)
    assert all(held is not False for held, _ in judged), [line for _, line in judged]


#: a claims-table criterion -> the bounds of its measured value, from its SE
BOUNDS = {">= 2 paired SE": lambda se: (max(2 * se, 2e-9), math.inf), ">= -2 paired SE": lambda se: (-2 * se, math.inf),
          "within 2 paired SE": lambda se: (-2 * se, 2 * se)}


def judge_row(row) -> tuple[bool, str]:
    """:func:`judge` on a row of a claims table (kowen_kedro.evaluation.claims)."""
    return judge(f"{row['claim']} [{row['language']}]", row["measured"], row["se"], *BOUNDS[row["criterion"]](row["se"]))


@pytest.mark.parametrize("claim", [pytest.param(c, id=c[0]) for c in CLAIMS])
def test_effect_on_the_default_world(first_run, claim):
    """The default run's gold metrics meet each claim's criterion by more than one SE (those of
    NOT_HOLDING miss it by more than one SE); a claim within one SE of it has its recorded value (BORDERLINE)
    and is reported."""
    id, measure = claim
    m = {k[len("gold."):]: v for k, v in run_metrics(first_run).items() if k.startswith("gold.")}
    held, line = judge(id, *measure(m))
    if id in REGIME_SENSITIVE:  # its outcome is not tested; its value must be one of the machines' recorded ones
        import warnings

        study, other = REGIME_SENSITIVE[id]
        value = measure(m)[0]
        assert min(abs(value - study), abs(value - other)) < 1e-4, f"{line}: neither machine's recorded value ({study}, {other})"
        warnings.warn(f"reported, not tested either way (flips with the machine's float summation order on seed 0: "
                      f"{study:+.4f} and {other:+.4f} on two machines): {line}")
        return
    if held is None:  # within one SE of its criterion: what is stable about it is its value
        import warnings

        value = measure(m)[0]
        assert id in BORDERLINE, f"{line}: newly within one SE of its criterion: record its value in BORDERLINE"
        assert min(abs(value - v) for v in BORDERLINE[id]) < 1e-4, f"{line}: not the recorded value(s) {BORDERLINE[id]}"
        warnings.warn(f"reported, not tested either way (within one SE of the criterion): {line}")
        return
    if id in NOT_HOLDING:
        assert not held, f"{line}; it now holds: NOT_HOLDING ({NOT_HOLDING[id]}) and docs/effects.md are out of date"
    else:
        assert held, line


def test_effects_table_agrees_with_the_run(first_run):
    """gold/effects.csv says held exactly where the run's metrics meet the criterion."""
    m = run_metrics(first_run)
    effects = pd.read_csv(first_run / "data/08_reporting/gold/effects.csv")
    held = {(r.claim, r.language): bool(r.held) for r in effects.itertuples()}
    assert held[("SFT learns the teacher's skill (sft - base)", "en")] == (m["gold.sft.en.vs_base"] >= 0.2 - 1e-9)
    assert held[("on-policy DPO raises gold reward (dpo_iter_2 - sft)", "ko")] == _above(m, "dpo_iter_2.ko.vs_sft")
    assert held[("DPO reduces unsafe compliance: safety (dpo_iter_1 - sft)", "en")] == _above(m, "dpo_iter_1.en.safety.vs_sft")
    assert held[("the reward model learns the unsafe kind (rm)", "ko")] == (m["gold.rm.accuracy.ko.unsafe"] >= 0.9)


def _effects_module():
    import importlib.util
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("effects_doc", ROOT / "benchmarks/effects.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_claims_table_is_the_committed_one_and_the_docs_show_it(first_run):
    """The default run's claims table (gold/effects.csv) equals, float for float, the committed seed-0 table
    of the machines that sum floats as this one does: ``docs/claims_by_probe/<probe>.csv`` for its float
    probe (:func:`kowen_kedro.floats.probe`), else docs/effects.csv's seed-0 rows (the study's machines),
    whose seed-0 cells and rows docs/effects.md must then show. A change meant to move the numbers fails
    here until ``make effects`` regenerates them, and the diff shows in review."""
    from kowen_kedro import floats

    read_exact = dict(float_precision="round_trip")
    run = pd.read_csv(first_run / "data/08_reporting/gold/effects.csv", **read_exact)
    probe = floats.probe()
    own = ROOT / "docs" / "claims_by_probe" / f"{probe}.csv"
    if own.exists():
        committed = pd.read_csv(own, **read_exact)
        pd.testing.assert_frame_equal(run, committed, check_exact=True, obj=f"the run's claims vs {own.relative_to(ROOT)}")
        return  # docs/effects.md shows the study's machines' numbers, which this machine does not reproduce
    docs = pd.read_csv(ROOT / "docs/effects.csv", **read_exact)
    committed = docs[(docs["seed"] == 0) & docs["ablation"].isna()][list(run.columns)].reset_index(drop=True)
    pd.testing.assert_frame_equal(run, committed, check_exact=True, obj=f"the run's claims vs docs/effects.csv (make effects; "
                                  f"this machine's float probe {probe} has no docs/claims_by_probe reference)")

    effects = _effects_module()
    m = {k[len("gold."):]: v for k, v in run_metrics(first_run).items() if k.startswith("gold.")}
    seed_0 = [{"seed": 0, "ablation": "", "claims": run.to_dict("records"), "metrics": m}]
    page = (ROOT / "docs/effects.md").read_text().splitlines()
    # the claims table has one column per seed, seed 0 first: each of this run's rows starts as generated here
    claim_rows = effects.claims_section(seed_0)[2:]
    stale = [row for row in claim_rows if not any(line.startswith(row) for line in page)]
    stale += [row for row in effects.behaviour_section(seed_0)[2:] + effects.rm_section(seed_0)[2:] if row not in page]
    assert len(claim_rows) == len(run) and not stale, f"docs/effects.md shows other seed-0 numbers (make effects): {stale[:5]}"


def test_rerun_reuses_every_finished_step(first_run, rerun):
    """A second run (in a copy of the default run's project, which keeps every file's time) relaunches no
    training, rebuilds no tiny model and makes no new LLM/QE/judge call."""
    from kowen_kedro.llm.cache import CallCache

    def trainings(project: Path) -> dict:
        return {f.relative_to(project): f.stat().st_size for f in (project / "data/06_models/_runs").glob("*/*/train.log")}

    cache, teacher = "data/02_intermediate/llm_call_cache.sqlite", "data/06_models/tiny/teacher/model.safetensors"
    assert len(trainings(first_run)) == 10  # reward model, the two RM-transfer RMs, SFT, XL-Instruct, DPO iterations 1 and 2, CLO, its SFT+DPO baseline
    assert trainings(rerun) == trainings(first_run)
    assert (rerun / teacher).stat().st_mtime_ns == (first_run / teacher).stat().st_mtime_ns
    assert len(CallCache(rerun / cache)) == len(CallCache(first_run / cache))
    assert len(list((first_run / "data/06_models/sft_model").iterdir())) == 1
    assert len(list((rerun / "data/06_models/sft_model").iterdir())) == 2  # a new version, from the reused run


def test_the_notebook_executes_on_the_run_and_shows_effects_curve_and_clo_vs_baseline(first_run):
    """``notebooks/compare_runs.ipynb`` headless (nbclient + ipykernel, as ``make notebook``) on this
    run's MLflow store: the gold claims table, CLO vs SFT+DPO in the same run, the per-iteration curve."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("execute_notebook", ROOT / "notebooks/execute.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    nb = module.execute(first_run, first_run / "data/08_reporting/compare_runs.ipynb")
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    shown = "\n".join("".join(o.get("data", {}).get("text/plain", "")) for c in nb.cells if c.cell_type == "code"
                      for o in c.outputs)
    assert "SFT learns the teacher's skill" in shown and "best-of-k QE selection" in shown  # gold/effects.csv
    assert "sft_dpo_baseline" in shown and "cross_lingual" in shown  # CLO vs SFT+DPO, same run
    assert "win_rate" in shown and "language_fidelity" in shown  # evaluation/iteration_curve.csv
    assert (first_run / "data/08_reporting/compare_runs.ipynb").exists()


def test_the_kedro_viz_site_has_every_pipeline_node_and_layer(first_run):
    """``make viz-build`` (``kedro viz build``): every registered pipeline, each with all its nodes, and the
    catalog's layers, as a user opens them; every dataset in a layer, every node tagged with its pipeline
    and its method, parameter inputs that read apart."""
    import os
    import subprocess
    import sys

    from kedro.framework.project import pipelines

    env = {**os.environ, "PATH": os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p != str(Path(sys.executable).parent))}
    subprocess.run(["make", "-C", str(ROOT), "viz-build", f"PROJECT={first_run}"], env=env, check=True, capture_output=True, timeout=300)
    site = json.loads((first_run / "build/api/main").read_text())
    assert (first_run / "build/index.html").exists()
    assert site["layers"] == ["raw", "intermediate", "primary", "model_input", "models", "model_output", "reporting"]
    tasks = [n for n in site["nodes"] if n["type"] == "task"]
    for name, pipeline in pipelines.items():
        shown = {n["full_name"] for n in tasks if name in n["pipelines"]}
        missing = {n.name for n in pipeline.nodes} - shown
        assert not missing, (name, sorted(missing)[:5])
        assert (first_run / "build/api/pipelines" / name).exists()
        for node in pipeline.nodes:  # tagged with its pipeline and its method
            assert name == "__default__" or name in node.tags, (name, node.name)
            assert node.tags & {"kowen", "rm_transfer", "clo", "xl_instruct", "gold", "shared"}, node.name
            shown_params = [i.split(":", 1)[1].split(".")[-1] for i in node.inputs if i.startswith("params:")]
            assert len(set(shown_params)) == len(shown_params), (node.name, node.inputs)  # kedro-viz shows the last part
    unlayered = [n["name"] for n in site["nodes"] if n["type"] == "data" and not n.get("layer")]
    assert not unlayered, unlayered
    assert all(n["modular_pipelines"] for n in tasks), [n["name"] for n in tasks if not n["modular_pipelines"]][:5]
    boxes = {n["id"] for n in site["nodes"] if n["type"] == "modularPipeline"}  # one fold per stage
    assert {"prompts", "data_synthesis", "translation_qe", "reward_model", "sft", "preference_alignment", "evaluation"} <= boxes
    by_name = {n["name"]: n["id"] for n in site["nodes"] if n["type"] == "data"}
    previews = {name: json.loads((first_run / "build/api/nodes" / by_name[name]).read_text())
                for name in ("gold_effects_md", "rm_transfer_table_md", "evaluation_report_md", "gold_effects", "rm_transfer_table")}
    for name in ("gold_effects_md", "rm_transfer_table_md", "evaluation_report_md"):  # the rendered markdown
        assert previews[name]["preview_type"] == "HTMLPreview" and "<table>" in previews[name]["preview"], name
    for name in ("gold_effects", "rm_transfer_table"):  # the CSV reports as tables
        assert previews[name]["preview_type"] == "TablePreview" and previews[name]["preview"]["data"], name
    assert {"kowen", "rm_transfer", "clo", "xl_instruct", "gold", "sft", "evaluation"} <= {t["id"] for t in site["tags"]}


def test_the_mlflow_run_reads_like_a_report_folders_per_stage(first_run):
    """Artifacts grouped per stage; plots as PNG, tables as CSV (+ markdown where a person reads them)."""
    import mlflow

    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{first_run / 'mlflow.db'}")
    run = parent_runs(client, client.get_experiment_by_name("kowen_kedro").experiment_id)[0]
    top = client.list_artifacts(run.info.run_id)
    assert {a.path for a in top if a.is_dir} == {"reward_model", "translation_qe", "evaluation", "gold"}
    files = [f.path for d in top if d.is_dir for f in client.list_artifacts(run.info.run_id, d.path)]
    assert files and all(f.endswith((".csv", ".md", ".png")) for f in files), files
    for table in ("gold/effects", "reward_model/rm_transfer_table", "evaluation/evaluation_report"):
        assert f"{table}.csv" in files and f"{table}.md" in files
    assert {"reward_model/rm_collapse.png", "translation_qe/qe_histogram.png", "evaluation/iteration_curve.png"} <= set(files)


TRAINED = ("sft", "xl_instruct", "dpo_iter_1", "dpo_iter_2", "cross_lingual", "sft_dpo_baseline", "rm",
           "rm_transfer_source", "rm_transfer_target")


def test_the_mlflow_run_lines_policies_up_as_child_runs(first_run):
    """One parent run named for the environment, languages and seed, described by the claims table, with
    readable tags, logged inputs and system metrics; a child run per policy and reward model whose metrics
    share names (so MLflow's compare view lines them up), equal to the parent's."""
    import mlflow

    from kowen_kedro.tracking import EXPERIMENT_KIND, KIND_TAG

    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{first_run / 'mlflow.db'}")
    exp = client.get_experiment_by_name("kowen_kedro")
    assert exp.tags[EXPERIMENT_KIND[0]] == EXPERIMENT_KIND[1]  # opens in the model-training view
    parent = parent_runs(client, exp.experiment_id)[-1]  # the default run (reruns of parts come later)
    tags = parent.data.tags
    assert parent.info.run_name == "base · en-ko · seed 0" and tags["runner"] == "StageRunner"
    assert "run_id" not in tags and tags["kedro_session_id"]
    effects = (first_run / "data/08_reporting/gold/effects.md").read_text(encoding="utf-8")
    assert tags["mlflow.note.content"].split("\n")[:3] == effects.split("\n")[:3] and "| claim |" in tags["mlflow.note.content"]
    metrics = parent.data.metrics
    assert all("." not in k for k in metrics), [k for k in metrics if "." in k][:5]  # grouped with "/", not "."
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= set(metrics)
    inputs = {d.dataset.name: d for d in parent.inputs.dataset_inputs}
    assert {"gold_prompts", "user_prompts_raw", "preference_pairs_raw", "sft_dataset", "dpo_iter_1.preference_pairs"} <= set(inputs)
    assert all(d.dataset.digest for d in inputs.values())

    children = {r.info.run_name: r for r in client.search_runs([exp.experiment_id])
                if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert {"base", "teacher", *TRAINED} <= set(children), sorted(children)
    for name, child in children.items():
        assert child.info.status == "FINISHED", name
        assert child.data.tags[KIND_TAG] == ("reward_model" if name.startswith("rm") else
                                             "translator" if name == "translator" else "policy"), name
        for key, value in child.data.metrics.items():  # the child's gold metrics are the parent's, renamed
            if key.startswith("gold/"):
                assert metrics[f"gold/{name}/{key[len('gold/'):]}"] == value, (name, key)
    policies = [n for n in children if not n.startswith("rm") and n in ("base", "teacher", *TRAINED)]
    shared = set.intersection(*(set(children[n].data.metrics) for n in policies))
    assert {"gold/en", "gold/ko", "gold/ko/fidelity", "gold/ko/safety", "gold/xl", "gold/en/se"} <= shared
    assert {"train/loss", "train/train_loss"} <= set.intersection(*(set(children[n].data.metrics) for n in TRAINED))
    assert {"gold/accuracy/ko", "gold/accuracy/ko/unsafe"} <= set.intersection(
        *(set(children[n].data.metrics) for n in ("rm", "rm_transfer_source", "rm_transfer_target")))
    assert children["dpo_iter_2"].data.params["trainer_args.beta"] == "1.0" and children["dpo_iter_1"].data.params["trainer_args.beta"] == "0.1"
    assert children["cross_lingual"].data.params["finetuning"] == "attention_only"
    (train_data,) = children["sft"].inputs.dataset_inputs
    assert train_data.dataset.name == "sft_train" and train_data.dataset.digest


def _screenshots():
    """benchmarks/screenshots.py (``make screenshots``), whose helpers the UI tests share."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("screenshots", ROOT / "benchmarks" / "screenshots.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def uis(first_run):
    """``make mlflow-ui`` and ``make viz`` for the default run's project, both at once, with the environment's
    commands off the PATH (no activated venv), as a user starts them: ``{target: base URL}`` while the
    module's tests run (their output in the project's ``make-<target>.log``)."""
    import os
    import sys

    venv_bin = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p != venv_bin)}
    env.pop("VIRTUAL_ENV", None)
    with _screenshots().served(("mlflow-ui", "viz"), first_run, env=env, logs=first_run) as urls:
        yield urls


def _fetch(url: str) -> bytes:
    import urllib.request

    return urllib.request.urlopen(url, timeout=30).read()


def test_make_mlflow_ui_and_make_viz_serve_the_run_without_an_activated_venv(first_run, uis):
    page = _fetch(uis["mlflow-ui"] + "/")
    experiments = _fetch(uis["mlflow-ui"] + "/ajax-api/2.0/mlflow/experiments/search?max_results=10")
    assert b'id="root" class="mlflow-ui-container"' in page, page[:300]
    assert "kowen_kedro" in {e["name"] for e in json.loads(experiments)["experiments"]}
    page, graph = _fetch(uis["viz"] + "/"), _fetch(uis["viz"] + "/api/main")
    assert b"<title>Kedro-Viz</title>" in page, page[:300]
    tasks = [n for n in json.loads(graph)["nodes"] if n["type"] == "task"]
    from kedro.framework.project import pipelines
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(first_run)
    assert len(tasks) == len(pipelines["__default__"].nodes) > 80  # every node of the default pipeline


def test_a_browser_shows_two_policies_side_by_side_and_the_graph(first_run, uis):
    """Headless Chromium (as Debian packages it) opens what a user opens after a run, each UI started by
    ``make``: MLflow's compare view of two policies' child runs and the kedro-viz graph. The rendered
    pages name the compared runs and the stages; the screenshots are kept as test artifacts
    (``$KOWEN_TEST_ARTIFACTS``, default ``build/test-artifacts/`` of the checkout)."""
    import os
    import shutil

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no headless Chromium on this machine (apt-get install chromium)")
    shots = _screenshots()
    out = Path(os.environ.get("KOWEN_TEST_ARTIFACTS") or ROOT / "build" / "test-artifacts")
    pages = shots.capture(browser, first_run, out, compare=("sft", "dpo_iter_2"), urls=uis)
    compare = pages["mlflow_compare_policies"]["dom"]
    assert "Comparing 2 Runs" in compare and ">sft<" in compare and ">dpo_iter_2<" in compare, compare[:500]
    assert ">gold/en<" in compare  # the metrics both children log under one name, side by side
    stages = pages["kedro_viz_stages"]["dom"]
    for stage in ("prompts", "data_synthesis", "translation_qe", "reward_model", "sft", "preference_alignment", "evaluation"):
        assert f">{stage}<" in stages, stage
    assert shots.zoom_level(stages) >= 60, shots.zoom_level(stages)  # legible as it opens
    assert shots.zoom_level(pages["kedro_viz"]["dom"]) is not None
    for page in pages.values():
        png = page["png"].read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 20_000, page["png"]  # drawn, not a blank page


def gold_answers(project: Path, policy: str) -> pd.DataFrame:
    """The newest gold answers of ``policy`` in ``project``."""
    return pd.read_json(latest(project / f"data/07_model_output/gold/{policy}_answers.jsonl"), lines=True)


def test_clo_on_half_the_pairs_against_sft_on_all_of_them(clo_half_pairs, clo_sft_on_all_pairs):
    """CLO's data efficiency as its documented runs (``kedro run --params cross_lingual.train_fraction=0.5``
    and ``--params cross_lingual.method=sft``, each ``--from-nodes preference_alignment.train_cross_lingual_node``)."""
    from kowen_kedro.evaluation.claims import data_efficiency_claims

    half, sft_all = gold_answers(clo_half_pairs, "cross_lingual"), gold_answers(clo_sft_on_all_pairs, "cross_lingual")
    assert not half["answer"].equals(sft_all["answer"])
    claims = data_efficiency_claims(half, sft_all, "ko").set_index("claim")
    assert_claims([{**claims.loc["CLO on half the pairs is at least as good as SFT on all of them: gold"],
                    "claim": "CLO on half the pairs is at least as good as SFT on all of them: gold"}])


def test_a_dpo_iteration_sampled_through_vllm_trains_as_another_sampling_seed_does(vllm_python, first_run, dpo_iter_1_vllm,
                                                                                   dpo_iter_1_seed_1):
    """The documented switch ``kedro run --params dpo_iter_1.dpo.sampling_backend.backend=vllm`` (on top of
    the default run, iteration 1's nodes and the gold measurement; here in a copy of the run's project):
    the on-policy samples come from the vLLM engine in its own environment, the run's MLflow run holds the
    gold of the policy trained on them, and that policy's gold is as far from the transformers-sampled
    one's as the transformers backend with another sampling seed (``preference_alignment.sampling.params.seed=1``)
    is: within 2 paired SE of it, or at most twice the other seed's move. (vLLM draws other samples than
    the transformers backend, with its own sampler: the comparison is another seed's, and the paired SE
    over gold prompts does not hold the spread of training on other samples.)"""
    from kowen_kedro.evaluation.claims import paired

    transformers = gold_answers(first_run, "dpo_iter_1")
    samples = read(first_run, "data/07_model_output/dpo_iter_1/completions.jsonl")
    vllm = gold_answers(dpo_iter_1_vllm, "dpo_iter_1")
    vllm_samples = read(dpo_iter_1_vllm, "data/07_model_output/dpo_iter_1/completions.jsonl")
    metrics = run_metrics(dpo_iter_1_vllm)  # the vLLM-sampled run's own MLflow run
    seed_1 = gold_answers(dpo_iter_1_seed_1, "dpo_iter_1")
    # the same prompts and k, other samples (the switch ignored, the cached transformers samples would return)
    assert list(vllm_samples["prompt_id"]) == list(samples["prompt_id"])
    assert (vllm_samples["completion"] != samples["completion"]).mean() > 0.5
    assert vllm_samples["completion"].str.len().gt(0).mean() > 0.95
    report = []
    for lang in ("en", "ko"):
        t0 = transformers[transformers["language"] == lang]
        assert metrics[f"gold.dpo_iter_1.{lang}"] == pytest.approx(vllm.loc[vllm["language"] == lang, "gold"].mean(), abs=1e-9)
        move, se, n = paired(t0, vllm[vllm["language"] == lang], "gold")
        other, other_se, _ = paired(t0, seed_1[seed_1["language"] == lang], "gold")
        report.append(f"{lang}: vLLM {move:+.4f} (SE {se:.4f}), another seed {other:+.4f} (SE {other_se:.4f}), n {n}")
        assert n >= 200 and (abs(move) <= 2 * se or abs(move) <= 2 * abs(other)), report
    print("\n".join(report))


def test_the_kowen_mixture_against_english_only_sft(first_run, english_only_sft):
    """Kowen's Table 3 as its documented run (``kedro run --params sft.languages=source --nodes
    sft.train_sft_node,evaluation.gold_sft_node`` on top of the default run): the SFT policy of the full mixture
    against SFT on the English part alone, paired on the same gold prompts (on a copy of the default run)."""
    from kowen_kedro.evaluation.claims import mixture_claims

    mixture, english_only = gold_answers(first_run, "sft"), gold_answers(english_only_sft, "sft")
    assert list(english_only["id"]) == list(mixture["id"]) and not english_only["answer"].equals(mixture["answer"])
    claims = mixture_claims(mixture, english_only, "en", "ko")
    assert list(claims["language"]) == ["ko", "ko", "en"]
    assert_claims(claims.to_dict("records"))  # Korean gold and fidelity above English-only SFT; English gold within 2 SE
