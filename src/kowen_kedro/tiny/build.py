"""The built-in tiny default: models the project builds from the text it ships, with no downloads.

What is built (all loadable with the ordinary ``from_pretrained(path)`` code the real models use):

* ``tokenizer`` - byte-level BPE trained on the shipped Korean + English text, ChatML chat template
  (Qwen2.5's format) with ``{% generation %}`` markers so TRL can mask non-assistant tokens.
* ``base`` - a tiny Qwen2-architecture causal LM, briefly pre-trained on plain text (prompts, answers
  and passages as separate documents, no chat format). It plays the *student* (a base model, like
  Qwen2.5-7B in Kowen).
* ``teacher`` - ``base`` further tuned on the shipped chat examples (it answers in chat format).
* ``reward_model`` - ``Qwen2ForSequenceClassification`` on the ``base`` body with a fresh score head
  initialised N(0, 1/sqrt(d_model + 1)) (the RM-transfer paper's initialisation).
* ``mt`` - a tiny M2M100 (``__en__``/``__ko__``) trained on the parallel sentences (seq2seq translator).
* ``qe`` - a real unbabel-comet ``UnifiedMetric`` (inputs: mt, src; CometKiwi's layout) over a tiny
  local XLM-R encoder, stored as ``checkpoints/model.ckpt`` with ``hparams.yaml`` one folder up.

Building is skipped when a manifest with the same build key (config + corpus hash) exists.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Iterable

from kowen_kedro.groups import TinyConfig  # noqa: F401 - the build's configuration (``params:tiny_models``)

logger = logging.getLogger(__name__)

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
PAD_TOKEN, IM_START, IM_END = SPECIAL_TOKENS

# ChatML as Qwen2.5 writes it; the generation markers let TRL compute an assistant-token mask.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}{% generation %}{{- message['content'] + '<|im_end|>' }}{% endgeneration %}{{- '\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

MANIFEST = "manifest.json"
#: The QE child's files in its model folder while it builds: its inputs, the generator state it started from, its log.
QE_INPUTS, QE_STATE, QE_LOG = "_inputs.json", "_rng_state.json", "_build.log"


def build_key(config: TinyConfig, texts: list[str], chats: list[list[dict]], parallel: list[dict] | None = None,
              pretrain_texts: list[str] | None = None) -> str:
    """Hash of everything that determines the built models."""
    payload = json.dumps({"config": asdict(config), "texts": texts, "chats": chats, "parallel": parallel,
                          "pretrain": pretrain_texts, "v": 9}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def built_in(out_dir: str | Path) -> bool:
    """Whether ``out_dir`` (``tiny_models.out_dir``, from the project folder) holds built tiny models (current or
    not: :func:`load_manifest_if_current` tells)."""
    return (Path(out_dir) / MANIFEST).exists()


def load_manifest_if_current(out_dir: str | Path, key: str) -> dict | None:
    """The existing manifest when it was built with ``key`` and all its paths exist, else None."""
    path = Path(out_dir) / MANIFEST
    if not path.exists():
        return None
    manifest = json.loads(path.read_text())
    if manifest.get("build_key") != key:
        return None
    if not all(Path(p).exists() for p in manifest["models"].values()):
        return None
    return manifest


def build_tiny_models(
    texts: list[str], chats: list[list[dict]], out_dir: str | Path, config: TinyConfig, parallel: list[dict] | None = None,
    pretrain_texts: list[str] | None = None,
) -> dict:
    """Build every tiny model under ``out_dir`` (skipped when current) and return the manifest.

    Args:
        texts: raw text (prompts, responses, passages) for tokenizer training (and pre-training, unless
            ``pretrain_texts`` is given: e.g. an English-dominant share of them, as real pre-training is).
        chats: chat conversations (``[{role, content}, ...]``) the teacher is tuned on.
        parallel: ``{source: ..., target: ...}`` sentence pairs the tiny seq2seq MT model is trained on.
        out_dir: folder for the models; paths in the manifest are absolute.
        config: sizes and steps.
    """
    out = Path(out_dir).resolve()
    key = build_key(config, texts, chats, parallel, pretrain_texts)
    current = load_manifest_if_current(out, key)
    if current is not None:
        logger.info("Tiny models in %s are current (build key %s): skipping the build", out, key)
        return current
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    tok_dir = out / "tokenizer"
    qe = QEChild(texts, parallel, config, out / "qe")  # trains on the other core, beside the LMs
    try:
        tokenizer, base = pretrain_base(texts, pretrain_texts, config, tok_dir)
        chat_texts = [tokenizer.apply_chat_template(c, tokenize=False) for c in chats]
        base_dir = save_lm(base, tokenizer, out / "base")
        _train_lm(base, tokenizer, chat_texts, config.teacher_steps, config)
        teacher_dir = save_lm(base, tokenizer, out / "teacher")
        rm_dir = build_reward_model(base_dir, out / "reward_model_init", seed=config.seed)
        if not qe.started_from(_rng_state()):  # something drew from torch's generator since: build it here, as before
            qe.stop()
            qe = None
            shutil.rmtree(out / "qe")
            qe_ckpt = build_tiny_comet_qe(texts, out / "qe", config, parallel=parallel)
        mt_dir = build_tiny_mt(tok_dir, parallel or [], out / "mt", config)
        if qe is not None:
            qe_ckpt = qe.result()
    finally:
        if qe is not None:
            qe.stop()
    manifest = {
        "build_key": key,
        "models": {
            "tokenizer": str(tok_dir),
            "base": str(base_dir),
            "student": str(base_dir),
            "teacher": str(teacher_dir),
            "reward_model_init": str(rm_dir),
            "qe": str(qe_ckpt),
            "mt": str(mt_dir),
        },
        "config": asdict(config),
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2))
    logger.info("Built tiny models in %s", out)
    return manifest


def pretrain_base(texts: list[str], pretrain_texts: list[str] | None, config: TinyConfig, tokenizer_dir: Path):
    """The build's first step, from a fresh torch seed: the tokenizer (trained on ``texts``, saved to
    ``tokenizer_dir``) and the base LM pre-trained on ``pretrain_texts`` (default ``texts``): plain text only,
    a base model, not a chat model. Returns ``(tokenizer, model)``."""
    tokenizer, base = initialise_base(texts, config, tokenizer_dir)
    _train_lm(base, tokenizer, pretrain_texts or texts, config.pretrain_steps, config)
    return tokenizer, base


def initialise_base(texts: list[str], config: TinyConfig, tokenizer_dir: Path):
    """The tokenizer (trained on ``texts``, saved to ``tokenizer_dir``) and the base LM as initialised from a
    fresh torch seed, before any training: ``(tokenizer, model)``."""
    import torch

    from kowen_kedro.floats import deterministic_torch

    deterministic_torch()
    torch.manual_seed(config.seed)
    tokenizer = train_chat_tokenizer(texts, config.vocab_size, tokenizer_dir)
    return tokenizer, build_causal_lm(tokenizer, config)


def _rng_state() -> list[int]:
    import torch

    return torch.get_rng_state().tolist()


def _rng_state_after_rm_init(tokenizer, base, out: Path, config: TinyConfig) -> list[int]:
    """The state torch's global generator will have once the reward model's score head is initialised, taken
    from the freshly initialised ``base``, and the generator left as it was. The LM training draws nothing
    from it (its batches come from a generator of its own, and the tiny LMs have no dropout), so the state
    after the real reward model's build is this one: the QE model's encoder, initialised next in the
    build's order, can start from it in a process of its own, beside the LM training, and be the same bytes
    as when the build ran in one process (:meth:`QEChild.started_from` checks the claim)."""
    import tempfile

    import torch

    before = torch.get_rng_state()
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        build_reward_model(save_lm(base, tokenizer, Path(tmp) / "base"), Path(tmp) / "rm", seed=config.seed)
    after = _rng_state()
    torch.set_rng_state(before)
    return after


def rng_state_at_qe_init(texts: list[str], config: TinyConfig, work_dir: Path) -> list[int]:
    """The state torch's global generator has where the one-process build initialises the QE model's
    encoder, worked out without the build: the base initialised from the same seed and tokenizer
    (:func:`initialise_base`, in a temporary folder under ``work_dir``), then
    :func:`_rng_state_after_rm_init`. The QE child starts from it at once, without waiting for the LMs'
    process; that process checks it against its own generator after the real reward model
    (:meth:`QEChild.started_from`)."""
    import tempfile

    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        tokenizer, base = initialise_base(texts, config, Path(tmp) / "tokenizer")
        return _rng_state_after_rm_init(tokenizer, base, Path(tmp), config)


def train_chat_tokenizer(texts: Iterable[str], vocab_size: int, out_dir: Path):
    """Byte-level BPE with the ChatML special tokens and chat template, saved to ``out_dir``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=IM_END,
        pad_token=PAD_TOKEN,
        additional_special_tokens=[IM_START, IM_END],
        model_max_length=1024,
        padding_side="left",
        model_input_names=["input_ids", "attention_mask"],
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out_dir)
    return fast


