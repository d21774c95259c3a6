"""`make bench`: speed figures of the CPU paths, printed and saved to data/08_reporting/bench.json and
docs/bench.json, and the `make bench` table of docs/benchmarks.md rewritten from them (benchmarks/tables.py).

* transformers backend: generation throughput one-by-one (batch 1) vs batched (batch 16);
* call cache: time of a rerun served from the cache, as a ratio of the first run;
* COMET QE (the tiny UnifiedMetric): segments/s at batch sizes 1, 8 and 32;
* DPO reference-model cost: wall time of ``trainer.train()`` with a reference model forward per step
  vs reference log-probs precomputed once (TRL ``precompute_ref_log_probs``), 1 and 3 epochs;
* vLLM (the offline engine in its own environment, through the generation worker) vs the transformers
  backend on the same prompts, model and greedy decoding: the tiny teacher, and a Qwen2.5-0.5B-shaped
  model with random weights built from its configuration (``benchmarks/train_throughput.py``); new
  tokens/s of each, their ratio and the engine's start. Without vLLM's environment (``make vllm-env``)
  these figures are left out and the table says so.
Runs on the built-in tiny teacher (built first if missing). Figures depend on the machine: compare
runs on the same machine only.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/tables.py


def tiny_models() -> dict:
    """The default run's tiny models (built from the tiny world of seed 0 if missing, as `kedro run` does)."""
    from kowen_kedro.datasets import WorldPartDataset
    from kowen_kedro.parameters import recipe_params
    from kowen_kedro.pipelines.models.nodes import build_tiny_models_node

    raw = {n: WorldPartDataset(n, seed=0, directory=str(ROOT / "data/01_raw/world")).load()
           for n in ("user_prompts", "preference_pairs", "seed_passages", "parallel_sentences")}
    params = {**recipe_params(ROOT / "conf")["tiny_models"], "out_dir": str(ROOT / "data/06_models/tiny")}  # kedro run's
    manifest = build_tiny_models_node(raw["user_prompts"], raw["preference_pairs"], raw["seed_passages"], params,
                                      ["en", "ko"], None, raw["parallel_sentences"])
    return manifest["models"]


def main() -> None:
    from kowen_kedro.offline import configure_offline

    configure_offline()
    import torch

    from kowen_kedro.llm.backends import SamplingParams, TransformersBackend
    from kowen_kedro.llm.generator import CachedGenerator
    from kowen_kedro.llm.cache import CallCache

    torch.set_num_threads(max(1, torch.get_num_threads()))
    models = tiny_models()
    teacher = models["teacher"]
    prompts = [json.loads(l)["conversation"][0]["content"] for l in open(ROOT / "data/01_raw/user_prompts.jsonl")][:32]
    requests = [[{"role": "user", "content": p}] for p in prompts]
    params = SamplingParams(max_new_tokens=32, temperature=0.7, seed=0)
    results: dict[str, float] = {}
    for batch in (1, 16):
        backend = TransformersBackend(teacher, batch_size=batch)
        backend.generate(requests[:2], params, 0)  # load + warm up
        t = time.perf_counter()
        out = backend.generate(requests, params, 0)
        dt = time.perf_counter() - t
        toks = sum(c.completion_tokens for c in out)
        results[f"generate_batch{batch}_requests_per_s"] = len(requests) / dt
        results[f"generate_batch{batch}_tokens_per_s"] = toks / dt
    results["batched_speedup"] = results["generate_batch16_requests_per_s"] / results["generate_batch1_requests_per_s"]
    with tempfile.TemporaryDirectory() as tmp:
        gen = CachedGenerator(TransformersBackend(teacher, batch_size=16), CallCache(Path(tmp) / "c.sqlite"), progress=False)
        t = time.perf_counter()
        gen.generate(requests, params, n=2)
        first = time.perf_counter() - t
        gen2 = CachedGenerator(TransformersBackend(teacher, batch_size=16), CallCache(Path(tmp) / "c.sqlite"), progress=False)
        t = time.perf_counter()
        gen2.generate(requests, params, n=2)
        rerun = time.perf_counter() - t
        assert gen2.stats.calls == 0
    results["cache_first_run_s"] = first
    results["cache_rerun_s"] = rerun
    results["cache_rerun_ratio"] = rerun / first
    from kowen_kedro.translation.qe import CometQE

    pairs = [json.loads(l) for l in open(ROOT / "data/01_raw/preference_pairs.jsonl")]
    src = [p["chosen"] for p in pairs if p["language"] == "en"] * 3
    mt = [p["chosen"] for p in pairs if p["language"] == "ko"] * 3
    for batch in (1, 8, 32):
        qe = CometQE(models["qe"], batch_size=batch)
        qe.score(src[:2], mt[:2])  # load + warm up
        t = time.perf_counter()
        qe.score(src, mt)
        results[f"qe_batch{batch}_segments_per_s"] = len(src) / (time.perf_counter() - t)
    results.update(dpo_reference_cost(models["student"], pairs))
    results.update(vllm_vs_transformers(teacher, models_prompts(), "tiny", n=64, batch=32))
    with tempfile.TemporaryDirectory(prefix="kowen-bench-") as tmp:
        import train_throughput

        random_05b = train_throughput.build_model("qwen2.5-0.5b", 512, Path(tmp))
        results.update(vllm_vs_transformers(str(random_05b), models_prompts(), "qwen05b", n=32, batch=32, agreement=False))
    out_path = ROOT / "data/08_reporting/bench.json"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(results, indent=2))
    width = max(map(len, results))
    for k, v in results.items():
        print(f"{k:<{width}}  {v:10.4f}")
    print(f"(saved to {out_path.relative_to(ROOT)})")
    import datetime

    from tables import machine, rewrite

    bench = {"date": datetime.date.today().isoformat(), "machine": machine(), "results": results}
    (ROOT / "docs/bench.json").write_text(json.dumps(bench, indent=2) + "\n")
    rewrite(ROOT / "docs/benchmarks.md", bench)
    print("(docs/bench.json and the table of docs/benchmarks.md rewritten)")


