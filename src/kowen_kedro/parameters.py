"""Parameters checked before any node runs, and their help.

The values are ``conf/base``'s (a recipe's environment and ``--params`` override some); names, types and
help are the parameter groups' (:mod:`kowen_kedro.groups`). A run's parameters are checked when the run
starts (:class:`kowen_kedro.hooks.ParameterCheckHook`, before any node and before the MLflow run), by
building every group from them:

* a key no group has is an error naming the file that sets it and the closest valid key;
* a value of another type than the field's is an error (strict: ``"3e-4"`` in quotes is not a number),
  and so is a key the group needs that the run's parameters lack;
* ``trainer_args`` blocks are checked against the installed TRL config class the stage trains with
  (``SFTConfig``, ``RewardConfig``, ``DPOConfig``, CLO's ``CLOConfig``), ``lora`` blocks against peft's
  ``LoraConfig``, sampling blocks against
  :class:`~kowen_kedro.llm.types.SamplingParams`: names, and values against the field's type;
  generation-backend blocks (``backend``: vLLM / OpenAI options) are options of other tools and are not
  checked here.

Every key has a one-line help (``kedro params [PREFIX] [--env ENV]`` lists keys, values and help): its
group field's help, else, for a field of a trainer, LoRA or sampling block, the help its
configuration class gives the field (TRL's field metadata).
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
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
    "*.lora": "lora",  # peft's LoraConfig
}
#: Sampling blocks (``SamplingParams`` fields).
SAMPLING = ("data_synthesis.teacher.sampling", "data_synthesis.xl_instruct.sampling", "evaluation.gold.sampling", "evaluation.generation.sampling",
            "preference_alignment.sampling.params")
#: Trainer arguments that also take ``auto``: chosen for the GPU by :func:`kowen_kedro.training.preflight.choose_settings`
#: (batch, checkpointing) or in the training child (SFT packing, :mod:`kowen_kedro.training.kernels`).
AUTO_TRAINER_ARGS = ("per_device_train_batch_size", "gradient_checkpointing", "packing")


class ParameterError(ValueError):
    """Parameters the run cannot use; one line per problem (file, key, what is wrong)."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def trainer_class(kind: str) -> type:
    """The installed configuration class of a ``kind`` of block: a TRL config, CLO's, peft's LoraConfig or
    SamplingParams."""
    if kind == "sampling":
        from kowen_kedro.llm.types import SamplingParams

        return SamplingParams
    if kind == "lora":
        from peft import LoraConfig

        return LoraConfig
    from kowen_kedro.training.spec import config_class

    return config_class(kind)


def class_fields(kind: str) -> dict[str, Any]:
    """``{field name: its type}`` of the installed configuration class of ``kind``, read from the class
    (importing it: TRL's bring transformers and torch)."""
    import typing
    from dataclasses import fields

    cls = trainer_class(kind)
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - an unresolvable annotation: names are still checked, types are not
        hints = {}
    return {f.name: hints.get(f.name, Any) for f in fields(cls)}


def trainer_fields(kind: str) -> dict[str, Any]:
    """``{field name: its type}`` of the installed configuration class of ``kind`` (from the environment's
    table of them, :func:`installed_fields`)."""
    return installed_fields()[kind]


#: The configuration classes a run's parameters are checked against (:func:`trainer_class`).
FIELD_KINDS = ("sft", "reward", "dpo", "clo", "lora", "sampling")
#: The files of this project that define some of them (the rest are the installed packages').
_FIELD_SOURCES = ("parameters.py", "preference/clo_trainer.py", "llm/types.py")


def fields_table() -> Path:
    """Where the environment keeps its table of configuration fields: beside its packages."""
    import sys

    return Path(sys.prefix) / "share" / "kowen-kedro" / "config-fields.json"


@functools.cache
def fields_key() -> str:
    """What the table depends on: the installed versions of TRL, transformers and peft, and this project's
    files that define fields or the table's form (read once per process)."""
    import hashlib
    import json
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    here = Path(__file__).parent
    own = hashlib.sha1(b"".join((here / f).read_bytes() for f in _FIELD_SOURCES)).hexdigest()
    return json.dumps({"trl": installed("trl"), "transformers": installed("transformers"), "peft": installed("peft"), "own": own})


@functools.cache  # once per process, as its key
def installed_fields() -> dict[str, dict[str, Any]]:
    """``{kind: {field: type}}`` of every class in :data:`FIELD_KINDS`, as :func:`class_fields` reads them,
    the types as far as :func:`fits` judges values by them (:func:`type_spec`). Read from the environment's
    table (:func:`fields_table`) when its key is the current one (:func:`fields_key`), else read from the
    classes and the table written (``make venv`` writes it once): a run's check then imports neither TRL nor
    transformers, torch and peft, which took about 3 s before the first node could start."""
    import json
    import os

    key = fields_key()
    path = fields_table()
    specs = None
    try:
        stored = json.loads(path.read_text())
        specs = stored["fields"] if stored.get("key") == key else None
    except (OSError, ValueError, KeyError, TypeError):
        pass
    if specs is None:
        specs = {kind: {name: type_spec(t) for name, t in class_fields(kind).items()} for kind in FIELD_KINDS}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f"{path.name}.{os.getpid()}.partial")  # written whole, then renamed
            partial.write_text(json.dumps({"key": key, "fields": specs}, indent=1, sort_keys=True))
            partial.replace(path)
        except OSError:  # a read-only environment: read from the classes every time
            pass
    return {kind: {name: from_spec(spec) for name, spec in fields.items()} for kind, fields in specs.items()}


