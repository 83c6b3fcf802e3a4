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

import functools
import hashlib
import io
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
from PIL import Image
from scipy.spatial import ConvexHull, Delaunay, QhullError

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
from .generators import TorchGenerator, get_generator
from .images import atomic_write_bytes, read_image
from .preprocess import PIPELINE, center_square
from .progress import bar as progress_bar
from .provenance import run_record
from .world import inversion_config, invert_reals, split_seed

MANIPULATIONS = ("faceswap", "deepfake", "reenact", "neuraltex")
LEARNED = ("deepfake", "neuraltex")  # rendered by the world's VAE
DATASET = "celeba"  # the only real set with faces the mesh can read at native size
RENDERER = "vae"  # the learned methods' network: the world's VAE, through its inversions
MASKS_FILE = "masks.npz"  # one per set, in the set's folder
PAIRING = "manipulation_pairs"  # the "generator" name of the pairing's split_seed
MANIPULATE_VERSION = 1  # bump when a recipe changes (invalidates every manipulation set)
N_LANDMARKS = 468


@dataclass(frozen=True)
class ManipulationConfig:
    """How the manipulations are made (fingerprinted with every set). Lengths given as a
    fraction of the face width (the face-oval's x extent, ~90 px on native CelebA) scale with
    the face, so the recipe is the same for any input size."""

    min_confidence: float = 0.5  # face mesh's min_detection_confidence
    retry_upscale: int = 2  # a face the mesh misses at native size is tried again this much larger
    swap_erode: float = 0.04  # faceswap/deepfake: face-oval hull eroded by this x face width
    reenact_min_move: float = 0.25  # reenact: px a landmark must move to count as moved
    reenact_feather: float = 0.012  # reenact: sigma of the mask's Gaussian feather x face width
    mouth_dilate: float = 0.06  # neuraltex: lips hull dilated by this x face width
    mouth_feather: float = 0.02  # neuraltex: sigma of the alpha's Gaussian feather x face width
    version: int = MANIPULATE_VERSION


# --- landmarks -----------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def landmark_groups() -> dict[str, np.ndarray]:
    """Face-mesh landmark indices per group (``face_oval``, ``lips``, ``left_eye``,
    ``right_eye``, ``nose``, ``stable``), from MediaPipe's own connection lists. ``stable``:
    points an expression hardly moves (nose, eye corners, forehead), for aligning two faces."""
    fm = _mediapipe().solutions.face_mesh

    def idx(connections: Any) -> np.ndarray:
        return np.array(sorted({i for edge in connections for i in edge}), dtype=np.int64)

    nose = idx(fm.FACEMESH_NOSE)
    stable = np.union1d(nose, [33, 133, 362, 263, 10, 151, 9])  # eye corners, forehead
    return {"face_oval": idx(fm.FACEMESH_FACE_OVAL), "lips": idx(fm.FACEMESH_LIPS),
            "left_eye": idx(fm.FACEMESH_LEFT_EYE), "right_eye": idx(fm.FACEMESH_RIGHT_EYE),
            "nose": nose, "stable": stable}


def _mediapipe() -> Any:
    try:
        import mediapipe as mp  # optional heavy package: imported only when faces are read
    except ImportError as err:
        raise RuntimeError("the manipulations need mediapipe==0.10.14: pip install --no-deps "
                           "mediapipe==0.10.14 (make setup does)") from err
    return mp


