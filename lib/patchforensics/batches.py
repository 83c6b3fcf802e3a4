"""A training run's data: its splits (in memory or streamed), the epoch order, augmentation,
real-inversion pairs, training windows, and the batches of one step.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageFilter
from torch.utils.data import DistributedSampler

from .config import fingerprint
from .data import ImageFiles, decoded_bytes, load_folder, run_jobs, stream_threshold
from .images import list_images, sha256_files
from .models import PatchClassifier
from .train_config import FIT_SPLITS, TrainConfig


def split_fingerprint(files: Sequence[Path]) -> str:
    """SHA-256 over the sorted SHA-256s of ``files``: names and order do not matter, bytes do.
    File hashes come from the on-disk cache (``images.sha256_files``): a restart reads no
    unchanged file."""
    digests = sorted(sha256_files(files))
    return fingerprint(digests) if digests else ""


def load_split(folder: str | os.PathLike, split: str, limit: int = 0, *,
               stream: bool = False) -> tuple[torch.Tensor | ImageFiles, list[Path]]:
    """Images of ``folder/split`` as an N x 3 x S x S uint8 tensor (kept as bytes: 4x smaller
    than floats, converted per batch) and their files; with ``stream`` an ``ImageFiles`` of
    the same shape instead, decoded when read (headers checked now)."""
    if stream:
        files = list_images(Path(folder) / split)[: limit or None]
        if not files:
            raise ValueError(f"{Path(folder) / split}: holds no readable images")
        return ImageFiles(files), files
    images, files, _ = load_folder(Path(folder) / split, limit=limit or None)
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), files


def stream_splits(files: dict[str, dict[str, list[Path]]],
                  stream: bool | None = None) -> dict[str, bool]:
    """Which splits to stream: ``{split: bool}``. ``stream`` True/False forces every split;
    None streams a split whose images of all folders take more than
    ``data.stream_threshold()`` bytes decoded."""
    if stream is not None:
        return {s: bool(stream) for s in FIT_SPLITS}
    limit = stream_threshold()
    return {s: sum(decoded_bytes(files[k][s]) for k in files) > limit for s in FIT_SPLITS}


def epoch_order(n_real: int, n_fake: int, half: int, *, seed: int, epoch: int, rank: int = 0,
                world_size: int = 1, by_real: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Index batches of one epoch for one process: ``(real, fake)``, each steps x ``half``.

    Each class is shuffled by a ``DistributedSampler`` seeded with (seed, epoch), so processes
    get disjoint shards; the smaller class is cycled so every batch is balanced. Steps per epoch
    = ceil(larger shard / half), the same on every process; ``by_real``: ceil(real shard /
    half), an epoch being one pass over the reals (the paired setting, whose fakes are drawn
    from two sets).
    """
    def shard(n: int, offset: int) -> np.ndarray:
        sampler = DistributedSampler(range(n), num_replicas=world_size, rank=rank, shuffle=True,
                                     seed=seed * 2 + offset)
        sampler.set_epoch(epoch)
        return np.fromiter(iter(sampler), dtype=np.int64)

    real, fake = shard(n_real, 0), shard(n_fake, 1)
    steps = math.ceil((len(real) if by_real else max(len(real), len(fake))) / half)
    need = steps * half
    real = np.resize(real, need).reshape(steps, half)  # np.resize repeats cyclically
    fake = np.resize(fake, need).reshape(steps, half)
    return real, fake


def batch_rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, *keys]))


def blur_jpeg(image: np.ndarray, rng: np.random.Generator, p: float,
              sigma: tuple[float, float], quality: tuple[int, int]) -> np.ndarray:
    """CNNDetection's augmentation (Wang et al. 2020): with probability ``p`` a Gaussian blur of
    sigma ~ U(sigma), then with probability ``p`` a JPEG round trip of quality ~ U{quality}.
    H x W x 3 uint8 in, H x W x 3 uint8 out."""
    im = Image.fromarray(image)
    if rng.random() < p:
        im = im.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(*sigma))))
    if rng.random() < p:
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=int(rng.integers(quality[0], quality[1] + 1)))
        im = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    return np.asarray(im)


def augment_batch(x: torch.Tensor, cfg: TrainConfig, rng: np.random.Generator) -> torch.Tensor:
    """Training augmentation of an N x 3 x S x S uint8 batch (on any device): optional
    blur + JPEG (on the CPU, in PIL), then random horizontal flips."""
    if cfg.augment > 0:
        hwc = x.permute(0, 2, 3, 1).cpu().numpy()
        out = np.stack([blur_jpeg(im, rng, cfg.augment, cfg.blur_sigma, cfg.jpeg_quality)
                        for im in hwc])
        x = torch.from_numpy(out).permute(0, 3, 1, 2).to(x.device)
    if cfg.flip:
        mask = torch.from_numpy(rng.random(len(x)) < 0.5).to(x.device)
        x = torch.where(mask[:, None, None, None], x.flip(-1), x)
    return x


