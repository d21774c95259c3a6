"""preference_alignment: iterative on-policy DPO, one namespaced copy of the iteration per round.

``dpo_iter_1`` starts from ``sft_model``; ``dpo_iter_<i+1>`` starts from ``dpo_iter_<i>.policy``. Each
iteration reads its own ``dpo_iter_<i>.dpo`` parameters (beta, lr, ``enabled``...); a disabled iteration
passes the policy through. ``aligned_policy`` is iteration ``keep_iteration``'s policy.

``cross_lingual_policy``: CLO on the paired English/target data (or its SFT+DPO baseline), from the
SFT model; ``cross_lingual_baseline_policy``: the SFT+DPO baseline beside it in the same run, two nodes
(SFT on both languages' rows -> ``cross_lingual_baseline_sft_model``, then DPO on the same rows)
(``cross_lingual.baseline_in_same_run``; the SFT model passed through when off).
"""

from kedro.pipeline import Node, Pipeline

from kowen_kedro.preference.iterations import MAX_DPO_ITERATIONS
from kowen_kedro.runner import LAUNCH_TAG

from .nodes import (
    build_pairs_node,
    dpo_prompts_node,
    sample_completions_node,
    score_completions_node,
    select_policy_node,
    train_cross_lingual_baseline_node,
    train_cross_lingual_baseline_sft_node,
    train_cross_lingual_node,
    train_dpo_node,
)



def iteration_template() -> Pipeline:
    """One DPO iteration over generic names; instantiated per iteration with a namespace."""
    return Pipeline(
        [
            Node(
                sample_completions_node,
                inputs=["policy_in", "dpo_prompts", "params:dpo", "params:sampling", "params:llm"],
                outputs="completions",
                name="sample_completions_node",
            ),
            Node(
                score_completions_node,
                inputs=["reward_model", "completions", "params:scoring", "params:llm"],
                outputs="scored_completions",
                name="score_completions_node",
            ),
            Node(
                build_pairs_node,
                inputs=["scored_completions", "params:pairs"],
                outputs=["preference_pairs", "pair_metrics"],
                name="build_pairs_node",
            ),
            Node(
                train_dpo_node,
                inputs=["policy_in", "initial_policy", "preference_pairs", "params:dpo", "params:training", "params:preflight", "params:stage"],
                outputs="policy",
                name="train_dpo_node",
                tags=[LAUNCH_TAG],  # trains in a child process: may run beside other nodes (kowen_kedro.runner)
            ),
        ]
    )


def create_pipeline(**kwargs) -> Pipeline:
    shared = {
        "sampling": "preference_alignment.sampling",
        "scoring": "preference_alignment.scoring",
        "pairs": "preference_alignment.pairs",
        "llm": "llm",
        "training": "training",
        "preflight": "preflight",
    }
    iterations = []
    for i in range(1, MAX_DPO_ITERATIONS + 1):
        ns = f"dpo_iter_{i}"
        iterations.append(
            Pipeline(
                iteration_template(),
                namespace=ns,
                inputs={
                    "policy_in": "sft_model" if i == 1 else f"dpo_iter_{i - 1}.policy",
                    "initial_policy": "sft_model",
                    "dpo_prompts": "dpo_prompts",
                    "reward_model": "reward_model",
                },
                parameters=shared,
            )
        )
    return Pipeline(
        [
            Node(
                dpo_prompts_node,
                inputs=["prompts", "target_prompts", "params:preference_alignment.prompts", "params:source_language",
                        "params:target_language"],
                outputs="dpo_prompts",
                name="dpo_prompts_node",
            ),
            *iterations,
            Node(
                select_policy_node,
                inputs=[f"dpo_iter_{i}.policy" for i in range(1, MAX_DPO_ITERATIONS + 1)]
                + ["params:preference_alignment.keep_iteration"],
                outputs="aligned_policy",
                name="select_aligned_policy_node",
            ),
            Node(
                train_cross_lingual_node,
                inputs=["sft_model", "clo_pairs", "params:cross_lingual", "params:training", "params:preflight"],
                outputs=["cross_lingual_policy", "cross_lingual_metrics"],
                name="train_cross_lingual_node",
                tags=[LAUNCH_TAG],  # trains in a child process: may run beside other nodes (kowen_kedro.runner)
            ),
            Node(
                train_cross_lingual_baseline_sft_node,
                inputs=["sft_model", "clo_pairs", "params:cross_lingual", "params:training", "params:preflight"],
                outputs="cross_lingual_baseline_sft_model",
                name="train_cross_lingual_baseline_sft_node",
                tags=[LAUNCH_TAG],  # trains in a child process: may run beside other nodes (kowen_kedro.runner)
            ),
            Node(
                train_cross_lingual_baseline_node,
                inputs=["cross_lingual_baseline_sft_model", "clo_pairs", "params:cross_lingual", "params:training", "params:preflight"],
                outputs=["cross_lingual_baseline_policy", "cross_lingual_baseline_metrics"],
                name="train_cross_lingual_baseline_node",
                tags=[LAUNCH_TAG],  # trains in a child process: may run beside other nodes (kowen_kedro.runner)
            ),
        ]
    )
