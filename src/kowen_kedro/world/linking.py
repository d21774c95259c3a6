"""Pre-training text that links the world's languages, as the web text of real multilingual base models does.

A real base model's corpus has pages where the languages meet: a sentence beside its translation (bilingual
pages, subtitles, translation exercises) and sentences with words of the other language in them
(code-switching); numbers and many names are written alike in both (shared tokens). That text is the
usual explanation of why such a model represents the same content alike across languages, which the
RM-transfer and CLO papers build on. Two kinds of document, from the world's parallel sentences and its
bilingual lexicon:

* a **parallel document**: a sentence and its translation, one per line, in a random order;
* a **code-switched document**: a source-language text with each word of the lexicon (weekdays, colours,
  fruits, countries, capitals, animals, adjectives, nouns) written in the target language with probability
  ``switch``.

The tiny-model build adds them to the base model's pre-training text (``tiny_models.pretrain_linking_share``).
"""

from __future__ import annotations

import random
import re
from typing import Sequence

from kowen_kedro.world import lexicon as L

#: The lexicon lists whose entries are translations of each other, item by item.
LEXICON = ("weekdays", "colors", "fruits", "countries", "capitals", "animals", "adjectives", "nouns")


def lexicon_pairs(source: str, target: str) -> list[tuple[str, str]]:
    """``(source word, target word)`` of every lexicon entry (a source word listed twice keeps its first)."""
    src, tgt = L.language(source), L.language(target)
    out: dict[str, str] = {}
    for attr in LEXICON:
        for a, b in zip(getattr(src, attr), getattr(tgt, attr)):
            out.setdefault(a, b)
    return list(out.items())


def code_switch(text: str, pairs: Sequence[tuple[str, str]], rng: random.Random, switch: float) -> str:
    """``text`` with each whole-word occurrence of a pair's source word replaced by its target word with
    probability ``switch`` (longer words first, so a word inside a longer entry is not split)."""
    ordered = sorted(pairs, key=lambda p: -len(p[0]))
    pattern = re.compile(r"\b(" + "|".join(re.escape(a) for a, _ in ordered) + r")\b")
    words = dict(ordered)
    return pattern.sub(lambda m: words[m.group(1)] if rng.random() < switch else m.group(1), text)


def linking_documents(parallel: Sequence[dict], source_texts: Sequence[str], source: str, target: str, n: int,
                      seed: int, switch: float = 0.5) -> list[str]:
    """``n`` linking documents, alternately parallel (from ``parallel``, ``{source: ..., target: ...}``) and
    code-switched (from ``source_texts``), each list cycled in a seeded order; the same arguments give the
    same documents."""
    if n <= 0:
        return []
    if not parallel or not source_texts:
        raise ValueError("linking documents need parallel sentences and source-language texts")
    rng = random.Random(f"linking-{seed}-{source}-{target}")
    pairs = lexicon_pairs(source, target)
    para = [parallel[i] for i in rng.sample(range(len(parallel)), len(parallel))]
    texts = [source_texts[i] for i in rng.sample(range(len(source_texts)), len(source_texts))]
    out = []
    for i in range(n):
        if i % 2 == 0:
            p = para[(i // 2) % len(para)]
            first, second = (source, target) if rng.random() < 0.5 else (target, source)
            out.append(f"{p[first]}\n{p[second]}")
        else:
            out.append(code_switch(texts[(i // 2) % len(texts)], pairs, rng, switch))
    return out
