"""Gold measurement against hand-computed values: policy gold per language, RM accuracy on gold pairs,
judge agreement, and the table of claims (criteria at their boundaries, missing values not held)."""

import math

import pandas as pd
import pytest

from kowen_kedro.evaluation.gold import effects_table, judge_agreement, policy_gold, rm_gold_accuracy
from kowen_kedro.llm.backends import Completion, SamplingParams
from kowen_kedro.world import lexicon as L
from kowen_kedro.world.tasks import FAMILIES, make_meta

FACTS = L.facts(0)


def add_meta(a, b, lang):
    return make_meta(FAMILIES["add"], {"a": a, "b": b, "c": a + b}, lang, FACTS)


class Scripted:
    """A generator answering from a dict prompt -> text."""

    def __init__(self, answers):
        self.answers = answers

    def generate(self, requests, params, n=1):
        return [[Completion(self.answers[r[-1]["content"]], "stop")] for r in requests]


def test_policy_gold_means_and_standard_errors_per_language():
    prompts = pd.DataFrame([
        {"id": "1", "language": "en", "family": "add", "prompt": "What is 1 plus 2?", "meta": add_meta(1, 2, "en")},
        {"id": "2", "language": "en", "family": "add", "prompt": "What is 2 plus 2?", "meta": add_meta(2, 2, "en")},
        {"id": "3", "language": "ko", "family": "add", "prompt": "1 더하기 1은 얼마인가요?", "meta": add_meta(1, 1, "ko")},
    ])
    gen = Scripted({"What is 1 plus 2?": "1 plus 2 is 3.", "What is 2 plus 2?": "2 plus 2 is 5.",
                    "1 더하기 1은 얼마인가요?": "1 plus 1 is 2."})  # right, wrong, right but in English
    table, summary = policy_gold(gen, prompts, SamplingParams(temperature=0.0))
    assert list(table["gold"]) == [1.0, 0.0, 0.0]
    assert summary["en"] == 0.5 and summary["en.se"] == pytest.approx(0.5)  # sd 0.7071 / sqrt(2)
    assert summary["ko"] == 0.0 and math.isnan(summary["ko.se"])


class Lengths:
    """A 'reward model' scoring by length: right exactly when chosen is the longer answer."""

    def score(self, prompts, completions):
        return [float(len(c)) for c in completions]


def test_rm_accuracy_and_judge_agreement_on_gold_pairs():
    pairs = pd.DataFrame([
        {"language": "en", "prompt": "p", "chosen": "longer right", "rejected": "short", "chosen_gold": 1.0, "rejected_gold": 0.0},
        {"language": "en", "prompt": "p", "chosen": "ok", "rejected": "much longer", "chosen_gold": 1.0, "rejected_gold": 0.0},
        {"language": "en", "prompt": "p", "chosen": "tie gold", "rejected": "tie", "chosen_gold": 1.0, "rejected_gold": 1.0},
        {"language": "ko", "prompt": "p", "chosen": "길고 맞는 답", "rejected": "짧음", "chosen_gold": 1.0, "rejected_gold": 0.0},
    ])
    out = rm_gold_accuracy(Lengths(), pairs)
    assert (out["accuracy.en"], out["pairs.en"], out["accuracy.ko"], out["pairs.ko"]) == (0.5, 2, 1.0, 1)  # equal gold left out
    # judge sees (better, worse): preferences 0.9 (right), 0.5 (tie: half), 0.2 (wrong)
    prefs = iter([[0.9, 0.5, 0.2]])
    agree = judge_agreement(lambda ins, a, b, langs: next(prefs), pairs)
    assert agree["judge.agreement"] == pytest.approx(0.5) and agree["judge.pairs"] == 3


def test_effects_table_applies_each_criterion_at_its_boundary():
    m = {"teacher.en": 0.8, "teacher.en.se": 0.0,
         "base.en": 0.1, "base.en.se": 0.03, "sft.en": 0.3, "sft.en.se": 0.04,  # +0.2: held (>=)
         "dpo_iter_1.en": 0.4, "dpo_iter_1.en.se": 0.03,  # +0.1 vs 2 * 0.05 = 0.1: not held (strict)
         "rm.accuracy.en": 0.85, "rm_transfer_source.accuracy.ko": 0.69,
         "cross_lingual.ko": 0.2, "cross_lingual.ko.se": 0.04, "sft.ko": 0.2, "sft.ko.se": 0.04,
         "qe.spearman": 0.5, "best_of_k.gain": 0.0}
    t = effects_table(m, ["en"], "ko").set_index("claim")
    assert bool(t.loc["the teacher is good at the world", "held"])
    sft = t.loc["SFT learns the teacher's skill (sft - base)"]
    assert sft["measured"] == pytest.approx(0.2) and sft["se"] == pytest.approx(0.05) and bool(sft["held"])
    dpo = t.loc["on-policy DPO raises reward (dpo_iter_1 - sft)"]
    assert dpo["measured"] == pytest.approx(0.1) and not dpo["held"]
    assert "on-policy DPO raises reward (dpo_iter_2 - sft)" not in t.index  # not run: no row
    assert bool(t.loc["the reward model is accurate", "held"])
    assert not t.loc["an English-trained RM transfers to the target language", "held"]
    assert not t.loc["CLO raises target-language quality over SFT", "held"]  # equal is not a gain
    assert bool(t.loc["QE ranks translations (Spearman with chrF)", "held"])
    assert not t.loc["best-of-k QE selection raises translation quality", "held"]
    missing = effects_table({"sft.en": 0.5}, ["en"], "ko").set_index("claim")
    assert not missing.loc["SFT learns the teacher's skill (sft - base)", "held"]  # no base: not held