def build_causal_lm(tokenizer, config: TinyConfig):
    """A randomly initialised tiny Qwen2 causal LM matching ``tokenizer``."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        num_key_value_heads=config.num_key_value_heads,
        max_position_embeddings=config.max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.convert_tokens_to_ids(PAD_TOKEN),
        eos_token_id=tokenizer.convert_tokens_to_ids(IM_END),
        pad_token_id=tokenizer.convert_tokens_to_ids(PAD_TOKEN),
    )
    return Qwen2ForCausalLM(cfg)


def _train_lm(model, tokenizer, texts: list[str], steps: int, config: TinyConfig) -> None:
    """Next-token training on packed ``texts`` (a fixture builder, not the project's training path)."""
    import torch

    eos = tokenizer.convert_tokens_to_ids(PAD_TOKEN)
    ids: list[int] = []
    for t in texts:
        ids.extend(tokenizer(t, add_special_tokens=False)["input_ids"] + [eos])
    n = config.seq_len
    chunks = torch.tensor([ids[i : i + n] for i in range(0, len(ids) - n, n // 2)])
    gen = torch.Generator().manual_seed(config.seed)

    def loss(step: int):
        batch = chunks[torch.randint(len(chunks), (config.batch_size,), generator=gen)]
        return model(input_ids=batch, labels=batch).loss

    fit(model, loss, steps, lr=config.learning_rate, weight_decay=0.0, clip=1.0, cosine=True, name="LM", log_every=50)


def fit(model, loss_at: Callable[[int], Any], steps: int, *, lr: float, weight_decay: float = 0.01, clip: float | None = None,
        cosine: bool = False, name: str = "model", log_every: int = 100) -> None:
    """The build's one training loop: ``steps`` AdamW steps on ``loss_at(step)`` (which draws its own batch),
    the gradient norm clipped at ``clip``, the learning rate on a cosine to zero when ``cosine``; the model in
    train mode meanwhile, in eval mode after."""
    import torch

    params = list(model.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / max(1, steps)))) if cosine else None
    model.train()
    for step in range(steps):
        loss = loss_at(step)
        loss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(params, clip)
        opt.step()
        if sched is not None:
            sched.step()
        opt.zero_grad()
        if step % log_every == 0 or step == steps - 1:
            logger.info("tiny %s step %d/%d loss %.4f", name, step + 1, steps, loss.item())
    model.eval()


def save_lm(model, tokenizer, out_dir: Path) -> Path:
    """Save model + tokenizer with a generation config that stops at the chat EOS."""
    from transformers import GenerationConfig

    stop = [tokenizer.convert_tokens_to_ids(IM_END), tokenizer.convert_tokens_to_ids(PAD_TOKEN)]
    model.generation_config = GenerationConfig(
        eos_token_id=stop, pad_token_id=tokenizer.pad_token_id, do_sample=True, temperature=0.7, top_p=0.9
    )
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def build_reward_model(base_dir: str | Path, out_dir: Path, seed: int = 0) -> Path:
    """A reward model (1 output) on the body of the causal LM in ``base_dir``."""
    from transformers.utils import logging as hf_logging

    from kowen_kedro.loading import load_sequence_classifier, load_tokenizer, placement
    from kowen_kedro.rewards.heads import init_score_head

    tokenizer = load_tokenizer(str(base_dir))
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "score.weight newly initialized" is the point here, not a warning
    try:
        # on CPU in fp32 whatever the machine has, as the whole build: same commit and seed, same bytes
        model = load_sequence_classifier(str(base_dir), placement("cpu", "float32"), num_labels=1, pad_token_id=tokenizer.pad_token_id)
    finally:
        hf_logging.set_verbosity(verbosity)
    init_score_head(model, seed)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def build_tiny_comet_qe(texts: list[str], out_dir: Path, config: TinyConfig, parallel: list[dict] | None = None,
                        encoder: dict | None = None, rng_state: list[int] | None = None) -> Path:
    """A COMET ``UnifiedMetric`` (reference-free: mt, src) over a tiny local XLM-R; returns the .ckpt path.

    With ``parallel`` sentences it is trained (``qe_steps``, MSE, COMET's own ``prepare_sample`` /
    ``forward`` / ``compute_loss``) to predict the chrF of translations corrupted at several levels
    (:func:`kowen_kedro.world.gold.qe_examples`), as CometKiwi is trained on human quality scores.
    ``encoder`` overrides the encoder's ``XLMRobertaConfig`` fields (a benchmark builds a CometKiwi-sized
    one: 24 layers x 1024); the estimator's hidden size and word layer follow it. The encoder's initial
    weights are drawn from torch's global generator as it is, or from ``rng_state`` (its
    ``get_rng_state()``, as a list) when given; the rest of the build is seeded."""
    import pytorch_lightning as pl
    import torch
    import yaml
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import XLMRobertaConfig, XLMRobertaModel, XLMRobertaTokenizerFast

    enc_dir = out_dir / "encoder"
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    # BPE, not XLM-R's Unigram: the tokenizers library's Unigram trainer breaks ties in hash-map order,
    # which differs from process to process, so two builds of the same inputs gave two vocabularies
    # (and every QE score downstream differed). BPE with a byte alphabet trains the same vocabulary
    # every time (a test builds it twice).
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.train_from_iterator(
        texts,
        trainers.BpeTrainer(vocab_size=config.qe_vocab_size, special_tokens=specials, show_progress=False, min_frequency=2),
    )
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    from tokenizers import decoders

    tok.decoder = decoders.Metaspace()
    xtok = XLMRobertaTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>",
        unk_token="<unk>", pad_token="<pad>", mask_token="<mask>", model_max_length=512,
    )
    xtok.save_pretrained(enc_dir)
    if rng_state is not None:
        torch.set_rng_state(torch.tensor(rng_state, dtype=torch.uint8))
    xcfg = XLMRobertaConfig(**{
        "vocab_size": len(xtok), "hidden_size": config.qe_hidden_size, "num_hidden_layers": config.qe_layers,
        "num_attention_heads": 2, "intermediate_size": 2 * config.qe_hidden_size, "max_position_embeddings": 514,
        "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2, "type_vocab_size": 1, **(encoder or {}),
    })
    XLMRobertaModel(xcfg, add_pooling_layer=False).save_pretrained(enc_dir)

    from comet.models import UnifiedMetric

    hparams = dict(
        encoder_model="XLM-RoBERTa",
        pretrained_model=str(enc_dir),
        input_segments=["mt", "src"],
        hidden_sizes=[xcfg.hidden_size],
        word_layer=xcfg.num_hidden_layers,
        layer_transformation="sparsemax",
        final_activation="sigmoid",
        local_files_only=True,
    )
    torch.manual_seed(config.seed)
    metric = UnifiedMetric(**hparams)
    if parallel and config.qe_steps:
        _train_qe(metric, parallel, config)
    ckpt = out_dir / "checkpoints" / "model.ckpt"
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    # The encoder is named relative to the model folder (CometQE loads it from there): the folder holds
    # no path of its own, so it can move, and two builds in two folders are the same bytes.
    saved = {**dict(metric.hparams), "pretrained_model": enc_dir.name}
    torch.save({"state_dict": metric.state_dict(), "hyper_parameters": saved, "pytorch-lightning_version": pl.__version__}, ckpt)
    with open(out_dir / "hparams.yaml", "w") as f:
        yaml.safe_dump({**saved, "class_identifier": "unified_metric"}, f)
    return ckpt


class QEChild:
    """:func:`build_tiny_comet_qe` in a process of its own (``python -m kowen_kedro.tiny.build qe``), started
    with the build or before it (:func:`prestart_qe_child`): the QE model needs none of the LMs, so it trains
    on the other core beside their training. The process inherits the pinned float settings
    (:mod:`kowen_kedro.floats`) and imports its libraries, then reads the path of its inputs (texts, parallel
    sentences, configuration) as one line on its stdin, the pipe that also ends the child with the build
    (:func:`kowen_kedro.lifeline.exit_when_closed`). It works out the generator state its encoder's
    initialisation starts from, the one the one-process build has at that point
    (:func:`rng_state_at_qe_init`), so its bytes are that build's, writes that state beside its inputs for
    :meth:`started_from`, and trains. Its inputs and log stay in ``out_dir`` until it succeeds."""

    def __init__(self, texts: list[str], parallel: list[dict] | None, config: TinyConfig, out_dir: Path):
        out_dir.mkdir(parents=True, exist_ok=True)
        self.out_dir, self.inputs, self.state = out_dir, out_dir / QE_INPUTS, out_dir / QE_STATE
        self.inputs.write_text(json.dumps({"texts": texts, "parallel": parallel, "config": asdict(config)}))
        taken = _take_prestarted()
        self.proc, self.log = taken or _start_qe_process(out_dir / QE_LOG)
        logger.info("the tiny QE model trains in process %d (%s)", self.proc.pid,
                    "started as the run began" if taken else "started now")
        try:
            self.proc.stdin.write(str(self.inputs.resolve()).encode() + b"\n")
            self.proc.stdin.flush()
        except BrokenPipeError:  # it has died already: result() reports its exit and log
            pass

    def used_state(self) -> list[int]:
        """The generator state the child's encoder initialisation started from, once it has written it (an
        error with its log if it ended first)."""
        import time

        while not self.state.exists():
            if self.proc.poll() is not None and not self.state.exists():
                self.result()  # raises with the child's exit and log
                raise RuntimeError(f"the tiny QE model's build ended without writing {self.state}")
            time.sleep(0.02)
        return json.loads(self.state.read_text())

    def started_from(self, rng_state: list[int]) -> bool:
        """Whether the child started from ``rng_state`` (the generator's state where the one-process build
        initialises the encoder); a warning if not."""
        if rng_state == self.used_state():
            return True
        logger.warning("torch's generator is not where the tiny QE model's build expected it (something drew from it "
                       "between the base LM's initialisation and the reward model's): the QE model is built again, after "
                       "the reward model, as the one-process build does")
        return False

    def result(self) -> Path:
        """Wait for the build; the checkpoint's path, or an error with the end of the child's log (kept as
        ``out_dir/_build.log``)."""
        code = self.proc.wait()
        _end(self.proc)
        if code:
            kept = self.out_dir / QE_LOG
            if self.log != kept:  # a prestarted child's log: beside the model, where a look starts
                shutil.move(self.log, kept)
                self.log = kept
            tail = self.log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"the tiny QE model's build failed (exit {code}); the end of {self.log}:\n{tail}")
        for done in (self.inputs, self.state, self.log):
            done.unlink(missing_ok=True)
        return self.out_dir / "checkpoints" / "model.ckpt"

    def stop(self) -> None:
        """Kill the child if it still runs (the parent's build failed, or builds the QE model itself)."""
        _end(self.proc)
        if self.log.parent != self.out_dir:
            self.log.unlink(missing_ok=True)


