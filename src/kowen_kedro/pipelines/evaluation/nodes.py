"""Nodes of evaluation: pairwise win rates (multilingual and XL-AlpacaEval), MT-Bench style grading,
rubric scores, lm-evaluation-harness NLU, language fidelity, per-iteration curves and the run report."""

from __future__ import annotations

import logging
import tempfile

import pandas as pd

from kowen_kedro.data.validation import validate_records
from kowen_kedro.evaluation.benchmarks import alpacaeval_prompts, two_turn_set, xl_alpacaeval
from kowen_kedro.evaluation.judges import judge_pairs, make_judges
from kowen_kedro.evaluation.nlu import local_mc_tasks, run_lm_eval
from kowen_kedro.evaluation.reports import iteration_curve_figure, report_markdown, report_table
from kowen_kedro.evaluation.scoring import (
    answer_two_turns,
    check_unparseable,
    grade_rubric,
    grade_two_turns,
    mt_bench_table,
    rubric_table,
)
from kowen_kedro.evaluation.winrate import win_rate
from kowen_kedro.langid import fidelity
from kowen_kedro.llm.backends import SamplingParams
from kowen_kedro.model_identity import model_identity
from kowen_kedro.runtime import as_mlflow_metrics, cached_generator, call_cache, registry_model

logger = logging.getLogger(__name__)

EVAL_FIELDS = {"id": str, "language": str, "instruction": str}


def generate_outputs_node(model: str, eval_prompts: pd.DataFrame, params: dict, llm: dict) -> pd.DataFrame:
    """The model's answer to every evaluation instruction (AlpacaEval columns + language)."""
    eval_prompts = alpacaeval_prompts(eval_prompts)
    validate_records(eval_prompts, EVAL_FIELDS)
    gen = cached_generator(model, params["backend"], llm)
    outs = gen.generate(
        [[{"role": "user", "content": p}] for p in eval_prompts["instruction"]], SamplingParams.from_dict(params["sampling"]), n=1
    )
    return eval_prompts[["id", "language", "instruction"]].assign(
        output=[o[0].text for o in outs], finish_reason=[o[0].finish_reason for o in outs], generator=model
    )


def _judges(registry: dict, params: dict, llm: dict):
    return make_judges(params, registry_model(registry, "judge"), call_cache(llm))


def judge_node(model_outputs: pd.DataFrame, reference_outputs: pd.DataFrame, registry: dict, params: dict, llm: dict) -> pd.DataFrame:
    """Pairwise judgements of model vs reference outputs, positions randomised with a seed (recorded)."""
    ref = reference_outputs.set_index("id").loc[model_outputs["id"]]
    pairwise, _ = _judges(registry, params, llm)
    records = judge_pairs(pairwise, list(model_outputs["instruction"]), list(model_outputs["output"]), list(ref["output"]),
                          list(model_outputs["language"]), seed=int(params["seed"]))
    return pd.concat([model_outputs[["id", "language"]].reset_index(drop=True), pd.DataFrame(records)], axis=1)


def summarize_node(judgements: pd.DataFrame, model_outputs: pd.DataFrame, languages: list[str], params: dict,
                   name: str = "alpacaeval") -> tuple[pd.DataFrame, dict]:
    """Win rate +- SE and language fidelity (share of outputs in the requested language), per language and overall.

    Unreadable verdicts are counted and left out; above ``max_unparseable_share`` the node fails.
    """
    counts = check_unparseable([None if pd.isna(p) else p for p in judgements["preference"]], name,
                               float(params.get("max_unparseable_share", 0.05)))
    fid = model_outputs.assign(in_language=fidelity(model_outputs["output"], model_outputs["language"], languages))
    rows = []
    for lang in sorted(judgements["language"].unique()) + ["all"]:
        j = judgements if lang == "all" else judgements[judgements["language"] == lang]
        f = fid if lang == "all" else fid[fid["language"] == lang]
        prefs = j["preference"].dropna()
        wr, se = win_rate(prefs) if len(prefs) else (float("nan"), float("nan"))
        rows.append({"benchmark": name, "language": lang, "n": len(prefs), "win_rate": wr, "win_rate_se": se,
                     "language_fidelity": float(f["in_language"].mean())})
    table = pd.DataFrame(rows)
    metrics = {f"{name}.{col}.{r['language']}": r[col] for r in rows for col in ("win_rate", "win_rate_se", "language_fidelity")}
    if name == "alpacaeval":  # the headline numbers keep their short names
        metrics.update({f"{col}.{r['language']}": r[col] for r in rows for col in ("win_rate", "win_rate_se", "language_fidelity")})
    return table, as_mlflow_metrics({**metrics, **counts})


def summarize_xl_node(judgements: pd.DataFrame, model_outputs: pd.DataFrame, languages: list[str], params: dict):
    return summarize_node(judgements, model_outputs, languages, params, name="xl_alpacaeval")


def summarize_m_node(judgements: pd.DataFrame, model_outputs: pd.DataFrame, languages: list[str], params: dict):
    return summarize_node(judgements, model_outputs, languages, params, name="m_alpacaeval")


