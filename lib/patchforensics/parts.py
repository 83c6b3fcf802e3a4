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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .data import FAKE, REAL
from .segment import PARTS


def true_class_cell(logit_map: np.ndarray, label: int) -> tuple[int, int]:
    """``(i, j)`` of the cell with the highest probability of class ``label`` in an h x w
    logit-difference map (fake minus real): argmax of d for fakes, of -d for reals. Ties go to
    the first cell in row-major order."""
    if label not in (REAL, FAKE):
        raise ValueError(f"label must be 0 (real) or 1 (fake), got {label}")
    flat = logit_map.ravel() if label == FAKE else -logit_map.ravel()
    i, j = np.unravel_index(int(np.argmax(flat)), logit_map.shape)
    return int(i), int(j)


def part_ratios(label_map: np.ndarray, rows: slice, cols: slice,
                n_parts: int = len(PARTS)) -> np.ndarray:
    """Per part k: (pixels of k inside ``label_map[rows, cols]``) / (pixels of k in
    ``label_map``), -1 for parts absent from the image: ``n_parts`` floats. ``label_map``:
    H x W ints in [0, n_parts)."""
    whole = np.bincount(label_map.ravel(), minlength=n_parts)[:n_parts].astype(np.float64)
    inside = np.bincount(label_map[rows, cols].ravel(), minlength=n_parts)[:n_parts]
    if inside.sum() == 0:
        raise ValueError("the patch is empty")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(whole > 0, inside / whole, -1.0)


def best_parts(label_map: np.ndarray, rows: slice, cols: slice,
               n_parts: int = len(PARTS)) -> list[int]:
    """Every part k whose :func:`part_ratios` ties for the maximum (ascending ids). A large
    patch often holds several small parts whole (ratio 1.0 each: brows, eyes and nose in one
    block2 cell), so ties are common and must be shared, not given to one part."""
    ratio = part_ratios(label_map, rows, cols, n_parts)
    # Equal fractions computed from different counts can differ in the last bit.
    return np.flatnonzero(ratio >= ratio.max() * (1 - 1e-12)).tolist()


def part_shares(label_map: np.ndarray, rows: slice, cols: slice,
                n_parts: int = len(PARTS)) -> np.ndarray:
    """The patch's count split among its :func:`best_parts`: ``n_parts`` floats summing to 1,
    1/m on each of the m tied parts."""
    out = np.zeros(n_parts)
    best = best_parts(label_map, rows, cols, n_parts)
    out[best] = 1.0 / len(best)
    return out


def part_of_patch(label_map: np.ndarray, rows: slice, cols: slice,
                  n_parts: int = len(PARTS)) -> int:
    """One part maximising :func:`part_ratios`; on a tie the lowest id, which biases counts
    towards low ids (``brows`` before ``eyes`` and ``nose``): count with :func:`part_shares`,
    and use this only to name a patch for display."""
    return best_parts(label_map, rows, cols, n_parts)[0]


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


def share_matrix(frame: pd.DataFrame, which: str = "top") -> np.ndarray:
    """N x len(PARTS) fractional counts of a :func:`top_patches` frame's ``which`` patches
    (``"top"`` or ``"rand"``): each row sums to 1, split equally among tied parts (frames
    without ``<which>_parts`` count ``<which>_part`` whole)."""
    col = f"{which}_parts" if f"{which}_parts" in frame.columns else f"{which}_part"
    index = {p: i for i, p in enumerate(PARTS)}
    out = np.zeros((len(frame), len(PARTS)))
    for r, names in enumerate(frame[col].astype(str)):
        ids = [index[x] for x in names.split("+")]
        out[r, ids] = 1.0 / len(ids)
    return out


def part_counts(frame: pd.DataFrame) -> pd.DataFrame:
    """Fractional counts of top and random patches per part (rows in ``PARTS`` order, zeros
    kept; a patch whose best parts tie adds 1/m to each of its m parts), and ``top_tied`` /
    ``random_tied``: how many of those patches were tied (the same number on every row)."""
    out = pd.DataFrame({"top": share_matrix(frame, "top").sum(0),
                        "random": share_matrix(frame, "rand").sum(0)},
                       index=pd.Index(list(PARTS), name="part"))
    for which, col in (("top", "top_tied"), ("random", "rand_tied")):
        out[f"{which}_tied"] = int((frame[col] > 1).sum()) if col in frame.columns else 0
    return out


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
    return out


