"""Exaggerating what makes images look fake, by optimising against the classifier in latent
space (Chai et al. 2020, Sec. 4.4 and Fig. 7; the original code never released this part).

The project page's objective, for a generator G with latent z and the frozen patch classifier C:

    w* = argmin_w  E_z [ L_fake(C(G(z - w))) + lambda * L_p(G(z), G(z - w)) ]

one global shift w in latent space. ``L_fake`` is C's cross-entropy towards "real", averaged over
every patch (or, region-restricted, over the patches that lie on one face part of G(z)), so
G(z - w) looks *less* fake while staying close to G(z); walking the other way, G(z + a w) for
a > 0, exaggerates what C finds fake. ``L_p`` stands in for the paper's perceptual distance (no
pretrained perceptual network exists offline): a multi-scale pixel + gradient L1 distance,
:func:`perceptual_distance`, mean absolute difference of the images and of their horizontal and
vertical finite differences at full, half and quarter resolution. Pixel terms keep colours,
gradient terms keep edges and texture, and the coarser scales weigh layout over pixel noise;
unlike SSIM it needs no windowing constants and works on 1-channel generators the same way.

Training latents are a fixed seeded set (``n_latents``); minibatches are drawn from it by one
seeded generator saved with w, so a killed run resumes bit-identically. A run folder
``checkpoints/exaggerate/<world>/<name>/`` holds ``latest.pt``, ``final.pt`` (w, the history),
``config.json`` and ``done.json``; a finished run is skipped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from . import paths
from .checkpoint import eval_precision, load_checkpoint, logit_maps
from .config import fingerprint, to_dict
from .data import REAL, to_uint8
from .devices import resolve_device
from .generators import get_generator
from .generators.base import perceptual_distance
from .generators.training import RowLog, finish_run, finished, load_torch, start_run, train_loop
from .images import sha256_cached
from .models import PatchClassifier, inference_model
from .parts import best_parts
from .receptive_field import receptive_field
from .score_modes import scores_from_maps
from .segment import PART_ID, PARTS, parse_images
from .viz import heatmap_overlay, image_grid


@dataclass(frozen=True)
class ExaggerateConfig:
    """Everything that decides an exaggeration run's result."""

    lam: float = 10.0  # weight of the perceptual term L_p (1.0 lets |w| outgrow a typical |z|)
    steps: int = 150  # Adam steps on w
    lr: float = 0.05  # Adam learning rate of w
    batch_size: int = 32  # latents per step
    n_latents: int = 512  # the fixed training set of latents
    part: str = ""  # "" = every patch; else a face part (segment.PARTS), e.g. "mouth", "hair"
    checkpoint_every: int = 50  # steps between resumable saves
    seed: int = 0  # training latents and minibatches
    precision: str = "auto"  # the classifier's forward: "fp32", "bf16" features (fp32 head),
    #                          or "auto": as notebook 03 scores it (``checkpoint.eval_precision``
    #                          in ``run_for``; fp32 when the checkpoint is not known)

    def __post_init__(self) -> None:

        if self.lam < 0 or self.steps < 1 or self.batch_size < 1 or self.n_latents < 1:
            raise ValueError("lam >= 0, steps >= 1, batch_size >= 1 and n_latents >= 1 please")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"precision must be 'auto', 'fp32' or 'bf16', got {self.precision!r}")
        if self.part and self.part not in PARTS:
            raise ValueError(f"part must be '' or one of {PARTS}, got {self.part!r}")


