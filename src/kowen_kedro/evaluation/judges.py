"""Pairwise LLM judges (AlpacaEval style).

The judge sees an instruction and two responses in positions A and B, and answers "A" or "B".
:class:`LocalPairwiseJudge` reads the next-token probabilities of "A" and "B" (AlpacaEval's weighted
preference), so any causal LM - the tiny default included - always yields a verdict in [0, 1].
Positions are randomised with a seed and recorded; :func:`judge_pairs` undoes the swap.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

from kowen_kedro.llm.cache import CallCache, cached_values, call_key
from kowen_kedro.model_identity import model_identity
from kowen_kedro.translation.translators import language_name

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

    def prefer_a(self, messages: Sequence[list[dict[str, str]]]) -> list[float]:
        """Probability that A is better, per request."""


@dataclass
class LocalPairwiseJudge:
    """A local causal LM judge reading p("A") / (p("A") + p("B")) at the answer position."""

    model: str
    batch_size: int = 8
    cache: CallCache | None = None
    name: str = "local"
    _lm: Any = field(default=None, repr=False)
    _tok: Any = field(default=None, repr=False)

    def _load(self) -> None:
        if self._lm is None:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            self._tok = AutoTokenizer.from_pretrained(self.model, padding_side="left")
            self._lm = AutoModelForCausalLM.from_pretrained(self.model).eval()

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
        out: list[float] = []
        for start in range(0, len(messages), self.batch_size):
            texts = [
                self._tok.apply_chat_template(m, tokenize=False, add_generation_prompt=True)
                for m in messages[start : start + self.batch_size]
            ]
            enc = self._tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
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

    Each record has ``model_position`` ("A" or "B"), ``p_a`` (the judge's raw preference for A) and
    ``preference`` (the preference for the *model*, position swap undone).
    """
    rng = random.Random(seed)
    positions = ["B" if rng.random() < 0.5 else "A" for _ in instructions]
    messages = [
        judge_messages(ins, *((m, r) if pos == "A" else (r, m)), lang)
        for ins, m, r, lang, pos in zip(instructions, model_outputs, reference_outputs, languages, positions)
    ]
    p_a = judge.prefer_a(messages)
    return [
        {"model_position": pos, "p_a": p, "preference": p if pos == "A" else 1.0 - p}
        for pos, p in zip(positions, p_a)
    ]
