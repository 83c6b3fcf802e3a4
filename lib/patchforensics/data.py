"""Folder datasets of real and fake images, validated when loaded.

The embedded world and ``patchforensics import`` write prepared PNGs (``preprocess``); this module
loads such folders into memory (they are small: a 64 px image is 12 KiB as uint8) and checks
that every image can be read and that all share one size, so a wrong file fails here with its
name rather than deep inside training. Labels: 0 = real, 1 = fake (fake is the positive class).

Sets too large to hold decoded (over :func:`stream_threshold` bytes as uint8, e.g. 100k images
of 128 px = 4.9 GB) are read through :class:`ImageFiles` instead: the same validated reading,
one image at a time, decoded by ``DataLoader`` workers while the model trains.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from .devices import cpu_cores
from .images import ImageError, list_images, read_image
from .stats import FAKE, REAL  # the class labels (0, 1), kept with the metrics that read them

# Decoded uint8 bytes above which a split is streamed from disk rather than held in memory: the
# size at which ``train`` already kept sets off the GPU. ``PATCHFORENSICS_STREAM_BYTES`` overrides.
STREAM_BYTES = 2 * 2**30
STREAM_ENV = "PATCHFORENSICS_STREAM_BYTES"
WORKERS_ENV = "PATCHFORENSICS_WORKERS"  # DataLoader workers per process (default: cores - 1)


def load_folder(folder: str | os.PathLike, *, on_error: str = "fail", limit: int | None = None,
                recursive: bool = False) -> tuple[np.ndarray, list[Path], dict[str, str]]:
    """Load every image of a folder of prepared images.

    Returns ``(images, files, skipped)``: images N x S x S x 3 uint8 in [0, 255], the files in the
    same order, and ``{path: problem}`` of files skipped with ``on_error="skip"``. With
    ``"fail"`` (default) the first bad file raises :class:`ImageError`. All images must share one
    size (``ValueError`` names the first that does not); an empty folder is a ``ValueError``.
    """
    if on_error not in ("fail", "skip"):
        raise ValueError(f"on_error must be 'fail' or 'skip', got {on_error!r}")
    files = list_images(folder, recursive=recursive)[:limit]
    arrays, kept, skipped = [], [], {}
    for f in files:
        try:
            arr, _ = read_image(f)
        except ImageError as err:
            if on_error == "fail":
                raise
            skipped[str(f)] = err.problem
            continue
        if arrays and arr.shape != arrays[0].shape:
            raise ValueError(f"{f}: is {arr.shape[1]}x{arr.shape[0]} but {kept[0].name} is "
                             f"{arrays[0].shape[1]}x{arrays[0].shape[0]}; prepare the folder "
                             "with `patchforensics import` first")
        arrays.append(arr)
        kept.append(f)
    if not arrays:
        raise ValueError(f"{folder}: holds no readable images")
    return np.stack(arrays), kept, skipped


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """N x H x W x 3 uint8 in [0, 255] -> N x 3 x H x W float32 in [-1, 1] (the paper's range)."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """N x C x H x W float in [-1, 1] (C = 1 or 3) -> N x H x W x 3 uint8 in [0, 255].

    Values are clipped; one channel (a gray generator) is replicated to three.
    """
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"expected N x 1|3 x H x W, got {tuple(x.shape)}")
    u8 = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    if u8.shape[1] == 1:
        u8 = u8.expand(-1, 3, -1, -1)
    return u8.permute(0, 2, 3, 1).contiguous().cpu().numpy()


class RealFakeDataset(Dataset):
    """Real and fake folders as one in-memory dataset of ``(image, label)`` pairs.

    ``image``: 3 x S x S float32 in [-1, 1]; ``label``: 0 real, 1 fake. Both folders must hold
    images of the same size (checked; a mismatch is a container leak the classifier would learn).
    """

    def __init__(self, real_dir: str | os.PathLike, fake_dir: str | os.PathLike, *,
                 on_error: str = "fail", limit: int | None = None) -> None:
        real, self.real_files, skipped_r = load_folder(real_dir, on_error=on_error, limit=limit)
        fake, self.fake_files, skipped_f = load_folder(fake_dir, on_error=on_error, limit=limit)
        if real.shape[1:] != fake.shape[1:]:
            raise ValueError(f"{fake_dir}: images are {fake.shape[2]}x{fake.shape[1]} but "
                             f"{real_dir} holds {real.shape[2]}x{real.shape[1]}")
        if Path(real_dir).resolve() == Path(fake_dir).resolve():
            raise ValueError(f"{real_dir}: the real and the fake folder are the same folder")
        self.skipped = {**skipped_r, **skipped_f}
        self.images = torch.cat([to_tensor(real), to_tensor(fake)])
        self.labels = torch.cat([torch.full((len(real),), REAL), torch.full((len(fake),), FAKE)])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[i], self.labels[i]


# --- streaming --------------------------------------------------------------------------------

def stream_threshold() -> int:
    """Decoded bytes above which a split is streamed: ``$PATCHFORENSICS_STREAM_BYTES`` (an
    integer >= 0), else :data:`STREAM_BYTES` (2 GiB)."""
    value = os.environ.get(STREAM_ENV, "").strip()
    if not value:
        return STREAM_BYTES
    try:
        n = int(float(value))
    except ValueError:
        n = -1
    if n < 0:
        raise ValueError(f"{STREAM_ENV}={value!r}: expected a number of bytes >= 0")
    return n


def loader_workers() -> int:
    """DataLoader worker processes for streaming: ``$PATCHFORENSICS_WORKERS``, else the cores
    this process may use, less one for the training loop, shared among the node's torchrun
    ranks; at least 1 (decoding then overlaps the forward pass even on 2 cores)."""
    value = os.environ.get(WORKERS_ENV, "").strip()
    if value:
        if not value.isdigit():
            raise ValueError(f"{WORKERS_ENV}={value!r}: expected a number of workers >= 0")
        return int(value)
    ranks = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(1, min(8, cpu_cores() // ranks - 1))


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(width, height)`` of an image file from its header, without decoding the pixels.
    Raises :class:`ImageError` naming the file when PIL cannot identify it."""
    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, SyntaxError, ValueError) as err:
        # read_image gives the precise problem (empty, not an image, ...).
        read_image(path)
        raise ImageError(path, f"cannot be read ({err})") from err


