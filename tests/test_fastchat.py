"""MT-Bench graded as FastChat grades it: its published judge prompts, question and reference-answer
files (shipped samples in the published schema), the last [[rating]] of an explained reply, and turn 1,
turn 2 and their mean as FastChat's show_result.py computes them."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from kowen_kedro.data.validation import DataValidationError
from kowen_kedro.datasets import JSONLinesDataset
from kowen_kedro.evaluation import fastchat
from kowen_kedro.evaluation.benchmarks import two_turn_set
from kowen_kedro.evaluation.scoring import grade_two_turns, mt_bench_table

BENCH = Path(__file__).parents[1] / "data" / "01_raw" / "benchmarks"


def _load(name):
    return JSONLinesDataset(str(BENCH / name)).load()


@pytest.fixture(scope="module")
def published():
    return (fastchat.judge_prompts(_load("fastchat_judge_prompts.jsonl")),
            _load("mt_bench_question_sample.jsonl"),
            fastchat.reference_answers(_load("mt_bench_reference_answer_gpt-4_sample.jsonl")))


def test_published_files_load_and_the_reference_file_wins_as_in_fastchat(published):
    prompts, questions, refs = published
    assert set(prompts) == set(fastchat.SINGLE.values()) and set(refs) == {"101", "111", "121"}
    rows = two_turn_set(questions, "en", refs).set_index("id")
    assert list(rows.index) == ["81", "101", "111", "121", "131"]
    file_ref = json.loads((BENCH / "mt_bench_reference_answer_gpt-4_sample.jsonl").read_text().splitlines()[0])
    assert rows.loc["101", "reference"] == file_ref["choices"][0]["turns"]  # not question.jsonl's short reference
    assert rows.loc["81", "reference"] is None  # a writing question: no reference anywhere
    inline = two_turn_set(questions, "en").set_index("id")
    assert inline.loc["101", "reference"] != rows.loc["101", "reference"] and inline.loc["101", "reference"]


def test_judge_requests_are_fastchats_templates(published):
    prompts, questions, refs = published
    rows = two_turn_set(questions, "en", refs).set_index("id")
    q = rows.loc["111"]  # math: the math judge, with the reference answers
    t1 = fastchat.turn_messages(prompts, q["turns"], ["A1", "A2"], 1, q["category"], q["reference"])
    assert t1[0] == {"role": "system", "content": "You are a helpful assistant."}
    assert f"[Question]\n{q['turns'][0]}\n\n[The Start of Reference Answer]\n{q['reference'][0]}\n[The End of Reference Answer]" in t1[1]["content"]
    assert t1[1]["content"].endswith("[The Start of Assistant's Answer]\nA1\n[The End of Assistant's Answer]")
    t2 = fastchat.turn_messages(prompts, q["turns"], ["A1", "A2"], 2, q["category"], q["reference"])
    assert t2[0]["content"] == prompts["single-math-v1-multi-turn"]["system_prompt"]
    assert f"### Reference answer:\n{q['reference'][1]}" in t2[1]["content"] and "### Assistant A:\nA2" in t2[1]["content"]
    w = rows.loc["81"]  # writing: the general judges
    assert "Reference" not in fastchat.turn_messages(prompts, w["turns"], ["x", "y"], 1, w["category"], None)[1]["content"]
    assert fastchat.turn_messages(prompts, w["turns"], ["x", "y"], 2, w["category"], None)[0]["content"] == \
        prompts["single-v1-multi-turn"]["system_prompt"]


@pytest.mark.parametrize("text, value, count", [
    ("The answer is wrong in step 2 ([[3]] would be too harsh). Rating: [[6]]", 6.0, 2),  # the last one
    ("Good answer.\n\nRating: [[8.5]]", 8.5, 1),
    ("Rating: [7]", 7.0, 0),  # FastChat's backup pattern
    ("I cannot rate this.", None, 0),
    (None, None, 0),
])
def test_rating_reads_the_last_rating(text, value, count):
    assert fastchat.rating(text) == value and fastchat.rating_count(text) == count


class ExplainingJudge:
    """Replies like a FastChat judge: an explanation, then [[score]] from a table keyed by the answer."""

    def __init__(self, scores):
        self.scores, self.requests = scores, []

    def grade_explained(self, messages, low, high):
        self.requests += messages
        out = []
        for m in messages:
            turn = "a2" if "Conversation with User" in m[1]["content"] else "a1"  # turn 2 shows both answers
            key = next(k for k in self.scores if k.startswith(turn) and f"\n{k}\n" in m[1]["content"] + "\n")
            reply = None if self.scores[key] is None else f"The answer is fine. Rating: [[{self.scores[key]}]]"
            out.append(fastchat.rating(reply))
        return out


def test_turn_scores_and_their_mean_are_fastchats(published):
    prompts, questions, refs = published
    rows = two_turn_set(questions, "en", refs).head(3)
    answers = rows.assign(answers=[["a1-81", "a2-81"], ["a1-101", "a2-101"], ["a1-111", "a2-111"]])
    scores = {"a1-81": 8, "a1-101": None, "a1-111": 6, "a2-81": 4, "a2-101": 5, "a2-111": 3}
    graded = grade_two_turns(ExplainingJudge(scores), answers, prompts)
    turn1 = list(graded["score_turn1"])
    assert turn1[0] == 8.0 and pd.isna(turn1[1]) and turn1[2] == 6.0 and list(graded["score_turn2"]) == [4.0, 5.0, 3.0]
    table = mt_bench_table(graded).set_index("language").loc["all"]
    # show_result.py: turn means, and the mean of every score of both turns (unreadable -1 dropped)
    assert table["turn1"] == pytest.approx(7.0) and table["turn2"] == pytest.approx(4.0)
    assert table["average"] == pytest.approx((8 + 6 + 4 + 5 + 3) / 5)  # 5.2, not the mean of the turn means (5.5)


def test_openai_judge_explains_then_rates(tmp_path, published):
    from helpers.fake_openai import FakeOpenAI

    from kowen_kedro.evaluation.judges import OpenAIJudge
    from kowen_kedro.llm.backends import OpenAIBackend
    from kowen_kedro.llm.cache import CallCache

    prompts, questions, refs = published
    q = two_turn_set(questions, "en", refs).iloc[0]
    msgs = [fastchat.turn_messages(prompts, q["turns"], ["short", "x"], 1, q["category"], None),
            fastchat.turn_messages(prompts, q["turns"], ["long", "x"], 1, q["category"], None)]

    def respond(body):
        long = "\nlong\n" in body["messages"][1]["content"]
        return ("Detailed and vivid. [[9]]" if long else "Too short; a [[5]] at best, so: Rating: [[3]]"), None

    with FakeOpenAI(respond) as server:
        judge = OpenAIJudge(OpenAIBackend(model="judge-x", base_url=server.base_url), cache=CallCache(tmp_path / "c.sqlite"))
        assert judge.grade_explained(msgs) == [3.0, 9.0]
        assert all(r["max_tokens"] == 2048 and r["temperature"] == 0.0 for r in server.requests)
        assert server.requests[0]["messages"][0] == {"role": "system", "content": "You are a helpful assistant."}


def test_bad_published_files_name_file_line_and_field():
    prompts = _load("fastchat_judge_prompts.jsonl")
    with pytest.raises(DataValidationError, match="single-math-v1-multi-turn"):
        fastchat.judge_prompts(prompts[prompts["name"] != "single-math-v1-multi-turn"])
    bad = pd.DataFrame([{"question_id": 101, "choices": [{"index": 0, "turns": ["ok", "ok"]}]},
                        {"question_id": 102, "choices": [{"index": 0}]}])
    bad.attrs["source"] = "gpt-4.jsonl"
    with pytest.raises(DataValidationError) as err:
        fastchat.reference_answers(bad)
    assert err.value.field == "choices[0].turns" and "gpt-4.jsonl" in str(err.value) and err.value.line == 2
