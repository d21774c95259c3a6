"""Parameters checked before any node runs.

The schema is ``conf/base``: its parameter files hold every key, its default and, in the comment beside
it, its help. A run's parameters (base + the run's environment + ``--params``) are checked against it
when the run starts (:class:`kowen_kedro.hooks.ParameterCheckHook`, before any node and before the
MLflow run):

* a key base does not have is an error naming the file that sets it and the closest valid key;
* a value of another type than base's (a number for a number, a bool for a bool, a string for a
  string, a list for a list, a block for a block) is an error; a base default of ``null`` or an
  interpolation (``${...}``) accepts any value;
* ``trainer_args`` blocks are checked against the installed TRL config class the stage trains with
  (``SFTConfig``, ``RewardConfig``, ``DPOConfig``, CLO's ``CLOConfig``), ``tiny_models`` against
  :class:`~kowen_kedro.tiny.build.TinyConfig`, sampling blocks against
  :class:`~kowen_kedro.llm.types.SamplingParams`; generation-backend blocks (``backend``: vLLM /
  OpenAI options) and LoRA blocks are options of other tools and are not checked here.
"""

from __future__ import annotations

import difflib
import fnmatch
from pathlib import Path
from typing import Any, Callable, Iterable

#: ``trainer_args`` blocks and the trainer configuration they feed.
TRAINER_ARGS = {
    "sft.trainer_args": "sft",
    "xl_instruct.trainer_args": "sft",
    "cross_lingual.baseline_sft.trainer_args": "sft",
    "reward_model.training.trainer_args": "reward",
    "_dpo.trainer_args": "dpo",
    "dpo_iter_*.dpo.trainer_args": "dpo",
    "cross_lingual.baseline_dpo.trainer_args": "dpo",
    "cross_lingual.clo.trainer_args": "clo",
    "tiny_models": "tiny",  # the built-in models' TinyConfig (+ the node's out_dir, pretrain_english_share)
}
#: Sampling blocks (``SamplingParams`` fields).
SAMPLING = ("data_synthesis.teacher.sampling", "evaluation.gold.sampling", "evaluation.generation.sampling",
            "preference_alignment.sampling.params")
#: Options of other tools, passed through as they are.
OPEN = ("*.backend", "*.lora")
#: Keys whose base default is one of several accepted types.
TYPES = {
    "evaluation.nlu.tasks": {"string", "list"},          # local, or harness task names
    "reward_model.benchmark.weights": {"string", "block"},  # a published table's name, or subset counts
    "translation_qe.qe.gpus": {"string", "number"},       # auto, or a number of GPUs
}


class ParameterError(ValueError):
    """Parameters the run cannot use; one line per problem (file, key, what is wrong)."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def trainer_fields(kind: str) -> set[str]:
    """The field names of the installed trainer configuration class of ``kind`` (``tiny``: the tiny models')."""
    from dataclasses import fields

    if kind == "tiny":
        from kowen_kedro.tiny.build import TinyConfig

        return {f.name for f in fields(TinyConfig)} | {"out_dir", "pretrain_english_share"}
    if kind == "clo":
        from kowen_kedro.preference.clo_trainer import CLOConfig as cls
    else:
        import trl

        cls = {"sft": trl.SFTConfig, "reward": trl.RewardConfig, "dpo": trl.DPOConfig}[kind]
    return {f.name for f in fields(cls)}


def stage_keys() -> set[str]:
    from kowen_kedro.training.stages import STAGE_KEYS

    return set(STAGE_KEYS)


def sampling_fields() -> set[str]:
    from dataclasses import fields

    from kowen_kedro.llm.types import SamplingParams

    return {f.name for f in fields(SamplingParams)}


def load_files(folder: Path) -> dict[str, dict]:
    """``{file: its parameters, interpolations unresolved}`` for every ``parameters*.yml`` of ``folder``."""
    from omegaconf import OmegaConf

    out = {}
    for path in sorted(folder.glob("parameters*.yml")) + sorted(folder.glob("parameters*/**/*.yml")):
        out[str(path)] = OmegaConf.to_container(OmegaConf.load(path), resolve=False) or {}
    return out


def merge(trees: Iterable[dict]) -> dict:
    out: dict = {}
    for tree in trees:
        for key, value in tree.items():
            out[key] = merge([out[key], value]) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _has(tree: dict, path: str) -> bool:
    node: Any = tree
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _matches(path: str, patterns: Iterable[str]) -> str | None:
    return next((p for p in patterns if fnmatch.fnmatchcase(path, p)), None)


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "list", dict: "block"}.get(type(value), type(value).__name__)


