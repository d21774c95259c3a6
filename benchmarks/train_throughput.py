"""`make bench-gpu`: SFT and DPO training throughput (tokens/s) and MFU through the project's launcher.

A Qwen2.5-0.5B- or 1.5B-shaped model with random weights is built from its config (no hub), saved, and
trained for a few steps by the same path as every training here: ``LaunchSpec`` -> ``deepspeed`` ->
``kowen_kedro.training.entry`` -> TRL, bf16 (on a GPU that has it), ZeRO-3, one process per GPU.
Every sequence is exactly ``--seq-len`` tokens (long texts truncated by TRL's ``max_length``), so
tokens per step are known; steady-state seconds per step come from a step timer callback in the child
(device-synchronised; the first ``--warmup`` steps left out). FLOPs: PaLM convention, see
:mod:`kowen_kedro.training.throughput`.

    python benchmarks/train_throughput.py --shape qwen2.5-0.5b            # on a GPU: ZeRO-3 through deepspeed
    python benchmarks/train_throughput.py --shape qwen2.5-0.5b --auto     # the settings chosen for this GPU
    python benchmarks/train_throughput.py --shape micro --steps 4 --seq-len 64 --batch 2   # CPU smoke run
    python benchmarks/train_throughput.py --shape qwen2.5-0.5b --auto --kinds sft --data variable [--packing]

``--auto`` trains with the settings the recipes' ``auto`` values choose for the GPU at hand
(:func:`kowen_kedro.training.preflight.choose_settings`: the lowest ZeRO stage that fits, or one process
without DeepSpeed; gradient checkpointing only where needed; the largest per-device batch that fits), on
the same data, steps and global batch as the fixed run, so the two rows compare the paths and their
mean training loss must agree. The ``--auto`` path also takes the kernels and attention chosen for the
hardware (:mod:`kowen_kedro.training.kernels`: Liger's fused RMSNorm / RoPE / SwiGLU where installed, else
compiled decoder layers; FlashAttention 2 where installed); the fixed path runs eager layers on SDPA.

``--data variable`` trains SFT on chats of mixed lengths (the shipped prompts, one to a few joined per
turn, up to ``--seq-len``) instead of full-length rows; ``--packing`` packs them best-fit without padding
(TRL's ``bfd`` strategy). Tokens there are TRL's own count of the tokens trained on (padding left out), so
the packed and unpacked rows compare useful tokens per second. Results are printed as a markdown table and written to ``data/08_reporting/bench_gpu_<shape>.json``.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Architecture of the public Qwen2.5 checkpoints (their config.json); weights are random here.
SHAPES = {
    "qwen2.5-0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                         num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
    "qwen2.5-1.5b": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                         num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
    "micro": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,  # heads of 32: vLLM serves it on a CPU
                  num_key_value_heads=1, vocab_size=4096, tie_word_embeddings=True),
}
#: Per-device batch (sequences for SFT, pairs for DPO) that fits an 80 GB GPU at 2048 tokens without
#: gradient checkpointing (the activations dominate: TRL computes the LM-head loss in chunks).
DEFAULT_BATCH = {"qwen2.5-0.5b": {"sft": 8, "dpo": 4}, "qwen2.5-1.5b": {"sft": 4, "dpo": 2}, "micro": {"sft": 2, "dpo": 2}}


def shipped_texts() -> list[str]:
    """Every message of the shipped sample prompts (plain JSON: no Kedro needed on a bare GPU machine)."""
    rows = [json.loads(line) for line in (ROOT / "data" / "01_raw" / "user_prompts.jsonl").read_text().splitlines() if line.strip()]
    return [m["content"] for row in rows for m in row["conversation"]]


def build_model(shape: str, seq_len: int, work: Path) -> Path:
    """Tokenizer trained on the shipped text (its ids all fall inside the model's vocabulary) + a random model."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    from kowen_kedro.tiny.build import IM_END, PAD_TOKEN, train_chat_tokenizer

    texts = shipped_texts()
    out = work / f"{shape}-random"
    tok = train_chat_tokenizer(texts, vocab_size=2048, out_dir=out)
    cfg = Qwen2Config(**SHAPES[shape], max_position_embeddings=max(4096, seq_len),
                      bos_token_id=tok.convert_tokens_to_ids(PAD_TOKEN), eos_token_id=tok.convert_tokens_to_ids(IM_END),
                      pad_token_id=tok.convert_tokens_to_ids(PAD_TOKEN))
    torch.manual_seed(0)
    dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    model = Qwen2ForCausalLM(cfg).to(dtype)
    model.generation_config = GenerationConfig(eos_token_id=cfg.eos_token_id, pad_token_id=cfg.pad_token_id)
    model.save_pretrained(out)
    return out


def long_texts(model_dir: Path, n: int, min_tokens: int, seed: int) -> list[str]:
    """``n`` texts of random (non-special) tokens, each longer than ``min_tokens`` after re-tokenisation."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    rng = random.Random(seed)
    special = set(tok.all_special_ids)
    ids = [i for i in range(len(tok)) if i not in special]
    texts = []
    while len(texts) < n:
        text = tok.decode([rng.choice(ids) for _ in range(2 * min_tokens)])
        if len(tok(text, add_special_tokens=False)["input_ids"]) > min_tokens + 8:
            texts.append(text)
    return texts


def variable_chats(n: int, seed: int) -> list[dict]:
    """``n`` SFT chats of mixed lengths from the shipped texts: each turn joins one to eight of them."""
    rng = random.Random(seed)
    texts = shipped_texts()

    def turn() -> str:
        return " ".join(rng.choice(texts) for _ in range(rng.randint(1, 8)))

    return [{"messages": [{"role": "user", "content": turn()}, {"role": "assistant", "content": turn()}]} for _ in range(n)]


def run_one(kind: str, model_dir: Path, args, work: Path) -> dict:
    from transformers import AutoConfig

    from kowen_kedro.training.launcher import launch
    from kowen_kedro.training.spec import LaunchSpec, zero_config
    from kowen_kedro.training.throughput import dpo_flops_per_token, peak_tflops, train_flops_per_token

    batch = args.batch or DEFAULT_BATCH[args.shape][kind]
    launcher, zero_stage, gc = "deepspeed", args.zero_stage, args.gradient_checkpointing
    accumulation = 1
    if args.auto:
        launcher, zero_stage, gc, micro = auto_settings(kind, model_dir, args, batch)
        accumulation, batch = batch // micro, micro  # the same global batch and data as the fixed run
    steps = args.steps
    rows_needed = batch * accumulation * args.world_size * steps
    variable = kind == "sft" and args.data == "variable"
    texts = [] if variable else long_texts(model_dir, rows_needed * (2 if kind == "dpo" else 1) + 1, args.seq_len, seed=1)
    data = work / f"{kind}.jsonl"
    if variable:  # packing fits several rows in one sequence: enough rows for every step either way
        rows = variable_chats(rows_needed * (8 if args.packing else 1), seed=1)
    elif kind == "sft":
        rows = [{"text": t} for t in texts[:rows_needed]]
    else:  # prompt + completion are truncated together to max_length: both sequences are seq_len long
        rows = [{"prompt": "Q:", "chosen": texts[2 * i], "rejected": texts[2 * i + 1]} for i in range(rows_needed)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    timer = work / f"{kind}_steps.json"
    trainer_args = {
        "max_steps": steps, "learning_rate": 1e-5, "lr_scheduler_type": "constant", "per_device_train_batch_size": batch,
        "max_length": args.seq_len, "save_strategy": "no", "logging_steps": steps,
        "gradient_checkpointing": gc, "gradient_accumulation_steps": accumulation,
    }
    if kind == "sft":
        trainer_args["packing"] = args.packing
    if args.liger:
        trainer_args["use_liger_kernel"] = True
    spec = LaunchSpec(
        kind=kind, model=str(model_dir), train_file=str(data), output_dir=str(work / f"run-{kind}"),
        ref_model=str(model_dir) if kind == "dpo" else None, trainer_args=trainer_args,
        deepspeed=zero_config(zero_stage) if launcher == "deepspeed" else None, world_size=args.world_size,
        mlflow_prefix=f"bench_{kind}", kernels="auto" if args.auto else "none",
        attn_implementation="auto" if args.auto else None,
        callbacks=[{"class": "kowen_kedro.training.throughput:step_timer_callback", "kwargs": {"path": str(timer), "warmup_steps": args.warmup}}],
    )
    record = launch(spec, launcher=launcher)
    timing = json.loads(timer.read_text())
    cfg = AutoConfig.from_pretrained(model_dir)
    sequences = batch * accumulation * args.world_size * (2 if kind == "dpo" else 1)
    tokens_per_step = sequences * args.seq_len
    if variable:  # TRL's count of the tokens trained on (no padding), spread evenly over the steps
        tokens_per_step = timing["num_tokens"] / timing["steps"]
    settings = record.get("settings", {})
    tokens_per_s = tokens_per_step / timing["seconds_per_step"]
    flops_token = (dpo_flops_per_token if kind == "dpo" else train_flops_per_token)(cfg, args.seq_len)
    peak = peak_tflops(timing["device"])
    achieved = tokens_per_s * flops_token / 1e12
    return {
        "kind": kind, "shape": args.shape, "device": timing["device"], "world_size": args.world_size,
        "path": "auto" if args.auto else "fixed", "launcher": launcher, "zero_stage": zero_stage if launcher == "deepspeed" else None,
        "seq_len": args.seq_len, "per_device_batch": batch, "accumulation": accumulation,
        "gradient_checkpointing": gc, "liger": args.liger, "data": args.data if kind == "sft" else "fixed",
        "kernels": settings.get("kernels"), "attn_implementation": settings.get("attn_implementation"),
        "packing": settings.get("packing", False), "tokens_per_step": tokens_per_step,
        "loss": timing["losses"][-1][1] if timing.get("losses") else None,
        "steps_timed": timing["steps"] - timing["warmup_steps"], "seconds_per_step": timing["seconds_per_step"],
        "tokens_per_s": tokens_per_s, "tokens_per_s_per_gpu": tokens_per_s / args.world_size,
        "model_tflops_per_s": achieved, "mfu": achieved / (peak * args.world_size) if peak else None,
        "peak_tflops_per_gpu": peak, "max_memory_allocated_gib": timing["max_memory_allocated_gib"],
        "flops_per_token": flops_token,
    }


def auto_settings(kind: str, model_dir: Path, args, global_per_gpu: int) -> tuple[str, int, bool, int]:
    """(launcher, ZeRO stage, gradient checkpointing, per-device batch) that the recipes' ``auto`` values
    choose for this GPU, for a global batch of ``global_per_gpu`` sequences (pairs) per GPU."""
    import torch

    from kowen_kedro.training import preflight

    props = torch.cuda.get_device_properties(0) if torch.cuda.is_available() else None
    gpu = preflight.gpu_kind(props.name, props.total_memory / 2**30) if props else None
    from kowen_kedro.parameters import merge, recipe_params

    base = recipe_params(ROOT / "conf")
    settings = preflight.Settings.from_params(merge([base, {"training": {"world_size": args.world_size, "gpu": gpu or "h100-80gb",
                                                                         "launcher": "auto", "deepspeed": {"zero_stage": "auto"}}}]))
    chosen = preflight.choose_settings(preflight.model_shape(str(model_dir)), settings,
                                       {"per_device_train_batch_size": "auto", "gradient_checkpointing": "auto",
                                        "max_length": args.seq_len}, global_per_gpu * args.world_size, "full", None,
                                       sequences_per_row=2 if kind == "dpo" else 1, reference=kind == "dpo")
    return chosen["launcher"], chosen["zero_stage"], chosen["gradient_checkpointing"], chosen["per_device_train_batch_size"]


def markdown(results: list[dict]) -> str:
    lines = ["| run | device | seq x batch | s/step | tokens/s | model TFLOP/s | MFU | peak mem | mean loss |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
        mem = f"{r['max_memory_allocated_gib']:.1f} GiB" if r["max_memory_allocated_gib"] is not None else "n/a"
        layout = f"ZeRO-{r['zero_stage']}" if r.get("launcher", "deepspeed") == "deepspeed" else "one process, no DeepSpeed"
        lines.append(f"| {r['kind']} {r['shape']} {r.get('path', 'fixed')}: {layout} x{r['world_size']}"
                     f"{' +GC' if r['gradient_checkpointing'] else ''}{' +liger' if r['liger'] else ''}"
                     f"{' kernels ' + r['kernels'] if r.get('kernels') not in (None, 'none') else ''}"
                     f"{' ' + r['attn_implementation'] if r.get('attn_implementation') else ''}"
                     f"{', variable lengths' if r.get('data') == 'variable' else ''}{', packed' if r.get('packing') else ''} | {r['device']} | "
                     f"{r['seq_len']} x {r['per_device_batch']}{' x ' + str(r['accumulation']) + ' acc' if r.get('accumulation', 1) > 1 else ''} | "
                     f"{r['seconds_per_step']:.3f} | {r['tokens_per_s']:.0f} | "
                     f"{r['model_tflops_per_s']:.1f} | {mfu} | {mem} | {r['loss'] if r.get('loss') is not None else 'n/a'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="qwen2.5-0.5b")
    parser.add_argument("--kinds", nargs="+", choices=["sft", "dpo"], default=["sft", "dpo"])
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=None, help="per-device batch (default: per shape and kind)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5, help="first steps left out of the timing")
    parser.add_argument("--world-size", type=int, default=1)
    parser.add_argument("--zero-stage", type=int, default=3)
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--liger", action="store_true", help="TRL use_liger_kernel (the gpu extra)")
    parser.add_argument("--auto", action="store_true", help="the settings the recipes' auto values choose for this GPU")
    parser.add_argument("--data", choices=["fixed", "variable"], default="fixed",
                        help="SFT rows: all --seq-len tokens long (fixed), or chats of mixed lengths (variable)")
    parser.add_argument("--packing", action="store_true", help="SFT: pack the rows without padding (TRL bfd)")
    parser.add_argument("--work", default=None, help="folder for the model and runs (default: a temporary one)")
    parser.add_argument("--out", default=None, help="JSON results (default: data/08_reporting/bench_gpu_<shape>.json)")
    args = parser.parse_args(argv)
    if args.steps <= args.warmup:
        parser.error("--steps must be larger than --warmup")

    from kowen_kedro.offline import configure_offline

    configure_offline()
    with tempfile.TemporaryDirectory(prefix="kowen-bench-") as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        model_dir = build_model(args.shape, args.seq_len, work)
        results = [run_one(kind, model_dir, args, work) for kind in args.kinds]
    name = (f"bench_gpu_{args.shape}{'_auto' if args.auto else ''}{'_variable' if args.data == 'variable' else ''}"
            f"{'_packed' if args.packing else ''}.json")
    return write_results(results, Path(args.out or ROOT / "data" / "08_reporting" / name), markdown(results))


def write_results(results, out: Path, table: str):
    """Save ``results`` as JSON at ``out``, print the markdown ``table``; return ``results``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(table)
    print(f"\nwritten to {out}")
    return results


if __name__ == "__main__":
    main()
