"""Project hooks: the world oracle's server is stopped when a run ends; API keys from ``conf/<env>/credentials.yml`` into the environment of this process.

Backends and judges read their key from an environment variable (``api_key_env``, default
``OPENAI_API_KEY``). This hook copies ``credentials.yml`` entries of the form
``<name>: {api_key: ..., env: OPENAI_API_KEY}`` (``env`` defaults to ``<NAME>_API_KEY``) into
``os.environ`` when the variable is not set already. Values are never logged.
"""

from __future__ import annotations

import logging
import os
import re
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
        self._bars_aware = None

    def _write_beside_bars(self) -> None:
        """Node lines through ``tqdm.write`` while the run lasts (tqdm's ``logging_redirect_tqdm``): stages run
        side by side, so a line can arrive while a launch's progress bar is drawn; the bars are cleared, the
        line printed on a line of its own, the bars redrawn."""
        from contextlib import ExitStack

        from tqdm.auto import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm

        self._bars_aware = ExitStack()
        self._bars_aware.enter_context(logging_redirect_tqdm(loggers=[console], tqdm_class=tqdm))

    def _write_plainly(self) -> None:
        if self._bars_aware is not None:
            self._bars_aware.close()
            self._bars_aware = None

    @hook_impl
    def before_pipeline_run(self, run_params: dict, pipeline) -> None:
        self._total, self._done, self._started, self._t0 = len(pipeline.nodes), 0, {}, time.perf_counter()
        self._write_beside_bars()
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
        console.info("[%*d/%d] %-56s %7.1f s", width, self._done, self._total, node.name, seconds)

    @hook_impl
    def on_node_error(self, error: Exception, node) -> None:
        console.error("node %s failed: %s: %s (details: info.log)", node.name, type(error).__name__, error)

    @hook_impl
    def on_pipeline_error(self) -> None:
        self._write_plainly()

    @hook_impl
    def after_pipeline_run(self, pipeline, catalog) -> None:
        self._write_plainly()
        lines = [f"Done: {self._done} nodes in {time.perf_counter() - self._t0:.0f} s."]
        if "gold_effects_md" in pipeline.all_outputs():
            try:
                lines += ["", *claims_section(catalog.load("gold_effects_md")),
                          "(per policy, per kind and per language: data/08_reporting/gold/effects.md)"]
            except Exception as exc:  # the run itself succeeded: say why the table is missing, do not fail
                lines.append(f"(claims table not readable: {exc})")
        run_id = _last_mlflow_run_id()
        if run_id:
            lines += ["", f"MLflow run {run_id}", f"  {mlflow_ui_url(run_id)}  (after make mlflow-ui: its policies as child runs)"]
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


def mlflow_ui_url(run_id: str, base: str = "http://127.0.0.1:5000") -> str:
    """The run's experiment page in the MLflow UI, in its model-training view (MLflow 3 opens the GenAI
    view unless the link or the browser's last choice says otherwise)."""
    try:
        import mlflow

        experiment = mlflow.get_run(run_id).info.experiment_id
    except Exception:
        return f"{base}/#/?workflowType=machine_learning"
    return f"{base}/#/experiments/{experiment}/runs?workflowType=machine_learning"


def _last_mlflow_run_id() -> str | None:
    try:
        import mlflow

        run = mlflow.active_run() or mlflow.last_active_run()
        return run.info.run_id if run else None
    except Exception:  # no tracking store: nothing to point at
        return None


def run_name(run_params: dict, params: dict) -> str:
    """The parent run's name: environment, languages and world seed, and the pipeline when not the default
    (``base · en-ko · seed 0``, ``kowen_7b · en-ko · seed 0 · sft``)."""
    parts = [run_params.get("env") or "base",
             f"{params.get('source_language', 'en')}-{params.get('target_language', '?')}",
             f"seed {(params.get('tiny_world') or {}).get('seed', 0)}"]
    pipelines = run_params.get("pipeline_names") or [run_params.get("pipeline_name") or "__default__"]
    if isinstance(pipelines, str):
        pipelines = [pipelines]
    if [p for p in pipelines if p and p != "__default__"]:
        parts.append("+".join(p for p in pipelines if p))
    if run_params.get("node_names") or run_params.get("from_nodes") or run_params.get("to_nodes") or run_params.get("to_outputs"):
        parts.append("partial")
    return " · ".join(parts)


