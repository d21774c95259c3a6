"""Project pipelines: one folder per stage under ``pipelines/``; ``__default__`` chains them all.

Every node sits in a namespace per stage, its pipeline's (``sft.train_sft_node``,
``preference_alignment.dpo_iter_1.train_dpo_node``) or a stage of its own that a pipeline declares
(:data:`STAGES`: ``prompts.ingest_prompts_node``, the stage translation_qe's work sits between and
data_synthesis's completions wait for). kedro-viz folds each stage into one box to open, and
``kedro run --namespaces sft`` runs one stage. Dataset names are not prefixed: the stages share them
through the catalog.

Every node carries two kinds of tags (kedro-viz filters by them; ``kedro run --tags`` runs them): its
pipeline's name, and the method it belongs to (:func:`method_tag`): ``kowen`` (distilled SFT and
iterative DPO), ``rm_transfer`` (cross-lingual reward models), ``clo`` (cross-lingual optimisation),
``xl_instruct`` (XL-Instruct and XL-AlpacaEval), ``gold`` (the measurement against the world's gold
reward) and ``shared`` (what every method uses: the models, the world's checks, the evaluation suites).
"""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

from kowen_kedro.pipelines.data_synthesis.pipeline import PROMPTS_STAGE

#: Stages a pipeline declares as top-level namespaces of their own, not under the pipeline's name: a
#: stage whose outputs another pipeline works on before the rest of its own pipeline can go on (one box
#: per pipeline would then enclose that other pipeline's nodes, which Kedro reports as an interrupted
#: namespace).
STAGES = frozenset({PROMPTS_STAGE})

#: (tag, words of a node's name that put it there), first match wins
METHODS = (
    ("gold", ("gold_",)),
    ("rm_transfer", ("rm_transfer", "collapse")),
    ("clo", ("cross_lingual", "clo_")),
    ("xl_instruct", ("xl_instruct", "xl_alpacaeval", "_xl_", "seed_passage", "reverse_instruction")),
    ("kowen", ("sft", "dpo_iter", "preference_pairs", "sample_", "score_", "single_turn", "multi_turn",
               "translate_prompts", "iteration_curve", "teacher", "reward_model", "rm_", "decontaminat", "ingest")),
)


def method_tag(node_name: str) -> str:
    """The method a node belongs to, from its (full) name."""
    for tag, words in METHODS:
        if any(w in node_name for w in words):
            return tag
    return "shared"


def tagged(name: str, pipeline: Pipeline) -> Pipeline:
    """``pipeline`` with every node tagged by the pipeline's name and its method (from the node's name
    within its pipeline), in the pipeline's namespace unless it is in one of :data:`STAGES`."""
    nodes = [n.tag([name, method_tag(n.name)]) for n in pipeline.nodes]
    own = [n for n in nodes if (n.namespace or "").split(".")[0] in STAGES]
    staged = Pipeline([n for n in nodes if n not in own], namespace=name, prefix_datasets_with_namespace=False)
    return staged + Pipeline(own)


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines."""
    pipelines = {name: tagged(name, p) for name, p in find_pipelines(raise_errors=True).items()}
    pipelines["__default__"] = sum(pipelines.values())
    return pipelines
