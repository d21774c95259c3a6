"""glibc's malloc told to keep the memory a CPU training process frees, instead of handing it back to the kernel
and faulting it in again at the next step.

A training step allocates and frees the same large tensors at every step. TRL's fused LM head alone takes a
``[tokens, 32768]`` float buffer in its forward and another in its backward (the vocabulary tile, whatever the
vocabulary: 300 MB for a batch of 2,400 tokens), and its logits-sized temporaries around them. glibc serves an
allocation above its mmap threshold (128 KiB at first, at most 32 MiB as it adapts) with a fresh ``mmap`` that
``free`` unmaps, and trims the heap's free top above its trim threshold: the next step's allocation faults every
page in again, and the kernel zeroes each one. The tiny default's SFT launch spent half its time there (440 steps,
70 s; 34 s with the memory kept, the same weights byte for byte: malloc decides where a tensor lives, not a
value in it).

:func:`keep_freed_memory` raises both thresholds (``mallopt``), so allocations up to 1 GiB come from the heap and
what is freed stays mapped for the next step: the process keeps the pages of its peak for its lifetime. Training
launches call it on a CPU-only machine (:func:`kowen_kedro.training.entry.run`), where the cost is the tiny
models' few hundred MB; on a GPU the tensors that matter live in the GPU's memory, and a process that loads a
large model on the host before moving it would keep that host memory, so it is left as glibc sets it. The same
thresholds as environment variables, for a process of your own: ``GLIBC_TUNABLES=glibc.malloc.mmap_threshold=
1073741824:glibc.malloc.trim_threshold=2147483647``.
"""

from __future__ import annotations

import ctypes
import os

#: ``mallopt`` parameters (malloc.h).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
#: Allocations up to this size come from the heap.
MMAP_THRESHOLD = 1 << 30
#: Free memory at the heap's top is handed back to the kernel only above this size.
TRIM_THRESHOLD = (1 << 31) - 1


def keep_freed_memory() -> bool:
    """Raise glibc malloc's mmap and trim thresholds in this process (module doc); False where the C library is
    not glibc (nothing changed), or where glibc refused a value."""
    if not glibc():
        return False
    libc = ctypes.CDLL(None)
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def glibc() -> bool:
    """Whether this process runs on glibc."""
    try:
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (ValueError, OSError, AttributeError):  # not a glibc name on this system (macOS, musl), or no confstr
        return False
