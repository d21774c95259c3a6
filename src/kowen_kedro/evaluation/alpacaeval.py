"""AlpacaEval 2.0 numbers computed by the ``alpaca-eval`` package itself.

The judge (:mod:`kowen_kedro.evaluation.judges`) gives, per item, the preference for the model in
[0, 1] (None when the reply could not be read). This module puts the judgements into alpaca_eval's
annotation schema and calls its metric functions, so every number is the leaderboard's:

* :func:`annotations` - ``instruction, output_1`` (the reference), ``generator_1, output_2`` (the
  model), ``generator_2, preference`` on alpaca_eval's scale (1 = reference wins, 2 = model wins,
  1.5 = tie; NaN = unreadable verdict), indexed by the instruction's position in AlpacaEval's 805
  instructions where the prompts carry it (``alpacaeval_index``).
* :func:`head_to_head` - ``alpaca_eval.metrics.get_winrate``: ``win_rate`` and ``standard_error`` (the
  soft win rate and its SE, percent), ``discrete_win_rate``, ``n_wins``, ``n_wins_base``, ``n_draws``,
  ``n_total`` - plus ``n_dropped`` (unreadable verdicts, left out of ``n_total``).
* :func:`published_numbers` - the same numbers from a published ``annotations.json`` in one call
  (:func:`published_annotations` reads it, its 1-2 preferences checked and converted).
* :func:`length_controlled` - ``alpaca_eval.metrics.glm_winrate.get_length_controlled_winrate``:
  ``length_controlled_winrate`` and ``lc_standard_error``. Its GLM reads ``df_gamed.csv`` (the 805
  instructions' difficulty and the annotations of two length-gamed versions of the AlpacaEval 2.0
  baseline), which alpaca_eval downloads from the hub; here it comes from the catalog
  (``alpacaeval_df_gamed``) and is handed to alpaca_eval's own function in place of the download.
  :func:`lc_absent_reason` says when the fit's inputs do not exist; the LC number is then absent,
  never replaced by another fit.

Identical outputs are ties without a judge call, as alpaca_eval fixes them
(``PairwiseAnnotatorLocal._preprocess``: ``output_1 == output_2`` -> 1.5).
"""

from __future__ import annotations

import contextlib
import tempfile
import warnings
from pathlib import Path
from typing import Any
from unittest import mock

import pandas as pd

#: AlpacaEval 2.0's baseline: the generator of the reference outputs (``alpaca_eval_gpt4_baseline.json``)
#: whose length-gamed annotations ``df_gamed.csv`` holds.
LC_BASELINE = "gpt4_1106_preview"
#: Columns of ``df_gamed.csv`` that ``get_length_controlled_winrate`` reads.
DF_GAMED_COLUMNS = ("model", "index", "preference", "std_delta_len", "instruction_difficulty", "not_gamed_baseline")
LENGTH_CONTROLLED = ("length_controlled_winrate", "lc_standard_error")


@contextlib.contextmanager
def _quiet_alpaca_eval():
    """alpaca_eval's GLM passes arguments scikit-learn 1.9 deprecates (FutureWarnings): nothing a user of
    the run can act on. (Its ``pkg_resources`` import warning is one of ``kowen_kedro.QUIET``.)"""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"sklearn\.")
        yield


def annotations(instructions, model_outputs, reference_outputs, preferences, model: str, reference: str,
                index=None) -> pd.DataFrame:
    """Judgements in alpaca_eval's annotation schema (see the module docstring).

    Args:
        preferences: per item, the preference for the *model* in [0, 1] (0.5 a tie) or None (unreadable).
        index: per item, the instruction's position in AlpacaEval's 805 instructions (the GLM's
            ``instruction_difficulty`` is looked up by it); None: positions 0..n-1.
    """
    pref = []
    for i, p in enumerate(preferences):
        if p is None or p != p:
            pref.append(float("nan"))
            continue
        if not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"preference of item {i}: {p!r} is not on the scale [0, 1] of the model's preference "
                             f"(alpaca_eval's own annotations are on [1, 2]: read them with published_annotations)")
        pref.append(1.0 + float(p))
    df = pd.DataFrame({
        "instruction": list(instructions), "output_1": list(reference_outputs), "generator_1": reference,
        "output_2": list(model_outputs), "generator_2": model, "preference": pref,
    })
    if index is not None:
        df.index = pd.Index([int(i) for i in index], name=None)
    return df