class LandmarkDetector:
    """MediaPipe's face mesh (static images, one face, no iris refinement) -> 468 x 2 (x, y)
    landmarks in the image's own pixels. Use as a context manager or call :meth:`close`.

    Measured on the 999 native CelebA crops (178 x 218): the mesh finds 994 at native size and
    995 at 2x, so images are read at native size and only a miss is retried upscaled
    (``ManipulationConfig.retry_upscale``, bicubic)."""

    def __init__(self, params: ManipulationConfig | None = None) -> None:
        self.params = params or ManipulationConfig()
        self._mesh = _mediapipe().solutions.face_mesh.FaceMesh(
            static_image_mode=True, max_num_faces=1, refine_landmarks=False,
            min_detection_confidence=self.params.min_confidence)

    def __enter__(self) -> LandmarkDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._mesh.close()

    def _process(self, image: np.ndarray) -> Any:
        with warnings.catch_warnings():
            # protobuf 4 warns on every call about an API MediaPipe 0.10.14 still uses.
            warnings.filterwarnings("ignore", message="SymbolDatabase.GetPrototype")
            return self._mesh.process(np.ascontiguousarray(image)).multi_face_landmarks

    def __call__(self, image: np.ndarray) -> np.ndarray | None:
        """468 x 2 float64 (x, y) in px of ``image`` (H x W x 3 uint8), or ``None`` when no
        face is found."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an H x W x 3 uint8 image, got {image.shape} "
                             f"{image.dtype}")
        h, w = image.shape[:2]
        found = self._process(image)
        k = self.params.retry_upscale
        if not found and k > 1:
            found = self._process(np.asarray(Image.fromarray(image).resize(
                (w * k, h * k), Image.Resampling.BICUBIC)))
        if not found:
            return None
        # MediaPipe normalises x by the width and y by the height, whatever the scale read.
        pts = np.array([(p.x * w, p.y * h) for p in found[0].landmark], dtype=np.float64)
        return pts if len(pts) == N_LANDMARKS else None


def detect_landmarks(images: Sequence[np.ndarray], *, params: ManipulationConfig | None = None,
                     progress: bool = False) -> list[np.ndarray | None]:
    """Landmarks of each H x W x 3 uint8 image: 468 x 2 float64 (x, y) px, or ``None`` where
    the mesh finds no face (a flat image, a face cut off)."""
    with LandmarkDetector(params) as det:
        return [det(im) for im in progress_bar(images, desc="face mesh", disable=not progress,
                                               unit="img", leave=False)]


# --- geometry ------------------------------------------------------------------------------------

def _face_width(pts: np.ndarray) -> float:
    oval = pts[landmark_groups()["face_oval"]]
    return float(np.ptp(oval[:, 0]))


def hull_mask(pts: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """H x W bool: the filled convex hull of points ``pts`` (K x 2, (x, y) px); all False when
    the points are degenerate (collinear)."""
    out = np.zeros(shape, np.uint8)
    try:
        poly = pts[ConvexHull(pts).vertices]
    except QhullError:
        return out.astype(bool)
    # Subpixel vertices (shift 4: 1/16 px), so the hull does not snap to the pixel grid.
    cv2.fillConvexPoly(out, np.round(poly * 16).astype(np.int32), 1, cv2.LINE_8, 4)
    return out.astype(bool)


def face_mask(pts: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """H x W bool: the face-oval hull of 468 landmarks (the region every manipulation stays
    in)."""
    return hull_mask(pts[landmark_groups()["face_oval"]], shape)


def _disk(radius: float) -> np.ndarray:
    r = max(1, int(round(radius)))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def triangle_labels(tri: Delaunay, shape: tuple[int, int]) -> np.ndarray:
    """H x W int32: the index of the triangle of ``tri`` (a Delaunay triangulation in (x, y)
    px) each pixel lies in, -1 outside. Rasterised one triangle at a time with OpenCV (~900
    triangles, ~5 ms a face on the 2-core AMD EPYC): ``Delaunay.find_simplex`` is as exact but
    falls back to a search over every triangle for each pixel outside the mesh, 50x slower
    there."""
    labels = np.full(shape, -1, np.int32)
    v = np.round(tri.points * 16).astype(np.int32)  # subpixel vertices (shift 4: 1/16 px)
    for k, simplex in enumerate(tri.simplices):
        cv2.fillConvexPoly(labels, v[simplex], int(k), cv2.LINE_8, 4)
    return labels


def warp_maps(src_pts: np.ndarray, dst_pts: np.ndarray, shape: tuple[int, int],
              tri: Delaunay | None = None, labels: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The piecewise-affine backward map taking the mesh ``src_pts`` onto ``dst_pts`` (both
    K x 2, (x, y) px, the same landmarks): ``(map_x, map_y, inside)`` for ``cv2.remap`` on an
    output of ``shape`` (H, W). Each output pixel in a Delaunay triangle of ``dst_pts`` reads
    the source at the same barycentric position in the corresponding ``src_pts`` triangle;
    pixels outside the triangulation map to themselves (``inside`` False). All H x W: float32,
    float32, bool. ``tri``, ``labels``: ``Delaunay(dst_pts)`` and its
    :func:`triangle_labels`, when the caller has them already."""
    h, w = shape
    tri = tri if tri is not None else Delaunay(dst_pts)
    labels = labels if labels is not None else triangle_labels(tri, shape)
    map_y, map_x = np.mgrid[:h, :w].astype(np.float32)
    inside = labels >= 0
    yy, xx = np.nonzero(inside)
    s = labels[yy, xx]
    # One affine per triangle, dst (x, y, 1) -> src (x, y): A = S @ inv(D). Computed here in
    # one batched solve; scipy's Delaunay.transform takes ~100 ms a face (AMD EPYC).
    simp = tri.simplices
    d = np.concatenate([dst_pts[simp].transpose(0, 2, 1), np.ones((len(simp), 1, 3))], 1)
    flat = np.abs(np.linalg.det(d)) < 1e-9  # a degenerate triangle covers no pixel
    d[flat] = np.eye(3)
    affine = src_pts[simp].transpose(0, 2, 1) @ np.linalg.inv(d)  # n_tri x 2 x 3
    a = affine[s]
    src = a[:, :, 0] * xx[:, None] + a[:, :, 1] * yy[:, None] + a[:, :, 2]
    map_x[yy, xx], map_y[yy, xx] = src[:, 0], src[:, 1]
    return map_x, map_y, inside


