"""Batched reward scoring of (prompt, completion) rows with a sequence-classification RM."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)


@dataclass
class RewardScorer:
    """Scores ``[user: prompt, assistant: completion]`` chats with a reward model.

    Inputs longer than ``max_length`` tokens are truncated from the *left* (the prompt's start is
    dropped), so the response end, where the RM reads its score, is always kept. With a ``cache``,
    every score is stored as its batch finishes (key: RM content identity, max_length, prompt,
    completion), so a killed scoring step resumes and a rerun scores nothing twice.
    """

    model: str
    batch_size: int = 16
    max_length: int = 1024
    device: str | None = None
    cache: Any = None  # a kowen_kedro.llm.cache.CallCache
    _rm: Any = field(default=None, repr=False)
    _tok: Any = field(default=None, repr=False)

    def _load(self) -> None:
        if self._rm is not None:
            return
        from kowen_kedro.loading import load_sequence_classifier, load_tokenizer, placement

        where = placement(self.device)
        self.device = where.device
        self._tok = load_tokenizer(self.model, padding_side="right", truncation_side="left")
        self._rm = load_sequence_classifier(self.model, where)

    def score(self, prompts: list[str], completions: list[str]) -> list[float]:
        from kowen_kedro.llm.cache import call_key, cached_values
        from kowen_kedro.model_identity import model_identity

        rm_id = model_identity(self.model)
        keys = [call_key({"rm": rm_id, "max_length": self.max_length, "prompt": p, "completion": c})
                for p, c in zip(prompts, completions)]
        return cached_values(self.cache, keys, lambda todo: self._score([prompts[i] for i in todo], [completions[i] for i in todo]),
                             flush_every=self.batch_size)  # stored batch by batch

    def _score(self, prompts: list[str], completions: list[str]) -> list[float]:
        import torch

        self._load()
        scores: list[float] = []
        for start in range(0, len(prompts), self.batch_size):
            chats = [
                [{"role": "user", "content": p}, {"role": "assistant", "content": c}]
                for p, c in zip(prompts[start : start + self.batch_size], completions[start : start + self.batch_size])
            ]
            texts = [self._tok.apply_chat_template(c, tokenize=False) for c in chats]
            enc = self._tok(
                texts, return_tensors="pt", padding=True, truncation=True, max_length=self.max_length,
                add_special_tokens=False,
            ).to(self.device)
            with torch.no_grad():
                logits = self._rm(**enc).logits[:, 0]
            scores.extend(logits.float().cpu().tolist())
        return scores
