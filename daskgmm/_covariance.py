"""What differs by covariance type: the M-step from merged statistics, the
Cholesky factor of the precision, its log-determinant, shapes and parameter
counts.  Runs on the client on K x D x D objects (NumPy/SciPy).

Conventions follow scikit-learn's ``sklearn.mixture.GaussianMixture`` so that
fitted attributes are interchangeable:

==========  ======================  =========================================
type        covariances_ shape      precisions_cholesky_
==========  ======================  =========================================
full        (K, D, D)               (K, D, D) upper triangular, P P^T = Sigma^-1
tied        (D, D)                  (D, D)
diag        (K, D)                  (K, D)  1 / sqrt(variance)
spherical   (K,)                    (K,)
==========  ======================  =========================================
"""

from __future__ import annotations

import numpy as np
from scipy import linalg

from ._blocks import COVARIANCE_TYPES, Model, Stats

ILL_DEFINED_MESSAGE = (
    "Fitting the mixture model failed because some components have ill-defined "
    "empirical covariance (for instance caused by singleton or collapsed samples). "
    "Try to decrease the number of components, increase reg_covar, or scale the input data."
)


def covariance_shape(covariance_type, n_components, n_features):
    """Shape of ``covariances_`` (and of ``precisions_``) for this type."""
    return {
        "full": (n_components, n_features, n_features),
        "tied": (n_features, n_features),
        "diag": (n_components, n_features),
        "spherical": (n_components,),
    }[covariance_type]


def check_covariance_type(covariance_type):
    if covariance_type not in COVARIANCE_TYPES:
        raise ValueError(
            f"Invalid value for 'covariance_type': {covariance_type!r}. "
            f"Use one of {', '.join(map(repr, COVARIANCE_TYPES))}."
        )


def covariances_from_stats(stats: Stats, reg_covar: float):
    """Closed-form M-step: weights, means and covariances from merged stats.

    ``nk`` gets scikit-learn's ``10 * eps`` so an empty component keeps finite
    parameters (mean 0, covariance ``reg_covar * I``, weight ~0) instead of NaN.

    Returns
    -------
    weights : (K,)
    means : (K, D)
    covariances : see module table
    """
    nk_raw = np.asarray(stats.nk, dtype=np.float64)
    dtype = np.asarray(stats.means).dtype
    eps = 10 * np.finfo(dtype).eps
    nk = nk_raw + eps
    means = np.asarray(stats.means, dtype=np.float64) * (nk_raw / nk)[:, None]
    scatter = np.asarray(stats.scatter, dtype=np.float64)
    kind = stats.covariance_type
    d = means.shape[1]
    if kind == "full":
        covariances = scatter / nk[:, None, None]
        covariances = covariances + reg_covar * np.eye(d)[None, :, :]
        # Symmetrise: the scatter is symmetric up to rounding of the merges.
        covariances = 0.5 * (covariances + np.swapaxes(covariances, 1, 2))
    elif kind == "tied":
        covariances = scatter / nk.sum() + reg_covar * np.eye(d)
        covariances = 0.5 * (covariances + covariances.T)
    elif kind == "diag":
        covariances = scatter / nk[:, None] + reg_covar
    else:
        covariances = (scatter / nk[:, None]).mean(axis=1) + reg_covar
    weights = nk / nk.sum()
    return weights, means, covariances


def precisions_cholesky_from_covariances(covariances, covariance_type):
    """Upper-triangular ``P`` with ``P P^T = Sigma^-1`` by a Cholesky factor and a
    triangular solve (never an explicit inverse)."""
    if covariance_type == "full":
        out = np.empty_like(covariances)
        d = covariances.shape[-1]
        for k, cov in enumerate(covariances):
            out[k] = _chol_precision(cov, d)
        return out
    if covariance_type == "tied":
        return _chol_precision(covariances, covariances.shape[-1])
    if np.any(np.less_equal(covariances, 0.0)) or not np.all(np.isfinite(covariances)):
        raise ValueError(ILL_DEFINED_MESSAGE)
    return 1.0 / np.sqrt(covariances)


def _chol_precision(cov, d):
    try:
        cov_chol = linalg.cholesky(cov, lower=True)
    except (linalg.LinAlgError, ValueError):
        raise ValueError(ILL_DEFINED_MESSAGE) from None
    return linalg.solve_triangular(cov_chol, np.eye(d), lower=True).T


def precisions_cholesky_from_precisions(precisions, covariance_type):
    """Upper-triangular factor ``P`` with ``P P^T`` the user-given precisions
    (``precisions_init``): scikit-learn's convention, the one every M-step
    gives.  With ``J`` the exchange matrix, ``J Lambda J = L L^T`` (lower
    Cholesky) makes ``P = J L J`` (scikit-learn's
    ``_compute_precision_cholesky_from_precisions``)."""
    if covariance_type == "full":
        return np.stack([_upper_factor(p) for p in precisions])
    if covariance_type == "tied":
        return _upper_factor(precisions)
    return np.sqrt(precisions)


def _upper_factor(precision):
    flipped = precision[::-1, ::-1]
    return np.ascontiguousarray(linalg.cholesky(flipped, lower=True)[::-1, ::-1])


def precisions_from_cholesky(precisions_cholesky, covariance_type):
    if covariance_type == "full":
        return np.matmul(precisions_cholesky, np.swapaxes(precisions_cholesky, 1, 2))
    if covariance_type == "tied":
        return precisions_cholesky @ precisions_cholesky.T
    return precisions_cholesky**2


def covariances_from_precisions_cholesky(precisions_cholesky, covariance_type):
    """Covariances implied by a precision factor (for ``precisions_init``)."""
    if covariance_type in ("full", "tied"):
        eye = np.eye(precisions_cholesky.shape[-1])
        if covariance_type == "full":
            inv = np.stack([linalg.solve_triangular(p, eye, lower=False) for p in precisions_cholesky])
            return np.matmul(inv.swapaxes(1, 2), inv)
        # P upper: Sigma = (P P^T)^-1 = P^-T P^-1
        inv = linalg.solve_triangular(precisions_cholesky, eye, lower=False)
        return inv.T @ inv
    return 1.0 / precisions_cholesky**2


def log_det_cholesky(precisions_cholesky, covariance_type, n_features):
    """log det of the precision's Cholesky factor, per component (or scalar for tied)."""
    if covariance_type == "full":
        return np.sum(np.log(np.diagonal(precisions_cholesky, axis1=1, axis2=2)), axis=1)
    if covariance_type == "tied":
        return np.sum(np.log(np.diag(precisions_cholesky)))
    if covariance_type == "diag":
        return np.sum(np.log(precisions_cholesky), axis=1)
    return n_features * np.log(precisions_cholesky)


def n_parameters(covariance_type, n_components, n_features):
    """Number of free parameters (for BIC/AIC)."""
    cov = {
        "full": n_components * n_features * (n_features + 1) / 2.0,
        "tied": n_features * (n_features + 1) / 2.0,
        "diag": n_components * n_features,
        "spherical": n_components,
    }[covariance_type]
    return int(cov + n_components * n_features + n_components - 1)


def make_model(weights, means, precisions_cholesky, covariance_type):
    """Block-level :class:`Model` from client-side parameters."""
    means = np.asarray(means)
    with np.errstate(divide="ignore"):
        log_weights = np.log(weights)
    return Model(
        covariance_type,
        log_weights,
        means,
        np.asarray(precisions_cholesky),
        np.asarray(log_det_cholesky(precisions_cholesky, covariance_type, means.shape[1])),
    )
