"""Manipulated faces with exact masks: a FaceForensics++ analog on the embedded CelebA reals
(Rössler et al. 2019; Chai et al. 2020, the FaceForensics++ experiments, and Sec. 4.3 for which
face parts the patches look at).

FaceForensics++ edits real videos with four methods: two swap identities (FaceSwap, graphics;
Deepfakes, learned) and two change the expression of the same person (Face2Face, graphics;
NeuralTextures, learned). Its videos cannot be had here, so the same four kinds of edit are made
on the world's real CelebA photos, at their native 178 x 218 px, from MediaPipe's 468-point face
mesh, OpenCV and the world's own VAE (the "network" of the learned methods):

- ``faceswap``: the source's face (its face-oval hull, eroded) warped piecewise-affinely onto
  the target's landmarks (Delaunay triangles of the target's mesh), colour-matched in Lab and
  Poisson-blended into the target (``cv2.seamlessClone``, NORMAL_CLONE).
- ``deepfake``: the same, but the warped pixels are the source face *as rendered by the VAE*
  (the world's cached latent-optimisation inversion of the source real, upsampled back to
  native coordinates).
- ``reenact``: the target's own lips and eyes moved to the source's expression (source
  landmarks aligned to the target by a similarity on stable points), the target warped
  piecewise-affinely onto the moved mesh; only triangles that move change pixels.
- ``neuraltex``: the target's mouth (dilated lips hull) replaced by the VAE's rendering of the
  target itself, colour-matched, blended with a feathered alpha.

As in FaceForensics++, the four methods share one seeded (target, source) pairing per split
(a cyclic shift of a random order of the faces the mesh found, so no face is its own source and
each is the source of exactly one other); ``neuraltex`` uses only the target. Every fake keeps
its target's file name and goes through the reals' own pipeline (``embedded.write_set``,
history ``native``: a manipulated photo has the reals' resampling history; with
``WorldConfig.fake_history="reals"`` it is also JPEG round-tripped with the reals' own tables at
its native size, so the edited region carries the reals' JPEG history too), so the parity audit
finds nothing. Each set has one mask file, ``<world>/fake/celeba/<method>/masks.npz``: per
image the blend weight in [0, 1] (the share of each pixel that came from the manipulation),
computed at native size and brought to the world size by the images' own centre square and
LANCZOS resize. Faces the mesh misses are skipped and counted per split.
"""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np
import pandas as pd
from PIL import Image
from scipy.spatial import QhullError

from . import paths
from .config import WorldConfig, fingerprint, to_dict
from .embedded import (
    SPLITS,
    built_real_world,
    fake_jpeg_history,
    read_manifest,
    real_splits,
    record_set,
    set_is_complete,
    write_set,
)
from .face_edits import (
    MANIPULATE_VERSION,
    LandmarkDetector,
    ManipulationConfig,
    faceswap,
    neuraltex,
    reenact,
    render_native,
)
from .generators import TorchGenerator, get_generator
from .images import atomic_write_bytes, read_image
from .layout import fake_key, real_key
from .preprocess import PIPELINE, center_square
from .progress import bar as progress_bar
from .provenance import run_record
from .segment import mediapipe_module
from .world import inversion_config, invert_reals, split_seed


class Faces(NamedTuple):
    """What one manipulation of ``target`` may use: its landmarks, the paired ``source`` face
    and its landmarks, and the VAE's renderings of source and target (learned methods)."""

    target: np.ndarray
    t_pts: np.ndarray
    source: np.ndarray
    s_pts: np.ndarray
    source_render: np.ndarray | None
    target_render: np.ndarray | None


@dataclass(frozen=True)
class Recipe:
    """A manipulation: how it edits a face (native size; returns the face and its mask
    weight), whether the world's VAE renders it (``learned``), and whether it edits a face with
    itself rather than with a paired source face (``own_face``)."""

    apply: Callable[[Faces, ManipulationConfig], tuple[np.ndarray, np.ndarray]]
    learned: bool = False
    own_face: bool = False


def _deepfake(f: Faces, p: ManipulationConfig) -> tuple[np.ndarray, np.ndarray]:
    assert f.source_render is not None  # the source face as the VAE renders it
    return faceswap(f.target, f.t_pts, render_native(f.source_render, f.source), f.s_pts, p)


def _neuraltex(f: Faces, p: ManipulationConfig) -> tuple[np.ndarray, np.ndarray]:
    assert f.target_render is not None  # the face's own texture, re-rendered by the VAE
    return neuraltex(f.target, f.t_pts, render_native(f.target_render, f.target), p)


