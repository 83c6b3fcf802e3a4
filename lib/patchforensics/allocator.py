"""The C heap during training: keep freed tensor memory for the next step instead of handing it
back to the system.

A training step allocates and frees the same large buffers (activations, gradients) every
step. glibc serves allocations above its mmap threshold (at most 32 MiB) with fresh ``mmap``
pages and unmaps them on free, so every step page-faults and zero-fills them again: on the
2-core AMD EPYC, about 147,000 minor faults per step of the full Xception at 192 px, 12 % of
its step time, and 20 % of block1's (``benchmarks/bench_train.py``, ``flt/st``). Inside
:func:`kept_heap` glibc takes every allocation from its heap and never trims it, so the
second step on reuses the first step's pages. The numbers computed are the same; only where
the bytes live changes. The process keeps its peak heap until the block ends, when the free
part is returned (``malloc_trim``).

Elsewhere than glibc (macOS, musl, Windows) the block does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager

# mallopt parameters (glibc malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -2, -3, -4
# What glibc's dynamic threshold settles at for large, repeatedly freed buffers (its ceiling on
# 64-bit, and twice that for trimming): restored after the block, since setting a parameter
# turns the dynamic adjustment off for good.
_SETTLED = {_M_MMAP_THRESHOLD: 32 * 2**20, _M_TRIM_THRESHOLD: 64 * 2**20,
            _M_TOP_PAD: 0, _M_MMAP_MAX: 65536}
_KEPT = {_M_MMAP_MAX: 0, _M_TRIM_THRESHOLD: 2**31 - 1,  # mallopt takes an int: 2 GiB
         _M_TOP_PAD: 64 * 2**20}
_depth = 0  # nested blocks: only the outermost one sets and restores


def depth() -> int:
    """How many :func:`kept_heap` blocks are open now (0: glibc has its own settings)."""
    return _depth


def _libc() -> ctypes.CDLL | None:
    """glibc, or None where the C library is another one."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 - glibc only: musl has no such symbol
    except (OSError, AttributeError):
        return None
    libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
    return libc


def available() -> bool:
    """Whether :func:`kept_heap` changes anything here (glibc)."""
    return _libc() is not None


def _set(libc: ctypes.CDLL, params: dict[int, int]) -> None:
    for key, value in params.items():
        libc.mallopt(key, value)


@contextmanager
def kept_heap(enabled: bool = True) -> Iterator[bool]:
    """Inside the block, freed memory stays in the process for the next allocation (no mmap,
    no trim); afterwards glibc's settled defaults are back and the free heap is returned.
    Yields whether it is in effect (False off glibc or with ``enabled`` False). Nested blocks
    are one block."""
    global _depth
    libc = _libc() if enabled else None
    if libc is None:
        yield False
        return
    if _depth == 0:
        _set(libc, _KEPT)
    _depth += 1
    try:
        yield True
    finally:
        _depth -= 1
        if _depth == 0:
            _set(libc, _SETTLED)
            libc.malloc_trim(0)
