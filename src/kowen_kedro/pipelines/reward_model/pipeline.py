"""reward_model: Bradley-Terry RMs on (prompt, chosen, rejected), evaluated per language and category.

* ``reward_model`` - the RM the DPO loop scores with, trained on all training pairs.
* RM transfer (the cross-lingual RM paper): the same training template instantiated twice with a
  namespace - ``rm_transfer_source`` trained on the source-language (English) pairs,
  ``rm_transfer_target`` on their translations - each evaluated on every language, compared in a
  Table-1-style table (with deltas), and probed for representation collapse (Figure 1).
"""

from kedro.pipeline import Node, Pipeline

from kowen_kedro.runner import LAUNCH_TAG

from .nodes import (
    benchmark_reward_model_node,
    evaluate_reward_model_node,
    representation_collapse_node,
    split_preferences_node,
    train_reward_model_node,
    train_transfer_rm_node,
    transfer_accuracy_node,
    transfer_comparison_node,
    transfer_training_pairs_node,
)

LANGS = ["params:source_language", "params:target_language"]


def transfer_template() -> Pipeline:
    return Pipeline(
        [
            Node(
                transfer_training_pairs_node,
                inputs=["rm_train_pairs", "translated_preference_pairs", "params:role", *LANGS, "params:reward_model"],
                outputs="train_pairs",
                name="transfer_training_pairs_node",
            ),
            Node(
                train_transfer_rm_node,
                inputs=["train_pairs", "rm_eval_pairs", "model_registry", "params:reward_model", "params:training", "params:preflight",
                        "params:role"],
                outputs="reward_model",
                name="train_transfer_rm_node",
                tags=[LAUNCH_TAG],  # trains in a child process: may run beside other nodes (kowen_kedro.runner)
            ),
            Node(
                transfer_accuracy_node,
                inputs=["reward_model", "rm_eval_pairs", "params:scoring", "params:role", *LANGS],
                outputs=["accuracy", "accuracy_metrics"],
                name="transfer_accuracy_node",
            ),
        ]
    )


def create_pipeline(**kwargs) -> Pipeline:
    shared_inputs = {d: d for d in ("rm_train_pairs", "translated_preference_pairs", "rm_eval_pairs", "model_registry")}
    shared_params = {
        "reward_model": "reward_model",
        "scoring": "reward_model.scoring",
        "training": "training",
        "preflight": "preflight",
        "source_language": "source_language",
        "target_language": "target_language",
    }
    transfer = [
        Pipeline(transfer_template(), namespace=f"rm_transfer_{role}", inputs=shared_inputs, parameters=shared_params)
        for role in ("source", "target")
    ]
    return Pipeline(
        [
            Node(
                split_preferences_node,
                inputs=["preference_pairs_raw", "params:reward_model.data", "params:languages"],
                outputs=["rm_train_pairs", "rm_eval_pairs", "rm_data_metrics"],
                name="split_preferences_node",
            ),
            Node(
                train_reward_model_node,
                inputs=["rm_train_pairs", "rm_eval_pairs", "model_registry", "params:reward_model", "params:training", "params:preflight"],
                outputs="reward_model",
                name="train_reward_model_node",
                tags=[LAUNCH_TAG],  # trains in a child process: may run beside other nodes (kowen_kedro.runner)
            ),
            Node(
                evaluate_reward_model_node,
                inputs=["reward_model", "rm_eval_pairs", "params:reward_model.scoring"],
                outputs=["rm_eval_scores", "rm_accuracy_table", "reward_model_metrics"],
                name="evaluate_reward_model_node",
            ),
            Node(
                benchmark_reward_model_node,
                inputs=["reward_model", "rm_benchmark_pairs_raw", "params:reward_model.scoring", "params:reward_model.benchmark"],
                outputs=["rm_benchmark_table", "rm_benchmark_metrics"],
                name="benchmark_reward_model_node",
            ),
            *transfer,
            Node(
                transfer_comparison_node,
                inputs=["rm_transfer_source.accuracy", "rm_transfer_target.accuracy"],
                outputs=["rm_transfer_table", "rm_transfer_table_md"],
                name="rm_transfer_comparison_node",
            ),
            Node(
                representation_collapse_node,
                inputs=[
                    "model_registry", "rm_transfer_source.reward_model", "rm_transfer_target.reward_model",
                    "preference_pairs_raw", "user_prompts_raw", "params:languages", *LANGS, "parallel_sentences_raw",
                ],
                outputs=["rm_collapse_table", "rm_collapse_plot", "rm_collapse_metrics"],
                name="representation_collapse_node",
            ),
        ]
    )
