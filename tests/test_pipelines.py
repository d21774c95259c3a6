"""Pipeline structure: six stages registered, iterations chained, every dataset declared in the catalog."""

import json
from pathlib import Path

import pandas as pd
import pytest
from kedro.framework.project import configure_project, pipelines
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from conftest import ROOT, base_params

STAGES = {"data_synthesis", "translation_qe", "reward_model", "sft", "preference_alignment", "evaluation"}


@pytest.fixture(scope="module")
def project():
    bootstrap_project(ROOT)
    configure_project("kowen_kedro")
    return pipelines


def test_registry_has_the_six_stages_and_default(project):
    assert STAGES | {"models", "__default__"} <= set(project)
    default = project["__default__"]
    assert {n.name for n in default.nodes} == {n.name for name in STAGES | {"models"} for n in project[name].nodes}


def test_every_training_node_is_a_launch_and_no_other_is(project):
    from kowen_kedro.runner import LAUNCH_TAG

    tagged = {n.name for n in project["__default__"].nodes if LAUNCH_TAG in n.tags}
    trains = {n.name for n in project["__default__"].nodes if n.func.__name__.startswith("train_")}
    assert tagged == trains and len(trains) >= 9


def test_every_node_is_in_a_stage_namespace_that_nothing_interrupts(project):
    """kedro-viz folds a namespace into one box: every node sits in its pipeline's namespace or a
    declared stage of its own (the user prompts, which translation_qe works on before data_synthesis goes
    on), and no box encloses another stage's work (Kedro warns of an interrupted namespace)."""
    import warnings

    from kowen_kedro.pipeline_registry import STAGES, register_pipelines

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        registered = register_pipelines()
    assert not [str(w.message) for w in caught if "interrupted" in str(w.message)]
    for name, pipeline in registered.items():
        for node in pipeline.nodes:
            top = (node.namespace or "").split(".")[0]
            assert top == name or top in STAGES or (name == "__default__" and top in registered), (name, node.name)
    assert {n.name for n in registered["data_synthesis"].nodes if n.namespace == "prompts"} == {
        "prompts.ingest_prompts_node", "prompts.decontaminate_prompts_node"}


def test_the_iteration_curve_is_nodes_per_iteration(project):
    """Each DPO iteration's evaluation is three nodes in a namespace of its own; the curve node only gathers."""
    evaluation = project["evaluation"]
    names = {n.name for n in evaluation.nodes}
    for i in (1, 2, 3):
        for step in ("generate_outputs_node", "judge_outputs_node", "summarize_node"):
            assert f"evaluation.dpo_iter_{i}_evaluation.{step}" in names
    (curve,) = [n for n in evaluation.nodes if n.name == "evaluation.iteration_curve_node"]
    assert curve.inputs == ["sft_model", "dpo_iter_1.policy", "dpo_iter_2.policy", "dpo_iter_3.policy",
                            "dpo_iter_1_evaluation.summary", "dpo_iter_2_evaluation.summary", "dpo_iter_3_evaluation.summary"]
    (gen,) = [n for n in evaluation.nodes if n.name == "evaluation.dpo_iter_2_evaluation.generate_outputs_node"]
    assert gen.inputs[:2] == ["dpo_iter_2.policy", "eval_prompts_raw"]
    (summary,) = [n for n in evaluation.nodes if n.name == "evaluation.dpo_iter_2_evaluation.summarize_node"]
    assert "params:dpo_iter_2.stage" in summary.inputs


def test_dpo_iterations_are_chained(project):
    nodes = {n.name: n for n in project["preference_alignment"].nodes}
    assert "sft_model" in nodes["preference_alignment.dpo_iter_1.train_dpo_node"].inputs
    assert "dpo_iter_1.policy" in nodes["preference_alignment.dpo_iter_2.train_dpo_node"].inputs
    assert "dpo_iter_2.policy" in nodes["preference_alignment.dpo_iter_3.sample_completions_node"].inputs
    assert "params:dpo_iter_2.dpo" in nodes["preference_alignment.dpo_iter_2.train_dpo_node"].inputs  # per-iteration beta
    assert "params:preference_alignment.sampling" in nodes["preference_alignment.dpo_iter_2.sample_completions_node"].inputs


def test_every_dataset_is_in_the_catalog_and_generated_ones_are_versioned(project):
    with KedroSession.create(project_path=ROOT) as session:
        context = session.load_context()
        catalog = context.catalog
        params = context.params
    default = project["__default__"]
    datasets = {d for d in default.datasets() if not d.startswith("params:") and d != "parameters"}
    missing = [d for d in sorted(datasets) if not catalog.get(d) or type(catalog.get(d)).__name__ == "MemoryDataset"]
    assert missing == ["tiny_models"]  # the build manifest is handed over in memory on purpose
    for name in ["prompts", "sft_dataset", "sft_model", "reward_model", "dpo_iter_1.policy", "dpo_iter_2.completions", "judgements"]:
        assert catalog.get(name)._version is not None, name
    assert params["dpo_iter_1"]["dpo"]["trainer_args"]["beta"] == 0.1
    assert params["dpo_iter_2"]["dpo"]["trainer_args"]["beta"] == 1.0


