"""Gold measurement: every model and selector of a run measured against the tiny world's truth.

* :func:`policy_gold` - greedy answers to the held-out gold prompts, scored per prompt and decomposed:
  ``gold`` (right, in the required language), ``correct`` (the checker alone), ``fidelity`` (every
  line in the required language, as the Language Confusion Benchmark counts it) and ``safety`` (an
  unsafe request refused); means per language, and the same on the prompts where a behaviour shows
  (code-switched prompts, rephrased unsafe requests); safety is blind to the language;
* :func:`rm_gold_accuracy` - a reward model's accuracy on held-out gold pairs (chosen = higher gold
  reward), per language and per kind of rejected answer;
* :func:`qe_gold` - Spearman of QE scores with gold translation quality (chrF) on held-out corrupted
  translations, and the gain of the best-of-k pick over the mean candidate (the configured translators);
* :func:`judge_agreement` - share of gold pairs where the judge prefers the higher-gold answer.

Paired comparisons of two policies and the table of claims are in :mod:`kowen_kedro.evaluation.claims`.
"""

from __future__ import annotations

import math
from typing import Sequence

import pandas as pd

from kowen_kedro.langid import line_fidelity
from kowen_kedro.world.gold import gold_rewards, is_correct, is_refusal, mean_and_se, qe_examples, translation_quality

PARTS = ("gold", "correct", "fidelity", "safety")


def _rate_se(p: float, n: int) -> float:
    return math.sqrt(p * (1 - p) / n) if n else float("nan")


def spearman_se(r: float, n: int) -> float:
    """Standard error of a Spearman correlation of ``n`` pairs: Fisher's z with Bonett and Wright's
    (2000) variance ``(1 + r^2 / 2) / (n - 3)``, back on the correlation's scale (``(1 - r^2) * se_z``)."""
    return (1 - r * r) * math.sqrt((1 + r * r / 2) / (n - 3)) if n > 3 else float("nan")


def score_answers(gold_prompts: pd.DataFrame, answers: Sequence[str], languages: Sequence[str]) -> pd.DataFrame:
    """One row per gold prompt: the answer and its ``gold``, ``correct``, ``fidelity`` and ``safety``
    (NaN where the prompt is not an unsafe request), with the prompt's behaviour flags."""
    metas = list(gold_prompts["meta"])
    answers = list(answers)
    table = gold_prompts[["id", "language", "family", "prompt"]].assign(answer=answers)
    table["gold"] = gold_rewards(metas, answers, languages)
    table["correct"] = [float(is_correct(m, a)) for m, a in zip(metas, answers)]
    table["fidelity"] = [float(ok) for ok in line_fidelity(answers, [m["language"] for m in metas], languages)]
    table["safety"] = [float(is_refusal(a)) if m.get("unsafe") else math.nan for m, a in zip(metas, answers)]
    table["code_switched"] = [bool(m.get("code_switched")) for m in metas]
    table["rephrased"] = [bool(m.get("rephrased")) for m in metas]
    return table


def gold_summary(table: pd.DataFrame) -> dict[str, float]:
    """Per language: ``<lang>`` (mean gold) and ``.se``; ``<lang>.<part>`` for correct, fidelity and
    safety; ``<lang>.fidelity.code_switched`` and ``<lang>.safety.rephrased`` (the behaviours on the
    prompts that provoke them); ``<lang>.n``."""
    summary: dict[str, float] = {}
    for lang, part in table.groupby("language"):
        mean, se = mean_and_se(part["gold"])
        summary[lang], summary[f"{lang}.se"], summary[f"{lang}.n"] = mean, se, len(part)
        for col in PARTS[1:]:
            values = part[col].dropna()
            if len(values):
                summary[f"{lang}.{col}"] = float(values.mean())
        for col, flag in (("fidelity", "code_switched"), ("safety", "rephrased")):
            values = part.loc[part[flag], col].dropna()
            if len(values):
                summary[f"{lang}.{col}.{flag}"], summary[f"{lang}.n.{flag}"] = float(values.mean()), len(values)
    return summary


def policy_gold(generator, gold_prompts: pd.DataFrame, sampling,
                languages: Sequence[str]) -> tuple[pd.DataFrame, dict[str, float]]:
    """Greedy answers of ``generator`` to the gold prompts: (per-prompt table, :func:`gold_summary`)."""
    requests = [[{"role": "user", "content": p}] for p in gold_prompts["prompt"]]
    outs = generator.generate(requests, sampling, n=1)
    table = score_answers(gold_prompts, [o[0].text for o in outs], languages)
    return table, gold_summary(table)


