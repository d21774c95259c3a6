"""Prompt ingest (LMSYS-Chat style conversations) and SFT mixture building."""

from __future__ import annotations

import logging
import re
import unicodedata

import pandas as pd

from kowen_kedro.data.validation import line_of, source_of, validate_conversation, validate_records
from kowen_kedro.langid import detect_languages

logger = logging.getLogger(__name__)


def normalise(text: str) -> str:
    """Key for duplicate detection: NFKC, case-folded, whitespace collapsed, trailing punctuation dropped."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return re.sub(r"\s+", " ", text).strip().rstrip(".?!。？！ ")


def ingest_prompts(raw: pd.DataFrame, max_chars: int, languages: list[str]) -> tuple[pd.DataFrame, dict]:
    """First user turn of each conversation; drop empty, over-long and duplicate prompts; tag language.

    Returns the prompts (``prompt_id, language, prompt, conversation, n_turns``) and a report of counts.
    """
    validate_records(raw, {"conversation_id": str})
    source = source_of(raw)
    for row, conv in enumerate(raw["conversation"]):
        validate_conversation(conv, source, line_of(raw, row))
    df = pd.DataFrame(
        {
            "prompt_id": raw["conversation_id"],
            "prompt": [c[0]["content"].strip() for c in raw["conversation"]],
            "conversation": raw["conversation"],
            "n_turns": [sum(t["role"] == "user" for t in c) for c in raw["conversation"]],
        }
    )
    detected = detect_languages(df["prompt"], languages)
    given = raw["language"] if "language" in raw else pd.Series([None] * len(raw))
    df["language"] = [g if isinstance(g, str) and g else d for g, d in zip(given, detected)]
    report = {"raw": len(df)}
    too_long = df["prompt"].str.len() > max_chars
    df = df[~too_long]
    report["dropped_too_long"] = int(too_long.sum())
    dup = df["prompt"].map(normalise).duplicated()
    df = df[~dup]
    report["dropped_duplicate"] = int(dup.sum())
    unknown = ~df["language"].isin(languages)
    df = df[~unknown]
    report["dropped_language"] = int(unknown.sum())
    report["kept"] = len(df)
    logger.info("prompt ingest: %s", report)
    return df.reset_index(drop=True)[["prompt_id", "language", "prompt", "conversation", "n_turns"]], report


def build_mixture(parts: dict[str, pd.DataFrame], sizes: dict[str, int | float], seed: int) -> tuple[pd.DataFrame, dict]:
    """Sample each part to its size (an int = rows, a float in (0, 1] = share of that part) and shuffle.

    Raises:
        ValueError: a size names no part, or asks for more rows than the part has.
    """
    chosen = []
    report: dict[str, int] = {}
    for name, size in sizes.items():
        if name not in parts:
            raise ValueError(f"mixture part {name!r} does not exist; parts are {sorted(parts)}")
        part = parts[name]
        n = int(round(size * len(part))) if isinstance(size, float) else int(size)
        if n > len(part):
            raise ValueError(f"mixture part {name!r}: asked for {n} rows, it has {len(part)}")
        chosen.append(part.sample(n=n, random_state=seed).assign(part=name))
        report[name] = n
    mixed = pd.concat(chosen, ignore_index=True).sample(frac=1.0, random_state=seed).reset_index(drop=True)
    report["total"] = len(mixed)
    return mixed, report
