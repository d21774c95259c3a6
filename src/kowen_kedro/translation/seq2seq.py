"""Seq2seq machine translation through transformers (M2M100, NLLB, X-ALMA-style encoder-decoders).

Language handling follows the model family: a tokenizer with ``src_lang`` (M2M100Tokenizer,
NllbTokenizer) is told the source language and the target language token is forced as the first
generated token. A tokenizer without ``src_lang`` (the tiny default) gets the source language token
prepended by hand. ``lang_codes`` maps ISO codes to the model's codes (NLLB: ``{ko: kor_Hang}``);
by default the code is ``__{lang}__`` (M2M100's format).

Sources longer than ``max_source_tokens`` are rejected with :class:`SourceTooLongError`, never
truncated silently; callers split text into sentences first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kowen_kedro.llm.cache import CallCache, cached_values, call_key
from kowen_kedro.model_identity import model_identity


class SourceTooLongError(ValueError):
    """A source segment exceeds the translator's input limit."""


@dataclass
class Seq2SeqTranslator:
    model: str
    batch_size: int = 16
    max_source_tokens: int = 256
    max_new_tokens: int = 256
    num_beams: int = 1
    lang_codes: dict[str, str] = field(default_factory=dict)
    cache: CallCache | None = None
    name: str = "seq2seq"
    _lm: Any = field(default=None, repr=False)
    _tok: Any = field(default=None, repr=False)

    def _load(self) -> None:
        if self._lm is None:
            from kowen_kedro.loading import load_seq2seq, load_tokenizer

            self._tok = load_tokenizer(self.model)
            self._lm = load_seq2seq(self.model)

    def code(self, lang: str) -> str:
        return self.lang_codes.get(lang, f"__{lang}__")

    def _lang_id(self, lang: str) -> int:
        code = self.code(lang)
        tok_id = self._tok.convert_tokens_to_ids(code)
        if tok_id is None or tok_id == self._tok.unk_token_id:
            raise ValueError(f"{self.model}: no language token {code!r} for {lang!r} (set lang_codes)")
        return tok_id

    def _encode(self, texts: list[str], src: str) -> list[list[int]]:
        if hasattr(self._tok, "src_lang"):
            self._tok.src_lang = self.code(src)
            ids = [self._tok(t)["input_ids"] for t in texts]
        else:
            eos = self._tok.eos_token_id
            ids = [[self._lang_id(src)] + self._tok(t, add_special_tokens=False)["input_ids"] + [eos] for t in texts]
        for text, seq in zip(texts, ids):
            if len(seq) > self.max_source_tokens:
                raise SourceTooLongError(
                    f"{len(seq)} tokens > max_source_tokens={self.max_source_tokens}: {text[:60]!r}..."
                )
        return ids

    def translate(self, texts: list[str], src: str, tgt: str) -> list[str]:
        settings = {"max_new_tokens": self.max_new_tokens, "num_beams": self.num_beams}
        ident = model_identity(self.model)
        keys = [call_key({"mt": ident, "src": src, "tgt": tgt, "text": t, **settings}) for t in texts]
        return cached_values(self.cache, keys, lambda todo: self._generate([texts[i] for i in todo], src, tgt),
                             flush_every=4 * self.batch_size)  # resumes per 4 batches

    def _generate(self, texts: list[str], src: str, tgt: str) -> list[str]:
        import torch

        self._load()
        encoded = self._encode(texts, src)  # length check before any work
        forced = self._lang_id(tgt)
        pad = self._tok.pad_token_id
        out: list[str] = []
        for start in range(0, len(encoded), self.batch_size):
            seqs = encoded[start : start + self.batch_size]
            width = max(map(len, seqs))
            input_ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs], device=self._lm.device)
            mask = (torch.arange(width)[None, :] < torch.tensor([len(s) for s in seqs])[:, None]).to(self._lm.device)
            with torch.no_grad():
                gen = self._lm.generate(
                    input_ids=input_ids, attention_mask=mask, forced_bos_token_id=forced,
                    max_new_tokens=self.max_new_tokens, num_beams=self.num_beams, do_sample=False,
                )
            out.extend(self._tok.decode(row, skip_special_tokens=True).strip() for row in gen)
        return out
