"""evaluation: aligned policy vs the SFT model, judged pairwise (AlpacaEval style), plus language fidelity."""

from kedro.pipeline import Node, Pipeline

from .nodes import generate_outputs_node, judge_node, summarize_node


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                generate_outputs_node,
                inputs=["aligned_policy", "eval_prompts_raw", "params:evaluation.generation", "params:llm"],
                outputs="policy_eval_outputs",
                name="generate_policy_outputs_node",
            ),
            Node(
                generate_outputs_node,
                inputs=["sft_model", "eval_prompts_raw", "params:evaluation.generation", "params:llm"],
                outputs="reference_eval_outputs",
                name="generate_reference_outputs_node",
            ),
            Node(
                judge_node,
                inputs=["policy_eval_outputs", "reference_eval_outputs", "model_registry", "params:evaluation.judge", "params:llm"],
                outputs="judgements",
                name="judge_pairwise_node",
            ),
            Node(
                summarize_node,
                inputs=["judgements", "policy_eval_outputs", "params:languages"],
                outputs=["evaluation_summary", "evaluation_metrics"],
                name="summarize_evaluation_node",
            ),
        ]
    )
