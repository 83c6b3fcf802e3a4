"""The cross-generator study of notebook 03: every classifier against every test pair, with
intervals, paired comparisons, robustness and the written reading (Chai et al. 2020, Sec.
4.1-4.2 and the original code's ``test.py``).

Maps and calibration come from ``checkpoint``, image scores from ``score_modes``, metrics and
intervals from ``stats``. AUC is the primary metric (it ignores class balance: test fakes
outnumber the reals), with **fake as the positive class** (the original code's AP took real as
positive; we also report that number as ``ap_real_positive`` for "paper vs. ours"). The
decision threshold for ``acc_at_threshold`` and the calibration temperature are chosen on the
*training generator's validation split*, never on the test set. Intervals come from a
stratified bootstrap over test images (and over seeds where a model has several), with the same
resamples for every model, so :func:`patch_vs_full` compares two models *paired*; each table
reports ``n_tied``, the images whose order-keeping score another image shares.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, ImageFilter

from . import paths, runs
from .checkpoint import (
    Calibration,
    Checkpoint,
    Device,
    adequate,
    calibration,
    eval_precision,
    folder_maps,
    load_checkpoint,
    logit_maps,
)
from .data import FAKE, REAL, load_folder
from .embedded import read_manifest
from .images import (
    atomic_write_text,
    list_images,
)
from .models import DEPTHS
from .progress import bar as progress_bar
from .protocol import one_setting
from .receptive_field import field_fraction, paper_field_fraction, receptive_field
from .runs import finished, stopped_by
from .score_modes import (
    MODES,
    calibrated_probability,
    log_odds_from_maps,
    n_tied,
    scores_from_maps,
)
from .stats import (
    LEVEL,
    N_BOOT,
    VERDICTS,
    binary_metrics,
    boot_weights,
    expected_calibration_error,
    groups_from_names,
    interval,
    named_rng,
    seed_image_mean,
    verdict,
    weighted_ap,
    weighted_auc,
)

# Test-time degradations (applied to real and fake alike): JPEG quality, Gaussian blur sigma
# (px), and resize factor (down to factor * size with bicubic, then back up to size).
SWEEPS: dict[str, tuple[float, ...]] = {
    "jpeg": (95, 85, 75, 60, 45, 30),
    "blur": (0.0, 0.5, 1.0, 1.5, 2.0, 3.0),
    "resize": (1.0, 0.75, 0.5, 0.375, 0.25),
}


# --- evaluating sets ---------------------------------------------------------------------------

def evaluate_maps(real: np.ndarray, fakes: dict[str, np.ndarray], cal: Calibration | None, *,
                  modes: Sequence[str] = MODES, n_boot: int = 0,
                  boot_seed: int = 0) -> pd.DataFrame:
    """One row per (fake set, mode) from logit-difference maps of the reals and of each fake
    set: :func:`binary_metrics` (AP and AUC from the order-keeping :func:`log_odds_from_maps`),
    ``n_tied`` (images whose order-keeping score another image shares), the threshold and
    temperature from ``cal`` (0.5 and 1.0 without), and ECE before and after temperature
    scaling (:func:`calibrated_probability` of the log-odds). ``n_boot`` > 0 adds
    ``auc_ci_low``/``auc_ci_high``: a 95 % stratified bootstrap interval of AUC over the images
    (:func:`boot_weights`)."""
    rows = []
    for name, fake in fakes.items():
        weights = boot_weights(len(real), len(fake), "real", name, n_boot=n_boot,
                               seed=boot_seed) if n_boot else None
        maps = np.concatenate([real, fake])
        y = np.r_[np.full(len(real), REAL), np.full(len(fake), FAKE)]
        for mode in modes:
            t = cal.temperature[mode] if cal else 1.0
            raw = scores_from_maps(maps, mode)
            rank = log_odds_from_maps(maps, mode)
            row = {"fake_set": name, "mode": mode,
                   **binary_metrics(raw, y, threshold=cal.threshold[mode] if cal else 0.5,
                                    rank_scores=rank),
                   "n_tied": n_tied(rank),
                   "temperature": t, "ece": expected_calibration_error(raw, y),
                   "ece_calibrated": expected_calibration_error(
                       calibrated_probability(rank, t, mode), y)}
            if weights is not None:
                row["auc_ci_low"], row["auc_ci_high"] = interval(
                    weighted_auc(rank[y == REAL], rank[y == FAKE], *weights))
            rows.append(row)
    return pd.DataFrame(rows)


def _layout_sets(root: Path) -> list[str]:
    """Set keys of a data root without a manifest (one ``patchforensics import`` filled):
    ``real/<dataset>`` and ``fake/<dataset>/<generator>`` folders holding a ``test/`` split."""
    return ([f"real/{p.name}" for p in sorted(root.glob("real/*")) if (p / "test").is_dir()]
            + [f"fake/{p.parent.name}/{p.name}" for p in sorted(root.glob("fake/*/*"))
               if (p / "test").is_dir()])


def world_sets(world_root: str | os.PathLike,
               datasets: Sequence[str] | None = None) -> dict[str, list[str]]:
    """``{dataset: [generator, ...]}`` of a built world's fake sets (from its manifest). Sets
    named ``<generator>_inverted`` (inversions of the reals, training data) are left out: they
    share the reals' content, so they are not test sets of another generator. So are the
    manipulated faces (manifest entries with ``manipulation``, :func:`manipulation_sets`):
    edited reals, studied on their own in notebook 07, not another generator's samples."""

    manifest = read_manifest(Path(world_root))["sets"]
    keys = manifest or _layout_sets(Path(world_root))
    sets: dict[str, list[str]] = {}
    for key in sorted(keys):
        parts = key.split("/")
        if parts[0] == "fake" and (datasets is None or parts[1] in datasets) \
                and not parts[2].endswith("_inverted") \
                and "manipulation" not in manifest.get(key, {}):
            sets.setdefault(parts[1], []).append(parts[2])
    return sets


