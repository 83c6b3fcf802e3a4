"""One checkpoint on arbitrary image files and folders: ``patchforensics score`` (a score and a
heatmap per file) and ``patchforensics evaluate`` (metrics of a real and a fake folder).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .checkpoint import (
    Checkpoint,
    Device,
    calibration,
    checkpoint_sha256,
    eval_precision,
    folder_maps,
    load_checkpoint,
    logit_maps,
)
from .data import load_folder
from .evaluate import evaluate_maps
from .images import ImageError, atomic_write_bytes, atomic_write_text, list_images, read_image
from .preprocess import prepare_array
from .progress import bar as progress_bar
from .receptive_field import box_to_original, receptive_field
from .score_modes import (
    MODES,
    calibrated_probability,
    log_odds_from_maps,
    patch_probabilities,
    scores_from_maps,
)
from .viz import heatmap_figure, png_bytes


def _load_images(folder: str | os.PathLike, size: int, recursive: bool = False) -> np.ndarray:
    images, _, skipped = load_folder(folder, on_error="skip", recursive=recursive)
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
                         f"on ({ck.train_fake}); are the real and fake folders swapped?")
    for name, folder in fake_dirs.items():
        if _inside(folder, ck.train_real):
            raise ValueError(f"{folder}: the fake set {name!r} is part of the real dataset this "
                             f"classifier was trained on ({ck.train_real}); are the real and "
                             "fake folders swapped?")


def evaluate(ckpt: str | os.PathLike, real_dir: str | os.PathLike,
             fake_dirs: dict[str, str | os.PathLike], *, modes: Sequence[str] = MODES,
             val_real: str | os.PathLike | None = None,
             val_fake: str | os.PathLike | None = None,
             device: Device = None, n_boot: int = 0, recursive: bool = True,
             input_size: int | None = None, load_size: int | None = None,
             fake_class_id: int | None = None) -> pd.DataFrame:
    """Evaluate one checkpoint on a folder of reals and named folders of fakes (prepared images
    of the training size, in each folder and, when ``recursive``, its subfolders; the
    validation folders are read flat). One row per (fake set, mode); columns of
    :func:`evaluate_maps` (with AUC intervals when ``n_boot`` > 0) plus ``model``,
    ``checkpoint``, ``calibrated_on``. ``input_size``, ``load_size``, ``fake_class_id``: see
    :func:`load_checkpoint` (the original authors' files)."""
    ck = load_checkpoint(ckpt, device=device, input_size=input_size, load_size=load_size,
                         fake_class_id=fake_class_id)
    names = list(fake_dirs)
    for folder in [real_dir, *fake_dirs.values()]:
        if not Path(folder).is_dir():
            raise NotADirectoryError(f"{folder}: no such folder")
    for name in names:
        if Path(fake_dirs[name]).resolve() == Path(real_dir).resolve():
            raise ValueError(f"{fake_dirs[name]}: the fake set {name!r} is the real folder")
    _check_not_swapped(ck, real_dir, fake_dirs)
    cal = calibration(ck, val_real=val_real, val_fake=val_fake, device=device)
    def load(folder: Path) -> np.ndarray:
        return _load_images(folder, ck.input_size, recursive)

    real = folder_maps(ck, real_dir, device=device, loader=load, recursive=recursive)
    fakes = {n: folder_maps(ck, fake_dirs[n], device=device, loader=load, recursive=recursive)
             for n in names}
    table = evaluate_maps(real, fakes, cal, modes=modes, n_boot=n_boot)
    table.insert(0, "model", ck.name)
    table["checkpoint"] = ck.path.as_posix()
    table["calibrated_on"] = "val of training data" if cal and not val_real else \
        ("given val folders" if cal else "none (threshold 0.5, T = 1)")
    return table


def input_files(inputs: Sequence[str | os.PathLike], *,
                recursive: bool = True) -> list[tuple[Path, str]]:
    """Files and folders (searched recursively unless not ``recursive``) -> ``(image file,
    name)`` pairs in the given
    order; ``name`` is the file's path relative to the folder it was found in (posix), or its
    file name when the file was given directly. A path that does not exist raises
    ``FileNotFoundError``."""
    out: list[tuple[Path, str]] = []
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    for item in inputs:
        if not isinstance(item, (str, os.PathLike)):  # a PIL image or an array
            raise ValueError(f"{type(item).__name__}: score_files takes files and folders; "
                             "score an image in memory with patchforensics.load(run).score(x)")
        p = Path(item)
        if p.is_dir():
            out.extend((f, f.relative_to(p).as_posix())
                       for f in list_images(p, recursive=recursive))
        elif p.is_file():
            out.append((p, p.name))
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    return out


HEATMAP_MARKER = "heatmaps.json"  # in a heatmap folder: which model drew it


def claim_heatmap_folder(folder: str | os.PathLike, ck: Checkpoint, *,
                         force: bool = False) -> Path:
    """Make ``folder`` this checkpoint's heatmap folder (:data:`HEATMAP_MARKER` records the
    checkpoint's SHA-256, path and model name) and return it. The same checkpoint may write
    into its own folder again. A folder that another checkpoint drew, or that holds files but
    no marker, raises ``FileExistsError`` naming it, unless ``force``, which first removes the
    ``*.heatmap.png`` files in it (so the folder holds one model's heatmaps only)."""
    out = Path(folder)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out}: is not a folder (--heatmaps needs a folder)")
    marker = out / HEATMAP_MARKER
    sha = checkpoint_sha256(ck.path)
    owner = None
    if marker.is_file():
        try:
            owner = json.loads(marker.read_text())
        except (OSError, ValueError):
            owner = {}
    if owner is not None and owner.get("checkpoint_sha256") == sha:
        return out
    foreign = owner is not None or (out.is_dir() and any(out.iterdir()))
    if foreign and not force:
        what = (f"holds the heatmaps of another model, {owner.get('model', '?')} "
                f"({owner.get('checkpoint', '?')})" if owner else
                f"holds other files and no {HEATMAP_MARKER}")
        raise FileExistsError(f"{out}: {what}; choose another --heatmaps folder or pass "
                              "--force to replace its heatmaps")
    if foreign:  # force: another model's heatmaps must not pass for this one's
        for old in out.rglob("*.heatmap.png"):
            old.unlink()
    atomic_write_text(marker, json.dumps({"checkpoint_sha256": sha, "model": ck.name,
                                          "checkpoint": ck.path.as_posix()}, indent=2) + "\n")
    return out


