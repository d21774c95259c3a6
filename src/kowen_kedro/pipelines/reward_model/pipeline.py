"""reward_model: Bradley-Terry RM on (prompt, chosen, rejected), evaluated per language and category."""

from kedro.pipeline import Node, Pipeline

from .nodes import evaluate_reward_model_node, split_preferences_node, train_reward_model_node


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                split_preferences_node,
                inputs=["preference_pairs_raw", "params:reward_model.data"],
                outputs=["rm_train_pairs", "rm_eval_pairs"],
                name="split_preferences_node",
            ),
            Node(
                train_reward_model_node,
                inputs=["rm_train_pairs", "rm_eval_pairs", "model_registry", "params:reward_model.training", "params:training"],
                outputs="reward_model",
                name="train_reward_model_node",
            ),
            Node(
                evaluate_reward_model_node,
                inputs=["reward_model", "rm_eval_pairs", "params:reward_model.scoring"],
                outputs=["rm_eval_scores", "rm_accuracy_table", "reward_model_metrics"],
                name="evaluate_reward_model_node",
            ),
        ]
    )
