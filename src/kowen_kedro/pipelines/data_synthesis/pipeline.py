"""data_synthesis: real user prompts -> teacher completions (Ko/En single-turn, Ko multi-turn) -> SFT mixture.

Korean single-turn prompts are native Korean prompts plus English prompts translated first by
translation_qe (``translated_prompts``), as in Kowen.
"""

from kedro.pipeline import Node, Pipeline

from .nodes import (
    build_sft_mixture_node,
    ingest_prompts_node,
    korean_prompt_pool_node,
    multi_turn_node,
    single_turn_node,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                ingest_prompts_node,
                inputs=["user_prompts_raw", "params:data_synthesis.ingest", "params:languages"],
                outputs=["prompts", "ingest_metrics"],
                name="ingest_prompts_node",
            ),
            Node(
                korean_prompt_pool_node,
                inputs=["prompts", "translated_prompts", "params:target_language"],
                outputs="target_prompts",
                name="target_prompt_pool_node",
            ),
            Node(
                single_turn_node,
                inputs=["prompts", "model_registry", "params:source_language", "params:data_synthesis.teacher", "params:llm"],
                outputs="en_single_turn",
                name="en_single_turn_node",
            ),
            Node(
                single_turn_node,
                inputs=["target_prompts", "model_registry", "params:target_language", "params:data_synthesis.teacher", "params:llm"],
                outputs="ko_single_turn",
                name="ko_single_turn_node",
            ),
            Node(
                multi_turn_node,
                inputs=["target_prompts", "model_registry", "params:data_synthesis.multi_turn", "params:data_synthesis.teacher", "params:llm"],
                outputs="ko_multi_turn",
                name="ko_multi_turn_node",
            ),
            Node(
                build_sft_mixture_node,
                inputs=["en_single_turn", "ko_single_turn", "ko_multi_turn", "params:data_synthesis.mixture"],
                outputs=["sft_dataset", "data_synthesis_metrics"],
                name="build_sft_mixture_node",
            ),
        ]
    )
