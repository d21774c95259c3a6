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
from kowen_kedro.groups import (
    Answering,
    CrossLingual,
    DPOIteration,
    Judge,
    RMScoring,
    Teacher,
    TinyWorld,
    TranslationQE,
    XLInstruct,
)
from kowen_kedro.llm.backends import SamplingParams
from kowen_kedro.preference.iterations import DPO_ITERATIONS
from kowen_kedro.rewards.scoring import RewardScorer
from kowen_kedro.runtime import as_mlflow_metrics, cached_generator, registry_model
from kowen_kedro.training.cross_lingual import REPORTED_AS, baseline_in_same_run

logger = logging.getLogger(__name__)


def _policy(model: str, gold_prompts: pd.DataFrame, backend: dict, params: dict, llm: dict) -> tuple[pd.DataFrame, dict]:
    gold = Answering.of(params, "evaluation.gold")
    languages = sorted({m["language"] for m in gold_prompts["meta"]})  # of the answers ("xl" prompts ask for the target's)
    with cached_generator(model, backend or gold.backend, llm) as gen:
        table, summary = policy_gold(gen, gold_prompts, SamplingParams.from_dict(gold.sampling), languages)
    logger.info("gold reward of %s: %s", model, {k: round(v, 3) for k, v in summary.items() if "." not in k})
    return table, summary


def gold_policy_node(model: str, gold_prompts: pd.DataFrame, params: dict, llm: dict) -> tuple[pd.DataFrame, dict]:
    """Greedy answers of a trained policy (a saved model folder) to the gold prompts, and their gold reward."""
    return _policy(model, gold_prompts, {}, params, llm)


def _role(registry: dict, gold_prompts: pd.DataFrame, params: dict, llm: dict, role: str,
          backend: dict | None = None) -> tuple[pd.DataFrame, dict]:
    """The same for a model role of the registry (``student`` = the base model, ``teacher``), through
    ``backend`` (the role's own call-site backend, e.g. the teacher's) or the gold backend."""
    return _policy(registry_model(registry, role), gold_prompts, backend or {}, params, llm)


def gold_base_node(registry: dict, gold_prompts: pd.DataFrame, params: dict, llm: dict):
    return _role(registry, gold_prompts, params, llm, "student")


def gold_teacher_node(registry: dict, gold_prompts: pd.DataFrame, params: dict, llm: dict, teacher: dict):
    return _role(registry, gold_prompts, params, llm, "teacher", backend=Teacher.of(teacher).backend)


def gold_tiny_teacher_node(registry: dict, gold_prompts: pd.DataFrame, params: dict, llm: dict):
    """The neural tiny teacher (role ``tiny_teacher``; it translates and judges): the measurement that
    shows why the default's teacher is the world's oracle."""
    return _role(registry, gold_prompts, params, llm, "tiny_teacher")


def gold_rm_node(reward_model: str, gold_pairs: pd.DataFrame, scoring: dict) -> tuple[pd.DataFrame, dict]:
    """A reward model on the held-out gold pairs: per-pair outcome, accuracy per language and kind."""
    scoring = RMScoring.of(scoring)
    scorer = RewardScorer(reward_model, batch_size=scoring.batch_size, max_length=scoring.max_length)
    return rm_gold_accuracy(scorer, gold_pairs)


def gold_qe_node(registry: dict, gold_translations: pd.DataFrame, params: dict, llm: dict, tiny_world: dict) -> dict:
    """QE's Spearman with gold translation quality, and the best-of-k gain, with the run's translators and QE."""
    from kowen_kedro.translation.tools import TranslationTools

    with TranslationTools(registry, TranslationQE.of(params), llm) as tools:
        return qe_gold(tools.qe, tools.best_of_k, tools.translators, gold_translations, seed=TinyWorld.of(tiny_world).seed)


