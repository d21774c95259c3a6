"""Project CLI (Kedro loads ``<package>.cli.cli`` over its built-in commands): kedro's own ``run``, except
that a run stopped by bad input data ends with a short message as the last thing printed, a run that will
build the tiny models starts their QE model's process before Kedro starts (:func:`prestart_tiny_build`), and
the interpreter's objects are frozen out of the garbage collector once the run is over (a faster exit).

A :class:`~kowen_kedro.data.validation.DataValidationError` (a raw file's bad line, a missing field, a
wrong role order, ...) reaches the user wrapped in Kedro's ``DatasetError`` inside a ~200-line
traceback. Here the run ends with three lines instead (file, line, field, what was expected, and where
the full traceback went: ``logs/last_error.log``) and exit status 1. Parameters that do not fit
``conf/base`` (:mod:`kowen_kedro.parameters`) end it the same way, one line per problem, before any node. Any other error keeps Kedro's
traceback. Nothing is half-written: every dataset of this project saves through a temporary file, and
raw inputs are validated before any model work.
"""

from __future__ import annotations

import gc
import traceback
from pathlib import Path

import click
from kedro.framework.cli.project import run as kedro_run

from kowen_kedro.data.validation import DataValidationError

ERROR_LOG = Path("logs") / "last_error.log"


