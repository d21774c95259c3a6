"""MT-Bench grading as FastChat's ``llm_judge`` does it, from FastChat's published files.

* :func:`judge_prompts` - ``judge_prompts.jsonl`` (``name, type, system_prompt, prompt_template,
  description, category, output_format``); single-answer grading uses ``single-v1`` /
  ``single-math-v1`` for turn 1 and ``single-v1-multi-turn`` / ``single-math-v1-multi-turn`` for turn 2.
* :func:`reference_answers` - ``reference_answer/gpt-4.jsonl`` (``question_id, answer_id, model_id,
  choices: [{index, turns}]``): the reference answers of the judge, one per turn.
* :func:`turn_messages` - the judge request for one turn, as FastChat's ``run_judge_single`` builds it:
  the math prompts (with reference answers) for a ``NEED_REF_CATS`` question, the general ones otherwise.
* :func:`rating` - the judge explains, then writes ``[[rating]]``: the *last* ``[[x]]`` in the reply
  (``[x]`` when there is none), None when there is no rating. FastChat's ``re.search`` takes the first;
  the two differ only on a reply that states several ratings, which :func:`rating_count` lets the run count.

Turn 1, turn 2 and their mean are reported as FastChat's ``show_result.py`` does: the mean of the turn-1
scores, of the turn-2 scores, and of all scores of both turns, unreadable replies (FastChat's -1) left out.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

from kowen_kedro.data.prompts import as_frame
from kowen_kedro.data.validation import DataValidationError, is_missing, line_of, source_of

#: FastChat ``common.NEED_REF_CATS`` (arena-hard-200 is not an MT-Bench category but is kept as published).
NEED_REF_CATS = frozenset({"math", "reasoning", "coding", "arena-hard-200"})
#: The single-answer judges (turn 1 / turn 2, general / with reference), as ``gen_judgment.py`` names them.
SINGLE = {(1, False): "single-v1", (1, True): "single-math-v1",
          (2, False): "single-v1-multi-turn", (2, True): "single-math-v1-multi-turn"}
_RATING = re.compile(r"\[\[(\d+\.?\d*)\]\]")
_RATING_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")


def judge_prompts(source: Any) -> dict[str, dict[str, str]]:
    """The four single-answer judge prompts of FastChat's ``judge_prompts.jsonl`` (a DataFrame or HF dataset).

    Raises:
        DataValidationError: a prompt missing, or without ``system_prompt`` / ``prompt_template``, or an
            ``output_format`` other than ``[[rating]]`` (file, line, field).
    """
    df = as_frame(source)
    source_name = source_of(df)
    if "name" not in df.columns:
        raise DataValidationError(source_name, 1, "name", "missing: expected FastChat's judge_prompts.jsonl")
    rows = {str(r["name"]): (i, r) for i, r in enumerate(df.to_dict("records"))}
    out = {}
    for name in SINGLE.values():
        if name not in rows:
            raise DataValidationError(source_name, None, "name", f"no judge prompt {name!r} (FastChat's single-answer grading needs it)")
        i, row = rows[name]
        for field in ("system_prompt", "prompt_template"):
            if is_missing(row.get(field)) or not str(row[field]).strip():
                raise DataValidationError(source_name, line_of(df, i), field, f"missing or empty in judge prompt {name!r}")
        if row.get("output_format") != "[[rating]]":
            raise DataValidationError(source_name, line_of(df, i), "output_format",
                                      f"{row.get('output_format')!r}: single-answer grading reads '[[rating]]'")
        out[name] = {"system_prompt": str(row["system_prompt"]), "prompt_template": str(row["prompt_template"])}
    return out


def reference_answers(source: Any) -> dict[str, list[str]]:
    """``{question_id: [reference turn 1, reference turn 2]}`` from FastChat's reference-answer file.

    Raises:
        DataValidationError: a row without ``question_id`` or ``choices[0].turns`` as a list of strings.
    """
    df = as_frame(source)
    out: dict[str, list[str]] = {}
    for i, row in enumerate(df.to_dict("records")):
        line = line_of(df, i)
        if is_missing(row.get("question_id")):
            raise DataValidationError(source_of(df), line, "question_id", "missing")
        choices = row.get("choices")
        choices = list(choices) if choices is not None and not isinstance(choices, (str, dict)) else None
        turns = choices[0].get("turns") if choices and isinstance(choices[0], dict) else None
        turns = list(turns) if turns is not None and not isinstance(turns, str) else None
        if not turns or not all(isinstance(t, str) for t in turns):
            raise DataValidationError(source_of(df), line, "choices[0].turns", "expected a list of reference answers, one per turn")
        out[str(row["question_id"])] = turns
    return out


def turn_messages(prompts: dict[str, dict[str, str]], turns: Sequence[str], answers: Sequence[str], turn: int, category: str,
                  reference: Sequence[str] | None) -> list[dict[str, str]]:
    """FastChat's judge request for ``turn`` (1 or 2): system prompt + the filled template.

    A ``NEED_REF_CATS`` question with reference answers gets the math judge; without them (a question set
    that has none) it is graded by the general judge, as no reference can be shown.
    """
    if turn not in (1, 2):
        raise ValueError(f"turn must be 1 or 2, not {turn}")
    ref = list(reference or [])
    with_ref = category in NEED_REF_CATS and len(ref) >= turn and all(str(r).strip() for r in ref[:turn])
    judge = prompts[SINGLE[(turn, with_ref)]]
    kwargs: dict[str, str] = {}
    if with_ref:
        kwargs["ref_answer_1"] = ref[0]
        if turn == 2:
            kwargs["ref_answer_2"] = ref[1]
    if turn == 1:
        user = judge["prompt_template"].format(question=turns[0], answer=answers[0], **kwargs)
    else:
        user = judge["prompt_template"].format(question_1=turns[0], question_2=turns[1], answer_1=answers[0],
                                               answer_2=answers[1], **kwargs)
    return [{"role": "system", "content": judge["system_prompt"]}, {"role": "user", "content": user}]


def rating(text: str | None) -> float | None:
    """The last ``[[x]]`` of a judge reply (the last ``[x]`` when it has none); None without a rating."""
    if not text:
        return None
    found = _RATING.findall(text) or _RATING_BACKUP.findall(text)
    return float(found[-1]) if found else None


def rating_count(text: str | None) -> int:
    """How many ``[[x]]`` ratings a reply states (more than one: FastChat would read the first)."""
    return len(_RATING.findall(text or ""))
