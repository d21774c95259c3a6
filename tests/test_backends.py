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
from kowen_kedro.llm.backends import GenerationError, OpenAIBackend, SamplingParams
from kowen_kedro.llm.cache import CallCache
from kowen_kedro.llm.generator import CachedGenerator, make_backend

MSG = [{"role": "user", "content": "hello"}]
# No client timeout in play unless a test is about one: an answer that a loaded machine serves late must
# not be retried into an extra request, which would change what the tests count.
FAST = dict(api_key="test-key", timeout=60.0, max_retries=3, malformed_retries=2)


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
    """The first answer comes after the client's timeout; the call is retried and answered. (On a loaded
    machine a retry may time out too before one is answered, so the count is a lower bound.)"""
    with FakeOpenAI(["slow", "ok"], slow_seconds=5.0) as server:
        out = OpenAIBackend("m", base_url=server.base_url, **{**FAST, "timeout": 1.0}).generate([MSG], SamplingParams(), 0)
    assert out[0].text == "echo: hello" and len(server.requests) >= 2


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
from kowen_kedro.llm.backends import Completion, SamplingParams
from kowen_kedro.llm.generator import CachedGenerator
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


TEACHER_RUN = """
import sys
import pandas as pd
import yaml
from kedro.io import DataCatalog
from kowen_kedro.pipelines.data_synthesis.nodes import single_turn_node
cache, teacher, batch, prompts, out, catalog_yml = sys.argv[1:7]
teacher_cfg = {"backend": {"backend": "transformers", "batch_size": int(batch)},
               "sampling": {"max_new_tokens": 16, "temperature": 1.0, "top_p": 0.95, "seed": 0}, "language_filter": False}
rows, _ = single_turn_node(pd.read_json(prompts, lines=True), {"teacher": teacher}, "en", teacher_cfg, {"cache_path": cache}, ["en", "ko"])
entry = {k: v for k, v in yaml.safe_load(open(catalog_yml))["en_single_turn"].items() if k not in ("versioned", "metadata")}
DataCatalog.from_config({"en_single_turn": {**entry, "filepath": out}}).save("en_single_turn", rows)
"""


@pytest.mark.slow
def test_sampled_teacher_data_killed_and_resumed_is_byte_identical(tiny_models, world, tmp_path):
    """A sample is a function of its key (request, settings, sample index), so a generation
    killed with SIGKILL and resumed with another batch size writes exactly the bytes of an uninterrupted
    run (the real node, the transformers backend sampling at temperature 1, the catalog's dataset)."""
    from conftest import ROOT
    from helpers.kill import start_and_kill
    from kowen_kedro.data.prompts import ingest_prompts

    prompts = ingest_prompts(world["user_prompts"], 2000, ["en", "ko"])[0]
    prompts = prompts[prompts["language"] == "en"].head(256)
    prompts_file = tmp_path / "prompts.jsonl"
    prompts.to_json(prompts_file, orient="records", lines=True, force_ascii=False)
    script = tmp_path / "teacher.py"
    script.write_text(TEACHER_RUN)
    teacher, catalog = tiny_models["models"]["teacher"], str(ROOT / "conf/base/catalog.yml")

    def run(cache, batch, out):
        return [sys.executable, str(script), str(cache), teacher, str(batch), str(prompts_file), str(out), catalog]

    subprocess.run(run(tmp_path / "a.sqlite", 16, tmp_path / "a.jsonl"), check=True, capture_output=True)
    cache_b = tmp_path / "b.sqlite"
    stored = start_and_kill(run(cache_b, 4, tmp_path / "b.jsonl"), cache_b, 64)
    assert 0 < stored < 256 and not (tmp_path / "b.jsonl").exists()  # killed mid-generation, nothing written
    subprocess.run(run(cache_b, 8, tmp_path / "b.jsonl"), check=True, capture_output=True)  # resumed, other batch size
    a, b = (tmp_path / "a.jsonl").read_bytes(), (tmp_path / "b.jsonl").read_bytes()
    assert len(a.splitlines()) > 200 and a == b  # (empty answers are dropped)
    assert len({json.loads(line)["messages"][-1]["content"] for line in a.splitlines()}) > 50  # sampled, not one answer