# The manipulations, in the order of every table (adding one: its recipe here, its test).
RECIPES: dict[str, Recipe] = {
    "faceswap": Recipe(lambda f, p: faceswap(f.target, f.t_pts, f.source, f.s_pts, p)),
    "deepfake": Recipe(_deepfake, learned=True),
    "reenact": Recipe(lambda f, p: reenact(f.target, f.t_pts, f.s_pts, p)),
    "neuraltex": Recipe(_neuraltex, learned=True, own_face=True),
}
MANIPULATIONS = tuple(RECIPES)
LEARNED = tuple(m for m, r in RECIPES.items() if r.learned)  # rendered by the world's VAE
DATASET = "celeba"  # the only real set with faces the mesh can read at native size
RENDERER = "vae"  # the learned methods' network: the world's VAE, through its inversions
MASKS_FILE = "masks.npz"  # one per set, in the set's folder
PAIRING = "manipulation_pairs"  # the "generator" name of the pairing's split_seed


# --- landmarks -----------------------------------------------------------------------------------


# --- geometry ------------------------------------------------------------------------------------


# --- colour ------------------------------------------------------------------------------------


# --- the four manipulations (native size) --------------------------------------------------------


# --- pairing and masks ---------------------------------------------------------------------------

def pair_faces(names: Sequence[str], found: Sequence[bool], seed: int) -> dict[str, str]:
    """The seeded (target -> source) pairing of one split: the faces with landmarks, in a
    random order from ``seed``, each paired with the next (cyclically). No face is its own
    source, each is the source of one target; faces without landmarks are left out (fewer
    than two usable faces: no pairs). Returns ``{target name: source name}``."""
    usable = [n for n, ok in zip(names, found, strict=True) if ok]
    if len(usable) < 2:
        return {}
    order = np.random.default_rng(seed).permutation(len(usable))
    return {usable[order[k]]: usable[order[(k + 1) % len(order)]] for k in range(len(order))}


def mask_to_world(weight: np.ndarray, size: int) -> np.ndarray:
    """A native H x W blend weight (float in [0, 1]) brought to the world's size like its
    image (centre square, LANCZOS on floats, clipped to [0, 1]): size x size float32."""
    sq = np.ascontiguousarray(center_square(weight.astype(np.float32)))
    if sq.shape[0] != size:
        sq = np.asarray(Image.fromarray(sq, mode="F").resize((size, size),
                                                               Image.Resampling.LANCZOS))
    return np.clip(sq, 0, 1).astype(np.float32)


def _quantise(weight: np.ndarray) -> np.ndarray:
    return np.round(weight * 255).astype(np.uint8)


# --- the sets ------------------------------------------------------------------------------------

def manipulation_key(method: str) -> str:
    """The manifest key and folder of a manipulation set, e.g. ``fake/celeba/faceswap``."""
    if method not in MANIPULATIONS:
        raise ValueError(f"unknown manipulation {method!r}; choose from {MANIPULATIONS}")
    return fake_key(DATASET, method)


def _masks_ok(root: Path, key: str) -> bool:
    entry = read_manifest(root)["sets"].get(key, {})
    info = entry.get("masks")
    if not info:
        return False
    f = root / key / info["file"]
    return f.exists() and hashlib.sha256(f.read_bytes()).hexdigest() == info["sha256"]


