"""Reference-free quality estimation with unbabel-comet (CometKiwi in production), cached per pair."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

from pathlib import Path

import pandas as pd

from kowen_kedro.llm.cache import CallCache, cached_values, call_key
from kowen_kedro.model_identity import model_identity

logger = logging.getLogger(__name__)


def qe_gpus(value: int | str | None) -> int:
    """``translation_qe.qe.gpus``: a number of GPUs, or ``auto`` / None for the project's loading rule
    (:func:`kowen_kedro.loading.comet_gpus`: 1 when CUDA is available, else 0)."""
    from kowen_kedro.loading import comet_gpus

    return comet_gpus() if value in (None, "auto") else int(value)


def qe_batch_size(value: int | str | None, gpus: int) -> int:
    """``translation_qe.qe.batch_size``: a number of pairs per forward pass, or ``auto`` / None: 32 on a GPU, 1 on
    the CPU, where each pair's score is then a function of the pair (COMET pads a batch to its longest pair:
    :func:`kowen_kedro.loading.scoring_batch_size`; about 10 ms a pair with the tiny QE model)."""
    from kowen_kedro.loading import scoring_batch_size

    return scoring_batch_size(value, bool(gpus), 32, "translation_qe.qe.batch_size")


@dataclass
class CometQE:
    """``load_from_checkpoint`` + ``predict`` on (src, mt) pairs."""

    checkpoint: str
    batch_size: int = 32
    gpus: int = 0  # qe_gpus(...) for the project's rule
    progress: bool = False
    cache: CallCache | None = None
    _model: Any = field(default=None, repr=False)

    def _load(self):
        if self._model is None:
            from comet import download_model

            path = self.checkpoint
            if not path.endswith(".ckpt"):  # a hub id such as Unbabel/wmt23-cometkiwi-da-xl
                path = download_model(path)
            self._model = load_comet(path)
        return self._model

    def score(self, sources: list[str], translations: list[str]) -> list[float]:
        qe_id = model_identity(Path(self.checkpoint).parents[1]) if self.checkpoint.endswith(".ckpt") else self.checkpoint
        keys = [call_key({"qe": qe_id, "src": s, "mt": m}) for s, m in zip(sources, translations)]

        def predict(todo: list[int]) -> list[float]:
            out = self._load().predict(
                [{"src": sources[i], "mt": translations[i]} for i in todo],
                batch_size=self.batch_size,
                gpus=self.gpus,
                progress_bar=self.progress,
            )
            return [float(x) for x in out.scores]

        return cached_values(self.cache, keys, predict, flush_every=4 * self.batch_size)  # resumes per 4 batches


def load_comet(checkpoint: str):
    """COMET's ``load_from_checkpoint``; the encoder from the hub only when it is on. A checkpoint whose
    ``pretrained_model`` is a folder beside it (``hparams.yaml``: ``pretrained_model: encoder``, as the
    built-in QE model has it) loads its encoder from there, wherever the model folder has moved."""
    import yaml
    from comet import load_from_checkpoint
    from comet.models import str2model

    from kowen_kedro.floats import deterministic_torch
    from kowen_kedro.loading import local_files_only

    deterministic_torch()
    folder = Path(checkpoint).parents[1]
    hparams_file = folder / "hparams.yaml"
    hparams = yaml.safe_load(hparams_file.read_text()) if hparams_file.is_file() else {}
    encoder = str(hparams.get("pretrained_model") or "")
    if encoder and not Path(encoder).is_absolute() and (folder / encoder).is_dir():
        import torch

        return str2model[hparams["class_identifier"]].load_from_checkpoint(
            checkpoint_path=checkpoint, load_pretrained_weights=False, pretrained_model=str(folder / encoder),
            map_location=torch.device("cpu"), strict=False, local_files_only=True)
    return load_from_checkpoint(checkpoint, local_files_only=local_files_only())


@dataclass
class ShuffledQE:
    """An ablation: ``inner``'s scores of a call, permuted (seeded by the call's size). Selection and
    filtering by these scores is chance, so a QE-driven gain must vanish under it."""

    inner: Any
    seed: int = 0

    def score(self, sources: list[str], translations: list[str]) -> list[float]:
        import random

        scores = list(self.inner.score(sources, translations))
        random.Random(f"{self.seed}-{len(scores)}").shuffle(scores)
        return scores


def filter_bottom_fraction(df: pd.DataFrame, score_col: str, fraction: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Drop the ``floor(fraction * n)`` lowest-scoring rows (ties broken by original order).

    Returns (kept, dropped), both in the original row order.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    n_drop = math.floor(fraction * len(df))
    order = df[score_col].rank(method="first").sort_values().index
    dropped_idx = set(order[:n_drop])
    mask = df.index.isin(dropped_idx)
    return df[~mask], df[mask]
