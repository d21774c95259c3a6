"""Parallel texts in the shipped sample data (written as translations of each other)."""

from __future__ import annotations

import pandas as pd


def parallel_sentences(preference_pairs: pd.DataFrame, user_prompts: pd.DataFrame) -> list[dict]:
    """``[{"en": ..., "ko": ...}]``: pairs ``en-NNN``/``ko-NNN`` (prompt, chosen, rejected) and the
    multi-turn conversations ``en-mt-NNN``/``ko-mt-NNN`` (turn by turn)."""
    out = []
    pairs = preference_pairs.set_index("pair_id")
    for pid in pairs.index:
        if pid.startswith("en-") and "ko-" + pid[3:] in pairs.index:
            for field in ("prompt", "chosen", "rejected"):
                out.append({"en": pairs.loc[pid, field], "ko": pairs.loc["ko-" + pid[3:], field]})
    convs = dict(zip(user_prompts["conversation_id"], user_prompts["conversation"]))
    for cid, conv in convs.items():
        other = convs.get("ko-" + cid[3:]) if cid.startswith("en-mt-") else None
        if other:
            out += [{"en": a["content"], "ko": b["content"]} for a, b in zip(conv, other)]
    return out
