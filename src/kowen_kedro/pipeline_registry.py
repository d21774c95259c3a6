"""Project pipelines: one folder per stage under ``pipelines/``; ``__default__`` chains them all.

Every node carries two kinds of tags (kedro-viz filters by them; ``kedro run --tags`` runs them): its
pipeline's name, and the method it belongs to (:func:`method_tag`): ``kowen`` (distilled SFT and
iterative DPO), ``rm_transfer`` (cross-lingual reward models), ``clo`` (cross-lingual optimisation),
``xl_instruct`` (XL-Instruct and XL-AlpacaEval), ``gold`` (the measurement against the world's gold
reward) and ``shared`` (what every method uses: the models, the world's checks, the evaluation suites).
"""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

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
    """``pipeline`` with every node tagged by the pipeline's name and its method."""
    return Pipeline([n.tag([name, method_tag(n.name)]) for n in pipeline.nodes])


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines."""
    pipelines = {name: tagged(name, p) for name, p in find_pipelines(raise_errors=True).items()}
    pipelines["__default__"] = sum(pipelines.values())
    return pipelines
