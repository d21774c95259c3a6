"""The settings that decide the floats (kowen_kedro.floats): what they are, that they win over the
environment a run starts in, and that torch in a fresh process runs with them."""

import json
import subprocess
import sys

import pytest

from kowen_kedro import floats


def test_the_default_pins_one_thread_and_the_avx2_kernels():
    env = floats.float_env({})
    assert env == {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MKL_DYNAMIC": "FALSE", "ATEN_CPU_CAPABILITY": "avx2",
                   "DNNL_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2,STRICT", "CUBLAS_WORKSPACE_CONFIG": ":4096:8"}


def test_the_two_settings_choose_other_pins():
    env = floats.float_env({"KOWEN_THREADS": "4", "KOWEN_CPU_ISA": "AVX512"})
    assert (env["OMP_NUM_THREADS"], env["MKL_NUM_THREADS"]) == ("4", "4")
    assert (env["ATEN_CPU_CAPABILITY"], env["DNNL_MAX_CPU_ISA"], env["MKL_CBWR"]) == ("avx512", "AVX512_CORE", "AVX512,STRICT")
    native = floats.float_env({"KOWEN_CPU_ISA": "native"})
    assert not {"ATEN_CPU_CAPABILITY", "DNNL_MAX_CPU_ISA", "MKL_CBWR"} & set(native)  # the libraries choose


@pytest.mark.parametrize("name, value, message", [
    ("KOWEN_THREADS", "0", "KOWEN_THREADS must be a whole number of threads >= 1, not '0'"),
    ("KOWEN_THREADS", "two", "KOWEN_THREADS must be a whole number"),
    ("KOWEN_CPU_ISA", "sse", "KOWEN_CPU_ISA must be one of avx2, avx512, native, not 'sse'"),
])
def test_a_bad_setting_is_named(name, value, message):
    with pytest.raises(ValueError, match=message):
        floats.float_env({name: value})


def test_the_pins_win_over_the_shell(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "8")
    monkeypatch.setenv("MKL_CBWR", "AUTO")
    monkeypatch.delenv("KOWEN_THREADS", raising=False)
    monkeypatch.delenv("KOWEN_CPU_ISA", raising=False)
    floats.pin_floats()
    import os

    assert (os.environ["OMP_NUM_THREADS"], os.environ["MKL_CBWR"]) == ("1", "AVX2,STRICT")
    assert "OMP_NUM_THREADS=1" in floats.describe() and "KOWEN_CPU_ISA=avx2" in floats.describe()


PROBE = "import json, kowen_kedro, torch; print(json.dumps([torch.get_num_threads(), torch.backends.cpu.get_cpu_capability()]))"


def _probe(env: dict) -> list:
    import os

    child = {k: v for k, v in os.environ.items() if not k.startswith("KOWEN_")}
    out = subprocess.run([sys.executable, "-c", PROBE], env={**child, **env}, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_process_that_imports_the_project_runs_torch_with_the_pins():
    """A shell that asks for two threads and the unvectorised kernels: the pins win (one thread, AVX2);
    ``KOWEN_CPU_ISA=native`` hands the kernel choice back to the environment, ``KOWEN_THREADS`` the count."""
    shell = {"OMP_NUM_THREADS": "2", "ATEN_CPU_CAPABILITY": "default"}
    assert _probe(shell) == [1, "AVX2"]
    assert _probe({**shell, "KOWEN_CPU_ISA": "native", "KOWEN_THREADS": "2"}) == [2, "DEFAULT"]


def test_deterministic_torch_switches_on_deterministic_kernels_and_off_onednn(monkeypatch):
    import torch

    before = torch.are_deterministic_algorithms_enabled(), torch.backends.mkldnn.enabled
    try:
        monkeypatch.setenv("KOWEN_CPU_ISA", "native")
        torch.backends.mkldnn.enabled = True
        floats.deterministic_torch()
        assert torch.are_deterministic_algorithms_enabled() and torch.backends.mkldnn.enabled  # native: oneDNN stays
        monkeypatch.setenv("KOWEN_CPU_ISA", "avx2")
        floats.deterministic_torch()
        assert not torch.backends.mkldnn.enabled and "oneDNN off" in floats.describe()
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.backends.mkldnn.enabled = before[1]


def _float_probe(env: dict) -> str:
    import os

    code = "from kowen_kedro import floats; print(floats.probe())"
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def test_the_float_probe_is_one_per_kernel_path_whatever_the_shell_says():
    """Two processes with the same pins (one of them started from a shell that asks for two threads and
    MKL's automatic path) print the same probe; another kernel path (MKL's, ATen's) prints another."""
    default = _float_probe({})
    assert len(default) == 12 and int(default, 16) >= 0
    assert _float_probe({"OMP_NUM_THREADS": "2", "MKL_CBWR": "AUTO", "MKL_DYNAMIC": "TRUE"}) == default
    assert _float_probe({"KOWEN_CPU_ISA": "native", "MKL_CBWR": "COMPATIBLE", "ATEN_CPU_CAPABILITY": "default"}) != default
    assert floats.probe() == default  # this (pinned) process: what the claims-table test reads
