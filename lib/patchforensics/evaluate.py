"""Evaluating patch classifiers: image scores, metrics, calibration, the cross-generator table
and robustness (Chai et al. 2020, Sec. 4.1-4.2 and the original code's ``test.py``).

A classifier's output for one image is its patch map: N x 2 x h x w logits, one pair per
receptive-field patch. Everything here starts from the *logit difference map*
``d = logit_fake - logit_real`` (N x h x w), since the softmax of two logits is the sigmoid of
their difference. The original code turned a map into one image score in three ways
(``MODES``):

- ``mean_softmax`` (its default, ours too): mean over patches of sigmoid(d), the fake probability;
- ``mean_logit``: sigmoid of the mean of d (softmax of the mean logit);
- ``vote``: the share of patches whose argmax is "fake".

Metrics take **fake as the positive class** (the original code's AP took real as positive; we also
report that number as ``ap_real_positive`` for "paper vs. ours"). The decision threshold for
``acc_at_threshold`` is chosen on the *training generator's validation split*, never on the test
set, and so is the calibration temperature (temperature scaling, Guo et al. 2017: the logits are
divided by T fitted by maximum likelihood, with Platt's smoothed targets so that a perfectly
separated validation split still gives a finite T). A run folder keeps both in ``calibration.json``,
keyed by the SHA-256 of its ``best.pt``; ``vote`` has no temperature (dividing d by T > 0 does
not change a patch's sign), so its calibrated numbers equal its raw ones.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageFilter

from . import paths
from .data import FAKE, REAL, load_folder
from .images import atomic_write_bytes, atomic_write_text, list_images, sha256_file
from .models import PatchClassifier, classifier_from_state

Device = str | torch.device | None  # None or "auto": CUDA when present, else CPU

MODES = ("mean_softmax", "mean_logit", "vote")
ECE_BINS = 15
# Test-time degradations (applied to real and fake alike): JPEG quality, Gaussian blur sigma
# (px), and resize factor (down to factor * size with bicubic, then back up to size).
SWEEPS: dict[str, tuple[float, ...]] = {
    "jpeg": (95, 85, 75, 60, 45, 30),
    "blur": (0.0, 0.5, 1.0, 1.5, 2.0, 3.0),
    "resize": (1.0, 0.75, 0.5, 0.375, 0.25),
}


# --- patch maps and image scores ------------------------------------------------------------

def resolve_device(device: Device) -> torch.device:
    """``None`` or ``"auto"`` -> CUDA when present, else CPU; anything else as given."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def logit_maps(model: torch.nn.Module, images: np.ndarray, *, device: Device = None,
               batch_size: int = 256, channels_last: bool = True) -> np.ndarray:
    """Logit-difference maps of N images: N x S x S x 3 uint8 in [0, 255] -> N x h x w float32,
    ``d = logit_fake - logit_real`` per patch (> 0 means the patch looks fake). The model is
    put in eval mode on ``device`` (and channels-last) in place."""
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"expected N x H x W x 3 uint8 images, got {images.shape} "
                         f"{images.dtype}")
    device = resolve_device(device)
    # Moved outside inference mode: parameters converted inside it would become inference
    # tensors, unusable for autograd later (finetuning backpropagates through this model).
    model = model.to(device).eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    out = []
    with torch.inference_mode():
        for at in range(0, len(images), batch_size):
            x = torch.from_numpy(images[at: at + batch_size]).to(device).permute(0, 3, 1, 2)
            x = x.float().div_(127.5).sub_(1.0)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            logits = model(x).float()
            out.append((logits[:, FAKE] - logits[:, REAL]).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 1, 1), np.float32)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))


