"""Representation analysis of reward models (RM-transfer paper, Figure 1).

For the same content written in L languages, stack each text's last hidden state (at its last
non-pad token) into an L x d matrix M and compute f = sigma_1 / sum_i sigma_i over M's singular
values. f near 1 means the languages collapse onto one direction (language-agnostic
representations); f = 1/L when they are orthogonal with equal norms.

Centred (each language's mean state subtracted first, as :mod:`kowen_kedro.evaluation.alignment` centres
its retrieval), f no longer counts the direction that all states of a model share: raw, that direction
alone puts f near 1 for a model whose languages do not meet at all.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def singular_value_ratio(matrix: np.ndarray) -> float:
    """sigma_1 / sum(sigma_i) of an L x d matrix (L >= 1); 0-matrices are an error."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] < 1:
        raise ValueError(f"expected an L x d matrix, got shape {m.shape}")
    s = np.linalg.svd(m, compute_uv=False)
    total = float(s.sum())
    if total == 0.0:
        raise ValueError("all singular values are zero")
    return float(s[0] / total)


def last_token_states(model_path: str, texts: Sequence[str], batch_size: int = 16, max_length: int = 512) -> np.ndarray:
    """Last-layer hidden state at the last non-pad token of each text (works for LMs and RMs)."""
    import torch

    from kowen_kedro.loading import load_body, load_tokenizer

    tok = load_tokenizer(model_path, padding_side="right")
    body = load_body(model_path)  # the transformer body, with or without a head
    out = []
    for start in range(0, len(texts), batch_size):
        enc = tok(list(texts[start : start + batch_size]), return_tensors="pt", padding=True, truncation=True, max_length=max_length)
        enc = enc.to(body.device)
        with torch.no_grad():
            hidden = body(**enc).last_hidden_state
        last = enc["attention_mask"].sum(dim=1) - 1
        out.append(hidden[torch.arange(hidden.shape[0], device=hidden.device), last].float().cpu().numpy())
    return np.concatenate(out)


def collapse_score(model_path: str, parallel: Sequence[dict[str, str]], languages: Sequence[str],
                   centre: bool = False) -> tuple[float, list[float]]:
    """Mean f over the parallel items (each ``{lang: text}`` with every language present); ``centre``: each
    language's mean state subtracted first."""
    return collapse_scores(model_path, parallel, languages)[1 if centre else 0]


def collapse_scores(model_path: str, parallel: Sequence[dict[str, str]],
                    languages: Sequence[str]) -> tuple[tuple[float, list[float]], tuple[float, list[float]]]:
    """(raw, centred) ``(mean f, f per item)`` from one pass over the model."""
    items = [p for p in parallel if all(lang in p for lang in languages)]
    if not items:
        raise ValueError(f"no parallel item has all of {list(languages)}")
    flat = [p[lang] for p in items for lang in languages]
    states = last_token_states(model_path, flat).astype(np.float64).reshape(len(items), len(languages), -1)
    out = []
    for s in (states, states - states.mean(axis=0, keepdims=True)):
        fs = [singular_value_ratio(s[i]) for i in range(len(items))]
        out.append((float(np.mean(fs)), fs))
    return out[0], out[1]
