"""Cross-lingual alignment: retrieval of parallel sentences, centring, the collapse ratio, the pooled states a
model gives, and the world's held-out parallel set they are measured on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kowen_kedro.evaluation.alignment import collapse_ratio, content_chance, content_top1, retrieval_top1

ROOT = Path(__file__).resolve().parents[1]

SOURCE = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
OFFSET = np.array([10.0, 10.0])  # the target language's own direction, shared by all its sentences


def test_retrieval_counts_own_translations_nearest_and_centring_removes_the_languages_offset():
    """By hand: uncentred, the offset makes every target point the same way: sentence 1's nearest target is
    sentence 2's (cos 10/13.45 = 0.7435 > 11/14.87 = 0.7397), so 2 of 3 are found; centred, each language's
    mean removed, the targets are the sources again: 3 of 3."""
    target = SOURCE + OFFSET
    assert retrieval_top1(SOURCE, target, centre=False) == pytest.approx(2 / 3)
    assert retrieval_top1(SOURCE, target) == 1.0
    assert retrieval_top1(SOURCE, target[[1, 0, 2]]) == pytest.approx(1 / 3)  # translations swapped: only row 2 is right


def test_content_retrieval_asks_for_the_family_only():
    """Sentence 1's nearest target is sentence 2's (above): a miss for top-1, a hit where both are of one family."""
    target = SOURCE + OFFSET
    assert content_top1(SOURCE, target, ["add", "weekday", "weekday"], centre=False) == 1.0
    assert content_top1(SOURCE, target, ["add", "lookup", "weekday"], centre=False) == pytest.approx(2 / 3)
    assert content_chance(["add", "add", "weekday", "lookup"]) == pytest.approx(0.25 + 0.0625 + 0.0625)


def test_a_tie_is_a_miss_and_shapes_are_checked():
    assert retrieval_top1(np.array([[1.0, 0.0], [1.0, 0.0]]), np.array([[1.0, 0.0], [1.0, 0.0]]), centre=False) == 0.0
    with pytest.raises(ValueError, match="same shape"):
        retrieval_top1(SOURCE, SOURCE[:2])


def test_collapse_ratio_raw_counts_the_shared_direction_centred_does_not():
    """Item i is (source_i, source_i + offset). Centred, both rows are the same vector: rank 1, f = 1. Raw,
    f = sigma_1 / (sigma_1 + sigma_2) of [[1, 0], [11, 10]] and so on: below 1, computed by numpy's SVD here."""
    target = SOURCE + OFFSET
    raw = np.mean([(lambda s: s[0] / s.sum())(np.linalg.svd(np.stack([a, b]), compute_uv=False)) for a, b in zip(SOURCE, target)])
    assert collapse_ratio([SOURCE, target], centre=False) == pytest.approx(raw)
    assert raw < 0.97 and collapse_ratio([SOURCE, target]) == pytest.approx(1.0)


def test_pooled_states_exclude_padding_and_cover_every_layer(tiny_models):
    """A text's pooled states are the same alone and in a padded batch; one array per layer, the embeddings first."""
    import json
    from pathlib import Path

    from kowen_kedro.evaluation.alignment import alignment, mean_pooled_states

    base = tiny_models["models"]["base"]
    layers = json.loads((Path(base) / "config.json").read_text())["num_hidden_layers"]
    texts = ["2 plus 3 is 5.", "Which day comes 5 days after Saturday? Answer in Korean, please."]
    both = mean_pooled_states(base, texts)
    assert both.shape[:2] == (layers + 1, 2)
    np.testing.assert_allclose(both[:, 0], mean_pooled_states(base, texts[:1])[:, 0], rtol=1e-5, atol=1e-6)
    pairs = [("2 plus 3 is 5.", "2 더하기 3은 5입니다.", "add"), ("4 plus 1 is 5.", "4 더하기 1은 5입니다.", "add"),
             ("Monday comes after Sunday.", "월요일은 일요일 다음입니다.", "weekday")]
    figures = alignment(base, pairs)
    assert {f"top1.layer_{i}" for i in range(layers + 1)} <= set(figures) and figures["n"] == 3
    assert figures["chance"] == pytest.approx(1 / 3) and figures["top1"] == max(figures[f"top1.layer_{i}"] for i in range(layers + 1))
    assert 0 <= figures["collapse"] <= 1 and 0 <= figures["collapse.raw"] <= 1
    assert figures["content.chance"] == pytest.approx((2 / 3) ** 2 + (1 / 3) ** 2) and figures["content"] == figures[f"content.layer_{layers}"]


