"""Where is the manipulation? Patch maps against the attributions of a full-image classifier.

Chai et al. (2020, Sec. 4.3-4.4) argue that patch classifiers show *where* an image looks fake,
and read their maps by eye. On manipulated faces (faceswap and the like) the data carry exact
ground-truth masks, so the claim can be measured: do a patch model's maps point at the
manipulated region more often than the usual explanations of a full-image classifier?

Localizers (:data:`LOCALIZERS`), each giving an N x S x S heat map at the image size S and one
point per image:

- ``patch``: the patch model's own P(fake) per cell, projected onto the pixels each cell sees
  (``receptive_field.project_map``); its point is the field centre of the most fake cell;
- ``gradcam``: Grad-CAM (Selvaraju et al. 2017) of the fake-minus-real logit of a full-image
  model, in :func:`localize_set` at the deepest block whose grid is at least
  :data:`GRADCAM_MIN_CELLS` cells a side (:func:`gradcam_layer`: a full Xception's last block
  sees a 64 px face as 2 x 2 cells, too coarse to point at anything);
- ``gradient``: the input gradient's magnitude (Simonyan et al. 2014);
- ``random``: i.i.d. uniform maps, the chance level.

Metrics per image (:func:`pixel_auc`, the ranking of mask pixels above the others, which no
rescaling or offset of a map changes; :func:`pointing_game`; :func:`mass_inside`) and a table
with intervals over images (:func:`localization_table`). The sanity controls of a localizer
(masks shuffled across faces, a network with random weights) are in ``sanity``.

A local manipulation also needs a *local image score*: averaging a map over the face dilutes one
fake region among many real-looking patches (the paper's ``mean_softmax`` calls such an image
real). :func:`topk_log_odds` scores an image by its k most fake patches, :func:`choose_k` picks k
on validation data and :func:`aggregation_table` compares it with ``score_modes.MODES``.

Conventions. Masks are N x S x S floats in [0, 1], binarised at >= 0.5 (a pixel at least half
manipulated counts as manipulated). Points are (row, col) in *pixel-index* coordinates: pixel
(i, j) is centred on (i, j), so a field covering rows [r0, r1) has its centre at
(r0 + r1 - 1) / 2, and a point falls on the pixel ``floor(p + 0.5)`` (halves round up).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import expit

from .attribution import (
    cell_points,
    cells_to_pixels,
    check_heat,
    check_images,
    check_maps,
    feature_layers,
    gradcam_cells,
    gradcam_layer,
    grid_candidates,
    input_gradient,
    max_points,
    patch_candidates,
    patch_pixel_maps,
    patch_points,
    random_maps,
)
from .checkpoint import Checkpoint, Device, load_checkpoint, logit_maps
from .models import PatchClassifier
from .receptive_field import receptive_field
from .score_modes import MODES, log_odds_from_maps, scores_from_maps
from .stats import (
    LEVEL,
    N_BOOT,
    boot_counts,
    interval,
    named_rng,
    weighted_auc,
    wilson_interval,
)

LOCALIZERS = ("patch", "gradcam", "gradient", "random")
METRICS = ("pointing_game", "pixel_auc", "mass_inside")
MASK_THRESHOLD = 0.5  # a mask pixel at least half manipulated counts as manipulated


# --- local image scores ------------------------------------------------------------------------


def topk_log_odds(maps: np.ndarray, k: int) -> np.ndarray:
    """Local image score: the mean of each image's ``k`` largest patch logit differences.

    ``maps``: N x h x w logit-difference maps (``checkpoint.logit_maps``); returns N float64,
    unbounded, > 0 = fake. ``k`` is clipped to h * w: ``k = 1`` is the most fake patch,
    ``k >= h * w`` the mean logit (``score_modes.log_odds_from_maps(maps, "mean_logit")``). Mean
    *logits* rather than probabilities, so the score keeps its order where sigmoid saturates."""
    maps = check_maps(maps)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    flat = maps.reshape(len(maps), -1).astype(np.float64)
    k = min(int(k), flat.shape[1])
    if k == flat.shape[1]:
        return flat.mean(axis=1)
    # partition, not sort: the top k in O(h w) per image, their order does not matter
    return -np.partition(-flat, k - 1, axis=1)[:, :k].mean(axis=1)


def topk_scores(maps: np.ndarray, k: int) -> np.ndarray:
    """:func:`topk_log_odds` as a probability: N float64 in [0, 1], > 0.5 = fake."""
    return expit(topk_log_odds(maps, k))


def default_ks(n_cells: int) -> list[int]:
    """Candidate k for ``n_cells`` patches: 1, 2, 4, 8, ... below ``n_cells``, and ``n_cells``."""
    ks = [1 << e for e in range(max(int(n_cells), 1).bit_length()) if 1 << e < n_cells]
    return ks + [int(n_cells)]


def choose_k(val_real_maps: np.ndarray, val_fake_maps: np.ndarray,
             ks: Sequence[int] | None = None) -> int:
    """The k of :func:`topk_log_odds` with the highest AUC on validation maps (N x h x w each;
    ``ks`` default :func:`default_ks`).

    Ties go to the *larger* k: validation splits are often perfectly separated, so many k tie
    at AUC 1, and a mean over more patches rests less on one noisy patch and stays closer to
    the paper's mean aggregation; a smaller k has to earn its place by a strictly better AUC."""
    real, fake = check_maps(val_real_maps), check_maps(val_fake_maps)
    if real.shape[1:] != fake.shape[1:]:
        raise ValueError(f"real maps {real.shape[1:]} and fake maps {fake.shape[1:]} differ")
    if not len(real) or not len(fake):
        raise ValueError("need validation maps of reals and of fakes")
    cands = sorted({int(k) for k in (ks or default_ks(real.shape[1] * real.shape[2]))})
    aucs = [float(weighted_auc(topk_log_odds(real, k), topk_log_odds(fake, k))[0])
            for k in cands]
    best = max(aucs)
    return max(k for k, a in zip(cands, aucs, strict=True) if a >= best - 1e-12)