def manipulation_sets(world_root: str | os.PathLike, dataset: str = "celeba") -> list[str]:
    """The manipulated-face sets of ``dataset`` in a world (``fake/<dataset>/<method>`` whose
    manifest entry has ``manipulation``), in the manifest's order of methods."""
    sets = read_manifest(Path(world_root))["sets"]
    return [key.split("/")[2] for key, entry in sets.items()
            if key.startswith(f"fake/{dataset}/") and "manipulation" in entry]


RunKey = str | tuple[str, int]  # "label" (seed read from the run) or (label, seed)


def run_setting(run: str | os.PathLike) -> str:
    """The training setting a run recorded (``config.json``: ``train.setting``), else ``""``."""
    cfg = runs.read_config(run)
    return str(cfg.get("train", {}).get("setting") or cfg.get("config", {}).get("setting")
               or "")


def image_scores(runs: dict[RunKey, str | os.PathLike], world_root: str | os.PathLike, *,
                 setting: str | None = None, split: str = "test",
                 datasets: Sequence[str] | None = None, modes: Sequence[str] = MODES,
                 device: Device = None, progress: bool = True) -> pd.DataFrame:
    """Every checkpoint's score of every test image of a world's ``split``: the long per-image
    table that :func:`metrics_from_scores` and :func:`patch_vs_full` are computed from (each
    image is scored once).

    ``runs``: ``{label or (label, seed): run folder}`` (relative folders are below
    ``paths.checkpoints_dir()``; a plain label takes the run's own seed). ``setting``: the
    training setting these runs share (None: each run's recorded ``train.setting``).
    One row per (run, dataset, set, image, mode): ``label``, ``model``, ``arch``, ``depth``,
    ``rf_px``, ``field_fraction``, ``seed``, ``setting``, ``train_set``, ``input_size``
    (network input side, px), ``epochs`` and ``stopped_by`` (``runs.stopped_by``: ``rule`` or
    ``cap``), ``val_auc_ci_low`` and ``adequate`` (:func:`adequate`), ``dataset``, ``set``
    (``"real"`` or a generator), ``image`` (index in the set's sorted files), ``file`` (its
    name: Olivetti's ``sNN_k.png`` names the person, for resampling by person), ``y`` (0 real,
    1 fake), ``mode``, ``score`` (:func:`log_odds_from_maps`, the ranking score), ``prob`` (raw
    :func:`scores_from_maps`), ``prob_calibrated`` (:func:`calibrated_probability` of
    ``score`` at the run's temperature: the same order as ``score``), ``threshold`` and
    ``temperature`` (from the run's validation split)."""

    root = Path(world_root)
    sets = world_sets(root, datasets)
    cache: dict[str, np.ndarray] = {}

    def images(key: str) -> np.ndarray:
        if key not in cache:
            cache[key] = load_folder(root / key / split)[0]
        return cache[key]

    frames = []
    for key, run in progress_bar(list(runs.items()), desc="score test sets",
                                 disable=not progress):
        label, seed = key if isinstance(key, tuple) else (key, None)
        ck = load_checkpoint(run, device=device)
        cal = calibration(ck, device=device)
        train_set = ""
        if ck.train_fake is not None:
            ds, gen = ck.train_fake.parts[-2:]
            train_set = f"{ds}/{gen.removesuffix('_inverted')}"
        cfg = ck.model.config
        head = {"label": label, "model": ck.name, "arch": cfg.arch, "depth": cfg.depth,
                "rf_px": receptive_field(cfg, ck.input_size).size,
                "field_fraction": field_fraction(cfg, ck.input_size),
                "seed": ck.seed if seed is None else int(seed),
                "setting": run_setting(ck.run_dir) if setting is None else setting,
                "train_set": train_set, "input_size": cfg.load_size or ck.input_size,
                "epochs": int((finished(ck.run_dir) or {}).get("epochs", 0)),
                "stopped_by": stopped_by(ck.run_dir),
                "val_auc_ci_low": cal.val.get("auc_ci_low", np.nan) if cal else np.nan,
                "adequate": adequate(cal)}
        for dataset, gens in sets.items():
            for name in ["real", *gens]:
                key = f"real/{dataset}" if name == "real" else f"fake/{dataset}/{name}"
                maps = folder_maps(ck, root / key / split, device=device,
                                   loader=lambda _, k=key: images(k))
                n = len(maps)
                files = [f.name for f in list_images(root / key / split)]  # maps' order
                for mode in modes:
                    t = cal.temperature[mode] if cal else 1.0
                    score = log_odds_from_maps(maps, mode)
                    frames.append(pd.DataFrame({
                        **head, "dataset": dataset, "set": name, "image": np.arange(n),
                        "file": files,
                        "y": REAL if name == "real" else FAKE, "mode": mode,
                        "score": score,
                        "prob": scores_from_maps(maps, mode),
                        "prob_calibrated": calibrated_probability(score, t, mode),
                        "threshold": cal.threshold[mode] if cal else 0.5,
                        "temperature": t}))
    return pd.concat(frames, ignore_index=True)


