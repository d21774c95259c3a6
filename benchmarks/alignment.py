"""`make alignment`: do the tiny base model's languages meet, with and without text that links them?

For each world seed, linking share (``tiny_models.pretrain_linking_share``) and pre-training length, the
build's first step alone (:func:`kowen_kedro.tiny.build.pretrain_base`: the tokenizer and the base LM on the
pre-training text the models node assembles), then the alignment figures of that base
(:func:`kowen_kedro.evaluation.alignment.alignment`) on the world's held-out parallel sentences: retrieval
top-1 (its own translation the nearest of N), content retrieval (the nearest of the same task family) at the
last layer, and the collapse ratio, each beside its chance. Writes ``docs/alignment.json`` and the generated
table of ``docs/alignment.md`` (between ``<!-- alignment:begin -->`` and ``<!-- alignment:end -->``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC, FIGURES = ROOT / "docs/alignment.md", ROOT / "docs/alignment.json"
BEGIN, END = "<!-- alignment:begin -->", "<!-- alignment:end -->"


def measure(seed: int, share: float, steps: int, target: str = "ko") -> dict:
    import pandas as pd

    from kowen_kedro.evaluation.alignment import alignment
    from kowen_kedro.groups import TinyModels
    from kowen_kedro.parameters import recipe_params
    from kowen_kedro.pipelines.models.nodes import build_texts, pretraining_text
    from kowen_kedro.tiny.build import pretrain_base, save_lm
    from kowen_kedro.world.generate import build_world
    from kowen_kedro.world.gold import parallel_gold

    params = recipe_params(ROOT / "conf", runtime_params={"target_language": target})["tiny_models"]
    tiny = TinyModels.of({**params, "pretrain_linking_share": share, "pretrain_steps": steps})
    world = build_world(seed, target_language=target)
    frames = {k: pd.DataFrame(world[k]) for k in ("user_prompts", "preference_pairs", "seed_passages", "parallel_sentences")}
    texts, _, parallel = build_texts(frames["user_prompts"], frames["preference_pairs"], frames["seed_passages"], "en", target,
                                     frames["parallel_sentences"])
    pretrain = pretraining_text(texts, parallel, tiny, "en", target)
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="kowen-alignment-") as tmp:
        tokenizer, base = pretrain_base(texts, pretrain, tiny.config(), Path(tmp) / "tokenizer")
        seconds = time.time() - started
        figures = alignment(str(save_lm(base, tokenizer, Path(tmp) / "base")),
                            parallel_gold(world["gold_prompts"], world["gold_translations"], "en", target, seed))
    return {"seed": seed, "linking_share": share, "pretrain_steps": steps, "pretrain_seconds": round(seconds, 1),
            "documents": len(pretrain or texts), **figures}


def table(rows: list[dict]) -> list[str]:
    lines = ["| seed | linking share | pre-training steps | retrieval top-1 (chance) | content, last layer (chance) | "
             "collapse centred / raw |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['seed']} | {r['linking_share']:g} | {r['pretrain_steps']} | {r['top1']:.3f} ({r['chance']:.3f}) | "
                     f"{r['content']:.3f} ({r['content.chance']:.3f}) | {r['collapse']:.3f} / {r['collapse.raw']:.3f} |")
    return lines


def gains(rows: list[dict]) -> list[str]:
    """Per pre-training length and linking share above 0: the gain over no linking text, seed by seed (paired),
    as mean and standard error over the seeds."""
    import statistics

    lines = ["", "| pre-training steps | linking share | seeds | top-1 gain (SE) | content gain (SE) |", "|---|---|---|---|---|"]
    for steps in sorted({r["pretrain_steps"] for r in rows}):
        plain = {r["seed"]: r for r in rows if r["pretrain_steps"] == steps and r["linking_share"] == 0}
        for share in sorted({r["linking_share"] for r in rows} - {0}):
            linked = [r for r in rows if r["pretrain_steps"] == steps and r["linking_share"] == share and r["seed"] in plain]
            cells = []
            for key in ("top1", "content"):
                diffs = [r[key] - plain[r["seed"]][key] for r in linked]
                se = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else float("nan")
                cells.append(f"{statistics.mean(diffs):+.3f} ({se:.3f})")
            lines.append(f"| {steps} | {share:g} | {len(linked)} | {cells[0]} | {cells[1]} |")
    return lines


def write_doc(rows: list[dict]) -> None:
    text = DOC.read_text()
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(head + BEGIN + "\n" + "\n".join(table(rows) + gains(rows)) + "\n" + END + tail)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2,11")
    parser.add_argument("--shares", default="0,0.4")
    parser.add_argument("--steps", default="150,600")
    parser.add_argument("--reuse", action="store_true", help="rewrite the table from docs/alignment.json, measuring nothing")
    a = parser.parse_args()
    if a.reuse:
        write_doc(json.loads(FIGURES.read_text()))
        return
    from kowen_kedro.floats import pin_floats
    from kowen_kedro.offline import configure_offline

    configure_offline()
    pin_floats()
    rows = []
    for seed in map(int, a.seeds.split(",")):
        for steps in map(int, a.steps.split(",")):
            for share in map(float, a.shares.split(",")):
                rows.append(measure(seed, share, steps))
                print(json.dumps(rows[-1]), flush=True)
    FIGURES.write_text(json.dumps(rows, indent=1) + "\n")
    write_doc(rows)
    print(f"wrote {FIGURES.relative_to(ROOT)} and the table of {DOC.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