def build_manipulation_sets(cfg: WorldConfig, root: str | Path | None = None, *,
                            methods: Sequence[str] = MANIPULATIONS, force: bool = False,
                            progress: bool = True, device: str | None = None,
                            params: ManipulationConfig | None = None) -> dict[str, Any]:
    """Write the manipulated-face sets ``fake/celeba/<method>`` of world ``root``; returns the
    manifest.

    ``root`` defaults to ``paths.world_dir(cfg.name)`` and must hold the real world of
    ``cfg`` (``embedded.build_real_world``). ``deepfake`` and ``neuraltex`` load (or train) the
    world's VAE and its inversions of the reals (``world.invert_reals``, cached next to the
    weights). A set whose fingerprint (method, recipe, pairing seeds, world size, real set,
    VAE weights and inversion config for the learned ones, MediaPipe version) matches and whose
    images and mask file verify is skipped unless ``force``. Landmarks are read once per real
    image per call and shared by the methods. ``device``: where the VAE runs.

    Each entry holds, besides ``write_set``'s: ``kind`` "fake", ``dataset``, ``generator`` and
    ``manipulation`` (the method), ``paired_with`` "real/celeba", ``pairs`` ({split: {file:
    source file}}), ``skipped`` ({split: faces without landmarks, or without a usable
    source}), ``masks`` ({"file", "sha256"}; read with :func:`load_masks`), ``mask_coverage``
    ({split: mean mask weight per image}), ``renderer`` (learned methods: VAE weights,
    inversion config and cache, PSNR), ``landmarks`` (faces found per split, detection
    seconds), ``seconds`` (manipulating, without writing), ``seeds``, ``params``,
    ``fingerprint`` and ``provenance``.
    """
    root = Path(root) if root is not None else paths.world_dir(cfg.name)
    p = params or ManipulationConfig()
    bad = [m for m in methods if m not in MANIPULATIONS]
    if bad:
        raise ValueError(f"unknown manipulation(s) {bad}; choose from {MANIPULATIONS}")
    manifest = built_real_world(root, cfg, [DATASET])
    world = manifest["world"]
    real_set = real_key(DATASET)
    real = manifest["sets"][real_set]
    seeds = {s: split_seed(cfg.seed, DATASET, PAIRING, s) for s in SPLITS}
    jpeg = fake_jpeg_history(cfg, real)
    base = {"version": MANIPULATE_VERSION, "params": to_dict(p), "size": cfg.size,
            "seeds": seeds, "real": real.get("fingerprint"), "pipeline": PIPELINE,
            "mediapipe": mediapipe_module().__version__, "jpeg": jpeg.to_dict() if jpeg else None}
    gen, renderer = (_renderer(root, cfg, device, progress) if any(m in LEARNED for m in methods)
                     else (None, None))
    fps = {m: fingerprint({**base, "set": manipulation_key(m),
                           "renderer": renderer if m in LEARNED else None}) for m in methods}
    todo = [m for m in methods if force or not (set_is_complete(root, manipulation_key(m), fps[m])
                                                and _masks_ok(root, manipulation_key(m)))]
    if not todo:
        return manifest
    t0 = time.perf_counter()
    reals = _checked_reals(root, cfg, real)
    with LandmarkDetector(p) as det:
        marks = {s: [det(a) for _, a in progress_bar(reals[s], desc=f"face mesh {s}",
                                                      disable=not progress, unit="img",
                                                      leave=False)] for s in SPLITS}
    detect_s = time.perf_counter() - t0
    rendered: dict[str, dict[str, np.ndarray]] = {}
    if gen is not None and renderer is not None and any(m in LEARNED for m in todo):
        rendered, renderer = _render_reals(root, cfg, gen, renderer, progress)
    for method in todo:
        _build_one(root, method, cfg, p, reals, marks, rendered, seeds, fps[method],
                   renderer if method in LEARNED else None, world, detect_s, progress)
    return read_manifest(root)


def _renderer(root: Path, cfg: WorldConfig, device: str | None, progress: bool
              ) -> tuple[TorchGenerator, dict[str, Any]]:
    """The learned methods' renderer (the world's VAE, loaded or trained) and its record."""
    gen = get_generator(DATASET, RENDERER, world_root=root, smoke=cfg.smoke, device=device,
                        progress=progress)
    if not isinstance(gen, TorchGenerator):
        raise TypeError(f"{RENDERER}: expected a generator with a latent, got {type(gen)}")
    return gen, {"generator": RENDERER, "weights_sha256": gen.checkpoint_sha256,
                 "inversion": to_dict(inversion_config(cfg)), "size": gen.size}


def _render_reals(root: Path, cfg: WorldConfig, gen: TorchGenerator, renderer: dict[str, Any],
                  progress: bool) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, Any]]:
    """The renderer's inversions of the reals (``world.invert_reals``, cached), per split
    ``{file name: image}``, and the renderer's record with the cache and mean PSNR."""
    result, cache = invert_reals(gen, root, inversion_config(cfg), progress=progress)
    rendered = {s: dict(zip(result[s]["names"], result[s]["images"], strict=True))
                for s in SPLITS}
    return rendered, {**renderer, "cache": str(cache),
                      "psnr_mean": {s: float(np.mean(result[s]["psnr"])) for s in SPLITS}}


