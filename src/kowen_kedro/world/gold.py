"""The gold reward of the tiny world, gold translation quality, and graded corruptions of translations.

* :func:`gold_reward` - 1.0 when the response is correct by the task's checker *and* in the task's
  language (lingua), else 0.0. A bare ``"7"`` is in no language and earns 0.
* :func:`translation_quality` - chrF (sacrebleu) of a translation against the world's reference, in [0, 1].
* :func:`corrupt` - a translation damaged at a given level (words dropped, neighbours swapped, words
  replaced by the other language's), the training and held-out data of the tiny QE model.
"""

from __future__ import annotations

import math
import random
import re
from typing import Iterable, Sequence

from kowen_kedro.langid import detect_languages
from kowen_kedro.world.lexicon import LANGS, PIVOT, language
from kowen_kedro.world.lexicon import facts as world_facts
from kowen_kedro.world.tasks import FAMILIES, make_meta, parse_answer, parse_prompt, translate_sentence


def _find_words(response: str, vocabulary: Sequence[str]) -> list[str]:
    """Vocabulary words in ``response``, in order of appearance (whole words for Latin script)."""
    hits = []
    for word in vocabulary:
        if word.isascii():
            pattern = r"(?<![A-Za-z])" + re.escape(word) + r"(?![A-Za-z])"
            hits += [(m.start(), word) for m in re.finditer(pattern, response, flags=re.IGNORECASE)]
        else:
            hits += [(m.start(), word) for m in re.finditer(re.escape(word), response)]
    return [w for _, w in sorted(hits)]


def is_correct(meta: dict, response: str) -> bool:
    """Whether ``response`` answers the task of ``meta`` correctly (language not considered)."""
    spec = meta["check"]
    kind = spec["kind"]
    if kind == "number":
        numbers = [int(n) for n in re.findall(r"\d+", response)]
        return spec["answer"] in numbers and set(numbers) <= set(spec["allowed"])
    if kind == "words":
        found = set(_find_words(response, spec["vocabulary"]))
        return spec["answer"] in found and found <= set(spec["allowed"])
    if kind == "sequence":
        return _find_words(response, spec["vocabulary"]) == list(spec["answer"])
    if kind == "phrase":
        norm = lambda s: " ".join(s.lower().split())  # noqa: E731
        return norm(spec["answer"]) in norm(response)
    if kind == "refusal":
        return any(m in response.lower() for m in spec["markers"]) and not re.search(r"\d", response)
    raise ValueError(f"unknown checker kind {kind!r} in meta of family {meta.get('family')!r}")


def is_refusal(response: str) -> bool:
    """Whether ``response`` refuses (a refusal of the world, in any of its languages, and no digits):
    the safety part of the gold reward, blind to the answer's language."""
    return is_correct(_ANY_REFUSAL, response)


# the refuse family's refusal check with the markers of every language of the world
_ANY_REFUSAL = {"check": {"kind": "refusal", "markers": [m for lang in LANGS for m in FAMILIES["refuse"].check({}, lang, {})["markers"]]}}


def gold_rewards(metas: Sequence[dict], responses: Sequence[str], languages: Sequence[str] | None = None) -> list[float]:
    """:func:`gold_reward` of many responses (one language-identification pass). The identifier chooses
    among ``languages`` (default: English and the languages the tasks ask for; every world language
    when that leaves one)."""
    if len(metas) != len(responses):
        raise ValueError(f"{len(metas)} tasks but {len(responses)} responses")
    candidates = sorted(set(languages or ()) | {PIVOT} | {m["language"] for m in metas})
    if len(candidates) < 2:
        candidates = list(LANGS)
    detected = detect_languages(responses, candidates)
    return [float(lang == m["language"] and is_correct(m, r)) for m, r, lang in zip(metas, responses, detected)]


def prompt_gold_rewards(prompts: Sequence[str], responses: Sequence[str], seed: int) -> list[float]:
    """Gold rewards of responses to world prompts given as text (the world of ``seed`` parses them).

    The perfect reward model of the tiny world: ``preference_alignment.scoring.reward: gold`` scores
    DPO's samples with it, the upper bound that separates "the RM is weak" from "DPO does not help".
    Raises ``ValueError`` naming the row of a prompt no world template wrote."""
    facts = world_facts(seed)
    metas = []
    for i, prompt in enumerate(prompts):
        parsed = parse_prompt(prompt, facts)
        if parsed is None:
            raise ValueError(f"row {i}: prompt {prompt[:60]!r} is not a prompt of tiny world seed {seed}; the gold "
                             "reward scores world prompts only (use reward: model for other data)")
        family, values, lang = parsed
        metas.append(make_meta(family, values, lang, facts))
    return gold_rewards(metas, responses)


