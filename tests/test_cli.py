"""The project CLI: a run stopped by bad input data ends with a short message, the traceback goes to a log."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from kedro.io import DatasetError

from conftest import ROOT
from kowen_kedro.cli import data_error, short_message
from kowen_kedro.data.validation import DataValidationError


def test_data_error_is_found_behind_kedros_wrappers_and_worded_briefly():
    err = DataValidationError("data/01_raw/p.jsonl", 7, "conversation", "expected a list of messages")
    try:
        try:
            raise err
        except DataValidationError as inner:
            raise DatasetError("p: Failed while loading data") from inner
    except DatasetError as outer:
        assert data_error(outer) is err
    assert data_error(ValueError("not data")) is None
    assert short_message(err, Path("logs/last_error.log")).splitlines() == [
        "kedro run stopped: bad input data, nothing was trained on it.",
        "  file data/01_raw/p.jsonl, line 7, field 'conversation': expected a list of messages",
        "  (full traceback: logs/last_error.log)",
    ]


@pytest.mark.parametrize("ends", ["returns", "raises"])
def test_the_run_command_leaves_its_objects_to_the_exit_frozen(monkeypatch, ends):
    """Once ``kedro run`` is over (done or failed) the interpreter's objects are frozen out of the garbage
    collector, so the exit does not walk them all once more."""
    import gc

    from kowen_kedro import cli

    def run(**kwargs):
        assert kwargs["runner"] == cli.DEFAULT_RUNNER and gc.get_freeze_count() == 0
        if ends == "raises":
            raise RuntimeError("a node failed")
        return "done"

    monkeypatch.setattr(cli.kedro_run, "callback", run)
    monkeypatch.setattr(cli, "prestart_tiny_build", lambda *args: None)
    gc.unfreeze()
    try:
        if ends == "raises":
            with pytest.raises(RuntimeError, match="a node failed"):
                cli._run(runner=None)
        else:
            assert cli._run(runner=None) == "done"
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()  # this test process goes on collecting


def test_kedro_run_starts_the_qe_process_first_where_no_tiny_models_are_built(tmp_path, monkeypatch):
    """``kedro run`` reads ``tiny_models.out_dir`` of its environment and parameters as Kedro will, and starts
    the tiny QE model's process before Kedro starts where no models are built there; configuration it cannot
    read is left to Kedro (no error here, nothing started)."""
    from kowen_kedro import cli
    from kowen_kedro.tiny import build

    started = []
    monkeypatch.setattr(build, "prestart_qe_child", lambda: started.append(1))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "conf" / "base").mkdir(parents=True)
    (tmp_path / "conf" / "local").mkdir()
    (tmp_path / "conf" / "base" / "parameters.yml").write_text("tiny_models:\n  out_dir: data/tiny\n")
    cli.prestart_tiny_build(None, None, None)
    assert started == [1]
    (tmp_path / "data" / "tiny").mkdir(parents=True)
    (tmp_path / "data" / "tiny" / build.MANIFEST).write_text("{}")
    cli.prestart_tiny_build(None, None, None)
    assert started == [1]  # built: nothing to start
    cli.prestart_tiny_build(None, None, {"tiny_models": {"out_dir": "data/other"}})
    assert started == [1, 1]  # the run's parameters name another folder
    (tmp_path / "conf" / "base" / "parameters.yml").write_text("tiny_models: [not: valid\n")
    cli.prestart_tiny_build(None, None, None)
    assert started == [1, 1]


@pytest.mark.slow
def test_kedro_run_on_a_bad_file_ends_with_the_short_message(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "pyproject.toml", project / "pyproject.toml")
    for env in ("base", "samples"):
        shutil.copytree(ROOT / "conf" / env, project / "conf" / env)
    (project / "conf" / "local").mkdir()
    (project / "src").mkdir()  # the package itself is imported from the installed (editable) kowen_kedro
    shutil.copytree(ROOT / "data" / "01_raw", project / "data" / "01_raw", ignore=shutil.ignore_patterns("world"))
    bad = project / "data/01_raw/user_prompts.jsonl"
    lines = bad.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[2] = '{"conversation_id": "x", broken\n'
    bad.write_text("".join(lines), encoding="utf-8")
    kedro = Path(sys.executable).with_name("kedro")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "KEDRO_DISABLE_TELEMETRY": "1"}
    out = subprocess.run([str(kedro), "run", "--env", "samples"], cwd=project, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 1, out.stderr[-3000:]
    assert out.stderr.strip().splitlines()[-3:] == [  # the last thing printed
        "kedro run stopped: bad input data, nothing was trained on it.",
        f"  file {bad}, line 3: malformed JSON (Expecting property name enclosed in double quotes)",
        "  (full traceback: logs/last_error.log)",
    ]
    assert "Traceback" not in out.stdout + out.stderr
    assert "UserWarning" not in out.stdout + out.stderr  # kowen_kedro.QUIET: nothing a user can act on
    log = (project / "logs/last_error.log").read_text(encoding="utf-8")
    assert log.startswith("Traceback") and "DataValidationError" in log
    assert not (project / "data/06_models").exists() and not (project / "data/02_intermediate").exists()


def test_quiet_drops_the_listed_third_party_warnings_only():
    import logging

    from kowen_kedro import _QuietWarnings

    def record(msg):
        return logging.LogRecord("py.warnings", logging.WARNING, "x.py", 1, msg, None, None)

    quiet = _QuietWarnings()
    assert not quiet.filter(record("mlflow/pyfunc/utils/data_validation.py:187: UserWarning: \x1b[33mAdd type hints to the `predict`"))
    assert not quiet.filter(record("omegaconf_config.py:637: UserWarning: register_new_resolver() is deprecated"))
    assert quiet.filter(record("kowen_kedro/x.py:3: UserWarning: something new"))


def test_the_console_hook_prints_a_line_per_node_and_the_claims_table(caplog, tmp_path):
    """The run's console: the settings that pin the floats, a counted line per node with its time; at the end the claims table of
    gold/effects.md (not its per-policy sections), the MLflow run and the commands to look further."""
    import logging
    from types import SimpleNamespace

    from kowen_kedro import floats
    from kowen_kedro.hooks import ConsoleHook, claims_section

    md = "# Gold effects\n\nintro\n\n| claim | held |\n|---|---|\n| a | yes |\n\n## Gold decomposed per policy\n\n| x |\n"
    assert claims_section(md) == ["# Gold effects", "", "intro", "", "| claim | held |", "|---|---|", "| a | yes |"]

    nodes = [SimpleNamespace(name=f"n{i}_node") for i in range(12)]
    pipeline = SimpleNamespace(nodes=nodes, all_outputs=lambda: {"gold_effects_md"})
    catalog = SimpleNamespace(load=lambda name: md)
    hook = ConsoleHook()
    with caplog.at_level(logging.INFO, logger="kowen_kedro.console"):
        hook.before_pipeline_run({"env": None}, pipeline)
        for node in nodes:
            hook.before_node_run(node)
            hook.after_node_run(node)
        hook.after_pipeline_run(pipeline, catalog)
    lines = [r.getMessage() for r in caplog.records if r.name == "kowen_kedro.console"]
    assert lines[0].startswith("kowen-kedro: 12 nodes (env base)")
    assert lines[1] == f"kowen-kedro: {floats.describe()}" and "OMP_NUM_THREADS=" in lines[1]
    assert lines[2].startswith("[ 1/12] n0_node ") and lines[13].startswith("[12/12] n11_node ") and lines[13].endswith(" s")
    assert "| a | yes |" in lines[-1] and "Gold decomposed" not in lines[-1] and "make mlflow-ui" in lines[-1]
