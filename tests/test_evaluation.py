"""Evaluation: verdict reading, judges (position swap, local log-prob judges, an OpenAI-compatible
judge with and without logprobs), benchmark sets, grading, lm-eval offline, reports."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from kowen_kedro.data.validation import DataValidationError
from kowen_kedro.evaluation.benchmarks import XL_ALPACAEVAL_EXCLUDED, two_turn_set, xl_alpacaeval
from kowen_kedro.evaluation.grading import rubric_messages, turn_messages
from kowen_kedro.evaluation.judges import judge_pairs
from kowen_kedro.evaluation.reports import report_markdown, report_table
from kowen_kedro.evaluation.scoring import UnparseableVerdictsError, check_unparseable, mt_bench_table
from kowen_kedro.evaluation.verdicts import (
    expected_score,
    pairwise_from_logprobs,
    pairwise_verdict,
    score_verdict,
)


@pytest.mark.parametrize("text, expected", [
    ("A", 1.0), ("B", 0.0), ("[[B]]", 0.0), ("  b.", 0.0), ("**A** is better because ...", 1.0),
    ("Output (a) is better.", 1.0), ("My verdict: B", 0.0), ("The better response is A.", 1.0), ("[[C]]", 0.5),
    ("Tie", 0.5), ("", None), (None, None), ("Both responses are fine.", None), ("I cannot decide", None),
])
def test_pairwise_verdict_from_text(text, expected):
    assert pairwise_verdict(text) == expected


def test_pairwise_and_score_verdicts_from_logprobs():
    lp = {"A": math.log(0.6), " B": math.log(0.2), "The": math.log(0.2)}
    assert pairwise_from_logprobs(lp) == pytest.approx(0.75)
    assert pairwise_verdict("B", lp) == pytest.approx(0.75)  # log-probs win over the sampled text
    assert pairwise_verdict("B", {"The": 0.0}) == 0.0  # no verdict token among them: the text
    scores = {"7": math.log(0.5), "8": math.log(0.25), "x": math.log(0.25)}
    assert score_verdict("Rating: [[3]]", 1, 10, scores) == pytest.approx((7 * 0.5 + 8 * 0.25) / 0.75)
    assert expected_score([0.0, 1.0, 1.0], low=1) == 2.5 and expected_score([0, 0], low=1) is None


@pytest.mark.parametrize("text, expected", [
    ("Rating: [[7]]", 7.0), ("[[10]]", 10.0), ("I'd give it 8/10.", 8.0), ("Score: 4", 4.0), ("6", 6.0),
    ("[[11]] then [[9]]", 9.0), ("no number here", None), ("", None), ("Rating: [[0]]", None),
])
def test_score_verdict_from_text(text, expected):
    assert score_verdict(text, 1, 10) == expected


def test_unparseable_verdicts_are_counted_and_fail_above_the_threshold():
    assert check_unparseable([1.0, None, 0.0, 0.5], "x", max_share=0.25) == {"x.unparseable": 1, "x.unparseable_share": 0.25}
    with pytest.raises(UnparseableVerdictsError, match="2 of 4 judge replies could not be read"):
        check_unparseable([1.0, None, None, 0.5], "x", max_share=0.25)


class FixedJudge:
    """Prefers the response whose text contains 'good'; None for 'garbled'."""

    name = "fixed"

    def __init__(self):
        self.seen = []

    def prefer_a(self, messages):
        out = []
        for m in messages:
            text = m[0]["content"]
            self.seen.append(text)
            a = text.split("Response A:\n")[1].split("\n\nResponse B:")[0]
            b = text.split("Response B:\n")[1].split("\n\nWhich")[0]
            out.append(None if "garbled" in a + b else (1.0 if "good" in a else 0.0 if "good" in b else 0.5))
        return out


def test_position_randomisation_is_seeded_recorded_and_undone():
    judge = FixedJudge()
    n = 40
    records = judge_pairs(judge, ["q"] * n, ["good"] * n, ["bad"] * n, ["en"] * n, seed=7)
    positions = [r["model_position"] for r in records]
    assert {"A", "B"} == set(positions) and 10 < positions.count("A") < 30  # both positions used
    assert all(r["preference"] == 1.0 for r in records)  # the model's win survives every swap
    assert [r["p_a"] for r in records] == [1.0 if p == "A" else 0.0 for p in positions]
    assert [r["model_position"] for r in judge_pairs(FixedJudge(), ["q"] * n, ["good"] * n, ["bad"] * n, ["en"] * n, seed=7)] == positions
    assert [r["model_position"] for r in judge_pairs(FixedJudge(), ["q"] * n, ["good"] * n, ["bad"] * n, ["en"] * n, seed=8)] != positions
    ko = FixedJudge()
    judge_pairs(ko, ["질문"], ["garbled"], ["bad"], ["ko"], seed=0)
    assert "expects an answer in Korean" in ko.seen[0]  # language-aware instruction for non-English sets
    assert judge_pairs(FixedJudge(), ["q"], ["garbled"], ["x"], ["en"], seed=0)[0]["preference"] is None


def test_local_judges_give_probabilities_and_expected_scores_for_the_tiny_model(tiny_models, tmp_path):
    from kowen_kedro.evaluation.judges import LocalChoiceJudge, LocalPairwiseJudge, judge_messages
    from kowen_kedro.llm.cache import CallCache

    judge_model = tiny_models["models"]["teacher"]
    cache = CallCache(tmp_path / "c.sqlite")
    p = LocalPairwiseJudge(judge_model, cache=cache).prefer_a(
        [judge_messages("Say hi.", "Hi!", "Go away.", "en"), judge_messages("인사해 주세요.", "안녕하세요!", "Hello", "ko")])
    assert all(0.0 <= x <= 1.0 for x in p) and p[0] != p[1]
    grader = LocalChoiceJudge(judge_model, cache=cache)
    grades = grader.grade([turn_messages(["Say hi."], ["Hi!"], 1, "en"), rubric_messages("Say hi.", "Hi!", "precision", "en")], 1, 10)
    assert all(1.0 <= g <= 10.0 for g in grades) and grades[0] != grades[1]
    again = LocalChoiceJudge(judge_model, cache=cache)
    assert again.grade([turn_messages(["Say hi."], ["Hi!"], 1, "en")], 1, 10) == grades[:1] and again._lm is None  # cached


def test_the_local_judge_scores_one_verdict_at_a_time_on_a_cpu(tiny_models):
    """``evaluation.judge.batch_size: auto``: one verdict per forward pass on a CPU, so a verdict's probability is
    the same float whatever the verdicts scored beside it (a cached verdict is reused by other nodes; a
    left-padded batch moved it in the 7th digit, and with it the run's win rates from one run to the next)."""
    import pytest

    from kowen_kedro.evaluation.judges import LocalPairwiseJudge, judge_batch_size, judge_messages

    assert (judge_batch_size("auto", cuda=False), judge_batch_size(None, cuda=False), judge_batch_size("auto", cuda=True)) == (1, 1, 8)
    assert judge_batch_size(4, cuda=False) == 4
    with pytest.raises(ValueError, match="evaluation.judge.batch_size must be >= 1 or auto, not 0"):
        judge_batch_size(0, cuda=False)
    judge = LocalPairwiseJudge(tiny_models["models"]["teacher"])
    short = judge_messages("Add 2 and 3.", "5", "6", "en")
    others = [judge_messages("Tell me about the weather " * k, "It is sunny. " * (3 * k), "No.", "en") for k in (1, 4, 9)]
    alone = judge._score([short])
    assert judge._score([*others, short])[-1] == alone[0] and judge._score([others[1], short])[1] == alone[0]


def test_openai_judge_reads_logprobs_or_text_and_counts_garbage(tmp_path):
    from helpers.fake_openai import FakeOpenAI

    from kowen_kedro.evaluation.judges import OpenAIJudge, judge_messages
    from kowen_kedro.llm.backends import OpenAIBackend
    from kowen_kedro.llm.cache import CallCache

    replies = {"first": ("A", {"A": math.log(0.8), "B": math.log(0.2)}), "second": ("[[B]]", None), "third": ("no idea", None)}

    def respond(body):
        text, top = replies[body["messages"][0]["content"].split("Instruction:\n")[1].split("\n")[0]]
        return text, top

    with FakeOpenAI(respond) as server:
        judge = OpenAIJudge(OpenAIBackend(model="judge-x", base_url=server.base_url, concurrency=2), cache=CallCache(tmp_path / "c.sqlite"))
        msgs = [judge_messages(k, "a", "b", "en") for k in ("first", "second", "third")]
        assert judge.prefer_a(msgs) == [pytest.approx(0.8), 0.0, None]
        assert all(r.get("logprobs") is True and r.get("top_logprobs") == 20 and r["temperature"] == 0.0 for r in server.requests)
        calls = len(server.requests)
        assert judge.prefer_a(msgs) == [pytest.approx(0.8), 0.0, None] and len(server.requests) == calls  # cached


def test_xl_alpacaeval_drops_table_4_prompts_and_appends_a_seeded_template():
    prompts = pd.DataFrame({"id": ["1", "2", "3"], "instruction": [
        "Explain photosynthesis.", 'Write "Test"', "  rewrite the text and correct the SPELLING errors. It solves problems comon."]})
    xl, report = xl_alpacaeval(prompts, ["ko", "de"], seed=0)
    assert list(xl["id"]) == ["1-xl-ko", "1-xl-de"] and len(XL_ALPACAEVAL_EXCLUDED) == 10
    assert report == {"removed": 2, "kept": 1, "not_found": 8, "not_found_ids": [183, 350, 458, 476, 495, 635, 662, 663]}
    assert xl.loc[0, "instruction"].startswith("Explain photosynthesis. ") and xl.loc[0, "instruction"].endswith("Korean.")
    assert "language" not in xl.loc[0, "template"] and xl.loc[1, "instruction"].endswith("German.")
    assert xl_alpacaeval(prompts, ["ko", "de"], seed=0)[0].equals(xl)
    templates = {xl_alpacaeval(pd.DataFrame({"instruction": ["q"] * 30}), ["ko"], seed=s)[0].loc[0, "template"] for s in range(12)}
    assert len(templates) > 1


def test_xl_alpacaeval_removes_every_listed_prompt_of_the_published_set_or_says_which_is_missing():
    """AlpacaEval's prompt 183 has no final period where Table 4 writes one: it is removed all the same.
    A source that must be AlpacaEval's (``require_all_listed``) fails naming the listed prompts it lacks."""
    from kowen_kedro.data.validation import DataValidationError

    published = [text.rstrip(".") + ("" if pid == 183 else " Some more words.") for pid, text in XL_ALPACAEVAL_EXCLUDED.items()]
    prompts = pd.DataFrame({"instruction": ["Explain photosynthesis.", *published]})
    xl, report = xl_alpacaeval(prompts, ["ko"], seed=0, require_all_listed=True)
    assert report == {"removed": 10, "kept": 1, "not_found": 0, "not_found_ids": []} and list(xl["source_instruction"]) == ["Explain photosynthesis."]
    with pytest.raises(DataValidationError, match=r"2 of them are not in the source \(ids \[183, 200\]"):
        xl_alpacaeval(prompts.drop(index=[1, 2]), ["ko"], seed=0, require_all_listed=True)


def test_a_raw_alpacaeval_file_gets_ids_and_a_language():
    from kowen_kedro.evaluation.benchmarks import alpacaeval_prompts

    raw = pd.DataFrame({"instruction": ["a", "b"], "output": ["x", "y"], "generator": "gpt4", "dataset": "helpful_base"})
    out = alpacaeval_prompts(raw)
    assert list(out["id"]) == ["alpaca-0", "alpaca-1"] and set(out["language"]) == {"en"}
    kept = pd.DataFrame({"id": ["k1"], "language": ["ko"], "instruction": ["q"]})
    assert alpacaeval_prompts(kept).equals(kept)


def test_two_turn_set_validation():
    good = pd.DataFrame([{"id": "m1", "language": "ko", "category": "writing", "turns": ["첫 질문", "둘째 질문"]}])
    assert len(two_turn_set(good)) == 1
    bad = good.assign(turns=[["only one"]])
    bad.attrs["source"] = "data/01_raw/mt_bench_prompts.jsonl"
    with pytest.raises(DataValidationError, match="mt_bench_prompts.jsonl, line 1, field 'turns'"):
        two_turn_set(bad)


def test_turn_two_is_graded_with_turn_one_context():
    m = turn_messages(["Q1?", "Q2?"], ["A1.", "A2."], 2, "ko")[1]["content"]
    assert m.index("Q1?") < m.index("A1.") < m.index("Q2?") < m.index("A2.") and "Korean" in m
    assert "Q2?" not in turn_messages(["Q1?", "Q2?"], ["A1.", "A2."], 1, "en")[1]["content"]
    with pytest.raises(ValueError, match="unknown rubric criterion"):
        rubric_messages("q", "a", "humour", "en")


def test_mt_bench_table_and_report():
    graded = pd.DataFrame({"language": ["en", "en", "ko"], "score_turn1": [8.0, 6.0, 4.0], "score_turn2": [7.0, None, 2.0],
                           "in_language": [1.0, 0.5, 0.0]})
    table = mt_bench_table(graded).set_index("language")
    assert table.loc["en", "language_fidelity"] == 0.75 and table.loc["all", "language_fidelity"] == 0.5
    assert table.loc["en", "turn1"] == 7.0 and table.loc["en", "turn2"] == 7.0 and table.loc["all", "turn2"] == 4.5
    assert table.loc["all", "average"] == pytest.approx((8 + 6 + 4 + 7 + 2) / 5)
    alpaca = pd.DataFrame([{"language": "ko", "win_rate": 60.0, "win_rate_se": 5.0, "language_fidelity": 0.9}])
    nlu = pd.DataFrame([{"task": "kowen_mc_ko", "metric": "acc", "value": 0.5, "stderr": 0.1}])
    report = report_table(alpaca, alpaca.assign(win_rate=40.0), mt_bench_table(graded), pd.DataFrame([{"language": "ko", "naturalness": 3.5}]), nlu)
    assert set(report["benchmark"]) == {"alpacaeval", "xl_alpacaeval", "mt_bench", "rubric", "nlu:kowen_mc_ko"}
    md = report_markdown(report)
    assert "| xl_alpacaeval | win_rate |" in md and "| nlu:kowen_mc_ko | acc |" in md


@pytest.mark.slow
def test_lm_eval_harness_runs_the_shipped_task_offline_on_the_tiny_model(tiny_models, raw_data, tmp_path, no_network,
                                                                         monkeypatch):
    """The shipped multiple-choice file as lm-eval tasks, offline; the Arrow copies of their data stay in the
    tasks' folder, none in the datasets library's cache."""
    import datasets

    from conftest import RAW, read_jsonl
    from kowen_kedro.evaluation.nlu import local_mc_tasks, run_lm_eval, task_manager

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_datasets")
    rows = read_jsonl(RAW / "nlu_mc.jsonl")
    names = local_mc_tasks(rows, tmp_path / "tasks")
    assert names == ["kowen_mc_en", "kowen_mc_ko"]
    results = run_lm_eval(tiny_models["models"]["base"], names, tmp_path / "tasks", batch_size=4)
    assert not (tmp_path / "hf_datasets").exists() and list((tmp_path / "tasks" / "datasets_cache").iterdir())
    assert task_manager(names, tmp_path / "tasks").all_tasks == names  # the shipped tasks alone, none of the harness's
    assert {"kowen_mc_en", "arc_easy"} <= set(task_manager(["kowen_mc_en", "arc_easy"], tmp_path / "tasks").all_tasks)
    acc = results[results["metric"] == "acc"].set_index("task")["value"]
    assert set(acc.index) == set(names) and all(0.0 <= v <= 1.0 and (8 * v).is_integer() for v in acc)  # 8 items each
    bad = rows.copy()
    bad.loc[2, "answer"] = 4
    with pytest.raises(DataValidationError, match="line 3, field 'answer'"):
        local_mc_tasks(bad, tmp_path / "bad")


def test_run_comparisons_from_an_mlflow_store(tmp_path):
    """The notebook's tables from a store laid out as a run leaves it: parent runs with ``/`` names, child
    runs per policy (which are not kedro runs, and come back as one row per policy)."""
    import mlflow

    from kowen_kedro.evaluation.compare import compare_by_param, policies_table, rm_transfer_table, runs_table
    from kowen_kedro.tracking import RunLayout

    import time

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)  # no global active-run state
    exp = client.create_experiment("kowen_kedro")
    for method, wr in (("sft_dpo", 40.0), ("clo", 55.0), ("clo", 60.0)):  # the newest clo run counts
        run = client.create_run(exp)
        client.log_param(run.info.run_id, "cross_lingual.method", method)
        for key, value in {"evaluation/xl_alpacaeval/win_rate/ko": wr, "evaluation/xl_alpacaeval/win_rate/all": wr,
                           "rm_transfer_source/accuracy/ko/chat": 0.75, "rm_transfer_target/accuracy/ko/chat": 0.5}.items():
            client.log_metric(run.info.run_id, key, value)
        layout = RunLayout(run.info.run_id, uri)
        layout.log_gold({"sft.ko": wr / 100, "cross_lingual.ko": wr / 100 + 0.1, "qe.spearman": 0.5})
        layout.end()
        client.set_terminated(run.info.run_id)
        time.sleep(0.01)  # distinct start times
    runs = runs_table(uri)
    assert len(runs) == 3  # the six child runs are not kedro runs
    table = compare_by_param(runs, "cross_lingual.method")
    ko = table[(table["metric"] == "evaluation.xl_alpacaeval.win_rate") & (table["language"] == "ko")].set_index("value")["score"]
    assert ko.to_dict() == {"sft_dpo": 40.0, "clo": 60.0}
    rm = rm_transfer_table(runs.iloc[-1])
    assert rm.to_dict("records") == [{"eval_language": "ko", "category": "chat", "source_rm": 0.75, "target_rm": 0.5, "delta": 0.25}]
    policies = policies_table(runs.iloc[-1]["run_id"], uri).set_index("name")
    assert list(policies.index) == ["cross_lingual", "sft"] and set(policies["kind"]) == {"policy"}
    assert policies["metrics.gold.ko"].to_dict() == {"cross_lingual": pytest.approx(0.7), "sft": 0.6}
    assert policies_table(client.create_run(exp).info.run_id, uri).empty  # a run without children
    with pytest.raises(ValueError, match="no run logged parameter"):
        compare_by_param(runs, "nope")