def _behind(exc: BaseException, kind: type[BaseException]):
    """The ``kind`` error behind ``exc`` (itself, or a cause or context of it), else None."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, kind):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def data_error(exc: BaseException) -> DataValidationError | None:
    """The data error behind ``exc``, else None."""
    return _behind(exc, DataValidationError)


def short_message(err: DataValidationError, log: Path) -> str:
    """What the user reads last: which file, line and field, what is wrong, where the traceback is."""
    where = [f"file {err.source}"] + ([f"line {err.line}"] if err.line is not None else []) + (
        [f"field '{err.field}'"] if err.field else [])
    return (f"kedro run stopped: bad input data, nothing was trained on it.\n"
            f"  {', '.join(where)}: {err.problem}\n"
            f"  (full traceback: {log})")


def parameter_error(exc: BaseException):
    """The :class:`~kowen_kedro.parameters.ParameterError` behind ``exc``, else None."""
    from kowen_kedro.parameters import ParameterError

    return _behind(exc, ParameterError)


#: The runner of ``kedro run`` unless ``--runner`` names another (training launches side by side).
DEFAULT_RUNNER = "kowen_kedro.runner.StageRunner"


def _run(**kwargs):
    kwargs["runner"] = kwargs.get("runner") or DEFAULT_RUNNER
    prestart_tiny_build(kwargs.get("env"), kwargs.get("conf_source"), kwargs.get("params"))
    try:
        return _kedro_run(**kwargs)
    finally:
        # the run is over: the interpreter's last garbage collection, at exit, would walk every object the
        # libraries made (torch, transformers, MLflow; about 1.5 s on one core after the last line printed).
        # Frozen, they are left to the operating system; atexit handlers still run, and objects freed by
        # their reference counts still finalise (only garbage in reference cycles is not collected).
        gc.freeze()


def prestart_tiny_build(env: str | None, conf_source: str | None, params: dict | None) -> None:
    """Where the run's ``tiny_models.out_dir`` holds no built models, start the tiny QE model's build process
    now, before Kedro starts (seconds before its hook could): it imports its libraries on the core Kedro's
    start leaves idle (:class:`kowen_kedro.hooks.TinyBuildHook` ends it where the run's pipeline does not
    build). Configuration Kedro cannot read is left for Kedro to report."""
    import os

    from kedro.framework.project import settings

    from kowen_kedro.tiny.build import built_in, prestart_qe_child

    try:
        loader = settings.CONFIG_LOADER_CLASS(conf_source=conf_source or str(Path.cwd() / settings.CONF_SOURCE),
                                              env=env or os.getenv("KEDRO_ENV"), runtime_params=params or {},
                                              **settings.CONFIG_LOADER_ARGS)
        out_dir = loader["parameters"]["tiny_models"]["out_dir"]
    except Exception:  # noqa: BLE001 - Kedro reads the configuration next and says what is wrong with it
        return
    if not built_in(out_dir):
        prestart_qe_child()


def _kedro_run(**kwargs):
    try:
        return kedro_run.callback(**kwargs)
    except Exception as exc:  # noqa: BLE001 - anything that is not a data or parameter error is re-raised as it is
        bad_params = parameter_error(exc)
        if bad_params is not None:
            lines = [f"kedro run stopped before any node: {len(bad_params.problems)} parameter(s) that conf/base does not define so"]
            click.echo("\n".join(lines + [f"  {p}" for p in bad_params.problems]), err=True)
            raise SystemExit(1) from None
        err = data_error(exc)
        if err is None:
            raise
        ERROR_LOG.parent.mkdir(parents=True, exist_ok=True)
        ERROR_LOG.write_text("".join(traceback.format_exception(exc)), encoding="utf-8")
        click.echo(short_message(err, ERROR_LOG), err=True)
        raise SystemExit(1) from None


run = click.Command(name="run", params=list(kedro_run.params), callback=_run, help=kedro_run.help,
                    short_help=kedro_run.short_help)


@click.group(name="kowen_kedro")
def cli() -> None:
    """Commands of the kowen-kedro project."""


cli.add_command(run)


@cli.command(name="params")
@click.argument("prefix", required=False, default="")
@click.option("--env", "-e", default=None, help="Kedro environment whose values to show over conf/base (e.g. kowen_7b).")
@click.option("--conf-source", default="conf", show_default=True, help="The configuration folder.")
def params_command(prefix: str, env: str | None, conf_source: str) -> None:
    """Every parameter under PREFIX: its key, its value in ENV and its one-line help.

    e.g. ``kedro params sft.trainer_args --env kowen_7b``. The help is conf/base's comment beside the key,
    or the TRL / tiny-model / sampling field's own help.
    """
    import json

    from kowen_kedro.parameters import describe

    rows = [(k, v if isinstance(v, str) else json.dumps(v, ensure_ascii=False), h) for k, v, h in describe(conf_source, env, prefix)]
    if not rows:
        raise click.ClickException(f"no parameter under {prefix!r} (kedro params lists them all)")
    width = min(max(len(f"{k} = {v}") for k, v, _ in rows), 70)
    for key, value, text in rows:
        shown = f"{key} = {value}"
        click.echo(f"{shown:<{width}}  # {text}" if text else shown)


@cli.command(name="preflight")
@click.option("--env", "-e", default=None, help="Kedro environment (recipe) to size, e.g. kowen_7b.")
@click.option("--params", type=click.UNPROCESSED, default="", callback=next(p for p in kedro_run.params if p.name == "params").callback,
              help="Parameter overrides as `kedro run` takes them, e.g. training.world_size=1,training.deepspeed.zero_stage=0.")
@click.option("--stages", default="", help="Only the stages whose names start with one of these (comma-separated), e.g. sft.xl_instruct.")
@click.option("--json", "as_json", is_flag=True, help="Print the stages as JSON (one object per stage) instead of the table.")
@click.option("--no-mlflow", is_flag=True, help="Do not log the table to the project's MLflow experiment.")
def preflight_command(env: str | None, params: dict, stages: str, as_json: bool, no_mlflow: bool) -> None:
    """Does every stage of the recipe fit its GPUs, how many tokens, how long, what cost: from the models'
    configurations (meta device), DeepSpeed's estimators and the project's measured throughput; no GPU,
    no weights. Exits 1 naming every stage that does not fit or is inconsistent, and what would fix it.
    """
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    from kowen_kedro.training import preflight

    project = Path.cwd()
    bootstrap_project(project)
    with KedroSession.create(project_path=project, env=env, runtime_params=params or {}) as session:
        context = session.load_context()
        values = context.params
        experiment = context.mlflow.tracking.experiment.name  # kedro-mlflow's configuration (conf/<env>/mlflow.yml)
    wanted = tuple(p.strip() for p in stages.split(",") if p.strip())
    try:
        stages = [st for st in preflight.plan(values, project) if not wanted or st.stage.startswith(wanted)]
        settings = preflight.Settings.from_params(values)
    except preflight.PreflightError as exc:
        raise click.ClickException(str(exc)) from None
    text = preflight.table(stages, env or "base", settings)
    click.echo(preflight.as_json(stages) if as_json else text)
    if not no_mlflow:
        _log_preflight(experiment, env or "base", text, preflight.as_json(stages), preflight.totals(stages))
    bad = [st for st in stages if st.problems]
    if bad:
        click.echo(f"preflight: {len(bad)} stage(s) do not fit or are inconsistent:", err=True)
        for st in bad:
            click.echo("\n".join(f"  {st.stage}: {p}" for p in st.problems), err=True)
        raise SystemExit(1)


def _log_preflight(experiment: str, env: str, text: str, json_text: str, totals: dict[str, float]) -> None:
    """The table and the JSON as artifacts of a run ``preflight · <env>`` in the project's ``experiment`` (the
    tracking URI kedro-mlflow set up for the session), with the totals as metrics."""
    import mlflow

    from kowen_kedro.tracking import EXPERIMENT_KIND, KIND_TAG

    client = mlflow.MlflowClient()
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment, tags=dict([EXPERIMENT_KIND]))
    run_id = client.create_run(experiment_id, run_name=f"preflight · {env}", tags={KIND_TAG: "preflight", "kedro_env": env}).info.run_id
    client.log_text(run_id, text, "preflight/preflight.md")
    client.log_text(run_id, json_text, "preflight/preflight.json")
    for name in ("gpu_hours", "cost", "stages_not_fitting"):
        client.log_metric(run_id, f"preflight/{name}", totals[name])
    client.set_terminated(run_id)
    click.echo(f"(logged to MLflow: run 'preflight · {env}', artifacts preflight/preflight.md and .json)", err=True)
