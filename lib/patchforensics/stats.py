"""Metrics, bootstrap intervals and verdicts of image scores, as pure numpy functions (no torch).

- metrics (fake = positive): :func:`binary_metrics` (AUC, AP, accuracies),
  :func:`expected_calibration_error`, :func:`choose_threshold`;
- a stratified bootstrap over test images whose resamples are named by the test set
  (:func:`named_rng`, :func:`boot_weights`: every model sees the same resamples, which pairs the
  comparisons), vectorised weighted AUC and AP (:func:`weighted_auc`, :func:`weighted_ap`) and
  percentile intervals (:func:`interval`);
- small-sample statistics of the pre-registered comparisons (issue 24): the earlier intervals
  resampled three training seeds with replacement (which shrinks a 3-seed mean's variance by a
  factor 2/3 and uses a normal quantile where 2 degrees of freedom call for one 2.2x wider), made
  no correction for the many comparisons in a table, treated the Olivetti test faces of one
  person as independent, and took percentile intervals of proportions that collapse at 0 and 1.
  Here :func:`seed_image_contrast` (difference of two models' seed means with a Welch-type
  t-interval whose variance adds the between-seed variances and the image-sampling variance of
  the difference), :func:`welch_df`, :func:`t_interval`, :func:`t_pvalue` (its parts),
  :func:`holm` (Holm's step-down adjustment), :func:`wilson_interval` (never empty at 0 or 1),
  :func:`group_boot_counts` and :func:`groups_from_names` (resampling people, not images);
- :func:`verdict`: what an interval of AUC(patch) - AUC(full) says.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePath

import numpy as np

LEVEL = 0.95  # default coverage of every interval here
REAL, FAKE = 0, 1  # class labels (data.REAL / data.FAKE are these)
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
    from scipy.stats import norm  # here: scipy.stats costs 0.5 s, the CLI's parser imports us

    z = norm.ppf(0.5 + level / 2)
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
    from scipy.stats import t as student_t

    q = float(student_t.ppf(0.5 + level / 2, df))
    return float(estimate - q * se), float(estimate + q * se)


def t_pvalue(estimate: float, se: float, df: float) -> float:
    """Two-sided p-value of ``estimate / se`` under Student's t with ``df`` (normal at
    ``inf``). ``se == 0``: 1 when the estimate is 0, else 0 (no sampling noise at all)."""
    if se <= 0:
        return 1.0 if estimate == 0 else 0.0
    from scipy.stats import t as student_t

    return float(2 * student_t.sf(abs(estimate) / se, df))


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


# --- metrics of image scores (fake = positive) --------------------------------------------------

ECE_BINS = 15


def check_labels(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
    p, y = check_labels(prob_fake, labels)
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
    s, y = check_labels(scores, labels)
    u = np.unique(s)
    cands = np.unique(np.concatenate([[0.5], (u[:-1] + u[1:]) / 2, [u[0] - 1e-9]]))
    # Balanced accuracy, so the threshold does not drift towards a larger class.
    acc = np.array([((s[y == FAKE] > t).mean() + (s[y == REAL] <= t).mean()) / 2
                    for t in cands])
    best = np.flatnonzero(acc >= acc.max() - 1e-12)
    return float(cands[best[np.argmin(np.abs(cands[best] - 0.5))]])


def binary_metrics(scores: np.ndarray, labels: np.ndarray, *, threshold: float = 0.5,
                   rank_scores: np.ndarray | None = None) -> dict[str, float]:
    """Metrics of image scores (fake = positive, label 1): ``ap``, ``ap_real_positive`` (the
    original code's convention), ``auc``, ``acc``/``real_acc``/``fake_acc`` at 0.5, and
    ``acc_at_threshold`` at ``threshold`` (chosen elsewhere, on validation data).

    ``scores``: probabilities in [0, 1] (the thresholds apply to them). ``rank_scores``: the same
    images' order-keeping scores (:func:`log_odds_from_maps`); when given, the rank metrics (AP,
    AUC) use them, so saturated probabilities do not tie. Classes need not be balanced."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    s, y = check_labels(scores, labels)
    r = s if rank_scores is None else check_labels(rank_scores, labels)[0]
    pred = s > 0.5
    pred_t = s > threshold
    return {"n_real": int((y == REAL).sum()), "n_fake": int((y == FAKE).sum()),
            "ap": float(average_precision_score(y, r)),
            "ap_real_positive": float(average_precision_score(1 - y, -r)),
            "auc": float(roc_auc_score(y, r)),
            "acc": float((pred == y).mean()),
            "real_acc": float((~pred[y == REAL]).mean()),
            "fake_acc": float(pred[y == FAKE].mean()),
            "threshold": float(threshold),
            "acc_at_threshold": float((pred_t == y).mean())}


# --- bootstrap over test images -----------------------------------------------------------------

N_BOOT = 1000  # resamples of the test images behind every interval
_CHUNK = 256  # resamples per block: bounds memory at _CHUNK x (images of one set) floats


