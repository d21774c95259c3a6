"""Numbers against hand-computed values: RM accuracy, best/worst pairs, win rate, QE filter, judge positions."""


import pandas as pd
import pytest

from kowen_kedro.evaluation.judges import judge_pairs
from kowen_kedro.preference.pairs import best_worst_pairs
from kowen_kedro.rewards.metrics import accuracy_table
from kowen_kedro.translation.qe import filter_bottom_fraction


def test_accuracy_table_counts_ties_as_wrong():
    df = pd.DataFrame(
        [
            ("en", "chat", 1.0, 0.0), ("en", "chat", 0.0, 1.0),          # 1/2
            ("en", "chat_hard", 0.5, 0.5),                               # tie -> 0
            ("en", "safety", 2.0, 1.0), ("en", "reasoning", 3.0, -1.0),  # 1, 1
            ("ko", "chat", 1.0, 0.0), ("ko", "chat_hard", 1.0, 0.0), ("ko", "safety", 0.0, 1.0),
            ("ko", "reasoning", 1.0, 0.0), ("ko", "reasoning", 1.0, 2.0), ("ko", "reasoning", 1.0, 1.0),
        ],
        columns=["language", "category", "chosen_reward", "rejected_reward"],
    )
    t = accuracy_table(df)
    assert list(t.columns) == ["chat", "chat_hard", "safety", "reasoning", "avg"]
    assert t.loc["en"].tolist() == pytest.approx([0.5, 0.0, 1.0, 1.0, 0.625])
    assert t.loc["ko"].tolist() == pytest.approx([1.0, 1.0, 0.0, 1 / 3, (2 + 1 / 3) / 4])


def test_accuracy_table_rejects_unknown_category():
    df = pd.DataFrame([("en", "coding", 1.0, 0.0)], columns=["language", "category", "chosen_reward", "rejected_reward"])
    with pytest.raises(ValueError, match="unknown categories"):
        accuracy_table(df)


def test_best_worst_pairs_with_ties_and_single_completion():
    df = pd.DataFrame(
        [
            ("p1", "q1", "a", 0.1), ("p1", "q1", "b", 0.9), ("p1", "q1", "c", -0.5), ("p1", "q1", "d", 0.2),
            ("p2", "q2", "x", 1.0), ("p2", "q2", "y", 1.0),   # all tied -> dropped
            ("p3", "q3", "only", 0.3),                        # single -> dropped
        ],
        columns=["prompt_id", "prompt", "completion", "reward"],
    )
    pairs = best_worst_pairs(df)
    assert pairs.to_dict("records") == [
        {"prompt_id": "p1", "prompt": "q1", "chosen": "b", "rejected": "c", "chosen_reward": 0.9, "rejected_reward": -0.5}
    ]


def test_best_worst_pairs_keep_only_margins_of_at_least_k_reward_sd():
    df = pd.DataFrame([("p1", "q1", "a", 0.0), ("p1", "q1", "b", 4.0), ("p2", "q2", "c", 1.0), ("p2", "q2", "d", 2.0)],
                      columns=["prompt_id", "prompt", "completion", "reward"])
    sd = df["reward"].std()  # 1.7078 (ddof 1): p1's margin 4 = 2.34 SD, p2's margin 1 = 0.59 SD
    assert list(best_worst_pairs(df, min_margin_sd=0.5)["prompt_id"]) == ["p1", "p2"]
    assert list(best_worst_pairs(df, min_margin_sd=1.0 / sd)["prompt_id"]) == ["p1", "p2"]  # exactly at the margin: kept
    assert list(best_worst_pairs(df, min_margin_sd=1.0)["prompt_id"]) == ["p1"]
    assert best_worst_pairs(df, min_margin_sd=2.5).empty
    with pytest.raises(ValueError, match="min_margin_sd must be >= 0"):
        best_worst_pairs(df, min_margin_sd=-1)


def test_filter_bottom_fraction_drops_floor_of_n():
    df = pd.DataFrame({"s": [0.5, 0.1, 0.9, 0.3, 0.7, 0.2, 0.8, 0.4, 0.6, 0.05, 0.95]})
    kept, dropped = filter_bottom_fraction(df, "s", 0.2)  # floor(2.2) = 2
    assert sorted(dropped["s"]) == [0.05, 0.1]
    assert len(kept) == 9 and list(kept.index) == sorted(kept.index)


class AlwaysA:
    name = "always-a"

    def prefer_a(self, messages):
        return [1.0] * len(messages)


def test_judge_positions_are_seeded_and_undone():
    n = 40
    recs = judge_pairs(AlwaysA(), ["i"] * n, ["model"] * n, ["ref"] * n, ["en"] * n, seed=3)
    again = judge_pairs(AlwaysA(), ["i"] * n, ["model"] * n, ["ref"] * n, ["en"] * n, seed=3)
    assert [r["model_position"] for r in recs] == [r["model_position"] for r in again]
    positions = {r["model_position"] for r in recs}
    assert positions == {"A", "B"}
    for r in recs:  # a judge that always says "A" prefers the model exactly when the model is in A
        assert r["preference"] == (1.0 if r["model_position"] == "A" else 0.0)
