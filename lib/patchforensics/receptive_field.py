"""Exact receptive fields of a patch classifier's output cells (Chai et al. 2020, Sec. 3.2, 4).

Every cell (i, j) of a patch model's N x 2 x h x w logit map judges one patch of the input;
the top-patch analysis and the heatmaps need that patch exactly, border cells included (zero
padding makes them see less than the nominal field). Nothing here is hard-coded: the fields are
*measured* by gradients, as the original code did (``utils/rfutil.py``), on a probe copy of the
network in float64 whose convolutions have positive weights, whose BatchNorms are identities and
whose max-pools are average pools with the same window. Then every input pixel that can affect a
cell has a non-zero gradient and no cancellation can hide one: the support of the gradient of
output row i is exactly the rows that cell row sees.

Convolutions and pools act on rows and columns independently, so a cell's field is the product of
its row range and its column range; row ranges are measured on a tall, thin input and column
ranges on a short, wide one, which keeps the probe cheap. Results are cached per model
configuration and input size.

Terms: ``size`` and ``stride`` are the nominal field side and the step between neighbouring
cells, measured on interior cells (on a larger probe input when the real input is smaller than the
field), in the network's own pixel grid (``load_size`` px when the model upsamples; ``scale``
converts). ``rows[i]``/``cols[j]`` are the half-open input pixel ranges cell (i, j) sees, in the
caller's input pixels, clipped to the image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from . import paths
from .images import atomic_write_text, center_box
from .models import ModelConfig, PatchClassifier, build_model, count_parameters
from .progress import beat

THIN = 32  # side of the probe's unused dimension; every backbone still yields an output there


@dataclass(frozen=True)
class ReceptiveField:
    """The receptive field of every output cell for one input size (see the module docstring)."""

    input_size: tuple[int, int]  # (H, W) of the input it was measured for, px
    output_size: tuple[int, int]  # (h, w) of the logit map
    size: int  # nominal field side, in network px (an interior cell's; = H for global models)
    stride: int  # step between neighbouring cells' fields, network px (0 for global models)
    scale: float  # input px per network px (H / load_size when the model upsamples, else 1)
    rows: tuple[tuple[int, int], ...]  # per output row i: [start, stop) input rows it sees
    cols: tuple[tuple[int, int], ...]  # per output column j: [start, stop) input columns

    def slices(self, i: int, j: int) -> tuple[slice, slice]:
        """``(rows, cols)`` slices of the input that cell (i, j) sees: ``image[..., r, c]``."""
        return slice(*self.rows[i]), slice(*self.cols[j])

    def box(self, i: int, j: int) -> tuple[int, int, int, int]:
        """``(top, left, bottom, right)`` of cell (i, j)'s field, half-open, in input px."""
        return self.rows[i][0], self.cols[j][0], self.rows[i][1], self.cols[j][1]

    def boxes(self) -> np.ndarray:
        """h x w x 4 int64 array of :meth:`box` for every cell."""
        r = np.asarray(self.rows, dtype=np.int64)
        c = np.asarray(self.cols, dtype=np.int64)
        h, w = len(r), len(c)
        return np.stack([np.repeat(r[:, None, 0], w, 1), np.repeat(c[None, :, 0], h, 0),
                         np.repeat(r[:, None, 1], w, 1), np.repeat(c[None, :, 1], h, 0)], -1)

    def mask(self, i: int, j: int) -> np.ndarray:
        """H x W bool array, True on the pixels cell (i, j) sees."""
        out = np.zeros(self.input_size, dtype=bool)
        out[self.slices(i, j)] = True
        return out


def _probe(cfg: ModelConfig) -> nn.Module:
    """A float64 copy of the network in which gradients reach every pixel of each field."""
    model = PatchClassifier(cfg).double().eval()
    for name, m in list(model.named_modules()):
        if isinstance(m, nn.Conv2d):
            with torch.no_grad():
                m.weight.fill_(1.0 / m.weight[0].numel())
                if m.bias is not None:
                    m.bias.zero_()
        elif isinstance(m, nn.BatchNorm2d):
            m.reset_parameters()
            m.reset_running_stats()
        elif isinstance(m, nn.MaxPool2d):
            # A max-pool passes gradient to one pixel per window; an average pool over the same
            # window (same padding) has the same support and passes it to all.
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, nn.AvgPool2d(m.kernel_size, m.stride, m.padding,
                                                ceil_mode=m.ceil_mode))
    return model