def fake_loss(logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """C's cross-entropy towards "real" per image, averaged over the patches of ``mask``
    (N x h x w bool; all patches when None): N values, high = looks fake."""
    n, _, h, w = logits.shape
    ce = F.cross_entropy(logits, torch.full((n, h, w), REAL, dtype=torch.long,
                                            device=logits.device), reduction="none")
    if mask is None:
        return ce.mean(dim=(1, 2))
    m = mask.to(ce.dtype)
    return (ce * m).sum(dim=(1, 2)) / m.sum(dim=(1, 2)).clamp_min(1.0)


class NoPartError(ValueError):
    """A region-restricted shift whose face part shows in none of the training latents."""


class Shift(nn.Module):
    """The global latent shift w (a module so it checkpoints like any other part)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(dim))


def part_masks(gen: Any, classifier: nn.Module, z: torch.Tensor, part: str,
               input_size: int) -> tuple[torch.Tensor, np.ndarray]:
    """For region-restricted exaggeration: per latent, the h x w cells of C whose receptive
    field is assigned to ``part`` on G(z)'s label map (the top-patch rule of ``parts``), and
    which latents have such a cell (a face found and the part present). Returns
    ``(masks N x h x w bool tensor, usable N bool)``."""

    with torch.no_grad():
        images = to_uint8(gen.generate(z))
    labels, found = parse_images(images)
    config = classifier.config if isinstance(classifier, PatchClassifier) else None
    if config is None:
        raise TypeError("region restriction needs a PatchClassifier (its receptive field)")
    rf = receptive_field(config, input_size)
    h, w = rf.output_size
    masks = np.zeros((len(z), h, w), bool)
    for k in np.flatnonzero(found):
        for i in range(h):
            for j in range(w):
                # a cell belongs to the part when the part is among its tied best parts
                masks[k, i, j] = PART_ID[part] in best_parts(labels[k], *rf.slices(i, j))
    usable = masks.reshape(len(z), -1).any(axis=1)
    return torch.from_numpy(masks), usable


@dataclass
class ExaggerateResult:
    """What :func:`exaggerate` gives back."""

    run_dir: Path
    w: torch.Tensor  # latent_dim float32, the optimised shift
    history: pd.DataFrame  # per step: objective, fake loss, perceptual term
    skipped: bool


def exaggerate(cfg: ExaggerateConfig, gen: Any, classifier: nn.Module, folder: str | os.PathLike,
               *, record: dict[str, Any] | None = None, progress: bool = True,
               force: bool = False, stop_after: int | None = None) -> ExaggerateResult:
    """Optimise the global latent shift w (see the module docstring) for generator ``gen``
    (``generate(z)`` differentiable, ``latent_dim``, ``sample_latent(n, seed)``, ``device``) and
    the frozen ``classifier`` (N x 3 x S x S in [-1, 1] -> N x 2 x h x w). ``record``: what
    identifies the generator and classifier (checkpoint digests) in the run's fingerprint.
    Resumes an interrupted run in ``folder``, skips a finished one; ``stop_after`` stops after
    that many steps, as a kill would (tests)."""

    folder = Path(folder)
    fp = fingerprint({"config": to_dict(cfg), **(record or {})})
    done = finished(folder, fp)
    if done is not None and not force:
        final = load_torch(folder / "final.pt")
        return ExaggerateResult(folder, final["w"], pd.DataFrame(final["history"]), True)
    start_run(folder, fp, {"config": to_dict(cfg), **(record or {})}, force=force)
    dev = gen.device
    base, classifier = _frozen(cfg, gen, classifier)
    z_all = gen.sample_latent(cfg.n_latents, cfg.seed)
    masks, usable = (None, np.ones(cfg.n_latents, bool))
    if cfg.part:
        size = int(gen.generate(z_all[:1]).shape[-1])
        masks, usable = part_masks(gen, base, z_all, cfg.part, size)
        if not usable.any():
            raise NoPartError(f"no training latent shows a {cfg.part!r} patch (no face found, "
                              "or the part is missing); try another part")
    pool = torch.from_numpy(np.flatnonzero(usable))
    shift = Shift(gen.latent_dim).to(dev)
    opt = torch.optim.Adam(shift.parameters(), lr=cfg.lr)
    history = RowLog()
    rng = torch.Generator().manual_seed(cfg.seed + 1)

    def step_fn(step: int) -> dict[str, torch.Tensor]:
        idx = pool[torch.randint(0, len(pool), (cfg.batch_size,), generator=rng)]
        z = z_all[idx.to(z_all.device)]
        with torch.no_grad():
            x = gen.generate(z)
        x_shift = gen.generate(z - shift.w)
        l_fake = fake_loss(classifier(x_shift),
                           masks[idx].to(dev) if masks is not None else None).mean()
        l_p = perceptual_distance(x, x_shift).mean()
        loss = l_fake + cfg.lam * l_p
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        history.rows.append({"step": step + 1, "objective": float(loss.detach()),
                             "fake_loss": float(l_fake.detach()),
                             "perceptual": float(l_p.detach()),
                             "w_norm": float(shift.w.detach().norm())})
        return {"loss": loss.detach()}

    _, seconds = train_loop(folder, fp, steps=cfg.steps, checkpoint_every=cfg.checkpoint_every,
                            parts={"shift": shift, "opt": opt, "history": history}, rng=rng,
                            step_fn=step_fn, desc="exaggerate", progress=progress,
                            stop_after=stop_after)
    w = shift.w.detach().cpu().clone()
    finish_run(folder, fp, {"w": w, "history": history.rows, "usable_latents": int(len(pool))},
               cfg.steps, seconds)
    return ExaggerateResult(folder, w, pd.DataFrame(history.rows), False)


def _frozen(cfg: ExaggerateConfig, gen: Any, classifier: nn.Module
            ) -> tuple[nn.Module, nn.Module]:
    """Freeze the classifier and the generator's net (eval mode, no gradients), the
    classifier on the generator's device. Returns ``(base, net)``: the classifier itself (its
    receptive field places the part masks) and what the shift is scored with (a patch
    classifier's BatchNorm-folded twin: faster, the same function)."""
    for p in classifier.parameters():
        p.requires_grad_(False)
    base = classifier.to(gen.device).eval()
    net = base
    if isinstance(base, PatchClassifier):
        net = inference_model(base, "fp32" if cfg.precision == "auto" else cfg.precision)
    g = getattr(gen, "net", None)
    if g is not None:
        g.eval()
        for p in g.parameters():
            p.requires_grad_(False)
    return base, net


# --- reading the shift --------------------------------------------------------------------------

@torch.no_grad()
def score_curve(gen: Any, classifier: nn.Module, w: torch.Tensor, z: torch.Tensor,
                alphas: np.ndarray) -> pd.DataFrame:
    """The classifier on G(z + a w) for each a: one row per a with the image score (mean patch
    P(fake)) and the mean patch logit difference (``logit``: keeps growing where the
    probability saturates near 1), each as mean and standard deviation over the latents."""

    rows = []
    w = w.to(gen.device)
    for a in alphas:
        images = to_uint8(gen.generate(z + float(a) * w))
        maps = logit_maps(classifier, images, device=gen.device)
        s, d = scores_from_maps(maps), maps.mean(axis=(1, 2))
        rows.append({"alpha": float(a), "score": float(s.mean()), "std": float(s.std()),
                     "logit": float(d.mean()), "logit_std": float(d.std())})
    return pd.DataFrame(rows)


@torch.no_grad()
def strip_images(gen: Any, w: torch.Tensor, z: torch.Tensor,
                 alphas: tuple[float, ...]) -> np.ndarray:
    """G(z + a w) for every latent and a: N x len(alphas) x S x S x 3 uint8."""
    w = w.to(gen.device)
    return np.stack([to_uint8(gen.generate(z + a * w)) for a in alphas], axis=1)


def change_window(before: np.ndarray, after: np.ndarray, size: int) -> tuple[int, int]:
    """``(top, left)`` of the size x size window where two H x W x 3 images differ most."""
    diff = torch.from_numpy(np.abs(before.astype(np.float32) - after).sum(-1))[None, None]
    pooled = F.avg_pool2d(diff, size, stride=1)[0, 0]
    i, j = np.unravel_index(int(pooled.argmax()), pooled.shape)
    return int(i), int(j)


def strips_figure(strips: np.ndarray, alphas: tuple[float, ...], *, inset: int = 16,
                  title: str | None = None):
    """Rows of G(z + a w) (``strip_images``), each image followed by a zoomed inset of the
    window where the two ends of the row differ most (boxed in the images)."""

    tiles, titles = [], []
    for r, row in enumerate(strips):
        top, left = change_window(row[0], row[-1], inset)
        box = (top, left, top + inset, left + inset)
        for k, (a, im) in enumerate(zip(alphas, row, strict=True)):
            zoom = max(1, 64 // im.shape[0]) * 2
            tiles.append(heatmap_overlay(im, np.full(im.shape[:2], np.nan), box=box, zoom=zoom))
            titles.append(f"a = {a:+g}" if r == 0 else "")
            crop = im[top: top + inset, left: left + inset]
            tiles.append(np.repeat(np.repeat(crop, tiles[-1].shape[0] // inset, 0),
                                   tiles[-1].shape[1] // inset, 1))
            titles.append("zoom" if r == 0 and k == 0 else "")
    return image_grid(tiles, ncols=2 * len(alphas), titles=titles, title=title, scale=1.3)


def part_change(strips: np.ndarray, labels: np.ndarray, found: np.ndarray) -> pd.DataFrame:
    """Which face parts change most between the two ends of each strip: per part, the mean
    absolute pixel change (0-255 scale, summed over RGB) over the part's pixels of G(z)'s label
    map, averaged over the latents with a parsed face; rows sorted by change."""

    change = np.abs(strips[:, 0].astype(np.float64) - strips[:, -1]).sum(-1)
    rows = []
    for k, part in enumerate(PARTS):
        vals = [change[n][labels[n] == k].mean() for n in np.flatnonzero(found)
                if (labels[n] == k).any()]
        rows.append({"part": part, "mean_change": float(np.mean(vals)) if vals else np.nan,
                     "images": len(vals)})
    return pd.DataFrame(rows).set_index("part").sort_values("mean_change", ascending=False)


def run_for(world_root: str | os.PathLike, dataset: str, generator: str, classifier_run: str,
            cfg: ExaggerateConfig, *, device: str | None = None, progress: bool = True
            ) -> tuple[ExaggerateResult | None, Any, Any]:
    """:func:`exaggerate` for a world's generator and one of notebook 02's classifier runs, in
    ``checkpoints/exaggerate/<world>/<dataset>_<generator>__<model>_<part|all>_lam<l>_seed<s>``.
    Returns ``(result, generator, checkpoint)``; result is None (and a line says why) for a
    region-restricted shift whose part the parser finds in no sample (e.g. the smoke world's
    barely trained generators draw no faces)."""

    dev = resolve_device(device)
    root = Path(world_root)
    ck = load_checkpoint(classifier_run, device=dev)
    gen = get_generator(dataset, generator, world_root=root, device=str(dev), progress=progress)
    if getattr(gen, "latent_dim", None) is None:
        raise ValueError(f"{generator}: has no differentiable latent space to shift")
    if cfg.precision == "auto":
        cfg = replace(cfg, precision=eval_precision(ck, dev))
    name = (f"{dataset}_{generator}__{ck.name}_{cfg.part or 'all'}_lam{cfg.lam:g}"
            f"_seed{cfg.seed}")
    record = {"generator_sha256": gen.checkpoint_sha256,
              "classifier_sha256": sha256_cached(ck.path), "classifier_model": ck.name}
    try:
        res = exaggerate(cfg, gen, ck.model, paths.checkpoints_dir() / "exaggerate" / root.name
                         / name, record=record, progress=progress)
    except NoPartError as err:
        print(f"{name}: skipped: {err}")
        return None, gen, ck
    return res, gen, ck


@dataclass
class Shifts:
    """What :func:`run_shifts` returns: every shift's result by key (``all_lam<l>``, the
    whole-image shifts; ``<part>_lam<l>``, the region-restricted ones), the generator and
    classifier checkpoint they were found for, and the key of the primary shift."""

    results: dict[str, ExaggerateResult]
    generator: Any
    checkpoint: Any
    primary: str


def run_shifts(world_root: str | os.PathLike, dataset: str, generator: str, classifier_run: str,
               lams: list[float], parts: list[str], cfg: ExaggerateConfig, *,
               device: str | None = None, progress: bool = True) -> Shifts:
    """Notebook 06's shifts (:func:`run_for` each, ``cfg`` for everything but ``lam`` and
    ``part``): the whole-image shift for every lambda of ``lams`` (the last one is the
    primary, the paper's), then one shift restricted to each face part of ``parts`` at the
    last lambda; a part the parser finds in no sample is left out (a line says so)."""
    if not lams:
        raise ValueError("lams: give at least one lambda (the last one is the primary shift)")
    results, gen, ck = {}, None, None
    for lam in lams:
        res, gen, ck = run_for(world_root, dataset, generator, classifier_run,
                               replace(cfg, lam=lam, part=""), device=device, progress=progress)
        results[f"all_lam{lam:g}"] = res  # the loss counts every patch
    for part in parts:
        res, _, _ = run_for(world_root, dataset, generator, classifier_run,
                            replace(cfg, lam=lams[-1], part=part), device=device,
                            progress=progress)
        if res is not None:  # the loss counts only the patches over this part
            results[f"{part}_lam{lams[-1]:g}"] = res
    return Shifts(results, gen, ck, f"all_lam{lams[-1]:g}")
