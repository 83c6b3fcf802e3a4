"""The parity audit: could a classifier tell two folders apart without looking at faces?

The paper's preprocessing caveat (Chai et al., Sec. 3; project page): "a classifier could easily
learn these differences [resizing, file format] rather than the actual task". Users of peer
detectors trip over exactly this (real JPEG vs fake PNG, different resizes). For a real and a
fake folder the audit reads each file's *container* facts (format, size, mode, bit depth, EXIF
and other metadata chunks, JPEG quality estimate and subsampling) and measures (scikit-learn's
ROC AUC; a cross-validated tree for many-valued facts) how well each fact alone, and all of them
together, separate the two sets: the "cheat" AUC. A fact whose AUC reaches ``flag_auc`` is a
*finding*. Two facts are reported but never flagged, since they depend on image content and
differ even at perfect parity: the file size (smooth fakes compress better) and the share of
high-frequency energy (sensitive to the resampling method, so a resize mismatch shows there).
One content fact *is* a finding: ``jpeg_grid``, whether an image lacks the reals' JPEG block
grid. The grid's amplitude (``jpeg.block_grid_score``, at the fixed phase of the reals' crop)
depends on content as much as on history (blurry fakes show a weaker grid after the same JPEG
step, sharp ones a stronger one), so sets are not compared by it. Each image is compared with
itself instead: :func:`grid_gain` gives it the reals' history once more and measures how much
grid that adds. An image that already went through that history gains about nothing (JPEG at
the same tables and phase is nearly idempotent); one that never did gains the whole grid its
content can carry. ``benchmarks/jpeg_grid_gain.py`` measures it (issue 23).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, JpegImagePlugin
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.preprocessing import OrdinalEncoder
from sklearn.tree import DecisionTreeClassifier

from . import paths
from .embedded import read_manifest
from .images import MAX_PIXELS, ImageError, atomic_write_text, list_images, read_image
from .jpeg import (
    JpegHistory,
    block_grid_score,
    ijg_history,
    jpeg_quality,  # re-exported: the audit's quality estimate lives with the history
)
from .layout import real_key, split_key
from .preprocess import center_square, prepare_generated

# Container facts: each alone separating the sets is a finding.
CONTAINER = ("format", "size", "mode", "bit_depth", "exif", "metadata", "icc_profile",
             "jpeg_quality", "jpeg_subsampling", "progressive")
# Content-dependent facts: reported, never a finding.
CONTENT = ("file_size", "hf_energy")
# Content facts that are findings: a JPEG block grid in one set only is a history mismatch.
GRID = ("jpeg_grid",)
# Grid gain (grey levels of |second difference|) above which an image lacks the reals' grid.
# Measured by benchmarks/jpeg_grid_gain.py (its record in benchmarks/records/): on the default
# world's 13 CelebA test sets (reals, blurry VAE/GMM, sharp DCGAN/upconv, inversions,
# manipulations: all with the reals' history) the 2nd to 98th percentiles of the gain lie in
# -0.19 to 0.10; real crops without the history gain 0.21 to 0.92 (sharp and blurred); 0.15
# lies between.
GRID_MISSING = 0.15
_BITS = {"1": 1, "L": 8, "P": 8, "RGB": 8, "RGBA": 8, "CMYK": 8, "YCbCr": 8, "LA": 8,
         "I;16": 16, "I;16B": 16, "I;16L": 16, "I": 32, "F": 32}
_OWN_KEYS = {"exif", "icc_profile", "progressive", "progression", "dpi", "jfif", "jfif_version",
             "jfif_unit", "jfif_density"}


@dataclass
class FileFacts:
    """What the audit reads from one file (container facts, then content facts)."""

    path: str
    format: str = ""
    size: str = ""  # "WxH"
    mode: str = ""
    bit_depth: int = 0
    exif: bool = False
    metadata: str = ""  # other metadata chunk names, sorted, comma-separated
    icc_profile: bool = False
    jpeg_quality: int = -1  # estimated IJG quality; -1 when not a JPEG
    jpeg_subsampling: str = ""
    progressive: bool = False
    file_size: int = 0
    hf_energy: float = float("nan")  # share of spectral power above half the Nyquist frequency
    jpeg_grid: float = float("nan")  # grid_gain of the centre square (> GRID_MISSING: no grid)
    error: str = ""


def hf_energy(arr: np.ndarray) -> float:
    """Share of power above half the Nyquist frequency of an HxWx3 uint8 image's luminance."""
    gray = arr.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    gray -= gray.mean()
    power = np.abs(np.fft.fft2(gray)) ** 2
    fy = np.fft.fftfreq(gray.shape[0])[:, None]
    fx = np.fft.fftfreq(gray.shape[1])[None, :]
    total = power.sum()
    return float(power[np.hypot(fy, fx) > 0.25].sum() / total) if total > 0 else 0.0