def test_kowen_7b_recipe_resolves_to_paper_settings(project):
    with KedroSession.create(project_path=ROOT, env="kowen_7b") as session:
        context = session.load_context()
        params = context.params
        raw = context.catalog.get("user_prompts_raw")
        alpaca = context.catalog.get("eval_prompts_raw")
        mt_bench = context.catalog.get("mt_bench_prompts_raw")
        gamed = context.catalog.get("alpacaeval_df_gamed")
        judge_prompts = context.catalog.get("mt_bench_judge_prompts")
    assert mt_bench.dataset_name == "LGAI-EXAONE/KoMT-Bench" and params["evaluation"]["mt_bench"]["language"] == "ko"
    assert type(raw).__name__ == "HFDataset" and raw.dataset_name == "lmsys/lmsys-chat-1m"
    # AlpacaEval 2.0: its reference outputs are the comparison model, its df_gamed.csv feeds the LC fit
    assert alpaca.dataset_name == "json" and params["evaluation"]["alpacaeval"]["reference"]["alpacaeval"] == "published"
    assert alpaca._dataset_kwargs["data_files"] == "hf://datasets/tatsu-lab/alpaca_eval/alpaca_eval_gpt4_baseline.json"
    assert gamed._dataset_kwargs["data_files"] == "hf://datasets/tatsu-lab/alpaca_eval/df_gamed.csv"
    assert params["evaluation"]["mt_bench"]["judge_prompts"] == "fastchat"
    assert str(judge_prompts._filepath).endswith("fastchat/llm_judge/data/judge_prompts.jsonl") and judge_prompts._protocol == "https"
    assert params["models"]["teacher"] == "Qwen/Qwen2.5-72B-Instruct" and params["models"]["student"] == "Qwen/Qwen2.5-7B"
    assert params["data_synthesis"]["mixture"]["sizes"] == {"target_single_turn": 400000, "en_single_turn": 300000, "target_multi_turn": 400000}
    assert params["data_synthesis"]["teacher"]["backend"]["backend"] == "vllm"
    from kowen_kedro.llm.generator import make_backend  # base's teacher block leaves no openai-only option behind

    teacher = make_backend(params["data_synthesis"]["teacher"]["backend"], "Qwen/Qwen2.5-72B-Instruct")
    assert (teacher.inner, teacher.options) == ("vllm", {"tensor_parallel_size": 4, "gpu_memory_utilization": 0.9})
    assert params["sft"]["trainer_args"]["learning_rate"] == 1e-5 and params["sft"]["global_batch_size"] == 128
    betas = [params[f"dpo_iter_{i}"]["dpo"]["trainer_args"]["beta"] for i in (1, 2, 3)]
    assert betas == [0.1, 1.0, 1.0] and params["dpo_iter_1"]["dpo"]["trainer_args"]["learning_rate"] == 5e-7
    assert params["training"]["world_size"] == 4 and params["preference_alignment"]["keep_iteration"] == 2
    assert params["preference_alignment"]["pairs"]["min_margin_sd"] == 0.0  # Kowen keeps every best-vs-worst pair
    assert params["preference_alignment"]["prompts"]["languages"] == ["target"]
    # soft merge: a recipe overrides single keys, base-only keys of the same block survive
    assert params["data_synthesis"]["decontamination"] == {"ngram": 8, "threshold": 0.5}
    assert params["evaluation"]["judge"]["seed"] == 0


def test_clo_and_xl_instruct_recipes_resolve_to_paper_settings(project):
    with KedroSession.create(project_path=ROOT, env="clo") as session:
        params = session.load_context().params
    clo = params["cross_lingual"]["clo"]
    assert (clo["finetuning"], clo["trainer_args"]["learning_rate"], clo["trainer_args"]["beta"],
            clo["trainer_args"]["clo_lambda"], clo["trainer_args"]["num_train_epochs"]) == ("attention_only", 5e-5, 0.1, 0.5, 1)
    assert clo["trainer_args"]["load_best_model_at_end"] and clo["trainer_args"]["per_device_train_batch_size"] % 2 == 0
    assert params["cross_lingual"]["method"] == "clo" and "baseline_dpo" in params["cross_lingual"]
    with KedroSession.create(project_path=ROOT, env="xl_instruct") as session:
        xl = session.load_context().params["xl_instruct"]
    assert (xl["finetuning"], xl["lora"]["r"], xl["lora"]["target_modules"], xl["trainer_args"]["learning_rate"],
            xl["trainer_args"]["lr_scheduler_type"], xl["trainer_args"]["warmup_ratio"], xl["trainer_args"]["num_train_epochs"],
            xl["seed"]) == ("lora", 8, ["q_proj", "v_proj"], 1e-4, "cosine", 0.03, 1, 1)


