"""AlpacaEval-style win rate."""

from __future__ import annotations

import math
from typing import Sequence


def win_rate(preferences: Sequence[float]) -> tuple[float, float]:
    """Win rate and its standard error, in percent.

    Args:
        preferences: per-item preference for the model in [0, 1] (1 = model wins, 0.5 = tie).

    Returns:
        ``(100 * mean, 100 * std(ddof=1) / sqrt(n))``; the standard error is NaN for one item.
    """
    prefs = [float(p) for p in preferences]
    if not prefs:
        raise ValueError("win_rate needs at least one preference")
    if any(not 0.0 <= p <= 1.0 for p in prefs):
        raise ValueError("preferences must lie in [0, 1]")
    n = len(prefs)
    mean = sum(prefs) / n
    if n == 1:
        return 100.0 * mean, float("nan")
    var = sum((p - mean) ** 2 for p in prefs) / (n - 1)
    return 100.0 * mean, 100.0 * math.sqrt(var / n)
