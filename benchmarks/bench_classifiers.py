"""Speed of the patch classifiers: training and inference throughput, achieved GFLOP/s against the
machine's measured fp32 matmul peak, and peak memory, for every arch/depth (issue 4).

    python benchmarks/bench_classifiers.py                 # every arch/depth at 64 px
    python benchmarks/bench_classifiers.py --size 32 --only xception:block1 resnet18:layer1
    python benchmarks/bench_classifiers.py --no-channels-last   # the layout comparison
    python benchmarks/bench_classifiers.py --grid          # also time notebook 02's default grid

How it is measured (the same code path as ``train``): batches of uint8 images already in memory,
flipped, converted to float in [-1, 1] and channels-last, one Adam step per batch of 32
(``train`` throughput); ``torch.inference_mode`` forward passes in eval mode, batch 128
(``infer``). FLOPs are counted with ``torch.utils.flop_counter`` on the forward pass (2 per
multiply-add; convolutions and matmuls only) and a training step is taken as 3x forward
(backward = grad input + grad weight; the counter's own backward figure overcounts grouped
convolutions). ``peak`` is this machine's measured fp32 peak, the best of a large sgemm and a
direct 3x3 convolution (``machine.fp32_peak``, shared with ``bench_generators.py``, so both
report against the same ceiling): the ceiling for dense fp32 arithmetic on this machine.
Depthwise convolutions, small maps and memory-bound ops (BatchNorm, ReLU, pooling, Adam) keep
the networks below it.
Memory: on CPU each model runs in fresh processes and ``mem`` is the peak resident set size
(``VmHWM``, reset just before the model is built) minus the resident size at that moment:
weights, optimiser state, activations, oneDNN workspace; on CUDA it is
``max_memory_allocated``. On a shared VM the same model runs 20-40 % faster or slower from one
process to the next, so CPU figures are medians over ``--repeats`` processes and ``spread`` is
(max - min) / median of the training rate.

``--grid`` trains the default grid of ``notebooks/02_train_classifiers.ipynb`` (its parameters
cell is read, so the figures follow the notebook) on the default world in a scratch checkpoint
folder, and prints each run's seconds and the total.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from machine import cpu_info, fp32_peak
from torch.utils.flop_counter import FlopCounterMode

from patchforensics import grids, paths, train_config
from patchforensics.batches import augment_batch, to_input
from patchforensics.models import DEPTHS, build_model, count_parameters
from patchforensics.train_config import TrainConfig
from patchforensics.train_step import patch_loss

TRAIN_BATCH = 32  # the paper's 16 real + 16 fake
INFER_BATCH = 128


def _rss_kb(field: str) -> int:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process from /proc, in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak_rss() -> int:
    """Reset the kernel's peak-RSS mark (``echo 5 > /proc/self/clear_refs``, Linux >= 4.0) so
    that the import-time peak does not hide the model's; returns the current RSS in KiB."""
    Path("/proc/self/clear_refs").write_text("5")
    return _rss_kb("VmRSS")


def _rate(fn, images_per_call: int, seconds: float, sync) -> float:
    fn()
    fn()  # warm-up: oneDNN/cuDNN pick and compile kernels on the first calls
    sync()
    calls, t0 = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - t0 < seconds:
        fn()
        calls += 1
    sync()
    return calls * images_per_call / (time.perf_counter() - t0)


def measure(arch: str, depth: str, size: int, seconds: float, channels_last: bool,
            device: str) -> dict:
    """Throughput, GFLOP/s and memory of one model (run in a fresh process on CPU)."""
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    else:
        base_kb = _reset_peak_rss()
    model = build_model(arch=arch, depth=depth, seed=0).to(dev)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optim = torch.optim.Adam(model.parameters(), lr=1e-3)
    cfg = TrainConfig(arch=arch, depth=depth)
    rng = np.random.default_rng(0)
    data = torch.randint(0, 256, (TRAIN_BATCH, 3, size, size), dtype=torch.uint8, device=dev)
    labels = torch.arange(TRAIN_BATCH, device=dev) % 2

    def step() -> None:
        x = to_input(augment_batch(data, cfg, rng), dev, channels_last)
        loss = patch_loss(model(x), labels)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()

    x_eval = to_input(torch.randint(0, 256, (INFER_BATCH, 3, size, size), dtype=torch.uint8),
                      dev, channels_last)

    def infer() -> None:
        with torch.inference_mode():
            model(x_eval)

    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model.eval()(x_eval[:1])
    fwd = counter.get_total_flops()
    model.train()
    train_rate = _rate(step, TRAIN_BATCH, seconds, sync)
    model.eval()
    infer_rate = _rate(infer, INFER_BATCH, seconds, sync)
    if cuda:
        mem_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        mem_mb = (_rss_kb("VmHWM") - base_kb) / 1024
    with torch.inference_mode():
        out = model(x_eval[:1]).shape[2:]
    return {"model": f"{arch}_{depth}", "params_M": count_parameters(model) / 1e6,
            "map": f"{out[0]}x{out[1]}", "gflop_fwd": fwd / 1e9, "train_img_s": train_rate,
            "train_gflop_s": 3 * fwd * train_rate / 1e9, "infer_img_s": infer_rate,
            "infer_gflop_s": fwd * infer_rate / 1e9, "mem_MB": mem_mb}


