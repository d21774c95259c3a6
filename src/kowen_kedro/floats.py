"""What decides the floats: one thread count and one CPU kernel path for every process of a run.

The same commit and seed give the same bytes (models, QE scores, data, claims) only when every float sum
is taken in the same order. Three things choose that order on a CPU, and none of them by default is the
same from one machine to the next:

* the **thread count**: torch's intra-op pool and MKL split a reduction into one partial sum per thread,
  and both take their size from the machine (its cores) or from what ``OMP_NUM_THREADS`` happens to say;
* the **instruction set** each library dispatches to: ATen's vectorised kernels (``ATEN_CPU_CAPABILITY``),
  oneDNN's (``DNNL_MAX_CPU_ISA``) and MKL's (``MKL_CBWR``, conditional numerical reproducibility) use
  AVX-512 where the CPU has it and AVX2 where it does not, and the two sum in other orders: a QE score
  differs in its seventh digit, a trained weight in its last bits, and from there every number after;
* **MKL's own choices** at run time (``MKL_DYNAMIC``: fewer threads than asked for some shapes).

:func:`pin_floats` fixes all of them for this process and, through the environment, for every process it
starts (training launches, generation workers, ``kedro run`` in a subprocess). It runs when
``kowen_kedro`` is imported, so ``kedro run``, ``pytest``, the training entry point and the benchmarks
get it before torch is loaded. The pins overrule what the environment says; two settings choose them:

* ``KOWEN_THREADS`` (default ``1``): the thread count of every process. The default run is a chain of
  small models, whose kernels gain little from a second thread; a second process on the other core
  gains more. Other counts give other (equally valid) numbers.
* ``KOWEN_CPU_ISA`` (default ``avx2``): the kernel path. ``avx2`` is what every x86-64 machine of the
  last decade has, so an AVX-512 machine and an AVX2-only one give the same bytes. ``native`` leaves the
  libraries to choose (fastest, numbers of this CPU model only). MKL's path then also follows
  ``MKL_CBWR`` from the environment.

Where the project loads or trains a model, :func:`deterministic_torch` switches on
``torch.use_deterministic_algorithms`` (warn-only: deterministic kernels where torch has them, e.g.
scatter/index-add on GPUs, cuBLAS with a fixed workspace) and, with a pinned kernel path, switches
oneDNN off: its blocking follows the CPU's caches, and it promises no reproducibility across CPUs, where
MKL with ``MKL_CBWR`` set to a branch does.
"""

from __future__ import annotations

import os
import sys

THREADS_VAR, ISA_VAR = "KOWEN_THREADS", "KOWEN_CPU_ISA"
DEFAULT_THREADS, DEFAULT_ISA = "1", "avx2"

#: per KOWEN_CPU_ISA: the values of the three libraries' switches
ISA_ENV = {
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "DNNL_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2,STRICT"},
    "avx512": {"ATEN_CPU_CAPABILITY": "avx512", "DNNL_MAX_CPU_ISA": "AVX512_CORE", "MKL_CBWR": "AVX512,STRICT"},
}
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
#: what the pins set, in the order the console prints them
PINNED = (*THREAD_VARS, "MKL_DYNAMIC", "ATEN_CPU_CAPABILITY", "DNNL_MAX_CPU_ISA", "MKL_CBWR", "CUBLAS_WORKSPACE_CONFIG")


def _isa(environ) -> str:
    return environ.get(ISA_VAR, DEFAULT_ISA).strip().lower()