_RUN_COLS = ["label", "model", "arch", "depth", "rf_px", "field_fraction", "seed", "setting",
             "train_set", "input_size", "epochs", "stopped_by", "val_auc_ci_low", "adequate"]


def file_groups(rows: pd.DataFrame) -> np.ndarray | None:
    """Person ids of one set's rows (sorted by ``image``) from their ``file`` names
    (``stats.groups_from_names``: Olivetti's ``sNN_k``), or None (independent images)."""
    return groups_from_names(rows["file"].tolist()) if "file" in rows.columns else None


def metrics_from_scores(scores: pd.DataFrame, *, n_boot: int = N_BOOT, seed: int = 0,
                        level: float = LEVEL) -> pd.DataFrame:
    """The cross-generator table from :func:`image_scores`: one row per (run, dataset,
    generator, mode) with the run's columns, :func:`binary_metrics` (AP/AUC on the
    order-keeping score; accuracy, threshold and ECE on the probability), ``n_tied``,
    ``temperature``, ``ece``, ``ece_calibrated``, ``seen``, and bootstrap ``level`` intervals
    over the test images (stratified: reals and fakes resampled separately, ``n_boot``
    resamples from :func:`boot_weights`, the same for every model): ``auc_ci_low``,
    ``auc_ci_high``, ``ap_real_positive_ci_low``, ``ap_real_positive_ci_high``."""
    rows = []
    weights: dict[tuple[str, str, int, int], tuple[np.ndarray, np.ndarray]] = {}
    group_cols = [c for c in _RUN_COLS if c in scores.columns] + ["dataset", "mode"]
    for keys, g in scores.groupby(group_cols, sort=False, dropna=False):
        head = dict(zip(group_cols, keys, strict=True))
        real = g[g["set"] == "real"].sort_values("image")
        for gen, fake in g[g["set"] != "real"].groupby("set", sort=False):
            fake = fake.sort_values("image")
            both = pd.concat([real, fake])
            y = both["y"].to_numpy()
            prob, rank = both["prob"].to_numpy(), both["score"].to_numpy()
            wkey = (head["dataset"], gen, len(real), len(fake))
            if wkey not in weights:
                weights[wkey] = boot_weights(len(real), len(fake), head["dataset"], gen,
                                             n_boot=n_boot, seed=seed,
                                             real_groups=file_groups(real),
                                             fake_groups=file_groups(fake))
            w_real, w_fake = weights[wkey]
            auc_lo, auc_hi = interval(weighted_auc(real["score"].to_numpy(),
                                                    fake["score"].to_numpy(), w_real, w_fake),
                                       level)
            ap_lo, ap_hi = interval(weighted_ap(-rank, 1 - y, np.hstack([w_real, w_fake])),
                                     level)
            rows.append({
                **{k: v for k, v in head.items() if k != "mode"}, "generator": gen,
                "mode": head["mode"],
                **binary_metrics(prob, y, threshold=float(both["threshold"].iloc[0]),
                                 rank_scores=rank),
                "auc_ci_low": auc_lo, "auc_ci_high": auc_hi,
                "ap_real_positive_ci_low": ap_lo, "ap_real_positive_ci_high": ap_hi,
                "n_tied": n_tied(rank),
                "temperature": float(both["temperature"].iloc[0]),
                "ece": expected_calibration_error(prob, y),
                "ece_calibrated": expected_calibration_error(
                    both["prob_calibrated"].to_numpy(), y),
                "seen": f"{head['dataset']}/{gen}" == head.get("train_set", "")})
    return pd.DataFrame(rows)


def cross_generator(runs: dict[RunKey, str | os.PathLike], world_root: str | os.PathLike, *,
                    split: str = "test", datasets: Sequence[str] | None = None,
                    modes: Sequence[str] = MODES, device: Device = None,
                    progress: bool = True, setting: str | None = None,
                    scores: pd.DataFrame | None = None, n_boot: int = N_BOOT,
                    boot_seed: int = 0) -> pd.DataFrame:
    """Every checkpoint against every real/fake pair of a world's ``split``:
    :func:`metrics_from_scores` of :func:`image_scores` (pass ``scores`` when already computed,
    so nothing is scored twice; ``runs`` and the data arguments are then unused).

    ``runs``: ``{label or (label, seed): run folder}`` (relative folders are below
    ``paths.checkpoints_dir()``). One row per (run, dataset, generator, mode): ``label``,
    ``model``, ``arch``, ``depth``, ``rf_px``, ``field_fraction``, ``seed``, ``setting``,
    ``train_set``, ``seen`` and the metrics with their intervals. Threshold and temperature
    come from each checkpoint's validation split."""
    if scores is None:
        scores = image_scores(runs, world_root, setting=setting, split=split,
                              datasets=datasets, modes=modes, device=device, progress=progress)
    return metrics_from_scores(scores, n_boot=n_boot, seed=boot_seed)


# --- paired comparisons: patch vs. full, with intervals over images and seeds ----------------


