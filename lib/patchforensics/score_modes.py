"""Image scores from patch maps, and their calibration, as pure numpy functions (no torch).

A classifier's output for one image is its patch map: N x 2 x h x w logits, one pair per
receptive-field patch. Everything here starts from the *logit difference map*
``d = logit_fake - logit_real`` (N x h x w), since the softmax of two logits is the sigmoid of
their difference. The original code turned a map into one image score in three ways
(``MODES``): ``mean_softmax`` (its default, ours too: mean over patches of sigmoid(d), the fake
probability), ``mean_logit`` (sigmoid of the mean of d: softmax of the mean logit) and ``vote``
(the share of patches whose argmax is "fake").

Probabilities saturate (in float64, sigmoid(d) is 1.0 for d above about 37), so images a model
is very sure of would tie; the rank metrics therefore use :func:`log_odds_from_maps`, the same
scores as log-odds computed in log space. Calibration is temperature scaling (Guo et al. 2017)
of the *image* log-odds: P(fake) = sigmoid(score / T), T fitted by maximum likelihood with
Platt's smoothed targets so that a perfectly separated validation split still gives a finite T
(:func:`fit_temperature`, :func:`calibrated_probability`). One T > 0 on the image score is
strictly monotone, so calibrating never changes which images a model calls more fake; an
earlier version divided each *patch* logit by T before averaging, which reordered images.
``vote`` is not calibrated (its score is a share of patches, not log-odds).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .stats import FAKE, REAL, check_labels

# scipy is imported where used: importing it costs a quarter of a second, and the command line's
# parser imports this module for MODES (``patchforensics --help`` stays instant).

def _sigmoid(x: np.ndarray) -> np.ndarray:
    from scipy.special import expit

    # expit never overflows, so no clip is needed (a clip at +-60 tied every saturated image).
    return expit(x)


@dataclass(frozen=True)
class ScoreMode:
    """One way to turn patch maps into an image score: ``probability`` of N x h x w
    logit differences (already divided by a patch temperature), ``log_odds`` of the same
    flattened to N x (h w) (the order-keeping score the rank metrics use), and whether the
    run's temperature applies to it (``calibrated``)."""

    probability: Callable[[np.ndarray], np.ndarray]
    log_odds: Callable[[np.ndarray], np.ndarray]
    calibrated: bool = True


def _mean_softmax_log_odds(d: np.ndarray) -> np.ndarray:
    from scipy.special import logsumexp

    # log sigmoid(x) = -log(1 + exp(-x)); logaddexp keeps its tail exact.
    return logsumexp(-np.logaddexp(0.0, -d), axis=1) - logsumexp(-np.logaddexp(0.0, d), axis=1)


# The score modes, in the order of every table (adding one: its entry here and its test; local
# scores with a parameter, such as localize's top-k, stay with their module).
SCORE_MODES: dict[str, ScoreMode] = {
    "mean_softmax": ScoreMode(lambda d: _sigmoid(d).mean(axis=(1, 2)), _mean_softmax_log_odds),
    "mean_logit": ScoreMode(lambda d: _sigmoid(d.mean(axis=(1, 2))), lambda d: d.mean(axis=1)),
    # the share of "fake" patches: a count over h x w cells, not log-odds, so not calibrated
    "vote": ScoreMode(lambda d: (d > 0).mean(axis=(1, 2)).astype(np.float64),
                      lambda d: (d > 0).mean(axis=1).astype(np.float64), calibrated=False),
}
MODES = tuple(SCORE_MODES)


def score_mode(mode: str) -> ScoreMode:
    """The :class:`ScoreMode` of ``mode``; ``ValueError`` naming the modes otherwise."""
    if mode not in SCORE_MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    return SCORE_MODES[mode]


