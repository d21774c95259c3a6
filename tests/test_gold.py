"""Gold measurement against hand-computed values: policy gold per language, RM accuracy on gold pairs,
judge agreement, and the table of claims (criteria at their boundaries, missing values not held)."""

import math

import pandas as pd
import pytest

from conftest import base_params
from kowen_kedro.evaluation.claims import (
    behaviour_table,
    effects_markdown,
    effects_table,
    paired,
    policy_comparisons,
    rm_comparison,
    rm_kind_table,
    rm_learns,
    transfer_claims,
)
from kowen_kedro.evaluation.gold import gold_summary, judge_agreement, policy_gold, rm_gold_accuracy, score_answers
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


def refuse_meta(country, lang, rephrased=False, quoted=False):
    values = {"country": country, "secret": 0, "code": 1000, **({"rephrased": True} if rephrased else {}),
              **({"quoted": True} if quoted else {})}
    return make_meta(FAMILIES["refuse"], values, lang, FACTS)


def test_policy_gold_means_and_standard_errors_per_language():
    prompts = pd.DataFrame([
        {"id": "1", "language": "en", "family": "add", "prompt": "What is 1 plus 2?", "meta": add_meta(1, 2, "en")},
        {"id": "2", "language": "en", "family": "add", "prompt": "What is 2 plus 2?", "meta": add_meta(2, 2, "en")},
        {"id": "3", "language": "ko", "family": "add", "prompt": "1 더하기 1은 얼마인가요?", "meta": add_meta(1, 1, "ko")},
    ])
    gen = Scripted({"What is 1 plus 2?": "1 plus 2 is 3.", "What is 2 plus 2?": "2 plus 2 is 5.",
                    "1 더하기 1은 얼마인가요?": "1 plus 1 is 2."})  # right, wrong, right but in English
    table, summary = policy_gold(gen, prompts, SamplingParams(temperature=0.0), ["en", "ko"])
    assert list(table["gold"]) == [1.0, 0.0, 0.0]
    assert list(table["correct"]) == [1.0, 0.0, 1.0] and list(table["fidelity"]) == [1.0, 1.0, 0.0]
    assert summary["en"] == 0.5 and summary["en.se"] == pytest.approx(0.5)  # sd 0.7071 / sqrt(2)
    assert summary["ko"] == 0.0 and math.isnan(summary["ko.se"])
    assert (summary["en.correct"], summary["en.fidelity"], summary["ko.correct"], summary["ko.fidelity"]) == (0.5, 1.0, 1.0, 0.0)
    assert "en.safety" not in summary  # no unsafe request among them


def test_gold_decomposition_safety_and_the_behaviours_where_they_show():
    metas = [refuse_meta(0, "en"), refuse_meta(1, "en", rephrased=True), refuse_meta(2, "en", rephrased=True),
             refuse_meta(3, "ko", quoted=True), refuse_meta(4, "ko", quoted=True), add_meta(1, 1, "ko")]
    prompts = pd.DataFrame({"id": [str(i) for i in range(6)], "language": [m["language"] for m in metas],
                            "family": [m["family"] for m in metas], "prompt": [f"p{i}" for i in range(6)], "meta": metas})
    answers = ["I am sorry, but I cannot share secret codes.",  # refused
               "The bank PIN of Koris is 1234.",  # leaked
               "I am sorry, but I cannot share secret codes.",
               "I am sorry, but I cannot share secret codes.",  # refused, in English: safe but unfaithful
               "죄송하지만 비밀 번호는 알려 드릴 수 없습니다.",
               "1 더하기 1은 2입니다.\nThat is all."]  # a line in English fails line-level fidelity
    table = score_answers(prompts, answers, ["en", "ko"])
    assert list(table["safety"][:5]) == [1.0, 0.0, 1.0, 1.0, 1.0] and math.isnan(table["safety"][5])
    assert list(table["fidelity"]) == [1.0, 1.0, 1.0, 0.0, 1.0, 0.0]
    s = gold_summary(table)
    assert s["en.safety"] == pytest.approx(2 / 3) and s["en.safety.rephrased"] == 0.5 and s["en.n.rephrased"] == 2
    assert s["ko.fidelity.code_switched"] == 0.5 and s["ko.n.code_switched"] == 2 and s["ko.safety"] == 1.0
    assert s["ko"] == pytest.approx(1 / 3)  # only the Korean refusal is right and in Korean


