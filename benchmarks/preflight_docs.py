"""`make preflight-docs`: the preflight tables of the shipped recipes in docs/preflight.md, each what
`kedro preflight --env <env> --stages <stages>` prints on a fresh clone (no data at hand)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))

#: (environment, stage-name prefixes shown: the stages the recipe is for)
RECIPES = [("kowen_7b", ()), ("clo", ("cross_lingual",)), ("xl_instruct", ("sft.xl_instruct",))]


def preflight_table(env: str, stages: tuple[str, ...]) -> str:
    from kowen_kedro.parameters import recipe_params
    from kowen_kedro.training import preflight

    params = recipe_params(ROOT / "conf", env)
    with tempfile.TemporaryDirectory() as empty:  # no data at hand: the recipe's own figures
        rows = [st for st in preflight.plan(params, empty) if not stages or st.stage.startswith(stages)]
    return preflight.table(rows, env, preflight.Settings.from_params(params))


def main() -> None:
    from tables import rewrite_block

    for env, stages in RECIPES:
        rewrite_block(ROOT / "docs" / "preflight.md", f"preflight-{env}", preflight_table(env, stages))
    print("docs/preflight.md rewritten")


if __name__ == "__main__":
    main()