def grid_gain(arr: np.ndarray, history: JpegHistory) -> float:
    """How much JPEG block grid one more pass through ``history`` adds to an image.

    ``arr``: S x S x 3 uint8, the centre square of a ``history`` frame resized to S px (as
    ``preprocess.prepare_array`` makes it). The image is put through the reals' history once
    more (``preprocess.prepare_generated``: rendered at the native frame, JPEG round trip with
    ``history``'s tables, crop, LANCZOS back to S) and the result's ``jpeg.block_grid_score``
    minus its own is returned, in grey levels of |second difference|. About 0 for an image
    that already has this history, whatever its content; clearly positive (~0.2-0.9 on 64 px
    faces) for one that never had it (see ``GRID_MISSING``). NaN where the score is (S < 48,
    not square, grey).
    """
    before = block_grid_score(arr, (history.height, history.width))
    if not np.isfinite(before):
        return float("nan")
    again = prepare_generated(arr, arr.shape[0], jpeg=history)
    return block_grid_score(again, (history.height, history.width)) - before


def grid_auc(real_gains: np.ndarray, fake_gains: np.ndarray) -> float:
    """AUC in [0.5, 1] of "lacks the grid" (:func:`grid_gain` > ``GRID_MISSING``) between two
    sets' gains: 0.5 + half the difference of the two shares. NaN when either side has no
    measurable image."""
    a, b = (np.asarray(g, dtype=np.float64) for g in (real_gains, fake_gains))
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if not len(a) or not len(b):
        return float("nan")
    return 0.5 + abs(float(np.mean(a > GRID_MISSING)) - float(np.mean(b > GRID_MISSING))) / 2


def inspect_file(path: str | os.PathLike, *, max_pixels: int = MAX_PIXELS,
                 history: JpegHistory | None = None) -> FileFacts:
    """Container and content facts of one image file; ``error`` is set when it can't be read.
    ``history``: the reals' JPEG history whose grid ``jpeg_grid`` looks for (default CelebA's,
    ``jpeg.ijg_history()``)."""
    path = Path(path)
    facts = FileFacts(path=str(path))
    try:
        facts.file_size = path.stat().st_size
        with Image.open(path) as im:
            facts.format = im.format or ""
            facts.size = f"{im.width}x{im.height}"
            facts.mode = im.mode
            facts.bit_depth = _BITS.get(im.mode, 0)
            facts.exif = bool(im.info.get("exif")) or len(im.getexif()) > 0
            facts.icc_profile = bool(im.info.get("icc_profile"))
            facts.metadata = ",".join(sorted(k for k in im.info if k not in _OWN_KEYS))
            if im.format == "JPEG":
                facts.jpeg_quality = jpeg_quality(im.quantization)
                facts.jpeg_subsampling = str(JpegImagePlugin.get_sampling(im))
                facts.progressive = bool(im.info.get("progressive") or
                                         im.info.get("progression"))
        arr, _ = read_image(path, max_pixels=max_pixels, min_side=1)
        facts.hf_energy = hf_energy(arr)
        facts.jpeg_grid = grid_gain(center_square(arr), history or ijg_history())
    except ImageError as err:
        facts.error = err.problem
    except Exception as err:  # noqa: BLE001 - any unreadable file is reported, not fatal
        facts.error = f"cannot be read ({err})"
    return facts