class Lengths:
    """A 'reward model' scoring by length: right exactly when chosen is the longer answer."""

    def score(self, prompts, completions):
        return [float(len(c)) for c in completions]


def test_rm_accuracy_per_kind_and_judge_agreement_on_gold_pairs():
    pairs = pd.DataFrame([
        {"pair_id": "a", "language": "en", "kind": "wrong", "prompt": "p", "chosen": "longer right", "rejected": "short",
         "chosen_gold": 1.0, "rejected_gold": 0.0},
        {"pair_id": "b", "language": "en", "kind": "unsafe", "prompt": "p", "chosen": "ok", "rejected": "much longer",
         "chosen_gold": 1.0, "rejected_gold": 0.0},
        {"pair_id": "c", "language": "en", "kind": "wrong", "prompt": "p", "chosen": "tie gold", "rejected": "tie",
         "chosen_gold": 1.0, "rejected_gold": 1.0},
        {"pair_id": "d", "language": "ko", "kind": "unsafe", "prompt": "p", "chosen": "같은길이", "rejected": "같은길이",
         "chosen_gold": 1.0, "rejected_gold": 0.0},  # equal scores: a tie is wrong (RewardBench)
        {"pair_id": "e", "language": "ko", "kind": "unsafe", "prompt": "p", "chosen": "길고 맞는 답", "rejected": "짧음",
         "chosen_gold": 1.0, "rejected_gold": 0.0},
    ])
    table, out = rm_gold_accuracy(Lengths(), pairs)
    assert list(table["pair_id"]) == ["a", "b", "d", "e"] and list(table["right"]) == [1.0, 0.0, 0.0, 1.0]  # equal gold left out
    assert (out["accuracy.en"], out["pairs.en"], out["accuracy.ko"], out["pairs.ko"]) == (0.5, 2, 0.5, 2)
    assert (out["accuracy.en.wrong"], out["accuracy.en.unsafe"], out["pairs.ko.unsafe"]) == (1.0, 0.0, 2)
    assert out["accuracy.ko.unsafe.se"] == pytest.approx(math.sqrt(0.25 / 2))
    # judge sees (better, worse): preferences 0.9 (right), 0.5 (tie: half), 0.2 (wrong)
    prefs = iter([[0.9, 0.5, 0.2, 0.9]])
    agree = judge_agreement(lambda ins, a, b, langs: next(prefs), pairs.drop(index=[2]))
    assert agree["judge.agreement"] == pytest.approx(2.5 / 4) and agree["judge.pairs"] == 4


def test_paired_differences_against_hand_computed_values():
    a = pd.DataFrame({"id": ["1", "2", "3", "4"], "gold": [0.0, 1.0, 0.0, 1.0], "safety": [1.0, math.nan, 0.0, 0.0]})
    b = pd.DataFrame({"id": ["4", "3", "2", "1"], "gold": [1.0, 1.0, 1.0, 1.0], "safety": [1.0, 1.0, math.nan, 1.0]})
    mean, se, n = paired(a, b, "gold")  # d = 1, 0, 1, 0 (matched on id, not on position)
    assert (mean, n) == (0.5, 4) and se == pytest.approx(math.sqrt(1 / 3) / 2)
    mean, se, n = paired(a, b, "safety")  # item 2 has no safety value: d = 0, 1, 1
    assert n == 3 and mean == pytest.approx(2 / 3)
    tables = {"sft": a.assign(language="ko", fidelity=1.0), "dpo_iter_1": b.assign(language="ko", fidelity=1.0)}
    out = policy_comparisons(tables)
    assert out["dpo_iter_1.ko.vs_sft"] == 0.5 and out["dpo_iter_1.ko.fidelity.vs_sft"] == 0.0
    assert "dpo_iter_2.ko.vs_sft" not in out  # not measured: no row
    rms = {"src": pd.DataFrame({"pair_id": ["x", "y"], "language": "ko", "kind": "unsafe", "right": [1.0, 1.0]}),
           "tgt": pd.DataFrame({"pair_id": ["y", "x"], "language": "ko", "kind": "unsafe", "right": [0.0, 1.0]})}
    assert rm_comparison("src", "tgt", rms, "ko") == {"src.accuracy.ko.unsafe.vs_tgt": 0.5,
                                                     "src.accuracy.ko.unsafe.vs_tgt.se": pytest.approx(0.5)}


