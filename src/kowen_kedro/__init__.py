"""kowen-kedro: bilingual LLM post-training from synthetic data, as Kedro pipelines."""

import logging
import re
import warnings

__version__ = "0.1.0"

# Third-party warnings a user of `kedro run` can do nothing about, filtered by message so a
# new warning still shows. Each one is printed on every `kedro run`:
QUIET = (
    # mlflow, when kedro-mlflow's pipeline model class is imported: it has no type hints to infer from
    r".*type hint",
    # kedro and kedro-mlflow call OmegaConf.register_new_resolver, deprecated by omegaconf
    r"register_new_resolver\(\) is deprecated",
    # kedro, on dataset names with '.': ours are Kedro namespace outputs (dpo_iter_1.policy,
    # rm_transfer_source.reward_model) read by the nodes that compare them, which is what namespaces are for
    r"One or more dataset names contain '\.' characters",
    # setuptools, when alpaca_eval and torchmetrics (COMET) import pkg_resources
    r"pkg_resources is deprecated",
    # torch, on pytorch-lightning's use of LeafSpec (COMET QE predicting)
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
)


class _QuietWarnings(logging.Filter):
    """Drops the QUIET warnings where Kedro logs warnings (``py.warnings``): mlflow raises its own inside
    a ``simplefilter("once")`` that outranks any filter installed beforehand."""

    pattern = re.compile("|".join(f"(?:{m})" for m in QUIET))

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.search(record.getMessage())


def quiet() -> None:
    """Install the filters. Also a ``kedro.init`` entry point (pyproject.toml): Kedro calls it before it
    loads the kedro-mlflow commands, whose import raises the first of these warnings."""
    for message in QUIET:
        warnings.filterwarnings("ignore", message=message, category=Warning)
    py_warnings = logging.getLogger("py.warnings")
    if not any(isinstance(f, _QuietWarnings) for f in py_warnings.filters):
        py_warnings.addFilter(_QuietWarnings())


quiet()

# Every process that imports the package gets the same float-deciding settings (kowen_kedro.floats).
from kowen_kedro import floats as _floats  # noqa: E402

_floats._pin_at_import()
