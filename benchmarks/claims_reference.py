"""`make claims-reference`: record a default run's claims table as the seed-0 reference of the machines whose
float probe (:func:`kowen_kedro.floats.probe`) is this machine's: ``docs/claims_by_probe/<probe>.csv``.

The end-to-end test compares the default run's claims table float for float with the reference of its
machine's probe, and with docs/effects.csv's seed-0 rows (the study's machines) where there is none. Record
a reference only for a run of the committed code on a machine whose numbers differ from the study's by
the machine alone (its probe differs), never to make a changed number pass: a change meant to move the
numbers is `make effects`.

    python benchmarks/claims_reference.py PROJECT   # PROJECT: the folder of a finished default `kedro run`
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str]) -> Path:
    from kowen_kedro import floats

    project = Path(argv[0] if argv else ".")
    table = project / "data" / "08_reporting" / "gold" / "effects.csv"
    if not table.is_file():
        raise SystemExit(f"{table}: no claims table (run the default `kedro run` in {project} first)")
    out = ROOT / "docs" / "claims_by_probe" / f"{floats.probe()}.csv"
    out.parent.mkdir(exist_ok=True)
    shutil.copy(table, out)
    print(f"{out.relative_to(ROOT)}: the seed-0 claims table of machines with this float probe")
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
