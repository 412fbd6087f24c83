"""Pure math on ONE block whose rows may miss features (NaN entries), for
``missing="marginalize"``: the E-step on each row's observed features and
the expected sufficient statistics of the M-step (Ghahramani & Jordan,
"Supervised learning from incomplete data via an EM approach", 1994).  No
Dask here.  NumPy blocks (the missing-pattern bookkeeping and the small
batched factorizations are NumPy's).

For a row with observed features ``o`` and missing ones ``m``, and a
component with mean ``mu`` and precision ``L = P P^T`` (the model's
Cholesky factor of the precision):

* the missing part's conditional distribution given ``x_o`` is Gaussian,
  with covariance ``C = (L_mm)^-1`` and mean
  ``x^_m = mu_m - C L_mo (x_o - mu_o)``;
* the marginal density of the observed part follows from the joint density
  at the completed row ``x^ = (x_o, x^_m)`` (no inverse of the covariance):
  ``log N(x_o | mu_o, S_oo) = log N(x^ | mu, S) + |m|/2 log(2 pi) - 1/2 log det L_mm``;
* the M-step needs ``E[x]`` and ``E[x x^T]`` under that distribution:
  every component's statistics are those of its completed rows ``x^``
  (their weighted mean and centred scatter, exact: two steps over rows held
  in memory) plus ``sum_i r_ik C_ik`` on the missing block.

The same completion applied to the variational family's E-step model (a
Gaussian with shifted log-weights) is the mean-field update with the missing
values in the variational distribution, and the entropy of their
distribution is what the family's bound gets from ``log_likelihood`` less
the expected log-probability of the statistics: both families use these
functions unchanged.

Rows are grouped by their number of missing features, then by missing
pattern: a pattern shared by many rows has ``L_mm`` factorized once per
component, and its rows are completed together with matrix products; the
rows of rarer patterns (entries missing at random in many features: nearly
every row a pattern of its own) are completed in slices, every ``L_mm`` of a
slice inverted at once by a vectorised sweep (:func:`_swept_patterns`).  The
cost per row is that of the complete rows' E-step and statistics plus
``O(K c^2)``, and ``O(K c^3)`` for a row of a rare pattern.  'diag' and 'spherical' models have no coupling between features
(``x^_m = mu_m``, ``C`` diagonal) and need no grouping.  Rows without any missing feature go through
:func:`daskgmm._blocks.block_statistics` unchanged, so a block without NaN
gives exactly the plain result.  Rows with every feature missing carry no
information: they are left out (and counted by :func:`missing_summary`).
"""

from __future__ import annotations

import math

import numpy as np

from ._blocks import (
    Model,
    Stats,
    _cancelling_log_densities,
    block_statistics,
    estimate_log_resp,
    log_normalize,
    merge_many,
    normalize_labelled,
    weighted_values,
    with_noise,
)

# A pattern shared by this many rows of a block is completed in slices of
# its own (matrix products with its factors); rarer ones in slices of
# mixed patterns (each row with its pattern's factors).
SHARED_PATTERN_ROWS = 64

# Rows per slice: at most this many elements in a (K, rows, D) temporary.
SLICE_ELEMENTS = 1 << 20

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


# --------------------------------------------------------------------------
# Row bookkeeping
# --------------------------------------------------------------------------


def missing_summary(X, row_offset=0, sample_weight=None):
    """What a block holds, for ``missing="marginalize"``: per-feature sums,
    counts and sums of squares about their mean of the observed entries
    (weighted), and counts of missing entries, incomplete rows and rows with
    every feature missing.  Infinity is never a missing value: a row holding
    one raises a ValueError naming it.

    Returns
    -------
    dict with ``sums``, ``counts``, ``scatter`` (D,) (float64),
    ``n_missing_entries``, ``n_incomplete_rows``, ``n_empty_rows`` (int)
    """
    X = np.asarray(X)
    check_no_infinity(X, row_offset)
    miss = np.isnan(X)
    observed = ~miss
    w = np.ones(X.shape[0]) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    values = np.where(observed, X, 0).astype(np.float64)
    n_missing = miss.sum(axis=1)
    sums = w @ values
    counts = w @ observed.astype(np.float64)
    # Centred on the block's own means (two passes over the block), merged
    # exactly by merge_summaries: no raw second moments to cancel.
    means = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
    centred = np.where(observed, values - means, 0.0)
    return {
        "sums": sums,
        "counts": counts,
        "scatter": w @ (centred * centred),
        "n_missing_entries": int(n_missing.sum()),
        "n_incomplete_rows": int(np.count_nonzero(n_missing)),
        "n_empty_rows": int(np.count_nonzero(n_missing == X.shape[1])),
    }


