"""Parallel texts in the shipped sample data (written as translations of each other)."""

from __future__ import annotations

import pandas as pd


def parallel_sentences(preference_pairs: pd.DataFrame, user_prompts: pd.DataFrame, source: str, target: str) -> list[dict]:
    """``[{source: ..., target: ...}]``: pairs ``<source>-NNN``/``<target>-NNN`` (prompt, chosen, rejected)
    and the multi-turn conversations ``<source>-mt-NNN``/``<target>-mt-NNN`` (turn by turn)."""
    out = []
    pairs = preference_pairs.set_index("pair_id")
    head = f"{source}-"
    for pid in pairs.index:
        other = f"{target}-{pid[len(head):]}"
        if pid.startswith(head) and other in pairs.index:
            for field in ("prompt", "chosen", "rejected"):
                out.append({source: pairs.loc[pid, field], target: pairs.loc[other, field]})
    convs = dict(zip(user_prompts["conversation_id"], user_prompts["conversation"]))
    for cid, conv in convs.items():
        other = convs.get(f"{target}-{cid[len(head):]}") if cid.startswith(f"{source}-mt-") else None
        if other:
            out += [{source: a["content"], target: b["content"]} for a, b in zip(conv, other)]
    return out
