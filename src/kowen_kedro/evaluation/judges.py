"""LLM judges: pairwise preference (AlpacaEval style) and single-answer scores (MT-Bench, rubric).

Two kinds of judge, one interface (``prefer_a(messages)`` -> P(A better) or None; ``grade(messages,
low, high)`` -> expected score or None):

* :class:`LocalPairwiseJudge` / :class:`LocalChoiceJudge` - a local causal LM. Pairwise reads the
  next-token probabilities of "A" and "B"; grades score every candidate answer "1".."N" by its
  log-likelihood as the continuation and take the expected value. So any model - the tiny default
  included - always yields a verdict.
* :class:`OpenAIJudge` - any OpenAI-compatible endpoint (GPT-4o in the papers), temperature 0, with
  ``logprobs`` / ``top_logprobs`` requested: verdicts come from the first answer token's
  probabilities where the endpoint returns them, otherwise from the text
  (:mod:`kowen_kedro.evaluation.verdicts`); replies that cannot be read give None and are counted.

Every judge call goes through the call cache. Positions are randomised with a seed and recorded;
:func:`judge_pairs` undoes the swap.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

from kowen_kedro.groups import Judge
from kowen_kedro.langid import language_name
from kowen_kedro.loading import judge_batch_size
from kowen_kedro.llm.cache import CallCache, cached_values, call_key
from kowen_kedro.model_identity import model_identity

logger = logging.getLogger(__name__)

TEMPLATE = (
    "You are a fair judge comparing two responses to the same instruction.{language_note}\n\n"
    "Instruction:\n{instruction}\n\nResponse A:\n{a}\n\nResponse B:\n{b}\n\n"
    "Which response follows the instruction better? Answer with one letter: A or B."
)
# CLO paper, appendix C: the judge must also check that the answer is in the requested language.
LANGUAGE_NOTE = " The user wrote in {lang} and expects an answer in {lang}: a response in another language is worse."


def judge_messages(instruction: str, a: str, b: str, language: str | None) -> list[dict[str, str]]:
    note = LANGUAGE_NOTE.format(lang=language_name(language)) if language and language != "en" else ""
    return [{"role": "user", "content": TEMPLATE.format(language_note=note, instruction=instruction, a=a, b=b)}]


class PairwiseJudge(Protocol):
    name: str

    def prefer_a(self, messages: Sequence[list[dict[str, str]]]) -> list[float | None]:
        """Probability that A is better, per request (None: the reply could not be read)."""


@dataclass
class LocalPairwiseJudge:
    """A local causal LM judge reading p("A") / (p("A") + p("B")) at the answer position, ``batch_size``
    verdicts per forward pass (:func:`judge_batch_size`: ``auto``, one at a time on a CPU)."""

    model: str
    batch_size: int | str = "auto"
    cache: CallCache | None = None
    name: str = "local"
    _lm: Any = field(default=None, repr=False)
    _tok: Any = field(default=None, repr=False)

    def _load(self) -> None:
        if self._lm is None:
            from kowen_kedro.loading import load_causal_lm, load_tokenizer

            self._tok = load_tokenizer(self.model, padding_side="left")
            self._lm = load_causal_lm(self.model)

    def _verdict_ids(self) -> tuple[int, int]:
        ids = [self._tok.encode(x, add_special_tokens=False) for x in ("A", "B")]
        if any(len(i) != 1 for i in ids):
            raise ValueError(f"judge tokenizer splits the verdict letters: {ids}")
        return ids[0][0], ids[1][0]

    def prefer_a(self, messages: Sequence[list[dict[str, str]]]) -> list[float]:
        model_id = model_identity(self.model)
        keys = [call_key({"judge": self.name, "model": model_id, "messages": m, "kind": "logprob_ab"}) for m in messages]
        return cached_values(self.cache, keys, lambda todo: self._score([messages[i] for i in todo]))

    def _score(self, messages: Sequence[list[dict[str, str]]]) -> list[float]:
        import torch

        self._load()
        a_id, b_id = self._verdict_ids()
        size = judge_batch_size(self.batch_size, cuda=self._lm.device.type == "cuda")
        out: list[float] = []
        for start in range(0, len(messages), size):
            texts = [
                self._tok.apply_chat_template(m, tokenize=False, add_generation_prompt=True)
                for m in messages[start : start + size]
            ]
            enc = self._tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self._lm.device)
            with torch.no_grad():
                last = self._lm(**enc).logits[:, -1, :].float()
            out.extend(torch.softmax(last[:, [a_id, b_id]], dim=-1)[:, 0].tolist())
        return out


def judge_pairs(
    judge: PairwiseJudge,
    instructions: Sequence[str],
    model_outputs: Sequence[str],
    reference_outputs: Sequence[str],
    languages: Sequence[str | None],
    seed: int,
) -> list[dict[str, Any]]:
    """Judge model vs reference with seeded random positions; returns per-item records.

    Each record has ``model_position`` ("A" or "B"), ``p_a`` (the judge's raw preference for A),
    ``preference`` (the preference for the *model*, position swap undone) and ``identical``: identical
    outputs are a tie (0.5) without a judge call, as alpaca_eval fixes them.
    """
    rng = random.Random(seed)
    positions = ["B" if rng.random() < 0.5 else "A" for _ in instructions]
    identical = [m == r for m, r in zip(model_outputs, reference_outputs)]
    todo = [i for i, same in enumerate(identical) if not same]
    messages = [
        judge_messages(instructions[i], *((model_outputs[i], reference_outputs[i]) if positions[i] == "A"
                                          else (reference_outputs[i], model_outputs[i])), languages[i])
        for i in todo
    ]
    p_a: list[float | None] = [None] * len(positions)
    for i, p in zip(todo, judge.prefer_a(messages) if messages else []):
        p_a[i] = p
    records = []
    for pos, p, same in zip(positions, p_a, identical):
        pref = 0.5 if same else (None if p is None else (p if pos == "A" else 1.0 - p))
        records.append({"model_position": pos, "p_a": p, "preference": pref, "identical": same})
    return records


@dataclass
class LocalChoiceJudge:
    """A local causal LM grading by candidate likelihood: P(k) is proportional to
    p_model("k" | prompt) over the candidates "low".."high" (multi-token candidates included), and the
    verdict is the expected score. Each request is one forward pass over its N candidates."""

    model: str
    cache: CallCache | None = None
    name: str = "local"
    _lm: Any = field(default=None, repr=False)
    _tok: Any = field(default=None, repr=False)

    def grade(self, messages: Sequence[list[dict[str, str]]], low: int, high: int) -> list[float | None]:
        model_id = model_identity(self.model)
        keys = [call_key({"judge": self.name, "model": model_id, "messages": m, "kind": "expected_score", "range": [low, high]})
                for m in messages]
        return cached_values(self.cache, keys, lambda todo: [self._grade(messages[i], low, high) for i in todo])

    def grade_explained(self, messages: Sequence[list[dict[str, str]]], low: int = 1, high: int = 10) -> list[float | None]:
        """A grading prompt that asks for an explanation before ``[[rating]]`` (FastChat's): a local judge
        scores the candidate ratings directly, so this is :meth:`grade`."""
        return self.grade(messages, low, high)

    def _grade(self, messages: list[dict[str, str]], low: int, high: int) -> float:
        import torch

        from kowen_kedro.evaluation.verdicts import expected_score

        if self._lm is None:
            from kowen_kedro.loading import load_causal_lm, load_tokenizer

            self._tok = load_tokenizer(self.model)
            self._lm = load_causal_lm(self.model)
        prompt = self._tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        prompt_ids = self._tok(prompt, add_special_tokens=False)["input_ids"]
        candidates = [self._tok(str(k), add_special_tokens=False)["input_ids"] for k in range(low, high + 1)]
        width = len(prompt_ids) + max(map(len, candidates))
        pad = self._tok.pad_token_id if self._tok.pad_token_id is not None else 0
        ids = torch.tensor([prompt_ids + c + [pad] * (width - len(prompt_ids) - len(c)) for c in candidates], device=self._lm.device)
        with torch.no_grad():
            logp = torch.log_softmax(self._lm(input_ids=ids).logits.float(), dim=-1)
        n = len(prompt_ids)
        scores = [sum(float(logp[j, n - 1 + t, tok]) for t, tok in enumerate(c)) for j, c in enumerate(candidates)]
        top = max(scores)
        value = expected_score([math.exp(s - top) for s in scores], low)
        assert value is not None  # the mass of the best candidate is 1
        return value


@dataclass
class OpenAIJudge:
    """An OpenAI-compatible chat endpoint as judge; reads log-probs where offered, else the text.

    Uses :class:`~kowen_kedro.llm.backends.OpenAIBackend` for the client (key, base_url, retries,
    concurrency). Replies (text + the first token's top log-probs) are cached per request.
    """

    backend: Any  # OpenAIBackend
    cache: CallCache | None = None
    max_tokens: int = 16
    top_logprobs: int = 20
    explain_max_tokens: int = 2048  # FastChat's judge: the explanation, then [[rating]]
    name: str = "openai"

    def _key(self, messages, kind: str, max_tokens: int) -> str:
        return call_key({"judge": self.name, "model": self.backend.model, "base_url": self.backend.base_url,
                         "messages": messages, "kind": kind, "max_tokens": max_tokens})

    def _call(self, messages: list[dict[str, str]], max_tokens: int) -> dict[str, Any]:
        import openai

        from kowen_kedro.llm.backends import GenerationError

        client = self.backend._client()
        kwargs = dict(model=self.backend.model, messages=messages, max_tokens=max_tokens, temperature=0.0)
        try:
            try:
                resp = client.chat.completions.create(**kwargs, logprobs=True, top_logprobs=self.top_logprobs)
            except openai.BadRequestError:  # an endpoint without log-probs: read the text
                resp = client.chat.completions.create(**kwargs)
        except openai.APIError as err:
            raise GenerationError(f"judge {self.backend.model}: call failed after retries: {err}") from err
        if not getattr(resp, "choices", None):
            return {"text": None, "top_logprobs": None}
        choice = resp.choices[0]
        top = None
        content = getattr(getattr(choice, "logprobs", None), "content", None)
        if content:
            first = next((c for c in content if (c.token or "").strip()), content[0])  # skip leading whitespace tokens
            top = {t.token: t.logprob for t in (first.top_logprobs or [])} or {first.token: first.logprob}
        return {"text": (choice.message.content or "").strip(), "top_logprobs": top}

    def replies(self, messages: Sequence[list[dict[str, str]]], kind: str, max_tokens: int | None = None) -> list[dict[str, Any]]:
        from concurrent.futures import ThreadPoolExecutor

        limit = self.max_tokens if max_tokens is None else max_tokens

        def compute(todo: list[int]) -> list[dict[str, Any]]:
            with ThreadPoolExecutor(max_workers=max(1, self.backend.concurrency)) as pool:
                return list(pool.map(lambda i: self._call(messages[i], limit), todo))

        return cached_values(self.cache, [self._key(m, kind, limit) for m in messages], compute)

    def prefer_a(self, messages: Sequence[list[dict[str, str]]]) -> list[float | None]:
        from kowen_kedro.evaluation.verdicts import pairwise_verdict

        return [pairwise_verdict(r["text"], r["top_logprobs"]) for r in self.replies(messages, "pairwise")]

    def grade(self, messages: Sequence[list[dict[str, str]]], low: int, high: int) -> list[float | None]:
        from kowen_kedro.evaluation.verdicts import score_verdict

        return [score_verdict(r["text"], low, high, r["top_logprobs"]) for r in self.replies(messages, f"grade{low}-{high}")]

    def grade_explained(self, messages: Sequence[list[dict[str, str]]], low: int = 1, high: int = 10) -> list[float | None]:
        """FastChat's single-answer grading: the judge explains, then writes ``[[rating]]`` (up to
        ``explain_max_tokens``); the last rating of the reply is read (:func:`~kowen_kedro.evaluation.fastchat.rating`)."""
        from kowen_kedro.evaluation.fastchat import rating, rating_count

        replies = self.replies(messages, "explained", self.explain_max_tokens)
        several = sum(rating_count(r["text"]) > 1 for r in replies)
        if several:
            logger.warning("%d of %d judge replies state several [[ratings]]: the last one is read "
                                                "(FastChat's parser reads the first)", several, len(replies))
        return [rating(r["text"]) for r in replies]


def make_judges(cfg: Judge, local_model: str, cache: CallCache | None):
    """(pairwise judge, grading judge) from the ``evaluation.judge`` group.

    ``backend: local`` uses ``local_model`` (the ``judge`` role); ``backend: openai`` takes ``model``,
    ``base_url``, ``api_key_env``, ``concurrency`` like the generation backends (the key: ``$api_key_env``,
    which :mod:`kowen_kedro.hooks` fills from ``credentials.yml``).
    """
    if cfg.backend == "local":
        return (LocalPairwiseJudge(local_model, batch_size=cfg.batch_size, cache=cache),
                LocalChoiceJudge(local_model, cache=cache))
    from kowen_kedro.llm.backends import OpenAIBackend

    api = OpenAIBackend(model=cfg.model or local_model, base_url=cfg.base_url, api_key_env=cfg.api_key_env,
                        concurrency=cfg.concurrency)
    judge = OpenAIJudge(api, cache=cache, max_tokens=cfg.max_tokens)
    return judge, judge
