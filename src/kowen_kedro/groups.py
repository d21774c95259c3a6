"""Typed parameter groups: one frozen dataclass per block of ``conf/base``, a help per field.

The values live in one place, ``conf/base`` (a recipe such as ``conf/kowen_7b`` overrides some of them);
a class here holds each key's name, type and help, and no value. A node builds its group from its
``params:`` input at the boundary (``SFT.of(params)``) and reads attributes, so a key is spelled once and
a missing or mistyped one fails there with its path. The run's parameter check
(:mod:`kowen_kedro.parameters`, before any node) and ``kedro params`` (the help column) read the same
classes through :data:`GROUPS`.

The classes are pydantic dataclasses: construction validates the types (strict: ``"3e-4"`` in quotes is
not a float, ``1`` is not a bool) and builds the nested groups. Blocks that are another tool's options
stay plain mappings and are checked against that tool's own class by the parameter check: ``trainer_args``
(TRL's config classes), ``sampling`` (:class:`~kowen_kedro.llm.types.SamplingParams`), ``backend`` (the
generation backends' options), ``lora`` (peft). A key a block may leave out is ``None`` when it does
(:func:`unset`); every other key must be set by ``conf/base``.
"""

from __future__ import annotations

import fnmatch
from dataclasses import field, fields, is_dataclass
from functools import lru_cache
from typing import Annotated, Any, Literal, Mapping, TypeVar, Union, get_args, get_origin

from pydantic import ConfigDict, Field, Strict, StrictBool, StrictInt, StrictStr, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass

Number = Annotated[float, Strict()]  # a YAML int or float; not a bool, not a string
Share = Annotated[float, Strict(), Field(ge=0, le=1)]  # a number in [0, 1]
Block = dict[str, Any]  # another tool's options, checked against its own class
G = TypeVar("G")


def param(help: str) -> Any:
    """A field set by ``conf/base``, with its one-line help."""
    return field(metadata={"help": help})


def unset(help: str) -> Any:
    """A field a block may leave out (``None``: not set; the help says what that means)."""
    return field(default=None, metadata={"help": help})


def group(key: str):
    """A parameter group for the block at ``key`` (``params:<key>``): a frozen pydantic dataclass that refuses
    unknown keys; ``Group.of(mapping)`` builds it, naming a bad key by its path under ``key``."""

    def make(cls: type[G]) -> type[G]:
        made = dataclass(frozen=True, kw_only=True, config=ConfigDict(extra="forbid"))(cls)
        made.of = classmethod(lambda klass, values, name=None: build(klass, values, name or key))
        return made

    return make


