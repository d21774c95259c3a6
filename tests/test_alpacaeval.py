"""AlpacaEval 2.0 numbers through the alpaca-eval package: published figures, hand-computed values,
ties without a judge call, the length-controlled path and the published reference outputs."""

from __future__ import annotations

import math
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
import pytest

from conftest import base_params
from kowen_kedro.data.validation import DataValidationError
from kowen_kedro.evaluation import alpacaeval as ae
from kowen_kedro.evaluation.benchmarks import alpacaeval_prompts, xl_alpacaeval
from kowen_kedro.evaluation.judges import judge_pairs
from kowen_kedro.pipelines.evaluation.nodes import reference_outputs_node, summarize_node

DATA = Path(__file__).parent / "data" / "alpacaeval"
ROOT = Path(__file__).parents[1]
SAMPLE = ROOT / "data" / "01_raw" / "benchmarks" / "alpaca_eval_gpt4_baseline_sample.json"


@pytest.mark.parametrize("model", ["alpaca-7b", "text_davinci_001"])
def test_published_annotations_give_the_published_leaderboard_row(model):
    """alpaca_eval's own annotations (commit cd543a1) through our annotation schema reproduce its
    AlpacaEval 2.0 leaderboard: win rate, SE, discrete win rate and the counts."""
    published = pd.read_json(DATA / f"{model}_annotations.json")
    board = pd.read_csv(DATA / "weighted_alpaca_eval_gpt4_turbo_leaderboard.csv", index_col=0).loc[model]
    n = len(published)
    annotated = ae.annotations(["q"] * n, ["m"] * n, ["r"] * n, list(published["preference"] - 1.0),
                               model=model, reference="gpt4_1106_preview")
    got = ae.head_to_head(annotated)
    for key in ("win_rate", "standard_error", "discrete_win_rate"):
        assert got[key] == pytest.approx(board[key], rel=1e-12), key
    for key in ("n_wins", "n_wins_base", "n_draws", "n_total"):
        assert got[key] == board[key], key
    assert got["n_dropped"] == 0


@pytest.mark.parametrize("model", ["alpaca-7b", "text_davinci_001"])
def test_a_published_annotations_file_gives_its_leaderboard_row_in_one_call(model):
    board = pd.read_csv(DATA / "weighted_alpaca_eval_gpt4_turbo_leaderboard.csv", index_col=0).loc[model]
    got = ae.published_numbers(DATA / f"{model}_annotations.json", df_gamed=pd.DataFrame(columns=list(ae.DF_GAMED_COLUMNS)))
    for key in ("win_rate", "standard_error", "discrete_win_rate"):
        assert got[key] == pytest.approx(board[key], rel=1e-12), key
    assert (got["n_wins"], got["n_total"], got["n_dropped"]) == (board["n_wins"], board["n_total"], 0)
    assert "the records carry no outputs" in got["lc_absent"]  # the test files keep the preferences only


def test_a_preference_outside_its_scale_is_an_error_naming_the_item_and_value(tmp_path):
    with pytest.raises(ValueError, match=r"preference of item 2: 2\.0 is not on the scale \[0, 1\]"):
        ae.annotations("qqq", "mmm", "rrr", [1.0, 0.0, 2.0], "m", "r")  # alpaca_eval's 1-2 values passed as they are
    path = tmp_path / "annotations.json"
    path.write_text('[{"generator_1": "r", "generator_2": "m", "preference": 1.0}, '
                    '{"generator_1": "r", "generator_2": "m", "preference": null}, '
                    '{"generator_1": "r", "generator_2": "m", "preference": 0.0}]')
    with pytest.raises(DataValidationError) as err:
        ae.published_annotations(path)
    assert (err.value.source, err.value.field) == (str(path), "preference") and "item 2 has 0.0" in err.value.problem
    path.write_text('[{"generator_1": "r", "generator_2": "m", "preference": 2.0}, '
                    '{"generator_1": "r", "generator_2": "m", "preference": null}]')
    got = ae.head_to_head(ae.published_annotations(path))  # a null preference is an unreadable verdict, counted
    assert (got["n_total"], got["n_dropped"], got["win_rate"]) == (1, 1, 100.0)


