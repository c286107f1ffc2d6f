"""glibc's allocator, kept from handing big freed blocks back to the kernel between training steps.

A training step allocates gigabytes of activations and frees them; with glibc's defaults (mmap for blocks past a
dynamic threshold, heap trimmed past 2x that) every step maps them anew and the kernel zeroes each page again:
measured on the default run's SFT data, 85 of 335 CPU seconds were system time. Fixing the mmap threshold at
glibc's maximum (32 MiB) and trimming the heap only past 2 GiB free keeps most of those pages: system time 85 ->
62 s and 120.2 -> 126.6 tokens/s in one pair of runs, peak RSS unchanged (docs/benchmarks.md). No library sets
this for a process (it is the allocator of the whole process), hence ctypes; other allocators are left alone.
The trainers (``train_sft``, ``run_rl_stage``) set it as they start; setting it again is harmless.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest allowed (DEFAULT_MMAP_THRESHOLD_MAX on 64-bit)
TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int: 2 GiB of free heap top is kept before any trim


def tune_malloc() -> bool:
    """Set the two thresholds on glibc (Linux); True when both were taken. A no-op elsewhere, or when the user
    set ``GLIBC_TUNABLES`` themselves, or with ``SCORE_DISTILL_MALLOC=default``."""
    if not sys.platform.startswith("linux") or os.environ.get("GLIBC_TUNABLES") \
            or os.environ.get("SCORE_DISTILL_MALLOC") == "default":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other libcs have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def release_free_memory() -> bool:
    """Hand the allocator's free memory back to the kernel (glibc ``malloc_trim``); True when it released some.

    The trim threshold above keeps a trainer's freed activations mapped, and nothing trims them when training
    ends: measured after the default run's BC-init SFT, 7.2 GB stayed resident with no live tensor. The next
    stage reuses part of it; a stage that loads other models (evaluation) or the next run in a notebook cannot.
    So the pipeline trims between stages, where nothing is mid-step."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return False
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return bool(trim(0))
