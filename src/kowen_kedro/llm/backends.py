"""Generation engines behind one interface (:class:`~kowen_kedro.llm.types.Backend`).

Backends (choose with ``backend:`` in parameters):

* ``transformers`` - local HF model, batched ``generate`` (the CPU default, tests).
* ``openai`` - the ``openai`` client with ``base_url``: any OpenAI-compatible server (vLLM serve, a
  provider). The key comes from ``conf/local/credentials.yml`` or the environment, never parameters.
* ``vllm`` - vLLM's offline ``LLM.chat`` (GPU). Written against vLLM's documented API; untested here
  (no GPU with vLLM in this project's CI) - see the README.

Call sites use :class:`kowen_kedro.llm.generator.CachedGenerator` over :func:`~kowen_kedro.llm.generator.make_backend`.
The types are re-exported here for the engines' users.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any, Sequence

from kowen_kedro.llm.types import (  # noqa: F401 - re-exported
    Backend,
    Completion,
    GenerationError,
    Messages,
    SamplingParams,
    api_seed,
    sample_seed,
)

logger = logging.getLogger(__name__)


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
        from kowen_kedro.loading import load_causal_lm, load_tokenizer, placement

        where = placement(self.device)
        self.device = where.device
        self._tok = load_tokenizer(self.model, padding_side="left")
        self._lm = load_causal_lm(self.model, where)

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


def _seeded_sampling(params: SamplingParams, seeds: list[int], prompt_len: int):
    """Temperature + top-p warping, then Gumbel noise drawn from a generator seeded by (request seed,
    step): argmax of the result is a sample of the warped distribution that does not depend on the
    other rows of the batch. Generation runs greedy over these scores."""
    import torch
    from transformers import (
        LogitsProcessor,
        LogitsProcessorList,
        TemperatureLogitsWarper,
        TopPLogitsWarper,
    )

    class GumbelNoise(LogitsProcessor):
        def __call__(self, input_ids, scores):
            step = input_ids.shape[1] - prompt_len
            # Drawn where the scores are: on a GPU, per-step noise made on the CPU and copied over (batch x
            # vocabulary floats) limited generation to a few hundred tokens/s. A device's generator gives
            # other numbers than the CPU's, so samples are reproducible per device type.
            noise = torch.empty(scores.shape, dtype=torch.float32, device=scores.device)
            for row, seed in enumerate(seeds):
                g = torch.Generator(device=scores.device).manual_seed((seed + 1_000_003 * step) % (1 << 63))
                torch.rand(scores.shape[1], generator=g, device=scores.device, out=noise[row])
            noise.clamp_(1e-10, 1 - 1e-10)
            return scores.float() - torch.log(-torch.log(noise))

    warpers = [TemperatureLogitsWarper(params.temperature)]
    if params.top_p < 1.0:
        warpers.append(TopPLogitsWarper(params.top_p))
    return LogitsProcessorList([*warpers, GumbelNoise()])


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
    this project: neither the test suite nor the GPU benchmarks run vLLM (see the README).
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
