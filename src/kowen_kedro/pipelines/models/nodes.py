"""Nodes: build the built-in tiny models (skipped when current) and resolve model roles to paths/ids."""

from __future__ import annotations

import pandas as pd

from kowen_kedro.runtime import resolve_models
from kowen_kedro.tiny.build import TinyConfig, build_tiny_models


def build_tiny_models_node(
    user_prompts: pd.DataFrame, preference_pairs: pd.DataFrame, seed_passages: pd.DataFrame, params: dict
) -> dict:
    """Build tokenizer, tiny Qwen2 LMs, RM and COMET QE from the shipped text; returns the manifest."""
    params = dict(params)
    out_dir = params.pop("out_dir")
    texts = [t["content"] for conv in user_prompts["conversation"] for t in conv]
    texts += [p[k] for p in preference_pairs.to_dict("records") for k in ("prompt", "chosen", "rejected")]
    texts += list(seed_passages["text"])
    chats = [
        [{"role": "user", "content": p["prompt"]}, {"role": "assistant", "content": p["chosen"]}]
        for p in preference_pairs.to_dict("records")
    ]
    chats += [list(conv[:2]) for conv in user_prompts["conversation"] if len(conv) > 1]
    return build_tiny_models(texts, chats, out_dir, TinyConfig(**params))


def resolve_models_node(tiny_manifest: dict, models: dict) -> dict:
    """Role -> loadable model path or hub id (``tiny:<name>`` resolves to the built tiny model)."""
    return resolve_models(tiny_manifest, models)
