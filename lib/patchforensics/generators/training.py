"""Training runs of the zoo: cached, resumable, seeded (the paper's "generators", Sec. 3.1).

One run lives in ``paths.checkpoints_dir()/generators/<world>/<dataset>/<name>/``:

- ``config.json``: the generator config, the training data's fingerprint, provenance;
- ``latest.pt``: written atomically every ``checkpoint_every`` steps and at least every
  ``CHECKPOINT_SECONDS`` with everything needed to continue *exactly* (weights, optimiser
  states, RNG states, step, seconds spent so far), so a killed run resumes and ends with the
  same weights as an uninterrupted one;
- ``final.pt`` and ``done.json`` (its SHA-256, steps, seconds): a rerun loads these and trains
  nothing unless forced.

A run is identified by a fingerprint of (generator config, training data); a folder holding
another fingerprint is stale and is trained again.
"""

from __future__ import annotations

import io
import json
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from .. import paths
from ..config import fingerprint
from ..images import atomic_write_bytes, atomic_write_text, list_images, read_image, sha256_file
from ..layout import real_key
from ..progress import bar as progress_bar
from ..provenance import run_record
from .base import is_gray


def run_dir(world_root: str | Path, dataset: str, name: str) -> Path:
    """Checkpoint folder of one generator of one world, e.g. ``checkpoints/generators/default64/
    celeba/dcgan`` (below the world folder for a world built outside the data dir:
    ``paths.world_checkpoints_dir``)."""
    root = Path(world_root)
    return paths.world_checkpoints_dir(root) / "generators" / root.name / dataset / name


def save_torch(obj: dict[str, Any], path: Path) -> str:
    """``torch.save`` atomically (a reader sees the old file or the new one); returns SHA-256."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())
    return sha256_file(path)


def load_torch(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by ``save_torch`` (tensors and plain values only)."""
    return torch.load(path, map_location=device, weights_only=True)


def finished(folder: Path, fp: str) -> dict[str, Any] | None:
    """The ``done.json`` of a finished run with fingerprint ``fp`` whose ``final.pt`` verifies."""
    done = folder / "done.json"
    if not done.exists():
        return None
    try:
        record = json.loads(done.read_text())
    except json.JSONDecodeError:
        return None
    final = folder / "final.pt"
    if record.get("fingerprint") != fp or not final.exists():
        return None
    if sha256_file(final) != record.get("sha256"):
        return None
    return record


def start_run(folder: Path, fp: str, record: dict[str, Any], *, force: bool) -> None:
    """Prepare ``folder`` for training run ``fp``: wipe it if forced or stale, write config.json."""
    config = folder / "config.json"
    stale = True
    if config.exists():
        try:
            stale = json.loads(config.read_text()).get("fingerprint") != fp
        except json.JSONDecodeError:
            stale = True
    if force or stale:
        shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "done.json").unlink(missing_ok=True)
    atomic_write_text(config, json.dumps({**record, "fingerprint": fp,
                                          "provenance": run_record()}, indent=1))


def finish_run(folder: Path, fp: str, state: dict[str, Any], steps: int,
               seconds: float) -> dict[str, Any]:
    """Write ``final.pt`` then ``done.json`` (in that order: done means final is whole)."""
    digest = save_torch(state, folder / "final.pt")
    record = {"fingerprint": fp, "sha256": digest, "steps": steps,
              "seconds": round(seconds, 2)}
    atomic_write_text(folder / "done.json", json.dumps(record, indent=1))
    (folder / "latest.pt").unlink(missing_ok=True)
    return record


@contextmanager
def cpu_threads(n: int) -> Iterator[None]:
    """Use ``n`` torch CPU threads inside the block (0: leave torch's setting alone).

    Tiny (smoke) nets gain nothing from several threads, and on a busy machine OpenMP workers
    that wait for each other can make a step 50x slower; so smoke configs train on one.
    """
    old = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


PRECISIONS = ("fp32", "bf16")


def native_bf16(device: torch.device | str) -> bool:
    """Whether ``device`` runs bf16 convolutions natively: CUDA with bf16 support, or a CPU on
    which oneDNN has bf16 kernels (AVX512-BF16 or AMX, e.g. AMD Zen 4, Intel Sapphire Rapids)."""
    device = torch.device(device)
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """``"auto"`` -> ``"bf16"`` where :func:`native_bf16`, else ``"fp32"``; others as given.
    A run records the precision it used, never ``"auto"``."""
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose from {PRECISIONS} or 'auto'")
    return precision