def type_spec(annotation: Any) -> Any:
    """A field's type as JSON, as far as :func:`fits` tells types apart: ``"bool"``, ``"int"``, ``"float"``,
    ``"str"``, ``"none"``, ``{"dict": [key, value] or None}``, ``{"union": [...], "bar": X | Y or Union}``,
    ``{"literal": [...]}`` (JSON values; another literal is ``"any"``), ``{"seq": "list" or "tuple", "of":
    [items] or None}``, ``{"enum": name, "module": ..., "members": {name: value}}``, ``{"class": name,
    "module": ...}`` for another class (its values are not judged); ``"any"`` for anything else."""
    import enum
    import json
    import types
    import typing

    origin = typing.get_origin(annotation)
    if annotation is type(None):
        return "none"
    if origin in (typing.Union, types.UnionType):  # written X | Y or Union[X, Y], as the class writes it
        return {"union": [type_spec(a) for a in typing.get_args(annotation)], "bar": origin is types.UnionType}
    if origin is typing.Literal:
        values = list(typing.get_args(annotation))
        try:
            return {"literal": values} if json.loads(json.dumps(values)) == values else "any"
        except (TypeError, ValueError):
            return "any"
    if origin in (list, tuple):
        args = typing.get_args(annotation)
        return {"seq": origin.__name__, "of": [type_spec(a) if a is not Ellipsis else "..." for a in args] if args else None}
    if origin is dict:
        args = typing.get_args(annotation)
        return {"dict": [type_spec(a) for a in args] if args else None}
    for simple in (bool, int, float, str):
        if annotation is simple:
            return simple.__name__
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        members = {name: m.value for name, m in annotation.__members__.items()}
        try:
            if json.loads(json.dumps(members)) == members:
                return {"enum": annotation.__name__, "module": annotation.__module__, "members": members}
        except (TypeError, ValueError):
            pass
    if isinstance(annotation, type):  # a class whose values fits() does not judge: its name, for the errors
        return {"class": annotation.__qualname__, "module": annotation.__module__}
    return "any"


def from_spec(spec: Any) -> Any:
    """The type :func:`type_spec` wrote as ``spec`` (an enum as one of the same name, module, members and
    values)."""
    import builtins
    import enum
    import functools
    import operator
    import typing

    if isinstance(spec, str):
        return {"any": Any, "none": type(None), "bool": bool, "int": int, "float": float, "str": str, "...": Ellipsis}[spec]
    if "union" in spec:
        members = [from_spec(s) for s in spec["union"]]
        return functools.reduce(operator.or_, members) if spec.get("bar") else typing.Union[tuple(members)]
    if "literal" in spec:
        return typing.Literal[tuple(spec["literal"])]
    if "seq" in spec:
        seq = {"list": (list, typing.List), "tuple": (tuple, typing.Tuple)}[spec["seq"]]
        if spec["of"] is None:
            return seq[1]
        return seq[0][tuple(Ellipsis if s == "..." else from_spec(s) for s in spec["of"])]
    if "dict" in spec:
        return typing.Dict if spec["dict"] is None else dict[tuple(from_spec(s) for s in spec["dict"])]
    if "class" in spec:  # a builtin as itself, another as a class of its name (nothing of it is imported)
        if spec["module"] == "builtins":
            return getattr(builtins, spec["class"])
        return type(spec["class"].rpartition(".")[2], (), {"__module__": spec["module"], "__qualname__": spec["class"]})
    return enum.Enum(spec["enum"], spec["members"], module=spec["module"])


def field_help(kind: str, name: str) -> str:
    """The help the configuration class of ``kind`` gives field ``name`` (TRL: the field's metadata)."""
    from dataclasses import fields

    found = {f.name: f for f in fields(trainer_class(kind))}.get(name)
    return str(found.metadata.get("help", "")) if found is not None else ""


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
        # by equality, not a set: a list or a mapping given for an enum is a wrong value, not a crash
        return any(value == m.value for m in annotation) or isinstance(value, str) and value in annotation.__members__
    return True


def _type_name(annotation: Any) -> str:
    text = str(annotation) if not isinstance(annotation, type) else annotation.__name__
    return text.replace("typing.", "").replace("NoneType", "None")


