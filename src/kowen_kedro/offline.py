"""Offline-by-default switches: no model hub, no telemetry.

The built-in default never needs the network. On a cluster that may download real models, export
``HF_HUB_OFFLINE=0`` (and the two others) before ``kedro run``: values already in the environment win.
"""

from __future__ import annotations

import os

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "DO_NOT_TRACK": "1",
    "KEDRO_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def configure_offline() -> dict[str, str]:
    """Set the offline switches where the environment does not set them; return the effective values."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    return {key: os.environ[key] for key in OFFLINE_ENV}
