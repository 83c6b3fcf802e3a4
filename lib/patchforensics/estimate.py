"""Run-time estimates: the reference machine's measured seconds per notebook
(``run_times.json``, shipped with the package) scaled by this machine's calibration."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any


@lru_cache(maxsize=1)
def reference_times() -> dict[str, Any]:
    """``run_times.json``: ``reference_cpu``, ``calibration_step_s``, ``seconds`` and
    ``projected`` (per profile ``default``/``smoke``: notebook number -> seconds, and the
    numbers that are projections), with ``notes`` on where each figure comes from."""
    return json.loads((Path(__file__).parent / "run_times.json").read_text())


def projected(smoke: bool) -> frozenset[str]:
    """The notebook numbers whose reference seconds are projections, not measurements."""
    return frozenset(reference_times()["projected"]["smoke" if smoke else "default"])


@dataclass(frozen=True)
class Calibration:
    """What :func:`calibrate` measured: the median seconds of one calibration step on this
    machine, in the precision its training runs use, over ``repeats`` steps, and how long the
    whole calibration took. ``speed``: over the reference machine's (>1 is slower)."""

    step_s: float
    precision: str
    repeats: int
    wall_s: float

    @property
    def speed(self) -> float:
        return self.step_s / reference_times()["calibration_step_s"]

    def describe(self) -> str:
        ref = reference_times()
        return (f"{self.speed:.2f} x the time of the reference {ref['reference_cpu']}: a "
                f"{self.precision} training step of Xception block1, median of {self.repeats}, "
                f"{1e3 * self.step_s:.1f} ms against {1e3 * ref['calibration_step_s']:.1f} ms; "
                f"calibration {self.wall_s:.1f} s")


def calibrate(seconds: float = 2.0) -> Calibration:
    """Time what dominates the series, a classifier's training step: Xception block1 on 16
    random 64 px images, forward + backward under the precision training picks here
    (``resolve_precision("auto")``: bf16 where the CPU has native bf16, so a CPU without it is
    measured as slow as its training will be), inside the kept heap as in ``train``. One
    warm-up step, then the median of as many as fit in about ``seconds`` (at least 5): a median,
    since the best of many tiny calls measured a 3x different machine on the reference kind."""
    import torch

    from .allocator import kept_heap
    from .generators.training import autocast, resolve_precision
    from .models import build_model

    t_start = time.perf_counter()
    dev = torch.device("cpu")
    precision = resolve_precision("auto", dev)
    model = build_model(arch="xception", depth="block1", seed=0).to(
        memory_format=torch.channels_last)
    x = torch.randn(16, 3, 64, 64, generator=torch.Generator().manual_seed(0)).contiguous(
        memory_format=torch.channels_last)

    def step() -> None:
        model.zero_grad(set_to_none=True)
        with autocast(precision, dev):
            out = model(x)
        out.float().square().mean().backward()

    times: list[float] = []
    with kept_heap():
        step()  # warm-up: oneDNN primitives, the heap
        t_end = time.perf_counter() + seconds
        while len(times) < 5 or time.perf_counter() < t_end:
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
    times.sort()
    return Calibration(times[len(times) // 2], precision, len(times),
                       time.perf_counter() - t_start)




def estimate_seconds(names: list[str], smoke: bool, speed: float = 1.0) -> dict[str, float]:
    """Expected seconds per notebook: the reference timings (:func:`reference_times`) times
    ``speed`` (this machine's calibration time over the reference's: >1 is slower)."""
    ref = reference_times()["seconds"]["smoke" if smoke else "default"]
    return {n: ref.get(n[:2], 0) * speed for n in names}
