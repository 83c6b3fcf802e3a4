"""The reals' JPEG history: read it from their files, and give it to generated images.

Chai et al. (Sec. 3) prepare reals and fakes identically so that a classifier cannot learn the
preprocessing; the project extends that to the *whole* history. The embedded
CelebA reals are decoded JPEGs (178 x 218 px, one quality and chroma subsampling for all), so
every fake of CelebA is rendered at that native frame, JPEG-encoded with the reals' own
quantisation tables and subsampling, decoded, and only then put through the reals' crop and
LANCZOS step (``preprocess.prepare_generated``). Everything here reads headers or encodes in
memory; nothing is written.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, JpegImagePlugin

from .images import center_box

# Standard IJG luminance table (quality 50), for estimating a JPEG's quality setting.
_IJG_LUMA = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69,
    56, 14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81,
    104, 113, 92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99],
    dtype=np.float64)
SUBSAMPLING = {0: "4:4:4", 1: "4:2:2", 2: "4:2:0"}  # PIL's codes (JpegImagePlugin.get_sampling)
UPSAMPLE = Image.Resampling.BICUBIC  # generated -> native frame; see render_native


def jpeg_quality(quantization: dict[int, Any]) -> int:
    """Estimate the IJG quality (1..100) that produced a JPEG's luminance table."""
    table = np.asarray(quantization[0], dtype=np.float64)[:64]
    scale = float(np.mean(table / _IJG_LUMA) * 100)
    quality = (200 - scale) / 2 if scale <= 100 else 5000 / scale
    return int(np.clip(round(quality), 1, 100))


@dataclass(frozen=True)
class JpegHistory:
    """One JPEG encoding of a real dataset's source files, as read from their headers."""

    height: int  # native frame of the source photos, px (CelebA aligned crops: 218)
    width: int  # (CelebA: 178)
    quality: int  # estimated IJG quality of the luminance table (CelebA: 75)
    subsampling: int  # PIL code: 0 = 4:4:4, 1 = 4:2:2, 2 = 4:2:0
    tables: tuple[tuple[int, ...], ...]  # the quantisation tables themselves (natural order)
    files: int  # source files read
    agree: float  # share of them with exactly this frame, tables and subsampling (0..1]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with the subsampling also spelled out (``"4:2:0"``)."""
        return {"height": self.height, "width": self.width, "quality": self.quality,
                "subsampling": self.subsampling,
                "subsampling_name": SUBSAMPLING.get(self.subsampling, "?"),
                "tables": [list(t) for t in self.tables], "files": self.files,
                "agree": self.agree}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JpegHistory:
        return cls(int(data["height"]), int(data["width"]), int(data["quality"]),
                   int(data["subsampling"]), tuple(tuple(int(v) for v in t)
                                                   for t in data["tables"]),
                   int(data["files"]), float(data["agree"]))


def estimate_jpeg_history(blobs: Iterable[bytes]) -> JpegHistory | None:
    """The most common (frame, tables, subsampling) among JPEG files given as bytes.

    Only headers are parsed (no pixel decode). Returns ``None`` when none of them is a JPEG
    (e.g. Olivetti's raw arrays): such reals have no JPEG history to copy. ``agree`` < 1 says
    the files were not all encoded alike; the commonest encoding is the estimate.
    """
    seen: Counter[tuple[Any, ...]] = Counter()
    files = 0
    for blob in blobs:
        with Image.open(io.BytesIO(blob)) as im:
            if im.format != "JPEG":
                continue
            tables = tuple(tuple(int(v) for v in im.quantization[k])
                           for k in sorted(im.quantization))
            seen[(im.height, im.width, tables, JpegImagePlugin.get_sampling(im))] += 1
            files += 1
    if not files:
        return None
    (h, w, tables, sub), n = seen.most_common(1)[0]
    return JpegHistory(h, w, jpeg_quality(dict(enumerate(tables))), int(sub), tables, files,
                       round(n / files, 4))


def ijg_history(quality: int = 75, subsampling: int = 2, height: int = 218,
                width: int = 178) -> JpegHistory:
    """The history of a libjpeg encoder at an IJG ``quality`` (its standard tables scaled, as
    PIL writes them), for images with no source files to read it from. The defaults are the
    embedded CelebA reals' (q75, 4:2:0, 178 x 218: PIL's q75 tables equal theirs exactly).
    ``files`` is 0: nothing was read."""
    buf = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buf, format="JPEG", quality=quality, subsampling=subsampling)
    with Image.open(buf) as im:
        tables = tuple(tuple(int(v) for v in im.quantization[k]) for k in sorted(im.quantization))
    return JpegHistory(height, width, quality, subsampling, tables, 0, 1.0)