def gold_judge_node(registry: dict, gold_pairs: pd.DataFrame, params: dict, llm: dict) -> dict:
    """Share of gold pairs where the configured judge prefers the answer with the higher gold reward."""
    judge = Judge.of(params)
    pairwise, _ = configured_judges(registry, judge, llm)
    return judge_agreement(lambda ins, a, b, langs: [r["preference"] for r in judge_pairs(pairwise, ins, a, b, langs, seed=judge.seed)],
                           gold_pairs)


def gold_alignment_node(registry: dict, gold_prompts: pd.DataFrame, gold_translations: pd.DataFrame, tiny_world: dict,
                        source_language: str, target_language: str, **models: str) -> dict:
    """Do the languages meet in the base model, the SFT policy and each reward model? Cross-lingual retrieval
    of the world's held-out parallel sentences, layer by layer, and the collapse ratio, raw and centred
    (:func:`kowen_kedro.evaluation.alignment.alignment`), as ``<model>.alignment.*`` (MLflow ``gold.*``).

    ``models``: the model folder of each name of :data:`ALIGNED`; the base is the registry's ``student``."""
    from kowen_kedro.evaluation.alignment import alignment
    from kowen_kedro.world.gold import parallel_gold

    pairs = parallel_gold(gold_prompts.to_dict("records"), gold_translations.to_dict("records"), source_language,
                          target_language, TinyWorld.of(tiny_world).seed)
    out: dict[str, float] = {}
    for name, path in {"base": registry_model(registry, "student"), **models}.items():
        figures = alignment(path, pairs)
        out.update({f"{name}.alignment.{k}": v for k, v in figures.items()})
        logger.info("alignment of %s: retrieval top-1 %.3f (layer %d; chance %.4f), content %.3f (chance %.3f), "
                    "collapse %.3f centred, %.3f raw", name, figures["top1"], figures["best_layer"], figures["chance"],
                    figures["content"], figures["content.chance"], figures["collapse"], figures["collapse.raw"])
    return out


#: The models whose alignment is measured beside the base (catalog dataset -> name).
ALIGNED = {"sft_model": "sft", "reward_model": "rm", "rm_transfer_source.reward_model": "rm_transfer_source",
           "rm_transfer_target.reward_model": "rm_transfer_target"}

POLICIES = ("base", "teacher", "tiny_teacher", "sft", "xl_instruct", *DPO_ITERATIONS, "cross_lingual", "cross_lingual_baseline")
REWARD_MODELS = ("rm", "rm_transfer_source", "rm_transfer_target")


def gold_effects_node(qe: dict, judge: dict, alignment: dict, xl_instruct_params: dict, cross_lingual_params: dict, languages: list[str],
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
    cross_lingual = CrossLingual.of(cross_lingual_params)
    policies = {name: answers[name] for name in ("base", "teacher", "tiny_teacher", "sft")}
    if XLInstruct.of(xl_instruct_params).enabled:
        policies["xl_instruct"] = answers["xl_instruct"]
    for name in DPO_ITERATIONS:
        if DPOIteration.of(iterations[name], name).dpo.enabled:
            policies[name] = answers[name]
    if cross_lingual.enabled:
        policies[REPORTED_AS[cross_lingual.method]] = answers["cross_lingual"]
    if baseline_in_same_run(cross_lingual):
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
    flat.update(alignment)
    flat.update(judge)
    flat = {k: float(v) for k, v in flat.items() if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v))}
    measured = [*languages, *sorted(set(sft["language"]) - set(languages))]  # + "xl": the cross-lingual prompts
    table = effects_table(flat, languages, target_language, source_language)
    for r in table.to_dict("records"):
        logger.info("gold effect: %s [%s] %.3f (%s): %s", r["claim"], r["language"], r["measured"], r["criterion"],
                    "held" if r["held"] else "NOT held")
    markdown = effects_markdown(table, flat, behaviour_table(flat, list(policies), measured), rm_kind_table(flat, list(rms), languages))
    return as_mlflow_metrics(flat), table, markdown
