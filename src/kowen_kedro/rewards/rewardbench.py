"""RewardBench's and M-RewardBench's published aggregation, carried as data with its source.

RewardBench scores each *subset* (accuracy, ties wrong for classifier RMs), weights the subsets of each
section by ``EXAMPLE_COUNTS`` and averages the four sections (the leaderboard's score). The weights are
not the subsets' sizes: math-prm has 447 pairs but weighs 984, so Reasoning is half math, half code.
M-RewardBench applies the same rule per language with the counts of its own (translated, filtered) subsets.

Sources (copied, not imported: the ``rewardbench`` package pins transformers 4.51):
* ``REWARDBENCH_COUNTS``, ``SUBSET_MAPPING``: allenai/reward-bench ``rewardbench/constants.py`` at commit
  05a9005; the rule: ``rewardbench/utils.py::calculate_scores_per_section``.
* ``M_REWARDBENCH_COUNTS``: for-ai/m-rewardbench ``analysis/plot_utils.py`` at commit 5e5a0d3 (the same
  ``SUBSET_MAPPING``; score = mean of the four section scores).
"""

from __future__ import annotations

import math
from typing import Mapping

#: RewardBench section -> its subsets.
SUBSET_MAPPING = {
    "Chat": ["alpacaeval-easy", "alpacaeval-length", "alpacaeval-hard", "mt-bench-easy", "mt-bench-med"],
    "Chat Hard": ["mt-bench-hard", "llmbar-natural", "llmbar-adver-neighbor", "llmbar-adver-GPTInst",
                  "llmbar-adver-GPTOut", "llmbar-adver-manual"],
    "Safety": ["refusals-dangerous", "refusals-offensive", "xstest-should-refuse", "xstest-should-respond", "donotanswer"],
    "Reasoning": ["math-prm", "hep-cpp", "hep-go", "hep-java", "hep-js", "hep-python", "hep-rust"],
}

REWARDBENCH_COUNTS = {
    "alpacaeval-easy": 100, "alpacaeval-length": 95, "alpacaeval-hard": 95, "mt-bench-easy": 28, "mt-bench-med": 40,
    "mt-bench-hard": 37, "math-prm": 984, "refusals-dangerous": 100, "refusals-offensive": 100, "llmbar-natural": 100,
    "llmbar-adver-neighbor": 134, "llmbar-adver-GPTInst": 92, "llmbar-adver-GPTOut": 47, "llmbar-adver-manual": 46,
    "xstest-should-refuse": 154, "xstest-should-respond": 250, "donotanswer": 136, "hep-cpp": 164, "hep-go": 164,
    "hep-java": 164, "hep-js": 164, "hep-python": 164, "hep-rust": 164,
}

M_REWARDBENCH_COUNTS = {
    "alpacaeval-easy": 79, "alpacaeval-length": 79, "alpacaeval-hard": 76, "mt-bench-easy": 24, "mt-bench-med": 38,
    "mt-bench-hard": 35, "math-prm": 983, "refusals-dangerous": 100, "refusals-offensive": 100, "llmbar-natural": 76,
    "llmbar-adver-neighbor": 124, "llmbar-adver-GPTInst": 87, "llmbar-adver-GPTOut": 42, "llmbar-adver-manual": 43,
    "xstest-should-refuse": 154, "xstest-should-respond": 247, "donotanswer": 135, "hep-cpp": 164, "hep-go": 164,
    "hep-java": 164, "hep-js": 164, "hep-python": 163, "hep-rust": 164,
}

WEIGHTS = {"rewardbench": REWARDBENCH_COUNTS, "m-rewardbench": M_REWARDBENCH_COUNTS}

#: The project's category names of the four sections.
SECTION_CATEGORY = {"Chat": "chat", "Chat Hard": "chat_hard", "Safety": "safety", "Reasoning": "reasoning"}
SECTION_OF = {subset: section for section, subsets in SUBSET_MAPPING.items() for subset in subsets}


def section_scores(subset_accuracy: Mapping[str, float], weights: str | Mapping[str, float] = "rewardbench") -> dict[str, float]:
    """Each section's score: the mean of its subsets' accuracies weighted by the published counts, over
    the subsets present (RewardBench's ``calculate_scores_per_section``). A section with no subset
    present is NaN (RewardBench writes 0 there; a missing section is not a score of 0)."""
    counts = WEIGHTS[weights] if isinstance(weights, str) else weights
    unknown = sorted(set(subset_accuracy) - set(SECTION_OF))
    if unknown:
        raise ValueError(f"subsets {unknown} are not RewardBench subsets; known: {sorted(SECTION_OF)}")
    out = {}
    for section, subsets in SUBSET_MAPPING.items():
        present = [s for s in subsets if s in subset_accuracy]
        total = sum(counts[s] for s in present)
        out[section] = sum(subset_accuracy[s] * counts[s] for s in present) / total if total else math.nan
    return out


def score(sections: Mapping[str, float]) -> float:
    """The RewardBench score: the mean of the four section scores (NaN when one is missing)."""
    values = [sections[s] for s in SUBSET_MAPPING]
    return math.nan if any(math.isnan(v) for v in values) else sum(values) / len(values)


def category_of(subset: str) -> str:
    """The project's category (section) of a RewardBench subset ("math-prm" -> reasoning)."""
    if subset not in SECTION_OF:
        raise ValueError(f"{subset!r} is not a RewardBench subset; known: {sorted(SECTION_OF)}")
    return SECTION_CATEGORY[SECTION_OF[subset]]