def _end(proc) -> None:
    """Kill the QE child ``proc`` if it still runs, and close the pipe to it."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    try:
        proc.stdin.close()
    except BrokenPipeError:  # a line still in the writer's buffer for a child that has gone
        pass


_prestarted: tuple | None = None  # (process, log, setting) of the child a run started before its build
_prestart_lock = threading.Lock()


def _start_qe_process(log_path: Path):
    """The QE child (``python -m kowen_kedro.tiny.build qe``) writing to ``log_path``; ``(process, log_path)``.
    Its stdin is a pipe only this process holds (the child ends when it closes)."""
    import subprocess
    import sys

    with log_path.open("w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "kowen_kedro.tiny.build", "qe"], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.PIPE)
    return proc, log_path


def prestart_qe_child() -> None:
    """Start the QE child now, before the build that will use it: it imports its libraries (torch,
    transformers, COMET; seconds) while the run starts, and waits for its inputs. The next
    :class:`QEChild` of this process takes it; one never taken ends with this process (its pipe closes)."""
    import atexit
    import tempfile

    global _prestarted
    with _prestart_lock:
        if _prestarted_usable_locked():
            return
        _discard_prestarted_locked()
        fd, log = tempfile.mkstemp(prefix="kowen-qe-build-", suffix=".log")
        os.close(fd)
        _prestarted = (*_start_qe_process(Path(log)), _setting())
        atexit.unregister(discard_prestarted_qe_child)  # registered once, however many runs this process starts
        atexit.register(discard_prestarted_qe_child)


def _setting() -> tuple:
    """What of this process decides a QE child's bytes: its folder, its interpreter and the environment
    variables that pin the floats or set the import path."""
    import sys

    from kowen_kedro import floats

    names = (*floats.PINNED, floats.THREADS_VAR, floats.ISA_VAR, "PYTHONPATH", "PYTHONHASHSEED")
    return os.getcwd(), sys.executable, tuple((name, os.environ.get(name)) for name in names)


def _prestarted_usable_locked() -> bool:
    """Whether a prestarted child is alive and was started in this process's present setting (:func:`_setting`)."""
    return _prestarted is not None and _prestarted[0].poll() is None and _prestarted[2] == _setting()