def test_training_precision_is_the_specs_not_a_leftover_environment_value(monkeypatch, tmp_path):
    """TRL configs default to bf16=True and leave ACCELERATE_MIXED_PRECISION=bf16 in the process; a
    training child must not inherit it (it silently ran CPU training under bf16 autocast)."""
    from kowen_kedro.training.entry import build_config
    from kowen_kedro.training.launcher import child_env
    from kowen_kedro.training.spec import LaunchSpec

    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    spec = LaunchSpec(kind="dpo", model="m", train_file="t", output_dir=str(tmp_path))
    assert "ACCELERATE_MIXED_PRECISION" not in child_env()
    cfg = build_config(spec)  # precision auto on CPU: fp32
    assert cfg.bf16 is False and cfg.fp16 is False
    import os

    assert os.environ["ACCELERATE_MIXED_PRECISION"] == "no"


def test_api_keys_from_credentials_reach_the_environment_without_overriding_it(monkeypatch):
    from kowen_kedro.hooks import export_api_keys

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("JUDGE_KEY", "from-env")
    names = export_api_keys({"openai": {"api_key": "sk-test"}, "judge": {"api_key": "sk-other", "env": "JUDGE_KEY"},
                             "mlflow": {"user": "x"}})
    assert names == ["OPENAI_API_KEY"]
    import os

    assert os.environ["OPENAI_API_KEY"] == "sk-test" and os.environ["JUDGE_KEY"] == "from-env"


