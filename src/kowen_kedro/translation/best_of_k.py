"""Sentence-level translation with best-of-k selection by QE (XL-Instruct, stage 3).

For each text: split into sentences keeping the formatting (:mod:`~kowen_kedro.translation.segment`),
translate every sentence with each of the k translators, score every (source sentence, candidate)
with reference-free QE, keep the highest-scoring candidate per sentence (ties: the first translator
in the list), and put the winners back in place. The passage score is the mean of the winners'
sentence scores. Texts that cannot be translated are *rejected with a reason*, never truncated:
an empty source, or a sentence longer than ``max_sentence_chars``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Protocol, Sequence

from kowen_kedro.translation.segment import Splitter, segment, split_sentences

logger = logging.getLogger(__name__)


class Translator(Protocol):
    name: str

    def translate(self, texts: list[str], src: str, tgt: str) -> list[str]: ...


class QualityEstimator(Protocol):
    def score(self, sources: list[str], translations: list[str]) -> list[float]: ...


@dataclass
class TranslationResult:
    text: str | None  # None when rejected
    passage_score: float
    sentence_scores: list[float] = field(default_factory=list)
    winners: list[str] = field(default_factory=list)  # translator name per sentence
    rejected: str | None = None  # reason


def translate_best_of_k(
    texts: Sequence[str],
    translators: Sequence[Translator],
    qe: QualityEstimator,
    src: str,
    tgt: str,
    max_sentence_chars: int = 1000,
    splitter: Splitter = split_sentences,
) -> list[TranslationResult]:
    """Translate ``texts`` sentence by sentence, choosing among ``translators`` by QE."""
    if not translators:
        raise ValueError("best-of-k needs at least one translator")
    names = [t.name for t in translators]
    if len(set(names)) != len(names):
        raise ValueError(f"translator names must be unique to record winners: {names}")
    segmented, rejected = [], {}
    for i, text in enumerate(texts):
        segs = segment(text, splitter) if isinstance(text, str) else []
        sentences = [s.text for s in segs if s.translate]
        if not isinstance(text, str) or not text.strip() or not sentences:
            rejected[i] = "empty source"
        elif max(map(len, sentences)) > max_sentence_chars:
            rejected[i] = f"a sentence is longer than max_sentence_chars={max_sentence_chars}"
        segmented.append(segs)
    unique = sorted({s.text for i, segs in enumerate(segmented) if i not in rejected for s in segs if s.translate})
    candidates = {t.name: dict(zip(unique, t.translate(unique, src, tgt))) if unique else {} for t in translators}
    pairs = [(sent, candidates[name][sent]) for name in names for sent in unique]
    scores = qe.score([p[0] for p in pairs], [p[1] for p in pairs]) if pairs else []
    score_of = {(name, sent): sc for (name, sent), sc in zip(((n, s) for n in names for s in unique), scores)}
    best = {}
    for sent in unique:
        name = max(names, key=lambda n: (score_of[(n, sent)], -names.index(n)))
        best[sent] = (name, candidates[name][sent], score_of[(name, sent)])
    results = []
    for i, segs in enumerate(segmented):
        if i in rejected:
            results.append(TranslationResult(text=None, passage_score=math.nan, rejected=rejected[i]))
            continue
        out, sent_scores, winners = [], [], []
        for s in segs:
            if s.translate:
                name, cand, sc = best[s.text]
                out.append(cand)
                sent_scores.append(sc)
                winners.append(name)
            else:
                out.append(s.text)
        results.append(
            TranslationResult(text="".join(out), passage_score=sum(sent_scores) / len(sent_scores), sentence_scores=sent_scores, winners=winners)
        )
    if rejected:
        logger.warning("%d of %d texts rejected before translation: %s", len(rejected), len(texts), sorted(set(rejected.values())))
    return results
