"""glibc's malloc keeping what a training process frees (kowen_kedro.allocator): a large block freed and allocated
again is served from memory the process already holds, with no page faulted in anew."""

import json
import subprocess
import sys

import pytest

from kowen_kedro.allocator import glibc

pytestmark = pytest.mark.skipif(not glibc(), reason="the thresholds are glibc's")

# a fresh interpreter: 20 times a 64 MiB block, written whole (every page touched), then freed; the page faults of
# the last 19 (the first one maps its pages in either way)
CYCLES = """
import json, resource, sys
from kowen_kedro.allocator import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else None
block = bytearray(64 << 20); del block
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(19):
    block = bytearray(64 << 20)
    del block
print(json.dumps({"kept": kept, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""
PAGES = (64 << 20) // 4096  # pages of one block (4 KiB pages; larger pages only lower both counts)


def cycles(mode: str) -> dict:
    done = subprocess.run([sys.executable, "-c", CYCLES, mode], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def test_a_freed_block_is_reused_without_faulting_its_pages_in_again():
    kept = cycles("keep")
    assert kept["kept"] is True
    assert kept["faults"] < PAGES // 10  # the block's pages stay mapped: nothing to fault in


def test_without_it_glibc_maps_every_large_block_anew():
    """The behaviour the module changes: a 64 MiB block is above glibc's mmap threshold (at most 32 MiB), so
    each one is a fresh mapping whose every page faults in when written."""
    assert cycles("default")["faults"] >= 19 * PAGES * 9 // 10
