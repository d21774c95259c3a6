"""`make effects`: the papers' claims on several tiny worlds, written into docs/effects.md and a CSV.

Runs the default pipeline (``kedro run``) once per world seed (default 0, 1, 2) and, with
``--ablations``, once per ablation on the first seed; reads each run's claims table
(``data/08_reporting/gold/effects.csv``) and gold metrics (the run's MLflow metrics), and writes

* ``docs/effects.csv`` - one row per (run, claim): seed, ablation, claim, language, measured, SE,
  criterion, held;
* the generated section of ``docs/effects.md`` between ``<!-- effects:begin -->`` and
  ``<!-- effects:end -->``: the claims across seeds, the behaviours of SFT and each DPO iteration, RM
  accuracy per kind, and the ablations next to the default they ablate.

No figure in that section is typed by hand. ``--reuse`` re-reads finished runs (kept under
``data/08_reporting/effects/``) instead of running them again.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
STORE = ROOT / "data/08_reporting/effects"
BEGIN, END = "<!-- effects:begin -->", "<!-- effects:end -->"

# name -> (runtime params, what it must remove)
ABLATIONS = {
    "dpo_lr_0": ("dpo_iter_1.dpo.trainer_args.learning_rate=0,dpo_iter_2.dpo.trainer_args.learning_rate=0",
                 "every DPO gain: both iterations answer as SFT does"),
    "swapped_pairs": ("reward_model.data.ablation_swap_pairs=true",
                      "RM accuracy (below chance), and DPO driven by those RMs lowers gold instead of raising it"),
    "fidelity_filter": ("data_synthesis.teacher.language_filter=true",
                        "the teacher's drift in the SFT data: SFT Korean fidelity on code-switched prompts back to 1, "
                        "and with it DPO's fidelity gain"),
    "shuffled_qe": ("translation_qe.qe.ablation_shuffle=true", "QE ranking and the best-of-k gain"),
}


def run_one(seed: int, ablation: str | None) -> dict:
    """``kedro run`` for ``seed`` (plus the ablation's params); returns its claims and gold metrics."""
    params = f"tiny_world.seed={seed}" + (f",{ABLATIONS[ablation][0]}" if ablation else "")
    started = time.time()
    log = STORE / f"seed_{seed}{'_' + ablation if ablation else ''}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("w") as out:
        proc = subprocess.run([str(Path(sys.executable).parent / "kedro"), "run", f"--params={params}"], cwd=ROOT, stdout=out,
                              stderr=subprocess.STDOUT, env=env)
    if proc.returncode:
        raise SystemExit(f"kedro run --params={params} failed (exit {proc.returncode}); log: {log}")
    claims = pd.read_csv(ROOT / "data/08_reporting/gold/effects.csv")
    metrics = _latest_run_metrics()
    return {"seed": seed, "ablation": ablation or "", "params": params, "seconds": round(time.time() - started),
            "claims": claims.to_dict("records"), "metrics": metrics}


def _latest_run_metrics() -> dict[str, float]:
    import mlflow

    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{ROOT / 'mlflow.db'}")
    exp = client.get_experiment_by_name("kowen_kedro")
    run = client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"], max_results=1)[0]
    return {k[len("gold."):]: v for k, v in run.data.metrics.items() if k.startswith("gold.")}


def stored(seed: int, ablation: str | None) -> Path:
    return STORE / f"seed_{seed}{'_' + ablation if ablation else ''}.json"


def fmt(x: float, sign: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:+.3f}" if sign else f"{x:.3f}"


def claims_section(runs: list[dict]) -> list[str]:
    seeds = [r for r in runs if not r["ablation"]]
    header = "| claim | lang | criterion | " + " | ".join(f"seed {r['seed']}" for r in seeds) + " |"
    lines = [header, "|---|---|---|" + "---|" * len(seeds)]
    keys = [(c["claim"], c["language"], c["criterion"]) for c in seeds[0]["claims"]]
    for claim, lang, criterion in keys:
        cells = []
        for r in seeds:
            row = next((c for c in r["claims"] if (c["claim"], c["language"]) == (claim, lang)), None)
            cells.append("-" if row is None else f"{fmt(row['measured'])} ({fmt(row['se'])}) {'held' if row['held'] else '**not held**'}")
        lines.append(f"| {claim} | {lang} | {criterion} | " + " | ".join(cells) + " |")
    return lines


def behaviour_section(runs: list[dict], models=("base", "sft", "dpo_iter_1", "dpo_iter_2", "cross_lingual", "sft_dpo_baseline")) -> list[str]:
    lines = ["| seed | model | lang | gold | correct | fidelity | safety | fidelity on code-switched | safety on rephrased |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in (r for r in runs if not r["ablation"]):
        m = r["metrics"]
        for model in models:
            for lang in ("en", "ko"):
                if f"{model}.{lang}" not in m:
                    continue
                cols = ("", ".correct", ".fidelity", ".safety", ".fidelity.code_switched", ".safety.rephrased")
                lines.append(f"| {r['seed']} | {model} | {lang} | " + " | ".join(fmt(m.get(f"{model}.{lang}{c}", math.nan)) for c in cols) + " |")
    return lines


def rm_section(runs: list[dict]) -> list[str]:
    kinds = ("wrong_language", "unsafe", "over_refusal", "wrong", "near")
    lines = ["| seed | reward model | lang | " + " | ".join(kinds) + " |", "|---|---|---|" + "---|" * len(kinds)]
    for r in (r for r in runs if not r["ablation"]):
        m = r["metrics"]
        for rm in ("rm", "rm_transfer_source", "rm_transfer_target"):
            for lang in ("en", "ko"):
                if f"{rm}.accuracy.{lang}" in m:
                    lines.append(f"| {r['seed']} | {rm} | {lang} | " + " | ".join(fmt(m.get(f"{rm}.accuracy.{lang}.{k}", math.nan)) for k in kinds) + " |")
    return lines


ABLATION_METRICS = {
    "dpo_lr_0": ["dpo_iter_1.en.vs_sft", "dpo_iter_1.ko.vs_sft", "dpo_iter_2.en.vs_sft", "dpo_iter_2.ko.vs_sft"],
    "swapped_pairs": ["rm.accuracy.en", "rm.accuracy.ko", "rm.accuracy.ko.wrong_language", "rm.accuracy.en.unsafe",
                      "dpo_iter_2.en.vs_sft", "dpo_iter_2.ko.vs_sft"],
    "fidelity_filter": ["sft.ko.fidelity", "sft.ko.fidelity.code_switched", "dpo_iter_2.ko.fidelity.vs_sft"],
    "shuffled_qe": ["qe.spearman", "best_of_k.gain"],
}


def ablation_section(runs: list[dict]) -> list[str]:
    lines = ["| ablation (`kedro run --params ...`) | what it must remove | metric | default | ablated |", "|---|---|---|---|---|"]
    for r in (r for r in runs if r["ablation"]):
        default = next((d for d in runs if not d["ablation"] and d["seed"] == r["seed"]), None)
        for name in ABLATION_METRICS[r["ablation"]]:
            base = default["metrics"].get(name, math.nan) if default else math.nan
            lines.append(f"| `{ABLATIONS[r['ablation']][0]}` (seed {r['seed']}) | {ABLATIONS[r['ablation']][1]} | gold.{name} | "
                         f"{fmt(base, '.vs_' in name)} | {fmt(r['metrics'].get(name, math.nan), '.vs_' in name)} |")
    return lines


def write(runs: list[dict]) -> None:
    rows = [{"seed": r["seed"], "ablation": r["ablation"], **c} for r in runs for c in r["claims"]]
    pd.DataFrame(rows).to_csv(ROOT / "docs/effects.csv", index=False)
    body = ["", "_Generated by `make effects` from the runs listed; do not edit by hand._", "",
            "Runs: " + "; ".join(f"`kedro run --params={r['params']}` ({r['seconds']} s)" for r in runs), "",
            "### Claims, per world seed (measured, paired SE in brackets)", "", *claims_section(runs), "",
            "### Gold decomposed: the behaviours each policy shows", "", *behaviour_section(runs), "",
            "### Reward-model accuracy per kind of rejected answer (held-out gold pairs)", "", *rm_section(runs), ""]
    if any(r["ablation"] for r in runs):
        body += ["### Ablations", "", *ablation_section(runs), ""]
    doc = ROOT / "docs/effects.md"
    text = doc.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{doc} has no {BEGIN} ... {END} section to fill")
    head, rest = text.split(BEGIN, 1)
    doc.write_text(head + BEGIN + "\n".join(body) + END + rest.split(END, 1)[1])
    print(f"wrote docs/effects.csv ({len(rows)} rows) and the generated section of docs/effects.md")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="0,1,2", help="world seeds, comma-separated")
    ap.add_argument("--ablations", nargs="?", const=",".join(ABLATIONS), default="",
                    help=f"also run these ablations on the first seed (default all: {', '.join(ABLATIONS)})")
    ap.add_argument("--reuse", action="store_true", help="read runs stored by an earlier call instead of running them")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    plan = [(s, None) for s in seeds] + [(seeds[0], a) for a in args.ablations.split(",") if a]
    unknown = [a for _, a in plan if a and a not in ABLATIONS]
    if unknown:
        raise SystemExit(f"unknown ablation(s) {unknown}; known: {sorted(ABLATIONS)}")
    runs = []
    for seed, ablation in plan:
        path = stored(seed, ablation)
        if args.reuse and path.exists():
            runs.append(json.loads(path.read_text()))
            continue
        print(f"kedro run: seed {seed}{', ablation ' + ablation if ablation else ''} ...", flush=True)
        run = run_one(seed, ablation)
        path.write_text(json.dumps(run, indent=1, default=float))
        shutil.copy(ROOT / "data/08_reporting/gold/effects.md", path.with_suffix(".md"))
        held = sum(c["held"] for c in run["claims"])
        print(f"  {run['seconds']} s, {held} of {len(run['claims'])} claims held", flush=True)
        runs.append(run)
    write(runs)


if __name__ == "__main__":
    main()
