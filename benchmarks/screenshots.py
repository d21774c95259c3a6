"""Screenshots of what a user opens after a run: MLflow's compare view of two policies' child runs, the
parent run's page, and the kedro-viz graph (the stages view ``make viz`` links: one box per stage, the
datasets hidden; and the whole graph) (headless Chromium, as Debian packages it: ``apt-get install
chromium``). ``make screenshots`` (``PROJECT=`` a project folder that has run; default: this one) writes
``docs/images/*.png``.

Each UI is started as a user starts it (``make mlflow-ui`` / ``make viz``, both at once), on a free port.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def served(targets: tuple[str, ...], project: Path, timeout: float = 240, env: dict[str, str] | None = None,
           logs: Path | None = None):
    """``make <target>`` for ``project``, for each of ``targets`` (``mlflow-ui``, ``viz``) at once, each on a
    free port, with the environment ``env`` (default this one's) and its output in ``logs/make-<target>.log``
    (default: discarded); yields ``{target: base URL}`` once every one answers, and stops them after.
    A server that exits or does not answer in ``timeout`` seconds raises ``RuntimeError`` with its log's end."""
    from kowen_kedro.ports import free_port

    started: dict[str, tuple[subprocess.Popen, str, Path | None]] = {}
    try:
        for target in targets:
            port = free_port()  # below 49152: kedro-viz refuses the ephemeral range
            var = "MLFLOW_PORT" if target == "mlflow-ui" else "VIZ_PORT"
            log = logs / f"make-{target}.log" if logs is not None else None
            with open(log or os.devnull, "wb") as out:
                proc = subprocess.Popen(["make", "-C", str(ROOT), target, f"PROJECT={project}", f"{var}={port}"], env=env,
                                        stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            started[target] = (proc, f"http://127.0.0.1:{port}", log)
        deadline = time.monotonic() + timeout
        for target, (proc, url, log) in started.items():
            while True:
                said = f"; the end of {log}:\n{log.read_text(errors='replace')[-3000:]}" if log is not None else ""
                if proc.poll() is not None:
                    raise RuntimeError(f"make {target} exited with {proc.returncode}{said}")
                try:
                    urllib.request.urlopen(url, timeout=5).read()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"make {target} did not serve in {timeout} s{said}") from None
                    time.sleep(1)
        yield {target: url for target, (_, url, _) in started.items()}
    finally:
        for proc, _, _ in started.values():
            os.killpg(proc.pid, signal.SIGTERM)
        for proc, _, _ in started.values():
            proc.wait(timeout=60)


def shoot(browser: str, url: str, out: Path, size: str = "1600,1000", wait_ms: int = 20000) -> dict:
    """A screenshot of ``url`` in headless Chromium and the page as rendered (its DOM after the scripts
    ran): ``{"png": path, "dom": html}``."""
    import tempfile

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:  # a new user's browser: no settings kept from another page
        flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--user-data-dir={profile}",
                 f"--window-size={size}", f"--virtual-time-budget={wait_ms}"]
        subprocess.run([*flags, f"--screenshot={out}", url], check=True, capture_output=True, timeout=180)
        dom = subprocess.run([*flags, "--dump-dom", url], check=True, capture_output=True, timeout=180).stdout
    print(f"{out}  <- {url}")
    return {"png": out, "dom": dom.decode("utf-8", errors="replace")}


def runs(project: Path, compare: tuple[str, ...]) -> tuple[str, str, dict[str, str]]:
    """(experiment id, parent run id, {child name: run id}) of the newest ``kedro run`` in the project's
    store that has a child run for each name in ``compare`` (a rerun of a few nodes has fewer)."""
    sys.path.insert(0, str(ROOT / "src"))
    import mlflow

    from kowen_kedro.tracking import parent_runs

    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    exp = client.get_experiment_by_name("kowen_kedro")
    if exp is None:
        raise SystemExit(f"no kowen_kedro experiment in {project / 'mlflow.db'}: run `make run` there first")
    everyone = client.search_runs([exp.experiment_id])
    for parent in parent_runs(client, exp.experiment_id):
        children = {r.info.run_name: r.info.run_id for r in everyone
                    if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
        if set(compare) <= set(children):
            return exp.experiment_id, parent.info.run_id, children
    raise SystemExit(f"no run in {project / 'mlflow.db'} has child runs {list(compare)}")


#: kedro-viz's URL of the stage view: the default pipeline, namespaces folded, task nodes only
STAGES_VIEW = "/?pid=__default__&types=task&expandAllPipelines=false"


def zoom_level(dom: str) -> int | None:
    """kedro-viz's zoom level in percent, as its toolbar shows it in the rendered page."""
    import re

    found = re.search(r'title="Zoom level">(\d+)%<', dom)
    return int(found.group(1)) if found else None


def capture(browser: str, project: Path, out: Path, compare=("sft", "dpo_iter_2", "cross_lingual"),
            urls: dict[str, str] | None = None) -> dict:
    """The four pages of a finished run's project: ``{name: {"png", "dom"}}`` for ``mlflow_parent_run``,
    ``mlflow_compare_policies`` (the child runs named in ``compare``), ``kedro_viz_stages``
    (:data:`STAGES_VIEW`) and ``kedro_viz`` (the whole graph); each UI served by ``make`` for the while, or
    at ``urls`` (``{"mlflow-ui": url, "viz": url}``, as :func:`served` yields them) where it is served already."""
    project = project.resolve()
    if urls is None:
        with served(("mlflow-ui", "viz"), project) as urls:
            return capture(browser, project, out, compare, urls)
    exp, parent, children = runs(project, tuple(compare))
    chosen = [children[n] for n in compare]
    ml, url = "workflowType=machine_learning", urls["mlflow-ui"]  # MLflow's model-training view (else it opens the GenAI one)
    return {
        "mlflow_parent_run": shoot(browser, f"{url}/#/experiments/{exp}/runs/{parent}?{ml}", out / "mlflow_parent_run.png",
                                   size="1600,1600"),
        "mlflow_compare_policies": shoot(
            browser, f"{url}/#/compare-runs?runs={json.dumps(chosen)}&experiments={json.dumps([exp])}&{ml}",
            out / "mlflow_compare_policies.png", size="1600,1400"),
        "kedro_viz_stages": shoot(browser, urls["viz"] + STAGES_VIEW, out / "kedro_viz_stages.png"),
        "kedro_viz": shoot(browser, urls["viz"], out / "kedro_viz.png"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=ROOT)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    parser.add_argument("--compare", default="sft,dpo_iter_2,cross_lingual", help="child runs to compare")
    args = parser.parse_args()
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        raise SystemExit("no headless Chromium: apt-get install chromium")
    try:
        capture(browser, args.project, args.out, tuple(args.compare.split(",")))
    except RuntimeError as failed:
        raise SystemExit(str(failed)) from None


if __name__ == "__main__":
    main()
