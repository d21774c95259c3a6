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
  :class:`~kowen_kedro.llm.types.SamplingParams`: names, and values against the field's type (a
  learning rate written ``3e-4`` is a float; ``"3e-4"`` in quotes is an error here, not in the child);
  generation-backend blocks (``backend``: vLLM / OpenAI options) and LoRA blocks are options of other
  tools and are not checked here.

Every key has a one-line help (``kedro params [PREFIX] [--env ENV]`` lists keys, values and help): the
comment beside the key in ``conf/base`` (or the comment lines right above it), else, for a field of a
trainer, sampling or tiny-model block, the help its configuration class gives the field (TRL's field
metadata), else :data:`STAGE_HELP` for the keys every training stage block takes.
"""

from __future__ import annotations

import difflib
import fnmatch
from pathlib import Path
from typing import Any, Callable, Iterable

#: How the project's configuration is loaded (``settings.CONFIG_LOADER_ARGS``; :func:`recipe_params` reads it too).
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # recipes (conf/<env>/) override single keys of base parameters, not whole top-level blocks
    "merge_strategy": {"parameters": "soft"},
    "config_patterns": {
        "parameters": ["parameters*", "parameters*/**", "**/parameters*"],
        "mlflow": ["mlflow*", "mlflow*/**"],
    },
}

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
OPEN = ("*.backend", "*.lora", "preflight.rows")
#: Keys whose base default is one of several accepted types.
TYPES = {
    "evaluation.nlu.tasks": {"string", "list"},          # local, or harness task names
    "reward_model.benchmark.weights": {"string", "block"},  # a published table's name, or subset counts
    "translation_qe.qe.gpus": {"string", "number"},       # auto, or a number of GPUs
    "translation_qe.qe.batch_size": {"string", "number"},  # auto, or pairs per forward pass
    "training.deepspeed.zero_stage": {"string", "number"},  # auto (chosen for the GPU), or 0-3
}
#: Trainer arguments that also take ``auto``: chosen for the GPU by :func:`kowen_kedro.training.preflight.choose_settings`
#: (batch, checkpointing) or in the training child (SFT packing, :mod:`kowen_kedro.training.kernels`).
AUTO_TRAINER_ARGS = ("per_device_train_batch_size", "gradient_checkpointing", "packing")


#: Help of the keys every training stage block takes (:data:`kowen_kedro.training.stages.STAGE_KEYS`).
STAGE_HELP = {
    "trainer_args": "fields of the stage's TRL config class (SFTConfig, RewardConfig, DPOConfig, CLOConfig)",
    "global_batch_size": "examples per optimizer step over all processes; gradient accumulation is derived from it",
    "finetuning": "full | lora | attention_only (CLO: the attention projections only)",
    "lora": "peft LoraConfig overrides when finetuning is lora (defaults: r 8 on q_proj, v_proj)",
    "seed": "seed of the stage's data order and initialisation",
    "ref_model": "the DPO reference model (default: the policy the stage starts from)",
    "callbacks": "extra transformers TrainerCallback import paths",
    "enabled": "false skips the stage",
}
#: Blocks written once in conf/base and reused through a YAML anchor: the help of their keys is the anchor's.
ALIASES = ((r"^dpo_iter_\d+\.dpo(?=\.|$)", "_dpo"),)


class ParameterError(ValueError):
    """Parameters the run cannot use; one line per problem (file, key, what is wrong)."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def trainer_class(kind: str) -> type:
    """The installed configuration class of a ``kind`` of block: a TRL config, CLO's, TinyConfig or SamplingParams."""
    if kind == "tiny":
        from kowen_kedro.tiny.build import TinyConfig

        return TinyConfig
    if kind == "sampling":
        from kowen_kedro.llm.types import SamplingParams

        return SamplingParams
    if kind == "clo":
        from kowen_kedro.preference.clo_trainer import CLOConfig

        return CLOConfig
    import trl

    return {"sft": trl.SFTConfig, "reward": trl.RewardConfig, "dpo": trl.DPOConfig}[kind]


#: Keys of ``tiny_models`` that are the build node's, not TinyConfig fields.
TINY_EXTRA = {"out_dir": str, "pretrain_english_share": float}