@dataclass
class _ModelBoots:
    """One model (all its seeds) in one setting: AUC per seed on every test pair, on the full
    test set and on each image resample, and the model's seed resamples."""

    info: dict[str, Any]  # arch, depth, field_fraction, train_set
    seeds: list[int]
    auc: dict[tuple[str, str], np.ndarray]  # (dataset, generator) -> (n_seeds,)
    boot: dict[tuple[str, str], np.ndarray]  # (dataset, generator) -> (n_seeds, n_boot)
    picks: np.ndarray  # n_boot x n_seeds: seed indices drawn in each resample

    def mean(self, pair: tuple[str, str]) -> tuple[float, np.ndarray]:
        """Mean AUC over seeds: point estimate and n_boot resamples (images and seeds)."""
        a = self.boot[pair]
        return float(self.auc[pair].mean()), a[self.picks, np.arange(a.shape[1])[:, None]].mean(1)

    def unseen(self) -> list[tuple[str, str]]:
        """The test pairs of the training dataset other than the training generator."""
        ds = self.info["train_set"].split("/")[0]
        return [p for p in self.auc if p[0] == ds and f"{p[0]}/{p[1]}" != self.info["train_set"]]


def _model_boots(scores: pd.DataFrame, mode: str, n_boot: int,
                 seed: int) -> dict[tuple[str, str], _ModelBoots]:
    """``{(setting, label): _ModelBoots}`` from an :func:`image_scores` table. Image resamples
    come from :func:`boot_weights` (shared by every model and seed: the comparison is paired
    over images); each model's seeds are resampled with replacement, independently of other
    models (seed k of one architecture shares nothing with seed k of another but the number)."""
    t = scores[scores["mode"] == mode]
    if t.empty:
        raise ValueError(f"no scores of mode {mode!r}; the table has {sorted(set(scores['mode']))}")
    out: dict[tuple[str, str], _ModelBoots] = {}
    weights: dict[tuple[str, str, int, int], tuple[np.ndarray, np.ndarray]] = {}
    for (setting, label), g in t.groupby(["setting", "label"], sort=False):
        first = g.iloc[0]
        seeds = sorted(g["seed"].unique().tolist())
        auc: dict[tuple[str, str], list[float]] = {}
        boot: dict[tuple[str, str], list[np.ndarray]] = {}
        for sd in seeds:
            gs = g[g["seed"] == sd]
            for dataset, gd in gs.groupby("dataset", sort=False):
                real_rows = gd[gd["set"] == "real"].sort_values("image")
                real = real_rows["score"].to_numpy()
                for gen, gf in gd[gd["set"] != "real"].groupby("set", sort=False):
                    fake = gf.sort_values("image")["score"].to_numpy()
                    wkey = (dataset, gen, len(real), len(fake))
                    if wkey not in weights:  # people (Olivetti) resampled whole
                        weights[wkey] = boot_weights(
                            len(real), len(fake), dataset, gen, n_boot=n_boot, seed=seed,
                            real_groups=file_groups(real_rows),
                            fake_groups=file_groups(gf.sort_values("image")))
                    auc.setdefault((dataset, gen), []).append(float(weighted_auc(real, fake)[0]))
                    boot.setdefault((dataset, gen), []).append(
                        weighted_auc(real, fake, *weights[wkey]))
        if any(len(v) != len(seeds) for v in auc.values()):
            raise ValueError(f"{label} ({setting}): not every seed was scored on every test set")
        picks = named_rng(seed, "seeds", str(setting), str(label)).integers(
            0, len(seeds), (n_boot, len(seeds)))
        info = {k: first[k] for k in ("arch", "depth", "field_fraction", "train_set")}
        out[(setting, label)] = _ModelBoots(info, seeds, {k: np.array(v) for k, v in auc.items()},
                                            {k: np.stack(v) for k, v in boot.items()}, picks)
    return out