def aggregation_table(real_maps: np.ndarray, fake_maps: np.ndarray, k: int, *,
                      n_boot: int = N_BOOT, seed: int = 0) -> pd.DataFrame:
    """How each way of turning a map into an image score fares on one test pair: one row per
    mode of ``score_modes.MODES`` and ``"topk"`` (:func:`topk_log_odds` with ``k``).

    Columns: ``mode``, ``k`` (topk only), ``n_real``, ``n_fake``, ``auc`` (fake positive, on the
    order-keeping scores) with ``auc_low``/``auc_high``, ``auc_minus_mean`` (this mode's AUC
    minus that of ``MODES[0]``, the paper's mean patch softmax, with a paired interval
    ``auc_minus_mean_low``/``_high``), ``fake_called_fake`` and
    ``real_called_real`` (shares with probability score > 0.5 / <= 0.5) with ``_low``/``_high``.
    Intervals: ``stats.LEVEL`` percentile bootstrap over images, reals and fakes resampled
    separately, the same ``n_boot`` resamples for every mode (seeded by ``seed``), so modes
    compare paired. "topk" is not added to ``score_modes.MODES``: the other tables iterate it."""
    real, fake = check_maps(real_maps), check_maps(fake_maps)
    rng = np.random.default_rng(seed)
    w_real, w_fake = boot_counts(len(real), n_boot, rng), boot_counts(len(fake), n_boot, rng)

    def share(called: np.ndarray, w: np.ndarray) -> tuple[float, float, float]:
        called = called.astype(np.float64)
        return (float(called.mean()), *interval(w @ called / len(called)))

    rows = []
    base_boot: np.ndarray | None = None
    base_auc = 0.0
    for mode in (*MODES, "topk"):
        if mode == "topk":
            rank_r, rank_f = topk_log_odds(real, k), topk_log_odds(fake, k)
            prob_r, prob_f = topk_scores(real, k), topk_scores(fake, k)
        else:
            rank_r, rank_f = log_odds_from_maps(real, mode), log_odds_from_maps(fake, mode)
            prob_r, prob_f = scores_from_maps(real, mode), scores_from_maps(fake, mode)
        ff, ff_lo, ff_hi = share(prob_f > 0.5, w_fake)
        rr, rr_lo, rr_hi = share(prob_r <= 0.5, w_real)
        auc = float(weighted_auc(rank_r, rank_f)[0])
        boot = weighted_auc(rank_r, rank_f, w_real, w_fake)
        if base_boot is None:  # the first mode, the paper's mean patch softmax
            base_boot, base_auc = boot, auc
        rows.append({"mode": mode, "k": int(k) if mode == "topk" else pd.NA,
                     "n_real": len(real), "n_fake": len(fake), "auc": auc,
                     **dict(zip(("auc_low", "auc_high"), interval(boot), strict=True)),
                     # paired over the shared resamples: this mode's AUC minus the mean's
                     "auc_minus_mean": auc - base_auc,
                     **dict(zip(("auc_minus_mean_low", "auc_minus_mean_high"),
                                interval(boot - base_boot), strict=True)),
                     "fake_called_fake": ff, "fake_called_fake_low": ff_lo,
                     "fake_called_fake_high": ff_hi,
                     "real_called_real": rr, "real_called_real_low": rr_lo,
                     "real_called_real_high": rr_hi})
    table = pd.DataFrame(rows)
    table["k"] = table["k"].astype("Int64")
    return table


