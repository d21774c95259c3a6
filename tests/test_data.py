"""Raw-input validation (file, line, field named), prompt ingest, mixtures."""

import json

import pandas as pd
import pytest
from kedro.io import DatasetError

from kowen_kedro.cli import data_error
from kowen_kedro.data.prompts import build_mixture, ingest_prompts, normalise
from kowen_kedro.data.validation import DataValidationError
from kowen_kedro.datasets import JSONLinesDataset

U = lambda c: {"role": "user", "content": c}  # noqa: E731
A = lambda c: {"role": "assistant", "content": c}  # noqa: E731


def load(path):
    return JSONLinesDataset(str(path)).load()


def test_malformed_line_names_file_and_line(write_jsonl):
    path = write_jsonl("p.jsonl", [{"conversation_id": "a", "conversation": [U("hi")]}, "", "{not json"])
    with pytest.raises(DatasetError) as err:  # kedro wraps load errors; ours is the cause, message kept
        load(path)
    cause = err.value.__cause__
    assert isinstance(cause, DataValidationError) and cause.line == 3
    assert f"{path}, line 3: malformed JSON" in str(err.value)


def _catalog_load(path):
    """Load through a Kedro catalog entry exactly as conf/samples/catalog.yml declares the raw inputs."""
    from kedro.io import DataCatalog

    entry = {"type": "kowen_kedro.datasets.JSONLinesDataset", "filepath": str(path)}
    return DataCatalog.from_config({"user_prompts_raw": entry}).load("user_prompts_raw")


def test_a_byte_order_mark_is_read_as_utf8(tmp_path):
    """Excel, PowerShell and Notepad start UTF-8 files with a BOM: the first line's first key survives."""
    rows = [{"conversation_id": "a", "conversation": [U("안녕하세요")]}, {"conversation_id": "b", "conversation": [U("hi")]}]
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8"))
    df = _catalog_load(path)
    assert list(df["conversation_id"]) == ["a", "b"] and df.attrs["lines"] == [1, 2]
    assert ingest_prompts(df, 100, ["en", "ko"])[0]["prompt"].tolist() == ["안녕하세요", "hi"]


def test_invalid_utf8_names_the_line(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"conversation_id": "a", "conversation": []}\n{"conversation_id": "caf\xe9"}\n')
    with pytest.raises(DatasetError) as err:
        _catalog_load(path)
    cause = data_error(err.value)  # the catalog wraps the dataset's DatasetError once more
    assert isinstance(cause, DataValidationError) and cause.line == 2
    assert f"{path}, line 2: not valid UTF-8 (byte 0xe9 at column 25)" in str(err.value)
    assert "codec" not in str(err.value)


def test_missing_field_names_line_and_field(write_jsonl):
    path = write_jsonl("p.jsonl", [{"conversation_id": "a", "conversation": [U("hi")]}, {"conversation": [U("yo")]}])
    with pytest.raises(DataValidationError) as err:
        ingest_prompts(load(path), 100, ["en", "ko"])
    assert (err.value.line, err.value.field) == (2, "conversation_id")
    assert str(path) in str(err.value)


def test_wrong_role_order_is_reported_with_turn(write_jsonl):
    path = write_jsonl("p.jsonl", [{"conversation_id": "a", "conversation": [U("hi"), U("again")]}])
    with pytest.raises(DataValidationError) as err:
        ingest_prompts(load(path), 100, ["en", "ko"])
    assert err.value.field == "conversation[1].role" and err.value.line == 1


def test_blank_lines_do_not_shift_line_numbers(write_jsonl):
    path = write_jsonl("p.jsonl", ["", {"conversation_id": "a", "conversation": [U("hi")]}, "", {"conversation_id": "b", "conversation": [A("no user first")]}])
    with pytest.raises(DataValidationError) as err:
        ingest_prompts(load(path), 100, ["en", "ko"])
    assert err.value.line == 4


def test_empty_file_is_an_error(write_jsonl):
    path = write_jsonl("p.jsonl", [])
    with pytest.raises(DataValidationError, match="no records"):
        ingest_prompts(load(path), 100, ["en", "ko"])


