"""Parameters checked against the parameter groups before any node: unknown keys (with the closest valid one),
wrong types, TRL trainer arguments and sampling settings; a typo in each pipeline's file stops `kedro run`
at once with one line per problem and leaves no output."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import base_params
from kowen_kedro.parameters import ParameterError, check, check_run_parameters

FIELDS = {"sft": {"learning_rate", "num_train_epochs", "max_length"}, "lora": {"r"}}




def problems(override):
    from kowen_kedro.parameters import merge, sampling_fields, trainer_fields

    return check(merge([base_params(), override]), lambda path: "conf/x/parameters.yml", fields_of=trainer_fields,
                 sampling=sampling_fields, runtime_only={"tiny_world.sizes"})


def test_a_valid_override_passes():
    assert problems({"sft": {"trainer_args": {"num_train_epochs": 2}, "finetuning": "lora", "lora": {"r": 8}, "seed": 1,
                             "languages": ["source"]},
                     "evaluation": {"judge": {"model": "gpt-4o"}, "nlu": {"tasks": ["mmlu"], "limit": 5},
                                    "generation": {"backend": {"backend": "vllm", "tensor_parallel_size": 4},
                                                   "sampling": {"top_p": 0.9}}},
                     "training": {"deepspeed": {"zero_stage": "auto"}, "gradient_checkpointing": True},
                     "data_synthesis": {"mixture": {"sizes": {"target_single_turn": 400000}}},
                     "target_language": "ja", "dpo_iter_4": base_params()["dpo_iter_3"],
                     "tiny_world": {"sizes": {"gold": 10}}}) == []  # a key only the catalog reads (runtime_only)


@pytest.mark.parametrize("params, expected", [
    ({"sft": {"global_batch_sise": 8}}, "sft.global_batch_sise: unknown parameter (did you mean 'global_batch_size'?)"),
    ({"sft": {"trainer_args": {"learning_rat": 1e-5}}},
     "sft.trainer_args.learning_rat: unknown sft trainer argument (did you mean 'learning_rate'?)"),
    ({"evaluation": {"generation": {"sampling": {"temprature": 1.0}}}},
     "evaluation.generation.sampling.temprature: unknown sampling setting (did you mean 'temperature'?)"),
    ({"sft": {"lora": {"lora_alfa": 16}}}, "sft.lora.lora_alfa: unknown LoRA setting (did you mean 'lora_alpha'?)"),
    ({"sft": {"seed": "zero"}}, "sft.seed: expected a valid integer, got str 'zero'"),
    ({"sft": {"learning_rate": 1e-5}}, "sft.learning_rate: unknown parameter"),
    ({"xl_instruct": {"enabled": 1}}, "xl_instruct.enabled: expected a valid boolean, got int 1"),
    ({"xl_instruct": {"replay": "1.0"}}, "xl_instruct.replay: expected a valid number, got str '1.0'"),
    ({"evaluation": {"nlu": {"tasks": 3}}}, "evaluation.nlu.tasks: expected a valid string, got int 3"),
    ({"cross_lingual": {"method": "cpo"}}, "cross_lingual.method: expected 'clo', 'sft_dpo' or 'sft', got str 'cpo'"),
    ({"training": {"deepspeed": {"zero_stage": 4}}}, "training.deepspeed.zero_stage: expected 0, 1, 2, 3 or 'auto', got int 4"),
    ({"data_synthesis": {"mixture": {"sizes": {"en_single_turn": "all"}}}},
     "data_synthesis.mixture.sizes.en_single_turn: expected a valid integer, got str 'all'"),
    ({"evalution": {}}, "evalution: unknown parameter (did you mean 'evaluation'?)"),
    ({"sft": {"trainer_args": {"lr_scheduler_type": ["cosine"]}}},
     "sft.trainer_args.lr_scheduler_type: expected Union[transformers.trainer_utils.SchedulerType, str] (the sft trainer argument's "
     "type), got list ['cosine']"),
])
def test_each_problem_is_named_with_file_key_and_closest_key(params, expected):
    assert problems(params) == [f"conf/x/parameters.yml: {expected}"]


def test_a_block_the_run_sets_to_null_is_named_key_by_key():
    from kowen_kedro.parameters import merge

    params = merge([base_params(), {"training": {"deepspeed": None}}])
    assert check(params, lambda path: "conf/x/parameters.yml") == [
        "conf/x/parameters.yml: training.deepspeed: expected a dictionary or an instance of DeepSpeed, got NoneType None"]
    del params["training"]["deepspeed"]
    assert check(params, lambda path: "conf/x/parameters.yml") == [
        "conf/x/parameters.yml: training.deepspeed: missing (conf/base sets every key of this group)"]


def test_the_environments_table_of_fields_judges_values_as_the_classes_do():
    """The check reads the configuration classes' fields from a table the environment keeps (JSON): for every
    field of every class, and values of every kind YAML gives (each enum member's name and value too), the
    table's types and the classes' own give the same verdict, and the error names the same type."""
    import enum
    import json
    import typing

    from kowen_kedro.parameters import FIELD_KINDS, _type_name, class_fields, fields_key, fields_table, fits, from_spec, type_spec

    values = [True, False, 0, 3, -1, 0.5, 1e-4, "x", "no", "steps", "auto", "", [1], ["a", "b"], [], {"a": 1}, {}, None, "[1]"]
    judged = 0
    for kind in FIELD_KINDS:
        for name, real in class_fields(kind).items():
            spec = type_spec(real)
            rebuilt = from_spec(json.loads(json.dumps(spec)))
            extra = []
            for t in [real, *typing.get_args(real)]:
                if isinstance(t, type) and issubclass(t, enum.Enum):
                    extra += [m.value for m in t] + list(t.__members__)
            for value in values + extra:
                assert fits(value, rebuilt) == fits(value, real), (kind, name, real, value)
                judged += 1
            if spec != "any":  # the type an error names
                assert _type_name(rebuilt) == _type_name(real), (kind, name)
    assert judged > 10_000
    stored = json.loads(fields_table().read_text())  # the table the check read is this environment's
    assert stored["key"] == fields_key() and set(stored["fields"]) == set(FIELD_KINDS)


def test_a_stale_table_is_made_anew_and_a_current_one_spares_the_imports(tmp_path, monkeypatch):
    """A table of other package versions is replaced; with a current one, a run's check imports neither TRL,
    transformers nor torch (they took about 3 s before the first node)."""
    import json
    import subprocess
    import sys

    from kowen_kedro import parameters

    table = tmp_path / "config-fields.json"
    table.write_text(json.dumps({"key": "other versions", "fields": {"sft": {"only": "int"}}}))
    monkeypatch.setattr(parameters, "fields_table", lambda: table)
    parameters.installed_fields.cache_clear()  # this process's table: read again, from the stale one
    try:
        assert "learning_rate" in parameters.trainer_fields("sft") and "only" not in parameters.trainer_fields("sft")
        assert json.loads(table.read_text())["key"] == parameters.fields_key()
    finally:
        monkeypatch.undo()
        parameters.installed_fields.cache_clear()
    probe = ("import sys; from kowen_kedro.parameters import trainer_fields; assert trainer_fields('dpo')['beta'] is float; "
             "print(sorted(m for m in ('trl', 'transformers', 'torch', 'peft') if m in sys.modules))")
    parameters.installed_fields()  # the environment's own table, made current whatever ran before
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_real_trainer_configs_are_the_installed_trls():
    from kowen_kedro.parameters import trainer_fields

    assert {"learning_rate", "max_length", "assistant_only_loss"} <= set(trainer_fields("sft"))
    assert {"beta", "precompute_ref_log_probs"} <= set(trainer_fields("dpo")) and "clo_lambda" in trainer_fields("clo")
    assert "beta" not in trainer_fields("sft")
    assert {"r", "lora_alpha", "target_modules"} <= set(trainer_fields("lora"))
    assert trainer_fields("dpo")["beta"] is float


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
    sft = {**base_params()["sft"], "trainer_args": {"learning_rate": 1e-5}}
    with pytest.raises(ParameterError) as err:
        check_run_parameters(conf, "mine", {"sft": {**sft, "sed": 1}}, fields_of=FIELDS.__getitem__)
    assert err.value.problems == ["conf/mine/parameters_sft.yml: sft.sed: unknown parameter (did you mean 'seed'?)"]
    with pytest.raises(ParameterError, match=r"^--params: sft.trainer_args.lr: unknown sft trainer argument"):
        check_run_parameters(conf, None, {"sft": {**sft, "trainer_args": {"lr": 1}}}, {"sft": {"trainer_args": {"lr": 1}}},
                             fields_of=FIELDS.__getitem__)


def test_trainer_and_sampling_values_are_checked_against_the_installed_field_types():
    from kowen_kedro.parameters import sampling_fields, trainer_fields

    from kowen_kedro.parameters import merge

    def real(override):
        return check(merge([base_params(), override]), lambda path: "conf/x/parameters.yml", fields_of=trainer_fields,
                     sampling=sampling_fields)

    assert real({"sft": {"trainer_args": {"learning_rate": 3e-4, "num_train_epochs": 2, "lr_scheduler_type": "cosine",
                                          "max_length": None, "assistant_only_loss": True, "report_to": ["mlflow"],
                                          "lr_scheduler_kwargs": {"min_lr": 0.0}}},
                 "evaluation": {"generation": {"sampling": {"temperature": 0, "seed": 3}}}}) == []
    assert sorted(real({"sft": {"trainer_args": {"learning_rate": "3e-4", "assistant_only_loss": "yes", "per_device_train_batch_size": 2.5,
                                                 "lr_scheduler_type": "cosine_typo"}},
                        "evaluation": {"generation": {"sampling": {"seed": True}}}})) == [
        "conf/x/parameters.yml: evaluation.generation.sampling.seed: expected int (the sampling setting's type), got bool True",
        "conf/x/parameters.yml: sft.trainer_args.assistant_only_loss: expected bool (the sft trainer argument's type), got string 'yes'",
        "conf/x/parameters.yml: sft.trainer_args.learning_rate: expected float (the sft trainer argument's type), got string '3e-4'",
        "conf/x/parameters.yml: sft.trainer_args.per_device_train_batch_size: expected int (the sft trainer argument's type), got number 2.5",
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
    assert helps["dpo_iter_1.dpo.reference"].startswith("previous (Kowen")  # the DPO group's field, every iteration
    assert helps["sft.global_batch_size"] == helps["cross_lingual.clo.global_batch_size"]  # one Stage field
    assert helps["tiny_models.qe_steps"].startswith("QE regression steps")  # TinyConfig's own


def test_every_field_of_every_group_has_a_help_and_no_value():
    """The values live in conf/base alone: a group field has a help and no default, except the keys a block may
    leave out (None: not set)."""
    from dataclasses import MISSING, fields, is_dataclass

    from kowen_kedro import groups

    seen = set()

    def visit(cls):
        if cls in seen:
            return
        seen.add(cls)
        for f in fields(cls):
            assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help"
            assert f.default is MISSING or f.default is None, f"{cls.__name__}.{f.name} has a default: {f.default!r}"
            sub = groups.subgroup(cls, f.name)
            if sub is not None:
                visit(sub)

    for cls in groups.GROUPS.values():
        if is_dataclass(cls):
            visit(cls)
    assert len(seen) > 40


def test_a_node_builds_its_group_and_names_what_is_wrong():
    from kowen_kedro.groups import SFT, GroupError

    sft = SFT.of(base_params()["sft"])
    assert sft.trainer_args["learning_rate"] == 3e-3 and sft.languages == "all" and sft.ref_model is None
    broken = {**base_params()["sft"], "seed": "0"}
    del broken["finetuning"]
    with pytest.raises(GroupError) as err:
        SFT.of(broken)
    assert err.value.problems == [("sft.finetuning", "missing (conf/base sets every key of this group)"),
                                  ("sft.seed", "expected a valid integer, got str '0'")]


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