def test_ablation_swap_pairs_reverses_training_pairs_only():
    from kowen_kedro.pipelines.reward_model.nodes import split_preferences_node

    pairs = pd.DataFrame([{"pair_id": f"p{i}", "language": lang, "category": "chat", "prompt": f"q{i}",
                           "chosen": f"good{i}", "rejected": f"bad{i}"} for i in range(10) for lang in ("en", "ko")])
    plain_train, plain_eval, _ = split_preferences_node(pairs, {"eval_fraction": 0.2, "seed": 0})
    train, evaluation, metrics = split_preferences_node(pairs, {"eval_fraction": 0.2, "seed": 0, "ablation_swap_pairs": True})
    assert list(train["chosen"]) == list(plain_train["rejected"]) and list(train["rejected"]) == list(plain_train["chosen"])
    assert evaluation.equals(plain_eval)  # the evaluation pairs keep the truth
    assert metrics["swapped"]["value"] == len(train) > 0


def test_ablation_shuffled_qe_permutes_the_scores_of_each_call():
    from kowen_kedro.translation.qe import ShuffledQE

    class Fixed:
        def score(self, sources, translations):
            return [float(i) for i in range(len(sources))]

    qe = ShuffledQE(Fixed(), seed=0)
    out = qe.score(["s"] * 20, ["t"] * 20)
    assert sorted(out) == [float(i) for i in range(20)] and out != sorted(out)  # a permutation, not the identity
    assert qe.score(["s"] * 20, ["t"] * 20) == out  # deterministic


def test_the_qe_ablation_parameter_wraps_the_runs_qe(tmp_path):
    from kowen_kedro.translation.qe import CometQE, ShuffledQE
    from kowen_kedro.translation.tools import make_tools

    params = {"translators": [{"type": "seq2seq", "model_role": "mt"}], "qe": {"batch_size": 1, "gpus": 0}}
    llm = {"cache_path": str(tmp_path / "c.sqlite")}
    registry = {"mt": "/models/mt", "qe": "/models/qe/checkpoints/model.ckpt"}
    assert type(make_tools(registry, params, llm)[1]) is CometQE
    params["qe"]["ablation_shuffle"] = True
    qe = make_tools(registry, params, llm)[1]
    assert isinstance(qe, ShuffledQE) and isinstance(qe.inner, CometQE)


def test_prompt_gold_rewards_parse_world_prompts_and_name_a_foreign_row():
    from kowen_kedro.world.gold import prompt_gold_rewards

    prompts = ["What is 1 plus 2?", "What is 1 plus 2?", "1 더하기 1은 얼마인가요?"]
    assert prompt_gold_rewards(prompts, ["1 plus 2 is 3.", "1 plus 2 is 4.", "1 더하기 1은 2입니다."], 0) == [1.0, 0.0, 1.0]
    with pytest.raises(ValueError, match=r"row 1: prompt 'Write a poem\.' is not a prompt of tiny world seed 0"):
        prompt_gold_rewards(["What is 1 plus 2?", "Write a poem."], ["3", "a poem"], 0)


def test_dpo_scoring_with_the_gold_reward_is_a_perfect_reward_model():
    """``preference_alignment.scoring.reward: gold``: best vs worst by the world's gold reward, no RM loaded."""
    from kowen_kedro.pipelines.preference_alignment.nodes import build_pairs_node, score_completions_node

    completions = pd.DataFrame([
        {"prompt_id": "p", "prompt": "Add 3 and 4.", "sample": 0, "completion": "3 plus 4 is 8.", "finish_reason": "stop"},
        {"prompt_id": "p", "prompt": "Add 3 and 4.", "sample": 1, "completion": "3 plus 4 is 7.", "finish_reason": "stop"},
    ])
    params = {"reward": "gold", "world_seed": 0, "batch_size": 2, "max_length": 64}
    scored = score_completions_node("no/such/reward/model", completions, params, {"cache_path": None})
    assert list(scored["reward"]) == [0.0, 1.0]
    pairs, _ = build_pairs_node(scored)
    assert (pairs["chosen"].iloc[0], pairs["rejected"].iloc[0]) == ("3 plus 4 is 7.", "3 plus 4 is 8.")
    with pytest.raises(ValueError, match="must be one of"):
        score_completions_node("rm", completions, {**params, "reward": "oracle"}, {"cache_path": None})
