"""Gold measurement: every model and selector of a run measured against the tiny world's truth.

* :func:`policy_gold` - greedy answers to the held-out gold prompts, gold reward per language (mean, SE);
* :func:`rm_gold_accuracy` - a reward model's accuracy on held-out gold pairs (chosen = higher gold reward);
* :func:`qe_gold` - Spearman of QE scores with gold translation quality (chrF) on held-out corrupted
  translations, and the gain of the best-of-k pick over the mean candidate (the configured translators);
* :func:`judge_agreement` - share of gold pairs where the judge prefers the higher-gold answer;
* :func:`effects_table` - one row per paper claim, measured value and SE, held or not.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import pandas as pd

from kowen_kedro.world.gold import gold_rewards, mean_and_se, qe_examples, translation_quality


def _rate_se(p: float, n: int) -> float:
    return math.sqrt(p * (1 - p) / n) if n else float("nan")


def policy_gold(generator, gold_prompts: pd.DataFrame, sampling) -> tuple[pd.DataFrame, dict[str, float]]:
    """Greedy answers of ``generator`` to the gold prompts; returns (answers, {lang: mean, lang.se: SE})."""
    requests = [[{"role": "user", "content": p}] for p in gold_prompts["prompt"]]
    outs = generator.generate(requests, sampling, n=1)
    answers = [o[0].text for o in outs]
    rewards = gold_rewards(list(gold_prompts["meta"]), answers)
    table = gold_prompts[["id", "language", "family", "prompt"]].assign(answer=answers, gold=rewards)
    summary: dict[str, float] = {}
    for lang, part in table.groupby("language"):
        mean, se = mean_and_se(part["gold"])
        summary[lang], summary[f"{lang}.se"] = mean, se
    return table, summary


def rm_gold_accuracy(scorer, gold_pairs: pd.DataFrame) -> dict[str, float]:
    """Accuracy (and SE, and n) per language on gold pairs whose gold rewards differ."""
    pairs = gold_pairs[gold_pairs["chosen_gold"] != gold_pairs["rejected_gold"]]
    prompts = list(pairs["prompt"])
    chosen, rejected = scorer.score(prompts, list(pairs["chosen"])), scorer.score(prompts, list(pairs["rejected"]))
    higher_is_chosen = pairs["chosen_gold"].to_numpy() > pairs["rejected_gold"].to_numpy()
    right = [(c > r) == h for c, r, h in zip(chosen, rejected, higher_is_chosen)]
    out: dict[str, float] = {}
    for lang in sorted(set(pairs["language"])):
        mask = (pairs["language"] == lang).to_numpy()
        hits = [x for x, m in zip(right, mask) if m]
        acc = sum(hits) / len(hits)
        out[f"accuracy.{lang}"], out[f"accuracy.{lang}.se"], out[f"pairs.{lang}"] = acc, _rate_se(acc, len(hits)), len(hits)
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
    out = {"qe.spearman": float(spearman), "qe.pairs": len(examples), "best_of_k.gain": gain, "best_of_k.gain.se": gain_se,
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


# --------------------------------------------------------------------------- the table of claims

def _at_least(x: float, bound: float) -> bool:
    """``x >= bound`` up to float rounding (0.3 - 0.1 is 0.19999999999999998, and must meet 0.2)."""
    return x >= bound - 1e-9


def _above(x: float, bound: float) -> bool:
    """``x > bound`` beyond float rounding (equal up to rounding is no gain)."""
    return x > bound + 1e-9


def _diff(m: dict, a: str, b: str) -> tuple[float, float]:
    return m.get(a, math.nan) - m.get(b, math.nan), math.hypot(m.get(f"{a}.se", math.nan), m.get(f"{b}.se", math.nan))


def effects_table(m: dict[str, float], languages: Sequence[str] = ("en", "ko"), target_language: str = "ko") -> pd.DataFrame:
    """One row per paper claim from the flat gold metrics ``m`` (names without the ``gold.`` prefix).

    Criteria (issue 14's margins): SFT >= base + 0.2; each DPO iteration > SFT by 2 combined SE;
    RM accuracy >= 0.85; English RM on the target language >= 0.7; CLO > SFT on the target language;
    QE Spearman >= 0.5 and best-of-k gain > 0; teacher >= 0.8. A missing value is not held."""
    rows: list[dict[str, Any]] = []

    def add(claim, paper, lang, value, se, criterion, held):
        rows.append({"claim": claim, "paper": paper, "language": lang, "measured": value, "se": se, "criterion": criterion,
                     "held": bool(held) if value == value else False})

    for lang in languages:
        t = m.get(f"teacher.{lang}", math.nan)
        add("the teacher is good at the world", "Kowen", lang, t, m.get(f"teacher.{lang}.se", math.nan), "teacher >= 0.8", _at_least(t, 0.8))
    for lang in languages:
        d, se = _diff(m, f"sft.{lang}", f"base.{lang}")
        add("SFT learns the teacher's skill (sft - base)", "Kowen", lang, d, se, "sft >= base + 0.2", _at_least(d, 0.2))
    for it in ("dpo_iter_1", "dpo_iter_2"):
        if not any(f"{it}.{lang}" in m for lang in languages):
            continue
        for lang in languages:
            d, se = _diff(m, f"{it}.{lang}", f"sft.{lang}")
            add(f"on-policy DPO raises reward ({it} - sft)", "Kowen", lang, d, se, "> 2 combined SE", _above(d, 2 * se))
    for lang in languages:
        if f"rm.accuracy.{lang}" in m:
            a = m[f"rm.accuracy.{lang}"]
            add("the reward model is accurate", "RM transfer", lang, a, m.get(f"rm.accuracy.{lang}.se", math.nan), ">= 0.85", _at_least(a, 0.85))
    if f"rm_transfer_source.accuracy.{target_language}" in m:
        a = m[f"rm_transfer_source.accuracy.{target_language}"]
        add("an English-trained RM transfers to the target language", "RM transfer", target_language, a,
            m.get(f"rm_transfer_source.accuracy.{target_language}.se", math.nan), ">= 0.7", _at_least(a, 0.7))
    for name, label in (("cross_lingual", "CLO"), ("sft_dpo_baseline", "SFT+DPO baseline")):
        if f"{name}.{target_language}" in m:
            d, se = _diff(m, f"{name}.{target_language}", f"sft.{target_language}")
            add(f"{label} raises target-language quality over SFT", "CLO", target_language, d, se, "> 0", _above(d, 0))
    if f"cross_lingual.{target_language}" in m and f"sft_dpo_baseline.{target_language}" in m:
        d, se = _diff(m, f"cross_lingual.{target_language}", f"sft_dpo_baseline.{target_language}")
        add("CLO beats SFT+DPO on the target language", "CLO", target_language, d, se, "> 0", _above(d, 0))
    if "qe.spearman" in m:
        s = m["qe.spearman"]
        add("QE ranks translations (Spearman with chrF)", "XL-Instruct", target_language, s, math.nan, ">= 0.5", _at_least(s, 0.5))
    if "best_of_k.gain" in m:
        g = m["best_of_k.gain"]
        add("best-of-k QE selection raises translation quality", "XL-Instruct", target_language, g, m.get("best_of_k.gain.se", math.nan),
            "> 0", _above(g, 0))
    return pd.DataFrame(rows, columns=["claim", "paper", "language", "measured", "se", "criterion", "held"])


def effects_markdown(table: pd.DataFrame, metrics: dict[str, float]) -> str:
    """``gold/effects.md``: the claims table and every gold metric of the run."""
    fmt = lambda x: "-" if x != x else f"{x:.3f}"  # noqa: E731 - NaN (no SE) as a dash
    lines = ["# Gold effects of this run", "",
             "Measured against the tiny world's gold reward (docs/world.md); criteria as in docs/effects.md.", "",
             "| claim | paper | lang | measured | SE | criterion | held |", "|---|---|---|---|---|---|---|"]
    for r in table.to_dict("records"):
        lines.append(f"| {r['claim']} | {r['paper']} | {r['language']} | {fmt(r['measured'])} | {fmt(r['se'])} | "
                     f"{r['criterion']} | {'yes' if r['held'] else 'no'} |")
    lines += ["", "## Every gold metric", "", "| metric | value |", "|---|---|"]
    lines += [f"| gold.{k} | {fmt(v)} |" for k, v in sorted(metrics.items())]
    return "\n".join(lines) + "\n"
