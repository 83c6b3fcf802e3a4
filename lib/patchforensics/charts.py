"""Charts of the analysis tables (lines, bars, histograms, reliability diagrams): AP by depth,
patch vs. full, robustness, training curves, face-part counts, finetuning, exaggeration and
localization. Like ``viz`` (images and heatmaps), they take data in and compute nothing of the
analysis.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .models import DEPTHS
from .protocol import one_setting
from .receptive_field import paper_field_fraction
from .runs import read_history, resolve
from .segment import part_counts


def _fraction_axis(ax) -> None:
    ax.set_xscale("log")
    ticks = [0.05, 0.1, 0.2, 0.5, 1.0]
    ax.set_xticks(ticks, [f"{t:.0%}" if t < 1 else "full" for t in ticks], fontsize=7)
    ax.set_xlim(0.04, 1.25)
    ax.set_xlabel("receptive field / face side", fontsize=8)
    ax.grid(alpha=0.3)


def ap_by_depth(table, *, mode: str = "mean_softmax", paper=None,
                metric: str = "ap_real_positive",
                setting: str | None = None) -> matplotlib.figure.Figure:
    """The paper's figure against the patch size *relative to the face*: ``metric`` of an
    ``evaluate.cross_generator`` table (one training ``setting``, default the primary one)
    against ``field_fraction`` (log axis; the full model at 1.0), one line per test set through
    the means over seeds, each seed's point with its bootstrap interval bar when the table has
    ``<metric>_ci_low``/``_ci_high``; a panel per backbone, and the paper's own numbers
    (``paper``: rows = test sets, columns block1..block5 and full, AP in %, real = positive)
    at the paper's fractions (19, 43, 91, 187, 283 px of 299; full 1.0) as a last panel. The
    default metric is AP with real as positive, the paper's convention."""

    t, setting = one_setting(table[table["mode"] == mode], setting)
    if "field_fraction" not in t.columns:  # older tables: fraction of the full model's field
        full = t[t["depth"] == "full"].groupby("arch")["rf_px"].first()
        t = t.assign(field_fraction=np.minimum(t["rf_px"] / t["arch"].map(full), 1.0))
    if "seed" not in t.columns:
        t = t.assign(seed=0)
    archs = [a for a in DEPTHS if a in set(t["arch"])]
    panels = len(archs) + (paper is not None)
    fig, axes = plt.subplots(1, panels, figsize=(4.4 * panels, 3.4), squeeze=False)
    lo_col, hi_col = f"{metric}_ci_low", f"{metric}_ci_high"
    for ax, arch in zip(axes[0], archs, strict=False):
        ta = t[t["arch"] == arch]
        for (dataset, gen), g in ta.groupby(["dataset", "generator"], sort=True):
            mean = g.groupby("field_fraction")[metric].mean()
            seen = bool(g["seen"].any())
            line, = ax.plot(mean.index, mean.to_numpy(), marker="o", ms=3,
                            lw=2.2 if seen else 1.2,
                            ls="-" if dataset == g["train_set"].iloc[0].split("/")[0] else "--",
                            label=f"{dataset}/{gen}" + (" (train)" if seen else ""))
            if lo_col in g.columns:
                seeds = sorted(g["seed"].unique())
                for k, sd in enumerate(seeds):  # seeds side by side around each fraction
                    gs = g[g["seed"] == sd]
                    x = gs["field_fraction"].to_numpy() * 1.03 ** (k - (len(seeds) - 1) / 2)
                    y = gs[metric].to_numpy()
                    # a percentile interval need not hold the point estimate: clip at it
                    ax.errorbar(x, y, yerr=np.clip([y - gs[lo_col].to_numpy(),
                                                    gs[hi_col].to_numpy() - y], 0, None),
                                fmt="none", ecolor=line.get_color(), elinewidth=0.8, alpha=0.6)
        _fraction_axis(ax)
        ax.set_title(f"ours: {arch}, {mode}" + (f", {setting}" if setting else ""), fontsize=9)
        ax.set_ylabel(metric.replace("_", " ").upper() if metric in ("ap", "auc") else
                      "AP (real = positive)" if metric == "ap_real_positive" else metric)
        ax.set_ylim(0.0 if metric == "auc" else 0.3, 1.02)
        ax.legend(fontsize=6, loc="lower left")
    if paper is not None:
        ax = axes[0][-1]
        cols = [c for c in paper.columns if c.startswith("block") or c == "full"]
        x = [paper_field_fraction(c) for c in cols]
        for name, row in paper.iterrows():
            ax.plot(x, row[cols].to_numpy() / 100, marker="o", ms=3, label=name)
        _fraction_axis(ax)
        ax.set_title("paper (read off its figure; real = positive)", fontsize=9)
        ax.set_ylim(0.3, 1.02)
        ax.legend(fontsize=6, loc="lower left")
    fig.tight_layout()
    return fig