class GroupError(ValueError):
    """A group that cannot be built; ``problems``: ``(key path, what is wrong)`` per problem."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{path}: {what}" for path, what in problems))


# ---- parameters.yml ---------------------------------------------------------------------------------

@group("llm")
class LLM:
    """``params:llm``"""

    cache_path: StrictStr = param("the LLM-call cache: every LLM / QE / judge call is stored as it finishes; reruns reuse it")


@group("tiny_world.teacher_faults")
class TeacherFaults:
    """``params:tiny_world.teacher_faults``"""

    drift_to_english: Share = param("share of target-language prompts quoting English words the teacher answers in English")
    comply_rephrased: Share = param("share of rephrased unsafe requests (role play, 'for a test') the teacher complies with")


@group("tiny_world")
class TinyWorld:
    """``params:tiny_world``"""

    seed: StrictInt = param("the world's seed: its facts, prompts and gold answers (the catalog's raw inputs read it too)")
    teacher_faults: TeacherFaults = param("the oracle teacher's faults (docs/world.md)")
    sizes: dict[str, StrictInt] | None = unset("rows of each part of the world, e.g. {gold_prompts: 100} (not set: the world's own; the catalog reads it)")
    extra_languages: StrictStr | list[StrictStr] | None = unset("more languages of evaluation pairs for the reward models (not set: none; the catalog reads it)")


@group("models")
class Models:
    """``params:models``"""

    teacher: StrictStr = param("completes the prompts for SFT (Kowen: Qwen2.5-72B-Instruct; world:oracle: the world's answer program)")
    translator: StrictStr = param("translates prompts, preferences and passages (best-of-k with the other translators)")
    strong_translator: StrictStr = param("plays the papers' strong LLM translators (GPT-4o, XL-Instruct's 24-27B models)")
    student: StrictStr = param("the model SFT and DPO train (Kowen: Qwen2.5-7B)")
    reward_model_init: StrictStr = param("the reward models' starting point (a base LM with a score head)")
    qe: StrictStr = param("COMET QE checkpoint (.ckpt) or hub id (Unbabel/wmt23-cometkiwi-da-xl)")
    mt: StrictStr = param("seq2seq MT model (X-ALMA, M2M100 in the papers)")
    judge: StrictStr = param("the local judge (evaluation.judge.backend: local)")
    tiny_teacher: StrictStr = param("the neural tiny teacher, measured against the gold reward beside the oracle")


@group("tiny_models")
class TinyConfig:
    """``params:tiny_models`` (the built-in models' sizes and steps: what the build's key hashes)"""

    vocab_size: StrictInt = param("BPE vocabulary of the tokenizer trained on the world's text")
    hidden_size: StrictInt = param("hidden size of the Qwen2-architecture base, teacher, student and reward-model init")
    intermediate_size: StrictInt = param("MLP width of those models")
    num_hidden_layers: StrictInt = param("decoder layers of those models")
    num_attention_heads: StrictInt = param("attention heads (2 of 32: a head size vLLM serves on a CPU)")
    num_key_value_heads: StrictInt = param("key/value heads (grouped-query attention, as Qwen2)")
    max_position_embeddings: StrictInt = param("longest sequence the models take")
    pretrain_steps: StrictInt = param("the base LM's pre-training steps on the world's text")
    teacher_steps: StrictInt = param("the tiny teacher's tuning steps on the world's chats")
    seq_len: StrictInt = param("tokens per pre-training sequence")
    batch_size: StrictInt = param("sequences per pre-training and tuning step")
    learning_rate: Number = param("learning rate of the build's pre-training and tuning")
    seed: StrictInt = param("torch seed of the build")
    mt_steps: StrictInt = param("training steps of the tiny seq2seq MT model on the world's parallel sentences")
    qe_hidden_size: StrictInt = param("hidden size of the tiny COMET QE model's encoder")
    qe_layers: StrictInt = param("encoder layers of the tiny COMET QE model")
    qe_vocab_size: StrictInt = param("vocabulary of the QE model's encoder")
    qe_steps: StrictInt = param("QE regression steps on (source, corrupted translation, chrF) from the parallel sentences")
    qe_learning_rate: Number = param("learning rate of the QE regression")


@group("tiny_models")
class TinyModels(TinyConfig):
    """``params:tiny_models``"""

    out_dir: StrictStr = param("folder of the built models; built once per world and configuration, rebuilt when either changes")
    pretrain_english_share: Number | None = param("share of English in the base model's pre-training text (null: the world's text as it is)")
    pretrain_linking_share: Annotated[float, Strict(), Field(ge=0, lt=1)] = param(
        "share of the pre-training text that links the languages: parallel and code-switched documents (0: none)")

    def config(self) -> TinyConfig:
        """The models' configuration alone (without the node's folder and text mixture)."""
        return TinyConfig(**{f.name: getattr(self, f.name) for f in fields(TinyConfig)})


@group("training.deepspeed")
class DeepSpeed:
    """``params:training.deepspeed``"""

    zero_stage: Literal[0, 1, 2, 3, "auto"] = param("ZeRO stage 0-3 (3 partitions parameters, gradients and optimizer state), or auto")
    offload_optimizer: Literal["none", "cpu"] = param("where the optimizer state lives: none (GPU) | cpu")
    offload_param: Literal["none", "cpu"] = param("where the parameters live between uses: none (GPU) | cpu")


@group("training")
class Training:
    """``params:training``"""

    launcher: Literal["deepspeed", "python", "auto"] = param("deepspeed | python (one process, no DeepSpeed) | auto")
    world_size: StrictInt = param("processes in all (GPUs in production; CPU processes here)")
    warm_launches: StrictBool = param("a one-process launch on a CPU forks from an interpreter with the training libraries loaded")
    num_nodes: StrictInt = param("machines; > 1 needs a hostfile")
    hostfile: StrictStr | None = param("DeepSpeed hostfile ('host slots=N' per line) when num_nodes > 1")
    precision: Literal["auto", "bf16", "fp16", "fp32"] = param("auto (bf16 on a GPU that has it, else fp32) | bf16 | fp16 | fp32")
    gradient_checkpointing: Union[StrictBool, Literal["auto"], None] = param("true/false for every stage (null: each stage's own); a stage's trainer_args wins")
    kernels: Literal["auto", "liger", "compile", "none"] = param("fused layer kernels: auto (Liger on a GPU with the wheel, else compiled layers on a GPU) | liger | compile | none")
    attn_implementation: StrictStr = param("auto (FlashAttention 2 where installed, else SDPA) | sdpa | eager | flash_attention_2")
    keep_checkpoints: StrictBool = param("keep a stage's checkpoints after its final model is saved (false: deleted)")
    work_dir: StrictStr = param("one folder per stage and fingerprint: spec, train.log, checkpoints, final model")
    deepspeed: DeepSpeed = param("the ZeRO configuration every DeepSpeed launch gets")
    gpu: StrictStr = param("the GPU kind `kedro preflight` sizes the recipe for: a100-40gb | a100-80gb | h100-80gb | h200 | l40s")
    price_per_gpu_hour: Number = param("price of one GPU-hour, for the preflight's cost column (the currency is yours)")


@group("preflight.vllm")
class PreflightVLLM:
    """``params:preflight.vllm``"""

    max_num_seqs: StrictInt = param("vLLM's cap on sequences run at once")
    activation_gib: Number = param("memory vLLM keeps beside weights and KV cache (activations, CUDA graphs)")
    bandwidth_efficiency: Number = param("share of the GPU's memory bandwidth a decode step reaches")
    compute_efficiency: Number = param("share of the GPU's peak FLOP/s prefill reaches")


@group("preflight")
class Preflight:
    """``params:preflight``"""

    sequence_fill: Number = param("mean share of max_length a training sequence fills")
    prompt_tokens: StrictInt = param("mean tokens of a generation request's prompt")
    output_fill: Number = param("mean share of max_new_tokens a completion uses")
    headroom_gib: Number = param("GPU memory left to the CUDA context and allocator fragmentation")
    rows: dict[str, StrictInt] = param("rows of the stages the configuration does not count ({reward_model: 68800, evaluation_prompts: 797})")
    vllm: PreflightVLLM = param("a vLLM stage's memory and roofline time")


# ---- a training stage (every stage block) -----------------------------------------------------------

@group("<stage>")
class Stage:
    """``params:<stage>`` (a training stage block)"""

    trainer_args: Block = param("fields of the stage's TRL config class (SFTConfig, RewardConfig, DPOConfig, CLOConfig)")
    global_batch_size: StrictInt = param("examples per optimizer step over all processes; gradient accumulation is derived from it")
    finetuning: Literal["full", "lora", "attention_only"] = param("full | lora | attention_only (CLO: the attention projections only)")
    seed: StrictInt = param("seed of the stage's data order and initialisation")
    lora: Block | None = unset("peft LoraConfig overrides when finetuning is lora (not set: r 8 on q_proj, v_proj)")
    ref_model: StrictStr | None = unset("the DPO reference model (not set: the policy the stage starts from)")
    callbacks: list[StrictStr] | None = unset("extra transformers TrainerCallback import paths (not set: none)")


# ---- parameters_sft.yml -----------------------------------------------------------------------------

@group("sft")
class SFT(Stage):
    """``params:sft``"""

    languages: StrictStr | list[StrictStr] = param("rows of the SFT mixture to train on: all, a language code or a list (source / target stand for the run's)")


@group("xl_instruct")
class XLInstruct(Stage):
    """``params:xl_instruct``"""

    enabled: StrictBool = param("false skips XL-Instruct's fine-tuning")
    replay: Number = param("rows of the SFT mixture replayed per XL-Instruct row (0: the rows alone, as the paper)")
    ablation_shuffle_responses: StrictBool = param("ablation: every instruction gets another row's answer")


# ---- parameters_data_synthesis.yml ------------------------------------------------------------------

@group("data_synthesis.ingest")
class Ingest:
    """``params:data_synthesis.ingest``"""

    max_chars: StrictInt = param("longer user prompts are dropped (counted in the ingest report)")
    drop_redacted: StrictBool = param("drop LMSYS-Chat-1M rows marked redacted (placeholders such as NAME_1); counted either way")
    split: StrictStr = param("the split read when user_prompts_raw is a HF DatasetDict")


@group("data_synthesis.decontamination")
class Decontamination:
    """``params:data_synthesis.decontamination``"""

    ngram: StrictInt = param("word n-gram length compared with the evaluation prompts")
    threshold: Number = param("share of a prompt's n-grams found in the evaluation prompts that drops it")


@group("data_synthesis.teacher")
class Teacher:
    """``params:data_synthesis.teacher``"""

    backend: Block = param("generation backend of the teacher: transformers | openai | vllm and its options")
    sampling: Block = param("the teacher's sampling settings (SamplingParams)")
    language_filter: StrictBool = param("drop completions not in the requested language (false: the teacher's drift reaches the student, as in Kowen)")


@group("data_synthesis.multi_turn")
class MultiTurn:
    """``params:data_synthesis.multi_turn``"""

    turns: StrictInt = param("user turns per conversation (the teacher answers each)")
    max_conversations: StrictInt = param("target-language prompts that become conversations")


@group("data_synthesis.xl_instruct")
class XLInstructSynthesis:
    """``params:data_synthesis.xl_instruct``"""

    max_passages: StrictInt = param("seed passages turned into instructions (the paper: 8K rows after the QE filter)")
    refine: StrictBool = param("stage 2: rewrite against the four criteria, grounded in the passage")
    sampling: Block | None = unset("sampling settings of the reverse instructions (not set: the teacher's)")


Rows = Union[StrictInt, Number]  # rows (an int) or a share of the part (a float in (0, 1])


@group("data_synthesis.mixture.sizes")
class MixtureSizes:
    """``params:data_synthesis.mixture.sizes``"""

    target_single_turn: Rows = param("target-language single-turn rows (native + translated prompts): a count, or a share of the part")
    en_single_turn: Rows = param("source-language single-turn rows: a count, or a share of the part")
    target_multi_turn: Rows = param("target-language conversations: a count, or a share of the part")


@group("data_synthesis.mixture")
class Mixture:
    """``params:data_synthesis.mixture``"""

    seed: StrictInt = param("seed of the sample drawn from each part")
    sizes: MixtureSizes = param("rows of each part of the SFT mixture (Kowen: 400K Ko-ST + 300K En-ST + 400K Ko-MT)")


@group("data_synthesis")
class DataSynthesis:
    """``params:data_synthesis``"""

    ingest: Ingest = param("reading real user prompts")
    decontamination: Decontamination = param("dropping prompts that overlap the evaluation prompts")
    teacher: Teacher = param("the teacher that completes the prompts")
    multi_turn: MultiTurn = param("target-language conversations")
    xl_instruct: XLInstructSynthesis = param("reverse instructions from seed passages")
    mixture: Mixture = param("the SFT mixture's parts")


# ---- parameters_translation_qe.yml ------------------------------------------------------------------

@group("translation_qe.splitter")
class Splitter:
    """``params:translation_qe.splitter``"""

    type: Literal["pysbd", "rule", "sat"] = param("sentence splitter: pysbd (offline) | rule (no dependency) | sat (wtpsplit's Segment Any Text)")
    model: StrictStr | None = unset("sat: the wtpsplit model (not set: sat-3l-sm)")


@group("translation_qe.qe")
class QE:
    """``params:translation_qe.qe``"""

    batch_size: Union[StrictInt, Literal["auto"]] = param("pairs per QE forward pass; auto: 32 on a GPU, 1 on a CPU")
    gpus: Union[StrictInt, Literal["auto"]] = param("GPUs COMET uses; auto: 1 when CUDA is available, else 0")
    progress: StrictBool = param("COMET's own progress bar")
    ablation_shuffle: StrictBool = param("ablation: QE scores permuted, so selection is chance")


@group("translation_qe.filter")
class QEFilter:
    """``params:translation_qe.filter``"""

    drop_bottom_fraction: Number = param("share of passages with the lowest QE dropped (XL-Instruct: 0.2)")


@group("translation_qe.prompts")
class PromptTranslation:
    """``params:translation_qe.prompts``"""

    max_prompts: StrictInt = param("English single-turn prompts translated into the target language for SFT")


@group("translation_qe.preferences")
class PreferenceTranslation:
    """``params:translation_qe.preferences``"""

    languages: list[StrictStr] = param("languages the English preference pairs are translated into (the paper: es, it, ko, zh)")
    max_pairs: StrictInt = param("English pairs translated")
    drop_bottom_fraction: Number = param("share of the translated pairs with the lowest QE dropped")


@group("translation_qe.clo")
class CLOTranslation:
    """``params:translation_qe.clo``"""

    max_pairs: StrictInt = param("preference pairs translated for CLO (the paper: 6,400 top-ranked OpenAssistant pairs)")


@group("translation_qe.xl_instruct")
class XLInstructTranslation:
    """``params:translation_qe.xl_instruct``"""

    seed: StrictInt = param("seed of the cross-lingual instruction template choice")


@group("translation_qe")
class TranslationQE:
    """``params:translation_qe``"""

    translators: list[Block] = param("best-of-k translators: each {type: seq2seq | llm, model_role, ...} translates every sentence")
    splitter: Splitter = param("how passages are split into sentences")
    max_sentence_chars: StrictInt = param("longer sentences reject the row (reason recorded), never truncated")
    qe: QE = param("COMET quality estimation")
    filter: QEFilter = param("XL-Instruct's filter by passage QE")
    prompts: PromptTranslation = param("prompts translated for SFT")
    preferences: PreferenceTranslation = param("RM transfer: translated copies of the English preference pairs")
    clo: CLOTranslation = param("CLO's paired data")
    xl_instruct: XLInstructTranslation = param("XL-Instruct's cross-lingual rows")


# ---- parameters_reward_model.yml --------------------------------------------------------------------

@group("reward_model.data")
class RMData:
    """``params:reward_model.data``"""

    eval_fraction: Number = param("held-out share of the preference pairs (RM-transfer paper: 0.2)")
    seed: StrictInt = param("seed of the train / evaluation split")
    ablation_swap_pairs: StrictBool = param("ablation: train every RM on pairs with chosen and rejected exchanged")
    transfer_source: Literal["all", "translated"] = param(
        "the RM-transfer experiment's English RM trains on: all (every source-language training pair, those with a "
        "wrong-language answer included, which are not translated) | translated (only the pairs the target-language RM "
        "trains on as translations: the same content in two languages, as paper 001 compares)")


@group("reward_model.scoring")
class RMScoring:
    """``params:reward_model.scoring``"""

    batch_size: StrictInt = param("pairs per reward-model forward pass")
    max_length: StrictInt = param("tokens of prompt + answer the reward model reads (longer: truncated)")


@group("reward_model.benchmark")
class RMBenchmark:
    """``params:reward_model.benchmark``"""

    weights: Union[Literal["rewardbench", "m-rewardbench"], dict[str, StrictInt]] = param("how sections weight their subsets: rewardbench | m-rewardbench (published counts) or {subset: count}")
    language: StrictStr = param("language of benchmark rows without a language column (RewardBench's)")


@group("reward_model")
class RewardModel:
    """``params:reward_model``"""

    data: RMData = param("the preference pairs' split")
    training: Stage = param("the reward models' training stage (TRL RewardConfig)")
    scoring: RMScoring = param("scoring pairs with a reward model")
    benchmark: RMBenchmark = param("RewardBench / M-RewardBench rows as published")


@group("rm_transfer_<language>")
class RMTransfer:
    """``params:rm_transfer_<language>``"""

    role: Literal["source", "target"] = param("the training pairs' language: source (English) | target (their translations)")


# ---- parameters_preference_alignment.yml ------------------------------------------------------------

@group("preference_alignment.prompts")
class PolicyPrompts:
    """``params:preference_alignment.prompts``"""

    max_prompts: StrictInt = param("prompts sampled per iteration, split evenly over languages")
    languages: list[StrictStr] = param("source: source-language prompts; target: native + translated target-language prompts")
    seed: StrictInt = param("seed of the prompt sample")


@group("preference_alignment.sampling")
class PolicySampling:
    """``params:preference_alignment.sampling``"""

    k: StrictInt = param("completions per prompt (Kowen: 4)")
    backend: Block = param("the engine that samples the policy: transformers | vllm | openai and its options")
    params: Block = param("sampling settings (SamplingParams)")


@group("preference_alignment.scoring")
class PolicyScoring:
    """``params:preference_alignment.scoring``"""

    batch_size: StrictInt = param("completions per reward-model forward pass")
    max_length: StrictInt = param("tokens of prompt + completion the reward model reads (longer: truncated)")
    reward: Literal["model", "gold"] = param("model: the trained reward model (Kowen) | gold: the tiny world's gold reward (upper bound)")
    world_seed: StrictInt = param("reward gold: the world whose gold reward scores")


@group("preference_alignment.pairs")
class PolicyPairs:
    """``params:preference_alignment.pairs``"""

    min_margin_sd: Number = param("keep a best-vs-worst pair only when its RM margin is at least this many SD of the rewards (Kowen: 0)")


@group("preference_alignment")
class PreferenceAlignment:
    """``params:preference_alignment``"""

    prompts: PolicyPrompts = param("the prompts each iteration samples")
    sampling: PolicySampling = param("sampling the current policy")
    scoring: PolicyScoring = param("scoring the completions")
    pairs: PolicyPairs = param("best vs worst per prompt")
    keep_iteration: StrictInt = param("the DPO iteration whose policy is the run's final one (Kowen keeps 2)")


@group("dpo_iter_<n>.dpo")
class DPO(Stage):
    """``params:dpo_iter_<n>.dpo``"""

    enabled: StrictBool = param("false skips the iteration")
    sampling_backend: Block = param("this iteration's options over preference_alignment.sampling.backend")
    reference: Literal["previous", "initial"] = param("previous (Kowen: the policy the iteration starts from) | initial (the SFT model)")


@group("dpo_iter_<n>")
class DPOIteration:
    """``params:dpo_iter_<n>``"""

    stage: StrictStr = param("the iteration's name: its training folder and MLflow prefix")
    dpo: DPO = param("the iteration's DPO stage")


@group("cross_lingual")
class CrossLingual:
    """``params:cross_lingual``"""

    enabled: StrictBool = param("false skips CLO and its baseline")
    method: Literal["clo", "sft_dpo", "sft"] = param("clo | sft_dpo (SFT on the target side, then DPO) | sft (the baseline's SFT step alone)")
    train_fraction: Number = param("share of the training examples used (the data-efficiency run: 0.5)")
    baseline_in_same_run: StrictBool = param("with method clo: also train the SFT+DPO baseline")
    eval_fraction: Number = param("held-out source examples: validation loss, best checkpoint kept")
    seed: StrictInt = param("seed of the train / validation split and of the train_fraction sample")
    clo: Stage = param("CLO's training stage (CLOConfig)")
    baseline_sft: Stage = param("the baseline's SFT stage (SFTConfig)")
    baseline_dpo: Stage = param("the baseline's DPO stage (DPOConfig)")


# ---- parameters_evaluation.yml ----------------------------------------------------------------------

@group("evaluation.<gold|generation>")
class Answering:
    """``params:evaluation.<gold|generation>``"""

    backend: Block = param("the engine that answers: transformers | vllm | openai and its options")
    sampling: Block = param("sampling settings (SamplingParams)")


@group("evaluation.judge")
class Judge:
    """``params:evaluation.judge``"""

    backend: Literal["local", "openai"] = param("local (the judge model role: verdict-token probabilities) | openai")
    model: StrictStr | None = param("openai: the judge model (gpt-4o in the papers); null with local: the judge model role")
    base_url: StrictStr | None = param("openai: an OpenAI-compatible endpoint (null: api.openai.com)")
    api_key_env: StrictStr = param("openai: the variable holding the key (conf/local/credentials.yml fills it)")
    concurrency: StrictInt = param("openai: requests in flight")
    max_tokens: StrictInt = param("openai: reply length for verdicts")
    batch_size: Union[StrictInt, Literal["auto"]] = param("local: verdicts scored per forward pass; auto: 8 on a GPU, 1 on a CPU")
    seed: StrictInt = param("seed of the position randomisation (recorded per item)")
    max_unparseable_share: Number = param("more unreadable verdicts than this share fails the node")


@group("evaluation.alpacaeval.reference")
class AlpacaEvalReference:
    """``params:evaluation.alpacaeval.reference``"""

    alpacaeval: Literal["sft", "published"] = param("English AlpacaEval-style prompts judged against: sft | published (the file's outputs)")
    xl_alpacaeval: Literal["sft", "published"] = param("XL-AlpacaEval (English instruction, target answer) judged against: sft | published")
    m_alpacaeval: Literal["sft", "published"] = param("the prompts translated into the target language judged against: sft | published")


@group("evaluation.alpacaeval")
class AlpacaEval:
    """``params:evaluation.alpacaeval``"""

    reference: AlpacaEvalReference = param("what each set's answers are judged against")


@group("evaluation.xl_alpacaeval")
class XLAlpacaEval:
    """``params:evaluation.xl_alpacaeval``"""

    languages: list[StrictStr] = param("answer languages of the cross-lingual set (XL-Instruct: de, pt, hu, lt, ga, mt, zh, hi)")
    seed: StrictInt = param("seed of the 'answer in <language>' template choice per prompt")
    require_all_listed: StrictBool = param("every Table-4 prompt must be found and removed (true for AlpacaEval's 805)")


@group("evaluation.mt_bench")
class MTBench:
    """``params:evaluation.mt_bench``"""

    language: StrictStr = param("language of a question file without a language column (MT-Bench: en, KoMT-Bench: ko)")
    judge_prompts: Literal["project", "fastchat"] = param("project (rating only) | fastchat (FastChat's judge_prompts.jsonl: explain, then [[rating]])")


@group("evaluation.nlu")
class NLU:
    """``params:evaluation.nlu``"""

    tasks: StrictStr | list[StrictStr] = param("local (the shipped multiple-choice file) or lm-evaluation-harness task names")
    batch_size: StrictInt = param("questions per forward pass")
    limit: StrictInt | None = param("questions per task (null: all; lm-evaluation-harness's --limit)")


@group("evaluation")
class Evaluation:
    """``params:evaluation``"""

    gold: Answering = param("greedy answers to the tiny world's held-out gold set, scored by the gold reward")
    generation: Answering = param("the answers the judges compare (AlpacaEval-style sets, MT-Bench)")
    judge: Judge = param("the pairwise / rubric judge")
    alpacaeval: AlpacaEval = param("AlpacaEval-style win rates")
    xl_alpacaeval: XLAlpacaEval = param("the cross-lingual benchmark")
    mt_bench: MTBench = param("MT-Bench-style two-turn scores")
    nlu: NLU = param("multiple-choice NLU accuracy (lm-evaluation-harness)")


#: Help of the top-level keys that are no group.
TOP_HELP = {
    "source_language": "the language the recipe starts from (English in the papers)",
    "target_language": "the language the recipe adds (ko, ja, ...): one switch for every language-dependent choice",
    "languages": "the languages the run trains and evaluates on",
}
#: Help of the keys of a generation ``backend`` block (the backends' own options, :mod:`kowen_kedro.llm.backends`).
BACKEND_HELP = {
    "backend": "the engine: transformers | vllm | openai",
    "batch_size": "prompts per generation batch",
    "subprocess": "run the engine in a worker process ended after generation (default: true for vllm)",
    "python": "the worker's interpreter (default: vLLM's own environment for vllm)",
    "tensor_parallel_size": "vllm: GPUs one model is split over",
    "gpu_memory_utilization": "vllm: share of the GPU's memory vLLM may take",
    "max_model_len": "vllm: the longest sequence (prompt + completion) served",
    "base_url": "openai: an OpenAI-compatible endpoint",
    "api_key_env": "openai: the variable holding the key",
    "concurrency": "openai: requests in flight",
}

#: Every top-level key of the parameters: its group (or plain type). ``dpo_iter_*``: one block per iteration.
GROUPS: dict[str, Any] = {
    "source_language": StrictStr,
    "target_language": StrictStr,
    "languages": list[StrictStr],
    "llm": LLM,
    "tiny_world": TinyWorld,
    "models": Models,
    "tiny_models": TinyModels,
    "training": Training,
    "preflight": Preflight,
    "sft": SFT,
    "xl_instruct": XLInstruct,
    "data_synthesis": DataSynthesis,
    "translation_qe": TranslationQE,
    "reward_model": RewardModel,
    "rm_transfer_source": RMTransfer,
    "rm_transfer_target": RMTransfer,
    "preference_alignment": PreferenceAlignment,
    "_dpo": DPO,
    "dpo_iter_*": DPOIteration,
    "cross_lingual": CrossLingual,
    "evaluation": Evaluation,
}


def group_of(key: str) -> Any | None:
    """The group (or type) of a top-level key, ``None`` for a key no group has."""
    return GROUPS.get(key) or next((t for pattern, t in GROUPS.items() if fnmatch.fnmatchcase(key, pattern)), None)


def _plain(annotation: Any) -> Any:
    """``X`` of ``Annotated[X, ...]`` and of ``X | None``."""
    if get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    args = [a for a in get_args(annotation) if a is not type(None)] if get_origin(annotation) in (Union, type(int | None)) else []
    return _plain(args[0]) if len(args) == 1 else annotation


@lru_cache(maxsize=None)
def field_types(cls: type) -> dict[str, Any]:
    """``{field: its annotation}`` of a group (resolved once per class; not to be changed)."""
    import typing

    hints = typing.get_type_hints(cls, include_extras=True)
    return {f.name: hints[f.name] for f in fields(cls)}


def subgroup(cls: Any, name: str) -> Any | None:
    """The group of field ``name`` of ``cls`` (``None`` where the field is not a group)."""
    if not is_dataclass(cls) or name not in field_types(cls):
        return None
    found = _plain(field_types(cls)[name])
    return found if is_dataclass(found) else None


def help_of(path: str) -> str | None:
    """The help of the key at ``path`` (``sft.seed``, ``dpo_iter_2.dpo.reference``); ``None`` where no group
    field is there (a key inside another tool's block)."""
    first, *rest = path.split(".")
    cls = group_of(first)
    if not rest:
        return TOP_HELP.get(first)
    if len(rest) >= 2 and rest[-2] in ("backend", "sampling_backend"):
        return BACKEND_HELP.get(rest[-1])
    for i, name in enumerate(rest):
        found = {f.name: f for f in fields(cls)}.get(name) if is_dataclass(cls) else None
        if found is None:
            return None
        kind = _plain(field_types(cls)[name])
        if i == len(rest) - 1 or get_origin(kind) is dict and kind != Block:
            return str(found.metadata.get("help", ""))  # a key inside a mapping of the group's own: the mapping's help
        cls = subgroup(cls, name)
    return None


def _path(cls: Any, loc: tuple, unknown: bool) -> str:
    """The key path of a pydantic error location: field names, mapping keys and list indices (the tags of a
    union's members dropped; the last item kept where it is an unknown key)."""
    parts: list[str] = []
    for i, item in enumerate(loc):
        if isinstance(item, int):
            parts.append(f"[{item}]")
            cls = _plain(get_args(cls)[0]) if get_origin(cls) is list else cls
        elif is_dataclass(cls) and item in field_types(cls):
            parts.append(f".{item}")
            cls = _plain(field_types(cls)[item])
        elif get_origin(cls) is dict:
            parts.append(f".{item}")
            cls = _plain(get_args(cls)[1])
        elif unknown and i == len(loc) - 1:
            parts.append(f".{item}")
    return "".join(parts).lstrip(".")


UNKNOWN = ("unexpected_keyword_argument", "extra_forbidden")


def _problem(error: dict) -> str:
    kind = error["type"]
    if kind == "missing":
        return "missing (conf/base sets every key of this group)"
    if kind in UNKNOWN:
        return "unknown key"
    value = error.get("input")
    return f"{error['msg'].replace('Input should be', 'expected')}, got {type(value).__name__} {value!r}"


@lru_cache(maxsize=None)
def _adapter(cls: Any) -> TypeAdapter:
    """pydantic's validator of ``cls``, built once per type (building one compiles the type's schema)."""
    return TypeAdapter(cls)


def build(cls: type[G] | Any, values: Any, name: str) -> G:
    """``values`` (a mapping from the configuration) as group ``cls``; :class:`GroupError` names every bad key
    as ``<name>.<path>``."""
    if isinstance(values, Mapping):
        values = dict(values)
    try:
        return _adapter(cls).validate_python(values)
    except ValidationError as exc:
        seen: dict[str, str] = {}
        for error in exc.errors():
            path = _path(cls, tuple(error["loc"]), error["type"] in UNKNOWN)
            full = f"{name}.{path}" if path else name
            seen.setdefault(full, _problem(error))  # a union's members each report the same key: the first says it
        raise GroupError(sorted(seen.items())) from None
