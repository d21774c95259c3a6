"""Sentence segmentation that keeps formatting: split, translate the sentences, put them back.

A text becomes a list of :class:`Segment`; ``"".join(s.text for s in segments) == text`` always holds.
Fenced code blocks, blank lines, list markers, heading marks and inter-sentence whitespace are
non-translatable segments, so they survive byte for byte. The default splitter is rule-based and
offline; :func:`sat_splitter` (Segment Any Text, wtpsplit) replaces it where its model is available.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
import logging
from typing import Callable, Sequence

logger = logging.getLogger(__name__)

_FENCE = re.compile(r"(^```.*?^```[^\n]*$)", re.M | re.S)
_MARKER = re.compile(r"^(\s*(?:[-*+]|\d+[.)]|#{1,6})\s+)")
_SENT_END = re.compile(r"(?<=[.!?。？！])(\s+)")


@dataclass(frozen=True)
class Segment:
    text: str
    translate: bool


def split_sentences(line: str) -> list[str]:
    """Sentences and the whitespace between them, in order (rule-based)."""
    parts = _SENT_END.split(line)
    return [p for p in parts if p]


Splitter = Callable[[str], list[str]]


def sat_splitter(model: str = "sat-3l-sm") -> Splitter:
    """Segment Any Text (wtpsplit), the XL-Instruct paper's splitter. Needs ``pip install wtpsplit``
    and the model available locally (or hub access); raises ImportError/OSError otherwise."""
    from wtpsplit import SaT

    sat = SaT(model)
    return lambda line: list(sat.split(line))


def _pieces(line: str, splitter: Splitter) -> list[str]:
    """Sentence pieces of ``line`` with the whitespace between them as separate pieces.

    A splitter whose pieces do not rejoin to the exact line (some normalise whitespace) is not
    trusted for that line: the rule-based splitter is used instead, so formatting always survives.
    """
    pieces = splitter(line) if splitter is not split_sentences else split_sentences(line)
    if "".join(pieces) != line:
        logger.debug("splitter changed the text of a line; using the rule-based splitter for it")
        return split_sentences(line)
    out: list[str] = []
    for piece in pieces:
        body = piece.rstrip()
        if body:
            out.append(body)
        if len(body) < len(piece):
            out.append(piece[len(body):])
    return out


def segment(text: str, splitter: Splitter = split_sentences) -> list[Segment]:
    """Translatable sentences and the formatting around them."""
    out: list[Segment] = []
    for block in _FENCE.split(text):
        if not block:
            continue
        if _FENCE.fullmatch(block):
            out.append(Segment(block, False))
            continue
        for line in block.splitlines(keepends=True):
            body = line.rstrip("\r\n")
            ending = line[len(body):]
            marker = _MARKER.match(body)
            if marker:
                out.append(Segment(marker.group(1), False))
                body = body[marker.end():]
            lead = body[: len(body) - len(body.lstrip())]
            if lead:
                out.append(Segment(lead, False))
                body = body[len(lead):]
            for piece in _pieces(body, splitter):
                out.append(Segment(piece, not piece.isspace()))
            if ending:
                out.append(Segment(ending, False))
    return out


def translate_preserving_format(
    texts: Sequence[str], translate: Callable[[list[str]], list[str]], splitter: Splitter = split_sentences
) -> list[str]:
    """Translate every sentence of every text in one batched call; formatting stays in place."""
    segmented = [segment(t, splitter) for t in texts]
    sentences = [s.text for segs in segmented for s in segs if s.translate]
    translated = iter(translate(sentences) if sentences else [])
    return ["".join(next(translated) if s.translate else s.text for s in segs) for segs in segmented]
