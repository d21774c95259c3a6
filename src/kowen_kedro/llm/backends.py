"""Generation backends behind one interface, and the cached generator every call site uses.

Backends (choose with ``backend:`` in parameters):

* ``transformers`` - local HF model, batched ``generate`` (the CPU default, tests).
* ``openai`` - the ``openai`` client with ``base_url``: any OpenAI-compatible server (vLLM serve, a
  provider). The key comes from ``conf/local/credentials.yml`` or the environment, never parameters.
* ``vllm`` - vLLM's offline ``LLM.chat`` (GPU). Written against vLLM's documented API; untested here
  (no GPU with vLLM in this project's CI) - see the README.

A request is chat messages + sampling settings; ``n`` samples per request. :class:`CachedGenerator`
keys each *sample* (messages, settings, sample index) in the :class:`~kowen_kedro.llm.cache.CallCache`,
generates only the missing ones, and stores each batch as soon as it is done.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, Sequence

from kowen_kedro.llm.cache import CallCache, call_key
from kowen_kedro.model_identity import model_identity

logger = logging.getLogger(__name__)

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class SamplingParams:
    """Sampling settings of one call site."""

    max_new_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 0.9
    seed: int = 0

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "SamplingParams":
        d = dict(d or {})
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown sampling settings {sorted(unknown)}; expected {sorted(cls.__dataclass_fields__)}")
        return cls(**d)


@dataclass
class Completion:
    """One generated sample."""

    text: str
    finish_reason: str  # "stop" | "length"
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Backend(Protocol):
    name: str
    model: str

    def generate(self, requests: Sequence[Messages], params: SamplingParams, sample_index: int) -> list[Completion]:
        """One sample per request; ``sample_index`` makes the i-th of n samples reproducible."""


@dataclass
class TransformersBackend:
    """Local HF causal LM; left-padded batched generation."""

    model: str
    batch_size: int = 16
    device: str | None = None
    name: str = "transformers"
    _lm: Any = field(default=None, repr=False)
    _tok: Any = field(default=None, repr=False)

    def _load(self) -> None:
        if self._lm is not None:
            return
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self._tok = AutoTokenizer.from_pretrained(self.model, padding_side="left")
        if self._tok.pad_token is None:
            self._tok.pad_token = self._tok.eos_token
        dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        self._lm = AutoModelForCausalLM.from_pretrained(self.model, dtype=dtype).to(self.device).eval()

    def generate(self, requests: Sequence[Messages], params: SamplingParams, sample_index: int) -> list[Completion]:
        import torch

        self._load()
        out: list[Completion] = []
        eos = self._lm.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos])
        for start in range(0, len(requests), self.batch_size):
            batch = requests[start : start + self.batch_size]
            texts = [self._tok.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in batch]
            enc = self._tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
            processors = None
            if params.temperature > 0:  # sampling as Gumbel-max over warped logits, one noise stream per request
                processors = _seeded_sampling(params, [sample_seed(m, params, sample_index) for m in batch], enc["input_ids"].shape[1])
            with torch.no_grad():
                gen = self._lm.generate(
                    **enc,
                    max_new_tokens=params.max_new_tokens,
                    do_sample=False,
                    temperature=None,
                    top_p=None,
                    top_k=None,
                    logits_processor=processors,
                    pad_token_id=self._tok.pad_token_id,
                )
            new = gen[:, enc["input_ids"].shape[1] :]
            for row, prompt_len in zip(new, enc["attention_mask"].sum(dim=1).tolist()):
                ids = row.tolist()
                stop = next((i for i, t in enumerate(ids) if t in eos_ids), None)
                kept = ids if stop is None else ids[:stop]
                out.append(
                    Completion(
                        text=self._tok.decode(kept, skip_special_tokens=True).strip(),
                        finish_reason="length" if stop is None else "stop",
                        prompt_tokens=int(prompt_len),
                        completion_tokens=len(kept),
                    )
                )
        return out


def sample_seed(messages: Messages, params: SamplingParams, sample_index: int) -> int:
    """The seed of one sample: a function of what its cache key holds (request, settings, sample index)
    only, so a resumed run, another batch size or another batch order samples the same text."""
    import hashlib
    import json

    payload = json.dumps({"m": messages, "p": asdict(params), "s": sample_index}, sort_keys=True, ensure_ascii=False)
    return int.from_bytes(hashlib.sha256(payload.encode()).digest()[:8], "little") & ((1 << 63) - 1)


def api_seed(messages: Messages, params: SamplingParams, sample_index: int) -> int:
    """:func:`sample_seed` in 31 bits, the ``seed`` a vLLM or OpenAI-compatible request carries."""
    return sample_seed(messages, params, sample_index) % (1 << 31)


def _seeded_sampling(params: SamplingParams, seeds: list[int], prompt_len: int):
    """Temperature + top-p warping, then Gumbel noise drawn from a generator seeded by (request seed,
    step): argmax of the result is a sample of the warped distribution that does not depend on the
    other rows of the batch. Generation runs greedy over these scores."""
    import torch
    from transformers import LogitsProcessor, LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper

    class GumbelNoise(LogitsProcessor):
        def __call__(self, input_ids, scores):
            step = input_ids.shape[1] - prompt_len
            noise = torch.empty_like(scores, dtype=torch.float32)
            for row, seed in enumerate(seeds):
                g = torch.Generator().manual_seed((seed + 1_000_003 * step) % (1 << 63))
                u = torch.rand(scores.shape[1], generator=g).clamp_(1e-10, 1 - 1e-10)
                noise[row] = -torch.log(-torch.log(u))
            return scores.float() + noise.to(scores.device)

    warpers = [TemperatureLogitsWarper(params.temperature)]
    if params.top_p < 1.0:
        warpers.append(TopPLogitsWarper(params.top_p))
    return LogitsProcessorList([*warpers, GumbelNoise()])


class GenerationError(RuntimeError):
    """A call failed for good (after the client's retries and ours)."""


@dataclass
class OpenAIBackend:
    """Any OpenAI-compatible chat-completions endpoint (vLLM serve, a provider), called concurrently.

    Retries: the openai client retries 408/409/429/5xx, timeouts and connection errors with
    exponential backoff (honouring ``Retry-After``) up to ``max_retries``; on top of that, a 200 reply
    whose body is malformed (not JSON, no choices) is retried ``malformed_retries`` times. A call that
    still fails raises :class:`GenerationError`; the calls finished before it are already cached.
    The key comes from ``api_key`` (credentials.yml, passed by the node) or ``$api_key_env``.
    """

    model: str
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    api_key: str | None = field(default=None, repr=False)
    timeout: float = 120.0
    max_retries: int = 5
    malformed_retries: int = 2
    concurrency: int = 8
    # USD per million tokens, e.g. {input: 2.5, output: 10.0}; empty = not priced
    price_per_million: dict[str, float] = field(default_factory=dict)
    name: str = "openai"
    _client_obj: Any = field(default=None, repr=False)

    def _client(self):
        if self._client_obj is None:
            from openai import OpenAI

            key = self.api_key or os.environ.get(self.api_key_env) or "EMPTY"
            self._client_obj = OpenAI(base_url=self.base_url, api_key=key, timeout=self.timeout, max_retries=self.max_retries)
        return self._client_obj

    def _one(self, messages: Messages, params: SamplingParams, sample_index: int) -> Completion:
        import openai

        client = self._client()
        last: Exception | None = None
        for _ in range(self.malformed_retries + 1):
            try:
                resp = client.chat.completions.create(
                    model=self.model,
                    messages=messages,
                    max_tokens=params.max_new_tokens,
                    temperature=params.temperature,
                    top_p=params.top_p,
                    seed=api_seed(messages, params, sample_index),  # best effort on the server's side (README)
                )
                if not getattr(resp, "choices", None):
                    raise ValueError("reply has no choices")
                choice = resp.choices[0]
                usage = getattr(resp, "usage", None)
                return Completion(
                    text=(choice.message.content or "").strip(),
                    finish_reason=choice.finish_reason or "stop",
                    prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
                    completion_tokens=getattr(usage, "completion_tokens", 0) or 0,
                )
            except (openai.APIResponseValidationError, ValueError, AttributeError, TypeError) as err:
                last = err  # a malformed body: the client does not retry these
                logger.warning("malformed reply from %s: %s", self.base_url or "api.openai.com", err)
            except openai.APIError as err:  # the client already retried what is retryable
                raise GenerationError(f"{self.model}: call failed after retries: {err}") from err
        raise GenerationError(f"{self.model}: malformed reply {self.malformed_retries + 1} times: {last}")

    def generate(self, requests: Sequence[Messages], params: SamplingParams, sample_index: int) -> list[Completion]:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=max(1, self.concurrency)) as pool:
            return list(pool.map(lambda m: self._one(m, params, sample_index), requests))

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        p = self.price_per_million
        return (prompt_tokens * p.get("input", 0.0) + completion_tokens * p.get("output", 0.0)) / 1e6


