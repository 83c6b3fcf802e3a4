"""What machine a benchmark ran on, and its measured fp32 peak: the one place both benchmark
scripts take it from (issue 14: a percentage of a peak measured on ANOTHER CPU says nothing).

``cpu_info()`` reads the model name and the ISA flags that decide which kernels oneDNN/MKL can
use (AVX2, AVX-512, AVX-512 BF16, AMX) from ``/proc/cpuinfo``. ``fp32_peak()`` times, with the
current torch threads, a large sgemm (``torch.mm``) and a direct 3x3 convolution with 256
channels on a 16 x 16 map (the conv with the most reuse, so the closest to the FMA units'
limit), plus a 1x1 convolution (a plain GEMM through oneDNN); ``peak_gflops`` is the best of
them. It is a *measured* ceiling, so on a loaded machine it drops with the networks' rates and
their ratio stays meaningful.

Imported as ``from machine import ...`` by scripts run as ``python benchmarks/<script>.py``
(their folder is on ``sys.path``).
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import torch

ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile",
             "amx_int8")


def cpu_info() -> dict[str, object]:
    """``{"cpu": model name, "isa": [flags of ISA_FLAGS present], "cpus": logical CPUs,
    "mkldnn_bf16": oneDNN has native bf16 kernels here}`` (Linux; elsewhere the flags are
    empty and the model is ``platform.processor()``)."""
    model, flags = platform.processor() or platform.machine(), set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    try:
        bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        bf16 = False
    return {"cpu": model, "isa": [f for f in ISA_FLAGS if f in flags], "cpus": os.cpu_count(),
            "mkldnn_bf16": bf16}


def fp32_peak(seconds: float = 3.0, device: str | None = None) -> dict[str, float]:
    """Best fp32 GFLOP/s of three dense kernels on ``device`` (default: CUDA if present):
    ``mm`` (2048 x 2048 sgemm, MKL / cuBLAS), ``conv1x1`` (512 ch, 16 x 16, batch 64) and
    ``conv3x3`` (256 ch, 16 x 16, batch 32, channels-last, oneDNN / cuDNN). Each gets
    ``seconds / 3`` of repeated timed calls after one warm-up; its best call counts (the
    machine's ceiling, not its average under load). ``peak`` is the best of the three."""
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    cuda = torch.device(dev).type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    if cuda:  # a fp32 peak, not TF32's
        old_tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    n = 2048
    a, b = torch.randn(n, n, device=dev), torch.randn(n, n, device=dev)
    cl = torch.channels_last
    c1 = torch.nn.Conv2d(512, 512, 1, bias=False).to(dev, memory_format=cl)
    x1 = torch.randn(64, 512, 16, 16, device=dev).contiguous(memory_format=cl)
    c3 = torch.nn.Conv2d(256, 256, 3, padding=1, bias=False).to(dev, memory_format=cl)
    x3 = torch.randn(32, 256, 16, 16, device=dev).contiguous(memory_format=cl)
    kernels = (("mm", lambda: torch.mm(a, b), 2 * n**3),
               ("conv1x1", lambda: c1(x1), 2 * 64 * 512 * 512 * 256),
               ("conv3x3", lambda: c3(x3), 2 * 32 * 256 * 256 * 9 * 256))
    out: dict[str, float] = {}
    try:
        with torch.inference_mode():
            for name, fn, flops in kernels:
                fn()
                best, t_end = 0.0, time.perf_counter() + seconds / len(kernels)
                while time.perf_counter() < t_end:
                    sync()
                    t0 = time.perf_counter()
                    fn()
                    sync()
                    best = max(best, flops / (time.perf_counter() - t0) / 1e9)
                out[name] = best
    finally:
        if cuda:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old_tf32
    out["peak"] = max(out.values())
    return out


def gemm_peak(dtype: torch.dtype = torch.float32, n: int = 4096, seconds: float = 2.0,
              device: str | None = None) -> float:
    """Best GFLOP/s of an ``n`` x ``n`` by ``n`` x ``n`` ``torch.mm`` in ``dtype`` on ``device``
    (fp32: MKL sgemm / cuBLAS; bf16 on a CPU: oneDNN's bf16 GEMM, native with AVX512-BF16 or
    AMX, emulated otherwise): one warm-up call, then repeated calls for ``seconds``, the best
    call counting (``2 n^3`` FLOPs). The ceiling a network running in ``dtype`` is held to."""
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    sync = torch.cuda.synchronize if torch.device(dev).type == "cuda" else (lambda: None)
    a = torch.randn(n, n, device=dev).to(dtype)
    b = torch.randn(n, n, device=dev).to(dtype)
    best, calls = 0.0, 0
    with torch.inference_mode():
        torch.mm(a, b)
        t_end = time.perf_counter() + seconds
        while calls < 3 or time.perf_counter() < t_end:
            sync()
            t0 = time.perf_counter()
            torch.mm(a, b)
            sync()
            best = max(best, 2 * n**3 / (time.perf_counter() - t0) / 1e9)
            calls += 1
    return best