def float_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment variables the pins set, from ``KOWEN_THREADS`` / ``KOWEN_CPU_ISA`` in ``environ``."""
    environ = os.environ if environ is None else environ
    threads = environ.get(THREADS_VAR, DEFAULT_THREADS).strip()
    if not threads.isdigit() or int(threads) < 1:
        raise ValueError(f"{THREADS_VAR} must be a whole number of threads >= 1, not {threads!r}")
    isa = _isa(environ)
    if isa not in (*ISA_ENV, "native"):
        raise ValueError(f"{ISA_VAR} must be one of {', '.join([*ISA_ENV, 'native'])}, not {isa!r}")
    env = {var: threads for var in THREAD_VARS}
    # MKL may otherwise use fewer threads than asked for some shapes, and the sum order with them
    env["MKL_DYNAMIC"] = "FALSE"
    env.update(ISA_ENV.get(isa, {}))
    env["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"  # deterministic cuBLAS (torch's deterministic algorithms ask for it)
    return env


def pin_floats() -> dict[str, str]:
    """Set :func:`float_env` in ``os.environ`` (over what was there: a shell's ``OMP_NUM_THREADS`` must
    not change a run's numbers; ``KOWEN_THREADS`` / ``KOWEN_CPU_ISA`` choose other pins) and, when torch
    is already loaded, its thread count. Returns what was set."""
    env = float_env()
    os.environ.update(env)
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "set_num_threads"):
        torch.set_num_threads(int(env["OMP_NUM_THREADS"]))
    return env


def describe() -> str:
    """One line for the console: the settings that pin this run's floats, and how they were chosen."""
    isa = _isa(os.environ)
    pins = ", ".join(f"{var}={os.environ[var]}" for var in PINNED if var in os.environ and var != "CUBLAS_WORKSPACE_CONFIG")
    late = ""
    if _loaded_before_pins:
        late = f"; torch was imported before kowen_kedro, so its kernel paths are not pinned ({', '.join(_loaded_before_pins)})"
    onednn = "" if isa == "native" else ", oneDNN off"
    return f"floats pinned ({THREADS_VAR}={os.environ.get(THREADS_VAR, DEFAULT_THREADS)}, {ISA_VAR}={isa}): {pins}{onednn}{late}"


def deterministic_torch() -> None:
    """torch's deterministic algorithms, warn-only (an op without a deterministic kernel warns, not
    fails); and, unless ``KOWEN_CPU_ISA=native``, no oneDNN: it sizes its blocks by the CPU it runs on
    and promises no reproducibility across CPUs, while MKL with ``MKL_CBWR`` set does (torch then runs
    its matrix products through MKL and its own kernels)."""
    import torch

    torch.use_deterministic_algorithms(True, warn_only=True)
    if _isa(os.environ) != "native":
        torch.backends.mkldnn.enabled = False


def probe() -> str:
    """A fingerprint of how this machine sums floats under this process's pins: the bytes of a fixed battery
    of the CPU kernels a run uses (MKL matrix products of several shapes forward and backward, ATen's
    reductions, softmax, norms, transcendental functions, attention, the seeded generator, an AdamW step),
    hashed. Two machines with the same probe build the same models from the same commit and seed; a
    machine with another probe gives other (equally valid) numbers. Imports torch."""
    import hashlib

    import torch

    deterministic_torch()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    g = torch.Generator().manual_seed(1234)
    x = torch.randn(3, 37, 64, generator=g, requires_grad=True)
    w1, w2 = (torch.randn(160, 64, generator=g) / 8).requires_grad_(), (torch.randn(64, 160, generator=g) / 12).requires_grad_()
    head = (torch.randn(1201, 64, generator=g) / 8).requires_grad_()
    h = torch.nn.functional.rms_norm(x, (64,), eps=1e-6)
    q = k = v = h.view(3, 37, 2, 32).transpose(1, 2)
    attn = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(3, 37, 64)
    mlp = torch.nn.functional.linear(torch.nn.functional.silu(torch.nn.functional.linear(attn + x, w1)), w2)
    y = torch.nn.functional.layer_norm(mlp + x, (64,))
    logits = torch.nn.functional.linear(y, head)
    loss = torch.nn.functional.cross_entropy(logits.view(-1, 1201), torch.randint(0, 1201, (111,), generator=g))
    loss.backward()
    opt = torch.optim.AdamW([w1, w2, head], lr=1e-3)
    opt.step()
    extra = [torch.special.erf(y), torch.tanh(y), torch.exp(-y.abs()), torch.log1p(y.abs()), torch.sigmoid(y),
             torch.softmax(logits, -1).sum(-1), torch.log_softmax(logits, -1).mean(), y.sum(), y.var()]
    digest = hashlib.sha256()
    for t in (loss, logits, x.grad, w1, w2, head, *extra):
        digest.update(t.detach().contiguous().numpy().tobytes())
    return digest.hexdigest()[:12]


#: libraries that read their kernel switches when they load, already loaded when the pins were set
_loaded_before_pins: list[str] = []


def _pin_at_import() -> None:
    _loaded_before_pins[:] = [m for m in ("torch",) if m in sys.modules]
    pin_floats()