def trainer_fields(kind: str) -> dict[str, Any]:
    """``{field name: its type}`` of the installed configuration class of ``kind`` (``tiny``: + the node's keys)."""
    import typing
    from dataclasses import fields

    cls = trainer_class(kind)
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - an unresolvable annotation: names are still checked, types are not
        hints = {}
    out = {f.name: hints.get(f.name, Any) for f in fields(cls)}
    return {**out, **TINY_EXTRA} if kind == "tiny" else out


def field_help(kind: str, name: str) -> str:
    """The help the configuration class of ``kind`` gives field ``name`` (TRL: the field's metadata)."""
    from dataclasses import fields

    found = {f.name: f for f in fields(trainer_class(kind))}.get(name)
    return str(found.metadata.get("help", "")) if found is not None else ""


def stage_keys() -> set[str]:
    from kowen_kedro.training.stages import STAGE_KEYS

    return set(STAGE_KEYS)


def sampling_fields() -> dict[str, Any]:
    return trainer_fields("sampling")


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


def fits(value: Any, annotation: Any) -> bool:
    """Whether ``value`` (as YAML gives it) is of a dataclass field's type; what cannot be judged fits."""
    import enum
    import types
    import typing

    if annotation is Any or value is None and annotation is type(None):
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(fits(value, a) for a in typing.get_args(annotation))
    if origin is typing.Literal:
        return value in typing.get_args(annotation)
    if origin in (list, tuple):
        args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
        return isinstance(value, (list, tuple)) or bool(args) and fits(value, args[0])  # TRL takes "a" for ["a"]
    if origin is dict:
        return isinstance(value, (dict, str))  # a JSON string is accepted by transformers
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return value in {m.value for m in annotation} or value in annotation.__members__
    return True


def _type_name(annotation: Any) -> str:
    text = str(annotation) if not isinstance(annotation, type) else annotation.__name__
    return text.replace("typing.", "").replace("NoneType", "None")


