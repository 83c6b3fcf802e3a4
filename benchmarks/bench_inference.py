"""Inference speed of the default profile's classifiers: milliseconds per image for the plain
eval-mode network and its BatchNorm-folded twin (``models.inference_model``), channels-last,
at several batch sizes, interleaved in one process (so the ratios hold on a busy machine).

    python benchmarks/bench_inference.py             # xception block1/2/3 at 192 px, full at 64
    python benchmarks/bench_inference.py --batches 4 8 32 --images 96 --json

The last line with ``--json`` is one JSON object: the CPU (``machine.cpu_info``), and per model
and batch size ``plain_ms``, ``twin_ms`` (per image, best of ``--repeats``) and ``max_abs_diff``
(largest logit difference between the two, float rounding only). ``models.inference_batch_size``
is chosen from these figures (8 images at 192 px on a CPU).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_info  # noqa: E402

from patchforensics.models import build_model, inference_model  # noqa: E402

MODELS = (("block1", 192), ("block2", 192), ("block3", 192), ("full", 0))


def per_image_ms(net: torch.nn.Module, x: torch.Tensor, n_images: int, repeats: int) -> float:
    """Best-of-``repeats`` milliseconds per image over ``n_images`` images in batches of x."""
    best = float("inf")
    with torch.inference_mode():
        net(x)  # oneDNN builds its kernels for this shape once
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(max(1, n_images // len(x))):
                net(x)
            best = min(best, (time.perf_counter() - t0) / (max(1, n_images // len(x)) * len(x)))
    return best * 1000


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[4, 8, 16, 32])
    ap.add_argument("--images", type=int, default=64, help="images per timing")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--size", type=int, default=64, help="image side before the load size")
    ap.add_argument("--json", action="store_true", help="print one JSON object last")
    args = ap.parse_args(argv)
    machine = cpu_info()
    print(f"{machine['cpu']}, {torch.get_num_threads()} threads, native bf16: "
          f"{machine.get('mkldnn_bf16')}", flush=True)
    rows = []
    for depth, load in MODELS:
        model = build_model(depth=depth, load_size=load, seed=0)
        model.train()
        with torch.no_grad():  # non-trivial BatchNorm statistics, as after training
            model(torch.randn(8, 3, args.size, args.size))
        model.eval().to(memory_format=torch.channels_last)
        twin = inference_model(model).to(memory_format=torch.channels_last)
        for bs in args.batches:
            x = torch.randn(bs, 3, args.size, args.size).contiguous(
                memory_format=torch.channels_last)
            with torch.inference_mode():
                diff = float((model(x) - twin(x)).abs().max())
            plain = per_image_ms(model, x, args.images, args.repeats)
            folded = per_image_ms(twin, x, args.images, args.repeats)
            rows.append({"model": f"xception_{depth}", "load_size": load, "batch": bs,
                         "plain_ms": round(plain, 2), "twin_ms": round(folded, 2),
                         "max_abs_diff": diff})
            print(f"{rows[-1]['model']:17s} load {load:3d} batch {bs:3d}: plain "
                  f"{plain:6.1f} ms/img, folded {folded:6.1f} ms/img", flush=True)
    if args.json:
        print(json.dumps({"machine": machine, "threads": torch.get_num_threads(),
                          "rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