def rm_gold_accuracy(scorer, gold_pairs: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, float]]:
    """A reward model on gold pairs whose gold rewards differ: (per-pair table with ``right`` 1/0,
    summary). Summary: ``accuracy.<lang>`` (+ ``.se``, ``pairs.<lang>``) and, where the pairs carry a
    ``kind``, ``accuracy.<lang>.<kind>`` (+ ``.se``, ``pairs.<lang>.<kind>``). A tie is wrong
    (RewardBench's rule for classifier reward models)."""
    pairs = gold_pairs[gold_pairs["chosen_gold"] != gold_pairs["rejected_gold"]].reset_index(drop=True)
    prompts = list(pairs["prompt"])
    chosen, rejected = scorer.score(prompts, list(pairs["chosen"])), scorer.score(prompts, list(pairs["rejected"]))
    higher_is_chosen = pairs["chosen_gold"].to_numpy() > pairs["rejected_gold"].to_numpy()
    right = [float(c > r if h else r > c) for c, r, h in zip(chosen, rejected, higher_is_chosen)]
    keep = [c for c in ("pair_id", "language", "kind") if c in pairs.columns]
    table = pairs[keep].assign(chosen_score=chosen, rejected_score=rejected, right=right)
    return table, rm_summary(table)


def rm_summary(table: pd.DataFrame) -> dict[str, float]:
    """Accuracy per language (and per language and kind) of an :func:`rm_gold_accuracy` table."""
    out: dict[str, float] = {}
    groups = [["language"]] + ([["language", "kind"]] if "kind" in table.columns else [])
    for cols in groups:
        for key, part in table.groupby(cols):
            name = ".".join(key if isinstance(key, tuple) else (key,))
            acc = float(part["right"].mean())
            out[f"accuracy.{name}"], out[f"accuracy.{name}.se"], out[f"pairs.{name}"] = acc, _rate_se(acc, len(part)), len(part)
    return out


def qe_gold(qe, translate_best, translators: Sequence, gold_translations: pd.DataFrame, seed: int) -> dict[str, float]:
    """QE against gold translation quality, and best-of-k selection against the mean candidate.

    ``translate_best(texts, src, tgt) -> [text]`` is the pipeline's best-of-k translation (so the
    function under test is the one the run uses); ``translators`` give the candidates it chose from.
    """
    rows = gold_translations.to_dict("records")
    src_lang, tgt_lang = rows[0]["source_language"], rows[0]["target_language"]
    examples = qe_examples([{src_lang: r["source"], tgt_lang: r["reference"]} for r in rows], seed=seed,
                           per_pair=4, directions=((src_lang, tgt_lang),))
    predicted = qe.score([e["src"] for e in examples], [e["mt"] for e in examples])
    spearman = pd.Series(predicted).corr(pd.Series([e["score"] for e in examples]), method="spearman")

    sources, refs = [r["source"] for r in rows], [r["reference"] for r in rows]
    candidates = [t.translate(sources, src_lang, tgt_lang) for t in translators]
    mean_candidate = [sum(translation_quality(c[i], refs[i]) for c in candidates) / len(candidates) for i in range(len(rows))]
    picked = translate_best(sources, src_lang, tgt_lang)
    gains = [translation_quality(p or "", ref) - m for p, ref, m in zip(picked, refs, mean_candidate)]
    gain, gain_se = mean_and_se(gains)
    out = {"qe.spearman": float(spearman), "qe.spearman.se": spearman_se(float(spearman), len(examples)), "qe.pairs": len(examples), "best_of_k.gain": gain, "best_of_k.gain.se": gain_se,
           "best_of_k.k": len(translators), "best_of_k.mean_candidate_chrf": sum(mean_candidate) / len(mean_candidate)}
    for t, cands in zip(translators, candidates):
        out[f"translator.{t.name.replace(':', '_')}.chrf"] = sum(translation_quality(c, r) for c, r in zip(cands, refs)) / len(refs)
    return out


def judge_agreement(judge_fn, gold_pairs: pd.DataFrame) -> dict[str, float]:
    """``judge_fn(instructions, model_outputs, reference_outputs, languages) -> [preference for model]``
    on (higher-gold, lower-gold) answers: the share the judge gets right (a tie counts half)."""
    pairs = gold_pairs[gold_pairs["chosen_gold"] != gold_pairs["rejected_gold"]]
    better = [c if cg > rg else r for c, r, cg, rg in zip(pairs["chosen"], pairs["rejected"], pairs["chosen_gold"], pairs["rejected_gold"])]
    worse = [r if cg > rg else c for c, r, cg, rg in zip(pairs["chosen"], pairs["rejected"], pairs["chosen_gold"], pairs["rejected_gold"])]
    prefs = judge_fn(list(pairs["prompt"]), better, worse, list(pairs["language"]))
    scored = [p for p in prefs if p is not None]
    agree = [1.0 if p > 0.5 else 0.5 if p == 0.5 else 0.0 for p in scored]
    mean, se = mean_and_se(agree)
    return {"judge.agreement": mean, "judge.agreement.se": se, "judge.pairs": len(scored), "judge.unparseable": len(prefs) - len(scored)}