def _closest(key: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, sorted(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check(params: dict, base: dict, where: Callable[[str], str],
          fields_of: Callable[[str], Any] = trainer_fields, sampling: Callable[[], Any] = sampling_fields,
          runtime_only: Iterable[str] = ()) -> list[str]:
    """Problems of ``params`` against the ``base`` schema, one line each: ``file: key: problem``.

    ``where(path)`` names the file (or ``--params``) that sets a key; ``fields_of(kind)`` / ``sampling()``:
    the field names of a trainer / sampling block (a mapping to their types also checks the values);
    ``runtime_only``: keys the configuration reads as ``${runtime_params:<key>, ...}`` without a
    parameters entry (valid as given).
    """
    runtime_only = set(runtime_only)
    problems: list[str] = []

    def unknown(path: str, key: str, valid: Iterable[str], what: str) -> None:
        problems.append(f"{where(path)}: {path}: unknown {what}{_closest(key, valid)}")

    def walk(given: dict, schema: dict | None, prefix: str) -> None:
        for key, value in given.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            trainer = _matches(path, TRAINER_ARGS)
            if (trainer or path in SAMPLING) and isinstance(value, dict):
                kind = TRAINER_ARGS[trainer] if trainer else "sampling"
                valid = fields_of(kind) if trainer else sampling()
                what = {"tiny": "tiny-model setting", "sampling": "sampling setting"}.get(kind, f"{kind} trainer argument")
                for name, item in value.items():
                    if name not in valid:
                        unknown(f"{path}.{name}", name, valid, what)
                    elif item == "auto" and name in AUTO_TRAINER_ARGS and kind != "tiny":
                        continue
                    elif isinstance(valid, dict) and item is not None and not fits(item, valid[name]):
                        problems.append(f"{where(f'{path}.{name}')}: {path}.{name}: expected {_type_name(valid[name])} "
                                        f"(the {what}'s type), got {_kind(item)} {item!r}")
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
                         fields_of: Callable[[str], Any] = trainer_fields) -> None:
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


# ---- help: one line per key -------------------------------------------------------------------------

def _inline_comment(rest: str) -> str:
    quote = None
    for i, char in enumerate(rest):
        if char in "\"'" and quote is None:
            quote = char
        elif char == quote:
            quote = None
        elif char == "#" and quote is None and (i == 0 or rest[i - 1].isspace()):
            return rest[i + 1:].strip()
    return ""


def comments(path: str | Path) -> dict[str, str]:
    """``{key path: its comment}`` of a parameters file: the comment on the key's line, else the comment
    lines right above it (no blank line between). Keys inside list items are not keys of the tree."""
    import re

    key = re.compile(r"^(\s*)([A-Za-z_][\w\-]*|\"[^\"]+\"):(\s|$)")
    out: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    above: list[str] = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        text = line.strip()
        if text.startswith("#"):
            above.append(text.lstrip("#").strip())
            continue
        match = key.match(line)
        if match:
            indent, name = len(match.group(1)), match.group(2).strip('"')
            while stack and stack[-1][0] >= indent:
                stack.pop()
            stack.append((indent, name))
            out[".".join(k for _, k in stack)] = _inline_comment(line[match.end(2) + 1:]) or " ".join(above)
        above = []
    return out


def _first_sentence(text: str, width: int = 200) -> str:
    """One line: the first sentence of ``text``, shortened to ``width`` characters."""
    text = " ".join(text.split())
    cut = text.find(". ")
    text = text[:cut + 1] if cut > 0 else text
    return text if len(text) <= width else text[:width - 3].rstrip() + "..."


def help_of(path: str, notes: dict[str, str], base: dict) -> str:
    """The one-line help of ``path`` (see the module's docstring for where it comes from)."""
    import re

    candidates = [path] + [re.sub(pattern, alias, path) for pattern, alias in ALIASES if re.search(pattern, path)]
    for candidate in candidates:
        if notes.get(candidate):
            return _first_sentence(notes[candidate])
    parent, _, name = path.rpartition(".")
    trainer = _matches(parent, TRAINER_ARGS)
    if trainer or parent in SAMPLING:
        kind = TRAINER_ARGS[trainer] if trainer else "sampling"
        found = field_help(kind, name) if name not in TINY_EXTRA or kind != "tiny" else ""
        if found:
            return _first_sentence(found)
    node: Any = base
    for part in parent.split(".") if parent else []:
        node = node.get(part, {}) if isinstance(node, dict) else {}
    if isinstance(node, dict) and "trainer_args" in node and name in STAGE_HELP:
        return STAGE_HELP[name]
    return ""


def leaves(tree: dict, prefix: str = "") -> list[tuple[str, Any]]:
    """``(key path, value)`` of every leaf of ``tree`` (an empty block and a list are leaves)."""
    out = []
    for key, value in tree.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        out.extend(leaves(value, path) if isinstance(value, dict) and value else [(path, value)])
    return out


def describe(conf_dir: str | Path, env: str | None = None, prefix: str = "") -> list[tuple[str, Any, str]]:
    """``(key, value, help)`` of every parameter of ``env`` (base + env) whose key path starts with ``prefix``;
    interpolations are shown as written."""
    conf = Path(conf_dir)
    base_files = load_files(conf / "base")
    base = merge(base_files.values())
    tree = merge([base, *load_files(conf / env).values()]) if env and env != "base" and (conf / env).is_dir() else base
    notes: dict[str, str] = {}
    for name in base_files:
        notes.update(comments(name))
    return [(path, value, help_of(path, notes, base)) for path, value in leaves(tree) if path.startswith(prefix)]


def recipe_params(conf_dir: str | Path, env: str | None = None, runtime_params: dict | None = None) -> dict:
    """The parameters of ``env`` over conf/base, resolved as ``kedro run --env`` resolves them (the project's
    config loader settings, globals and runtime parameters), without a Kedro session."""
    from kedro.config import OmegaConfigLoader

    args = {k: v for k, v in CONFIG_LOADER_ARGS.items() if k != "default_run_env"}
    params = OmegaConfigLoader(conf_source=str(conf_dir), env=env or "base", runtime_params=runtime_params or {}, **args)["parameters"]
    return merge([params, runtime_params or {}])  # runtime parameters over the files, as KedroContext.params
