"""Screenshots of what a user opens after a run: MLflow's compare view of two policies' child runs, the
parent run's page, and the kedro-viz graph (headless Chromium, as Debian packages it: ``apt-get install
chromium``). ``make screenshots`` (``PROJECT=`` a project folder that has run; default: this one) writes
``docs/images/*.png``.

Each UI is started as a user starts it (``make mlflow-ui`` / ``make viz``), on a free port.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def served(target: str, project: Path, timeout: float = 240):
    """``make <target>`` for ``project``; yields its base URL once it answers."""
    port = free_port()
    var = "MLFLOW_PORT" if target == "mlflow-ui" else "VIZ_PORT"
    proc = subprocess.Popen(["make", "-C", str(ROOT), target, f"PROJECT={project}", f"{var}={port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"make {target} exited with {proc.returncode}")
            try:
                urllib.request.urlopen(url, timeout=5).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"make {target} did not serve in {timeout} s")
                time.sleep(2)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)


def shoot(browser: str, url: str, out: Path, size: str = "1600,1000", wait_ms: int = 20000) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--window-size={size}", f"--virtual-time-budget={wait_ms}", f"--screenshot={out}", url],
                   check=True, capture_output=True, timeout=180)
    print(f"{out}  <- {url}")
    return out


def runs(project: Path) -> tuple[str, str, dict[str, str]]:
    """(experiment id, newest parent run id, {child name: run id}) of the project's store."""
    sys.path.insert(0, str(ROOT / "src"))
    import mlflow

    from kowen_kedro.tracking import parent_runs

    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    exp = client.get_experiment_by_name("kowen_kedro")
    parent = parent_runs(client, exp.experiment_id)[0]
    children = {r.info.run_name: r.info.run_id for r in client.search_runs([exp.experiment_id])
                if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    return exp.experiment_id, parent.info.run_id, children


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=ROOT)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    parser.add_argument("--compare", default="sft,dpo_iter_2,cross_lingual", help="child runs to compare")
    args = parser.parse_args()
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        raise SystemExit("no headless Chromium: apt-get install chromium")
    project = args.project.resolve()
    exp, parent, children = runs(project)
    chosen = [children[n] for n in args.compare.split(",") if n in children]
    with served("mlflow-ui", project) as url:
        shoot(browser, f"{url}/#/experiments/{exp}/runs/{parent}", args.out / "mlflow_parent_run.png")
        shoot(browser, f"{url}/#/compare-runs?runs={json.dumps(chosen)}&experiments={json.dumps([exp])}",
              args.out / "mlflow_compare_policies.png", size="1600,1400")
    with served("viz", project) as url:
        shoot(browser, url, args.out / "kedro_viz.png")


if __name__ == "__main__":
    main()
