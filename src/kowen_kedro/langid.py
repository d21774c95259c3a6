"""Offline language identification (lingua-language-detector; its models ship in the wheel)."""

from __future__ import annotations

from functools import lru_cache
from typing import Iterable

def _lingua_names() -> dict[str, str]:
    """ISO 639-1 code -> English name of every language lingua identifies (75, from its own tables)."""
    from lingua import Language

    return {lang.iso_code_639_1.name.lower(): lang.name.title() for lang in Language.all()}


# Languages of the seed papers that lingua does not identify (XL-AlpacaEval's Maltese): names only.
_EXTRA_NAMES = {"mt": "Maltese"}

#: ISO 639-1 code -> English name: lingua's 75 languages (every language of the seed papers but Maltese) + Maltese.
LANGUAGE_NAMES = {**_lingua_names(), **_EXTRA_NAMES}

# XL-Instruct Table 5, with the word "language" dropped as XL-AlpacaEval does: the instruction appended
# to a prompt to ask for the answer in another language (XL-Instruct's training rows, XL-AlpacaEval, and
# the tiny world's cross-lingual prompts).
CROSS_LINGUAL_TEMPLATES = [
    "Answer in {lang}.",
    "Output an answer in {lang}.",
    "Generate your answer in {lang}.",
    "Respond in {lang}.",
    "Produce an answer in {lang}.",
    "Please write in {lang}.",
]


def language_name(code: str) -> str:
    """English name of the language with ISO 639-1 ``code`` (sw -> Swahili)."""
    if code not in LANGUAGE_NAMES:
        raise ValueError(f"unknown language code {code!r}: not an ISO 639-1 code of lingua's languages; known: {sorted(LANGUAGE_NAMES)}")
    return LANGUAGE_NAMES[code]


@lru_cache(maxsize=8)
def _detector(languages: tuple[str, ...]):
    from lingua import IsoCode639_1, LanguageDetectorBuilder

    unknown = [code for code in languages if not hasattr(IsoCode639_1, code.upper())]
    if unknown:
        raise ValueError(f"language identification (lingua) does not know {unknown}; it knows {sorted(set(LANGUAGE_NAMES) - set(_EXTRA_NAMES))}")
    codes = [getattr(IsoCode639_1, code.upper()) for code in languages]
    if len(codes) < 2:
        raise ValueError("language identification needs at least two candidate languages")
    return LanguageDetectorBuilder.from_iso_codes_639_1(*codes).build()


def detect_languages(texts: Iterable[str], languages: Iterable[str]) -> list[str | None]:
    """ISO 639-1 code of each text among ``languages`` (None when lingua cannot tell, e.g. empty text)."""
    det = _detector(tuple(sorted(languages)))
    out: list[str | None] = []
    for text in texts:
        lang = det.detect_language_of(text) if text and text.strip() else None
        out.append(lang.iso_code_639_1.name.lower() if lang is not None else None)
    return out


def fidelity(texts: Iterable[str], expected: Iterable[str], languages: Iterable[str]) -> list[bool]:
    """Whether each text is in its expected language."""
    texts, expected = list(texts), list(expected)
    candidates = sorted(set(languages) | set(expected))
    return [d == e for d, e in zip(detect_languages(texts, candidates), expected)]


def line_fidelity(texts: Iterable[str], expected: Iterable[str], languages: Iterable[str]) -> list[bool]:
    """Whether every non-empty line of each text is in its expected language (the Language Confusion
    Benchmark's line-level pass rate); an empty text passes no check."""
    texts, expected = list(texts), list(expected)
    lines = [(i, line, e) for i, (t, e) in enumerate(zip(texts, expected)) for line in (t or "").splitlines() if line.strip()]
    ok = fidelity([line for _, line, _ in lines], [e for _, _, e in lines], languages)
    out = [bool((t or "").strip()) for t in texts]
    for (i, _, _), good in zip(lines, ok):
        out[i] = out[i] and good
    return out
