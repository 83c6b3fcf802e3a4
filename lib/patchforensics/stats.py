"""Small-sample statistics of the pre-registered comparisons (Chai et al. 2020, Sec. 4.1: the
cross-generator comparison of patch and full-image classifiers), as pure numpy functions.

Why this module exists (issue 24): the earlier intervals resampled three training seeds with
replacement (which shrinks a 3-seed mean's variance by a factor 2/3 and uses a normal quantile
where 2 degrees of freedom call for one 2.2x wider), made no correction for the many
comparisons in a table, treated the Olivetti test faces of one person as independent, and took
percentile intervals of proportions that collapse at 0 and 1. Here:

- :func:`seed_image_contrast`: difference of two models' seed means with a Welch-type
  t-interval whose variance adds the between-seed variances and the image-sampling variance
  of the difference (from a bootstrap over test images shared by all seeds);
- :func:`welch_df`, :func:`t_interval`, :func:`t_pvalue`: its parts;
- :func:`holm`: Holm's step-down adjustment of a family of p-values;
- :func:`wilson_interval`: Wilson score intervals of proportions (never empty at 0 or 1);
- :func:`group_boot_counts`, :func:`groups_from_names`: a bootstrap that resamples people
  (clusters) rather than images.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePath

import numpy as np
from scipy import stats as _sps

LEVEL = 0.95  # default coverage of every interval here
METHOD_SEEDS = "welch-t: seeds + test images"
METHOD_IMAGES = "normal: test images only (fewer than 2 seeds; seed variance not estimable)"
# Olivetti-style file names: "s03_2.png" is image 2 of person 3 (``embedded.load_olivetti``).
_PERSON = re.compile(r"^s(\d+)_")


# --- intervals and tests ---------------------------------------------------------------------

def wilson_interval(successes: np.ndarray | float, n: np.ndarray | float,
                    level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a proportion ``successes / n`` (arrays broadcast together):
    ``(low, high)``, floats in [0, 1] (0-d arrays for scalar input).

    Unlike a percentile bootstrap (or the Wald interval) it does not collapse to a point at 0
    or 1: 0 of 10 gives [0, 0.278] at 95 %. ``n == 0`` gives NaN (no information)."""
    k, n = np.broadcast_arrays(np.asarray(successes, np.float64), np.asarray(n, np.float64))
    if np.any(k < 0) or np.any(k > n):
        raise ValueError("need 0 <= successes <= n")
    z = _sps.norm.ppf(0.5 + level / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # At k = 0 (k = n) the lower (upper) bound is exactly 0 (1); rounding would miss it.
    low = np.where(k == 0, 0.0, np.clip(centre - half, 0.0, 1.0))
    high = np.where(k == n, 1.0, np.clip(centre + half, 0.0, 1.0))
    return np.where(n > 0, low, np.nan), np.where(n > 0, high, np.nan)


def holm(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values of one family (same shape as ``pvalues``, in [0, 1]).

    The i-th smallest of m p-values is multiplied by (m - i + 1), made non-decreasing along the
    sorted order and capped at 1; rejecting adjusted p < alpha controls the family-wise error
    rate at alpha under any dependence. NaNs stay NaN and do not count in m."""
    p = np.asarray(pvalues, np.float64)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    vals = p[ok]
    if np.any((vals < 0) | (vals > 1)):
        raise ValueError("p-values must lie in [0, 1]")
    order = np.argsort(vals, kind="stable")
    m = len(vals)
    stepped = np.maximum.accumulate((m - np.arange(m)) * vals[order])
    adj = np.empty(m)
    adj[order] = np.minimum(stepped, 1.0)
    out[ok] = adj
    return out


def welch_df(var_a: float, n_a: int, var_b: float, n_b: int, extra_var: float = 0.0) -> float:
    """Welch-Satterthwaite degrees of freedom of ``var_a / n_a + var_b / n_b + extra_var``.

    ``var_a``, ``var_b``: sample variances (ddof 1) of two independent samples of sizes ``n_a``,
    ``n_b`` >= 2. ``extra_var``: a further variance component known with infinite df (here the
    bootstrap image variance, estimated from thousands of resamples); it adds to the numerator
    only, so it pulls df up when it dominates. ``inf`` when the sample parts are both 0."""
    if n_a < 2 or n_b < 2:
        raise ValueError(f"need at least 2 units per sample, got {n_a} and {n_b}")
    ca, cb = var_a / n_a, var_b / n_b
    denom = ca * ca / (n_a - 1) + cb * cb / (n_b - 1)
    if denom <= 0:
        return float("inf")
    return float((ca + cb + extra_var) ** 2 / denom)


def t_interval(estimate: float, se: float, df: float,
               level: float = LEVEL) -> tuple[float, float]:
    """``estimate -+ t_{df, (1 + level) / 2} * se``; ``df = inf`` gives the normal interval.
    With small df the t quantile is the small-sample correction (2 df: 4.30 against 1.96)."""
    q = float(_sps.t.ppf(0.5 + level / 2, df))
    return float(estimate - q * se), float(estimate + q * se)


def t_pvalue(estimate: float, se: float, df: float) -> float:
    """Two-sided p-value of ``estimate / se`` under Student's t with ``df`` (normal at
    ``inf``). ``se == 0``: 1 when the estimate is 0, else 0 (no sampling noise at all)."""
    if se <= 0:
        return 1.0 if estimate == 0 else 0.0
    return float(2 * _sps.t.sf(abs(estimate) / se, df))


@dataclass(frozen=True)
class Contrast:
    """Mean of model a's seeds minus mean of model b's, with its interval and test."""

    mean_a: float  # seed mean of a on the whole test set
    mean_b: float
    diff: float  # mean_a - mean_b
    se: float  # sqrt(s_a^2 / n_a + s_b^2 / n_b + image variance)
    df: float  # Welch-Satterthwaite (inf when image-only)
    ci_low: float
    ci_high: float
    p: float  # two-sided, same t (or normal) statistic
    method: str  # METHOD_SEEDS or METHOD_IMAGES


def seed_image_contrast(a: np.ndarray, a_boot: np.ndarray, b: np.ndarray, b_boot: np.ndarray,
                        level: float = LEVEL) -> Contrast:
    """Two-sample contrast of seed means with seeds *and* test images as sources of noise.

    ``a``: (n_a,) one value per training seed of model a on the whole test set (e.g. AUC);
    ``a_boot``: (n_a, B) the same on B bootstrap resamples of the test images; ``b``,
    ``b_boot`` likewise for model b, **column k of both from the same resample** (the image
    part is paired). Seeds of a and b are independent samples (seed k of a shares only the
    number with seed k of b), so the seed part is Welch's s_a^2 / n_a + s_b^2 / n_b.

    Every seed is scored on the same test images, so the between-seed variance does not contain
    the image-sampling variance: that comes from the bootstrap, as the variance over resamples
    of (mean of a_boot) - (mean of b_boot), and is added (counted with infinite df in
    :func:`welch_df`). The t quantile at that df is the small-sample correction. With fewer than
    2 seeds on either side the seed variance cannot be estimated: the interval is then normal
    with the image variance alone, and ``method`` says so."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    a_boot, b_boot = np.atleast_2d(a_boot), np.atleast_2d(b_boot)
    if a_boot.shape[0] != len(a) or b_boot.shape[0] != len(b) or \
            a_boot.shape[1] != b_boot.shape[1]:
        raise ValueError(f"expected (n_a, B) and (n_b, B) resamples for {len(a)} and {len(b)} "
                         f"seeds, got {a_boot.shape} and {b_boot.shape}")
    diff = float(a.mean() - b.mean())
    boot_diff = a_boot.mean(0) - b_boot.mean(0)
    var_img = float(boot_diff.var(ddof=1)) if len(boot_diff) > 1 else 0.0
    if len(a) >= 2 and len(b) >= 2:
        va, vb = float(a.var(ddof=1)), float(b.var(ddof=1))
        se = float(np.sqrt(va / len(a) + vb / len(b) + var_img))
        df, method = welch_df(va, len(a), vb, len(b), var_img), METHOD_SEEDS
    else:
        se, df, method = float(np.sqrt(var_img)), float("inf"), METHOD_IMAGES
    lo, hi = t_interval(diff, se, df, level)
    return Contrast(float(a.mean()), float(b.mean()), diff, se, df, lo, hi,
                    t_pvalue(diff, se, df), method)


def seed_image_mean(a: np.ndarray, a_boot: np.ndarray,
                    level: float = LEVEL) -> tuple[float, float, float, str]:
    """One model's seed mean with seeds and test images as sources of noise (the one-sample
    case of :func:`seed_image_contrast`): ``(mean, ci_low, ci_high, method)``. ``a``: (n,)
    one value per seed on the whole test set; ``a_boot``: (n, B) on B image resamples.
    Variance s^2 / n + the variance over resamples of the seed mean; df by Satterthwaite
    (n - 1 for the seed part, the image part with infinite df)."""
    a, a_boot = np.asarray(a, np.float64), np.atleast_2d(a_boot)
    if a_boot.shape[0] != len(a):
        raise ValueError(f"expected ({len(a)}, B) resamples, got {a_boot.shape}")
    m = a_boot.mean(0)
    var_img = float(m.var(ddof=1)) if len(m) > 1 else 0.0
    if len(a) >= 2:
        cs = float(a.var(ddof=1)) / len(a)
        df = float("inf") if cs <= 0 else (cs + var_img) ** 2 / (cs * cs / (len(a) - 1))
        se, method = float(np.sqrt(cs + var_img)), METHOD_SEEDS
    else:
        se, df, method = float(np.sqrt(var_img)), float("inf"), METHOD_IMAGES
    lo, hi = t_interval(float(a.mean()), se, df, level)
    return float(a.mean()), lo, hi, method


# --- grouped (cluster) bootstrap ---------------------------------------------------------------

def group_boot_counts(groups: np.ndarray | Sequence[object], n_boot: int,
                      rng: np.random.Generator) -> np.ndarray:
    """``n_boot`` x n float64 bootstrap counts of n items that resample *groups*: each resample
    draws G of the G distinct groups with replacement, and every item gets its group's count
    (an Olivetti person drawn twice contributes all 10 of their images twice). A row sums to
    the number of items of the drawn groups (n when groups are equal in size).

    ``groups``: n group labels (any hashable, e.g. person ids from :func:`groups_from_names`).
    With n distinct groups this is the ordinary image bootstrap."""
    _, member = np.unique(np.asarray(groups), return_inverse=True)
    member = member.ravel()
    g = int(member.max()) + 1 if len(member) else 0
    idx = rng.integers(0, g, (n_boot, g))
    flat = (idx + g * np.arange(n_boot)[:, None]).ravel()
    per_group = np.bincount(flat, minlength=n_boot * g).reshape(n_boot, g)
    return per_group[:, member].astype(np.float64)


def groups_from_names(names: Sequence[str | PurePath]) -> np.ndarray | None:
    """Person ids (n int64) from Olivetti-style file names (``s03_2.png`` -> 3; paths allowed),
    or None when not every name carries one (images then count as independent)."""
    ids = []
    for name in names:
        m = _PERSON.match(PurePath(name).name)
        if m is None:
            return None
        ids.append(int(m.group(1)))
    return np.asarray(ids, np.int64) if ids else None
