"""sft: teacher-distilled supervised fine-tuning of the student (full / LoRA / attention-only), then
XL-Instruct's cross-lingual fine-tuning of the SFT model (``xl_instruct_policy``)."""

from kedro.pipeline import Node, Pipeline

from kowen_kedro.runner import LAUNCH_TAG

from .nodes import train_sft_node, train_xl_instruct_node


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                train_sft_node,
                inputs=[
                    "sft_dataset", "model_registry", "params:sft", "params:training", "params:preflight",
                    "params:source_language", "params:target_language",
                ],
                outputs="sft_model",
                name="train_sft_node",
                tags=[LAUNCH_TAG],  # trains in a child process: may run beside other nodes (kowen_kedro.runner)
            ),
            Node(
                train_xl_instruct_node,
                inputs=["sft_model", "xl_instruct_sft", "sft_dataset", "params:xl_instruct", "params:training", "params:preflight"],
                outputs="xl_instruct_policy",
                name="train_xl_instruct_node",
                tags=[LAUNCH_TAG],  # trains in a child process: may run beside other nodes (kowen_kedro.runner)
            ),
        ]
    )