def test_head_to_head_hand_computed_ties_and_dropped_verdicts():
    # preferences for the model: 1, 0, 1, 1 -> 75 %, SE = 100 * sqrt(var(ddof=1) / n) = 100 * sqrt(0.25 / 4)
    got = ae.head_to_head(ae.annotations("qqqq", "mmmm", "rrrr", [1, 0, 1, 1], "m", "r"))
    assert got["win_rate"] == pytest.approx(75.0)
    assert got["standard_error"] == pytest.approx(100 * math.sqrt(0.25 / 4))
    # a tie counts half in both; an unreadable verdict is dropped and counted; 0.7 is a discrete win
    got = ae.head_to_head(ae.annotations("qqqq", "mmmm", "rrrr", [0.5, 0.7, None, 0.0], "m", "r"))
    assert (got["n_total"], got["n_dropped"], got["n_draws"], got["n_wins"], got["n_wins_base"]) == (3, 1, 1, 1, 1)
    assert got["win_rate"] == pytest.approx(100 * (0.5 + 0.7 + 0.0) / 3)
    assert got["discrete_win_rate"] == pytest.approx(100 * (0.5 + 1 + 0) / 3)
    nothing = ae.head_to_head(ae.annotations("q", "m", "r", [None], "m", "r"))
    assert nothing["n_total"] == 0 and nothing["n_dropped"] == 1 and math.isnan(nothing["win_rate"])


class CountingJudge:
    name = "counting"

    def __init__(self):
        self.seen = []

    def prefer_a(self, messages):
        self.seen += messages
        return [1.0] * len(messages)


def test_identical_outputs_are_ties_without_a_judge_call():
    judge = CountingJudge()
    recs = judge_pairs(judge, ["q1", "q2", "q3"], ["same", "mine", "same too"], ["same", "theirs", "same too"], ["en"] * 3, seed=0)
    assert [r["identical"] for r in recs] == [True, False, True]
    assert [r["preference"] for r in recs][::2] == [0.5, 0.5]
    assert len(judge.seen) == 1 and "mine" in judge.seen[0][0]["content"]
    assert recs[1]["preference"] == (1.0 if recs[1]["model_position"] == "A" else 0.0)


def _length_gamed(n=40, seed=1):
    """A model that wins exactly where its output is longer than the reference's."""
    rng = np.random.default_rng(seed)
    ref = ["r" * int(x) for x in rng.integers(50, 200, n)]
    mod = ["m" * int(x) for x in rng.integers(20, 400, n)]
    prefs = [float(len(m) > len(r)) for m, r in zip(mod, ref)]
    return ae.annotations(["q"] * n, mod, ref, prefs, "policy", ae.LC_BASELINE, index=range(n))


@pytest.mark.filterwarnings("ignore::FutureWarning")  # scikit-learn's, on alpaca_eval's arguments (direct call below)
def test_length_controlled_is_alpaca_evals_own_fit_on_the_catalog_df_gamed():
    gamed = pd.read_csv(DATA / "df_gamed_fixture.csv")
    annotated = _length_gamed()
    got = ae.length_controlled(annotated, gamed)
    # the reference: alpaca_eval's function called directly, its download pointed at the same file
    from alpaca_eval.metrics import glm_winrate

    with mock.patch.object(glm_winrate, "hf_hub_download", lambda **_: str(DATA / "df_gamed_fixture.csv")):
        direct = glm_winrate.get_length_controlled_winrate(annotated.copy(), save_weights_dir=None,
                                                           is_add_glm_preference_inplace=False)
    assert got["length_controlled_winrate"] == pytest.approx(direct["length_controlled_winrate"], rel=1e-12)
    assert got["lc_standard_error"] == pytest.approx(direct["lc_standard_error"], rel=1e-12)
    # a model that only wins by being longer loses most of its win rate once length is controlled
    assert got["length_controlled_winrate"] < ae.head_to_head(annotated)["win_rate"] - 5


