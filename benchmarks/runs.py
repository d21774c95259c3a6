"""`make bench-runs`: the wall-clock figures of whole runs, each in a fresh clone of the committed code,
saved to docs/runs.json, and the runs table of docs/benchmarks.md rewritten from them (benchmarks/tables.py).

* ``default``: ``kedro run`` of the built-in default (what ``make run`` runs), its console lines, the
  time of every node (the slowest ones shown), the tiny-model build, the training launches and the time
  their trainers report;
* ``ja``: ``kedro run --params target_language=ja`` (the full-size Japanese world);
* ``suite``: ``.ci/run`` (``make test``: installation, then the whole suite) with an empty HOME, and
  pytest's summary line.

    make bench-runs BENCH_RUNS="default suite"    # python benchmarks/runs.py default suite

Run them on an idle machine, through make (its exports keep the hub and telemetry off). A run reuses
the installed ``.venv/`` of this checkout (``suite`` builds its own, as CI does).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/tables.py
RESULTS = ROOT / "docs" / "runs.json"
NODE_LINE = re.compile(r"^\[\s*\d+/\d+\] (\S+)\s+([\d.]+) s\s*$")
SUMMARY = re.compile(r"^=+ (.*\d+ passed.*) in ([\d.]+)s")


def fresh_clone(where: Path) -> Path:
    clone = where / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    return clone


def console_lines(text: str) -> list[str]:
    """What a terminal shows: carriage-return redraws (progress bars) keep their last state."""
    return [line.split("\r")[-1] for line in text.split("\n") if line.split("\r")[-1].strip()]


def node_times(lines: list[str]) -> dict[str, float]:
    return {m.group(1): float(m.group(2)) for m in map(NODE_LINE.match, lines) if m}


def training_launches(project: Path) -> list[dict]:
    """Every finished training launch under the run's work folder: its stage, the launch's wall time, the time
    its trainer reports and the difference (start-up, loading, saving), in the order they finished."""
    found = sorted((p.stat().st_mtime, p) for p in (project / "data/06_models/_runs").glob("*/*/_COMPLETE.json"))
    out = []
    for _, path in found:
        record = json.loads(path.read_text())  # launch_*: kowen_kedro.training.launcher.record_launch_time
        launch, overhead = record.get("launch_seconds"), record.get("launch_overhead_seconds")
        out.append({"stage": path.parent.parent.name, "launch_s": launch,
                    "trainer_s": round(launch - overhead, 1) if launch is not None else None,
                    "overhead_s": round(overhead, 1) if overhead is not None else None})
    return out


def kedro_run(args: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        clone = fresh_clone(Path(tmp))
        env = {**os.environ, "PYTHONPATH": str(clone / "src")}  # the clone's code, the installed packages
        start, busy_before = time.perf_counter(), _busy_cpu_s()
        done = subprocess.run([str(ROOT / ".venv/bin/kedro"), "run", *args], cwd=clone, env=env, capture_output=True)
        wall, cpu = time.perf_counter() - start, _busy_cpu_s() - busy_before
        text = (done.stdout + done.stderr).decode(errors="replace")
        if done.returncode:
            raise SystemExit(f"kedro run {' '.join(args)} failed:\n{text[-3000:]}")
        lines = console_lines(text)
        nodes = node_times(lines)
        launches = training_launches(clone)
    return {"command": " ".join(["kedro run", *args]), "wall_s": round(wall, 1), "cpu_percent": round(100 * cpu / wall),
            "console_lines": len(lines),
            "nodes": len(nodes), "node_time_s": round(sum(nodes.values()), 1),
            "slowest": sorted(nodes.items(), key=lambda kv: -kv[1])[:5],
            "tiny_build_s": nodes.get("models.build_tiny_models_node"), "training_launches": len(launches),
            "trainer_s": round(sum(r["trainer_s"] or 0.0 for r in launches), 1), "launches": launches}


def _busy_cpu_s() -> float:
    """CPU seconds the whole machine has spent busy (not idle, not waiting for I/O) since boot: on an idle
    machine the difference over a run is the run's CPU time, its training launches included (they are
    children of the warm interpreter, which no rusage of the run counts)."""
    import psutil

    t = psutil.cpu_times()  # all cores together; guest time is counted in user time already
    return t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)


def suite() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        clone = fresh_clone(Path(tmp))
        home = Path(tmp) / "home"
        home.mkdir()
        env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"} | {"HOME": str(home)}
        start = time.perf_counter()
        done = subprocess.run(["bash", ".ci/run"], cwd=clone, env=env, capture_output=True)
        wall = time.perf_counter() - start
        text = (done.stdout + done.stderr).decode(errors="replace")
    found = [m for m in map(SUMMARY.match, console_lines(text)) if m]
    if done.returncode or not found:
        raise SystemExit(f".ci/run failed:\n{text[-3000:]}")
    return {"command": ".ci/run", "wall_s": round(wall, 1), "tests_s": float(found[-1].group(2)), "summary": found[-1].group(1)}


WHAT = {"default": lambda: kedro_run([]), "ja": lambda: kedro_run(["--params", "target_language=ja"]), "suite": suite}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", nargs="+", choices=sorted(WHAT))
    args = parser.parse_args()
    from tables import machine, rewrite_runs

    saved = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    for what in args.what:
        result = WHAT[what]()
        saved[what] = {"date": datetime.date.today().isoformat(), "machine": machine(), **result}
        print(what, json.dumps(saved[what]), flush=True)
        RESULTS.write_text(json.dumps(saved, indent=2) + "\n")
        rewrite_runs(ROOT / "docs" / "benchmarks.md", saved)
    print("(docs/runs.json and the runs table of docs/benchmarks.md rewritten)")


if __name__ == "__main__":
    main()
