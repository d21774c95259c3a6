"""What several evaluation nodes share: a model's answers to the evaluation instructions, the AlpacaEval
summary of a set of judgements, and the configured judges. The nodes of ``pipelines/evaluation`` call these;
no node calls another node."""

from __future__ import annotations

import logging

import pandas as pd

from kowen_kedro.data.validation import validate_records
from kowen_kedro.evaluation import alpacaeval as ae
from kowen_kedro.evaluation.benchmarks import alpacaeval_prompts
from kowen_kedro.evaluation.judges import make_judges
from kowen_kedro.evaluation.scoring import check_unparseable
from kowen_kedro.groups import Answering, Judge
from kowen_kedro.langid import fidelity
from kowen_kedro.llm.backends import SamplingParams
from kowen_kedro.runtime import cached_generator, call_cache, registry_model

logger = logging.getLogger(__name__)

EVAL_FIELDS = {"id": str, "language": str, "instruction": str}


def eval_columns(prompts: pd.DataFrame) -> list[str]:
    """The columns of the evaluation prompts that travel with every answer."""
    return ["id", "language", "instruction"] + (["alpacaeval_index"] if "alpacaeval_index" in prompts.columns else [])


def configured_judges(registry: dict, judge: Judge, llm: dict):
    """The evaluation's judges as ``evaluation.judge`` configures them (pairwise, grader), over the run's call cache."""
    return make_judges(judge, registry_model(registry, "judge"), call_cache(llm))


def generate_outputs(model: str, eval_prompts: pd.DataFrame, params: Answering, llm: dict) -> pd.DataFrame:
    """The model's answer to every evaluation instruction (AlpacaEval columns + language)."""
    eval_prompts = alpacaeval_prompts(eval_prompts)
    validate_records(eval_prompts, EVAL_FIELDS)
    with cached_generator(model, params.backend, llm) as gen:
        outs = gen.generate(
            [[{"role": "user", "content": p}] for p in eval_prompts["instruction"]], SamplingParams.from_dict(params.sampling), n=1
        )
    return eval_prompts[eval_columns(eval_prompts)].assign(
        output=[o[0].text for o in outs], finish_reason=[o[0].finish_reason for o in outs], generator=model
    )


def _label(outputs: pd.DataFrame, default: str) -> str:
    return str(outputs["generator"].iloc[0]) if "generator" in outputs.columns and len(outputs) else default


def summarize(judgements: pd.DataFrame, model_outputs: pd.DataFrame, reference_outputs: pd.DataFrame, df_gamed,
              languages: list[str], max_unparseable_share: float, published: bool, name: str = "alpacaeval",
              say_why: bool = True) -> tuple[pd.DataFrame, dict[str, float]]:
    """AlpacaEval 2.0 numbers by the ``alpaca-eval`` package (:mod:`kowen_kedro.evaluation.alpacaeval`) and
    language fidelity (share of outputs in the requested language), per language and overall.

    Win rate + SE, discrete win rate, n (readable verdicts), n_dropped (unreadable ones: above
    ``max_unparseable_share`` the node fails) and draws; the length-controlled win rate + SE where its
    inputs exist (``df_gamed``, AlpacaEval's instructions, its ``published`` reference), else the reason it
    is absent (``lc_absent`` column; logged unless ``say_why`` is False).
    """
    preferences = [None if pd.isna(p) else p for p in judgements["preference"]]
    counts = check_unparseable(preferences, name, max_unparseable_share)
    fid = model_outputs.assign(in_language=fidelity(model_outputs["output"], model_outputs["language"], languages))
    ref = reference_outputs.set_index("id").loc[model_outputs["id"]]
    has_index = "alpacaeval_index" in model_outputs.columns and model_outputs["alpacaeval_index"].notna().all()
    annotated = ae.annotations(
        model_outputs["instruction"], model_outputs["output"], ref["output"], preferences,
        model=_label(model_outputs, "policy"), reference=_label(reference_outputs, "reference"),
        index=model_outputs["alpacaeval_index"] if has_index else None)
    language = list(model_outputs["language"])
    rows = []
    for lang in sorted(judgements["language"].unique()) + ["all"]:
        mask = [True] * len(language) if lang == "all" else [x == lang for x in language]
        part = annotated[mask]
        f = fid if lang == "all" else fid[fid["language"] == lang]
        h2h = ae.head_to_head(part)
        reason = ae.lc_absent_reason(part, df_gamed, published, has_index)
        lc = ae.length_controlled(part, df_gamed) if reason is None else dict.fromkeys(ae.LENGTH_CONTROLLED, float("nan"))
        rows.append({"benchmark": name, "language": lang, "n": h2h["n_total"], "n_dropped": h2h["n_dropped"],
                     "win_rate": h2h["win_rate"], "win_rate_se": h2h["standard_error"],
                     "discrete_win_rate": h2h["discrete_win_rate"], "n_wins": h2h["n_wins"],
                     "n_wins_base": h2h["n_wins_base"], "n_draws": h2h["n_draws"], **lc, "lc_absent": reason or "",
                     "language_fidelity": float(f["in_language"].mean())})
    if rows[-1]["lc_absent"] and say_why:
        logger.info("%s: no length-controlled win rate: %s", name, rows[-1]["lc_absent"])
    table = pd.DataFrame(rows)
    cols = ("win_rate", "win_rate_se", "discrete_win_rate", *ae.LENGTH_CONTROLLED, "n", "n_dropped", "n_draws", "language_fidelity")
    metrics = {f"{name}.{col}.{r['language']}": r[col] for r in rows for col in cols}
    if name == "alpacaeval":  # the headline numbers keep their short names
        metrics.update({f"{col}.{r['language']}": r[col] for r in rows for col in ("win_rate", "win_rate_se", "language_fidelity")})
    return table, {**metrics, **counts}
