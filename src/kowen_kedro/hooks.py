"""Project hooks: the world oracle's server is stopped when a run ends; API keys from ``conf/<env>/credentials.yml`` into the environment of this process.

Backends and judges read their key from an environment variable (``api_key_env``, default
``OPENAI_API_KEY``). This hook copies ``credentials.yml`` entries of the form
``<name>: {api_key: ..., env: OPENAI_API_KEY}`` (``env`` defaults to ``<NAME>_API_KEY``) into
``os.environ`` when the variable is not set already. Values are never logged.
"""

from __future__ import annotations

import logging
import os
import time

from kedro.framework.hooks import hook_impl

from kowen_kedro import floats

logger = logging.getLogger(__name__)


def export_api_keys(credentials: dict) -> list[str]:
    """Set ``<NAME>_API_KEY`` (or ``env``) from every credentials entry with an ``api_key``; returns the names set."""
    exported = []
    for name, entry in (credentials or {}).items():
        if not isinstance(entry, dict) or not entry.get("api_key"):
            continue
        var = entry.get("env") or f"{name.upper()}_API_KEY"
        if var not in os.environ:
            os.environ[var] = str(entry["api_key"])
            exported.append(var)
    return exported


class CredentialsEnvHook:
    @hook_impl
    def after_context_created(self, context) -> None:
        from kedro.config import MissingConfigException

        try:
            credentials = context.config_loader["credentials"]
        except (KeyError, ValueError, MissingConfigException):  # no credentials file: keys come from the environment
            return
        names = export_api_keys(credentials)
        if names:
            logger.info("API keys taken from credentials.yml: %s (values not shown)", ", ".join(names))


class WorldOracleHook:
    """Stops the world oracle's loopback servers (started on first use by a node) when a run ends."""

    @hook_impl
    def after_pipeline_run(self) -> None:
        from kowen_kedro.world.oracle import stop_servers

        if stop_servers():
            logger.info("world oracle server stopped")

    @hook_impl
    def on_pipeline_error(self) -> None:
        self.after_pipeline_run()


#: The console a person reads (``conf/logging.yml`` sends only this logger, warnings and errors there;
#: everything else goes to ``info.log``).
console = logging.getLogger("kowen_kedro.console")

NEXT_STEPS = ("make mlflow-ui   # the MLflow UI on the local store: this run's metrics and artifacts",
              "make viz         # the pipeline graph (kedro-viz, static build in build/)",
              "make notebook    # compare runs: the claims table, CLO vs SFT+DPO, the iteration curve")


class ConsoleHook:
    """One line per node with its time; at the end, the run's claims table (``gold/effects.md``), the
    MLflow run id and the commands that open the results."""

    def __init__(self) -> None:
        self._total, self._done, self._started, self._t0 = 0, 0, {}, 0.0

    @hook_impl
    def before_pipeline_run(self, run_params: dict, pipeline) -> None:
        self._total, self._done, self._started, self._t0 = len(pipeline.nodes), 0, {}, time.perf_counter()
        console.info("kowen-kedro: %d nodes (env %s); the full log: info.log", self._total, run_params.get("env") or "base")
        console.info("kowen-kedro: %s", floats.describe())

    @hook_impl
    def before_node_run(self, node) -> None:
        self._started[node.name] = time.perf_counter()

    @hook_impl
    def after_node_run(self, node) -> None:
        self._done += 1
        seconds = time.perf_counter() - self._started.pop(node.name, time.perf_counter())
        width = len(str(self._total))
        console.info("[%*d/%d] %-52s %7.1f s", width, self._done, self._total, node.name, seconds)

    @hook_impl
    def on_node_error(self, error: Exception, node) -> None:
        console.error("node %s failed: %s: %s (details: info.log)", node.name, type(error).__name__, error)

    @hook_impl
    def after_pipeline_run(self, pipeline, catalog) -> None:
        lines = [f"Done: {self._done} nodes in {time.perf_counter() - self._t0:.0f} s."]
        if "gold_effects_md" in pipeline.all_outputs():
            try:
                lines += ["", *claims_section(catalog.load("gold_effects_md")),
                          "(per policy, per kind and per language: data/08_reporting/gold/effects.md)"]
            except Exception as exc:  # the run itself succeeded: say why the table is missing, do not fail
                lines.append(f"(claims table not readable: {exc})")
        run_id = _last_mlflow_run_id()
        if run_id:
            lines += ["", f"MLflow run {run_id}"]
        lines += ["", "Next:", *(f"  {c}" for c in NEXT_STEPS)]
        console.info("%s", "\n".join(lines))


def claims_section(effects_md: str) -> list[str]:
    """The claims table of ``gold/effects.md``: its title, introduction and table (before the first ``## ``)."""
    out = []
    for line in effects_md.splitlines():
        if line.startswith("## "):
            break
        out.append(line)
    while out and not out[-1].strip():
        out.pop()
    return out


def _last_mlflow_run_id() -> str | None:
    try:
        import mlflow

        run = mlflow.active_run() or mlflow.last_active_run()
        return run.info.run_id if run else None
    except Exception:  # no tracking store: nothing to point at
        return None


class ParameterCheckHook:
    """The run's parameters against ``conf/base``'s schema (:mod:`kowen_kedro.parameters`), before any
    node and before the MLflow run starts (``tryfirst``)."""

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params: dict, catalog) -> None:
        from pathlib import Path

        from kowen_kedro.parameters import check_run_parameters

        conf = Path(run_params.get("project_path") or ".") / "conf"
        check_run_parameters(conf, run_params.get("env"), catalog.load("parameters"), run_params.get("runtime_params"))
