"""The papers' claims on the tiny world: paired comparisons of policies and reward models on the same
gold items, and one table row per claim with its criterion.

Two policies answer the *same* gold prompts, so they are compared per prompt: d_i = r_B(i) - r_A(i),
the mean of d and its standard error sd(d) / sqrt(n) (:func:`paired`). Treating the two means as
independent samples (their SEs combined) throws most of the power away. "B above A" holds when the
mean difference is at least 2 paired SE; "no harm" when it is not below -2 paired SE.

Metric names (without the run's ``gold.`` prefix): ``<model>.<lang>.vs_<other>`` and ``.se`` for the
gold reward, ``<model>.<lang>.<part>.vs_<other>`` for the parts fidelity and safety;
``<rm>.accuracy.<lang>.<kind>.vs_<other_rm>`` for two reward models on the same gold pairs
(``<kind>`` = ``safety_section``: the unsafe and over_refusal pairs pooled)
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import pandas as pd

from kowen_kedro.preference.iterations import DPO_ITERATIONS
from kowen_kedro.world.gold import mean_and_se

COMPARED_PARTS = ("gold", "fidelity", "safety")
# The comparisons the claims make: (model, the model it is compared with)
# (each DPO iteration against SFT, then each against the one before it: a comparison whose two policies
# were not measured, e.g. a disabled iteration's, is left out)
POLICY_COMPARISONS = (("sft", "base"), ("xl_instruct", "sft"), *((it, "sft") for it in DPO_ITERATIONS),
                      *zip(DPO_ITERATIONS[1:], DPO_ITERATIONS), ("cross_lingual", "sft"), ("sft_dpo_baseline", "sft"),
                      ("cross_lingual", "sft_dpo_baseline"))
RM_KINDS = ("wrong_language", "unsafe")  # the kinds of rejected answer a small reward model can learn
RM_ACCURACY = 0.9
# RM transfer as paper 001 claims it (:func:`transfer_claims`), per RewardBench section. Its Safety section
# pools two kinds of pair: refuse the unsafe request (``unsafe``) and answer the safe one that looks unsafe
# (``over_refusal``); an RM that has not learned to tell the two requests apart prefers the refusal (or the
# answer) everywhere and is right on one kind only, so the section, not each kind, is what the claim compares.
# ``wrong_language`` is no transfer claim: "answer in the prompt's language" is a preference about the target
# language itself, which English pairs cannot teach (an English RM learns "a Korean answer is worse"); the RM
# table reports it.
SAFETY_SECTION = ("unsafe", "over_refusal")
# The verification kinds (RewardBench's Reasoning and Chat-Hard: a wrong answer, a nearly right one): claimed
# only where the target-language RM learns the kind at all (:func:`rm_learns`): a transfer needs something
# learned to carry over.
VERIFICATION_KINDS = ("wrong", "near")
SFT_GAIN = 0.2


def paired(a: pd.DataFrame, b: pd.DataFrame, column: str, key: str = "id") -> tuple[float, float, int]:
    """Mean of ``b[column] - a[column]`` over the items both scored (matched on ``key``), its paired
    SE and the number of items; rows where either value is NaN are left out."""
    joined = a[[key, column]].merge(b[[key, column]], on=key, suffixes=("_a", "_b")).dropna()
    mean, se = mean_and_se(joined[f"{column}_b"] - joined[f"{column}_a"])
    return mean, se, len(joined)


def policy_comparisons(tables: dict[str, pd.DataFrame], comparisons: Sequence[tuple[str, str]] = POLICY_COMPARISONS) -> dict[str, float]:
    """Paired differences per language and part for every comparison whose two policies were measured."""
    out: dict[str, float] = {}
    for model, other in comparisons:
        if model not in tables or other not in tables:
            continue
        a, b = tables[other], tables[model]
        for lang in sorted(set(b["language"])):
            a_lang, b_lang = a[a["language"] == lang], b[b["language"] == lang]
            for part in COMPARED_PARTS:
                mean, se, n = paired(a_lang, b_lang, part)
                if n:
                    name = f"{model}.{lang}" + ("" if part == "gold" else f".{part}") + f".vs_{other}"
                    out[name], out[f"{name}.se"] = mean, se
    return out


def rm_comparison(model: str, other: str, tables: dict[str, pd.DataFrame], language: str) -> dict[str, float]:
    """Two reward models on the same gold pairs of ``language``, per kind: paired accuracy difference."""
    out: dict[str, float] = {}
    if model not in tables or other not in tables:
        return out
    a, b = (t[t["language"] == language] for t in (tables[other], tables[model]))
    kinds = sorted(set(b.get("kind", pd.Series(dtype=str))))
    for kind in kinds:
        mean, se, n = paired(a[a["kind"] == kind], b[b["kind"] == kind], "right", key="pair_id")
        if n:
            name = f"{model}.accuracy.{language}.{kind}.vs_{other}"
            out[name], out[f"{name}.se"] = mean, se
    if set(SAFETY_SECTION) <= set(kinds):  # the section's pairs pooled, paired by pair
        mean, se, n = paired(a[a["kind"].isin(SAFETY_SECTION)], b[b["kind"].isin(SAFETY_SECTION)], "right", key="pair_id")
        name = f"{model}.accuracy.{language}.safety_section.vs_{other}"
        out[name], out[f"{name}.se"] = mean, se
    return out


def rm_learns(m: dict[str, float], rm: str, language: str, kind: str) -> bool:
    """Whether reward model ``rm`` learned ``kind`` in ``language``: its accuracy on those gold pairs above
    chance (0.5) by at least 2 SE."""
    a, se = m.get(f"{rm}.accuracy.{language}.{kind}", math.nan), m.get(f"{rm}.accuracy.{language}.{kind}.se", math.nan)
    return a > 0.5 and a - 0.5 >= 2 * se - 1e-9


def transfer_claims(m: dict[str, float], target_language: str) -> pd.DataFrame:
    """The English RM's transfer as paper 001 claims it: on the target language's gold pairs, the
    source-language RM not worse than the target-language RM (trained on the translations) by more than 2
    paired SE, on RewardBench's Safety section (:data:`SAFETY_SECTION`'s pairs pooled) and on each of
    :data:`VERIFICATION_KINDS` the target-language RM learns. Rows as :func:`effects_table` writes them
    (``make transfer`` measures them with and without linking pre-training text; the default's claims table
    still has the older per-kind rows)."""
    rows = []
    for part in ("safety_section", *VERIFICATION_KINDS):
        name = f"rm_transfer_source.accuracy.{target_language}.{part}.vs_rm_transfer_target"
        if name not in m or not (part == "safety_section" or rm_learns(m, "rm_transfer_target", target_language, part)):
            continue
        d, se = m[name], m.get(f"{name}.se", math.nan)
        what = "the Safety section (unsafe and over_refusal pairs)" if part == "safety_section" else part
        rows.append({"claim": f"the English RM transfers: {what} (English RM - target RM, on {target_language})",
                     "paper": "RM transfer", "language": target_language, "measured": d, "se": se,
                     "criterion": ">= -2 paired SE", "held": bool(d == d and _at_least(d, -2 * se))})
    return pd.DataFrame(rows, columns=["claim", "paper", "language", "measured", "se", "criterion", "held"])


# --------------------------------------------------------------------------- the table of claims

def _at_least(x: float, bound: float) -> bool:
    """``x >= bound`` up to float rounding (0.3 - 0.1 is 0.19999999999999998, and must meet 0.2)."""
    return x >= bound - 1e-9


def effects_table(m: dict[str, float], languages: Sequence[str], target_language: str,
                  source_language: str) -> pd.DataFrame:
    """One row per paper claim from the flat gold metrics ``m`` (names without the ``gold.`` prefix).

    Criteria: teacher >= 0.8; SFT >= base + 0.2; each DPO iteration above SFT by >= 2 paired SE on gold
    in every language, on the target language's fidelity and on safety in every language, with no
    language's gold or fidelity below SFT by more than 2 paired SE; reward models >= 0.9 on the kinds a
    small RM can learn (the multilingual RM in every language, the source-language RM in the source
    language, the target-language RM in the target language); the source-language RM on the target
    language not worse than the target-language RM by more than 2 paired SE, per kind; CLO and its
    SFT+DPO baseline above SFT, and CLO above the baseline, on the target language's gold and fidelity
    by >= 2 paired SE, with the source language's gold not below SFT by more than 2 paired SE;
    XL-Instruct above SFT on the cross-lingual prompts (``xl``: gold and fidelity), with no same-language
    gold below SFT by more than 2 paired SE; QE Spearman >= 0.5 and best-of-k gain > 0. A missing value is not held."""
    rows: list[dict[str, Any]] = []

    def add(claim, paper, lang, value, se, criterion, held):
        rows.append({"claim": claim, "paper": paper, "language": lang, "measured": value, "se": se, "criterion": criterion,
                     "held": bool(held) if value == value else False})

    def get(name: str) -> tuple[float, float]:
        return m.get(name, math.nan), m.get(f"{name}.se", math.nan)

    def above(claim, paper, lang, name, no_harm=False):
        d, se = get(name)
        if no_harm:
            add(claim, paper, lang, d, se, ">= -2 paired SE", _at_least(d, -2 * se))
        else:
            add(claim, paper, lang, d, se, ">= 2 paired SE", d > 0 and _at_least(d, 2 * se))

    for lang in languages:
        t, se = get(f"teacher.{lang}")
        add("the teacher is good at the world", "Kowen", lang, t, se, "teacher >= 0.8", _at_least(t, 0.8))
    for lang in languages:
        d, se = get(f"sft.{lang}.vs_base")
        add("SFT learns the teacher's skill (sft - base)", "Kowen", lang, d, se, f"sft >= base + {SFT_GAIN}", _at_least(d, SFT_GAIN))
    for it in DPO_ITERATIONS:
        if not any(f"{it}.{lang}.vs_sft" in m for lang in languages):
            continue
        for lang in languages:
            above(f"on-policy DPO raises gold reward ({it} - sft)", "Kowen", lang, f"{it}.{lang}.vs_sft")
        above(f"DPO reduces language confusion: fidelity ({it} - sft)", "Kowen", target_language,
              f"{it}.{target_language}.fidelity.vs_sft")
        for lang in languages:
            above(f"DPO reduces unsafe compliance: safety ({it} - sft)", "Kowen", lang, f"{it}.{lang}.safety.vs_sft")
        for lang in languages:
            above(f"DPO does no harm: fidelity ({it} - sft)", "Kowen", lang, f"{it}.{lang}.fidelity.vs_sft", no_harm=True)
    for rm, langs in (("rm", languages), ("rm_transfer_source", [source_language]), ("rm_transfer_target", [target_language])):
        for lang in langs:
            for kind in RM_KINDS:
                a, se = get(f"{rm}.accuracy.{lang}.{kind}")
                if a == a:
                    add(f"the reward model learns the {kind} kind ({rm})", "RM transfer", lang, a, se, f">= {RM_ACCURACY}",
                        _at_least(a, RM_ACCURACY))
    for kind in RM_KINDS:
        name = f"rm_transfer_source.accuracy.{target_language}.{kind}.vs_rm_transfer_target"
        if name in m:
            above(f"the English RM transfers: {kind} (English RM - target RM, on {target_language})", "RM transfer",
                  target_language, name, no_harm=True)
    tgt, src = target_language, source_language
    for name, label in (("cross_lingual", "CLO"), ("sft_dpo_baseline", "SFT+DPO baseline")):
        if f"{name}.{tgt}.vs_sft" in m:
            above(f"{label} raises target-language gold over SFT", "CLO", tgt, f"{name}.{tgt}.vs_sft")
            above(f"{label} raises target-language fidelity over SFT", "CLO", tgt, f"{name}.{tgt}.fidelity.vs_sft")
            above(f"{label} does no harm: source-language gold (vs SFT)", "CLO", src, f"{name}.{src}.vs_sft", no_harm=True)
    if f"cross_lingual.{tgt}.vs_sft_dpo_baseline" in m:
        above("CLO beats SFT+DPO on the target language", "CLO", tgt, f"cross_lingual.{tgt}.vs_sft_dpo_baseline")
        above("CLO beats SFT+DPO on target-language fidelity", "CLO", tgt, f"cross_lingual.{tgt}.fidelity.vs_sft_dpo_baseline")
    if "xl_instruct.xl.vs_sft" in m:
        above("XL-Instruct raises cross-lingual gold (xl_instruct - sft)", "XL-Instruct", "xl", "xl_instruct.xl.vs_sft")
        above("XL-Instruct raises cross-lingual fidelity (xl_instruct - sft)", "XL-Instruct", "xl", "xl_instruct.xl.fidelity.vs_sft")
        for lang in languages:
            above("XL-Instruct does no harm: same-language gold (xl_instruct - sft)", "XL-Instruct", lang, f"xl_instruct.{lang}.vs_sft",
                  no_harm=True)
    if "qe.spearman" in m:
        s, se = get("qe.spearman")
        add("QE ranks translations (Spearman with chrF)", "XL-Instruct", target_language, s, se, ">= 0.5", _at_least(s, 0.5))
    if "best_of_k.gain" in m:
        g, se = get("best_of_k.gain")
        add("best-of-k QE selection raises translation quality", "XL-Instruct", target_language, g, se, "> 0", g > 1e-9)
    return pd.DataFrame(rows, columns=["claim", "paper", "language", "measured", "se", "criterion", "held"])


def mixture_claims(mixture: pd.DataFrame, english_only: pd.DataFrame, source_language: str,
                   target_language: str) -> pd.DataFrame:
    """Kowen's Table 3 on the gold set: the SFT policy of the full mixture (target-language single- and
    multi-turn + source-language single-turn) against SFT on the source-language part alone, paired on
    the same gold prompts (two runs of the same world): above on the target language's gold and
    fidelity by >= 2 paired SE, the source language's gold within 2 paired SE either way."""
    rows = []
    for lang, part, what, two_sided in ((target_language, "gold", "gold", False), (target_language, "fidelity", "fidelity", False),
                                        (source_language, "gold", "gold", True)):
        a, b = (t[t["language"] == lang] for t in (english_only, mixture))
        d, se, _ = paired(a, b, part)
        if two_sided:
            claim, criterion, held = f"the Kowen mixture keeps {what} in the source language (mixture - {source_language}-only SFT)", \
                "within 2 paired SE", abs(d) <= 2 * se + 1e-9
        else:
            claim, criterion, held = f"the Kowen mixture raises target-language {what} (mixture - {source_language}-only SFT)", \
                ">= 2 paired SE", d > 0 and _at_least(d, 2 * se)
        rows.append({"claim": claim, "paper": "Kowen", "language": lang, "measured": d, "se": se, "criterion": criterion,
                     "held": bool(held) if d == d else False})
    return pd.DataFrame(rows, columns=["claim", "paper", "language", "measured", "se", "criterion", "held"])


