"""The built-in tiny default: built offline from shipped data, loaded by the real from_pretrained code."""

import math
import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_offline_switches_are_on():
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "DO_NOT_TRACK"):
        assert os.environ.get(key) == "1", key


def test_hub_ids_fail_fast_offline(no_network):
    from transformers import AutoTokenizer

    with pytest.raises(OSError):
        AutoTokenizer.from_pretrained("Qwen/Qwen2.5-0.5B-Instruct")


def test_manifest_and_rebuild_is_skipped(tiny_models, world):
    from conftest import tiny_params
    from kowen_kedro.pipelines.models.nodes import build_tiny_models_node

    models = tiny_models["models"]
    assert set(models) == {"tokenizer", "base", "student", "teacher", "reward_model_init", "qe", "mt"}
    for path in models.values():
        assert Path(path).exists()
    out_dir = str(Path(models["base"]).parent)
    stamp = Path(models["teacher"], "model.safetensors").stat().st_mtime_ns
    again = build_tiny_models_node(world["user_prompts"], world["preference_pairs"], world["seed_passages"], tiny_params(out_dir),
                                   ["en", "ko"], None, world["parallel_sentences"])
    assert again == tiny_models
    assert Path(models["teacher"], "model.safetensors").stat().st_mtime_ns == stamp


def test_tokenizer_chat_template_and_korean(tiny_models):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_models["models"]["teacher"])
    msgs = [{"role": "user", "content": "안녕하세요?"}, {"role": "assistant", "content": "Hello!"}]
    text = tok.apply_chat_template(msgs, tokenize=False)
    assert text == "<|im_start|>user\n안녕하세요?<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    mask = tok.apply_chat_template(msgs, return_dict=True, return_assistant_tokens_mask=True)["assistant_masks"]
    assert 0 < sum(mask) < len(mask)


def test_models_load_and_generate_offline(tiny_models, no_network):
    from transformers import AutoConfig

    from kowen_kedro.llm.backends import SamplingParams, TransformersBackend

    cfg = AutoConfig.from_pretrained(tiny_models["models"]["teacher"])
    assert cfg.model_type == "qwen2" and cfg.hidden_size == 64
    backend = TransformersBackend(tiny_models["models"]["teacher"], batch_size=2)
    outs = backend.generate(
        [[{"role": "user", "content": "What is photosynthesis?"}], [{"role": "user", "content": "김치찌개 끓이는 법"}]],
        SamplingParams(max_new_tokens=12, seed=1), sample_index=0,
    )
    assert len(outs) == 2 and all(o.completion_tokens <= 12 for o in outs)
    assert all(o.finish_reason in ("stop", "length") for o in outs)


def test_reward_model_head_initialisation(tiny_models):
    from transformers import AutoModelForSequenceClassification

    from kowen_kedro.rewards.scoring import RewardScorer

    rm = AutoModelForSequenceClassification.from_pretrained(tiny_models["models"]["reward_model_init"])
    w = rm.score.weight.detach()
    assert w.shape == (1, 64) and rm.score.bias is None
    assert abs(w.std().item() - 1 / math.sqrt(65)) < 0.05  # N(0, 1/sqrt(d_model + 1)), 64 draws
    from kowen_kedro.rewards.heads import score_head_std

    assert score_head_std(64) == 1 / math.sqrt(65)
    scores = RewardScorer(tiny_models["models"]["reward_model_init"], batch_size=2).score(["q", "q"], ["a", "a longer answer"])
    assert len(scores) == 2 and scores[0] != scores[1]


def test_reward_scores_are_cached_batch_by_batch(tiny_models, tmp_path):
    from kowen_kedro.llm.cache import CallCache
    from kowen_kedro.rewards.scoring import RewardScorer

    rm = tiny_models["models"]["reward_model_init"]
    cache = CallCache(tmp_path / "c.sqlite")
    prompts, completions = ["q"] * 5, ["a", "b", "a longer answer", "a", "c"]
    first = RewardScorer(rm, batch_size=2, cache=cache).score(prompts, completions)
    assert len(cache) == 4  # one entry per distinct (prompt, completion)
    again = RewardScorer(rm, batch_size=2, cache=cache)
    assert again.score(prompts, completions) == first and again._rm is None  # nothing re-scored, RM never loaded
    assert first == pytest.approx(RewardScorer(rm, batch_size=2).score(prompts, completions), abs=1e-5)