def published_annotations(path: str | Path) -> pd.DataFrame:
    """alpaca_eval's own ``annotations.json`` (a list of records with ``generator_1`` the reference,
    ``generator_2`` the model and ``preference`` on [1, 2], null where the annotator gave none) in this
    module's schema, for :func:`head_to_head` / :func:`length_controlled` / :func:`published_numbers`.

    Raises:
        DataValidationError: a record without ``preference``, or one outside [1, 2] (the file, the item
            and the value named).
    """
    from kowen_kedro.data.validation import DataValidationError

    records = pd.read_json(path)
    if "preference" not in records.columns:
        raise DataValidationError(str(path), None, "preference", "no preference column: not an alpaca_eval annotations file")
    for i, value in enumerate(records["preference"]):
        if value == value and value is not None and not 1.0 <= float(value) <= 2.0:
            raise DataValidationError(str(path), None, "preference", f"item {i} has {value!r}, outside alpaca_eval's "
                                      "scale [1, 2] (1: generator_1, the reference, wins; 2: generator_2, the model, wins)")
    n = len(records)
    column = lambda name, default: list(records[name]) if name in records.columns else [default] * n  # noqa: E731
    model = str(records["generator_2"].iloc[0]) if "generator_2" in records.columns and n else "model"
    reference = str(records["generator_1"].iloc[0]) if "generator_1" in records.columns and n else "reference"
    return annotations(column("instruction", ""), column("output_2", ""), column("output_1", ""),
                       [None if p != p or p is None else float(p) - 1.0 for p in records["preference"]],
                       model=model, reference=reference, index=records["index"] if "index" in records.columns else None)


def published_numbers(path: str | Path, df_gamed: Any = None) -> dict[str, Any]:
    """The AlpacaEval 2.0 numbers of a published ``annotations.json`` in one call: :func:`head_to_head`'s and,
    with ``df_gamed`` (df_gamed.csv as a DataFrame), the length-controlled win rate where its inputs exist
    (the records' outputs, the 805 instructions, AlpacaEval 2.0's baseline as ``generator_1``); else
    ``lc_absent`` says what is missing.

        from kowen_kedro.evaluation.alpacaeval import published_numbers
        published_numbers("alpaca_eval/results/alpaca-7b/weighted_alpaca_eval_gpt4_turbo/annotations.json")
    """
    annotated = published_annotations(path)
    out: dict[str, Any] = head_to_head(annotated)
    reason = lc_absent_reason(annotated, df_gamed, reference_is_published=annotated["generator_1"].iloc[0] == LC_BASELINE
                              if len(annotated) else False, has_index=len(annotated) == 805)
    if (annotated["output_1"] == "").all() or (annotated["output_2"] == "").all():
        reason = "; ".join(filter(None, [reason, "the records carry no outputs, whose lengths the GLM reads"]))
    if reason is None:
        out.update(length_controlled(annotated, df_gamed))
    else:
        out["lc_absent"] = reason
    return out


def head_to_head(annotated: pd.DataFrame) -> dict[str, float]:
    """alpaca_eval's ``get_winrate`` on the annotations, plus ``n_dropped`` (NaN preferences)."""
    with _quiet_alpaca_eval():
        from alpaca_eval.metrics import get_winrate

    kept = annotated["preference"].notna()
    if not kept.any():
        nan = float("nan")
        return {"win_rate": nan, "standard_error": nan, "discrete_win_rate": nan, "n_wins": 0, "n_wins_base": 0,
                "n_draws": 0, "n_total": 0, "n_dropped": int(len(annotated))}
    out = get_winrate(annotated[kept])
    out = {k: (int(v) if k.startswith("n_") else float(v)) for k, v in out.items()}
    out["n_dropped"] = int((~kept).sum())
    return out


