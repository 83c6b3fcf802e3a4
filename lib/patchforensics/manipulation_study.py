"""The manipulated-faces study of notebook 07 (a FaceForensics++ analog; Chai et al. 2020 trained
and visualised patch classifiers on FaceForensics++'s four manipulations).

The sets are ``manipulate``'s four methods applied to the world's real CelebA faces, each image
with the exact mask of what was changed. The study (notebook 07 says which parts were fixed
before which result):

- **Training.** One classifier grid per manipulation (``protocol`` profile ``manipulations``:
  Xception block2 at the paper-protocol patch size and the full model at the faces' 64 px,
  trained from scratch until the original's stopping rule ends the run, under the plan's cap;
  ``manipulations_quick`` caps at 10 epochs, ``manipulations_full`` adds block1 and block3),
  reals vs. that manipulation's training split, half of each batch's reals with their own
  manipulated faces (setting ``paired``, as FaceForensics++ pairs each manipulated video with
  its original).
- **Adequacy** (:func:`adequacy_table`): a run has learned its manipulation when the lower
  95 % bound of its validation AUC on that manipulation's val split is at least
  ``protocol.ADEQUACY_MIN`` (``checkpoint.adequate``). A comparison with a run that has not is
  "not tested: under-trained" (``compare.UNDER_TRAINED``), never a verdict.
- **Detection.** Train on one manipulation, test on each: ROC AUC of the mean patch softmax
  (``protocol.PRIMARY_MODE``) with a 95 % stratified bootstrap interval over images.
- **Localization** (:func:`localization`; primary metric **pixel AUC**: how well a map ranks
  the mask's pixels above the others, 0.5 = chance, unchanged by any rescaling or offset of the
  map; secondary: the pointing game against each localizer's own chance, and the heat mass
  inside the mask), on every manipulated test image, for block2's patch map, the full model's
  Grad-CAM at the deepest block whose grid is at least 6 x 6 (``attribution.gradcam_layer``) and
  its input gradient, and a random map; each also under the two sanity controls of
  ``sanity`` (masks shuffled across faces; the same architecture with random weights).
- **The comparison** (:func:`localization_comparison`): block2's pixel AUC minus Grad-CAM's,
  paired over images, per manipulation: a paired t-interval, and a verdict from Holm-adjusted
  p-values within the table (``stats.holm``), only where both runs are adequate.
- **Local scores.** The three modes of the paper and the mean of the top-k patch logits (k
  chosen on the training manipulation's validation split, ``localize.choose_k``), on the
  manipulations and on notebook 02's whole-image fakes.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import attribution, localize, manipulate, paths, protocol, sanity
from .checkpoint import Checkpoint, adequate, calibration, folder_maps, load_checkpoint
from .compare import UNDER_TRAINED
from .config import world_config
from .data import load_folder
from .devices import resolve_device
from .evaluate import evaluate_maps, manipulation_sets
from .grids import training_pair
from .layout import set_key
from .parts import PartsAnalysis, analyze
from .runs import finished, stopped_by
from .stats import LEVEL, N_BOOT, holm, t_interval, t_pvalue
from .study import DataRoot, find_root

SETTING = "paired"  # each real with its own manipulated face (see the module docstring)
PROFILE = "manipulations"


@dataclass(frozen=True)
class ManipulationStudy(DataRoot):
    """A data root with real faces and manipulation sets (with masks): notebook 07's."""

    methods: tuple[str, ...] = field(kw_only=True)  # manipulation sets, e.g. ("faceswap", ...)

    def fake_dir(self, method: str) -> Path:
        return self.set_dir(method)

    def profile(self, name: str = PROFILE, epochs: int = 0) -> protocol.Profile:
        """The manipulation profile ``name`` (its smoke twin in smoke mode), epoch cap replaced
        when ``epochs``; any profile is trained in the ``paired`` setting here (another
        profile's settings are replaced: manipulations have no inversions)."""
        p = protocol.with_epochs(protocol.profile(name, smoke=self.smoke), epochs)
        if p.settings != (SETTING,):
            p = replace(p, settings=(SETTING,))
        return p