def test_comet_qe_loads_from_local_checkpoint_and_its_folder_can_move(tiny_models, no_network, tmp_path):
    """The built QE model names its encoder relative to its folder: a moved copy loads, scores the same
    and has the same content identity (the QE cache keys), so two clones share results."""
    import shutil

    from kowen_kedro.model_identity import compute_identity
    from kowen_kedro.translation.qe import CometQE

    ckpt = Path(tiny_models["models"]["qe"])
    assert ckpt.name == "model.ckpt" and (ckpt.parents[1] / "hparams.yaml").exists()
    pairs = (["The cat sleeps.", "Hello"], ["고양이가 잔다.", "안녕"])
    scores = CometQE(str(ckpt), batch_size=2).score(*pairs)
    assert len(scores) == 2 and all(0.0 <= s <= 1.0 for s in scores)
    assert str(ckpt.parents[1]) not in (ckpt.parents[1] / "hparams.yaml").read_text()
    moved = shutil.copytree(ckpt.parents[1], tmp_path / "elsewhere" / "qe")
    assert CometQE(str(moved / "checkpoints" / "model.ckpt"), batch_size=2).score(*pairs) == scores
    assert compute_identity(moved) == compute_identity(ckpt.parents[1])


def test_the_qe_training_batches_are_comets_own(tiny_models, world):
    """The tiny QE model's training prepares every example once and pads each batch itself
    (:class:`PreparedSamples`): for random batches of the default's examples, and of a sentence long enough to be
    cut, the same tensors, dtypes and targets as COMET's ``prepare_sample``."""
    import random

    import torch
    from comet.models import UnifiedMetric

    from kowen_kedro.pipelines.models.nodes import build_texts
    from kowen_kedro.tiny.build import PreparedSamples
    from kowen_kedro.world.gold import qe_examples

    encoder = Path(tiny_models["models"]["qe"]).parents[1] / "encoder"
    metric = UnifiedMetric(encoder_model="XLM-RoBERTa", pretrained_model=str(encoder), input_segments=["mt", "src"],
                           hidden_sizes=[16], word_layer=2, layer_transformation="sparsemax", final_activation="sigmoid",
                           local_files_only=True)
    _, _, parallel = build_texts(world["user_prompts"], world["preference_pairs"], world["seed_passages"], "en", "ko",
                                 world["parallel_sentences"])
    examples = qe_examples(parallel[:120], seed=0)
    examples.append({"src": " ".join(["the cat sleeps"] * 300), "mt": "고양이가 잔다 " * 300, "ref": "고양이가 잔다", "score": 0.5})  # cut at 512
    prepared = PreparedSamples(metric, examples, chunk=7)
    rng = random.Random(0)
    batches = [rng.sample(range(len(examples)), 16) for _ in range(40)] + [[len(examples) - 1, 0, 1], [3]]
    for indices in batches:
        (ours,), target = prepared.batch(indices)
        (comets,), expected = metric.prepare_sample([examples[i] for i in indices], stage="fit")
        assert ours.keys() == comets.keys() and set(target.keys()) == set(expected.keys()) == {"score"}
        for key in comets:
            assert ours[key].dtype == comets[key].dtype and torch.equal(ours[key], comets[key]), (indices, key)
        assert torch.equal(target.score, expected.score)
    assert prepared.rows[-1]["input_ids"].shape[0] == 512  # the long one was cut as COMET cuts it