def _gamed_frame(df_gamed: Any) -> pd.DataFrame:
    from kowen_kedro.data.prompts import as_frame

    frame = as_frame(df_gamed)
    missing = [c for c in DF_GAMED_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{frame.attrs.get('source', 'alpacaeval_df_gamed')}: df_gamed.csv lacks columns {missing}; "
                         f"expected alpaca_eval's {list(DF_GAMED_COLUMNS)}")
    return frame


def lc_absent_reason(annotated: pd.DataFrame, df_gamed: Any, reference_is_published: bool, has_index: bool) -> str | None:
    """Why the length-controlled win rate cannot be computed for these annotations (every missing input,
    "; "-joined), or None when it can.

    ``has_index``: the prompts carry their position in AlpacaEval's 805 instructions (``alpacaeval_index``).
    """
    reasons = []
    if df_gamed is None:
        reasons.append("no df_gamed.csv (catalog entry alpacaeval_df_gamed: tatsu-lab/alpaca_eval's file on the hub, "
                       "or a local copy), which alpaca_eval's length-control GLM is fitted with")
    if not reference_is_published:
        reasons.append(f"the reference is not AlpacaEval 2.0's baseline ({LC_BASELINE}), against which the GLM is "
                       f"fitted (evaluation.alpacaeval.reference: published)")
    if not has_index:
        reasons.append("the prompts are not AlpacaEval's 805 instructions (no alpacaeval_index): no instruction difficulty")
    elif df_gamed is not None:
        # alpaca_eval looks the difficulty up by the row label of df_gamed.drop_duplicates("index")
        known = set(_gamed_frame(df_gamed).drop_duplicates("index").index.astype(int))
        unknown = sorted(set(annotated.index.astype(int)) - known)
        if unknown:
            reasons.append(f"{len(unknown)} prompts have no instruction difficulty in df_gamed.csv (alpacaeval_index {unknown[:5]}...)")
    if annotated["preference"].notna().sum() < 10:
        reasons.append("fewer than 10 readable verdicts: the GLM's 5-fold cross-validation cannot be fitted")
    return "; ".join(reasons) or None


def length_controlled(annotated: pd.DataFrame, df_gamed: Any) -> dict[str, float]:
    """alpaca_eval's ``get_length_controlled_winrate`` (GLM ``length_controlled_v1``) on the annotations,
    with ``df_gamed`` (a DataFrame or HF dataset in df_gamed.csv's schema) served in place of its hub
    download. Nothing is written into the alpaca_eval package (``save_weights_dir=None``)."""
    with _quiet_alpaca_eval():
        from alpaca_eval.metrics import glm_winrate

    frame = _gamed_frame(df_gamed)
    kept = annotated[annotated["preference"].notna()].copy()
    with tempfile.TemporaryDirectory(prefix="kowen-df-gamed-") as tmp:
        path = Path(tmp) / "df_gamed.csv"
        frame.to_csv(path, index=False)

        def serve(repo_id: str, filename: str, **_: Any) -> str:
            if (repo_id, filename) != ("tatsu-lab/alpaca_eval", "df_gamed.csv"):
                raise RuntimeError(f"alpaca_eval asked for {repo_id}/{filename}; only df_gamed.csv is served offline")
            return str(path)

        with mock.patch.object(glm_winrate, "hf_hub_download", serve), _quiet_alpaca_eval():
            out = glm_winrate.get_length_controlled_winrate(
                kept, save_weights_dir=None, is_add_glm_preference_inplace=False, is_warn_extreme_changes=True)
    return {k: float(out[k]) for k in LENGTH_CONTROLLED}