def test_fastchat_komt_bench_and_h4_question_files_become_two_turn_sets():
    from datasets import Dataset

    fastchat = pd.DataFrame([
        {"question_id": 81, "category": "writing", "turns": ["Write a blog post.", "Rewrite it as a limerick."]},
        {"question_id": 111, "category": "math", "turns": ["Area of the triangle?", "Area of its circumcircle?"],
         "reference": ["Area is 3", "5pi"]},
    ])  # pandas reads FastChat's question.jsonl like this: NaN where a row has no reference
    rows = two_turn_set(fastchat, "en")
    assert list(rows["id"]) == ["81", "111"] and list(rows["language"]) == ["en", "en"]
    assert rows["reference"][0] is None and rows["reference"][1] == ["Area is 3", "5pi"]
    komt = Dataset.from_list([{"question_id": 101, "category": "reasoning", "turns": ["질문 1", "질문 2"], "reference": ["답 1", "답 2"]},
                              {"question_id": 81, "category": "writing", "turns": ["글을 써 주세요.", "다시 써 주세요."], "reference": []}])
    rows = two_turn_set(komt, "ko")  # HF list columns arrive as numpy arrays
    assert rows["turns"][0] == ["질문 1", "질문 2"] and rows["reference"][0] == ["답 1", "답 2"]
    assert rows["reference"][1] is None and set(rows["language"]) == {"ko"}
    h4 = pd.DataFrame([{"prompt_id": 2, "prompt": ["Q1", "Q2"], "category": "coding", "reference": []}])
    assert two_turn_set(h4).loc[0, ["id", "turns"]].tolist() == ["2", ["Q1", "Q2"]]
    bad = fastchat.assign(reference=[None, "5pi"])
    bad.attrs["source"] = "question.jsonl"
    with pytest.raises(DataValidationError, match="question.jsonl, line 2, field 'reference'"):
        two_turn_set(bad)


