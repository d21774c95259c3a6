"""The `make bench` table of docs/benchmarks.md, generated from the measurement it shows.

`make bench` saves its figures to ``docs/bench.json`` (with the date and the machine's CPU count) and
rewrites the table between the ``<!-- bench:begin -->`` / ``<!-- bench:end -->`` markers of
``docs/benchmarks.md`` from them; a test checks that the table is the one these figures give.
"""

from __future__ import annotations

import re
from pathlib import Path

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


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
    ]
    head = f"Measured {bench['date']} on {bench['machine']} (`make bench`; figures in `docs/bench.json`).\n\n"
    return head + "| figure | value |\n|---|---|\n" + "".join(f"| {a} | {b} |\n" for a, b in rows)


def rewrite(doc: Path, bench: dict) -> None:
    """Replace the table between the markers of ``doc`` with :func:`bench_table` of ``bench``."""
    text = doc.read_text()
    new = re.sub(re.escape(BEGIN) + r".*?" + re.escape(END), lambda _: f"{BEGIN}\n{bench_table(bench)}{END}", text, flags=re.S)
    if new == text and BEGIN not in text:
        raise ValueError(f"{doc}: no {BEGIN} ... {END} markers")
    doc.write_text(new)


def shown_table(doc: Path) -> str:
    m = re.search(re.escape(BEGIN) + r"\n(.*?)" + re.escape(END), doc.read_text(), flags=re.S)
    if not m:
        raise ValueError(f"{doc}: no {BEGIN} ... {END} markers")
    return m.group(1)
