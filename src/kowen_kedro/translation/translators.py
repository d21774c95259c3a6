"""Translators: an LLM prompted to translate, through any generation backend (cached)."""

from __future__ import annotations

from dataclasses import dataclass

from kowen_kedro.langid import LANGUAGE_NAMES, language_name  # noqa: F401 - the names live with the language codes
from kowen_kedro.llm.backends import SamplingParams
from kowen_kedro.llm.generator import CachedGenerator

PROMPT = (
    "Translate the following {src} text into {tgt}. Reply with the translation only.\n\n{text}"
)


@dataclass
class LLMTranslator:
    """Greedy translation by a chat LLM (EuroLLM / Mistral / Gemma / GPT-4o in the papers)."""

    generator: CachedGenerator
    max_new_tokens: int = 256
    name: str = "llm"

    def translate(self, texts: list[str], src: str, tgt: str) -> list[str]:
        src_name, tgt_name = language_name(src), language_name(tgt)
        requests = [[{"role": "user", "content": PROMPT.format(src=src_name, tgt=tgt_name, text=t)}] for t in texts]
        params = SamplingParams(max_new_tokens=self.max_new_tokens, temperature=0.0, top_p=1.0)
        return [c[0].text for c in self.generator.generate(requests, params, n=1)]