class _RecordingGrader:
    def __init__(self):
        self.requests = []

    def grade(self, messages, low, high):
        self.requests.extend(m[1]["content"] for m in messages)
        return [7.0] * len(messages)


def test_math_reasoning_coding_turns_are_graded_against_their_reference_answers():
    from kowen_kedro.evaluation.scoring import grade_two_turns

    answers = pd.DataFrame([
        {"id": "1", "language": "en", "category": "math", "turns": ["Q1?", "Q2?"], "answers": ["A1.", "A2."],
         "reference": ["R1.", "R2."]},
        {"id": "2", "language": "en", "category": "writing", "turns": ["W1?", "W2?"], "answers": ["B1.", "B2."],
         "reference": ["X1.", "X2."]},  # FastChat ignores references outside math/reasoning/coding
        {"id": "3", "language": "ko", "category": "coding", "turns": ["C1?", "C2?"], "answers": ["D1.", "D2."],
         "reference": ["S1."]},  # one reference answer: turn 2 is graded without one
    ])
    grader = _RecordingGrader()
    graded = grade_two_turns(grader, answers)
    assert list(graded["score_turn1"]) == [7.0] * 3 and list(graded["score_turn2"]) == [7.0] * 3
    t1_math, t1_writing, t1_coding, t2_math, t2_writing, t2_coding = grader.requests
    assert t1_math.index("Q1?") < t1_math.index("R1.") < t1_math.index("A1.") and "R2." not in t1_math
    assert t2_math.index("R1.") < t2_math.index("Q2?") < t2_math.index("R2.") < t2_math.index("A2.")
    assert "reference" in t1_math.lower() and "reference" in t2_math.lower()
    assert "X1." not in t1_writing + t2_writing and "reference" not in (t1_writing + t2_writing).lower()
    assert "S1." in t1_coding and "Korean" in t1_coding
    assert "S1." not in t2_coding and "reference" not in t2_coding.lower()
    assert all(r.endswith("Rating: [[") for r in grader.requests)  # the local grader reads the next token


