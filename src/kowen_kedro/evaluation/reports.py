"""The run report: every evaluation number in one long table, its markdown, and the iteration curve."""

from __future__ import annotations

import pandas as pd

REPORT_COLUMNS = ["benchmark", "metric", "language", "value"]


#: The AlpacaEval numbers of each judged set (alpaca_eval's names; ``win_rate_se`` is its ``standard_error``).
WIN_RATE_METRICS = ["win_rate", "win_rate_se", "discrete_win_rate", "length_controlled_winrate", "lc_standard_error", "n",
                    "n_dropped", "language_fidelity"]


def _melt(df: pd.DataFrame, benchmark: str, metrics: list[str]) -> list[dict]:
    rows = []
    for r in df.to_dict("records"):
        for m in metrics:
            if m in r and not pd.isna(r[m]):
                rows.append({"benchmark": benchmark, "metric": m, "language": r.get("language", "all"), "value": float(r[m])})
    return rows


def report_table(alpacaeval: pd.DataFrame, xl: pd.DataFrame, mt_bench: pd.DataFrame, rubric: pd.DataFrame,
                 nlu: pd.DataFrame, m: pd.DataFrame | None = None) -> pd.DataFrame:
    """``benchmark, metric, language, value`` rows: win rates (+SE, fidelity), MT-Bench turns, rubric, NLU."""
    rows = _melt(alpacaeval, "alpacaeval", WIN_RATE_METRICS)
    if m is not None:
        rows += _melt(m, "m_alpacaeval", WIN_RATE_METRICS)
    rows += _melt(xl, "xl_alpacaeval", WIN_RATE_METRICS)
    rows += _melt(mt_bench, "mt_bench", ["turn1", "turn2", "average", "language_fidelity"])
    rows += _melt(rubric, "rubric", ["objectivity", "naturalness", "informativeness", "precision"])
    for r in nlu.to_dict("records"):
        task = r["task"]
        lang = task.rsplit("_", 1)[-1] if task.startswith("kowen_mc_") else "all"
        rows.append({"benchmark": f"nlu:{task}", "metric": r["metric"], "language": lang, "value": float(r["value"])})
    return pd.DataFrame(rows, columns=REPORT_COLUMNS)


def absent_notes(*summaries: pd.DataFrame) -> list[str]:
    """One line per judged set whose length-controlled win rate is absent, with the reason."""
    notes = []
    for s in summaries:
        if "lc_absent" in s.columns and len(s):
            overall = s.iloc[-1]
            if isinstance(overall["lc_absent"], str) and overall["lc_absent"]:
                notes.append(f"{overall['benchmark']}: no length-controlled win rate: {overall['lc_absent']}")
    return notes


def report_markdown(table: pd.DataFrame, notes: list[str] | None = None) -> str:
    """A benchmark x metric by language grid, numbers to 2 decimals; ``notes`` (what is absent and why) below."""
    wide = table.pivot_table(index=["benchmark", "metric"], columns="language", values="value", aggfunc="first", sort=False)
    langs = list(wide.columns)
    lines = ["| benchmark | metric | " + " | ".join(langs) + " |", "|---|---|" + "---|" * len(langs)]
    for (bench, metric), values in wide.iterrows():
        cells = ["" if pd.isna(values[lang]) else f"{values[lang]:.2f}" for lang in langs]
        lines.append(f"| {bench} | {metric} | " + " | ".join(cells) + " |")
    if notes:
        lines += ["", *(f"- {n}" for n in notes)]
    return "\n".join(lines) + "\n"


def iteration_curve_figure(curve: pd.DataFrame):
    """Win rate (with SE bars) and language fidelity per DPO iteration, one line per language."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    for lang, part in curve.groupby("language", sort=True):
        ax1.errorbar(part["iteration"], part["win_rate"], yerr=part["win_rate_se"], marker="o", capsize=3, label=lang)
        ax2.plot(part["iteration"], 100 * part["language_fidelity"], marker="o", label=lang)
    ax1.axhline(50, color="grey", lw=0.8, ls="--")
    ax1.set(xlabel="DPO iteration", ylabel="win rate vs reference (%)", title="Win rate per iteration")
    ax2.set(xlabel="DPO iteration", ylabel="in requested language (%)", title="Language fidelity", ylim=(0, 105))
    for ax in (ax1, ax2):
        ax.set_xticks(sorted(curve["iteration"].unique()) if len(curve) else [])
    return legend_above(fig, ax1)


def legend_above(fig, ax, rows: float = 0.12):
    """One legend for the figure, above its axes: never on the data (error bars, bars, curves)."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="upper center", ncol=min(len(labels), 4), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - rows) if handles else None)
    return fig
