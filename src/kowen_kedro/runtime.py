"""Helpers shared by the pipelines' nodes: model registry, cached generators, metric dicts."""

from __future__ import annotations

from typing import Any

from kowen_kedro.llm.cache import CallCache
from kowen_kedro.llm.generator import CachedGenerator, make_backend

TINY_PREFIX = "tiny:"


def resolve_models(tiny_manifest: dict, models: dict[str, str], world_seed: int = 0,
                   teacher_faults: dict | None = None) -> dict[str, str]:
    """Map each role to a loadable path or hub id: ``tiny:<name>`` -> the built tiny model's folder,
    ``world:oracle`` -> the world's answer program for ``world_seed`` with ``teacher_faults``
    (served over the OpenAI API)."""
    from kowen_kedro.world.oracle import ORACLE_REF, TeacherFaults, oracle_model_name

    faults = TeacherFaults(**(teacher_faults or {}))
    resolved = {}
    for role, ref in models.items():
        if ref == ORACLE_REF:
            resolved[role] = oracle_model_name(world_seed, faults)
        elif isinstance(ref, str) and ref.startswith(TINY_PREFIX):
            name = ref[len(TINY_PREFIX):]
            if name not in tiny_manifest["models"]:
                raise ValueError(f"models.{role}: no tiny model {name!r}; built: {sorted(tiny_manifest['models'])}")
            resolved[role] = tiny_manifest["models"][name]
        else:
            resolved[role] = ref
    return resolved


def registry_model(registry: dict[str, str], role: str) -> str:
    if role not in registry:
        raise KeyError(f"no model for role {role!r} in the model registry (parameters 'models'): {sorted(registry)}")
    return registry[role]


def cached_generator(model: str, backend_cfg: dict[str, Any], llm_cfg: dict[str, Any]) -> CachedGenerator:
    """A generator for ``model`` through the configured backend, cached in ``llm.cache_path``.

    The world's oracle is reached over the OpenAI API: its loopback server is started here (once per
    process) and its address filled in as ``base_url``; with no rate limit to respect, it takes 32
    concurrent calls unless the call site sets ``concurrency``."""
    from kowen_kedro.world.oracle import is_oracle, oracle_server

    if is_oracle(model):
        if backend_cfg.get("backend") != "openai":
            raise ValueError(f"{model} is served over the OpenAI API: set `backend: openai` for this call site "
                             f"(got {backend_cfg.get('backend')!r})")
        backend_cfg = {"concurrency": 32, **backend_cfg, "base_url": oracle_server(model)}
    return CachedGenerator(make_backend(backend_cfg, model), CallCache(llm_cfg["cache_path"]))


def call_cache(llm_cfg: dict[str, Any]) -> CallCache:
    return CallCache(llm_cfg["cache_path"])


def as_mlflow_metrics(values: dict[str, Any], step: int = 0) -> dict[str, dict[str, float]]:
    """``{name: number}`` -> the dict kedro-mlflow's ``MlflowMetricsHistoryDataset`` saves (NaN dropped)."""
    out = {}
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            continue
        out[key] = {"value": float(value), "step": step}
    return out