# Rows exactly as FastChat publishes data/mt_bench/question.jsonl (keys, order and the "" of question 103).
FASTCHAT_QUESTIONS = [
    '{"question_id": 81, "category": "writing", "turns": ["Compose an engaging travel blog post about a recent trip to Hawaii.", "Rewrite your previous response. Start every sentence with the letter A."]}',
    '{"question_id": 101, "category": "reasoning", "turns": ["Imagine you are participating in a race with a group of people. If you have just overtaken the second person, what\'s your current position?", "If the \\"second person\\" is changed to \\"last person\\" in the above question, what would the answer be?"], "reference": ["You are in second place.", "Uncertain."]}',
    '{"question_id": 103, "category": "reasoning", "turns": ["Thomas is very healthy, but he has to go to the hospital every day. What could be the reasons?", "Can you explain why the above question is interesting?"], "reference": ["Thomas may work at a hospital.", ""]}',
    '{"question_id": 111, "category": "math", "turns": ["The vertices of a triangle are at points (0, 0), (-1, 1), and (3, 3). What is the area of the triangle?", "What\'s area of the circle circumscribing the triangle?"], "reference": ["Area is 3", "5pi"]}',
]


def test_fastchat_question_file_as_published_all_rows_both_turns_references_where_given(tmp_path):
    """FastChat's own question.jsonl: "" is "no reference for this turn"; no row dropped, nothing rejected."""
    from kowen_kedro.datasets import JSONLinesDataset
    from kowen_kedro.evaluation.scoring import grade_two_turns

    path = tmp_path / "question.jsonl"
    path.write_text("\n".join(FASTCHAT_QUESTIONS) + "\n", encoding="utf-8")
    rows = two_turn_set(JSONLinesDataset(str(path)).load(), "en")
    assert list(rows["id"]) == ["81", "101", "103", "111"] and all(len(t) == 2 for t in rows["turns"])
    assert rows["reference"][0] is None and rows["reference"][2] == ["Thomas may work at a hospital.", ""]
    grader = _RecordingGrader()
    grade_two_turns(grader, rows.assign(answers=[["a1", "a2"]] * 4))
    t1 = {i: r for i, r in zip(rows["id"], grader.requests[:4])}
    t2 = {i: r for i, r in zip(rows["id"], grader.requests[4:])}
    assert "Thomas may work at a hospital." in t1["103"]  # turn 1 of question 103 has its reference ...
    assert "reference" not in t2["103"].lower()           # ... turn 2 has none ("")
    assert "Uncertain." in t2["101"] and "5pi" in t2["111"] and "reference" not in t1["81"].lower()
    bad = pd.DataFrame([{"question_id": 1, "category": "math", "turns": ["a", "b"], "reference": ["x", 3]}])
    bad.attrs["source"] = "question.jsonl"
    with pytest.raises(DataValidationError, match="question.jsonl, line 1, field 'reference'"):
        two_turn_set(bad)
    assert two_turn_set(bad.assign(reference=[["", ""]]))["reference"][0] is None


