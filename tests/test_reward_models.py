"""Reward models: representation analysis, data hygiene, the transfer table, and the score head
surviving save/reload under full, LoRA and 2-process ZeRO-3 training."""

import json

import numpy as np
import pandas as pd
import pytest

from conftest import base_params
from kowen_kedro.data.validation import DataValidationError
from kowen_kedro.groups import GroupError
from kowen_kedro.pipelines.reward_model.nodes import transfer_comparison_node, transfer_training_pairs_node
from kowen_kedro.rewards.analysis import singular_value_ratio
from kowen_kedro.rewards.data import clean_pairs, stratified_split
from kowen_kedro.rewards.metrics import CATEGORIES


def test_singular_value_ratio_known_matrices():
    v = np.array([1.0, 2.0, -1.0, 0.5])
    assert singular_value_ratio(np.stack([v, 3 * v, -2 * v])) == pytest.approx(1.0)  # rank 1
    assert singular_value_ratio(np.eye(4)[:3] * 5.0) == pytest.approx(1 / 3)  # orthogonal, equal norms
    assert singular_value_ratio(np.diag([3.0, 1.0])) == pytest.approx(0.75)
    with pytest.raises(ValueError):
        singular_value_ratio(np.zeros((2, 3)))


def _pairs(rows):
    return pd.DataFrame(rows, columns=["pair_id", "language", "category", "prompt", "chosen", "rejected"])


def test_clean_pairs_excludes_and_counts_each_reason():
    df = _pairs([
        ("a", "en", "chat", "q", "good", "bad"),
        ("b", "en", "chat", "q", "Same answer.", "same answer"),  # identical after normalisation
        ("c", "en", "chat", "q", "", "bad"),                      # empty
        ("d", "en", "coding", "q", "good", "bad"),                # unknown category
        ("e", "ko", "safety", None, "good", "bad"),               # empty prompt
    ])
    clean, report = clean_pairs(df)
    assert list(clean["pair_id"]) == ["a"]
    assert report == {"pairs": 5, "kept": 1, "excluded_empty": 2, "excluded_identical": 1, "excluded_unknown_category": 1}
    with pytest.raises(DataValidationError, match="field 'rejected': required column missing"):
        clean_pairs(df.drop(columns="rejected"))


def test_stratified_split_has_every_cell_in_eval(raw_data):
    train, evaluation = stratified_split(raw_data["preference_pairs"], 0.2, seed=0)
    assert len(train) + len(evaluation) == 48
    cells = evaluation.groupby(["language", "category"]).size()
    assert len(cells) == 8 and (cells == 1).all()  # round(0.2 x 6) = 1 per cell
    again, _ = stratified_split(raw_data["preference_pairs"], 0.2, seed=0)
    pd.testing.assert_frame_equal(train, again)


def test_transfer_training_pairs_are_the_translations_of_the_source_pairs():
    train = _pairs([("en-1", "en", "chat", "q1", "c1", "r1"), ("en-2", "en", "safety", "q2", "c2", "r2"), ("ko-1", "ko", "chat", "질문", "좋음", "나쁨")])
    translated = pd.DataFrame({
        "pair_id": ["en-1-ko", "en-2-ko", "en-9-ko"], "source_pair_id": ["en-1", "en-2", "en-9"], "language": "ko",
        "category": ["chat", "safety", "chat"], "prompt": ["q1k", "q2k", "q9k"], "chosen": ["c1k", "c2k", "c9k"],
        "rejected": ["r1k", "r2k", "r9k"], "qe_score": 0.5,
    })
    rm = base_params()["reward_model"]
    assert rm["data"]["transfer_source"] == "all"
    assert list(transfer_training_pairs_node(train, translated, "source", "en", "ko", rm)["pair_id"]) == ["en-1", "en-2"]
    tgt = transfer_training_pairs_node(train, translated, "target", "en", "ko", rm)
    assert list(tgt["pair_id"]) == ["en-1-ko", "en-2-ko"] and list(tgt["chosen"]) == ["c1k", "c2k"]
    with pytest.raises(ValueError, match="no translated preference pairs in 'zh'"):
        transfer_training_pairs_node(train, translated, "target", "en", "zh", rm)
    # the same content in two languages: en-2 was not translated (a wrong-language answer, or dropped by QE)
    same = {**rm, "data": {**rm["data"], "transfer_source": "translated"}}
    assert list(transfer_training_pairs_node(train, translated.iloc[[0, 2]], "source", "en", "ko", same)["pair_id"]) == ["en-1"]
    assert list(transfer_training_pairs_node(train, translated, "target", "en", "ko", same)["pair_id"]) == ["en-1-ko", "en-2-ko"]
    with pytest.raises(GroupError, match="transfer_source"):
        transfer_training_pairs_node(train, translated, "source", "en", "ko", {**rm, "data": {**rm["data"], "transfer_source": "same"}})


