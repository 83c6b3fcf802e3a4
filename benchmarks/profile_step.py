"""Where one training step of a default-grid model spends its time (issue 25): torch.profiler's
table of the step's operators, grouped by input shape, after a few warm-up steps.

    python benchmarks/profile_step.py                      # the full model at 192 px
    python benchmarks/profile_step.py xception_block2 --rows 20

The step is ``bench_train``'s (``train_step.training_step`` in the precision the defaults use,
on a synthetic uint8 batch of the world's size, the allocator kept as in training), so the
table explains that script's ``img/s`` and ``%peak``. Self CPU times include the profiler's own
overhead (about a third on a 2-core machine): read shares, not absolute times.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_train  # noqa: E402  (a sibling script)

from patchforensics.allocator import kept_heap  # noqa: E402
from patchforensics.batches import augment_batch  # noqa: E402
from patchforensics.config import world_config  # noqa: E402
from patchforensics.models import build_model  # noqa: E402
from patchforensics.train_step import training_step  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", nargs="?", default="xception_full", help="a default-grid model")
    ap.add_argument("--precision", default="bf16", choices=("fp32", "bf16"))
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    ap.add_argument("--steps", type=int, default=2, help="profiled steps")
    ap.add_argument("--rows", type=int, default=30, help="rows of the table")
    args = ap.parse_args()
    job = next(j for j in bench_train.jobs([args.model], args.precision)
               if "default" in j["profiles"])
    cfg = job["cfg"]
    size = world_config().size  # the default world's faces
    batch = torch.randint(0, 256, (cfg.batch_size, 3, size, size), dtype=torch.uint8,
                          generator=torch.Generator().manual_seed(0))
    step = training_step(cfg, build_model(cfg.model_config(), seed=0), torch.device("cpu"),
                         bench_train.labels(cfg))
    rng = np.random.default_rng(1)
    with kept_heap(True):
        for _ in range(args.warmup):
            step(augment_batch(batch, cfg, rng), rng)
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            for _ in range(args.steps):
                step(augment_batch(batch, cfg, rng), rng)
    print(f"# {job['model']}: load {cfg.load_size or size} px, crop {cfg.crop or 'none'}, "
          f"{cfg.precision}, batch {cfg.batch_size}, {args.steps} steps after {args.warmup}, "
          f"{torch.get_num_threads()} threads")
    print(prof.key_averages(group_by_input_shape=True).table(
        sort_by="self_cpu_time_total", row_limit=args.rows, max_name_column_width=30,
        max_shapes_column_width=90))


if __name__ == "__main__":
    main()