def xl_alpacaeval_node(eval_prompts: pd.DataFrame, params: dict, source_language: str) -> tuple[pd.DataFrame, dict]:
    """XL-AlpacaEval from the source-language prompts: Table-4 prompts dropped (counted; with
    ``require_all_listed``, every listed prompt must be found), seeded "Answer in {lang}" appended."""
    prompts = alpacaeval_prompts(eval_prompts, source_language)
    rows, report = xl_alpacaeval(prompts[prompts["language"] == source_language], list(params["languages"]), int(params["seed"]),
                                 bool(params.get("require_all_listed", False)))
    logger.info("XL-AlpacaEval: %d prompts kept, %d of Table 4's %d removed; not in the source: %s",
                report["kept"], report["removed"], report["removed"] + report["not_found"], report["not_found_ids"] or "none")
    return rows, as_mlflow_metrics({k: v for k, v in report.items() if k != "not_found_ids"})


def mt_bench_node(model: str, prompts: pd.DataFrame, registry: dict, generation: dict, judge: dict, llm: dict,
                  languages: list[str], params: dict):
    """Two-turn answers of ``model``, their 1-10 grades per turn (turn 2 with turn-1 context; math /
    reasoning / coding against reference answers where the questions have them) and the language
    fidelity of both answers. ``params["language"]``: language of a question file without a language column."""
    rows = two_turn_set(prompts, params.get("language", "en"))
    answers = answer_two_turns(cached_generator(model, generation["backend"], llm), rows, SamplingParams.from_dict(generation["sampling"]))
    _, grader = _judges(registry, judge, llm)
    graded = grade_two_turns(grader, answers)
    share = float(judge.get("max_unparseable_share", 0.05))
    counts = check_unparseable(list(graded["score_turn1"]) + list(graded["score_turn2"]), "mt_bench", share)
    flat = [(a, lang) for pair, lang in zip(graded["answers"], graded["language"]) for a in pair]
    in_lang = fidelity([a for a, _ in flat], [lang for _, lang in flat], languages)
    graded = graded.assign(in_language=[sum(in_lang[2 * i: 2 * i + 2]) / 2 for i in range(len(graded))])
    table = mt_bench_table(graded)
    metrics = {f"mt_bench.{col}.{r['language']}": r[col] for r in table.to_dict("records")
               for col in ("turn1", "turn2", "average", "language_fidelity")}
    return graded.drop(columns=["turns"]), table, as_mlflow_metrics({**metrics, **counts})


def rubric_node(model_outputs: pd.DataFrame, registry: dict, judge: dict, llm: dict):
    """XL-Instruct rubric: Objectivity, Naturalness, Informativeness, Precision (1-5) of every output."""
    _, grader = _judges(registry, judge, llm)
    scores = grade_rubric(grader, model_outputs)
    values = [v for c in ("objectivity", "naturalness", "informativeness", "precision") for v in scores[c]]
    counts = check_unparseable(values, "rubric", float(judge.get("max_unparseable_share", 0.05)))
    table = rubric_table(scores)
    metrics = {f"rubric.{c}.{r['language']}": r[c] for r in table.to_dict("records")
               for c in ("objectivity", "naturalness", "informativeness", "precision")}
    return table, as_mlflow_metrics({**metrics, **counts})


def nlu_node(model: str, local_tasks: pd.DataFrame, params: dict) -> tuple[pd.DataFrame, dict]:
    """lm-evaluation-harness on the saved model: ``params.tasks`` (harness task names), or ``local`` =
    the shipped multiple-choice file as one task per language (runs offline)."""
    tasks = params.get("tasks", "local")
    with tempfile.TemporaryDirectory(prefix="kowen-lm-eval-") as tmp:
        include = None
        if tasks == "local":
            tasks, include = local_mc_tasks(local_tasks, tmp), tmp
        results = run_lm_eval(model, list(tasks), include, batch_size=int(params.get("batch_size", 8)),
                              limit=params.get("limit"))
    metrics = {f"nlu.{r['task']}.{r['metric']}": r["value"] for r in results.to_dict("records")}
    return results, as_mlflow_metrics(metrics)


def iteration_curve_node(*args) -> tuple[pd.DataFrame, object]:
    """Win rate vs the SFT model and language fidelity of every enabled DPO iteration (Kowen Figure 2).

    The SFT model's answers are the evaluation's ``reference_eval_outputs``; each iteration's policy
    answers the same prompts (through the call cache).
    """
    *policies, sft_model, reference, eval_prompts, registry, generation, judge, llm, languages = args
    rows, previous = [], model_identity(sft_model)
    for i, policy in enumerate(policies, start=1):
        identity = model_identity(policy)
        if identity == previous:  # a disabled iteration passes its input through
            logger.info("dpo_iter_%d is its input policy (disabled): left out of the curve", i)
            continue
        previous = identity
        outputs = generate_outputs_node(policy, eval_prompts, generation, llm)
        table, _ = summarize_node(judge_node(outputs, reference, registry, judge, llm), outputs, languages, judge, name=f"dpo_iter_{i}")
        rows += [{"iteration": i, **r} for r in table.drop(columns="benchmark").to_dict("records")]
    curve = pd.DataFrame(rows, columns=["iteration", "language", "n", "win_rate", "win_rate_se", "language_fidelity"])
    return curve, iteration_curve_figure(curve)


def report_node(alpacaeval: pd.DataFrame, xl: pd.DataFrame, m: pd.DataFrame, mt_bench: pd.DataFrame, rubric: pd.DataFrame,
                nlu: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """One table of every evaluation number, per language (CSV + markdown artifacts)."""
    table = report_table(alpacaeval, xl, mt_bench, rubric, nlu, m=m)
    return table, report_markdown(table)
