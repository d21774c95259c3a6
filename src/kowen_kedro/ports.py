"""A free loopback port for a server the project starts (the DeepSpeed rendezvous, ``vllm serve``,
kedro-viz and the MLflow UI in the screenshots)."""

from __future__ import annotations

import random
import socket


def free_port(low: int = 20000, high: int = 49151) -> int:
    """A loopback port nothing listens on, drawn from ``low``-``high``: below the ephemeral range, which
    the system hands to outgoing connections (a port taken from it can be in use again before the server
    binds it) and which kedro-viz refuses ("Cannot allocate an open TCP port")."""
    for port in random.Random().sample(range(low, high + 1), min(500, high - low + 1)):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free loopback port in {low}-{high}")
