"""translation_qe library: best-of-k by QE, rejection rules, translated datasets, seq2seq MT."""

import math
from dataclasses import dataclass, field

import pandas as pd
import pytest

from kowen_kedro.data.xl_instruct import xl_instruct_rows
from kowen_kedro.translation.best_of_k import translate_best_of_k
from kowen_kedro.translation.datasets import clo_rows, keep_best, translate_columns


@dataclass
class Fake:
    """Translates by tagging each sentence; records what it was asked."""

    name: str
    tag: str
    seen: list = field(default_factory=list)

    def translate(self, texts, src, tgt):
        self.seen.extend(texts)
        return [f"{self.tag}[{t}]" for t in texts]


class TagQE:
    """QE = a fixed score per (tag, sentence) so the argmax is known in advance."""

    def __init__(self, table):
        self.table = table
        self.calls = 0

    def score(self, sources, translations):
        self.calls += 1
        return [self.table.get((mt.split("[")[0], src), 0.1) for src, mt in zip(sources, translations)]


def test_best_of_k_picks_argmax_per_sentence_and_keeps_format():
    a, b = Fake("A", "a"), Fake("B", "b")
    qe = TagQE({("a", "One."): 0.9, ("b", "One."): 0.5, ("a", "Two!"): 0.2, ("b", "Two!"): 0.7})
    text = "- One. Two!\n\n```\ncode stays\n```\n"
    [res] = translate_best_of_k([text], [a, b], qe, "en", "ko")
    assert res.text == "- a[One.] b[Two!]\n\n```\ncode stays\n```\n"
    assert res.winners == ["A", "B"] and res.sentence_scores == [0.9, 0.7]
    assert res.passage_score == pytest.approx(0.8)
    assert set(a.seen) == {"One.", "Two!"} and qe.calls == 1  # one batched QE call for all candidates


def test_ties_go_to_the_first_translator_and_sentences_are_translated_once():
    a, b = Fake("A", "a"), Fake("B", "b")
    res = translate_best_of_k(["Same. Same.", "Same."], [a, b], TagQE({}), "en", "ko")
    assert [r.winners for r in res] == [["A", "A"], ["A"]]
    assert a.seen == ["Same."]  # deduplicated across and within texts


def test_rejections_are_reasoned_not_truncated():
    a = Fake("A", "a")
    res = translate_best_of_k(["", "```\nonly code\n```", "x" * 30 + ".", "Fine."], [a], TagQE({}), "en", "ko", max_sentence_chars=20)
    assert [r.rejected for r in res] == ["empty source", "empty source", "a sentence is longer than max_sentence_chars=20", None]
    assert res[3].text == "a[Fine.]" and all(math.isnan(r.passage_score) for r in res[:3])
    assert a.seen == ["Fine."]


def test_translator_names_must_be_unique():
    with pytest.raises(ValueError, match="unique"):
        translate_best_of_k(["Hi."], [Fake("A", "a"), Fake("A", "b")], TagQE({}), "en", "ko")


def test_unknown_language_code_fails_before_any_work():
    a = Fake("A", "a")
    with pytest.raises(ValueError, match="unknown language code 'xx'"):
        translate_columns(pd.DataFrame({"t": ["Hi."]}), ["t"], [a], TagQE({}), "en", "xx", 100)
    assert a.seen == []


def test_translate_columns_and_keep_best_floor():
    df = pd.DataFrame({"q": [f"Q{i}." for i in range(10)] + [""], "r": [f"R{i}." for i in range(11)]})
    qe = TagQE({("a", f"Q{i}."): i / 10 for i in range(10)} | {("a", f"R{i}."): i / 10 for i in range(11)})
    out = translate_columns(df, ["q", "r"], [Fake("A", "a")], qe, "en", "ko", 100)
    assert out.loc[3, "q_ko"] == "a[Q3.]" and out.loc[3, "qe_score"] == pytest.approx(0.3)
    assert out.loc[10, "reject_reason"] == "q: empty source"
    kept, report = keep_best(out, 0.2)
    assert report == {"rows": 11, "rejected": 1, "dropped_low_qe": 2, "kept": 8, "qe_mean": pytest.approx(0.45), "qe_min_kept": pytest.approx(0.2)}
    assert list(kept["q"]) == [f"Q{i}." for i in range(2, 10)]


