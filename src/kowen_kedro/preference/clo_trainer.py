"""The CLO trainer: TRL's ``DPOTrainer`` with CLO's batches and loss.

What is reused from TRL: tokenisation of conversational preference rows, the collator (a batch is
``[chosen rows..., rejected rows...]``), the reference model (a frozen copy, prepared for DeepSpeed;
or precomputed reference log-probs with ``precompute_ref_log_probs``; or the adapter-disabled base
with LoRA) and its fused log-prob forward. What is CLO's own:

* **batches** (:class:`PairedSampler`): the English row and the target row of a source example are
  adjacent and never split across batches (per-device batch sizes must be even); every batch is
  checked (:func:`~kowen_kedro.preference.clo_data.check_pairing`);
* **loss** (:func:`~kowen_kedro.preference.losses.clo_loss`): ``lam`` x token-mean NLL of ``y_l | x_l``
  + (1 - ``lam``) x the two DPO terms, with ``lam`` = ``CLOConfig.clo_lambda`` and ``beta`` the DPO beta.

Attention-only training is the launcher's ``finetuning: attention_only``. This module imports TRL at
import time: only the training child imports it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
from trl import DPOConfig, DPOTrainer

from kowen_kedro.preference.clo_data import check_pairing, complete_pairs, paired_order
from kowen_kedro.preference.losses import clo_loss

CLO_KEYS = ("is_target", "source_index")
logger = logging.getLogger(__name__)


def _keep_complete_pairs(dataset, split: str):
    """``dataset`` without the rows whose partner the trainer's preprocessing dropped."""
    if dataset is None:
        return None
    keep = complete_pairs(dataset["is_target"], dataset["source_index"])
    if len(keep) < len(dataset):
        logger.warning("CLO %s: %d of %d rows left without their pair after preprocessing (e.g. over max_length): dropped",
                       split, len(dataset) - len(keep), len(dataset))
        return dataset.select(keep)
    return dataset


@dataclass
class CLOConfig(DPOConfig):
    """``DPOConfig`` + CLO's NLL weight (paper: lambda 0.5, beta 0.1, lr 5e-5, 1 epoch)."""

    clo_lambda: float = field(default=0.5, metadata={"help": "weight of the target-language NLL term"})


class PairedSampler(torch.utils.data.Sampler):
    """Seeded shuffle of (English, target) row pairs, re-shuffled per epoch, pairs kept adjacent."""

    def __init__(self, n_rows: int, seed: int):
        self.n_rows, self.seed, self.epoch = n_rows, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self):
        return iter(paired_order(self.n_rows, self.seed + self.epoch))

    def __len__(self) -> int:
        return self.n_rows


class CLOTrainer(DPOTrainer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.train_dataset = _keep_complete_pairs(self.train_dataset, "train")
        self.eval_dataset = _keep_complete_pairs(self.eval_dataset, "eval")
        for name in ("per_device_train_batch_size", "per_device_eval_batch_size"):
            if getattr(self.args, name) % 2:
                raise ValueError(f"CLO needs an even {name} (an English and a target row per example), "
                                 f"got {getattr(self.args, name)}")
        base_collator = self.data_collator

        def collate(examples):
            out = base_collator(examples)
            for key in CLO_KEYS:
                out[key] = torch.tensor([int(e[key]) for e in examples])
            return out

        self.data_collator = collate

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        self._signature_columns = list(self._signature_columns) + [k for k in CLO_KEYS if k not in self._signature_columns]

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        return PairedSampler(len(dataset), self.args.seed)

    def _get_eval_sampler(self, eval_dataset):
        return torch.utils.data.SequentialSampler(eval_dataset)  # rows are stored pairwise already

    def compute_ref_log_probs(self, model, inputs):
        return super().compute_ref_log_probs(model, {k: v for k, v in inputs.items() if k not in CLO_KEYS})

    def _compute_loss(self, model, inputs, return_outputs):
        mode = "train" if self.model.training else "eval"
        is_target, source_index = inputs["is_target"], inputs["source_index"]
        check_pairing(is_target.tolist(), source_index.tolist())
        completion_mask = inputs["completion_mask"]
        shift_mask = completion_mask[..., 1:]
        labels = inputs["input_ids"].masked_fill(completion_mask == 0, -100)
        outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], labels=labels,
                        use_cache=False, fused_lm_head=True)
        seq_len = shift_mask.size(1)
        per_token = outputs.log_probs[:, -seq_len:] * shift_mask
        logps = per_token.sum(dim=1)
        chosen, rejected = logps.chunk(2, dim=0)
        if self.precompute_ref_logps:
            ref_chosen, ref_rejected = inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]
        else:
            ref_model = self.ref_model if self.ref_model is not None else self.model
            ref_chosen, ref_rejected = self.compute_ref_log_probs(ref_model, inputs)
        # rows alternate English (0::2) / target (1::2); chosen of the English row is y_en | x_en, ...
        en, tgt = slice(0, None, 2), slice(1, None, 2)
        chosen_mask = shift_mask.chunk(2, dim=0)[0]
        nll = -per_token.chunk(2, dim=0)[0].sum(dim=1) / chosen_mask.sum(dim=1).clamp(min=1)
        loss = clo_loss(
            chosen[en], rejected[en], chosen[tgt], rejected[tgt],
            ref_chosen[en], ref_rejected[en], ref_chosen[tgt], ref_rejected[tgt],
            nll[tgt], beta=self.beta, lam=self.args.clo_lambda,
        )
        with torch.no_grad():
            margins = self.beta * ((chosen - ref_chosen) - (rejected - ref_rejected))
            gather = self.accelerator.gather
            self._metrics[mode]["nll_tgt"].append(gather(nll[tgt].detach()).mean().item())
            self._metrics[mode]["rewards/margins_en"].append(gather(margins[en]).mean().item())
            self._metrics[mode]["rewards/margins_tgt"].append(gather(margins[tgt]).mean().item())
            self._metrics[mode]["rewards/accuracies"].append(gather((margins > 0).float()).mean().item())
        if return_outputs:
            return loss, outputs
        return loss