def score_files(ckpt: str | os.PathLike, inputs: Sequence[str | os.PathLike], *,
                mode: str = "mean_softmax", heatmaps: str | os.PathLike | None = None,
                force: bool = False, strict: bool = False, batch_size: int = 0,
                device: Device = None, progress: bool = True,
                on_skip: Callable[[Path, str], None] | None = None,
                recursive: bool = True, input_size: int | None = None,
                load_size: int | None = None,
                fake_class_id: int | None = None) -> pd.DataFrame:
    """Score images of any size, format and mode with a checkpoint (folders searched
    recursively unless not ``recursive``; ``input_size``/``load_size``/``fake_class_id``: see
    :func:`load_checkpoint`, for the original authors' files).

    Each file goes through the training pipeline (``preprocess.prepare_array``: centre square,
    LANCZOS to the training size). One row per file: ``prob_fake`` (:func:`calibrated_probability`
    when the run has a calibration, else equal to ``prob``; either way in the order of
    ``prob``), ``prob`` (raw image probability of ``mode``, :func:`scores_from_maps`; the name
    of the evaluation table's column, where ``score`` is the log-odds),
    the most suspicious patch's box in the *original* image's pixels (``box_top``, ``box_left``,
    ``box_bottom``, ``box_right``, half-open, after EXIF rotation), ``heatmap`` (the file's
    heatmap PNG, empty when none) and ``error`` (empty unless the file was skipped). A bad file
    is skipped and reported through ``on_skip(path, problem)`` unless ``strict``, which raises
    its ``ImageError``.

    ``heatmaps``: a folder for one ``viz.heatmap_figure`` per image (the original image and its
    overlay of the classifier's own, uncalibrated patch P(fake), :func:`patch_probabilities`;
    the box above outlined, colour bar, score, model), at the input's path relative to the
    folder it was found in (``sub/photo.jpg`` -> ``<heatmaps>/sub/photo.heatmap.png``; a file
    given directly: its name). The folder records the checkpoint
    (:func:`claim_heatmap_folder`): another model's folder raises ``FileExistsError`` unless
    ``force``. Files inside it are never scored as inputs."""

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    out_dir = Path(heatmaps) if heatmaps is not None else None
    named = _scored_inputs(inputs, recursive, out_dir)
    files = [f for f, _ in named]
    ck = load_checkpoint(ckpt, device=device, input_size=input_size, load_size=load_size,
                         fake_class_id=fake_class_id)
    if out_dir is not None:
        claim_heatmap_folder(out_dir, ck, force=force)
    cal = calibration(ck, device=device)
    scorer = _BatchScorer(ck, mode, cal.temperature[mode] if cal else 1.0, cal is not None,
                          device, batch_size, _HeatmapNames(out_dir) if out_dir else None)
    rows: list[dict[str, Any]] = []
    bar = progress_bar(total=len(files), desc="score", unit="img", disable=not progress)
    try:
        for batch in _batches(named, ck.input_size, out_dir is not None, batch_size or 64,
                              rows, strict, on_skip, bar):
            rows += scorer(batch)
            bar.update(len(batch))
    finally:
        bar.close()
    order = {f.as_posix(): n for n, f in enumerate(files)}
    frame = pd.DataFrame(rows)
    frame = frame.iloc[np.argsort([order[p] for p in frame["path"]], kind="stable")]
    return frame.reset_index(drop=True)


