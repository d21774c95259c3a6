"""Project settings (Kedro 1.x). Hooks: kedro-mlflow's (auto-registered plugin) + API keys from credentials."""

from kedro.config import OmegaConfigLoader

from kowen_kedro.hooks import ConsoleHook, CredentialsEnvHook, MlflowLayoutHook, ParameterCheckHook, WorldOracleHook
from kowen_kedro.offline import configure_offline

HOOKS = (ParameterCheckHook(), CredentialsEnvHook(), WorldOracleHook(), MlflowLayoutHook(), ConsoleHook())

configure_offline()

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # recipes (conf/<env>/) override single keys of base parameters, not whole top-level blocks
    "merge_strategy": {"parameters": "soft"},
    "config_patterns": {
        "parameters": ["parameters*", "parameters*/**", "**/parameters*"],
        "mlflow": ["mlflow*", "mlflow*/**"],
    },
}
