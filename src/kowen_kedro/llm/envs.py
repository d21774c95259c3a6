"""Which interpreter runs a backend's process: vLLM lives in an environment of its own (``make vllm-env``:
``.venv-vllm``; its transformers and torch are not the training environment's), and its processes (the
generation worker, ``vllm serve``) import this package from the checkout's ``src``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

#: The checkout's ``src`` folder (this package's parent) and vLLM's environment beside the checkout.
SRC = Path(__file__).resolve().parents[2]
VLLM_PYTHON_VAR = "KOWEN_VLLM_PYTHON"


def worker_python(inner: str) -> str:
    """The interpreter a worker of backend ``inner`` runs with: for ``vllm``, ``$KOWEN_VLLM_PYTHON``, else
    the checkout's ``.venv-vllm`` (``make vllm-env``), else this one; for any other backend, this one."""
    if inner != "vllm":
        return sys.executable
    if os.environ.get(VLLM_PYTHON_VAR):
        return os.environ[VLLM_PYTHON_VAR]
    local = SRC.parent / ".venv-vllm" / "bin" / "python"
    return str(local) if local.exists() else sys.executable


def child_env(**defaults: str) -> dict[str, str]:
    """This process's environment for a child that may run another environment's interpreter: the
    checkout's ``src`` first on ``PYTHONPATH`` (so it imports this package), ``defaults`` where unset."""
    env = {**defaults, **os.environ}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH")) if p)
    return env