def autocast(precision: str, device: torch.device) -> AbstractContextManager[Any]:
    """The forward-pass context of a training step: nothing for ``"fp32"``; for ``"bf16"``,
    ``torch.autocast`` to bfloat16 on ``device`` (CPU or CUDA; bf16 needs no loss scaling).

    Weights, optimiser states and losses stay fp32; only convolutions/matmuls run in bf16. On
    a CPU without native bf16 (``torch.ops.mkldnn._is_mkldnn_bf16_supported()`` false) oneDNN
    emulates it slowly, so ``"bf16"`` is opt-in, never picked by the machine.
    """
    if precision == "fp32":
        return nullcontext()
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    raise ValueError(f"unknown precision {precision!r}; choose from {PRECISIONS}")


def adam(params: Any, lr: float, betas: tuple[float, float], device: torch.device
         ) -> torch.optim.Adam:
    """Adam with the fused kernel (one pass over all parameters instead of a few foreach
    passes; CPU and CUDA in torch >= 2.4), falling back to foreach where it is missing."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr, betas=betas, fused=device.type in ("cpu", "cuda"))
    except RuntimeError:  # a device without the fused kernel
        return torch.optim.Adam(params, lr, betas=betas)


StepFn = Callable[[int], dict[str, torch.Tensor]]  # one training step: index -> losses


class Stateful(Protocol):
    """Anything with ``state_dict``/``load_state_dict`` (modules, optimisers)."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> Any: ...


class RowLog:
    """A list of logged rows that checkpoints with the weights (a ``train_loop`` part), so a
    resumed run's log equals an uninterrupted one's."""

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []

    def state_dict(self) -> dict[str, Any]:
        return {"rows": list(self.rows)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rows = list(state["rows"])


CHECKPOINT_SECONDS = 120.0  # also save latest.pt this often: a kill loses <= ~2 min of work


class TrainingInterrupted(RuntimeError):
    """Raised by ``train_loop(stop_after=...)``: the run is left resumable, as after a kill."""


def train_loop(folder: Path, fp: str, *, steps: int, checkpoint_every: int,
               parts: dict[str, Stateful], rng: torch.Generator,
               step_fn: Callable[[int], dict[str, torch.Tensor]], desc: str, progress: bool,
               stop_after: int | None = None,
               checkpoint_seconds: float | None = None) -> tuple[str, float]:
    """Run ``step_fn(step)`` for ``step`` in [start, steps), checkpointing to ``latest.pt``.

    ``parts`` are saved and restored by name; ``rng`` must be the only source of randomness
    of ``step_fn`` (batch indices, latents, noise), so restoring it with the weights makes a
    resumed run bit-identical to an uninterrupted one on the same machine. Resumes from
    ``latest.pt`` when its fingerprint is ``fp``. ``step_fn`` returns detached loss tensors,
    read only for the progress bar (no per-step device sync). ``stop_after``: raise
    :class:`TrainingInterrupted` after that many steps of this call (a stand-in for a kill,
    for tests). ``latest.pt`` is written every ``checkpoint_every`` steps AND whenever
    ``checkpoint_seconds`` (default: the module's ``CHECKPOINT_SECONDS``, read at call time)
    have passed since the last save, so a kill loses at most about that
    much work however slow the machine (the step-based saves alone lost 20+ minutes of an
    upconv run on a loaded 2-core CPU, issue 14). Returns ``(source, seconds)``: source
    ``"trained"`` or ``"resumed"``; seconds of training over ALL segments of the run (each
    ``latest.pt`` carries the seconds spent before it), so a resumed run's ``done.json``
    records the whole cost, not only its last segment.
    """
    latest = folder / "latest.pt"
    start, source, before = 0, "trained", 0.0
    if latest.exists():
        ckpt = load_torch(latest)
        if ckpt.get("fingerprint") == fp:
            for key, part in parts.items():
                part.load_state_dict(ckpt["parts"][key])
            rng.set_state(ckpt["rng"])
            start, source = int(ckpt["step"]), "resumed"
            before = float(ckpt.get("seconds", 0.0))  # older checkpoints lack it

    if checkpoint_seconds is None:
        checkpoint_seconds = CHECKPOINT_SECONDS
    t0 = time.perf_counter()
    last_save = t0

    def save(step: int) -> None:
        nonlocal last_save
        save_torch({"fingerprint": fp, "step": step, "rng": rng.get_state(),
                    "seconds": before + time.perf_counter() - t0,
                    "parts": {k: p.state_dict() for k, p in parts.items()}}, latest)
        last_save = time.perf_counter()

    bar = progress_bar(range(start, steps), desc=desc, disable=not progress, leave=False,
               initial=start, total=steps, unit="step")
    for done, step in enumerate(bar, start=1):
        logs = step_fn(step)
        if step % 25 == 0 and progress:
            bar.set_postfix({k: f"{float(v):.3f}" for k, v in logs.items()}, refresh=False)
        due = ((step + 1) % checkpoint_every == 0
               or time.perf_counter() - last_save >= checkpoint_seconds)
        if due and step + 1 < steps:
            save(step + 1)
        if stop_after is not None and done >= stop_after:
            bar.close()
            raise TrainingInterrupted(f"stopped after {done} steps at step {step + 1}")
    bar.close()
    return source, before + time.perf_counter() - t0


def train_files(world_root: Path, dataset: str) -> tuple[list[Path], str]:
    """The prepared real training images of ``dataset`` and a fingerprint of their contents.

    The fingerprint hashes every file's SHA-256 (read from disk, not trusted from the
    manifest: a few MB, milliseconds), so it changes exactly when the training data do and a
    cached generator is retrained then.
    """
    folder = Path(world_root) / real_key(dataset) / "train"
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{folder}: no real training images for {dataset!r}; build the real world first "
            "(patchforensics.embedded.build_real_world)")
    files = list_images(folder)
    if not files:
        raise FileNotFoundError(f"{folder}: holds no images")
    digests = {f.name: sha256_file(f) for f in files}
    return files, fingerprint({"dataset": dataset, "files": digests})


