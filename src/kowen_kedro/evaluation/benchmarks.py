"""Benchmark sets built from AlpacaEval-format prompts (``instruction`` + optional ``id``, ``dataset``).

* :func:`xl_alpacaeval` - XL-Instruct's cross-lingual AlpacaEval: drop the prompts XL-Instruct's
  Table 4 lists as unsuitable for a cross-lingual answer, then append to every prompt a seeded random
  "Answer in {lang}" instruction from Table 5 (without the word "language"), per target language.
* :func:`two_turn_set` - MT-Bench / Ko-MT-Bench style two-turn questions, validated: ours, FastChat's
  ``question.jsonl`` / KoMT-Bench (``question_id``, ``turns``, optional ``reference``) or
  ``HuggingFaceH4/mt_bench_prompts`` (``prompt_id``, ``prompt``), from a file or a HF dataset.
* :func:`alpacaeval_prompts` - any AlpacaEval-format source (the 805-prompt file has ``instruction``,
  ``output``, ``generator``, ``dataset`` but no ``id`` / ``language``) made usable by every set.
"""

from __future__ import annotations

import random
import re
from typing import Any

import pandas as pd

from kowen_kedro.data.prompts import as_frame, as_list
from kowen_kedro.data.validation import (
    DataValidationError,
    is_missing,
    line_of,
    source_of,
    validate_records,
)
from kowen_kedro.data.xl_instruct import CROSS_LINGUAL_TEMPLATES
from kowen_kedro.langid import language_name

#: XL-Instruct Table 4 (AlpacaEval prompt ids and the start of their text). The paper's text says 8
#: prompts were removed (805 -> 797) while its table lists these 10; we drop all 10 and say so.
XL_ALPACAEVAL_EXCLUDED = {
    183: "Write a story about Anakin Skywalker encountering a Jedi who speaks and acts like a 1920s British aristocrat.",
    200: 'Write "Test"',
    350: "I'm an English speaker trying to learn Japanese Kanji using mnemonics.",
    458: "Give me a list of 5 words where the letters of the words are in alphabetical order.",
    476: "Rewrite the given text and correct grammar, spelling, and punctuation errors.",
    495: "During writing, we added an asterisk for the word that did not come to mind.",
    635: "Correct the transcription of an excerpt containing errors.",
    662: "You should capitalize the sentence according to the guide.",
    663: "Create alliterations by finding synonyms for words in the given sentence.",
    714: "Rewrite the text and correct the spelling errors.",
}


def alpacaeval_prompts(source: Any, default_language: str = "en") -> pd.DataFrame:
    """Add ``id`` (``alpaca-<row>``) and ``language`` (``default_language``) where the source lacks them.

    A source without ``id`` is in AlpacaEval's published schema (``instruction, output, generator,
    dataset``): its rows are AlpacaEval's instructions in their published order, so each also gets
    ``alpacaeval_index`` (its row), by which alpaca_eval's length-controlled GLM looks up the
    instruction's difficulty.

    ``source``: a DataFrame (a local JSON/JSONL file) or a HF ``Dataset`` / ``DatasetDict`` (``HFDataset``).
    """
    df = as_frame(source)
    out = df.copy()
    if "id" not in out.columns:
        out["id"] = [f"alpaca-{i}" for i in range(len(out))]
        if "alpacaeval_index" not in out.columns:
            out["alpacaeval_index"] = range(len(out))
    if "language" not in out.columns:
        out["language"] = default_language
    out.attrs = dict(df.attrs)
    return out


def _norm(text: str) -> str:
    """Lower case, punctuation dropped, whitespace collapsed: AlpacaEval's prompt 183 has no final period
    where Table 4 writes one."""
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s]", " ", str(text))).strip().lower()


def excluded_id(instruction: str, listed: dict[int, str] = XL_ALPACAEVAL_EXCLUDED) -> int | None:
    """The Table-4 id of the listed prompt ``instruction`` starts with (punctuation, whitespace and case
    ignored), else None."""
    text = _norm(instruction)
    return next((pid for pid, p in listed.items() if text.startswith(_norm(p))), None)