def test_transfer_comparison_table_and_markdown():
    def table(lang_rows, train_language):
        return pd.DataFrame([{"language": l, **dict(zip(CATEGORIES + ["avg"], vals))} for l, vals in lang_rows]).assign(train_language=train_language)

    en = table([("en", [1.0, 0.5, 1.0, 0.5, 0.75]), ("ko", [1.0, 0.0, 1.0, 0.5, 0.625])], "en")
    ko = table([("en", [0.5, 0.5, 1.0, 0.5, 0.625]), ("ko", [1.0, 0.5, 0.5, 0.5, 0.625])], "ko")
    rows, md = transfer_comparison_node(en, ko)
    ko_avg = rows[(rows["eval_language"] == "ko") & (rows["category"] == "avg")].iloc[0]
    assert (ko_avg["rm_en"], ko_avg["rm_ko"], ko_avg["delta"]) == (0.625, 0.625, 0.0)
    en_chat = rows[(rows["eval_language"] == "en") & (rows["category"] == "chat")].iloc[0]
    assert en_chat["delta"] == pytest.approx(0.5)
    assert "| en | trained on en | 100.0 | 50.0 | 100.0 | 50.0 | 75.0 |" in md
    assert "| en | delta | +50.0 | +0.0 | +0.0 | +0.0 | +12.5 |" in md


# ---------------------------------------------------------------- training: the head survives saving

def _rm_data(tmp_path, raw_data):
    from kowen_kedro.rewards.data import to_chat_pairs

    pairs = raw_data["preference_pairs"]
    train, evaluation = tmp_path / "train.jsonl", tmp_path / "eval.jsonl"
    train.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in to_chat_pairs(pairs.iloc[:32])))
    evaluation.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in to_chat_pairs(pairs.iloc[40:48])))
    return str(train), str(evaluation)


def _reload_scores(final_dir, probe):
    from kowen_kedro.rewards.scoring import RewardScorer

    chats = probe["chats"]
    return RewardScorer(final_dir, batch_size=1).score([c[0]["content"] for c in chats], [c[1]["content"] for c in chats])


@pytest.mark.slow
@pytest.mark.parametrize(
    "case",
    [
        pytest.param({"model": "reward_model_init", "finetuning": "full", "world_size": 1, "launcher": "deepspeed"}, id="full-zero3"),
        pytest.param({"model": "base", "finetuning": "lora", "world_size": 1, "launcher": "python"}, id="lora-new-head"),
        pytest.param({"model": "base", "finetuning": "lora", "world_size": 2, "launcher": "deepspeed"}, id="lora-zero3-2proc"),
        pytest.param({"model": "reward_model_init", "finetuning": "full", "world_size": 2, "launcher": "deepspeed"}, id="zero3-2proc"),
    ],
)
def test_saved_reward_model_reloads_with_identical_scores(case, tiny_models, raw_data, tmp_path):
    from kowen_kedro.training.launcher import launch
    from kowen_kedro.training.spec import LaunchSpec, zero_config

    train, evaluation = _rm_data(tmp_path, raw_data)
    spec = LaunchSpec(
        kind="reward", model=tiny_models["models"][case["model"]], train_file=train, eval_file=evaluation,
        output_dir=str(tmp_path / "run"),
        trainer_args={"num_train_epochs": 1, "learning_rate": 5e-3, "per_device_train_batch_size": 4, "max_length": 128},
        global_batch_size=8, finetuning=case["finetuning"],
        lora={"modules_to_save": ["score"]} if case["finetuning"] == "lora" else {},
        deepspeed=zero_config(3) if case["launcher"] == "deepspeed" else None, world_size=case["world_size"],
    )
    record = launch(spec, launcher=case["launcher"])
    probe = record["probe"]
    assert len(probe["rewards"]) == 8 and len(set(np.round(probe["rewards"], 6))) > 1
    assert _reload_scores(record["final_dir"], probe) == pytest.approx(probe["rewards"], abs=1e-4)
    if case["model"] == "base":  # a causal-LM checkpoint: the head was new and got the paper's init
        assert "new score head initialised" in (tmp_path / "run" / "train.log").read_text()
    if case["finetuning"] == "lora":  # rank-8 q/v adapters + the full score head, merged into the saved model
        from transformers import AutoConfig

        cfg = AutoConfig.from_pretrained(record["final_dir"])
        h, layers, head = cfg.hidden_size, cfg.num_hidden_layers, cfg.hidden_size // cfg.num_attention_heads
        assert record["metrics"]["trainable_params"] == layers * 8 * (2 * h + h + cfg.num_key_value_heads * head) + h
        assert (tmp_path / "run" / "adapter" / "adapter_config.json").exists()
