"""Nodes of evaluation: pairwise win rates (multilingual and XL-AlpacaEval), MT-Bench style grading,
rubric scores, lm-evaluation-harness NLU, language fidelity, per-iteration curves and the run report."""

from __future__ import annotations

import logging
import tempfile

import pandas as pd

from kowen_kedro.data.validation import validate_records
from kowen_kedro.evaluation.benchmarks import alpacaeval_prompts, two_turn_set, xl_alpacaeval
from kowen_kedro.evaluation.judges import judge_pairs
from kowen_kedro.evaluation.nlu import local_mc_tasks, run_lm_eval
from kowen_kedro.evaluation.reports import absent_notes, iteration_curve_figure, report_markdown, report_table
from kowen_kedro.evaluation.scoring import (
    answer_two_turns,
    check_unparseable,
    grade_rubric,
    grade_two_turns,
    mt_bench_table,
    rubric_table,
)
from kowen_kedro.evaluation.summary import EVAL_FIELDS, configured_judges, eval_columns, generate_outputs, summarize
from kowen_kedro.groups import NLU, AlpacaEval, Answering, Judge, MTBench, XLAlpacaEval
from kowen_kedro.langid import fidelity
from kowen_kedro.llm.backends import SamplingParams
from kowen_kedro.model_identity import model_identity
from kowen_kedro.runtime import as_mlflow_metrics, cached_generator

logger = logging.getLogger(__name__)

REFERENCES = ("sft", "published")


def generate_outputs_node(model: str, eval_prompts: pd.DataFrame, params: dict, llm: dict) -> pd.DataFrame:
    """The model's answer to every evaluation instruction (AlpacaEval columns + language)."""
    return generate_outputs(model, eval_prompts, Answering.of(params, "evaluation.generation"), llm)


def reference_outputs_node(sft_model: str, eval_prompts: pd.DataFrame, params: dict, llm: dict, reference: str) -> pd.DataFrame:
    """The outputs the policy's answers are judged against.

    ``reference``: ``sft`` - the SFT model's answers; ``published`` - the prompt file's own ``output``
    (and ``generator``) columns, as AlpacaEval publishes them (AlpacaEval 2.0:
    ``alpaca_eval_gpt4_baseline.json``, gpt4_1106_preview's outputs).
    """
    if reference not in REFERENCES:
        raise ValueError(f"evaluation.alpacaeval.reference: expected one of {list(REFERENCES)}, not {reference!r}")
    if reference == "sft":
        return generate_outputs(sft_model, eval_prompts, Answering.of(params, "evaluation.generation"), llm)
    prompts = alpacaeval_prompts(eval_prompts)
    validate_records(prompts, {**EVAL_FIELDS, "output": str})
    generator = prompts["generator"] if "generator" in prompts.columns else "published reference"
    return prompts[eval_columns(prompts)].assign(output=prompts["output"], finish_reason="published", generator=generator)


def judge_node(model_outputs: pd.DataFrame, reference_outputs: pd.DataFrame, registry: dict, params: dict, llm: dict) -> pd.DataFrame:
    """Pairwise judgements of model vs reference outputs, positions randomised with a seed (recorded)."""
    ref = reference_outputs.set_index("id").loc[model_outputs["id"]]
    judge = Judge.of(params)
    pairwise, _ = configured_judges(registry, judge, llm)
    records = judge_pairs(pairwise, list(model_outputs["instruction"]), list(model_outputs["output"]), list(ref["output"]),
                          list(model_outputs["language"]), seed=judge.seed)
    identical = sum(r["identical"] for r in records)
    if identical:
        logger.info("%d of %d outputs equal their reference: ties, not sent to the judge", identical, len(records))
    return pd.concat([model_outputs[["id", "language"]].reset_index(drop=True), pd.DataFrame(records)], axis=1)


def summarize_node(judgements: pd.DataFrame, model_outputs: pd.DataFrame, reference_outputs: pd.DataFrame, df_gamed,
                   languages: list[str], params: dict, alpacaeval: dict) -> tuple[pd.DataFrame, dict]:
    """AlpacaEval 2.0 numbers and language fidelity per language and overall
    (:func:`kowen_kedro.evaluation.summary.summarize`)."""
    return _summarize_set(judgements, model_outputs, reference_outputs, df_gamed, languages, params, alpacaeval, "alpacaeval")


