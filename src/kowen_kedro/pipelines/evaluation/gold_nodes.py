"""Nodes of evaluation's gold part: each model and selector of the run measured on the tiny world's
held-out gold set (kowen_kedro.evaluation.gold), then one table of the papers' claims."""

from __future__ import annotations

import logging
import math
from typing import Any

import pandas as pd

from kowen_kedro.evaluation.claims import (
    behaviour_table,
    effects_markdown,
    effects_table,
    policy_comparisons,
    rm_comparison,
    rm_kind_table,
)
from kowen_kedro.evaluation.gold import gold_summary, judge_agreement, policy_gold, qe_gold, rm_gold_accuracy, rm_summary
from kowen_kedro.evaluation.judges import judge_pairs
from kowen_kedro.evaluation.summary import configured_judges
from kowen_kedro.llm.backends import SamplingParams
from kowen_kedro.preference.iterations import DPO_ITERATIONS
from kowen_kedro.rewards.scoring import RewardScorer
from kowen_kedro.runtime import as_mlflow_metrics, cached_generator, registry_model
from kowen_kedro.training.cross_lingual import REPORTED_AS, baseline_in_same_run

logger = logging.getLogger(__name__)


def _policy(model: str, gold_prompts: pd.DataFrame, backend: dict, params: dict, llm: dict) -> tuple[pd.DataFrame, dict]:
    languages = sorted({m["language"] for m in gold_prompts["meta"]})  # of the answers ("xl" prompts ask for the target's)
    with cached_generator(model, backend, llm) as gen:
        table, summary = policy_gold(gen, gold_prompts, SamplingParams.from_dict(params["sampling"]), languages)
    logger.info("gold reward of %s: %s", model, {k: round(v, 3) for k, v in summary.items() if "." not in k})
    return table, summary


def gold_policy_node(model: str, gold_prompts: pd.DataFrame, params: dict, llm: dict) -> tuple[pd.DataFrame, dict]:
    """Greedy answers of a trained policy (a saved model folder) to the gold prompts, and their gold reward."""
    return _policy(model, gold_prompts, params["backend"], params, llm)


def _role(registry: dict, gold_prompts: pd.DataFrame, params: dict, llm: dict, role: str,
          backend: dict | None = None) -> tuple[pd.DataFrame, dict]:
    """The same for a model role of the registry (``student`` = the base model, ``teacher``), through
    ``backend`` (the role's own call-site backend, e.g. the teacher's) or the gold backend."""
    return _policy(registry_model(registry, role), gold_prompts, backend or params["backend"], params, llm)


def gold_base_node(registry: dict, gold_prompts: pd.DataFrame, params: dict, llm: dict):
    return _role(registry, gold_prompts, params, llm, "student")


def gold_teacher_node(registry: dict, gold_prompts: pd.DataFrame, params: dict, llm: dict, teacher: dict):
    return _role(registry, gold_prompts, params, llm, "teacher", backend=teacher["backend"])


def gold_tiny_teacher_node(registry: dict, gold_prompts: pd.DataFrame, params: dict, llm: dict):
    """The neural tiny teacher (role ``tiny_teacher``; it translates and judges): the measurement that
    shows why the default's teacher is the world's oracle."""
    return _role(registry, gold_prompts, params, llm, "tiny_teacher")


def gold_rm_node(reward_model: str, gold_pairs: pd.DataFrame, scoring: dict) -> tuple[pd.DataFrame, dict]:
    """A reward model on the held-out gold pairs: per-pair outcome, accuracy per language and kind."""
    scorer = RewardScorer(reward_model, batch_size=int(scoring["batch_size"]), max_length=int(scoring["max_length"]))
    return rm_gold_accuracy(scorer, gold_pairs)


def gold_qe_node(registry: dict, gold_translations: pd.DataFrame, params: dict, llm: dict, tiny_world: dict) -> dict:
    """QE's Spearman with gold translation quality, and the best-of-k gain, with the run's translators and QE."""
    from kowen_kedro.translation.tools import TranslationTools

    with TranslationTools(registry, params, llm) as tools:
        return qe_gold(tools.qe, tools.best_of_k, tools.translators, gold_translations, seed=int(tiny_world["seed"]))


