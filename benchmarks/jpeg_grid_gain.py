"""Does the audit's JPEG-grid check follow the history and not the content? (issue 23)

The grid's amplitude (``jpeg.block_grid_score``) separates sets with the *same* JPEG history
when their content differs (the default world's VAE and GMM fakes show a weaker grid than the
reals after the same q75 step, the GANs a stronger one). ``audit.grid_gain`` compares each image
with itself given the reals' history once more. This prints, per set, the quantiles of the gain
(2nd, 10th, 50th, 90th, 98th percentile) and the share above ``audit.GRID_MISSING``, for:

- every CelebA set of a built world (test split; every fake there has the reals' history);
- the issue's pair from real crops (64 px crop upsampled to the 178 x 218 frame, with and
  without the reals' JPEG round trip, both cropped and LANCZOS'd to 64 px), and the same with
  the crops blurred first (Gaussian, radius 1 px at 64 px: content like a VAE's).

    python benchmarks/jpeg_grid_gain.py --world data/default64 --n 150   # ~15 s on 2 cores
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from machine import cpu_info
from PIL import Image, ImageFilter

from patchforensics.audit import GRID_MISSING, grid_gain
from patchforensics.embedded import load_celeba, source_jpeg_history
from patchforensics.jpeg import jpeg_round_trip, render_native
from patchforensics.preprocess import prepare_array

QUANTILES = (0.02, 0.1, 0.5, 0.9, 0.98)


def folder(path: Path, n: int) -> list[np.ndarray]:
    return [np.asarray(Image.open(f).convert("RGB")) for f in sorted(path.glob("*.png"))[:n]]


def issue_pairs(n: int, history) -> dict[str, list[np.ndarray]]:
    """Real crops with and without the history, sharp and blurred (n each)."""
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("jpeg", "none", "blur_jpeg", "blur_none")}
    for _, arr in load_celeba(limit=n):
        small = prepare_array(arr, 64)
        blurred = np.asarray(Image.fromarray(small).filter(ImageFilter.GaussianBlur(1.0)))
        for prefix, img in (("", small), ("blur_", blurred)):
            frame = render_native(img, history.height, history.width)
            out[prefix + "jpeg"].append(prepare_array(jpeg_round_trip(frame, history), 64))
            out[prefix + "none"].append(prepare_array(frame, 64))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--world", type=Path, default=None, help="a built world's root (optional)")
    ap.add_argument("--n", type=int, default=150, help="images per set")
    args = ap.parse_args(argv)
    history = source_jpeg_history("celeba")
    sets: dict[str, list[np.ndarray]] = {}
    if args.world is not None:
        sets["world real/celeba"] = folder(args.world / "real/celeba/test", args.n)
        for d in sorted((args.world / "fake/celeba").iterdir()):
            sets[f"world fake/celeba/{d.name}"] = folder(d / "test", args.n)
    sets.update({f"issue pair: {k}": v for k, v in issue_pairs(args.n, history).items()})
    print(json.dumps({"cpu": cpu_info()["cpu"], "n": args.n,
                      "grid_missing": GRID_MISSING}))
    for name, images in sets.items():
        gains = np.array([grid_gain(x, history) for x in images])
        q = np.nanquantile(gains, QUANTILES)
        print(f"{name:34s} n {len(images):4d}  gain q02/10/50/90/98 "
              + " ".join(f"{v:+.3f}" for v in q)
              + f"  lacking {np.mean(gains > GRID_MISSING):.0%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