def patch_vs_full(scores: pd.DataFrame, *, mode: str = "mean_softmax", full: str | None = None,
                  n_boot: int = 2000, seed: int = 0, level: float = LEVEL,
                  pooled: bool = True) -> pd.DataFrame:
    """AUC(patch) - AUC(full) per patch model and test pair, with a paired bootstrap interval,
    from an :func:`image_scores` table (one or several settings and seeds).

    Each of ``n_boot`` resamples draws the test images (reals and fakes separately, the same
    draw for both models: paired) and, per model, its seeds with replacement; a model's AUC in
    a resample is the mean over its drawn seeds, and the difference of the two means is one
    bootstrap value. Seeds are resampled per model, not paired by index: runs of two
    architectures with the same seed number share nothing else. With one seed per model the
    interval reflects the test images only; with 3 seeds the seed part is crude (3 values), so
    read it as a lower bound on the uncertainty. The point estimate is the difference of the
    seed means on the full test set. ``full``: the full-image model's label (default: the
    model of depth ``"full"`` with the patch model's architecture). ``pooled``: also one row
    per patch model for the mean over the unseen generators of its training dataset
    (``generator == "mean_unseen"``, generators weighted equally, the reals resampled once).

    Columns: ``setting``, ``model`` (label), ``arch``, ``depth``, ``field_fraction``,
    ``full_model``, ``dataset``, ``generator``, ``seen``, ``n_seeds``, ``n_seeds_full``,
    ``auc_patch``, ``auc_full``, ``diff``, ``ci_low``, ``ci_high``, ``verdict``
    (:func:`verdict`)."""
    boots = _model_boots(scores, mode, n_boot, seed)
    rows = []
    for (setting, label), mb in boots.items():
        if mb.info["depth"] == "full":
            continue
        if full is not None:
            ref_label = full
        else:
            cands = [lb for (st, lb), m in boots.items() if st == setting and
                     m.info["depth"] == "full" and m.info["arch"] == mb.info["arch"]]
            if not cands:
                continue
            ref_label = cands[0]
        ref = boots.get((setting, ref_label))
        if ref is None:
            raise ValueError(f"no full model {ref_label!r} in setting {setting!r}")

        def row(dataset: str, generator: str, seen: bool, auc_p: float, auc_f: float,
                diffs: np.ndarray, setting: str = setting, label: str = label,
                mb: _ModelBoots = mb, ref: _ModelBoots = ref,
                ref_label: str = ref_label) -> dict[str, Any]:
            lo, hi = interval(diffs, level)
            return {"setting": setting, "model": label, "arch": mb.info["arch"],
                    "depth": mb.info["depth"], "field_fraction": mb.info["field_fraction"],
                    "full_model": ref_label, "dataset": dataset, "generator": generator,
                    "seen": seen, "n_seeds": len(mb.seeds), "n_seeds_full": len(ref.seeds),
                    "auc_patch": auc_p, "auc_full": auc_f, "diff": auc_p - auc_f, "ci_low": lo,
                    "ci_high": hi, "verdict": verdict(lo, hi)}

        for pair in mb.auc:
            if pair not in ref.auc:
                continue
            auc_p, bp = mb.mean(pair)
            auc_f, bf = ref.mean(pair)
            rows.append(row(*pair, f"{pair[0]}/{pair[1]}" == mb.info["train_set"],
                            auc_p, auc_f, bp - bf))
        unseen = [p for p in mb.unseen() if p in ref.auc]
        if pooled and unseen:
            means_p = [mb.mean(p) for p in unseen]
            means_f = [ref.mean(p) for p in unseen]
            auc_p = float(np.mean([m[0] for m in means_p]))
            auc_f = float(np.mean([m[0] for m in means_f]))
            diffs = np.mean([mp[1] - mf[1] for mp, mf in zip(means_p, means_f, strict=True)], 0)
            rows.append(row(unseen[0][0], "mean_unseen", False, auc_p, auc_f, diffs))
    return pd.DataFrame(rows, columns=["setting", "model", "arch", "depth", "field_fraction",
                                       "full_model", "dataset", "generator", "seen", "n_seeds",
                                       "n_seeds_full", "auc_patch", "auc_full", "diff",
                                       "ci_low", "ci_high", "verdict"])


def unseen_auc(scores: pd.DataFrame, *, mode: str = "mean_softmax", n_boot: int = N_BOOT,
               seed: int = 0, level: float = LEVEL,
               generators: Sequence[str] | None = None) -> pd.DataFrame:
    """Per setting and model: mean AUC over the unseen generators of its training dataset
    (``generators``: only these, e.g. ``protocol.PRIMARY_GENERATORS``, which leaves out the
    DigiFace domain confound) and over seeds, with a ``level`` interval whose unit is the seed
    (``stats.seed_image_mean``: seed variance plus the test images' bootstrap variance; test
    images only with one seed, said in ``method``), and the seen pair's AUC. Rows sorted by
    setting and ``field_fraction``. Columns: ``setting``, ``model``, ``arch``, ``depth``,
    ``field_fraction``, ``n_seeds``, ``n_unseen``, ``auc_seen``, ``auc_unseen``, ``ci_low``,
    ``ci_high``, ``method``."""
    rows = []
    for (setting, label), mb in _model_boots(scores, mode, n_boot, seed).items():
        unseen = [p for p in mb.unseen() if generators is None or p[1] in generators]
        seen = [p for p in mb.auc if f"{p[0]}/{p[1]}" == mb.info["train_set"]]
        auc, lo, hi, method = (seed_image_mean(np.mean([mb.auc[p] for p in unseen], 0),
                                               np.mean([mb.boot[p] for p in unseen], 0), level)
                               if unseen else (np.nan, np.nan, np.nan, ""))
        rows.append({"setting": setting, "model": label, "arch": mb.info["arch"],
                     "depth": mb.info["depth"], "field_fraction": mb.info["field_fraction"],
                     "n_seeds": len(mb.seeds), "n_unseen": len(unseen),
                     "auc_seen": mb.mean(seen[0])[0] if seen else np.nan,
                     "auc_unseen": auc, "ci_low": lo, "ci_high": hi, "method": method})
    return pd.DataFrame(rows).sort_values(["setting", "field_fraction"], kind="stable",
                                          ignore_index=True)


# --- robustness ------------------------------------------------------------------------------

def degrade(images: np.ndarray, kind: str, value: float) -> np.ndarray:
    """A test-time degradation of N x S x S x 3 uint8 images (same shape back): ``jpeg``
    (quality ``value``), ``blur`` (Gaussian, sigma ``value`` px; 0 = identity) or ``resize``
    (bicubic down to round(value * S) px and back up; 1 = identity)."""
    if kind not in SWEEPS:
        raise ValueError(f"kind must be one of {tuple(SWEEPS)}, got {kind!r}")
    if (kind == "blur" and value == 0) or (kind == "resize" and value == 1):
        return images.copy()
    out = np.empty_like(images)
    side = images.shape[1]
    for i, arr in enumerate(images):
        im = Image.fromarray(arr)
        if kind == "jpeg":
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=int(value))
            im = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
        elif kind == "blur":
            im = im.filter(ImageFilter.GaussianBlur(radius=float(value)))
        else:
            small = max(1, round(value * side))
            im = im.resize((small, small), Image.Resampling.BICUBIC).resize(
                (side, side), Image.Resampling.BICUBIC)
        out[i] = np.asarray(im)
    return out