def _remap(image: np.ndarray, map_x: np.ndarray, map_y: np.ndarray) -> np.ndarray:
    return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares similarity (rotation, uniform scale, shift; Umeyama 1991) taking points
    ``src`` onto ``dst`` (both K x 2): ``(A 2 x 2, t 2)`` with ``dst ~ src @ A.T + t``."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s0, d0 = src - mu_s, dst - mu_d
    u, sing, vt = np.linalg.svd(d0.T @ s0 / len(src))
    d = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:  # a reflection is no similarity
        d[1, 1] = -1
    scale = float(np.trace(np.diag(sing) @ d) / s0.var(0).sum())
    a = scale * (u @ d @ vt)
    return a, mu_d - a @ mu_s


# --- colour ------------------------------------------------------------------------------------

def color_match(image: np.ndarray, image_mask: np.ndarray, reference: np.ndarray,
                reference_mask: np.ndarray, where: np.ndarray | None = None) -> np.ndarray:
    """``image`` (H x W x 3 uint8) with each Lab channel's mean and std inside ``image_mask``
    moved to those of ``reference`` (H' x W' x 3 uint8) inside ``reference_mask`` (bool
    masks of their images): a graphics swap's colour transfer (Reinhard et al. 2001). Only the
    pixels of ``where`` (H x W bool; default all) are changed, and only they and the masks'
    pixels are converted (a whole image's Lab round trip costs more than the warp). Returns
    H x W x 3 uint8."""
    def lab(pixels: np.ndarray) -> np.ndarray:  # N x 3 uint8 -> N x 3 float32 Lab
        return cv2.cvtColor(pixels[:, None].astype(np.float32) / 255, cv2.COLOR_RGB2Lab)[:, 0]

    a, b = lab(image[image_mask]), lab(reference[reference_mask])
    if len(a) < 2 or len(b) < 2:
        return image
    gain = b.std(0) / np.maximum(a.std(0), 1e-3)
    where = np.ones(image.shape[:2], bool) if where is None else where
    moved = (lab(image[where]) - a.mean(0)) * gain + b.mean(0)
    rgb = cv2.cvtColor(moved[:, None].astype(np.float32), cv2.COLOR_Lab2RGB)[:, 0]
    out = image.copy()
    out[where] = np.clip(np.round(rgb * 255), 0, 255).astype(np.uint8)
    return out