def _take_prestarted():
    """The prestarted QE child as ``(process, log)``, if one is alive and was started in this process's present
    setting (no longer kept for another build), else None: one that died or was started in another setting
    is ended and the build starts its own."""
    global _prestarted
    with _prestart_lock:
        if not _prestarted_usable_locked():
            _discard_prestarted_locked()
            return None
        (proc, log, _), _prestarted = _prestarted, None
        return proc, log


def discard_prestarted_qe_child() -> None:
    """End a prestarted QE child that no build has taken, and remove its log."""
    with _prestart_lock:
        _discard_prestarted_locked()


def _discard_prestarted_locked() -> None:
    global _prestarted
    if _prestarted is not None:
        (proc, log, _), _prestarted = _prestarted, None
        _end(proc)
        log.unlink(missing_ok=True)


#: What the QE child imports before its inputs come: what the base LM's and the QE model's builds use.
PRELOADED = ("torch", "transformers.models.qwen2.modeling_qwen2", "transformers.models.xlm_roberta.modeling_xlm_roberta",
             "tokenizers", "pytorch_lightning", "comet.models")


def _qe_child_main() -> None:
    import importlib
    import queue

    from kowen_kedro.lifeline import exit_when_closed

    lines: queue.Queue[bytes] = queue.Queue()
    exit_when_closed(0, on_line=lines.put)  # stdin: the pipe only the build holds; its first line, the inputs
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for module in PRELOADED:  # the libraries first, while the build (or the run) has not begun
        importlib.import_module(module)

    from kowen_kedro.floats import deterministic_torch

    inputs = Path(lines.get().decode())
    deterministic_torch()
    args = json.loads(inputs.read_text())
    config = TinyConfig(**args["config"])
    state = rng_state_at_qe_init(args["texts"], config, inputs.parent)
    written = inputs.parent / f"{QE_STATE}.tmp"
    written.write_text(json.dumps(state))
    os.replace(written, inputs.parent / QE_STATE)  # whole or absent for QEChild.used_state
    build_tiny_comet_qe(args["texts"], inputs.parent, config, parallel=args["parallel"], rng_state=state)