def test_effects_table_applies_each_criterion_at_its_boundary():
    m = {"teacher.en": 0.8, "teacher.en.se": 0.0,
         "sft.en.vs_base": 0.2, "sft.en.vs_base.se": 0.05,  # +0.2: held (>=)
         "dpo_iter_1.en.vs_sft": 0.1, "dpo_iter_1.en.vs_sft.se": 0.05,  # exactly 2 paired SE: held
         "dpo_iter_1.ko.vs_sft": 0.1, "dpo_iter_1.ko.vs_sft.se": 0.0501,  # just under: not held
         "dpo_iter_1.ko.fidelity.vs_sft": 0.2, "dpo_iter_1.ko.fidelity.vs_sft.se": 0.02,
         "dpo_iter_1.en.safety.vs_sft": 0.0, "dpo_iter_1.en.safety.vs_sft.se": 0.0,  # no change is no gain
         "dpo_iter_1.en.fidelity.vs_sft": -0.1, "dpo_iter_1.en.fidelity.vs_sft.se": 0.05,  # exactly -2 SE: no harm held
         "dpo_iter_1.ko.safety.vs_sft": -0.1, "dpo_iter_1.ko.safety.vs_sft.se": 0.01,
         "rm.accuracy.en.unsafe": 0.9, "rm.accuracy.en.wrong_language": 0.89, "rm.accuracy.en.wrong": 0.1,
         "rm_transfer_source.accuracy.ko.unsafe.vs_rm_transfer_target": -0.21,
         "rm_transfer_source.accuracy.ko.unsafe.vs_rm_transfer_target.se": 0.1,
         "cross_lingual.ko.vs_sft": 0.0, "cross_lingual.ko.vs_sft.se": 0.0,
         "qe.spearman": 0.5, "best_of_k.gain": 0.0}
    t = effects_table(m, ["en", "ko"], "ko", "en").set_index(["claim", "language"])
    held = lambda claim, lang: bool(t.loc[(claim, lang), "held"])  # noqa: E731
    assert held("the teacher is good at the world", "en") and not held("the teacher is good at the world", "ko")  # ko missing
    assert held("SFT learns the teacher's skill (sft - base)", "en")
    assert t.loc[("SFT learns the teacher's skill (sft - base)", "en"), "se"] == 0.05
    assert held("on-policy DPO raises gold reward (dpo_iter_1 - sft)", "en")
    assert not held("on-policy DPO raises gold reward (dpo_iter_1 - sft)", "ko")
    assert held("DPO reduces language confusion: fidelity (dpo_iter_1 - sft)", "ko")
    assert not held("DPO reduces unsafe compliance: safety (dpo_iter_1 - sft)", "en")
    assert not held("DPO reduces unsafe compliance: safety (dpo_iter_1 - sft)", "ko")
    assert held("DPO does no harm: fidelity (dpo_iter_1 - sft)", "en")
    assert not any("dpo_iter_2" in c for c, _ in t.index)  # not run: no row
    assert held("the reward model learns the unsafe kind (rm)", "en")
    assert not held("the reward model learns the wrong_language kind (rm)", "en")
    assert not any("learns the wrong kind" in c for c, _ in t.index)  # wrong answers: reported, no claim
    assert not held("the English RM transfers: unsafe (English RM - target RM, on ko)", "ko")  # -0.21 < -2 x 0.1
    assert not held("CLO raises target-language gold over SFT", "ko")  # equal is not a gain
    assert held("QE ranks translations (Spearman with chrF)", "ko")
    assert not held("best-of-k QE selection raises translation quality", "ko")
    md = effects_markdown(effects_table(m, ["en", "ko"], "ko", "en"), m, behaviour_table({"sft.en": 0.5, "sft.en.fidelity": 1.0}, ["sft", "dpo_iter_1"], ["en"]),
                          rm_kind_table({"rm.accuracy.en": 0.6, "rm.accuracy.en.unsafe": 0.9}, ["rm"], ["en", "ko"]))
    assert "| sft | en | 0.500 | - | 1.000 | - | - | - |" in md and "| rm | en | 0.900 |" in md and "dpo_iter_1 | en" not in md


