"""Helpers shared by the pipelines' nodes: model registry, cached generators, metric dicts."""

from __future__ import annotations

from typing import Any

from kowen_kedro.llm.backends import CachedGenerator, make_backend
from kowen_kedro.llm.cache import CallCache

TINY_PREFIX = "tiny:"


def resolve_models(tiny_manifest: dict, models: dict[str, str]) -> dict[str, str]:
    """Map each role to a loadable path or hub id: ``tiny:<name>`` -> the built tiny model's folder."""
    resolved = {}
    for role, ref in models.items():
        if isinstance(ref, str) and ref.startswith(TINY_PREFIX):
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
    """A generator for ``model`` through the configured backend, cached in ``llm.cache_path``."""
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