def _ranges(probe: nn.Module, length: int, axis: int, cells: list[int] | None = None,
            chunk: int = 16) -> tuple[list[tuple[int, int]], int]:
    """For output rows (axis 0) or columns (axis 1) ``cells`` (default: all) of an input
    ``length`` long on that axis: the [start, stop) input range each sees, and the number of
    output cells on the axis."""
    shape = [THIN, THIN]
    shape[axis] = length
    x0 = torch.ones(1, 3, *shape, dtype=torch.float64)
    with torch.no_grad():
        n_out = probe(x0).shape[2 + axis]
    cells = list(range(n_out)) if cells is None else cells
    out: list[tuple[int, int]] = []
    for at in range(0, len(cells), chunk):
        part = cells[at: at + chunk]
        x = x0.expand(len(part), -1, -1, -1).clone().requires_grad_(True)
        y = probe(x)
        pick = torch.zeros_like(y)
        for b, k in enumerate(part):
            if axis == 0:
                pick[b, :, k, :] = 1
            else:
                pick[b, :, :, k] = 1
        (grad,) = torch.autograd.grad(y, x, pick)
        support = grad.abs().sum(dim=(1, 3 - axis)) > 0  # B x length
        for b, k in enumerate(part):
            idx = torch.nonzero(support[b]).flatten()
            if len(idx) == 0:
                raise RuntimeError(f"output cell {k} on axis {axis} sees no input pixel")
            start, stop = int(idx[0]), int(idx[-1]) + 1
            if len(idx) != stop - start:
                raise RuntimeError(f"output cell {k} on axis {axis} sees a non-contiguous range")
            out.append((start, stop))
    return out, n_out


@lru_cache(maxsize=64)
def _nominal(cfg: ModelConfig, axis: int) -> tuple[int, int]:
    """Nominal (size, stride) of the network without upsampling, from interior cells of a
    probe input grown until it has some."""
    probe = _probe(replace(cfg, load_size=0))
    length = 64
    while length <= 8192:
        shape = [THIN, THIN]
        shape[axis] = length
        with torch.no_grad():
            n_out = probe(torch.ones(1, 3, *shape, dtype=torch.float64)).shape[2 + axis]
        mid = n_out // 2
        if n_out >= 5:
            (a0, a1), (b0, b1), (c0, c1) = _ranges(probe, length, axis, [mid - 1, mid, mid + 1])[0]
            # Clipping (by the border or an edge the net never reads) shortens a field, so three
            # equal neighbours that touch neither end are unclipped.
            if a0 > 0 and c1 < length and a1 - a0 == b1 - b0 == c1 - c0 and b0 - a0 == c0 - b0:
                return b1 - b0, b0 - a0
        length *= 2
    raise RuntimeError(f"{cfg.name}: receptive field larger than 8192 px")


@lru_cache(maxsize=256)
def measure_field(cfg: ModelConfig, height: int, width: int) -> ReceptiveField:
    """Measure the field of every output cell of ``cfg``'s network for ``height`` x ``width``
    inputs, by gradients (no cache: :func:`receptive_field` keeps what it measured)."""
    probe = _probe(cfg)
    rows, h = _ranges(probe, height, 0)
    cols, w = _ranges(probe, width, 1)
    scale = height / cfg.load_size if cfg.load_size else 1.0
    if cfg.depth == "full":
        size, stride = (cfg.load_size or height), 0
    else:
        size, stride = _nominal(cfg, 0)
        if _nominal(cfg, 1) != (size, stride):
            raise RuntimeError(f"{cfg.name}: fields are not square")
    return ReceptiveField((height, width), (h, w), size, stride, scale, tuple(rows), tuple(cols))