def render_native(arr: np.ndarray, height: int, width: int) -> np.ndarray:
    """Put an image into the reals' native frame so the reals' crop gives it back whole.

    ``arr``: HxWx3 uint8. An image already ``height x width`` (a manipulated photo) is
    returned as it is. A square generated image is upsampled (PIL BICUBIC, as the resampling
    history ``updown``: a smooth interpolant without LANCZOS's overshoot, and the same choice
    the resampling ablation measured) to the side of ``preprocess.center_square``'s crop,
    min(height, width), and reflect-padded to the frame with the crop's own offsets: the
    JPEG blocks then sit on it exactly where they sit on a real's crop (CelebA: 20 rows
    above, so row 0 of the crop is row 4 of a block). Returns height x width x 3 uint8.
    """
    if arr.shape[:2] == (height, width):
        return arr
    if arr.ndim != 3 or arr.shape[0] != arr.shape[1]:
        raise ValueError(f"expected a square HxWx3 image or one of {height}x{width}, "
                         f"got shape {arr.shape}")
    top, left, side = center_box((height, width))
    up = np.asarray(Image.fromarray(arr, mode="RGB").resize((side, side), UPSAMPLE))
    pad = ((top, height - side - top), (left, width - side - left), (0, 0))
    return np.pad(up, pad, mode="reflect")


def jpeg_round_trip(arr: np.ndarray, history: JpegHistory) -> np.ndarray:
    """Encode HxWx3 uint8 with the reals' quantisation tables and chroma subsampling, and
    decode it again (PIL/libjpeg, baseline, no metadata). Returns HxWx3 uint8."""
    buf = io.BytesIO()
    Image.fromarray(arr, mode="RGB").save(buf, format="JPEG", qtables=[list(t) for t in
                                                                      history.tables],
                                          subsampling=history.subsampling)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


def apply_jpeg_history(arr: np.ndarray, history: JpegHistory) -> np.ndarray:
    """:func:`render_native` then :func:`jpeg_round_trip`: a generated (square) or
    manipulated (native-frame) image with the reals' history up to their decode.
    Returns history.height x history.width x 3 uint8, ready for ``prepare_array``."""
    return jpeg_round_trip(render_native(arr, history.height, history.width), history)


# --- detecting the block grid ------------------------------------------------------------------

GRID_FRAME = (218, 178)  # native frame (H, W) whose centre crop the audited images are (CelebA)
# Below this side the 8 px blocks' 22.25 cycles per image alias away and the 16 px chroma blocks'
# 11.125 alone do not measure the history: on the 32 px smoke world, reals and fakes of the SAME
# history gave AUC 0.80 (the smoke generators' blur lowers the block edges' contrast).
GRID_MIN_SIDE = 48
# JFIF RGB -> (Cb, Cr) without offsets. Chroma, not luma: at 64 px the luma grid of the issue-23
# pair is not measurable (AUC ~0.5) while 4:2:0 chroma's is (benchmarks/jpeg_grid_probe.py).
_CHROMA = np.array([[-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])


def block_grid_score(arr: np.ndarray, frame: tuple[int, int] = GRID_FRAME) -> float:
    """Amplitude of a JPEG block grid at the reals' fixed phase in one prepared image.

    ``arr``: S x S x 3 uint8, the centre square of a ``frame`` (H, W) photo resized to S px (as
    ``preprocess.prepare_array`` makes it). JPEG blocks of that photo (8 px luma, 16 px 4:2:0
    chroma) raise the |second difference| of the chroma at their edges; their positions in the
    crop are fixed by the frame (CelebA: 20 rows off the top, so row 0 is row 4 of a block), so
    the edge profile along each axis is projected on cosines at min(H, W) / 16 and / 8 cycles
    per image, with the phase that peaks on the block edges (frequencies at or above S / 2
    are skipped: aliased). Returns the summed amplitude in grey levels of |second difference|;
    content and resampling give it a baseline (64 px faces without JPEG: median ~0.7), so it
    is meant for comparing two sets (``audit``), not for thresholding one image. NaN when
    S < ``GRID_MIN_SIDE``, the image is not square, or it is grey (no chroma to carry the grid).
    """
    s = arr.shape[0]
    if arr.ndim != 3 or arr.shape[1] != s or s < GRID_MIN_SIDE:
        return float("nan")
    top, left, native = center_box(frame)
    offsets = (left, top)  # of the crop in the frame
    chroma = arr.astype(np.float64) @ _CHROMA.T  # S x S x 2
    if np.abs(chroma).max() < 0.5:  # R = G = B: a grey image has no chroma blocks to measure
        return float("nan")
    x = np.arange(s - 2) + 1.0  # a second difference is centred on the middle pixel
    window = np.hanning(s - 2)
    total = 0.0
    for axis, offset in ((1, offsets[0]), (0, offsets[1])):
        profile = np.abs(np.diff(chroma, n=2, axis=axis)).mean(axis=(1 - axis, 2))
        profile -= profile.mean()
        for period in (16, 8):
            cycles = native / period
            if cycles >= s / 2:
                continue
            edge = ((-offset) % period) * s / native - 0.5  # first block edge, in S-px coordinates
            basis = window * np.cos(2 * np.pi * cycles * (x - edge) / s)
            total += 2 * float(profile @ basis) / window.sum()
    return total
