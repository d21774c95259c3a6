"""Two training launches as two nodes of one pipeline, run by the project's runner side by side:
``python -m tests.helpers.two_launches <base model> <work folder>`` (a test kills it part-way, then reruns it)."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _launch(name: str, base: str, work: Path):
    def run(_: int) -> dict:
        from kowen_kedro.training.launcher import launch
        from kowen_kedro.training.spec import LaunchSpec, zero_config

        rows = [{"messages": [{"role": "user", "content": f"{name} question {i}?"},
                              {"role": "assistant", "content": f"{name} answer {i}."}]} for i in range(16)]
        data = work / f"{name}.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in rows))
        spec = LaunchSpec(kind="sft", model=base, train_file=str(data), output_dir=str(work / name),
                          trainer_args={"num_train_epochs": 3, "learning_rate": 1e-3, "per_device_train_batch_size": 4,
                                        "max_length": 64, "save_steps": 2},
                          global_batch_size=4, deepspeed=zero_config(3), world_size=1,
                          callbacks=[{"class": "tests.helpers.train_callbacks:SlowDown", "kwargs": {"seconds": 0.5}}])
        return launch(spec)
    return run


def main(base: str, work: str) -> None:
    from kedro.io import DataCatalog, MemoryDataset
    from kedro.pipeline import Node, Pipeline

    from kowen_kedro.runner import LAUNCH_TAG, StageRunner

    folder = Path(work)
    nodes = [Node(_launch(name, base, folder), "x", name, name=name, tags=[LAUNCH_TAG]) for name in ("a", "b")]
    catalog = DataCatalog({"x": MemoryDataset(0)})
    out = StageRunner(max_launches=2).run(Pipeline(nodes), catalog)
    records = {name: (ds.load() if hasattr(ds, "load") else ds) for name, ds in out.items()}
    (folder / "records.json").write_text(json.dumps(records, default=str))


if __name__ == "__main__":
    main(*sys.argv[1:3])