@dataclass
class AuditReport:
    """Result of :func:`audit`: one row per fact, the overall cheat AUC and the findings."""

    real: str
    fake: str
    n_real: int
    n_fake: int
    flag_auc: float
    table: list[dict[str, Any]] = field(default_factory=list)
    cheat_auc: float = 0.5  # all container facts together
    findings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unreadable: dict[str, str] = field(default_factory=dict)
    # jpeg_grid in numbers: per side ("real", "fake") the measurable images, the share that
    # lacks the grid and the median grid_gain
    grid: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        return not self.findings

    def frame(self) -> pd.DataFrame:
        """The per-fact table: fact, kind, real and fake summaries, AUC, finding."""
        return pd.DataFrame(self.table)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "clean": self.clean}

    def summary(self) -> str:
        head = (f"parity audit: {self.real} ({self.n_real} files) vs {self.fake} "
                f"({self.n_fake} files); container cheat AUC {self.cheat_auc:.2f}")
        lines = [head]
        lines += [f"  FINDING: {f}" for f in self.findings] or ["  no findings: the containers "
                                                                "do not separate the sets"]
        lines += [f"  note: {n}" for n in self.notes]
        lines += [f"  unreadable: {p}: {why}" for p, why in self.unreadable.items()]
        return "\n".join(lines)


def _auc(values: pd.DataFrame, y: np.ndarray, seed: int = 0, max_groups: int = 12) -> float:
    """How well ``values`` (one row a file) separate the labels ``y``, as an AUC in [0.5, 1].

    Few distinct rows (the usual case for container facts): the exact in-sample AUC of scoring
    each distinct row by its share of fakes, which cannot overfit much with a handful of groups
    and has no fold noise. Many distinct rows (sizes, energies): a cross-validated small tree.
    """
    keys = values.astype(str).agg("|".join, axis=1)
    if keys.nunique() <= 1:
        return 0.5
    if keys.nunique() <= max_groups:
        scores = pd.Series(y, index=keys.index).groupby(keys).transform("mean").to_numpy()
    else:
        # Numbers stay numbers (a tree can threshold them); anything else becomes codes.
        x = np.column_stack([
            values[c].to_numpy(float) if values[c].dtype.kind in "biuf"
            else OrdinalEncoder().fit_transform(values[[c]].astype(str)).ravel()
            for c in values])
        folds = int(min(5, np.bincount(y).min()))
        tree = DecisionTreeClassifier(min_samples_leaf=3, max_depth=4, random_state=seed)
        if folds < 2:  # too few files to cross-validate; the report notes it
            scores = tree.fit(x, y).predict_proba(x)[:, 1]
        else:
            cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
            scores = cross_val_predict(tree, x, y, cv=cv, method="predict_proba")[:, 1]
    auc = float(roc_auc_score(y, scores))
    return max(auc, 1 - auc)  # a fact that separates "backwards" separates all the same


def _score_auc(scores: pd.Series, y: np.ndarray) -> float:
    """AUC in [0.5, 1] of a fixed per-file score (no fitting, so no cross-validation needed);
    0.5 when it is undefined on either side."""
    ok = scores.notna().to_numpy()
    if len(np.unique(y[ok])) < 2:
        return 0.5
    auc = float(roc_auc_score(y[ok], scores.to_numpy()[ok]))
    return max(auc, 1 - auc)


def _describe(series: pd.Series) -> str:
    if series.dtype.kind in "fi" and series.nunique() > 5:
        lo, hi = series.quantile(0.1), series.quantile(0.9)
        return f"median {series.median():.4g} [{lo:.4g}, {hi:.4g}]"
    counts = series.astype(str).replace("", "-").value_counts(normalize=True)
    parts = [f"{v} ({p:.0%})" for v, p in counts.head(3).items()]
    return ", ".join(parts) + (" ..." if len(counts) > 3 else "")


def _describe_grid(gains: pd.Series) -> str:
    """``jpeg_grid`` of one side: the share of measurable images that lack the grid, and the
    median gain."""
    gains = gains.dropna()
    if gains.empty:
        return "not measurable (gray or under 48 px)"
    return (f"{(gains > GRID_MISSING).mean():.0%} lack it (median gain "
            f"{gains.median():.3g})")