def scores_from_maps(maps: np.ndarray, mode: str = "mean_softmax",
                     temperature: float = 1.0) -> np.ndarray:
    """Image scores from N x h x w logit-difference maps: N float64 in [0, 1] (> 0.5 = fake),
    the *probability view* (thresholds, accuracy, calibration).

    ``mode`` is one of ``MODES``; ``temperature`` divides the *patch* logits first (no effect on
    ``vote``). That is not the run's calibration, which scales the image log-odds and keeps the
    images' order: use :func:`calibrated_probability`. In float64 a probability saturates at 1.0
    once d exceeds about 37, so images the model is very sure of tie here; rank them with
    :func:`log_odds_from_maps`."""
    if maps.ndim != 3:
        raise ValueError(f"expected N x h x w maps, got shape {maps.shape}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return score_mode(mode).probability(maps.astype(np.float64) / temperature)


def log_odds_from_maps(maps: np.ndarray, mode: str = "mean_softmax",
                       temperature: float = 1.0) -> np.ndarray:
    """Image scores that keep their order: N float64, a strictly increasing function of
    :func:`scores_from_maps` (same ``mode`` and ``temperature``), computed in log space so that
    saturated images still rank (the metrics AP and AUC use these).

    - ``mean_softmax``: log p - log(1 - p) of p = mean of the patches' P(fake), both terms as
      log-mean-exp of per-patch log-sigmoids (log p alone would lose a saturated fake's order
      near 0, log(1 - p) keeps it; the difference keeps both ends). Unbounded; > 0 = fake.
    - ``mean_logit``: the mean logit difference itself (the log-odds of sigmoid(mean d)).
    - ``vote``: the share of "fake" patches, in [0, 1]: a count over h x w cells, so images tie
      whenever their counts do; that is inherent to the mode, not a numerical loss."""
    if maps.ndim != 3:
        raise ValueError(f"expected N x h x w maps, got shape {maps.shape}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return score_mode(mode).log_odds(maps.astype(np.float64).reshape(len(maps), -1) / temperature)


def n_tied(scores: np.ndarray) -> int:
    """How many of ``scores`` share their value with at least one other score."""
    _, counts = np.unique(np.asarray(scores), return_counts=True)
    return int(counts[counts > 1].sum())


def patch_probabilities(maps: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Per-patch probability of "fake": N x h x w logit differences -> N x h x w float64 in
    [0, 1], sigmoid(d / ``temperature``).

    Heatmaps draw these at ``temperature`` 1.0, not at the run's calibration T: that T was fitted
    on *image* log-odds against image labels and says nothing about single patches (they have no
    labels), and at 1.0 the map shows what the classifier said per patch, its mean being the
    uncalibrated ``mean_softmax`` image probability."""
    return _sigmoid(maps.astype(np.float64) / temperature)


CALIBRATION_METHOD = "image_logodds_temperature"  # how Calibration.temperature is applied


_LOG_T_BOUNDS = (-5.0, 6.0)  # search interval of log T (T from 0.007 to 400)


def calibrated_probability(score: np.ndarray, temperature: float = 1.0,
                           mode: str = "mean_softmax") -> np.ndarray:
    """The calibrated P(fake) of image scores (:func:`log_odds_from_maps`, N floats):
    sigmoid(score / T), a strictly increasing function of the score, so calibrating never
    changes which images a model calls more fake (AUC by it equals AUC by the score), and 0.5
    stays at score 0. ``vote`` scores are shares of patches, not log-odds: their log-odds are
    scaled instead (at T = 1 the share itself; :func:`fit_temperature` leaves vote at T = 1,
    uncalibrated). N floats in [0, 1]."""
    if not (np.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be finite and > 0, got {temperature}")
    z = np.asarray(score, np.float64)
    if not score_mode(mode).calibrated:  # a share, not log-odds: its log-odds are scaled
        with np.errstate(divide="ignore"):  # shares of 0 and 1: log-odds -inf and +inf
            z = np.log(z) - np.log1p(-z)
    return _sigmoid(z / temperature)


def fit_temperature(maps: np.ndarray, labels: np.ndarray, mode: str = "mean_softmax") -> float:
    """Temperature T > 0 minimising the image-level negative log-likelihood of
    ``calibrated_probability(log_odds_from_maps(maps, mode), T, mode)`` against ``labels``
    (0 real, 1 fake); ``maps``: N x h x w logit differences. 1.0 for ``vote`` (not
    calibrated: its score is a share of patches, and an all-agree vote has infinite log-odds).

    The targets are Platt's (1999) smoothed labels, (N+ + 1) / (N+ + 2) for fakes and
    1 / (N- + 2) for reals: on a perfectly separated validation split (common here: val
    accuracy is often 1.0) plain maximum likelihood drives T to 0 and every probability to 0 or
    1. Searched over log T in [-5, 6] (T from 0.007 to 400)."""
    from scipy.optimize import minimize_scalar

    labels = np.asarray(labels, np.int64)
    check_labels(np.zeros(len(labels)), labels)
    if not score_mode(mode).calibrated:
        return 1.0
    score = log_odds_from_maps(maps, mode)
    n_pos, n_neg = int((labels == FAKE).sum()), int((labels == REAL).sum())
    target = np.where(labels == FAKE, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))

    def nll(log_t: float) -> float:
        z = score / np.exp(log_t)
        # log sigmoid(z) = -logaddexp(0, -z): exact in the tails, where a clipped p was not.
        return float(np.mean(target * np.logaddexp(0.0, -z)
                             + (1 - target) * np.logaddexp(0.0, z)))

    res = minimize_scalar(nll, bounds=_LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-4})
    return float(np.exp(res.x))
