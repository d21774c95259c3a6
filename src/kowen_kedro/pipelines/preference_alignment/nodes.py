"""Nodes of one on-policy DPO iteration (Kowen): sample k, RM-score, best vs worst, DPO."""

from __future__ import annotations

import logging
from dataclasses import replace

import pandas as pd

from kowen_kedro.groups import DPO, CrossLingual, PolicyPairs, PolicyPrompts, PolicySampling, PolicyScoring, Preflight, Training
from kowen_kedro.llm.backends import SamplingParams
from kowen_kedro.preference.pairs import PAIR_COLUMNS, best_worst_pairs
from kowen_kedro.rewards.scoring import RewardScorer
from kowen_kedro.runtime import as_mlflow_metrics, cached_generator, call_cache
from kowen_kedro.training.cross_lingual import baseline_in_same_run, train_baseline_dpo, train_baseline_sft, train_cross_lingual
from kowen_kedro.training.stages import train_stage
from kowen_kedro.world.gold import prompt_gold_rewards

logger = logging.getLogger(__name__)

COMPLETION_COLUMNS = ["prompt_id", "prompt", "sample", "completion", "finish_reason"]


def dpo_prompts_node(prompts: pd.DataFrame, target_prompts: pd.DataFrame, params: dict, source_language: str,
                     target_language: str) -> pd.DataFrame:
    """The prompt set every iteration samples on: ``max_prompts`` split evenly over ``languages``
    (``source`` = the source-language prompts, ``target`` = the target-language pool of native and
    translated prompts; Kowen: translated UltraFeedback prompts). Prompts in both languages keep
    preference training from teaching "answer in the target language whatever the prompt"."""
    chosen = PolicyPrompts.of(params)
    aliases = {"source": source_language, "target": target_language}
    languages = [aliases.get(lang, lang) for lang in chosen.languages]
    pools = {source_language: prompts[prompts["language"] == source_language], target_language: target_prompts}
    unknown = [lang for lang in languages if lang not in pools]
    if unknown:
        raise ValueError(f"preference_alignment.prompts.languages: {unknown} is neither the source language "
                         f"{source_language!r} nor the target language {target_language!r}")
    per_language = chosen.max_prompts // len(languages)
    parts = [pools[lang][["prompt_id", "language", "prompt"]].pipe(
        lambda df: df.sample(n=min(per_language, len(df)), random_state=chosen.seed)) for lang in languages]
    return pd.concat(parts, ignore_index=True)


def sample_completions_node(policy: str, prompts: pd.DataFrame, dpo: dict, sampling: dict, llm: dict) -> pd.DataFrame:
    """k samples per prompt from the current policy (cached; empty when the iteration is disabled).

    The engine is ``sampling.backend`` with the iteration's ``dpo.sampling_backend`` options over it
    (``--params dpo_iter_1.dpo.sampling_backend.backend=vllm``: that iteration alone through vLLM)."""
    iteration, sampling = DPO.of(dpo), PolicySampling.of(sampling)
    if not iteration.enabled:
        return pd.DataFrame(columns=COMPLETION_COLUMNS)
    backend = {**sampling.backend, **iteration.sampling_backend}
    with cached_generator(policy, backend, llm) as gen:  # a vLLM worker gives the GPU back before training
        outs = gen.generate([[{"role": "user", "content": p}] for p in prompts["prompt"]], SamplingParams.from_dict(sampling.params),
                            n=sampling.k)
    rows = [
        {"prompt_id": pid, "prompt": p, "sample": s, "completion": c.text, "finish_reason": c.finish_reason}
        for pid, p, samples in zip(prompts["prompt_id"], prompts["prompt"], outs)
        for s, c in enumerate(samples)
    ]
    return pd.DataFrame(rows, columns=COMPLETION_COLUMNS)


def score_completions_node(reward_model: str, completions: pd.DataFrame, params: dict, llm: dict) -> pd.DataFrame:
    """Reward of every completion (cached per (RM, prompt, completion): a killed iteration resumes).

    ``params.reward``: ``model`` (the trained RM, Kowen) or ``gold`` (the tiny world's gold reward of
    world ``params.world_seed``: a perfect RM, the diagnostic upper bound of docs/effects.md)."""
    scoring = PolicyScoring.of(params)
    if completions.empty:
        return completions.assign(reward=pd.Series(dtype=float))
    if scoring.reward == "gold":
        rewards = prompt_gold_rewards(list(completions["prompt"]), list(completions["completion"]), scoring.world_seed)
        return completions.assign(reward=rewards)
    scorer = RewardScorer(reward_model, batch_size=scoring.batch_size, max_length=scoring.max_length, cache=call_cache(llm))
    return completions.assign(reward=scorer.score(list(completions["prompt"]), list(completions["completion"])))