def _closest(key: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, sorted(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check(params: dict, where: Callable[[str], str], fields_of: Callable[[str], Any] = trainer_fields,
          sampling: Callable[[], Any] = sampling_fields, runtime_only: Iterable[str] = ()) -> list[str]:
    """Problems of a run's ``params`` (base + environment + ``--params``, resolved) against the parameter
    groups (:mod:`kowen_kedro.groups`), one line each: ``file: key: problem``.

    ``where(path)`` names the file (or ``--params``) that sets a key; ``fields_of(kind)`` / ``sampling()``:
    the field names of a trainer / sampling block (a mapping to their types also checks the values);
    ``runtime_only``: keys the configuration reads as ``${runtime_params:<key>, ...}`` without a
    parameters entry (valid as given).
    """
    from dataclasses import is_dataclass

    from kowen_kedro.groups import GROUPS, GroupError, build, field_types, group_of, subgroup

    runtime_only = set(runtime_only)
    problems: list[str] = []

    def unknown(path: str, key: str, valid: Iterable[str], what: str) -> None:
        problems.append(f"{where(path)}: {path}: unknown {what}{_closest(key, valid)}")

    def block(path: str, value: dict, kind: str) -> None:
        """A trainer / LoRA / sampling block: names and values against the tool's own class."""
        valid = fields_of(kind) if kind != "sampling" else sampling()
        what = {"sampling": "sampling setting", "lora": "LoRA setting"}.get(kind, f"{kind} trainer argument")
        for name, item in value.items():
            if name not in valid:
                unknown(f"{path}.{name}", name, valid, what)
            elif item == "auto" and name in AUTO_TRAINER_ARGS:
                continue
            elif isinstance(valid, dict) and item is not None and not fits(item, valid[name]):
                problems.append(f"{where(f'{path}.{name}')}: {path}.{name}: expected {_type_name(valid[name])} "
                                f"(the {what}'s type), got {_kind(item)} {item!r}")

    def walk(given: Any, cls: Any, prefix: str) -> Any:
        """Unknown keys named with the closest valid one; the other tools' blocks checked; returns ``given``
        without the keys the walk has judged (unknown, runtime-only), for the group's own build."""
        trainer = _matches(prefix, TRAINER_ARGS)
        if (trainer or prefix in SAMPLING) and isinstance(given, dict):
            block(prefix, given, TRAINER_ARGS[trainer] if trainer else "sampling")
        if cls is None or not isinstance(given, dict):
            return given
        names = field_types(cls)
        kept = {}
        for key, value in given.items():
            path = f"{prefix}.{key}"
            if key not in names:
                if path not in runtime_only:
                    unknown(path, str(key), names, "parameter")
                continue
            kept[key] = walk(value, subgroup(cls, key), path)
        return kept

    for key, value in params.items():
        cls = group_of(key)
        if cls is None:
            if key not in runtime_only:
                unknown(key, key, [k for k in GROUPS if "*" not in k], "parameter")
            continue
        kept = walk(value, cls if is_dataclass(cls) else None, key)
        try:
            build(cls, kept, key)
        except GroupError as exc:
            problems.extend(f"{where(path)}: {path}: {what}" for path, what in exc.problems)
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

    def where(path: str) -> str:
        if runtime_params and _has(runtime_params, path):
            return "--params"
        for name, tree in [*env_files.items(), *base_files.items()]:
            if _has(tree, path):
                return str(Path(name).relative_to(conf.parent)) if conf.is_absolute() else name
        return "--params"

    problems = check(params, where, fields_of, runtime_only=runtime_only_keys(conf))
    if problems:
        raise ParameterError(problems)


# ---- help: one line per key -------------------------------------------------------------------------

def _first_sentence(text: str, width: int = 200) -> str:
    """One line: the first sentence of ``text``, shortened to ``width`` characters."""
    text = " ".join(text.split())
    cut = text.find(". ")
    text = text[:cut + 1] if cut > 0 else text
    return text if len(text) <= width else text[:width - 3].rstrip() + "..."


def help_of(path: str) -> str:
    """The one-line help of ``path``: its parameter group's field (:mod:`kowen_kedro.groups`), else, inside a
    trainer, LoRA or sampling block, the help the tool's configuration class gives the field."""
    from kowen_kedro import groups

    found = groups.help_of(path)
    if found:
        return _first_sentence(found)
    parent, _, name = path.rpartition(".")
    trainer = _matches(parent, TRAINER_ARGS)
    if trainer or parent in SAMPLING:
        kind = TRAINER_ARGS[trainer] if trainer else "sampling"
        return _first_sentence(field_help(kind, name))
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
    return [(path, value, help_of(path)) for path, value in leaves(tree) if path.startswith(prefix)]


def recipe_params(conf_dir: str | Path, env: str | None = None, runtime_params: dict | None = None) -> dict:
    """The parameters of ``env`` over conf/base, resolved as ``kedro run --env`` resolves them (the project's
    config loader settings, globals and runtime parameters), without a Kedro session."""
    from kedro.config import OmegaConfigLoader

    args = {k: v for k, v in CONFIG_LOADER_ARGS.items() if k != "default_run_env"}
    params = OmegaConfigLoader(conf_source=str(conf_dir), env=env or "base", runtime_params=runtime_params or {}, **args)["parameters"]
    return merge([params, runtime_params or {}])  # runtime parameters over the files, as KedroContext.params
