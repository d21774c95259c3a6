"""CLO: the loss against hand-computed values, same-batch pairing in every batch the trainer builds,
and attention-only updates."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from kowen_kedro.data.validation import DataValidationError
from kowen_kedro.preference.clo_data import check_pairing, clo_records, complete_pairs, dpo_baseline_records, paired_order, sft_baseline_records
from kowen_kedro.preference.losses import clo_loss


def t(*values):
    return torch.tensor(values, dtype=torch.float64)


def test_clo_loss_hand_computed():
    # r(y_en|x_en) = -10 - -11 = 1, r(y_l|x_en) = -12 - -11 = -1  -> z_en = 0.1 * (1 - -1) = 0.2
    # r(y_l|x_l)   = -8 - -9 = 1,   r(y_en|x_l) = -9 - -9 = 0     -> z_l  = 0.1 * (1 - 0)  = 0.1
    # loss = 0.5 * 2.0 + 0.5 * (log(1 + e^-0.2) + log(1 + e^-0.1)) = 1 + 0.5 * (0.598139 + 0.644397)
    loss = clo_loss(t(-10), t(-12), t(-8), t(-9), t(-11), t(-11), t(-9), t(-9), t(2.0), beta=0.1, lam=0.5)
    assert float(loss) == pytest.approx(1.621268, abs=1e-6)
    assert float(loss) == pytest.approx(1 + 0.5 * (math.log1p(math.exp(-0.2)) + math.log1p(math.exp(-0.1))), abs=1e-12)
    # lam = 1: only the NLL; lam = 0: only the two preference terms
    assert float(clo_loss(t(-10), t(-12), t(-8), t(-9), t(-11), t(-11), t(-9), t(-9), t(2.0), beta=0.1, lam=1.0)) == 2.0
    assert float(clo_loss(t(0), t(0), t(0), t(0), t(0), t(0), t(0), t(0), t(5.0), beta=0.1, lam=0.0)) == pytest.approx(2 * math.log(2))


def test_clo_loss_is_two_standard_dpo_terms_plus_nll_when_split():
    g = torch.Generator().manual_seed(0)
    pi = [-20 * torch.rand(5, generator=g, dtype=torch.float64) for _ in range(4)]
    ref = [-20 * torch.rand(5, generator=g, dtype=torch.float64) for _ in range(4)]
    nll = 3 * torch.rand(5, generator=g, dtype=torch.float64)
    beta, lam = 0.1, 0.5

    def dpo(pc, pr, rc, rr):  # standard DPO (Rafailov et al.), written out independently
        return -torch.log(torch.sigmoid(beta * ((pc - rc) - (pr - rr))))

    en_row = dpo(pi[0], pi[1], ref[0], ref[1])   # prompt x_en: chosen y_en, rejected y_l
    tgt_row = dpo(pi[2], pi[3], ref[2], ref[3])  # prompt x_l: chosen y_l, rejected y_en
    expected = (lam * nll + (1 - lam) * (en_row + tgt_row)).mean()
    assert float(clo_loss(*pi, *ref, nll, beta=beta, lam=lam)) == pytest.approx(float(expected), rel=1e-12)
    with pytest.raises(ValueError, match="nine 1-D tensors of one length"):
        clo_loss(*pi[:3], pi[3][:4], *ref, nll, beta=beta, lam=lam)


def clo_frame(n: int) -> pd.DataFrame:
    return pd.DataFrame({
        "pair_id": [f"p{i}" for i in range(n)],
        "x_en": [f"Question {i}?" for i in range(n)], "y_en": [f"Answer {i}." for i in range(n)],
        "x_l": [f"질문 {i}?" for i in range(n)], "y_l": [f"답변 {i}." for i in range(n)],
    })


def test_clo_rows_pairing_and_baselines():
    rows = clo_records(clo_frame(2))
    assert [(r["is_target"], r["source_index"]) for r in rows] == [(0, 0), (1, 0), (0, 1), (1, 1)]
    assert rows[0]["prompt"][0]["content"] == "Question 0?" and rows[0]["rejected"][0]["content"] == "답변 0."
    assert rows[1]["prompt"][0]["content"] == "질문 0?" and rows[1]["chosen"][0]["content"] == "답변 0."
    assert rows[1]["rejected"][0]["content"] == "Answer 0."
    assert set(dpo_baseline_records(clo_frame(2))[0]) == {"prompt", "chosen", "rejected"}
    assert len(sft_baseline_records(clo_frame(3))) == 6
    order = paired_order(10, seed=3)
    assert sorted(order) == list(range(10)) and all(order[i] + 1 == order[i + 1] and order[i] % 2 == 0 for i in range(0, 10, 2))
    assert order != paired_order(10, seed=4)
    check_pairing([0, 1, 0, 1], [3, 3, 0, 0])
    with pytest.raises(ValueError, match="not made of"):
        check_pairing([0, 1, 1, 0], [3, 3, 0, 0])
    with pytest.raises(ValueError, match="not made of"):
        check_pairing([0, 1, 0, 1], [3, 0, 0, 3])
    # rows 1 (target of example 0) and 4 (English of example 2) were dropped by preprocessing: their partners go too
    kept = complete_pairs([0, 0, 1, 1, 0, 1], [0, 1, 1, 2, 3, 3])
    assert kept == [1, 2, 4, 5]
    check_pairing([[0, 0, 1, 1, 0, 1][i] for i in kept], [[0, 1, 1, 2, 3, 3][i] for i in kept])
    bad = clo_frame(2)
    bad.loc[1, "y_l"] = ""
    bad.attrs["source"] = "data/05_model_input/clo_pairs.jsonl"
    with pytest.raises(DataValidationError, match="clo_pairs.jsonl, line 2, field 'y_l': empty string"):
        clo_records(bad)


def _clo_trainer(tiny_models, tmp_path, **overrides):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from kowen_kedro.preference.clo_trainer import CLOConfig, CLOTrainer
    from kowen_kedro.training.finetuning import freeze_all_but_attention

    path = tiny_models["models"]["base"]
    model = AutoModelForCausalLM.from_pretrained(path)
    freeze_all_but_attention(model)
    args = dict(output_dir=str(tmp_path), per_device_train_batch_size=4, per_device_eval_batch_size=4, max_steps=3,
                learning_rate=5e-3, beta=0.1, clo_lambda=0.5, report_to=[], use_cpu=True, logging_steps=1,
                save_strategy="no", max_length=64, seed=0, bf16=False)
    args.update(overrides)
    return CLOTrainer(model=model, args=CLOConfig(**args), train_dataset=Dataset.from_list(clo_records(clo_frame(7))),
                      processing_class=AutoTokenizer.from_pretrained(path))


def test_every_batch_the_clo_trainer_builds_holds_both_rows_of_its_examples(tiny_models, tmp_path):
    trainer = _clo_trainer(tiny_models, tmp_path)
    loader = trainer.get_train_dataloader()
    epochs = []
    for epoch in range(3):
        loader.set_epoch(epoch)
        seen = []
        for batch in loader:
            check_pairing(batch["is_target"].tolist(), batch["source_index"].tolist())
            seen += batch["source_index"][0::2].tolist()
        assert sorted(seen) == list(range(7))  # every example once per epoch (the last batch holds one pair)
        epochs.append(seen)
    assert epochs[0] != epochs[1]  # re-shuffled per epoch, pairs intact
    with pytest.raises(ValueError, match="even per_device_train_batch_size"):
        _clo_trainer(tiny_models, tmp_path, per_device_train_batch_size=3)


@pytest.mark.parametrize("precompute", [False, True], ids=["ref-model", "precomputed-ref"])
def test_clo_training_moves_only_attention_and_logs_its_terms(precompute, tiny_models, tmp_path):
    trainer = _clo_trainer(tiny_models, tmp_path, precompute_ref_log_probs=precompute)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    changed = {n for n, p in trainer.model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all(".self_attn." in n for n in changed)
    assert {n for n in before if ".self_attn." in n and not n.endswith("o_proj.bias")} >= changed
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logs) == 3 and all("nll_tgt" in h and "rewards/margins_tgt" in h for h in logs)
    # step 1: policy == reference, so both preference terms are log 2 and the loss is 0.5 * nll + 0.5 * 2 log 2
    assert logs[0]["loss"] == pytest.approx(0.5 * logs[0]["nll_tgt"] + math.log(2), rel=1e-3)


@pytest.mark.slow
def test_clo_through_the_launcher_two_zero3_processes_and_the_sft_dpo_baseline(tiny_models, tmp_path):
    """CLO in 2 DeepSpeed ZeRO-3 processes (every batch each rank trains on passes the pairing check in
    the loss), best validation checkpoint kept; the baseline runs SFT then standard DPO on the same data."""
    import json
    from pathlib import Path

    from conftest import base_params, preflight_group, training_group
    from kowen_kedro.groups import CrossLingual
    from kowen_kedro.training.cross_lingual import train_cross_lingual

    base = base_params()["cross_lingual"]
    blocks = {
        "method": "clo", "eval_fraction": 0.25, "seed": 0,
        "clo": {"finetuning": "attention_only", "global_batch_size": 8, "trainer_args": {
            "learning_rate": 5e-4, "num_train_epochs": 2, "per_device_train_batch_size": 4, "per_device_eval_batch_size": 4,
            "max_length": 64, "beta": 0.1, "clo_lambda": 0.5, "eval_strategy": "epoch", "save_strategy": "epoch",
            "load_best_model_at_end": True, "metric_for_best_model": "eval_loss"}},
        "baseline_sft": {"global_batch_size": 4, "trainer_args": {"num_train_epochs": 1, "per_device_train_batch_size": 4, "max_length": 64}},
        "baseline_dpo": {"global_batch_size": 4, "trainer_args": {"num_train_epochs": 1, "per_device_train_batch_size": 4, "max_length": 64,
                                                                 "precompute_ref_log_probs": True}},
    }
    params = {**base, **{k: {**base[k], **v} if isinstance(v, dict) else v for k, v in blocks.items()}}
    training = training_group(launcher="deepspeed", world_size=2, work_dir=str(tmp_path / "runs"), deepspeed={"zero_stage": 3})
    final, metrics = train_cross_lingual(tiny_models["models"]["base"], clo_frame(16), CrossLingual.of(params), training,
                                         preflight_group())
    assert (metrics["train_examples"], metrics["eval_examples"]) == (12, 4)
    assert metrics["global_step"] == 6  # 24 rows / (4 per device x 2 processes x 1 grad-acc) = 3 steps x 2 epochs
    assert metrics["trainable_params"] < metrics["total_params"] and "eval_loss" in metrics
    log = next((tmp_path / "runs" / "cross_lingual").glob("*/train.log")).read_text()
    assert "dist_world_size=2" in log or "world_size=2" in log
    assert (Path(final) / "config.json").exists()

    training = training_group(launcher="python", world_size=1, work_dir=str(tmp_path / "runs-baseline"))
    final, metrics = train_cross_lingual(tiny_models["models"]["base"], clo_frame(16), CrossLingual.of({**params, "method": "sft_dpo"}),
                                         training, preflight_group())
    sft_spec = json.loads(next((tmp_path / "runs-baseline" / "cross_lingual_sft").glob("*/spec.json")).read_text())
    dpo_spec = json.loads(next((tmp_path / "runs-baseline" / "cross_lingual").glob("*/spec.json")).read_text())
    assert sft_spec["model"] == tiny_models["models"]["base"] and dpo_spec["model"].endswith("/final")
    assert dpo_spec["kind"] == "dpo" and dpo_spec["finetuning"] == "full"
    rows = [json.loads(line) for line in Path(dpo_spec["train_file"]).read_text().splitlines()]
    assert len(rows) == 24 and set(rows[0]) == {"prompt", "chosen", "rejected"}  # unpaired standard DPO rows


def test_baseline_in_the_same_run_only_beside_clo_and_passes_through_when_off(monkeypatch):
    """``cross_lingual.baseline_in_same_run``: the SFT+DPO baseline trains beside CLO (stage names of its
    own), not in a ``sft_dpo`` run (that run's policy is the baseline) and not when cross_lingual is off."""
    from conftest import base_params
    from kowen_kedro.groups import CrossLingual
    from kowen_kedro.pipelines.preference_alignment import nodes
    from kowen_kedro.training.cross_lingual import baseline_in_same_run

    base = base_params()["cross_lingual"]
    assert baseline_in_same_run(CrossLingual.of({**base, "method": "clo", "baseline_in_same_run": True}))
    assert not baseline_in_same_run(CrossLingual.of({**base, "method": "clo", "baseline_in_same_run": False}))
    assert not baseline_in_same_run(CrossLingual.of({**base, "method": "sft_dpo", "baseline_in_same_run": True}))
    assert not baseline_in_same_run(CrossLingual.of({**base, "enabled": False, "method": "clo", "baseline_in_same_run": True}))
    calls = []
    monkeypatch.setattr(nodes, "train_baseline_sft",
                        lambda init, pairs, params, training, preflight, stage: calls.append(("sft", init, stage)) or ("sft_out", {}))
    monkeypatch.setattr(nodes, "train_baseline_dpo",
                        lambda init, pairs, params, training, preflight, stage: calls.append(("dpo", init, stage)) or ("out", {"loss": 1.0}))
    params, launch = {**base, "method": "clo", "baseline_in_same_run": True}, (base_params()["training"], base_params()["preflight"])
    sft_model = nodes.train_cross_lingual_baseline_sft_node("sft", pd.DataFrame(), params, *launch)
    assert nodes.train_cross_lingual_baseline_node(sft_model, pd.DataFrame(), params, *launch) == ("out", {"loss": {"value": 1.0, "step": 0}})
    # two nodes, two launches: the DPO step starts from the SFT step's model (a dataset of the catalog)
    assert calls == [("sft", "sft", "cross_lingual_baseline"), ("dpo", "sft_out", "cross_lingual_baseline")]
    off = {**params, "method": "sft_dpo"}
    assert nodes.train_cross_lingual_baseline_sft_node("sft", pd.DataFrame(), off, *launch) == "sft"
    path, metrics = nodes.train_cross_lingual_baseline_node("sft", pd.DataFrame(), off, *launch)
    assert path == "sft" and metrics["enabled"]["value"] == 0 and len(calls) == 2


def test_the_sft_method_and_train_fraction_choose_what_trains(monkeypatch):
    """``method: sft`` is the baseline's SFT step alone; ``train_fraction`` keeps that share of the
    training examples (the held-out ones stay held out); a share outside (0, 1] is refused."""
    import kowen_kedro.training.cross_lingual as cl

    seen = []
    monkeypatch.setattr(cl, "train_stage", lambda kind, stage, model, records, cfg, training, eval_records=None, preflight_cfg=None:
                        seen.append((kind, stage, len(records), len(eval_records or []))) or {"final_dir": stage, "metrics": {}})
    from conftest import base_params, preflight_group, training_group
    from kowen_kedro.groups import CrossLingual

    base = {**base_params()["cross_lingual"], "eval_fraction": 0.25, "seed": 0}
    final, metrics = cl.train_cross_lingual("sft", clo_frame(16), CrossLingual.of({**base, "method": "sft"}), training_group(), preflight_group())
    assert (final, seen) == ("cross_lingual_sft", [("sft", "cross_lingual_sft", 24, 0)])  # 12 examples x (en, target) rows
    assert (metrics["train_examples"], metrics["eval_examples"]) == (12, 4)
    seen.clear()
    half = CrossLingual.of({**base, "method": "clo", "train_fraction": 0.5})
    _, metrics = cl.train_cross_lingual("sft", clo_frame(16), half, training_group(), preflight_group())
    assert seen == [("clo", "cross_lingual", 12, 8)] and metrics["train_examples"] == 6  # half of 12; 4 held out, 2 rows each
    with pytest.raises(ValueError, match="train_fraction"):
        cl.train_cross_lingual("sft", clo_frame(16), CrossLingual.of({**base, "train_fraction": 0.0}), training_group(), preflight_group())
