"""Teacher-distilled SFT data: single-turn completions and Magpie-like multi-turn conversations."""

from __future__ import annotations

import pandas as pd

from kowen_kedro.langid import fidelity, language_name
from kowen_kedro.llm.backends import SamplingParams
from kowen_kedro.llm.generator import CachedGenerator

SFT_COLUMNS = ["prompt_id", "language", "messages", "teacher", "n_turns", "finish_reason"]

NEXT_USER_TURN = (
    "Below is a conversation between a user and an assistant, in {lang}.\n\n{transcript}\n\n"
    "Write the user's next message: a natural follow-up question or request, in {lang}. "
    "Reply with the message only."
)


def _transcript(messages: list[dict[str, str]]) -> str:
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in messages)


def single_turn_completions(
    prompts: pd.DataFrame, generator: CachedGenerator, sampling: dict, teacher_name: str
) -> pd.DataFrame:
    """One teacher answer per prompt; empty answers are dropped (``generator.stats.empty`` counts
    them), truncated ones kept with ``finish_reason == "length"``."""
    requests = [[{"role": "user", "content": p}] for p in prompts["prompt"]]
    outputs = generator.generate(requests, SamplingParams.from_dict(sampling), n=1)
    rows = []
    for row, req, out in zip(prompts.to_dict("records"), requests, outputs):
        c = out[0]
        if not c.text:
            continue
        rows.append(
            {
                "prompt_id": row["prompt_id"],
                "language": row["language"],
                "messages": req + [{"role": "assistant", "content": c.text}],
                "teacher": teacher_name,
                "n_turns": 1,
                "finish_reason": c.finish_reason,
            }
        )
    return pd.DataFrame(rows, columns=SFT_COLUMNS)


def multi_turn_conversations(
    prompts: pd.DataFrame, generator: CachedGenerator, sampling: dict, turns: int, language: str, teacher_name: str
) -> pd.DataFrame:
    """Conversations of ``turns`` user turns: answer, then the teacher writes the next user turn, repeat.

    A conversation stops early (and is kept with the turns it has, if at least one) when the teacher
    returns an empty turn.
    """
    if turns < 1:
        raise ValueError("turns must be >= 1")
    params = SamplingParams.from_dict(sampling)
    lang = language_name(language)
    convs = [[{"role": "user", "content": p}] for p in prompts["prompt"]]
    alive = list(range(len(convs)))
    finish = ["stop"] * len(convs)
    for turn in range(turns):
        answers = generator.generate([convs[i] for i in alive], params, n=1)
        still = []
        for i, out in zip(alive, answers):
            if out[0].text:
                convs[i].append({"role": "assistant", "content": out[0].text})
                finish[i] = "length" if out[0].finish_reason == "length" else finish[i]
                still.append(i)
            else:
                convs[i].pop()  # drop the unanswered user turn
        alive = still
        if turn == turns - 1 or not alive:
            break
        asks = [
            [{"role": "user", "content": NEXT_USER_TURN.format(lang=lang, transcript=_transcript(convs[i]))}]
            for i in alive
        ]
        next_turns = generator.generate(asks, params, n=1)
        alive = [i for i, out in zip(alive, next_turns) if out[0].text]
        for i, out in zip(alive, [o for o in next_turns if o[0].text]):
            convs[i].append({"role": "user", "content": out[0].text})
    rows = []
    for row, conv, fin in zip(prompts.to_dict("records"), convs, finish):
        n = sum(m["role"] == "assistant" for m in conv)
        if n == 0:
            continue
        rows.append(
            {
                "prompt_id": row["prompt_id"],
                "language": language,
                "messages": conv,
                "teacher": teacher_name,
                "n_turns": n,
                "finish_reason": fin,
            }
        )
    return pd.DataFrame(rows, columns=SFT_COLUMNS)


def filter_language(df: pd.DataFrame, languages: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Keep rows whose every assistant turn is in the row's ``language``; returns (kept, dropped)."""
    if df.empty:
        return df, df
    turns = [(i, m["content"], lang) for i, (msgs, lang) in enumerate(zip(df["messages"], df["language"])) for m in msgs if m["role"] == "assistant"]
    ok = fidelity([t for _, t, _ in turns], [lang for _, _, lang in turns], languages)
    bad_rows = {i for (i, _, _), good in zip(turns, ok) if not good}
    mask = [i not in bad_rows for i in range(len(df))]
    return df[mask].reset_index(drop=True), df[[not m for m in mask]].reset_index(drop=True)
