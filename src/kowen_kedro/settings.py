"""Project settings (Kedro 1.x). Hooks: kedro-mlflow's (auto-registered plugin) + API keys from credentials."""

from kedro.config import OmegaConfigLoader

from kowen_kedro.hooks import ConsoleHook, CredentialsEnvHook, MlflowLayoutHook, ParameterCheckHook, TinyBuildHook, WorldOracleHook
from kowen_kedro.offline import configure_offline
from kowen_kedro.parameters import CONFIG_LOADER_ARGS  # noqa: F401 - base + recipe environments, soft-merged parameters

# TinyBuildHook before ParameterCheckHook: both run first, the parameter check before it (pluggy: last registered, first)
HOOKS = (TinyBuildHook(), ParameterCheckHook(), CredentialsEnvHook(), WorldOracleHook(), MlflowLayoutHook(), ConsoleHook())

configure_offline()

CONFIG_LOADER_CLASS = OmegaConfigLoader
