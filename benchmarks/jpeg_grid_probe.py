"""Is the reals' 8 px JPEG block grid detectable after the LANCZOS step to 64 px? (issue 23)

The embedded CelebA reals are decoded JPEGs (178 x 218, IJG quality 75, 4:2:0). Their luma blocks
repeat every 8 native px, their chroma blocks (4:2:0) every 16, and the crop offsets are fixed
(20 rows off the top, none off the side), so the grid has the same phase in every image: 178 / 8 =
22.25 and 178 / 16 = 11.125 cycles per image, at any output size. This probe builds the issue's
pair from N real crops (the world's 64 px crops upsampled to the 178 x 218 frame with
``jpeg.render_native``; set A gets ``jpeg.jpeg_round_trip`` with the reals' own tables, set B
none; both ``preprocess.prepare_array`` to 64 px) and measures:

- set-level: each image's profile of |first difference| (per YCbCr channel, along rows and
  columns) is Fourier-evaluated at exactly 11.125 and 22.25 cycles per image (a direct DFT at the
  non-integer frequency, Hann window); a grid with a fixed phase makes the *complex mean* over a
  set move away from the other set's. Two-sample statistic: sum over the 12 features of
  |mean_A - mean_B|^2 / (var_A / n_A + var_B / n_B), p-value from a label permutation null;
- the audit's detector, ``jpeg.block_grid_score``: chroma |second difference| profiles projected
  on the phase that peaks on the block edges (no fitting); Welch t with a permutation null and
  its per-image AUC;
- per-image: a matched filter (the set-level mean difference, learnt on one half of the faces,
  applied to the other half: cross-fitted) and a phase-blind grid energy, as ROC AUCs;
- the same at the native 178 px crop (no LANCZOS), a positive control where the grid certainly
  exists; false-alarm controls (two disjoint face sets with the same history); the world's own
  64 px reals against A and B; and the radial-spectrum classifier (``world.spectrum_auc``).

    python benchmarks/jpeg_grid_probe.py            # N = 100 faces a side, ~1-2 min on 2 cores
    python benchmarks/jpeg_grid_probe.py --n 200 --json
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
from sklearn.metrics import roc_auc_score

from patchforensics.embedded import load_celeba, source_jpeg_history
from patchforensics.jpeg import JpegHistory, block_grid_score, jpeg_round_trip, render_native
from patchforensics.preprocess import center_square, prepare_array
from patchforensics.world import spectrum_auc

GRID_CYCLES = (178 / 16, 178 / 8)  # chroma (4:2:0) and luma block frequencies, cycles/image
# JFIF RGB -> YCbCr (offsets dropped: only differences are used)
YCBCR = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])


def grid_features(images: np.ndarray, cycles: tuple[float, ...] = GRID_CYCLES) -> np.ndarray:
    """Complex grid coefficients of each image: N x (3 channels * 2 axes * len(cycles)).

    ``images``: N x S x S x 3 uint8. For each YCbCr channel and axis, the mean |first difference|
    across the image is a profile of S - 1 values (block edges raise it where they fall); its
    Hann-windowed DFT at each frequency (cycles per image, need not be an integer) is one
    feature. The phase is measured from the image's left/top edge, so a grid at fixed offsets
    gives every image the same expected phase.
    """
    n, s = images.shape[:2]
    ycc = images.astype(np.float64) @ YCBCR.T  # N x S x S x 3
    x = np.arange(s - 1) + 0.5  # a difference sits between two pixels
    window = np.hanning(s - 1)
    basis = window[None, :] * np.exp(-2j * np.pi * np.outer(cycles, x) / s)  # F x (S-1)
    feats = []
    for axis in (2, 1):  # along columns (vertical edges), then along rows (horizontal edges)
        prof = np.abs(np.diff(ycc, axis=axis)).mean(axis=3 - axis)  # N x (S-1) x 3
        prof = prof - prof.mean(axis=1, keepdims=True)
        feats.append(np.einsum("nxc,fx->ncf", prof, basis).reshape(n, -1))
    return np.concatenate(feats, axis=1)


def two_sample_stat(za: np.ndarray, zb: np.ndarray) -> float:
    """Sum over features of the squared standardised difference of the complex set means
    (each term ~ chi^2 with 2 dof / 2 under no difference). za, zb: N_a x K, N_b x K complex."""
    diff = za.mean(0) - zb.mean(0)
    var = za.var(0) / len(za) + zb.var(0) / len(zb)
    return float(np.sum(np.abs(diff) ** 2 / var))


def permutation_p(za: np.ndarray, zb: np.ndarray, perms: int, seed: int) -> tuple[float, float]:
    """(statistic, permutation p-value) of :func:`two_sample_stat`; p >= 1 / (perms + 1)."""
    obs = two_sample_stat(za, zb)
    pooled = np.concatenate([za, zb])
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(perms):
        idx = rng.permutation(len(pooled))
        hits += two_sample_stat(pooled[idx[:len(za)]], pooled[idx[len(za):]]) >= obs
    return obs, (hits + 1) / (perms + 1)


def per_image_aucs(za: np.ndarray, zb: np.ndarray) -> dict[str, float]:
    """Per-image detectors, A (label 1) vs B: a matched filter on the set-mean difference,
    learnt on one half of each set and scored on the other (cross-fitted), and the phase-blind
    grid energy sum |z|^2 / var. Rows of za and zb at the same index may be the same face;
    the halves split by index so a face never trains its own score."""
    half = min(len(za), len(zb)) // 2
    scores_a, scores_b = [], []
    for train, test in ((slice(0, half), slice(half, None)), (slice(half, None), slice(0, half))):
        w = (za[train].mean(0) - zb[train].mean(0)) / (za[train].var(0) + zb[train].var(0))
        scores_a.append(np.real(za[test] @ np.conj(w)))
        scores_b.append(np.real(zb[test] @ np.conj(w)))
    var = np.concatenate([za, zb]).var(0)
    energy = lambda z: (np.abs(z) ** 2 / var).sum(1)  # noqa: E731
    return {"matched_filter": auc(np.concatenate(scores_a), np.concatenate(scores_b)),
            "grid_energy": auc(energy(za), energy(zb))}


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    return float(roc_auc_score(y, np.r_[pos, neg]))


def build_sets(raw: list[np.ndarray], history: JpegHistory, size: int) -> dict[str, np.ndarray]:
    """The probe's image sets for faces ``raw`` (native 178 x 218 decoded JPEGs):
    ``reals`` (the world's size-px crops), ``A``/``B`` (the issue's pair: reals upsampled to the
    native frame, with / without the reals' JPEG round trip, then the crop and LANCZOS) and
    ``A178``/``B178`` (the same before LANCZOS: the native-resolution positive control)."""
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("reals", "A", "B", "A178", "B178")}
    for arr in raw:
        small = prepare_array(arr, size)
        frame = render_native(small, history.height, history.width)
        jpeg = jpeg_round_trip(frame, history)
        out["reals"].append(small)
        out["A"].append(prepare_array(jpeg, size))
        out["B"].append(prepare_array(frame, size))
        out["A178"].append(np.ascontiguousarray(center_square(jpeg)))
        out["B178"].append(np.ascontiguousarray(center_square(frame)))
    return {k: np.stack(v) for k, v in out.items()}


def compare(name: str, a: np.ndarray, b: np.ndarray, perms: int, seed: int) -> dict:
    """Set-level test and per-image AUCs for one pair of sets (a = the one expected to carry
    the grid, or either for a no-difference control)."""
    za, zb = grid_features(a), grid_features(b)
    stat, p = permutation_p(za, zb, perms, seed)
    # the audit's detector: phase-locked chroma |second difference| (jpeg.block_grid_score)
    ga, gb = (np.array([block_grid_score(x) for x in s]) for s in (a, b))
    welch = lambda u, v: (u.mean() - v.mean()) / np.sqrt(u.var() / len(u) + v.var() / len(v))  # noqa: E731
    pooled, rng = np.r_[ga, gb], np.random.default_rng(seed)
    null = [welch(*np.split(rng.permutation(pooled), [len(ga)])) for _ in range(perms)]
    t_obs = welch(ga, gb)
    # per-feature standardised differences, to see which channel / axis / frequency carries it
    z = np.abs(za.mean(0) - zb.mean(0)) / np.sqrt(za.var(0) / len(za) + zb.var(0) / len(zb))
    return {"pair": name, "n_a": len(a), "n_b": len(b), "stat": round(stat, 1),
            "df_chi2": 2 * za.shape[1], "p_perm": p, "max_feature_z": round(float(z.max()), 2),
            **{f"auc_{k}": round(v, 3) for k, v in per_image_aucs(za, zb).items()},
            "grid_t": round(float(t_obs), 2),
            "grid_p_perm": (np.sum(np.abs(null) >= abs(t_obs)) + 1) / (perms + 1),
            "auc_grid_score": round(auc(ga, gb), 3)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100, help="faces per set (2N are read)")
    ap.add_argument("--size", type=int, default=64, help="prepared size, px (the world's)")
    ap.add_argument("--perms", type=int, default=2000, help="permutations for the null")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print one JSON object instead")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    history = source_jpeg_history("celeba")
    raw = [arr for _, arr in load_celeba(limit=2 * args.n)]
    one = build_sets(raw[:args.n], history, args.size)  # faces 0..N-1
    two = build_sets(raw[args.n:], history, args.size)  # faces N..2N-1 (a disjoint control)
    pairs = [  # (name, set expected to carry the grid, other set)
        ("178px control: A vs B, same faces", one["A178"], one["B178"]),
        ("64px issue pair: A vs B, same faces", one["A"], one["B"]),
        ("64px A vs B, disjoint faces", one["A"], two["B"]),
        ("64px false alarm: A vs A, disjoint faces", one["A"], two["A"]),
        ("64px false alarm: B vs B, disjoint faces", one["B"], two["B"]),
        ("64px world reals vs B (old world's fakes)", two["reals"], one["B"]),
        ("64px world reals vs A (default world's fakes)", two["reals"], one["A"]),
        ("64px world reals vs world reals, disjoint", two["reals"], one["reals"]),
    ]
    rows = [compare(name, a, b, args.perms, args.seed) for name, a, b in pairs]
    spec = [(name, round(spectrum_auc(a, b, seed=args.seed), 3)) for name, a, b in [
        ("reals vs other reals", two["reals"], one["reals"]),
        ("reals vs round trip + JPEG (A)", two["reals"], one["A"]),
        ("reals vs round trip, no JPEG (B)", two["reals"], one["B"]),
        ("same faces: A vs B", one["A"], one["B"]),
        ("178px same faces: A vs B", one["A178"], one["B178"])]]
    diff = one["A"].astype(np.float64) - one["B"]
    result = {
        "n": args.n, "size": args.size, "perms": args.perms, "seed": args.seed,
        "grid_cycles_per_image": [round(c, 3) for c in GRID_CYCLES],
        "history": {k: v for k, v in history.to_dict().items() if k != "tables"},
        "pixel_rms_A_minus_B_64px": round(float(np.sqrt((diff ** 2).mean())), 3),
        "pixel_rms_A_minus_B_178px": round(float(np.sqrt(
            ((one["A178"].astype(np.float64) - one["B178"]) ** 2).mean())), 3),
        "grid_tests": rows, "spectrum_auc": dict(spec),
        "seconds": round(time.perf_counter() - t0, 1), "cpu": platform.processor() or
        platform.machine()}
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"JPEG grid probe: n = {args.n} faces a side, {args.size} px, {args.perms} "
          f"permutations; grid at {', '.join(f'{c:g}' for c in GRID_CYCLES)} cycles/image")
    print(f"pixel RMS |A - B|: {result['pixel_rms_A_minus_B_64px']} grey levels at "
          f"{args.size} px, {result['pixel_rms_A_minus_B_178px']} at 178 px")
    print("left: omnibus test on |1st difference| of Y, Cb, Cr at both frequencies (any phase);"
          "\nright: jpeg.block_grid_score (the audit's jpeg_grid: chroma |2nd difference| "
          "projected on the block-edge phase), Welch t and per-image AUC")
    print(f"{'pair':48s} {'stat':>8s} {'(df)':>5s} {'p_perm':>8s} {'max z':>6s} "
          f"{'AUC mf':>7s} {'AUC E':>6s} | {'grid t':>7s} {'p_perm':>8s} {'AUC':>6s}")
    for r in rows:
        print(f"{r['pair']:48s} {r['stat']:8.1f} {r['df_chi2']:5d} {r['p_perm']:8.4f} "
              f"{r['max_feature_z']:6.2f} {r['auc_matched_filter']:7.3f} "
              f"{r['auc_grid_energy']:6.3f} | {r['grid_t']:7.2f} {r['grid_p_perm']:8.4f} "
              f"{r['auc_grid_score']:6.3f}")
    print("radial-spectrum logistic regression (world.spectrum_auc, 5-fold):")
    for name, v in spec:
        print(f"  {name:40s} AUC {v:.3f}")
    print(f"{result['seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
