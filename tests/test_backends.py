"""Generation backends: the OpenAI-compatible path against a scripted loopback server, the worker
subprocess, and a SIGKILL in the middle of generation followed by a rerun."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from helpers.fake_openai import FakeOpenAI
from kowen_kedro.llm.backends import CachedGenerator, GenerationError, OpenAIBackend, SamplingParams, make_backend
from kowen_kedro.llm.cache import CallCache

MSG = [{"role": "user", "content": "hello"}]
FAST = dict(api_key="test-key", timeout=0.5, max_retries=3, malformed_retries=2)


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    """The openai client's backoff starts at 0.5 s; shrink it so retry tests take milliseconds."""
    import openai._constants as c

    monkeypatch.setattr(c, "INITIAL_RETRY_DELAY", 0.01)
    monkeypatch.setattr(c, "MAX_RETRY_DELAY", 0.02)


def test_retries_429_and_500_then_succeeds():
    with FakeOpenAI([429, 500, "ok"]) as server:
        out = OpenAIBackend("m", base_url=server.base_url, **FAST).generate([MSG], SamplingParams(), 0)
    assert out[0].text == "echo: hello" and (out[0].prompt_tokens, out[0].completion_tokens) == (10, 5)
    assert len(server.requests) == 3


def test_persistent_500_fails_after_client_retries():
    with FakeOpenAI([500]) as server:
        with pytest.raises(GenerationError, match="failed after retries"):
            OpenAIBackend("m", base_url=server.base_url, **FAST).generate([MSG], SamplingParams(), 0)
    assert len(server.requests) == FAST["max_retries"] + 1


def test_connection_refused_is_retried_then_reported():
    import socket

    with socket.socket() as sock:  # a loopback port with nothing listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(GenerationError, match="failed after retries"):
        OpenAIBackend("m", base_url=f"http://127.0.0.1:{port}/v1", **FAST).generate([MSG], SamplingParams(), 0)


def test_timeout_is_retried():
    with FakeOpenAI(["slow", "ok"], slow_seconds=1.5) as server:
        out = OpenAIBackend("m", base_url=server.base_url, **FAST).generate([MSG], SamplingParams(), 0)
    assert out[0].text == "echo: hello" and len(server.requests) == 2


@pytest.mark.parametrize("bad", ["malformed", "no_choices"])
def test_malformed_bodies_are_retried_then_reported(bad):
    with FakeOpenAI([bad, "ok"]) as server:
        out = OpenAIBackend("m", base_url=server.base_url, **FAST).generate([MSG], SamplingParams(), 0)
    assert out[0].text == "echo: hello"
    with FakeOpenAI([bad]) as server:
        with pytest.raises(GenerationError, match="malformed"):
            OpenAIBackend("m", base_url=server.base_url, **FAST).generate([MSG], SamplingParams(), 0)
    assert len(server.requests) >= FAST["malformed_retries"] + 1


def test_concurrent_calls_keep_order_and_are_priced(tmp_path):
    with FakeOpenAI(["ok"]) as server:
        backend = OpenAIBackend("m", base_url=server.base_url, concurrency=4, price_per_million={"input": 2.5, "output": 10.0}, **FAST)
        gen = CachedGenerator(backend, CallCache(tmp_path / "c.sqlite"), progress=False)
        reqs = [[{"role": "user", "content": f"q{i}"}] for i in range(12)]
        out = gen.generate(reqs, SamplingParams(), n=1)
    assert [o[0].text for o in out] == [f"echo: q{i}" for i in range(12)]
    assert gen.stats.calls == 12 and gen.stats.cost_usd == pytest.approx(12 * (10 * 2.5 + 5 * 10.0) / 1e6)
    assert all(r["model"] == "m" and r["max_tokens"] == 256 for r in server.requests)


def test_api_key_never_appears_in_reprs():
    backend = OpenAIBackend("m", api_key="sk-secret-value")
    assert "sk-secret-value" not in repr(backend)


def test_backend_options_are_checked():
    with pytest.raises(ValueError, match="unknown options"):
        make_backend({"backend": "openai", "bogus": 1}, "m")


@pytest.mark.slow
def test_worker_subprocess_matches_in_process(tiny_models):
    teacher = tiny_models["models"]["teacher"]
    reqs = [[{"role": "user", "content": "What is photosynthesis?"}], [{"role": "user", "content": "김치찌개 끓이는 법"}]]
    params = SamplingParams(max_new_tokens=10, seed=3)
    local = make_backend({"backend": "transformers"}, teacher).generate(reqs, params, 1)
    worker = make_backend({"backend": "transformers", "subprocess": True}, teacher)
    try:
        remote = worker.generate(reqs, params, 1)
        assert worker._proc.poll() is None  # one long-lived process
        remote_again = worker.generate(reqs[:1], params, 1)
    finally:
        worker.close()
    assert [c.text for c in remote] == [c.text for c in local]
    assert remote_again[0].text == local[0].text
    assert worker._proc is None


SLOW_RUN = """
import json, sys, time
from kowen_kedro.llm.backends import CachedGenerator, Completion, SamplingParams
from kowen_kedro.llm.cache import CallCache

class Slow:
    name, model = "slow", "slow-model"
    def generate(self, requests, params, sample_index):
        time.sleep(float(sys.argv[3]))
        out = [Completion(text=r[-1]["content"].upper(), finish_reason="stop") for r in requests]
        with open(sys.argv[2], "a") as log:  # every call the backend completed
            for r in requests:
                log.write(r[-1]["content"] + "\\n")
        return out

gen = CachedGenerator(Slow(), CallCache(sys.argv[1]), flush_every=4, progress=False)
res = gen.generate([[{"role": "user", "content": f"p{i}"}] for i in range(40)], SamplingParams(), n=1)
print(json.dumps({"calls": gen.stats.calls, "cached": gen.stats.cached, "texts": [r[0].text for r in res]}))
"""


@pytest.mark.slow
def test_sigkill_mid_generation_then_rerun(tmp_path):
    script = tmp_path / "gen.py"
    script.write_text(SLOW_RUN)
    cache, log = tmp_path / "cache.sqlite", tmp_path / "calls.log"
    proc = subprocess.Popen([sys.executable, str(script), str(cache), str(log), "0.2"], stdout=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and (not log.exists() or len(log.read_text().split()) < 12):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    first = log.read_text().split()
    stored = len(CallCache(cache))
    assert 0 < stored < 40  # killed part-way; finished batches are durable
    assert len(first) - 4 <= stored <= len(first)  # at most the one batch in flight (4 calls) was lost
    log.write_text("")
    out = json.loads(subprocess.run([sys.executable, str(script), str(cache), str(log), "0"], capture_output=True, text=True, check=True).stdout)
    second = log.read_text().split()
    assert out["cached"] == stored and out["calls"] == 40 - stored
    assert set(second).isdisjoint(set(first[:stored]))  # nothing already stored was asked again
    assert out["texts"] == [f"P{i}" for i in range(40)]
    assert len(CallCache(cache)) == 40
    third = json.loads(subprocess.run([sys.executable, str(script), str(cache), str(log), "0"], capture_output=True, text=True, check=True).stdout)
    assert third["calls"] == 0 and third["cached"] == 40  # a finished step rerun makes 0 calls