@dataclass
class VLLMBackend:
    """vLLM offline engine (GPU), normally run inside :class:`~kowen_kedro.llm.worker.SubprocessBackend`.

    Thin by design and written against vLLM's documented ``LLM(...)`` / ``LLM.chat`` API; untested in
    this project (no machine here can carry vLLM - see the README).
    """

    model: str
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    name: str = "vllm"
    _llm: Any = field(default=None, repr=False)

    def generate(self, requests: Sequence[Messages], params: SamplingParams, sample_index: int) -> list[Completion]:
        from vllm import LLM
        from vllm import SamplingParams as VSampling

        if self._llm is None:
            self._llm = LLM(
                model=self.model,
                tensor_parallel_size=self.tensor_parallel_size,
                gpu_memory_utilization=self.gpu_memory_utilization,
            )
        sp = [  # one per request: vLLM seeds each request's own generator, so its sample is a function of its key
            VSampling(max_tokens=params.max_new_tokens, temperature=params.temperature, top_p=params.top_p,
                      seed=api_seed(m, params, sample_index))
            for m in requests
        ]
        results = self._llm.chat(list(requests), sp, use_tqdm=True)
        return [
            Completion(
                text=r.outputs[0].text.strip(),
                finish_reason=r.outputs[0].finish_reason or "stop",
                prompt_tokens=len(r.prompt_token_ids or []),
                completion_tokens=len(r.outputs[0].token_ids),
            )
            for r in results
        ]


