"""The generated tables of docs/benchmarks.md, each from the measurement it shows.

`make bench` saves its figures to ``docs/bench.json`` (with the date and the machine's CPU count) and
rewrites the table between the ``<!-- bench:begin -->`` / ``<!-- bench:end -->`` markers of
``docs/benchmarks.md`` from them; `make bench-runs` does the same with whole runs (``docs/runs.json``,
``<!-- runs:begin -->`` / ``<!-- runs:end -->``); `make effects` fills docs/effects.md's section the same
way, and `make preflight-docs` docs/preflight.md's tables. A test checks that each table is the one its figures give.
"""

from __future__ import annotations

import re
from pathlib import Path

#: Generated blocks: the markers around each.
MARKERS = {name: (f"<!-- {name}:begin -->", f"<!-- {name}:end -->")
           for name in ("bench", "runs", "effects", "transfer", "preflight-kowen_7b", "preflight-clo", "preflight-xl_instruct")}


def machine() -> str:
    """The machine a figure was measured on, as the generated tables name it."""
    import os
    import shutil

    return f"{os.cpu_count()} CPU cores, {'a GPU' if shutil.which('nvidia-smi') else 'no GPU'}"


def bench_table(bench: dict) -> str:
    r = bench["results"]

    def dpo(epochs: int) -> str:
        fwd, pre = r[f"dpo_{epochs}ep_ref_forward_s"], r[f"dpo_{epochs}ep_precomputed_ref_s"]
        return f"{fwd:.2f} / {pre:.2f} s: {fwd / pre:.2f}x"

    rows = [
        ("transformers backend, tiny teacher, 32 prompts x 32 new tokens, batch 1",
         f"{r['generate_batch1_requests_per_s']:.1f} requests/s, {r['generate_batch1_tokens_per_s']:.0f} tokens/s"),
        ("same, batch 16", f"{r['generate_batch16_requests_per_s']:.1f} requests/s, {r['generate_batch16_tokens_per_s']:.0f} tokens/s "
                           f"({r['batched_speedup']:.1f}x)"),
        ("call cache: rerun of a finished generation (64 calls) / first run",
         f"{r['cache_rerun_s']:.4f} s / {r['cache_first_run_s']:.2f} s = {r['cache_rerun_ratio']:.4f}"),
        ("COMET QE, tiny UnifiedMetric (32-wide XLM-R), 72 segments, batch 1", f"{r['qe_batch1_segments_per_s']:.0f} segments/s"),
        ("same, batch 8", f"{r['qe_batch8_segments_per_s']:.0f} segments/s"),
        ("same, batch 32", f"{r['qe_batch32_segments_per_s']:.0f} segments/s"),
        ("DPO, tiny student, 48 pairs, batch 8, fp32, 1 epoch: reference forward every step / reference log-probs "
         "precomputed once (`precompute_ref_log_probs`)", dpo(1)),
        ("same, 3 epochs", dpo(3)),
        *vllm_rows(r),
    ]
    head = f"Measured {bench['date']} on {bench['machine']} (`make bench`; figures in `docs/bench.json`).\n\n"
    return head + "| figure | value |\n|---|---|\n" + "".join(f"| {a} | {b} |\n" for a, b in rows)


VLLM_SHAPES = {"tiny": ("tiny teacher", 64), "qwen05b": ("Qwen2.5-0.5B-shaped model, random weights", 32)}


def vllm_rows(r: dict) -> list[tuple[str, str]]:
    """vLLM (offline engine, own environment, through the worker) vs the transformers backend, per model."""
    rows = []
    for label, (what, n) in VLLM_SHAPES.items():
        if f"{label}_vllm_tokens_per_s" not in r:
            rows.append((f"vLLM vs transformers backend, {what}", "not measured: no vLLM environment (`make vllm-env`)"))
            continue
        rows.append((f"vLLM (fp32, eager, worker) vs transformers backend (batch 32), {what}, {n} prompts x 32 new tokens, greedy",
                     f"{r[f'{label}_vllm_tokens_per_s']:.0f} vs {r[f'{label}_transformers_tokens_per_s']:.0f} tokens/s: "
                     f"{r[f'{label}_vllm_speedup']:.2f}x; engine start {r[f'{label}_vllm_start_s']:.0f} s"
                     + (f"; {r[f'{label}_greedy_agreement']:.0%} of greedy answers identical" if f"{label}_greedy_agreement" in r else "")))
    return rows