def boot_counts(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``n_boot`` x ``n`` float64: how often each of ``n`` items is drawn in each bootstrap
    resample (``n`` draws with replacement; every row sums to ``n``)."""
    idx = rng.integers(0, n, (n_boot, n))
    flat = (idx + n * np.arange(n_boot)[:, None]).ravel()
    return np.bincount(flat, minlength=n_boot * n).reshape(n_boot, n).astype(np.float64)


def weighted_auc(real: np.ndarray, fake: np.ndarray, w_real: np.ndarray | None = None,
                 w_fake: np.ndarray | None = None) -> np.ndarray:
    """AUC (fake positive; ties count one half) of ``fake`` (n1) against ``real`` (n0) scores
    under B rows of image weights (``w_real``: B x n0, ``w_fake``: B x n1, e.g. from
    :func:`boot_counts`; None = all ones, B = 1): B floats in [0, 1].

    Vectorised by ranks: the reals are sorted once; a fake's weighted count of reals below it
    is a cumulative sum read at its ``searchsorted`` position (half the tied reals' weight
    added), so the cost is B x (n0 + n1), not B x n0 x n1."""
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    w_real = np.ones((1, len(real))) if w_real is None else np.atleast_2d(w_real)
    w_fake = np.ones((1, len(fake))) if w_fake is None else np.atleast_2d(w_fake)
    if w_real.shape[1] != len(real) or w_fake.shape[1] != len(fake) or \
            len(w_real) != len(w_fake):
        raise ValueError(f"weights {w_real.shape}, {w_fake.shape} do not match "
                         f"{len(real)} reals and {len(fake)} fakes")
    order = np.argsort(real, kind="stable")
    r = real[order]
    lo, hi = np.searchsorted(r, fake, "left"), np.searchsorted(r, fake, "right")
    out = np.empty(len(w_real))
    for at in range(0, len(w_real), _CHUNK):
        wr, wf = w_real[at: at + _CHUNK, order], w_fake[at: at + _CHUNK]
        c = np.concatenate([np.zeros((len(wr), 1)), np.cumsum(wr, axis=1)], axis=1)
        below = c[:, lo] + 0.5 * (c[:, hi] - c[:, lo])
        out[at: at + _CHUNK] = (wf * below).sum(1) / (wr.sum(1) * wf.sum(1))
    return out


def weighted_ap(scores: np.ndarray, labels: np.ndarray,
                weights: np.ndarray | None = None) -> np.ndarray:
    """Average precision (label 1 positive, as sklearn's ``average_precision_score``: precision
    at each distinct threshold times the recall step) under B rows of image weights
    (``weights``: B x N; None = all ones): B floats in [0, 1]."""
    s, y = check_labels(scores, labels)
    weights = np.ones((1, len(s))) if weights is None else np.atleast_2d(weights)
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    ends = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]  # last index of each threshold
    out = np.empty(len(weights))
    for at in range(0, len(weights), _CHUNK):
        w = weights[at: at + _CHUNK, order]
        tp = np.cumsum(w * (y == 1), axis=1)[:, ends]
        fp = np.cumsum(w * (y == 0), axis=1)[:, ends]
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
            recall = tp / tp[:, -1:]
        step = np.diff(np.concatenate([np.zeros((len(w), 1)), recall], axis=1), axis=1)
        out[at: at + _CHUNK] = (step * precision).sum(1)
    return out


def interval(boots: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The central ``level`` percentile interval ``(low, high)`` of bootstrap values ``boots``
    (any shape; quantiles over all of them)."""
    alpha = (1 - level) / 2
    return float(np.quantile(boots, alpha)), float(np.quantile(boots, 1 - alpha))


def named_rng(seed: int, *names: str) -> np.random.Generator:
    """A generator seeded by ``seed`` and the names of a test set: every model (and seed) sees
    the same resamples of the same images, which is what pairs the comparisons."""
    import zlib

    return np.random.default_rng([seed, *(zlib.crc32(n.encode()) for n in names)])


def boot_weights(n_real: int, n_fake: int, dataset: str, generator: str, *,
                 n_boot: int = N_BOOT, seed: int = 0, real_groups: np.ndarray | None = None,
                 fake_groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The bootstrap resamples of one test pair, stratified (reals and fakes drawn separately,
    so class counts stay fixed): ``(w_real, w_fake)``, n_boot x n_real and n_boot x n_fake
    counts. The reals' draws depend only on ``(seed, dataset)``, so every generator of a dataset
    resamples the same reals; the fakes' on ``(seed, dataset, generator)``. ``real_groups`` /
    ``fake_groups`` (one id per image, e.g. Olivetti's person): those images are resampled by
    group (``stats.group_boot_counts``: a person's images stay together), since images of one
    person are not independent."""
    def draw(n: int, groups: np.ndarray | None, *names: str) -> np.ndarray:
        if groups is None:
            return boot_counts(n, n_boot, named_rng(seed, *names))
        if len(groups) != n:
            raise ValueError(f"{'/'.join(names)}: {len(groups)} group ids for {n} images")
        return group_boot_counts(np.asarray(groups), n_boot, named_rng(seed, "groups", *names))

    return (draw(n_real, real_groups, dataset), draw(n_fake, fake_groups, dataset, generator))


# --- verdicts -----------------------------------------------------------------------------------

VERDICTS = ("patch better", "no difference", "full better")


def verdict(ci_low: float, ci_high: float) -> str:
    """``"patch better"`` when an interval of AUC(patch) - AUC(full) lies above 0, ``"full
    better"`` when below, else ``"no difference"`` (the data do not decide)."""
    return VERDICTS[0] if ci_low > 0 else VERDICTS[2] if ci_high < 0 else VERDICTS[1]
