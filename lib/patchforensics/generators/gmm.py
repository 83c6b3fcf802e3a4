"""The paper's GMM: a Gaussian mixture on pixels (Chai et al. Sec. 3.1, after Richardson & Weiss,
"On GANs and GMMs", 2018).

Richardson & Weiss fit a mixture of factor analysers to whole images: each component is a mean
face plus a low-rank Gaussian. Here the low-rank part is shared: PCA to ``pca_dim`` dimensions,
then a full-covariance ``GaussianMixture`` (scikit-learn) in that subspace. Samples are smooth
(no detail beyond the PCA basis) but have no upsampling layers at all, which is exactly why the
paper includes the GMM: an image model whose artifacts owe nothing to convolutions.
Gray datasets are fitted on one channel. Fitting takes seconds, so a run has no steps to resume.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.mixture import GaussianMixture

from ..config import to_dict
from .base import Generator
from .training import finish_run, load_torch, start_run


@dataclass(frozen=True)
class GMMConfig:
    """PCA + Gaussian mixture on pixels."""

    pca_dim: int = 100  # dimensions kept by PCA (capped at the number of training images - 1)
    components: int = 10  # mixture components
    covariance: str = "full"  # sklearn covariance_type: "full", "diag", "tied", "spherical"
    reg_covar: float = 1e-4  # added to covariance diagonals (on the [0, 1] pixel scale)
    residual_noise: bool = False  # add PCA-discarded variance back as white noise (PPCA-style)
    flip: bool = True  # fit on the training images and their mirror images
    max_iter: int = 200  # EM iterations
    seed: int = 0  # k-means initialisation of EM


def fit_gmm(folder: Path, fp: str, record: dict[str, Any], cfg: GMMConfig, images: np.ndarray,
            channels: int, *, force: bool) -> dict[str, Any]:
    """Fit PCA + GMM to ``images`` (N x S x S x 3 uint8) and write final.pt; returns done.json."""
    start_run(folder, fp, record, force=force)
    t0 = time.perf_counter()
    x = images[..., :1] if channels == 1 else images
    if cfg.flip:
        x = np.concatenate([x, x[:, :, ::-1]])
    flat = x.reshape(len(x), -1).astype(np.float64) / 255.0
    dim = min(cfg.pca_dim, len(flat) - 1)
    pca = PCA(n_components=dim, svd_solver="full").fit(flat)
    codes = pca.transform(flat)
    gmm = GaussianMixture(cfg.components, covariance_type=cfg.covariance,
                          reg_covar=cfg.reg_covar, max_iter=cfg.max_iter,
                          random_state=cfg.seed).fit(codes)
    resid = float(np.clip(pca.noise_variance_, 0, None)) if cfg.residual_noise else 0.0
    state = {"kind": "gmm", "config": to_dict(cfg), "size": int(images.shape[1]),
             "channels": channels,
             "mean": torch.from_numpy(pca.mean_), "basis": torch.from_numpy(pca.components_),
             "weights": torch.from_numpy(gmm.weights_), "means": torch.from_numpy(gmm.means_),
             "chol": torch.from_numpy(_full_cholesky(gmm, dim)),
             "noise_std": torch.tensor(resid**0.5), "converged": bool(gmm.converged_)}
    done = finish_run(folder, fp, state, 0, time.perf_counter() - t0)
    return {**done, "source": "trained"}


def _full_cholesky(gmm: GaussianMixture, dim: int) -> np.ndarray:
    """K x d x d lower Cholesky factors of every component's covariance, whatever its type."""
    k, cov = gmm.n_components, gmm.covariances_
    match gmm.covariance_type:
        case "full":
            full = cov
        case "tied":
            full = np.broadcast_to(cov, (k, dim, dim))
        case "diag":
            full = np.stack([np.diag(c) for c in cov])
        case "spherical":
            full = np.stack([np.eye(dim) * c for c in cov])
        case other:
            raise ValueError(f"unknown covariance type {other!r}")
    return np.linalg.cholesky(full)


class GMMGenerator(Generator):
    """Samples of the PCA + GMM model; no differentiable latent (``latent_dim`` is None)."""

    def __init__(self, name: str, dataset: str, checkpoint: Path, sha256: str,
                 info: dict[str, Any]) -> None:
        ckpt = load_torch(checkpoint)
        super().__init__(name=name, dataset=dataset, size=int(ckpt["size"]),
                         channels=int(ckpt["channels"]), checkpoint=checkpoint,
                         checkpoint_sha256=sha256, info=info)
        self.config = GMMConfig(**ckpt["config"])
        self.mean = ckpt["mean"].numpy()  # D pixels in [0, 1]
        self.basis = ckpt["basis"].numpy()  # d x D orthonormal rows
        self.weights = ckpt["weights"].numpy()  # K mixture weights
        self.means = ckpt["means"].numpy()  # K x d
        self.chol = ckpt["chol"].numpy()  # K x d x d
        self.noise_std = float(ckpt["noise_std"])

    def sample(self, n: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        comp = rng.choice(len(self.weights), size=n, p=self.weights / self.weights.sum())
        eps = rng.standard_normal((n, self.means.shape[1]))
        codes = self.means[comp] + np.einsum("nij,nj->ni", self.chol[comp], eps)
        out = np.empty((n, self.size, self.size, 3), np.uint8)
        for i in range(0, n, 256):  # bounds memory: one chunk of D-pixel rows at a time
            flat = codes[i:i + 256] @ self.basis + self.mean
            if self.noise_std > 0:
                flat = flat + self.noise_std * rng.standard_normal(flat.shape)
            img = np.clip(np.round(flat * 255), 0, 255).astype(np.uint8)
            img = img.reshape(len(img), self.size, self.size, self.channels)
            out[i:i + 256] = np.repeat(img, 3, axis=3) if self.channels == 1 else img
        return out