def _minutes(seconds: float) -> str:
    """``1019.9`` -> ``17 min 00 s`` (rounded to the second first: not ``16 min 60 s``)."""
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"


def runs_table(runs: dict) -> str:
    """The whole-run figures of ``docs/runs.json``: one row per run measured."""
    rows = []
    if "default" in runs:
        r = runs["default"]
        slowest = ", ".join(f"{name} {sec:.0f} s" for name, sec in r["slowest"][:3])
        cpu = f" at {r['cpu_percent']}% CPU" if "cpu_percent" in r else ""
        rows.append((f"`{r['command']}` of the default, fresh clone (what `make run` runs)",
                     f"{_minutes(r['wall_s'])}{cpu}; {r['nodes']} nodes, {r['node_time_s']:.0f} s of node time (slowest: {slowest}); "
                     f"tiny-model build {r['tiny_build_s']:.0f} s; {r['training_launches']} training launches, "
                     f"{r['trainer_s']:.0f} s inside their trainers; console {r['console_lines']} lines", r["date"]))
    if "ja" in runs:
        r = runs["ja"]
        rows.append((f"`{r['command']}`, full-size Japanese world, fresh clone",
                     f"{_minutes(r['wall_s'])}; {r['nodes']} nodes, {r['training_launches']} training launches", r["date"]))
    if "suite" in runs:
        r = runs["suite"]
        rows.append(("`make test` through `.ci/run` on a fresh clone, empty HOME (installation included)",
                     f"{_minutes(r['wall_s'])} (tests {_minutes(r['tests_s'])}: {r['summary']})", r["date"]))
    machine = next(iter(runs.values()))["machine"] if runs else "-"
    head = f"Measured on {machine} (`make bench-runs`; figures in `docs/runs.json`), one run at a time on an idle machine.\n\n"
    table = head + "| run | figure | date |\n|---|---|---|\n" + "".join(f"| {a} | {b} | {c} |\n" for a, b, c in rows)
    launches = [r for r in runs.get("default", {}).get("launches", []) if r.get("launch_s") is not None]
    if launches:
        table += ("\nThe default run's training launches, in the order they finished: the launch's wall time (node side), "
                  "the time inside its trainer (TRL's `train_runtime` + `eval_runtime`) and the rest (start-up, loading, saving):\n\n"
                  "| launch | launch s | trainer s | overhead s |\n|---|---|---|---|\n"
                  + "".join(f"| {r['stage']} | {r['launch_s']:.1f} | {r['trainer_s']:.1f} | {r['overhead_s']:.1f} |\n" for r in launches))
    return table


def rewrite_block(doc: Path, block: str, table: str) -> None:
    """Replace what stands between ``block``'s markers in ``doc`` with ``table``."""
    begin, end = MARKERS[block]
    text = doc.read_text()
    if begin not in text or end not in text:
        raise ValueError(f"{doc}: no {begin} ... {end} markers")
    doc.write_text(re.sub(re.escape(begin) + r".*?" + re.escape(end), lambda _: f"{begin}\n{table}{end}", text, flags=re.S))


def rewrite(doc: Path, bench: dict) -> None:
    """Replace the `make bench` table of ``doc`` with :func:`bench_table` of ``bench``."""
    rewrite_block(doc, "bench", bench_table(bench))


def rewrite_runs(doc: Path, runs: dict) -> None:
    """Replace the runs table of ``doc`` with :func:`runs_table` of ``runs``."""
    rewrite_block(doc, "runs", runs_table(runs))


def shown_table(doc: Path, block: str = "bench") -> str:
    begin, end = MARKERS[block]
    m = re.search(re.escape(begin) + r"\n(.*?)" + re.escape(end), doc.read_text(), flags=re.S)
    if not m:
        raise ValueError(f"{doc}: no {begin} ... {end} markers")
    return m.group(1)
