"""Preference losses written here because TRL has no equivalent: the CLO objective.

CLO (cross-lingual optimisation). For one source example with an English prompt ``x_en`` / response
``y_en`` and their target-language translations ``x_l`` / ``y_l``:

    r(y | x)  = log pi_theta(y | x) - log pi_ref(y | x)                       (summed response log-probs)
    z_en      = beta * (r(y_en | x_en) - r(y_l | x_en))     English prompt: answer in English, not in l
    z_l       = beta * (r(y_l | x_l)  - r(y_en | x_l))      target prompt: answer in l, not in English
    loss      = lam * NLL(y_l | x_l) + (1 - lam) * (-log sigmoid(z_en) - log sigmoid(z_l))

averaged over the batch. Each bracketed preference term is exactly a standard DPO (sigmoid) loss on
one row; CLO's point is that both rows of the same source example are in the same batch, plus the
target-language NLL that keeps the model fluent in l.
"""

from __future__ import annotations


def dpo_sigmoid_loss(pi_chosen, pi_rejected, ref_chosen, ref_rejected, beta: float):
    """Per-example standard DPO loss ``-log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r)))``."""
    import torch.nn.functional as F

    return -F.logsigmoid(beta * ((pi_chosen - ref_chosen) - (pi_rejected - ref_rejected)))


def clo_loss(
    pi_en_given_en,
    pi_tgt_given_en,
    pi_tgt_given_tgt,
    pi_en_given_tgt,
    ref_en_given_en,
    ref_tgt_given_en,
    ref_tgt_given_tgt,
    ref_en_given_tgt,
    nll_tgt,
    beta: float = 0.1,
    lam: float = 0.5,
):
    """The CLO loss, batch mean (a scalar tensor).

    Args:
        pi_*, ref_*: 1-D tensors (one entry per source example) of summed response log-probs under the
            policy / reference; ``a_given_b`` = response in language a, prompt in language b.
        nll_tgt: 1-D tensor, per-example NLL of the target response given the target prompt.
        beta: DPO temperature (CLO: 0.1).
        lam: weight of the NLL term (CLO: 0.5).

    Raises:
        ValueError: tensors of different shapes, or not 1-D.
    """
    tensors = (pi_en_given_en, pi_tgt_given_en, pi_tgt_given_tgt, pi_en_given_tgt,
               ref_en_given_en, ref_tgt_given_en, ref_tgt_given_tgt, ref_en_given_tgt, nll_tgt)
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) != 1 or len(next(iter(shapes))) != 1:
        raise ValueError(f"clo_loss needs nine 1-D tensors of one length, got shapes {[tuple(t.shape) for t in tensors]}")
    pref_en = dpo_sigmoid_loss(pi_en_given_en, pi_tgt_given_en, ref_en_given_en, ref_tgt_given_en, beta)
    pref_tgt = dpo_sigmoid_loss(pi_tgt_given_tgt, pi_en_given_tgt, ref_tgt_given_tgt, ref_en_given_tgt, beta)
    return (lam * nll_tgt + (1.0 - lam) * (pref_en + pref_tgt)).mean()
