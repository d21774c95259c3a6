"""Call cache and cached generation: durable, content-addressed, no repeated calls; format-keeping translation."""

from dataclasses import dataclass, field

import pytest

from kowen_kedro.llm.backends import Completion, SamplingParams
from kowen_kedro.llm.cache import CallCache, call_key
from kowen_kedro.llm.generator import CachedGenerator, make_backend
from kowen_kedro.translation.segment import segment, translate_preserving_format


@dataclass
class CountingBackend:
    model: str = "fake"
    name: str = "fake"
    calls: list = field(default_factory=list)

    def generate(self, requests, params, sample_index):
        self.calls.extend(requests)
        return [Completion(text=f"{r[-1]['content']}#{sample_index}", finish_reason="stop", completion_tokens=2) for r in requests]


def test_call_key_is_canonical():
    assert call_key({"a": 1, "b": [1, "한"]}) == call_key({"b": [1, "한"], "a": 1})
    assert call_key({"a": 1}) != call_key({"a": 2})


def test_cache_survives_reopen(tmp_path):
    c = CallCache(tmp_path / "c.sqlite")
    c.put_many({"k1": {"text": "x"}, "k2": [1, 2]})
    c.close()
    c2 = CallCache(tmp_path / "c.sqlite")
    assert c2.get_many(["k1", "k2", "k3"]) == {"k1": {"text": "x"}, "k2": [1, 2]}
    assert (c2.hits, c2.misses, len(c2)) == (2, 1, 2)


def test_cached_generator_makes_only_missing_calls(tmp_path):
    reqs = [[{"role": "user", "content": f"q{i}"}] for i in range(5)]
    params = SamplingParams(max_new_tokens=8)
    backend = CountingBackend()
    gen = CachedGenerator(backend, CallCache(tmp_path / "c.sqlite"), flush_every=2)
    out = gen.generate(reqs[:3], params, n=2)
    assert len(backend.calls) == 6 and out[1][1].text == "q1#1"
    backend2 = CountingBackend()
    gen2 = CachedGenerator(backend2, CallCache(tmp_path / "c.sqlite"))
    out2 = gen2.generate(reqs, params, n=2)
    assert len(backend2.calls) == 4  # only q3, q4 x 2 samples
    assert [[c.text for c in s] for s in out2[:3]] == [[c.text for c in s] for s in out]
    assert gen2.stats.cached == 6 and gen2.stats.calls == 4
    # different sampling settings are different calls
    gen2.generate(reqs[:1], SamplingParams(max_new_tokens=9), n=1)
    assert len(backend2.calls) == 5


def test_identical_requests_are_one_call(tmp_path):
    backend = CountingBackend()
    gen = CachedGenerator(backend, CallCache(tmp_path / "c.sqlite"))
    same = [{"role": "user", "content": "same"}]
    out = gen.generate([same, [{"role": "user", "content": "other"}], same], SamplingParams(), n=1)
    assert len(backend.calls) == 2 and out[0][0] == out[2][0]


def test_unknown_backend_and_sampling_fields():
    with pytest.raises(ValueError, match="unknown generation backend"):
        make_backend({"backend": "nope"}, "m")
    with pytest.raises(ValueError, match="unknown sampling settings"):
        SamplingParams.from_dict({"temp": 1})


MARKDOWN = """# Title here

First sentence. Second one!
- bullet one. More text.
  1. nested item

```python
x = 1. # not a sentence
```
Last line without newline"""


def test_segments_rejoin_exactly_and_skip_code():
    segs = segment(MARKDOWN)
    assert "".join(s.text for s in segs) == MARKDOWN
    translated = [s.text for s in segs if s.translate]
    assert "First sentence." in translated and "Second one!" in translated
    assert not any("x = 1" in t for t in translated)
    assert not any(t.startswith(("#", "-", "1.")) for t in translated)


def test_translate_preserving_format_keeps_layout():
    out = translate_preserving_format([MARKDOWN, "Hi. Bye."], lambda sents: [s.upper() for s in sents])
    assert out[1] == "HI. BYE."
    assert "```python\nx = 1. # not a sentence\n```" in out[0]
    assert out[0].startswith("# TITLE HERE\n\nFIRST SENTENCE. SECOND ONE!\n- BULLET ONE. MORE TEXT.\n  1. NESTED ITEM\n")


RICH_MARKDOWN = """> Dr. Kim said hi. He left.
> - Quoted item. Second sentence.
>> Nested quote.

| Name | Note |
|:-----|-----:|
| Dr. Kim | Arrived e.g. today. Left at 3 p.m. sharp. |
| a \\| b |   |
| 김 박사 | 오늘 도착했다. 그리고 떠났다. |

See Mr. Park, i.e. the chair, at 10 a.m. today. He waits.
"""