class MlflowLayoutHook:
    """The MLflow layout of :mod:`kowen_kedro.tracking` on top of kedro-mlflow's run: the parent's name,
    readable tags and (at the end) a description holding the claims table; the experiment opens in the
    model-training view; CPU / memory system metrics; a child run per policy and reward model with the
    gold metrics; the world and the training data as logged inputs."""

    #: the world's parts, logged as the parent's inputs when a node loads them
    WORLD = ("user_prompts_raw", "preference_pairs_raw", "seed_passages_raw", "eval_prompts_raw", "mt_bench_prompts_raw",
             "nlu_mc_raw", "parallel_sentences_raw", "gold_prompts", "gold_pairs", "gold_translations")
    #: training data, logged as the parent's inputs when a node saves them (each launch logs its own into its child)
    TRAINING = re.compile(r"^(sft_dataset|rm_train_pairs|clo_pairs|xl_instruct_sft|dpo_iter_\d+\.preference_pairs)$")

    #: seconds between two samples of CPU, memory, disk and network (and GPU where there is one)
    SYSTEM_METRICS_INTERVAL = 10

    def __init__(self) -> None:
        self.layout, self._logged, self._monitor = None, set(), None

    def _start_system_metrics(self, run_id: str) -> None:
        """MLflow's system-metrics sampler on the parent, once per run (MLflow's global switch would start one
        per node: kedro-mlflow reopens the run before every node)."""
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        self._monitor = SystemMetricsMonitor(run_id, sampling_interval=self.SYSTEM_METRICS_INTERVAL)
        self._monitor.start()

    def _finish(self, status: str) -> None:
        if self._monitor is not None:
            self._monitor.finish()
            self._monitor = None
        if self.layout is not None:
            self.layout.end(status)
        self.layout = None

    @hook_impl(trylast=True)  # after kedro-mlflow's hook has started the run
    def before_pipeline_run(self, run_params: dict, catalog) -> None:
        import mlflow

        from kowen_kedro.tracking import EXPERIMENT_KIND, RunLayout

        run = mlflow.active_run()
        if run is None:
            self.layout = None
            return
        try:
            self.layout = RunLayout(run.info.run_id)
            client = self.layout.client
            client.set_experiment_tag(run.info.experiment_id, *EXPERIMENT_KIND)
            client.set_tag(run.info.run_id, "mlflow.runName", run_name(run_params, catalog.load("parameters")))
            client.set_tag(run.info.run_id, "env", run_params.get("env") or "base")
            tags = self.layout.parent.data.tags  # as kedro-mlflow set them from Kedro's run_params
            # the class, not "<kedro.runner...SequentialRunner object at 0x7f...>", nor "None" when the command
            # named none (Kedro then runs its default, the SequentialRunner)
            runner = re.search(r"(\w+Runner)\b", str(tags.get("runner") or run_params.get("runner") or ""))
            client.set_tag(run.info.run_id, "runner", runner.group(1) if runner else "SequentialRunner")
            if "run_id" in tags:  # Kedro's session id, beside MLflow's own run id: named as what it is
                client.set_tag(run.info.run_id, "kedro_session_id", tags["run_id"])
                client.delete_tag(run.info.run_id, "run_id")
            self.layout, self._logged = RunLayout(run.info.run_id), set()  # with the tags children copy
            self._start_system_metrics(run.info.run_id)
        except Exception as err:  # tracking trouble must never stop a run
            logger.warning("MLflow layout disabled for this run: %s", err)
            self.layout = None

    @hook_impl
    def after_dataset_loaded(self, dataset_name: str, data) -> None:
        if dataset_name in self.WORLD:
            self._log_input(dataset_name, data, "world")

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data) -> None:
        if self.layout is None:
            return
        if dataset_name == "gold_metrics":
            try:
                self.layout.log_gold(data)
            except Exception as err:
                logger.warning("MLflow: the gold metrics not logged into the child runs: %s", err)
        elif self.TRAINING.match(dataset_name):
            self._log_input(dataset_name, data, "training")

    def _log_input(self, name: str, data, context: str) -> None:
        """``data`` (a DataFrame) as an input of the parent run, with its digest, once per run."""
        if self.layout is None or name in self._logged or not hasattr(data, "columns"):
            return
        from kowen_kedro.tracking import dataset_input, log_dataset

        try:
            source = getattr(data, "attrs", {}).get("source") or name
            log_dataset(self.layout.client, self.layout.parent_id, dataset_input(data, name, source), context)
            self._logged.add(name)
        except Exception as err:
            logger.warning("MLflow: input %s not logged: %s", name, err)

    @hook_impl(tryfirst=True)  # before kedro-mlflow's hook ends the run
    def after_pipeline_run(self, pipeline, catalog) -> None:
        if self.layout is None:
            return
        try:
            note = [f"kedro run of {len(pipeline.nodes)} nodes."]
            if "gold_effects_md" in pipeline.all_outputs():
                note = [*claims_section(catalog.load("gold_effects_md")), "",
                        "Per policy and reward model: the child runs (select two, then Compare)."]
            self.layout.client.set_tag(self.layout.parent_id, "mlflow.note.content", "\n".join(note))
            self._finish("FINISHED")
        except Exception as err:
            logger.warning("MLflow: the run's description and child runs not finished: %s", err)
        self.layout = None

    @hook_impl
    def on_pipeline_error(self) -> None:
        try:
            self._finish("FAILED")
        except Exception as err:
            logger.warning("MLflow: child runs not ended: %s", err)
        self.layout = None


class TinyBuildHook:
    """Where the run builds the tiny models from nothing (its pipeline holds the build and no built models are
    in ``tiny_models.out_dir``), the QE model's build process starts as the run begins
    (:func:`kowen_kedro.tiny.build.prestart_qe_child`; ``kedro run`` starts it before Kedro does,
    :mod:`kowen_kedro.cli`): it imports its libraries while Kedro starts the MLflow run and the runner, on a
    core that is idle then, and the build hands it its inputs. Runs that find the models built (the build
    checks that they are current), or do not build them, start none (and end one the command started)."""

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, pipeline, catalog) -> None:
        from kowen_kedro.tiny import build

        builds = any(getattr(node.func, "__name__", None) == "build_tiny_models_node" for node in pipeline.nodes)
        if builds and not build.built_in(catalog.load("params:tiny_models")["out_dir"]):
            build.prestart_qe_child()
        else:
            build.discard_prestarted_qe_child()


class ParameterCheckHook:
    """The run's parameters against ``conf/base``'s schema (:mod:`kowen_kedro.parameters`), before any
    node and before the MLflow run starts (``tryfirst``)."""

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params: dict, catalog) -> None:
        from pathlib import Path

        from kowen_kedro.parameters import check_run_parameters

        conf = Path(run_params.get("project_path") or ".") / "conf"
        check_run_parameters(conf, run_params.get("env"), catalog.load("parameters"), run_params.get("runtime_params"))