def to_input(x: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    """N x 3 x S x S uint8 -> float32 in [-1, 1] on ``device`` (channels-last if asked)."""
    x = x.to(device, non_blocking=True).float().div_(127.5).sub_(1.0)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def pair_index(reals: Sequence[Path], inversions: Sequence[Path], *,
                missing_ok: bool = False) -> np.ndarray:
    """For each real file, the index of its inversion (same file name) in ``inversions``.
    ``missing_ok`` (the ``paired`` setting: a manipulation skips faces the mesh misses): a real
    without a counterpart gets the counterpart ``k mod len(inversions)`` of its position ``k``,
    an unpaired fake of the same set, so the batches keep their shape."""
    where = {p.name: k for k, p in enumerate(inversions)}
    missing = [p.name for p in reals if p.name not in where]
    if missing and missing_ok and inversions:
        return np.array([where.get(p.name, k % len(inversions)) for k, p in enumerate(reals)],
                        dtype=np.int64)
    if missing:
        folder = inversions[0].parent if inversions else "the inversions folder"
        raise ValueError(f"{folder}: no inversion of {len(missing)} real image(s), e.g. "
                         f"{missing[0]}; rebuild the world's inversions")
    return np.array([where[p.name] for p in reals], dtype=np.int64)


def random_windows(x: torch.Tensor, side: int, rng: np.random.Generator) -> torch.Tensor:
    """One random ``side`` x ``side`` window per image of an N x C x H x W batch (positions
    from ``rng``); the whole batch when ``side`` >= H."""
    n, _, h, w = x.shape
    if side >= min(h, w):
        return x
    top = rng.integers(0, h - side + 1, n)
    left = rng.integers(0, w - side + 1, n)
    out = torch.stack([x[i, :, t: t + side, s: s + side] for i, (t, s) in
                       enumerate(zip(top.tolist(), left.tolist(), strict=True))])
    return out.contiguous(memory_format=torch.channels_last) \
        if x.is_contiguous(memory_format=torch.channels_last) else out


def resized_windows(model: PatchClassifier, x: torch.Tensor, side: int,
                    rng: np.random.Generator) -> torch.Tensor:
    """``random_windows(model.resize(x), side, rng)``, the same windows from the same draws of
    ``rng``, without upsampling whole images: each window's source region (the rows and
    columns its bicubic taps reach) is upsampled alone, a quarter of the work for the
    protocol's 96 px windows of 192 px faces. Equal up to float rounding (below 1e-5 for
    inputs in [-1, 1]: the kernel weights come from offsets within the region instead of the
    image). Falls back to resizing whole images when the load size is not a whole multiple
    of the image side, and for the LANCZOS filter. N x 3 x H x W float in, N x 3 x ``side``
    x ``side`` out (channels-last when ``x`` is)."""
    cfg = model.config
    n, h, w = x.shape[0], x.shape[-2], x.shape[-1]
    big = (cfg.load_size, cfg.load_size) if cfg.load_size else (h, w)
    rh, rw = big[0] // h, big[1] // w
    # Source rows a window of ``side`` output rows reads: from (top // r) - 2 to
    # ceil((top + side) / r) + 2, at most ceil(side / r) + 5 of them.
    mh, mw = -(-side // max(rh, 1)) + 5, -(-side // max(rw, 1)) + 5
    if (x.ndim != 4 or cfg.resize_filter != "bicubic" or big == (h, w) or big[0] % h
            or big[1] % w or side >= min(big) or mh > h or mw > w):
        return random_windows(model.resize(x), side, rng)
    top = rng.integers(0, big[0] - side + 1, n)  # random_windows' draws, in its order
    left = rng.integers(0, big[1] - side + 1, n)
    a = np.clip(top // rh - 2, 0, h - mh)  # region origins, inside the image (clamped
    b = np.clip(left // rw - 2, 0, w - mw)  # taps then clamp at the same border)
    src = torch.stack([x[i, :, s: s + mh, u: u + mw]
                       for i, (s, u) in enumerate(zip(a.tolist(), b.tolist(), strict=True))])
    # The same scale as the whole image's (mh / (rh * mh) == h / big[0] == 1 / rh), so each
    # output pixel samples the same source position.
    up = F.interpolate(src.contiguous(), size=(rh * mh, rw * mw), mode="bicubic",
                       align_corners=False)
    oy, ox = (top - rh * a).tolist(), (left - rw * b).tolist()
    out = torch.stack([up[i, :, t: t + side, s: s + side]
                       for i, (t, s) in enumerate(zip(oy, ox, strict=True))])
    return out.contiguous(memory_format=torch.channels_last) \
        if x.is_contiguous(memory_format=torch.channels_last) else out.contiguous()


Images = torch.Tensor | ImageFiles  # N x 3 x S x S uint8, in memory or streamed from disk


def train_images(data: dict[str, dict[str, tuple[Images, list[Path]]]],
                  pairs: dict[str, np.ndarray], dev: torch.device,
                  cfg: TrainConfig) -> tuple[Images, Images, Images | None]:
    """``(real, fake, inversions)`` of the train split, the inversions ordered like the reals
    (``inversions[i]`` inverts ``real[i]``; None unpaired). Small in-memory sets live on the
    device as bytes (no copies per step); blur + JPEG needs them on the CPU for PIL, and sets
    over 2 GiB stay there too."""
    real, fake = data["real"]["train"][0], data["fake"]["train"][0]
    inv = data["inversions"]["train"][0] if pairs else None
    if isinstance(real, ImageFiles):
        return real, fake, inv.subset(pairs["train"]) if inv is not None else None
    n_bytes = sum(data[k]["train"][0].numel() for k in data)
    on_dev = dev if cfg.augment == 0 and n_bytes < 2**31 else torch.device("cpu")
    return (real.to(on_dev), fake.to(on_dev),
            inv[pairs["train"]].to(on_dev) if inv is not None else None)


def val_images(data: dict[str, dict[str, tuple[Images, list[Path]]]],
                pairs: dict[str, np.ndarray], setting: str = "") -> tuple[Images, Images]:
    """``(real, fake)`` of the val split; paired with inversions, the inversions of the val
    reals are fakes to tell apart too (after the samples). In the ``paired`` setting they
    already are the fake set."""
    real, fake = data["real"]["val"][0], data["fake"]["val"][0]
    if pairs and setting != "paired":
        inv = data["inversions"]["val"][0]
        fake = fake + inv.subset(pairs["val"]) if isinstance(fake, ImageFiles) \
            else torch.cat([fake, inv[pairs["val"]]])
    return real, fake


def epoch_batches(images: tuple[Images, Images | None, Images], real_idx: np.ndarray,
                  fake_idx: np.ndarray, n_inv: int, cfg: TrainConfig, *, epoch: int,
                  rank: int = 0, start: int = 0, stop: int | None = None,
                  device: torch.device | None = None,
                  ) -> Iterator[tuple[torch.Tensor, np.random.Generator]]:
    """The training batches of steps ``start``..``stop - 1`` of one epoch: each an augmented
    N x 3 x S x S uint8 batch (reals, then the inversions of the first ``n_inv`` of them, then
    fakes; indices from :func:`epoch_order`) with the generator that drew its augmentation
    (seeded by (seed, epoch, step, rank); crop windows are drawn from it next).

    ``images``: ``(real, inversions ordered like real or None, fake)``, tensors or
    ``data.ImageFiles``. Streamed sets are decoded and augmented by DataLoader workers, which
    hand back the generator's state with the batch: both paths give identical batches and
    draws."""
    stop = len(real_idx) if stop is None else stop
    real, inv, fake = images
    if isinstance(real, torch.Tensor):
        on = real.device
        for step in range(start, stop):
            rng = batch_rng(cfg.seed, epoch, step, rank)
            ri = torch.from_numpy(real_idx[step]).to(on)
            fi = torch.from_numpy(fake_idx[step][n_inv:]).to(on)
            parts = [real[ri]] + ([inv[ri[:n_inv]]] if n_inv else []) + [fake[fi]]
            yield augment_batch(torch.cat(parts), cfg, rng), rng
        return
    make = StepBatch(images, real_idx, fake_idx, n_inv, cfg, epoch, rank)
    pin = device is not None and torch.device(device).type == "cuda"
    for batch, state in run_jobs(make, range(start, stop), pin_memory=pin):
        rng = np.random.default_rng()  # PCG64, as batch_rng's; continues where the worker stopped
        rng.bit_generator.state = state
        yield batch, rng


class StepBatch:
    """One step's batch read from disk and augmented, in a DataLoader worker; returns it with
    the state of its generator (see :func:`epoch_batches`)."""

    def __init__(self, images: tuple[ImageFiles, ImageFiles | None, ImageFiles],
                 real_idx: np.ndarray, fake_idx: np.ndarray, n_inv: int, cfg: TrainConfig,
                 epoch: int, rank: int) -> None:
        self.images, self.real_idx, self.fake_idx = images, real_idx, fake_idx
        self.n_inv, self.cfg, self.epoch, self.rank = n_inv, cfg, epoch, rank

    def __call__(self, step: int) -> tuple[torch.Tensor, dict[str, Any]]:
        real, inv, fake = self.images
        rng = batch_rng(self.cfg.seed, self.epoch, step, self.rank)
        ri, fi = self.real_idx[step], self.fake_idx[step][self.n_inv:]
        x = torch.stack([real[i] for i in ri] + [inv[i] for i in ri[: self.n_inv]]
                        + [fake[i] for i in fi])
        return augment_batch(x, self.cfg, rng), rng.bit_generator.state
