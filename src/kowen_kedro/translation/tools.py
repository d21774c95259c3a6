"""The translation tools of a ``translation_qe`` parameter block: translators (seq2seq / LLM), COMET QE
and the sentence splitter, built from the model registry; loaded once per use and closed after."""

from __future__ import annotations

import pandas as pd

from kowen_kedro.groups import Splitter, TranslationQE
from kowen_kedro.runtime import cached_generator, call_cache, registry_model
from kowen_kedro.translation.best_of_k import translate_best_of_k
from kowen_kedro.translation.datasets import translate_columns
from kowen_kedro.translation.qe import CometQE, ShuffledQE, qe_batch_size, qe_gpus
from kowen_kedro.translation.segment import pysbd_splitter, sat_splitter, split_sentences
from kowen_kedro.translation.seq2seq import Seq2SeqTranslator
from kowen_kedro.translation.translators import LLMTranslator


def make_translators(configs: list[dict], registry: dict, llm: dict) -> list:
    """Translators from ``[{type: seq2seq|llm, model_role, ...options}]``; names ``<type>:<role>``."""
    out = []
    for cfg in configs:
        cfg = dict(cfg)
        kind, role = cfg.pop("type"), cfg.pop("model_role")
        model = registry_model(registry, role)
        if kind == "seq2seq":
            out.append(Seq2SeqTranslator(model, cache=call_cache(llm), name=f"seq2seq:{role}", **cfg))
        elif kind == "llm":
            backend = cfg.pop("backend", {"backend": "transformers"})
            out.append(LLMTranslator(cached_generator(model, backend, llm), name=f"llm:{role}", **cfg))
        else:
            raise ValueError(f"unknown translator type {kind!r}: expected 'seq2seq' or 'llm'")
    return out


def make_tools(registry: dict, params: TranslationQE, llm: dict):
    """The translators and the COMET QE (permuted scores with the ``qe.ablation_shuffle`` ablation)."""
    translators = make_translators(params.translators, registry, llm)
    gpus = qe_gpus(params.qe.gpus)
    qe = CometQE(registry_model(registry, "qe"), batch_size=qe_batch_size(params.qe.batch_size, gpus), gpus=gpus,
                 progress=params.qe.progress, cache=call_cache(llm))
    if params.qe.ablation_shuffle:
        qe = ShuffledQE(qe)
    return translators, qe


def make_splitter(cfg: Splitter):
    """pysbd (offline), rule (no dependency) or sat (wtpsplit's Segment Any Text, where its model is present)."""
    if cfg.type == "pysbd":
        return pysbd_splitter()
    if cfg.type == "rule":
        return split_sentences
    return sat_splitter(cfg.model) if cfg.model else sat_splitter()


class TranslationTools:
    """Translators, QE and splitter of one node, loaded once and closed at the end (``with``)."""

    def __init__(self, registry: dict, params: TranslationQE, llm: dict):
        self.translators, self.qe = make_tools(registry, params, llm)
        self.splitter = make_splitter(params.splitter)
        self.max_sentence_chars = params.max_sentence_chars

    def run(self, df: pd.DataFrame, columns: list[str], src: str, tgt: str) -> pd.DataFrame:
        return translate_columns(df, columns, self.translators, self.qe, src, tgt, self.max_sentence_chars, self.splitter)

    def best_of_k(self, texts: list[str], src: str, tgt: str) -> list[str | None]:
        """The best-of-k translation of each text (None where rejected)."""
        return [r.text for r in translate_best_of_k(texts, self.translators, self.qe, src, tgt, self.max_sentence_chars, self.splitter)]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for t in self.translators:  # end worker-process backends (frees their GPU memory)
            close = getattr(getattr(t, "generator", None), "close", None)
            if close:
                close()