def _closest(key: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, sorted(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check(params: dict, base: dict, where: Callable[[str], str],
          fields_of: Callable[[str], set[str]] = trainer_fields, sampling: Callable[[], set[str]] = sampling_fields,
          runtime_only: Iterable[str] = ()) -> list[str]:
    """Problems of ``params`` against the ``base`` schema, one line each: ``file: key: problem``.

    ``where(path)`` names the file (or ``--params``) that sets a key; ``runtime_only``: keys the
    configuration reads as ``${runtime_params:<key>, ...}`` without a parameters entry (valid as given).
    """
    runtime_only = set(runtime_only)
    problems: list[str] = []

    def unknown(path: str, key: str, valid: Iterable[str], what: str) -> None:
        problems.append(f"{where(path)}: {path}: unknown {what}{_closest(key, valid)}")

    def walk(given: dict, schema: dict | None, prefix: str) -> None:
        for key, value in given.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            trainer = _matches(path, TRAINER_ARGS)
            if trainer and isinstance(value, dict):
                kind = TRAINER_ARGS[trainer]
                valid = fields_of(kind)
                for name in value:
                    if name not in valid:
                        unknown(f"{path}.{name}", name, valid, "tiny-model setting" if kind == "tiny" else f"{kind} trainer argument")
                continue
            if path in SAMPLING and isinstance(value, dict):
                valid = sampling()
                for name in value:
                    if name not in valid:
                        unknown(f"{path}.{name}", name, valid, "sampling setting")
                continue
            if _matches(path, OPEN) or path in runtime_only:
                continue
            if schema is None:
                continue
            if key not in schema:
                stage = "trainer_args" in schema  # a training stage block: every stage key is valid
                if not (stage and key in stage_keys()):
                    unknown(path, str(key), [str(k) for k in schema] + (sorted(stage_keys()) if stage else []), "parameter")
                continue
            expected = schema[key]
            if expected is None or (isinstance(expected, str) and "${" in expected):
                continue
            if isinstance(expected, dict) and isinstance(value, dict):
                walk(value, expected, path)
            elif value is not None and _kind(value) not in TYPES.get(path, {_kind(expected)}):
                problems.append(f"{where(path)}: {path}: expected a {_kind(expected)} (as in conf/base), "
                                f"got {_kind(value)} {value!r}")

    walk(params, base, "")
    return problems


def runtime_only_keys(conf: Path) -> set[str]:
    """Keys the configuration (catalog, globals) reads as ``${runtime_params:<key>, ...}``."""
    import re

    text = "".join(p.read_text() for p in conf.rglob("*.yml") if not p.name.startswith("parameters"))
    return set(re.findall(r"runtime_params:([\w.]+)", text))


def check_run_parameters(conf_dir: str | Path, env: str | None, params: dict, runtime_params: dict | None = None,
                         fields_of: Callable[[str], set[str]] = trainer_fields) -> None:
    """Raise :class:`ParameterError` when the run's ``params`` do not fit ``conf/base``'s schema."""
    conf = Path(conf_dir)
    base_files = load_files(conf / "base")
    env_files = load_files(conf / env) if env and env != "base" and (conf / env).is_dir() else {}
    base = merge(base_files.values())

    def where(path: str) -> str:
        if runtime_params and _has(runtime_params, path):
            return "--params"
        for name, tree in [*env_files.items(), *base_files.items()]:
            if _has(tree, path):
                return str(Path(name).relative_to(conf.parent)) if conf.is_absolute() else name
        return "--params"

    problems = check(params, base, where, fields_of, runtime_only=runtime_only_keys(conf))
    if problems:
        raise ParameterError(problems)
