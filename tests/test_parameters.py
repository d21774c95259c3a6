"""Parameters checked against conf/base before any node: unknown keys (with the closest valid one),
wrong types, TRL trainer arguments and sampling settings; a typo in each pipeline's file stops `kedro run`
at once with one line per problem and leaves no output."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kowen_kedro.parameters import ParameterError, check, check_run_parameters

BASE = {
    "sft": {"trainer_args": {"learning_rate": 1e-5}, "global_batch_size": 8, "seed": 0, "lora": {}},
    "evaluation": {"judge": {"seed": 0, "model": None, "backend": "local"}, "nlu": {"tasks": "local"},
                   "generation": {"backend": {"backend": "transformers"}, "sampling": {"temperature": 0.7}}},
    "target_language": "${runtime_params:target_language, ko}",
    "flag": True,
    "world": {"seed": 0},
}
FIELDS = {"sft": {"learning_rate", "num_train_epochs", "max_length"}}


def problems(params):
    return check(params, BASE, lambda path: "conf/x/parameters.yml", fields_of=FIELDS.__getitem__,
                 sampling=lambda: {"temperature", "top_p", "max_new_tokens", "seed"}, runtime_only={"world.sizes"})


def test_a_valid_override_passes():
    assert problems({"sft": {"trainer_args": {"num_train_epochs": 2}, "finetuning": "lora", "lora": {"r": 8}, "seed": 1},
                     "evaluation": {"judge": {"model": "gpt-4o"}, "nlu": {"tasks": ["mmlu"]},
                                    "generation": {"backend": {"backend": "vllm", "tensor_parallel_size": 4},
                                                   "sampling": {"top_p": 0.9}}},
                     "target_language": "ja", "flag": False,
                     "world": {"sizes": {"gold": 10}}}) == []  # a key only the catalog reads (runtime_only)


@pytest.mark.parametrize("params, expected", [
    ({"sft": {"global_batch_sise": 8}}, "sft.global_batch_sise: unknown parameter (did you mean 'global_batch_size'?)"),
    ({"sft": {"trainer_args": {"learning_rat": 1e-5}}},
     "sft.trainer_args.learning_rat: unknown sft trainer argument (did you mean 'learning_rate'?)"),
    ({"evaluation": {"generation": {"sampling": {"temprature": 1.0}}}},
     "evaluation.generation.sampling.temprature: unknown sampling setting (did you mean 'temperature'?)"),
    ({"sft": {"seed": "zero"}}, "sft.seed: expected a number (as in conf/base), got string 'zero'"),
    ({"flag": 1}, "flag: expected a bool (as in conf/base), got number 1"),
    ({"evaluation": {"nlu": {"tasks": 3}}}, "evaluation.nlu.tasks: expected a string (as in conf/base), got number 3"),
    ({"evalution": {}}, "evalution: unknown parameter (did you mean 'evaluation'?)"),
])
def test_each_problem_is_named_with_file_key_and_closest_key(params, expected):
    assert problems(params) == [f"conf/x/parameters.yml: {expected}"]


def test_the_real_trainer_configs_are_the_installed_trls():
    from kowen_kedro.parameters import trainer_fields

    assert {"learning_rate", "max_length", "assistant_only_loss"} <= set(trainer_fields("sft"))
    assert {"beta", "precompute_ref_log_probs"} <= set(trainer_fields("dpo")) and "clo_lambda" in trainer_fields("clo")
    assert "beta" not in trainer_fields("sft")
    assert {"qe_steps", "mt_steps", "out_dir", "pretrain_english_share"} <= set(trainer_fields("tiny"))
    assert trainer_fields("dpo")["beta"] is float and trainer_fields("tiny")["qe_steps"] is int


TYPOS = {  # one per pipeline's parameters file
    "parameters_data_synthesis.yml": ("data_synthesis:\n  decontamination:\n    ngrams: 8\n", "data_synthesis.decontamination.ngrams", "ngram"),
    "parameters_translation_qe.yml": ("translation_qe:\n  filter:\n    drop_bottom_fractoin: 0.1\n",
                                      "translation_qe.filter.drop_bottom_fractoin", "drop_bottom_fraction"),
    "parameters_reward_model.yml": ("reward_model:\n  training:\n    trainer_args:\n      learning_rat: 1.0e-5\n",
                                    "reward_model.training.trainer_args.learning_rat", "learning_rate"),
    "parameters_sft.yml": ("sft:\n  global_batch_sise: 16\n", "sft.global_batch_sise", "global_batch_size"),
    "parameters_preference_alignment.yml": ("dpo_iter_2:\n  dpo:\n    trainer_args:\n      betta: 1.0\n",
                                            "dpo_iter_2.dpo.trainer_args.betta", "beta"),
    "parameters_evaluation.yml": ("evaluation:\n  judge:\n    max_unparsable_share: 0.1\n",
                                  "evaluation.judge.max_unparsable_share", "max_unparseable_share"),
}


@pytest.mark.slow
def test_a_typo_in_each_pipelines_parameters_stops_the_run_before_any_node(tmp_path):
    from conftest import scratch_project

    root = tmp_path / "project"
    root.mkdir()
    scratch_project(root, raw_data=False)
    (root / "conf" / "typo").mkdir()
    for name, (text, _, _) in TYPOS.items():
        (root / "conf" / "typo" / name).write_text(text)
    result = subprocess.run([sys.executable, "-m", "kedro", "run", "--env", "typo"], cwd=root, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 1, result.stderr[-3000:]
    for name, (_, key, closest) in TYPOS.items():
        assert f"conf/typo/{name}: {key}: unknown" in result.stderr and f"did you mean '{closest}'?" in result.stderr, name
    assert "Traceback" not in result.stderr and "stopped before any node" in result.stderr
    made = sorted(str(p.relative_to(root)) for p in (root / "data").rglob("*") if p.is_file())
    assert all(p.startswith("data/01_raw/benchmarks/") for p in made)  # no world, no model, no dataset written


def test_keys_the_catalog_reads_as_runtime_params_are_valid():
    from conftest import ROOT
    from kowen_kedro.parameters import runtime_only_keys

    keys = runtime_only_keys(ROOT / "conf")
    assert {"tiny_world.sizes", "tiny_world.extra_languages", "target_language"} <= keys


def test_check_run_parameters_reads_the_files_and_names_them(tmp_path):
    conf = tmp_path / "conf"
    (conf / "base").mkdir(parents=True)
    (conf / "mine").mkdir()
    (conf / "base" / "parameters.yml").write_text("sft:\n  seed: 0\n  trainer_args:\n    learning_rate: 1.0e-5\n")
    (conf / "mine" / "parameters_sft.yml").write_text("sft:\n  sed: 1\n")
    with pytest.raises(ParameterError) as err:
        check_run_parameters(conf, "mine", {"sft": {"seed": 0, "sed": 1, "trainer_args": {"learning_rate": 1e-5}}},
                             fields_of=FIELDS.__getitem__)
    assert err.value.problems == ["conf/mine/parameters_sft.yml: sft.sed: unknown parameter (did you mean 'seed'?)"]
    with pytest.raises(ParameterError, match=r"^--params: sft.trainer_args.lr: unknown sft trainer argument"):
        check_run_parameters(conf, None, {"sft": {"seed": 0, "trainer_args": {"lr": 1}}}, {"sft": {"trainer_args": {"lr": 1}}},
                             fields_of=FIELDS.__getitem__)


def test_trainer_and_sampling_values_are_checked_against_the_installed_field_types():
    from kowen_kedro.parameters import sampling_fields, trainer_fields

    def real(params):
        return check(params, {"sft": {"trainer_args": {}}, "evaluation": {"generation": {"sampling": {}}}},
                     lambda path: "conf/x/parameters.yml", fields_of=trainer_fields, sampling=sampling_fields)

    assert real({"sft": {"trainer_args": {"learning_rate": 3e-4, "num_train_epochs": 2, "lr_scheduler_type": "cosine",
                                          "max_length": None, "assistant_only_loss": True, "report_to": ["mlflow"],
                                          "lr_scheduler_kwargs": {"min_lr": 0.0}}},
                 "evaluation": {"generation": {"sampling": {"temperature": 0, "seed": 3}}}}) == []
    assert real({"sft": {"trainer_args": {"learning_rate": "3e-4", "assistant_only_loss": "yes", "per_device_train_batch_size": 2.5,
                                          "lr_scheduler_type": "cosine_typo"}},
                 "evaluation": {"generation": {"sampling": {"seed": True}}}}) == [
        "conf/x/parameters.yml: sft.trainer_args.learning_rate: expected float (the sft trainer argument's type), got string '3e-4'",
        "conf/x/parameters.yml: sft.trainer_args.assistant_only_loss: expected bool (the sft trainer argument's type), got string 'yes'",
        "conf/x/parameters.yml: sft.trainer_args.per_device_train_batch_size: expected int (the sft trainer argument's type), got number 2.5",
        "conf/x/parameters.yml: evaluation.generation.sampling.seed: expected int (the sampling setting's type), got bool True",
    ]  # lr_scheduler_type is SchedulerType | str in transformers: any string passes here, the trainer names the bad one


@pytest.mark.parametrize("value, annotation, expected", [
    (1, "float", True), (True, "float", False), (1.0, "int", False), (None, "int | None", True), (3, "int | None", True),
    ("linear", "SchedulerType", True), ("linearish", "SchedulerType", False), ("sigmoid", "list[str]", True),
    ([1, 2], "list[str]", True), ("{}", "dict", True), ("a", "Literal['a', 'b']", True), ("c", "Literal['a', 'b']", False),
])
def test_fits_reads_the_annotations_trl_uses(value, annotation, expected):
    from typing import Literal, Optional  # noqa: F401 - names the annotations below are written with

    from transformers.trainer_utils import SchedulerType  # noqa: F401

    from kowen_kedro.parameters import fits

    assert fits(value, eval(annotation)) is expected


def test_every_key_of_conf_base_has_a_one_line_help():
    from conftest import ROOT
    from kowen_kedro.parameters import describe

    rows = describe(ROOT / "conf")
    assert len(rows) > 200 and [key for key, _, text in rows if not text] == []
    assert all("\n" not in text and len(text) <= 200 for _, _, text in rows)
    helps = {key: text for key, _, text in rows}
    assert helps["sft.trainer_args.warmup_ratio"] == "Linear warmup over warmup_ratio fraction of total steps."  # TRL's own
    assert helps["dpo_iter_1.dpo.reference"].startswith("previous (Kowen")  # from the _dpo anchor's comment
    assert helps["sft.global_batch_size"].startswith("= per-device batch")  # the comment beside the key wins
    assert helps["cross_lingual.clo.seed"] == "seed of the stage's data order and initialisation"  # a stage block's key


def test_kedro_params_lists_keys_values_and_help_of_an_environment():
    from click.testing import CliRunner

    from conftest import ROOT
    from kowen_kedro.cli import cli

    runner = CliRunner()
    base = runner.invoke(cli, ["params", "sft.trainer_args.learning", "--conf-source", str(ROOT / "conf")])
    assert base.exit_code == 0 and base.output.split("#")[0].strip() == "sft.trainer_args.learning_rate = 0.003"
    big = runner.invoke(cli, ["params", "sft.trainer_args.learning", "--env", "kowen_7b", "--conf-source", str(ROOT / "conf")])
    assert big.output.split("#")[0].strip() == "sft.trainer_args.learning_rate = 1e-05"
    assert runner.invoke(cli, ["params", "sft.trainer_args.lerning", "--conf-source", str(ROOT / "conf")]).exit_code == 1


@pytest.mark.parametrize("env", ["base", "clo", "kowen_7b", "xl_instruct"])
def test_every_shipped_environment_passes_the_check(env):
    from kedro.config import OmegaConfigLoader

    from conftest import ROOT
    from kowen_kedro.settings import CONFIG_LOADER_ARGS

    args = {k: v for k, v in CONFIG_LOADER_ARGS.items() if k not in ("base_env", "default_run_env")}
    params = OmegaConfigLoader(str(ROOT / "conf"), base_env="base", default_run_env=env, **args)["parameters"]
    check_run_parameters(ROOT / "conf", env, params)  # raises ParameterError with one line per problem
