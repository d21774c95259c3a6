"""Project hooks: the world oracle's server is stopped when a run ends; API keys from ``conf/<env>/credentials.yml`` into the environment of this process.

Backends and judges read their key from an environment variable (``api_key_env``, default
``OPENAI_API_KEY``). This hook copies ``credentials.yml`` entries of the form
``<name>: {api_key: ..., env: OPENAI_API_KEY}`` (``env`` defaults to ``<NAME>_API_KEY``) into
``os.environ`` when the variable is not set already. Values are never logged.
"""

from __future__ import annotations

import logging
import os

from kedro.framework.hooks import hook_impl

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