def test_each_recipe_sft_reads_its_rows(monkeypatch, project):
    """Kowen's SFT reads the mixture (every language, or the languages ``sft.languages`` names); the
    XL-Instruct stage reads the XL-Instruct rows, from the SFT model, plus ``replay`` x as many rows of
    the mixture, and its ablation gives each instruction another row's answer; kowen_7b leaves the
    stage out (the SFT model passes through)."""
    import pandas as pd

    import kowen_kedro.pipelines.sft.nodes as nodes

    seen = []
    monkeypatch.setattr(nodes, "train_stage", lambda kind, stage, model, records, cfg, training, preflight_cfg:
                        seen.append((stage, model, records, cfg)) or {"final_dir": f"out/{stage}"})
    monkeypatch.setattr(nodes, "registry_model", lambda registry, role: registry[role])
    chat = lambda q, a: [{"role": "user", "content": q}, {"role": "assistant", "content": a}]  # noqa: E731
    mixture = pd.DataFrame({"language": ["en", "ko", "ko"], "part": ["en_single_turn", "target_single_turn", "target_multi_turn"],
                            "messages": [chat("Add 1 and 2.", "1 plus 2 is 3."), chat("1 더하기 2는?", "3입니다."), chat("안녕", "네")]})
    xl_rows = pd.DataFrame({"language": "ko", "messages": [chat(f"Q{i}? Answer in Korean.", f"답 {i}") for i in range(4)]})
    with KedroSession.create(project_path=ROOT) as session:
        params = session.load_context().params
    training = (params["training"], params["preflight"])
    assert nodes.train_sft_node(mixture, {"student": "base"}, params["sft"], *training, "en", "ko") == "out/sft"
    assert nodes.train_xl_instruct_node("out/sft", xl_rows, mixture, {**params["xl_instruct"], "replay": 0}, *training) == "out/xl_instruct"
    (s_stage, s_model, s_rows, s_cfg), (x_stage, x_model, x_rows, x_cfg) = seen
    assert (s_stage, s_model, x_stage, x_model) == ("sft", "base", "xl_instruct", "out/sft")
    assert s_rows == [{"messages": m} for m in mixture["messages"]]
    assert s_cfg.trainer_args == params["sft"]["trainer_args"] and x_cfg.seed == params["xl_instruct"]["seed"] == 1
    assert x_rows == [{"messages": m} for m in xl_rows["messages"]]
    nodes.train_xl_instruct_node("out/sft", xl_rows, mixture, {**params["xl_instruct"], "replay": 0.5}, *training)
    assert seen[-1][2][:4] == x_rows and len(seen[-1][2]) == 6  # + 2 rows of the mixture (0.5 per XL-Instruct row)
    assert all({"messages": list(m)} in s_rows for m in (r["messages"] for r in seen[-1][2][4:]))
    nodes.train_sft_node(mixture, {"student": "base"}, {**params["sft"], "languages": "source"}, *training, "en", "ko")
    assert seen[-1][2] == [{"messages": mixture["messages"][0]}]  # En-ST only: Table 3's English-only row
    nodes.train_xl_instruct_node("out/sft", xl_rows, mixture, {**params["xl_instruct"], "ablation_shuffle_responses": True,
                                                               "replay": 0}, *training)
    shuffled = seen[-1][2]
    assert [r["messages"][0] for r in shuffled] == [m[0] for m in xl_rows["messages"]]
    answers = [r["messages"][1]["content"] for r in shuffled]
    assert sorted(answers) == sorted(m[1]["content"] for m in xl_rows["messages"])
    assert all(a != f"답 {i}" for i, a in enumerate(answers))  # every instruction has another row's answer
    with KedroSession.create(project_path=ROOT, env="kowen_7b") as session:
        off = session.load_context().params["xl_instruct"]
    n = len(seen)
    assert nodes.train_xl_instruct_node("out/sft", xl_rows, mixture, off, *training) == "out/sft" and len(seen) == n


def test_dpo_reference_is_the_previous_or_the_initial_policy(monkeypatch):
    import pandas as pd

    import kowen_kedro.pipelines.preference_alignment.nodes as nodes

    seen = []
    monkeypatch.setattr(nodes, "train_stage", lambda kind, stage, model, records, cfg, training, preflight_cfg:
                        seen.append((model, cfg)) or {"final_dir": "out"})
    from kowen_kedro.groups import GroupError

    pairs = pd.DataFrame([{"prompt": "q", "chosen": "a", "rejected": "b"}])
    params = base_params()
    dpo, training = params["dpo_iter_2"]["dpo"], (params["training"], params["preflight"])
    nodes.train_dpo_node("iter1", "sft", pairs, {**dpo, "reference": "previous"}, *training, "dpo_iter_2")
    nodes.train_dpo_node("iter1", "sft", pairs, {**dpo, "reference": "initial"}, *training, "dpo_iter_2")
    assert seen[0][0] == "iter1" and seen[0][1].ref_model is None  # no ref_model: TRL's frozen copy of the start policy
    assert seen[1][0] == "iter1" and seen[1][1].ref_model == "sft" and seen[1][1].trainer_args["beta"] == 1.0
    with pytest.raises(GroupError, match=r"dpo_iter_2.dpo.reference: expected 'previous' or 'initial', got str 'base'"):
        nodes.train_dpo_node("iter1", "sft", pairs, {**dpo, "reference": "base"}, *training, "dpo_iter_2")


def test_every_model_using_node_runs_after_raw_input_validation(project):
    default = project["__default__"]
    after = {n.name for n in default.from_nodes("models.validate_raw_inputs_node").nodes}
    model_inputs = {"model_registry", "reward_model", "sft_model", "aligned_policy", "tiny_models"}
    users = [n.name for n in default.nodes if set(n.inputs) & model_inputs or any(i.endswith(".policy") for i in n.inputs)]
    assert len(users) >= 15 and "models.build_tiny_models_node" in after
    assert set(users) <= after, set(users) - after


