"""Prompt ingest (LMSYS-Chat style conversations) and SFT mixture building."""

from __future__ import annotations

import logging
import re
import unicodedata
from typing import Any

import numpy as np
import pandas as pd

from kowen_kedro.data.validation import (
    DataValidationError,
    is_missing,
    line_of,
    source_of,
    validate_conversation,
    validate_records,
)
from kowen_kedro.langid import LANGUAGE_NAMES, detect_languages

logger = logging.getLogger(__name__)


def normalise(text: str) -> str:
    """Key for duplicate detection: NFKC, case-folded, whitespace collapsed, trailing punctuation dropped."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return re.sub(r"\s+", " ", text).strip().rstrip(".?!。？！ ")


ID_FIELDS = ("conversation_id", "prompt_id", "id")
TEXT_FIELDS = ("prompt", "instruction")


def as_frame(raw: Any, split: str = "train") -> pd.DataFrame:
    """A DataFrame from a DataFrame, a HF ``Dataset`` or a ``DatasetDict`` (its ``split``)."""
    if isinstance(raw, pd.DataFrame):
        return raw
    if hasattr(raw, "keys") and hasattr(raw, "map") and split in raw:  # DatasetDict
        raw = raw[split]
    if hasattr(raw, "to_pandas"):
        df = raw.to_pandas()
        df.attrs["source"] = f"HF dataset ({getattr(raw, 'info', None) and raw.info.dataset_name or 'in memory'})"
        return df
    raise TypeError(f"cannot read prompts from {type(raw).__name__}")


def language_code(value: Any) -> str | None:
    """ISO 639-1 code from a code or an English name (Korean -> ko); None when unknown/missing."""
    if not isinstance(value, str) or not value.strip():
        return None
    v = value.strip()
    if len(v) == 2:
        return v.lower()
    by_name = {name.lower(): code for code, name in LANGUAGE_NAMES.items()}
    return by_name.get(v.lower())


def as_list(value: Any) -> Any:
    """Parquet / HF datasets hand list cells over as numpy arrays (tuples elsewhere): a plain list; anything
    else unchanged."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    return list(value) if isinstance(value, tuple) else value


def to_conversations(raw: pd.DataFrame) -> pd.DataFrame:
    """Normalise LMSYS-style rows (``conversation``) or plain prompt lists (``prompt``/``instruction``)
    into ``conversation_id, conversation, language``; validates before anything else runs."""
    source = source_of(raw)
    if raw.empty:
        raise DataValidationError(source, None, None, "file has no records")
    id_field = next((f for f in ID_FIELDS if f in raw.columns), None)
    if "conversation" in raw.columns:
        if id_field is None:
            raise DataValidationError(source, line_of(raw, 0), "conversation_id", "missing (no record has it)")
        validate_records(raw, {id_field: str})
        convs = [as_list(c) for c in raw["conversation"]]
        convs = [[dict(t) if isinstance(t, dict) else t for t in c] if isinstance(c, list) else c for c in convs]
        for row, conv in enumerate(convs):
            validate_conversation(conv, source, line_of(raw, row))
    else:
        text_field = next((f for f in TEXT_FIELDS if f in raw.columns), None)
        if text_field is None:
            raise DataValidationError(source, line_of(raw, 0), "conversation", "missing: expected 'conversation', 'prompt' or 'instruction'")
        validate_records(raw, {text_field: str, **({id_field: str} if id_field else {})})
        convs = [[{"role": "user", "content": t}] for t in raw[text_field]]
    ids = list(raw[id_field]) if id_field else [f"row-{line_of(raw, i)}" for i in range(len(raw))]
    langs = [language_code(v) for v in raw["language"]] if "language" in raw.columns else [None] * len(raw)
    return pd.DataFrame({"conversation_id": ids, "conversation": convs, "language": langs})


def redacted_mask(frame: pd.DataFrame) -> list[bool]:
    """LMSYS-Chat-1M's ``redacted`` flag per row (its PII was replaced by placeholders such as NAME_1);
    False where a row or the file has no flag. A flag that is not a boolean is a data error."""
    if "redacted" not in frame.columns:
        return [False] * len(frame)
    out = []
    for row, value in enumerate(frame["redacted"]):
        if is_missing(value):
            out.append(False)
        elif isinstance(value, (bool, np.bool_)):
            out.append(bool(value))
        else:
            raise DataValidationError(source_of(frame), line_of(frame, row), "redacted", f"expected true or false, got {value!r}")
    return out


def ingest_prompts(raw: pd.DataFrame, max_chars: int, languages: list[str],
                   drop_redacted: bool = True) -> tuple[pd.DataFrame, dict]:
    """First user turn of each conversation; drop redacted (``drop_redacted``), empty, over-long and
    duplicate prompts; tag language.

    Returns the prompts (``prompt_id, language, prompt, conversation, n_turns``) and a report of counts
    (``redacted`` counts LMSYS rows marked ``redacted: true`` whether or not they are dropped).
    """
    frame = as_frame(raw)
    conv = to_conversations(frame)
    redacted = redacted_mask(frame)
    df = pd.DataFrame(
        {
            "prompt_id": conv["conversation_id"],
            "prompt": [c[0]["content"].strip() for c in conv["conversation"]],
            "conversation": conv["conversation"],
            "n_turns": [sum(t["role"] == "user" for t in c) for c in conv["conversation"]],
        }
    )
    detected = detect_languages(df["prompt"], languages)
    df["language"] = [g if isinstance(g, str) and g else d for g, d in zip(conv["language"], detected)]
    report = {"raw": len(df), "redacted": sum(redacted)}
    if drop_redacted:
        df = df[[not r for r in redacted]]
        report["dropped_redacted"] = sum(redacted)
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


def select_languages(df: pd.DataFrame, languages: str | list[str], source: str, target: str) -> pd.DataFrame:
    """Rows of ``df`` whose ``language`` is in ``languages``.

    ``languages`` is ``"all"`` or a list of codes, where ``source`` / ``target`` stand for the recipe's
    source and target language: CLO's baselines SFT, SFT-eng and SFT-tgt are ``[source, target]``,
    ``[source]`` and ``[target]``.

    Raises:
        ValueError: no ``language`` column, or no row left.
    """
    if languages == "all":
        return df
    if isinstance(languages, str):
        languages = [languages]
    codes = [{"source": source, "target": target}.get(code, code) for code in languages]
    if "language" not in df.columns:
        raise ValueError("cannot select languages: the data has no 'language' column")
    kept = df[df["language"].isin(codes)].reset_index(drop=True)
    if kept.empty:
        present = sorted(df["language"].dropna().unique())
        raise ValueError(f"no rows in languages {codes}; the data has {present}")
    return kept