def robustness(runs: dict[str, str | os.PathLike], real: np.ndarray, fake: np.ndarray, *,
               sweeps: dict[str, Iterable[float]] | None = None, mode: str = "mean_softmax",
               device: Device = None, progress: bool = True) -> pd.DataFrame:
    """AP and accuracy of every checkpoint under each degradation of ``sweeps`` (default
    ``SWEEPS``), applied to the real and the fake images (N x S x S x 3 uint8) alike. One row per
    (run, kind, value) with ``label``, ``model``, ``seed``, ``ap``, ``auc``, ``acc``; the clean
    score is the row with ``kind == "none"``."""

    sweeps = {k: tuple(v) for k, v in (sweeps or SWEEPS).items()}
    y = np.r_[np.full(len(real), REAL), np.full(len(fake), FAKE)]
    both = np.concatenate([real, fake])
    variants = {("none", 0.0): both}
    for kind, values in sweeps.items():
        for v in values:
            variants[(kind, float(v))] = degrade(both, kind, v)
    rows = []
    for label, run in progress_bar(list(runs.items()), desc="robustness", disable=not progress):
        ck = load_checkpoint(run, device=device)
        for (kind, value), imgs in variants.items():
            s = scores_from_maps(logit_maps(ck.model, imgs, device=device,
                                            precision=eval_precision(ck, device)), mode)
            m = binary_metrics(s, y)
            rows.append({"label": label, "model": ck.name, "seed": ck.seed, "kind": kind,
                         "value": value, "ap": m["ap"], "auc": m["auc"], "acc": m["acc"]})
    return pd.DataFrame(rows)


# --- the written reading (notebook 03) ---------------------------------------------------------

def depth_summary(table: pd.DataFrame, *, mode: str = "mean_softmax",
                  arch: str = "xception", setting: str | None = None) -> pd.DataFrame:
    """Per depth of ``arch`` (rows in depth order), from a :func:`cross_generator` table of one
    training ``setting`` (default: the primary one): ``field_fraction``, ``rf_px``, ``n_seeds``
    and the mean over seeds and test pairs of AUC and AP on the seen pair (``auc_seen``,
    ``ap_seen``), the training dataset's unseen generators (``auc_unseen``, ``ap_unseen``) and
    the other datasets (``auc_other_dataset``, ``ap_other_dataset``). No intervals: those come
    from :func:`unseen_auc` and :func:`patch_vs_full`, which resample images and seeds."""

    t, _ = one_setting(table[(table["mode"] == mode) & (table["arch"] == arch)], setting)
    if "seed" not in t.columns:
        t = t.assign(seed=0)
    train_dataset = t["train_set"].str.split("/").str[0]
    same = t[t["dataset"] == train_dataset]
    other = t[t["dataset"] != train_dataset]
    out = pd.DataFrame(index=pd.Index(sorted(set(t["depth"])), name="depth"))
    if "field_fraction" in t.columns:
        out["field_fraction"] = t.groupby("depth")["field_fraction"].first()
    out["rf_px"] = t.groupby("depth")["rf_px"].first()
    out["n_seeds"] = t.groupby("depth")["seed"].nunique()
    for metric in ("auc", "ap"):
        if metric not in t.columns:
            continue
        by = same.groupby(["depth", "seen"])[metric].mean().unstack("seen")
        out[f"{metric}_seen"] = by.get(True)
        out[f"{metric}_unseen"] = by.get(False)
        out[f"{metric}_other_dataset"] = other.groupby("depth")[metric].mean()
    return out.reindex([d for d in DEPTHS[arch] if d in out.index])


def _ff(x: float) -> str:
    return "full image" if x >= 1.0 else f"field {x:.0%} of the face"


def _secondary_reading(cmp_: pd.DataFrame) -> list[str]:
    """The pooled rows and the verdict counts per unseen test set of a comparison table
    (``compare.secondary_comparisons``, Holm-adjusted verdicts, or :func:`patch_vs_full`)."""
    col = "verdict_holm" if "verdict_holm" in cmp_.columns else "verdict"
    is_pooled = cmp_["generator"].isin(["mean_unseen", "pooled"])
    pooled, per = cmp_[is_pooled], cmp_[~cmp_["seen"] & ~is_pooled]
    kinds = [*VERDICTS, *sorted(set(per[col]) - set(VERDICTS))]
    adjusted = ", Holm-adjusted within the table" if col == "verdict_holm" else ""
    lines = []
    if len(pooled):
        lines.append(f"\nPatch vs. full model on the mean over unseen generators (AUC(patch) - "
                     f"AUC(full){adjusted}):")
        lines += [f"- {r.model} ({_ff(r.field_fraction)}): {r.diff:+.3f} "
                  f"[{r.ci_low:+.3f}, {r.ci_high:+.3f}]: **{getattr(r, col)}**"
                  for r in pooled.itertuples()]
    lines.append(f"\nVerdicts per unseen test set (patch models against the full model"
                 f"{adjusted}):")
    for (dataset, gen), g in per.groupby(["dataset", "generator"], sort=True):
        counts = g[col].value_counts()
        better = g[g[col] == VERDICTS[0]]["model"].tolist()
        lines.append(f"- {dataset}/{gen}: " + ", ".join(
            f"{v}: {int(counts.get(v, 0))}" for v in kinds) +
            (f" (patch better: {', '.join(better)})" if better else ""))
    n, total = per[col].value_counts(), len(per)
    if total and n.get(VERDICTS[0], 0) == 0 and n.get(VERDICTS[2], 0) == 0:
        lines.append(f"\nNo interval separates a patch model from the full model on any of the "
                     f"{total} (model, unseen generator) comparisons: this run does not decide "
                     "the paper's claim.")
    elif total:
        lines.append(f"\nOf {total} (model, unseen generator) comparisons, "
                     f"{int(n.get(VERDICTS[0], 0))} favour the patch model, "
                     f"{int(n.get(VERDICTS[2], 0))} the full model and "
                     f"{total - int(n.get(VERDICTS[0], 0)) - int(n.get(VERDICTS[2], 0))} are "
                     "undecided or untested. Trends across patch sizes are not tested here.")
    return lines