def merge_summaries(parts):
    """Combine :func:`missing_summary` results of disjoint row sets (the
    scatters by the centred update of :func:`daskgmm._blocks.merge_statistics`)."""
    parts = list(parts)
    out = dict(parts[0])
    for part in parts[1:]:
        n_a, n_b = out["counts"], part["counts"]
        n = n_a + n_b
        delta = np.divide(part["sums"], n_b, out=np.zeros_like(n_b), where=n_b > 0) - np.divide(
            out["sums"], n_a, out=np.zeros_like(n_a), where=n_a > 0
        )
        coef = np.divide(n_a * n_b, n, out=np.zeros_like(n), where=n > 0)
        out["scatter"] = out["scatter"] + part["scatter"] + coef * delta * delta
        for key, value in part.items():
            if key != "scatter":
                out[key] = out[key] + value
    return out


def check_no_infinity(X, row_offset=0):
    """Raise a ValueError naming the first row (global index) holding +-inf."""
    bad = np.isinf(X).any(axis=1)
    if bad.any():
        first = int(np.argmax(bad)) + row_offset
        raise ValueError(
            f"Input X contains infinity: {int(bad.sum())} row(s) among rows {row_offset} to "
            f"{row_offset + X.shape[0] - 1} (first at row {first}). With missing='marginalize' a NaN "
            "entry is a missing value; infinity is not. Replace it by NaN or remove the row."
        )


def impute(X, fill):
    """``X`` with its NaN entries replaced by ``fill`` (D,) (the initialisation
    runs on such rows)."""
    X = np.asarray(X)
    miss = np.isnan(X)
    if not miss.any():
        return X
    return np.where(miss, np.asarray(fill, dtype=X.dtype)[None, :], X)


def observed_rows_weight(X, sample_weight=None):
    """Per-row weight for the initialisation: the sample weight (1 without
    one), 0 for a row with every feature missing."""
    X = np.asarray(X)
    keep = ~np.isnan(X).all(axis=1)
    w = keep.astype(X.dtype)
    return w if sample_weight is None else w * np.asarray(sample_weight, dtype=X.dtype)


# --------------------------------------------------------------------------
# Completion of incomplete rows
# --------------------------------------------------------------------------


def _precisions(model, k, d):
    """Full precision matrices (K, D, D), float64, of a 'full' or 'tied' model."""
    pc = np.asarray(model.precisions_cholesky, dtype=np.float64)
    if model.covariance_type == "tied":
        return np.broadcast_to(pc @ pc.T, (k, d, d))
    return pc @ np.swapaxes(pc, 1, 2)


def _diagonal_precisions(model, k, d):
    """Per-feature precisions (K, D), float64, of a 'diag' or 'spherical' model."""
    pc = np.asarray(model.precisions_cholesky, dtype=np.float64)
    prec = pc * pc
    return np.broadcast_to(prec[:, None], (k, d)) if model.covariance_type == "spherical" else prec


class _Completed:
    """The completion of a set of rows under every component of a model.

    Attributes
    ----------
    rows : (n,) indices of the rows in the block
    wlp : (K, n) ``log pi_k + log N(x_o | mu_k,o, S_k,oo)``
    statistics : callable(r) -> (nk (K,), means (K, D), scatter) of the
        completed rows under responsibilities ``r`` (K, n) (times the rows'
        weights): weighted means and centred scatter (as
        :class:`daskgmm._blocks.Stats` holds it for the model's covariance
        type, 'tied' still per component (K, D, D)) with ``sum_i r_ik C_ik``
        added
    """

    __slots__ = ("rows", "wlp", "statistics")

    def __init__(self, rows, wlp, statistics):
        self.rows, self.wlp, self.statistics = rows, wlp, statistics