def test_bad_raw_input_fails_validation_naming_the_line(tmp_path):
    from conftest import RAW
    from kowen_kedro.data.validation import DataValidationError
    from kowen_kedro.datasets import JSONLinesDataset
    from kowen_kedro.pipelines.models.nodes import validate_raw_inputs_node

    good = {n: JSONLinesDataset(str(RAW / f"{n}.jsonl")).load() for n in ("user_prompts", "preference_pairs", "seed_passages", "eval_prompts")}
    assert validate_raw_inputs_node(*good.values())["preference_pairs"] == 48
    lines = (RAW / "user_prompts.jsonl").read_text().splitlines()
    lines[2] = lines[2].replace('"role": "user"', '"role": "assistant"', 1)
    bad = tmp_path / "user_prompts.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataValidationError) as err:
        validate_raw_inputs_node(JSONLinesDataset(str(bad)).load(), *list(good.values())[1:])
    assert (err.value.line, err.value.field) == (3, "conversation[0].role") and str(bad) in str(err.value)
    with pytest.raises(DataValidationError, match="field 'category': required column missing"):
        validate_raw_inputs_node(good["user_prompts"], good["preference_pairs"].drop(columns="category"), good["seed_passages"], good["eval_prompts"])
    mt_bench = JSONLinesDataset(str(RAW / "mt_bench_prompts.jsonl")).load()
    assert validate_raw_inputs_node(*good.values(), mt_bench)["mt_bench_prompts"] == 8
    lines = (RAW / "mt_bench_prompts.jsonl").read_text().splitlines()
    lines[5] = lines[5].replace('"turns": [', '"turns": ["", ', 1)  # three turns, one empty
    bad = tmp_path / "mt_bench_prompts.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataValidationError, match=r"mt_bench_prompts.jsonl, line 6, field 'turns'"):
        validate_raw_inputs_node(*good.values(), JSONLinesDataset(str(bad)).load())


def test_base_optional_inputs_are_absent_and_the_judge_prompts_are_fastchats(project):
    """The tiny default has no df_gamed.csv and no MT-Bench reference-answer file (None: the nodes say
    what that leaves out); FastChat's judge prompts are shipped and load."""
    with KedroSession.create(project_path=ROOT) as session:
        catalog = session.load_context().catalog
        assert catalog.load("alpacaeval_df_gamed") is None and catalog.load("mt_bench_reference_answers_raw") is None
        assert len(catalog.load("mt_bench_judge_prompts")) == 8
        assert session.load_context().params["evaluation"]["alpacaeval"]["reference"] == {
            "alpacaeval": "sft", "xl_alpacaeval": "sft", "m_alpacaeval": "sft"}


def test_the_raw_alpacaeval_file_or_hf_dataset_passes_every_node_that_reads_it(tmp_path):
    """AlpacaEval's own file has no id / language; on the hub it arrives as a HF Dataset (conf/kowen_7b)."""
    from datasets import Dataset

    from conftest import RAW
    from kowen_kedro.data.validation import DataValidationError
    from kowen_kedro.datasets import JSONLinesDataset
    from kowen_kedro.pipelines.data_synthesis.nodes import decontaminate_node
    from kowen_kedro.pipelines.evaluation.nodes import xl_alpacaeval_node
    from kowen_kedro.pipelines.models.nodes import validate_raw_inputs_node

    good = {n: JSONLinesDataset(str(RAW / f"{n}.jsonl")).load() for n in ("user_prompts", "preference_pairs", "seed_passages")}
    rows = [{"instruction": "Write a haiku about rain.", "output": "x", "generator": "gpt4", "dataset": "helpful_base"},
            {"instruction": 'Write "Test"', "output": "Test", "generator": "gpt4", "dataset": "oasst"}]
    raw_file = tmp_path / "alpaca_eval.json"
    raw_file.write_text(json.dumps(rows))
    for source in (pd.read_json(raw_file), Dataset.from_list(rows)):
        assert validate_raw_inputs_node(*good.values(), source)["eval_prompts"] == 2
        xl, metrics = xl_alpacaeval_node(source, {"languages": ["ko"], "seed": 0, "require_all_listed": False}, "en")
        assert list(xl["id"]) == ["alpaca-0-xl-ko"]  # 'Write "Test"' is one of XL-Instruct's excluded prompts
        assert (metrics["removed"]["value"], metrics["kept"]["value"], metrics["not_found"]["value"]) == (1.0, 1.0, 9.0)
        prompts = pd.DataFrame({"prompt_id": ["p1", "p2"], "prompt": ["Write a haiku about rain.", "Translate this."],
                                "language": ["en", "en"]})
        kept, removed, _ = decontaminate_node(prompts, source, {"ngram": 3, "threshold": 0.5})
        assert list(removed["prompt_id"]) == ["p1"] and list(kept["prompt_id"]) == ["p2"]
    with pytest.raises(DataValidationError) as err:
        validate_raw_inputs_node(*good.values(), Dataset.from_list([{"instruction": "ok"}, {"instruction": " "}]))
    assert (err.value.line, err.value.field) == (2, "instruction") and "HF dataset" in str(err.value)


def test_the_world_seed_reaches_catalog_and_parameters_and_samples_env_reads_the_shipped_files(project):
    """`--params tiny_world.seed=3` makes the raw inputs, the gold set and the oracle use world 3;
    `--env samples` trains on the hand-written samples (the gold set stays the world's)."""
    with KedroSession.create(project_path=ROOT, runtime_params={"tiny_world": {"seed": 3}}) as session:
        context = session.load_context()
        assert context.params["tiny_world"]["seed"] == 3
        for name in ("user_prompts_raw", "gold_prompts", "parallel_sentences_raw"):
            assert "seed_3" in str(context.catalog.get(name)._filepath), name
        assert context.params["models"]["teacher"] == "world:oracle"
    with KedroSession.create(project_path=ROOT, env="samples") as session:
        catalog = session.load_context().catalog
        assert str(catalog.get("user_prompts_raw")._filepath).endswith("/data/01_raw/user_prompts.jsonl")
        assert type(catalog.get("gold_prompts")).__name__ == "WorldPartDataset"


