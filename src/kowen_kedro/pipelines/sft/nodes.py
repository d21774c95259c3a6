"""Nodes of sft: TRL SFT (loss on assistant tokens) launched through DeepSpeed.

* :func:`train_sft_node` - the student on the SFT mixture (Kowen);
* :func:`train_xl_instruct_node` - the SFT model fine-tuned on the XL-Instruct rows (English
  instruction + "Answer in <target>", answer in the target language), as XL-Instruct fine-tunes an
  instruction-tuned model (EuroLLM-9B-Instruct) on its rows; ``replay`` mixes in rows of the SFT
  mixture (``replay: 0`` is the paper's rows-only setting).
"""

from __future__ import annotations

import logging
import random

import pandas as pd

from kowen_kedro.data.prompts import select_languages
from kowen_kedro.groups import SFT, Preflight, Training, XLInstruct
from kowen_kedro.runtime import registry_model
from kowen_kedro.training.stages import train_stage

logger = logging.getLogger(__name__)


def train_sft_node(
    sft_dataset: pd.DataFrame, registry: dict, params: dict, training: dict, preflight: dict, source_language: str,
    target_language: str,
) -> str:
    """Fine-tune the student on the SFT mixture (or the languages ``params.languages`` names)."""
    sft = SFT.of(params)
    data = select_languages(sft_dataset, sft.languages, source_language, target_language)
    logger.info("SFT on %d of %d rows (languages: %s)", len(data), len(sft_dataset), sft.languages)
    records = [{"messages": m} for m in data["messages"]]
    model = registry_model(registry, "student")
    return train_stage("sft", "sft", model, records, sft, Training.of(training), preflight_cfg=Preflight.of(preflight))["final_dir"]


def xl_instruct_records(xl_instruct_sft: pd.DataFrame, shuffle_responses: bool = False, seed: int = 0) -> list[dict]:
    """SFT records of the XL-Instruct rows; ``shuffle_responses`` (the ablation) gives every instruction
    another row's answer (a seeded derangement): the same target-language text, no link to the question."""
    messages = [list(m) for m in xl_instruct_sft["messages"]]
    if shuffle_responses and len(messages) > 1:
        order = list(range(len(messages)))
        rng = random.Random(seed)
        while any(i == j for i, j in enumerate(order)):
            rng.shuffle(order)
        answers = [m[-1] for m in messages]
        messages = [m[:-1] + [answers[j]] for m, j in zip(messages, order)]
    return [{"messages": m} for m in messages]


def train_xl_instruct_node(sft_model: str, xl_instruct_sft: pd.DataFrame, sft_dataset: pd.DataFrame, params: dict,
                           training: dict, preflight: dict) -> str:
    """Fine-tune the SFT model on the XL-Instruct rows, plus ``params.replay`` x as many rows of the SFT
    mixture (seeded sample; the same rows whatever the ablation); ``params.enabled: false`` passes the
    SFT model through."""
    xl = XLInstruct.of(params)
    if not xl.enabled:
        return sft_model
    records = xl_instruct_records(xl_instruct_sft, xl.ablation_shuffle_responses, xl.seed)
    n_replay = min(len(sft_dataset), round(xl.replay * len(records)))
    replay = [{"messages": list(m)} for m in sft_dataset["messages"].sample(n=n_replay, random_state=xl.seed)] if n_replay else []
    logger.info("XL-Instruct fine-tuning on %d rows%s, + %d replayed rows of the SFT mixture", len(records),
                " (answers shuffled across instructions: ablation)" if xl.ablation_shuffle_responses else "", len(replay))
    return train_stage("sft", "xl_instruct", sft_model, records + replay, xl, Training.of(training),
                       preflight_cfg=Preflight.of(preflight))["final_dir"]