@pytest.mark.parametrize("splitter", ["pysbd", "rule"])
def test_tables_quotes_and_abbreviations_round_trip(splitter):
    """Tables cell by cell (pipes, padding and the alignment row kept), quote markers kept like list
    markers, and no sentence ends at an abbreviation (pysbd, and the rule-based fallback)."""
    from kowen_kedro.groups import Splitter
    from kowen_kedro.translation.tools import make_splitter

    split = make_splitter(Splitter(type=splitter))
    segs = segment(RICH_MARKDOWN, split)
    assert "".join(s.text for s in segs) == RICH_MARKDOWN
    sent = [s.text for s in segs if s.translate]
    assert not any("|" in t and "\\|" not in t for t in sent) and not any(t.lstrip().startswith(">") for t in sent)
    assert not any(set(t) <= set(":-| ") for t in sent)
    for whole in ("Dr. Kim said hi.", "Quoted item.", "Nested quote.", "Dr. Kim", "Arrived e.g. today.", "오늘 도착했다.",
                  "그리고 떠났다.", "a \\| b", "See Mr. Park, i.e. the chair, at 10 a.m. today."):
        assert whole in sent, (whole, sent)
    out = translate_preserving_format([RICH_MARKDOWN], lambda xs: [f"<{x}>" for x in xs], split)[0]
    lines = out.splitlines()
    assert lines[0] == "> <Dr. Kim said hi.> <He left.>"
    assert lines[1] == "> - <Quoted item.> <Second sentence.>"
    assert lines[2] == ">> <Nested quote.>"
    assert lines[4] == "| <Name> | <Note> |" and lines[5] == "|:-----|-----:|"
    assert lines[6].startswith("| <Dr. Kim> | <Arrived e.g. today.> <Left at 3 p.m. sharp.> |")
    assert lines[7] == "| <a \\| b> |   |"


def test_a_splitter_that_changes_text_is_not_trusted():
    from kowen_kedro.translation.segment import segment

    squash = lambda line: [" ".join(line.split())]  # noqa: E731 - normalises whitespace: must be rejected
    text = "One.  Two!\tThree?"
    segs = segment(text, squash)
    assert "".join(s.text for s in segs) == text
    assert [s.text for s in segs if s.translate] == ["One.", "Two!", "Three?"]
    whole = segment("A b. C d.", lambda line: ["A b. ", "C d."])  # a faithful custom splitter is used
    assert [s.text for s in whole] == ["A b.", " ", "C d."]


def test_cached_values_computes_each_missing_key_once_and_stores_first(tmp_path):
    from kowen_kedro.llm.cache import cached_values

    cache = CallCache(tmp_path / "c.sqlite")
    cache.put_many({"b": 20})
    asked = []

    def compute(todo):
        asked.append(list(todo))
        return [{"a": 1, "c": 3}[["a", "b", "a", "c"][i]] for i in todo]

    assert cached_values(cache, ["a", "b", "a", "c"], compute) == [1, 20, 1, 3]
    assert asked == [[0, 3]]  # "b" from the cache, "a" once
    assert cached_values(cache, ["c", "a"], compute) == [3, 1] and asked == [[0, 3]]  # all stored
    assert cached_values(None, ["x", "x"], lambda todo: [len(todo)]) == [1, 1]
    with pytest.raises(ValueError, match="2 keys"):
        cached_values(None, ["p", "q"], lambda todo: [0])


def test_cached_values_stores_each_part_before_computing_the_next(tmp_path):
    """A crash in the third part keeps the first two: the rerun computes only the rest, in the same parts."""
    from kowen_kedro.llm.cache import cached_values

    cache = CallCache(tmp_path / "c.sqlite")
    keys = [f"k{i}" for i in range(10)]
    parts = []

    def crashing(todo):
        parts.append(list(todo))
        if len(parts) == 3:
            raise RuntimeError("killed")
        return [int(keys[i][1:]) * 10 for i in todo]

    with pytest.raises(RuntimeError, match="killed"):
        cached_values(cache, keys, crashing, flush_every=3)
    assert parts == [[0, 1, 2], [3, 4, 5], [6, 7, 8]] and len(cache) == 6
    parts.clear()
    assert cached_values(cache, keys, lambda todo: parts.append(list(todo)) or [int(keys[i][1:]) * 10 for i in todo],
                         flush_every=3) == [i * 10 for i in range(10)]
    assert parts == [[6, 7, 8], [9]] and len(cache) == 10
    with pytest.raises(ValueError, match="flush_every"):
        cached_values(cache, keys, crashing, flush_every=0)


def test_a_generator_closes_its_backend_also_when_generation_fails(tmp_path):
    """``with cached_generator(...) as gen``: a worker or a started server is ended on the way out, a
    failing node included (a vLLM worker left running keeps its GPU memory from the next training step);
    a batch that failed part-way keeps its answered calls."""
    from kowen_kedro.llm.types import GenerationError, PartialGenerationError

    class Failing:
        name, model, closed = "failing", "m", 0

        def generate(self, requests, params, sample_index):
            raise PartialGenerationError("1 of 2 calls failed", {0: Completion(text=f"ok {requests[0][0]['content']}", finish_reason="stop")})

        def close(self):
            self.closed += 1

    backend = Failing()
    with pytest.raises(GenerationError, match="1 of 2 calls failed"):
        with CachedGenerator(backend, CallCache(tmp_path / "c.sqlite"), progress=False) as gen:
            gen.generate([[{"role": "user", "content": "a"}], [{"role": "user", "content": "b"}]], SamplingParams())
    assert backend.closed == 1 and gen.stats.calls == 1
    again = CachedGenerator(backend, CallCache(tmp_path / "c.sqlite"), progress=False)
    with pytest.raises(GenerationError):
        again.generate([[{"role": "user", "content": "a"}], [{"role": "user", "content": "b"}]], SamplingParams())
    assert again.stats.cached == 1  # the answered call was kept