def test_openai_requests_carry_a_seed_that_is_a_function_of_the_key():
    """The seed sent per request depends on the request, the settings and the sample index only."""
    from kowen_kedro.llm.backends import api_seed

    a, b = [{"role": "user", "content": "a"}], [{"role": "user", "content": "b"}]
    p = SamplingParams(temperature=1.0, seed=0)
    with FakeOpenAI(["ok", "ok", "ok"]) as server:
        backend = OpenAIBackend("m", base_url=server.base_url, **FAST)
        backend.generate([a, b], p, 0)
        backend.generate([b], p, 1)
    seeds = [r["seed"] for r in server.requests]  # the first two go out concurrently: any order
    assert sorted(seeds[:2]) == sorted([api_seed(a, p, 0), api_seed(b, p, 0)]) and seeds[2] == api_seed(b, p, 1)
    assert len(set(seeds)) == 3 and all(0 <= s < 2**31 for s in seeds)
    assert api_seed(a, p, 0) == api_seed(list(a), SamplingParams(temperature=1.0, seed=0), 0)
    assert api_seed(a, p, 0) != api_seed(a, SamplingParams(temperature=1.0, seed=1), 0)


def test_requests_are_spread_over_servers_and_a_failing_one_hands_its_requests_on(caplog):
    """Two servers (one ``vllm serve`` per machine): request i goes to server i mod 2; the second starts
    failing after two answers (500 past the client's retries), is taken out with one warning naming it,
    and its requests are answered by the first, in order."""
    with FakeOpenAI(["ok"]) as a, FakeOpenAI(["ok", "ok", 500]) as b:
        backend = OpenAIBackend("m", base_url=[a.base_url, b.base_url], concurrency=1, **FAST)
        reqs = [[{"role": "user", "content": f"q{i}"}] for i in range(12)]
        with caplog.at_level("WARNING", logger="kowen_kedro.llm.backends"):
            out = backend.generate(reqs, SamplingParams(), 0)
            again = backend.generate(reqs[:4], SamplingParams(), 0)  # the server stays out for the node
    assert [c.text for c in out] == [f"echo: q{i}" for i in range(12)] and [c.text for c in again] == [c.text for c in out[:4]]
    answered_b = [r["messages"][0]["content"] for r in b.requests[:2]]
    assert answered_b == ["q1", "q3"] and len(b.requests) == 2 + FAST["max_retries"] + 1  # then 500s, retried, given up
    assert {r["messages"][0]["content"] for r in a.requests} == {f"q{i}" for i in range(12) if f"q{i}" not in answered_b} | {"q0", "q1", "q2", "q3"}
    warnings = [r.getMessage() for r in caplog.records if "stopped answering" in r.getMessage()]
    assert len(warnings) == 1 and b.base_url in warnings[0] and "1 left" in warnings[0]


def test_a_server_that_is_gone_leaves_the_others_and_none_left_fails_naming_them(caplog):
    """Requests in flight to a server that is gone fail at once, together: it is taken out once, with one
    warning; the others answer everything; with none left the call fails naming every server."""
    from kowen_kedro.ports import free_port

    gone = f"http://127.0.0.1:{free_port()}/v1"  # a loopback port with nothing listening: a server that was killed
    with FakeOpenAI(["ok"]) as a, caplog.at_level("WARNING", logger="kowen_kedro.llm.backends"):
        backend = OpenAIBackend("m", base_url=[gone, a.base_url], concurrency=4, **FAST)
        out = backend.generate([[{"role": "user", "content": f"q{i}"}] for i in range(16)], SamplingParams(), 0)
    assert [c.text for c in out] == [f"echo: q{i}" for i in range(16)] and backend._down == {gone}
    warnings = [r.getMessage() for r in caplog.records if "stopped answering" in r.getMessage()]
    assert len(warnings) == 1 and gone in warnings[0]
    other = gone.replace("/v1", "/w1")
    with pytest.raises(GenerationError, match="no server answers") as err:
        OpenAIBackend("m", base_url=[gone, other], **FAST).generate([MSG], SamplingParams(), 0)
    assert f"({gone}, {other})" in str(err.value)
