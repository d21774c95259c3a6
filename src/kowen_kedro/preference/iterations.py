"""The iterations of on-policy DPO, named in one place: the pipelines build one namespaced copy per
iteration, and the gold measurement, the claims, the curve and the report cover each enabled one."""

from __future__ import annotations

#: Kowen trains up to three iterations (each one's ``dpo_iter_<i>.dpo.enabled`` switches it).
MAX_DPO_ITERATIONS = 3
#: ``dpo_iter_1`` ... ``dpo_iter_<MAX_DPO_ITERATIONS>``, in training order.
DPO_ITERATIONS = tuple(f"dpo_iter_{i}" for i in range(1, MAX_DPO_ITERATIONS + 1))