def audit(real_dir: str | os.PathLike, fake_dir: str | os.PathLike, *, flag_auc: float = 0.7,
          max_files: int | None = 2000, recursive: bool = False, seed: int = 0,
          history: JpegHistory | None = None) -> AuditReport:
    """Audit two image folders for container differences, and a missing JPEG block grid, that
    alone separate them.

    ``flag_auc`` is the one threshold: a container fact whose AUC reaches it is a finding, and
    so is ``jpeg_grid``, whose AUC is that of "lacks the grid" (:func:`grid_gain` above
    ``GRID_MISSING``; AUC 0.5 + half the difference of the two shares). ``history``: the reals'
    JPEG history (default CelebA's: q75, 4:2:0, the images centre crops of a 218 x 178 frame),
    which fixes the tables and where a grid would sit.

    ``max_files`` caps the files read per folder (a seeded random subset; ``None`` reads all).
    Raises ``FileNotFoundError`` / ``ValueError`` naming the folder when one is missing or holds
    no images; unreadable files are listed in the report, not fatal.
    """
    history = history or ijg_history()
    sides = [_inspect_folder(folder, history, max_files, recursive, seed)
             for folder in (real_dir, fake_dir)]
    rows = [asdict(f) | {"label": lab} for lab, side in enumerate(sides) for f in side]
    df = pd.DataFrame(rows)
    report = AuditReport(real=str(real_dir), fake=str(fake_dir), n_real=len(sides[0]),
                         n_fake=len(sides[1]), flag_auc=flag_auc)
    report.unreadable = {r.path: r.error for r in df.itertuples() if r.error}
    ok = df[df.error == ""]
    y = ok.label.to_numpy()
    if len(np.unique(y)) < 2:
        report.findings.append("one side has no readable images; nothing to compare")
        return report
    if np.bincount(y).min() < 5:
        report.notes.append("fewer than 5 readable files on a side: AUCs are in-sample/unstable")
    for fact in CONTAINER + CONTENT + GRID:
        _judge_fact(report, fact, ok, y, seed, history)
    report.cheat_auc = round(_auc(ok[list(CONTAINER)], y, seed), 3)
    if report.cheat_auc >= flag_auc and not report.findings:
        report.findings.append(f"container facts together separate the sets "
                               f"(cheat AUC {report.cheat_auc:.2f})")
    return report


def _inspect_folder(folder: str | os.PathLike, history: JpegHistory, max_files: int | None,
                    recursive: bool, seed: int) -> list[FileFacts]:
    """:func:`inspect_file` of a folder's images (a seeded subset of ``max_files``)."""
    files = list_images(folder, recursive=recursive)
    if not files:
        raise ValueError(f"{folder}: holds no image files")
    if max_files is not None and len(files) > max_files:
        pick = np.random.default_rng(seed).choice(len(files), max_files, replace=False)
        files = [files[i] for i in sorted(pick)]
    return [inspect_file(f, history=history) for f in files]


def _judge_fact(report: AuditReport, fact: str, ok: pd.DataFrame, y: np.ndarray, seed: int,
                history: JpegHistory) -> None:
    """One fact's table row, and its finding or note, added to ``report``."""
    kind = "container" if fact in CONTAINER else "grid" if fact in GRID else "content"
    if kind == "grid":
        gains = {side: ok[fact][y == k].dropna() for k, side in enumerate(("real", "fake"))}
        report.grid = {side: {"n": len(g), "lacking": float((g > GRID_MISSING).mean()),
                              "median_gain": float(g.median())} if len(g) else {}
                       for side, g in gains.items()}
        auc = grid_auc(gains["real"].to_numpy(), gains["fake"].to_numpy())
        auc = 0.5 if np.isnan(auc) else auc
        real_s, fake_s = (_describe_grid(ok[ok.label == k][fact]) for k in (0, 1))
    else:
        auc = _auc(ok[[fact]], y, seed)
        real_s, fake_s = (_describe(ok[ok.label == k][fact]) for k in (0, 1))
    finding = kind != "content" and auc >= report.flag_auc
    report.table.append({"fact": fact, "kind": kind, "real": real_s, "fake": fake_s,
                         "auc": round(auc, 3), "finding": finding})
    if finding and kind == "grid":
        report.findings.append(
            f"{fact}: the JPEG block grid (8/16 px blocks of a {history.height}x"
            f"{history.width} frame, q{history.quality}) is in one set only: real "
            f"{real_s} vs fake {fake_s} (AUC {auc:.2f}); give both the same JPEG history")
    elif finding:
        report.findings.append(f"{fact}: real {real_s} vs fake {fake_s} alone separates the "
                               f"sets (AUC {auc:.2f})")
    elif kind == "content" and auc >= report.flag_auc:
        what = ("file size depends on content and encoding (smooth images compress "
                "better); not a finding by itself"
                if fact == "file_size" else
                "check that both sets were resized with the same method and scale")
        report.notes.append(f"{fact} differs (AUC {auc:.2f}): {what}")