def summarize_xl_node(judgements, model_outputs, reference_outputs, df_gamed, languages, params, alpacaeval):
    return _summarize_set(judgements, model_outputs, reference_outputs, df_gamed, languages, params, alpacaeval, "xl_alpacaeval")


def summarize_m_node(judgements, model_outputs, reference_outputs, df_gamed, languages, params, alpacaeval):
    return _summarize_set(judgements, model_outputs, reference_outputs, df_gamed, languages, params, alpacaeval, "m_alpacaeval")


def _summarize_set(judgements, model_outputs, reference_outputs, df_gamed, languages, judge: dict, alpacaeval: dict, name: str):
    published = getattr(AlpacaEval.of(alpacaeval).reference, name) == "published"
    table, metrics = summarize(judgements, model_outputs, reference_outputs, df_gamed, languages,
                               Judge.of(judge).max_unparseable_share, published, name=name)
    return table, as_mlflow_metrics(metrics)


def xl_alpacaeval_node(eval_prompts: pd.DataFrame, params: dict, source_language: str) -> tuple[pd.DataFrame, dict]:
    """XL-AlpacaEval from the source-language prompts: Table-4 prompts dropped (counted; with
    ``require_all_listed``, every listed prompt must be found), seeded "Answer in {lang}" appended."""
    xl = XLAlpacaEval.of(params)
    prompts = alpacaeval_prompts(eval_prompts, source_language)
    rows, report = xl_alpacaeval(prompts[prompts["language"] == source_language], xl.languages, xl.seed, xl.require_all_listed)
    logger.info("XL-AlpacaEval: %d prompts kept, %d of Table 4's %d removed; not in the source: %s",
                report["kept"], report["removed"], report["removed"] + report["not_found"], report["not_found_ids"] or "none")
    return rows, as_mlflow_metrics({k: v for k, v in report.items() if k != "not_found_ids"})


def mt_bench_node(model: str, prompts: pd.DataFrame, reference_answers, judge_prompts, registry: dict, generation: dict,
                  judge: dict, llm: dict, languages: list[str], params: dict):
    """Two-turn answers of ``model``, their 1-10 grades per turn (turn 2 with turn-1 context; math /
    reasoning / coding against reference answers where the questions have them) and the language
    fidelity of both answers.

    ``reference_answers``: FastChat's reference-answer file (None: the questions' own ``reference``).
    ``params``: ``language`` (of a question file without a language column); ``judge_prompts``:
    ``project`` (the project's prompts, the tiny default) or ``fastchat`` (``judge_prompts``, FastChat's
    ``judge_prompts.jsonl``: the judge explains before ``[[rating]]``, the last rating is read).
    """
    from kowen_kedro.evaluation import fastchat

    mt_bench, generation, judge = MTBench.of(params), Answering.of(generation, "evaluation.generation"), Judge.of(judge)
    references = fastchat.reference_answers(reference_answers) if reference_answers is not None else None
    rows = two_turn_set(prompts, mt_bench.language, references)
    if references is not None:
        logger.info("MT-Bench: reference answers of %d of %d questions from the reference-answer file",
                    sum(str(q) in references for q in rows["id"]), len(rows))
    prompts_fc = fastchat.judge_prompts(judge_prompts) if mt_bench.judge_prompts == "fastchat" else None
    with cached_generator(model, generation.backend, llm) as gen:
        answers = answer_two_turns(gen, rows, SamplingParams.from_dict(generation.sampling))
    _, grader = configured_judges(registry, judge, llm)
    graded = grade_two_turns(grader, answers, prompts_fc)
    scores = list(graded["score_turn1"]) + list(graded["score_turn2"])
    counts = check_unparseable(scores, "mt_bench", judge.max_unparseable_share)
    flat = [(a, lang) for pair, lang in zip(graded["answers"], graded["language"]) for a in pair]
    in_lang = fidelity([a for a, _ in flat], [lang for _, lang in flat], languages)
    graded = graded.assign(in_language=[sum(in_lang[2 * i: 2 * i + 2]) / 2 for i in range(len(graded))])
    table = mt_bench_table(graded)
    metrics = {f"mt_bench.{col}.{r['language']}": r[col] for r in table.to_dict("records")
               for col in ("turn1", "turn2", "average", "language_fidelity")}
    return graded.drop(columns=["turns"]), table, as_mlflow_metrics({**metrics, **counts})