def _in_fresh_processes(args: argparse.Namespace, arch: str, depth: str) -> dict:
    """Median over ``--repeats`` fresh processes (on this VM the same model runs 20-40 %
    faster or slower from one process to the next, steady within each); ``train_spread`` is
    (max - min) / median of the training rate."""
    cmd = [sys.executable, __file__, "--one", f"{arch}:{depth}", "--size", str(args.size),
           "--seconds", str(args.seconds), "--device", args.device]
    if not args.channels_last:
        cmd.append("--no-channels-last")
    runs = [json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True)
                       .stdout.strip().splitlines()[-1]) for _ in range(args.repeats)]
    out = {k: (float(np.median([r[k] for r in runs])) if isinstance(v, float) else v)
           for k, v in runs[0].items()}
    rates = [r["train_img_s"] for r in runs]
    out["train_spread"] = (max(rates) - min(rates)) / out["train_img_s"]
    return out


def notebook_parameters(name: str = "02_train_classifiers") -> dict:
    """The literal defaults of a notebook's ``parameters`` cell."""
    nb = json.loads((paths.notebooks_src_dir() / f"{name}.ipynb").read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
    tree = ast.parse("".join(cell["source"]))
    return {s.target.id: ast.literal_eval(s.value) for s in tree.body
            if isinstance(s, ast.AnnAssign)}


def time_grid(device: str) -> None:
    """Train notebook 02's default grid on the default world from scratch; print seconds."""
    from patchforensics import config

    p = notebook_parameters()
    cfg = config.world_config(smoke=False, seed=p["world_seed"])
    real, fake = grids.training_pair(cfg, p["dataset"], p["generator"], device=device)
    models = grids.grid_models(p["xception_depths"], p["resnet_depths"])
    base = train_config.TrainConfig(seed=p["seed"], epochs=p["epochs"], patience=p["patience"],
                             batch_size=p["batch_size"])
    with tempfile.TemporaryDirectory(prefix="bench_grid_") as scratch:
        t0 = time.perf_counter()
        summary = grids.train_grid(models, real, fake, Path(scratch), base=base,
                                   device=device, progress=False)
        total = time.perf_counter() - t0
    cols = ["best_epoch", "epochs", "stopped", "val_patch_acc", "val_image_acc",
            "train_seconds"]
    print(f"\n# notebook-02 default grid: {cfg.name}, {p['dataset']} vs {p['generator']}, "
          f"at most {p['epochs']} epochs, patience {p['patience']}")
    print(summary[cols].round(4).to_string())
    print(f"total {total:.0f} s ({total / 60:.1f} min)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=64, help="input side in px")
    ap.add_argument("--seconds", type=float, default=3.0, help="timing per measurement")
    ap.add_argument("--repeats", type=int, default=3, help="fresh processes per model (CPU)")
    ap.add_argument("--only", nargs="*", default=None, help="arch:depth pairs")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    ap.add_argument("--grid", action="store_true", help="also time notebook 02's default grid")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: one model, JSON on stdout
    args = ap.parse_args()
    if args.one:
        arch, depth = args.one.split(":")
        print(json.dumps(measure(arch, depth, args.size, args.seconds, args.channels_last,
                                 args.device)))
        return

    jobs = [(a, d) for a, ds in DEPTHS.items() for d in ds]
    if args.only:
        jobs = [j for j in jobs if ":".join(j) in args.only]
    peaks = fp32_peak(device=args.device)
    peak = peaks["peak"]
    cuda = args.device.startswith("cuda")
    info = cpu_info()
    print(f"# {info['cpu']} ({' '.join(info['isa'])}), {os.cpu_count()} CPUs, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads, device {args.device}, "
          f"{args.size} px, channels-last {args.channels_last}")
    print(f"# fp32 peak, GFLOP/s: torch.mm 2048^2 {peaks['mm']:.0f}, 1x1 conv "
          f"{peaks['conv1x1']:.0f}, 3x3 conv {peaks['conv3x3']:.0f} -> %peak of {peak:.0f}; "
          f"train batch {TRAIN_BATCH}, inference batch "
          f"{INFER_BATCH}; " + ("one process" if cuda else
                                 f"median of {args.repeats} fresh processes per model"))
    head = (f"{'model':<18}{'params':>8}{'map':>7}{'GFLOP':>8}{'train':>8}{'spread':>8}"
            f"{'GFLOP/s':>9}{'%peak':>7}{'infer':>8}{'GFLOP/s':>9}{'%peak':>7}{'mem MB':>8}")
    print(head + "\n" + f"{'':<18}{'M':>8}{'':>7}{'/img':>8}{'img/s':>8}" + " " * 24
          + f"{'img/s':>8}")
    for arch, depth in jobs:
        r = (measure(arch, depth, args.size, args.seconds, args.channels_last, args.device)
             if cuda else _in_fresh_processes(args, arch, depth))
        spread = f"{100 * r['train_spread']:7.0f}%" if "train_spread" in r else f"{'-':>8}"
        print(f"{r['model']:<18}{r['params_M']:8.2f}{r['map']:>7}{r['gflop_fwd']:8.3f}"
              f"{r['train_img_s']:8.0f}{spread}{r['train_gflop_s']:9.1f}"
              f"{100 * r['train_gflop_s'] / peak:6.0f}%{r['infer_img_s']:8.0f}"
              f"{r['infer_gflop_s']:9.1f}{100 * r['infer_gflop_s'] / peak:6.0f}%"
              f"{r['mem_MB']:8.0f}", flush=True)
    if args.grid:
        time_grid(args.device)


if __name__ == "__main__":
    main()