def decoded_bytes(files: Sequence[Path]) -> int:
    """Bytes the files take decoded as uint8 RGB, estimated from the first file's header
    (prepared folders hold one size; 0 for no files)."""
    if not files:
        return 0
    w, h = image_size(files[0])
    return len(files) * w * h * 3


class ImageFiles(Dataset):
    """Images decoded on demand: item ``i`` is ``files[i]`` as a 3 x S x S uint8 tensor in
    [0, 255], read (and validated) by ``images.read_image``, like :func:`load_folder`.

    ``shape`` is ``(N, 3, S, S)``, so code written for an in-memory N x 3 x S x S uint8 tensor
    (``batches.load_split``) can take either. With ``check`` every file's header is read at once,
    so a file of another size fails here, naming it, not hours into training.
    """

    def __init__(self, files: Sequence[str | os.PathLike], *, check: bool = True) -> None:
        self.files = [Path(f) for f in files]
        if not self.files:
            raise ValueError("no images to stream")
        w, h = image_size(self.files[0])
        if w != h:
            raise ValueError(f"{self.files[0]}: is {w}x{h}, not square; prepare the folder with "
                             "`patchforensics import` first")
        self.side = w
        for f in self.files[1:] if check else ():
            if image_size(f) != (w, h):
                ww, hh = image_size(f)
                raise ValueError(f"{f}: is {ww}x{hh} but {self.files[0].name} is {w}x{h}; "
                                 "prepare the folder with `patchforensics import` first")

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.files), 3, self.side, self.side)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        arr, _ = read_image(self.files[i])
        if arr.shape != (self.side, self.side, 3):
            raise ValueError(f"{self.files[i]}: is {arr.shape[1]}x{arr.shape[0]} but "
                             f"{self.files[0].name} is {self.side}x{self.side}")
        return torch.from_numpy(arr).permute(2, 0, 1).contiguous()

    def subset(self, index: Sequence[int] | np.ndarray) -> ImageFiles:
        """The files at ``index``, in that order (headers already checked)."""
        out = ImageFiles.__new__(ImageFiles)
        out.files, out.side = [self.files[int(i)] for i in index], self.side
        return out

    def __add__(self, other: ImageFiles) -> ImageFiles:  # type: ignore[override]
        if other.side != self.side:
            raise ValueError(f"{other.files[0]}: is {other.side} px but {self.files[0].name} "
                             f"is {self.side} px")
        out = ImageFiles.__new__(ImageFiles)
        out.files, out.side = self.files + other.files, self.side
        return out


class _Jobs(Dataset):
    """Item k = ``make(k)``; an image error becomes its message, re-raised by ``run_jobs`` in
    the calling process as one line (a worker's own exception arrives wrapped in a traceback)."""

    def __init__(self, n: int, make: Callable[[int], Any]) -> None:
        self.n, self.make = n, make

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, k: int) -> tuple[Any, str]:
        try:
            return self.make(k), ""
        except (ImageError, ValueError, OSError) as err:
            return None, str(err)


def run_jobs(make: Callable[[int], Any], jobs: Sequence[int], *, workers: int | None = None,
             pin_memory: bool = False) -> Iterator[Any]:
    """``make(k)`` for each ``k`` of ``jobs``, in order, computed ahead by ``workers``
    DataLoader processes (default :func:`loader_workers`; 0 = in this process). ``make`` runs
    in the workers: it must not rely on state it mutates. A bad image raises ``ValueError``
    here with the worker's one-line message."""
    workers = loader_workers() if workers is None else workers
    jobs = list(jobs)
    if not jobs:
        return
    loader = DataLoader(_Jobs(max(jobs) + 1, make), batch_size=None, sampler=jobs,
                        num_workers=workers, pin_memory=pin_memory,
                        prefetch_factor=4 if workers else None,
                        collate_fn=_first)
    for value, problem in loader:
        if problem:
            raise ValueError(problem)
        yield value


def iter_batches(images: torch.Tensor | ImageFiles, batch_size: int, *,
                 workers: int | None = None, pin_memory: bool = False) -> Iterator[torch.Tensor]:
    """Consecutive ``batch_size`` slices of an N x 3 x S x S uint8 tensor, or the same batches
    of an :class:`ImageFiles` decoded by DataLoader workers (identical values either way)."""
    if isinstance(images, torch.Tensor):
        for at in range(0, len(images), batch_size):
            yield images[at: at + batch_size]
        return
    yield from run_jobs(_Slice(images, batch_size), range(math.ceil(len(images) / batch_size)),
                        workers=workers, pin_memory=pin_memory)


class _Slice:
    """Batch k of an ImageFiles (a class, not a closure: picklable for spawned workers)."""

    def __init__(self, images: ImageFiles, batch_size: int) -> None:
        self.images, self.batch_size = images, batch_size

    def __call__(self, k: int) -> torch.Tensor:
        at = k * self.batch_size
        return torch.stack([self.images[i]
                            for i in range(at, min(at + self.batch_size, len(self.images)))])


def _first(item: Any) -> Any:
    return item