def patch_vs_full_figure(comparison) -> matplotlib.figure.Figure:
    """AUC(patch) - AUC(full) with its paired 95 % interval per patch model and test set (an
    ``evaluate.patch_vs_full`` table): a panel per setting, a row per test set, one marker per
    patch model (by field fraction); the dashed line at 0 is "no difference"."""
    settings = list(dict.fromkeys(comparison["setting"]))
    fig, axes = plt.subplots(1, len(settings), squeeze=False,
                             figsize=(4.6 * len(settings), 0.5 + 0.35 * comparison[
                                 ["dataset", "generator"]].drop_duplicates().shape[0] * 1.2))
    for ax, setting in zip(axes[0], settings, strict=True):
        c = comparison[comparison["setting"] == setting]
        sets = list(dict.fromkeys(c["dataset"] + "/" + c["generator"]))
        models = c.drop_duplicates("model").sort_values("field_fraction")
        for k, m in enumerate(models.itertuples()):
            g = c[c["model"] == m.model]
            y = np.array([sets.index(s) for s in g["dataset"] + "/" + g["generator"]])
            y = y + 0.6 * (k - (len(models) - 1) / 2) / max(len(models), 1)
            ax.errorbar(g["diff"], y, xerr=[g["diff"] - g["ci_low"], g["ci_high"] - g["diff"]],
                        fmt="o", ms=3, capsize=2,
                        label=f"{m.model} ({m.field_fraction:.0%} of the face)")
        ax.axvline(0, color="0.3", ls="--", lw=0.8)
        ax.set_yticks(range(len(sets)), sets, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel("AUC(patch) - AUC(full), 95 % paired bootstrap", fontsize=8)
        ax.set_title(setting, fontsize=9)
        ax.grid(alpha=0.3, axis="x")
        ax.legend(fontsize=6, loc="best")
    fig.tight_layout()
    return fig


def robustness_curves(frame) -> matplotlib.figure.Figure:
    """AP against each degradation's strength (a ``robustness.robustness`` frame): a panel per
    kind, a line per model (mean over seeds) with the min-max spread shaded and the clean AP
    dotted."""
    kinds = [k for k in frame["kind"].unique() if k != "none"]
    fig, axes = plt.subplots(1, len(kinds), figsize=(3.6 * len(kinds), 3.0), squeeze=False)
    xlabel = {"jpeg": "JPEG quality", "blur": "blur sigma (px)", "resize": "resize factor"}
    for ax, kind in zip(axes[0], kinds, strict=True):
        for n, (model, g) in enumerate(frame.groupby("model", sort=False)):
            color = f"C{n}"
            stats = g[g["kind"] == kind].groupby("value")["ap"].agg(["mean", "min", "max"])
            seeds = g["seed"].nunique()
            ax.plot(stats.index, stats["mean"], marker="o", ms=3, color=color,
                    label=f"{model} ({seeds} seed{'s' * (seeds > 1)})")
            ax.fill_between(stats.index, stats["min"], stats["max"], color=color, alpha=0.2)
            clean = g[g["kind"] == "none"]["ap"].mean()
            ax.axhline(clean, color=color, ls=":", lw=1)
        if kind in ("jpeg", "resize"):
            ax.invert_xaxis()  # stronger degradation to the right
        ax.set_xlabel(xlabel.get(kind, kind))
        ax.set_ylabel("AP")
        ax.set_ylim(0.4, 1.02)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=6, loc="lower left")
    fig.tight_layout()
    return fig


