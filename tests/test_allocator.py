"""The kept heap (allocator.kept_heap): training inside it computes exactly what it computes
outside, and large freed buffers stop being returned to the system while it holds."""

from __future__ import annotations

import resource

import pytest
import torch

from patchforensics import allocator
from patchforensics.allocator import kept_heap

glibc = pytest.mark.skipif(not allocator.available(), reason="the kept heap is glibc's")


def _faults_of_big_buffers(n: int = 20) -> int:
    """Minor page faults of allocating, touching and freeing a 64 MiB buffer ``n`` times."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(n):
        torch.ones(16 * 2**20)  # 64 MiB of float32, written, then freed
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@glibc
def test_freed_big_buffers_are_reused_inside_and_unmapped_outside():
    outside = _faults_of_big_buffers()
    with kept_heap() as on:
        assert on
        _faults_of_big_buffers(1)  # the first one faults its pages in
        inside = _faults_of_big_buffers()
    after = _faults_of_big_buffers()
    # 64 MiB is 16,384 pages: unmapped after each use outside, so every round faults them all
    # (unless the kernel maps such buffers with huge pages: then there is nothing to save).
    if outside < 20 * 16_000:
        pytest.skip(f"{outside} faults for 20 unmapped 64 MiB buffers: huge pages here")
    assert after >= 20 * 16_000
    assert inside < outside / 10


def test_disabled_or_nested_blocks_and_errors_restore_the_settings():
    with kept_heap(enabled=False) as on:
        assert not on
    with pytest.raises(RuntimeError), kept_heap(), kept_heap():
        raise RuntimeError("a failed epoch")
    assert allocator.depth() == 0


def test_a_training_step_computes_the_same_inside_and_outside():
    """Where the bytes live must not change a number: two identical steps, one in each."""
    from patchforensics.models import build_model

    torch.manual_seed(0)
    x = torch.randn(8, 3, 32, 32)
    grads = []
    for keep in (False, True):
        model = build_model(arch="xception", depth="block1", seed=0)
        with kept_heap(keep):
            model(x).float().square().mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert torch.equal(grads[0], grads[1])