def receptive_field(model: PatchClassifier | ModelConfig,
                    input_size: int | tuple[int, int]) -> ReceptiveField:
    """The measured receptive field of every output cell of ``model`` for inputs of
    ``input_size`` (side, or ``(H, W)``) px. Weights do not matter, only the architecture, so a
    ``ModelConfig`` does as well as a model; results are cached per (config, size)."""
    cfg = model.config if isinstance(model, PatchClassifier) else model
    if not isinstance(cfg, ModelConfig):
        raise TypeError(f"expected a PatchClassifier or ModelConfig, got {type(model).__name__}")
    height, width = (input_size, input_size) if isinstance(input_size, int) else input_size
    # init_gain does not change the architecture: one cache entry for all gains. A model that
    # resizes like the original code (PIL LANCZOS on 8-bit images, no gradient) is measured
    # through bicubic: the same upsampling, with a kernel 2 instead of 3 source px wide on each
    # side, so its fields are at most 1 input px narrower on each side than LANCZOS's.
    return _cached(replace(cfg, init_gain=0.0, resize_filter="bicubic", centre_crop=0),
                   int(height), int(width))


PACKAGED = Path(__file__).with_name("receptive_fields.json")


@lru_cache(maxsize=1)
def packaged_fields() -> dict[str, dict]:
    """The fields of the profiles in ``protocol.PROFILES`` (default, quick, full, smoke) and of
    the original code's xception_block2 at its 128 -> 299 px (``tests/test_original.py``),
    measured once and shipped with the package (``tests/test_receptive_field.py`` re-measures
    them), so a first run does not spend a minute measuring them."""
    import json

    return json.loads(PACKAGED.read_text())


def field_from_dict(d: dict) -> ReceptiveField:
    """A :class:`ReceptiveField` from its JSON form (the packaged and cached fields)."""
    return ReceptiveField(tuple(d["input_size"]), tuple(d["output_size"]), d["size"],
                          d["stride"], d["scale"], tuple(map(tuple, d["rows"])),
                          tuple(map(tuple, d["cols"])))


@lru_cache(maxsize=256)
def _cached(cfg: ModelConfig, height: int, width: int) -> ReceptiveField:
    """:func:`measure_field` behind a JSON cache in ``checkpoints/receptive_fields/``: measuring an
    upsampling model's fields takes minutes on a CPU (a float64 probe at the load size), and
    they depend only on the architecture, the load size and the input size."""
    import json


    key = f"{cfg.arch}_{cfg.depth}_load{cfg.load_size}_{height}x{width}"
    path = paths.checkpoints_dir() / "receptive_fields" / f"{key}.json"
    for read in (lambda: packaged_fields()[key], lambda: json.loads(path.read_text())):
        try:
            return field_from_dict(read())
        except (OSError, ValueError, KeyError, TypeError):
            pass  # not measured yet (or an unreadable file): measure again

    beat(f"receptive field of {cfg.name} at {height} px"
         + (f" (load size {cfg.load_size})" if cfg.load_size else ""))
    rf = measure_field(cfg, height, width)
    atomic_write_text(path, json.dumps({
        "input_size": rf.input_size, "output_size": rf.output_size, "size": rf.size,
        "stride": rf.stride, "scale": rf.scale, "rows": rf.rows, "cols": rf.cols}))
    return rf


def extract_patch(image: np.ndarray, rf: ReceptiveField, i: int, j: int,
                  pad_value: int | float = 0) -> np.ndarray:
    """The patch cell (i, j) sees, from an H x W x C image (any dtype), padded with
    ``pad_value`` to the full nominal field (in input px) where the field is clipped at the
    border, so patches of one model all share a size. Padding goes on the side that was cut."""
    if image.shape[:2] != rf.input_size:
        raise ValueError(f"image is {image.shape[1]}x{image.shape[0]} but the field was "
                         f"measured for {rf.input_size[1]}x{rf.input_size[0]}")
    r0, c0, r1, c1 = rf.box(i, j)
    full = max(int(round(rf.size * rf.scale)), r1 - r0, c1 - c0)
    patch = image[r0:r1, c0:c1]
    out = np.full((full, full) + image.shape[2:], pad_value, dtype=image.dtype)
    # A field cut at the top/left border is missing its first rows/columns: align to the end.
    top = full - (r1 - r0) if r0 == 0 and r1 < rf.input_size[0] else 0
    left = full - (c1 - c0) if c0 == 0 and c1 < rf.input_size[1] else 0
    out[top: top + (r1 - r0), left: left + (c1 - c0)] = patch
    return out