def patch_grid(images: np.ndarray, frame: pd.DataFrame, rf, *, per_part: int = 8,
               parts: tuple[str, ...] | None = None, title: str | None = None):
    """Top patches grouped by their assigned part: a row per part (``per_part`` patches, in
    image order; a patch tied between parts appears in each of their rows; the title gives the
    part's fractional count), each patch its exact receptive-field slice padded to the full
    field."""
    from .receptive_field import extract_patch
    from .viz import image_grid

    shares = pd.DataFrame(share_matrix(frame, "top"), columns=list(PARTS), index=frame.index)
    parts = parts or tuple(p for p in PARTS if (shares[p] > 0).any())
    tiles, titles = [], []
    for part in parts:
        rows = frame[shares[part] > 0].head(per_part)  # a tied patch shows under each part
        for n, r in enumerate(rows.itertuples()):
            tiles.append(extract_patch(images[r.image], rf, r.top_i, r.top_j, pad_value=255))
            titles.append(f"{part} ({shares[part].sum():g})" if n == 0 else "")
        for _ in range(per_part - len(rows)):
            tiles.append(np.full_like(tiles[-1], 255) if tiles else
                         np.full((8, 8, 3), 255, np.uint8))
            titles.append("")
    if not tiles:
        raise ValueError("no top patches to show")
    return image_grid(tiles, ncols=per_part, titles=titles, title=title, scale=1.0)


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

    def panel(self, model: str, name: str, k: int, *, threshold: float = 0.5):
        """``viz.patch_panel`` of image ``k`` of set ``name`` ("real" or a generator) under
        ``model``: what the notebook saves and the explorer shows."""
        from .viz import patch_panel

        found = bool(self.found[name][k])
        rf = self.rfs[model]
        return patch_panel(self.images[name][k], self.maps[model][name][k],
                           self.label_maps[name][k] if found else None, rf,
                           REAL if name == "real" else FAKE, threshold=threshold,
                           title=f"{self.dataset}/{name} #{k}, {model} ({rf.size} px field)")

    def no_face(self) -> pd.DataFrame:
        """Per set: images, faces found, and the share without a face (left out)."""
        return pd.DataFrame({"images": {s: len(f) for s, f in self.found.items()},
                             "faces_found": {s: int(f.sum()) for s, f in self.found.items()}}
                            ).assign(no_face_share=lambda t: 1 - t["faces_found"] / t["images"])


def analyze(runs: dict[str, str], world_root: str | os.PathLike, dataset: str = "celeba", *,
            split: str = "test", seed: int = 0, device: str | None = None,
            progress: bool = True) -> PartsAnalysis:
    """Parse every set of ``dataset`` in a world's ``split`` (cached), score it with each run
    (``{model name: run folder}``), and take the top and random patches per (model, generator).
    """
    from .evaluate import set_maps, world_sets
    from .receptive_field import receptive_field
    from .segment import parse_set

    root = Path(world_root)
    keys = {"real": f"real/{dataset}"} | {g: f"fake/{dataset}/{g}"
                                          for g in world_sets(root, [dataset]).get(dataset, [])}
    label_maps, found = {}, {}
    for name, key in keys.items():
        label_maps[name], found[name], _ = parse_set(root, key, split, progress=progress)
    images, maps, rfs = {}, {}, {}
    for model, run in runs.items():
        ck, images, maps[model] = set_maps(run, root, dataset, split=split, device=device)
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
    ``PartsAnalysis.frames``), long format: one row per part."""
    rows = []
    for (model, gen), frame in frames.items():
        t = enrichment(frame, n_boot=n_boot, seed=seed).reset_index()
        t.insert(0, "generator", gen)
        t.insert(0, "model", model)
        rows.append(t)
    return pd.concat(rows, ignore_index=True)


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
    from . import paths

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
