"""evaluation: the aligned policy against the SFT model and on its own.

* AlpacaEval 2.0 numbers (win rate + SE, discrete win rate, length-controlled win rate where its inputs
  exist; computed by the alpaca-eval package) against the SFT model's answers or the published
  reference outputs, on the multilingual prompts, on their machine translation
  (m-AlpacaEval style, from translation_qe) and on XL-AlpacaEval (cross-lingual: English prompt +
  "Answer in {lang}"), with language fidelity;
* MT-Bench style 1-10 grades for turn 1 and turn 2; XL-Instruct's 1-5 rubric;
* lm-evaluation-harness NLU tasks on the saved model;
* win rate and fidelity per DPO iteration: generate / judge / summarise nodes in each iteration's
  namespace, then the curve; one report table of everything;
* gold: every model and selector of the run against the tiny world's gold reward (``gold.*`` metrics,
  ``gold/effects.md``): base, teacher, SFT, each DPO iteration, the cross-lingual policy, the RMs,
  QE / best-of-k and the judge.
"""

from kedro.pipeline import Node, Pipeline

from kowen_kedro.forked import forked_node
from kowen_kedro.preference.iterations import DPO_ITERATIONS, MAX_DPO_ITERATIONS

from .gold_nodes import (
    ALIGNED,
    POLICIES,
    REWARD_MODELS,
    gold_alignment_node,
    gold_base_node,
    gold_effects_node,
    gold_judge_node,
    gold_policy_node,
    gold_qe_node,
    gold_rm_node,
    gold_teacher_node,
    gold_tiny_teacher_node,
)
from .nodes import (
    generate_outputs_node,
    iteration_curve_node,
    judge_node,
    mt_bench_node,
    nlu_node,
    reference_outputs_node,
    report_node,
    rubric_node,
    summarize_m_node,
    summarize_iteration_node,
    summarize_node,
    summarize_xl_node,
    xl_alpacaeval_node,
)

GEN, JUDGE = "params:evaluation.generation", "params:evaluation.judge"
GOLD = "params:evaluation.gold"


def gold_pipeline() -> Pipeline:
    """One node per model / selector on the held-out gold set, each in a process of its own where the runner forks
    (:mod:`kowen_kedro.forked`: on a CPU, two of them or one and another node use both cores), then the table of
    claims."""
    def policy(model: str, name: str) -> Node:
        return forked_node(gold_policy_node, inputs=[model, "gold_prompts", GOLD, "params:llm"],
                    outputs=[f"gold_answers_{name}", f"gold_summary_{name}"], name=f"gold_{name}_node")

    def rm(model: str, name: str) -> Node:
        return forked_node(gold_rm_node, inputs=[model, "gold_pairs", "params:reward_model.scoring"],
                    outputs=[f"gold_answers_{name}", f"gold_summary_{name}"], name=f"gold_{name}_node")

    g = [GOLD, "params:llm"]
    return Pipeline([
        forked_node(gold_base_node, inputs=["model_registry", "gold_prompts", *g], outputs=["gold_answers_base", "gold_summary_base"],
             name="gold_base_node"),
        forked_node(gold_teacher_node, inputs=["model_registry", "gold_prompts", *g, "params:data_synthesis.teacher"],
             outputs=["gold_answers_teacher", "gold_summary_teacher"], name="gold_teacher_node"),
        forked_node(gold_tiny_teacher_node, inputs=["model_registry", "gold_prompts", *g],
             outputs=["gold_answers_tiny_teacher", "gold_summary_tiny_teacher"], name="gold_tiny_teacher_node"),
        policy("sft_model", "sft"),
        policy("xl_instruct_policy", "xl_instruct"),
        *[policy(f"{it}.policy", it) for it in DPO_ITERATIONS],
        policy("cross_lingual_policy", "cross_lingual"),
        policy("cross_lingual_baseline_policy", "cross_lingual_baseline"),
        rm("reward_model", "rm"),
        rm("rm_transfer_source.reward_model", "rm_transfer_source"),
        rm("rm_transfer_target.reward_model", "rm_transfer_target"),
        forked_node(gold_qe_node, inputs=["model_registry", "gold_translations", "params:translation_qe", "params:llm", "params:tiny_world"],
             outputs="gold_summary_qe", name="gold_qe_node"),
        forked_node(gold_judge_node, inputs=["model_registry", "gold_pairs", JUDGE, "params:llm"], outputs="gold_summary_judge",
             name="gold_judge_node"),
        forked_node(gold_alignment_node,
             inputs={"registry": "model_registry", "gold_prompts": "gold_prompts", "gold_translations": "gold_translations",
                     "tiny_world": "params:tiny_world", "source_language": "params:source_language",
                     "target_language": "params:target_language", **{name: dataset for dataset, name in ALIGNED.items()}},
             outputs="gold_summary_alignment", name="gold_alignment_node"),
        Node(gold_effects_node,
             inputs={"qe": "gold_summary_qe", "judge": "gold_summary_judge", "alignment": "gold_summary_alignment",
                     "xl_instruct_params": "params:xl_instruct",
                     "cross_lingual_params": "params:cross_lingual", "languages": "params:languages",
                     "source_language": "params:source_language", "target_language": "params:target_language",
                     **{f"answers_{n}": f"gold_answers_{n}" for n in (*POLICIES, *REWARD_MODELS)},
                     **{f"iteration_{it}": f"params:{it}" for it in DPO_ITERATIONS}},
             outputs=["gold_metrics", "gold_effects", "gold_effects_md"], name="gold_effects_node"),
    ])


