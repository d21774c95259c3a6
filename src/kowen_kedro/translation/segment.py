"""Sentence segmentation that keeps formatting: split, translate the sentences, put them back.

A text becomes a list of :class:`Segment`; ``"".join(s.text for s in segments) == text`` always holds.
Fenced code blocks, blank lines, blockquote markers (``> ``), list markers, heading marks, table pipes,
cell padding and alignment rows, and inter-sentence whitespace are non-translatable segments, so they
survive byte for byte; a table is translated cell by cell. The default splitter is pysbd's (rule-based,
offline, knows "Dr. Kim" and "e.g. for"); :func:`sat_splitter` (Segment Any Text, wtpsplit) replaces it
where its model is available; :func:`split_sentences` is the dependency-free fallback.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
import logging
from typing import Callable, Sequence

logger = logging.getLogger(__name__)

Splitter = Callable[[str], list[str]]

_FENCE = re.compile(r"(^```.*?^```[^\n]*$)", re.M | re.S)
_MARKER = re.compile(r"^(\s*(?:[-*+]|\d+[.)]|#{1,6})\s+)")
_QUOTE = re.compile(r"^(\s*(?:>[ \t]?)+)")
_TABLE_ROW = re.compile(r"^\s*\|.*\|\s*$")
_CELL_SPLIT = re.compile(r"(?<!\\)(\|)")  # an escaped \| stays inside its cell
_ALIGN_CELL = re.compile(r"^\s*:?-+:?\s*$")
_SENT_END = re.compile(r"(?<=[.!?。？！])(\s+)")
# A period after one of these does not end a sentence (the rule-based fallback; pysbd knows more).
ABBREVIATIONS = frozenset(
    "dr mr mrs ms prof sr jr st mt vs etc e.g i.e cf approx dept est fig no vol p pp al u.s a.m p.m".split()
)


@dataclass(frozen=True)
class Segment:
    text: str
    translate: bool


def split_sentences(line: str) -> list[str]:
    """Sentences and the whitespace between them, in order (rule-based; no split after an abbreviation)."""
    parts = [p for p in _SENT_END.split(line) if p]
    out: list[str] = []
    for part in parts:
        # merge "Dr." + " " + "Kim ..." back: a whitespace part after an abbreviation is not a boundary
        if len(out) >= 2 and out[-1].isspace() and _ends_with_abbreviation(out[-2]):
            space = out.pop()
            out[-1] += space + part
        else:
            out.append(part)
    return out


def _ends_with_abbreviation(text: str) -> bool:
    word = text.rsplit(None, 1)[-1] if text.strip() else ""
    return word.endswith(".") and word[:-1].lower().lstrip("(\"'") in ABBREVIATIONS


def pysbd_splitter(language: str = "en") -> Splitter:
    """pysbd's rule-based segmenter (Golden Rules tested; abbreviations, numbers, initials), text kept
    as is (``clean=False``). It has no Korean rules; its English ones split Korean sentences (다. 요.)
    correctly and keep English abbreviations inside Korean text."""
    import pysbd

    seg = pysbd.Segmenter(language=language, clean=False)
    return lambda line: list(seg.segment(line)) if line.strip() else [line]




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
            quote = _QUOTE.match(body)
            if quote:
                out.append(Segment(quote.group(1), False))
                body = body[quote.end():]
            if _TABLE_ROW.match(body):
                out += _table_row(body, splitter)
                if ending:
                    out.append(Segment(ending, False))
                continue
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


def _table_row(row: str, splitter: Splitter) -> list[Segment]:
    """A markdown table row cell by cell: pipes and padding kept, an alignment row kept whole."""
    parts = _CELL_SPLIT.split(row)
    cells = [p for p in parts if p != "|"]
    if all(_ALIGN_CELL.match(c) or not c.strip() for c in cells) and any(_ALIGN_CELL.match(c) for c in cells):
        return [Segment(row, False)]
    out: list[Segment] = []
    for part in parts:
        if part == "|" or not part.strip():
            if part:
                out.append(Segment(part, False))
            continue
        lead = part[: len(part) - len(part.lstrip())]
        if lead:
            out.append(Segment(lead, False))
        out += [Segment(p, not p.isspace()) for p in _pieces(part[len(lead):], splitter)]  # trailing padding: its own piece
    return out


def translate_preserving_format(
    texts: Sequence[str], translate: Callable[[list[str]], list[str]], splitter: Splitter = split_sentences
) -> list[str]:
    """Translate every sentence of every text in one batched call; formatting stays in place."""
    segmented = [segment(t, splitter) for t in texts]
    sentences = [s.text for segs in segmented for s in segs if s.translate]
    translated = iter(translate(sentences) if sentences else [])
    return ["".join(next(translated) if s.translate else s.text for s in segs) for segs in segmented]