def xl_alpacaeval(prompts: pd.DataFrame, languages: list[str], seed: int, require_all_listed: bool = False
                  ) -> tuple[pd.DataFrame, dict]:
    """(``id, language, instruction, source_instruction, template, dataset`` rows (+ ``alpacaeval_index``
    when the prompts have it): one per kept prompt x language; a report: prompts ``removed`` and ``kept``, and the Table-4 ids ``not_found`` in the source).

    Raises:
        DataValidationError: a prompt without ``instruction`` (file, line, field); with
            ``require_all_listed`` (a source that is AlpacaEval's 805 prompts), a Table-4 prompt not found.
    """
    validate_records(prompts, {"instruction": str})
    rng = random.Random(seed)
    rows, removed = [], set()
    kept = 0
    for i, r in enumerate(prompts.to_dict("records")):
        pid = excluded_id(r["instruction"])
        if pid is not None:
            removed.add(pid)
            continue
        kept += 1
        base_id = str(r.get("id", i))
        for lang in languages:
            template = rng.choice(CROSS_LINGUAL_TEMPLATES)
            rows.append({
                "id": f"{base_id}-xl-{lang}", "language": lang,
                "instruction": f"{r['instruction'].rstrip()} {template.format(lang=language_name(lang))}",
                "source_instruction": r["instruction"], "template": template, "dataset": "xl_alpacaeval",
                **({"alpacaeval_index": r["alpacaeval_index"]} if "alpacaeval_index" in r else {}),
            })
    not_found = sorted(set(XL_ALPACAEVAL_EXCLUDED) - removed)
    if require_all_listed and not_found:
        raise DataValidationError(
            source_of(prompts), None, "instruction",
            f"XL-AlpacaEval removes the prompts of XL-Instruct's Table 4, but {len(not_found)} of them are not in the "
            f"source (ids {not_found}: {[XL_ALPACAEVAL_EXCLUDED[i][:40] for i in not_found]}); is it AlpacaEval's 805-prompt file?")
    report = {"removed": len(removed), "kept": kept, "not_found": len(not_found), "not_found_ids": not_found}
    columns = ["id", "language", "instruction", "source_instruction", "template", "dataset"]
    out = pd.DataFrame(rows, columns=columns + (["alpacaeval_index"] if "alpacaeval_index" in prompts.columns else []))
    return out, report


#: Categories FastChat grades against a reference answer (its ``NEED_REF_CATS``, less the arena set).
REFERENCE_CATEGORIES = frozenset({"math", "reasoning", "coding"})

#: Other names for our columns: FastChat / KoMT-Bench (``question_id``), HuggingFaceH4 (``prompt_id``, ``prompt``).
_TWO_TURN_ALIASES = {"id": ("question_id", "prompt_id"), "turns": ("prompt",)}


def _missing(value: Any) -> bool:
    """A field a record lacks (None / NaN) or an empty list (HF datasets' empty ``reference``)."""
    return is_missing(value) or (isinstance(value, list) and not value)


def two_turn_set(source: Any, default_language: str = "en", reference_answers: dict[str, list[str]] | None = None) -> pd.DataFrame:
    """MT-Bench style rows ``id, language, category, turns, reference``, validated.

    ``source``: a DataFrame (local JSON/JSONL) or a HF ``Dataset`` / ``DatasetDict``, in our format
    (``id, language, category, turns``), FastChat's / KoMT-Bench's (``question_id``, ``reference``) or
    HuggingFaceH4's (``prompt_id``, ``prompt``). A missing ``language`` column becomes ``default_language``;
    ``reference`` (reference answers, one per turn) is a list or None; as in FastChat's published
    ``question.jsonl`` an empty string means "no reference for this turn" (question 103: ``["...", ""]``).
    ``reference_answers`` (FastChat's reference-answer file, :func:`kowen_kedro.evaluation.fastchat.reference_answers`):
    as in FastChat, the file's answers are the references of the questions it has; the question's own
    ``reference`` is kept for the others (KoMT-Bench carries its references in the question rows).

    Raises:
        DataValidationError: a row without two non-empty turns, or a ``reference`` that is not a list of
            one or two strings (file, line, field).
    """
    df = as_frame(source)
    rows = df.copy()
    for ours, others in _TWO_TURN_ALIASES.items():
        found = [c for c in others if c in rows.columns]
        if ours not in rows.columns and found:
            rows = rows.rename(columns={found[0]: ours})
    if "id" in rows.columns:
        rows["id"] = [v if _missing(v) else str(v) for v in rows["id"]]
    if "language" not in rows.columns:
        rows["language"] = default_language
    for col in ("turns", "reference"):
        if col in rows.columns:
            rows[col] = [as_list(v) for v in rows[col]]
    validate_records(rows, {"id": str, "language": str, "category": str, "turns": list})
    for r, turns in enumerate(rows["turns"]):
        if len(turns) != 2 or not all(isinstance(t, str) and t.strip() for t in turns):
            raise DataValidationError(source_of(rows), line_of(rows, r), "turns", "expected two non-empty questions")
    references = list(rows["reference"]) if "reference" in rows.columns else [None] * len(rows)
    for r, ref in enumerate(references):
        if _missing(ref):
            references[r] = None
        elif not (isinstance(ref, list) and len(ref) <= 2 and all(isinstance(t, str) for t in ref)):
            raise DataValidationError(source_of(rows), line_of(rows, r), "reference",
                                      "expected a list of one or two reference answers (one per turn; \"\" for none)")
        elif not any(t.strip() for t in ref):  # FastChat writes "" for "no reference for this turn"
            references[r] = None
    for r, qid in enumerate(rows["id"]):
        if reference_answers and str(qid) in reference_answers:
            references[r] = list(reference_answers[str(qid)])
    return rows.assign(reference=references).reset_index(drop=True)  # attrs (source, lines) carried along
