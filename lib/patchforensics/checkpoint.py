"""A trained classifier as the evaluation sees it: its checkpoint, patch maps and calibration.

``load_checkpoint`` reads a run's ``best.pt`` (ours, or the original code's through
``original``) with the data it was trained on; :func:`logit_maps` turns images into N x h x w
logit-difference maps on its BatchNorm-folded twin, :func:`folder_maps` caches them on disk per
checkpoint and folder, and :func:`calibration` fits (and keeps in the run folder) the
decision threshold and image-level temperature on the training pair's validation split, with
the validation AUC that the plan's adequacy criterion reads (:func:`adequate`).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import original, paths, runs
from .config import to_dict
from .data import load_folder
from .devices import resolve_device
from .generators.training import native_bf16
from .images import atomic_write_bytes, atomic_write_text, list_images, sha256_cached
from .models import (
    PatchClassifier,
    classifier_from_state,
    inference_batch_size,
    inference_model,
)
from .protocol import ADEQUACY_MIN
from .score_modes import (
    CALIBRATION_METHOD,
    MODES,
    calibrated_probability,
    fit_temperature,
    log_odds_from_maps,
    scores_from_maps,
)
from .stats import (
    FAKE,
    LEVEL,
    REAL,
    boot_weights,
    choose_threshold,
    expected_calibration_error,
    interval,
    weighted_auc,
)

Device = str | torch.device | None  # None or "auto": CUDA when present, else CPU


def logit_maps(model: torch.nn.Module, images: np.ndarray, *, device: Device = None,
               batch_size: int = 0, channels_last: bool = True,
               precision: str = "fp32") -> np.ndarray:
    """Logit-difference maps of N images: N x S x S x 3 uint8 in [0, 255] -> N x h x w float32,
    ``d = logit_fake - logit_real`` per patch (> 0 means the patch looks fake). The model is
    put in eval mode on ``device`` (and channels-last) in place; the forward passes run on its
    BatchNorm-folded twin (``models.inference_model``). ``batch_size`` 0 picks one by the
    network's input side (``models.inference_batch_size``: 8 images at 192 px on a CPU).
    ``precision``: ``"bf16"`` runs the features under bf16 autocast (:func:`eval_precision`)."""
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"expected N x H x W x 3 uint8 images, got {images.shape} "
                         f"{images.dtype}")
    if not images.flags.writeable:  # e.g. np.asarray(PIL image); torch warns on read-only
        images = images.copy()
    device = resolve_device(device)
    # Moved outside inference mode: parameters converted inside it would become inference
    # tensors, unusable for autograd later (finetuning backpropagates through this model).
    model = model.to(device).eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    net = inference_model(model, precision) if isinstance(model, PatchClassifier) else model
    if channels_last:
        net = net.to(memory_format=torch.channels_last)  # the folded weights too
    if batch_size <= 0:
        load = getattr(getattr(model, "config", None), "load_size", 0) or images.shape[1]
        batch_size = inference_batch_size(max(load, images.shape[1]), device)
    out = []
    with torch.inference_mode():
        for at in range(0, len(images), batch_size):
            x = torch.from_numpy(images[at: at + batch_size]).to(device).permute(0, 3, 1, 2)
            x = x.float().div_(127.5).sub_(1.0)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            logits = net(x).float()
            out.append((logits[:, FAKE] - logits[:, REAL]).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 1, 1), np.float32)


def checkpoint_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a checkpoint file, through the on-disk hash cache (``images.sha256_cached``:
    an unchanged file is not read again, in this process or the next)."""
    return sha256_cached(path)


