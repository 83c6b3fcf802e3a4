"""The default grid's training on one device, each model to the original's patience rule.

Builds the default world's generators and fake sets (no manipulations) on ``--device``, then
trains xception block1, block2 and the full model at 192 px (the like-for-like input of issue
24) on reals vs. the dcgan's samples + inversions, seed 0, with an epoch cap far above the
patience rule, and prints one JSON line per stage: seconds, epochs, why it stopped, seconds per
epoch and the best validation metrics. ``--deadline`` (s) skips what would not finish in time.
Run from the repository root; ``benchmarks/gpu_check.sh`` is the other half of the GPU check.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from patchforensics import embedded, paths, world
from patchforensics.config import WorldConfig
from patchforensics.train import train
from patchforensics.train_config import TrainConfig

# (depth, training window at 192 px), the cheapest to stop first
MODELS = (("full", 0), ("block2", 96), ("block1", 96))


def emit(record: dict) -> None:
    print("gpu_grid: " + json.dumps(record), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--epochs", type=int, default=300,
                    help="epoch cap (the rule should stop first)")
    ap.add_argument("--deadline", type=float, default=480.0, help="seconds for the whole script")
    ap.add_argument("--smoke", action="store_true", help="tiny world, 1 epoch (CPU dry run)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    emit({"device": args.device, "cpu": platform.processor() or platform.machine(),
          "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
          "torch": torch.__version__, "threads": torch.get_num_threads()})
    cfg = WorldConfig(smoke=args.smoke)
    root = paths.world_dir(cfg.name)
    t = time.perf_counter()
    embedded.build_real_world(cfg, progress=False)
    world.build_fake_world(cfg, root, device=args.device, progress=False)
    emit({"stage": "world (generators, samples, inversions; no manipulations)",
          "seconds": round(time.perf_counter() - t, 1)})
    real, fake = root / "real" / "celeba", root / "fake" / "celeba" / "dcgan"
    for depth, crop in MODELS:
        left = args.deadline - (time.perf_counter() - t0)
        if left < 60:
            emit({"model": depth, "skipped": f"{left:.0f} s left"})
            continue
        tcfg = TrainConfig(depth=depth, load_size=64 if args.smoke else 192,
                           crop=(40 if args.smoke and crop else crop),
                           epochs=1 if args.smoke else args.epochs,
                           setting="samples_inversions", precision="bf16")
        t = time.perf_counter()
        res = train(tcfg, real, fake, paths.checkpoints_dir() / "gpu_grid" / tcfg.run_name(),
                    device=args.device, progress=False, force=True,
                    inversions_dir=root / "fake" / "celeba" / "dcgan_inverted")
        sec = time.perf_counter() - t
        epochs = int(len(res.history))
        emit({"model": depth, "load_size": tcfg.load_size, "crop": tcfg.crop,
              "stopped": res.stopped, "epochs": epochs, "best_epoch": res.best_epoch,
              "patience": tcfg.stop_patience, "seconds": round(sec, 1),
              "s_per_epoch": round(sec / max(epochs, 1), 2), "best": res.best})


if __name__ == "__main__":
    main()