def test_ingest_drops_duplicates_overlong_and_tags_language(write_jsonl):
    rows = [
        {"conversation_id": "1", "conversation": [U("What is the capital of France?")]},
        {"conversation_id": "2", "conversation": [U("what is the  capital of France")]},  # duplicate once normalised
        {"conversation_id": "3", "conversation": [U("x" * 50)]},  # too long
        {"conversation_id": "4", "conversation": [U("프랑스의 수도는 어디인가요?"), A("파리입니다."), U("왜 그런가요?")]},
    ]
    prompts, report = ingest_prompts(load(write_jsonl("p.jsonl", rows)), max_chars=40, languages=["en", "ko"])
    assert list(prompts["prompt_id"]) == ["1", "4"]
    assert list(prompts["language"]) == ["en", "ko"]
    assert list(prompts["n_turns"]) == [1, 2]
    assert report == {"raw": 4, "redacted": 0, "dropped_redacted": 0, "dropped_too_long": 1, "dropped_duplicate": 1, "dropped_language": 0, "kept": 2}


def test_normalise():
    assert normalise("  Hello   WORLD?! ") == "hello world"


def test_mixture_sizes_by_rows_and_ratio():
    parts = {"a": pd.DataFrame({"x": range(10)}), "b": pd.DataFrame({"x": range(100, 120)})}
    mixed, report = build_mixture(parts, {"a": 3, "b": 0.5}, seed=1)
    assert report == {"a": 3, "b": 10, "total": 13}
    assert (mixed["part"] == "a").sum() == 3 and (mixed["part"] == "b").sum() == 10
    again, _ = build_mixture(parts, {"a": 3, "b": 0.5}, seed=1)
    pd.testing.assert_frame_equal(mixed, again)
    with pytest.raises(ValueError, match="asked for 11 rows"):
        build_mixture(parts, {"a": 11}, seed=0)
    with pytest.raises(ValueError, match="does not exist"):
        build_mixture(parts, {"c": 1}, seed=0)


def test_shipped_sample_data_meets_its_documented_minimums(raw_data):
    prompts = raw_data["user_prompts"]
    first_turns = prompts["conversation"].map(lambda c: c[0]["content"])
    assert (prompts["language"] == "en").sum() >= 60 and (prompts["language"] == "ko").sum() >= 60
    assert (prompts["conversation"].map(len) > 1).sum() >= 5
    assert first_turns.is_unique
    pairs = raw_data["preference_pairs"]
    assert len(pairs) >= 40 and set(pairs["category"]) == {"chat", "chat_hard", "safety", "reasoning"}
    assert len(raw_data["seed_passages"]) >= 20 and len(raw_data["eval_prompts"]) >= 30


def test_lmsys_redacted_rows_are_counted_and_dropped_by_default(write_jsonl):
    rows = [{"conversation_id": "a", "conversation": [U("Write to NAME_1 about the meeting.")], "redacted": True},
            {"conversation_id": "b", "conversation": [U("What is the capital of France?")], "redacted": False},
            {"conversation_id": "c", "conversation": [U("Tell me a joke.")]}]  # no flag: not redacted
    path = write_jsonl("lmsys.jsonl", rows)
    kept, report = ingest_prompts(load(path), 2000, ["en", "ko"])
    assert list(kept["prompt_id"]) == ["b", "c"] and (report["redacted"], report["dropped_redacted"], report["kept"]) == (1, 1, 2)
    kept, report = ingest_prompts(load(path), 2000, ["en", "ko"], drop_redacted=False)
    assert list(kept["prompt_id"]) == ["a", "b", "c"] and report["redacted"] == 1 and "dropped_redacted" not in report
    bad = write_jsonl("bad.jsonl", rows[1:] + [{"conversation_id": "d", "conversation": [U("hi")], "redacted": "yes"}])
    with pytest.raises(DataValidationError) as err:
        ingest_prompts(load(bad), 2000, ["en", "ko"])
    assert (err.value.line, err.value.field) == (3, "redacted")