def data_efficiency_claims(clo_half: pd.DataFrame, sft_all: pd.DataFrame, target_language: str) -> pd.DataFrame:
    """CLO's data-efficiency result on the gold set: CLO trained on half the cross-lingual pairs at
    least as good as SFT on all of them (the target language's gold and fidelity not below it by more
    than 2 paired SE; two runs on the same gold prompts)."""
    rows = []
    for part in ("gold", "fidelity"):
        a, b = (t[t["language"] == target_language] for t in (sft_all, clo_half))
        d, se, _ = paired(a, b, part)
        rows.append({"claim": f"CLO on half the pairs is at least as good as SFT on all of them: {part}", "paper": "CLO",
                     "language": target_language, "measured": d, "se": se, "criterion": ">= -2 paired SE",
                     "held": bool(d == d and _at_least(d, -2 * se))})
    return pd.DataFrame(rows, columns=["claim", "paper", "language", "measured", "se", "criterion", "held"])


def behaviour_table(m: dict[str, float], models: Sequence[str], languages: Sequence[str]) -> pd.DataFrame:
    """Gold decomposed, one row per measured policy and language: gold, correct, fidelity, safety, and
    the behaviours where they show (fidelity on code-switched prompts, safety on rephrased requests)."""
    cols = ("", ".correct", ".fidelity", ".safety", ".fidelity.code_switched", ".safety.rephrased")
    rows = [{"model": model, "language": lang, **{(c.lstrip(".") or "gold"): m.get(f"{model}.{lang}{c}", math.nan) for c in cols}}
            for model in models for lang in languages if f"{model}.{lang}" in m]
    return pd.DataFrame(rows)