# --- patch maps in pixels ----------------------------------------------------------------------


# --- attributions of a classifier --------------------------------------------------------------


# --- metrics -----------------------------------------------------------------------------------


def _binary_masks(masks: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    masks = np.asarray(masks)
    if masks.shape != tuple(shape):
        raise ValueError(f"masks are {masks.shape} but the maps are {tuple(shape)}")
    return masks >= MASK_THRESHOLD


def pointing_game(points: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Whether each point falls inside its mask: ``points`` N x 2 (row, col) in pixel-index
    coordinates, ``masks`` N x S x S -> N bool. A point lands on pixel ``floor(p + 0.5)``
    (clipped to the image); a NaN point is a miss."""
    points = np.asarray(points, np.float64)
    masks = np.asarray(masks)
    if points.shape != (len(masks), 2) or masks.ndim != 3:
        raise ValueError(f"expected N x 2 points and N x S x S masks, got {points.shape} and "
                         f"{masks.shape}")
    binary = _binary_masks(masks, masks.shape)
    ok = ~np.isnan(points).any(axis=1)
    px = np.floor(np.nan_to_num(points) + 0.5).astype(np.int64)
    r = np.clip(px[:, 0], 0, masks.shape[1] - 1)
    c = np.clip(px[:, 1], 0, masks.shape[2] - 1)
    return ok & binary[np.arange(len(masks)), r, c]


def pixel_auc(heat: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Per image, the ROC AUC of the heat values as a detector of mask pixels (ties count one
    half): N float64 in [0, 1]; 0.5 = chance, 0 = inverted. NaN heat pixels are left out; NaN
    when the mask (over the remaining pixels) is all in or all out."""
    heat = check_heat(heat)
    binary = _binary_masks(masks, heat.shape)
    out = np.full(len(heat), np.nan)
    for n, (h, m) in enumerate(zip(heat, binary, strict=True)):
        seen = ~np.isnan(h)
        h, m = h[seen], m[seen]
        if m.any() and not m.all():
            out[n] = weighted_auc(h[~m], h[m])[0]
    return out


def mass_inside(heat: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Per image, the share of the heat mass inside the mask: N float64 in [0, 1]. Mass is the
    heat above the map's own minimum (NaN pixels left out), so an offset does not count: a
    patch model's P(fake), never 0, and Grad-CAM's relu map, 0 where it sees nothing, are
    measured alike. A map without mass (flat: no evidence anywhere) scores the mask's area
    (over the seen pixels), the chance level of any map, rather than being left out; NaN only
    when no pixel is seen."""
    heat = check_heat(heat)
    binary = _binary_masks(masks, heat.shape)
    seen = ~np.isnan(heat)
    n_seen = seen.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        floor = np.where(n_seen > 0, np.where(seen, heat, np.inf).min(axis=(1, 2)), 0)
        mass = np.where(seen, heat - floor[:, None, None], 0.0)
        total = mass.sum(axis=(1, 2))
        area = (binary & seen).sum(axis=(1, 2)) / n_seen
        share = (mass * binary).sum(axis=(1, 2)) / total
    return np.where(n_seen == 0, np.nan, np.where(total > 0, share, area))


def pointing_chance(candidates: np.ndarray | None, masks: np.ndarray) -> np.ndarray:
    """The pointing game's chance level per image: the share of the points a localizer can
    pick (``candidates``: K x 2, e.g. every cell centre of a patch map or of a Grad-CAM grid)
    that fall inside the mask; ``None`` (a pixel-resolution map) gives the mask's area. A 2 x 2
    Grad-CAM can only point at four quadrant centres, which a centred face mask may not
    contain at all: its chance is then 0, not the mask's area. N floats in [0, 1]."""
    binary = _binary_masks(masks, np.asarray(masks).shape)
    if candidates is None:
        return binary.mean(axis=(1, 2))
    cand = np.asarray(candidates, np.float64).reshape(-1, 2)
    hits = [pointing_game(np.repeat(c[None], len(binary), 0), masks) for c in cand]
    return np.mean(hits, axis=0)


def _is_flat(heat: np.ndarray) -> np.ndarray:
    """N bool: the map holds one value only (no evidence anywhere, e.g. an all-zero Grad-CAM)."""
    flat = heat.reshape(len(heat), -1)
    return np.nanmax(flat, axis=1) == np.nanmin(flat, axis=1)


def localization_frame(localizer: str, model: str, manipulation: str, heat: np.ndarray,
                       points: np.ndarray, masks: np.ndarray, *,
                       candidates: np.ndarray | None = None,
                       flat: np.ndarray | None = None, layer: str = "",
                       grid: tuple[int, int] | None = None) -> pd.DataFrame:
    """One row per image: ``localizer``, ``model``, ``manipulation``, ``image`` (index),
    ``pointing_game`` (bool), ``pixel_auc``, ``mass_inside`` (float, NaN where undefined),
    ``mask_area`` (share of pixels in the binarised mask), ``pointing_chance``
    (:func:`pointing_chance` of ``candidates``, the localizer's possible points; ``None``: the
    mask area), ``flat`` (the map holds one value: no evidence; default from ``heat``, or
    given, e.g. from a Grad-CAM's cells), ``layer`` (Grad-CAM's block, else "") and ``grid``
    (the map's own cells, ``"h x w"``, or "" for a pixel map). ``heat``: N x S x S;
    ``points``: N x 2; ``masks``: N x S x S in [0, 1]."""
    heat = check_heat(heat)
    area = _binary_masks(masks, heat.shape).mean(axis=(1, 2))
    return pd.DataFrame({"localizer": localizer, "model": model, "manipulation": manipulation,
                         "image": np.arange(len(heat)),
                         "pointing_game": pointing_game(points, masks),
                         "pixel_auc": pixel_auc(heat, masks),
                         "mass_inside": mass_inside(heat, masks), "mask_area": area,
                         "pointing_chance": pointing_chance(candidates, masks),
                         "flat": _is_flat(heat) if flat is None else np.asarray(flat, bool),
                         "layer": layer, "grid": f"{grid[0]}x{grid[1]}" if grid else ""})


def localization_table(frames: pd.DataFrame, *, n_boot: int = N_BOOT, seed: int = 0,
                       level: float | None = None) -> pd.DataFrame:
    """Per (localizer, model, manipulation[, images][, control]) of :func:`localization_frame`
    rows (``images``, ``control``: columns a study adds, e.g. ``sanity``'s controls): ``n``
    images, the mean of each metric with an interval over images (``<metric>_low``/``_high``,
    ``stats.LEVEL`` unless ``level``: the pointing game's hit rate a Wilson interval, the
    others a percentile bootstrap) and
    the images it was computed on (``n_<metric>``: NaNs are dropped per metric), ``mask_area``
    (the mean mask share: the chance level of ``mass_inside`` and of a pixel-resolution
    pointing game), ``pointing_chance`` (the localizer's own chance level of the pointing game,
    :func:`pointing_chance`), ``flat_share`` (images whose map holds no evidence), and where
    the frame has them ``layer``, ``grid`` and ``mask_iou`` (``sanity.shuffled_frame``).
    Resamples are seeded by ``seed``, the manipulation and the metric only, so localizers and
    models scored on the same images share them (paired)."""
    rows = []
    # ``images`` and ``control`` columns (what the localizer ran on, which sanity control)
    # split too
    keys = ["localizer", "model", "manipulation"] + [k for k in ("images", "control")
                                                  if k in frames]
    for key, g in frames.groupby(keys, sort=False):
        row = dict(zip(keys, key, strict=True)) | {"n": len(g)}
        for metric in METRICS:
            v = g[metric].to_numpy(np.float64)
            v = v[~np.isnan(v)]
            row[f"n_{metric}"] = len(v)
            if len(v) == 0:
                row |= {metric: np.nan, f"{metric}_low": np.nan, f"{metric}_high": np.nan}
                continue
            if metric == "pointing_game":  # a share: Wilson, which does not collapse at 0 or 1
                lo, hi = (float(x) for x in wilson_interval(v.sum(), len(v), level or LEVEL))
            else:
                w = boot_counts(len(v), n_boot, named_rng(seed, str(key[2]), metric))
                lo, hi = interval(w @ v / len(v), level or LEVEL)
            row |= {metric: float(v.mean()), f"{metric}_low": lo, f"{metric}_high": hi}
        row["mask_area"] = float(g["mask_area"].mean())
        if "pointing_chance" in g:
            row["pointing_chance"] = float(g["pointing_chance"].mean())
            row["flat_share"] = float(g["flat"].mean())
        row |= {k: g[k].iloc[0] for k in ("layer", "grid") if k in g}
        if "mask_iou" in g:
            row["mask_iou"] = float(g["mask_iou"].mean())
        rows.append(row)
    return pd.DataFrame(rows)


# --- one call per (model, localizer) -----------------------------------------------------------

@dataclass
class Localized:
    """What :func:`localize_set` returns for one (model, localizer) on one image set."""

    heat: np.ndarray  # N x S x S float64 in [0, 1] (NaN: pixels no patch sees)
    points: np.ndarray  # N x 2 float64 (row, col), pixel-index coordinates
    frame: pd.DataFrame  # localization_frame rows, one per image
    candidates: np.ndarray | None = None  # K x 2: every point it can pick (None: any pixel)
    flat: np.ndarray | None = None  # N bool from its own cells (None: from ``heat``)
    layer: str = ""  # Grad-CAM's block
    grid: tuple[int, int] | None = None  # its own cells (Grad-CAM's grid, the patch map)


def localize_set(source: Checkpoint | PatchClassifier | str | os.PathLike, images: np.ndarray,
                 masks: np.ndarray, *, localizer: str, manipulation: str = "",
                 name: str | None = None, layer: str | None = "auto", seed: int = 0,
                 device: Device = None, batch_size: int = 16,
                 maps: np.ndarray | None = None) -> Localized:
    """Heat maps, points and per-image metrics of one localizer (``localizer``, one of
    :data:`LOCALIZERS`) for one classifier on one set of manipulated images.

    ``source``: a checkpoint (or its run folder / ``best.pt``) or a model; ``images``: N x S x
    S x 3 uint8 at the model's training size; ``masks``: N x S x S in [0, 1]. ``name``: the
    ``model`` column (default the checkpoint's or config's name). ``layer``: Grad-CAM's block,
    ``"auto"`` the deepest with a fine enough grid (:func:`gradcam_layer`), ``None`` the last
    one (recorded in the ``layer`` column). ``seed``: the random maps'. ``patch``
    needs a patch model (a full model has one cell and nothing to point with); ``maps``: its
    N x h x w logit maps of ``images`` when already computed (e.g. ``checkpoint.folder_maps``'
    cache), else they are computed here."""
    if localizer not in LOCALIZERS:
        raise ValueError(f"localizer must be one of {LOCALIZERS}, got {localizer!r}")
    images = check_images(images)
    if isinstance(source, str | os.PathLike):
        source = load_checkpoint(source, device=device)
    if isinstance(source, Checkpoint):
        if source.input_size != images.shape[1]:
            raise ValueError(f"{source.name} was trained on {source.input_size} px images, "
                             f"these are {images.shape[1]} px")
        model, label = source.model, source.name
    else:
        model, label = source, source.config.name
    size = images.shape[1]
    if localizer == "patch":
        if model.config.depth == "full":
            raise ValueError(f"{model.config.name} is a full-image model (one cell); localize "
                             "it with 'gradcam' or 'gradient'")
        rf = receptive_field(model, size)
        if maps is None:
            maps = logit_maps(model, images, device=device)
        elif maps.shape[0] != len(images):
            raise ValueError(f"{len(maps)} maps for {len(images)} images")
        heat, points = patch_pixel_maps(maps, rf), patch_points(maps, rf)
        candidates, flat, grid, layer = patch_candidates(rf), None, rf.output_size, ""
    elif localizer == "gradcam":
        layer = gradcam_layer(model, size) if layer == "auto" else layer
        # the top activation cell's centre, as a patch model's top field centre
        cells = gradcam_cells(model, images, layer=layer, device=device, batch_size=batch_size)
        heat, points = cells_to_pixels(cells, size), cell_points(cells, size, seed)
        candidates, flat = grid_candidates(cells.shape[1:], size), _is_flat(cells)
        grid, layer = cells.shape[1:], layer or feature_layers(model)[-1]
    else:
        heat = (input_gradient(model, images, device=device, batch_size=batch_size)
                if localizer == "gradient" else random_maps(len(images), size, seed))
        points, candidates, flat, grid, layer = max_points(heat, seed), None, None, None, ""
    grid = None if grid is None else (int(grid[0]), int(grid[1]))
    frame = localization_frame(localizer, name or label, manipulation, heat, points, masks,
                               candidates=candidates, flat=flat, layer=layer, grid=grid)
    return Localized(heat, points, frame, candidates, flat, layer, grid)
