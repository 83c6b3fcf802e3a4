"""Face edits at the reals' native size: face-mesh landmarks, warps, colour transfer and blending,
and the four manipulations (faceswap, deepfake's and neuraltex's renderings, reenactment) that
``manipulate`` writes as sets.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from PIL import Image
from scipy.spatial import ConvexHull, Delaunay, QhullError

from .progress import bar as progress_bar
from .segment import graph_call, mediapipe_module, quiet_graphs

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


@functools.lru_cache(maxsize=1)
def landmark_groups() -> dict[str, np.ndarray]:
    """Face-mesh landmark indices per group (``face_oval``, ``lips``, ``left_eye``,
    ``right_eye``, ``nose``, ``stable``), from MediaPipe's own connection lists. ``stable``:
    points an expression hardly moves (nose, eye corners, forehead), for aligning two faces."""
    fm = mediapipe_module().solutions.face_mesh

    def idx(connections: Any) -> np.ndarray:
        return np.array(sorted({i for edge in connections for i in edge}), dtype=np.int64)

    nose = idx(fm.FACEMESH_NOSE)
    stable = np.union1d(nose, [33, 133, 362, 263, 10, 151, 9])  # eye corners, forehead
    return {"face_oval": idx(fm.FACEMESH_FACE_OVAL), "lips": idx(fm.FACEMESH_LIPS),
            "left_eye": idx(fm.FACEMESH_LEFT_EYE), "right_eye": idx(fm.FACEMESH_RIGHT_EYE),
            "nose": nose, "stable": stable}


class LandmarkDetector:
    """MediaPipe's face mesh (static images, one face, no iris refinement) -> 468 x 2 (x, y)
    landmarks in the image's own pixels. Use as a context manager or call :meth:`close`.

    Measured on the 999 native CelebA crops (178 x 218): the mesh finds 994 at native size and
    995 at 2x, so images are read at native size and only a miss is retried upscaled
    (``ManipulationConfig.retry_upscale``, bicubic)."""

    def __init__(self, params: ManipulationConfig | None = None) -> None:
        self.params = params or ManipulationConfig()
        # the native log lines go to the log for the detector's whole life (quiet_graphs)
        (self._mesh,), self._close = quiet_graphs(self, lambda: (
            mediapipe_module().solutions.face_mesh.FaceMesh(
                static_image_mode=True, max_num_faces=1, refine_landmarks=False,
                min_detection_confidence=self.params.min_confidence),))

    def __enter__(self) -> LandmarkDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._close()

    def _process(self, image: np.ndarray) -> Any:
        with graph_call():
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
