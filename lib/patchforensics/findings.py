"""Notebook 03's cross-generator table read out: pivots by model and test set, the summary per
depth, the paper's AP beside ours, and the written reading in words from the tables.
"""

from __future__ import annotations

import pandas as pd

from . import paths
from .models import DEPTHS
from .protocol import one_setting
from .receptive_field import paper_field_fraction
from .stats import VERDICTS


def depth_summary(table: pd.DataFrame, *, mode: str = "mean_softmax",
                  arch: str = "xception", setting: str | None = None) -> pd.DataFrame:
    """Per depth of ``arch`` (rows in depth order), from a :func:`cross_generator` table of one
    training ``setting`` (default: the primary one): ``field_fraction``, ``rf_px``, ``n_seeds``
    and the mean over seeds and test pairs of AUC and AP on the seen pair (``auc_seen``,
    ``ap_seen``), the training dataset's unseen generators (``auc_unseen``, ``ap_unseen``) and
    the other datasets (``auc_other_dataset``, ``ap_other_dataset``). No intervals: those come
    from :func:`unseen_auc` and :func:`patch_vs_full`, which resample images and seeds."""

    t, _ = one_setting(table[(table["mode"] == mode) & (table["arch"] == arch)], setting)
    if "seed" not in t.columns:
        t = t.assign(seed=0)
    train_dataset = t["train_set"].str.split("/").str[0]
    same = t[t["dataset"] == train_dataset]
    other = t[t["dataset"] != train_dataset]
    out = pd.DataFrame(index=pd.Index(sorted(set(t["depth"])), name="depth"))
    if "field_fraction" in t.columns:
        out["field_fraction"] = t.groupby("depth")["field_fraction"].first()
    out["rf_px"] = t.groupby("depth")["rf_px"].first()
    out["n_seeds"] = t.groupby("depth")["seed"].nunique()
    for metric in ("auc", "ap"):
        if metric not in t.columns:
            continue
        by = same.groupby(["depth", "seen"])[metric].mean().unstack("seen")
        out[f"{metric}_seen"] = by.get(True)
        out[f"{metric}_unseen"] = by.get(False)
        out[f"{metric}_other_dataset"] = other.groupby("depth")[metric].mean()
    return out.reindex([d for d in DEPTHS[arch] if d in out.index])


def _ff(x: float) -> str:
    return "full image" if x >= 1.0 else f"field {x:.0%} of the face"


def _secondary_reading(cmp_: pd.DataFrame) -> list[str]:
    """The pooled rows and the verdict counts per unseen test set of a comparison table
    (``compare.secondary_comparisons``, Holm-adjusted verdicts, or :func:`patch_vs_full`)."""
    col = "verdict_holm" if "verdict_holm" in cmp_.columns else "verdict"
    is_pooled = cmp_["generator"].isin(["mean_unseen", "pooled"])
    pooled, per = cmp_[is_pooled], cmp_[~cmp_["seen"] & ~is_pooled]
    kinds = [*VERDICTS, *sorted(set(per[col]) - set(VERDICTS))]
    adjusted = ", Holm-adjusted within the table" if col == "verdict_holm" else ""
    lines = []
    if len(pooled):
        lines.append(f"\nPatch vs. full model on the mean over unseen generators (AUC(patch) - "
                     f"AUC(full){adjusted}):")
        lines += [f"- {r.model} ({_ff(r.field_fraction)}): {r.diff:+.3f} "
                  f"[{r.ci_low:+.3f}, {r.ci_high:+.3f}]: **{getattr(r, col)}**"
                  for r in pooled.itertuples()]
    lines.append(f"\nVerdicts per unseen test set (patch models against the full model"
                 f"{adjusted}):")
    for (dataset, gen), g in per.groupby(["dataset", "generator"], sort=True):
        counts = g[col].value_counts()
        better = g[g[col] == VERDICTS[0]]["model"].tolist()
        lines.append(f"- {dataset}/{gen}: " + ", ".join(
            f"{v}: {int(counts.get(v, 0))}" for v in kinds) +
            (f" (patch better: {', '.join(better)})" if better else ""))
    n, total = per[col].value_counts(), len(per)
    if total and n.get(VERDICTS[0], 0) == 0 and n.get(VERDICTS[2], 0) == 0:
        lines.append(f"\nNo interval separates a patch model from the full model on any of the "
                     f"{total} (model, unseen generator) comparisons: this run does not decide "
                     "the paper's claim.")
    elif total:
        lines.append(f"\nOf {total} (model, unseen generator) comparisons, "
                     f"{int(n.get(VERDICTS[0], 0))} favour the patch model, "
                     f"{int(n.get(VERDICTS[2], 0))} the full model and "
                     f"{total - int(n.get(VERDICTS[0], 0)) - int(n.get(VERDICTS[2], 0))} are "
                     "undecided or untested. Trends across patch sizes are not tested here.")
    return lines


