"""Pure math on ONE block of rows: no Dask here.

Every function takes arrays from one array namespace ``xp`` (NumPy, CuPy,
``array_api_strict`` or anything with the array-API functions) and returns
arrays from the same namespace.  The engine maps these functions over the
chunks of a Dask array and merges their results in a tree.

Shapes use ``n`` rows, ``K`` components and ``D`` features.

Numerical notes
---------------
* The log-density uses the Cholesky factor of the precision,
  ``log N(x | mu, Sigma) = -D/2 log(2 pi) + log det(P) - 1/2 ||(x - mu) P||^2``
  with ``P P^T = Sigma^-1``; no inverse is ever formed.
* All sample sums are taken about a *pivot* ``c`` (the block's mean row), so
  the data's distance from the origin never enters a subtraction.  The error
  left is of order ``eps * (|mu_k - c| / sigma_k)^2``: the spread of the
  components relative to their width, not the offset of the data.
* Block statistics are returned *centred* (scatter about the block's own
  weighted component means) and merged with the pairwise update of Chan,
  Golub & LeVeque, so the tree reduction never forms raw second moments.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")

# Rows of one block are processed in slices holding at most this many
# temporary elements (n_rows * max(K * D, D * (D + 1) / 2)): big enough for
# efficient matrix products, small enough to stay in cache and to bound the
# memory a task needs whatever the chunk size.
SLICE_ELEMENTS = 1 << 19


def get_namespace(*arrays):
    """Array-API namespace of ``arrays`` (NumPy's compat wrapper for NumPy)."""
    from array_api_compat import array_namespace

    return array_namespace(*arrays)


def to_numpy(array):
    """Copy ``array`` (any namespace, any device) to a NumPy array."""
    if isinstance(array, np.ndarray):
        return array
    if hasattr(array, "get"):  # CuPy
        return array.get()
    try:
        return np.asarray(array)
    except (TypeError, ValueError, RuntimeError):
        return np.from_dlpack(array)


class Model(NamedTuple):
    """Parameters of one mixture as the block functions need them.

    Attributes
    ----------
    covariance_type : str
    log_weights : (K,)
    means : (K, D)
    precisions_cholesky : (K, D, D) full, (D, D) tied, (K, D) diag, (K,) spherical
    log_det : (K,) or () log-determinant of ``precisions_cholesky``
    """

    covariance_type: str
    log_weights: object
    means: object
    precisions_cholesky: object
    log_det: object

    def to(self, xp, dtype):
        """The same model with every array in namespace ``xp`` and ``dtype``."""
        conv = lambda a: xp.asarray(np.asarray(to_numpy(a)), dtype=dtype)  # noqa: E731
        return Model(
            self.covariance_type,
            conv(self.log_weights),
            conv(self.means),
            conv(self.precisions_cholesky),
            conv(self.log_det),
        )


class Stats(NamedTuple):
    """Sufficient statistics of one mixture over a set of rows.

    Attributes
    ----------
    covariance_type : str
    n_samples : () number of rows counted
    log_likelihood : () sum over rows of log p(x_i)
    nk : (K,) sum of responsibilities per component
    means : (K, D) responsibility-weighted mean per component (0 where nk == 0)
    scatter : centred second moment sum_i r_ik (x_i - m_k)(x_i - m_k)^T:
        (K, D, D) full; (D, D) tied (summed over k); (K, D) diag and spherical
        (the diagonal only).
    """

    covariance_type: str
    n_samples: object
    log_likelihood: object
    nk: object
    means: object
    scatter: object


# --------------------------------------------------------------------------
# E-step pieces
# --------------------------------------------------------------------------


def _mahalanobis(xp, centred, means_c, model):
    """Squared Mahalanobis distances ``(n, K)`` of pivot-centred rows.

    ``centred`` is ``x - c`` (n, D); ``means_c`` is ``mu - c`` (K, D).
    """
    n, d = centred.shape
    k = means_c.shape[0]
    pc = model.precisions_cholesky
    kind = model.covariance_type
    if kind == "full":
        # One GEMM against all components' factors stacked side by side.
        stacked = xp.reshape(xp.permute_dims(pc, (1, 0, 2)), (d, k * d))
        shift = xp.reshape(xp.matmul(means_c[:, None, :], pc), (k * d,))
        y = xp.matmul(centred, stacked) - shift
        return xp.sum(xp.reshape(y * y, (n, k, d)), axis=2)
    if kind == "tied":
        y = xp.matmul(centred, pc)
        shift = xp.matmul(means_c, pc)
        diff = y[:, None, :] - shift[None, :, :]
        return xp.sum(diff * diff, axis=2)
    if kind == "diag":
        prec = pc * pc
        return (
            xp.matmul(centred * centred, xp.permute_dims(prec, (1, 0)))
            - 2.0 * xp.matmul(centred, xp.permute_dims(means_c * prec, (1, 0)))
            + xp.sum(means_c * means_c * prec, axis=1)
        )
    if kind == "spherical":
        prec = pc * pc
        return (
            xp.sum(centred * centred, axis=1)[:, None] * prec
            - 2.0 * xp.matmul(centred, xp.permute_dims(means_c, (1, 0))) * prec
            + xp.sum(means_c * means_c, axis=1) * prec
        )
    raise ValueError(f"unknown covariance_type {kind!r}")


def weighted_log_prob(xp, centred, means_c, model):
    """``log pi_k + log N(x_i | mu_k, Sigma_k)`` for pivot-centred rows, (n, K)."""
    d = centred.shape[1]
    maha = _mahalanobis(xp, centred, means_c, model)
    return (-0.5 * (d * math.log(2 * math.pi) + maha) + model.log_det) + model.log_weights


def log_sum_exp(xp, a):
    """Row-wise ``log(sum(exp(a)))`` of an (n, K) array, stable for any finite a."""
    top = xp.max(a, axis=1)
    top = xp.where(xp.isfinite(top), top, xp.zeros_like(top))
    return xp.log(xp.sum(xp.exp(a - top[:, None]), axis=1)) + top


def log_normalize(xp, a):
    """Row-wise ``log(sum(exp(a)))`` (n,) and ``a`` minus it (n, K).

    The second is formed as ``(a - max) - log(sum(exp(a - max)))``: for rows
    far from every component ``|a|`` exceeds ``1 / eps`` and ``a - log_norm``
    would lose the ``log(sum)`` term to rounding (responsibilities summing to
    K instead of 1, in float32 already ~1e4 standard deviations away).
    """
    top = xp.max(a, axis=1)
    top = xp.where(xp.isfinite(top), top, xp.zeros_like(top))
    shifted = a - top[:, None]
    log_sum = xp.log(xp.sum(xp.exp(shifted), axis=1))
    return log_sum + top, shifted - log_sum[:, None]


def _row_slices(n_rows, n_components, n_features):
    width = max(n_components * n_features, 1)
    step = max(64, SLICE_ELEMENTS // width)
    return [(start, min(start + step, n_rows)) for start in range(0, n_rows, step)] or [(0, 0)]


def _pivot(xp, X):
    if X.shape[0] == 0:
        return xp.zeros((X.shape[1],), dtype=X.dtype)
    return xp.mean(X, axis=0)


def _finite_rows(xp, X):
    return xp.all(xp.isfinite(X), axis=1)


def check_finite(xp, value, X, row_offset=0):
    """Raise a clear error if ``value`` (a sum over the rows of block ``X``) is
    not finite: the check rides on sums a pass computes anyway."""
    if not bool(xp.all(xp.isfinite(value))):
        _raise_nonfinite(get_namespace(X), X, row_offset)


def _raise_nonfinite(xp, X, row_offset):
    bad = ~_finite_rows(xp, X)
    n_bad = int(xp.sum(xp.astype(bad, xp.int64)))
    if n_bad:
        first = int(xp.argmax(xp.astype(bad, xp.int8))) + row_offset
        raise ValueError(
            f"Input X contains NaN or infinity: {n_bad} row(s) with non-finite values "
            f"in this chunk (first at row {first}). Remove or impute them first."
        )
    raise ValueError(
        "The log-likelihood overflowed on finite input: the data's values are too large "
        "for the dtype. Rescale the input (e.g. standardise the features)."
    )


def _mask_rows(xp, X, skip_nonfinite):
    """Rows to use and X with skipped rows zeroed (so they cannot poison sums)."""
    if not skip_nonfinite:
        return None, X
    keep = _finite_rows(xp, X)
    return keep, xp.where(keep[:, None], X, xp.zeros_like(X))


def estimate_log_resp(X, model, *, skip_nonfinite=False):
    """Per-row log-likelihood and log-responsibilities of one block.

    Parameters
    ----------
    X : (n, D) array
    model : Model, arrays of any namespace (converted to X's)
    skip_nonfinite : bool
        Rows holding NaN/inf get NaN outputs instead of an error.

    Returns
    -------
    log_prob_norm : (n,) log p(x_i)
    log_resp : (n, K) log r_ik
    """
    xp = get_namespace(X)
    model = model.to(xp, X.dtype)
    keep, Xz = _mask_rows(xp, X, skip_nonfinite)
    pivot = _pivot(xp, Xz)
    centred = Xz - pivot
    wlp = weighted_log_prob(xp, centred, model.means - pivot, model)
    log_norm, log_resp = log_normalize(xp, wlp)
    if keep is not None:
        nan = xp.asarray(float("nan"), dtype=X.dtype)
        log_norm = xp.where(keep, log_norm, nan)
        log_resp = xp.where(keep[:, None], log_resp, nan)
    return log_norm, log_resp


# --------------------------------------------------------------------------
# Sufficient statistics
# --------------------------------------------------------------------------


def _second_moment_about_pivot(xp, centred, resp, kind):
    """Raw second moment of pivot-centred rows (no cancellation issue: rows are
    centred near the data), in the layout ``kind`` needs."""
    if kind == "full":
        # One GEMM for all components: (K*D, n) @ (n, D) -> (K, D, D).  Cheaper
        # than products of the upper triangle, whose gather is memory-bound.
        n, d = centred.shape
        k = resp.shape[1]
        weighted = xp.reshape(resp[:, :, None] * centred[:, None, :], (n, k * d))
        return xp.reshape(xp.matmul(xp.permute_dims(weighted, (1, 0)), centred), (k, d, d))
    if kind == "tied":
        return xp.matmul(xp.permute_dims(centred, (1, 0)), centred)  # (D, D)
    return xp.matmul(xp.permute_dims(resp, (1, 0)), centred * centred)  # (K, D)


def _safe(xp, nk):
    return xp.where(nk > 0, nk, xp.ones_like(nk))


def block_statistics(X, model, *, row_offset=0, skip_nonfinite=False, resp=None, groups=None):
    """E-step and sufficient statistics of one block, fused.

    Parameters
    ----------
    X : (n, D) array
    model : Model
        Current parameters (any namespace; converted to X's namespace/dtype).
        With ``resp`` given, only ``model.covariance_type`` is used.
    row_offset : int
        Global index of the block's first row (for error messages).
    skip_nonfinite : bool
        Leave out rows with NaN/inf instead of raising.
    resp : (n, K) array, optional
        Fixed responsibilities (initialisation); then no E-step is done and
        the log-likelihood is 0.
    groups : tuple of int, optional
        ``model`` is several mixtures stacked (:func:`stack_models`) with
        these numbers of components: responsibilities are normalised within
        each group and ``log_likelihood`` is one sum per group, (G,).  The
        result splits with :func:`split_statistics`.

    Returns
    -------
    Stats
    """
    xp = get_namespace(X)
    kind = model.covariance_type
    n, d = X.shape
    if resp is None:
        model = model.to(xp, X.dtype)
        k = model.means.shape[0]
    else:
        k = resp.shape[1]
    keep, Xz = _mask_rows(xp, X, skip_nonfinite)
    pivot = _pivot(xp, Xz)
    means_c = model.means - pivot if resp is None else None

    zero = xp.zeros((), dtype=X.dtype)
    log_likelihood = zero
    nk = xp.zeros((k,), dtype=X.dtype)
    sum_x = xp.zeros((k, d), dtype=X.dtype)
    moment = None
    for start, stop in _row_slices(n, k, d):
        centred = Xz[start:stop, :] - pivot
        if resp is None:
            wlp = weighted_log_prob(xp, centred, means_c, model)
            if groups is None:
                log_norm, log_resp = log_normalize(xp, wlp)
            else:
                log_norm, log_resp = _log_normalize_groups(xp, wlp, groups)
            if keep is not None:
                kept = keep[start:stop] if groups is None else keep[start:stop, None]
                log_norm = xp.where(kept, log_norm, xp.zeros_like(log_norm))
            part_ll = xp.sum(log_norm, axis=0)
            check_finite(xp, part_ll, X[start:stop, :], row_offset + start)
            log_likelihood = log_likelihood + part_ll
            r = xp.exp(log_resp)
        else:
            r = xp.asarray(resp[start:stop, :], dtype=X.dtype)
        if keep is not None:
            r = xp.where(keep[start:stop, None], r, xp.zeros_like(r))
        nk = nk + xp.sum(r, axis=0)
        sum_x = sum_x + xp.matmul(xp.permute_dims(r, (1, 0)), centred)
        part = _second_moment_about_pivot(xp, centred, r, kind)
        moment = part if moment is None else moment + part

    if resp is not None and keep is None:
        check_finite(xp, xp.sum(sum_x), X, row_offset)
    n_used = xp.sum(xp.astype(keep, X.dtype)) if keep is not None else xp.asarray(float(n), dtype=X.dtype)
    means_c = sum_x / _safe(xp, nk)[:, None]
    if kind == "full":
        scatter = moment - nk[:, None, None] * (means_c[:, :, None] * means_c[:, None, :])
    elif kind == "tied":
        weighted = nk[:, None] * means_c
        scatter = moment - xp.matmul(xp.permute_dims(weighted, (1, 0)), means_c)
    else:
        scatter = moment - nk[:, None] * means_c * means_c
    means = xp.where(nk[:, None] > 0, means_c + pivot, xp.zeros_like(means_c))
    return Stats(kind, n_used, log_likelihood, nk, means, scatter)


def _log_normalize_groups(xp, wlp, groups):
    """:func:`log_normalize` within each group of columns: (n, G) and (n, sum(groups))."""
    n = wlp.shape[0]
    if len(set(groups)) == 1:  # equal groups: one call on an (n * G, K) view
        log_norm, log_resp = log_normalize(xp, xp.reshape(wlp, (n * len(groups), groups[0])))
        return xp.reshape(log_norm, (n, len(groups))), xp.reshape(log_resp, wlp.shape)
    norms, resps, start = [], [], 0
    for size in groups:
        log_norm, log_resp = log_normalize(xp, wlp[:, start : start + size])
        norms.append(log_norm)
        resps.append(log_resp)
        start += size
    return xp.stack(norms, axis=1), xp.concat(resps, axis=1)


def stack_models(models):
    """Several mixtures of one covariance type (not 'tied', whose precision is
    shared by its components) as one :class:`Model` with all components, and
    the group sizes to pass to :func:`block_statistics` as ``groups``.

    Evaluating them together shares the pivot-centred block, the matrix
    products and the per-slice work; the results are those of separate calls.
    """
    kinds = {model.covariance_type for model in models}
    if len(kinds) != 1 or "tied" in kinds:
        raise ValueError(f"stack_models needs one covariance type other than 'tied', got {sorted(kinds)}.")
    xp = get_namespace(*(model.means for model in models))
    groups = tuple(int(model.means.shape[0]) for model in models)
    fields = ("log_weights", "means", "precisions_cholesky", "log_det")
    stacked = Model(kinds.pop(), *(xp.concat([getattr(m, f) for m in models], axis=0) for f in fields))
    return stacked, groups


def split_statistics(stats, groups):
    """Per-mixture :class:`Stats` from statistics of stacked mixtures (or of
    stacked fixed responsibilities, whose log-likelihood is a scalar 0)."""
    if stats.covariance_type == "tied":
        raise ValueError("'tied' statistics share one scatter matrix and cannot be split.")
    ll = stats.log_likelihood
    out, start = [], 0
    for g, size in enumerate(groups):
        part = slice(start, start + size)
        out.append(
            Stats(
                stats.covariance_type,
                stats.n_samples,
                ll[g] if getattr(ll, "ndim", 0) else ll,
                stats.nk[part],
                stats.means[part],
                stats.scatter[part],
            )
        )
        start += size
    return out


def merge_statistics(a, b):
    """Pairwise merge of the statistics of two disjoint row sets.

    Exact (up to rounding) and symmetric:
    ``merge(stats(A), stats(B)) == stats(A ++ B)``.  Uses the centred update
    ``S = S_a + S_b + n_a n_b / (n_a + n_b) * delta delta^T`` with
    ``delta = m_b - m_a``, so no raw moments are ever subtracted.
    """
    xp = get_namespace(a.nk, b.nk)
    nk = a.nk + b.nk
    safe = _safe(xp, nk)
    delta = b.means - a.means
    means = a.means + (b.nk / safe)[:, None] * delta
    coef = a.nk * b.nk / safe
    if a.covariance_type == "full":
        scatter = a.scatter + b.scatter + coef[:, None, None] * (delta[:, :, None] * delta[:, None, :])
    elif a.covariance_type == "tied":
        scatter = a.scatter + b.scatter + xp.matmul(xp.permute_dims(coef[:, None] * delta, (1, 0)), delta)
    else:
        scatter = a.scatter + b.scatter + coef[:, None] * delta * delta
    return Stats(
        a.covariance_type,
        a.n_samples + b.n_samples,
        a.log_likelihood + b.log_likelihood,
        nk,
        means,
        scatter,
    )


def merge_many(stats_list):
    """Merge a sequence of Stats left to right (one node of the reduction tree)."""
    stats_list = list(stats_list)
    out = stats_list[0]
    for other in stats_list[1:]:
        out = merge_statistics(out, other)
    return out
