"""Cached generation, the one way every call site generates: :func:`make_backend` builds an engine (in a
worker process where configured), :class:`CachedGenerator` keys each *sample* (messages, settings,
sample index) in the :class:`~kowen_kedro.llm.cache.CallCache`, generates only the missing ones, and
stores each batch as soon as it is done.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any, Sequence

from kowen_kedro.llm.backends import BACKENDS
from kowen_kedro.llm.cache import CallCache, call_key
from kowen_kedro.llm.types import (
    Backend,
    Completion,
    GenerationError,
    Messages,
    PartialGenerationError,
    SamplingParams,
)
from kowen_kedro.llm.worker import SubprocessBackend
from kowen_kedro.model_identity import model_identity

logger = logging.getLogger(__name__)


def make_backend(config: dict[str, Any], model: str) -> Backend:
    """A backend from ``{backend: name, subprocess: bool, ...options}`` and a resolved model path or id.

    ``subprocess`` (default: true for vllm, false otherwise) runs the backend in a worker process
    that is ended when generation is done, so GPU memory is given back before training; ``python``
    (default: :func:`~kowen_kedro.llm.worker.worker_python`, vLLM's own environment for vllm) is the
    worker's interpreter.
    """
    cfg = dict(config)
    name = cfg.pop("backend", "transformers")
    in_subprocess = bool(cfg.pop("subprocess", name == "vllm"))
    python = cfg.pop("python", None)
    if name not in BACKENDS:
        raise ValueError(f"unknown generation backend {name!r}; expected one of {sorted(BACKENDS)}")
    unknown = set(cfg) - set(BACKENDS[name].__dataclass_fields__) - {"model"}
    if unknown:
        raise ValueError(f"unknown options for backend {name!r}: {sorted(unknown)}")
    if in_subprocess:
        return SubprocessBackend(model=model, inner=name, options=cfg, python=python)
    return BACKENDS[name](model=model, **cfg)


@dataclass
class GenerationStats:
    """What a generator did: new calls, cache hits, tokens, truncations, empties and (priced) cost."""

    calls: int = 0
    cached: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    truncated: int = 0
    empty: int = 0
    cost_usd: float = 0.0

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        return {f"{prefix}{k}": v for k, v in asdict(self).items()}


class CachedGenerator:
    """Generate ``n`` samples per request through ``backend``, cached per sample."""

    def __init__(self, backend: Backend, cache: CallCache, flush_every: int = 64, progress: bool = True):
        self.backend = backend
        self.cache = cache
        self.flush_every = flush_every
        self.progress = progress
        self.stats = GenerationStats()
        self.model_id = model_identity(backend.model)

    def _key(self, messages: Messages, params: SamplingParams, sample_index: int) -> str:
        return call_key(
            {
                "backend": self.backend.name,
                "model": self.model_id,
                "params": asdict(params),
                "messages": messages,
                "sample": sample_index,
            }
        )

    def generate(self, requests: Sequence[Messages], params: SamplingParams, n: int = 1) -> list[list[Completion]]:
        """``n`` completions for each request (outer list follows ``requests``)."""
        results: list[list[Completion | None]] = [[None] * n for _ in requests]
        for s in range(n):
            keys = [self._key(m, params, s) for m in requests]
            found = self.cache.get_many(keys)
            # identical requests are one call: generated once, so every copy (and a rerun) agrees
            first: dict[str, int] = {}
            for i, k in enumerate(keys):
                if k not in found:
                    first.setdefault(k, i)
            missing = list(first.values())
            self.stats.cached += sum(k in found for k in keys)
            bar = _progress(len(missing), f"{self.backend.name} sample {s + 1}/{n}", self.progress)
            for start in range(0, len(missing), self.flush_every):
                idx = missing[start : start + self.flush_every]
                try:
                    done = self.backend.generate([requests[i] for i in idx], params, s)
                except PartialGenerationError as err:  # keep what was answered: the rerun asks only the rest
                    self.cache.put_many({keys[idx[j]]: asdict(c) for j, c in err.done.items()})
                    for c in err.done.values():
                        self._count(c)
                    raise
                if len(done) != len(idx):
                    raise GenerationError(f"backend returned {len(done)} completions for {len(idx)} requests")
                self.cache.put_many({keys[i]: asdict(c) for i, c in zip(idx, done)})  # durable before use
                for i, c in zip(idx, done):
                    found[keys[i]] = asdict(c)
                    self._count(c)
                bar.update(len(idx))
            bar.close()
            for i, k in enumerate(keys):
                results[i][s] = Completion(**found[k])
        return results  # type: ignore[return-value]

    def _count(self, c: Completion) -> None:
        st = self.stats
        st.calls += 1
        st.prompt_tokens += c.prompt_tokens
        st.completion_tokens += c.completion_tokens
        st.truncated += c.finish_reason == "length"
        st.empty += not c.text
        cost = getattr(self.backend, "cost", None)
        if cost is not None:
            st.cost_usd += cost(c.prompt_tokens, c.completion_tokens)

    def close(self) -> None:
        """End a worker-process backend (frees its GPU memory) or a server the backend started; the
        cache stays open."""
        close = getattr(self.backend, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> "CachedGenerator":
        return self

    def __exit__(self, *exc) -> None:  # closed also when generation fails (a node's error)
        self.close()


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    # position 0: beside a training launch's bar (stages side by side) it shares the line, never pushes lines down
    return tqdm(total=total, desc=desc, unit="call", disable=not enabled or total == 0, leave=False, position=0)