def gold_judge_node(registry: dict, gold_pairs: pd.DataFrame, params: dict, llm: dict) -> dict:
    """Share of gold pairs where the configured judge prefers the answer with the higher gold reward."""
    pairwise, _ = configured_judges(registry, params, llm)
    return judge_agreement(lambda ins, a, b, langs: [r["preference"] for r in judge_pairs(pairwise, ins, a, b, langs, seed=int(params["seed"]))],
                           gold_pairs)


POLICIES = ("base", "teacher", "tiny_teacher", "sft", "xl_instruct", *DPO_ITERATIONS, "cross_lingual", "cross_lingual_baseline")
REWARD_MODELS = ("rm", "rm_transfer_source", "rm_transfer_target")


def gold_effects_node(qe: dict, judge: dict, xl_instruct_params: dict, cross_lingual_params: dict, languages: list[str],
                      source_language: str, target_language: str, **models: Any) -> tuple[dict, pd.DataFrame, str]:
    """Every gold number of the run (MLflow metrics ``gold.*``) and the table of claims (``gold/effects.*``).

    ``models``: ``answers_<name>`` the per-prompt gold answers of each policy of :data:`POLICIES` and the
    per-pair outcomes of each RM of :data:`REWARD_MODELS`, ``iteration_<dpo_iter_i>`` each DPO iteration's
    parameters (one mapping, so that every iteration is covered). Policies are compared per prompt
    (:mod:`kowen_kedro.evaluation.claims`). A disabled DPO iteration passes its input policy through, so
    it is left out (not reported as "no gain"); the cross-lingual policy is reported as ``cross_lingual``
    (CLO), ``sft_dpo_baseline`` or ``sft_on_pairs`` after ``cross_lingual.method``, and the baseline
    trained beside CLO (``cross_lingual.baseline_in_same_run``) as ``sft_dpo_baseline``; the XL-Instruct
    policy as ``xl_instruct`` unless ``xl_instruct.enabled`` is false."""
    answers = {name[len("answers_"):]: table for name, table in models.items() if name.startswith("answers_")}
    iterations = {name[len("iteration_"):]: p for name, p in models.items() if name.startswith("iteration_")}
    policies = {name: answers[name] for name in ("base", "teacher", "tiny_teacher", "sft")}
    if xl_instruct_params.get("enabled", True):
        policies["xl_instruct"] = answers["xl_instruct"]
    for name in DPO_ITERATIONS:
        if iterations[name]["dpo"]["enabled"]:
            policies[name] = answers[name]
    if cross_lingual_params.get("enabled", True):
        policies[REPORTED_AS[cross_lingual_params.get("method", "clo")]] = answers["cross_lingual"]
    if baseline_in_same_run(cross_lingual_params):
        policies["sft_dpo_baseline"] = answers["cross_lingual_baseline"]
    sft = answers["sft"]
    rms = {name: answers[name] for name in REWARD_MODELS}

    flat: dict[str, float] = {}
    for name, table in policies.items():
        flat.update({f"{name}.{k}": v for k, v in gold_summary(table).items()})
    for name, table in rms.items():
        flat.update({f"{name}.{k}": v for k, v in rm_summary(table).items()})
    flat.update(policy_comparisons(policies))
    flat.update(rm_comparison("rm_transfer_source", "rm_transfer_target", rms, target_language))
    flat.update(qe)
    flat.update(judge)
    flat = {k: float(v) for k, v in flat.items() if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v))}
    measured = [*languages, *sorted(set(sft["language"]) - set(languages))]  # + "xl": the cross-lingual prompts
    table = effects_table(flat, languages, target_language, source_language)
    for r in table.to_dict("records"):
        logger.info("gold effect: %s [%s] %.3f (%s): %s", r["claim"], r["language"], r["measured"], r["criterion"],
                    "held" if r["held"] else "NOT held")
    markdown = effects_markdown(table, flat, behaviour_table(flat, list(policies), measured), rm_kind_table(flat, list(rms), languages))
    return as_mlflow_metrics(flat), table, markdown
