"""`make effects`: the papers' claims on several tiny worlds, written into docs/effects.md and a CSV.

Runs the default pipeline (``kedro run``) once per world seed (default 0, 1, 2), then on top of each
seed's run the documented claim runs (:data:`CLAIM_RUNS`: English-only SFT for Kowen's mixture, CLO on
half the pairs and SFT on all of them for CLO's data efficiency), each a ``kedro run`` of a few nodes
compared with the default run on the same gold prompts; with ``--ablations``, the ablations on the
first seed (:data:`ABLATIONS`: a full run, or the nodes they change rerun on top of the default run).
It reads each run's claims table (``data/08_reporting/gold/effects.csv``) and gold metrics (the run's
MLflow metrics), and writes

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

from kowen_kedro.preference.iterations import DPO_ITERATIONS

ROOT = Path(__file__).resolve().parents[1]
STORE = ROOT / "data/08_reporting/effects"

# name -> (runtime params, what it must remove, the node it reruns from on top of the default run; None: a full run)
ABLATIONS = {
    "dpo_lr_0": ("dpo_iter_1.dpo.trainer_args.learning_rate=0,dpo_iter_2.dpo.trainer_args.learning_rate=0",
                 "every DPO gain: both iterations answer as SFT does", None),
    "swapped_pairs": ("reward_model.data.ablation_swap_pairs=true",
                      "RM accuracy (below chance), and DPO driven by those RMs lowers gold instead of raising it", None),
    "fidelity_filter": ("data_synthesis.teacher.language_filter=true",
                        "the teacher's drift in the SFT data: SFT Korean fidelity on code-switched prompts back to 1, "
                        "and with it DPO's fidelity gain", None),
    "shuffled_qe": ("translation_qe.qe.ablation_shuffle=true", "QE ranking and the best-of-k gain", None),
    "clo_no_preference": ("cross_lingual.clo.trainer_args.clo_lambda=1.0",
                          "CLO's cross-lingual DPO terms (NLL only): the fidelity gain over SFT", "preference_alignment.train_cross_lingual_node"),
    "clo_no_nll": ("cross_lingual.clo.trainer_args.clo_lambda=0.0",
                   "CLO's target-language NLL (DPO terms only; CLO Table 5: the NLL matters)", "preference_alignment.train_cross_lingual_node"),
    "clo_full_parameters": ("cross_lingual.clo.finetuning=full", "nothing: attention-only vs every weight, reported (CLO Table 4)",
                            "preference_alignment.train_cross_lingual_node"),
    "xl_shuffled": ("xl_instruct.ablation_shuffle_responses=true",
                    "XL-Instruct's gain: every instruction trained on another row's answer", "sft.train_xl_instruct_node"),
}
# documented claim runs, on every seed, on top of its default run (in this order: the last retrains the SFT model):
# name -> (runtime params, kedro run selection, the default-run policy it is compared with, the policy it measures)
CLAIM_RUNS = {
    "clo_half_pairs": ("cross_lingual.train_fraction=0.5,cross_lingual.baseline_in_same_run=false",
                       "--from-nodes=preference_alignment.train_cross_lingual_node", None, "cross_lingual"),
    "sft_on_pairs": ("cross_lingual.method=sft", "--from-nodes=preference_alignment.train_cross_lingual_node", None, "cross_lingual"),
    "english_only_sft": ("sft.languages=source", "--nodes=sft.train_sft_node,evaluation.gold_sft_node", "sft", "sft"),
}
ANSWERS = ROOT / "data/07_model_output/gold"


def _kedro(args: list[str], log: Path) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("w") as out:
        proc = subprocess.run([str(Path(sys.executable).parent / "kedro"), "run", *args], cwd=ROOT, stdout=out,
                              stderr=subprocess.STDOUT, env=env)
    if proc.returncode:
        raise SystemExit(f"kedro run {' '.join(args)} failed (exit {proc.returncode}); log: {log}")


def run_one(seed: int, ablation: str | None) -> dict:
    """``kedro run`` for ``seed`` (plus the ablation's params; a partial ablation reruns from its node on
    top of the seed's default run); returns its claims and gold metrics, and keeps its gold answers."""
    params, _, from_node = ABLATIONS[ablation] if ablation else ("", "", None)
    params = f"tiny_world.seed={seed}" + (f",{params}" if params else "")
    started = time.time()
    name = f"seed_{seed}{'_' + ablation if ablation else ''}"
    _kedro([f"--params={params}"] + ([f"--from-nodes={from_node}"] if from_node else []), STORE / f"{name}.log")
    claims = pd.read_csv(ROOT / "data/08_reporting/gold/effects.csv", float_precision="round_trip")  # the run's floats, exactly
    metrics = latest_gold_metrics()
    _keep_answers(name)
    return {"seed": seed, "ablation": ablation or "", "params": params + (f" --from-nodes={from_node}" if from_node else ""),
            "seconds": round(time.time() - started), "claims": claims.to_dict("records"), "metrics": metrics}


def latest_gold_metrics(project: Path = ROOT) -> dict[str, float]:
    """The gold metrics (names without ``gold.``) of the newest ``kedro run`` in ``project``'s MLflow store."""
    import mlflow

    from kowen_kedro.tracking import dotted, parent_runs

    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    exp = client.get_experiment_by_name("kowen_kedro")
    run = parent_runs(client, exp.experiment_id)[0]  # the newest kedro run
    return {k[len("gold."):]: v for k, v in dotted(run.data.metrics).items() if k.startswith("gold.")}


def _keep_answers(name: str) -> None:
    out = STORE / name / "answers"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for folder in ANSWERS.glob("*_answers.jsonl"):  # versioned: <name>/<version>/<name>
        versions = sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
        if versions:
            shutil.copy(versions[-1] / folder.name, out / folder.name)


def _answers(name: str, policy: str) -> pd.DataFrame:
    return pd.read_json(STORE / name / "answers" / f"{policy}_answers.jsonl", lines=True)


def claim_run(seed: int, name: str) -> dict:
    """A documented claim run on top of the seed's default run, and its claims against that run."""
    from kowen_kedro.evaluation.claims import data_efficiency_claims, mixture_claims

    params, selection, _, _ = CLAIM_RUNS[name]
    params = f"tiny_world.seed={seed},{params}"
    started = time.time()
    run_name = f"seed_{seed}_{name}"
    _kedro([f"--params={params}", selection], STORE / f"{run_name}.log")
    _keep_answers(run_name)
    claims = []
    if name == "english_only_sft":
        claims = mixture_claims(_answers(f"seed_{seed}", "sft"), _answers(run_name, "sft"), "en", "ko").to_dict("records")
    elif name == "sft_on_pairs" and (STORE / f"seed_{seed}_clo_half_pairs" / "answers").exists():
        half, sft_all = _answers(f"seed_{seed}_clo_half_pairs", "cross_lingual"), _answers(run_name, "cross_lingual")
        claims = data_efficiency_claims(half, sft_all, "ko").to_dict("records")
    return {"seed": seed, "ablation": "", "claim_run": name, "params": f"{params} {selection}",
            "seconds": round(time.time() - started), "claims": claims, "metrics": latest_gold_metrics()}


def stored(seed: int, ablation: str | None) -> Path:
    return STORE / f"seed_{seed}{'_' + ablation if ablation else ''}.json"


def _default_runs(runs: list[dict]) -> list[dict]:
    return [r for r in runs if not r["ablation"] and not r.get("claim_run")]


def fmt(x: float, sign: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:+.3f}" if sign else f"{x:.3f}"


def claims_section(runs: list[dict]) -> list[str]:
    seeds = _default_runs(runs)
    extra = {}  # the claim runs' rows, under the seed they ran on
    for r in runs:
        if r.get("claim_run"):
            for c in r["claims"]:
                extra.setdefault(r["seed"], []).append(c)
    seeds = [{**r, "claims": r["claims"] + extra.get(r["seed"], [])} for r in seeds]
    header = "| claim | lang | criterion | " + " | ".join(f"seed {r['seed']}" for r in seeds) + " |"
    lines = [header, "|---|---|---|" + "---|" * len(seeds)]
    keys = list(dict.fromkeys((c["claim"], c["language"], c["criterion"]) for r in seeds for c in r["claims"]))
    for claim, lang, criterion in keys:
        cells = []
        for r in seeds:
            row = next((c for c in r["claims"] if (c["claim"], c["language"]) == (claim, lang)), None)
            cells.append("-" if row is None else f"{fmt(row['measured'])} ({fmt(row['se'])}) {'held' if row['held'] else '**not held**'}")
        lines.append(f"| {claim} | {lang} | {criterion} | " + " | ".join(cells) + " |")
    return lines


def behaviour_section(runs: list[dict], models=("base", "sft", "xl_instruct", *DPO_ITERATIONS, "cross_lingual",
                                                "sft_dpo_baseline")) -> list[str]:
    lines = ["| seed | model | lang | gold | correct | fidelity | safety | fidelity on code-switched | safety on rephrased |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in _default_runs(runs):
        m = r["metrics"]
        for model in models:
            for lang in ("en", "ko", "xl"):
                if f"{model}.{lang}" not in m:
                    continue
                cols = ("", ".correct", ".fidelity", ".safety", ".fidelity.code_switched", ".safety.rephrased")
                lines.append(f"| {r['seed']} | {model} | {lang} | " + " | ".join(fmt(m.get(f"{model}.{lang}{c}", math.nan)) for c in cols) + " |")
    return lines


def rm_section(runs: list[dict]) -> list[str]:
    kinds = ("wrong_language", "unsafe", "over_refusal", "wrong", "near")
    lines = ["| seed | reward model | lang | " + " | ".join(kinds) + " |", "|---|---|---|" + "---|" * len(kinds)]
    for r in _default_runs(runs):
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
    **{name: ["cross_lingual.ko.vs_sft", "cross_lingual.ko.fidelity.vs_sft", "cross_lingual.ko.fidelity.code_switched",
              "cross_lingual.en.vs_sft", "cross_lingual.ko.vs_sft_dpo_baseline"]
       for name in ("clo_no_preference", "clo_no_nll", "clo_full_parameters")},
    "xl_shuffled": ["xl_instruct.xl.vs_sft", "xl_instruct.xl.fidelity.vs_sft", "xl_instruct.en.vs_sft", "xl_instruct.ko.vs_sft"],
}


def ablation_section(runs: list[dict]) -> list[str]:
    lines = ["| ablation (`kedro run --params ...`) | what it must remove | metric | default | ablated |", "|---|---|---|---|---|"]
    for r in (r for r in runs if r["ablation"]):
        default = next((d for d in _default_runs(runs) if d["seed"] == r["seed"]), None)
        for name in ABLATION_METRICS[r["ablation"]]:
            base = default["metrics"].get(name, math.nan) if default else math.nan
            lines.append(f"| `{ABLATIONS[r['ablation']][0]}` (seed {r['seed']}) | {ABLATIONS[r['ablation']][1]} | gold.{name} | "
                         f"{fmt(base, '.vs_' in name)} | {fmt(r['metrics'].get(name, math.nan), '.vs_' in name)} |")
    return lines


def write(runs: list[dict]) -> None:
    rows = [{"seed": r["seed"], "ablation": r["ablation"] or r.get("claim_run", ""), **c} for r in runs for c in r["claims"]]
    pd.DataFrame(rows).to_csv(ROOT / "docs/effects.csv", index=False)
    body = ["", "_Generated by `make effects` from the runs listed; do not edit by hand._", "",
            "Runs: " + "; ".join(f"`kedro run --params={r['params']}` ({r['seconds']} s)" for r in runs), "",
            "The claim rows of Kowen's mixture and CLO's data efficiency come from the documented runs on top of",
            "each seed's default run (`" + "`, `".join(f"{v[0]} {v[1]}" for v in CLAIM_RUNS.values()) + "`).", "",
            "### Claims, per world seed (measured, paired SE in brackets)", "", *claims_section(runs), "",
            "### Gold decomposed: the behaviours each policy shows", "", *behaviour_section(runs), "",
            "### Reward-model accuracy per kind of rejected answer (held-out gold pairs)", "", *rm_section(runs), ""]
    if any(r["ablation"] for r in runs):
        body += ["### Ablations", "", *ablation_section(runs), ""]
    from tables import rewrite_block

    rewrite_block(ROOT / "docs/effects.md", "effects", "\n".join(body[1:]))  # body[0] is the line break after the marker
    print(f"wrote docs/effects.csv ({len(rows)} rows) and the generated section of docs/effects.md")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="0,1,2", help="world seeds, comma-separated")
    ap.add_argument("--ablations", nargs="?", const=",".join(ABLATIONS), default="",
                    help=f"also run these ablations on the first seed (default all: {', '.join(ABLATIONS)})")
    ap.add_argument("--reuse", action="store_true", help="read runs stored by an earlier call instead of running them")
    ap.add_argument("--no-claim-runs", dest="claim_runs", action="store_false",
                    help="skip the documented claim runs (English-only SFT, CLO on half the pairs, SFT on the pairs)")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    plan = [(s, None) for s in seeds] + [(seeds[0], a) for a in args.ablations.split(",") if a]
    unknown = [a for _, a in plan if a and a not in ABLATIONS]
    if unknown:
        raise SystemExit(f"unknown ablation(s) {unknown}; known: {sorted(ABLATIONS)}")
    runs = []

    def stored_or_run(path: Path, label: str, run_it) -> None:
        if args.reuse and path.exists():
            runs.append(json.loads(path.read_text()))
            return
        print(f"kedro run: {label} ...", flush=True)
        run = run_it()
        path.write_text(json.dumps(run, indent=1, default=float))
        print(f"  {run['seconds']} s, {sum(c['held'] for c in run['claims'])} of {len(run['claims'])} claims held", flush=True)
        runs.append(run)

    def one(seed_: int, ablation: str | None) -> None:
        def run_it():
            run = run_one(seed_, ablation)
            shutil.copy(ROOT / "data/08_reporting/gold/effects.md", stored(seed_, ablation).with_suffix(".md"))
            return run
        stored_or_run(stored(seed_, ablation), f"seed {seed_}{', ablation ' + ablation if ablation else ''}", run_it)

    # per seed: the default run; the ablations that rerun a few nodes on top of it; the claim runs (the
    # last retrains the SFT model); then the full-run ablations (each retrains what its params change)
    for seed in seeds:
        ablations = [a for s_, a in plan if a and s_ == seed]
        one(seed, None)
        for a in (a for a in ablations if ABLATIONS[a][2]):
            one(seed, a)
        for name in CLAIM_RUNS if args.claim_runs else ():
            stored_or_run(STORE / f"seed_{seed}_{name}.json", f"seed {seed}, claim run {name}", lambda s=seed, n=name: claim_run(s, n))
        for a in (a for a in ablations if not ABLATIONS[a][2]):
            one(seed, a)
    write(runs)


if __name__ == "__main__":
    main()
