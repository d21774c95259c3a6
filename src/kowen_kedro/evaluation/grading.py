"""Single-answer grading prompts: MT-Bench style 1-10 per turn, and XL-Instruct's 1-5 rubric.

The MT-Bench prompts follow the single-answer grading prompts of Zheng et al. (2023): turn 1 grades
the first answer; turn 2 shows the whole two-turn conversation and grades the answer to the second
question only. A language note (CLO appendix C) asks the judge to penalise answers in the wrong
language for non-English sets. Replies end in ``[[rating]]``. Where a question carries reference
answers (FastChat's math / reasoning / coding questions), the judge compares with them instead: turn 1
sees the first reference answer, turn 2 the reference conversation (both reference answers).
"""

from __future__ import annotations

from typing import Sequence

from kowen_kedro.langid import language_name

SYSTEM = "You are a helpful and precise assistant for checking the quality of an AI assistant's answers."
LANGUAGE_NOTE = " The user expects the answer in {lang}; an answer in another language must get a low rating."

TURN1 = (
    "[Instruction]\nPlease act as an impartial judge and evaluate the quality of the response provided by an AI "
    "assistant to the user question displayed below. Consider helpfulness, relevance, accuracy, depth, creativity "
    "and level of detail.{note} Rate the response on a scale of 1 to 10 by strictly following this format: "
    "\"[[rating]]\", for example: \"Rating: [[5]]\".\n\n[Question]\n{q1}\n\n[The Start of Assistant's Answer]\n{a1}\n"
    "[The End of Assistant's Answer]\n\nRating: [["
)
TURN2 = (
    "[Instruction]\nPlease act as an impartial judge and evaluate the quality of the response provided by an AI "
    "assistant to the user question displayed below. Focus on the assistant's answer to the second user question; "
    "the first exchange is context.{note} Rate the response on a scale of 1 to 10 by strictly following this format: "
    "\"[[rating]]\".\n\n<|The Start of Assistant A's Conversation with User|>\n\n### User:\n{q1}\n\n### Assistant A:\n{a1}"
    "\n\n### User:\n{q2}\n\n### Assistant A:\n{a2}\n\n<|The End of Assistant A's Conversation with User|>\n\nRating: [["
)

TURN1_REFERENCE = (
    "[Instruction]\nPlease act as an impartial judge and evaluate the response of an AI assistant to the user question "
    "below. Judge correctness first, then helpfulness: compare the assistant's answer with the reference answer and "
    "identify any mistakes.{note} Rate the response on a scale of 1 to 10 by strictly following this format: "
    "\"[[rating]]\", for example: \"Rating: [[5]]\".\n\n[Question]\n{q1}\n\n[The Start of Reference Answer]\n{r1}\n"
    "[The End of Reference Answer]\n\n[The Start of Assistant's Answer]\n{a1}\n[The End of Assistant's Answer]\n\nRating: [["
)
TURN2_REFERENCE = (
    "[Instruction]\nPlease act as an impartial judge and evaluate the response of an AI assistant to the user questions "
    "below. Focus on the assistant's answer to the second question; judge correctness first, then helpfulness: compare it "
    "with the reference answer and identify any mistakes.{note} Rate the response on a scale of 1 to 10 by strictly "
    "following this format: \"[[rating]]\".\n\n<|The Start of Reference Answer|>\n\n### User:\n{q1}\n\n"
    "### Reference answer:\n{r1}\n\n### User:\n{q2}\n\n### Reference answer:\n{r2}\n\n<|The End of Reference Answer|>"
    "\n\n<|The Start of Assistant A's Conversation with User|>\n\n### User:\n{q1}\n\n### Assistant A:\n{a1}"
    "\n\n### User:\n{q2}\n\n### Assistant A:\n{a2}\n\n<|The End of Assistant A's Conversation with User|>\n\nRating: [["
)

#: XL-Instruct's rubric (1-5 each).
RUBRIC = {
    "objectivity": "Objectivity: is the answer factual and neutral, free of unsupported claims and bias?",
    "naturalness": "Naturalness: does the answer read as fluent, natural text in the requested language?",
    "informativeness": "Informativeness: does the answer give useful, relevant information that addresses the request?",
    "precision": "Precision: is the answer accurate and to the point, without errors or padding?",
}
RUBRIC_TEMPLATE = (
    "[Instruction]\nEvaluate the AI assistant's answer to the user request below on one criterion.{note}\n{criterion}\n"
    "Give a score from 1 (very poor) to 5 (excellent) in this format: \"[[score]]\".\n\n[Request]\n{q}\n\n"
    "[The Start of Assistant's Answer]\n{a}\n[The End of Assistant's Answer]\n\nScore: [["
)


def _note(language: str | None) -> str:
    return LANGUAGE_NOTE.format(lang=language_name(language)) if language and language != "en" else ""


def _messages(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}]


def turn_messages(turns: Sequence[str], answers: Sequence[str], turn: int, language: str | None,
                  reference: Sequence[str] | None = None) -> list[dict[str, str]]:
    """Judge request grading ``turn`` (1 or 2) of a two-turn conversation.

    ``reference``: reference answers per turn; turn 1 uses the reference prompt when it has one answer,
    turn 2 when it has two (otherwise that turn is graded without a reference). An empty answer (FastChat's
    ``""``) is no reference for its turn.
    """
    ref = list(reference or [])
    note = _note(language)
    if turn == 1:
        if ref and ref[0].strip():
            return _messages(TURN1_REFERENCE.format(note=note, q1=turns[0], r1=ref[0], a1=answers[0]))
        return _messages(TURN1.format(note=note, q1=turns[0], a1=answers[0]))
    if turn == 2:
        if len(ref) >= 2 and ref[1].strip():
            return _messages(TURN2_REFERENCE.format(note=note, q1=turns[0], r1=ref[0], q2=turns[1], r2=ref[1],
                                                    a1=answers[0], a2=answers[1]))
        return _messages(TURN2.format(note=note, q1=turns[0], a1=answers[0], q2=turns[1], a2=answers[1]))
    raise ValueError(f"turn must be 1 or 2, not {turn}")


def rubric_messages(instruction: str, answer: str, criterion: str, language: str | None) -> list[dict[str, str]]:
    if criterion not in RUBRIC:
        raise ValueError(f"unknown rubric criterion {criterion!r}; expected one of {sorted(RUBRIC)}")
    return _messages(RUBRIC_TEMPLATE.format(note=_note(language), criterion=RUBRIC[criterion], q=instruction, a=answer))