def _checked_reals(root: Path, cfg: WorldConfig, real: dict[str, Any]
                   ) -> dict[str, list[tuple[str, np.ndarray]]]:
    """The CelebA crops ``cfg`` reads, per split, after checking that they are the files the
    world's real set (manifest entry ``real``) holds."""
    reals = real_splits(DATASET, cfg)
    for s in SPLITS:
        names = sorted(f"{i}.png" for i, _ in reals[s])
        if names != sorted(real["splits"][s]["files"]):
            raise ValueError(f"{root}: real/{DATASET}/{s} does not hold the CelebA crops this "
                             "config reads; rebuild the real world")
    return reals


def _build_one(root: Path, method: str, cfg: WorldConfig, p: ManipulationConfig,
               reals: dict[str, list[tuple[str, np.ndarray]]],
               marks: dict[str, list[np.ndarray | None]],
               rendered: dict[str, dict[str, np.ndarray]], seeds: dict[str, int], fp: str,
               renderer: dict[str, Any] | None, world: dict[str, Any], detect_s: float,
               progress: bool) -> None:
    key = manipulation_key(method)
    t0 = time.perf_counter()
    splits: dict[str, list[tuple[str, np.ndarray]]] = {}
    masks: dict[str, np.ndarray] = {}
    pairs: dict[str, dict[str, str]] = {}
    skipped: dict[str, int] = {}
    for s in SPLITS:
        items, weights, done = _manipulate_split(method, cfg, p, reals[s], marks[s],
                                                 rendered.get(s, {}), seeds[s], progress,
                                                 desc=f"{method}/{s}")
        splits[s] = items
        masks[s] = (np.stack(weights) if weights
                    else np.zeros((0, cfg.size, cfg.size), np.uint8))
        masks[f"{s}_names"] = np.array([f"{i}.png" for i, _ in items])
        pairs[s] = done
        skipped[s] = len(reals[s]) - len(done)
    meta = {"kind": "fake", "dataset": DATASET, "generator": method, "manipulation": method,
            "fingerprint": fp, "paired_with": real_key(DATASET), "pairs": pairs,
            "skipped": skipped, "seeds": seeds, "world_seed": cfg.seed, "params": to_dict(p),
            "renderer": renderer, "landmarks": {
                "model": "mediapipe face_mesh (468, static, refine_landmarks=False)",
                "found": {s: int(sum(m is not None for m in marks[s])) for s in SPLITS},
                "seconds": round(detect_s, 2)},
            "seconds": round(time.perf_counter() - t0, 2), "provenance": run_record()}
    # The JPEG round trip moves no pixel, so the masks (made at native size above) stay
    # aligned: a manipulated photo is re-encoded whole, as the source photo was.
    write_set(root, key, splits, size=cfg.size, meta=meta, world=world, progress=progress,
              history="native", jpeg=fake_jpeg_history(cfg, read_manifest(root)["sets"][
                  real_key(DATASET)]))
    _write_masks(root, key, masks, world)  # after write_set, which replaced the whole folder


def _manipulate_split(method: str, cfg: WorldConfig, p: ManipulationConfig,
                      reals: list[tuple[str, np.ndarray]], marks: list[np.ndarray | None],
                      rendered: dict[str, np.ndarray], seed: int, progress: bool, desc: str
                      ) -> tuple[list[tuple[str, np.ndarray]], list[np.ndarray], dict[str, str]]:
    """One split of one method: ``(items, weights, pairs)``, the manipulated faces as
    ``(id, image)``, their quantised masks at the world size, and ``{file: source file}``.
    Faces without landmarks, or whose mesh is degenerate, are left out."""
    ids = [i for i, _ in reals]
    names = [f"{i}.png" for i in ids]
    found = [m is not None for m in marks]
    index = {n: k for k, n in enumerate(names)}
    if RECIPES[method].own_face:  # no source face: each face is its own pair
        plan = {n: n for n, ok in zip(names, found, strict=True) if ok}
    else:
        plan = pair_faces(names, found, seed)
    items, weights, done = [], [], {}
    for k in progress_bar(range(len(names)), desc=desc, disable=not progress, unit="img",
                          leave=False):
        name = names[k]
        if name not in plan:
            continue
        j = index[plan[name]]
        t_pts, s_pts = marks[k], marks[j]
        assert t_pts is not None and s_pts is not None
        faces = Faces(reals[k][1], t_pts, reals[j][1], s_pts, rendered.get(plan[name]),
                      rendered.get(name))
        try:
            fake, w = RECIPES[method].apply(faces, p)
        except (ValueError, cv2.error, QhullError):
            continue  # a degenerate mesh: counted as skipped
        items.append((ids[k], fake))
        weights.append(_quantise(mask_to_world(w, cfg.size)))
        done[name] = plan[name]
    return items, weights, done


