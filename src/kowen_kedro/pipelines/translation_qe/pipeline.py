"""translation_qe: translate prompts (sentence level, formatting kept), COMET QE score, drop the bottom 20%."""

from kedro.pipeline import Node, Pipeline

from .nodes import filter_translations_node, score_translations_node, translate_prompts_node


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                translate_prompts_node,
                inputs=["prompts", "model_registry", "params:translation_qe.translate", "params:source_language", "params:target_language", "params:llm"],
                outputs="prompt_translations",
                name="translate_prompts_node",
            ),
            Node(
                score_translations_node,
                inputs=["prompt_translations", "model_registry", "params:translation_qe.qe", "params:llm"],
                outputs="scored_prompt_translations",
                name="score_translations_node",
            ),
            Node(
                filter_translations_node,
                inputs=["scored_prompt_translations", "params:translation_qe.filter"],
                outputs=["translated_prompts", "translation_qe_metrics"],
                name="filter_translations_node",
            ),
        ]
    )
