"""One target-language switch: no language is hard-coded outside the world's per-language files and the
recipes, the world speaks every language it has, and language names come from lingua's tables."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import base_params
from kowen_kedro.langid import LANGUAGE_NAMES, language_name

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "kowen_kedro"
#: Where a language may be named: the world's per-language modules; the default's one setting.
ALLOWED = [SRC / "world" / "languages"]
ALLOWED_CONF = {ROOT / "conf" / "base" / "globals.yml"}
#: English is the pivot of the world and the source language of every paper's recipe (``source_language``).
PIVOT = "en"
#: Codes that are also everyday identifiers here ("id" columns, "mt" = machine translation, "pt"
#: tensors, "hi"): not checked.
AMBIGUOUS = {"id", "mt", "pt", "hi"}


def _codes() -> str:
    return "|".join(sorted(c for c in LANGUAGE_NAMES if c != PIVOT and c not in AMBIGUOUS))


def hard_coded_codes(text: str) -> list[str]:
    """Quoted string literals that are a non-English language code (``"ko"``, ``'ja'``) or an id prefix
    made of one (``"ko-"``)."""
    return [m.group(0) for m in re.finditer(rf"""(['"])(?:{_codes()})-?\1""", text)]


def test_the_checker_finds_what_it_must():
    assert hard_coded_codes('x = "ko"\ny = lang == \'ja\'\nz = "ko-" + pid') == ['"ko"', "'ja'", '"ko-"']
    assert hard_coded_codes('x = "kor"\nprint("en")\n"token" "ko_single" "mt" "id"') == []


def test_no_language_code_is_hard_coded_in_the_package():
    found = {}
    for path in SRC.rglob("*.py"):
        if any(a in path.parents for a in ALLOWED):
            continue
        hits = hard_coded_codes(path.read_text(encoding="utf-8"))
        if hits:
            found[str(path.relative_to(ROOT))] = hits
    assert found == {}, f"language codes outside the world's language files: {found}"


def test_the_default_conf_names_the_target_language_once():
    """conf/base: the target language's default is set in globals.yml; everything else reads it."""
    code = re.compile(rf"(?:^|[\s\[,:])({_codes()})(?=$|[\s\],])", re.M)
    found = {}
    for path in (ROOT / "conf" / "base").glob("*.yml"):
        if path in ALLOWED_CONF:
            continue
        body = "\n".join(line.split("#", 1)[0] for line in path.read_text(encoding="utf-8").splitlines())
        hits = code.findall(body)
        if hits:
            found[path.name] = hits
    assert found == {}
    assert re.search(r"^target_language: ko$", (ROOT / "conf/base/globals.yml").read_text(), re.M)


@pytest.mark.parametrize("code,name", [("es", "Spanish"), ("it", "Italian"), ("ko", "Korean"), ("zh", "Chinese"),
                                       ("ja", "Japanese"), ("sw", "Swahili"), ("yo", "Yoruba"), ("mt", "Maltese")])
def test_language_names_of_the_seed_papers(code, name):
    assert language_name(code) == name


def test_an_unknown_code_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match="unknown language code 'xx'.*'ja'"):
        language_name("xx")


def test_extra_languages_add_evaluation_pairs_only(tmp_path):
    """``tiny_world.extra_languages``: the world's preference pairs also in Korean for a Japanese run, the
    same tasks and rejections; the English and Japanese parts unchanged; the RM split trains on the run's
    languages and evaluates on all three."""
    from kowen_kedro.datasets import WorldPartDataset
    from kowen_kedro.pipelines.reward_model.nodes import split_preferences_node
    from kowen_kedro.world.generate import build_world

    plain = build_world(0, target_language="ja")
    world = build_world(0, target_language="ja", extra_languages=("ko",))
    assert {k: v for k, v in world.items() if k != "preference_pairs"} == {k: v for k, v in plain.items() if k != "preference_pairs"}
    pairs = world["preference_pairs"]
    assert [p for p in pairs if p["language"] != "ko"] == plain["preference_pairs"]
    by_id = {p["pair_id"]: p for p in pairs}
    assert len([p for p in pairs if p["language"] == "ko"]) == len(plain["preference_pairs"]) // 2
    assert by_id["pair-0000-ko"]["category"] == by_id["pair-0000-ja"]["category"]

    df = WorldPartDataset("preference_pairs", seed=0, target_language="ja", extra_languages="ko", directory=str(tmp_path)).load()
    assert (tmp_path / "ja+ko" / "seed_0" / "preference_pairs.jsonl").exists() and set(df["language"]) == {"en", "ja", "ko"}
    train, evaluation, _ = split_preferences_node(df, base_params()["reward_model"]["data"], ["en", "ja"])
    assert set(train["language"]) == {"en", "ja"} and set(evaluation["language"]) == {"en", "ja", "ko"}
