"""XL-Instruct stages 1-2: reverse instructions from seed passages, then refinement (teacher LLM).

Stage 1 asks the teacher for an instruction to which the passage is a good answer. Stage 2 refines
the (question, response) pair against the paper's four criteria, grounded in the passage, with no
knowledge of the teacher's own added. The refinement is two calls - one rewrites the question, one
the response - so each reply *is* the field and no output format has to be parsed (a 72B teacher
and the tiny default alike always yield a usable field). Stage 3 (translation of the response, with
a cross-lingual instruction appended) is in translation_qe.
"""

from __future__ import annotations

import random

import pandas as pd

from kowen_kedro.langid import CROSS_LINGUAL_TEMPLATES, language_name
from kowen_kedro.llm.backends import SamplingParams
from kowen_kedro.llm.generator import CachedGenerator

REVERSE_INSTRUCTION = (
    "Here is a text:\n\n{passage}\n\n"
    "Write a question or instruction that a user could ask an AI assistant, for which this text would be "
    "a good and complete answer. Reply with the question or instruction only."
)

CRITERIA = (
    "1. Question self-sufficiency: the question is clear, unambiguous and needs no additional context.\n"
    "2. Response naturalness: the response is fluent, neutral, objective and reads like an assistant's answer.\n"
    "3. Response precision: the response is on topic, accurate and answers the question directly.\n"
    "4. Response informativeness: the response is helpful and explains enough to be useful."
)

REFINE_QUESTION = (
    "Improve this question-answer pair against these criteria:\n{criteria}\n\n"
    "Question: {question}\n\nAnswer: {response}\n\n"
    "Rewrite the question so that it meets criterion 1 and is fully answered by the answer. "
    "Reply with the rewritten question only."
)

REFINE_RESPONSE = (
    "Improve this question-answer pair against these criteria:\n{criteria}\n\n"
    "Question: {question}\n\nAnswer: {response}\n\n"
    "Rewrite the answer so that it meets criteria 2-4. Stay grounded in the original answer: do not add "
    "facts of your own. Reply with the rewritten answer only."
)


XL_COLUMNS = ["passage_id", "instruction", "response", "raw_instruction", "refined", "finish_reason"]


def reverse_instructions(
    passages: pd.DataFrame, generator: CachedGenerator, sampling: dict, refine: bool = True
) -> tuple[pd.DataFrame, dict]:
    """(instruction, response) pairs from ``passages`` (``passage_id, text``); returns rows and counts.

    A passage whose instruction comes back empty is dropped and counted; an empty refinement keeps the
    unrefined field (``refined`` says which rows were refined).
    """
    params = SamplingParams.from_dict(sampling)
    texts = list(passages["text"])
    raw = generator.generate([[{"role": "user", "content": REVERSE_INSTRUCTION.format(passage=t)}] for t in texts], params)
    questions = [r[0].text for r in raw]
    keep = [i for i, q in enumerate(questions) if q]
    report = {"passages": len(texts), "empty_instruction": len(texts) - len(keep)}
    questions_out, responses_out, refined = [questions[i] for i in keep], [texts[i] for i in keep], [False] * len(keep)
    finish = [raw[i][0].finish_reason for i in keep]
    if refine and keep:
        fill = dict(criteria=CRITERIA)
        q_msgs = [[{"role": "user", "content": REFINE_QUESTION.format(question=q, response=r, **fill)}] for q, r in zip(questions_out, responses_out)]
        r_msgs = [[{"role": "user", "content": REFINE_RESPONSE.format(question=q, response=r, **fill)}] for q, r in zip(questions_out, responses_out)]
        new_q = generator.generate(q_msgs, params)
        new_r = generator.generate(r_msgs, params)
        for j, (nq, nr) in enumerate(zip(new_q, new_r)):
            if nq[0].text and nr[0].text:
                questions_out[j], responses_out[j], refined[j] = nq[0].text, nr[0].text, True
                finish[j] = "length" if "length" in (nq[0].finish_reason, nr[0].finish_reason) else finish[j]
        report["refined"] = sum(refined)
    rows = pd.DataFrame(
        {
            "passage_id": [passages["passage_id"].iloc[i] for i in keep],
            "instruction": questions_out,
            "response": responses_out,
            "raw_instruction": [questions[i] for i in keep],
            "refined": refined,
            "finish_reason": finish,
        },
        columns=XL_COLUMNS,
    )
    report["pairs"] = len(rows)
    return rows, report


def cross_lingual_instruction(instruction: str, lang: str, rng: random.Random) -> str:
    """``instruction`` + a randomly chosen cross-lingual generation template for ``lang``."""
    template = rng.choice(CROSS_LINGUAL_TEMPLATES)
    return f"{instruction.rstrip()} {template.format(lang=language_name(lang))}"


def xl_instruct_rows(pairs: pd.DataFrame, tgt: str, seed: int) -> pd.DataFrame:
    """XL-Instruct SFT rows: English instruction + a cross-lingual template, translated response."""
    rng = random.Random(seed)
    messages = [
        [
            {"role": "user", "content": cross_lingual_instruction(ins, tgt, rng)},
            {"role": "assistant", "content": resp},
        ]
        for ins, resp in zip(pairs["instruction"], pairs[f"response_{tgt}"])
    ]
    return pd.DataFrame(
        {
            "passage_id": pairs["passage_id"],
            "language": tgt,
            "messages": messages,
            "qe_score": pairs["qe_score"],
            "winners": pairs["response_winners"],
        }
    )
