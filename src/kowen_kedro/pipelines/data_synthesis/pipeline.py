"""data_synthesis: real user prompts -> decontamination -> teacher completions (Ko/En single-turn,
Ko multi-turn) -> language-fidelity filter -> SFT mixture; and XL-Instruct reverse instructions.

Korean single-turn prompts are native Korean prompts plus English prompts translated first by
translation_qe (``translated_prompts``), as in Kowen.

The two prompt nodes form their own stage, namespace ``prompts``: translation_qe translates their
output before the completions below can start, so one ``data_synthesis`` box in kedro-viz would
have to enclose translation_qe's work.
"""

from kedro.pipeline import Node, Pipeline

from .nodes import (
    build_sft_mixture_node,
    decontaminate_node,
    ingest_prompts_node,
    target_prompt_pool_node,
    multi_turn_node,
    single_turn_node,
    xl_instruct_node,
)

TEACHER = "params:data_synthesis.teacher"
#: the namespace of the stage before translation (kept at the top level by the pipeline registry)
PROMPTS_STAGE = "prompts"


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                ingest_prompts_node,
                inputs=["user_prompts_raw", "params:data_synthesis.ingest", "params:languages"],
                outputs=["ingested_prompts", "ingest_metrics"],
                name="ingest_prompts_node",
                namespace=PROMPTS_STAGE,
            ),
            Node(
                decontaminate_node,
                inputs=["ingested_prompts", "eval_prompts_raw", "params:data_synthesis.decontamination"],
                outputs=["prompts", "contaminated_prompts", "decontamination_metrics"],
                name="decontaminate_prompts_node",
                namespace=PROMPTS_STAGE,
            ),
            Node(
                target_prompt_pool_node,
                inputs=["prompts", "translated_prompts", "params:target_language"],
                outputs="target_prompts",
                name="target_prompt_pool_node",
            ),
            Node(
                single_turn_node,
                inputs=["prompts", "model_registry", "params:source_language", TEACHER, "params:llm", "params:languages"],
                outputs=["en_single_turn", "en_single_turn_metrics"],
                name="en_single_turn_node",
            ),
            Node(
                single_turn_node,
                inputs=["target_prompts", "model_registry", "params:target_language", TEACHER, "params:llm", "params:languages"],
                outputs=["target_single_turn", "target_single_turn_metrics"],
                name="target_single_turn_node",
            ),
            Node(
                multi_turn_node,
                inputs=["target_prompts", "model_registry", "params:data_synthesis.multi_turn", "params:target_language", TEACHER,
                        "params:llm", "params:languages"],
                outputs=["target_multi_turn", "target_multi_turn_metrics"],
                name="target_multi_turn_node",
            ),
            Node(
                xl_instruct_node,
                inputs=["seed_passages_raw", "model_registry", "params:data_synthesis.xl_instruct", TEACHER, "params:llm"],
                outputs=["xl_instruct_pairs", "xl_instruct_metrics"],
                name="xl_instruct_reverse_instructions_node",
            ),
            Node(
                build_sft_mixture_node,
                inputs=["en_single_turn", "target_single_turn", "target_multi_turn", "params:data_synthesis.mixture"],
                outputs=["sft_dataset", "data_synthesis_metrics"],
                name="build_sft_mixture_node",
            ),
        ]
    )
