"""Which face parts the patch classifier looks at: the top-patch analysis of Chai et al. 2020
(Sec. 4.3, Fig. 5 and the original code's ``segmenter`` scripts).

For every test image take the output cell with the highest probability of the image's **true**
class, and its exact receptive-field slice (``receptive_field``). Assign the patch to the face
part k maximising (pixels of k in the patch) / (pixels of k in the image): normalising by the
part's size keeps large regions (background, hair) from winning every patch. Parts often tie (a
large patch holds several small parts whole, each at ratio 1.0): a tied patch then shares its
count equally among the tied parts (fractional counts), and the number of tied patches is
reported; giving the tie to one part would credit it with every central patch. As a baseline, one
uniformly random cell per image (seeded) is assigned the same way. Parts come from
``segment.FaceParser``; images in which no face was found are left out and counted.

Enrichment of part k = (share of top patches assigned to k) / (share of random patches assigned to
k): above 1, the classifier's most confident patches land on k more often than chance. Confidence
intervals by bootstrap over images (the top and random patch of an image stay paired).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import paths
from .data import FAKE, REAL
from .evaluate import set_maps, world_sets
from .layout import fake_key, real_key
from .protocol import HOLM_ALPHA
from .receptive_field import receptive_field
from .segment import (  # noqa: F401 - the label-map helpers, re-exported: parts' vocabulary
    PARTS,
    best_parts,
    parse_set,
    part_counts,
    part_of_patch,
    part_ratios,
    part_shares,
    share_matrix,
    true_class_cell,
)
from .stats import holm


def top_patches(maps: np.ndarray, labels: np.ndarray, label_maps: np.ndarray,
                found: np.ndarray, rf, *, seed: int = 0) -> pd.DataFrame:
    """One row per image with a parsed face: ``image`` (index), ``label`` (0 real, 1 fake), the
    top cell ``top_i``/``top_j``, its ``top_parts`` (the tied best parts, "+"-joined in id
    order, e.g. ``"brows+eyes+nose"``), ``top_part`` (the first of them, a display name) and
    ``top_tied`` (how many parts tie), and the same for a uniformly random cell (``rand_*``;
    seeded by ``seed``, the same cells whatever the maps). ``maps``: N x h x w logit
    differences; ``label_maps``: N x H x W part ids; ``found``: N bool (False rows are
    skipped); ``rf``: the model's ``ReceptiveField`` at H x W."""
    n = len(maps)
    if not (len(labels) == len(label_maps) == len(found) == n):
        raise ValueError("maps, labels, label_maps and found must have one entry per image")
    if maps.shape[1:] != rf.output_size or label_maps.shape[1:] != rf.input_size:
        raise ValueError(f"maps {maps.shape[1:]} / label maps {label_maps.shape[1:]} do not match "
                         f"the receptive field ({rf.output_size} over {rf.input_size})")
    h, w = rf.output_size
    rng = np.random.default_rng(seed)
    random_cells = rng.integers(0, h * w, n)  # drawn for every image so the draw never shifts
    rows = []

    def named(lab: np.ndarray, i: int, j: int, prefix: str) -> dict[str, Any]:
        best = best_parts(lab, *rf.slices(i, j))
        return {f"{prefix}_part": PARTS[best[0]],
                f"{prefix}_parts": "+".join(PARTS[b] for b in best),
                f"{prefix}_tied": len(best)}

    for k in range(n):
        if not found[k]:
            continue
        ti, tj = true_class_cell(maps[k], int(labels[k]))
        ri, rj = divmod(int(random_cells[k]), w)
        rows.append({"image": k, "label": int(labels[k]), "top_i": ti, "top_j": tj,
                     **named(label_maps[k], ti, tj, "top"), "rand_i": ri, "rand_j": rj,
                     **named(label_maps[k], ri, rj, "rand")})
    return pd.DataFrame(rows, columns=["image", "label", "top_i", "top_j", "top_part",
                                       "top_parts", "top_tied", "rand_i", "rand_j", "rand_part",
                                       "rand_parts", "rand_tied"])


