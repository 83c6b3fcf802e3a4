"""The parity pipeline: every image, real or fake, is prepared the same way.

The paper's main preprocessing caveat (Sec. 3 of Chai et al.; also the project page): if reals
and fakes differ in resizing or file format, a classifier learns *that* instead of the
generator's artifacts. So there is exactly one way an image enters a dataset here:

    read (validated, EXIF-rotated, converted to 8-bit RGB) -> centre square crop
    -> PIL LANCZOS resize to ``size`` x ``size`` -> PNG without metadata

``prepare_array`` is the pixel part, ``encode_png`` the container part; ``import_folder`` runs
both over a user's folder. The audit in ``audit.py`` checks that two folders came out alike.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .images import (
    MAX_PIXELS,
    MIN_SIDE,
    ImageError,
    atomic_write_bytes,
    atomic_write_text,
    center_box,
    list_images,
    read_image,
    sha256_bytes,
    sha256_file,
)
from .jpeg import JpegHistory, apply_jpeg_history
from .progress import bar as progress_bar

PNG_COMPRESS_LEVEL = 6  # fixed so that the same pixels always give the same bytes


def center_square(arr: np.ndarray) -> np.ndarray:
    """Centre crop of an HxWxC array to min(H, W) on both sides (``images.center_box``)."""
    top, left, side = center_box(arr.shape)
    return arr[top : top + side, left : left + side]


def prepare_array(arr: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop to a square and LANCZOS-resize to ``size``.

    ``arr``: HxWx3 uint8 RGB in [0, 255]. Returns size x size x 3 uint8. An image already
    square and of the target size comes back unchanged (LANCZOS at scale 1 is the identity).
    """
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 array, got shape {arr.shape} {arr.dtype}")
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    sq = center_square(arr)
    if sq.shape[0] == size:
        return np.ascontiguousarray(sq)
    im = Image.fromarray(sq, mode="RGB").resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(im, dtype=np.uint8)


def resample_history(arr: np.ndarray, history: str = "native") -> np.ndarray:
    """Give a generated image the resampling history of a photo before ``prepare_array``.

    ``arr``: HxWx3 uint8. ``"native"``: unchanged. ``"updown"``: upsampled 2x with PIL
    BICUBIC, so that ``prepare_array``'s LANCZOS step then *downsamples* it like it downsamples
    the reals (an anti-aliasing low-pass over the generator's top octave; see
    ``config.WorldConfig.fake_resample``). Returns HxWx3 (native) or 2Hx2Wx3 (updown) uint8.
    """
    if history == "native":
        return arr
    if history != "updown":
        raise ValueError(f"unknown resampling history {history!r}; choose 'native' or 'updown'")
    h, w = arr.shape[:2]
    im = Image.fromarray(arr, mode="RGB").resize((2 * w, 2 * h), Image.Resampling.BICUBIC)
    return np.asarray(im, dtype=np.uint8)


def prepare_generated(arr: np.ndarray, size: int, history: str = "native",
                      jpeg: JpegHistory | None = None) -> np.ndarray:
    """The pixels a generated or manipulated image is stored with (size x size x 3 uint8).

    With ``jpeg`` (the reals' JPEG history, ``jpeg.JpegHistory``), the image gets the reals'
    whole history, rendered at their native frame, JPEG round trip, then ``prepare_array``;
    the resampling ``history`` is then moot (the native frame is the resampling). Without it,
    ``prepare_array`` after :func:`resample_history`."""
    if jpeg is not None:
        return prepare_array(apply_jpeg_history(arr, jpeg), size)
    return prepare_array(resample_history(arr, history), size)


def encode_png(arr: np.ndarray) -> bytes:
    """PNG bytes of an HxWx3 uint8 array: 8-bit RGB, no text/EXIF/ICC/gamma chunks."""
    buf = io.BytesIO()
    Image.fromarray(arr, mode="RGB").save(
        buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL, optimize=False
    )
    return buf.getvalue()


def write_prepared(arr: np.ndarray, dst: str | os.PathLike, size: int, *,
                   history: str = "native", jpeg: JpegHistory | None = None) -> str:
    """Prepare ``arr`` (HxWx3 uint8; generated images with resampling ``history`` or the
    reals' ``jpeg`` history, see :func:`prepare_generated`) and write it atomically as PNG;
    returns its SHA-256."""
    data = encode_png(prepare_generated(arr, size, history, jpeg))
    atomic_write_bytes(dst, data)
    return sha256_bytes(data)


@dataclass
class ImportReport:
    """What ``import_folder`` did: files written, skipped (with the reason), and notes."""

    src: str
    dst: str
    size: int
    written: int = 0
    reused: int = 0
    skipped: dict[str, str] = field(default_factory=dict)  # source path -> problem
    notes: dict[str, list[str]] = field(default_factory=dict)  # source path -> conversions

    def summary(self) -> str:
        lines = [
            f"import {self.src} -> {self.dst} at {self.size}px: {self.written} written, "
            f"{self.reused} already done, {len(self.skipped)} skipped, "
            f"{len(self.notes)} converted"
        ]
        lines += [f"  skipped {p}: {why}" for p, why in self.skipped.items()]
        return "\n".join(lines)


