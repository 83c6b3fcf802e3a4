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

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import paths, runs
from .checkpoint import (
    Calibration,
    Checkpoint,
    Device,
    adequate,
    calibration,
    folder_maps,
    load_checkpoint,
)
from .data import FAKE, REAL, load_folder
from .embedded import read_manifest
from .images import (
    atomic_write_text,
    list_images,
)
from .layout import INVERTED, fake_key, fake_prefix, real_key, set_key, split_key
from .progress import bar as progress_bar
from .receptive_field import field_fraction, receptive_field
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

# --- evaluating sets ---------------------------------------------------------------------------

def evaluate_maps(real: np.ndarray, fakes: dict[str, np.ndarray], cal: Calibration | None, *,
                  modes: Sequence[str] = MODES, n_boot: int = 0,
                  seed: int = 0) -> pd.DataFrame:
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
                               seed=seed) if n_boot else None
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
    return ([real_key(p.name) for p in sorted(root.glob("real/*")) if (p / "test").is_dir()]
            + [fake_key(p.parent.name, p.name) for p in sorted(root.glob("fake/*/*"))
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
        kind, dataset, name = split_key(key)
        if kind == "fake" and (datasets is None or dataset in datasets) \
                and not name.endswith(INVERTED) and "manipulation" not in manifest.get(key, {}):
            sets.setdefault(dataset, []).append(name)
    return sets


def manipulation_sets(world_root: str | os.PathLike, dataset: str = "celeba") -> list[str]:
    """The manipulated-face sets of ``dataset`` in a world (``fake/<dataset>/<method>`` whose
    manifest entry has ``manipulation``), in the manifest's order of methods."""
    sets = read_manifest(Path(world_root))["sets"]
    return [split_key(key)[2] for key, entry in sets.items()
            if key.startswith(fake_prefix(dataset)) and "manipulation" in entry]


RunKey = str | tuple[str, int]  # "label" (seed read from the run) or (label, seed)


def run_setting(run: str | os.PathLike) -> str:
    """The training setting a run recorded (``config.json``: ``train.setting``), else ``""``."""
    cfg = runs.read_config(run)
    return str(cfg.get("train", {}).get("setting") or cfg.get("config", {}).get("setting")
               or "")


def image_scores(run_dirs: dict[RunKey, str | os.PathLike], world_root: str | os.PathLike, *,
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
    for key, run in progress_bar(list(run_dirs.items()), desc="score test sets",
                                 disable=not progress):
        label, seed = key if isinstance(key, tuple) else (key, None)
        ck = load_checkpoint(run, device=device)
        cal = calibration(ck, device=device)
        head = _run_columns(ck, cal, label, seed, setting)
        for dataset, gens in sets.items():
            for name in ["real", *gens]:
                key = set_key(dataset, name)
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


def _run_columns(ck: Checkpoint, cal: Calibration | None, label: str, seed: int | None,
                 setting: str | None) -> dict[str, Any]:
    """The per-run columns of :func:`image_scores` (what the run is and how it trained)."""
    train_set = ""
    if ck.train_fake is not None:
        ds, gen = ck.train_fake.parts[-2:]
        train_set = f"{ds}/{gen.removesuffix(INVERTED)}"
    cfg = ck.model.config
    return {"label": label, "model": ck.name, "arch": cfg.arch, "depth": cfg.depth,
            "rf_px": receptive_field(cfg, ck.input_size).size,
            "field_fraction": field_fraction(cfg, ck.input_size),
            "seed": ck.seed if seed is None else int(seed),
            "setting": run_setting(ck.run_dir) if setting is None else setting,
            "train_set": train_set, "input_size": cfg.load_size or ck.input_size,
            "epochs": int((finished(ck.run_dir) or {}).get("epochs", 0)),
            "stopped_by": stopped_by(ck.run_dir),
            "val_auc_ci_low": cal.val.get("auc_ci_low", np.nan) if cal else np.nan,
            "adequate": adequate(cal)}


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


def cross_generator(run_dirs: dict[RunKey, str | os.PathLike], world_root: str | os.PathLike, *,
                    split: str = "test", datasets: Sequence[str] | None = None,
                    modes: Sequence[str] = MODES, device: Device = None,
                    progress: bool = True, setting: str | None = None,
                    scores: pd.DataFrame | None = None, n_boot: int = N_BOOT,
                    seed: int = 0) -> pd.DataFrame:
    """Every checkpoint against every real/fake pair of a world's ``split``:
    :func:`metrics_from_scores` of :func:`image_scores` (pass ``scores`` when already computed,
    so nothing is scored twice; ``runs`` and the data arguments are then unused).

    ``runs``: ``{label or (label, seed): run folder}`` (relative folders are below
    ``paths.checkpoints_dir()``). One row per (run, dataset, generator, mode): ``label``,
    ``model``, ``arch``, ``depth``, ``rf_px``, ``field_fraction``, ``seed``, ``setting``,
    ``train_set``, ``seen`` and the metrics with their intervals. Threshold and temperature
    come from each checkpoint's validation split."""
    if scores is None:
        scores = image_scores(run_dirs, world_root, setting=setting, split=split,
                              datasets=datasets, modes=modes, device=device, progress=progress)
    return metrics_from_scores(scores, n_boot=n_boot, seed=seed)


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
        ref_label = full if full is not None else next(
            (lb for (st, lb), m in boots.items() if st == setting and
             m.info["depth"] == "full" and m.info["arch"] == mb.info["arch"]), None)
        if ref_label is None:
            continue
        ref = boots.get((setting, ref_label))
        if ref is None:
            raise ValueError(f"no full model {ref_label!r} in setting {setting!r}")

        def row(dataset: str, generator: str, seen: bool, auc_p: float, auc_f: float,
                diffs: np.ndarray, key: tuple[str, str] = (setting, label),
                models: tuple[_ModelBoots, _ModelBoots, str] = (mb, ref, ref_label)
                ) -> dict[str, Any]:
            return _contrast_row(key, models, (dataset, generator, seen), auc_p, auc_f,
                                 interval(diffs, level))

        for pair in mb.auc:
            if pair not in ref.auc:
                continue
            auc_p, bp = mb.mean(pair)
            auc_f, bf = ref.mean(pair)
            rows.append(row(*pair, f"{pair[0]}/{pair[1]}" == mb.info["train_set"],
                            auc_p, auc_f, bp - bf))
        unseen = [p for p in mb.unseen() if p in ref.auc]
        if pooled and unseen:
            rows.append(row(unseen[0][0], "mean_unseen", False, *_pooled(mb, ref, unseen)))
    return pd.DataFrame(rows, columns=["setting", "model", "arch", "depth", "field_fraction",
                                       "full_model", "dataset", "generator", "seen", "n_seeds",
                                       "n_seeds_full", "auc_patch", "auc_full", "diff",
                                       "ci_low", "ci_high", "verdict"])


def _pooled(mb: _ModelBoots, ref: _ModelBoots, pairs: list[tuple[str, str]]
            ) -> tuple[float, float, np.ndarray]:
    """The two models' AUC means over ``pairs`` (generators weighted equally) and the
    bootstrap values of their difference."""
    means_p, means_f = [mb.mean(p) for p in pairs], [ref.mean(p) for p in pairs]
    diffs = np.mean([mp[1] - mf[1] for mp, mf in zip(means_p, means_f, strict=True)], 0)
    return (float(np.mean([m[0] for m in means_p])), float(np.mean([m[0] for m in means_f])),
            diffs)


def _contrast_row(key: tuple[str, str], models: tuple[_ModelBoots, _ModelBoots, str],
                  pair: tuple[str, str, bool], auc_p: float, auc_f: float,
                  ci: tuple[float, float]) -> dict[str, Any]:
    """One row of :func:`patch_vs_full`: ``key`` (setting, label), ``models`` (the patch
    model's and the full model's boots, the full model's label), ``pair`` (dataset,
    generator, seen)."""
    (setting, label), (mb, ref, ref_label), (dataset, generator, seen) = key, models, pair
    return {"setting": setting, "model": label, "arch": mb.info["arch"],
            "depth": mb.info["depth"], "field_fraction": mb.info["field_fraction"],
            "full_model": ref_label, "dataset": dataset, "generator": generator,
            "seen": seen, "n_seeds": len(mb.seeds), "n_seeds_full": len(ref.seeds),
            "auc_patch": auc_p, "auc_full": auc_f, "diff": auc_p - auc_f, "ci_low": ci[0],
            "ci_high": ci[1], "verdict": verdict(*ci)}


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


# --- tables and notebook 03 helpers ----------------------------------------------------------

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


def table_name(base: str, world: str) -> str:
    """``base`` for the default world (``default64``), ``base_<world>`` for any other, so a
    smoke run never overwrites a default run's table."""
    return base if world == "default64" else f"{base}_{world}"


def require_models(run_dirs: dict[str, Any], names: Sequence[str]) -> None:
    """``ValueError`` naming the models of ``names`` that ``runs`` (from :func:`find_runs`)
    lacks, and the ones it has: a notebook parameter naming an untrained model fails at once."""
    missing = [n for n in names if n not in run_dirs]
    if missing:
        raise ValueError(f"notebook 02 trained no {missing}; it has {list(run_dirs)}")


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
    keys = {"real": real_key(dataset)} | {g: fake_key(dataset, g) for g in generators}
    images = {name: load_folder(root / key / split)[0] for name, key in keys.items()}
    maps = {name: folder_maps(ck, root / keys[name] / split, device=device,
                              loader=lambda _, im=im: im) for name, im in images.items()}
    return ck, images, maps


def calibration_table(run_dirs: dict[str, str | os.PathLike], *,
                      device: Device = None) -> pd.DataFrame:
    """Per run and mode: temperature, validation threshold, and validation ECE before and after
    temperature scaling of the image log-odds (from each run's :func:`calibration`)."""
    rows = []
    for label, run in run_dirs.items():
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