def enrichment(frame: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0,
               level: float = 0.95) -> pd.DataFrame:
    """Per part: fractional counts (:func:`part_counts`), shares, enrichment = top share /
    random share, and its bootstrap ``level`` confidence interval (percentile, ``n_boot``
    resamples of the images; an image's top and random patch stay paired). Parts with no random
    patch give NaN ratios."""
    counts = part_counts(frame)
    n = len(frame)
    top, rand = share_matrix(frame, "top"), share_matrix(frame, "rand")
    rng = np.random.default_rng(seed)
    boots = np.full((n_boot, len(PARTS)), np.nan)
    if n:
        for at in range(0, n_boot, 256):  # blocks bound memory at 256 x n x parts floats
            pick = rng.integers(0, n, (min(256, n_boot - at), n))
            t, r = top[pick].sum(1), rand[pick].sum(1)
            with np.errstate(invalid="ignore", divide="ignore"):
                boots[at: at + len(pick)] = np.where(r > 0, t / np.where(r > 0, r, 1), np.nan)
    alpha = (1 - level) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        out = counts.assign(top_share=counts["top"] / max(n, 1),
                            random_share=counts["random"] / max(n, 1))
        out["enrichment"] = np.where(counts["random"] > 0,
                                     counts["top"] / counts["random"].replace(0, np.nan), np.nan)
    with warnings.catch_warnings():  # all-NaN columns (parts never drawn) stay NaN quietly
        warnings.simplefilter("ignore", RuntimeWarning)
        out["ci_low"] = np.nanquantile(boots, alpha, axis=0)
        out["ci_high"] = np.nanquantile(boots, 1 - alpha, axis=0)
        # Two-sided bootstrap p of "enrichment = 1" (the interval's own test, inverted), at
        # least 1 / resamples: the input of the Holm adjustment in :func:`enrichment_table`.
        valid = (~np.isnan(boots)).sum(0)
        tail = np.minimum((boots <= 1).sum(0), (boots >= 1).sum(0))
        out["p"] = np.where(valid > 0, np.clip(2 * tail / np.maximum(valid, 1),
                                               1 / max(n_boot, 1), 1.0), np.nan)
    return out


# --- the analysis over a world's test split (notebook 04) ---------------------------------------

