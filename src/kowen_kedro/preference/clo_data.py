"""CLO data: each source example becomes two adjacent preference rows that must share a batch.

For source example i with ``x_en, y_en, x_l, y_l``:

* row 2i   (English row, ``is_target=0``): prompt ``x_en``, chosen ``y_en``, rejected ``y_l``
* row 2i+1 (target row,  ``is_target=1``): prompt ``x_l``,  chosen ``y_l``,  rejected ``y_en``

:func:`paired_order` shuffles whole pairs, so with an even batch size every batch holds both rows of
each of its examples; :func:`check_pairing` asserts that on a batch. The baseline (standard DPO on
the same data) uses the same rows without the pairing (:func:`dpo_baseline_records`).
"""

from __future__ import annotations

import random
from typing import Sequence

import pandas as pd

from kowen_kedro.data.validation import validate_records

CLO_COLUMNS = ["pair_id", "x_en", "y_en", "x_l", "y_l"]


def _chat(prompt: str, chosen: str, rejected: str) -> dict:
    return {
        "prompt": [{"role": "user", "content": prompt}],
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
    }


def clo_records(pairs: pd.DataFrame) -> list[dict]:
    """Interleaved English / target rows (conversational, TRL's preference format) + ``is_target``, ``source_index``.

    Raises:
        DataValidationError: a missing or empty ``pair_id, x_en, y_en, x_l, y_l`` (file, line, field).
    """
    validate_records(pairs, {c: str for c in CLO_COLUMNS})
    rows: list[dict] = []
    for i, r in enumerate(pairs.to_dict("records")):
        rows.append({**_chat(r["x_en"], r["y_en"], r["y_l"]), "is_target": 0, "source_index": i})
        rows.append({**_chat(r["x_l"], r["y_l"], r["y_en"]), "is_target": 1, "source_index": i})
    return rows


def dpo_baseline_records(pairs: pd.DataFrame) -> list[dict]:
    """The same preferences as standard DPO rows (no pairing, no NLL): the SFT+DPO baseline."""
    return [{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in clo_records(pairs)]


def sft_baseline_records(pairs: pd.DataFrame) -> list[dict]:
    """SFT rows of the baseline: ``x_en -> y_en`` and ``x_l -> y_l`` for every source example."""
    validate_records(pairs, {c: str for c in CLO_COLUMNS})
    out = []
    for r in pairs.to_dict("records"):
        for x, y in ((r["x_en"], r["y_en"]), (r["x_l"], r["y_l"])):
            out.append({"messages": [{"role": "user", "content": x}, {"role": "assistant", "content": y}]})
    return out


def paired_order(n_rows: int, seed: int) -> list[int]:
    """A seeded shuffle of row indices that keeps rows ``2i, 2i+1`` adjacent and in that order."""
    if n_rows % 2:
        raise ValueError(f"CLO data has {n_rows} rows; it must be an even number (English row + target row per example)")
    pairs = list(range(n_rows // 2))
    random.Random(seed).shuffle(pairs)
    return [j for i in pairs for j in (2 * i, 2 * i + 1)]


def complete_pairs(is_target: Sequence[int], source_index: Sequence[int]) -> list[int]:
    """Row indices of the source examples that still have both rows (after a trainer's own filtering,
    e.g. TRL dropping rows over ``max_length``), as (English row, target row) in the rows' order."""
    rows: dict[int, dict[int, int]] = {}
    for i, (t, s) in enumerate(zip(map(int, is_target), map(int, source_index))):
        rows.setdefault(s, {})[t] = i
    return [i for pair in rows.values() if len(pair) == 2 for i in (pair[0], pair[1])]


def check_pairing(is_target: Sequence[int], source_index: Sequence[int]) -> None:
    """Raise unless a batch is (English row, target row) pairs of the same source example."""
    is_target, source_index = list(map(int, is_target)), list(map(int, source_index))
    ok = (
        len(is_target) % 2 == 0
        and is_target[0::2] == [0] * (len(is_target) // 2)
        and is_target[1::2] == [1] * (len(is_target) // 2)
        and source_index[0::2] == source_index[1::2]
    )
    if not ok:
        raise ValueError(
            f"CLO batch is not made of (English, target) pairs of the same example: is_target={is_target}, "
            f"source_index={source_index}; use an even per-device batch size and the CLO trainer's sampler"
        )
