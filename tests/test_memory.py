"""sunlight.memory: with the thresholds set, a service's big transient blocks leave with it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sunlight import memory

# A fresh interpreter builds and drops, ten times over, what a cache rebuild does: a few dozen
# megabyte-sized buffers alive at once, each freed before the next round, while small things
# made between them live on (as the new cache entries do) and pin the heap around them. It
# prints its anonymous resident memory (KiB) after the first round and after the last.
ROUNDS = """
import sys
from sunlight import memory
if sys.argv[1] != "0":
    assert memory.return_large_blocks(int(sys.argv[1]))
def anon():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
kept = []
def build(round_):
    # sizes vary from round to round, as bodies do, within the first round's largest
    blocks = []
    for i in range(40):
        blocks.append(bytearray(2_000_000 - 4096 * ((round_ * 37 + i * 11) % 97)))
        kept.append(bytearray(1024))  # beyond Python's small-object allocator: from malloc
    return blocks
after = []
for r in range(10):
    blocks = build(r)
    del blocks
    after.append(anon())
print(after[0], after[-1], anon())
"""


def run_rounds(threshold_kib: int) -> tuple[int, int, int]:
    out = subprocess.run(
        [sys.executable, "-c", ROUNDS, str(threshold_kib)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    first, last, end = (int(v) for v in out.stdout.split())
    return first, last, end


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc and /proc")
def test_large_blocks_return_to_the_system() -> None:
    """With the thresholds, the memory after each round is back near where it started (the
    80 MB built in a round is gone); glibc's own policy keeps tens of megabytes of them."""
    first, last, _ = run_rounds(128)
    assert last - first < 8 * 1024, (first, last)
    kept_first, kept_last, _ = run_rounds(0)
    assert kept_last - kept_first > 20 * 1024, (kept_first, kept_last)


def test_zero_keeps_the_c_library_policy() -> None:
    assert memory.return_large_blocks(0) is False


# Small blocks freed between survivors stay in the heap (glibc keeps them for reuse) until it
# is trimmed: the interpreter prints its anonymous memory (KiB) before and after the trim.
SCATTERED = """
import sys
from sunlight import memory
def anon():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
blocks = [bytearray(3000) for _ in range(40_000)]  # 120 MB, each block from malloc
survivors = blocks[::8]  # one in eight lives on (as new cache entries do), pinning the heap
del blocks
before = anon()
trimmed = memory.release_free_memory() if sys.argv[1] == "trim" else True
print(before, anon(), trimmed)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc and /proc")
def test_release_free_memory_returns_the_freed_heap() -> None:
    def run(mode: str) -> tuple[int, int]:
        out = subprocess.run(
            [sys.executable, "-c", SCATTERED, mode],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.split()
        assert out[2] == "True"
        return int(out[0]), int(out[1])

    before, after = run("trim")
    assert before - after > 50 * 1024, (before, after)
    kept_before, kept_after = run("keep")
    assert kept_before - kept_after < 8 * 1024, (kept_before, kept_after)