def folder_maps(ck: Checkpoint, folder: str | os.PathLike, *, device: Device = None,
                loader: Callable[[Path], np.ndarray] | None = None,
                recursive: bool = False) -> np.ndarray:
    """:func:`logit_maps` of every image of ``folder`` (sorted as :func:`data.load_folder`
    sorts them): N x h x w float32, cached on disk.

    Notebooks 03, 04 and 05 score the same test sets with the same checkpoints; the cache
    (``<run>/maps/<key>.npy``) is keyed by the checkpoint's SHA-256 and the folder's file
    names, sizes and modification times (and :func:`eval_precision`), so a retrained model or
    a rewritten set is scored afresh. ``loader``: reads the folder's images (default
    ``load_folder``) when they must be scored. ``recursive``: subfolders' images too."""
    folder = Path(folder)
    # relative paths: a flat folder keys as before (its names), subfolders cannot collide
    listing = [(f.relative_to(folder).as_posix(), st.st_size, st.st_mtime_ns)
               for f in list_images(folder, recursive=recursive) for st in (f.stat(),)]
    precision = eval_precision(ck, device)
    key = hashlib.sha256(json.dumps([checkpoint_sha256(ck.path), str(folder.resolve()),
                                     listing, precision]).encode()).hexdigest()[:24]
    cache = ck.run_dir / "maps" / f"{key}.npy"
    if cache.exists():
        try:
            maps = np.load(cache)
            if len(maps) == len(listing):
                return maps
        except (OSError, ValueError):  # a damaged cache file is recomputed
            pass
    images = loader(folder) if loader is not None else \
        load_folder(folder, recursive=recursive)[0]
    maps = logit_maps(ck.model, images, device=device, precision=precision)
    buf = io.BytesIO()
    np.save(buf, maps)
    atomic_write_bytes(cache, buf.getvalue())
    return maps


@dataclass
class Calibration:
    """Per-mode temperature and decision threshold, fitted on a validation split."""

    temperature: dict[str, float]  # mode -> T of calibrated_probability (1.0 for vote)
    threshold: dict[str, float]  # mode -> threshold on the *raw* score, from validation
    ece_val: dict[str, float]  # mode -> validation ECE before calibration
    ece_val_calibrated: dict[str, float]  # mode -> validation ECE after
    checkpoint_sha256: str = ""  # the best.pt these numbers belong to
    val: dict[str, Any] = field(default_factory=dict)  # folders and counts it was fitted on
    # How T is applied; "" = a file from before this field (per-patch T), refitted on load.
    method: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fit_calibration(val_real: np.ndarray, val_fake: np.ndarray,
                    modes: Sequence[str] = MODES) -> Calibration:
    """Fit :class:`Calibration` (method :data:`CALIBRATION_METHOD`) from validation
    logit-difference maps of reals and fakes (each N x h x w)."""
    maps = np.concatenate([val_real, val_fake])
    y = np.r_[np.full(len(val_real), REAL), np.full(len(val_fake), FAKE)]
    temp, thr, before, after = {}, {}, {}, {}
    for mode in modes:
        temp[mode] = fit_temperature(maps, y, mode)
        raw = scores_from_maps(maps, mode)
        thr[mode] = choose_threshold(raw, y)
        before[mode] = expected_calibration_error(raw, y)
        after[mode] = expected_calibration_error(
            calibrated_probability(log_odds_from_maps(maps, mode), temp[mode], mode), y)
    return Calibration(temp, thr, before, after, method=CALIBRATION_METHOD)


@dataclass
class Checkpoint:
    """A trained classifier and what is known about how it was trained."""

    path: Path  # the best.pt file
    run_dir: Path  # its folder
    model: PatchClassifier  # in eval mode
    input_size: int  # side (px) of the images it was trained on
    train_real: Path | None  # dataset folders it was trained on (with train/ and val/), if known
    train_fake: Path | None
    seed: int | None
    name: str  # e.g. "xception_block2"
    precision: str = "fp32"  # of its training steps (``TrainConfig.precision``)