def read_stack(files: list[Path]) -> np.ndarray:
    """Images of one size stacked: N x S x S x 3 uint8 (they are tiny: all fit in memory)."""
    arrs = [read_image(f)[0] for f in files]
    shapes = {a.shape for a in arrs}
    if len(shapes) != 1:
        raise ValueError(f"{files[0].parent}: images of several shapes {sorted(shapes)}; "
                         "prepare them with the parity pipeline first")
    return np.stack(arrs)


def data_channels(images: np.ndarray) -> int:
    """1 when every training image is gray (R == G == B), else 3."""
    return 1 if is_gray(images) else 3


def batch_from(data: torch.Tensor, idx: torch.Tensor, flips: torch.Tensor | None,
               device: torch.device, channels_last: bool) -> torch.Tensor:
    """uint8 N x C x S x S rows ``idx`` -> float in [-1, 1] on ``device``, some flipped."""
    x = data[idx].to(device).float().div_(127.5).sub_(1.0)
    if flips is not None:
        x = torch.where(flips.to(device).view(-1, 1, 1, 1), x.flip(3), x)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def cpu_state(state: dict[str, Any]) -> dict[str, Any]:
    """State dict with plain contiguous CPU tensors (channels-last weights load anywhere)."""
    if "state" in state and "param_groups" in state:  # an optimiser: leave its nesting alone
        return {"state": {k: {n: (v.detach().cpu().contiguous() if torch.is_tensor(v) else v)
                              for n, v in s.items()} for k, s in state["state"].items()},
                "param_groups": state["param_groups"]}
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


@torch.no_grad()
def ema_update(ema: torch.nn.Module, net: torch.nn.Module, decay: float, step: int) -> None:
    """``ema <- d * ema + (1 - d) * net`` on the parameters, with ``d = min(decay, (1 + step)
    / (10 + step))``: early on the average follows the net closely, so the first (bad)
    weights do not linger. Buffers (BatchNorm statistics) are NOT averaged: a weight average
    needs its own statistics, set by :func:`standing_stats` once training ends."""
    d = min(decay, (1 + step) / (10 + step))
    for pe, p in zip(ema.parameters(), net.parameters(), strict=True):
        pe.lerp_(p.detach(), 1.0 - d)


@torch.no_grad()
def standing_stats(net: torch.nn.Module, latent_dim: int, device: torch.device, *,
                   seed: int, batches: int = 16, batch_size: int = 64) -> None:
    """Recompute every BatchNorm's running mean/var of generator ``net`` (z: N x latent_dim)
    as the exact average over ``batches`` batches of N(0, I) latents drawn from ``seed``
    ("standing statistics", Brock et al. 2019): the weight average of :func:`ema_update` was
    never run, so the raw net's statistics do not fit it. Deterministic; leaves ``net`` in
    eval mode."""
    bns = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # None: a cumulative average over the batches below
    net.train()
    g = torch.Generator().manual_seed(int(seed))
    for _ in range(batches):
        net(torch.randn(batch_size, latent_dim, generator=g).to(device))
    for m, mom in zip(bns, momenta, strict=True):
        m.momentum = mom
    net.eval()
