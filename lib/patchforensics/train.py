"""Training a patch classifier on real vs. fake images of one generator (Chai et al. 2020,
Sec. 3.2 and the original code's ``train.py``).

Per-patch cross-entropy: the image label is broadcast to every cell of the N x 2 x h x w logit map.
Batches are balanced (half real, half fake: the paper's 16 + 16), Adam at lr 1e-3, random
horizontal flips (and, optionally, CNNDetection's blur + JPEG with probability p). After every
epoch the model is validated on per-patch accuracy (the early-stopping metric, as in the original)
and image accuracy (image score = mean patch softmax). The stopping rule is the original's: a
constant learning rate, stop when the validation per-patch accuracy has not improved for 50
(block1), 20 (block2) or 10 (deeper cuts and full models) epochs, or has reached 1.0; ``epochs``
caps the run (the original: 1000; the notebooks pass the cap their time budget allows, and
``done.json``/``history.csv`` record the epoch each model stopped at and why).

Training fakes (``TrainConfig.setting``): the paper's main classifiers saw the generator's
samples **plus its inversions of the real training images** (the original's
``inverted_and_unpaired`` sets), so content cannot separate the classes. With an inversions
folder, every batch's fake half holds the inversions of half of that batch's reals
(index-paired by file name, as the original's ``paired_dataset.py``) and samples for the rest;
``"samples"`` is the ablation. ``"paired"`` (notebook 07's manipulated faces) pairs each real
with the fake of its own name in the fake set itself (the face edited from it), the same way.
``crop`` trains fully convolutional patch models on random windows
of the (upsampled) images: the per-patch loss is the same for every window a cell sees, at a
fraction of the cost; validation and evaluation always see whole images.

A run folder (default ``paths.checkpoints_dir()/classifiers/<run name>``) holds:

- ``config.json``: train config, model config, data fingerprints (SHA-256 over the sorted file
  hashes of each split), world size, provenance;
- ``latest.pt``: weights, optimiser, epoch/step counters, early-stopping state and history,
  written atomically after every epoch (and every ``checkpoint_every`` steps), so a killed run
  resumes *exactly*: every random choice (batch order, flips, augmentation) is drawn from a
  generator seeded by (seed, epoch, step, rank), never from global RNG state;
- ``best.pt``: the weights of the best validation epoch (``models.load_classifier`` reads it);
- ``history.csv``: one row per epoch; ``done.json``: the summary that makes reruns skip the run.

Multi-GPU: launched with ``torchrun``, each process trains on its shard of every epoch's real and
fake order (``DistributedSampler``) with batch ``batch_size / world_size``, gradients averaged by
``DistributedDataParallel`` (NCCL on CUDA, gloo on CPU); rank 0 writes the files.
"""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from . import paths, runs
from .allocator import kept_heap
from .batches import (
    epoch_batches,
    epoch_order,
    load_split,
    pair_index,
    split_fingerprint,
    stream_splits,
    train_images,
    val_images,
)
from .config import fingerprint, to_dict
from .data import (
    FAKE,
    REAL,
    loader_workers,
)
from .distributed import Dist, all_sum, init_dist, sync_buffers
from .images import atomic_write_bytes, atomic_write_text, list_images
from .layout import inverted
from .models import (
    build_model,
    load_init,
)
from .progress import bar as progress_bar
from .provenance import run_record
from .train_config import FIT_SPLITS, TrainConfig
from .train_step import TrainStep, evaluate_split, patch_correct, training_step


@dataclass
class TrainResult:
    """What a run gives back; ``history`` has one row per epoch (see ``history.csv``)."""

    out_dir: Path  # the run folder
    best_epoch: int  # 1-based epoch of best.pt
    best: dict[str, float]  # validation metrics of best.pt
    history: pd.DataFrame  # per-epoch train/val metrics
    stopped: str  # why training ended: "epochs", "patience" or "perfect"
    skipped: bool = False  # True when a finished run was found and nothing was trained
    seconds: float = 0.0  # wall time of this call


# --- data -------------------------------------------------------------------------------------


# --- loss and metrics ---------------------------------------------------------------------------


# --- the training step --------------------------------------------------------------------------