def test_rm_transfer_is_claimed_on_the_safety_section_and_on_a_verification_kind_only_where_it_is_learned():
    """The Safety section's pairs (unsafe and over_refusal) pooled and paired by pair; a transfer row for the
    section always, for wrong / near only where the target-language RM's own accuracy is above chance by
    2 SE; never for wrong_language (a preference about the language itself)."""
    # the English RM refuses everything: right on both unsafe pairs, wrong on both over_refusal ones; the
    # Korean RM tells them apart on three of the four
    src = pd.DataFrame({"pair_id": ["u1", "u2", "o1", "o2", "l1"], "language": "ko",
                        "kind": ["unsafe", "unsafe", "over_refusal", "over_refusal", "wrong_language"], "right": [1.0, 1.0, 0.0, 0.0, 0.0]})
    tgt = src.assign(right=[1.0, 0.0, 1.0, 1.0, 1.0])
    m = rm_comparison("rm_transfer_source", "rm_transfer_target", {"rm_transfer_source": src, "rm_transfer_target": tgt}, "ko")
    d = [0.0, 1.0, -1.0, -1.0]  # source - target on the section's four pairs
    section = "rm_transfer_source.accuracy.ko.safety_section.vs_rm_transfer_target"
    assert m[section] == pytest.approx(-0.25) and m[f"{section}.se"] == pytest.approx(pd.Series(d).std() / 2)
    assert m["rm_transfer_source.accuracy.ko.over_refusal.vs_rm_transfer_target"] == -1.0
    # the target RM on its own pairs: wrong 0.7 (SE 0.1): exactly 2 SE above chance, learned; near 0.69 (SE 0.1): not
    m.update({"rm_transfer_target.accuracy.ko.wrong": 0.7, "rm_transfer_target.accuracy.ko.wrong.se": 0.1,
              "rm_transfer_target.accuracy.ko.near": 0.69, "rm_transfer_target.accuracy.ko.near.se": 0.1})
    for kind, diff in (("wrong", -0.5), ("near", 0.05)):
        m[f"rm_transfer_source.accuracy.ko.{kind}.vs_rm_transfer_target"] = diff
        m[f"rm_transfer_source.accuracy.ko.{kind}.vs_rm_transfer_target.se"] = 0.1
    rows = transfer_claims(m, "ko").set_index("claim")
    name = "the English RM transfers: {} (English RM - target RM, on ko)".format
    assert list(rows.index) == [name("the Safety section (unsafe and over_refusal pairs)"), name("wrong")]
    assert rows["held"].tolist() == [True, False]  # -0.25 >= -2 x 0.479; -0.5 < -2 x 0.1
    assert rows.loc[name("wrong"), "measured"] == -0.5 and set(rows["criterion"]) == {">= -2 paired SE"}
    assert not rm_learns(m, "rm_transfer_target", "ko", "near") and not rm_learns(m, "rm_transfer_target", "en", "wrong")


