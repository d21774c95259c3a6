"""data_synthesis library: decontamination, XL-Instruct stages 1-2, ingest formats, language filter."""

import random
from dataclasses import dataclass, field

import pandas as pd
import pytest

from kowen_kedro.data.decontaminate import decontaminate, word_ngrams
from kowen_kedro.data.prompts import ingest_prompts, language_code
from kowen_kedro.data.synthesis import filter_language, multi_turn_conversations
from kowen_kedro.data.validation import DataValidationError
from kowen_kedro.data.xl_instruct import CROSS_LINGUAL_TEMPLATES, cross_lingual_instruction, reverse_instructions
from kowen_kedro.llm.backends import Completion
from kowen_kedro.llm.cache import CallCache
from kowen_kedro.llm.generator import CachedGenerator


def test_word_ngrams_and_short_texts():
    assert word_ngrams("a b c d", 3) == {("a", "b", "c"), ("b", "c", "d")}
    assert word_ngrams("Hello, World", 3) == {("hello,", "world")}
    assert word_ngrams("", 3) == set()


def test_decontaminate_by_containment():
    prompts = pd.DataFrame({"prompt": [
        "please explain how a rainbow forms in the sky after rain",  # 10 words, 8 4-grams
        "what is the capital of France",
        "Explain how a rainbow forms.",                              # short: one gram of all words
    ]})
    kept, removed = decontaminate(prompts, ["Explain how a rainbow forms in the sky", "Explain how a rainbow forms."], n=4, threshold=0.5)
    # first prompt: 4-grams inside the eval text = "explain how a rainbow" ... "forms in the sky" -> 5 of 8 = 0.625
    assert list(removed.index) == [0, 2] and removed.loc[0, "overlap"] == pytest.approx(5 / 8)
    assert list(kept["prompt"]) == ["what is the capital of France"]
    with pytest.raises(ValueError):
        decontaminate(prompts, [], n=0, threshold=0.5)


@dataclass
class ScriptedBackend:
    """Answers by the first matching substring of the last user message."""

    rules: dict
    model: str = "scripted"
    name: str = "scripted"
    calls: list = field(default_factory=list)

    def generate(self, requests, params, sample_index):
        out = []
        for r in requests:
            text = r[-1]["content"]
            self.calls.append(text)
            reply = next((v for k, v in self.rules.items() if k in text), "")
            out.append(Completion(text=reply, finish_reason="stop"))
        return out


def test_reverse_instructions_refine_and_drop_empty(tmp_path):
    passages = pd.DataFrame({"passage_id": ["p1", "p2"], "text": ["Bees dance to show where flowers are.", "EMPTY passage"]})
    backend = ScriptedBackend({
        "Rewrite the question": "How do honeybees tell each other where flowers are?",
        "Rewrite the answer": "Honeybees perform a waggle dance that shows direction and distance.",
        "Bees dance": "How do bees communicate?",
    })
    gen = CachedGenerator(backend, CallCache(tmp_path / "c.sqlite"), progress=False)
    rows, report = reverse_instructions(passages, gen, {"max_new_tokens": 32}, refine=True)
    assert report == {"passages": 2, "empty_instruction": 1, "refined": 1, "pairs": 1}
    row = rows.iloc[0].to_dict()
    assert row["passage_id"] == "p1" and row["raw_instruction"] == "How do bees communicate?"
    assert row["instruction"].startswith("How do honeybees") and row["response"].startswith("Honeybees perform") and row["refined"]
    refine_prompts = [c for c in backend.calls if "Rewrite" in c]
    assert all("Question self-sufficiency" in c and "Bees dance to show" in c for c in refine_prompts)  # grounded, 4 criteria


def test_cross_lingual_instruction_is_seeded():
    a = [cross_lingual_instruction("Explain tides.", "ko", random.Random(7)) for _ in range(3)]
    b = [cross_lingual_instruction("Explain tides.", "ko", random.Random(7)) for _ in range(3)]
    assert a == b
    assert a[0].startswith("Explain tides. ") and a[0].endswith("Korean.") and "language" not in a[0]
    assert {t.format(lang="Korean") for t in CROSS_LINGUAL_TEMPLATES} >= {a[0][len("Explain tides. "):]}


def test_ingest_plain_prompt_lists_and_language_names():
    raw = pd.DataFrame({"prompt": ["Hello there, how are you today?", "오늘 날씨 어때요?"], "language": ["English", None]})
    prompts, report = ingest_prompts(raw, max_chars=100, languages=["en", "ko"])
    assert list(prompts["prompt_id"]) == ["row-1", "row-2"] and list(prompts["language"]) == ["en", "ko"]
    assert language_code("Korean") == "ko" and language_code("KO") == "ko" and language_code("Klingon") is None
    with pytest.raises(DataValidationError, match="expected 'conversation', 'prompt' or 'instruction'"):
        ingest_prompts(pd.DataFrame({"text": ["x"]}), 100, ["en", "ko"])


def test_ingest_hf_dataset_object():
    from datasets import Dataset, DatasetDict

    ds = DatasetDict({"train": Dataset.from_dict({
        "conversation_id": ["a"], "conversation": [[{"role": "user", "content": "What is tea?"}]], "language": ["English"]})})
    prompts, _ = ingest_prompts(ds["train"].to_pandas(), 100, ["en", "ko"])
    assert prompts.loc[0, "prompt"] == "What is tea?"
    from kowen_kedro.pipelines.data_synthesis.nodes import ingest_prompts_node

    prompts2, metrics = ingest_prompts_node(ds, {"max_chars": 100, "drop_redacted": True, "split": "train"}, ["en", "ko"])
    assert prompts2.loc[0, "prompt_id"] == "a" and metrics["kept"] == {"value": 1.0, "step": 0}


def test_language_filter_drops_rows_with_any_wrong_turn():
    rows = pd.DataFrame({
        "language": ["ko", "ko", "en"],
        "messages": [
            [{"role": "user", "content": "안녕"}, {"role": "assistant", "content": "안녕하세요, 무엇을 도와드릴까요?"}],
            [{"role": "user", "content": "안녕"}, {"role": "assistant", "content": "안녕하세요!"}, {"role": "user", "content": "더"},
             {"role": "assistant", "content": "This second answer is in English, which is wrong here."}],
            [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello, how can I help you today?"}],
        ],
    })
    kept, dropped = filter_language(rows, ["en", "ko"])
    assert len(kept) == 2 and len(dropped) == 1
    assert dropped.loc[0, "messages"][-1]["content"].startswith("This second answer")


def test_multi_turn_writes_user_turns_then_answers(tmp_path):
    backend = ScriptedBackend({"Write the user's next message": "두 번째 질문입니다", "두 번째": "두 번째 답입니다", "첫": "첫 답입니다"})
    gen = CachedGenerator(backend, CallCache(tmp_path / "c.sqlite"), progress=False)
    rows = multi_turn_conversations(pd.DataFrame({"prompt_id": ["k1"], "prompt": ["첫 질문"]}), gen, {}, turns=2, language="ko", teacher_name="t")
    assert [m["content"] for m in rows.loc[0, "messages"]] == ["첫 질문", "첫 답입니다", "두 번째 질문입니다", "두 번째 답입니다"]
    assert rows.loc[0, "n_turns"] == 2