# --- distributed --------------------------------------------------------------------------------


# --- checkpoints --------------------------------------------------------------------------------

def _save(obj: dict[str, Any], path: Path) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def inversions_dir(fake_dir: str | os.PathLike) -> Path:
    """The inversions set beside a generator's set: ``fake/<dataset>/<generator>_inverted``;
    raises naming the folder when the world has none (rebuild it with ``patchforensics
    world``)."""
    inv = Path(fake_dir).parent / inverted(Path(fake_dir).name)
    if not (inv / "train").is_dir():
        raise FileNotFoundError(f"{inv}: no inversions of the reals by {Path(fake_dir).name}; "
                                "the paper's setting trains on samples + inversions (build them "
                                "with `patchforensics world`), or use setting 'samples'")
    return inv


def data_record(real_dir: str | os.PathLike, fake_dir: str | os.PathLike,
                files: dict[str, dict[str, list[Path]]],
                inversions_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Folders, counts and fingerprints of the data a run trains and validates on."""
    out: dict[str, Any] = {}
    kinds = [("real", real_dir), ("fake", fake_dir)]
    if inversions_dir is not None:
        kinds.append(("inversions", inversions_dir))
    for kind, folder in kinds:
        out[kind] = {"dir": _portable(Path(folder))}
        for split in FIT_SPLITS:
            fl = files[kind][split]
            out[kind][split] = {"count": len(fl), "sha256": split_fingerprint(fl)}
    return out


def _portable(p: Path) -> str:
    """A path below the project root is recorded relative to it (tables stay portable)."""
    p = p.resolve()
    for base in (paths.data_dir(), paths.root()):
        try:
            return p.relative_to(base.resolve()).as_posix()
        except ValueError:
            continue
    return p.as_posix()


# --- the training loop --------------------------------------------------------------------------

def train(cfg: TrainConfig, real_dir: str | os.PathLike, fake_dir: str | os.PathLike,
          out_dir: str | os.PathLike | None = None, *, device: str | None = None,
          progress: bool = True, force: bool = False, channels_last: bool = True,
          checkpoint_every: int = 0,
          callback: Callable[[dict[str, Any]], None] | None = None,
          inversions_dir: str | os.PathLike | None = None,
          replace_stale: bool = False, stream: bool | None = None) -> TrainResult:
    """Train one patch classifier; resumes an interrupted run, skips a finished one.

    ``real_dir``/``fake_dir``: dataset folders holding ``train/`` and ``val/`` of prepared
    images of one size (``data/<world>/real/celeba``, ``data/<world>/fake/celeba/dcgan``).
    ``inversions_dir`` (required by ``setting="samples_inversions"``, refused otherwise): the
    generator's inversions of the reals (``fake/celeba/dcgan_inverted``), one per real image
    and named like it.
    ``out_dir`` defaults to ``runs.default_run_dir`` (``<checkpoints>/classifiers/<data
    root>/<dataset>_<generator>/<setting>/<arch>_<depth>[_in<N>]_seed<S>``, where notebooks
    find it too). What happens in a folder is ``runs.decide``'s: a finished run is skipped, an
    interrupted one resumes (saying at which epoch), a finished one continues when only the
    epoch cap was raised; a folder holding another run raises ``ValueError`` saying what
    differs, unless ``force`` (start over) or ``replace_stale`` (a protocol folder whose config
    changed: start over, printing what differs; notebooks and ``train_grid`` use it). Real and
    fake folders given the wrong way round are refused when the data root says which is real.
    ``device``: "cpu", "cuda", "cuda:1"; default CUDA when present. ``channels_last`` is the
    faster memory layout on CPU and GPU alike. ``checkpoint_every``: also write ``latest.pt``
    every N steps within an epoch (for long epochs; 0 = after each epoch only). ``stream``:
    decode images from disk through DataLoader workers (True), hold them in memory (False), or
    stream each split larger than ``data.stream_threshold()`` bytes decoded (None); the batches
    are the same either way. None of these changes the result, so none is part of the config.
    ``callback(info)`` is called after every step (``info["event"] == "step"``) and epoch
    (``"epoch"``, with the metrics); an exception it raises interrupts training like a kill
    would (the run resumes later).
    """
    t_start = time.perf_counter()
    d, dev = init_dist(device)
    try:
        with kept_heap():  # steps reuse freed pages instead of faulting in fresh ones
            return _train(cfg, Path(real_dir), Path(fake_dir),
                          Path(out_dir) if out_dir
                          else runs.default_run_dir(cfg, real_dir, fake_dir),
                          d, dev, progress, force, channels_last, checkpoint_every, callback,
                          t_start, Path(inversions_dir) if inversions_dir else None,
                          replace_stale, stream)
    finally:
        if d.owns_group:
            dist.destroy_process_group()


@dataclass
class PreparedRun:
    """A run's data found and its folder decided, before any image is decoded."""

    folders: dict[str, Path]  # "real", "fake"[, "inversions"] dataset folders
    files: dict[str, dict[str, list[Path]]]  # kind -> split -> image files
    pairs: dict[str, np.ndarray]  # split -> inversion index of each real (paired setting)
    record: dict[str, Any]  # data_record: folders, counts, fingerprints
    fp: str  # the run's identity
    plan: runs.Decision


def prepare_run(cfg: TrainConfig, real_dir: Path, fake_dir: Path, out: Path, d: Dist,
                force: bool, replace_stale: bool, inv_dir: Path | None) -> PreparedRun:
    """Check the arguments, list and fingerprint the files (a finished run is recognised
    without decoding an image) and decide, with ``runs.decide``, what to do with ``out``."""
    if cfg.batch_size % (2 * d.world_size):
        raise ValueError(f"batch_size {cfg.batch_size} must split into {d.world_size} "
                         "balanced per-process batches")
    runs.check_roles(real_dir, fake_dir)
    paired = cfg.setting in ("samples_inversions", "paired")
    if cfg.setting == "paired":  # the counterparts are the fake set's own files
        if inv_dir is not None and Path(inv_dir).resolve() != Path(fake_dir).resolve():
            raise ValueError(f"{inv_dir}: setting 'paired' pairs each real with the fake of the "
                             f"same name in {fake_dir}; no inversions folder is taken")
        # The fake set is then read twice ("fake" and "inversions"): simple, and small next to
        # the reals for the sets this setting is for (a few hundred manipulated faces).
        inv_dir = fake_dir
    if paired and inv_dir is None:
        raise ValueError(f"setting {cfg.setting!r} needs the inversions folder of {fake_dir} "
                         "(inversions_dir, e.g. fake/<dataset>/<generator>_inverted)")
    if not paired and inv_dir is not None:
        raise ValueError(f"{inv_dir}: inversions given, but the setting is {cfg.setting!r}")
    folders = {"real": real_dir, "fake": fake_dir}
    if inv_dir is not None:
        folders["inversions"] = inv_dir
    files = {k: {s: list_images(folders[k] / s)[: cfg.limit or None] for s in FIT_SPLITS}
             for k in folders}
    pairs = {s: pair_index(files["real"][s], files["inversions"][s],
                            missing_ok=cfg.setting == "paired") for s in FIT_SPLITS} \
        if paired else {}
    record = data_record(real_dir, fake_dir, files, inv_dir)
    identity = {"config": runs.identity(to_dict(cfg)), "data": record,
                "world_size": d.world_size}
    fp = fingerprint(identity)
    plan = runs.decide(out, {**identity, "config": to_dict(cfg), "fingerprint": fp},
                       force=force, replace_stale=replace_stale)
    if plan.action != "skip":
        if plan.message and d.main:
            print(plan.message)
        if plan.action == "fresh" and d.main:
            for name in runs.TRAINING_FILES:
                (out / name).unlink(missing_ok=True)
        if plan.action == "continue" and d.main:  # unfinished again: a kill now resumes
            (out / runs.DONE).unlink()
        d.barrier()
    return PreparedRun(folders, files, pairs, record, fp, plan)


def load_run_data(cfg: TrainConfig, prep: PreparedRun, stream: bool | None, out: Path,
                  d: Dist, progress: bool) -> tuple[dict[str, dict[str, Any]], dict[str, bool]]:
    """Every split of every folder, in memory or streamed (:func:`stream_splits`); all of one
    image size or ``ValueError`` naming the folders."""
    streamed = stream_splits(prep.files, stream)
    data = {k: {s: load_split(prep.folders[k], s, cfg.limit, stream=streamed[s])
                for s in FIT_SPLITS} for k in prep.folders}
    if progress and d.main and any(streamed.values()):
        tqdm.write(f"{out.name}: streaming {' and '.join(s for s in FIT_SPLITS if streamed[s])} "
                   f"from disk ({loader_workers()} DataLoader worker(s) per process)")
    shape = {k: tuple(data[k]["train"][0].shape[1:]) for k in data}
    if len(set(shape.values())) != 1 or any(tuple(data[k]["val"][0].shape[1:]) != shape[k]
                                            for k in data):
        raise ValueError(f"{prep.folders['real']} and {prep.folders['fake']}: train/val images "
                         "must all share one size "
                         f"({', '.join(f'{k} {v}' for k, v in shape.items())})")
    return data, streamed


def _fresh_state() -> dict[str, Any]:
    return {"epoch": 0, "step": 0, "global_step": 0, "best_metric": -1.0, "best_epoch": 0,
            "best": {}, "history": [], "stopped": "", "accum": [0.0, 0.0, 0.0, 0.0],
            "seconds": 0.0}


def _resume(out: Path, model: torch.nn.Module, optim: torch.optim.Optimizer, d: Dist,
            announce: bool) -> dict[str, Any]:
    """The training state of ``latest.pt`` (weights and optimiser loaded in place), or a fresh
    one when there is none; ``announce`` prints "resuming at epoch k"."""
    latest = out / runs.LATEST
    if not latest.exists():
        return _fresh_state()
    try:
        ckpt = torch.load(latest, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure to unpickle means a bad file
        raise ValueError(f"{latest}: unreadable checkpoint ({type(err).__name__}: "
                         f"{str(err).splitlines()[0]}); delete it to start over, or pass "
                         "--force") from err
    model.load_state_dict(ckpt["model"])
    optim.load_state_dict(ckpt["optimizer"])
    state = ckpt["state"]
    state["stopped"] = ""  # a run continued to a higher cap goes on from its last epoch
    if not d.main:  # the saved partial-epoch sums are already totals over all processes
        state["accum"] = [0.0, 0.0, 0.0, 0.0]
    elif announce:
        print(f"{out}: resuming at epoch {state['epoch'] + 1}"
              + (f", step {state['step']}" if state["step"] else ""))
    return state


@dataclass
class _Loop:
    """What one run's epochs share: the training step (model, DDP wrapper, optimiser), state,
    data and the run's machine settings."""

    cfg: TrainConfig
    out: Path
    d: Dist
    step: TrainStep  # the model, its optimiser and what one batch does to them
    state: dict[str, Any]
    train_sets: tuple[Any, Any, Any]  # real, fake, inversions (or None) training images
    val_sets: tuple[Any, Any]  # real, fake validation images
    n_inv: int  # fakes per batch that are inversions of its reals
    checkpoint_every: int
    callback: Callable[[dict[str, Any]], None] | None
    progress: bool
    clock: float = 0.0

    def save_latest(self) -> None:
        """``latest.pt`` (collective: every rank calls; rank 0 writes)."""
        now = time.perf_counter()
        self.state["seconds"] += now - self.clock
        self.clock = now
        saved = {**self.state, "accum": all_sum(self.state["accum"], self.d)}
        if self.d.main:
            _save({"model": self.step.model.state_dict(),
                   "optimizer": self.step.optim.state_dict(),
                   "state": saved, "model_config": to_dict(self.cfg.model_config())},
                  self.out / runs.LATEST)

    def one_epoch(self) -> None:
        """The steps of the current epoch from where the state says (a resumed epoch goes on
        mid-way)."""
        cfg, d, state = self.cfg, self.d, self.state
        train_real, train_fake, train_inv = self.train_sets
        epoch, half = state["epoch"], len(self.step.labels) // 2
        real_idx, fake_idx = epoch_order(len(train_real), len(train_fake), half, seed=cfg.seed,
                                         epoch=epoch, rank=d.rank, world_size=d.world_size,
                                         by_real=train_inv is not None)
        steps = len(real_idx) if not cfg.steps_per_epoch else min(cfg.steps_per_epoch,
                                                                  len(real_idx))
        bar = progress_bar(range(state["step"], steps), initial=state["step"], total=steps,
                           desc=f"{self.out.name} epoch {epoch + 1}",
                           disable=not (self.progress and d.main), leave=False, unit="step")
        batches = epoch_batches((train_real, train_inv, train_fake), real_idx, fake_idx,
                                self.n_inv, cfg, epoch=epoch, rank=d.rank, start=state["step"],
                                stop=steps, device=self.step.dev)
        for step, (batch, rng) in zip(bar, batches, strict=True):
            loss, logits = self.step(batch, rng)
            c, n = patch_correct(logits, self.step.labels)
            acc = state["accum"]
            acc[0] += float(loss) * len(batch)
            acc[1] += len(batch)
            acc[2] += c
            acc[3] += n
            state["step"] = step + 1
            state["global_step"] += 1
            bar.set_postfix(loss=f"{float(loss):.3f}")
            if self.checkpoint_every and state["global_step"] % self.checkpoint_every == 0 \
                    and state["step"] < steps:
                sync_buffers(self.step.model, d)
                self.save_latest()
            if self.callback is not None:
                self.callback({"event": "step", "epoch": epoch + 1, "step": step + 1,
                               "global_step": state["global_step"],
                               "loss": float(loss)})
        bar.close()
        batches.close()  # stops its DataLoader workers before validation starts its own

    def end_epoch(self) -> None:
        """Validate, keep ``best.pt``, append the history row, apply the stopping rule and
        write ``latest.pt``."""
        cfg, d, state, epoch = self.cfg, self.d, self.state, self.state["epoch"]
        model = self.step.model
        sync_buffers(model, d)
        val = evaluate_split(model, *self.val_sets, self.step.dev,
                             channels_last=self.step.channels_last)
        loss_sum, count, correct, patches = all_sum(state["accum"], d)
        row = {"epoch": epoch + 1, "steps": state["global_step"],
               "train_loss": loss_sum / max(count, 1),
               "train_patch_acc": correct / max(patches, 1)}
        row.update({f"val_{k}": v for k, v in val.items()})
        if val["patch_acc"] > state["best_metric"]:
            state.update(best_metric=val["patch_acc"], best_epoch=epoch + 1, best=val)
            if d.main:
                _save({"model": model.state_dict(),
                       "model_config": to_dict(cfg.model_config()), "epoch": epoch + 1,
                       "val": val, "input_size": int(self.train_sets[0].shape[-1])},
                      self.out / runs.BEST)
        now = time.perf_counter()
        state["seconds"] += now - self.clock
        self.clock = now
        row["seconds"] = state["seconds"]
        state["history"].append(row)
        state.update(epoch=epoch + 1, step=0, accum=[0.0, 0.0, 0.0, 0.0])
        if cfg.stop_at_perfect and val["patch_acc"] >= 1.0:
            state["stopped"] = "perfect"
        elif epoch + 1 - state["best_epoch"] >= cfg.stop_patience:
            state["stopped"] = "patience"
        elif epoch + 1 >= cfg.epochs:
            state["stopped"] = "epochs"
        if d.main:
            atomic_write_text(self.out / runs.HISTORY,
                              pd.DataFrame(state["history"]).to_csv(index=False))
        self.save_latest()
        if self.progress and d.main:
            tqdm.write(f"{self.out.name} epoch {epoch + 1}: train loss {row['train_loss']:.4f}, "
                       f"val patch acc {val['patch_acc']:.4f}, image acc "
                       f"{val['image_acc']:.4f}"
                       + (f" -> stop ({state['stopped']})" if state["stopped"] else ""))
        if self.callback is not None:
            self.callback({"event": "epoch", **row})


def _train(cfg: TrainConfig, real_dir: Path, fake_dir: Path, out: Path, d: Dist,
           dev: torch.device, progress: bool, force: bool, channels_last: bool,
           checkpoint_every: int, callback: Callable[[dict[str, Any]], None] | None,
           t_start: float, inv_dir: Path | None = None,
           replace_stale: bool = False, stream: bool | None = None) -> TrainResult:
    prep = prepare_run(cfg, real_dir, fake_dir, out, d, force, replace_stale, inv_dir)
    if prep.plan.action == "skip":
        done = prep.plan.done
        return TrainResult(out, done["best_epoch"], done["best"], runs.read_history(out),
                           done["stopped"], skipped=True,
                           seconds=time.perf_counter() - t_start)
    data, streamed = load_run_data(cfg, prep, stream, out, d, progress)

    mcfg = cfg.model_config()
    model = build_model(mcfg, seed=cfg.seed)
    _check_input_size(model, data["real"]["train"][0].shape[-1])
    init_report = load_init(model, cfg.init) if cfg.init else None
    half = cfg.batch_size // (2 * d.world_size)
    labels = torch.cat([torch.full((half,), REAL), torch.full((half,), FAKE)])
    step = training_step(cfg, model, dev, labels, channels_last=channels_last)
    model, optim = step.model, step.optim
    state = _resume(out, model, optim, d, announce=prep.plan.action == "resume") \
        if prep.plan.action != "fresh" else _fresh_state()
    recorded_cap = (runs.read_json(out, runs.CONFIG) or {}).get("config", {}).get("epochs")
    if d.main and (prep.plan.action in ("fresh", "continue") or recorded_cap != cfg.epochs):
        atomic_write_text(out / runs.CONFIG, json.dumps({
            "run": out.name, "fingerprint": prep.fp, "config": to_dict(cfg),
            "model": to_dict(mcfg), "data": prep.record, "world_size": d.world_size,
            "device": str(dev),
            "init": init_report and {k: len(v) for k, v in init_report.items()},
            "provenance": run_record()}, indent=1))

    if d.world_size > 1:
        step.net = DistributedDataParallel(
            model, device_ids=[dev.index] if dev.type == "cuda" else None)
    loop = _Loop(cfg, out, d, step, state, train_images(data, prep.pairs, dev, cfg),
                 val_images(data, prep.pairs, cfg.setting), half // 2 if prep.pairs else 0,
                 checkpoint_every, callback, progress, clock=time.perf_counter())
    step.net.train()
    while not state["stopped"]:
        loop.one_epoch()
        loop.end_epoch()

    result = {"fingerprint": prep.fp, "best_epoch": state["best_epoch"], "best": state["best"],
              "stopped": state["stopped"], "epochs": state["epoch"], "steps": state["global_step"],
              "setting": cfg.setting, "patience": cfg.stop_patience,
              "seconds": state["seconds"], "world_size": d.world_size,
              "params_checksum": _checksum(model, d),
              "streamed": [s for s in FIT_SPLITS if streamed[s]]}  # how: not fingerprinted
    if d.main:
        atomic_write_text(out / runs.DONE, json.dumps(result, indent=1))
    d.barrier()
    return TrainResult(out, state["best_epoch"], state["best"], pd.DataFrame(state["history"]),
                       state["stopped"], seconds=time.perf_counter() - t_start)


def _check_input_size(model: torch.nn.Module, side: int) -> None:
    """Fail early, naming the size, when the network cannot take side x side inputs."""
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, side, side))
    except RuntimeError as err:
        size = f"{side}x{side} px images" + (f" resized to {model.config.load_size} px"
                                              if model.config.load_size else "")
        raise ValueError(f"{model.config.name} cannot take {size} "
                         f"({str(err).splitlines()[0]}); use larger images or --load-size"
                         ) from err
    finally:
        model.train()


def _checksum(model: torch.nn.Module, d: Dist) -> float:
    """Sum of all weights; under DDP checked equal on every process (they must stay in sync)."""
    total = float(sum(p.detach().double().sum() for p in model.parameters()))
    if d.world_size > 1:
        t = torch.tensor([total, -total], dtype=torch.float64)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        if t[0] != -t[1]:
            raise RuntimeError(f"processes ended with different weights ({t[0]} vs {-t[1]})")
    return total


# --- grids and curves (notebook 02) -------------------------------------------------------------