def scores_from_maps(maps: np.ndarray, mode: str = "mean_softmax",
                     temperature: float = 1.0) -> np.ndarray:
    """Image scores from N x h x w logit-difference maps: N float64 in [0, 1] (> 0.5 = fake).

    ``mode`` is one of ``MODES``; ``temperature`` divides the logits first (no effect on
    ``vote``)."""
    if maps.ndim != 3:
        raise ValueError(f"expected N x h x w maps, got shape {maps.shape}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    d = maps.astype(np.float64) / temperature
    if mode == "mean_softmax":
        return _sigmoid(d).mean(axis=(1, 2))
    if mode == "mean_logit":
        return _sigmoid(d.mean(axis=(1, 2)))
    if mode == "vote":
        return (maps > 0).mean(axis=(1, 2)).astype(np.float64)
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def patch_probabilities(maps: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Per-patch probability of "fake": N x h x w in [0, 1]."""
    return _sigmoid(maps.astype(np.float64) / temperature)


# --- metrics -----------------------------------------------------------------------------------

def _check_labels(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels, np.int64)
    if scores.shape != labels.shape or scores.ndim != 1:
        raise ValueError(f"scores {scores.shape} and labels {labels.shape} must be equal 1-D")
    if not ((labels == REAL).any() and (labels == FAKE).any()):
        raise ValueError("need at least one real (0) and one fake (1) image")
    return scores, labels


def expected_calibration_error(prob_fake: np.ndarray, labels: np.ndarray,
                               bins: int = ECE_BINS) -> float:
    """ECE of binary predictions: confidence = max(p, 1 - p) in ``bins`` equal-width bins over
    [0.5, 1]; sum over bins of (bin share) x |accuracy - mean confidence|. In [0, 0.5]."""
    p, y = _check_labels(prob_fake, labels)
    pred = (p > 0.5).astype(np.int64)
    conf = np.where(pred == FAKE, p, 1.0 - p)
    correct = (pred == y).astype(np.float64)
    edges = np.linspace(0.5, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            ece += sel.mean() * abs(correct[sel].mean() - conf[sel].mean())
    return float(ece)


def choose_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The threshold t maximising accuracy of "fake if score > t" on (balanced) validation
    scores; candidates are 0.5 and the midpoints between neighbouring distinct scores, and ties
    go to the candidate closest to 0.5 (the untuned default)."""
    s, y = _check_labels(scores, labels)
    u = np.unique(s)
    cands = np.unique(np.concatenate([[0.5], (u[:-1] + u[1:]) / 2, [u[0] - 1e-9]]))
    # Balanced accuracy, so the threshold does not drift towards a larger class.
    acc = np.array([((s[y == FAKE] > t).mean() + (s[y == REAL] <= t).mean()) / 2
                    for t in cands])
    best = np.flatnonzero(acc >= acc.max() - 1e-12)
    return float(cands[best[np.argmin(np.abs(cands[best] - 0.5))]])


def binary_metrics(scores: np.ndarray, labels: np.ndarray, *,
                   threshold: float = 0.5) -> dict[str, float]:
    """Metrics of image scores (fake = positive, label 1): ``ap``, ``ap_real_positive`` (the
    original code's convention), ``auc``, ``acc``/``real_acc``/``fake_acc`` at 0.5, and
    ``acc_at_threshold`` at ``threshold`` (chosen elsewhere, on validation data)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    s, y = _check_labels(scores, labels)
    pred = s > 0.5
    pred_t = s > threshold
    return {"n_real": int((y == REAL).sum()), "n_fake": int((y == FAKE).sum()),
            "ap": float(average_precision_score(y, s)),
            "ap_real_positive": float(average_precision_score(1 - y, -s)),
            "auc": float(roc_auc_score(y, s)),
            "acc": float((pred == y).mean()),
            "real_acc": float((~pred[y == REAL]).mean()),
            "fake_acc": float(pred[y == FAKE].mean()),
            "threshold": float(threshold),
            "acc_at_threshold": float((pred_t == y).mean())}


def fit_temperature(maps: np.ndarray, labels: np.ndarray, mode: str = "mean_softmax") -> float:
    """Temperature T > 0 minimising the image-level negative log-likelihood of
    ``scores_from_maps(maps, mode, T)`` against ``labels`` (0 real, 1 fake); 1.0 for ``vote``.

    The targets are Platt's (1999) smoothed labels, (N+ + 1) / (N+ + 2) for fakes and
    1 / (N- + 2) for reals: on a perfectly separated validation split (common here: val
    accuracy is often 1.0) plain maximum likelihood drives T to 0 and every probability to 0 or
    1. Searched over log T in [-5, 6] (T from 0.007 to 400)."""
    from scipy.optimize import minimize_scalar

    labels = np.asarray(labels, np.int64)
    _check_labels(np.zeros(len(labels)), labels)
    if mode == "vote":
        return 1.0
    n_pos, n_neg = int((labels == FAKE).sum()), int((labels == REAL).sum())
    target = np.where(labels == FAKE, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))

    def nll(log_t: float) -> float:
        p = np.clip(scores_from_maps(maps, mode, float(np.exp(log_t))), 1e-12, 1 - 1e-12)
        return float(-np.mean(target * np.log(p) + (1 - target) * np.log(1 - p)))

    res = minimize_scalar(nll, bounds=(-5.0, 6.0), method="bounded",
                          options={"xatol": 1e-4})
    return float(np.exp(res.x))


# --- checkpoints, their validation data and calibration --------------------------------------

@dataclass
class Calibration:
    """Per-mode temperature and decision threshold, fitted on a validation split."""

    temperature: dict[str, float]  # mode -> T (1.0 for vote)
    threshold: dict[str, float]  # mode -> threshold on the *raw* score, from validation
    ece_val: dict[str, float]  # mode -> validation ECE before calibration
    ece_val_calibrated: dict[str, float]  # mode -> validation ECE after
    checkpoint_sha256: str = ""  # the best.pt these numbers belong to
    val: dict[str, Any] = field(default_factory=dict)  # folders and counts it was fitted on

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fit_calibration(val_real: np.ndarray, val_fake: np.ndarray,
                    modes: Sequence[str] = MODES) -> Calibration:
    """Fit :class:`Calibration` from validation logit-difference maps of reals and fakes
    (each N x h x w)."""
    maps = np.concatenate([val_real, val_fake])
    y = np.r_[np.full(len(val_real), REAL), np.full(len(val_fake), FAKE)]
    temp, thr, before, after = {}, {}, {}, {}
    for mode in modes:
        temp[mode] = fit_temperature(maps, y, mode)
        raw = scores_from_maps(maps, mode)
        thr[mode] = choose_threshold(raw, y)
        before[mode] = expected_calibration_error(raw, y)
        after[mode] = expected_calibration_error(scores_from_maps(maps, mode, temp[mode]), y)
    return Calibration(temp, thr, before, after)


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


def _resolve_recorded(folder: str) -> Path | None:
    """A dataset folder as recorded by ``train.data_record`` (relative to the data dir or the
    project root, or absolute), if it still exists."""
    p = Path(folder)
    for cand in ([p] if p.is_absolute() else [paths.data_dir() / p, paths.root() / p]):
        if cand.is_dir():
            return cand
    return None


def run_path(run: str | os.PathLike) -> Path:
    """A run folder or checkpoint as given, or below ``paths.checkpoints_dir()`` when it is
    relative and not found as given (``find_runs`` and ``train_grid`` record runs that way)."""
    p = Path(run)
    if p.is_absolute() or p.exists():
        return p
    return paths.checkpoints_dir() / p


def load_checkpoint(ckpt: str | os.PathLike, *, device: Device = None) -> Checkpoint:
    """A classifier from a run folder or its ``best.pt``, with its training image size and data
    folders (from the run's ``config.json`` when present). Raises ``FileNotFoundError`` or
    ``ValueError`` with the file's name when it is missing or not a patchforensics checkpoint."""
    path = run_path(ckpt)
    if path.is_dir():
        path = path / "best.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint (give a run folder or its best.pt)")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a bad file
        raise ValueError(f"{path}: cannot be read as a checkpoint ({type(err).__name__}: "
                         f"{str(err).strip().splitlines()[0]})") from err
    if not isinstance(raw, dict) or "model_config" not in raw:
        raise ValueError(f"{path}: not a patchforensics classifier checkpoint")
    model = classifier_from_state(raw, device=resolve_device(device))  # loaded once
    config_path = path.parent / "config.json"
    cfg = json.loads(config_path.read_text()) if config_path.exists() else {}
    data = cfg.get("data", {})
    real = _resolve_recorded(data["real"]["dir"]) if "real" in data else None
    fake = _resolve_recorded(data["fake"]["dir"]) if "fake" in data else None
    size = raw.get("input_size")
    if size is None and real is not None:
        size = load_folder(real / "val", limit=1)[0].shape[1]
    if size is None:
        raise ValueError(f"{path}: the checkpoint does not say its training image size and "
                         "its training data cannot be found; give the size explicitly")
    return Checkpoint(path, path.parent, model, int(size), real, fake,
                      cfg.get("config", {}).get("seed"), model.config.name)


def calibration(ck: Checkpoint, *, val_real: str | os.PathLike | None = None,
                val_fake: str | os.PathLike | None = None, device: Device = None,
                save: bool = True) -> Calibration | None:
    """The checkpoint's :class:`Calibration`: read from ``calibration.json`` in its run folder
    when that matches ``best.pt``, else fitted on the validation split of the data it was trained
    on (or on ``val_real``/``val_fake`` folders of images) and saved there. ``None`` when no
    validation data is known."""
    sha = sha256_file(ck.path)
    cache = ck.run_dir / "calibration.json"
    explicit = val_real is not None or val_fake is not None
    if cache.exists() and not explicit:
        cal = Calibration(**json.loads(cache.read_text()))
        if cal.checkpoint_sha256 == sha:
            return cal
    if explicit:
        if val_real is None or val_fake is None:
            raise ValueError("give both val_real and val_fake, or neither")
        real_dir, fake_dir = Path(val_real), Path(val_fake)
    elif ck.train_real is not None and ck.train_fake is not None:
        real_dir, fake_dir = ck.train_real / "val", ck.train_fake / "val"
    else:
        return None
    maps = {k: logit_maps(ck.model, load_folder(d)[0], device=device)
            for k, d in (("real", real_dir), ("fake", fake_dir))}
    cal = fit_calibration(maps["real"], maps["fake"])
    cal.checkpoint_sha256 = sha
    cal.val = {"real": Path(real_dir).as_posix(), "fake": Path(fake_dir).as_posix(),
               "n_real": len(maps["real"]), "n_fake": len(maps["fake"])}
    if save and not explicit:
        atomic_write_text(cache, json.dumps(cal.to_dict(), indent=1))
    return cal


# --- evaluating sets ---------------------------------------------------------------------------

def evaluate_maps(real: np.ndarray, fakes: dict[str, np.ndarray], cal: Calibration | None, *,
                  modes: Sequence[str] = MODES) -> pd.DataFrame:
    """One row per (fake set, mode) from logit-difference maps of the reals and of each fake
    set: :func:`binary_metrics`, the threshold and temperature from ``cal`` (0.5 and 1.0
    without), and ECE before and after temperature scaling."""
    rows = []
    for name, fake in fakes.items():
        maps = np.concatenate([real, fake])
        y = np.r_[np.full(len(real), REAL), np.full(len(fake), FAKE)]
        for mode in modes:
            t = cal.temperature[mode] if cal else 1.0
            raw = scores_from_maps(maps, mode)
            row = {"fake_set": name, "mode": mode,
                   **binary_metrics(raw, y, threshold=cal.threshold[mode] if cal else 0.5),
                   "temperature": t, "ece": expected_calibration_error(raw, y),
                   "ece_calibrated": expected_calibration_error(
                       scores_from_maps(maps, mode, t), y)}
            rows.append(row)
    return pd.DataFrame(rows)


def _load_images(folder: str | os.PathLike, size: int) -> np.ndarray:
    images, _, skipped = load_folder(folder, on_error="skip")
    if skipped:
        first = next(iter(skipped.items()))
        raise ValueError(f"{folder}: {len(skipped)} unreadable file(s), e.g. {first[0]}: "
                         f"{first[1]}")
    if images.shape[1] != size:
        raise ValueError(f"{folder}: images are {images.shape[2]}x{images.shape[1]} but the "
                         f"classifier was trained on {size}x{size}; prepare them with "
                         f"`patchforensics import --size {size}` first")
    return images


def _inside(folder: str | os.PathLike, parent: Path | None) -> bool:
    if parent is None:
        return False
    f, p = Path(folder).resolve(), parent.resolve()
    return f == p or p in f.parents


def _check_not_swapped(ck: Checkpoint, real_dir: str | os.PathLike,
                       fake_dirs: dict[str, str | os.PathLike]) -> None:
    """Refuse a real folder inside the checkpoint's training *fake* dataset, or a fake folder
    inside its training *real* dataset: the folders are surely swapped."""
    if _inside(real_dir, ck.train_fake):
        raise ValueError(f"{real_dir}: is part of the fake dataset this classifier was trained "
                         f"on ({ck.train_fake}); are --real and --fake swapped?")
    for name, folder in fake_dirs.items():
        if _inside(folder, ck.train_real):
            raise ValueError(f"{folder}: the fake set {name!r} is part of the real dataset this "
                             f"classifier was trained on ({ck.train_real}); are --real and "
                             "--fake swapped?")


def evaluate(ckpt: str | os.PathLike, real_dir: str | os.PathLike,
             fake_dirs: dict[str, str | os.PathLike], *, modes: Sequence[str] = MODES,
             val_real: str | os.PathLike | None = None,
             val_fake: str | os.PathLike | None = None,
             device: Device = None) -> pd.DataFrame:
    """Evaluate one checkpoint on a folder of reals and named folders of fakes (prepared images
    of the training size, directly in each folder). One row per (fake set, mode); columns of
    :func:`evaluate_maps` plus ``model``, ``checkpoint``, ``calibrated_on``."""
    ck = load_checkpoint(ckpt, device=device)
    names = list(fake_dirs)
    for folder in [real_dir, *fake_dirs.values()]:
        if not Path(folder).is_dir():
            raise NotADirectoryError(f"{folder}: no such folder")
    for name in names:
        if Path(fake_dirs[name]).resolve() == Path(real_dir).resolve():
            raise ValueError(f"{fake_dirs[name]}: the fake set {name!r} is the real folder")
    _check_not_swapped(ck, real_dir, fake_dirs)
    cal = calibration(ck, val_real=val_real, val_fake=val_fake, device=device)
    real = logit_maps(ck.model, _load_images(real_dir, ck.input_size), device=device)
    fakes = {n: logit_maps(ck.model, _load_images(fake_dirs[n], ck.input_size), device=device)
             for n in names}
    table = evaluate_maps(real, fakes, cal, modes=modes)
    table.insert(0, "model", ck.name)
    table["checkpoint"] = ck.path.as_posix()
    table["calibrated_on"] = "val of training data" if cal and not val_real else \
        ("given val folders" if cal else "none (threshold 0.5, T = 1)")
    return table


def world_sets(world_root: str | os.PathLike,
               datasets: Sequence[str] | None = None) -> dict[str, list[str]]:
    """``{dataset: [generator, ...]}`` of a built world (from its manifest)."""
    from .embedded import read_manifest

    sets: dict[str, list[str]] = {}
    for key in sorted(read_manifest(Path(world_root))["sets"]):
        parts = key.split("/")
        if parts[0] == "fake" and (datasets is None or parts[1] in datasets):
            sets.setdefault(parts[1], []).append(parts[2])
    return sets


def cross_generator(runs: dict[str, str | os.PathLike], world_root: str | os.PathLike, *,
                    split: str = "test", datasets: Sequence[str] | None = None,
                    modes: Sequence[str] = MODES, device: Device = None,
                    progress: bool = True) -> pd.DataFrame:
    """Every checkpoint against every real/fake pair of a world's ``split``.

    ``runs``: ``{label: run folder}`` (relative folders are below ``paths.checkpoints_dir()``).
    One row per (checkpoint, dataset, generator, mode) with the columns of :func:`evaluate_maps`
    plus ``model``, ``arch``, ``depth``, ``rf_px``, ``seed``, ``train_set`` and ``seen`` (the
    pair the checkpoint was trained on). Threshold and temperature come from each checkpoint's
    validation split."""
    from tqdm.auto import tqdm

    from .receptive_field import receptive_field

    root = Path(world_root)
    sets = world_sets(root, datasets)
    cache: dict[str, np.ndarray] = {}

    def images(key: str) -> np.ndarray:
        if key not in cache:
            cache[key] = load_folder(root / key / split)[0]
        return cache[key]

    tables = []
    for label, run in tqdm(list(runs.items()), desc="cross-generator", disable=not progress):
        ck = load_checkpoint(run, device=device)
        cal = calibration(ck, device=device)
        train_set = "/".join(ck.train_fake.parts[-2:]) if ck.train_fake else ""
        rf = receptive_field(ck.model.config, ck.input_size)
        for dataset, gens in sets.items():
            real = logit_maps(ck.model, images(f"real/{dataset}"), device=device)
            fakes = {g: logit_maps(ck.model, images(f"fake/{dataset}/{g}"), device=device)
                     for g in gens}
            t = evaluate_maps(real, fakes, cal, modes=modes).rename(
                columns={"fake_set": "generator"})
            t.insert(0, "dataset", dataset)
            t.insert(0, "label", label)
            t.insert(1, "model", ck.name)
            t.insert(2, "arch", ck.model.config.arch)
            t.insert(3, "depth", ck.model.config.depth)
            t.insert(4, "rf_px", rf.size)
            t.insert(5, "seed", ck.seed)
            t.insert(6, "train_set", train_set)
            t["seen"] = [f"{dataset}/{g}" == train_set for g in t["generator"]]
            tables.append(t)
    return pd.concat(tables, ignore_index=True)


# --- robustness ------------------------------------------------------------------------------

def degrade(images: np.ndarray, kind: str, value: float) -> np.ndarray:
    """A test-time degradation of N x S x S x 3 uint8 images (same shape back): ``jpeg``
    (quality ``value``), ``blur`` (Gaussian, sigma ``value`` px; 0 = identity) or ``resize``
    (bicubic down to round(value * S) px and back up; 1 = identity)."""
    if kind not in SWEEPS:
        raise ValueError(f"kind must be one of {tuple(SWEEPS)}, got {kind!r}")
    if (kind == "blur" and value == 0) or (kind == "resize" and value == 1):
        return images.copy()
    out = np.empty_like(images)
    side = images.shape[1]
    for i, arr in enumerate(images):
        im = Image.fromarray(arr)
        if kind == "jpeg":
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=int(value))
            im = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
        elif kind == "blur":
            im = im.filter(ImageFilter.GaussianBlur(radius=float(value)))
        else:
            small = max(1, round(value * side))
            im = im.resize((small, small), Image.Resampling.BICUBIC).resize(
                (side, side), Image.Resampling.BICUBIC)
        out[i] = np.asarray(im)
    return out


def robustness(runs: dict[str, str | os.PathLike], real: np.ndarray, fake: np.ndarray, *,
               sweeps: dict[str, Iterable[float]] | None = None, mode: str = "mean_softmax",
               device: Device = None, progress: bool = True) -> pd.DataFrame:
    """AP and accuracy of every checkpoint under each degradation of ``sweeps`` (default
    ``SWEEPS``), applied to the real and the fake images (N x S x S x 3 uint8) alike. One row per
    (run, kind, value) with ``label``, ``model``, ``seed``, ``ap``, ``auc``, ``acc``; the clean
    score is the row with ``kind == "none"``."""
    from tqdm.auto import tqdm

    sweeps = {k: tuple(v) for k, v in (sweeps or SWEEPS).items()}
    y = np.r_[np.full(len(real), REAL), np.full(len(fake), FAKE)]
    both = np.concatenate([real, fake])
    variants = {("none", 0.0): both}
    for kind, values in sweeps.items():
        for v in values:
            variants[(kind, float(v))] = degrade(both, kind, v)
    rows = []
    for label, run in tqdm(list(runs.items()), desc="robustness", disable=not progress):
        ck = load_checkpoint(run, device=device)
        for (kind, value), imgs in variants.items():
            s = scores_from_maps(logit_maps(ck.model, imgs, device=device), mode)
            m = binary_metrics(s, y)
            rows.append({"label": label, "model": ck.name, "seed": ck.seed, "kind": kind,
                         "value": value, "ap": m["ap"], "auc": m["auc"], "acc": m["acc"]})
    return pd.DataFrame(rows)


# --- the written reading (notebook 03) ---------------------------------------------------------

def depth_summary(table: pd.DataFrame, *, mode: str = "mean_softmax",
                  arch: str = "xception") -> pd.DataFrame:
    """Mean AP per depth of ``arch`` over the seen pair and over the unseen generators of the
    training dataset, from a :func:`cross_generator` table; rows in depth order."""
    from .models import DEPTHS

    t = table[(table["mode"] == mode) & (table["arch"] == arch)]
    train_dataset = t["train_set"].str.split("/").str[0]
    same = t[t["dataset"] == train_dataset]
    out = same.groupby(["depth", "seen"])["ap"].mean().unstack("seen")
    out = out.rename(columns={True: "ap_seen", False: "ap_unseen"})
    out["rf_px"] = t.groupby("depth")["rf_px"].first()
    other = t[t["dataset"] != train_dataset].groupby("depth")["ap"].mean()
    out["ap_other_dataset"] = other
    return out.reindex([d for d in DEPTHS[arch] if d in out.index])


def reading(table: pd.DataFrame, *, mode: str = "mean_softmax",
            paper: pd.DataFrame | None = None) -> str:
    """A short markdown reading of a cross-generator table next to the paper's claim that
    smaller receptive fields generalise better to unseen generators; every number is computed
    from ``table`` (and ``paper``: the AP-by-block figure, rows = test sets). Verdicts use
    Spearman's rho between receptive field and AP over the Xception patch models: below -0.3
    agrees, above +0.3 disagrees; a test set on which no depth reaches AP 0.7 is "not detected"
    whatever the trend."""
    from scipy.stats import spearmanr

    def verdict(rf: pd.Series, ap: pd.Series) -> tuple[float, str]:
        if len(ap) < 3 or ap.nunique() < 2:
            return float("nan"), "too few depths for a trend"
        rho = float(spearmanr(rf, ap).statistic)
        if ap.max() < 0.7:
            return rho, "not detected at any depth"
        return rho, "agrees" if rho < -0.3 else "disagrees" if rho > 0.3 else "no clear trend"

    s = depth_summary(table, mode=mode)
    patch = s.drop(index="full", errors="ignore").dropna(subset=["ap_unseen"])
    lines = [f"**Unseen generators, {mode}, Xception** (mean AP over the training dataset's "
             "other generators, fake = positive; seen pair in brackets):"]
    lines += [f"- {d} ({'full image' if d == 'full' else f'{int(r.rf_px)} px'}): "
              f"{r.ap_unseen:.3f} ({r.ap_seen:.3f})" for d, r in s.iterrows()]
    rho, word = verdict(patch["rf_px"], patch["ap_unseen"])
    if np.isfinite(rho):
        claim = "'smaller receptive fields generalise better'"
        says = {"agrees": f"agrees with {claim}", "disagrees": f"contradicts {claim}",
                "no clear trend": f"shows no clear trend for {claim}",
                "not detected at any depth": f"cannot test {claim}: no depth reaches AP 0.7 "
                                             "on average"}[word]
        lines.append(f"\nOn the mean over unseen generators, Spearman's rho between receptive "
                     f"field and AP is {rho:+.2f} (best: {patch['ap_unseen'].idxmax()}); our "
                     f"world **{says}**.")
    t = table[(table["mode"] == mode) & (table["arch"] == "xception") & ~table["seen"]]
    lines.append("\nPer unseen test set (AP by depth, shallow to deep, then the full model):")
    for (dataset, gen), g in t.groupby(["dataset", "generator"], sort=True):
        g = g.groupby("depth").agg(ap=("ap", "mean"), rf=("rf_px", "first"))
        order = [d for d in s.index if d in g.index]
        g = g.reindex(order)
        cut = g.drop(index="full", errors="ignore")
        rho, word = verdict(cut["rf"], cut["ap"])
        full = f", full {g.loc['full', 'ap']:.2f}" if "full" in g.index else ""
        trend = f"rho {rho:+.2f}: {word}" if np.isfinite(rho) else word
        lines.append(f"- {dataset}/{gen}: " + " ".join(f"{v:.2f}" for v in cut["ap"])
                     + f"{full}; {trend}")
    if "full" in s.index and len(patch):
        gap = patch["ap_unseen"].max() - s.loc["full", "ap_unseen"]
        lines.append(f"\nThe best patch model beats the full-image baseline on unseen "
                     f"generators by {gap:+.3f} AP.")
    if paper is not None:
        cols = [c for c in paper.columns if c.startswith("block") or c == "full"]
        unseen = paper.drop(index=[i for i in paper.index if i.endswith("pgan")], errors="ignore")
        means = unseen[cols].mean() / 100
        lines.append("\nThe paper (AP read off its figure, real = positive, mean over its unseen "
                     "test sets): " + ", ".join(f"{c} {v:.3f}" for c, v in means.items()) + ".")
    return "\n".join(lines)


def save_csv(frame: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a table atomically (``index=False``)."""
    path = Path(path)
    atomic_write_text(path, frame.to_csv(index=False))
    return path


def save_world_table(frame: pd.DataFrame, base: str, world: str) -> Path:
    """``results/tables/<table_name(base, world)>.csv`` (index kept as columns)."""
    named = frame.index.names != [None]
    return save_csv(frame.reset_index() if named else frame,
                    paths.tables_dir() / f"{table_name(base, world)}.csv")


# --- scoring arbitrary images (``patchforensics score``) ---------------------------------------

def expand_inputs(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """Files and folders (searched recursively) -> image files, in the given order; a path
    that does not exist raises ``FileNotFoundError``."""
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out.extend(list_images(p, recursive=True))
        elif p.is_file():
            out.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    return out


def score_files(ckpt: str | os.PathLike, inputs: Sequence[str | os.PathLike], *,
                mode: str = "mean_softmax", heatmaps: str | os.PathLike | None = None,
                strict: bool = False, batch_size: int = 64, device: Device = None,
                progress: bool = True,
                on_skip: Callable[[Path, str], None] | None = None) -> pd.DataFrame:
    """Score images of any size, format and mode with a checkpoint.

    Each file goes through the training pipeline (``preprocess.prepare_array``: centre square,
    LANCZOS to the training size). One row per file: ``prob_fake`` (temperature-calibrated when
    the run has a calibration, else equal to ``score``), ``score`` (raw image score of ``mode``),
    the most suspicious patch's box in the *original* image's pixels (``box_top``, ``box_left``,
    ``box_bottom``, ``box_right``, half-open, after EXIF rotation), and ``error`` (empty unless
    the file was skipped). A bad file is skipped and reported through ``on_skip(path, problem)``
    unless ``strict``, which raises its ``ImageError``. ``heatmaps``: a folder to write one
    ``<name>.heatmap.png`` per image (the image with its patch map overlaid)."""
    from tqdm.auto import tqdm

    from .images import ImageError, read_image
    from .preprocess import prepare_array
    from .receptive_field import receptive_field
    from .viz import heatmap_overlay, project_map

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    files = expand_inputs(inputs)
    if not files:
        raise ValueError(f"no images found in {[str(i) for i in inputs]}")
    ck = load_checkpoint(ckpt, device=device)
    cal = calibration(ck, device=device)
    temp = cal.temperature[mode] if cal else 1.0
    size = ck.input_size
    rf = receptive_field(ck.model.config, size)
    out_dir = Path(heatmaps) if heatmaps is not None else None
    used_names: set[str] = set()
    rows: list[dict[str, Any]] = []
    bar = tqdm(total=len(files), desc="score", unit="img", disable=not progress)

    def flush(batch: list[tuple[Path, np.ndarray, tuple[int, int, int]]]) -> None:
        maps = logit_maps(ck.model, np.stack([b[1] for b in batch]), device=device,
                          batch_size=batch_size)
        raw = scores_from_maps(maps, mode)
        cal_p = scores_from_maps(maps, mode, temp)
        probs = patch_probabilities(maps, temp)
        for (f, img, (top, left, side)), m, s, p, pm in zip(batch, maps, raw, cal_p, probs,
                                                            strict=True):
            i, j = np.unravel_index(int(np.argmax(m)), m.shape)
            r0, c0, r1, c1 = rf.box(int(i), int(j))
            k = side / size  # original px per prepared px
            rows.append({"path": f.as_posix(), "prob_fake": float(p), "score": float(s),
                         "mode": mode, "temperature": temp, "calibrated": cal is not None,
                         "box_top": top + int(np.floor(r0 * k)),
                         "box_left": left + int(np.floor(c0 * k)),
                         "box_bottom": top + int(np.ceil(r1 * k)),
                         "box_right": left + int(np.ceil(c1 * k)), "error": ""})
            if out_dir is not None:
                name = f.stem
                while name in used_names:
                    name += "_"
                used_names.add(name)
                png = heatmap_overlay(img, project_map(pm, rf), box=rf.box(int(i), int(j)))
                buf = io.BytesIO()
                Image.fromarray(png).save(buf, format="PNG")
                atomic_write_bytes(out_dir / f"{name}.heatmap.png", buf.getvalue())
        bar.update(len(batch))

    batch: list[tuple[Path, np.ndarray, tuple[int, int, int]]] = []
    for f in files:
        try:
            arr, _ = read_image(f)
        except ImageError as err:
            if strict:
                bar.close()
                raise
            rows.append({"path": f.as_posix(), "error": err.problem})
            if on_skip is not None:
                on_skip(f, err.problem)
            bar.update(1)
            continue
        h, w = arr.shape[:2]
        side = min(h, w)  # prepare_array's centre square: offset and side in original px
        batch.append((f, prepare_array(arr, size), ((h - side) // 2, (w - side) // 2, side)))
        if len(batch) == batch_size:
            flush(batch)
            batch = []
    if batch:
        flush(batch)
    bar.close()
    order = {f.as_posix(): n for n, f in enumerate(files)}
    frame = pd.DataFrame(rows)
    frame = frame.iloc[np.argsort([order[p] for p in frame["path"]], kind="stable")]
    return frame.reset_index(drop=True)


# --- notebook 03 helpers ---------------------------------------------------------------------

SMOKE_SWEEPS: dict[str, tuple[float, ...]] = {"jpeg": (75, 30), "blur": (0.0, 1.5),
                                              "resize": (1.0, 0.5)}


def table_name(base: str, world: str) -> str:
    """``base`` for the default world (``default64``), ``base_<world>`` for any other, so a
    smoke run never overwrites a default run's table."""
    return base if world == "default64" else f"{base}_{world}"


def find_runs(run_root: str | os.PathLike, seed: int = 0) -> dict[str, str]:
    """``{model name: run folder}`` of the finished runs of ``seed`` below ``run_root`` (as
    notebook 02 writes them; folders relative to ``paths.checkpoints_dir()`` when below it),
    Xception before ResNet-18, shallow before deep. ``FileNotFoundError`` when there are none."""
    from .models import DEPTHS

    root = Path(run_root)
    found = {}
    for done in root.glob(f"*_seed{seed}/done.json"):
        name = done.parent.name.removesuffix(f"_seed{seed}")
        try:
            found[name] = done.parent.resolve().relative_to(
                paths.checkpoints_dir().resolve()).as_posix()
        except ValueError:
            found[name] = done.parent.resolve().as_posix()
    if not found:
        raise FileNotFoundError(f"{root}: no finished classifier runs of seed {seed}; run "
                                "notebook 02 first (patchforensics reproduce --only 02)")
    order = [f"{a}_{d}" for a in DEPTHS for d in DEPTHS[a]]
    return {k: found[k] for k in sorted(found, key=lambda k: order.index(k)
                                        if k in order else len(order))}


def run_setup(run: str | os.PathLike) -> tuple[Any, Path, Path]:
    """``(TrainConfig, real dataset folder, fake dataset folder)`` a finished or running
    classifier run was trained with (from its ``config.json``); ``FileNotFoundError`` when
    its data is gone."""
    from .config import from_dict
    from .train import TrainConfig

    run = run_path(run)
    cfg_json = json.loads((run / "config.json").read_text())
    real = _resolve_recorded(cfg_json["data"]["real"]["dir"])
    fake = _resolve_recorded(cfg_json["data"]["fake"]["dir"])
    if real is None or fake is None:
        raise FileNotFoundError(f"{run}: its training data ({cfg_json['data']['real']['dir']}, "
                                f"{cfg_json['data']['fake']['dir']}) is gone")
    return from_dict(TrainConfig, cfg_json["config"]), real, fake


def require_models(runs: dict[str, Any], names: Sequence[str]) -> None:
    """``ValueError`` naming the models of ``names`` that ``runs`` (from :func:`find_runs`)
    lacks, and the ones it has: a notebook parameter naming an untrained model fails at once."""
    missing = [n for n in names if n not in runs]
    if missing:
        raise ValueError(f"notebook 02 trained no {missing}; it has {list(runs)}")


def seed_runs(run: str | os.PathLike, seeds: Sequence[int], *, device: str | None = None,
              progress: bool = True) -> dict[str, str]:
    """The run's exact configuration trained with each of ``seeds`` (finished runs are skipped,
    the run itself is reused for its own seed), in sibling folders ``<arch>_<depth>_seed<k>``.
    Returns ``{"<model> seed<k>": run folder}``."""
    from .config import from_dict, to_dict
    from .train import TrainConfig, train

    base, real, fake = run_setup(run)
    out = {}
    for seed in seeds:
        cfg = from_dict(TrainConfig, {**to_dict(base), "seed": int(seed)})
        res = train(cfg, real, fake, run_path(run).parent / cfg.run_name(), device=device,
                    progress=progress)
        out[f"{cfg.arch}_{cfg.depth} seed{seed}"] = res.out_dir.as_posix()
    return out


def set_maps(ckpt: str | os.PathLike, world_root: str | os.PathLike, dataset: str, *,
             split: str = "test", device: Device = None
             ) -> tuple[Checkpoint, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``(checkpoint, {set: images}, {set: logit-difference maps})`` for the reals (``"real"``)
    and every generator of ``dataset`` in a world's ``split``."""
    root = Path(world_root)
    ck = load_checkpoint(ckpt, device=device)
    keys = {"real": f"real/{dataset}"} | {g: f"fake/{dataset}/{g}"
                                          for g in world_sets(root, [dataset]).get(dataset, [])}
    images = {name: load_folder(root / key / split)[0] for name, key in keys.items()}
    maps = {name: logit_maps(ck.model, im, device=device) for name, im in images.items()}
    return ck, images, maps


def paper_ap_by_block() -> pd.DataFrame:
    """The paper's AP (%) per test set and Xception depth, read off its figure (approximate,
    real = positive); rows = test sets. From ``results/reference/paper_ap_by_block.csv``."""
    return pd.read_csv(paths.reference_dir() / "paper_ap_by_block.csv", comment="#",
                       index_col="test_set")


def ap_pivot(table: pd.DataFrame, *, mode: str = "mean_softmax",
             metric: str = "ap") -> pd.DataFrame:
    """``metric`` of a :func:`cross_generator` table as models x test sets (rows in the table's
    model order; the training set's column first)."""
    t = table[table["mode"] == mode].assign(test_set=lambda f: f["dataset"] + "/" +
                                            f["generator"])
    pivot = t.pivot_table(index="label", columns="test_set", values=metric, aggfunc="mean")
    seen = t.loc[t["seen"], "test_set"].unique().tolist()
    cols = seen + [c for c in pivot.columns if c not in seen]
    return pivot.reindex(index=list(dict.fromkeys(t["label"])), columns=cols)


def calibration_table(runs: dict[str, str | os.PathLike], *,
                      device: Device = None) -> pd.DataFrame:
    """Per run and mode: temperature, validation threshold, and validation ECE before and after
    temperature scaling (from each run's :func:`calibration`)."""
    rows = []
    for label, run in runs.items():
        cal = calibration(load_checkpoint(run, device=device), device=device)
        if cal is None:
            continue
        for mode in cal.temperature:
            rows.append({"model": label, "mode": mode, "temperature": cal.temperature[mode],
                         "threshold": cal.threshold[mode], "ece_val": cal.ece_val[mode],
                         "ece_val_calibrated": cal.ece_val_calibrated[mode]})
    return pd.DataFrame(rows).set_index(["model", "mode"])


def stack_pair(images: dict[str, np.ndarray], maps: dict[str, np.ndarray],
               fake: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(images, maps, labels)`` of the reals (``"real"``) followed by the ``fake`` set, from
    :func:`set_maps`'s dictionaries; labels 0 real, 1 fake."""
    labels = np.r_[np.full(len(images["real"]), REAL), np.full(len(images[fake]), FAKE)]
    return (np.concatenate([images["real"], images[fake]]),
            np.concatenate([maps["real"], maps[fake]]), labels)