def _log_weights_and_dets(model, k):
    const = np.asarray(model.log_det, dtype=np.float64) + np.asarray(model.log_weights, dtype=np.float64)
    return np.broadcast_to(const, (k,))


def _centred_statistics(xhat, r):
    """Weighted means (K, D) and centred scatter (K, D, D) of completed rows
    ``xhat`` (K, n, D) under ``r`` (K, n): two steps over rows in memory."""
    r64 = np.asarray(r, dtype=np.float64)
    nk = r64.sum(axis=1)
    safe = np.where(nk > 0, nk, 1.0)
    means = np.matmul(r[:, None, :].astype(xhat.dtype), xhat)[:, 0, :].astype(np.float64) / safe[:, None]
    dev = xhat - means[:, None, :].astype(xhat.dtype)
    scatter = np.matmul(np.swapaxes(dev * r[:, :, None].astype(dev.dtype), 1, 2), dev).astype(np.float64)
    return nk, means, scatter


def _complete_coupled(model, X, rows, factors, per_row=False):
    """The completion of rows under a 'full' or 'tied' model.

    ``factors`` are the model's precisions (K, D, D) and, for P patterns
    with ``c`` missing features each, their missing features (P, c),
    ``log det L_mm`` (K, P) and ``C = L_mm^-1``: without ``per_row``
    :func:`_factorized_patterns`' for one pattern that every row has (P = 1,
    C (K, 1, c, c)), the products shared; with it :func:`_swept_patterns`'
    for the rows' own patterns, in order (P = n, C (c, c, K, n)).

    With ``d0 = x - mu`` zeroed where missing and ``z = L d0`` (one GEMM per
    component), ``L_mo (x_o - mu_o) = z_m``, ``x^_m - mu_m = -C z_m`` and
    the squared Mahalanobis distance of the completed row is
    ``d0 . z - z_m . C z_m``: no block of ``L`` is gathered but ``L_mm``.
    """
    precisions, (idx_p, log_det_p, cond_p) = factors[0], factors[1:]
    k, d = precisions.shape[0], X.shape[1]
    c = idx_p.shape[1]
    dtype = X.dtype
    mu = np.asarray(model.means, dtype=np.float64)
    x = X[rows]
    n = len(rows)
    observed = ~np.isnan(x)
    dev0 = np.where(observed[None], x[None, :, :] - mu[:, None, :].astype(dtype), 0)  # (K, n, D)
    z = np.matmul(dev0, precisions.astype(dtype, copy=False))  # L symmetric: rows times L
    if not per_row:
        idx_m = idx_p[0]
        z_m = z[:, :, idx_m]  # (K, n, c)
        shift = np.matmul(z_m, cond_p[:, 0].astype(dtype))  # C z_m, as rows (C symmetric)
        log_det_mm = log_det_p[:, :1]
    else:
        index = np.broadcast_to(idx_p, (k, n, c))
        z_m = np.take_along_axis(z, index, axis=2)
        shift = np.einsum("ijkn,knj->kni", cond_p.astype(dtype, copy=False), z_m)
        log_det_mm = log_det_p
    quad = np.einsum("knd,knd->kn", dev0, z) - np.einsum("knc,knc->kn", z_m, shift)
    wlp = (_log_weights_and_dets(model, k) - d * _HALF_LOG_2PI)[:, None] - 0.5 * quad
    wlp += c * _HALF_LOG_2PI - 0.5 * log_det_mm
    # x^ = mu + d0, less C z_m on the missing features.
    xhat = dev0
    xhat += mu[:, None, :].astype(dtype)
    if not per_row:
        xhat[:, :, idx_m] -= shift
    else:
        np.put_along_axis(xhat, index, np.take_along_axis(xhat, index, axis=2) - shift, axis=2)
    del z, dev0
    cond64 = np.asarray(cond_p, dtype=np.float64)

    def statistics(r):
        nk, means, scatter = _centred_statistics(xhat, r)
        r64 = np.asarray(r, dtype=np.float64)
        if not per_row:
            idx = idx_p[0]
            scatter[:, idx[:, None], idx[None, :]] += r64.sum(axis=1)[:, None, None] * cond64[:, 0]
            return nk, means, scatter
        # sum_i r_ik C_ik, each row's C on its own missing features
        flat = np.transpose(idx_p[:, :, None] * d + idx_p[:, None, :], (1, 2, 0)).ravel()  # as C's (c, c, n)
        for j in range(k):
            scatter[j] += np.bincount(flat, weights=(cond64[:, :, j] * r64[j]).ravel(), minlength=d * d).reshape(d, d)
        return nk, means, scatter

    return wlp, statistics