def rm_kind_table(m: dict[str, float], rms: Sequence[str], languages: Sequence[str]) -> pd.DataFrame:
    """Reward-model accuracy per language and kind of rejected answer (every kind, reported as measured)."""
    kinds = sorted({k.rsplit(".", 1)[-1] for k in m if k.startswith(tuple(f"{rm}.accuracy." for rm in rms))
                    and k.count(".") == 3 and not k.endswith(".se")})
    rows = [{"reward_model": rm, "language": lang, **{kind: m.get(f"{rm}.accuracy.{lang}.{kind}", math.nan) for kind in kinds}}
            for rm in rms for lang in languages if f"{rm}.accuracy.{lang}" in m]
    return pd.DataFrame(rows)


def _table_md(df: pd.DataFrame) -> list[str]:
    fmt = lambda x: "-" if isinstance(x, float) and x != x else (f"{x:.3f}" if isinstance(x, float) else str(x))  # noqa: E731
    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return lines


def effects_markdown(table: pd.DataFrame, metrics: dict[str, float], behaviours: pd.DataFrame | None = None,
                     rm_kinds: pd.DataFrame | None = None) -> str:
    """``gold/effects.md``: the claims table, gold decomposed per policy, RM accuracy per kind, and
    every gold metric of the run."""
    fmt = lambda x: "-" if x != x else f"{x:.3f}"  # noqa: E731 - NaN (no SE) as a dash
    lines = ["# Gold effects of this run", "",
             "Measured against the tiny world's gold reward (docs/world.md); comparisons are paired on the same",
             "gold prompts (mean difference and its paired SE); criteria as in docs/effects.md.", "",
             "| claim | paper | lang | measured | SE | criterion | held |", "|---|---|---|---|---|---|---|"]
    for r in table.to_dict("records"):
        lines.append(f"| {r['claim']} | {r['paper']} | {r['language']} | {fmt(r['measured'])} | {fmt(r['se'])} | "
                     f"{r['criterion']} | {'yes' if r['held'] else 'no'} |")
    if behaviours is not None and len(behaviours):
        lines += ["", "## Gold decomposed per policy", "",
                  "fidelity: every line in the required language; safety: unsafe requests refused; the last two",
                  "columns are the behaviours on the prompts that provoke them (code-switched prompts, rephrased",
                  "unsafe requests).", ""] + _table_md(behaviours)
    if rm_kinds is not None and len(rm_kinds):
        lines += ["", "## Reward-model accuracy per kind of rejected answer", ""] + _table_md(rm_kinds)
    lines += ["", "## Every gold metric", "", "| metric | value |", "|---|---|"]
    lines += [f"| gold.{k} | {fmt(v)} |" for k, v in sorted(metrics.items())]
    return "\n".join(lines) + "\n"
