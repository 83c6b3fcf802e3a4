"""The manipulated-faces study of notebook 07 (a FaceForensics++ analog; Chai et al. 2020 trained
and visualised patch classifiers on FaceForensics++'s four manipulations).

The sets are ``manipulate``'s four methods applied to the world's real CelebA faces, each image
with the exact mask of what was changed. The study (notebook 07 says which parts were fixed
before which result: the metrics and the primary comparison first; the pairing and the epoch cap
after a pilot; Grad-CAM's point, the tie rule, the real-face control and the per-localizer
chance after the first results):

- **Training.** One classifier grid per manipulation (``protocol`` profile ``manipulations``:
  Xception block2 at the paper-protocol patch size, and the full model, 3 epochs;
  ``manipulations_long`` 10 epochs; ``manipulations_full`` adds block1 and block3), reals vs.
  that manipulation's training split, half of each batch's reals with their own manipulated
  faces (setting ``paired``, as FaceForensics++ pairs each manipulated video with its
  original).
- **Detection.** Train on one manipulation, test on each: ROC AUC of the mean patch softmax
  (``protocol.PRIMARY_MODE``), real test faces vs. manipulated test faces, with a 95 %
  stratified bootstrap interval over images.
- **Localization** (primary metric: the pointing game; also pixel AUC and heat mass inside the
  mask), on every manipulated test image, for each patch model's map, the full model's
  Grad-CAM and input gradient, and a random map, all trained on the same manipulation; each
  localizer also on the real faces the fakes were made from (the control), and with its own
  chance level (``localize.pointing_chance``). Primary comparison: block2's pointing game
  minus Grad-CAM's, paired over images (:func:`paired_difference`).
- **Local scores.** The three modes of the paper and the mean of the top-k patch logits (k
  chosen on the training manipulation's validation split, ``localize.choose_k``), on the
  manipulations and on notebook 02's whole-image fakes.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import localize, manipulate, paths, protocol
from .config import WorldConfig, world_config
from .data import load_folder
from .evaluate import (
    N_BOOT,
    Checkpoint,
    _interval,
    _set_rng,
    boot_counts,
    evaluate_maps,
    folder_maps,
    load_checkpoint,
    manipulation_sets,
    resolve_device,
    save_world_table,
)
from .parts import PartsAnalysis, analyze
from .study import find_root
from .train import training_pair

SETTING = "paired"  # each real with its own manipulated face (see the module docstring)
PROFILE = "manipulations"


@dataclass(frozen=True)
class ManipulationStudy:
    """A data root with real faces and manipulation sets (with masks), and the device."""

    root: Path
    name: str  # the root's name (tables get a ``_<name>`` suffix, runs are filed under it)
    dataset: str
    methods: tuple[str, ...]  # manipulation sets studied, e.g. ("faceswap", ...)
    device: Any
    smoke: bool = False
    world: WorldConfig | None = None

    @property
    def real_dir(self) -> Path:
        return self.root / "real" / self.dataset

    def fake_dir(self, method: str) -> Path:
        return self.root / "fake" / self.dataset / method

    def profile(self, name: str = PROFILE, epochs: int = 0) -> protocol.Profile:
        """The manipulation profile ``name`` (its smoke twin in smoke mode), epoch cap replaced
        when ``epochs``; any profile is trained in the ``paired`` setting here (another
        profile's settings are replaced: manipulations have no inversions)."""
        p = protocol.with_epochs(protocol.profile(name, smoke=self.smoke), epochs)
        if p.settings != (SETTING,):
            p = replace(p, settings=(SETTING,))
        return p

    def table(self, frame: pd.DataFrame, base: str) -> Path:
        """Save a table as ``results/tables/<base>_<name>.csv``."""
        return save_world_table(frame, base, self.name)


def open_manipulations(data_root: str | os.PathLike = "", dataset: str = "celeba", *,
                       methods: tuple[str, ...] | list[str] = manipulate.MANIPULATIONS,
                       smoke: bool = False, world_seed: int = 0, device: str | None = "auto",
                       build: bool = True, progress: bool = True) -> ManipulationStudy:
    """The study of notebook 07. ``data_root`` ``""`` is the embedded world: built first when
    missing, and its manipulation sets made (``manipulate.build_manipulation_sets``; a rerun
    verifies and skips them) when ``build``. Another root must already hold manipulation sets
    with masks in its manifest. Raises ``FileNotFoundError`` / ``ValueError`` naming what is
    missing."""

    dev = resolve_device(device)
    cfg = None
    if data_root in ("", None):
        cfg = world_config(smoke=smoke, seed=world_seed)
        root = paths.world_dir(cfg.name)
        if build:
            training_pair(cfg, dataset, "dcgan", device=str(dev), progress=progress)
            manipulate.build_manipulation_sets(cfg, root, methods=tuple(methods),
                                               progress=progress, device=str(dev))
    else:
        root = find_root(data_root)
    have = manipulation_sets(root, dataset)
    missing = [m for m in methods if m not in have]
    if missing:
        raise FileNotFoundError(
            f"{root}: no manipulation set {missing} of {dataset!r} in its manifest (it has "
            f"{have or 'none'}); the embedded world makes them with `patchforensics world "
            "(without --no-manipulations)` or notebook 01")
    return ManipulationStudy(root, root.name, dataset, tuple(methods), dev, smoke, cfg)


# --- training and detection ----------------------------------------------------------------

def train(ms: ManipulationStudy, p: protocol.Profile, *, force: bool = False,
          progress: bool = True) -> pd.DataFrame:
    """Train (or skip, when finished) profile ``p`` on reals vs. each manipulation; one row per
    run (``protocol.train_profile``) with a ``manipulation`` column."""
    frames = []
    for m in ms.methods:
        t = protocol.train_profile(p, ms.real_dir, ms.fake_dir(m), ms.name, ms.dataset, m,
                                   device=str(ms.device), progress=progress, force=force)
        frames.append(t.assign(manipulation=m))
    return pd.concat(frames)


def trained_runs(ms: ManipulationStudy, p: protocol.Profile, seed: int = 0
                 ) -> dict[str, dict[str, Path]]:
    """``{manipulation: {model: run folder}}`` of the profile's finished runs of ``seed``
    (a missing one raises naming it)."""
    out: dict[str, dict[str, Path]] = {}
    for m in ms.methods:
        done = protocol.finished_runs(p, ms.name, ms.dataset, m, SETTING, required=True)
        out[m] = {model: folder for (model, s), folder in done.items() if s == seed}
    return out


@functools.lru_cache(maxsize=16)
def _checkpoint(run: Path, device: Any, mtime_ns: int) -> Checkpoint:
    """A run's checkpoint, loaded once per (run, device, file version): the tables below ask
    for the same few models many times."""
    return load_checkpoint(run, device=device)


def _load(run: Path, device: Any) -> Checkpoint:
    run = Path(run)
    best = run / "best.pt" if run.is_dir() else run
    return _checkpoint(run, device, best.stat().st_mtime_ns if best.exists() else 0)


def _maps(ms: ManipulationStudy, run: Path, key: str, split: str) -> np.ndarray:
    return folder_maps(_load(run, ms.device), ms.root / key / split, device=ms.device)


def _key(ms: ManipulationStudy, name: str) -> str:
    return f"real/{ms.dataset}" if name == "real" else f"fake/{ms.dataset}/{name}"


def cross_table(ms: ManipulationStudy, runs: dict[str, dict[str, Path]], *,
                n_boot: int = N_BOOT, seed: int = 0) -> pd.DataFrame:
    """Train on one manipulation, test on each: one row per (train manipulation, model, test
    manipulation) with AUC (primary mode) and its stratified bootstrap interval
    (``auc_ci_low``, ``auc_ci_high``), AP, and accuracy at the 0.5 threshold."""
    rows = []
    for train_m, models in runs.items():
        for model, run in models.items():
            real = _maps(ms, run, _key(ms, "real"), "test")
            fakes = {m: _maps(ms, run, _key(ms, m), "test") for m in ms.methods}
            t = evaluate_maps(real, fakes, None, modes=(protocol.PRIMARY_MODE,),
                              n_boot=n_boot, boot_seed=seed)
            rows.append(t.rename(columns={"fake_set": "test"})
                        .assign(train=train_m, model=model))
    out = pd.concat(rows, ignore_index=True)
    cols = ["train", "model", "test", "n_real", "n_fake", "auc", "auc_ci_low", "auc_ci_high",
            "ap", "acc", "real_acc", "fake_acc"]
    return out[[c for c in cols if c in out.columns]]


def aggregation(ms: ManipulationStudy, runs: dict[str, dict[str, Path]], *,
                whole_runs: dict[str, Path] | None = None, whole_train: str = "dcgan",
                whole_tests: tuple[str, ...] | list[str] = (), n_boot: int = N_BOOT,
                seed: int = 0) -> pd.DataFrame:
    """The paper's three score modes and the top-k mode (``localize.aggregation_table``) for
    every patch model: on each manipulation (models trained on that manipulation, k chosen on
    its validation split) and, with ``whole_runs`` (notebook 02's ``{model: run}`` trained on
    ``whole_train``), on each whole-image generator of ``whole_tests`` (k chosen on
    ``whole_train``'s validation split). One row per (train, model, test, mode)."""
    frames = []

    def add(run: Path, model: str, train_on: str, tests: list[str]) -> None:
        k = localize.choose_k(_maps(ms, run, _key(ms, "real"), "val"),
                              _maps(ms, run, _key(ms, train_on), "val"))
        real = _maps(ms, run, _key(ms, "real"), "test")
        for test in tests:
            fake = _maps(ms, run, _key(ms, test), "test")
            t = localize.aggregation_table(real, fake, k, n_boot=n_boot, seed=seed)
            frames.append(t.assign(train=train_on, model=model, test=test))

    for m, models in runs.items():
        for model, run in models.items():
            if not model.endswith("_full"):
                add(run, model, m, [m])
    for model, run in (whole_runs or {}).items():
        if not model.endswith("_full"):
            add(Path(run), model, whole_train, list(whole_tests))
    out = pd.concat(frames, ignore_index=True)
    first = ["train", "model", "test"]
    return out[first + [c for c in out.columns if c not in first]]


# --- localization ----------------------------------------------------------------------------

@dataclass
class Localization:
    """Per manipulation: its test images, masks, and each localizer's pixel maps and points;
    the per-image metrics of all of them (``frame``) and the summary ``table``."""

    images: dict[str, np.ndarray]  # method -> N x S x S x 3 uint8
    masks: dict[str, np.ndarray]  # method -> N x S x S float32 in [0, 1]
    heat: dict[tuple[str, str, str], np.ndarray]  # (method, localizer, model) -> N x S x S
    frame: pd.DataFrame
    table: pd.DataFrame

    def example(self, method: str, k: int) -> dict[str, Any]:
        """Image ``k`` of ``method``: its image, mask and every localizer's map."""
        return {"image": self.images[method][k], "mask": self.masks[method][k],
                "maps": {f"{loc} ({model})": h[k] for (m, loc, model), h in self.heat.items()
                         if m == method}}


def masked_test_split(ms: ManipulationStudy, method: str
                      ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(images N x S x S x 3 uint8, masks N x S x S float32, file names)`` of a
    manipulation's test split, in the sorted file order every map of it uses."""
    images, files, _ = load_folder(ms.fake_dir(method) / "test")
    names, masks = manipulate.load_masks(ms.root, method, "test")
    where = {n: i for i, n in enumerate(names)}
    missing = [f.name for f in files if f.name not in where]
    if missing:
        raise ValueError(f"{ms.fake_dir(method)}: no mask for {missing[:3]} "
                         f"({len(missing)} image(s)); rebuild the manipulation sets")
    return images, masks[[where[f.name] for f in files]], [f.name for f in files]


def real_counterparts(ms: ManipulationStudy, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(reals N x S x S x 3 uint8, index N)``: the real test face each manipulated file of
    ``names`` was made from (same name), and its position in the real test split's sorted
    order (to pick its row from the real split's cached maps)."""
    reals, files, _ = load_folder(ms.real_dir / "test")
    at = {f.name: i for i, f in enumerate(files)}
    missing = [n for n in names if n not in at]
    if missing:
        raise ValueError(f"{ms.real_dir / 'test'}: no real face named {missing[:3]}; the "
                         "manipulation sets were made from another real set")
    index = np.array([at[n] for n in names], dtype=np.int64)
    return reals[index], index


IMAGES = ("manipulated", "real")  # what a localizer is run on (real: the control, see below)


def localization(ms: ManipulationStudy, runs: dict[str, dict[str, Path]], *,
                 n_boot: int = N_BOOT, seed: int = 0) -> Localization:
    """Every localizer on every manipulated test image (see the module docstring): the patch
    models' maps (P(fake) through the exact receptive fields; point = the top fake patch's
    field centre), the full model's Grad-CAM (last block; point = the top cell's centre) and
    input gradient (point = the map's maximum), and a random map.

    **The control** (column ``images``): the same localizers on the *real* faces the
    manipulations were made from, scored against the same masks. A map that lands in the mask
    as often on the untouched face points at what the mask covers (eyes, mouth, the face's
    centre), not at the manipulation. ``localize.localization_table`` summarises both with
    bootstrap intervals over images."""
    images, masks, heat, frames = {}, {}, {}, []
    for m, models in runs.items():
        images[m], masks[m], names = masked_test_split(ms, m)
        reals, pair = real_counterparts(ms, names)  # the real each fake was made from
        n, size = len(images[m]), images[m].shape[1]
        for model, run in models.items():
            ck = _load(run, ms.device)
            full = ck.model.config.depth == "full"
            for on, imgs in (("manipulated", images[m]), ("real", reals)):
                maps = None
                if not full:  # the patch maps notebook 03's cache may already hold
                    folder = ms.fake_dir(m) if on == "manipulated" else ms.real_dir
                    maps = folder_maps(ck, folder / "test", device=ms.device)
                    maps = maps if on == "manipulated" else maps[pair]
                for kind in ("gradcam", "gradient") if full else ("patch",):
                    r = localize.localize_set(ck, imgs, masks[m], kind=kind, manipulation=m,
                                              name=model, seed=seed, device=ms.device,
                                              maps=maps)
                    if on == "manipulated":
                        heat[(m, kind, model)] = r.heat
                    frames.append(r.frame.assign(images=on))
        h = localize.random_maps(n, size, seed)
        heat[(m, "random", "-")] = h
        frames.append(localize.localization_frame("random", "-", m, h,
                                                  localize.max_points(h, seed), masks[m])
                      .assign(images="manipulated"))
    frame = pd.concat(frames, ignore_index=True)
    table = localize.localization_table(frame, n_boot=n_boot, seed=seed)
    return Localization(images, masks, heat, frame, table)


def parts_analyses(ms: ManipulationStudy, runs: dict[str, dict[str, Path]], *,
                   seed: int = 0, progress: bool = True) -> dict[str, PartsAnalysis]:
    """Notebook 04's top-patch analysis per manipulation: its patch models (trained on it) on
    the real test faces and that manipulation's test faces."""
    out = {}
    for m, models in runs.items():
        patch = {model: str(run) for model, run in models.items()
                 if not model.endswith("_full")}
        out[m] = analyze(patch, ms.root, ms.dataset, seed=seed, device=ms.device,
                         progress=progress, generators=[m])
    return out


PRIMARY_LOCALIZATION = "pointing_game"  # the localization metric that decides (pre-registered)
PRIMARY_PATCH = "xception_block2"  # the patch model compared with Grad-CAM (22 % of the face)
PRIMARY_FULL = "xception_full"


def paired_difference(frame: pd.DataFrame, *, metric: str = PRIMARY_LOCALIZATION,
                      a: tuple[str, ...] = ("patch", PRIMARY_PATCH),
                      b: tuple[str, ...] = ("gradcam", PRIMARY_FULL), n_boot: int = N_BOOT,
                      seed: int = 0) -> pd.DataFrame:
    """The pre-registered comparison: ``metric`` of localizer ``a`` minus that of ``b`` on the
    same test images, per manipulation, with a paired percentile bootstrap interval over images
    (``evaluate.LEVEL``; resamples seeded per manipulation and comparison) and a verdict
    (``<a> better`` when the interval lies above 0, ``<b> better`` below, else no difference
    detected; "uninformative" when every map of ``b`` is flat). For the pointing game the
    localizers' own chance levels (``a_chance``, ``b_chance``: ``localize.pointing_chance``)
    come along: a coarse Grad-CAM grid can have a chance far below the mask's area.
    ``a``, ``b``: ``(localizer, model[, images])``, images
    ``"manipulated"`` unless given (``"real"``: the control, :func:`localization`). Images
    where either value is NaN are left out. ``frame``: :attr:`Localization.frame`."""
    rows = []

    def pick(g: pd.DataFrame, who: tuple[str, ...], col: str = metric) -> pd.Series:
        on = who[2] if len(who) > 2 else "manipulated"
        sel = (g["method"] == who[0]) & (g["model"] == who[1])
        if "images" in g.columns:
            sel &= g["images"] == on
        return g[sel].set_index("image")[col].astype(float)

    def label(who: tuple[str, ...]) -> str:
        return " ".join(who[:2]) + (f" on {who[2]}" if len(who) > 2 else "")

    for m, g in frame.groupby("manipulation", sort=False):
        va, vb = pick(g, a), pick(g, b)
        d = (va - vb).dropna()
        if d.empty:
            continue
        x = d.to_numpy()
        w = boot_counts(len(x), n_boot, _set_rng(seed, str(m), metric, label(a), label(b)))
        lo, hi = _interval(w @ x / len(x))
        verdict = (f"{label(a)} better" if lo > 0 else f"{label(b)} better" if hi < 0
                   else "no difference detected (the interval includes 0)")
        flat_b = float(pick(g, b, "flat").mean()) if "flat" in g else 0.0
        if flat_b == 1.0:  # b's maps hold no evidence at all: nothing was compared
            verdict = f"uninformative: every map of {label(b)} is flat"
        row = {"manipulation": m, "metric": metric, "a": label(a), "b": label(b),
               "n": len(x), "a_mean": float(va.loc[d.index].mean()),
               "b_mean": float(vb.loc[d.index].mean()), "diff": float(x.mean()),
               "ci_low": float(lo), "ci_high": float(hi), "verdict": verdict,
               "b_flat_share": flat_b}
        if metric == "pointing_game" and "pointing_chance" in g:
            row["a_chance"] = float(pick(g, a, "pointing_chance").mean())
            row["b_chance"] = float(pick(g, b, "pointing_chance").mean())
        rows.append(row)
    return pd.DataFrame(rows)


def reading(diff: pd.DataFrame) -> str:
    """One sentence per manipulation from :func:`paired_difference`, worded from its
    interval."""
    lines = []
    for r in diff.itertuples():
        chance = ""
        if "a_chance" in diff.columns and not pd.isna(r.a_chance):
            chance = f" (chance {r.a_chance:.2f} and {r.b_chance:.2f})"
        lines.append(f"- **{r.manipulation}**: {r.metric.replace('_', ' ')} {r.a} "
                     f"{r.a_mean:.2f} vs. {r.b} {r.b_mean:.2f}{chance}, difference "
                     f"{r.diff:+.2f} [{r.ci_low:+.2f}, {r.ci_high:+.2f}] over {r.n} images: "
                     f"{r.verdict}.")
    return "\n".join(lines)
