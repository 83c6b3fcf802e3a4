"""Speed of ``patchforensics score`` (issue 5): images/s end to end (read and decode, centre crop,
LANCZOS to the training size, batched ``inference_mode`` forward, per-image box and score) and of
the forward pass alone, with and without heatmap PNGs.

    python benchmarks/bench_score.py                       # xception block2, 64 px model
    python benchmarks/bench_score.py --depth full --n 400 --source-size 512

The checkpoint is a freshly initialised model saved in the ``best.pt`` format (speed does not
depend on the weights); the inputs are ``--n`` random smooth JPEGs of ``--source-size`` px, so
decoding and resizing cost what they would on camera-sized files. Figures are medians of
``--repeats`` runs after one warm-up run.
"""

from __future__ import annotations

import argparse
import io
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from patchforensics.checkpoint import load_checkpoint, logit_maps
from patchforensics.models import ModelConfig, build_model
from patchforensics.scoring import score_files


def write_inputs(folder: Path, n: int, side: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for i in range(n):
        small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        im = Image.fromarray(small).resize((side, side), Image.Resampling.BICUBIC)
        im.save(folder / f"{i:05d}.jpg", quality=90)


def write_checkpoint(folder: Path, arch: str, depth: str, size: int) -> Path:
    folder.mkdir(parents=True)
    cfg = ModelConfig(arch=arch, depth=depth)
    buf = io.BytesIO()
    torch.save({"model": build_model(cfg, seed=0).state_dict(), "model_config": cfg.__dict__,
                "epoch": 0, "val": {}, "input_size": size}, buf)
    (folder / "best.pt").write_bytes(buf.getvalue())
    return folder


def timed(fn, repeats: int) -> float:
    fn()  # warm-up: oneDNN kernels, receptive-field cache
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="xception")
    ap.add_argument("--depth", default="block2")
    ap.add_argument("--size", type=int, default=64, help="training size of the model, px")
    ap.add_argument("--source-size", type=int, default=256, help="side of the input JPEGs, px")
    ap.add_argument("--n", type=int, default=256, help="number of input images")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default=None)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "in").mkdir()
        write_inputs(tmp / "in", args.n, args.source_size)
        run = write_checkpoint(tmp / "run", args.arch, args.depth, args.size)
        ck = load_checkpoint(run, device=args.device)
        prepared = np.stack([np.asarray(Image.open(f).convert("RGB").resize(
            (args.size, args.size), Image.Resampling.LANCZOS))
            for f in sorted((tmp / "in").glob("*.jpg"))])

        forward = timed(lambda: logit_maps(ck.model, prepared, device=args.device,
                                           batch_size=args.batch_size), args.repeats)
        e2e = timed(lambda: score_files(run, [tmp / "in"], batch_size=args.batch_size,
                                        device=args.device, progress=False), args.repeats)
        heat = timed(lambda: score_files(run, [tmp / "in"], batch_size=args.batch_size,
                                         device=args.device, progress=False,
                                         heatmaps=tmp / "heat"), args.repeats)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    print(f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, device {device}")
    print(f"# {args.arch} {args.depth}, model size {args.size} px, {args.n} JPEGs of "
          f"{args.source_size} px, batch {args.batch_size}, median of {args.repeats}")
    print(f"forward only (prepared uint8 in memory): {args.n / forward:8.0f} img/s")
    print(f"score end to end (decode + prepare + forward): {args.n / e2e:8.0f} img/s")
    print(f"score with heatmap PNGs:                 {args.n / heat:8.0f} img/s")


if __name__ == "__main__":
    main()