def test_an_empty_translation_rejects_the_row():
    class Silent(Fake):
        def translate(self, texts, src, tgt):
            return ["" if t == "Drop me." else f"{self.tag}[{t}]" for t in texts]

    df = pd.DataFrame({"q": ["Keep me.", "Drop me."]})
    out = translate_columns(df, ["q"], [Silent("S", "s")], TagQE({}), "en", "ko", 100)
    assert pd.isna(out.loc[0, "reject_reason"]) and out.loc[1, "reject_reason"] == "q: empty translation"
    kept, report = keep_best(out, 0.0)
    assert list(kept["q"]) == ["Keep me."] and report["rejected"] == 1


def test_clo_rows_have_four_fields_one_row_per_pair():
    pairs = pd.DataFrame({"prompt_id": ["p1", "p2"], "x_en": ["Hi?", "Yo?"], "y_en": ["Hello.", "Hey."],
                          "x_en_ko": ["안녕?", "요?"], "y_en_ko": ["안녕하세요.", "네."], "qe_score": [0.8, 0.6]})
    rows = clo_rows(pairs, "ko")
    assert list(rows.columns) == ["pair_id", "language", "x_en", "y_en", "x_l", "y_l", "qe_score"]
    assert rows.to_dict("records")[0] == {"pair_id": "p1", "language": "ko", "x_en": "Hi?", "y_en": "Hello.", "x_l": "안녕?", "y_l": "안녕하세요.", "qe_score": 0.8}


def test_xl_instruct_rows_append_a_template_and_use_the_translation():
    pairs = pd.DataFrame({"passage_id": ["p1"], "instruction": ["Explain tides."], "response_ko": ["조수는 ..."],
                          "qe_score": [0.7], "response_winners": [["A"]]})
    row = xl_instruct_rows(pairs, "ko", seed=0).iloc[0]
    assert row["messages"][0]["content"].startswith("Explain tides. ") and row["messages"][0]["content"].endswith("Korean.")
    assert row["messages"][1] == {"role": "assistant", "content": "조수는 ..."}


@pytest.mark.slow
def test_tiny_seq2seq_translates_offline_and_rejects_long_sources(tiny_models, tmp_path):
    from kowen_kedro.llm.cache import CallCache
    from kowen_kedro.translation.seq2seq import Seq2SeqTranslator, SourceTooLongError

    mt = Seq2SeqTranslator(tiny_models["models"]["mt"], max_new_tokens=16, max_source_tokens=40, cache=CallCache(tmp_path / "c.sqlite"))
    out = mt.translate(["What is the largest planet?", "Hello."], "en", "ko")
    assert len(out) == 2 and all(isinstance(o, str) for o in out)
    assert mt.translate(["What is the largest planet?"], "en", "ko") == out[:1]  # cached, same result
    with pytest.raises(SourceTooLongError, match="max_source_tokens=40"):
        mt.translate(["word " * 200], "en", "ko")
    with pytest.raises(ValueError, match="no language token"):
        mt.translate(["Hola."], "es", "ko")


def test_qe_batch_size_auto_is_one_pair_on_the_cpu_and_32_on_a_gpu():
    from kowen_kedro.translation.qe import qe_batch_size

    assert (qe_batch_size("auto", 0), qe_batch_size(None, 1), qe_batch_size(8, 0)) == (1, 32, 8)
    with pytest.raises(ValueError, match="batch_size must be >= 1 or auto, not 0"):
        qe_batch_size(0, 0)


@pytest.mark.slow
def test_a_qe_score_depends_on_its_pair_alone_not_on_its_batch_mates(tiny_models, world):
    """The same pairs scored all together, as a subset and in reverse order (other batch-mates, other
    padding), with the CPU's batch size: the same floats, not close ones."""
    from kowen_kedro.translation.qe import CometQE, qe_batch_size

    rows = world["parallel_sentences"].head(240)  # batched by 32 or 8, some of these scores change
    src, mt = list(rows["en"]), list(rows["ko"])
    qe = CometQE(tiny_models["models"]["qe"], batch_size=qe_batch_size("auto", 0))
    together = qe.score(src, mt)
    assert qe.score(src[1::3], mt[1::3]) == together[1::3]
    assert qe.score(src[::-1], mt[::-1])[::-1] == together
    assert len(set(together)) > 10


