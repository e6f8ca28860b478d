"""pipeline.runtime.allocator: glibc keeps large temporaries on its heap once tuned.

The premise, checked against the kernel's own count of page faults (getrusage): by
default glibc serves a 40 MB block (above its largest dynamic mmap threshold, 32 MiB) with
fresh mmap pages every time, so filling it faults on each of its ~10,000 pages; tuned, the
block is reused from the heap and refilling it faults on none. (numpy asks for huge pages
on such blocks, so the default's count is 20-600 faults of 2 MiB pages here, ~9,800 of 4 KiB
without them.) Each case runs in a fresh
interpreter, since mallopt is process-wide."""
import os
import subprocess
import sys

import pytest

from pipeline.runtime import allocator

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")

PROBE = """
import resource, sys
import numpy as np
from pipeline.runtime import allocator
tuned = allocator.tune() if sys.argv[1] == "tune" else False
np.ones(5_000_000)          # 40 MB, once, so a reusable block exists
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    a = np.ones(5_000_000)
    del a
print(tuned, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5)
"""


def _faults_per_fill(mode: str) -> tuple[str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", PROBE, mode], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    return out[0], float(out[1])


def test_tuned_heap_refills_a_40mb_block_without_faults():
    tuned, faults = _faults_per_fill("tune")
    assert tuned == "True"
    assert faults < 5
    default_tuned, default_faults = _faults_per_fill("default")
    assert default_tuned == "False" and default_faults >= 19   # 40 MB = 19 huge pages


def test_a_users_malloc_variable_is_left_alone(monkeypatch):
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "1000000")
    assert allocator.tune() is False