def _scored_inputs(inputs: Sequence[str | os.PathLike], recursive: bool,
                   heatmaps: Path | None) -> list[tuple[Path, str]]:
    """:func:`input_files` less the files inside the ``heatmaps`` folder (a last run's
    heatmaps are not inputs); ``ValueError`` when nothing is left."""
    named = input_files(inputs, recursive=recursive)
    if heatmaps is not None and heatmaps.is_dir():
        inside = heatmaps.resolve()
        named = [(f, n) for f, n in named if not f.resolve().is_relative_to(inside)]
    if not named:
        raise ValueError(f"no images found in {[str(i) for i in inputs]}")
    return named


def _batches(named: list[tuple[Path, str]], size: int, keep_originals: bool, per_batch: int,
             skipped: list[dict[str, Any]], strict: bool,
             on_skip: Callable[[Path, str], None] | None, bar: Any
             ) -> Iterator[list[tuple[Path, str, np.ndarray, np.ndarray]]]:
    """Groups of ``(path, name, original, prepared)`` images; an unreadable file raises when
    ``strict``, else becomes a row of ``skipped`` (and an ``on_skip`` call)."""
    batch: list[tuple[Path, str, np.ndarray, np.ndarray]] = []
    held = 0  # bytes of originals in the batch
    for f, name in named:
        try:
            arr, _ = read_image(f)
        except ImageError as err:
            if strict:
                raise
            skipped.append({"path": f.as_posix(), "heatmap": "", "error": err.problem})
            if on_skip is not None:
                on_skip(f, err.problem)
            bar.update(1)
            continue
        # The original stays in the batch only when a heatmap is drawn over it, and then
        # caps the group's decoded pixels: a folder of 12 MP photos must not hold 64 at once.
        keep = arr if keep_originals else np.empty(arr.shape[:2] + (0,), np.uint8)
        batch.append((f, name, keep, prepare_array(arr, size)))
        held += keep.size
        if len(batch) == per_batch or held > 2**28:  # files decoded per group
            yield batch
            batch, held = [], 0
    if batch:
        yield batch


class _HeatmapNames:
    """Heatmap paths below ``out_dir`` for inputs' relative names: two inputs may share a
    relative stem (photo.jpg and photo.png, or two folders), so later ones get _2, _3 ...; the
    CSV's heatmap column says which is whose."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir, self.used = out_dir, set()

    def __call__(self, name: str) -> Path:
        stem = name.rsplit(".", 1)[0] if "." in name.rsplit("/", 1)[-1] else name
        candidate, n = stem, 1
        while candidate.casefold() in self.used:
            n += 1
            candidate = f"{stem}_{n}"
        self.used.add(candidate.casefold())
        return self.out_dir / f"{candidate}.heatmap.png"


class _BatchScorer:
    """:func:`score_files`' rows of one batch of (path, name, original, prepared) images, and
    their heatmaps when ``heatmap_path`` is given."""

    def __init__(self, ck: Checkpoint, mode: str, temperature: float, calibrated: bool,
                 device: Device, batch_size: int,
                 heatmap_path: _HeatmapNames | None) -> None:
        self.ck, self.mode, self.temp, self.calibrated = ck, mode, temperature, calibrated
        self.device, self.batch_size, self.heatmap_path = device, batch_size, heatmap_path
        self.rf = receptive_field(ck.model.config, ck.input_size)

    def __call__(self, batch: list[tuple[Path, str, np.ndarray, np.ndarray]]
                 ) -> list[dict[str, Any]]:
        ck, mode = self.ck, self.mode
        maps = logit_maps(ck.model, np.stack([b[3] for b in batch]), device=self.device,
                          batch_size=self.batch_size, precision=eval_precision(ck, self.device))
        raw = scores_from_maps(maps, mode)
        cal_p = calibrated_probability(log_odds_from_maps(maps, mode), self.temp, mode)
        probs = patch_probabilities(maps)  # the classifier's own patch P(fake): see its doc
        rows = []
        for (f, name, source, _), m, s, p, pm in zip(batch, maps, raw, cal_p, probs,
                                                       strict=True):
            i, j = np.unravel_index(int(np.argmax(m)), m.shape)
            box = box_to_original(self.rf.box(int(i), int(j)), source.shape, ck.input_size)
            row = {"path": f.as_posix(), "prob_fake": float(p), "prob": float(s),
                   "mode": mode, "temperature": self.temp, "calibrated": self.calibrated,
                   "box_top": box[0], "box_left": box[1], "box_bottom": box[2],
                   "box_right": box[3], "heatmap": "", "error": ""}
            if self.heatmap_path is not None:
                target = self.heatmap_path(name)
                atomic_write_bytes(target, png_bytes(heatmap_figure(
                    source, pm, self.rf, score=float(p), model=ck.name, mode=mode, box=box)))
                row["heatmap"] = target.as_posix()
            rows.append(row)
        return rows