def _alpha_blend(top: np.ndarray, base: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    out = alpha[..., None] * top.astype(np.float32) + (1 - alpha[..., None]) * base
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _poisson(top: np.ndarray, base: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``top`` Poisson-blended into ``base`` (both H x W x 3 uint8, aligned) inside ``mask``
    (H x W bool); pixels outside the mask are ``base``'s. Both are padded first: OpenCV refuses
    a mask whose box touches the border, and pads its own box by one pixel."""
    pad = 4
    def padded(a: np.ndarray) -> np.ndarray:
        return cv2.copyMakeBorder(a, pad, pad, pad, pad, cv2.BORDER_REFLECT_101)
    m = np.pad(mask.astype(np.uint8) * 255, pad)
    x, y, w, h = cv2.boundingRect(m)
    # OpenCV places the mask's box centred at p with its top-left at p - (w // 2, h // 2).
    out = cv2.seamlessClone(padded(top), padded(base), m, (x + w // 2, y + h // 2),
                            cv2.NORMAL_CLONE)
    out = out[pad:-pad, pad:-pad]
    return np.where(mask[..., None], out, base)


# --- the four manipulations (native size) --------------------------------------------------------

def faceswap(target: np.ndarray, target_pts: np.ndarray, source: np.ndarray,
             source_pts: np.ndarray, params: ManipulationConfig | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """FaceSwap: ``source``'s face warped onto ``target``'s landmarks, colour-matched and
    Poisson-blended into ``target``.

    ``target``, ``source``: H x W x 3 uint8 (sizes may differ); ``*_pts``: their 468 x 2
    landmarks (x, y px). Returns ``(fake H x W x 3 uint8, weight H x W float32 in [0, 1])``
    with weight 1 on the blended region (the target's face-oval hull, eroded) and 0 elsewhere,
    where the fake equals the target exactly. Deepfakes is this with a rendered ``source``.
    """
    p = params or ManipulationConfig()
    shape = target.shape[:2]
    map_x, map_y, inside = warp_maps(source_pts, target_pts, shape)
    region = face_mask(target_pts, shape).astype(np.uint8)
    region = cv2.erode(region, _disk(p.swap_erode * _face_width(target_pts))).astype(bool)
    region &= inside
    if region.sum() < 16:
        raise ValueError("the target's face region is empty")
    warped = _remap(source, map_x, map_y)
    # The Poisson solve reads the source one pixel beyond the mask: match a ring more.
    near = cv2.dilate(region.astype(np.uint8), _disk(2)).astype(bool)
    warped = color_match(warped, region, target, region, near)
    fake = _poisson(warped, target, region)
    return fake, region.astype(np.float32)


def reenact(target: np.ndarray, target_pts: np.ndarray, source_pts: np.ndarray,
            params: ManipulationConfig | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
    """Face2Face-style expression transfer: ``target``'s lips and eyes take the shape of the
    source's (source landmarks aligned to the target by a similarity on stable points; each
    group re-centred on the target's own centroid), and ``target`` is warped piecewise-affinely
    onto the moved mesh.

    ``target``: H x W x 3 uint8; ``target_pts``, ``source_pts``: 468 x 2 landmarks. Returns
    ``(fake, weight)`` as :func:`faceswap`; weight is the Gaussian-feathered set of triangles
    with a moved vertex (elsewhere the warp is the identity) and the fake is
    ``weight * warped + (1 - weight) * target``.
    """
    p = params or ManipulationConfig()
    groups = landmark_groups()
    shape = target.shape[:2]
    a, t = similarity_transform(source_pts[groups["stable"]], target_pts[groups["stable"]])
    aligned = source_pts @ a.T + t
    moved = target_pts.copy()
    for g in ("lips", "left_eye", "right_eye"):
        i = groups[g]
        moved[i] = target_pts[i].mean(0) + aligned[i] - aligned[i].mean(0)
    shift = np.linalg.norm(moved - target_pts, axis=1) > p.reenact_min_move
    if not shift.any():
        return target.copy(), np.zeros(shape, np.float32)
    tri = Delaunay(moved)
    labels = triangle_labels(tri, shape)
    map_x, map_y, _ = warp_maps(target_pts, moved, shape, tri, labels)
    # Triangles of the moved mesh with a moved vertex: the only pixels the warp changes.
    touched = np.isin(labels, np.flatnonzero(shift[tri.simplices].any(1))).astype(np.uint8)
    sigma = p.reenact_feather * _face_width(target_pts)
    weight = cv2.GaussianBlur(touched.astype(np.float32), (0, 0), sigma) if sigma > 0 \
        else touched.astype(np.float32)
    weight = np.where(weight < 1e-3, 0, np.minimum(weight, 1)).astype(np.float32)
    warped = _remap(target, map_x, map_y)
    return _alpha_blend(warped, target, weight), weight


def neuraltex(target: np.ndarray, target_pts: np.ndarray, rendered: np.ndarray,
              params: ManipulationConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """NeuralTextures-style mouth re-rendering: the target's mouth (lips hull, dilated)
    replaced by ``rendered``, the network's rendering of the target itself in the same
    coordinates (:func:`render_native`), colour-matched and blended with a feathered alpha.

    ``target``, ``rendered``: H x W x 3 uint8; ``target_pts``: 468 x 2. Returns
    ``(fake, weight)``: weight is the alpha (H x W float32 in [0, 1]) and the fake
    ``weight * rendered + (1 - weight) * target``.
    """
    p = params or ManipulationConfig()
    shape = target.shape[:2]
    width = _face_width(target_pts)
    lips = hull_mask(target_pts[landmark_groups()["lips"]], shape)
    mouth = cv2.dilate(lips.astype(np.uint8), _disk(p.mouth_dilate * width))
    sigma = p.mouth_feather * width
    alpha = cv2.GaussianBlur(mouth.astype(np.float32), (0, 0), sigma) if sigma > 0 \
        else mouth.astype(np.float32)
    alpha = np.where(alpha < 1e-3, 0, np.minimum(alpha, 1)).astype(np.float32)
    alpha[lips] = 1  # the feather softens the edge of the dilated mouth, never the lips
    core = mouth.astype(bool)
    matched = color_match(rendered, core, target, core, alpha > 0)
    return _alpha_blend(matched, target, alpha), alpha


def render_native(rendered: np.ndarray, native: np.ndarray) -> np.ndarray:
    """A network's rendering of a prepared image (g x g x 3 uint8: it reconstructs the
    centre square of ``native``, resized) placed back in ``native``'s coordinates: upsampled
    (bicubic) to the centre square and pasted into a copy of ``native`` (H x W x 3 uint8),
    whose pixels outside the square stay (no manipulation reads them). Returns H x W x 3
    uint8."""
    h, w = native.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2  # as preprocess.center_square
    up = np.asarray(Image.fromarray(rendered).resize((s, s), Image.Resampling.BICUBIC))
    out = native.copy()
    out[top:top + s, left:left + s] = up
    return out


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

def set_key(method: str) -> str:
    """The manifest key and folder of a manipulation set, e.g. ``fake/celeba/faceswap``."""
    if method not in MANIPULATIONS:
        raise ValueError(f"unknown manipulation {method!r}; choose from {MANIPULATIONS}")
    return f"fake/{DATASET}/{method}"


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
    real_key = f"real/{DATASET}"
    real = manifest["sets"][real_key]
    seeds = {s: split_seed(cfg.seed, DATASET, PAIRING, s) for s in SPLITS}
    jpeg = fake_jpeg_history(cfg, real)
    base = {"version": MANIPULATE_VERSION, "params": to_dict(p), "size": cfg.size,
            "seeds": seeds, "real": real.get("fingerprint"), "pipeline": PIPELINE,
            "mediapipe": _mediapipe().__version__, "jpeg": jpeg.to_dict() if jpeg else None}
    gen, renderer = (_renderer(root, cfg, device, progress) if any(m in LEARNED for m in methods)
                     else (None, None))
    fps = {m: fingerprint({**base, "set": set_key(m),
                           "renderer": renderer if m in LEARNED else None}) for m in methods}
    todo = [m for m in methods if force or not (set_is_complete(root, set_key(m), fps[m])
                                                and _masks_ok(root, set_key(m)))]
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
    key = set_key(method)
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
            "fingerprint": fp, "paired_with": f"real/{DATASET}", "pairs": pairs,
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
                  f"real/{DATASET}"]))
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
    if method == "neuraltex":  # re-renders each face's own texture: no source face
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
        try:
            fake, w = _manipulate_face(method, p, reals[k][1], marks[k], reals[j][1], marks[j],
                                       rendered.get(plan[name]), rendered.get(name))
        except (ValueError, cv2.error, QhullError):
            continue  # a degenerate mesh: counted as skipped
        items.append((ids[k], fake))
        weights.append(_quantise(mask_to_world(w, cfg.size)))
        done[name] = plan[name]
    return items, weights, done


def _manipulate_face(method: str, p: ManipulationConfig, target: np.ndarray,
                     t_pts: np.ndarray | None, source: np.ndarray, s_pts: np.ndarray | None,
                     source_render: np.ndarray | None, target_render: np.ndarray | None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """One manipulated face and its mask weight (native size): ``target`` with the method
    applied, from ``source`` (its landmarks ``s_pts``) or the VAE's renderings."""
    assert t_pts is not None and s_pts is not None
    if method == "faceswap":
        return faceswap(target, t_pts, source, s_pts, p)
    if method == "deepfake":
        assert source_render is not None
        return faceswap(target, t_pts, render_native(source_render, source), s_pts, p)
    if method == "reenact":
        return reenact(target, t_pts, s_pts, p)
    assert target_render is not None
    return neuraltex(target, t_pts, render_native(target_render, target), p)


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
    key = set_key(method)
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
    f = root / set_key(method) / entry["masks"]["file"]
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
        target, _ = read_image(root / "real" / DATASET / split / name, min_side=1)
        fake, _ = read_image(root / set_key(method) / split / name, min_side=1)
        out.append({"name": name, "source": entry["pairs"][split][name], "target": target,
                    "fake": fake, "mask": mask})
    return out
