"""`make transfer`: does text that links the languages make the English RM transfer and CLO lead?

For each world seed and linking share (``tiny_models.pretrain_linking_share``), one whole default run
(``kedro run --params tiny_world.seed=<seed>,tiny_models.pretrain_linking_share=<share>,
reward_model.data.transfer_source=translated``: the English RM trains on the pairs the Korean RM trains on as
translations, the same content in two languages, as paper 001 compares) in a folder of its
own under ``data/08_reporting/transfer/`` (a copy of the files a run reads, its own data and MLflow store),
``--jobs`` of them at a time; a run that finished (its ``result.json``) is not run again. From each run's gold metrics (the MLflow run's ``gold.*``):

* the base's alignment: content retrieval at the last layer beside its chance, retrieval top-1;
* RM transfer as paper 001 claims it (:func:`kowen_kedro.evaluation.claims.transfer_claims`): the English RM
  against the Korean RM (trained on translations) on Korean gold pairs, paired by pair: RewardBench's Safety
  section (unsafe and over_refusal pairs pooled) and each kind;
* CLO against its SFT+DPO baseline on Korean gold and fidelity, paired by prompt.

Then, paired by seed, what the linking text changes in each. Writes ``docs/transfer.json`` and the generated
block of ``docs/alignment.md`` (between ``<!-- transfer:begin -->`` and ``<!-- transfer:end -->``).
``--reuse`` rewrites the block from ``docs/transfer.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from effects import latest_gold_metrics  # benchmarks/, this script's folder

ROOT = Path(__file__).resolve().parents[1]
STORE = ROOT / "data/08_reporting/transfer"
DOC, FIGURES = ROOT / "docs/alignment.md", ROOT / "docs/transfer.json"
KINDS = ("unsafe", "over_refusal", "wrong", "near")
#: (label, metric without "gold.", whether it is a paired difference with an SE)
COLUMNS = (("base content (chance)", "base.alignment.content", False),
           ("English RM content", "rm_transfer_source.alignment.content", False),
           ("English - Korean RM: Safety section", "rm_transfer_source.accuracy.ko.safety_section.vs_rm_transfer_target", True),
           *((f"English - Korean RM: {k}", f"rm_transfer_source.accuracy.ko.{k}.vs_rm_transfer_target", True) for k in KINDS),
           ("CLO - SFT+DPO: gold", "cross_lingual.ko.vs_sft_dpo_baseline", True),
           ("CLO - SFT+DPO: fidelity", "cross_lingual.ko.fidelity.vs_sft_dpo_baseline", True))


#: What a ``kedro run`` of the project reads (its tests, docs and benchmarks stay behind)
RUN_FILES = ("pyproject.toml", ".telemetry", "conf", "src", "data")


def _copy_project(dest: Path) -> None:
    """The project's files a run reads, as they are in the working tree, into ``dest``."""
    files = subprocess.run(["git", "ls-files", "-z", "--", *RUN_FILES], cwd=ROOT, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)


