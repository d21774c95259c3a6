"""Nodes of evaluation: generate on the evaluation prompts, pairwise LLM judge, win rate, language fidelity."""

from __future__ import annotations

import pandas as pd

from kowen_kedro.data.validation import validate_records
from kowen_kedro.evaluation.judges import LocalPairwiseJudge, judge_pairs
from kowen_kedro.evaluation.winrate import win_rate
from kowen_kedro.langid import fidelity
from kowen_kedro.llm.backends import SamplingParams
from kowen_kedro.runtime import as_mlflow_metrics, cached_generator, call_cache, registry_model

EVAL_FIELDS = {"id": str, "language": str, "instruction": str}


def generate_outputs_node(model: str, eval_prompts: pd.DataFrame, params: dict, llm: dict) -> pd.DataFrame:
    """The model's answer to every evaluation instruction (AlpacaEval columns + language)."""
    validate_records(eval_prompts, EVAL_FIELDS)
    gen = cached_generator(model, params["backend"], llm)
    outs = gen.generate(
        [[{"role": "user", "content": p}] for p in eval_prompts["instruction"]], SamplingParams.from_dict(params["sampling"]), n=1
    )
    return eval_prompts[["id", "language", "instruction"]].assign(
        output=[o[0].text for o in outs], finish_reason=[o[0].finish_reason for o in outs], generator=model
    )


def judge_node(model_outputs: pd.DataFrame, reference_outputs: pd.DataFrame, registry: dict, params: dict, llm: dict) -> pd.DataFrame:
    """Pairwise judgements of model vs reference outputs, positions randomised with a seed."""
    ref = reference_outputs.set_index("id").loc[model_outputs["id"]]
    judge = LocalPairwiseJudge(registry_model(registry, "judge"), batch_size=int(params["batch_size"]), cache=call_cache(llm))
    records = judge_pairs(
        judge,
        list(model_outputs["instruction"]),
        list(model_outputs["output"]),
        list(ref["output"]),
        list(model_outputs["language"]),
        seed=int(params["seed"]),
    )
    return pd.concat([model_outputs[["id", "language"]].reset_index(drop=True), pd.DataFrame(records)], axis=1)


def summarize_node(judgements: pd.DataFrame, model_outputs: pd.DataFrame, languages: list[str]) -> tuple[pd.DataFrame, dict]:
    """Win rate +- SE and language fidelity, per language and overall."""
    fid = model_outputs.assign(in_language=fidelity(model_outputs["output"], model_outputs["language"], languages))
    rows = []
    for lang in sorted(judgements["language"].unique()) + ["all"]:
        j = judgements if lang == "all" else judgements[judgements["language"] == lang]
        f = fid if lang == "all" else fid[fid["language"] == lang]
        wr, se = win_rate(j["preference"])
        rows.append({"language": lang, "n": len(j), "win_rate": wr, "win_rate_se": se, "language_fidelity": float(f["in_language"].mean())})
    table = pd.DataFrame(rows)
    metrics = {f"{col}.{r['language']}": r[col] for r in rows for col in ("win_rate", "win_rate_se", "language_fidelity")}
    return table, as_mlflow_metrics(metrics)