def build_pairs_node(scored: pd.DataFrame, params: dict) -> tuple[pd.DataFrame, dict]:
    """Best vs worst per prompt (``params.min_margin_sd``: only pairs whose reward margin is at least
    that many SD of the iteration's rewards), and reward statistics for MLflow."""
    if scored.empty:
        return pd.DataFrame(columns=PAIR_COLUMNS), as_mlflow_metrics({"pairs": 0})
    pairs = best_worst_pairs(scored, PolicyPairs.of(params).min_margin_sd)
    untied = len(best_worst_pairs(scored))
    stats = {
        "pairs": len(pairs),
        "below_margin": untied - len(pairs),
        "tie_share": 1 - untied / scored["prompt_id"].nunique(),
        "reward_mean": float(scored["reward"].mean()),
        "chosen_reward_mean": float(pairs["chosen_reward"].mean()) if len(pairs) else float("nan"),
        "rejected_reward_mean": float(pairs["rejected_reward"].mean()) if len(pairs) else float("nan"),
        "margin_mean": float((pairs["chosen_reward"] - pairs["rejected_reward"]).mean()) if len(pairs) else float("nan"),
    }
    return pairs, as_mlflow_metrics(stats)


def train_dpo_node(policy: str, initial_policy: str, pairs: pd.DataFrame, dpo: dict, training: dict, preflight: dict, stage: str) -> str:
    """DPO on the iteration's pairs, starting from the current policy.

    The reference is ``dpo.reference``: ``previous`` (the policy this iteration starts from, Kowen) or
    ``initial`` (the fixed policy the first iteration started from). With ``finetuning: lora`` and
    ``previous``, the adapter-disabled base is the reference (no second model in memory); with
    ``trainer_args.precompute_ref_log_probs: true`` reference log-probs are computed once up front.
    A disabled iteration (``enabled: false``) passes the input policy through unchanged.
    """
    iteration = DPO.of(dpo, f"{stage}.dpo")
    if not iteration.enabled:
        logger.info("%s disabled: passing the policy through", stage)
        return policy
    if iteration.reference == "initial" and initial_policy != policy:
        iteration = replace(iteration, ref_model=initial_policy)
    records = [
        {
            "prompt": [{"role": "user", "content": r["prompt"]}],
            "chosen": [{"role": "assistant", "content": r["chosen"]}],
            "rejected": [{"role": "assistant", "content": r["rejected"]}],
        }
        for r in pairs.to_dict("records")
    ]
    return train_stage("dpo", stage, policy, records, iteration, Training.of(training), preflight_cfg=Preflight.of(preflight))["final_dir"]


def select_policy_node(*policies_and_keep) -> str:
    """The policy of iteration ``keep`` (1-based; Kowen keeps iteration 2)."""
    *policies, keep = policies_and_keep
    keep = int(keep)
    if not 1 <= keep <= len(policies):
        raise ValueError(f"preference_alignment.keep_iteration={keep}: must be between 1 and {len(policies)}")
    return policies[keep - 1]


def train_cross_lingual_node(init_policy: str, clo_pairs: pd.DataFrame, params: dict, training: dict, preflight: dict) -> tuple[str, dict]:
    """CLO (or its SFT+DPO baseline, ``params.method``) on the paired English/target data."""
    cross = CrossLingual.of(params)
    if not cross.enabled:
        logger.info("cross_lingual disabled: passing the policy through")
        return init_policy, as_mlflow_metrics({"enabled": 0})
    final, metrics = train_cross_lingual(init_policy, clo_pairs, cross, Training.of(training), Preflight.of(preflight))
    return final, as_mlflow_metrics(metrics)


def train_cross_lingual_baseline_sft_node(init_policy: str, clo_pairs: pd.DataFrame, params: dict, training: dict, preflight: dict) -> str:
    """The SFT step of CLO's SFT+DPO baseline (both languages' rows, from the SFT model), beside CLO in the same
    run; its model is ``cross_lingual_baseline_sft_model``. Passes the policy through unless
    :func:`baseline_in_same_run`."""
    cross = CrossLingual.of(params)
    if not baseline_in_same_run(cross):
        return init_policy
    final, _ = train_baseline_sft(init_policy, clo_pairs, cross, Training.of(training), Preflight.of(preflight),
                                  stage="cross_lingual_baseline")
    return final


def train_cross_lingual_baseline_node(baseline_sft_model: str, clo_pairs: pd.DataFrame, params: dict, training: dict, preflight: dict) -> tuple[str, dict]:
    """The DPO step of CLO's SFT+DPO baseline: standard DPO on the same rows from the baseline's SFT model.

    Passes the policy through (metric ``enabled`` 0) unless :func:`baseline_in_same_run`."""
    cross = CrossLingual.of(params)
    if not baseline_in_same_run(cross):
        return baseline_sft_model, as_mlflow_metrics({"enabled": 0})
    final, metrics = train_baseline_dpo(baseline_sft_model, clo_pairs, cross, Training.of(training), Preflight.of(preflight),
                                        stage="cross_lingual_baseline")
    return final, as_mlflow_metrics(metrics)
