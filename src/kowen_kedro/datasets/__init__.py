"""Custom Kedro datasets, only where kedro-datasets has none.

* :class:`ModelDirectoryDataset` - a versioned ``save_pretrained`` folder (model, tokenizer, configs).
  Nodes pass *paths*, never loaded models: a 72B model is never pulled into the Kedro process.
* :class:`JSONLinesDataset` - JSONL records with line-numbered errors and the file path kept in
  ``df.attrs["source"]`` (``pandas.JSONDataset`` reports neither).
* :class:`MlflowMetricsDataset` - kedro-mlflow's metrics dataset, names grouped with ``/`` for the MLflow UI.
* :class:`MarkdownDataset` - ``text.TextDataset`` for markdown reports, previewed in kedro-viz as the
  rendered page (``TextDataset`` has no preview).
* :class:`OptionalDataset` - a raw input a run may lack (a local copy of a hub file): ``None`` when
  the wrapped dataset does not exist, so the node can say what is missing instead of failing.
"""

from __future__ import annotations

import codecs
import json
import os
import shutil
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd
from kedro.io import AbstractDataset, AbstractVersionedDataset, DatasetError, Version
from kedro_datasets._typing import HTMLPreview

from kowen_kedro.data.validation import DataValidationError


def _link_or_copy(src: str, dst: str) -> None:
    """Hard-link when possible (same filesystem: instant, no extra space), copy otherwise."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


class ModelDirectoryDataset(AbstractVersionedDataset[str, str]):
    """A versioned folder written by ``save_pretrained``.

    ``save(path)`` puts the folder at ``path`` into the (versioned) dataset location; ``load()``
    returns the local path of the folder, ready for ``from_pretrained``. Saving is atomic: the
    folder is assembled under a temporary name and renamed into place.

    Example catalog entry::

        sft_model:
          type: kowen_kedro.datasets.ModelDirectoryDataset
          filepath: data/06_models/sft_model
          versioned: true
    """

    def __init__(self, filepath: str, version: Version | None = None, metadata: dict[str, Any] | None = None):
        super().__init__(filepath=PurePosixPath(filepath), version=version)
        self.metadata = metadata

    def load(self) -> str:
        path = Path(str(self._get_load_path()))
        if not (path / "config.json").exists():
            raise DatasetError(f"{path} is not a saved model folder (no config.json)")
        return str(path)

    def save(self, data: str | os.PathLike) -> None:
        src = Path(data)
        if not (src / "config.json").exists():
            raise DatasetError(f"cannot save {src}: not a saved model folder (no config.json)")
        dst = Path(str(self._get_save_path()))
        tmp = dst.with_name(dst.name + ".partial")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(src, tmp, copy_function=_link_or_copy)
        tmp.rename(dst)

    def _exists(self) -> bool:
        try:
            path = Path(str(self._get_load_path()))
        except DatasetError:
            return False
        return (path / "config.json").exists()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "version": self._version}


class JSONLinesDataset(AbstractDataset[pd.DataFrame, pd.DataFrame]):
    """JSONL <-> DataFrame. A malformed line raises an error naming the file and line number.

    Files are UTF-8; a leading byte-order mark (Excel, PowerShell and Notepad write one) is skipped.
    A line that is not valid UTF-8 is reported by number, like any other bad line."""

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None):
        self._filepath = Path(filepath)
        self.metadata = metadata

    def load(self) -> pd.DataFrame:
        records, lines = [], []
        with open(self._filepath, "rb") as f:
            for line_no, raw in enumerate(f, start=1):
                if line_no == 1 and raw.startswith(codecs.BOM_UTF8):
                    raw = raw[len(codecs.BOM_UTF8):]
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    raise DataValidationError(str(self._filepath), line_no, None,
                                              f"not valid UTF-8 (byte 0x{raw[err.start]:02x} at column {err.start + 1}); "
                                              "save the file as UTF-8") from None
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as err:
                    raise DataValidationError(str(self._filepath), line_no, None, f"malformed JSON ({err.msg})") from err
                if not isinstance(obj, dict):
                    raise DataValidationError(str(self._filepath), line_no, None, "expected a JSON object")
                records.append(obj)
                lines.append(line_no)
        df = pd.DataFrame.from_records(records)
        df.attrs["source"] = str(self._filepath)
        df.attrs["lines"] = lines
        return df

    def save(self, data: pd.DataFrame) -> None:
        self._filepath.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._filepath.with_suffix(self._filepath.suffix + ".tmp")
        data.to_json(tmp, orient="records", lines=True, force_ascii=False)
        tmp.replace(self._filepath)

    def _exists(self) -> bool:
        return self._filepath.exists()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}


class WorldPartDataset(JSONLinesDataset):
    """One part of the tiny world (:mod:`kowen_kedro.world.generate`) as a raw JSONL input.

    On load, the world of ``seed`` in English and ``target_language`` is written under
    ``<directory>/<target_language>/seed_<seed>/`` unless it is there already (a stamp file says so),
    then the part is read like any shipped JSONL file. Load-only: the world is a raw input, made by a
    program instead of shipped.

    Example catalog entry::

        user_prompts_raw:
          type: kowen_kedro.datasets.WorldPartDataset
          part: user_prompts
          seed: ${runtime_params:tiny_world.seed, 0}
          target_language: ${runtime_params:target_language, ${globals:target_language}}
    """

    def __init__(self, part: str, seed: int = 0, target_language: str | None = None, directory: str = "data/01_raw/world",
                 metadata: dict[str, Any] | None = None, extra_languages: str | list[str] | None = None,
                 sizes: dict[str, Any] | None = None):
        from dataclasses import fields

        from kowen_kedro.world.generate import PARTS, WorldSizes, world_languages
        from kowen_kedro.world.languages import DEFAULT_TARGET

        if part not in PARTS:
            raise DatasetError(f"unknown world part {part!r}; expected one of {list(PARTS)}")
        self._part, self._seed = part, int(seed)
        try:
            self._target = world_languages(target_language or DEFAULT_TARGET)[1]
        except ValueError as exc:
            raise DatasetError(f"world part {part!r}: {exc}") from exc
        if isinstance(extra_languages, str):  # `--params tiny_world.extra_languages=ko,zh`
            extra_languages = [c.strip() for c in extra_languages.split(",") if c.strip()]
        self._extra = tuple(c for c in (extra_languages or ()) if c != self._target)
        try:
            for code in self._extra:
                world_languages(code)
        except ValueError as exc:
            raise DatasetError(f"world part {part!r}, tiny_world.extra_languages: {exc}") from exc
        known = {f.name for f in fields(WorldSizes)}
        unknown = sorted(set(sizes or {}) - known)
        if unknown:
            raise DatasetError(f"world part {part!r}: unknown tiny_world.sizes {unknown}; known: {sorted(known)}")
        self._sizes = WorldSizes(**dict(sizes or {}))
        folder = "+".join((self._target, *self._extra))  # ja, or ja+ko with Korean evaluation pairs
        self._world_dir = Path(directory) / folder / f"seed_{self._seed}"
        super().__init__(str(self._world_dir / f"{part}.jsonl"), metadata)

    def load(self) -> pd.DataFrame:
        from kowen_kedro.world.generate import write_world

        write_world(self._seed, self._world_dir, self._sizes, target_language=self._target, extra_languages=self._extra)
        df = super().load()
        df.attrs["world_seed"] = self._seed
        df.attrs["world_target_language"] = self._target
        return df

    def save(self, data: pd.DataFrame) -> None:
        raise DatasetError(f"{self._filepath}: the world's parts are generated from the seed, not saved")

    def _exists(self) -> bool:
        return True

    def _describe(self) -> dict[str, Any]:
        return {"part": self._part, "seed": self._seed, "target_language": self._target, "filepath": str(self._filepath)}


class OptionalDataset(AbstractDataset[Any, Any]):
    """A load-only input that may be absent: loads the wrapped dataset when it exists, else ``None``.

    For inputs that only some runs have, where the node reports what their absence leaves out
    (alpaca_eval's ``df_gamed.csv`` for the length-controlled win rate). Example catalog entry::

        alpacaeval_df_gamed:
          type: kowen_kedro.datasets.OptionalDataset
          dataset: {type: pandas.CSVDataset, filepath: data/01_raw/benchmarks/alpacaeval_df_gamed.csv}
    """

    def __init__(self, dataset: dict[str, Any] | str, metadata: dict[str, Any] | None = None):
        config = {"type": dataset} if isinstance(dataset, str) else dict(dataset)
        self._dataset = AbstractDataset.from_config("optional", config)
        self.metadata = metadata

    def load(self) -> Any:
        return self._dataset.load() if self._dataset.exists() else None

    def save(self, data: Any) -> None:
        raise DatasetError(f"{self._dataset}: an optional raw input is read, not saved")

    def _exists(self) -> bool:
        return True

    def _describe(self) -> dict[str, Any]:
        return {"dataset": self._dataset._describe()}


def _metrics_history_dataset():
    from kedro_mlflow.io.metrics import MlflowMetricsHistoryDataset

    return MlflowMetricsHistoryDataset


class MlflowMetricsDataset(_metrics_history_dataset()):
    """kedro-mlflow's ``MlflowMetricsHistoryDataset`` with the names MLflow groups: ``/`` between the
    parts (``gold/sft/en/se``) where the project's names use ``.`` (``prefix: gold`` + ``sft.en.se``).
    The MLflow UI puts the charts of one prefix into one section; :func:`kowen_kedro.tracking.dotted`
    reads the names back."""

    def _build_args_list_from_metric_item(self, key, value):
        from kowen_kedro.tracking import metric_key

        for name, number, step in super()._build_args_list_from_metric_item(key, value):
            yield metric_key(name), number, step

    def _is_dataset_metric(self, key: str) -> bool:
        from kowen_kedro.tracking import SEP, metric_key

        return self._prefix is None or key.startswith(metric_key(self._prefix) + SEP)

    def _save(self, data) -> None:
        """As kedro-mlflow saves them (the same keys, values and steps into the same run), in MLflow's batch
        calls instead of one call per metric: a run's few thousand metrics cost seconds one by one."""
        from kedro.io import DatasetError

        from kowen_kedro.tracking import log_metric_batch

        try:
            run_id = self.run_id
        except DatasetError:  # no run: kedro-mlflow's own way (MLflow starts one)
            return super()._save(data)
        if self._logging_activated:
            from mlflow.tracking import MlflowClient

            log_metric_batch(MlflowClient(), run_id,
                             [m for k, v in data.items() for m in self._build_args_list_from_metric_item(k, v)])


def _text_dataset():
    from kedro_datasets.text import TextDataset  # kedro-datasets' own module; no heavy import

    return TextDataset


class MarkdownDataset(_text_dataset()):
    """A markdown report (``effects.md``, ``rm_transfer_table.md``): kedro-datasets' ``TextDataset``,
    with a kedro-viz preview of the rendered page, its tables as tables (markdown-it-py, the renderer
    ``rich`` uses)."""

    def preview(self) -> HTMLPreview:  # kedro-viz shows the preview by the annotation's name
        from markdown_it import MarkdownIt

        return MarkdownIt("commonmark").enable("table").render(self.load())
