"""On-policy DPO with a perfect reward model: does DPO raise the tiny world's gold reward at all?

Separates "the reward model is too weak" from "DPO adds nothing the student can learn here" (the
finding of docs/effects.md). For each DPO setting it:

1. samples ``k`` completions per prompt from the SFT model (transformers backend, per-request seeds),
   on ``--prompts`` world prompts per language: the SFT prompts (``--fresh`` off, as Kowen's iteration 1
   re-samples its own data) or new ones the SFT model never saw (``--fresh``);
2. scores them with the world's gold reward (:func:`kowen_kedro.world.gold.prompt_gold_rewards`), so
   chosen is always right and rejected always wrong (best vs worst, ties dropped);
3. trains TRL DPO (the project's ``train_stage``, one process) and measures greedy gold on the
   held-out gold prompts before and after, with standard errors.

    .venv/bin/python benchmarks/dpo_upper_bound.py data/06_models/sft_model/<version>/sft_model

Prints one markdown row per setting; the figures in docs/effects.md came from this script.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SETTINGS = [  # (label, trainer_args overrides)
    ("sigmoid, lr 5e-5, 1 epoch (the default's)", {"learning_rate": 5e-5, "num_train_epochs": 1}),
    ("sigmoid, lr 5e-4, 3 epochs", {"learning_rate": 5e-4, "num_train_epochs": 3}),
    ("sigmoid, lr 2e-3, 5 epochs", {"learning_rate": 2e-3, "num_train_epochs": 5}),
    ("sigmoid + NLL on chosen (RPO), lr 1e-3, 3 epochs", {"learning_rate": 1e-3, "num_train_epochs": 3,
                                                         "loss_type": ["sigmoid", "sft"]}),
]


def world_prompts(seed: int, per_language: int, fresh: bool) -> list[tuple[str, str]]:
    from kowen_kedro.world.generate import WorldSizes, build_world

    default = build_world(seed)
    seen = {r["conversation"][0]["content"] for r in default["user_prompts"]}
    pool = build_world(seed, WorldSizes(user_prompts=2000))["user_prompts"] if fresh else default["user_prompts"]
    out = []
    for lang in ("en", "ko"):
        rows = [r for r in pool if r["language"] == lang and len(r["conversation"]) == 1
                and (r["conversation"][0]["content"] not in seen) == fresh]
        out += [(r["conversation_id"], r["conversation"][0]["content"]) for r in rows[:per_language]]
    return out


def main() -> None:
    import pandas as pd

    from kowen_kedro.evaluation.gold import policy_gold
    from kowen_kedro.groups import DPO, Preflight, Training
    from kowen_kedro.llm.backends import SamplingParams, TransformersBackend
    from kowen_kedro.llm.cache import CallCache
    from kowen_kedro.llm.generator import CachedGenerator
    from kowen_kedro.offline import configure_offline
    from kowen_kedro.parameters import recipe_params
    from kowen_kedro.preference.pairs import best_worst_pairs
    from kowen_kedro.training.stages import train_stage
    from kowen_kedro.world.generate import build_world
    from kowen_kedro.world.gold import prompt_gold_rewards

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sft_model", help="the SFT model folder of a default run")
    ap.add_argument("--seed", type=int, default=0, help="tiny_world.seed of that run")
    ap.add_argument("--prompts", type=int, default=400, help="DPO prompts per language")
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--fresh", action="store_true", help="prompts the SFT model was not trained on")
    a = ap.parse_args()
    configure_offline()
    work = Path(tempfile.mkdtemp(prefix="dpo_upper_bound_"))
    cache = CallCache(str(work / "cache.sqlite"))
    prompts = world_prompts(a.seed, a.prompts, a.fresh)
    gen = CachedGenerator(TransformersBackend(a.sft_model, batch_size=64), cache, progress=False)
    outs = gen.generate([[{"role": "user", "content": p}] for _, p in prompts],
                        SamplingParams(max_new_tokens=32, temperature=1.0, top_p=0.95, seed=0), n=a.k)
    samples = pd.DataFrame([{"prompt_id": pid, "prompt": p, "completion": c.text}
                            for (pid, p), s in zip(prompts, outs) for c in s])
    samples["reward"] = prompt_gold_rewards(list(samples["prompt"]), list(samples["completion"]), a.seed)
    pairs = best_worst_pairs(samples)
    records = [{"prompt": [{"role": "user", "content": r["prompt"]}], "chosen": [{"role": "assistant", "content": r["chosen"]}],
                "rejected": [{"role": "assistant", "content": r["rejected"]}]} for r in pairs.to_dict("records")]
    gold = pd.DataFrame(build_world(a.seed)["gold_prompts"])
    greedy = SamplingParams(max_new_tokens=40, temperature=0.0, top_p=1.0)

    def measure(model: str) -> dict:
        return policy_gold(CachedGenerator(TransformersBackend(model, batch_size=64), cache, progress=False), gold, greedy, ["en", "ko"])[1]

    before = measure(a.sft_model)
    print(f"{len(prompts)} prompts, {len(samples)} samples (gold mean {samples['reward'].mean():.3f}), {len(pairs)} gold pairs")
    print("| DPO setting | gold en: SFT -> DPO (diff, 2 SE) | gold ko: SFT -> DPO (diff, 2 SE) |\n|---|---|---|")
    params = recipe_params(ROOT / "conf")
    training = Training.of({**params["training"], "launcher": "python", "world_size": 1, "work_dir": str(work)})
    for label, overrides in SETTINGS:
        args = {"lr_scheduler_type": "cosine", "per_device_train_batch_size": 8, "max_length": 128, "beta": 0.1, **overrides}
        stage = DPO.of({**params["_dpo"], "trainer_args": args, "global_batch_size": 8, "seed": 0}, "dpo_upper_bound")
        rec = train_stage("dpo", "dpo_upper_bound", a.sft_model, records, stage, training, preflight_cfg=Preflight.of(params["preflight"]))
        after = measure(rec["final_dir"])
        cells = [f"{before[lang]:.3f} -> {after[lang]:.3f} ({after[lang] - before[lang]:+.3f}, "
                 f"{2 * math.hypot(before[f'{lang}.se'], after[f'{lang}.se']):.3f})" for lang in ("en", "ko")]
        print(f"| {label} | {cells[0]} | {cells[1]} |", flush=True)
    print(json.dumps({"work_dir": str(work)}))


if __name__ == "__main__":
    main()
