"""`make bench-gpu` (inference part): generation, reward-model scoring and COMET QE throughput.

Each figure goes through the project's own code path, on models with random weights built from the
public configs (no hub):

* generation: :class:`kowen_kedro.llm.backends.TransformersBackend` (left-padded batched ``generate``,
  bf16 on a GPU) on a Qwen2.5-0.5B/1.5B-shaped policy, a fixed number of new tokens per request
  (EOS suppressed), at several batch sizes;
* RM scoring: :class:`kowen_kedro.rewards.scoring.RewardScorer` on the same shape with a scalar head,
  prompt + completion of about ``--rm-tokens`` tokens per row;
* vLLM generation: the offline engine in vLLM's own environment (``make vllm-env``) through the
  generation worker, on the same model and prompts, every request in one engine call; the row says
  why when there is no such environment;
* QE: :class:`kowen_kedro.translation.qe.CometQE` (unbabel-comet ``predict``) on a COMET UnifiedMetric
  over an encoder the size of CometKiwi-22's (InfoXLM-large: 24 layers x 1024, 16 heads).

    python benchmarks/gpu_inference.py --shape qwen2.5-0.5b                 # on a GPU
    python benchmarks/gpu_inference.py --shape micro --qe-shape micro --quick   # CPU smoke run

Results are printed as markdown and written to ``data/08_reporting/bench_gpu_inference_<shape>.json``.
Generation with random weights produces random tokens; the speed of ``generate`` does not depend on
what the tokens say once their number is fixed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

#: COMET encoders: CometKiwi-22 (Unbabel/wmt22-cometkiwi-da) is InfoXLM-large; ``micro`` for CPU tests.
QE_SHAPES = {
    "cometkiwi-22": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096),
    "micro": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128),
}


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _device_name() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def generation(model_dir: Path, prompts: list[str], batches: list[int], new_tokens: int, requests_per_batch: int,
               temperature: float = 0.7) -> list[dict]:
    """Requests/s and new tokens/s of the transformers backend; each batch size runs ``requests_per_batch``
    full batches after one warm-up batch."""
    import torch

    from kowen_kedro.llm.backends import SamplingParams, TransformersBackend

    rows = []
    for batch in batches:
        backend = TransformersBackend(str(model_dir), batch_size=batch)
        backend._load()
        backend._lm.generation_config.eos_token_id = None  # random weights: never stop early, every request is new_tokens long
        backend._lm.generation_config.min_new_tokens = new_tokens
        n = batch * requests_per_batch
        requests = [[{"role": "user", "content": prompts[i % len(prompts)]}] for i in range(n)]
        params = SamplingParams(max_new_tokens=new_tokens, temperature=temperature, seed=0)
        backend.generate(requests[:batch], params, 0)  # warm-up (kernels, allocator)
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        _sync()
        start = time.perf_counter()
        out = backend.generate(requests, params, 1)
        _sync()
        seconds = time.perf_counter() - start
        tokens = sum(c.completion_tokens for c in out)
        rows.append({
            "what": "generation", "batch": batch, "temperature": temperature, "requests": n, "new_tokens_per_request": new_tokens,
            "seconds": seconds, "requests_per_s": n / seconds, "tokens_per_s": tokens / seconds,
            "generated_tokens": tokens,
            "max_memory_allocated_gib": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None,
        })
        del backend
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return rows


def vllm_generation(model_dir: Path, prompts: list[str], n: int, new_tokens: int, temperature: float = 0.7) -> list[dict]:
    """New tokens/s of the vLLM worker on ``n`` requests (one engine call after a warm-up call; the
    engine's start timed apart); a row naming the reason when vLLM's environment is missing."""
    from kowen_kedro.llm.backends import SamplingParams
    from kowen_kedro.llm.envs import worker_python
    from kowen_kedro.llm.generator import make_backend

    if worker_python("vllm") == sys.executable:
        return [{"what": "vllm_generation", "batch": n, "skipped": "no vLLM environment (make vllm-env)"}]
    requests = [[{"role": "user", "content": prompts[i % len(prompts)]}] for i in range(n)]
    params = SamplingParams(max_new_tokens=new_tokens, temperature=temperature, seed=0)
    worker = make_backend({"backend": "vllm", "max_model_len": 4096}, str(model_dir))
    try:
        start = time.perf_counter()
        worker.generate(requests[:2], params, 0)
        started = time.perf_counter() - start
        start = time.perf_counter()
        out = worker.generate(requests, params, 1)
        seconds = time.perf_counter() - start
    finally:
        worker.close()
    tokens = sum(c.completion_tokens for c in out)
    return [{"what": "vllm_generation", "batch": n, "temperature": temperature, "requests": n, "new_tokens_per_request": new_tokens,
             "seconds": seconds, "requests_per_s": n / seconds, "tokens_per_s": tokens / seconds, "generated_tokens": tokens,
             "engine_start_s": started, "max_memory_allocated_gib": None}]


def reward_scoring(rm_dir: Path, texts: list[str], batches: list[int], rows_n: int) -> list[dict]:
    """Rows/s and tokens/s of :class:`RewardScorer` (no cache: every row is scored)."""
    import torch

    from kowen_kedro.rewards.scoring import RewardScorer

    prompts = [texts[(2 * i) % len(texts)] for i in range(rows_n)]
    completions = [texts[(2 * i + 1) % len(texts)] for i in range(rows_n)]
    out = []
    for batch in batches:
        scorer = RewardScorer(str(rm_dir), batch_size=batch, max_length=2048)
        scorer.score(prompts[:batch], completions[:batch])  # load + warm-up
        tok = scorer._tok
        chats = [tok.apply_chat_template([{"role": "user", "content": p}, {"role": "assistant", "content": c}], tokenize=False)
                 for p, c in zip(prompts, completions)]
        tokens = sum(min(len(ids), scorer.max_length) for ids in tok(chats, add_special_tokens=False)["input_ids"])
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        _sync()
        start = time.perf_counter()
        scores = scorer.score(prompts, completions)
        _sync()
        seconds = time.perf_counter() - start
        assert len(scores) == rows_n
        out.append({
            "what": "rm_scoring", "batch": batch, "rows": rows_n, "tokens": tokens, "seconds": seconds,
            "rows_per_s": rows_n / seconds, "tokens_per_s": tokens / seconds,
            "max_memory_allocated_gib": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None,
        })
        del scorer
    return out


def qe_scoring(ckpt: Path, sources: list[str], translations: list[str], batches: list[int]) -> list[dict]:
    """Segments/s of :class:`CometQE` (unbabel-comet ``predict``; no cache)."""
    import torch

    from kowen_kedro.translation.qe import CometQE

    out = []
    for batch in batches:
        qe = CometQE(str(ckpt), batch_size=batch, gpus=1 if torch.cuda.is_available() else 0)
        qe.score(sources[:batch], translations[:batch])  # load + warm-up
        _sync()
        start = time.perf_counter()
        scores = qe.score(sources, translations)
        _sync()
        seconds = time.perf_counter() - start
        assert len(scores) == len(sources)
        out.append({"what": "qe_scoring", "batch": batch, "segments": len(sources), "seconds": seconds,
                    "segments_per_s": len(sources) / seconds})
        del qe
    return out


def build_rm(lm_dir: Path, out: Path) -> Path:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(lm_dir)
    dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    rm = AutoModelForSequenceClassification.from_pretrained(lm_dir, num_labels=1, pad_token_id=tok.pad_token_id, dtype=dtype)
    rm.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def build_qe(texts: list[str], shape: str, out: Path) -> Path:
    from dataclasses import replace

    from kowen_kedro.groups import TinyModels
    from kowen_kedro.parameters import recipe_params
    from kowen_kedro.tiny.build import build_tiny_comet_qe

    base = TinyModels.of(recipe_params(Path(__file__).resolve().parents[1] / "conf")["tiny_models"]).config()
    cfg = replace(base, qe_steps=0, qe_vocab_size=8000)
    return build_tiny_comet_qe(texts, out, cfg, encoder=QE_SHAPES[shape])


def markdown(results: dict) -> str:
    dev = results["device"]
    lines = [f"device: {dev}", "", "| what | shape | batch | work | s | throughput | peak mem |", "|---|---|---|---|---|---|---|"]
    for r in results["rows"]:
        mem = f"{r['max_memory_allocated_gib']:.1f} GiB" if r.get("max_memory_allocated_gib") is not None else "n/a"
        if r.get("skipped"):
            lines.append(f"| {r['what']} | {results['shape']} | - | not measured: {r['skipped']} | - | - | - |")
            continue
        if r["what"] in ("generation", "vllm_generation"):
            work = f"{r['requests']} req x {r['new_tokens_per_request']} new tokens, T={r['temperature']}"
            rate = f"{r['requests_per_s']:.1f} req/s, {r['tokens_per_s']:.0f} tok/s"
            if r["what"] == "vllm_generation":
                rate += f" (engine start {r['engine_start_s']:.0f} s)"
        elif r["what"] == "rm_scoring":
            work = f"{r['rows']} rows, {r['tokens']} tokens"
            rate = f"{r['rows_per_s']:.1f} rows/s, {r['tokens_per_s']:.0f} tok/s"
        else:
            work = f"{r['segments']} segments"
            rate = f"{r['segments_per_s']:.0f} segments/s"
        shape = results["qe_shape"] if r["what"] == "qe_scoring" else results["shape"]
        lines.append(f"| {r['what']} | {shape} | {r['batch']} | {work} | {r['seconds']:.2f} | {rate} | {mem} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    import train_throughput

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=sorted(train_throughput.SHAPES), default="qwen2.5-0.5b")
    parser.add_argument("--qe-shape", choices=sorted(QE_SHAPES), default="cometkiwi-22")
    parser.add_argument("--parts", nargs="+", choices=["generation", "vllm", "rm", "qe"],
                        default=["generation", "vllm", "rm", "qe"])
    parser.add_argument("--gen-batches", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--vllm-requests", type=int, default=256, help="requests in vLLM's engine call")
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=0.7, help="0 = greedy (no sampling processors)")
    parser.add_argument("--score-batches", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--rm-rows", type=int, default=512)
    parser.add_argument("--rm-tokens", type=int, default=256, help="tokens of each prompt and of each completion")
    parser.add_argument("--qe-segments", type=int, default=2048)
    parser.add_argument("--quick", action="store_true", help="small counts (CPU smoke run)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.gen_batches, args.new_tokens, args.score_batches = [1, 4], 8, [4]
        args.rm_rows, args.rm_tokens, args.qe_segments, args.vllm_requests = 8, 16, 16, 8

    from kowen_kedro.offline import configure_offline

    configure_offline()
    results: dict = {"shape": args.shape, "qe_shape": args.qe_shape, "device": _device_name(), "rows": []}
    with tempfile.TemporaryDirectory(prefix="kowen-bench-inf-") as tmp:
        work = Path(tmp)
        prompts = train_throughput.shipped_texts()
        if {"generation", "vllm", "rm"} & set(args.parts):
            lm_dir = train_throughput.build_model(args.shape, 4096, work)
        if "generation" in args.parts:
            results["rows"] += generation(lm_dir, prompts, args.gen_batches, args.new_tokens, 1 if args.quick else 2,
                                          args.temperature)
        if "vllm" in args.parts:
            results["rows"] += vllm_generation(lm_dir, prompts, args.vllm_requests, args.new_tokens, args.temperature)
        if "rm" in args.parts:
            rm_dir = build_rm(lm_dir, work / "rm")
            texts = train_throughput.long_texts(lm_dir, 2 * args.rm_rows, args.rm_tokens, seed=2)
            results["rows"] += reward_scoring(rm_dir, texts, args.score_batches, args.rm_rows)
        if "qe" in args.parts:
            ckpt = build_qe(prompts, args.qe_shape, work / "qe")
            pairs = [(prompts[i % len(prompts)], prompts[(i * 7 + 3) % len(prompts)]) for i in range(args.qe_segments)]
            results["rows"] += qe_scoring(ckpt, [s for s, _ in pairs], [t for _, t in pairs], args.score_batches)
    out = Path(args.out or ROOT / "data" / "08_reporting" / f"bench_gpu_inference_{args.shape}.json")
    return train_throughput.write_results(results, out, markdown(results))


if __name__ == "__main__":
    main()
