"""models: the built-in tiny default and the model registry every other stage reads."""

from kedro.pipeline import Node, Pipeline

from .nodes import build_tiny_models_node, resolve_models_node, validate_raw_inputs_node


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                validate_raw_inputs_node,
                inputs=["user_prompts_raw", "preference_pairs_raw", "seed_passages_raw", "eval_prompts_raw", "mt_bench_prompts_raw"],
                outputs="raw_input_report",
                name="validate_raw_inputs_node",
            ),
            Node(
                build_tiny_models_node,
                inputs=["user_prompts_raw", "preference_pairs_raw", "seed_passages_raw", "params:tiny_models", "params:languages",
                        "raw_input_report", "parallel_sentences_raw"],
                outputs="tiny_models",
                name="build_tiny_models_node",
            ),
            Node(
                resolve_models_node,
                inputs=["tiny_models", "params:models", "params:tiny_world"],
                outputs="model_registry",
                name="resolve_models_node",
            ),
        ]
    )