def make_leaky_copy(src: str | os.PathLike, dst: str | os.PathLike, leak: str, *,
                    quality: int = 90) -> Path:
    """Copy a prepared PNG folder with one planted container leak, for demos and tests.

    ``leak``: ``"jpeg"`` (re-saved as JPEG at ``quality``), ``"size"`` (resized to 2x with
    bicubic), ``"mode"`` (saved as 8-bit grayscale PNG) or ``"none"`` (a byte-identical copy).
    Returns ``dst``; ``src`` is only read.
    """
    src, dst = Path(src), Path(dst)
    if leak not in ("jpeg", "size", "mode", "none"):
        raise ValueError(f"unknown leak {leak!r}")
    dst.mkdir(parents=True, exist_ok=True)
    for f in list_images(src):
        if leak == "none":
            shutil.copyfile(f, dst / f.name)
            continue
        with Image.open(f) as im:
            im = im.convert("RGB")
            if leak == "jpeg":
                im.save(dst / (f.stem + ".jpg"), quality=quality)
            elif leak == "size":
                im.resize((im.width * 2, im.height * 2), Image.Resampling.BICUBIC).save(
                    dst / f.name)
            else:
                im.convert("L").save(dst / f.name)
    return dst


def pairs_frame(reports: dict[str, AuditReport]) -> pd.DataFrame:
    """One row per audited pair: files, cheat AUC, number of findings, and what they are."""

    def rel(p: str) -> str:  # tables stay readable and portable: paths below the root, relative
        try:
            return Path(p).resolve().relative_to(paths.root()).as_posix()
        except ValueError:
            return p

    return pd.DataFrame([
        {"pair": name, "real": rel(r.real), "fake": rel(r.fake), "n_real": r.n_real,
         "n_fake": r.n_fake,
         "cheat_auc": r.cheat_auc, "findings": len(r.findings),
         "facts": "; ".join(f.split(":")[0] for f in r.findings), "clean": r.clean}
        for name, r in reports.items()]).set_index("pair")


def grid_frame(reports: dict[str, AuditReport]) -> pd.DataFrame:
    """The JPEG-grid check of each audited pair with a measurable grid on both sides: ``pair``,
    per side ``n_``, ``lacking_`` (share of images without the grid) and ``median_gain_``
    (:func:`grid_gain`), and the fact's ``auc`` and ``finding``."""
    rows = []
    for name, r in reports.items():
        if not (r.grid.get("real") and r.grid.get("fake")):
            continue  # gray or small images: no grid to measure
        row = next(t for t in r.table if t["fact"] in GRID)
        rows.append({"pair": name} | {f"{k}_{side}": round(v, 4) if k != "n" else int(v)
                                      for side, g in r.grid.items() for k, v in g.items()}
                    | {"auc": row["auc"], "finding": row["finding"]})
    return pd.DataFrame(rows).set_index("pair") if rows else pd.DataFrame()


def save_table(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """Write ``frame`` to ``results/tables/<name>.csv`` (atomically) and return it for display."""

    atomic_write_text(paths.tables_dir() / f"{name}.csv", frame.to_csv())
    return frame


def audit_world(world_root: str | os.PathLike, *, split: str = "test",
                **kwargs: Any) -> dict[str, AuditReport]:
    """Audit every fake set of a built world against its dataset's reals, on one split.

    Returns ``{"celeba/dcgan": report, ...}`` (manifest order); ``kwargs`` go to :func:`audit`.
    The JPEG grid looked for is the one the manifest records for the reals' source files
    (``jpeg_source``); CelebA's default where none is recorded.
    """

    root = Path(world_root)
    sets = read_manifest(root)["sets"]
    reports = {}
    for key in sorted(sets):
        kind, dataset, generator = split_key(key)
        if kind == "fake":
            # the grid looked for is the one the reals' own files were recorded with
            source = sets.get(real_key(dataset), {}).get("jpeg_source")
            history = JpegHistory.from_dict(source) if source else None
            reports[f"{dataset}/{generator}"] = audit(root / real_key(dataset) / split,
                                                      root / key / split,
                                                      **({"history": history} | kwargs))
    return reports