def _factorized_patterns(precisions, patterns):
    """For missing patterns with ``c`` missing features each, ``patterns``
    (P, D) bool: their missing features (P, c), ``log det L_mm`` (K, P) and
    ``C = L_mm^-1`` (K, P, c, c) under every component: one batched
    factorization per distinct pattern and component."""
    c = int(patterns[0].sum())
    idx_m = np.argsort(~patterns, axis=1, kind="stable")[:, :c]  # increasing feature order
    k = precisions.shape[0]
    lmm = precisions[np.arange(k)[:, None, None, None], idx_m[None, :, :, None], idx_m[None, :, None, :]]
    chol = np.linalg.cholesky(lmm)
    log_det_mm = 2 * np.sum(np.log(np.diagonal(chol, axis1=2, axis2=3)), axis=2)
    cond_cov = np.linalg.inv(lmm)
    return idx_m, log_det_mm, 0.5 * (cond_cov + np.swapaxes(cond_cov, 2, 3))


# Matrices swept at once by _swept_patterns: at most this many elements in
# a (c, c, m) stack, so that a sweep's updates stay in cache.
SWEEP_ELEMENTS = 1 << 17


def _swept_patterns(precisions, patterns, tied=False):
    """:func:`_factorized_patterns`' results for patterns that few rows
    share, the conditional covariances held as (c, c, K, P), by a symmetric
    sweep (Gauss-Jordan elimination on the diagonal pivots; Goodnight, "A
    tutorial on the SWEEP operator", 1979) of every ``L_mm`` at once: ``c``
    vectorised steps over the whole stack, each an elementwise update of
    contiguous rows (a LAPACK call per small matrix costs more than its
    arithmetic).  The pivots of an SPD matrix are positive (those of its
    Cholesky factorization, squared): no pivoting is needed, and
    ``log det L_mm`` is the sum of their logs.  A 'tied' model's components
    share ``L_mm``: it is swept once, its results broadcast."""
    c = int(patterns[0].sum())
    idx_m = np.argsort(~patterns, axis=1, kind="stable")[:, :c]  # increasing feature order
    n_components, d = precisions.shape[:2]
    if tied:
        precisions = precisions[:1]
    k = precisions.shape[0]
    n_patterns = len(patterns)
    # (c, c, 1, P) indices into the flattened (K, D, D), plus each component's offset along axis 2
    flat = np.transpose(idx_m[:, :, None] * d + idx_m[:, None, :], (1, 2, 0))[:, :, None, :]
    offsets = (np.arange(k) * (d * d))[:, None]
    entries = np.ascontiguousarray(precisions).ravel()
    log_det_mm = np.empty((k, n_patterns))
    cond_cov = np.empty((c, c, k, n_patterns))
    step = max(1, SWEEP_ELEMENTS // (c * c * k))
    for start in range(0, n_patterns, step):
        stop = min(start + step, n_patterns)
        a = np.take(entries, flat[..., start:stop] + offsets)  # (c, c, K, p), contiguous
        log_det = np.zeros(a.shape[2:])
        for j in range(c):
            pivot = a[j, j].copy()
            log_det += np.log(pivot)
            col = a[:, j].copy()
            scaled = col / np.sqrt(pivot)
            a -= scaled[:, None] * scaled[None, :]  # symmetric to the bit
            col /= pivot
            a[:, j] = col
            a[j, :] = col
            a[j, j] = -1.0 / pivot
        log_det_mm[:, start:stop] = log_det
        np.negative(a, out=cond_cov[..., start:stop])
    return (
        idx_m,
        np.broadcast_to(log_det_mm, (n_components, n_patterns)),
        np.broadcast_to(cond_cov, (c, c, n_components, n_patterns)),
    )


def _complete_diagonal(model, X, rows, missing):
    """'diag' and 'spherical': no coupling between features, so a missing
    feature's conditional mean is the component's mean and its conditional
    variance the component's.  Matrix products over the rows, no (K, n, D)
    temporary: the E-step from the rows about a pivot ``p`` with missing
    entries zeroed (``x0``) and the observed mask ``O``,
    ``sum_o prec (x - mu)^2 = x0^2 . prec - 2 x0 . (prec mu') + O . (prec mu'^2)``
    (``mu' = mu - p``, as the complete rows' E-step; ``x - mu`` first for a
    component where that would cancel); the statistics about each
    component's model mean, one pass over the rows per component (exact:
    the weighted means are near the model's)."""
    mu = np.asarray(model.means, dtype=np.float64)
    k, d = mu.shape
    prec = _diagonal_precisions(model, k, d)
    x = X[rows]
    dtype = X.dtype
    miss = missing[rows]
    observed = (~miss).astype(dtype)
    sample = x[:: max(1, len(rows) // 1024)]  # a pivot: the observed mean of a sample of rows
    seen = ~np.isnan(sample)
    pivot = np.where(seen, sample, 0).sum(axis=0) / np.maximum(seen.sum(axis=0), 1)
    x0 = np.where(miss, 0, x - pivot.astype(dtype))
    mu_p = mu - pivot
    quad = (
        np.matmul(x0 * x0, prec.T.astype(dtype))
        - 2 * np.matmul(x0, (prec * mu_p).T.astype(dtype))
        + np.matmul(observed, (prec * mu_p**2).T.astype(dtype))
    )  # (n, K)
    log_det_o = np.matmul(observed, (0.5 * np.log(prec)).T.astype(dtype))
    n_obs = observed.sum(axis=1)
    log_weights = np.asarray(model.log_weights, dtype=np.float64)[:, None]
    const = log_weights + log_det_o.T - n_obs[None, :] * _HALF_LOG_2PI
    limit = float(np.finfo(dtype).eps) ** -0.3
    # A component whose log-density about the pivot may cancel (as the
    # complete rows' E-step decides; its distance from the pivot over all
    # features bounds the one over a row's observed ones) is evaluated from
    # x - mu, one pass over the rows.
    root = np.sqrt(np.sum(mu_p**2 * prec, axis=1))
    for j in np.flatnonzero(np.any(_cancelling_log_densities(root[:, None], const, limit, True), axis=1)):
        dev = np.where(miss, 0, x - mu[j].astype(dtype))
        quad[:, j] = np.matmul(dev * dev, prec[j].astype(dtype))
    wlp = log_weights + (log_det_o - 0.5 * quad).T - n_obs[None, :] * _HALF_LOG_2PI

    # Sums about the pivot are exact for components near it; one far from it
    # relative to its spread (as _blocks.block_statistics decides) is summed
    # about its own mean, one pass over the rows.
    far = np.max(mu_p**2 * prec, axis=1) + 1 > limit

    def statistics(r):
        r64 = np.asarray(r, dtype=np.float64)
        nk = r64.sum(axis=1)
        safe = np.where(nk > 0, nk, 1.0)
        sums = np.matmul(r, x0).astype(np.float64)  # (K, D)
        squares = np.matmul(r, x0 * x0).astype(np.float64)
        seen = np.matmul(r, observed).astype(np.float64)  # responsibility over observed entries
        # about mu_k: sum r o (x - mu_k) and sum r o (x - mu_k)^2 (x^ - mu_k is 0 where missing)
        first = sums - mu_p * seen
        second = squares - 2 * mu_p * sums + mu_p**2 * seen
        for j in np.flatnonzero(far):
            dev = np.where(miss, 0, x - mu[j].astype(dtype))
            first[j] = (r[j] @ dev).astype(np.float64)
            second[j] = (r[j] @ (dev * dev)).astype(np.float64)
        shift = first / safe[:, None]
        means = mu + shift
        scatter = second - nk[:, None] * shift * shift + (nk[:, None] - seen) / prec
        return nk, means, scatter

    return wlp, statistics


def _unique_patterns(miss):
    """The distinct rows of ``miss`` (n, D) bool, (P, D), and the index of
    each row's among them, (n,): one sort of the patterns packed into bytes."""
    packed = np.ascontiguousarray(np.packbits(miss, axis=1))
    keys = packed.view(np.dtype((np.void, packed.shape[1]))).ravel()
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    new = np.concatenate([[True], sorted_keys[1:] != sorted_keys[:-1]])
    which = np.empty(len(keys), dtype=np.intp)
    which[order] = np.cumsum(new) - 1
    return miss[order[new]], which


def _completions(model, X, incomplete, missing):
    """:class:`_Completed` pieces covering the rows ``incomplete`` of ``X``."""
    kind = model.covariance_type
    k, d = np.asarray(model.means).shape
    if kind in ("diag", "spherical"):
        step = max(64, SLICE_ELEMENTS // max(k, d))
        for start in range(0, len(incomplete), step):
            rows = incomplete[start : start + step]
            yield _Completed(rows, *_complete_diagonal(model, X, rows, missing))
        return
    precisions = _precisions(model, k, d)
    n_missing = missing[incomplete].sum(axis=1)
    for c in np.unique(n_missing):
        rows_c = incomplete[n_missing == c]
        patterns, which = _unique_patterns(missing[rows_c])
        # The (K, n, c, c) conditional covariances next to the (K, n, D) rows.
        step = max(16, SLICE_ELEMENTS // max(1, k * (int(c) * int(c) + 3 * d)))
        sizes = np.bincount(which, minlength=len(patterns))
        shared = sizes[which] >= SHARED_PATTERN_ROWS
        frequent = np.flatnonzero(sizes >= SHARED_PATTERN_ROWS)
        if len(frequent):
            idx_m, log_det_mm, cond_cov = _factorized_patterns(precisions, patterns[frequent])
        for j, p in enumerate(frequent):  # slices of one pattern: shared factors
            rows_p = rows_c[which == p]
            factors = (precisions, idx_m[j : j + 1], log_det_mm[:, j : j + 1], cond_cov[:, j : j + 1])
            for start in range(0, len(rows_p), step):
                rows = rows_p[start : start + step]
                yield _Completed(rows, *_complete_coupled(model, X, rows, factors))
        rows_c, which = rows_c[~shared], which[~shared]
        for start in range(0, len(rows_c), step):  # the rarer patterns: each slice's rows swept at once
            rows = rows_c[start : start + step]
            factors = (precisions, *_swept_patterns(precisions, patterns[which[start : start + step]], kind == "tied"))
            yield _Completed(rows, *_complete_coupled(model, X, rows, factors, per_row=True))


# --------------------------------------------------------------------------
# Per-block results
# --------------------------------------------------------------------------


def _noise_of_rows(model, missing_rows):
    """The noise component's log-density on rows missing the features
    ``missing_rows`` (n, D) bools: the uniform over the box's sides of their
    observed features, ``log pi_0 - sum_{observed d} log(range_d)``; None
    without a noise component."""
    if model.noise_log_density is None:
        return None
    if model.noise_log_ranges is None:
        raise ValueError(
            "A noise component given only by its volume has no marginal density over a row's observed features: "
            "rows with missing features need noise='box'."
        )
    return model.noise_log_density + missing_rows.astype(np.asarray(model.noise_log_ranges).dtype) @ np.asarray(
        model.noise_log_ranges
    )


def _split_rows(X, row_offset):
    X = np.asarray(X)
    check_no_infinity(X, row_offset)
    missing = np.isnan(X)
    n_missing = missing.sum(axis=1)
    complete = np.flatnonzero(n_missing == 0)
    incomplete = np.flatnonzero((n_missing > 0) & (n_missing < X.shape[1]))
    return X, missing, complete, incomplete


def _completed_statistics(kind, piece, r, weights_rows, log_norm):
    """Stats of one completed piece from its responsibilities ``r`` (K, n)
    (already times the rows' weights) and per-row log-likelihoods."""
    nk, means, scatter = piece.statistics(r)
    if kind == "tied":
        scatter = scatter.sum(axis=0)
    means = np.where(nk[:, None] > 0, means, 0.0)
    if weights_rows is None:
        ll = np.sum(log_norm, axis=-1)
        n_used = float(r.shape[1])
    else:
        ll = np.sum(weighted_values(np, log_norm, weights_rows), axis=-1)
        n_used = float(np.sum(weights_rows))
    return Stats(kind, n_used, ll, nk, means, scatter)


def _check_finite_rows(value, X, rows, row_offset):
    if not np.all(np.isfinite(value)):
        raise ValueError(
            "The log-likelihood of rows with missing features overflowed (first such row "
            f"{row_offset + int(rows[0])}): the data's values are too large for the dtype. Rescale the input."
        )


def marginal_block_statistics(X, model, *, row_offset=0, groups=None, sample_weight=None, labels=None):
    """:func:`daskgmm._blocks.block_statistics` with NaN entries marginalised
    (see the module docstring).  Rows with every feature missing are left out,
    labelled or not; a labelled row's responsibilities are fixed, its
    log-likelihood term that of its component's observed features.

    Parameters and result as :func:`daskgmm._blocks.block_statistics`
    (``model`` required: the E-step is always done).  The statistics are
    float64 (the rows' dtype for a block without incomplete rows).
    """
    X, missing, complete, incomplete = _split_rows(X, row_offset)
    kind = model.covariance_type
    if len(incomplete) == 0 and len(complete) == X.shape[0]:
        return block_statistics(
            X, model, row_offset=row_offset, groups=groups, sample_weight=sample_weight, labels=labels
        )
    weights = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    labels = None if labels is None else np.asarray(labels)
    parts = []
    if len(complete):
        parts.append(
            _stats64(block_statistics(
                X[complete], model, row_offset=row_offset, groups=groups,
                sample_weight=None if weights is None else weights[complete],
                labels=None if labels is None else labels[complete],
            ))
        )
    model = model.to(np, X.dtype)
    for piece in _completions(model, X, incomplete, missing):
        wlp = piece.wlp
        noise = _noise_of_rows(model, missing[piece.rows])
        # The Gaussian components' statistics only, as block_statistics.
        log_norm, r = normalize_labelled(
            np, with_noise(np, wlp, noise), groups, None if labels is None else labels[piece.rows]
        )
        if noise is not None:
            r = r[: wlp.shape[0], :]
        _check_finite_rows(log_norm, X, piece.rows, row_offset)
        w = None if weights is None else weights[piece.rows]
        if w is not None:
            r = r * w[None, :]
        parts.append(_completed_statistics(kind, piece, r, w, log_norm))
    if not parts:  # every row empty
        k = np.asarray(model.means).shape[0]
        d = X.shape[1]
        ll = np.zeros(len(groups)) if groups else 0.0
        shape = {"full": (k, d, d), "tied": (d, d)}.get(kind, (k, d))
        return Stats(kind, 0.0, ll, np.zeros(k), np.zeros((k, d)), np.zeros(shape))
    return merge_many(parts)


def _stats64(stats):
    return Stats(stats.covariance_type, *(np.asarray(v, dtype=np.float64) for v in stats[1:]))


def marginal_log_resp(X, model, *, row_offset=0):
    """Per-row log-likelihood of the observed features and log-responsibilities
    of one block: :func:`daskgmm._blocks.estimate_log_resp` with NaN entries
    marginalised.  Rows with every feature missing get NaN.

    Returns
    -------
    log_prob_norm : (n,)
    log_resp : (n, K), or (n, K + 1) with a noise component (its column last)
    """
    X, missing, complete, incomplete = _split_rows(X, row_offset)
    if len(complete) == X.shape[0]:
        return estimate_log_resp(X, model)
    model = model.to(np, X.dtype)
    k = np.asarray(model.means).shape[0] + (model.noise_log_density is not None)
    log_norm = np.full(X.shape[0], np.nan, dtype=X.dtype)
    log_resp = np.full((X.shape[0], k), np.nan, dtype=X.dtype)
    if len(complete):
        log_norm[complete], log_resp[complete] = estimate_log_resp(X[complete], model)
    for piece in _completions(model, X, incomplete, missing):
        norm, resp = log_normalize(np, with_noise(np, piece.wlp, _noise_of_rows(model, missing[piece.rows])))
        _check_finite_rows(norm, X, piece.rows, row_offset)
        log_norm[piece.rows] = norm
        log_resp[piece.rows] = resp.T
    return log_norm, log_resp


__all__ = [
    "Model",
    "check_no_infinity",
    "impute",
    "marginal_block_statistics",
    "marginal_log_resp",
    "merge_summaries",
    "missing_summary",
    "observed_rows_weight",
]