def reading(table: pd.DataFrame, *, mode: str = "mean_softmax",
            paper: pd.DataFrame | None = None, comparison: pd.DataFrame | None = None,
            summary: pd.DataFrame | None = None, setting: str | None = None,
            primary: pd.DataFrame | None = None) -> str:
    """A short markdown reading of the paper's claim that smaller receptive fields generalise
    better to unseen generators, worded only from intervals; every number is computed from the
    arguments.

    ``table``: :func:`cross_generator` (per-row AUC intervals); ``primary``:
    ``compare.primary_contrast`` (the pre-registered verdicts); ``comparison``:
    ``compare.secondary_comparisons`` (or :func:`patch_vs_full`: secondary verdicts); ``summary``:
    :func:`unseen_auc` (mean unseen AUC per field fraction with intervals); ``paper``: the
    paper's AP-by-block figure (rows = test sets). One training ``setting`` (default: the
    primary one). Without ``primary`` and ``comparison`` the reading states no verdict: per-row
    intervals that overlap or not do not test a paired difference."""
    t, setting = one_setting(table[table["mode"] == mode], setting)
    where = f", setting `{setting}`" if setting else ""
    lines = [f"**Unseen generators, {mode}{where}** (AUC, fake = positive; 95 % bootstrap "
             "intervals over test images and seeds):"]
    if summary is not None:
        sm, _ = one_setting(summary, setting)
        for r in sm.itertuples():
            lines.append(f"- {r.model} ({_ff(r.field_fraction)}, {r.n_seeds} seed(s)): mean "
                         f"unseen AUC {r.auc_unseen:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}] "
                         f"over {r.n_unseen} generator(s); seen {r.auc_seen:.3f}")
    if primary is not None:
        lines.append("\n**The primary contrast** (pre-registered; AUC(patch) - AUC(full), mean "
                     "over the unseen generators and seeds):")
        for r in primary.itertuples():
            lines.append(f"- {r.model} vs {r.full_model} on {r.generators}: {r.diff:+.3f} "
                         f"[{r.ci_low:+.3f}, {r.ci_high:+.3f}] ({r.method}; seeds "
                         f"{r.n_seeds} + {r.n_seeds_full}; adequate runs {r.adequate_runs}, "
                         f"ended by the cap {r.cap_runs}): **{r.verdict}**")
    if comparison is not None:
        lines += _secondary_reading(one_setting(comparison, setting)[0])
    if primary is None and comparison is None:
        lines.append("\nPer unseen test set, AUC [interval over test images] by model "
                     "(no verdict without the paired comparison, `patch_vs_full`):")
        u = t[~t["seen"]]
        has_ci = "auc_ci_low" in u.columns
        for (dataset, gen), g in u.groupby(["dataset", "generator"], sort=True):
            g = g.groupby("label", sort=False).agg(
                auc=("auc", "mean"), lo=("auc_ci_low" if has_ci else "auc", "mean"),
                hi=("auc_ci_high" if has_ci else "auc", "mean"), n=("auc", "size"))
            lines.append(f"- {dataset}/{gen}: " + "; ".join(
                f"{m} {r.auc:.3f}" + (f" [{r.lo:.3f}, {r.hi:.3f}]" if has_ci and r.n == 1
                                       else f" (mean of {r.n} seeds)" if r.n > 1 else "")
                for m, r in g.iterrows()))
    if paper is not None:
        cols = [c for c in paper.columns if c.startswith("block") or c == "full"]
        unseen = paper.drop(index=[i for i in paper.index if i.endswith("pgan")], errors="ignore")
        means = unseen[cols].mean() / 100
        lines.append("\nThe paper (AP read off its figure, real = positive, mean over its unseen "
                     "test sets, no intervals published): " +
                     ", ".join(f"{_ff(paper_field_fraction(c))} {v:.3f}"
                               for c, v in means.items()) + ".")
    return "\n".join(lines)


