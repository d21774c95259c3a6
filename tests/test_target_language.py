"""``kedro run --params target_language=ja``: the whole default pipeline on the Japanese world.

One switch makes every language-dependent choice: the world and its gold set, the tiny models (built
for English + Japanese), translation and QE, synthesis (single- and multi-turn), CLO and XL-Instruct,
the RMs and their transfer, evaluation and the claims. Asserted: the run completes, its MLflow run holds
the ``ja`` gold metrics, ``gold/effects.md`` has ``ja`` rows, and no Korean is written anywhere (data,
models' answers, reports, MLflow artifacts). Training runs one process without DeepSpeed
(``training.launcher=python``) in a smaller world, to keep the suite's time: the DeepSpeed path is the
default run's test, and ``kedro run --params target_language=ja`` the full-size run (docs/world.md).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from conftest import finished_background_run, scratch_project, start_kedro_run

from kowen_kedro.tracking import dotted, parent_runs

pytestmark = pytest.mark.slow

HANGUL = re.compile(r"[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]")
KANA = re.compile(r"[\u3040-\u30ff]")
TEXT_SUFFIXES = {".jsonl", ".json", ".md", ".csv", ".yml", ".yaml", ".txt", ".log"}


#: The Japanese run, in a smaller world (a quarter of the rows), with shorter tiny-model builds and without
#: DeepSpeed start-ups, to fit the suite's time; every pipeline and node of the default runs.
PARAMS = {
    "target_language": "ja",
    "training": {"launcher": "python"},
    "tiny_models": {"pretrain_steps": 80, "teacher_steps": 60, "qe_steps": 300, "mt_steps": 100},
    "tiny_world": {"sizes": {"user_prompts": 100, "multi_turn_prompts": 4, "preference_pairs": 60, "eval_prompts": 6,
                             "mt_bench_prompts": 2, "nlu_mc": 4, "gold_prompts": 100, "gold_pairs": 60, "gold_translations": 20,
                             "gold_xl_prompts": 60, "seed_passages": 60, "parallel_tasks": 200}},
}


def start_japanese_run(root: Path) -> subprocess.Popen:
    """``kedro run`` with :data:`PARAMS` in a scratch project at ``root`` (the published-benchmark samples
    alone), beside the other tests (started by conftest at collection time), on one thread at the lowest priority."""
    return start_kedro_run(scratch_project(root, raw_data=False), PARAMS)


BACKGROUND_RUNS = {"japanese_run": start_japanese_run}


@pytest.fixture(scope="module")
def japanese_run(request, tmp_path_factory):
    return finished_background_run(request, tmp_path_factory, "japanese_run")


def test_the_run_measures_japanese_and_writes_no_korean(japanese_run):
    from mlflow.tracking import MlflowClient

    root = japanese_run
    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    (experiment,) = [e for e in client.search_experiments() if e.name != "Default"]
    (run,) = parent_runs(client, experiment.experiment_id)
    m = dotted(run.data.metrics)
    assert run.info.status == "FINISHED" and run.data.params["target_language"] == "ja"
    for key in ("gold.teacher.ja", "gold.sft.ja", "gold.sft.ja.fidelity", "gold.dpo_iter_1.ja", "gold.xl_instruct.xl",
                "gold.cross_lingual.ja", "gold.rm_transfer_target.accuracy.ja", "gold.qe.spearman"):
        assert key in m, key
    assert not [k for k in m if re.search(r"(^|\.)ko(\.|$)", k)]
    assert m["gold.teacher.ja"] > 0.8 and m["gold.sft.ja"] > m["gold.base.ja"] + 0.1

    effects = sorted((root / "data" / "08_reporting").rglob("effects.md"))
    assert effects and "| ja |" in effects[-1].read_text(encoding="utf-8")

    korean, japanese = [], 0
    for path in [*(root / "data").rglob("*"), *(root / "mlruns").rglob("*")]:
        if path.is_file() and path.suffix in TEXT_SUFFIXES:
            text = path.read_text(encoding="utf-8", errors="ignore")
            if HANGUL.search(text):
                korean.append(str(path.relative_to(root)))
            japanese += bool(KANA.search(text))
    for db in (root / "mlflow.db", root / "data" / "02_intermediate" / "llm_call_cache.sqlite"):  # every text value
        korean += [f"{db.name}:{table}" for table, text in _sqlite_texts(db) if HANGUL.search(text)]
    assert korean == [], korean
    assert japanese > 20
    sft = sorted((root / "data" / "03_primary").rglob("target_multi_turn.jsonl"))
    assert sft and KANA.search(sft[-1].read_text(encoding="utf-8"))


def _sqlite_texts(path: Path):
    """(table, value) of every text (or UTF-8 blob) value of the SQLite database at ``path``."""
    import sqlite3

    con = sqlite3.connect(path)
    try:
        for (table,) in con.execute("select name from sqlite_master where type='table'").fetchall():
            for row in con.execute(f'select * from "{table}"'):
                for value in row:
                    if isinstance(value, bytes):
                        value = value.decode("utf-8", errors="ignore")
                    if isinstance(value, str):
                        yield table, value
    finally:
        con.close()


def test_the_console_is_one_line_per_node_and_ends_with_the_results(japanese_run):
    """What `kedro run` prints (this run's console, captured): a line per node with its time, the
    training launches as progress bars, warnings; at the end the claims table, the MLflow run and the
    commands that open the results - about 200 lines, the details in info.log."""
    import re

    text = (japanese_run / "run.log").read_bytes().decode(errors="replace")  # "\r" (a bar's update) is no new line
    assert text.count("\n") <= 210, f"{text.count(chr(10))} console lines"
    (total,) = [int(n) for n in re.findall(r"^kowen-kedro: (\d+) nodes", text, re.MULTILINE)]
    node_lines = re.findall(r"^\[\s*(\d+)/(\d+)\] (\S+) +[\d.]+ s$", text.replace("\r", "\n"), re.MULTILINE)
    assert len(node_lines) == total and [int(i) for i, _, _ in node_lines] == list(range(1, total + 1))
    assert "evaluation.gold_effects_node" in {name for _, _, name in node_lines}
    assert "| claim | paper | lang | measured | SE | criterion | held |" in text and "## Gold decomposed" not in text
    assert re.search(r"^MLflow run [0-9a-f]{32}$", text, re.MULTILINE) and "make mlflow-ui" in text
    assert re.search(r"^  http://127\.0\.0\.1:5000/#/experiments/\d+/runs\?workflowType=machine_learning ", text, re.MULTILINE)
    assert "{'loss'" not in text  # the step-by-step losses are in the launches' logs and info.log
    assert re.search(r"training sft: \d+ logs", text) and "training dpo_iter_1 (dpo)" in text  # launches as progress bars
    assert (japanese_run / "info.log").stat().st_size > 10 * len(text)