def build_tiny_mt(tokenizer_dir: Path, parallel: list[dict], out_dir: Path, config: TinyConfig) -> Path:
    """A tiny M2M100 translation model over the chat tokenizer plus language tokens, trained both ways
    on ``parallel`` (``[{lang: text, ...}]``) with M2M100's layout: ``__src__ text </s>`` ->
    ``__tgt__ text </s>``, decoder start = EOS."""
    import torch
    from transformers import M2M100Config, M2M100ForConditionalGeneration

    from kowen_kedro.loading import load_tokenizer

    tok = load_tokenizer(str(tokenizer_dir))
    langs = sorted({lang for row in parallel for lang in row})
    if len(langs) < 2:
        raise ValueError(f"the tiny MT model needs parallel sentences in two languages, got {langs or 'none'}")
    tok.add_special_tokens({"additional_special_tokens": list(tok.additional_special_tokens) + [f"__{l}__" for l in langs]})
    eos, pad = tok.convert_tokens_to_ids(IM_END), tok.pad_token_id
    cfg = M2M100Config(
        vocab_size=len(tok), d_model=config.hidden_size, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=2 * config.hidden_size,
        decoder_ffn_dim=2 * config.hidden_size, max_position_embeddings=256, dropout=0.0,
        pad_token_id=pad, eos_token_id=eos, bos_token_id=pad, decoder_start_token_id=eos,
        scale_embedding=True, encoder_layerdrop=0.0, decoder_layerdrop=0.0,
    )
    torch.manual_seed(config.seed)
    model = M2M100ForConditionalGeneration(cfg)
    examples = []
    for row in parallel:
        for src in row:
            for tgt in row:
                if src != tgt:
                    s_ids = [tok.convert_tokens_to_ids(f"__{src}__")] + tok(row[src], add_special_tokens=False)["input_ids"][:120] + [eos]
                    t_ids = [tok.convert_tokens_to_ids(f"__{tgt}__")] + tok(row[tgt], add_special_tokens=False)["input_ids"][:120] + [eos]
                    examples.append((s_ids, t_ids))
    if examples and config.mt_steps:
        gen = torch.Generator().manual_seed(config.seed)

        def loss(step: int):
            batch = [examples[i] for i in torch.randint(len(examples), (config.batch_size,), generator=gen).tolist()]
            sw, tw = max(len(s) for s, _ in batch), max(len(t) for _, t in batch)
            src = torch.tensor([s + [pad] * (sw - len(s)) for s, _ in batch])
            labels = torch.tensor([t + [-100] * (tw - len(t)) for _, t in batch])
            return model(input_ids=src, attention_mask=(src != pad).long(), labels=labels).loss

        fit(model, loss, config.mt_steps, lr=config.learning_rate, name="MT")
    model.generation_config.forced_bos_token_id = None
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return out_dir