def test_the_worlds_held_out_parallel_set(world):
    """Every distinct English gold prompt (not code-switched, not rephrased) with its Korean rendering, and the
    gold translations; sorted, so the order of the gold files does not matter."""
    from kowen_kedro.world.gold import parallel_gold

    prompts, translations = world["gold_prompts"].to_dict("records"), world["gold_translations"].to_dict("records")
    pairs = parallel_gold(prompts, translations, "en", "ko", 0)
    assert len(pairs) > 300 and pairs == sorted(pairs) and all(s and t and s != t for s, t, _ in pairs)
    assert ("4 plus 7 is 11.", "4 더하기 7은 11입니다.", "add") in pairs
    assert {(t["source"], t["reference"]) for t in translations} <= {(s, t) for s, t, _ in pairs}
    english = {p["prompt"] for p in prompts if p["language"] == "en" and not p["meta"]["code_switched"] and not p["meta"]["rephrased"]}
    assert english <= {s for s, _, _ in pairs}
    assert {f for _, _, f in pairs} >= {"add", "refuse", "lookup", "weekday"}
    assert parallel_gold(prompts[::-1], translations[::-1], "en", "ko", 0) == pairs


def _transfer_module():
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import transfer

    return transfer


def test_the_transfer_tables_pair_the_linking_share_by_seed():
    """`make transfer`'s gain row: each figure's change with linking text, seed by seed, as mean and SE over
    the seeds (hand-computed); a verification kind the Korean RM does not learn is marked not claimed."""
    import statistics

    transfer = _transfer_module()
    name = "rm_transfer_source.accuracy.ko.unsafe.vs_rm_transfer_target"

    def run(seed, share, content, unsafe):
        m = {"base.alignment.content": content, "base.alignment.content.chance": 0.12, name: unsafe, f"{name}.se": 0.1}
        return {"seed": seed, "linking_share": share, "metrics": m,
                "transfer": [{"claim": "the English RM transfers: unsafe (English RM - target RM, on ko)", "measured": unsafe,
                              "se": 0.1, "held": unsafe >= -0.2}]}

    rows = [run(0, 0.0, 0.30, -0.5), run(0, 0.4, 0.40, -0.1), run(1, 0.0, 0.50, 0.0), run(1, 0.4, 0.70, 0.0)]
    gain = transfer.gains(rows)[-1].split(" | ")
    content_diffs, unsafe_diffs = [0.1, 0.2], [0.4, 0.0]
    se = lambda d: statistics.stdev(d) / 2 ** 0.5  # noqa: E731
    assert gain[0] == "| 0.4" and gain[1] == "2"
    assert gain[2] == f"+0.150 ({se(content_diffs):.3f})" and gain[5] == f"+0.200 ({se(unsafe_diffs):.3f})"
    assert gain[3] == gain[4] == "-"  # figures no run has
    table = transfer.table(rows)
    assert table[2].startswith("| 0 | 0 | 0.300 (0.120) | - | - | -0.500 (0.100) |")
    claims = transfer.claims(rows)
    assert claims[3] == ("| the English RM transfers: unsafe (English RM - target RM, on ko) | -0.500 (0.100) **not held** | "
                         "+0.000 (0.100) held | -0.100 (0.100) held | +0.000 (0.100) held |")


def test_docs_show_the_last_transfer_runs():
    """docs/alignment.md's transfer block is the one `make transfer` writes from docs/transfer.json, over
    seeds 0, 1, 2 and 11 with and without linking text."""
    import json

    transfer = _transfer_module()
    from tables import shown_table

    rows = json.loads((ROOT / "docs" / "transfer.json").read_text())
    assert {(r["seed"], r["linking_share"]) for r in rows} == {(s, x) for s in (0, 1, 2, 11) for x in (0.0, 0.4)}
    assert shown_table(ROOT / "docs" / "alignment.md", "transfer") == transfer.block(rows)