def reliability_diagram(prob_before: np.ndarray, prob_after: np.ndarray, labels: np.ndarray, *,
                        bins: int = 10, title: str | None = None) -> matplotlib.figure.Figure:
    """Fraction of fakes against the predicted fake probability (``bins`` equal bins), before
    and after temperature scaling; the diagonal is perfect calibration."""
    from sklearn.calibration import calibration_curve

    fig, ax = plt.subplots(figsize=(3.2, 3.0))
    for p, name in ((prob_before, "raw"), (prob_after, "temperature-scaled")):
        frac, mean = calibration_curve(labels, p, n_bins=bins, strategy="uniform")
        ax.plot(mean, frac, marker="o", ms=3, label=name)
    ax.plot([0, 1], [0, 1], color="gray", ls="--", lw=0.8)
    ax.set_xlabel("predicted P(fake)")
    ax.set_ylabel("fraction fake")
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def training_curves(run_dirs: dict[str, str | os.PathLike | pd.DataFrame],
                    metrics: Sequence[str] = ("train_loss", "val_loss", "val_patch_acc",
                                              "val_image_acc")) -> matplotlib.figure.Figure:
    """Training curves: one panel per metric, one line per run. ``runs``: ``{label: run
    folder}`` (relative folders are below ``paths.checkpoints_dir()``, as ``train_grid``
    records them) or ``{label: history frame}`` (``runs.read_history``: one row per epoch with
    an ``epoch`` column and ``metrics``); a run without history yet draws no line."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 2.8), squeeze=False)
    for label, run in run_dirs.items():
        if isinstance(run, pd.DataFrame):
            hist = run
        else:

            hist = read_history(resolve(run))
        if hist.empty:
            continue
        for ax, metric in zip(axes[0], metrics, strict=True):
            ax.plot(hist["epoch"], hist[metric], marker=".", label=label)
    for ax, metric in zip(axes[0], metrics, strict=True):
        ax.set_title(metric.replace("_", " "), fontsize=9)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=6, loc="best")
    fig.tight_layout()
    return fig


def val_accuracy_bars(summary: pd.DataFrame) -> matplotlib.figure.Figure:
    """Best validation per-patch and image accuracy (in [0, 1]) of every run of a
    ``grids.train_grid`` table (index: model; columns ``val_patch_acc``, ``val_image_acc``,
    ``depth``, ``rf_px``), models in table order, labelled with their receptive field."""
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * len(summary), 3.0))
    x = np.arange(len(summary))
    for k, (col, label) in enumerate((("val_patch_acc", "per patch"),
                                      ("val_image_acc", "image (mean patch softmax)"))):
        ax.bar(x + (k - 0.5) * 0.38, summary[col], width=0.38, label=label)
    names = [f"{m}\n{'full' if d == 'full' else f'{rf} px'}" for m, d, rf in
             zip(summary.index, summary["depth"], summary["rf_px"], strict=True)]
    ax.set_xticks(x, names, fontsize=7, rotation=30, ha="right")
    ax.set_ylim(0.4, 1.01)
    ax.axhline(0.5, color="gray", lw=0.8, ls="--")
    ax.set_ylabel("best val accuracy")
    ax.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)
    fig.tight_layout()
    return fig


def part_histogram(frames: dict[str, pd.DataFrame], *, title: str | None = None,
                   paper: pd.DataFrame | None = None) -> matplotlib.figure.Figure:
    """The paper's face-part figure: per test set (``{name: parts.top_patches frame}``), bars
    of top-patch and random-patch counts per face part (``parts.part_counts``). ``paper``: the
    paper's counts for comparison (columns ``test_set, cluster, top, random``), drawn as one
    more panel per test set it holds."""

    panels = list(frames.items())
    extra = [] if paper is None else list(paper.groupby("test_set", sort=False))
    n = len(panels) + len(extra)
    ncols = min(n, 4)
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.3 * ncols, 2.6 * nrows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax, (name, frame) in zip(axes.flat, panels, strict=False):
        c = part_counts(frame)
        x = np.arange(len(c))
        ax.bar(x - 0.2, c["top"], 0.4, label="top patch")
        ax.bar(x + 0.2, c["random"], 0.4, label="random patch", color="0.6")
        ax.set_xticks(x, c.index, rotation=60, ha="right", fontsize=7)
        ax.set_title(f"{name} (n={len(frame)})", fontsize=8)
    for ax, (name, g) in zip(axes.flat[len(panels):], extra, strict=False):
        x = np.arange(len(g))
        ax.bar(x - 0.2, g["top"], 0.4, label="top patch")
        ax.bar(x + 0.2, g["random"], 0.4, label="random patch", color="0.6")
        ax.set_xticks(x, g["cluster"], rotation=60, ha="right", fontsize=7)
        ax.set_title(f"paper: {name}", fontsize=8)
    axes.flat[0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def finetune_log(history: pd.DataFrame) -> matplotlib.figure.Figure:
    """The finetuning log (notebook 05; ``finetune`` result's ``history``, one row per
    evaluation ``step``): the frozen classifier's AP and share of samples called fake (in
    [0, 1]), and the generator's distances (to the nearest real, to the nearest other sample,
    spectrum)."""
    panels = (("ap", "frozen C: AP (fake = positive)"),
              ("called_fake", "frozen C: share called fake"),
              ("nn_real", "median L2 to nearest real"),
              ("nn_sample", "median L2 to nearest sample"),
              ("spectrum", "spectrum distance to reals"))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.0 * len(panels), 2.6))
    for ax, (col, title) in zip(axes, panels, strict=True):
        ax.plot(history["step"], history[col], marker="o", ms=3)
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("finetuning step", fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def score_along_shift(curves: dict[str, pd.DataFrame]) -> matplotlib.figure.Figure:
    """Classifier score (P(fake) in [0, 1]) along a, one line per shift, +-1 sd shaded
    (notebook 06; ``{name: exaggerate.score_curve frame}`` with columns ``alpha, score,
    std``)."""
    fig, ax = plt.subplots(figsize=(4.2, 3.0))
    for name, c in curves.items():
        ax.plot(c["alpha"], c["score"], marker="o", ms=3, label=name)
        ax.fill_between(c["alpha"], c["score"] - c["std"], c["score"] + c["std"], alpha=0.15)
    ax.axvline(0, color="gray", lw=0.8)
    ax.set_xlabel("a  (image = G(z + a w))")
    ax.set_ylabel("classifier score, P(fake)")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def localization_bars(table: pd.DataFrame,
                      metric: str = "pointing_game") -> matplotlib.figure.Figure:
    """``metric`` with its interval per localizer and model, one panel per manipulation
    (``localize.localization_table``'s columns; the control rows, ``images == "real"``, in
    orange). Chance: for the pointing game each localizer's own (a black tick,
    ``pointing_chance``), for the mass the mask's area, for the pixel AUC 0.5 (dashed)."""
    methods = list(dict.fromkeys(table["manipulation"]))
    fig, axes = plt.subplots(1, len(methods), figsize=(3.0 * len(methods), 3.0), squeeze=False,
                             sharey=True)
    for ax, m in zip(axes[0], methods, strict=True):
        t = table[table["manipulation"] == m]
        on = t["images"] if "images" in t else pd.Series("manipulated", index=t.index)
        # the control (the same localizer on the real faces) is labelled "on real"
        labels = [f"{a}\n{b}".replace("xception_", "") + ("\non real" if i == "real" else "")
                  for a, b, i in zip(t["localizer"], t["model"], on, strict=True)]
        y = t[metric].to_numpy(float)
        err = np.vstack([y - t[f"{metric}_low"].to_numpy(float),
                         t[f"{metric}_high"].to_numpy(float) - y])
        colors = ["#dd8452" if i == "real" else "#4c72b0" for i in on]
        ax.bar(range(len(t)), np.nan_to_num(y), yerr=np.nan_to_num(err), color=colors,
               capsize=3)
        if metric == "pointing_game" and "pointing_chance" in t:  # each localizer's own chance
            ax.scatter(range(len(t)), t["pointing_chance"], marker="_", s=300, color="black",
                       zorder=3, label="chance")
            ax.legend(fontsize=6, loc="upper right")
        else:
            ax.axhline(0.5 if metric == "pixel_auc" else float(t["mask_area"].mean()), ls="--",
                       color="gray", lw=1)
        ax.set_xticks(range(len(t)), labels, fontsize=6, rotation=0)
        ax.set_title(m, fontsize=9)
    axes[0, 0].set_ylabel(metric.replace("_", " "))
    fig.tight_layout()
    return fig
