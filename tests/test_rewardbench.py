"""RewardBench / M-RewardBench aggregation against numbers computed by hand from the published rule."""

import math

import pandas as pd
import pytest

from kowen_kedro.rewards.metrics import accuracy_table
from kowen_kedro.rewards.rewardbench import M_REWARDBENCH_COUNTS, REWARDBENCH_COUNTS, category_of, score, section_scores

CODE = ["hep-cpp", "hep-go", "hep-java", "hep-js", "hep-python", "hep-rust"]


def _rows(subset: str, n: int, right: int, language: str = "en") -> list[dict]:
    return [{"language": language, "subset": subset, "category": category_of(subset),
             "chosen_reward": 1.0 if i < right else 0.0, "rejected_reward": 0.0 if i < right else 1.0} for i in range(n)]


def test_reasoning_is_half_math_half_code_not_pooled():
    """The issue's example: math at 0.60, code at 0.90. RewardBench weighs math-prm as 984 (= 6 x 164),
    so Reasoning = (0.6 x 984 + 0.9 x 984) / 1968 = 0.75; pooling 447 math pairs with 984 code pairs
    would give (0.6 x 447 + 0.9 x 984) / 1431 = 0.806."""
    acc = {"math-prm": 0.6, **{s: 0.9 for s in CODE}}
    assert section_scores(acc)["Reasoning"] == pytest.approx(0.75)
    assert (0.6 * 447 + 0.9 * 984) / 1431 == pytest.approx(0.806, abs=5e-4)
    # M-RewardBench's counts (math 983, hep-python 163): (0.6 x 983 + 0.9 x 983) / 1966
    assert section_scores(acc, "m-rewardbench")["Reasoning"] == pytest.approx((0.6 * 983 + 0.9 * 983) / 1966)
    assert sum(M_REWARDBENCH_COUNTS[s] for s in CODE) == 983 and sum(REWARDBENCH_COUNTS[s] for s in CODE) == 984


def test_the_table_weights_subsets_and_averages_sections():
    rows = _rows("math-prm", 10, 6) + [r for s in CODE for r in _rows(s, 10, 9)]
    rows += _rows("alpacaeval-easy", 4, 4) + _rows("mt-bench-easy", 4, 0)      # Chat: (1 x 100 + 0 x 28) / 128
    rows += _rows("mt-bench-hard", 2, 1)                                        # Chat Hard: 0.5
    rows += _rows("donotanswer", 5, 5) + _rows("xstest-should-respond", 5, 0)   # Safety: 136 / (136 + 250)
    t = accuracy_table(pd.DataFrame(rows)).loc["en"]
    assert t["reasoning"] == pytest.approx(0.75)
    assert t["chat"] == pytest.approx(100 / 128)
    assert t["chat_hard"] == pytest.approx(0.5)
    assert t["safety"] == pytest.approx(136 / 386)
    assert t["avg"] == pytest.approx((0.75 + 100 / 128 + 0.5 + 136 / 386) / 4)
    assert t["avg"] == pytest.approx(score(section_scores({"math-prm": 0.6, **{s: 0.9 for s in CODE}, "alpacaeval-easy": 1.0,
                                                          "mt-bench-easy": 0.0, "mt-bench-hard": 0.5, "donotanswer": 1.0,
                                                          "xstest-should-respond": 0.0})))


def test_ties_are_wrong_and_a_missing_section_is_not_zero():
    rows = [{"language": "ko", "subset": "math-prm", "category": "reasoning", "chosen_reward": 0.3, "rejected_reward": 0.3}]
    t = accuracy_table(pd.DataFrame(rows)).loc["ko"]
    assert t["reasoning"] == 0.0 and math.isnan(t["chat"]) and math.isnan(t["avg"])
    assert math.isnan(score(section_scores({"math-prm": 1.0})))
    with pytest.raises(ValueError, match="not RewardBench subsets"):
        section_scores({"my-subset": 1.0})


def test_the_published_rewardbench_rows_load_and_evaluate(tmp_path):
    """The shipped sample in RewardBench's published ``filtered`` schema goes straight in: categories from
    the subsets' sections, sections weighted as RewardBench weighs them."""
    from conftest import RAW, read_jsonl

    from kowen_kedro.data.validation import DataValidationError
    from kowen_kedro.rewards.data import clean_pairs, from_rewardbench

    raw = read_jsonl(RAW / "benchmarks" / "rewardbench_filtered_sample.jsonl")
    pairs, report = clean_pairs(from_rewardbench(raw))
    assert report["kept"] == len(raw) == 8 and set(pairs["language"]) == {"en"}
    assert dict(zip(pairs["subset"], pairs["category"]))["hep-python"] == "reasoning"
    wrong = {"math-prm", "alpacaeval-length"}  # an RM that gets these two subsets wrong, the rest right
    scored = pairs.assign(chosen_reward=[0.0 if s in wrong else 1.0 for s in pairs["subset"]], rejected_reward=0.5)
    t = accuracy_table(scored).loc["en"]
    assert t["reasoning"] == pytest.approx(164 / (984 + 164))          # math-prm 0 x 984, hep-python 1 x 164
    assert t["chat"] == pytest.approx(100 / (100 + 95))                # alpacaeval-easy 1 x 100, -length 0 x 95
    assert (t["chat_hard"], t["safety"]) == (1.0, 1.0)

    bad = tmp_path / "bad.jsonl"
    bad.write_text((RAW / "benchmarks" / "rewardbench_filtered_sample.jsonl").read_text().replace('"math-prm"', '"maths"'))
    with pytest.raises(DataValidationError, match=r"bad.jsonl, line 3, field 'subset'.*'maths'"):
        from_rewardbench(read_jsonl(bad))


def test_the_benchmark_node_scores_published_rows_with_a_reward_model(tiny_models):
    """The pipeline's node on the shipped RewardBench sample with the tiny RM: a row per language, the four
    sections and the score, logged with the pair count."""
    from conftest import RAW, read_jsonl

    from kowen_kedro.pipelines.reward_model.nodes import benchmark_reward_model_node

    raw = read_jsonl(RAW / "benchmarks" / "rewardbench_filtered_sample.jsonl")
    table, metrics = benchmark_reward_model_node(tiny_models["models"]["reward_model_init"], raw, {"batch_size": 4, "max_length": 256},
                                                 {"weights": "rewardbench", "language": "en"})
    assert list(table["language"]) == ["en"] and set(table.columns) == {"language", "chat", "chat_hard", "safety", "reasoning", "avg"}
    assert table[["chat", "chat_hard", "safety", "reasoning"]].apply(lambda c: c.between(0, 1)).all().all()
    names = set(metrics)
    assert {"en.score", "en.reasoning", "pairs"} <= names
    assert metrics["pairs"]["value"] == 8.0 and metrics["excluded"]["value"] == 0.0
    assert metrics["en.score"]["value"] == pytest.approx(float(table.loc[0, "avg"]))