def rubric_node(model_outputs: pd.DataFrame, registry: dict, judge: dict, llm: dict):
    """XL-Instruct rubric: Objectivity, Naturalness, Informativeness, Precision (1-5) of every output."""
    judge = Judge.of(judge)
    _, grader = configured_judges(registry, judge, llm)
    scores = grade_rubric(grader, model_outputs)
    values = [v for c in ("objectivity", "naturalness", "informativeness", "precision") for v in scores[c]]
    counts = check_unparseable(values, "rubric", judge.max_unparseable_share)
    table = rubric_table(scores)
    metrics = {f"rubric.{c}.{r['language']}": r[c] for r in table.to_dict("records")
               for c in ("objectivity", "naturalness", "informativeness", "precision")}
    return table, as_mlflow_metrics({**metrics, **counts})


def nlu_node(model: str, local_tasks: pd.DataFrame, params: dict) -> tuple[pd.DataFrame, dict]:
    """lm-evaluation-harness on the saved model: ``params.tasks`` (harness task names), or ``local`` =
    the shipped multiple-choice file as one task per language (runs offline)."""
    nlu = NLU.of(params)
    tasks = nlu.tasks
    with tempfile.TemporaryDirectory(prefix="kowen-lm-eval-") as tmp:
        include = None
        if tasks == "local":
            tasks, include = local_mc_tasks(local_tasks, tmp), tmp
        results = run_lm_eval(model, [tasks] if isinstance(tasks, str) else list(tasks), include, batch_size=nlu.batch_size,
                              limit=nlu.limit)
    metrics = {f"nlu.{r['task']}.{r['metric']}": r["value"] for r in results.to_dict("records")}
    return results, as_mlflow_metrics(metrics)


def summarize_iteration_node(judgements: pd.DataFrame, model_outputs: pd.DataFrame, reference_outputs: pd.DataFrame,
                             languages: list[str], judge: dict, stage: str) -> pd.DataFrame:
    """One DPO iteration's win rate vs the evaluation's reference and language fidelity (a row per language)."""
    table, _ = summarize(judgements, model_outputs, reference_outputs, None, languages, Judge.of(judge).max_unparseable_share,
                         published=False, name=stage, say_why=False)
    return table


def iteration_curve_node(sft_model: str, *policies_and_summaries) -> tuple[pd.DataFrame, object]:
    """Win rate vs the reference and language fidelity of every enabled DPO iteration (Kowen Figure 2).

    Inputs: the SFT model, then each iteration's policy, then each iteration's summary
    (:func:`summarize_iteration_node`). A disabled iteration passes its input policy through: it is the
    previous model and is left out of the curve.
    """
    n = len(policies_and_summaries) // 2
    policies, summaries = policies_and_summaries[:n], policies_and_summaries[n:]
    rows, previous = [], model_identity(sft_model)
    for i, (policy, table) in enumerate(zip(policies, summaries), start=1):
        identity = model_identity(policy)
        if identity == previous:
            logger.info("dpo_iter_%d is its input policy (disabled): left out of the curve", i)
            continue
        previous = identity
        rows += [{"iteration": i, **r} for r in table.drop(columns="benchmark").to_dict("records")]
    curve = pd.DataFrame(rows, columns=["iteration", "language", "n", "n_dropped", "win_rate", "win_rate_se", "discrete_win_rate",
                                        "language_fidelity"])
    return curve, iteration_curve_figure(curve)


def report_node(alpacaeval: pd.DataFrame, xl: pd.DataFrame, m: pd.DataFrame, mt_bench: pd.DataFrame, rubric: pd.DataFrame,
                nlu: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """One table of every evaluation number, per language (CSV + markdown artifacts)."""
    table = report_table(alpacaeval, xl, mt_bench, rubric, nlu, m=m)
    return table, report_markdown(table, absent_notes(alpacaeval, m, xl))