def test_same_run_cross_lingual_reads_clo_and_its_baseline_per_language():
    from kowen_kedro.evaluation.compare import same_run_cross_lingual

    run = pd.Series({"metrics.gold.sft.ko": 0.3, "metrics.gold.sft.ko.se": 0.04, "metrics.gold.cross_lingual.ko": 0.35,
                     "metrics.gold.cross_lingual.ko.se": 0.05, "metrics.gold.sft_dpo_baseline.ko": 0.31,
                     "metrics.gold.sft.en": 0.2, "metrics.gold.sft.ko.fidelity": 0.9, "metrics.gold.cross_lingual.fidelity": 0.5,
                     "run_id": "r"})  # a part of gold is no language
    table = same_run_cross_lingual(run)
    assert list(table["language"]) == ["ko"]  # en: neither cross-lingual policy measured
    row = table.iloc[0]
    assert (row["sft"], row["cross_lingual"], row["sft_dpo_baseline"], row["cross_lingual.se"]) == (0.3, 0.35, 0.31, 0.05)
    assert math.isnan(row["sft_dpo_baseline.se"])


def _legends_off_the_data(fig) -> list[str]:
    """The legend entries of ``fig``, after checking that no legend overlaps an axes' data area."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend() is not None)]
    assert legends, "no legend"
    for legend in legends:
        box = legend.get_window_extent(renderer)
        for ax in fig.axes:
            assert not box.overlaps(ax.get_window_extent(renderer)), "a legend covers the data"
    return [t.get_text() for legend in legends for t in legend.get_texts()]


def test_the_plots_show_every_series_with_their_legends_off_the_data():
    import numpy as np

    from kowen_kedro.evaluation.reports import iteration_curve_figure
    from kowen_kedro.pipelines.translation_qe.nodes import qe_histogram_node

    rng = np.random.default_rng(0)
    few = pd.DataFrame({"qe_score": [0.93, 0.931, 0.932]})  # a small set beside large ones stays visible
    many = pd.DataFrame({"qe_score": rng.normal(0.8, 0.03, 400)})
    fig = qe_histogram_node(few, many, many.head(100), pd.DataFrame({"other": [1]}))  # a set without scores: no entry
    assert _legends_off_the_data(fig) == ["prompts (n=3)", "preference pairs (n=400)", "CLO pairs (n=100)"]
    ax = fig.axes[0]
    for patch in ax.patches:  # every outline reaches a visible height within the axes
        top = patch.get_path().vertices[:, 1].max()
        assert 0 < top <= ax.get_ylim()[1], patch.get_label()
    assert max(p.get_path().vertices[:, 1].max() for p in ax.patches[:1]) == pytest.approx(100)  # shares of the set

    curve = pd.DataFrame({"iteration": [0, 1, 2] * 2, "language": ["en"] * 3 + ["ko"] * 3, "win_rate": [50, 60, 70, 45, 55, 60],
                          "win_rate_se": [5.0] * 6, "language_fidelity": [0.9, 0.95, 1.0, 0.8, 0.85, 0.9]})
    assert _legends_off_the_data(iteration_curve_figure(curve)) == ["en", "ko"]