def open_manipulations(data_root: str | os.PathLike = "", dataset: str = "celeba", *,
                       methods: tuple[str, ...] | list[str] = (),
                       smoke: bool = False, world_seed: int = 0, device: str | None = "auto",
                       build: bool = True, progress: bool = True) -> ManipulationStudy:
    """The study of notebook 07. ``data_root`` ``""`` is the embedded world: built first when
    missing, and its manipulation sets made (``manipulate.build_manipulation_sets``; a rerun
    verifies and skips them) when ``build``. Another root must already hold manipulation sets
    with masks in its manifest. ``methods``: the manipulation sets studied; empty: every recipe
    of ``manipulate.RECIPES`` in the embedded world, every manipulation set another root has.
    Raises ``FileNotFoundError`` / ``ValueError`` naming what is missing."""

    dev = resolve_device(device)
    cfg = None
    if data_root in ("", None) and not methods:
        methods = manipulate.MANIPULATIONS
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
    methods = tuple(methods) or tuple(have)
    missing = [m for m in methods if m not in have]
    if missing:
        raise FileNotFoundError(
            f"{root}: no manipulation set {missing} of {dataset!r} in its manifest (it has "
            f"{have or 'none'}); the embedded world makes them with `patchforensics world "
            "(without --no-manipulations)` or notebook 01")
    return ManipulationStudy(root, root.name, dataset, dev, smoke, cfg, methods=tuple(methods))


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
    return set_key(ms.dataset, name)


def cross_table(ms: ManipulationStudy, run_dirs: dict[str, dict[str, Path]], *,
                n_boot: int = N_BOOT, seed: int = 0) -> pd.DataFrame:
    """Train on one manipulation, test on each: one row per (train manipulation, model, test
    manipulation) with AUC (primary mode) and its stratified bootstrap interval
    (``auc_ci_low``, ``auc_ci_high``), AP, and accuracy at the 0.5 threshold."""
    rows = []
    for train_m, models in run_dirs.items():
        for model, run in models.items():
            real = _maps(ms, run, _key(ms, "real"), "test")
            fakes = {m: _maps(ms, run, _key(ms, m), "test") for m in ms.methods}
            t = evaluate_maps(real, fakes, None, modes=(protocol.PRIMARY_MODE,),
                              n_boot=n_boot, seed=seed)
            rows.append(t.rename(columns={"fake_set": "test"})
                        .assign(train=train_m, model=model))
    out = pd.concat(rows, ignore_index=True)
    cols = ["train", "model", "test", "n_real", "n_fake", "auc", "auc_ci_low", "auc_ci_high",
            "ap", "acc", "real_acc", "fake_acc"]
    return out[[c for c in cols if c in out.columns]]


def adequacy_table(ms: ManipulationStudy, run_dirs: dict[str, dict[str, Path]]) -> pd.DataFrame:
    """Whether each run learned its manipulation: one row per (manipulation, model) with
    ``epochs`` run, ``best_epoch``, ``stopped_by`` (``rule`` or ``cap``: ``runs.stopped_by``),
    the validation AUC of the primary score on that manipulation's val split with its 95 %
    stratified bootstrap interval (``val_auc``, ``val_auc_ci_low``, ``val_auc_ci_high``, from
    ``checkpoint.calibration``, cached in the run's ``calibration.json``), ``adequacy_min``
    (``protocol.ADEQUACY_MIN``) and ``adequate`` (``checkpoint.adequate``: the lower bound at
    least that)."""
    rows = []
    for m, models in run_dirs.items():
        for model, run in models.items():
            cal = calibration(_load(run, ms.device), device=ms.device)
            val = cal.val if cal is not None else {}
            done = finished(run) or {}
            rows.append({"manipulation": m, "model": model, "epochs": done.get("epochs"),
                         "best_epoch": done.get("best_epoch"), "stopped_by": stopped_by(run),
                         "n_val_real": val.get("n_real"), "n_val_fake": val.get("n_fake"),
                         "val_auc": val.get("auc", np.nan),
                         "val_auc_ci_low": val.get("auc_ci_low", np.nan),
                         "val_auc_ci_high": val.get("auc_ci_high", np.nan),
                         "adequacy_min": protocol.ADEQUACY_MIN, "adequate": adequate(cal)})
    return pd.DataFrame(rows)


