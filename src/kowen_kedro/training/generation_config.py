"""Give a trained chat model the stop tokens of its chat template.

Base checkpoints often ship an EOS that is not the chat template's end-of-turn token: Qwen2.5-7B (base)
has ``eos_token_id = <|endoftext|>`` (151643) in config and generation config, while its ChatML template
ends every assistant turn with ``<|im_end|>`` (151645). A model fine-tuned on that template stops with
``<|im_end|>``; if the saved ``generation_config.json`` still says ``<|endoftext|>``, ``generate`` and
vLLM run on to ``max_new_tokens``. Qwen2.5-7B-Instruct ships ``eos_token_id: [151645, 151643]`` -
:func:`finalize_generation_config` writes the same shape for any model and template.
"""

from __future__ import annotations

import logging
from pathlib import Path

logger = logging.getLogger(__name__)

_MARK = "KOWEN_END_OF_TURN_PROBE"


def end_of_turn_token_id(tokenizer) -> int | None:
    """The first special token the chat template puts after an assistant message, or None.

    Found by rendering a one-turn conversation and reading what follows the assistant text
    (``<|im_end|>`` for ChatML, ``<|eot_id|>`` for Llama 3, ``<end_of_turn>`` for Gemma).
    """
    if not getattr(tokenizer, "chat_template", None):
        return None
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": _MARK}], tokenize=False
    )
    if _MARK not in text:
        return None
    suffix = text.split(_MARK, 1)[1]
    special = set(tokenizer.all_special_ids) | set(getattr(tokenizer, "added_tokens_decoder", {}) or {})
    for token_id in tokenizer(suffix, add_special_tokens=False)["input_ids"]:
        if token_id in special:
            return int(token_id)
    return None


def _as_list(value) -> list[int]:
    if value is None:
        return []
    return [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)]


def finalize_generation_config(model_dir: str | Path, tokenizer, base_model: str | None = None):
    """Write ``generation_config.json`` in ``model_dir`` with the template's end-of-turn token first.

    Starts from the base model's generation config (sampling defaults), else the saved one, else the
    model config; ``eos_token_id`` becomes ``[end_of_turn, *previous eos, tokenizer.eos]`` without
    repeats, ``pad_token_id`` the tokenizer's pad (else its EOS). Returns the saved GenerationConfig.
    """
    from transformers import AutoConfig, GenerationConfig

    model_dir = Path(model_dir)
    gen = None
    for source in (base_model, str(model_dir)):
        if not source:
            continue
        try:
            gen = GenerationConfig.from_pretrained(source)
            break
        except (OSError, ValueError):
            continue
    if gen is None:
        gen = GenerationConfig.from_model_config(AutoConfig.from_pretrained(model_dir))
    eos: list[int] = []
    for token_id in [end_of_turn_token_id(tokenizer), *_as_list(gen.eos_token_id), tokenizer.eos_token_id]:
        if token_id is not None and token_id not in eos:
            eos.append(int(token_id))
    if not eos:
        raise ValueError(f"{model_dir}: no EOS token in the tokenizer, the chat template or the generation config")
    gen.eos_token_id = eos if len(eos) > 1 else eos[0]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else gen.pad_token_id
    gen.pad_token_id = int(pad) if pad is not None else eos[-1]
    gen.save_pretrained(model_dir)
    logger.info("generation_config: eos_token_id=%s pad_token_id=%s", gen.eos_token_id, gen.pad_token_id)
    return gen