def save_csv(frame: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a table atomically (``index=False``)."""
    path = Path(path)
    atomic_write_text(path, frame.to_csv(index=False))
    return path


def save_world_table(frame: pd.DataFrame, base: str, world: str) -> Path:
    """``results/tables/<table_name(base, world)>.csv`` (index kept as columns)."""
    named = frame.index.names != [None]
    return save_csv(frame.reset_index() if named else frame,
                    paths.tables_dir() / f"{table_name(base, world)}.csv")


# --- scoring arbitrary images (``patchforensics score``) ---------------------------------------


# --- notebook 03 helpers ---------------------------------------------------------------------

SMOKE_SWEEPS: dict[str, tuple[float, ...]] = {"jpeg": (75, 30), "blur": (0.0, 1.5),
                                              "resize": (1.0, 0.5)}


def table_name(base: str, world: str) -> str:
    """``base`` for the default world (``default64``), ``base_<world>`` for any other, so a
    smoke run never overwrites a default run's table."""
    return base if world == "default64" else f"{base}_{world}"


def require_models(runs: dict[str, Any], names: Sequence[str]) -> None:
    """``ValueError`` naming the models of ``names`` that ``runs`` (from :func:`find_runs`)
    lacks, and the ones it has: a notebook parameter naming an untrained model fails at once."""
    missing = [n for n in names if n not in runs]
    if missing:
        raise ValueError(f"notebook 02 trained no {missing}; it has {list(runs)}")


def set_maps(ckpt: str | os.PathLike, world_root: str | os.PathLike, dataset: str, *,
             split: str = "test", device: Device = None,
             generators: Sequence[str] | None = None
             ) -> tuple[Checkpoint, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``(checkpoint, {set: images}, {set: logit-difference maps})`` for the reals (``"real"``)
    and every generator of ``dataset`` in a world's ``split`` (or the fake sets named in
    ``generators``, e.g. manipulations)."""
    root = Path(world_root)
    ck = load_checkpoint(ckpt, device=device)
    if generators is None:
        generators = world_sets(root, [dataset]).get(dataset, [])
    keys = {"real": f"real/{dataset}"} | {g: f"fake/{dataset}/{g}" for g in generators}
    images = {name: load_folder(root / key / split)[0] for name, key in keys.items()}
    maps = {name: folder_maps(ck, root / keys[name] / split, device=device,
                              loader=lambda _, im=im: im) for name, im in images.items()}
    return ck, images, maps


def paper_ap_by_block() -> pd.DataFrame:
    """The paper's AP (%) per test set and Xception depth, read off its figure (approximate,
    real = positive); rows = test sets. From ``results/reference/paper_ap_by_block.csv``."""
    return pd.read_csv(paths.reference_dir() / "paper_ap_by_block.csv", comment="#",
                       index_col="test_set")


def ap_pivot(table: pd.DataFrame, *, mode: str = "mean_softmax", metric: str = "ap",
             setting: str | None = None) -> pd.DataFrame:
    """``metric`` of a :func:`cross_generator` table as models x test sets, mean over seeds, for
    one training ``setting`` (default: the primary one); rows in the table's model order, the
    training set's column first."""
    t, _ = one_setting(table[table["mode"] == mode], setting)
    t = t.assign(test_set=lambda f: f["dataset"] + "/" + f["generator"])
    pivot = t.pivot_table(index="label", columns="test_set", values=metric, aggfunc="mean")
    seen = t.loc[t["seen"], "test_set"].unique().tolist()
    cols = seen + [c for c in pivot.columns if c not in seen]
    return pivot.reindex(index=list(dict.fromkeys(t["label"])), columns=cols)


def interval_pivot(table: pd.DataFrame, *, mode: str = "mean_softmax",
                   setting: str | None = None, metric: str = "auc") -> pd.DataFrame:
    """``metric`` with its bootstrap interval as text ("0.912 [0.874, 0.945]"), models (field
    fraction, label, seed) x test sets, for one score mode and setting (default: the primary)."""
    t, _ = one_setting(table[table["mode"] == mode], setting)
    text = t.apply(lambda r: f"{r[metric]:.3f} [{r[f'{metric}_ci_low']:.3f}, "
                             f"{r[f'{metric}_ci_high']:.3f}]", axis=1)
    return t.assign(**{metric: text}).pivot_table(
        index=["field_fraction", "label", "seed"], columns=["dataset", "generator"],
        values=metric, aggfunc="first")


def calibration_table(runs: dict[str, str | os.PathLike], *,
                      device: Device = None) -> pd.DataFrame:
    """Per run and mode: temperature, validation threshold, and validation ECE before and after
    temperature scaling of the image log-odds (from each run's :func:`calibration`)."""
    rows = []
    for label, run in runs.items():
        cal = calibration(load_checkpoint(run, device=device), device=device)
        if cal is None:
            continue
        for mode in cal.temperature:
            rows.append({"model": label, "mode": mode, "temperature": cal.temperature[mode],
                         "threshold": cal.threshold[mode], "ece_val": cal.ece_val[mode],
                         "ece_val_calibrated": cal.ece_val_calibrated[mode]})
    return pd.DataFrame(rows).set_index(["model", "mode"])


def stack_pair(images: dict[str, np.ndarray], maps: dict[str, np.ndarray],
               fake: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(images, maps, labels)`` of the reals (``"real"``) followed by the ``fake`` set, from
    :func:`set_maps`'s dictionaries; labels 0 real, 1 fake."""
    labels = np.r_[np.full(len(images["real"]), REAL), np.full(len(images[fake]), FAKE)]
    return (np.concatenate([images["real"], images[fake]]),
            np.concatenate([maps["real"], maps[fake]]), labels)
