"""translation_qe: sentence-level best-of-k translation chosen by COMET QE, bottom-fraction filter,
and the translated datasets: prompts (for SFT/DPO), preference pairs per target language (RM
transfer), the CLO dataset (x_en, y_en, x_l, y_l), XL-Instruct's cross-lingual SFT rows, and the machine-translated
evaluation set (m-AlpacaEval style)."""

from kedro.pipeline import Node, Pipeline

from .nodes import (
    build_clo_dataset_node,
    build_xl_instruct_sft_node,
    filter_translations_node,
    qe_histogram_node,
    translate_eval_set_node,
    translate_preferences_node,
    translate_prompts_node,
)

P = "params:translation_qe"


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                translate_prompts_node,
                inputs=["prompts", "model_registry", P, "params:source_language", "params:target_language", "params:llm"],
                outputs="prompt_translations",
                name="translate_prompts_node",
            ),
            Node(
                filter_translations_node,
                inputs=["prompt_translations", P],
                outputs=["translated_prompts", "translation_qe_metrics"],
                name="filter_translations_node",
            ),
            Node(
                translate_eval_set_node,
                inputs=["eval_prompts_raw", "model_registry", P, "params:source_language", "params:target_language", "params:llm"],
                outputs=["m_alpacaeval_prompts", "m_alpacaeval_translation_metrics"],
                name="translate_eval_set_node",
            ),
            Node(
                translate_preferences_node,
                inputs=["preference_pairs_raw", "model_registry", P, "params:source_language", "params:llm"],
                outputs=["translated_preference_pairs", "translated_preferences_metrics"],
                name="translate_preferences_node",
            ),
            Node(
                build_clo_dataset_node,
                inputs=["en_single_turn", "model_registry", P, "params:source_language", "params:target_language", "params:llm"],
                outputs=["clo_pairs", "clo_pairs_metrics"],
                name="build_clo_dataset_node",
            ),
            Node(
                build_xl_instruct_sft_node,
                inputs=["xl_instruct_pairs", "model_registry", P, "params:source_language", "params:target_language", "params:llm"],
                outputs=["xl_instruct_sft", "xl_instruct_sft_metrics"],
                name="build_xl_instruct_sft_node",
            ),
            Node(
                qe_histogram_node,
                inputs=["translated_prompts", "translated_preference_pairs", "clo_pairs", "xl_instruct_sft"],
                outputs="qe_histogram",
                name="qe_histogram_node",
            ),
        ]
    )
