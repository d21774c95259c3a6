"""The vocabulary of generation: chat messages, sampling settings, completions, the backend protocol, and
the per-sample seed. The bottom of the ``llm`` package: ``backends`` (engines), ``worker`` (an engine in
a subprocess) and ``generator`` (cached generation over any of them) build on it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, Sequence

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class SamplingParams:
    """Sampling settings of one call site."""

    max_new_tokens: int = field(default=256, metadata={"help": "most tokens generated per completion"})
    temperature: float = field(default=0.7, metadata={"help": "sampling temperature; 0 is greedy"})
    top_p: float = field(default=0.9, metadata={"help": "nucleus sampling: smallest token set whose probability reaches top_p"})
    seed: int = field(default=0, metadata={"help": "base of the per-sample seeds (same seed and prompt: same completion)"})

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


class GenerationError(RuntimeError):
    """A call failed for good (after the client's retries and ours)."""


class PartialGenerationError(GenerationError):
    """A batch in which some calls failed for good: ``done`` holds the completions of the others (by
    position in the batch), which the caller keeps (a rerun then makes only the failed calls)."""

    def __init__(self, message: str, done: dict[int, "Completion"]):
        super().__init__(message)
        self.done = done