def _pairwise(prompts: str, prefix: str, summarize, summary: str, benchmark: str) -> list[Node]:
    return [
        Node(generate_outputs_node, inputs=["aligned_policy", prompts, GEN, "params:llm"],
             outputs=f"{prefix}policy_eval_outputs", name=f"generate_{prefix}policy_outputs_node"),
        Node(reference_outputs_node, inputs=["sft_model", prompts, GEN, "params:llm", f"params:evaluation.alpacaeval.reference.{benchmark}"],
             outputs=f"{prefix}reference_eval_outputs", name=f"generate_{prefix}reference_outputs_node"),
        Node(judge_node, inputs=[f"{prefix}policy_eval_outputs", f"{prefix}reference_eval_outputs", "model_registry", JUDGE, "params:llm"],
             outputs=f"{prefix}judgements", name=f"judge_{prefix}pairwise_node"),
        Node(summarize, inputs=[f"{prefix}judgements", f"{prefix}policy_eval_outputs", f"{prefix}reference_eval_outputs",
                                "alpacaeval_df_gamed", "params:languages", JUDGE, "params:evaluation.alpacaeval"],
             outputs=[summary, f"{prefix}evaluation_metrics" if prefix else "evaluation_metrics"],
             name=f"summarize_{prefix}evaluation_node"),
    ]


ITERATIONS = range(1, MAX_DPO_ITERATIONS + 1)


def iteration_evaluation_template() -> Pipeline:
    """One DPO iteration's policy on the evaluation prompts vs the evaluation's reference: generate,
    judge, summarise."""
    return Pipeline([
        Node(generate_outputs_node, inputs=["policy", "eval_prompts_raw", GEN, "params:llm"], outputs="outputs",
             name="generate_outputs_node"),
        Node(judge_node, inputs=["outputs", "reference_eval_outputs", "model_registry", JUDGE, "params:llm"],
             outputs="judgements", name="judge_outputs_node"),
        Node(summarize_iteration_node, inputs=["judgements", "outputs", "reference_eval_outputs", "params:languages", JUDGE,
                                               "params:stage"],
             outputs="summary", name="summarize_node"),
    ])


def iteration_evaluations() -> list[Pipeline]:
    """The template per DPO iteration, in namespace ``dpo_iter_<i>_evaluation`` (its own: in the
    iteration's namespace, kedro-viz would draw evaluation data flowing into training). A disabled
    iteration's policy is its input: its answers come from the call cache and the curve leaves it out."""
    shared = {d: d for d in ("eval_prompts_raw", "reference_eval_outputs", "model_registry")}
    params = {p: p for p in ("evaluation.generation", "evaluation.judge", "llm", "languages")}
    return [Pipeline(iteration_evaluation_template(), namespace=f"dpo_iter_{i}_evaluation",
                     inputs={**shared, "policy": f"dpo_iter_{i}.policy"}, parameters={**params, "stage": f"dpo_iter_{i}.stage"})
            for i in ITERATIONS]


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            *_pairwise("eval_prompts_raw", "", summarize_node, "evaluation_summary", "alpacaeval"),
            Node(xl_alpacaeval_node, inputs=["eval_prompts_raw", "params:evaluation.xl_alpacaeval", "params:source_language"],
                 outputs=["xl_alpacaeval_prompts", "xl_alpacaeval_build_metrics"], name="build_xl_alpacaeval_node"),
            *_pairwise("xl_alpacaeval_prompts", "xl_", summarize_xl_node, "xl_alpacaeval_summary", "xl_alpacaeval"),
            *_pairwise("m_alpacaeval_prompts", "m_", summarize_m_node, "m_alpacaeval_summary", "m_alpacaeval"),
            forked_node(mt_bench_node, inputs=["aligned_policy", "mt_bench_prompts_raw", "mt_bench_reference_answers_raw",
                                        "mt_bench_judge_prompts", "model_registry", GEN, JUDGE, "params:llm",
                                        "params:languages", "params:evaluation.mt_bench"],
                 outputs=["mt_bench_grades", "mt_bench_summary", "mt_bench_metrics"], name="mt_bench_node"),
            forked_node(rubric_node, inputs=["policy_eval_outputs", "model_registry", JUDGE, "params:llm"],
                 outputs=["rubric_summary", "rubric_metrics"], name="rubric_node"),
            Node(nlu_node, inputs=["aligned_policy", "nlu_mc_raw", "params:evaluation.nlu"],
                 outputs=["nlu_results", "nlu_metrics"], name="lm_eval_nlu_node"),
            *iteration_evaluations(),
            Node(iteration_curve_node,
                 inputs=["sft_model"] + [f"dpo_iter_{i}.policy" for i in ITERATIONS] + [f"dpo_iter_{i}_evaluation.summary" for i in ITERATIONS],
                 outputs=["iteration_curve", "iteration_curve_plot"], name="iteration_curve_node"),
            Node(report_node, inputs=["evaluation_summary", "xl_alpacaeval_summary", "m_alpacaeval_summary", "mt_bench_summary",
                                      "rubric_summary", "nlu_results"],
                 outputs=["evaluation_report", "evaluation_report_md"], name="evaluation_report_node"),
        ]
    ) + gold_pipeline()