NODE_RUN = """
import sys
import pandas as pd
from kowen_kedro.datasets import JSONLinesDataset
from kowen_kedro.pipelines.translation_qe.nodes import translate_prompts_node
from kowen_kedro.translation.qe import CometQE
from kowen_kedro.translation.seq2seq import Seq2SeqTranslator
cache, mt, qe, prompts, out, log, conf = sys.argv[1:8]

def logged(kind, texts):  # every sentence the MT model translates, every pair QE scores, in order
    with open(log, "a") as f:
        f.write("".join(f"{kind}\\t{t}\\n" for t in texts))

generate = Seq2SeqTranslator._generate
Seq2SeqTranslator._generate = lambda self, texts, src, tgt: (logged("mt", texts), generate(self, texts, src, tgt))[1]
load = CometQE._load

def load_logged(self):
    model = load(self)
    if not getattr(model, "logged", False):
        predict = model.predict
        model.predict = lambda samples, **kw: (logged("qe", [s["mt"] for s in samples]), predict(samples, **kw))[1]
        model.logged = True
    return model

CometQE._load = load_logged
from kowen_kedro.parameters import recipe_params
base = recipe_params(conf)["translation_qe"]
params = {**base, "translators": [{"type": "seq2seq", "model_role": "mt", "batch_size": 8, "max_new_tokens": 16, "max_source_tokens": 256}],
          "qe": {**base["qe"], "batch_size": 8, "gpus": 0}, "splitter": {"type": "pysbd"}, "max_sentence_chars": 1000,
          "prompts": {"max_prompts": 1000}}
frame = translate_prompts_node(pd.read_json(prompts, lines=True), {"mt": mt, "qe": qe}, params, "en", "ko", {"cache_path": cache})
JSONLinesDataset(out).save(frame)
"""


@pytest.mark.slow
def test_translation_node_killed_in_mt_and_in_qe_resumes_and_writes_the_same_bytes(tiny_models, world, tmp_path):
    """The real translate_prompts_node (seq2seq MT, then COMET QE, both storing every 4 batches as they go),
    SIGKILLed once while translating and once while scoring: each rerun computes only what was not yet
    stored, and the node's saved output is byte-identical to an uninterrupted run's."""
    import subprocess
    import sys

    from conftest import ROOT
    from helpers.kill import start_and_kill

    sentences = list(dict.fromkeys(world["parallel_sentences"]["en"]))[:240]  # 240 distinct sentences, one prompt each
    assert len(sentences) == 240
    pd.DataFrame({"prompt_id": [f"p{i}" for i in range(240)], "prompt": sentences, "language": "en", "n_turns": 1}).to_json(
        tmp_path / "prompts.jsonl", orient="records", lines=True, force_ascii=False)
    script = tmp_path / "node.py"
    script.write_text(NODE_RUN)

    def run(name):
        return [sys.executable, str(script), str(tmp_path / f"{name}.sqlite"), tiny_models["models"]["mt"], tiny_models["models"]["qe"],
                str(tmp_path / "prompts.jsonl"), str(tmp_path / f"{name}.jsonl"), str(tmp_path / f"{name}.log"), str(ROOT / "conf")]

    def computed(name):
        lines = (tmp_path / f"{name}.log").read_text().splitlines()
        (tmp_path / f"{name}.log").write_text("")
        return [line.split("\t") for line in lines]

    subprocess.run(run("a"), check=True, capture_output=True)
    assert sorted(kind for kind, _ in computed("a")) == ["mt"] * 240 + ["qe"] * 240
    mt_stored = start_and_kill(run("b"), tmp_path / "b.sqlite", 64)  # mid-way through MT: every stored entry is a translation
    assert 64 <= mt_stored < 240 and mt_stored % 32 == 0 and {k for k, _ in computed("b")} == {"mt"}
    stored = start_and_kill(run("b"), tmp_path / "b.sqlite", 240 + 64)  # MT done, mid-way through QE
    qe_stored = stored - 240
    again = computed("b")
    assert 64 <= qe_stored < 240 and qe_stored % 32 == 0
    assert [k for k, _ in again if k == "mt"] == ["mt"] * (240 - mt_stored)  # only the sentences not yet translated
    assert not (tmp_path / "b.jsonl").exists()
    subprocess.run(run("b"), check=True, capture_output=True)
    last = computed("b")
    assert [k for k, _ in last] == ["qe"] * (240 - qe_stored)  # no translation, only the pairs not yet scored
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