BACKENDS = {"transformers": TransformersBackend, "openai": OpenAIBackend, "vllm": VLLMBackend}


def make_backend(config: dict[str, Any], model: str) -> Backend:
    """A backend from ``{backend: name, subprocess: bool, ...options}`` and a resolved model path or id.

    ``subprocess`` (default: true for vllm, false otherwise) runs the backend in a worker process
    that is ended when generation is done, so GPU memory is given back before training.
    """
    cfg = dict(config)
    name = cfg.pop("backend", "transformers")
    in_subprocess = bool(cfg.pop("subprocess", name == "vllm"))
    if name not in BACKENDS:
        raise ValueError(f"unknown generation backend {name!r}; expected one of {sorted(BACKENDS)}")
    unknown = set(cfg) - set(BACKENDS[name].__dataclass_fields__) - {"model"}
    if unknown:
        raise ValueError(f"unknown options for backend {name!r}: {sorted(unknown)}")
    if in_subprocess:
        from kowen_kedro.llm.worker import SubprocessBackend

        return SubprocessBackend(model=model, inner=name, options=cfg)
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
                done = self.backend.generate([requests[i] for i in idx], params, s)
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
        """End a worker-process backend (frees its GPU memory); the cache stays open."""
        close = getattr(self.backend, "close", None)
        if close is not None:
            close()


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="call", disable=not enabled or total == 0, leave=False)
