"""Running graders over outputs: MT-Bench two-turn answers and grades, rubric scores, unparseable checks."""

from __future__ import annotations

import logging
from typing import Any, Sequence

import pandas as pd

from kowen_kedro.evaluation.benchmarks import REFERENCE_CATEGORIES
from kowen_kedro.evaluation.grading import RUBRIC, rubric_messages, turn_messages

logger = logging.getLogger(__name__)


class UnparseableVerdictsError(RuntimeError):
    """Too many judge replies could not be read."""


def check_unparseable(values: Sequence[Any], what: str, max_share: float) -> dict[str, float]:
    """Count ``None`` verdicts; raise when their share exceeds ``max_share``. Returns counts for MLflow."""
    n = len(values)
    bad = sum(v is None for v in values)
    share = bad / n if n else 0.0
    if share > max_share:
        raise UnparseableVerdictsError(
            f"{what}: {bad} of {n} judge replies could not be read ({share:.1%} > max_unparseable_share "
            f"{max_share:.1%}); check the judge model / endpoint, or raise evaluation.judge.max_unparseable_share"
        )
    if bad:
        logger.warning("%s: %d of %d judge replies could not be read; they are left out of the means", what, bad, n)
    return {f"{what}.unparseable": bad, f"{what}.unparseable_share": share}


def answer_two_turns(generator, rows: pd.DataFrame, params) -> pd.DataFrame:
    """Answers to both turns: turn 2 is asked with the model's own turn-1 answer in the context."""
    first = generator.generate([[{"role": "user", "content": t[0]}] for t in rows["turns"]], params, n=1)
    a1 = [o[0].text for o in first]
    second = generator.generate(
        [[{"role": "user", "content": t[0]}, {"role": "assistant", "content": a}, {"role": "user", "content": t[1]}]
         for t, a in zip(rows["turns"], a1)], params, n=1)
    return rows.assign(answers=[[a, o[0].text] for a, o in zip(a1, second)])


def grade_two_turns(judge, answers: pd.DataFrame, fastchat_prompts: dict | None = None) -> pd.DataFrame:
    """``score_turn1`` / ``score_turn2`` (1-10, None = unreadable reply) for every conversation.

    Questions of a :data:`REFERENCE_CATEGORIES` category that carry ``reference`` answers are graded
    against them (FastChat's rule); other categories ignore a reference. ``fastchat_prompts``
    (:func:`kowen_kedro.evaluation.fastchat.judge_prompts`): FastChat's own judge prompts, the judge
    explaining before ``[[rating]]``; None: the project's prompts, which ask for the rating alone.
    """
    from kowen_kedro.evaluation import fastchat

    out = answers.copy()
    refs = answers["reference"] if "reference" in answers.columns else [None] * len(answers)
    for turn in (1, 2):
        if fastchat_prompts is not None:
            messages = [fastchat.turn_messages(fastchat_prompts, t, a, turn, c, ref)
                        for t, a, c, ref in zip(answers["turns"], answers["answers"], answers["category"], refs)]
            out[f"score_turn{turn}"] = judge.grade_explained(messages, 1, 10)
            continue
        messages = [turn_messages(t, a, turn, lang, ref if c in REFERENCE_CATEGORIES else None)
                    for t, a, lang, ref, c in zip(answers["turns"], answers["answers"], answers["language"], refs, answers["category"])]
        out[f"score_turn{turn}"] = judge.grade(messages, 1, 10)
    return out


def mt_bench_table(graded: pd.DataFrame) -> pd.DataFrame:
    """Mean 1st / 2nd-turn score per language and overall, and their ``average`` as FastChat's
    ``show_result.py`` computes it: the mean of every score of both turns (unreadable replies left out)."""
    rows = []
    for lang in sorted(graded["language"].unique()) + ["all"]:
        part = graded if lang == "all" else graded[graded["language"] == lang]
        t1, t2 = pd.to_numeric(part["score_turn1"]), pd.to_numeric(part["score_turn2"])
        row = {"language": lang, "n": len(part), "turn1": t1.mean(), "turn2": t2.mean(), "average": pd.concat([t1, t2]).mean()}
        if "in_language" in part:
            row["language_fidelity"] = float(part["in_language"].mean())
        rows.append(row)
    return pd.DataFrame(rows)


def grade_rubric(judge, outputs: pd.DataFrame) -> pd.DataFrame:
    """One 1-5 score per rubric criterion for every ``instruction`` / ``output``."""
    out = outputs[["id", "language"]].copy()
    for criterion in RUBRIC:
        messages = [rubric_messages(i, o, criterion, lang)
                    for i, o, lang in zip(outputs["instruction"], outputs["output"], outputs["language"])]
        out[criterion] = judge.grade(messages, 1, 5)
    return out


def rubric_table(scores: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for lang in sorted(scores["language"].unique()) + ["all"]:
        part = scores if lang == "all" else scores[scores["language"] == lang]
        rows.append({"language": lang, "n": len(part), **{c: pd.to_numeric(part[c]).mean() for c in RUBRIC}})
    return pd.DataFrame(rows)