def test_dpo_prompts_come_from_both_languages_in_equal_shares():
    from kowen_kedro.pipelines.preference_alignment.nodes import dpo_prompts_node

    prompts = pd.DataFrame({"prompt_id": [f"e{i}" for i in range(10)] + ["k0"], "language": ["en"] * 10 + ["ko"],
                            "prompt": [f"q{i}" for i in range(11)]})
    target = pd.DataFrame({"prompt_id": [f"k{i}" for i in range(6)], "language": "ko", "prompt": [f"p{i}" for i in range(6)]})
    both = dpo_prompts_node(prompts, target, {"max_prompts": 8, "seed": 0, "languages": ["source", "target"]}, "en", "ko")
    assert both.groupby("language").size().to_dict() == {"en": 4, "ko": 4}
    assert set(both.loc[both["language"] == "ko", "prompt_id"]) <= set(target["prompt_id"])  # the target pool, translated prompts too
    only = dpo_prompts_node(prompts, target, {"max_prompts": 20, "seed": 0, "languages": ["target"]}, "en", "ko")
    assert list(only["language"].unique()) == ["ko"] and len(only) == 6  # capped by the pool
    with pytest.raises(ValueError, match=r"\['ja'\] is neither the source language 'en' nor the target language 'ko'"):
        dpo_prompts_node(prompts, target, {"max_prompts": 8, "seed": 0, "languages": ["source", "ja"]}, "en", "ko")


def test_translated_preferences_leave_out_pairs_not_wholly_in_the_source_language(monkeypatch):
    """A wrong-language rejected answer cannot survive translation (both answers would end in one
    language under the old label): such pairs are counted and not translated."""
    import kowen_kedro.pipelines.translation_qe.nodes as nodes

    class Tools:
        def __init__(self, *a):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            pass

        def run(self, df, columns, src, tgt):
            return df.assign(**{f"{c}_{tgt}": "번역 " + df[c] for c in columns}, qe_score=0.5, reject_reason=None)

    monkeypatch.setattr(nodes, "TranslationTools", Tools)
    pairs = pd.DataFrame([
        {"pair_id": "a", "language": "en", "category": "chat", "prompt": "What is the capital of Koris?",
         "chosen": "The capital of Koris is Cassel.", "rejected": "The capital of Koris is Vessa."},
        {"pair_id": "b", "language": "en", "category": "chat_hard", "prompt": "What is the capital of Koris?",
         "chosen": "The capital of Koris is Cassel.", "rejected": "코리스의 수도는 카셀입니다."},
    ])
    params = {**base_params()["translation_qe"], "preferences": {"languages": ["ko"], "max_pairs": 10, "drop_bottom_fraction": 0.0}}
    out, metrics = nodes.translate_preferences_node(pairs, {}, params, "en", {})
    assert list(out["source_pair_id"]) == ["a"] and metrics["not_source_language"]["value"] == 1


def test_pretraining_text_is_english_dominant_in_the_share_asked_for():
    from kowen_kedro.pipelines.models.nodes import english_dominant

    english = [f"There are {i} fruits in the list." for i in range(8)]
    korean = [f"목록에 과일이 {i}개 있습니다." for i in range(8)]
    out = english_dominant(korean[:4] + english + korean[4:], 0.8, "en", "ko")
    assert out[:8] == english and len(out) == 10  # every English text, 2 Korean (8 / 10 = 0.8)
    assert out[8:] == [korean[0], korean[4]]  # spread over the Korean texts, in order
    assert english_dominant(english + korean, 1.0, "en", "ko") == english
    with pytest.raises(ValueError, match="pretrain_english_share must be in"):
        english_dominant(english, 0.0, "en", "ko")


def _gold_answers(ids: list[str], gold: list[float]) -> pd.DataFrame:
    """A policy's gold answers (evaluation.gold.score_answers' columns) on ``ids`` (``en3``, ``ko1``, ...)."""
    n = len(ids)
    return pd.DataFrame({"id": ids, "language": [i[:2] for i in ids], "family": "sum", "prompt": "p", "answer": "a",
                         "gold": gold, "correct": gold, "fidelity": [1.0] * n, "safety": [float("nan")] * n,
                         "code_switched": [False] * n, "rephrased": [False] * n})