def reading(table: pd.DataFrame, *, mode: str = "mean_softmax",
            paper: pd.DataFrame | None = None, comparison: pd.DataFrame | None = None,
            summary: pd.DataFrame | None = None, setting: str | None = None,
            primary: pd.DataFrame | None = None) -> str:
    """A short markdown reading of the paper's claim that smaller receptive fields generalise
    better to unseen generators, worded only from intervals; every number is computed from the
    arguments.

    ``table``: :func:`cross_generator` (per-row AUC intervals); ``primary``:
    ``compare.primary_contrast`` (the pre-registered verdicts); ``comparison``:
    ``compare.secondary_comparisons`` (or :func:`patch_vs_full`: secondary verdicts); ``summary``:
    :func:`unseen_auc` (mean unseen AUC per field fraction with intervals); ``paper``: the
    paper's AP-by-block figure (rows = test sets). One training ``setting`` (default: the
    primary one). Without ``primary`` and ``comparison`` the reading states no verdict: per-row
    intervals that overlap or not do not test a paired difference."""
    t, setting = one_setting(table[table["mode"] == mode], setting)
    where = f", setting `{setting}`" if setting else ""
    lines = [f"**Unseen generators, {mode}{where}** (AUC, fake = positive; 95 % bootstrap "
             "intervals over test images and seeds):"]
    if summary is not None:
        sm, _ = one_setting(summary, setting)
        for r in sm.itertuples():
            lines.append(f"- {r.model} ({_ff(r.field_fraction)}, {r.n_seeds} seed(s)): mean "
                         f"unseen AUC {r.auc_unseen:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}] "
                         f"over {r.n_unseen} generator(s); seen {r.auc_seen:.3f}")
    if primary is not None:
        lines.append("\n**The primary contrast** (pre-registered; AUC(patch) - AUC(full), mean "
                     "over the unseen generators and seeds):")
        for r in primary.itertuples():
            lines.append(f"- {r.model} vs {r.full_model} on {r.generators}: {r.diff:+.3f} "
                         f"[{r.ci_low:+.3f}, {r.ci_high:+.3f}] ({r.method}; seeds "
                         f"{r.n_seeds} + {r.n_seeds_full}; adequate runs {r.adequate_runs}, "
                         f"ended by the cap {r.cap_runs}): **{r.verdict}**")
    if comparison is not None:
        lines += _secondary_reading(one_setting(comparison, setting)[0])
    if primary is None and comparison is None:
        lines.append("\nPer unseen test set, AUC [interval over test images] by model "
                     "(no verdict without the paired comparison, `patch_vs_full`):")
        u = t[~t["seen"]]
        has_ci = "auc_ci_low" in u.columns
        for (dataset, gen), g in u.groupby(["dataset", "generator"], sort=True):
            g = g.groupby("label", sort=False).agg(
                auc=("auc", "mean"), lo=("auc_ci_low" if has_ci else "auc", "mean"),
                hi=("auc_ci_high" if has_ci else "auc", "mean"), n=("auc", "size"))
            lines.append(f"- {dataset}/{gen}: " + "; ".join(
                f"{m} {r.auc:.3f}" + (f" [{r.lo:.3f}, {r.hi:.3f}]" if has_ci and r.n == 1
                                       else f" (mean of {r.n} seeds)" if r.n > 1 else "")
                for m, r in g.iterrows()))
    if paper is not None:
        cols = [c for c in paper.columns if c.startswith("block") or c == "full"]
        unseen = paper.drop(index=[i for i in paper.index if i.endswith("pgan")], errors="ignore")
        means = unseen[cols].mean() / 100
        lines.append("\nThe paper (AP read off its figure, real = positive, mean over its unseen "
                     "test sets, no intervals published): " +
                     ", ".join(f"{_ff(paper_field_fraction(c))} {v:.3f}"
                               for c, v in means.items()) + ".")
    return "\n".join(lines)


def paper_ap_by_block() -> pd.DataFrame:
    """The paper's AP (%) per test set and Xception depth, read off its figure (approximate,
    real = positive); rows = test sets. From ``results/reference/paper_ap_by_block.csv``."""
    return pd.read_csv(paths.reference_dir() / "paper_ap_by_block.csv", comment="#",
                       index_col="test_set")


def ap_pivot(table: pd.DataFrame, *, mode: str = "mean_softmax", metric: str = "ap",
             setting: str | None = None) -> pd.DataFrame:
    """``metric`` of a :func:`cross_generator` table as models x test sets, mean over seeds, for
    one training ``setting`` (default: the primary one); rows in the table's model order, the
    training set's column first."""
    t, _ = one_setting(table[table["mode"] == mode], setting)
    t = t.assign(test_set=lambda f: f["dataset"] + "/" + f["generator"])
    pivot = t.pivot_table(index="label", columns="test_set", values=metric, aggfunc="mean")
    seen = t.loc[t["seen"], "test_set"].unique().tolist()
    cols = seen + [c for c in pivot.columns if c not in seen]
    return pivot.reindex(index=list(dict.fromkeys(t["label"])), columns=cols)


def interval_pivot(table: pd.DataFrame, *, mode: str = "mean_softmax",
                   setting: str | None = None, metric: str = "auc") -> pd.DataFrame:
    """``metric`` with its bootstrap interval as text ("0.912 [0.874, 0.945]"), models (field
    fraction, label, seed) x test sets, for one score mode and setting (default: the primary)."""
    t, _ = one_setting(table[table["mode"] == mode], setting)
    text = t.apply(lambda r: f"{r[metric]:.3f} [{r[f'{metric}_ci_low']:.3f}, "
                             f"{r[f'{metric}_ci_high']:.3f}]", axis=1)
    return t.assign(**{metric: text}).pivot_table(
        index=["field_fraction", "label", "seed"], columns=["dataset", "generator"],
        values=metric, aggfunc="first")
