"""NLU benchmarks through lm-evaluation-harness (``lm_eval.simple_evaluate``) on a saved model.

Production tasks are the harness's own (``mmlu``, ``kmmlu``, ``belebele_eng_Latn``, ``belebele_kor_Hang``).
The built-in default runs the real harness offline on a small shipped multiple-choice file
(``data/01_raw/nlu_mc.jsonl``): :func:`local_mc_tasks` writes one lm-eval task per language
(``kowen_mc_<lang>``, Belebele-style A/B/C/D prompt, log-likelihood scoring) into a folder that is
passed to the harness's ``TaskManager(include_path=...)``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from kowen_kedro.data.validation import DataValidationError, line_of, source_of, validate_records

TASK_TEMPLATE = """task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data_file}
  cache_dir: {cache_dir}
test_split: test
output_type: multiple_choice
doc_to_text: "Question: {{{{question}}}}\\nA: {{{{choices[0]}}}}\\nB: {{{{choices[1]}}}}\\nC: {{{{choices[2]}}}}\\nD: {{{{choices[3]}}}}\\nAnswer:"
doc_to_choice: ["A", "B", "C", "D"]
doc_to_target: answer
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""


def validate_mc(rows: pd.DataFrame) -> pd.DataFrame:
    """``id, language, question, choices (4 strings), answer (0-3)``; errors name file, line and field."""
    validate_records(rows, {"id": str, "language": str, "question": str, "choices": list})
    for r, row in enumerate(rows.to_dict("records")):
        if len(row["choices"]) != 4 or not all(isinstance(c, str) and c.strip() for c in row["choices"]):
            raise DataValidationError(source_of(rows), line_of(rows, r), "choices", "expected four non-empty strings")
        if not isinstance(row.get("answer"), int) or not 0 <= row["answer"] <= 3:
            raise DataValidationError(source_of(rows), line_of(rows, r), "answer", "expected an integer 0-3")
    return rows


def local_mc_tasks(rows: pd.DataFrame, folder: str | Path) -> list[str]:
    """Write ``kowen_mc_<lang>`` task YAMLs + data files into ``folder``; returns the task names. The datasets
    library's Arrow copy of the data goes to ``folder/datasets_cache`` (not ``~/.cache/huggingface``)."""
    validate_mc(rows)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for lang, part in rows.groupby("language", sort=True):
        data = folder / f"kowen_mc_{lang}.jsonl"
        data.write_text("".join(json.dumps({k: r[k] for k in ("id", "question", "choices", "answer")}, ensure_ascii=False) + "\n"
                                for r in part.to_dict("records")), encoding="utf-8")
        name = f"kowen_mc_{lang}"
        (folder / f"{name}.yaml").write_text(TASK_TEMPLATE.format(name=name, data_file=data.resolve(),
                                                                  cache_dir=(folder / "datasets_cache").resolve()), encoding="utf-8")
        names.append(name)
    return names


def task_manager(tasks: list[str], include_path: str | Path | None = None):
    """The harness's ``TaskManager`` for ``tasks``: the tasks of ``include_path`` alone when they name them all
    (indexing the harness's own ~15,000 task files took about 4 s of every evaluation), else those and the
    harness's own."""
    from lm_eval.tasks import TaskManager

    if include_path:
        local = TaskManager(include_path=str(include_path), include_defaults=False)
        if all(task in local.all_tasks for task in tasks):
            return local
    return TaskManager(include_path=str(include_path) if include_path else None)


def run_lm_eval(model_dir: str, tasks: list[str], include_path: str | Path | None = None, batch_size: int = 8,
                limit: int | None = None, device: str | None = None) -> pd.DataFrame:
    """``task, metric, value, stderr`` rows from ``lm_eval.simple_evaluate`` with the HF backend."""
    import torch
    from lm_eval import simple_evaluate

    manager = task_manager(tasks, include_path)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    out = simple_evaluate(model="hf", model_args={"pretrained": str(model_dir), "dtype": "auto"}, tasks=tasks,
                          task_manager=manager, batch_size=batch_size, limit=limit, device=device,
                          log_samples=False, bootstrap_iters=1000)
    rows = []
    for task, metrics in sorted(out["results"].items()):
        for key, value in metrics.items():
            if key == "alias" or "_stderr" in key or key.startswith("sample_len") or not isinstance(value, (int, float)):
                continue
            metric = key.split(",")[0]
            stderr = metrics.get(f"{metric}_stderr,{key.split(',', 1)[1]}" if "," in key else f"{metric}_stderr")
            rows.append({"task": task, "metric": metric, "value": float(value),
                         "stderr": float(stderr) if isinstance(stderr, (int, float)) else float("nan")})
    return pd.DataFrame(rows, columns=["task", "metric", "value", "stderr"])
