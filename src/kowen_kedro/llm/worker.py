"""A generation backend in a child process, spoken to over JSON lines on stdin/stdout.

Why: vLLM keeps GPU memory until its process exits, and the iterative DPO loop alternates generation
with training on the same GPUs. :class:`SubprocessBackend` starts the worker once, sends one batch per
line, and ends the process on :meth:`close` (or when the node finishes), which frees the GPU. And vLLM
lives in an environment of its own (``make vllm-env``: ``.venv-vllm``; its transformers and torch are
not the training environment's), so a ``vllm`` worker runs with that environment's interpreter
(:func:`worker_python`) and imports this package from the checkout's ``src``.

Protocol (one JSON object per line):
    parent -> child: {"requests": [[messages]...], "params": {SamplingParams}, "sample_index": int}
    child -> parent: {"completions": [{Completion}...]}  or  {"error": "..."}
The worker's own log goes to stderr (inherited), never to the protocol stream.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from kowen_kedro.llm.backends import BACKENDS
from kowen_kedro.llm.envs import child_env, worker_python
from kowen_kedro.llm.types import Completion, GenerationError, Messages, SamplingParams

logger = logging.getLogger(__name__)


@dataclass
class SubprocessBackend:
    """Runs backend ``inner`` (e.g. ``vllm``) with ``options`` in a long-lived child process, with the
    interpreter ``python`` (default: :func:`worker_python`)."""

    model: str
    inner: str = "vllm"
    options: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    python: str | None = None
    _proc: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.name = self.name or self.inner  # cache keys stay those of the inner backend
        self.python = self.python or worker_python(self.inner)

    def _start(self):
        if self._proc is None or self._proc.poll() is not None:
            cfg = json.dumps({"backend": self.inner, "model": self.model, **self.options})
            # the engine's start-up lines stay out of `kedro run`, and off the protocol stream
            env = child_env(VLLM_LOGGING_STREAM="ext://sys.stderr", VLLM_LOGGING_LEVEL="WARNING")
            self._proc = subprocess.Popen(
                [self.python, "-m", "kowen_kedro.llm.worker", "--config", cfg],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1, env=env,
            )
        return self._proc

    def generate(self, requests: Sequence[Messages], params: SamplingParams, sample_index: int) -> list[Completion]:
        proc = self._start()
        proc.stdin.write(json.dumps({"requests": list(requests), "params": asdict(params), "sample_index": sample_index}, ensure_ascii=False) + "\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
        if not line:
            code = proc.wait()
            raise GenerationError(f"{self.inner} worker ({self.python}) exited with code {code} (its log is above, on stderr)")
        reply = json.loads(line)
        if "error" in reply:
            raise GenerationError(f"{self.inner} worker: {reply['error']}")
        return [Completion(**c) for c in reply["completions"]]

    def close(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.stdin.close()
            try:
                self._proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        self._proc = None

    def __del__(self):  # pragma: no cover - best effort at interpreter exit
        try:
            self.close()
        except Exception:
            pass


def serve(config: dict[str, Any], stdin=sys.stdin, stdout=sys.stdout) -> None:
    """The worker loop: build the inner backend, answer one batch per input line until EOF."""
    cfg = dict(config)
    name = cfg.pop("backend")
    backend = BACKENDS[name](**cfg)
    for line in stdin:
        job = json.loads(line)
        try:
            outs = backend.generate(job["requests"], SamplingParams(**job["params"]), job["sample_index"])
            reply = {"completions": [asdict(c) for c in outs]}
        except Exception as err:  # reported to the parent, which raises
            logger.exception("generation failed")
            reply = {"error": f"{type(err).__name__}: {err}"}
        stdout.write(json.dumps(reply, ensure_ascii=False) + "\n")
        stdout.flush()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True, help="JSON: {backend, model, ...backend options}")
    ns = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    from kowen_kedro.offline import configure_offline

    configure_offline()
    # Anything the libraries print, and the engine processes they start (which inherit file descriptor 1),
    # must not corrupt the protocol stream: it moves to a descriptor of its own, and 1 becomes stderr.
    sys.stdout.flush()
    protocol = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    serve(json.loads(ns.config), stdout=protocol)


if __name__ == "__main__":
    main()