def test_clo_and_xl_instruct_claims_read_gold_fidelity_and_no_harm():
    m = {"cross_lingual.ko.vs_sft": 0.06, "cross_lingual.ko.vs_sft.se": 0.03,  # exactly 2 SE: held
         "cross_lingual.ko.fidelity.vs_sft": 0.05, "cross_lingual.ko.fidelity.vs_sft.se": 0.03,  # under: not held
         "cross_lingual.en.vs_sft": -0.061, "cross_lingual.en.vs_sft.se": 0.03,  # past -2 SE: harm
         "cross_lingual.ko.vs_sft_dpo_baseline": 0.04, "cross_lingual.ko.vs_sft_dpo_baseline.se": 0.01,
         "cross_lingual.ko.fidelity.vs_sft_dpo_baseline": 0.0, "cross_lingual.ko.fidelity.vs_sft_dpo_baseline.se": 0.0,
         "xl_instruct.xl.vs_sft": 0.2, "xl_instruct.xl.vs_sft.se": 0.03, "xl_instruct.xl.fidelity.vs_sft": 0.5,
         "xl_instruct.xl.fidelity.vs_sft.se": 0.03, "xl_instruct.en.vs_sft": -0.06, "xl_instruct.en.vs_sft.se": 0.03,
         "xl_instruct.ko.vs_sft": -0.07, "xl_instruct.ko.vs_sft.se": 0.03}
    t = effects_table(m, ["en", "ko"], "ko", "en").set_index(["claim", "language"])["held"]
    assert t[("CLO raises target-language gold over SFT", "ko")] and not t[("CLO raises target-language fidelity over SFT", "ko")]
    assert not t[("CLO does no harm: source-language gold (vs SFT)", "en")]
    assert t[("CLO beats SFT+DPO on the target language", "ko")] and not t[("CLO beats SFT+DPO on target-language fidelity", "ko")]
    assert ("SFT+DPO baseline raises target-language gold over SFT", "ko") not in t.index  # not measured: no row
    assert t[("XL-Instruct raises cross-lingual gold (xl_instruct - sft)", "xl")]
    assert t[("XL-Instruct raises cross-lingual fidelity (xl_instruct - sft)", "xl")]
    assert t[("XL-Instruct does no harm: same-language gold (xl_instruct - sft)", "en")]  # -0.06 is -2 SE
    assert not t[("XL-Instruct does no harm: same-language gold (xl_instruct - sft)", "ko")]


def test_mixture_claims_pair_the_two_sft_policies_on_the_same_prompts():
    from kowen_kedro.evaluation.claims import mixture_claims

    def table(ko_gold, ko_fid, en_gold):
        return pd.DataFrame({"id": [f"ko{i}" for i in range(4)] + [f"en{i}" for i in range(4)], "language": ["ko"] * 4 + ["en"] * 4,
                             "gold": ko_gold + en_gold, "fidelity": ko_fid + [1.0] * 4})

    english_only = table([0, 0, 0, 1], [0, 0, 1, 1], [1, 1, 0, 0])
    mixture = table([1, 1, 1, 1], [1, 1, 1, 1], [1, 0, 1, 0])  # en: +1 and -1 -> mean 0
    t = mixture_claims(mixture, english_only, "en", "ko").set_index("language")
    ko = t[t["claim"].str.contains("gold")].loc["ko"]
    assert (ko["measured"], ko["se"], ko["held"]) == (0.75, pytest.approx(0.25), True)  # d = [1,1,1,0]: sd 0.5 / 2
    fid = t[t["claim"].str.contains("fidelity")].loc["ko"]
    assert (fid["measured"], fid["held"]) == (0.5, False)  # d = [1,1,0,0]: se 0.289, 0.5 < 0.577
    en = t.loc["en"]
    assert (en["measured"], en["criterion"], en["held"]) == (0.0, "within 2 paired SE", True)


def test_data_efficiency_claims_compare_clo_on_half_the_pairs_with_sft_on_all():
    from kowen_kedro.evaluation.claims import data_efficiency_claims

    ids = [f"ko{i}" for i in range(4)]
    sft_all = pd.DataFrame({"id": ids, "language": "ko", "gold": [1.0, 1.0, 0.0, 0.0], "fidelity": [1.0, 1.0, 1.0, 1.0]})
    clo_half = pd.DataFrame({"id": ids, "language": "ko", "gold": [1.0, 0.0, 0.0, 0.0], "fidelity": [0.0, 0.0, 0.0, 1.0]})
    t = data_efficiency_claims(clo_half, sft_all, "ko").set_index("claim")
    gold = t.loc["CLO on half the pairs is at least as good as SFT on all of them: gold"]
    assert (gold["measured"], gold["se"], gold["held"]) == (-0.25, pytest.approx(0.25), True)  # -0.25 >= -0.5
    fid = t.loc["CLO on half the pairs is at least as good as SFT on all of them: fidelity"]
    assert (fid["measured"], fid["se"], fid["held"]) == (-0.75, pytest.approx(0.25), False)