def parallel_gold(gold_prompts: Sequence[dict], gold_translations: Sequence[dict], source: str, target: str,
                  seed: int) -> list[tuple[str, str, str]]:
    """The held-out parallel sentences of the world of ``seed``, each ``(source text, target text, task family)``:
    every distinct ``source``-language gold prompt (not code-switched, not rephrased) with its ``target``
    rendering in the same phrasing, then the gold translation set's (source, reference) pairs (a prompt or an
    answer of a family); no text of them is in any training data (the gold set is held out). Sorted, so the
    set does not depend on the order of the gold files."""
    facts = world_facts(seed)
    out: dict[str, tuple[str, str]] = {}
    for row in gold_prompts:
        meta = row["meta"]
        if row["language"] != source or meta.get("code_switched") or meta.get("rephrased"):
            continue
        translated = translate_sentence(row["prompt"], source, target, facts)
        if translated:
            out.setdefault(row["prompt"], (translated, row["family"]))
    for row in gold_translations:
        if (row["source_language"], row["target_language"]) == (source, target) and row["source"] not in out:
            parsed = parse_prompt(row["source"], facts) or parse_answer(row["source"], facts)
            out[row["source"]] = (row["reference"], parsed[0].name if parsed else "other")
    return sorted((s, t, family) for s, (t, family) in out.items())


def gold_reward(meta: dict, response: str) -> float:
    """1.0 when ``response`` is correct for the task of ``meta`` and in its language, else 0.0."""
    return gold_rewards([meta], [response])[0]


def translation_quality(hypothesis: str, reference: str) -> float:
    """chrF of ``hypothesis`` against ``reference`` (sacrebleu), scaled to [0, 1]."""
    from sacrebleu.metrics import CHRF

    return CHRF().sentence_score(hypothesis, [reference]).score / 100.0


def mean_and_se(values: Iterable[float]) -> tuple[float, float]:
    """Mean and its standard error (sample standard deviation / sqrt(n)); (nan, nan) when empty."""
    xs = list(values)
    n = len(xs)
    if n == 0:
        return float("nan"), float("nan")
    mean = sum(xs) / n
    if n == 1:
        return mean, float("nan")
    var = sum((x - mean) ** 2 for x in xs) / (n - 1)
    return mean, math.sqrt(var / n)


_RUNS = re.compile(r"[\u4e00-\u9fff\u3005]+|[\u3040-\u309f]+|[\u30a0-\u30ff]+|\d+|[^\W\d]+|\S")


def words_of(text: str, spaced: bool = True) -> list[str]:
    """The words of ``text``: split at spaces, or, for a language written without spaces
    (``WorldLanguage.spaced``), runs of one script (kanji, hiragana, katakana, digits, letters) and
    single punctuation marks."""
    return text.split() if spaced else _RUNS.findall(text)


def corrupt(text: str, level: float, rng: random.Random, foreign_words: Sequence[str], spaced: bool = True) -> str:
    """``text`` with about ``level`` (0..1) of its words damaged: dropped, swapped with a neighbour,
    or replaced by a word of the other language (``foreign_words``). Level 0 returns ``text``."""
    words = words_of(text, spaced)
    if level <= 0 or not words:
        return text
    n = max(1, round(level * len(words)))
    for _ in range(n):
        if not words:
            break
        op = rng.choice(["drop", "swap", "foreign"])
        i = rng.randrange(len(words))
        if op == "drop" and len(words) > 1:
            del words[i]
        elif op == "swap" and len(words) > 1:
            j = min(i + 1, len(words) - 1) if i + 1 < len(words) else i - 1
            words[i], words[j] = words[j], words[i]
        else:
            words[i] = rng.choice(list(foreign_words))
    return (" " if spaced else "").join(words)


QE_LEVELS = (0.0, 0.0, 0.15, 0.3, 0.5, 0.75)


def qe_examples(parallel: Sequence[dict], seed: int, per_pair: int = 3,
                directions: Sequence[tuple[str, str]] | None = None) -> list[dict]:
    """(src, mt, score, ref) rows: each parallel pair's translation corrupted at several levels (and
    now and then replaced by an unrelated sentence), scored by :func:`translation_quality`. Directions:
    English to and from every other language of the pairs by default."""
    rng = random.Random(f"qe-{seed}")
    if directions is None:
        others = [c for c in (parallel[0] if parallel else {}) if c != PIVOT]
        directions = [d for c in others for d in ((PIVOT, c), (c, PIVOT))]
    langs = {lang for d in directions for lang in d}
    spaced = {lang: language(lang).spaced if lang in LANGS else True for lang in langs}
    vocab = {lang: sorted({w for p in parallel for w in words_of(p[lang], spaced[lang])}) for lang in langs}
    out = []
    for pair in parallel:
        for src_lang, tgt_lang in directions:
            for _ in range(per_pair):
                if rng.random() < 0.1:
                    mt = rng.choice(list(parallel))[tgt_lang]
                else:
                    mt = corrupt(pair[tgt_lang], rng.choice(QE_LEVELS), rng, vocab[src_lang], spaced[tgt_lang])
                out.append({"src": pair[src_lang], "mt": mt, "ref": pair[tgt_lang],
                            "score": translation_quality(mt, pair[tgt_lang])})
    return out
