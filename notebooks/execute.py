"""Execute ``compare_runs.ipynb`` headless (nbclient + ipykernel) against a project's MLflow store.

    .venv/bin/python notebooks/execute.py [PROJECT_DIR] [OUT.ipynb]

PROJECT_DIR (default: the current directory) holds ``mlflow.db``; the executed notebook, outputs
included, is written to OUT (default ``data/08_reporting/compare_runs.ipynb`` under PROJECT_DIR): open it
in Jupyter, VS Code or any notebook viewer. ``make notebook`` runs this on the project's own runs.
"""

from __future__ import annotations

import sys
from pathlib import Path

NOTEBOOK = Path(__file__).resolve().parent / "compare_runs.ipynb"


def execute(project: Path, out: Path | None = None, timeout: int = 300):
    """Run every cell with ``project`` as the working directory; returns the executed notebook."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(project)}}).execute()
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, out)
    return nb


def main(argv: list[str]) -> None:
    project = Path(argv[0] if argv else ".").resolve()
    out = Path(argv[1]) if len(argv) > 1 else project / "data/08_reporting/compare_runs.ipynb"
    execute(project, out)
    print(f"executed {NOTEBOOK.name} on {project / 'mlflow.db'} -> {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