def test_the_builds_one_training_loop_is_adamw_with_clipping_and_a_cosine():
    """``tiny.build.fit`` against the same steps written out with torch: the same weights, float for float."""
    import math

    import torch

    from kowen_kedro.tiny.build import fit

    def model_and_data():
        torch.manual_seed(0)
        return torch.nn.Linear(4, 1), torch.randn(16, 4), torch.randn(16, 1)

    model, x, y = model_and_data()
    fit(model, lambda step: ((model(x[step % 16:][:4]) - y[step % 16:][:4]) ** 2).mean() * 100, 20, lr=0.05,
        weight_decay=0.0, clip=1.0, cosine=True)
    reference, x, y = model_and_data()
    opt = torch.optim.AdamW(reference.parameters(), lr=0.05, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / 20)))
    for step in range(20):
        loss = ((reference(x[step % 16:][:4]) - y[step % 16:][:4]) ** 2).mean() * 100
        loss.backward()
        torch.nn.utils.clip_grad_norm_(reference.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
    for a, b in zip(model.parameters(), reference.parameters()):
        assert torch.equal(a, b)
    assert not model.training


def _small_build(world, out_dir, **overrides):
    from conftest import tiny_params
    from kowen_kedro.pipelines.models.nodes import build_tiny_models_node

    params = {**tiny_params(out_dir), "pretrain_steps": 3, "teacher_steps": 3, "qe_steps": 4, "mt_steps": 2, **overrides}
    return build_tiny_models_node(world["user_prompts"], world["preference_pairs"], world["seed_passages"], params,
                                  ["en", "ko"], None, world["parallel_sentences"])


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_qe_model_built_beside_the_lms_is_the_one_the_one_process_build_makes(world, tmp_path, monkeypatch, caplog):
    """The QE model trains in a process of its own beside the LMs (here one started before the build, as a run
    starts it), its encoder initialised from the generator state the one-process build has after the reward
    model, which the child works out for itself: a build whose own generator is elsewhere after the reward
    model (as if something drew from it) notices it, builds the QE model in process from the real state, as
    the one-process build does, and both builds are the same bytes, model for model."""
    import logging

    from kowen_kedro.tiny import build

    build.prestart_qe_child()
    prestarted, prestart_log, _ = build._prestarted
    with caplog.at_level(logging.WARNING, logger="kowen_kedro.tiny.build"):
        beside = _small_build(world, tmp_path / "beside")
    assert "built again" not in caplog.text  # the child started where the one-process build would have
    assert build._prestarted is None and prestarted.returncode == 0  # the build took the prestarted child
    assert not prestart_log.exists()
    qe = Path(beside["models"]["qe"]).parents[1]
    assert not list(qe.glob("_*"))  # the child's inputs, state and log are gone once it succeeded

    real = build._rng_state
    monkeypatch.setattr(build, "_rng_state", lambda: [(b + 1) % 256 for b in real()])
    with caplog.at_level(logging.WARNING, logger="kowen_kedro.tiny.build"):
        in_process = _small_build(world, tmp_path / "in_process")
    assert "the QE model is built again, after the reward model" in caplog.text
    for role in ("qe", "base", "teacher", "reward_model_init", "mt"):
        a, b = Path(beside["models"][role]), Path(in_process["models"][role])
        a, b = (a.parents[1], b.parents[1]) if role == "qe" else (a, b)
        assert _files(a) == _files(b), role


@pytest.mark.parametrize("prestarted", [False, True])
def test_a_failed_qe_build_fails_the_build_with_the_end_of_its_log(world, tmp_path, prestarted):
    """The QE child's error reaches the node, with its log kept beside the model for a look (a prestarted
    child's log too, which began elsewhere)."""
    from kowen_kedro.tiny import build

    if prestarted:
        build.prestart_qe_child()
    with pytest.raises(RuntimeError, match=r"tiny QE model's build failed \(exit 1\)(.|\n)*not a multiple of the number of attention heads") as failed:
        _small_build(world, tmp_path / "bad", qe_hidden_size=7)  # 7 is no multiple of the encoder's 2 heads
    assert str(tmp_path / "bad" / "qe" / "_build.log") in str(failed.value)
    assert "not a multiple" in (tmp_path / "bad" / "qe" / "_build.log").read_text()
    assert build._prestarted is None


def test_the_qe_child_ends_when_the_build_that_started_it_dies(tmp_path):
    """The QE child watches a pipe only the build's process holds: when it closes (the process killed,
    ``kill -9`` included), the child ends at once instead of writing into a folder the rerun rebuilds."""
    import time

    from conftest import base_params
    from kowen_kedro.groups import TinyModels
    from kowen_kedro.tiny.build import QEChild

    config = TinyModels.of({**base_params()["tiny_models"], "out_dir": str(tmp_path)}).config()
    child = QEChild(["a b c"] * 10, [{"en": "a b", "ko": "c d"}] * 10, config, tmp_path / "qe")
    time.sleep(1)
    assert child.proc.poll() is None  # importing, then waiting for its generator state
    child.proc.stdin.close()  # what the kernel does to the pipe when the build's process dies
    assert child.proc.wait(timeout=60) == 137


def test_a_qe_child_dead_before_its_state_is_reported_with_its_log(tmp_path):
    """A child that died before it wrote its generator state: the build's wait for that state reports the
    child's exit and log, not a missing file or a broken pipe."""
    from conftest import base_params
    from kowen_kedro.groups import TinyModels
    from kowen_kedro.tiny.build import QEChild

    config = TinyModels.of({**base_params()["tiny_models"], "out_dir": str(tmp_path)}).config()
    child = QEChild(["a b c"] * 10, [{"en": "a b", "ko": "c d"}] * 10, config, tmp_path / "qe")
    child.proc.kill()
    child.proc.wait(timeout=60)
    with pytest.raises(RuntimeError, match=r"the tiny QE model's build failed \(exit -9\); the end of .*_build\.log"):
        child.started_from(list(range(8)))
    child.stop()  # and again, as the build's cleanup does


def test_a_run_prestarts_the_qe_child_only_where_it_builds_the_tiny_models(tmp_path, monkeypatch):
    """TinyBuildHook starts the QE child as the run begins where the run's pipeline builds the tiny models and
    none are built in ``tiny_models.out_dir``; a run that finds them built, or does not build, starts none and
    ends one the command started. A prestarted child no build takes is ended, its log removed."""
    from types import SimpleNamespace

    from kowen_kedro.hooks import TinyBuildHook
    from kowen_kedro.pipelines.models.nodes import build_tiny_models_node, resolve_models_node
    from kowen_kedro.tiny import build

    calls = []
    monkeypatch.setattr(build, "prestart_qe_child", lambda: calls.append("start"))
    monkeypatch.setattr(build, "discard_prestarted_qe_child", lambda: calls.append("end"))
    catalog = SimpleNamespace(load=lambda name: {"params:tiny_models": {"out_dir": str(tmp_path / "tiny")}}[name])

    def run(*funcs):
        calls.clear()
        TinyBuildHook().before_pipeline_run(SimpleNamespace(nodes=[SimpleNamespace(func=f) for f in funcs]), catalog)
        return calls

    assert run(build_tiny_models_node, resolve_models_node) == ["start"]
    assert run(resolve_models_node) == ["end"]  # one the command started, for a run that does not build
    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny" / build.MANIFEST).write_text("{}")
    assert run(build_tiny_models_node, resolve_models_node) == ["end"]

    monkeypatch.undo()
    build.prestart_qe_child()
    proc, log, _ = build._prestarted
    build.discard_prestarted_qe_child()
    assert proc.returncode is not None and not log.exists() and build._prestarted is None


def test_a_build_takes_no_qe_child_prestarted_in_another_environment(tmp_path, monkeypatch):
    """A prestarted QE child inherited the environment of its moment (the float pins among it): a build in
    another one ends it and starts its own."""
    from conftest import base_params
    from kowen_kedro.groups import TinyModels
    from kowen_kedro.tiny import build

    build.prestart_qe_child()
    prestarted, log, _ = build._prestarted
    monkeypatch.setenv("KOWEN_THREADS", "2")
    config = TinyModels.of({**base_params()["tiny_models"], "out_dir": str(tmp_path)}).config()
    child = build.QEChild(["a b c"] * 10, [{"en": "a b", "ko": "c d"}] * 10, config, tmp_path / "qe")
    try:
        assert child.proc is not prestarted and child.log == tmp_path / "qe" / "_build.log"
        assert prestarted.poll() is not None and not log.exists() and build._prestarted is None
    finally:
        child.stop()
