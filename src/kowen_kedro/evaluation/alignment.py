"""Do a model's languages meet? Cross-lingual retrieval of parallel sentences, layer by layer.

The mechanism behind the RM-transfer and CLO papers' results is that a multilingual model represents the
same content alike across languages, so that what it learns in English carries to the target language.
This module measures it as the sentence-retrieval literature does (e.g. Artetxe & Schwenk's bitext
retrieval, XTREME's Tatoeba task): every sentence is the mean of its tokens' hidden states at a layer;
each language's vectors are **mean-centred** (the language's own mean subtracted, which removes the
offset that separates the languages as wholes and leaves what separates sentences); for each source
sentence, is its own translation the nearest of the N target sentences by cosine? The top-1 accuracy
is compared with chance, 1/N.

Where the sentences come from templates (the tiny world's), a sentence's nearest rivals differ from it in a
number or a name only, and top-1 asks for those details. **Content retrieval** asks less: is the nearest
target sentence about the same task (of the same family: an addition, a refusal, a lookup)? Its chance is
the probability that two sentences drawn at random share a family (the sum of the squared family shares).

:func:`collapse_ratio` is the RM-transfer paper's Figure-1 statistic on the same vectors (sigma_1 / sum
sigma of each item's L x d matrix); centred, it no longer counts the offset shared by all sentences of a
language, which alone makes it about 0.8 for any model whose states share a large common direction.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def mean_pooled_states(model_path: str, texts: Sequence[str], batch_size: int = 32, max_length: int = 128) -> np.ndarray:
    """``[layers + 1, len(texts), hidden]``: the mean over each text's tokens (padding excluded) of every
    hidden layer's states (0: the embeddings), for an LM or an RM (its transformer body)."""
    import torch

    from kowen_kedro.loading import load_body, load_tokenizer

    tok = load_tokenizer(model_path, padding_side="right")
    body = load_body(model_path)
    out = []
    for start in range(0, len(texts), batch_size):
        enc = tok(list(texts[start:start + batch_size]), return_tensors="pt", padding=True, truncation=True,
                  max_length=max_length).to(body.device)
        with torch.no_grad():
            hidden = body(**enc, output_hidden_states=True).hidden_states
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden[0].dtype)
        pooled = torch.stack([(h * mask).sum(dim=1) / mask.sum(dim=1) for h in hidden])
        out.append(pooled.float().cpu().numpy())
    return np.concatenate(out, axis=1)


def centred(vectors: np.ndarray) -> np.ndarray:
    """``vectors`` minus their mean (one language's sentences: its offset removed)."""
    v = np.asarray(vectors, dtype=np.float64)
    return v - v.mean(axis=0, keepdims=True)


def _similarities(source: np.ndarray, target: np.ndarray, centre: bool) -> np.ndarray:
    s, t = np.asarray(source, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if s.shape != t.shape or s.ndim != 2 or len(s) < 2:
        raise ValueError(f"expected two N x d arrays of the same shape (N >= 2), got {s.shape} and {t.shape}")
    if centre:
        s, t = centred(s), centred(t)
    s = s / np.maximum(np.linalg.norm(s, axis=1, keepdims=True), 1e-12)
    t = t / np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-12)
    return s @ t.T


def retrieval_top1(source: np.ndarray, target: np.ndarray, centre: bool = True) -> float:
    """Share of source sentences whose nearest target sentence by cosine is their own translation (row i
    of ``source`` and of ``target`` are a translation pair); ties count as misses."""
    sim = _similarities(source, target, centre)
    own = np.diag(sim)
    rivals = np.where(np.eye(len(sim), dtype=bool), -np.inf, sim).max(axis=1)
    return float(np.mean(own > rivals))


def content_top1(source: np.ndarray, target: np.ndarray, labels: Sequence[str], centre: bool = True) -> float:
    """Share of source sentences whose nearest target sentence by cosine has their label (task family)."""
    sim = _similarities(source, target, centre)
    labels = np.asarray(labels)
    return float(np.mean(labels[sim.argmax(axis=1)] == labels))


def content_chance(labels: Sequence[str]) -> float:
    """The probability that two sentences drawn at random share a label: the sum of the squared label shares."""
    _, counts = np.unique(np.asarray(labels), return_counts=True)
    return float(((counts / counts.sum()) ** 2).sum())


def collapse_ratio(per_language: Sequence[np.ndarray], centre: bool = True) -> float:
    """Mean over items of sigma_1 / sum(sigma_i) of the L x d matrix of one item's L translations (one array
    per language, row i = item i); ``centre`` first subtracts each language's mean vector."""
    from kowen_kedro.rewards.analysis import singular_value_ratio

    arrays = [centred(a) if centre else np.asarray(a, dtype=np.float64) for a in per_language]
    return float(np.mean([singular_value_ratio(np.stack([a[i] for a in arrays])) for i in range(len(arrays[0]))]))


def alignment(model_path: str, pairs: Sequence[tuple[str, str, str]]) -> dict[str, float]:
    """The alignment figures of a model on ``pairs`` (source sentence, its translation, its task family):

    ``top1.layer_<i>`` (centred retrieval at every layer, 0 = embeddings), ``top1`` (the best layer's),
    ``top1.raw`` (the same layer, not centred), ``best_layer``, ``chance`` (1/N), ``n``; content retrieval
    ``content.layer_<i>``, ``content`` (the last layer's: what the model's upper layers make of a sentence)
    and ``content.chance``; and the collapse ratio at the last layer, centred (``collapse``) and not
    (``collapse.raw``)."""
    if len(pairs) < 2:
        raise ValueError(f"alignment needs at least 2 parallel pairs, got {len(pairs)}")
    states = mean_pooled_states(model_path, [p[0] for p in pairs] + [p[1] for p in pairs])
    n, families = len(pairs), [p[2] for p in pairs]
    source, target = states[:, :n], states[:, n:]
    layers = [retrieval_top1(source[i], target[i]) for i in range(len(states))]
    content = [content_top1(source[i], target[i], families) for i in range(len(states))]
    best = int(np.argmax(layers))
    out = {f"top1.layer_{i}": v for i, v in enumerate(layers)}
    out.update({f"content.layer_{i}": v for i, v in enumerate(content)})
    out.update({"top1": layers[best], "top1.raw": retrieval_top1(source[best], target[best], centre=False),
                "best_layer": float(best), "chance": 1.0 / n, "n": float(n),
                "content": content[-1], "content.chance": content_chance(families),
                "collapse": collapse_ratio([source[-1], target[-1]]),
                "collapse.raw": collapse_ratio([source[-1], target[-1]], centre=False)})
    return out