def _write_masks(root: Path, key: str, masks: dict[str, np.ndarray], world: dict[str, Any]
                 ) -> None:
    """The set's mask file (npz), recorded in its manifest entry with its coverage."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **masks)
    data = buf.getvalue()
    atomic_write_bytes(root / key / MASKS_FILE, data)
    entry = read_manifest(root)["sets"][key]
    entry["masks"] = {"file": MASKS_FILE, "sha256": hashlib.sha256(data).hexdigest(),
                      "format": "npz: <split> N x S x S uint8 (weight x 255), <split>_names"}
    entry["mask_coverage"] = {s: float(masks[s].mean() / 255) if len(masks[s]) else 0.0
                              for s in SPLITS}
    record_set(root, key, entry, world)


# --- reading ------------------------------------------------------------------------------------

def _entry(root: Path, method: str) -> dict[str, Any]:
    key = manipulation_key(method)
    entry = read_manifest(root)["sets"].get(key)
    if entry is None or "masks" not in entry:
        raise FileNotFoundError(f"{root}: no manipulation set {key!r} with masks; build it "
                                "with patchforensics.manipulate.build_manipulation_sets")
    return entry


def load_masks(root: str | Path, method: str, split: str) -> tuple[list[str], np.ndarray]:
    """The masks of one split of a manipulation set: ``(file names, N x S x S float32 in
    [0, 1])``, in the set's order. The file is verified against the manifest's SHA-256 first;
    a missing or changed file raises ``ValueError`` naming it."""
    root = Path(root)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {SPLITS}")
    entry = _entry(root, method)
    f = root / manipulation_key(method) / entry["masks"]["file"]
    if not f.exists():
        raise ValueError(f"{f}: mask file missing; rebuild the set (force=True)")
    data = f.read_bytes()
    if hashlib.sha256(data).hexdigest() != entry["masks"]["sha256"]:
        raise ValueError(f"{f}: mask file does not match its SHA-256 in the manifest "
                         "(changed or damaged); rebuild the set (force=True)")
    with np.load(io.BytesIO(data)) as z:
        names = [str(n) for n in z[f"{split}_names"]]
        masks = z[split].astype(np.float32) / 255
    return names, masks


def manipulation_table(manifest: dict[str, Any]) -> pd.DataFrame:
    """The manipulation sets of a world manifest: one row per (method, split) with the
    images written (``count``), the faces skipped and the mean mask coverage (share of each
    image's pixels that came from the manipulation, averaged over images)."""
    rows = []
    for entry in manifest.get("sets", {}).values():
        if "manipulation" not in entry:
            continue
        for split in SPLITS:
            if split not in entry.get("splits", {}):
                continue
            rows.append({"method": entry["manipulation"], "split": split,
                         "count": entry["splits"][split]["count"],
                         "skipped": entry.get("skipped", {}).get(split),
                         "mask_coverage": entry.get("mask_coverage", {}).get(split)})
    order = {m: i for i, m in enumerate(MANIPULATIONS)}
    frame = pd.DataFrame(rows, columns=["method", "split", "count", "skipped",
                                        "mask_coverage"])
    if len(frame):
        frame = frame.sort_values(["method", "split"], key=lambda c: c.map(
            order if c.name == "method" else {s: i for i, s in enumerate(SPLITS)}))
    return frame.reset_index(drop=True)


def examples(root: str | Path, method: str, split: str = "test",
             n: int = 4) -> list[dict[str, Any]]:
    """The first ``n`` images of a manipulation set's split, for a figure: dicts with
    ``name`` (file name), ``source`` (the source face's file name; the target's own for
    ``neuraltex``), ``target`` (the real, S x S x 3 uint8 as stored in the world), ``fake``
    (S x S x 3 uint8) and ``mask`` (S x S float32 in [0, 1])."""
    root = Path(root)
    entry = _entry(root, method)
    names, masks = load_masks(root, method, split)
    out = []
    for name, mask in list(zip(names, masks, strict=True))[:n]:
        target, _ = read_image(root / real_key(DATASET) / split / name, min_side=1)
        fake, _ = read_image(root / manipulation_key(method) / split / name, min_side=1)
        out.append({"name": name, "source": entry["pairs"][split][name], "target": target,
                    "fake": fake, "mask": mask})
    return out
