"""A face parser from MediaPipe's legacy solutions, for the top-patch analysis (Chai et al. 2020,
Sec. 4.3: "what types of features the patch classifier uses").

The paper parsed faces with a BiSeNet trained on CelebAMask-HQ (19 classes, grouped into 11
clusters: background, skin, brows, eyes, ears, nose, mouth, neck, clothes, hair, hat). Those
weights cannot be had offline; ``mediapipe==0.10.14`` ships its legacy ``mp.solutions`` models in
the wheel, so the label map here is built from two of them:

- **Face mesh** (468 landmarks): its predefined groups, each filled as the convex hull of its
  landmarks: face oval -> ``skin``; left and right eyebrow -> ``brows``; left and right eye ->
  ``eyes``; ``FACEMESH_NOSE`` -> ``nose``; lips (outer and inner contour) -> ``mouth`` (lips and
  the inside of the mouth, as the paper's cluster). Later groups paint over earlier ones in that
  order, so features sit on top of skin.
- **Selfie segmentation** (person vs. background, the general model): person pixels outside the
  face oval are ``hair`` above the chin (the lowest face-oval landmark) and ``neck_clothes`` below
  it; everything else is ``background``.

Differences from the paper's 11 clusters: no ``ears`` and no ``hat`` (ears and hats fall into
``hair`` or ``skin``), neck and clothes are one class, glasses lie in ``eyes`` or ``skin``, and
hulls are coarser than a segmentation network's boundaries (a brow's hull includes the skin
between its upper and lower edge). Both models run on the image upscaled to ``upscale`` px
(bicubic; the detector misses most faces at 64 px) and the label map is brought back to the
image's size with nearest neighbour. An image in which no face is found gets no label map
(``None``); callers count and report those, never crash.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import threading
import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from . import paths
from .config import fingerprint, to_dict
from .data import FAKE, REAL, load_folder
from .embedded import read_manifest
from .images import atomic_write_bytes, list_images
from .progress import bar as progress_bar

PARTS = ("background", "skin", "brows", "eyes", "nose", "mouth", "hair", "neck_clothes")
PART_ID = {name: i for i, name in enumerate(PARTS)}
# A colour per part for label-map figures (background white-ish, skin tan, ...).
PART_COLORS = np.array([(235, 235, 235), (224, 172, 135), (110, 70, 40), (40, 110, 220),
                        (230, 140, 30), (200, 30, 60), (60, 40, 20), (120, 170, 90)], np.uint8)
UPSCALE = 256  # side the detector sees, px
PARSER_VERSION = 1  # bump when the label-map recipe changes (invalidates caches)


def _indices(connections: Sequence[tuple[int, int]]) -> np.ndarray:
    return np.array(sorted({i for edge in connections for i in edge}), dtype=np.int64)


@dataclass(frozen=True)
class ParserConfig:
    """How label maps are made (part of every cache's fingerprint)."""

    upscale: int = UPSCALE  # side the detector sees, px (images are resized to upscale^2)
    min_confidence: float = 0.5  # face mesh's min_detection_confidence
    person_threshold: float = 0.5  # selfie-segmentation probability above which a pixel is person
    version: int = PARSER_VERSION


def mediapipe_module() -> Any:
    """``mediapipe`` (0.10.14, its legacy ``solutions``), imported when faces are first read."""
    try:
        import mediapipe as mp  # optional heavy package
    except ImportError as err:
        raise RuntimeError("reading faces needs mediapipe==0.10.14: pip install --no-deps "
                           "mediapipe==0.10.14 (make setup does)") from err
    return mp


MEDIAPIPE_LOG = "mediapipe.log"  # in results/logs/: MediaPipe's native log lines


_QUIET_LOCK = threading.Lock()
_quiet_depth = 0  # nested quiet_mediapipe blocks (one redirect for all of them)


def _python_stderr_on(fd: int) -> TextIO | None:
    """When Python's ``sys.stderr`` writes to descriptor 2 (a script, not a notebook kernel),
    a stream on ``fd`` (a copy of the real descriptor 2) to stand in for it, so that Python's
    own messages and progress bars stay where they were; else None."""
    try:
        if sys.stderr is None or sys.stderr.fileno() != 2:
            return None
    except (AttributeError, OSError, ValueError):  # a stream without a descriptor
        return None
    return os.fdopen(os.dup(fd), "w", buffering=1, encoding=sys.stderr.encoding,
                     errors="backslashreplace")


@contextlib.contextmanager
def quiet_mediapipe() -> Iterator[None]:
    """MediaPipe's native log lines (TensorFlow Lite's "Created ... XNNPACK delegate", absl's
    ``W0000 ... inference_feedback_manager`` warnings) are written to file descriptor 2, which
    a notebook kernel forwards into the cell's output: during the block they go to
    ``results/logs/mediapipe.log`` instead. Python's own ``sys.stderr`` keeps writing
    where it did. MediaPipe's graph threads log when *they* get to it, so a parser holds the
    block for its whole life (:class:`FaceParser`), not only around each call; blocks nest."""
    global _quiet_depth
    with _QUIET_LOCK:
        outer = _quiet_depth == 0
        _quiet_depth += 1
    if not outer:
        try:
            yield
        finally:
            with _QUIET_LOCK:
                _quiet_depth -= 1
        return
    log = paths.results_dir() / "logs" / MEDIAPIPE_LOG
    saved = stand_in = python_stderr = None
    try:
        sys.stderr.flush()
        log.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        saved = os.dup(2)
        stand_in = _python_stderr_on(saved)
        os.dup2(fd, 2)
        os.close(fd)
    except (OSError, ValueError):  # no writable results folder: the lines stay where they were
        pass
    if stand_in is not None:
        python_stderr, sys.stderr = sys.stderr, stand_in
    try:
        yield
    finally:
        if python_stderr is not None:
            sys.stderr = python_stderr
            stand_in.close()
        if saved is not None:
            os.dup2(saved, 2)
            os.close(saved)
        with _QUIET_LOCK:
            _quiet_depth -= 1


@contextlib.contextmanager
def graph_call() -> Iterator[None]:
    """Around each call of a MediaPipe graph: protobuf 4 warns on every call about an API
    MediaPipe 0.10.14 still uses (a filter for the call only, not for the parser's life)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="SymbolDatabase.GetPrototype")
        yield


def _close_graphs(graphs: tuple[Any, ...], stack: contextlib.ExitStack) -> None:
    try:
        for graph in graphs:
            graph.close()
    finally:
        stack.close()


def quiet_graphs(owner: object, make: Callable[[], tuple[Any, ...]]
                 ) -> tuple[tuple[Any, ...], weakref.finalize]:
    """MediaPipe graphs built by ``make()`` inside a :func:`quiet_mediapipe` block that lasts
    their whole life: ``(graphs, close)``, where ``close()`` (idempotent) closes the graphs,
    then ends the block. It also runs when ``owner`` is garbage-collected unclosed, so a parser
    that is never closed does not keep descriptor 2 on the log."""
    stack = contextlib.ExitStack()
    stack.enter_context(quiet_mediapipe())
    try:
        graphs = make()
    except BaseException:
        stack.close()
        raise
    return graphs, weakref.finalize(owner, _close_graphs, graphs, stack)


class FaceParser:
    """MediaPipe face mesh + selfie segmentation -> a label map of ``PARTS`` (see the module
    docstring). Use as a context manager or call :meth:`close`."""

    def __init__(self, cfg: ParserConfig | None = None) -> None:
        self.cfg = cfg or ParserConfig()
        mp = mediapipe_module()
        fm = mp.solutions.face_mesh
        # the native log lines go to the log for the parser's whole life (quiet_graphs)
        (self._mesh, self._selfie), self._close = quiet_graphs(self, lambda: (
            fm.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=False,
                        min_detection_confidence=self.cfg.min_confidence),
            mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0)))
        # Painting order: later groups cover earlier ones.
        self._groups = [("skin", [_indices(fm.FACEMESH_FACE_OVAL)]),
                        ("nose", [_indices(fm.FACEMESH_NOSE)]),
                        ("brows", [_indices(fm.FACEMESH_LEFT_EYEBROW),
                                   _indices(fm.FACEMESH_RIGHT_EYEBROW)]),
                        ("eyes", [_indices(fm.FACEMESH_LEFT_EYE),
                                  _indices(fm.FACEMESH_RIGHT_EYE)]),
                        ("mouth", [_indices(fm.FACEMESH_LIPS)])]
        self._oval = self._groups[0][1][0]
        self.version = mp.__version__

    def __enter__(self) -> FaceParser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._close()

    def landmarks(self, image: np.ndarray) -> np.ndarray | None:
        """468 x 2 landmark (x, y) positions in ``upscale`` px of the upscaled image, or
        ``None`` when no face is found. ``image``: H x W x 3 uint8."""
        up = self._upscaled(image)
        with graph_call():
            found = self._mesh.process(up).multi_face_landmarks
        if not found:
            return None
        u = self.cfg.upscale
        return np.array([(p.x * u, p.y * u) for p in found[0].landmark], dtype=np.float64)

    def _upscaled(self, image: np.ndarray) -> np.ndarray:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an H x W x 3 uint8 image, got {image.shape} "
                             f"{image.dtype}")
        u = self.cfg.upscale
        return np.ascontiguousarray(np.asarray(Image.fromarray(image).resize(
            (u, u), Image.Resampling.BICUBIC)))

    def parse(self, image: np.ndarray) -> np.ndarray | None:
        """The label map of one H x W x 3 uint8 image: H x W uint8 of ``PART_ID`` values, or
        ``None`` when no face is found."""
        from scipy.spatial import ConvexHull, QhullError

        pts = self.landmarks(image)
        if pts is None:
            return None
        u = self.cfg.upscale
        up = self._upscaled(image)
        with graph_call():
            mask = self._selfie.process(up).segmentation_mask
        person = mask > self.cfg.person_threshold
        canvas = Image.new("L", (u, u), PART_ID["background"])
        oval_img = Image.new("L", (u, u), 0)
        draw, draw_oval = ImageDraw.Draw(canvas), ImageDraw.Draw(oval_img)

        def hull(idx: np.ndarray) -> list[tuple[float, float]]:
            p = pts[idx]
            try:
                return [tuple(p[v]) for v in ConvexHull(p).vertices]
            except QhullError:  # degenerate (collinear) landmarks: no area to fill
                return []

        oval = hull(self._oval)
        if oval:
            draw_oval.polygon(oval, fill=1)
        inside_oval = np.asarray(oval_img, dtype=bool)
        chin = float(pts[self._oval, 1].max())
        rows = np.arange(u)[:, None] + 0.5
        labels = np.asarray(canvas).copy()
        outside = person & ~inside_oval
        labels[outside & (rows < chin)] = PART_ID["hair"]
        labels[outside & (rows >= chin)] = PART_ID["neck_clothes"]
        canvas = Image.fromarray(labels)
        draw = ImageDraw.Draw(canvas)
        for part, groups in self._groups:
            for idx in groups:
                poly = hull(idx)
                if poly:
                    draw.polygon(poly, fill=PART_ID[part])
        h, w = image.shape[:2]
        return np.asarray(canvas.resize((w, h), Image.Resampling.NEAREST), dtype=np.uint8)


def parse_images(images: np.ndarray, *, cfg: ParserConfig | None = None,
                 progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Label maps of N x H x W x 3 uint8 images: ``(labels, found)`` with labels N x H x W uint8
    (``PART_ID`` values; all 255 where no face was found) and found N bool."""

    labels = np.full(images.shape[:3], 255, np.uint8)
    found = np.zeros(len(images), bool)
    with FaceParser(cfg) as parser:
        for n, im in enumerate(progress_bar(images, desc="face parsing", disable=not progress)):
            lab = parser.parse(im)
            if lab is not None:
                labels[n], found[n] = lab, True
    return labels, found


def colorize(labels: np.ndarray) -> np.ndarray:
    """H x W label map -> H x W x 3 uint8 picture (``PART_COLORS``; no-face 255 -> black)."""
    out = np.zeros(labels.shape + (3,), np.uint8)
    known = labels < len(PARTS)
    out[known] = PART_COLORS[labels[known]]
    return out


def parse_set(world_root: str | os.PathLike, key: str, split: str = "test", *,
              cfg: ParserConfig | None = None, progress: bool = False,
              force: bool = False) -> tuple[np.ndarray, np.ndarray, list[Path]]:
    """Label maps of one world set's split, cached in ``<world>/parsing/<key>/<split>.npz``
    (rebuilt when the set's files, the parser config or the MediaPipe version change).
    Returns ``(labels N x H x W uint8, found N bool, files)`` in the set's file order."""

    cfg = cfg or ParserConfig()
    root = Path(world_root)
    entry = read_manifest(root)["sets"].get(key)
    if entry is not None:
        files_id: Any = entry["splits"][split]["files"]
    elif (root / key / split).is_dir():  # a data root without a manifest (own data)
        files_id = [(f.name, f.stat().st_size, f.stat().st_mtime_ns)
                    for f in list_images(root / key / split)]
    else:
        raise FileNotFoundError(f"{root}: no set {key!r} (no folder {root / key / split})")
    import mediapipe

    fp = fingerprint({"files": files_id, "parser": to_dict(cfg),
                      "mediapipe": mediapipe.__version__})
    cache = root / "parsing" / key / f"{split}.npz"
    images, files, _ = load_folder(root / key / split)
    if cache.exists() and not force:
        with np.load(cache) as z:
            if str(z["fingerprint"]) == fp:
                return z["labels"], z["found"], files
    labels, found = parse_images(images, cfg=cfg, progress=progress)
    buf = io.BytesIO()
    np.savez_compressed(buf, labels=labels, found=found, fingerprint=np.array(fp),
                        files=np.array([f.name for f in files]))
    atomic_write_bytes(cache, buf.getvalue())
    return labels, found, files


# --- which parts a patch covers (label maps -> counts; parts, viz) ---------------------------

def true_class_cell(logit_map: np.ndarray, label: int) -> tuple[int, int]:
    """``(i, j)`` of the cell with the highest probability of class ``label`` in an h x w
    logit-difference map (fake minus real): argmax of d for fakes, of -d for reals. Ties go to
    the first cell in row-major order."""
    if label not in (REAL, FAKE):
        raise ValueError(f"label must be 0 (real) or 1 (fake), got {label}")
    flat = logit_map.ravel() if label == FAKE else -logit_map.ravel()
    i, j = np.unravel_index(int(np.argmax(flat)), logit_map.shape)
    return int(i), int(j)


def part_ratios(label_map: np.ndarray, rows: slice, cols: slice,
                n_parts: int = len(PARTS)) -> np.ndarray:
    """Per part k: (pixels of k inside ``label_map[rows, cols]``) / (pixels of k in
    ``label_map``), -1 for parts absent from the image: ``n_parts`` floats. ``label_map``:
    H x W ints in [0, n_parts)."""
    whole = np.bincount(label_map.ravel(), minlength=n_parts)[:n_parts].astype(np.float64)
    inside = np.bincount(label_map[rows, cols].ravel(), minlength=n_parts)[:n_parts]
    if inside.sum() == 0:
        raise ValueError("the patch is empty")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(whole > 0, inside / whole, -1.0)


def best_parts(label_map: np.ndarray, rows: slice, cols: slice,
               n_parts: int = len(PARTS)) -> list[int]:
    """Every part k whose :func:`part_ratios` ties for the maximum (ascending ids). A large
    patch often holds several small parts whole (ratio 1.0 each: brows, eyes and nose in one
    block2 cell), so ties are common and must be shared, not given to one part."""
    ratio = part_ratios(label_map, rows, cols, n_parts)
    # Equal fractions computed from different counts can differ in the last bit.
    return np.flatnonzero(ratio >= ratio.max() * (1 - 1e-12)).tolist()


def part_shares(label_map: np.ndarray, rows: slice, cols: slice,
                n_parts: int = len(PARTS)) -> np.ndarray:
    """The patch's count split among its :func:`best_parts`: ``n_parts`` floats summing to 1,
    1/m on each of the m tied parts."""
    out = np.zeros(n_parts)
    best = best_parts(label_map, rows, cols, n_parts)
    out[best] = 1.0 / len(best)
    return out


def part_of_patch(label_map: np.ndarray, rows: slice, cols: slice,
                  n_parts: int = len(PARTS)) -> int:
    """One part maximising :func:`part_ratios`; on a tie the lowest id, which biases counts
    towards low ids (``brows`` before ``eyes`` and ``nose``): count with :func:`part_shares`,
    and use this only to name a patch for display."""
    return best_parts(label_map, rows, cols, n_parts)[0]


def share_matrix(frame: pd.DataFrame, which: str = "top") -> np.ndarray:
    """N x len(PARTS) fractional counts of a :func:`top_patches` frame's ``which`` patches
    (``"top"`` or ``"rand"``): each row sums to 1, split equally among tied parts (frames
    without ``<which>_parts`` count ``<which>_part`` whole)."""
    col = f"{which}_parts" if f"{which}_parts" in frame.columns else f"{which}_part"
    index = {p: i for i, p in enumerate(PARTS)}
    out = np.zeros((len(frame), len(PARTS)))
    for r, names in enumerate(frame[col].astype(str)):
        ids = [index[x] for x in names.split("+")]
        out[r, ids] = 1.0 / len(ids)
    return out


def part_counts(frame: pd.DataFrame) -> pd.DataFrame:
    """Fractional counts of top and random patches per part (rows in ``PARTS`` order, zeros
    kept; a patch whose best parts tie adds 1/m to each of its m parts), and ``top_tied`` /
    ``random_tied``: how many of those patches were tied (the same number on every row)."""
    out = pd.DataFrame({"top": share_matrix(frame, "top").sum(0),
                        "random": share_matrix(frame, "rand").sum(0)},
                       index=pd.Index(list(PARTS), name="part"))
    for which, col in (("top", "top_tied"), ("random", "rand_tied")):
        out[f"{which}_tied"] = int((frame[col] > 1).sum()) if col in frame.columns else 0
    return out