MANIFEST = "import_manifest.json"


def import_folder(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    size: int,
    *,
    on_error: str = "skip",
    max_pixels: int = MAX_PIXELS,
    min_side: int = MIN_SIDE,
    progress: bool = True,
    recursive: bool = True,
) -> ImportReport:
    """Put every image under ``src`` (and its subfolders unless not ``recursive``) through the
    parity pipeline into ``dst``.

    The folder structure is kept (``src/a/b.jpg`` -> ``dst/a/b.png``), so ``train/val/test`` or
    ``0_real/1_fake`` layouts survive. ``on_error="skip"`` reports bad files and goes on;
    ``"fail"`` raises :class:`ImageError` at the first one. ``src`` is only read. A rerun skips
    outputs whose source is unchanged; ``dst`` holding another import (other size or source) is
    refused rather than mixed.
    """
    if on_error not in ("skip", "fail"):
        raise ValueError(f"on_error must be 'skip' or 'fail', got {on_error!r}")
    src, dst = Path(src).resolve(), Path(dst).resolve()
    if src == dst or src in dst.parents:
        raise ValueError(f"{dst}: output folder must not be inside the source folder {src}")
    if dst in src.parents:
        raise ValueError(f"{dst}: output folder must not contain the source folder {src}")
    files = list_images(src, recursive=recursive)
    if not files:
        raise ValueError(f"{src}: holds no image files" + (" (searched recursively)"
                                                           if recursive else ""))
    manifest_path = dst / MANIFEST
    previous = _previous_import(src, dst, size)
    report = ImportReport(src=str(src), dst=str(dst), size=size)
    done: dict[str, dict] = previous.get("files", {})
    claimed: dict[Path, Path] = {}
    for path in progress_bar(files, desc=f"import {src.name}", disable=not progress, unit="img"):
        rel = path.relative_to(src)
        out = dst / rel.with_suffix(".png")
        if out in claimed:
            problem = f"would write the same output {out.name} as {claimed[out]}; rename one"
            if on_error == "fail":
                raise ImageError(path, problem)
            report.skipped[str(path)] = problem
            continue
        claimed[out] = path
        _import_one(path, rel, dst, size, done, report, fail=on_error == "fail",
                    max_pixels=max_pixels, min_side=min_side)
    record = {"src": str(src), "size": size, "pipeline": PIPELINE, "files": done,
              "skipped": report.skipped}
    atomic_write_text(manifest_path, json.dumps(record, indent=1))
    return report


def _import_one(path: Path, rel: Path, dst: Path, size: int, done: dict[str, dict],
                report: ImportReport, *, fail: bool, max_pixels: int, min_side: int) -> None:
    """Import one file to ``dst / rel`` (as PNG), or reuse its output when the source is
    unchanged; ``done`` (the manifest's files) and ``report`` are updated."""
    out, key = dst / rel.with_suffix(".png"), rel.as_posix()
    src_hash = sha256_file(path)
    old = done.get(key)
    if old and old["source_sha256"] == src_hash and out.exists():
        if sha256_file(out) == old["sha256"]:
            report.reused += 1
            return
    try:
        arr, notes = read_image(path, max_pixels=max_pixels, min_side=min_side)
    except ImageError as err:
        if fail:
            raise
        report.skipped[str(path)] = err.problem
        done.pop(key, None)
        return
    if notes:
        report.notes[str(path)] = notes
    digest = write_prepared(arr, out, size)
    done[key] = {"output": out.relative_to(dst).as_posix(), "sha256": digest,
                 "source_sha256": src_hash, "notes": notes}
    report.written += 1


def _previous_import(src: Path, dst: Path, size: int) -> dict[str, Any]:
    """The manifest of an earlier import of ``src`` at ``size`` into ``dst`` ({} for a new or
    empty ``dst``); ``ValueError`` naming the folder when ``dst`` holds another import or other
    files."""
    manifest_path = dst / MANIFEST
    if manifest_path.exists():
        previous = json.loads(manifest_path.read_text())
        if previous.get("size") != size or previous.get("src") != str(src):
            raise ValueError(
                f"{dst}: already holds an import of {previous.get('src')} at "
                f"{previous.get('size')}px; choose another output folder"
            )
        return previous
    if dst.exists() and any(dst.iterdir()):
        raise ValueError(f"{dst}: exists and is not empty; choose a new output folder")
    return {}


# A description of the pipeline, recorded in every manifest so outputs say how they were made.
PIPELINE = {
    "read": "PIL, EXIF orientation applied, 16-bit scaled to 8-bit, RGB",
    "crop": "centre square",
    "resize": "PIL LANCZOS",
    "generated": "fake_resample 'updown': PIL BICUBIC 2x up before the resize; 'native': none",
    "jpeg": "fake_history 'reals' (sets whose reals are JPEGs): BICUBIC up to the reals' native "
            "frame (reflect-padded), JPEG with their tables and subsampling, decode, then the "
            "crop and resize; 'none': no JPEG",
    "format": f"PNG 8-bit RGB, no metadata, compress_level={PNG_COMPRESS_LEVEL}",
}


def report_dict(report: ImportReport) -> dict:
    return asdict(report)
