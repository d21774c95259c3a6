"""sft: teacher-distilled supervised fine-tuning of the student (full / LoRA / attention-only)."""

from kedro.pipeline import Node, Pipeline

from .nodes import train_sft_node


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                train_sft_node,
                inputs=[
                    "sft_dataset", "model_registry", "params:sft", "params:training",
                    "params:source_language", "params:target_language",
                ],
                outputs="sft_model",
                name="train_sft_node",
            )
        ]
    )