def _train_qe(metric, parallel: list[dict], config: TinyConfig) -> None:
    """Regression of the COMET model's score on gold translation quality (a fixture builder)."""
    import random

    from kowen_kedro.world.gold import qe_examples

    examples = qe_examples(parallel, config.seed)
    prepared = PreparedSamples(metric, examples)
    rng = random.Random(config.seed)
    for p in metric.parameters():  # COMET freezes the encoder (and its embeddings) at first: train it all
        p.requires_grad_(True)

    def loss(step: int):
        inputs, target = prepared.batch(rng.sample(range(len(examples)), min(config.batch_size * 2, len(examples))))
        return sum(metric.compute_loss(metric(**inp), target) for inp in inputs)

    fit(metric, loss, config.qe_steps, lr=config.qe_learning_rate, clip=1.0, name="QE")


class PreparedSamples:
    """COMET's ``prepare_sample(batch, stage="fit")`` for batches drawn again and again from one list of
    ``examples`` (``src``, ``mt``, ``score``): every example tokenised and joined once (in chunks, each row then
    cut to its own length: a row does not depend on the rows beside it), each batch padded as COMET's
    ``concat_sequences`` pads it. The same tensors as COMET's own (tests/test_tiny_models.py holds them side by
    side) without tokenising every example anew at every step, which took a fifth of the QE model's training.
    Sentence-level models (not word-level ones: their labels are not kept)."""

    def __init__(self, metric, examples: list[dict], chunk: int = 64) -> None:
        if metric.word_level:
            raise ValueError("PreparedSamples serves sentence-level COMET models; this one is word-level")
        self.encoder, self.scores, self.rows = metric.encoder, [float(e["score"]) for e in examples], []
        for start in range(0, len(examples), chunk):
            part = [{k: e[k] for k in ("src", "mt", "score")} for e in examples[start:start + chunk]]
            (joined,), _ = metric.prepare_sample(part, stage="fit")
            lengths = joined["attention_mask"].sum(dim=1).tolist()
            for i, n in enumerate(lengths):
                self.rows.append({k: v[i, :n].clone() for k, v in joined.items() if k != "attention_mask"})

    def batch(self, indices: list[int]):
        """``(inputs, target)`` as ``metric.prepare_sample([examples[i] for i in indices], stage="fit")``."""
        import torch
        from comet.models.utils import Target

        enc = self.encoder
        rows = [self.rows[i] for i in indices]
        lengths = torch.tensor([r["input_ids"].shape[0] for r in rows], dtype=torch.long)
        max_len = int(lengths.max())
        joined = {"input_ids": torch.stack([enc.pad_tensor(r["input_ids"], max_len, enc.tokenizer.pad_token_id) for r in rows]).contiguous(),
                  "attention_mask": torch.arange(max_len)[None, :] < lengths[:, None]}
        if "token_type_ids" in rows[0]:
            joined["token_type_ids"] = torch.stack([enc.pad_tensor(r["token_type_ids"], max_len, 1) for r in rows]).contiguous()
        return (joined,), Target(score=torch.tensor([self.scores[i] for i in indices], dtype=torch.float))


if __name__ == "__main__":  # the QE build's child process (QEChild)
    import sys

    if sys.argv[1:] != ["qe"]:
        raise SystemExit("usage: python -m kowen_kedro.tiny.build qe  (the path of its inputs as a line on stdin)")
    _qe_child_main()
