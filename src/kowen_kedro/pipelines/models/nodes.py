"""Nodes: build the built-in tiny models (skipped when current) and resolve model roles to paths/ids."""

from __future__ import annotations

from dataclasses import asdict

import pandas as pd

from kowen_kedro.data.parallel import parallel_sentences
from kowen_kedro.data.prompts import as_frame, to_conversations
from kowen_kedro.data.validation import validate_records
from kowen_kedro.groups import TinyModels, TinyWorld
from kowen_kedro.rewards.data import PAIR_COLUMNS, require_columns
from kowen_kedro.runtime import resolve_models
from kowen_kedro.tiny.build import build_tiny_models


def build_tiny_models_node(
    user_prompts: pd.DataFrame,
    preference_pairs: pd.DataFrame,
    seed_passages: pd.DataFrame,
    params: dict,
    languages: list[str],
    raw_input_report: dict | None = None,
    parallel_sentences_raw: pd.DataFrame | None = None,
) -> dict:
    """Build tokenizer, tiny Qwen2 LMs, RM, MT and COMET QE from the raw inputs' text; returns the manifest.

    ``languages``: (source, target) of the run. ``raw_input_report`` only orders the node after input
    validation. ``parallel_sentences_raw`` (one column per language) adds translation pairs for the MT
    and QE models."""
    source, target = languages
    tiny = TinyModels.of(params)
    texts, chats, parallel = build_texts(user_prompts, preference_pairs, seed_passages, source, target, parallel_sentences_raw)
    pretrain = pretraining_text(texts, parallel, tiny, source, target)
    return build_tiny_models(texts, chats, tiny.out_dir, tiny.config(), parallel=parallel, pretrain_texts=pretrain)


def build_texts(user_prompts: pd.DataFrame, preference_pairs: pd.DataFrame, seed_passages: pd.DataFrame, source: str,
                target: str, parallel_sentences_raw: pd.DataFrame | None = None) -> tuple[list[str], list[list[dict]], list[dict]]:
    """What the build trains on: the raw inputs' text (and every parallel sentence, each side a text), the
    chats the teacher is tuned on, and the parallel sentences of the MT and QE models."""
    texts = [t["content"] for conv in user_prompts["conversation"] for t in conv]
    texts += [p[k] for p in preference_pairs.to_dict("records") for k in ("prompt", "chosen", "rejected")]
    texts += list(seed_passages["text"])
    chats = [
        [{"role": "user", "content": p["prompt"]}, {"role": "assistant", "content": p["chosen"]}]
        for p in preference_pairs.to_dict("records")
    ]
    chats += [list(conv[:2]) for conv in user_prompts["conversation"] if len(conv) > 1]
    parallel = parallel_sentences(preference_pairs, user_prompts, source, target)
    if parallel_sentences_raw is not None:
        validate_records(parallel_sentences_raw, {source: str, target: str})
        parallel += parallel_sentences_raw[[source, target]].to_dict("records")
    texts += [p[lang] for p in parallel for lang in (source, target)]
    return texts, chats, parallel


def pretraining_text(texts: list[str], parallel: list[dict], tiny: TinyModels, source: str, target: str) -> list[str] | None:
    """The base model's pre-training text (None: ``texts`` as they are): English-dominant in the share
    ``tiny.pretrain_english_share``, then as many linking documents (:mod:`kowen_kedro.world.linking`: parallel
    and code-switched) as make ``tiny.pretrain_linking_share`` of the whole."""
    from kowen_kedro.langid import detect_languages
    from kowen_kedro.world.linking import linking_documents

    share, linking = tiny.pretrain_english_share, tiny.pretrain_linking_share
    pretrain = None if share is None else english_dominant(texts, share, source, target)
    if not linking:
        return pretrain
    body = pretrain if pretrain is not None else list(texts)
    english = [t for t, lang in zip(body, detect_languages(body, (source, target))) if lang == source]
    n = round(len(body) * linking / (1 - linking))
    return body + linking_documents(parallel, english, source, target, n, seed=tiny.seed)


def english_dominant(texts: list[str], english_share: float, source: str, target: str) -> list[str]:
    """Every ``source``-language (English) document of ``texts`` and as many of the others
    (deterministically, in order) as make it ``english_share`` of the result: the language mix of real
    pre-training corpora."""
    from kowen_kedro.langid import detect_languages

    if not 0.0 < english_share <= 1.0:
        raise ValueError(f"tiny_models.pretrain_english_share must be in (0, 1], not {english_share}")
    languages = detect_languages(texts, (source, target))
    english = [t for t, lang in zip(texts, languages) if lang == source]
    others = [t for t, lang in zip(texts, languages) if lang != source]
    keep = min(len(others), round(len(english) * (1 - english_share) / english_share))
    step = len(others) / keep if keep else 0
    return english + [others[int(i * step)] for i in range(keep)]


def validate_raw_inputs_node(
    user_prompts: pd.DataFrame, preference_pairs: pd.DataFrame, seed_passages: pd.DataFrame, eval_prompts: pd.DataFrame,
    mt_bench_prompts: pd.DataFrame | None = None,
) -> dict:
    """Check every raw input before any model is built or called; errors name file, line and field.

    The tiny-model build depends on this node, and every node that loads a model depends on the
    build (through ``model_registry``), so bad input stops the run before any model is trained or called.
    """
    from kowen_kedro.evaluation.benchmarks import alpacaeval_prompts, two_turn_set

    prompts = to_conversations(as_frame(user_prompts))
    require_columns(preference_pairs, PAIR_COLUMNS)  # bad rows are excluded with counts by reward_model
    validate_records(seed_passages, {"passage_id": str, "text": str})
    eval_frame = alpacaeval_prompts(eval_prompts)  # the raw AlpacaEval file has no id / language
    validate_records(eval_frame, {"id": str, "language": str, "instruction": str})
    report = {
        "user_prompts": len(prompts),
        "preference_pairs": len(preference_pairs),
        "seed_passages": len(seed_passages),
        "eval_prompts": len(eval_frame),
    }
    if mt_bench_prompts is not None:  # graded only after training: check it before any training starts
        report["mt_bench_prompts"] = len(two_turn_set(mt_bench_prompts))
    return report


def resolve_models_node(tiny_manifest: dict, models: dict, tiny_world: dict) -> dict:
    """Role -> loadable model path or hub id (``tiny:<name>`` resolves to the built tiny model,
    ``world:oracle`` to the answer program of the world of ``tiny_world.seed``)."""
    world = TinyWorld.of(tiny_world)
    return resolve_models(tiny_manifest, models, world_seed=world.seed, teacher_faults=asdict(world.teacher_faults))