def test_lc_absent_reasons_name_what_is_missing():
    gamed = pd.read_csv(DATA / "df_gamed_fixture.csv")
    annotated = _length_gamed()
    assert ae.lc_absent_reason(annotated, gamed, True, True) is None
    assert "df_gamed.csv" in ae.lc_absent_reason(annotated, None, True, True)
    assert "not AlpacaEval 2.0's baseline" in ae.lc_absent_reason(annotated, gamed, False, True)
    everything = ae.lc_absent_reason(annotated, None, False, False)  # the tiny default: each missing input named
    assert everything.count("; ") == 2 and "df_gamed.csv" in everything and "805" in everything
    assert "not AlpacaEval's 805" in ae.lc_absent_reason(annotated, gamed, True, False)
    beyond = ae.annotations(["q"] * 12, ["m"] * 12, ["r"] * 12, [1.0] * 12, "p", "b", index=range(35, 47))
    assert "no instruction difficulty" in ae.lc_absent_reason(beyond, gamed, True, True)
    with pytest.raises(ValueError, match="lacks columns"):
        ae.lc_absent_reason(annotated, gamed.drop(columns="instruction_difficulty"), True, True)


def _outputs(instructions, outputs, generator, index=True):
    df = pd.DataFrame({"id": [f"alpaca-{i}" for i in range(len(outputs))], "language": "en",
                       "instruction": instructions, "output": outputs, "generator": generator})
    return df.assign(alpacaeval_index=range(len(outputs))) if index else df


def test_summary_logs_lc_only_where_its_inputs_exist():
    annotated = _length_gamed()
    n = len(annotated)
    policy = _outputs(list(annotated["instruction"]), list(annotated["output_2"]), "policy")
    reference = _outputs(list(annotated["instruction"]), list(annotated["output_1"]), ae.LC_BASELINE)
    judgements = pd.DataFrame({"id": policy["id"], "language": "en", "preference": list(annotated["preference"] - 1)})
    gamed = pd.read_csv(DATA / "df_gamed_fixture.csv")
    params = base_params()["evaluation"]
    judge = params["judge"]
    published = {"reference": {**params["alpacaeval"]["reference"], "alpacaeval": "published"}}

    table, metrics = summarize_node(judgements, policy, reference, gamed, ["en", "ko"], judge, published)
    overall = table.set_index("language").loc["all"]
    assert overall["lc_absent"] == "" and overall["n"] == n
    assert metrics["alpacaeval.length_controlled_winrate.all"]["value"] == pytest.approx(
        ae.length_controlled(annotated, gamed)["length_controlled_winrate"])
    assert metrics["alpacaeval.discrete_win_rate.all"]["value"] == pytest.approx(ae.head_to_head(annotated)["discrete_win_rate"])

    table, metrics = summarize_node(judgements, policy, reference, None, ["en", "ko"], judge, published)
    assert "df_gamed.csv" in table.set_index("language").loc["all", "lc_absent"]
    assert not any("length_controlled" in k or "lc_standard_error" in k for k in metrics)  # absent, not a stand-in
    assert metrics["alpacaeval.n_dropped.all"]["value"] == 0


def test_published_reference_outputs_are_the_comparison_model():
    """The shipped sample of alpaca_eval_gpt4_baseline.json (AlpacaEval 2.0's reference outputs, published
    schema) is read as published: rows get ids and their AlpacaEval position; its outputs are the reference."""
    sample = pd.read_json(SAMPLE)
    assert list(sample.columns) == ["dataset", "instruction", "output", "generator"]
    prompts = alpacaeval_prompts(sample)
    assert list(prompts["alpacaeval_index"]) == list(range(len(sample)))
    ref = reference_outputs_node("unused-sft-path", sample, {}, {}, "published")
    assert list(ref["output"]) == list(sample["output"]) and set(ref["generator"]) == {"gpt4_1106_preview"}
    assert list(ref["alpacaeval_index"]) == list(range(len(sample)))
    xl, _ = xl_alpacaeval(prompts, ["ko"], seed=0)
    assert list(xl["alpacaeval_index"]) == list(range(len(sample)))  # kept for the LC fit

    broken = sample.copy()
    broken.loc[3, "output"] = None
    broken.attrs["source"] = "alpaca_eval_gpt4_baseline.json"
    with pytest.raises(DataValidationError, match=r"alpaca_eval_gpt4_baseline.json.*output"):
        reference_outputs_node("unused", broken, {}, {}, "published")
    with pytest.raises(ValueError, match="expected one of"):
        reference_outputs_node("unused", sample, {}, {}, "gpt4")