def run(seed: int, share: float) -> dict:
    """One default run of ``seed`` with linking share ``share``, in its own copy of the project; its gold metrics."""
    name = f"seed_{seed}_linking_{share:g}"
    project = STORE / name
    if (project / "result.json").exists():  # finished before (the runs are resumable one by one)
        return json.loads((project / "result.json").read_text())
    shutil.rmtree(project, ignore_errors=True)
    project.mkdir(parents=True)
    _copy_project(project)
    params = f"tiny_world.seed={seed},tiny_models.pretrain_linking_share={share},reward_model.data.transfer_source=translated"
    env = {**os.environ, "PYTHONPATH": str(project / "src"), "PYTHONUNBUFFERED": "1"}  # the copy's code
    started = time.time()
    with (project / "run.log").open("w") as log:
        code = subprocess.run([str(Path(sys.executable).parent / "kedro"), "run", f"--params={params}"], cwd=project,
                              stdout=log, stderr=subprocess.STDOUT, env=env).returncode
    if code:
        raise SystemExit(f"kedro run --params={params} failed (exit {code}); log: {project / 'run.log'}")
    result = {"seed": seed, "linking_share": share, "seconds": round(time.time() - started), "metrics": latest_gold_metrics(project)}
    (project / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def with_claims(result: dict, project: Path) -> dict:
    """The run's figures with the RM comparison recomputed from its per-pair gold tables (the function the
    pipeline logs it with, so a run stored before a section was added gets it too) and its transfer claims."""
    import pandas as pd

    from kowen_kedro.evaluation.claims import rm_comparison, transfer_claims

    tables = {}
    for rm in ("rm_transfer_source", "rm_transfer_target"):
        (path,) = sorted((project / "data/07_model_output/gold" / f"{rm}_answers.jsonl").glob("*/*.jsonl"))[-1:]
        tables[rm] = pd.read_json(path, lines=True)
    m = {**result["metrics"], **rm_comparison("rm_transfer_source", "rm_transfer_target", tables, "ko")}
    return {**result, "metrics": m, "transfer": transfer_claims(m, "ko").to_dict("records")}


def _cell(m: dict, name: str, paired: bool) -> str:
    x = m.get(name, math.nan)
    if x != x:
        return "-"
    if not paired:
        chance = m.get(f"{name}.chance", math.nan)
        return f"{x:.3f}" + (f" ({chance:.3f})" if chance == chance else "")
    se = m.get(f"{name}.se", math.nan)
    return f"{x:+.3f} ({se:.3f})"


def table(rows: list[dict]) -> list[str]:
    lines = ["| seed | linking share | " + " | ".join(c[0] for c in COLUMNS) + " |", "|---|---|" + "---|" * len(COLUMNS)]
    for r in sorted(rows, key=lambda r: (r["seed"], r["linking_share"])):
        lines.append(f"| {r['seed']} | {r['linking_share']:g} | " + " | ".join(_cell(r["metrics"], n, p) for _, n, p in COLUMNS) + " |")
    return lines


def claims(rows: list[dict]) -> list[str]:
    """The transfer claims of each run (held or not), one column per run."""
    runs = sorted(rows, key=lambda r: (r["linking_share"], r["seed"]))
    lines = ["", "| claim (criterion >= -2 paired SE) | " + " | ".join(f"seed {r['seed']}, share {r['linking_share']:g}" for r in runs) + " |",
             "|---|" + "---|" * len(runs)]
    for claim in dict.fromkeys(c["claim"] for r in runs for c in r["transfer"]):
        cells = []
        for r in runs:
            row = next((c for c in r["transfer"] if c["claim"] == claim), None)
            cells.append("not claimed (the Korean RM does not learn it)" if row is None else
                         f"{row['measured']:+.3f} ({row['se']:.3f}) {'held' if row['held'] else '**not held**'}")
        lines.append(f"| {claim} | " + " | ".join(cells) + " |")
    return lines


def gains(rows: list[dict]) -> list[str]:
    """Per linking share above 0: its change of each figure over no linking text, paired by seed (mean, SE over seeds)."""
    plain = {r["seed"]: r["metrics"] for r in rows if r["linking_share"] == 0}
    lines = ["", "| linking share | seeds | " + " | ".join(c[0].replace(" (chance)", "") for c in COLUMNS) + " |",
             "|---|---|" + "---|" * len(COLUMNS)]
    for share in sorted({r["linking_share"] for r in rows} - {0}):
        linked = [r for r in rows if r["linking_share"] == share and r["seed"] in plain]
        cells = []
        for _, name, _ in COLUMNS:
            diffs = [r["metrics"][name] - plain[r["seed"]][name] for r in linked
                     if name in r["metrics"] and name in plain[r["seed"]]]
            se = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else math.nan
            cells.append(f"{statistics.mean(diffs):+.3f} ({se:.3f})" if diffs else "-")
        lines.append(f"| {share:g} | {len(linked)} | " + " | ".join(cells) + " |")
    return lines


def write_doc(rows: list[dict]) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from tables import rewrite_block

    rewrite_block(DOC, "transfer", block(rows))


def block(rows: list[dict]) -> str:
    """The generated block of docs/alignment.md from the runs' figures."""
    return "\n".join(table(rows) + claims(rows) + gains(rows)) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2,11")
    parser.add_argument("--shares", default="0,0.4")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time")
    parser.add_argument("--reuse", action="store_true", help="rewrite the block from docs/transfer.json, running nothing")
    a = parser.parse_args()
    if a.reuse:
        write_doc(json.loads(FIGURES.read_text()))
        return
    grid = [(seed, share) for seed in map(int, a.seeds.split(",")) for share in map(float, a.shares.split(","))]
    with ThreadPoolExecutor(max_workers=a.jobs) as pool:
        rows = []
        for (seed, share), row in zip(grid, pool.map(lambda job: run(*job), grid)):
            rows.append(with_claims(row, STORE / f"seed_{seed}_linking_{share:g}"))
            print(json.dumps({k: row[k] for k in ("seed", "linking_share", "seconds")}), flush=True)
    FIGURES.write_text(json.dumps(rows, indent=1) + "\n")
    write_doc(rows)
    print(f"wrote {FIGURES.relative_to(ROOT)} and the transfer block of {DOC.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