def aggregation(ms: ManipulationStudy, run_dirs: dict[str, dict[str, Path]], *,
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

    for m, models in run_dirs.items():
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
    """Per manipulation: its test images, masks, and each localizer's pixel maps; the
    per-image metrics of all of them and their sanity controls (``frame``) and the summary
    ``table``."""

    images: dict[str, np.ndarray]  # method -> N x S x S x 3 uint8
    masks: dict[str, np.ndarray]  # method -> N x S x S float32 in [0, 1]
    # (method, localizer, model) -> N x S x S; model "<name>, random weights": the control
    heat: dict[tuple[str, str, str], np.ndarray]
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


RANDOM_WEIGHTS = "random weights"  # the model label of a random-weights map in ``heat``


def _localize_run(ms: ManipulationStudy, manipulation: str, model: str, run: Path,
                  images: np.ndarray, masks: np.ndarray, order: np.ndarray, seed: int
                  ) -> tuple[dict[tuple[str, str, str], np.ndarray], list[pd.DataFrame]]:
    """One run's localizers on one manipulation's test faces: trained (``control`` none and
    shuffled masks) and with random weights (``sanity.random_weights`` of ``seed``)."""
    ck = _load(run, ms.device)
    full = ck.model.config.depth == "full"
    layer = attribution.gradcam_layer(ck.model, images.shape[1]) if full else None
    # the patch maps notebook 03's cache may already hold
    maps = None if full else folder_maps(ck, ms.fake_dir(manipulation) / "test", device=ms.device)
    heat, frames = {}, []
    for localizer in ("gradcam", "gradient") if full else ("patch",):
        r = localize.localize_set(ck, images, masks, localizer=localizer,
                                  manipulation=manipulation, name=model, layer=layer, seed=seed,
                                  device=ms.device, maps=maps)
        heat[(manipulation, localizer, model)] = r.heat
        frames += [r.frame.assign(control="none"), sanity.shuffled_frame(r, masks, order)]
    localizer = "gradcam" if full else "patch"
    r = localize.localize_set(sanity.random_weights(ck.model, seed), images, masks,
                              localizer=localizer, manipulation=manipulation, name=model,
                              layer=layer, seed=seed, device=ms.device)
    heat[(manipulation, localizer, f"{model}, {RANDOM_WEIGHTS}")] = r.heat
    frames.append(r.frame.assign(control="random_weights"))
    return heat, frames


def localization(ms: ManipulationStudy, run_dirs: dict[str, dict[str, Path]], *,
                 adequacy: pd.DataFrame | None = None, n_boot: int = N_BOOT,
                 seed: int = 0) -> Localization:
    """Every localizer on every manipulated test image (see the module docstring): the patch
    models' maps (P(fake) through the exact receptive fields; point = the top fake patch's
    field centre), the full model's Grad-CAM (at ``attribution.gradcam_layer``: the deepest
    block whose grid is at least 6 x 6 at the faces' size; point = the top cell's centre) and
    input gradient (point = the map's maximum), and a random map.

    **The sanity controls** (column ``control``, ``sanity``): ``none``; ``shuffled_masks``,
    the same maps scored against another face's mask (a derangement, seeded); and
    ``random_weights``, the patch map and Grad-CAM of the same architecture freshly
    initialised with ``seed`` (the initial weights of a run of that seed). ``images`` is
    ``"manipulated"`` throughout. ``adequacy`` (:func:`adequacy_table`) adds ``adequate`` to
    the table's rows of trained runs. ``localize.localization_table`` summarises with
    intervals over images."""
    images, masks, heat, frames = {}, {}, {}, []
    for m, models in run_dirs.items():
        images[m], masks[m], _ = masked_test_split(ms, m)
        order = sanity.derangement(len(images[m]), seed)
        for model, run in models.items():
            h, f = _localize_run(ms, m, model, run, images[m], masks[m], order, seed)
            heat |= h
            frames += f
        h = attribution.random_maps(len(images[m]), images[m].shape[1], seed)
        heat[(m, "random", "-")] = h
        r = localize.localization_frame("random", "-", m, h, attribution.max_points(h, seed),
                                        masks[m])
        frames += [r.assign(control="none")]
    # the examples' columns: every trained map, the random map, then the untrained maps
    heat = dict(sorted(heat.items(), key=lambda kv: kv[0][2].endswith(RANDOM_WEIGHTS)))
    frame = pd.concat(frames, ignore_index=True)
    frame.insert(3, "images", "manipulated")
    table = localize.localization_table(frame, n_boot=n_boot, seed=seed)
    if adequacy is not None:
        ok = {(r.manipulation, r.model): bool(r.adequate) for r in adequacy.itertuples()}
        table["adequate"] = [ok.get((m, model)) if c != "random_weights" else None
                             for m, model, c in zip(table["manipulation"], table["model"],
                                                    table["control"], strict=True)]
    return Localization(images, masks, heat, frame, table)


def grid_side(table: pd.DataFrame, localizer: str = "gradcam") -> int:
    """The smallest side of the grids (``localization_table``'s ``grid``, ``"h x w"``) of
    ``localizer``'s rows: e.g. the coarsest Grad-CAM of the study. ValueError when none."""
    grids = table.loc[table["localizer"] == localizer, "grid"].dropna().astype(str)
    sides = [int(v) for g in grids if g for v in g.split("x")]
    if not sides:
        raise ValueError(f"no {localizer} rows with a grid in the table")
    return min(sides)


BAR_LABELS = {"shuffled_masks": "shuffled", "random_weights": "untrained"}  # control -> label


def bar_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The localization table's rows for ``charts.localization_bars``: the compared localizers
    (patch map, Grad-CAM) each followed by its controls, the gradient and the random map (the
    gradient's shuffled-mask row stays in the table), each control named in its row's
    ``model`` label (:data:`BAR_LABELS`) so a map's bars and its controls' stand apart."""
    out = table.copy()
    if "control" not in out:
        return out
    out = out[(out["control"] == "none") | out["localizer"].isin(["patch", "gradcam"])].copy()
    # each localizer's bars together, its controls after it, in the order of the localizers
    rank = {k: i for i, k in enumerate((*localize.LOCALIZERS, *sanity.CONTROLS))}
    out = out.sort_values(["localizer", "control"], key=lambda c: c.map(rank), kind="stable")
    named = out["control"] != "none"
    out.loc[named, "model"] = (out.loc[named, "model"] + "\n"
                               + out.loc[named, "control"].map(BAR_LABELS))
    return out


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


# --- the comparison that decides --------------------------------------------------------------

PRIMARY_LOCALIZATION = "pixel_auc"  # the localization metric that decides (pre-registered)
PRIMARY_PATCH = "xception_block2"  # the patch model compared with Grad-CAM (22 % of the face)
PRIMARY_FULL = "xception_full"
VERDICTS = ("patch better", "no difference", "Grad-CAM better", UNDER_TRAINED)


def _pick(g: pd.DataFrame, who: tuple[str, str], col: str) -> pd.Series:
    sel = (g["localizer"] == who[0]) & (g["model"] == who[1])
    return g[sel].set_index("image")[col].astype(float)


def paired_difference(frame: pd.DataFrame, *, metric: str = PRIMARY_LOCALIZATION,
                      a: tuple[str, str] = ("patch", PRIMARY_PATCH),
                      b: tuple[str, str] = ("gradcam", PRIMARY_FULL), control: str = "none",
                      level: float = LEVEL) -> pd.DataFrame:
    """``metric`` of localizer ``a`` minus that of ``b`` (``(localizer, model)``) on the same
    test images, per manipulation, on the rows of ``control`` (:attr:`Localization.frame`):
    ``n`` images (where either value is NaN, left out), ``a_mean``, ``b_mean``, ``diff``, its
    paired t-interval over images (``ci_low``, ``ci_high``, ``level``; ``se``, ``df`` = n - 1)
    and two-sided ``p`` (``stats.t_interval``, ``stats.t_pvalue``; NaN below 2 images), and
    ``b_flat_share`` (b's maps without evidence)."""
    rows = []
    for m, g in frame.groupby("manipulation", sort=False):
        g = g[g["control"] == control] if "control" in g else g
        va, vb = _pick(g, a, metric), _pick(g, b, metric)
        d = (va - vb).dropna()
        if d.empty:
            continue
        x, n = d.to_numpy(), len(d)
        se = float(x.std(ddof=1) / np.sqrt(n)) if n > 1 else np.nan
        lo, hi = t_interval(float(x.mean()), se, n - 1, level) if n > 1 else (np.nan, np.nan)
        rows.append({"manipulation": m, "metric": metric, "a": " ".join(a), "b": " ".join(b),
                     "n": n, "a_mean": float(va.loc[d.index].mean()),
                     "b_mean": float(vb.loc[d.index].mean()), "diff": float(x.mean()),
                     "se": se, "df": n - 1, "ci_low": lo, "ci_high": hi,
                     "p": t_pvalue(float(x.mean()), se, n - 1) if n > 1 else np.nan,
                     "b_flat_share": float(_pick(g, b, "flat").mean())})
    return pd.DataFrame(rows)


def localization_comparison(frame: pd.DataFrame, adequacy: pd.DataFrame, *,
                            metric: str = PRIMARY_LOCALIZATION,
                            alpha: float = protocol.HOLM_ALPHA) -> pd.DataFrame:
    """The pre-registered comparison: :func:`paired_difference` of block2's patch map and the
    full model's Grad-CAM per manipulation, tested only where both runs are adequate
    (``adequacy``: :func:`adequacy_table`; ``a_adequate``, ``b_adequate`` and their
    ``a_val_auc_low``, ``b_val_auc_low``). ``p_holm``: Holm's adjustment over the tested
    manipulations (``stats.holm``; NaN where untested). ``verdict`` (one of :data:`VERDICTS`):
    "not tested: under-trained" where either run fails adequacy, else "patch better" /
    "Grad-CAM better" when ``p_holm < alpha``, "no difference" otherwise. The interval is the
    unadjusted 95 % one."""
    t = paired_difference(frame, metric=metric)
    if t.empty:
        return t.assign(verdict=pd.Series(dtype=str))
    rec = adequacy.set_index(["manipulation", "model"])
    for side, model in (("a", PRIMARY_PATCH), ("b", PRIMARY_FULL)):
        keys = [(m, model) for m in t["manipulation"]]
        t[f"{side}_adequate"] = [bool(rec["adequate"].get(k, False)) for k in keys]
        t[f"{side}_val_auc_low"] = [float(rec["val_auc_ci_low"].get(k, np.nan)) for k in keys]
    tested = (t["a_adequate"] & t["b_adequate"]).to_numpy()
    t["p_holm"] = holm(np.where(tested, t["p"].to_numpy(float), np.nan))
    t["verdict"] = [UNDER_TRAINED if not ok else
                    ("patch better" if d > 0 else "Grad-CAM better") if p < alpha else
                    "no difference" for ok, d, p in zip(tested, t["diff"], t["p_holm"],
                                                        strict=True)]
    return t


def reading(cmp: pd.DataFrame) -> str:
    """One sentence per manipulation from :func:`localization_comparison`, worded from its
    verdict: untested cells give their runs' validation bounds and the numbers as
    descriptive only."""
    lines = []
    for r in cmp.itertuples():
        metric = {"pixel_auc": "pixel AUC"}.get(r.metric, r.metric.replace("_", " "))
        nums = (f"{metric} {r.a} {r.a_mean:.3f} vs. {r.b} {r.b_mean:.3f}, "
                f"difference {r.diff:+.3f} [{r.ci_low:+.3f}, {r.ci_high:+.3f}] over {r.n} "
                "images")
        if r.verdict == UNDER_TRAINED:
            lines.append(f"- **{r.manipulation}**: {r.verdict} (validation AUC lower bounds "
                         f"{r.a_val_auc_low:.3f} for {PRIMARY_PATCH} and {r.b_val_auc_low:.3f} "
                         f"for {PRIMARY_FULL}; adequacy needs "
                         f"{protocol.ADEQUACY_MIN}); descriptive only: {nums}.")
        else:
            lines.append(f"- **{r.manipulation}**: {nums}, Holm p = {r.p_holm:.3g}: "
                         f"**{r.verdict}**.")
    return "\n".join(lines)