def load_checkpoint(ckpt: str | os.PathLike, *, device: Device = None,
                    input_size: int | None = None, load_size: int | None = None,
                    fake_class_id: int | None = None) -> Checkpoint:
    """A classifier from a run folder or its ``best.pt``, with its training image size and data
    folders (from the run's ``config.json`` when present). Raises ``FileNotFoundError`` or
    ``ValueError`` with the file's name when it is missing or not a classifier checkpoint.

    The original authors' files (``bestval_net_D.pth``: ``state_dict``/``net_D`` in their key
    layout) load too (``original.read``): backbone and cut from the keys; ``fake_class_id``
    (its output row of "fake"), ``load_size`` (its network input) and ``input_size`` (px of the
    images it saw) as given, else from the ``opt.yml``/``opt.txt`` beside it, else the
    original's defaults (row 0 is fake; 128 px faces, LANCZOS to 299 px for Xception, 224 px for
    ResNet); one line on stderr says what was read and what assumed. Their caches (patch maps)
    go below ``paths.cache_dir()``, never beside the user's file. ``input_size`` also serves our
    checkpoints that do not record their size."""
    import sys

    path = runs.checkpoint_file(ckpt)
    raw = _read_checkpoint_file(path)
    authors = original.read(raw, path, input_size=input_size, load_size=load_size,
                            fake_class_id=fake_class_id)
    if authors is not None:
        model, size, said = authors
        print(said, file=sys.stderr)
        # a folder of our own for its caches, keyed by the file's bytes and how it was read
        key = hashlib.sha256(json.dumps([checkpoint_sha256(path), to_dict(model.config),
                                         size]).encode()).hexdigest()[:16]
        return Checkpoint(path, paths.cache_dir() / "original" / key,
                          model.to(resolve_device(device)), size, None, None, None,
                          model.config.name)
    if fake_class_id is not None:
        raise ValueError(f"{path}: a patchforensics checkpoint (output 1 is fake); "
                         "fake_class_id is for the original authors' files only")
    if not isinstance(raw, dict) or "model_config" not in raw:
        raise ValueError(f"{path}: not a classifier checkpoint (neither patchforensics' "
                         "best.pt nor the original authors' net_D layout)")
    if load_size is not None:
        raw = {**raw, "model_config": {**raw["model_config"], "load_size": int(load_size)}}
    model = classifier_from_state(raw, device=resolve_device(device))  # loaded once
    config_path = path.parent / "config.json"
    cfg = json.loads(config_path.read_text()) if config_path.exists() else {}
    data = cfg.get("data", {})
    real = runs.resolve_recorded(data["real"]["dir"]) if "real" in data else None
    fake = runs.resolve_recorded(data["fake"]["dir"]) if "fake" in data else None
    size = raw.get("input_size") if input_size is None else input_size
    if size is None and real is not None:
        size = load_folder(real / "val", limit=1)[0].shape[1]
    if size is None:
        raise ValueError(f"{path}: the checkpoint does not say its training image size and "
                         "its training data cannot be found; give the size explicitly")
    return Checkpoint(path, path.parent, model, int(size), real, fake,
                      cfg.get("config", {}).get("seed"), model.config.name,
                      cfg.get("config", {}).get("precision", "fp32"))


