"""The docs stay true: every `make` / `kedro` command they show exists with the flags, environments and
parameters it names; they speak about the software, not about how it was developed."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "conf").glob("*/README.md"))]
COMMAND = re.compile(r"`((?:make|kedro) [^`]+)`")
#: Files that describe the software to its users (the code's comments and docstrings included).
TEXT = [*DOCS, *sorted((ROOT / "conf").rglob("*.yml")), *sorted((ROOT / "src").rglob("*.py")), *sorted((ROOT / "tests").glob("*.py")),
        ROOT / "Makefile"]


def commands() -> list[tuple[str, str]]:
    """``(doc, command)`` of every `make` / `kedro` command a doc shows, inline or in a code block."""
    found = []
    for doc in DOCS:
        fenced = False
        for line in doc.read_text().splitlines():
            if line.strip().startswith("```"):
                fenced = not fenced
                continue
            if fenced and re.match(r"\s*(make|kedro) ", line):
                found.append((doc.name, line.split("  #")[0].strip()))
            found += [(doc.name, c) for c in COMMAND.findall(line)]
    return found


def make_targets() -> set[str]:
    return set(re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), re.MULTILINE))


@pytest.fixture(scope="module")
def cli():
    from kedro.framework.cli.cli import KedroCLI
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(ROOT)
    return KedroCLI(project_path=ROOT)


@pytest.fixture(scope="module")
def parameters():
    from kedro.config import OmegaConfigLoader

    return OmegaConfigLoader(str(ROOT / "conf"), base_env="base", default_run_env="local")["parameters"]


#: Runtime parameters the catalog reads (``${runtime_params:<key>, ...}``) without a parameters entry.
RUNTIME_ONLY = set(re.findall(r"runtime_params:([\w.]+)", "".join(p.read_text() for p in (ROOT / "conf").rglob("catalog.yml"))))


def test_the_docs_show_commands_at_all():
    found = commands()
    assert len(found) > 30 and any(c.startswith("kedro run --params") for _, c in found)


def test_every_make_target_the_docs_name_exists():
    targets = make_targets()
    missing = [(doc, c) for doc, c in commands() if c.startswith("make ") and c.split()[1] not in targets]
    assert not missing


def test_every_kedro_command_flag_env_and_parameter_exists(cli, parameters):
    import click

    problems = []
    for doc, text in commands():
        if not text.startswith("kedro "):
            continue
        words = shlex.split(text.replace("<", "").replace(">", ""))[1:]
        ctx = click.Context(cli)
        command: click.Command = cli
        while isinstance(command, click.Group) and words and not words[0].startswith("-"):
            sub = command.get_command(ctx, words[0])
            if sub is None:
                problems.append((doc, text, f"no command {words[0]!r}"))
                break
            command, words = sub, words[1:]
        options = {o for p in command.params for o in getattr(p, "opts", [])}
        for i, word in enumerate(words):
            if not word.startswith("--"):
                continue
            flag, _, value = word.partition("=")
            value = value or (words[i + 1] if i + 1 < len(words) and not words[i + 1].startswith("-") else "")
            if flag not in options:
                problems.append((doc, text, f"no option {flag}"))
            elif flag == "--env" and not (ROOT / "conf" / value).is_dir():
                problems.append((doc, text, f"no conf/{value}"))
            elif flag == "--params":
                for pair in value.split(","):
                    key = pair.split("=")[0]
                    if key in ("", "...") or key in RUNTIME_ONLY:  # a placeholder; a key only the catalog reads
                        continue
                    node = parameters
                    for part in key.split("."):
                        if node == {}:  # an options mapping the user fills (e.g. dpo_iter_1.dpo.sampling_backend)
                            break
                        if not isinstance(node, dict) or part not in node:
                            problems.append((doc, text, f"no parameter {key}"))
                            break
                        node = node[part]
    assert not problems


# Words about the project's development, not about the software: an issue number, the singular
# `--pipeline` flag (Kedro 1.x: --pipelines), a development document outside the repository.
DEVELOPMENT = re.compile(r"\b[Ii]ssues? #?\d+\b|--pipeline(?![s\w-])|MISSION\.md|previous commit|an earlier commit")


def test_docs_conf_and_code_speak_about_the_software():
    hits = []
    for path in TEXT:
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
            if DEVELOPMENT.search(line) and path.name != "test_docs.py":
                hits.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()[:90]}")
    assert not hits


def test_the_bench_table_shows_the_last_measurement():
    """docs/benchmarks.md's `make bench` table is the one `make bench` writes from its figures (docs/bench.json)."""
    import json
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from tables import bench_table, shown_table

    bench = json.loads((ROOT / "docs" / "bench.json").read_text())
    assert shown_table(ROOT / "docs" / "benchmarks.md") == bench_table(bench)
    assert {"generate_batch16_tokens_per_s", "qe_batch32_segments_per_s", "dpo_3ep_precompute_speedup"} <= set(bench["results"])


def test_run_times_are_shown_in_minutes_and_seconds_rounded_once():
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from tables import _minutes

    assert [_minutes(s) for s in (1019.9, 59.4, 59.6, 191.0, 0.2)] == [
        "17 min 00 s", "0 min 59 s", "1 min 00 s", "3 min 11 s", "0 min 00 s"]


def test_the_runs_table_shows_the_last_measured_runs():
    """docs/benchmarks.md's whole-run table is the one `make bench-runs` writes (docs/runs.json), and the
    README states no run time of its own."""
    import json
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from tables import runs_table, shown_table

    runs = json.loads((ROOT / "docs" / "runs.json").read_text())
    assert "default" in runs and runs["default"]["training_launches"] > 5
    assert shown_table(ROOT / "docs" / "benchmarks.md", "runs") == runs_table(runs)
    assert not re.findall(r"\b\d+ ?(?:min|minutes)\b", (ROOT / "README.md").read_text())


def test_the_preflight_tables_show_the_shipped_recipes():
    """docs/preflight.md's tables are what `kedro preflight` computes for the shipped recipes today (`make
    preflight-docs` rewrites them), and each recipe fits."""
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from preflight_docs import RECIPES, preflight_table
    from tables import shown_table

    for env, stages in RECIPES:
        table = preflight_table(env, stages)
        assert shown_table(ROOT / "docs" / "preflight.md", f"preflight-{env}") == table, f"make preflight-docs ({env})"
        assert "Problems:" not in table and "| NO |" not in table


def test_the_readme_starts_fast_and_every_link_of_the_docs_resolves():
    """The README is the front page: what it is, the two commands near the top, the pipelines, the world,
    the layout, links; the reference material is in docs/. Every relative link of every doc names a file
    that exists (a page moved or renamed breaks no reader's path)."""
    readme = (ROOT / "README.md").read_text().splitlines()
    assert len(readme) <= 150, f"README.md has {len(readme)} lines"
    first_command = next(i for i, line in enumerate(readme) if line.startswith("make run"))
    assert first_command < 30
    broken = []
    for doc in DOCS:
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", doc.read_text()):
            if not re.match(r"[a-z]+://", target) and not (doc.parent / target).exists():
                broken.append(f"{doc.relative_to(ROOT)} -> {target}")
    assert not broken, broken