@pytest.mark.parametrize("third_enabled", [True, False])
def test_the_gold_slice_measures_every_enabled_dpo_iteration(project, third_enabled):
    """The gold-effects node alone, run by Kedro's SequentialRunner on a catalog of in-memory datasets (as
    Kedro's starters test a slice): with ``dpo_iter_3`` enabled its gold, its comparisons with SFT and
    with iteration 2, and its claims are there; disabled, none of them."""
    from kedro.io import DataCatalog, MemoryDataset
    from kedro.runner import SequentialRunner

    from kowen_kedro.preference.iterations import DPO_ITERATIONS

    ids = [f"{lang}{i}" for lang in ("en", "ko") for i in range(8)]
    worse, better = [0.0, 1.0] * 8, [1.0] * 16
    answers = {name: _gold_answers(ids, better if name in ("teacher", "dpo_iter_3") else worse)
               for name in ("base", "teacher", "tiny_teacher", "sft", "xl_instruct", *DPO_ITERATIONS, "cross_lingual",
                            "cross_lingual_baseline")}
    rm = pd.DataFrame({"pair_id": ids, "language": [i[:2] for i in ids], "kind": "unsafe", "right": [1.0] * 16})
    params = base_params()
    params["dpo_iter_3"]["dpo"]["enabled"] = third_enabled
    values = {"gold_summary_qe": {"qe.spearman": 0.6, "qe.spearman.se": 0.05}, "gold_summary_judge": {},
              "gold_summary_alignment": {"base.alignment.top1": 0.25},
              "params:xl_instruct": params["xl_instruct"], "params:cross_lingual": params["cross_lingual"],
              "params:languages": ["en", "ko"], "params:source_language": "en", "params:target_language": "ko",
              **{f"gold_answers_{n}": t for n, t in answers.items()},
              **{f"gold_answers_{n}": rm for n in ("rm", "rm_transfer_source", "rm_transfer_target")},
              **{f"params:{it}": params[it] for it in DPO_ITERATIONS}}
    slice_ = project["__default__"].only_nodes("evaluation.gold_effects_node")
    assert slice_.inputs() == set(values)
    catalog = DataCatalog({name: MemoryDataset(value) for name, value in values.items()})
    out = SequentialRunner().run(slice_, catalog)  # the free outputs: the node's three
    assert set(out) == {"gold_metrics", "gold_effects", "gold_effects_md"}
    load = lambda name: out[name].load() if hasattr(out[name], "load") else out[name]  # noqa: E731 - a dataset or its data
    names = set(load("gold_metrics"))
    assert load("gold_metrics")["base.alignment.top1"]["value"] == 0.25  # the alignment figures join the gold metrics
    effects = load("gold_effects")
    third_claims = effects[effects["claim"].str.contains("dpo_iter_3")]
    if third_enabled:
        assert {"dpo_iter_3.en", "dpo_iter_3.en.vs_sft", "dpo_iter_3.ko.vs_dpo_iter_2"} <= names
        gain = third_claims[third_claims["claim"] == "on-policy DPO raises gold reward (dpo_iter_3 - sft)"].set_index("language")
        assert gain.loc["en", "measured"] == 0.5 and bool(gain.loc["en", "held"])  # 1 - mean(0, 1, ...) per prompt
    else:
        assert not {n for n in names if n.startswith("dpo_iter_3")} and third_claims.empty
    assert {"dpo_iter_2.en.vs_sft", "dpo_iter_2.en.vs_dpo_iter_1"} <= names  # the other iterations either way


def test_the_prompt_slice_ingests_and_drops_what_the_evaluation_asks(project, world):
    """The two prompt nodes alone, on in-memory datasets: the world's user prompts plus one that copies an
    evaluation instruction word for word go in; the copy is set aside as contaminated, every other prompt
    kept. An empty prompt stops the slice naming its line and field."""
    from kedro.io import DataCatalog, MemoryDataset
    from kedro.runner import SequentialRunner

    from kowen_kedro.cli import data_error
    from kowen_kedro.parameters import recipe_params

    params = recipe_params(ROOT / "conf")
    copied = world["eval_prompts"]["instruction"].iloc[0]

    def row(conversation_id: str, text: str) -> dict:
        return {"conversation_id": conversation_id, "language": "en", "model": "m", "turn": 1,
                "conversation": [{"role": "user", "content": text}]}

    def run(extra: list[dict]):
        values = {"user_prompts_raw": pd.concat([world["user_prompts"], pd.DataFrame(extra)], ignore_index=True),
                  "eval_prompts_raw": world["eval_prompts"],
                  "params:data_synthesis.ingest": params["data_synthesis"]["ingest"],
                  "params:data_synthesis.decontamination": params["data_synthesis"]["decontamination"],
                  "params:languages": ["en", "ko"]}
        slice_ = project["__default__"].only_nodes("prompts.ingest_prompts_node", "prompts.decontaminate_prompts_node")
        assert slice_.inputs() == set(values)
        out = SequentialRunner().run(slice_, DataCatalog({k: MemoryDataset(v) for k, v in values.items()}))
        return {name: out[name].load() if hasattr(out[name], "load") else out[name] for name in out}

    out = run([row("copy", copied)])
    prompts, contaminated = out["prompts"], out["contaminated_prompts"]
    assert "copy" in set(contaminated["prompt_id"]) and "copy" not in set(prompts["prompt_id"])
    assert len(set(prompts["prompt_id"]) & set(contaminated["prompt_id"])) == 0
    assert len(prompts) + len(contaminated) > 0.9 * len(world["user_prompts"])  # ingest drops duplicates and over-long ones only
    with pytest.raises(Exception) as err:
        run([row("empty", "  ")])
    bad = data_error(err.value)
    assert (bad.line, bad.field) == (len(world["user_prompts"]) + 1, "conversation[0].content")


# ---------------------------------------------------------------- pipeline slices (SequentialRunner, in memory)