@dataclass
class PartsAnalysis:
    """Everything notebook 04 draws from: per set ("real" and each generator) the images, label
    maps and whether a face was found; per model the receptive field and the logit maps of every
    set; per (model, generator) the :func:`top_patches` frame of the reals plus that
    generator's fakes."""

    dataset: str
    images: dict[str, np.ndarray]  # set -> N x H x W x 3 uint8
    label_maps: dict[str, np.ndarray]  # set -> N x H x W part ids (255: no face)
    found: dict[str, np.ndarray]  # set -> N bool
    rfs: dict[str, Any]  # model -> ReceptiveField
    maps: dict[str, dict[str, np.ndarray]]  # model -> set -> N x h x w logit differences
    frames: dict[tuple[str, str], pd.DataFrame] = field(default_factory=dict)

    @property
    def generators(self) -> list[str]:
        return [s for s in self.images if s != "real"]

    def pair(self, generator: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(images, labels, label_maps, found)`` of the reals followed by ``generator``."""
        labels = np.r_[np.full(len(self.images["real"]), REAL),
                       np.full(len(self.images[generator]), FAKE)]
        return (np.concatenate([self.images["real"], self.images[generator]]), labels,
                np.concatenate([self.label_maps["real"], self.label_maps[generator]]),
                np.concatenate([self.found["real"], self.found[generator]]))

    def panel_args(self, model: str, name: str, k: int, *,
                   threshold: float = 0.5) -> dict[str, Any]:
        """The arguments of ``viz.patch_panel`` for image ``k`` of set ``name`` ("real" or a
        generator) under ``model``: what notebook 04 saves and the explorer shows."""
        found = bool(self.found[name][k])
        rf = self.rfs[model]
        return {"image": self.images[name][k], "logit_map": self.maps[model][name][k],
                "label_map": self.label_maps[name][k] if found else None, "rf": rf,
                "label": REAL if name == "real" else FAKE, "threshold": threshold,
                "title": f"{self.dataset}/{name} #{k}, {model} ({rf.size} px field)"}

    def no_face(self) -> pd.DataFrame:
        """Per set: images, faces found, and the share without a face (left out)."""
        return pd.DataFrame({"images": {s: len(f) for s, f in self.found.items()},
                             "faces_found": {s: int(f.sum()) for s, f in self.found.items()}}
                            ).assign(no_face_share=lambda t: 1 - t["faces_found"] / t["images"])


def analyze(runs: dict[str, str], world_root: str | os.PathLike, dataset: str = "celeba", *,
            split: str = "test", seed: int = 0, device: str | None = None,
            progress: bool = True, generators: Sequence[str] | None = None) -> PartsAnalysis:
    """Parse every set of ``dataset`` in a world's ``split`` (cached), score it with each run
    (``{model name: run folder}``), and take the top and random patches per (model, generator).
    ``generators``: the fake sets to analyse (default: the world's generators; notebook 07
    passes its manipulations)."""

    root = Path(world_root)
    if generators is None:
        generators = world_sets(root, [dataset]).get(dataset, [])
    keys = {"real": real_key(dataset)} | {g: fake_key(dataset, g) for g in generators}
    label_maps, found = {}, {}
    for name, key in keys.items():
        label_maps[name], found[name], _ = parse_set(root, key, split, progress=progress)
    images, maps, rfs = {}, {}, {}
    for model, run in runs.items():
        ck, images, maps[model] = set_maps(run, root, dataset, split=split, device=device,
                                           generators=generators)
        rfs[model] = receptive_field(ck.model.config, ck.input_size)
    out = PartsAnalysis(dataset, images, label_maps, found, rfs, maps)
    for model in runs:
        for g in out.generators:
            _, labels, lab, fnd = out.pair(g)
            m = np.concatenate([maps[model]["real"], maps[model][g]])
            out.frames[(model, g)] = top_patches(m, labels, lab, fnd, rfs[model], seed=seed)
    return out


def enrichment_table(frames: dict[tuple[str, str], pd.DataFrame], *, n_boot: int = 1000,
                     seed: int = 0) -> pd.DataFrame:
    """:func:`enrichment` of every ``(model, generator)`` frame (e.g.
    ``PartsAnalysis.frames``), long format: one row per part, with ``p_holm`` (the bootstrap
    p of "enrichment = 1" Holm-adjusted within each model's family of generators x parts, as
    the plan has it: ``protocol.PLAN["secondary"]``) and ``verdict_holm`` ("enriched",
    "depleted" or "no difference" at ``protocol.HOLM_ALPHA``)."""
    rows = []
    for (model, gen), frame in frames.items():
        t = enrichment(frame, n_boot=n_boot, seed=seed).reset_index()
        t.insert(0, "generator", gen)
        t.insert(0, "model", model)
        rows.append(t)
    out = pd.concat(rows, ignore_index=True)
    out["p_holm"] = out.groupby("model")["p"].transform(lambda p: holm(p.to_numpy()))
    sig = out["p_holm"] < HOLM_ALPHA
    out["verdict_holm"] = np.where(sig & (out["enrichment"] > 1), "enriched",
                                   np.where(sig & (out["enrichment"] < 1), "depleted",
                                            "no difference"))
    return out


def counts_table(frames: dict[tuple[str, str], pd.DataFrame]) -> pd.DataFrame:
    """Fractional top and random patch counts per (model, generator, part), long format, with
    ``top_tied``/``random_tied``: the number of tied patches of that (model, generator)."""
    rows = []
    for (model, gen), frame in frames.items():
        c = part_counts(frame).reset_index()
        c.insert(0, "generator", gen)
        c.insert(0, "model", model)
        rows.append(c)
    return pd.concat(rows, ignore_index=True)


def paper_top_patch_hist() -> pd.DataFrame:
    """The paper's top/random patch counts per face-part cluster, read off its figure
    (approximate; BiSeNet's clusters): ``results/reference/paper_top_patch_hist.csv``."""

    return pd.read_csv(paths.reference_dir() / "paper_top_patch_hist.csv", comment="#")


def reading(table: pd.DataFrame, generator: str) -> str:
    """Markdown: per model, the parts whose enrichment's confidence interval lies above 1
    (over-represented among top patches) and below 1 (avoided), for the reals plus
    ``generator``'s fakes; every number from ``table`` (:func:`enrichment_table`)."""
    lines = [f"**Top patches vs. random patches, reals + {generator}** (enrichment, 95 % "
             "bootstrap interval):"]
    for model, t in table[table["generator"] == generator].groupby("model", sort=False):
        t = t.set_index("part")
        up = t[t["ci_low"] > 1].sort_values("enrichment", ascending=False)
        down = t[t["ci_high"] < 1].sort_values("enrichment")
        fmt = lambda d: ", ".join(f"{p} x{r.enrichment:.2f} [{r.ci_low:.2f}, {r.ci_high:.2f}]"  # noqa: E731
                                  for p, r in d.iterrows()) or "none"
        lines.append(f"- {model}: over-represented: {fmt(up)}; avoided: {fmt(down)}")
    return "\n".join(lines)