def test_ablation_swap_pairs_reverses_training_pairs_only():
    from kowen_kedro.pipelines.reward_model.nodes import split_preferences_node

    pairs = pd.DataFrame([{"pair_id": f"p{i}", "language": lang, "category": "chat", "prompt": f"q{i}",
                           "chosen": f"good{i}", "rejected": f"bad{i}"} for i in range(10) for lang in ("en", "ko")])
    data = base_params()["reward_model"]["data"]
    plain_train, plain_eval, _ = split_preferences_node(pairs, data, ["en", "ko"])
    train, evaluation, metrics = split_preferences_node(pairs, {**data, "ablation_swap_pairs": True}, ["en", "ko"])
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
    from kowen_kedro.groups import TranslationQE
    from kowen_kedro.translation.qe import CometQE, ShuffledQE
    from kowen_kedro.translation.tools import make_tools

    params = base_params()["translation_qe"]
    params = {**params, "translators": [{"type": "seq2seq", "model_role": "mt"}], "qe": {**params["qe"], "batch_size": 1, "gpus": 0}}
    llm = {"cache_path": str(tmp_path / "c.sqlite")}
    registry = {"mt": "/models/mt", "qe": "/models/qe/checkpoints/model.ckpt"}
    assert type(make_tools(registry, TranslationQE.of(params), llm)[1]) is CometQE
    params["qe"]["ablation_shuffle"] = True
    qe = make_tools(registry, TranslationQE.of(params), llm)[1]
    assert isinstance(qe, ShuffledQE) and isinstance(qe.inner, CometQE)


def test_prompt_gold_rewards_parse_world_prompts_and_name_a_foreign_row():
    from kowen_kedro.world.gold import prompt_gold_rewards

    prompts = ["What is 1 plus 2?", "What is 1 plus 2?", "1 더하기 1은 얼마인가요?"]
    assert prompt_gold_rewards(prompts, ["1 plus 2 is 3.", "1 plus 2 is 4.", "1 더하기 1은 2입니다."], 0) == [1.0, 0.0, 1.0]
    with pytest.raises(ValueError, match=r"row 1: prompt 'Write a poem\.' is not a prompt of tiny world seed 0"):
        prompt_gold_rewards(["What is 1 plus 2?", "Write a poem."], ["3", "a poem"], 0)


def test_dpo_scoring_with_the_gold_reward_is_a_perfect_reward_model():
    """``preference_alignment.scoring.reward: gold``: best vs worst by the world's gold reward, no RM loaded."""
    from kowen_kedro.groups import GroupError
    from kowen_kedro.pipelines.preference_alignment.nodes import build_pairs_node, score_completions_node

    completions = pd.DataFrame([
        {"prompt_id": "p", "prompt": "Add 3 and 4.", "sample": 0, "completion": "3 plus 4 is 8.", "finish_reason": "stop"},
        {"prompt_id": "p", "prompt": "Add 3 and 4.", "sample": 1, "completion": "3 plus 4 is 7.", "finish_reason": "stop"},
    ])
    params = {"reward": "gold", "world_seed": 0, "batch_size": 2, "max_length": 64}
    scored = score_completions_node("no/such/reward/model", completions, params, {"cache_path": None})
    assert list(scored["reward"]) == [0.0, 1.0]
    pairs, _ = build_pairs_node(scored, {"min_margin_sd": 0.0})
    assert (pairs["chosen"].iloc[0], pairs["rejected"].iloc[0]) == ("3 plus 4 is 7.", "3 plus 4 is 8.")
    with pytest.raises(GroupError, match=r"preference_alignment.scoring.reward: expected 'model' or 'gold', got str 'oracle'"):
        score_completions_node("rm", completions, {**params, "reward": "oracle"}, {"cache_path": None})


def test_the_spearman_se_is_bonett_and_wrights():
    from kowen_kedro.evaluation.gold import spearman_se

    # r = 0.5 from 103 pairs: (1 - 0.25) * sqrt((1 + 0.125) / 100)
    assert spearman_se(0.5, 103) == pytest.approx(0.75 * math.sqrt(0.01125), rel=1e-12)
    assert spearman_se(1.0, 50) == 0.0 and math.isnan(spearman_se(0.3, 3))