def _run_slice(project, nodes: list[str], values: dict) -> dict:
    """Run the named nodes of the default pipeline alone with Kedro's SequentialRunner on in-memory datasets
    holding ``values``, which must be exactly the slice's inputs (a wiring change fails here in seconds);
    returns every output of the slice by name."""
    from kedro.io import DataCatalog, MemoryDataset
    from kedro.runner import SequentialRunner

    class Kept(MemoryDataset):  # the runner releases intermediate data once used: keep it for the asserts
        def _release(self) -> None:
            pass

    slice_ = project["__default__"].only_nodes(*nodes)
    assert slice_.inputs() == set(values), (sorted(slice_.inputs() - set(values)), sorted(set(values) - slice_.inputs()))
    catalog = DataCatalog({**{k: MemoryDataset(v) for k, v in values.items()}, **{k: Kept() for k in slice_.all_outputs()}})
    SequentialRunner().run(slice_, catalog)
    return {name: catalog[name].load() for name in slice_.all_outputs()}


@pytest.fixture
def fake_launches(monkeypatch, tmp_path):
    """Training launches that record their spec and return a made-up model folder (no child process); the
    training parameters point the run folders at a scratch folder."""
    import kowen_kedro.training.stages as stages

    launched = []

    def launch(spec, launcher="deepspeed", warm=True):
        launched.append(spec)
        return {"final_dir": f"/models/{spec.mlflow_prefix}", "metrics": {"train_loss": 1.0}}

    monkeypatch.setattr(stages, "launch", launch)
    return launched


def _params(**training) -> dict:
    from kowen_kedro.parameters import recipe_params

    return recipe_params(ROOT / "conf", None, {"training": training} if training else None)


def test_the_reward_model_slice_splits_translates_and_trains_three_reward_models(project, world, fake_launches, tmp_path):
    """split -> the transfer RMs' training pairs (English ones; the target-language copies) -> three launches,
    each on its own pairs and the same held-out ones."""
    params = _params(work_dir=str(tmp_path))
    pairs = world["preference_pairs"]
    english = pairs[pairs["language"] == "en"]
    translated = english.assign(language="ko", source_pair_id=english["pair_id"], pair_id=english["pair_id"] + "-ko")
    registry = {"reward_model_init": "/models/rm_init"}
    values = {"preference_pairs_raw": pairs, "translated_preference_pairs": translated, "model_registry": registry,
              "params:reward_model.data": params["reward_model"]["data"], "params:languages": ["en", "ko"],
              "params:reward_model": params["reward_model"], "params:training": params["training"], "params:preflight": params["preflight"],
              "params:source_language": "en", "params:target_language": "ko",
              "params:rm_transfer_source.role": "source", "params:rm_transfer_target.role": "target"}
    out = _run_slice(project, ["reward_model.split_preferences_node", "reward_model.train_reward_model_node",
                               "reward_model.rm_transfer_source.transfer_training_pairs_node",
                               "reward_model.rm_transfer_target.transfer_training_pairs_node",
                               "reward_model.rm_transfer_source.train_transfer_rm_node",
                               "reward_model.rm_transfer_target.train_transfer_rm_node"], values)
    assert (out["reward_model"], out["rm_transfer_source.reward_model"], out["rm_transfer_target.reward_model"]) == (
        "/models/reward_model", "/models/rm_transfer_source", "/models/rm_transfer_target")
    assert set(out["rm_transfer_source.train_pairs"]["language"]) == {"en"}
    assert set(out["rm_transfer_target.train_pairs"]["language"]) == {"ko"}
    assert len(out["rm_transfer_source.train_pairs"]) == len(out["rm_transfer_target.train_pairs"])
    by_stage = {Path(s.output_dir).parent.name: s for s in fake_launches}
    assert set(by_stage) == {"reward_model", "rm_transfer_source", "rm_transfer_target"}
    assert {s.kind for s in fake_launches} == {"reward"} and {s.model for s in fake_launches} == {"/models/rm_init"}
    assert len({Path(s.eval_file).name for s in fake_launches}) == 1  # the same held-out pairs (the name is their digest)


def test_the_sft_slice_trains_sft_then_xl_instruct_from_it(project, world, fake_launches, tmp_path):
    params = _params(work_dir=str(tmp_path))
    chats = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]} for i in range(8)]
    sft_dataset = pd.DataFrame({"language": ["en", "ko"] * 4, "messages": [c["messages"] for c in chats], "part": "p"})
    xl = pd.DataFrame({"language": ["ko"] * 4, "messages": [c["messages"] for c in chats[:4]]})
    values = {"sft_dataset": sft_dataset, "model_registry": {"student": "/models/student"}, "params:sft": params["sft"],
              "params:training": params["training"], "params:preflight": params["preflight"], "params:source_language": "en", "params:target_language": "ko",
              "xl_instruct_sft": xl, "params:xl_instruct": params["xl_instruct"]}
    out = _run_slice(project, ["sft.train_sft_node", "sft.train_xl_instruct_node"], values)
    assert (out["sft_model"], out["xl_instruct_policy"]) == ("/models/sft", "/models/xl_instruct")
    sft, xl_spec = fake_launches
    assert (sft.kind, sft.model, xl_spec.kind, xl_spec.model) == ("sft", "/models/student", "sft", "/models/sft")
    rows = lambda spec: sum(1 for _ in open(spec.train_file))  # noqa: E731
    assert rows(sft) == 8 and rows(xl_spec) == 4 + 4  # XL-Instruct's rows + as many replayed from the mixture (replay 1.0)


