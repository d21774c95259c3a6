"""One model-loading rule for every loader: the device and dtype decision with the CUDA check stubbed,
and every loader of the project going through it."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from kowen_kedro import loading


@pytest.fixture
def gpu(monkeypatch):
    """A machine with a bf16-capable GPU, as far as the loading rule can tell."""
    monkeypatch.setattr(loading, "cuda_available", lambda: True)
    monkeypatch.setattr(loading, "_bf16_supported", lambda: True)


@pytest.fixture
def cpu(monkeypatch):
    monkeypatch.setattr(loading, "cuda_available", lambda: False)


def test_the_rule(monkeypatch, gpu):
    assert loading.placement() == loading.Placement("cuda", "bfloat16")
    monkeypatch.setattr(loading, "_bf16_supported", lambda: False)  # e.g. a V100
    assert loading.placement().dtype == "float16"
    assert loading.placement("cpu") == loading.Placement("cpu", "float32")  # configured device wins
    assert loading.placement(None, "float32", "flash_attention_2") == loading.Placement("cuda", "float32", "flash_attention_2")
    assert loading.comet_gpus() == 1
    with pytest.raises(ValueError, match="dtype must be one of"):
        loading.placement(None, "fp8")


def test_the_rule_without_a_gpu(cpu, monkeypatch):
    assert loading.placement() == loading.Placement("cpu", "float32") and loading.comet_gpus() == 0
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert loading.local_files_only()
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert not loading.local_files_only()


class Recorder:
    """Stands in for from_pretrained: records (model class, path, placement) and returns a stub model."""

    def __init__(self, monkeypatch):
        self.calls = []
        monkeypatch.setattr(loading, "_load", self._load)
        monkeypatch.setattr(loading, "load_tokenizer", lambda path, padding_side=None, **kw: SimpleNamespace(
            path=path, padding_side=padding_side, pad_token_id=0, eos_token_id=1, **kw))

    def _load(self, auto_class, path, where, **kwargs):
        self.calls.append((auto_class.__name__, path, where))
        return SimpleNamespace(device=where.device)


@pytest.mark.parametrize("machine, expected", [("gpu", loading.Placement("cuda", "bfloat16")),
                                               ("cpu", loading.Placement("cpu", "float32"))])
def test_every_loader_follows_the_rule(request, monkeypatch, machine, expected):
    request.getfixturevalue(machine)
    rec = Recorder(monkeypatch)
    from kowen_kedro.evaluation.judges import LocalChoiceJudge, LocalPairwiseJudge
    from kowen_kedro.llm.backends import TransformersBackend
    from kowen_kedro.rewards.analysis import last_token_states
    from kowen_kedro.rewards.scoring import RewardScorer
    from kowen_kedro.translation.qe import qe_gpus
    from kowen_kedro.translation.seq2seq import Seq2SeqTranslator

    TransformersBackend("policy")._load()
    RewardScorer("rm")._load()
    LocalPairwiseJudge("judge")._load()
    Seq2SeqTranslator("mt")._load()
    with pytest.raises(TypeError):  # the stub tokenizer cannot run: what matters is how the body was loaded
        last_token_states("body", ["text"])
    choice = LocalChoiceJudge("judge-choice")
    with pytest.raises(AttributeError):  # the stub tokenizer has no chat template
        choice._grade([{"role": "user", "content": "x"}], 1, 2)
    assert [(cls, path) for cls, path, _ in rec.calls] == [
        ("AutoModelForCausalLM", "policy"), ("AutoModelForSequenceClassification", "rm"), ("AutoModelForCausalLM", "judge"),
        ("AutoModelForSeq2SeqLM", "mt"), ("AutoModel", "body"), ("AutoModelForCausalLM", "judge-choice")]
    assert {where for _, _, where in rec.calls} == {expected}
    assert qe_gpus("auto") == (1 if machine == "gpu" else 0) and qe_gpus(2) == 2