def _read_checkpoint_file(path: Path) -> Any:
    """The unpickled contents of a checkpoint file (weights only), or ``FileNotFoundError`` /
    ``ValueError`` naming the file and what it seems to be instead."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint (give a run folder or its best.pt)")
    with open(path, "rb") as f:
        magic = f.read(2)
    if magic not in (b"PK", b"\x80\x02"):  # torch's zip format; the legacy pickle one
        guess = original.sniff(path)
        raise ValueError(f"{path}: not a checkpoint" + (f" ({guess})" if guess else ""))
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a bad file
        raise ValueError(f"{path}: cannot be read as a checkpoint ({type(err).__name__}: "
                         f"{str(err).strip().splitlines()[0]})") from err


def eval_precision(ck: Checkpoint, device: Device = None) -> str:
    """The precision a checkpoint is scored in: ``"bf16"`` features (fp32 head, see
    ``models.inference_model``) for a *patch* model trained in bf16 on a device with native
    bf16, else ``"fp32"``. Such scores come from the arithmetic the model was trained with, at
    2.2x the fp32 speed on a 2-core AMD EPYC; on the default run's models they kept every AUC within
    0.0003 and the image order (Spearman > 0.9999). A full-image model stays fp32: its one
    logit per image comes from bf16-rounded pooled features and tied two images there (it is
    cheap at 64 px anyway). Validation (stopping, calibration thresholds) is always fp32."""

    dev = resolve_device(device)
    patch = ck.model.config.depth != "full"
    return "bf16" if patch and ck.precision == "bf16" and native_bf16(dev) else "fp32"


def calibration(ck: Checkpoint, *, val_real: str | os.PathLike | None = None,
                val_fake: str | os.PathLike | None = None, device: Device = None,
                save: bool = True) -> Calibration | None:
    """The checkpoint's :class:`Calibration`: read from ``calibration.json`` in its run folder
    when that matches ``best.pt`` and :data:`CALIBRATION_METHOD`, else fitted on the validation
    split of the data it was trained on (or on ``val_real``/``val_fake`` folders of images) and
    saved there. ``None`` when no validation data is known."""
    sha = checkpoint_sha256(ck.path)
    cache = ck.run_dir / "calibration.json"
    explicit = val_real is not None or val_fake is not None
    if cache.exists() and not explicit:
        try:
            cal = Calibration(**json.loads(cache.read_text()))
        except (OSError, ValueError, TypeError):  # damaged or foreign: refitted below
            cal = None
        # A file without ``method`` holds a per-patch T, which reorders images: never trusted.
        if cal is not None and cal.checkpoint_sha256 == sha and \
                cal.method == CALIBRATION_METHOD and "auc_ci_low" in cal.val:
            return cal
    if explicit:
        if val_real is None or val_fake is None:
            raise ValueError("give both val_real and val_fake, or neither")
        real_dir, fake_dir = Path(val_real), Path(val_fake)
    elif ck.train_real is not None and ck.train_fake is not None:
        real_dir, fake_dir = ck.train_real / "val", ck.train_fake / "val"
    else:
        return None
    maps = {k: folder_maps(ck, d, device=device)
            for k, d in (("real", real_dir), ("fake", fake_dir))}
    cal = fit_calibration(maps["real"], maps["fake"])
    cal.checkpoint_sha256 = sha
    cal.val = {"real": Path(real_dir).as_posix(), "fake": Path(fake_dir).as_posix(),
               "n_real": len(maps["real"]), "n_fake": len(maps["fake"]),
               **validation_auc(maps["real"], maps["fake"])}
    if save and not explicit:
        atomic_write_text(cache, json.dumps(cal.to_dict(), indent=1))
    return cal


def validation_auc(val_real: np.ndarray, val_fake: np.ndarray, *, n_boot: int = 2000,
                   level: float = LEVEL) -> dict[str, float]:
    """AUC of the primary image score (``mean_softmax`` log-odds, fake positive) on validation
    maps (each N x h x w) with a stratified bootstrap ``level`` interval:
    ``{"auc", "auc_ci_low", "auc_ci_high"}``. Its lower bound is what the plan's adequacy
    criterion reads (``protocol.ADEQUACY_MIN``)."""
    real = log_odds_from_maps(val_real, "mean_softmax")
    fake = log_odds_from_maps(val_fake, "mean_softmax")
    boots = weighted_auc(real, fake, *boot_weights(len(real), len(fake), "val", "seen",
                                                   n_boot=n_boot))
    lo, hi = interval(boots, level)
    return {"auc": float(weighted_auc(real, fake)[0]), "auc_ci_low": lo, "auc_ci_high": hi}


def adequate(cal: Calibration | None) -> bool:
    """Whether a run passes the plan's adequacy criterion: the lower bound of its validation
    AUC (:func:`validation_auc`) at least ``protocol.ADEQUACY_MIN``; False when unknown."""
    return cal is not None and cal.val.get("auc_ci_low", -1.0) >= ADEQUACY_MIN