def test_the_preference_slice_chains_the_iterations_and_trains_clo_and_its_two_step_baseline(project, fake_launches, tmp_path):
    """Scored samples -> best/worst pairs -> DPO, iteration 2 starting from iteration 1's policy; CLO and its
    baseline from the SFT model, the baseline's DPO step from its SFT step."""
    params = _params(work_dir=str(tmp_path))

    def scored(prefix: str) -> pd.DataFrame:  # 4 prompts x 2 samples, rewards apart
        return pd.DataFrame([{"prompt_id": f"p{i}", "prompt": f"question {i}", "completion": f"{prefix} answer {i}.{k}",
                              "reward": float(k), "language": "en"} for i in range(4) for k in range(2)])

    clo_pairs = pd.DataFrame([{"pair_id": f"e{i}", "x_en": f"question {i}", "y_en": f"answer {i}", "x_l": f"질문 {i}",
                               "y_l": f"답 {i}"} for i in range(6)])
    values = {"dpo_iter_1.scored_completions": scored("one"), "dpo_iter_2.scored_completions": scored("two"),
              "params:preference_alignment.pairs": params["preference_alignment"]["pairs"], "sft_model": "/models/sft",
              "params:dpo_iter_1.dpo": params["dpo_iter_1"]["dpo"], "params:dpo_iter_2.dpo": params["dpo_iter_2"]["dpo"],
              "params:dpo_iter_1.stage": "dpo_iter_1", "params:dpo_iter_2.stage": "dpo_iter_2",
              "params:training": params["training"], "params:preflight": params["preflight"],
              "clo_pairs": clo_pairs, "params:cross_lingual": params["cross_lingual"]}
    out = _run_slice(project, ["preference_alignment.dpo_iter_1.build_pairs_node", "preference_alignment.dpo_iter_1.train_dpo_node",
                               "preference_alignment.dpo_iter_2.build_pairs_node", "preference_alignment.dpo_iter_2.train_dpo_node",
                               "preference_alignment.train_cross_lingual_node",
                               "preference_alignment.train_cross_lingual_baseline_sft_node",
                               "preference_alignment.train_cross_lingual_baseline_node"], values)
    assert len(out["dpo_iter_1.preference_pairs"]) == 4 and set(out["dpo_iter_1.preference_pairs"]["chosen_reward"]) == {1.0}
    models = {Path(s.output_dir).parent.name: (s.kind, s.model) for s in fake_launches}
    assert models == {"dpo_iter_1": ("dpo", "/models/sft"), "dpo_iter_2": ("dpo", "/models/dpo_iter_1"),
                      "cross_lingual": ("clo", "/models/sft"), "cross_lingual_baseline_sft": ("sft", "/models/sft"),
                      "cross_lingual_baseline": ("dpo", "/models/cross_lingual_baseline_sft")}
    assert out["cross_lingual_baseline_sft_model"] == "/models/cross_lingual_baseline_sft"
    assert (out["cross_lingual_policy"], out["cross_lingual_baseline_policy"]) == ("/models/cross_lingual", "/models/cross_lingual_baseline")


def test_the_models_slice_checks_the_raw_inputs_and_resolves_every_role(project, world):
    """The raw inputs checked, then every model role resolved against a built manifest: ``tiny:<name>`` to the
    built folder, ``world:oracle`` to the world's answer program of the run's seed and teacher faults."""
    params = _params()
    manifest = {"models": {name: f"/tiny/{name}" for name in ("tokenizer", "base", "student", "teacher", "reward_model_init",
                                                              "qe", "mt")}}
    values = {"user_prompts_raw": world["user_prompts"], "preference_pairs_raw": world["preference_pairs"],
              "seed_passages_raw": world["seed_passages"], "eval_prompts_raw": world["eval_prompts"],
              "mt_bench_prompts_raw": world["mt_bench_prompts"], "tiny_models": manifest,
              "params:models": params["models"], "params:tiny_world": params["tiny_world"]}
    out = _run_slice(project, ["models.validate_raw_inputs_node", "models.resolve_models_node"], values)
    registry = out["model_registry"]
    assert registry["student"] == "/tiny/student" and registry["qe"] == "/tiny/qe" and registry["judge"] == "/tiny/teacher"
    assert registry["teacher"].startswith("world-oracle/seed-0")  # the oracle of this world, with its faults


def test_the_translation_filter_slice_keeps_the_best_and_draws_every_set(project):
    """Rejected translations out, then the bottom 20% by QE; the histogram draws the four translated sets."""
    params = _params()
    scores = [0.1 * i for i in range(10)]
    translations = pd.DataFrame({"prompt_id": [f"p{i}" for i in range(10)], "qe_score": scores,
                                 "reject_reason": [None] * 9 + ["wrong language"]})
    values = {"prompt_translations": translations, "params:translation_qe": params["translation_qe"],
              "translated_preference_pairs": pd.DataFrame({"qe_score": [0.5, 0.6]}),
              "clo_pairs": pd.DataFrame({"qe_score": [0.7]}), "xl_instruct_sft": pd.DataFrame({"qe_score": [0.8, 0.9]})}
    out = _run_slice(project, ["translation_qe.filter_translations_node", "translation_qe.qe_histogram_node"], values)
    kept = out["translated_prompts"]
    assert list(kept["prompt_id"]) == [f"p{i}" for i in range(1, 9)]  # p9 rejected; p0 the bottom floor(0.2 x 9) = 1
    assert out["translation_qe_metrics"]["kept"]["value"] == 8
    assert len(out["qe_histogram"].axes[0].patches) > 0
