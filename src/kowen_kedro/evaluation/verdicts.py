"""Reading judge replies: pairwise verdicts and 1-N scores, from log-probabilities or from text.

Every reader returns ``None`` for a reply it cannot read; callers count those (``unparseable``) and
fail above a threshold instead of silently dropping items.

* Pairwise: ``P(A) / (P(A) + P(B))`` from the first token's top log-probs (AlpacaEval's weighted
  preference) when the endpoint returns them, else the text: ``A``, ``[[A]]``, ``Output (a)``,
  ``Response B``..., ``tie`` -> 0.5.
* Scores (MT-Bench 1-10, rubric 1-5): the expected score ``sum_k k p(k) / sum_k p(k)`` over the
  candidate score tokens (G-Eval) when log-probs are given, else ``[[7]]``, ``Rating: 7``, ``7/10``,
  or a lone number.
"""

from __future__ import annotations

import math
import re
from typing import Mapping

_PAIR_PATTERNS = [
    r"\[\[\s*([AB])\s*\]\]",
    r"\b(?:output|response|answer|assistant)\s*\(?\s*([ab])\s*\)?\s*(?:is|was)?\s*(?:better|preferred|wins)",
    r"(?:verdict|choice|answer|winner|better response)\s*(?:is|:)\s*\**\s*\(?\s*([AB])\b",
    r"^\s*\(?\s*([AB])\s*\)?\s*[.!]?\s*$",
    r"^\s*\**\s*([AB])\b",
]


def pairwise_from_text(text: str | None) -> float | None:
    """1.0 for A, 0.0 for B, 0.5 for a tie, None when the reply names neither (or both, ambiguously)."""
    if not text or not text.strip():
        return None
    t = text.strip()
    if re.search(r"\[\[\s*(?:C|tie)\s*\]\]|^\s*tie\b|\bit'?s a tie\b", t, re.IGNORECASE):
        return 0.5
    for pattern in _PAIR_PATTERNS:
        m = re.search(pattern, t, re.IGNORECASE | re.MULTILINE)
        if m:
            return 1.0 if m.group(1).upper() == "A" else 0.0
    return None


def _probabilities(top_logprobs: Mapping[str, float], candidates: list[str]) -> list[float]:
    """Probability mass of each candidate among the top tokens (stripped, case-sensitive)."""
    mass = {c: 0.0 for c in candidates}
    for token, logprob in top_logprobs.items():
        key = token.strip()
        if key in mass and logprob is not None and math.isfinite(logprob):
            mass[key] += math.exp(logprob)
    return [mass[c] for c in candidates]


def pairwise_from_logprobs(top_logprobs: Mapping[str, float] | None) -> float | None:
    """``P(A) / (P(A) + P(B))`` from the first answer token's top log-probs; None if neither is there."""
    if not top_logprobs:
        return None
    p_a, p_b = _probabilities(top_logprobs, ["A", "B"])
    return p_a / (p_a + p_b) if p_a + p_b > 0 else None


def pairwise_verdict(text: str | None, top_logprobs: Mapping[str, float] | None = None) -> float | None:
    """Log-probs when they name A or B, else the text."""
    value = pairwise_from_logprobs(top_logprobs)
    return value if value is not None else pairwise_from_text(text)


_SCORE_PATTERNS = [
    r"\[\[\s*(\d+(?:\.\d+)?)\s*\]\]",
    r"(?:rating|score|grade)\s*[:=]?\s*\**\s*(\d+(?:\.\d+)?)",
    r"\b(\d+(?:\.\d+)?)\s*(?:/|out of)\s*\d+",
    r"^\s*\**\s*(\d+(?:\.\d+)?)\s*\**\s*\.?\s*$",
]


def score_from_text(text: str | None, low: int, high: int) -> float | None:
    """The first score in ``[low, high]`` the reply states, else None."""
    if not text or not text.strip():
        return None
    for pattern in _SCORE_PATTERNS:
        for m in re.finditer(pattern, text, re.IGNORECASE | re.MULTILINE):
            value = float(m.group(1))
            if low <= value <= high:
                return value
    return None


def expected_score(probabilities: list[float], low: int) -> float | None:
    """``sum_k k p_k / sum_k p_k`` for scores ``low, low + 1, ...``; None when there is no mass."""
    total = sum(probabilities)
    if total <= 0:
        return None
    return sum((low + i) * p for i, p in enumerate(probabilities)) / total


def score_from_logprobs(top_logprobs: Mapping[str, float] | None, low: int, high: int) -> float | None:
    if not top_logprobs:
        return None
    return expected_score(_probabilities(top_logprobs, [str(k) for k in range(low, high + 1)]), low)


def score_verdict(text: str | None, low: int, high: int, top_logprobs: Mapping[str, float] | None = None) -> float | None:
    """Expected score from log-probs when they hold score tokens, else the stated score."""
    value = score_from_logprobs(top_logprobs, low, high)
    return value if value is not None else score_from_text(text, low, high)