def models_prompts() -> list[str]:
    return [json.loads(l)["conversation"][0]["content"] for l in open(ROOT / "data/01_raw/user_prompts.jsonl")]


def vllm_vs_transformers(model: str, prompts: list[str], label: str, n: int, batch: int, new_tokens: int = 32,
                         agreement: bool = True) -> dict[str, float]:
    """New tokens/s of the transformers backend (``batch`` prompts per ``generate``) and of the vLLM worker
    (every prompt in one engine call) on the same ``n`` prompts, greedy, ``new_tokens`` at most, each
    after a warm-up call (the engine's start is timed apart); {} without vLLM's environment."""
    import sys as _sys

    from kowen_kedro.llm.backends import SamplingParams, TransformersBackend
    from kowen_kedro.llm.envs import worker_python
    from kowen_kedro.llm.generator import make_backend

    if worker_python("vllm") == _sys.executable:
        print(f"vLLM figures ({label}) left out: no vLLM environment (make vllm-env)")
        return {}
    requests = [[{"role": "user", "content": prompts[i % len(prompts)]}] for i in range(n)]
    greedy = SamplingParams(max_new_tokens=new_tokens, temperature=0.0, top_p=1.0)
    out: dict[str, float] = {}
    local = TransformersBackend(model, batch_size=batch)
    local.generate(requests[:2], greedy, 0)  # load + warm up
    t = time.perf_counter()
    answers = local.generate(requests, greedy, 0)
    out[f"{label}_transformers_tokens_per_s"] = sum(c.completion_tokens for c in answers) / (time.perf_counter() - t)
    del local
    worker = make_backend({"backend": "vllm", "max_model_len": 512}, model)
    try:
        t = time.perf_counter()
        worker.generate(requests[:2], greedy, 0)  # the engine starts (process, imports, weights, KV cache)
        out[f"{label}_vllm_start_s"] = time.perf_counter() - t
        t = time.perf_counter()
        served = worker.generate(requests, greedy, 0)
        out[f"{label}_vllm_tokens_per_s"] = sum(c.completion_tokens for c in served) / (time.perf_counter() - t)
    finally:
        worker.close()
    out[f"{label}_vllm_speedup"] = out[f"{label}_vllm_tokens_per_s"] / out[f"{label}_transformers_tokens_per_s"]
    if agreement:  # a trained model's answers (random weights give near-tied logits and mostly undecodable ids)
        out[f"{label}_greedy_agreement"] = sum(a.text == b.text for a, b in zip(answers, served)) / n
    return out


def dpo_reference_cost(policy: str, pairs: list[dict]) -> dict[str, float]:
    """Seconds of ``DPOTrainer.train()`` (precompute included) with and without precomputed reference log-probs."""
    import tempfile

    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    rows = [{"prompt": [{"role": "user", "content": r["prompt"]}],
             "chosen": [{"role": "assistant", "content": r["chosen"]}],
             "rejected": [{"role": "assistant", "content": r["rejected"]}]} for r in pairs]
    out: dict[str, float] = {}
    for epochs in (1, 3):
        for precompute in (False, True):
            with tempfile.TemporaryDirectory() as tmp:
                args = DPOConfig(output_dir=tmp, per_device_train_batch_size=8, num_train_epochs=epochs, max_length=128,
                                 learning_rate=1e-5, report_to=[], use_cpu=True, save_strategy="no", logging_steps=1000,
                                 disable_tqdm=True, precompute_ref_log_probs=precompute, seed=0, bf16=False)
                trainer = DPOTrainer(model=AutoModelForCausalLM.from_pretrained(policy), args=args,
                                     train_dataset=Dataset.from_list(rows), processing_class=AutoTokenizer.from_pretrained(policy))
                t = time.perf_counter()
                trainer.train()
                out[f"dpo_{epochs}ep_{'precomputed_ref' if precompute else 'ref_forward'}_s"] = time.perf_counter() - t
        out[f"dpo_{epochs}ep_precompute_speedup"] = out[f"dpo_{epochs}ep_ref_forward_s"] / out[f"dpo_{epochs}ep_precomputed_ref_s"]
    return out


if __name__ == "__main__":
    main()