def model_table(models: Sequence[tuple[str, str]], input_size: int) -> pd.DataFrame:
    """One row per ``(arch, depth)``: receptive field and stride (px), logit map size and
    parameter count of the model at ``input_size`` px, and whether a field fits in the image
    (if not, every cell sees most of the image and the "patch" model is nearly global)."""

    rows = []
    for arch, depth in models:
        cfg = ModelConfig(arch=arch, depth=depth)
        rf = receptive_field(cfg, input_size)
        rows.append({"model": cfg.name, "rf_px": rf.size, "stride_px": rf.stride,
                     "map": f"{rf.output_size[0]}x{rf.output_size[1]}",
                     "fits": depth != "full" and rf.size <= input_size,
                     "params_M": round(count_parameters(build_model(cfg)) / 1e6, 3)})
    return pd.DataFrame(rows).set_index("model")


def field_fraction(model: PatchClassifier | ModelConfig, input_size: int) -> float:
    """Receptive-field side over the network's input side (``load_size`` when the model
    upsamples, else the image side), at most 1: the share of the face side one patch sees."""
    cfg = model.config if isinstance(model, PatchClassifier) else model
    rf = receptive_field(cfg, input_size)
    return float(min(rf.size / (cfg.load_size or input_size), 1.0))


# The paper's Xception fields at its 299 px input (block1..block5; the full model sees all).
PAPER_FIELD_PX = {"block1": 19, "block2": 43, "block3": 91, "block4": 187, "block5": 283}
PAPER_INPUT_PX = 299


def paper_field_fraction(depth: str) -> float:
    """The paper's field side over its 299 px input for an Xception depth (``"full"``: 1.0)."""
    return 1.0 if depth == "full" else PAPER_FIELD_PX[depth] / PAPER_INPUT_PX


def project_map(cells: np.ndarray, rf) -> np.ndarray:
    """Bring an h x w map of per-cell values (e.g. fake probabilities) to the image's H x W
    pixels with the classifier's receptive-field geometry: each pixel gets the mean of the cells
    whose field covers it (``rf``: a ``receptive_field.ReceptiveField``). Unlike stretching the
    map, a value lands exactly on the pixels its cell judged, border cells included. Pixels no
    cell sees (e.g. the last column when a strided convolution without padding skips it) are
    NaN."""
    if cells.shape != rf.output_size:
        raise ValueError(f"map is {cells.shape} but the model's output is {rf.output_size}")
    total = np.zeros(rf.input_size, np.float64)
    count = np.zeros(rf.input_size, np.float64)
    for i, (r0, r1) in enumerate(rf.rows):
        for j, (c0, c1) in enumerate(rf.cols):
            total[r0:r1, c0:c1] += cells[i, j]
            count[r0:r1, c0:c1] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan)


def box_to_original(box: tuple[int, int, int, int], shape: tuple[int, ...],
                    size: int) -> tuple[int, int, int, int]:
    """A ``(top, left, bottom, right)`` half-open box in the prepared ``size`` x ``size`` image
    -> the same box in the pixels of the original image of ``shape`` (H, W[, C]) it was
    prepared from (centre square, resized): the smallest pixel box that covers it."""
    top, left, side = center_box(shape)
    k = side / size  # original px per prepared px
    r0, c0, r1, c1 = box
    return (top + int(np.floor(r0 * k)), left + int(np.floor(c0 * k)),
            top + int(np.ceil(r1 * k)), left + int(np.ceil(c1 * k)))


def map_to_original(heat: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A per-pixel map of the prepared image (``size`` x ``size``, e.g. :func:`project_map`'s
    output, NaN allowed) -> H x W float64 over the original image of ``shape`` (H, W[, C]).

    The pipeline crops the centre square and resizes it to ``size``; each original pixel of
    that square takes the value of the prepared pixel under its centre. Pixels outside the
    square (the classifier never saw them) are NaN, so overlays leave them unpainted."""
    size = heat.shape[0]
    if heat.ndim != 2 or heat.shape[1] != size:
        raise ValueError(f"expected a square map of the prepared image, got {heat.shape}")
    top, left, side = center_box(shape)
    idx = np.minimum(((np.arange(side) + 0.5) * size / side).astype(np.int64), size - 1)
    out = np.full(shape[:2], np.nan)
    out[top:top + side, left:left + side] = heat[np.ix_(idx, idx)]
    return out
