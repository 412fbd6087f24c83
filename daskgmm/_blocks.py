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
  with ``P P^T = Sigma^-1``; no inverse is ever formed for it.
* The log-density is evaluated about the block's pivot ``c`` (below) too:
  ``(x - c) P - (mu - c) P`` for 'full' and 'tied', the expansion of
  ``p (x - c - (mu - c))^2`` into matrix products for 'diag' and
  'spherical'.  Those terms grow with the distance of ``mu`` from ``c`` in
  the component's spreads (a component with one sample, variance
  ``reg_covar``, 300 units from ``c``: 1e11, for a log-density of order 1
  on its row).  A component where they could exceed ``limit`` (below)
  times a row's log-density (:func:`_cancelling_components`) is evaluated
  from ``x - mu`` instead, so that every log-density keeps a relative error
  of about ``limit * eps``, whatever the data's offset and separation;
  ordinary mixtures have no such component.
* All sample sums are taken about a *pivot* ``c`` (the mean of a sample of
  the block's rows, :func:`_pivot`), so the data's distance from the origin
  never enters a subtraction.  A component's scatter, its pivot moment
  minus ``n_k (m_k - c)^2``, then keeps a relative error of order
  ``eps * kappa_k`` with ``kappa_k = 1 + (|m_k - c| / sigma_k)^2``: the
  spread of the components relative to their width.
* A component with ``kappa_k`` above ``eps ** -0.3`` (120 in float32, 5e4 in
  float64) — known from the model before the block, or from the block's
  running sums (their rounding errors add up over the slices, so the check
  is on their total, not on one slice's few rows) — is summed about a pivot
  of its own instead (the model's mean, or its weighted mean so far;
  :class:`_OwnPivotSums`), over the rows it has responsibility for, with
  ``x - p_k`` taken from the raw rows: its scatter is then a two-pass
  result, exact to ``eps (|m_k - p_k| / sigma_k)^2``, whatever the clusters'
  separation and their offset from ``c`` or 0.
  'full' with one matrix product for all components first *shifts* such a
  component inside that product, weighted rows ``r (x - p_k)`` against the
  shared ``x - c``, which takes the error from ``eps kappa`` to
  ``eps sqrt(kappa)``: up to ``kappa = limit^2`` at no extra pass
  (:class:`_FullSums`).
  'diag' and 'spherical', whose scatter is per feature, decide and move
  each (component, feature) pair alone, from the running sums only
  (:class:`_DiagonalSums`): a component with a few features of tiny
  variance (pixels constant within it) costs those columns, not its rows.
  (Measured in ``benchmarks/bench_precision.py``: variances within 1e-6 in
  float32 and 1e-14 in float64 of a float64 two-pass reference where the
  pivot formula alone lost them entirely.)
* Block statistics are returned *centred* (scatter about the block's own
  weighted component means) and merged with the pairwise update of Chan,
  Golub & LeVeque, so the tree reduction never forms raw second moments.
  Their means are absolute, so a merge sees the difference of two blocks'
  means to ``eps |m_k|``: a relative error of order
  ``eps (|m_k| / sigma_k) (|delta_k| / sigma_k)`` in the merged scatter,
  small since blocks' means differ by ``sigma_k / sqrt(rows)``.
"""

from __future__ import annotations

import abc
import math
from typing import NamedTuple

import numpy as np

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")

# Rows of one block are processed in slices holding at most this many
# elements per temporary (rows x K * D for 'full' and 'tied', rows x
# max(K, D) otherwise; see _row_slices): big enough for
# efficient matrix products, small enough to stay in cache and to bound the
# memory a task needs whatever the chunk size.
SLICE_ELEMENTS = 1 << 19


def array_device(array):
    """The device ``array`` lives on (for creating arrays next to it)."""
    from array_api_compat import device

    return device(array)


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
    noise_log_density : () or None
        mclust's noise component, a uniform density ``1 / V`` with weight
        ``pi_0``: its ``log pi_0 - log V``, one more column of every row's
        E-step (None: no noise component).
    noise_log_ranges : (D,) or None
        ``log`` of the sides of the noise's box (a box, not only a volume,
        is known): a row missing features has the uniform's marginal over
        its observed ones, ``noise_log_density`` plus the log-sides of the
        features it misses (:mod:`daskgmm._blocks_missing`).
    """

    covariance_type: str
    log_weights: object
    means: object
    precisions_cholesky: object
    log_det: object
    noise_log_density: object = None
    noise_log_ranges: object = None

    def to(self, xp, dtype):
        """The same model with every array in namespace ``xp`` and ``dtype``."""
        conv = lambda a: None if a is None else xp.asarray(np.asarray(to_numpy(a)), dtype=dtype)  # noqa: E731
        return Model(
            self.covariance_type,
            conv(self.log_weights),
            conv(self.means),
            conv(self.precisions_cholesky),
            conv(self.log_det),
            conv(self.noise_log_density),
            conv(self.noise_log_ranges),
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
#
# Component-major layout: a slice of rows is handled transposed, ``(D, n)``,
# and everything per component and row is ``(K, n)``.  Reductions over the
# K components (max, sum of exp) and over the D features of the Mahalanobis
# term then run along the long contiguous row axis instead of over short
# rows of length K or D, whose per-row overhead dominates at small K and D
# (figures: benchmarks/README.md, "component-major layout").
# --------------------------------------------------------------------------


def _contiguous(xp, a):
    """``a`` in row-major order where the namespace can say so (NumPy, CuPy)."""
    fn = getattr(xp, "ascontiguousarray", None)
    return fn(a) if fn is not None else a


def _mahalanobis(xp, centred_t, means_c, model, augmented=None):
    """Squared Mahalanobis distances ``(K, n)`` of pivot-centred rows under a
    'full' or 'tied' model.

    ``centred_t`` is ``(x - c)^T`` (D, n); ``means_c`` is ``mu - c`` (K, D).
    When the caller has it, ``augmented`` ('full') is ``centred_t`` with a
    last row of ones (D + 1, n), so the means' shift rides in the GEMM.
    """
    k, d = means_c.shape
    pc = model.precisions_cholesky
    kind = model.covariance_type
    if kind == "full":
        # One GEMM against all components' factors stacked: row k*D + j of
        # ``stacked`` is column j of P_k, so y[k*D + j] = ((x - mu_k) P_k)_j.
        stacked = xp.reshape(xp.permute_dims(pc, (0, 2, 1)), (k * d, d))
        shift = xp.reshape(xp.matmul(means_c[:, None, :], pc), (k * d, 1))
        if augmented is not None:
            y = xp.matmul(xp.concat([stacked, -shift], axis=1), augmented)
        else:
            y = xp.matmul(stacked, centred_t)
            y -= shift
        y *= y
        return xp.sum(xp.reshape(y, (k, d, centred_t.shape[1])), axis=1)
    if kind == "tied":
        y = xp.matmul(xp.permute_dims(pc, (1, 0)), centred_t)  # (D, n)
        shift = xp.matmul(means_c, pc)  # (K, D)
        diff = y[None, :, :] - shift[:, :, None]
        return xp.sum(diff * diff, axis=1)
    raise ValueError(f"unknown covariance_type {kind!r}")


def _log_gauss_const(model, d):
    """``log pi_k + log det P_k - D/2 log(2 pi)`` per component, (K,)."""
    return model.log_det + model.log_weights - 0.5 * d * math.log(2 * math.pi)


def _diagonal_weighted_log_prob(xp, centred, squared, means_c, model):
    """:func:`weighted_log_prob` of a 'diag' or 'spherical' model from the
    row-major ``x - c`` and ``(x - c)^2`` (n, D) each.

    ``-1/2 sum_d p_kd (x_d - m_kd)^2 = sum_d p_kd m_kd x_d - 1/2 sum_d p_kd x_d^2
    - 1/2 sum_d p_kd m_kd^2`` (``m = mu - c``, ``p`` the precisions): one GEMM
    of the rows against every component's coefficients for the first term;
    for 'diag' a second for the squares; for 'spherical' (one ``p_k`` per
    component) a sum over the features and an outer product.  The GEMMs
    write (n, K), rows times a contiguous (D, K), which OpenBLAS's kernels
    run faster than the same product written (K, n); the sum is then laid
    out (K, n) in one copy, which also adds the constants (figures:
    benchmarks/README.md, "diagonal E-step GEMM layout").
    """
    d = means_c.shape[1]
    pc = model.precisions_cholesky
    prec = pc * pc
    if model.covariance_type == "diag":
        coef = _contiguous(xp, xp.permute_dims(means_c * prec, (1, 0)))  # (D, K)
        wlp_t = xp.matmul(centred, coef)
        wlp_t += xp.matmul(squared, _contiguous(xp, xp.permute_dims(-0.5 * prec, (1, 0))))
        quad = xp.sum(means_c * means_c * prec, axis=1)
    elif model.covariance_type == "spherical":
        wlp_t = xp.matmul(centred, _contiguous(xp, xp.permute_dims(means_c * prec[:, None], (1, 0))))
        wlp_t += xp.sum(squared, axis=1)[:, None] * (-0.5 * prec)[None, :]
        quad = xp.sum(means_c * means_c, axis=1) * prec
    else:
        raise ValueError(f"unknown covariance_type {model.covariance_type!r}")
    const = _log_gauss_const(model, d) - 0.5 * quad
    wlp = xp.empty((const.shape[0], centred.shape[0]), dtype=wlp_t.dtype, device=array_device(wlp_t))
    wlp[...] = xp.permute_dims(wlp_t, (1, 0))
    wlp += const[:, None]
    return wlp


def weighted_log_prob(xp, centred_t, means_c, model, augmented=None, rows=None, exact=(), raw=None):
    """``log pi_k + log N(x_i | mu_k, Sigma_k)`` for pivot-centred rows: a
    (K, n) array.  'full' and 'tied' take the rows transposed, ``centred_t``
    (D, n), and ``augmented`` as in :func:`_mahalanobis`; 'diag' and
    'spherical' take ``rows``, ``(x - c, (x - c)^2)`` row-major (n, D) each.
    The components ``exact`` (host ints, from :func:`_cancelling_components`)
    are evaluated from the raw rows ``raw`` (n, D) instead."""
    d = means_c.shape[1]
    if model.covariance_type in ("diag", "spherical"):
        wlp = _diagonal_weighted_log_prob(xp, rows[0], rows[1], means_c, model)
    else:
        wlp = _mahalanobis(xp, centred_t, means_c, model, augmented)
        wlp *= -0.5
        wlp += _log_gauss_const(model, d)[:, None]
    if len(exact):
        const = _log_gauss_const(model, d)
        for j in exact:
            wlp[j, :] = const[j] - 0.5 * _mahalanobis_about_mean(xp, raw, model, j)
    return wlp


def _mahalanobis_about_mean(xp, raw, model, j):
    """Squared Mahalanobis distances (n,) of the raw rows ``raw`` (n, D) from
    component ``j``'s mean, ``x - mu_j`` taken first: each term keeps a
    relative error of a few ``eps`` however far the rows and the mean lie
    from the pivot or from 0."""
    pc = model.precisions_cholesky
    dev = raw - model.means[j, :]
    kind = model.covariance_type
    if kind in ("full", "tied"):
        dev = xp.matmul(dev, pc[j, ...] if kind == "full" else pc)
    dev *= dev
    if kind == "diag":  # a sum of positive terms: one product with the precisions
        return xp.matmul(dev, pc[j, :] * pc[j, :])
    if kind == "spherical":
        return xp.sum(dev, axis=1) * (pc[j] * pc[j])
    return xp.sum(dev, axis=1)


def _cancelling_log_densities(root, const, limit, expanded):
    """Host bools: whether a log-density ``const - r^2 / 2`` evaluated about
    a pivot ``c`` at Mahalanobis distance ``root`` from the component's mean
    may, for some row, carry terms that ``x - mu`` taken first would not
    have, more than ``limit`` times larger than it (than 1, where it is
    smaller): the test :func:`_cancelling_entries` makes of a scatter, so
    that the log-densities left to the pivot keep a relative error of
    ``limit * eps`` times the rounding growth of their sums.  ``root`` and
    ``const`` are NumPy arrays that broadcast together.

    A row at distance ``r`` from the mean is at most ``r + root`` from
    ``c``.  ``expanded`` ('diag', 'spherical'): the log-density sums the
    squares and products of ``x - c`` and ``mu - c``, terms of up to
    ``(r + 2 root)^2``, ``4 root (r + root)`` more than the ``r^2`` of the
    form about the mean.  Else ('full', 'tied') it squares the difference
    of ``(x - c) P`` and ``(mu - c) P``, whose rounding (of order ``r + 2
    root``) the square weighs by ``2 r``: ``4 root r`` more.  That excess's
    ratio to ``max(1, |const - r^2 / 2|)`` is largest at one of four
    distances: 0, the two where ``|const - r^2 / 2|`` is 1, and the vertex
    of the quadratic beyond them."""
    with np.errstate(invalid="ignore", over="ignore"):
        near = np.sqrt(np.maximum(2 * const - 2, 0.0))
        far = np.sqrt(np.maximum(2 * const + 2, 0.0))
        distance = np.stack(np.broadcast_arrays(
            np.zeros_like(near), near, far, np.maximum(far, 4 * root / limit)))
        excess = 4 * root * (distance + root) if expanded else 4 * root * distance
        value = np.maximum(1.0, np.abs(const - distance * distance / 2))
        return np.any(excess > limit * value, axis=0)


def _cancelling_components(xp, model, pivot, limit):
    """Host ints: the components whose log-density about the pivot
    (:func:`weighted_log_prob`) may cancel (:func:`_cancelling_log_densities`,
    ``root`` the pivot's Mahalanobis distance ``||(mu_k - c) P_k||``).
    Ordinary components are far from it: 'diag' flags one of 16 features,
    its constant -18, from ``root^2 = 540`` (3 spreads from the pivot in
    each feature: 150), 'full' from ``1800 * 18``; one with a variance of
    ``reg_covar`` (its constant large and positive) a few spreads from the
    pivot."""
    means_c = model.means - pivot
    pc = model.precisions_cholesky
    kind = model.covariance_type
    if kind == "diag":
        whitened = means_c * pc
    elif kind == "spherical":
        whitened = means_c * pc[:, None]
    elif kind == "full":
        whitened = xp.matmul(means_c[:, None, :], pc)[:, 0, :]
    else:
        whitened = xp.matmul(means_c, pc)
    root = np.sqrt(to_numpy(xp.sum(whitened * whitened, axis=1)).astype(np.float64))
    const = to_numpy(_log_gauss_const(model, means_c.shape[1])).astype(np.float64)
    expanded = kind in ("diag", "spherical")
    return np.flatnonzero(_cancelling_log_densities(root, const, limit, expanded)).tolist()


def _exp_nonpositive(xp, shifted):
    """``exp(shifted)`` for ``shifted <= 0`` to within ``e^2 x tiny`` (tiny: the
    smallest normal number) absolute, with exact zeros where the result would
    be below that: relative to the largest term of every column, 1, no sum of
    responsibilities can see such a value.

    On float64, NumPy's ``exp`` takes a slow path for arguments below about
    -708 (subnormal results), which well-separated clusters produce for most
    entries: clamping first keeps every call on the fast path.  float32
    ``exp`` has no such path, and the clamp (a ``maximum`` pass, as costly as
    ``exp`` itself) would only add time: float32 entries are plain ``exp``,
    subnormal or zero below the smallest normal number (figures:
    benchmarks/README.md, "clamped exp")."""
    if shifted.dtype == xp.float32:
        return xp.exp(shifted)
    floor = math.log(float(xp.finfo(shifted.dtype).smallest_normal)) + 2.0
    if shifted.size and float(xp.min(shifted)) > floor:  # nothing that far: no clamp needed
        return xp.exp(shifted)
    bound = xp.asarray(floor, dtype=shifted.dtype, device=array_device(shifted))
    e = xp.exp(xp.maximum(shifted, bound))  # NaN stays NaN, for the finiteness check
    # The clamped entries hold exactly exp(bound): subtracting it makes them
    # exact zeros (cheaper than a masked select); any other entry moves by
    # less than exp(bound) ~ 1e-307 (float64), far below what a sum can see.
    e -= xp.exp(bound)
    return e


def _shifted_by_max(xp, a, axis=0):
    """``a`` minus its maxima along ``axis`` (kept as a length-1 axis; set to
    0 where not finite), in place: ``a`` is a temporary of the caller's."""
    top = xp.max(a, axis=axis, keepdims=True)
    top = xp.where(xp.isfinite(top), top, xp.zeros_like(top))
    a -= top
    return a, top


def log_normalize(xp, a):
    """Column-wise ``log(sum(exp(a)))`` of a (K, n) array, (n,), and ``a``
    minus it, (K, n): per row of the data, its log-likelihood and log
    responsibilities.  ``a`` is overwritten (a temporary of the caller's).

    The second is formed as ``(a - max) - log(sum(exp(a - max)))``: for rows
    far from every component ``|a|`` exceeds ``1 / eps`` and ``a - log_norm``
    would lose the ``log(sum)`` term to rounding (responsibilities summing to
    K instead of 1, in float32 already ~1e4 standard deviations away).
    """
    shifted, top = _shifted_by_max(xp, a)
    log_sum = xp.log(xp.sum(_exp_nonpositive(xp, shifted), axis=0, keepdims=True))
    return (log_sum + top)[0, :], shifted - log_sum


def _normalize(xp, a, axis=0):
    """Like :func:`log_normalize` (``a`` overwritten too) but the
    responsibilities themselves, ``exp(a - max) / sum(exp(a - max))``: one
    exponential per entry.  ``axis`` is the components' axis (the other
    axes are kept)."""
    shifted, top = _shifted_by_max(xp, a, axis)
    e = _exp_nonpositive(xp, shifted)
    total = xp.sum(e, axis=axis, keepdims=True)
    e /= total
    return xp.squeeze(xp.log(total) + top, axis=axis), e


def _row_slices(n_rows, n_components, n_features, kind="full", itemsize=4):
    # Widest temporary per row: (K * D) for 'full' and 'tied', whose
    # per-component terms have D entries; max(K, D) otherwise.  'diag' and
    # 'spherical' slices hold SLICE_ELEMENTS float32 values' bytes whatever
    # the dtype (about a core's L2 cache): float64 slices of half the rows,
    # whose temporaries then stay in cache as float32 ones do (figures:
    # benchmarks/README.md, "slice size").
    if kind in ("full", "tied"):
        width, budget = n_components * n_features, SLICE_ELEMENTS
    else:
        width, budget = max(n_components, n_features), SLICE_ELEMENTS * 4 // max(itemsize, 4)
    step = max(64, budget // max(width, 1))
    return [(start, min(start + step, n_rows)) for start in range(0, n_rows, step)] or [(0, 0)]


# Rows (evenly spaced) whose mean is a block's pivot.
PIVOT_SAMPLE = 1024


def _pivot(xp, X):
    """The point a block is centred on before any product: the mean of
    :data:`PIVOT_SAMPLE` evenly spaced rows.  Any point among the data keeps
    the second moments free of cancellation; a sample's mean is as good as
    the block's and saves a whole pass over the block."""
    n = X.shape[0]
    if n == 0:
        return xp.zeros((X.shape[1],), dtype=X.dtype)
    return xp.mean(X[:: max(1, n // PIVOT_SAMPLE), :], axis=0)


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
            f"Input X contains NaN or infinity: {n_bad} row(s) with non-finite values among rows "
            f"{row_offset} to {row_offset + X.shape[0] - 1} (first at row {first}). Remove or impute them first "
            "(or, for NaN, fit with missing='marginalize': NaN entries are then missing features)."
        )
    raise ValueError(
        "The log-likelihood overflowed on finite input: the data's values are too large "
        "for the dtype. Rescale the input (e.g. standardise the features)."
    )


def weighted_values(xp, values, weights):
    """``w_i * values_i``, 0 where ``w_i`` is 0 whatever the value (-inf, a
    far row's log-likelihood, included): a row of weight 0 counts for
    nothing.  ``weights`` broadcast against ``values``."""
    w = xp.asarray(weights, dtype=values.dtype)
    return xp.where(w > 0, w * values, xp.zeros_like(values))


def _mask_rows(xp, X, skip_nonfinite):
    """Rows to use and X with skipped rows zeroed (so they cannot poison sums)."""
    if not skip_nonfinite:
        return None, X
    keep = _finite_rows(xp, X)
    return keep, xp.where(keep[:, None], X, xp.zeros_like(X))


def with_noise(xp, wlp, noise):
    """``wlp`` (K, n) with the noise component's row below it, (K + 1, n):
    ``noise`` a scalar (the same log-density for every row) or (n,); ``wlp``
    itself without a noise component (``noise`` None)."""
    if noise is None:
        return wlp
    row = xp.zeros((1, wlp.shape[1]), dtype=wlp.dtype, device=array_device(wlp))
    row += noise
    return xp.concat([wlp, row], axis=0)


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
    log_resp : (n, K) log r_ik; (n, K + 1) with a noise component
        (``model.noise_log_density``), its column last
    """
    xp = get_namespace(X)
    model = model.to(xp, X.dtype)
    keep, Xz = _mask_rows(xp, X, skip_nonfinite)
    pivot = _pivot(xp, Xz)
    exact = _cancelling_components(xp, model, pivot, _cancellation_limit(xp, X.dtype))
    if model.covariance_type in ("diag", "spherical"):
        centred = Xz - pivot
        wlp = weighted_log_prob(xp, None, model.means - pivot, model, rows=(centred, centred * centred),
                                exact=exact, raw=Xz)
    else:
        centred_t = _contiguous(xp, xp.permute_dims(Xz - pivot, (1, 0)))
        wlp = weighted_log_prob(xp, centred_t, model.means - pivot, model, exact=exact, raw=Xz)
    log_norm, log_resp = log_normalize(xp, with_noise(xp, wlp, model.noise_log_density))
    log_resp = xp.permute_dims(log_resp, (1, 0))
    if keep is not None:
        nan = xp.asarray(float("nan"), dtype=X.dtype)
        log_norm = xp.where(keep, log_norm, nan)
        log_resp = xp.where(keep[:, None], log_resp, nan)
    return log_norm, log_resp


# --------------------------------------------------------------------------
# Sufficient statistics
# --------------------------------------------------------------------------


def _second_moment_about_pivot(xp, centred, centred_t, resp, kind):
    """Raw second moment of pivot-centred rows (no cancellation issue: rows are
    centred near the data) for 'full' (K, D, D) and 'tied' (D, D); diag and
    spherical take theirs from ``(x - c)^2`` in :class:`_DiagonalSums`.
    ``centred`` is (n, D), ``centred_t`` its transpose (D, n), ``resp`` (K, n)."""
    if kind == "full":
        # One GEMM for all components: (K*D, n) @ (n, D) -> (K, D, D); used
        # when K <= (D + 1) / 2, else the shared pair products (_uses_pairs).
        d, n = centred_t.shape
        k = resp.shape[0]
        weighted = xp.reshape(resp[:, None, :] * centred_t[None, :, :], (k * d, n))
        return xp.reshape(xp.matmul(weighted, centred), (k, d, d))
    # tied: (D, D), each row weighted by its total responsibility (1, or 0
    # for a skipped row)
    return xp.matmul(centred_t * xp.sum(resp, axis=0)[None, :], centred)


def _pair_indices(xp, d, device):
    """Row indices ``(I, J)`` of the D (D + 1) / 2 pairs ``i <= j`` and, (D * D,),
    the pair of every entry of a D x D matrix (to expand a symmetric one)."""
    rows, cols = np.triu_indices(d)
    pair_of = np.zeros((d, d), dtype=np.int64)
    pair_of[rows, cols] = pair_of[cols, rows] = np.arange(rows.size)
    conv = lambda a: xp.asarray(a, dtype=xp.int64, device=device)  # noqa: E731
    return conv(rows), conv(cols), conv(pair_of.reshape(-1))


def _uses_pairs(kind, k, d):
    """Whether the 'full' second moment goes through the products of the
    D (D + 1) / 2 feature pairs, computed once per slice and shared by all
    components, (K, n) @ (n, pairs), rather than the per-component weighted
    rows, (K * D, n) @ (n, D): cheaper when pairs < K * D, i.e. K > (D + 1) / 2
    (measured on one thread: 1.5x at D=8, K=8; 3.5x for 8 stacked such
    mixtures; 0.33x at D=64, K=16, which keeps the weighted rows)."""
    return kind == "full" and d * (d + 1) // 2 < k * d


def _safe(xp, nk):
    return xp.where(nk > 0, nk, xp.ones_like(nk))


def _cancellation_limit(xp, dtype):
    """Largest ratio of a pivot moment to the centred scatter it yields that
    the pivot formula may keep: ``eps ** -0.3`` (120 in float32, 5e4 in
    float64), so that the scatter keeps a relative error of ``eps ** 0.7``
    (1e-5 in float32, 1e-11 in float64) times the rounding growth of the sums."""
    return float(xp.finfo(dtype).eps) ** -0.3


def _moment_diagonal(xp, part, kind, d, pairs):
    """The diagonal of a slice's pivot moment ('full', 'tied'): (K, D), or
    (D,) for 'tied'."""
    if pairs is not None:
        return xp.take(part, pairs[2][:: d + 1], axis=1)
    if kind == "full":
        return xp.reshape(part, (part.shape[0], d * d))[:, :: d + 1]
    return xp.reshape(part, (d * d,))[:: d + 1]


def _cancelling_entries(xp, nk, sums, second, limit):
    """(K, D) bool: the entries whose centred scatter ``second - sums^2 / nk``
    is smaller than ``1 / limit`` of the pivot moment ``second``, so that the
    subtraction would lose more than ``limit * eps`` of it.  Written
    ``second nk (limit - 1) / limit < sums^2`` (4 array operations): false
    where ``nk = 0`` (then ``sums = 0``) and for NaN (non-finite input is
    left to the finiteness checks); an overflowing ``sums^2`` flags (the
    safe side)."""
    weight = nk * ((limit - 1) / limit)
    return second * weight[:, None] < sums * sums


def _cancelling(xp, nk, sums, second, limit, kind):
    """Components (K,) bool with some feature whose pivot moment would cancel
    (:func:`_cancelling_entries`).  For 'tied', whose moment is shared, every
    component at once (a scalar)."""
    if kind == "tied":
        centred = second - xp.sum(sums * sums / _safe(xp, nk)[:, None], axis=0)
        return xp.any(centred * limit < second)
    return xp.any(_cancelling_entries(xp, nk, sums, second, limit), axis=1)


def _without(xp, chosen, nk, sums, part, kind):
    """A slice's pivot sums with the ``chosen`` components' terms zeroed
    ('tied', whose moment is shared: all of them)."""
    if kind == "tied":
        return xp.zeros_like(nk), xp.zeros_like(sums), xp.zeros_like(part)
    kept = ~chosen
    nk = xp.where(kept, nk, xp.zeros_like(nk))
    sums = xp.where(kept[:, None], sums, xp.zeros_like(sums))
    mask = kept[:, None, None] if part.ndim == 3 else kept[:, None]
    return nk, sums, xp.where(mask, part, xp.zeros_like(part))


# A component whose responsibilities are nonzero on more than this fraction
# of a slice's rows is summed over all of them about its own pivot; the
# others share one pass over the slice when their rows are more than this
# fraction of it, else their rows are gathered.
DENSE_FRACTION = 0.5

# 'diag'/'spherical' (_DiagonalSums): a component with F flagged features is
# summed over all n rows of a slice, those columns only, while
# F * n * COLUMN_COST <= m * D, m its rows with nonzero responsibility: a
# column gathered and summed costs about twice a row, so the rule weighs the
# two layouts by the entries each reads, where a fixed share of the features
# would misjudge sparse components (figures: benchmarks/README.md, "column
# cost"); else over its m rows, every feature.
COLUMN_COST = 2
# Up to this many such pairs, each column is read in place (a strided view);
# more, all at once (a gather and a transposed copy, then whole-array passes).
FEW_PAIRS = 4


def _sums_about_own_pivots(xp, rows, resp, chosen, pivots, kind):
    """Sums of the ``chosen`` components (host bools, K) over one slice about
    their own pivots ``p_k`` (K, D), near their weighted means: ``n_k``,
    ``s_k = sum r (x - p_k)`` (K, D) and ``sum r (x - p_k)(x - p_k)^T``
    ((K, D, D) 'full', summed over k (D, D) 'tied'); zeros for the others.
    'diag' and 'spherical' sum per feature instead (:class:`_DiagonalSums`).

    ``rows`` (n, D) are the raw rows, not pivot-centred, so ``x - p_k`` is
    exact for the rows near ``p_k``.  Each (row, component) pair of nonzero
    responsibility is summed once, in one of three ways:

    * a component with responsibility on most rows: over the whole slice;
    * the others, when their rows are most of the slice (well-separated
      clusters): in one pass, each row centred on the pivot of its first
      component (more than half its weight), the sums matrix products as on
      the pivot path;
    * the pairs left (rows shared by components, or all the pairs when they
      are few): gathered, one segment per component.
    """
    k, d = pivots.shape
    n = rows.shape[0]
    dtype = rows.dtype
    device = array_device(rows)
    used = resp > 0
    counts = to_numpy(xp.count_nonzero(used, axis=1))
    dense = [j for j in range(k) if chosen[j] and counts[j] > DENSE_FRACTION * n]
    sparse = [j for j in range(k) if chosen[j] and 0 < counts[j] <= DENSE_FRACTION * n]
    nk = [xp.zeros((), dtype=dtype, device=device)] * k
    sums = [xp.zeros((d,), dtype=dtype, device=device)] * k
    second = [xp.zeros((d, d), dtype=dtype, device=device)] * k
    shared = xp.zeros((d, d), dtype=dtype, device=device)  # 'tied': summed over k

    def add(j, weights, dev):
        nonlocal shared
        nk[j] = nk[j] + xp.sum(weights)
        sums[j] = sums[j] + xp.matmul(weights, dev)
        if kind == "full":
            second[j] = second[j] + xp.matmul(xp.permute_dims(dev * weights[:, None], (1, 0)), dev)
        else:
            shared = shared + xp.matmul(xp.permute_dims(dev * weights[:, None], (1, 0)), dev)

    for j in dense:
        add(j, resp[j, :], rows - pivots[j, :])
    if sparse:
        index = xp.asarray(sparse, dtype=xp.int64, device=device)
        own = xp.take(pivots, index, axis=0)
        r = resp if len(sparse) == k else xp.take(resp, index, axis=0)  # (S, n)
        r_used = used if len(sparse) == k else xp.take(used, index, axis=0)
        if sum(int(counts[j]) for j in sparse) > DENSE_FRACTION * n:
            first, part_nk, part_sums, part_second = _sums_on_main_components(xp, rows, r, own, kind)
            if kind == "tied":
                shared = shared + part_second
            for i, j in enumerate(sparse):
                nk[j], sums[j] = nk[j] + part_nk[i], sums[j] + part_sums[i, :]
                if kind != "tied":
                    second[j] = second[j] + part_second[i, ...]
            left = r_used & ~first
        else:
            left = r_used
        counts_left = to_numpy(xp.count_nonzero(left, axis=1))
        if counts_left.any():
            comp, row = xp.nonzero(left)  # component-major: one segment each
            weights = xp.take(xp.reshape(r, (len(sparse) * n,)), comp * n + row)
            dev = xp.take(rows, row, axis=0) - xp.take(own, comp, axis=0)
            stop = 0
            for i, j in enumerate(sparse):
                begin, stop = stop, stop + int(counts_left[i])
                if begin < stop:
                    add(j, weights[begin:stop], dev[begin:stop, :])
    return xp.stack(nk), xp.stack(sums), shared if kind == "tied" else xp.stack(second)


def _sums_on_main_components(xp, rows, resp, pivots, kind):
    """One pass over a slice (raw rows (n, D)) of components (responsibilities
    (S, n), pivots (S, D)) whose rows are most of it: each row about the
    pivot of its main component, the one with more than half its weight (at
    most one has), the sums matrix products as on the pivot path.  Returns
    which entries those are (S, n) bools, and their ``n_k`` (S,),
    ``sum r (x - p_k)`` (S, D) and moment ((S, D, D) 'full', (D, D) 'tied')."""
    s, d = pivots.shape
    dtype, device = rows.dtype, array_device(rows)
    first = 2 * resp > xp.sum(resp, axis=0)[None, :]
    one_hot = xp.astype(first, dtype)
    main = one_hot * resp
    label = xp.astype(xp.matmul(xp.arange(s, dtype=dtype, device=device), one_hot), xp.int64)
    dev = rows - xp.take(pivots, label, axis=0)  # (n, D)
    part_sums = xp.matmul(main, dev)
    dev_t = _contiguous(xp, xp.permute_dims(dev, (1, 0)))
    if kind == "full" and _uses_pairs(kind, s, d):
        pairs = _pair_indices(xp, d, device)
        products = xp.take(dev_t, pairs[0], axis=0) * xp.take(dev_t, pairs[1], axis=0)
        second = xp.matmul(main, xp.permute_dims(products, (1, 0)))  # (S, pairs)
        second = xp.reshape(xp.take(second, pairs[2], axis=1), (s, d, d))
    else:
        second = _second_moment_about_pivot(xp, dev, dev_t, main, kind)
    return first, xp.sum(main, axis=1), part_sums, second


def _centred_about_own_pivots(xp, kind, nk, sums, second, pivots, pivot):
    """:class:`Stats` (means relative to the block pivot ``c``) from the sums
    of :func:`_sums_about_own_pivots` accumulated over a block: the
    corrected two-pass form ``S = sum r (x - p)(x - p)^T - s s^T / n_k``,
    whose subtraction loses only ``eps (|m_k - p_k| / sigma_k)^2``."""
    safe = _safe(xp, nk)
    if kind == "full":
        scatter = second - sums[:, :, None] * sums[:, None, :] / safe[:, None, None]
    else:
        scatter = second - xp.matmul(xp.permute_dims(sums / safe[:, None], (1, 0)), sums)
    means_c = (pivots - pivot) + sums / safe[:, None]
    means_c = xp.where(nk[:, None] > 0, means_c, xp.zeros_like(means_c))
    zero = xp.zeros((), dtype=nk.dtype)
    return Stats(kind, zero, zero, nk, means_c, scatter)


def _expand(xp, a, rows, k):
    """``a`` (len(rows), ...) as (k, ...): row ``i`` at ``rows[i]``, zeros elsewhere."""
    position = np.full(k, len(rows), dtype=np.int64)
    position[rows] = np.arange(len(rows))
    padded = xp.concat([a, xp.zeros((1,) + tuple(a.shape[1:]), dtype=a.dtype, device=array_device(a))], axis=0)
    return xp.take(padded, xp.asarray(position, device=array_device(a)), axis=0)


def _offset_ratios(xp, model, pivot, limit):
    """Per component (host floats, K), the largest ``(mu_kd - c_d)^2 /
    Sigma_kdd`` over the features (the ``kappa - 1`` of the model's means
    about the pivot), exact where it may exceed ``limit``, else possibly a
    bound: ``Sigma_dd >= 1 / Lambda_dd`` for a positive definite precision
    ``Lambda = P P^T``, whose diagonal is the squared norm of the rows of P
    (no inverse); only the components whose bound passes ``limit`` have
    their ``Sigma_dd`` computed, the squared norms of the columns of
    ``P^-1``.  'tied': the largest over the components, for each."""
    precision_chol = model.precisions_cholesky
    offset = model.means - pivot
    squared = offset * offset
    ratios = to_numpy(xp.max(squared * xp.sum(precision_chol * precision_chol, axis=-1), axis=-1))
    tied = model.covariance_type == "tied"
    if tied:
        ratios = np.full(model.means.shape[0], ratios.max())
    over = np.flatnonzero(ratios > limit)
    if over.size:
        index = None if tied else _indices(xp, over, array_device(squared))
        inverse = xp.linalg.inv(precision_chol if tied else xp.take(precision_chol, index, axis=0))
        variance = xp.sum(inverse * inverse, axis=-2)
        rows = squared if tied else xp.take(squared, index, axis=0)
        exact = to_numpy(xp.max(rows / variance, axis=-1))
        if tied:
            return [float(exact.max())] * model.means.shape[0]
        ratios[over] = exact
    return [float(v) for v in ratios]


class _Slice(NamedTuple):
    """One slice of a block's rows, in the layouts that the E-step and the
    accumulators read (:func:`_centred_slice`).

    Attributes
    ----------
    rows : (n, D) the raw rows (skipped ones zeroed)
    centred : (n, D) ``x - c``, ``c`` the block's pivot (for 'full' and
        'tied' a view of ``centred_t``)
    centred_t : (D, n) its transpose ('full', 'tied'; else None)
    squared : (n, D) ``(x - c)^2`` ('diag', 'spherical'; else None)
    augmented : (D + 1, n) ``[x - c, 1]^T`` ('full'; else None), whose first
        D rows are ``centred_t``
    """

    rows: object
    centred: object
    centred_t: object
    squared: object
    augmented: object


class _Accumulator(abc.ABC):
    """Sufficient statistics of one block, summed slice by slice.

    One class per strategy (:class:`_DiagonalSums`, :class:`_FullSums`,
    :class:`_PivotSums`), chosen by :func:`_accumulator` from the covariance
    type and the shapes; each sums about the block's pivot ``c`` (given when
    it is made) while the pivot formula keeps its precision, and moves a
    component, or one feature of it, to a pivot of its own where it would
    not.
    """

    @abc.abstractmethod
    def add(self, part, resp):
        """Add one slice: ``part`` (:class:`_Slice`) and its responsibilities
        (K, n), zero on skipped rows and times the rows' weights."""

    @abc.abstractmethod
    def total(self):
        """Sum of every first-order sum: a NaN/inf in the rows shows here
        (the finiteness check of rows that no E-step has seen)."""

    @abc.abstractmethod
    def stats(self, n_samples, log_likelihood):
        """:class:`Stats` of the block (absolute means)."""


class _OwnPivotSums:
    """Sums of the components that a block sums about pivots of their own
    (:func:`_sums_about_own_pivots`), accumulated over its slices.

    A component is chosen from the start when the model puts it far from the
    block's pivot (its own pivot is then the model's mean), or at the first
    slice whose pivot moments would cancel (its pivot is then its weighted
    mean in that slice); it stays chosen for the rest of the block.  A
    model's mean is checked on the first slice with rows of the component:
    if the sums about it would cancel too (the component has moved far from
    it), that slice is summed again about the slice's weighted mean, which
    becomes the pivot."""

    def __init__(self, xp, k, d, dtype, device, limit, kind):
        self.xp, self.kind, self.limit = xp, kind, limit
        self.chosen = [False] * k
        self.unchecked = [False] * k
        self.pivots = xp.zeros((k, d), dtype=dtype, device=device)
        self.sums = None  # [n_k, s_k, second]

    def choose(self, fresh, pivots, unchecked=None):
        """Choose the components ``fresh`` (host bools) with these pivots
        (K, D), to be checked where ``unchecked`` (host bools) says so."""
        xp = self.xp
        mask = xp.asarray(fresh, device=array_device(pivots))[:, None]
        self.pivots = xp.where(mask, pivots, self.pivots)
        self.chosen = [a or b for a, b in zip(self.chosen, fresh)]
        unchecked = unchecked if unchecked is not None else [False] * len(fresh)
        self.unchecked = [u or (f and c) for u, f, c in zip(self.unchecked, fresh, unchecked)]

    def add(self, rows, resp):
        """Add one slice (raw rows (n, D), responsibilities (K, n))."""
        xp = self.xp
        parts = _sums_about_own_pivots(xp, rows, resp, self.chosen, self.pivots, self.kind)
        if any(self.unchecked):
            nk, sums, second = parts
            counted = to_numpy(nk > 0)
            diagonal = xp.linalg.diagonal(second)
            bad = [False] * len(self.chosen)
            if self.kind == "tied":
                if any(u and c for u, c in zip(self.unchecked, counted)):
                    bad = [bool(xp.any(_cancelling(xp, nk, sums, diagonal, self.limit, "tied")))] * len(bad)
            else:
                cancel = to_numpy(_cancelling(xp, nk, sums, diagonal, self.limit, self.kind))
                bad = [bool(u and c) for u, c in zip(self.unchecked, cancel)]
            if any(bad):
                # Only components without sums so far (about the old pivot) move.
                moved = [b and bool(c) and u for b, c, u in zip(bad, counted, self.unchecked)]
                self.choose(moved, self.pivots + sums / _safe(xp, nk)[:, None])
                parts = _sums_about_own_pivots(xp, rows, resp, self.chosen, self.pivots, self.kind)
            self.unchecked = [u and not bool(c) for u, c in zip(self.unchecked, counted)]
        self.sums = list(parts) if self.sums is None else [a + b for a, b in zip(self.sums, parts)]

    def stats(self, pivot):
        """:class:`Stats` of the chosen components, means relative to ``pivot``."""
        return _centred_about_own_pivots(self.xp, self.kind, *self.sums, self.pivots, pivot)

    def means(self):
        """Absolute means of the chosen components: their pivots plus the shift."""
        nk, sums, _ = self.sums
        return self.pivots + sums / _safe(self.xp, nk)[:, None]


class _PivotSums(_Accumulator):
    """Sums of a 'tied' block, or of a 'full' one on the shared pair products
    (``K > (D + 1) / 2``, :func:`_uses_pairs`), accumulated over its slices.

    A component is summed about the block's pivot ``c`` while the running
    sums' pivot moments keep their centred part (ratio below ``limit``,
    :func:`_cancellation_limit`), and from the first slice where they would
    not (or from the start, when the model puts it far from ``c``) about a
    pivot of its own (:class:`_OwnPivotSums`); 'tied', whose moment is
    shared, moves all its components at once.  The two parts are merged in
    pivot coordinates with the pairwise update, as blocks are.
    """

    def __init__(self, xp, kind, k, d, dtype, device, pivot, limit):
        self.xp, self.kind, self.k, self.d = xp, kind, k, d
        self.device, self.pivot, self.limit = device, pivot, limit
        self.pairs = _pair_indices(xp, d, device) if kind == "full" else None
        self.nk = xp.zeros((k,), dtype=dtype)
        self.sums = xp.zeros((k, d), dtype=dtype)
        self.moment = None  # (K, pairs) 'full', (D, D) 'tied'
        self.own = _OwnPivotSums(xp, k, d, dtype, device, limit, kind)

    def start_far(self, ratios, means):
        """Sum the components the model puts far from the pivot (``ratios``,
        :func:`_offset_ratios`) about the model's means."""
        if any(v > self.limit for v in ratios):
            far = [v > self.limit for v in ratios]
            self.own.choose(far, means, unchecked=far)

    def add(self, part, resp):
        if all(self.own.chosen):  # no pivot sums left to do
            self.own.add(part.rows, resp)
            return
        # Pivot sums of the components not on pivots of their own only, when
        # those are fewer than half (else all of them: a copy of the
        # responsibilities costs more than the matrix products' extra rows).
        fast = [j for j in range(self.k) if not self.own.chosen[j]]
        if 2 * len(fast) > self.k:
            fast = list(range(self.k))
        sums, cancelling = self._about_pivot(part, resp, fast)
        if any(self.own.chosen) or cancelling.any():
            sums = self._about_own(part, resp, fast, sums, cancelling)
        part_nk, part_sum, moment = sums
        self.nk = self.nk + part_nk
        self.sums = self.sums + part_sum
        self.moment = moment if self.moment is None else self.moment + moment

    def _about_pivot(self, part, resp, fast):
        """The slice's pivot sums ``n_k``, ``sum r (x - c)`` and moment of the
        components ``fast`` (zeros for the others) and which components'
        running sums would cancel (host bools, K; one for 'tied')."""
        xp, k, d, kind, pairs = self.xp, self.k, self.d, self.kind, self.pairs
        fast_index = None if len(fast) == k else _indices(xp, fast, self.device)
        rf = resp if fast_index is None else xp.take(resp, fast_index, axis=0)
        part_nk = xp.sum(rf, axis=1)
        part_sum = xp.matmul(rf, part.centred)
        if pairs is not None:
            products = xp.take(part.centred_t, pairs[0], axis=0) * xp.take(part.centred_t, pairs[1], axis=0)
            moment = xp.matmul(rf, xp.permute_dims(products, (1, 0)))  # (K, pairs)
        else:
            moment = _second_moment_about_pivot(xp, part.centred, part.centred_t, rf, kind)
        # Checked on the running sums (see _FullSums.add).
        total_nk, total_sum, diagonal = part_nk, part_sum, _moment_diagonal(xp, moment, kind, d, pairs)
        if self.moment is not None:
            so_far = (self.nk, self.sums, _moment_diagonal(xp, self.moment, kind, d, pairs))
            if fast_index is not None:
                so_far = tuple(xp.take(a, fast_index, axis=0) for a in so_far)
            total_nk, total_sum, diagonal = (a + b for a, b in zip((total_nk, total_sum, diagonal), so_far))
        cancelling = to_numpy(_cancelling(xp, total_nk, total_sum, diagonal, self.limit, kind))
        if len(fast) < k:  # back to all K components, zeros for the others
            flagged = set(np.asarray(fast)[cancelling].tolist())
            cancelling = np.array([j in flagged for j in range(k)])
            part_nk, part_sum, moment = (_expand(xp, a, fast, k) for a in (part_nk, part_sum, moment))
        return (part_nk, part_sum, moment), cancelling

    def _about_own(self, part, resp, fast, sums, cancelling):
        """Move the components ``cancelling`` to pivots of their own (their
        weighted means in the slice), add the slice's sums about those, and
        return the pivot sums ``sums`` without their terms."""
        xp = self.xp
        part_nk, part_sum, moment = sums
        own = self.own
        counted = [bool(c) for c in to_numpy(part_nk > 0)]
        if self.kind == "tied":  # one shared moment: every component at once
            fresh = [bool(cancelling) and not c for c in own.chosen]
        else:
            fresh = [bool(c) and not own.chosen[j] and counted[j] for j, c in enumerate(cancelling)]
        if any(fresh):
            # A component without rows in this slice gets its pivot at the
            # first slice with some (see _OwnPivotSums.add).
            own.choose(fresh, part_sum / _safe(xp, part_nk)[:, None] + self.pivot,
                       unchecked=[not c for c in counted])
        own.add(part.rows, resp)
        if any(own.chosen[j] for j in fast):  # their pivot sums were formed
            chosen = xp.asarray(own.chosen, device=self.device)
            return _without(xp, chosen, part_nk, part_sum, moment, self.kind)
        return sums

    def total(self):
        xp = self.xp
        if self.own.sums is None:
            return xp.sum(self.sums)
        return xp.sum(self.sums) + xp.sum(self.own.sums[1])

    def stats(self, n_samples, log_likelihood):
        xp, k, d, pivot = self.xp, self.k, self.d, self.pivot
        nk, moment = self.nk, self.moment
        if moment is None:  # every slice summed about the components' own pivots
            moment = xp.zeros((k, d, d) if self.kind == "full" else (d, d), dtype=nk.dtype, device=self.device)
        elif self.pairs is not None:
            moment = xp.reshape(xp.take(moment, self.pairs[2], axis=1), (k, d, d))
        stats = _centred_about_pivot(xp, self.kind, n_samples, log_likelihood, nk, self.sums, moment)
        if self.own.sums is None:
            return stats._replace(means=xp.where(nk[:, None] > 0, stats.means + pivot, xp.zeros_like(stats.means)))
        # Merged in pivot coordinates, where the means' difference is exact for a
        # component with terms of both kinds (it is then near the pivot); the
        # mean of one summed about its own pivot only is that pivot plus a shift.
        stats = merge_statistics(stats, self.own.stats(pivot))
        means = xp.where((nk > 0)[:, None], stats.means + pivot, self.own.means())
        means = xp.where(stats.nk[:, None] > 0, means, xp.zeros_like(means))
        return stats._replace(means=means)


def _centred_about_pivot(xp, kind, n_samples, log_likelihood, nk, sums, moment):
    """:class:`Stats` (means relative to the block pivot ``c``) of 'full' or
    'tied' sums about ``c``: ``n_k``, ``sum r (x - c)`` (K, D) and the
    moment ((K, D, D) or (D, D)), by the pivot formula ``S = M - n_k m m^T``."""
    means_c = sums / _safe(xp, nk)[:, None]
    if kind == "full":
        scatter = moment - nk[:, None, None] * (means_c[:, :, None] * means_c[:, None, :])
    else:
        weighted = nk[:, None] * means_c
        scatter = moment - xp.matmul(xp.permute_dims(weighted, (1, 0)), means_c)
    means_c = xp.where(nk[:, None] > 0, means_c, xp.zeros_like(means_c))
    return Stats(kind, n_samples, log_likelihood, nk, means_c, scatter)


class _FullSums(_Accumulator):
    """Sums of a 'full' block on the weighted-rows path (``K <= (D + 1) / 2``,
    :func:`_uses_pairs`), accumulated over its slices.

    One matrix product per slice, ``(G * D, n) @ (n, D)``, the weighted rows
    of each component against ``x - c`` (the transposed ``augmented`` rows
    of the E-step), gives every component's moment at once.  A component is
    in one of three states:

    * *on the pivot*: weighted rows ``r (x - c)``, the pivot formula, while
      its slices' pivot moments keep their centred part (ratio below
      ``limit``, :func:`_cancellation_limit`);
    * *shifted*: weighted rows ``r (x - p_k)``, ``p_k`` its weighted mean in
      the slice where its pivot moment would cancel (or the model's mean,
      when the model puts it far from ``c``).  The product then holds
      ``s_k = sum r (x - p_k)`` and ``M_k = sum r (x - p_k)(x - c)^T``, and
      ``sum r (x - p_k)(x - p_k)^T = M_k - s_k (p_k - c)^T`` keeps a rounding
      error of ``eps sqrt(Q_p Q_c)`` (``Q`` the diagonal second moments about
      ``p_k`` and ``c``): the pivot formula's ``eps Q_c`` brought down to its
      square root, at the cost of one elementwise pass over its rows.  While
      ``Q_p Q_c <= limit^2 S^2`` (``S`` the centred diagonal) the pivot
      formula's bound, ``eps * limit`` of ``S``, holds for components up to
      ``limit^2`` (1.4e4 float32, 2.4e9 float64) squared standard deviations
      out.  This is checked on the slice where the component is shifted
      (the rows of one block come from one model: the ratio does not drift
      within it);
    * *exact*, beyond that bound: summed over its own rows about ``p_k``
      (:class:`_OwnPivotSums`).

    A component's sums of each state are kept apart (those of the pivot
    frozen when it leaves it) and merged in pivot coordinates with the
    pairwise update, as blocks are.
    """

    def __init__(self, xp, k, d, dtype, device, pivot, limit):
        self.xp, self.limit, self.device, self.dtype, self.pivot = xp, limit, device, dtype, pivot
        self.k, self.d = k, d
        self.state = np.zeros(k, dtype=np.int8)  # 0 on the pivot, 1 shifted, 2 exact
        self.checking = np.zeros(k, dtype=bool)  # shifted, its bound not checked yet
        self.model_pivot = np.zeros(k, dtype=bool)  # its pivot the model's mean, not yet seen
        self.pivots = xp.zeros((k, d), dtype=dtype, device=device)
        self.n = xp.zeros((k,), dtype=dtype, device=device)
        self.sums = (xp.zeros((k, d), dtype=dtype, device=device), xp.zeros((k, d, d), dtype=dtype, device=device))
        self.frozen = None  # (n, sums) on the pivot of the components that left it
        self.exact = _OwnPivotSums(xp, k, d, dtype, device, limit, "full")

    def _index(self, values):
        return _indices(self.xp, values, self.device)

    def _mask(self, values):
        return self.xp.asarray(np.asarray(values, dtype=bool), device=self.device)

    def start_far(self, ratios, means):
        """Shift the components the model puts far from the pivot (``ratios``,
        :func:`_offset_ratios`) to the model's means, or make them exact
        beyond what shifting can take."""
        far = np.asarray(ratios) > self.limit
        beyond = np.asarray(ratios) > self.limit * self.limit
        if far.any():
            self._leave_pivot(far)
            self.pivots = self.xp.where(self._mask(far)[:, None], means, self.pivots)
            self.state[far & ~beyond] = 1
            self.checking |= far & ~beyond
            self.model_pivot |= far
        if beyond.any():
            self.state[beyond] = 2
            self.exact.choose(list(beyond), means, unchecked=list(beyond))

    def _leave_pivot(self, leaving):
        """Freeze the pivot sums of the components ``leaving`` (host bools)."""
        xp = self.xp
        mask = self._mask(leaving)
        if self.frozen is None:
            self.frozen = (xp.zeros_like(self.n), tuple(xp.zeros_like(a) for a in self.sums))
        self.frozen = (xp.where(mask, self.n, self.frozen[0]), _pick(xp, mask, self.sums, self.frozen[1]))
        self.n = xp.where(mask, xp.zeros_like(self.n), self.n)
        self.sums = _pick(xp, mask, tuple(xp.zeros_like(a) for a in self.sums), self.sums)

    def _product(self, resp, centred_t, comps):
        """First-order sums (J, D) and moments (J, D, D) of the components
        ``comps`` (responsibilities ``resp`` (J, n)) in their states."""
        xp = self.xp
        d, n = centred_t.shape
        centred = xp.permute_dims(centred_t, (1, 0))
        weighted = resp[:, None, :] * centred_t[None, :, :]
        first = xp.matmul(resp, centred)
        shifted = [i for i, j in enumerate(comps) if self.state[j] == 1]
        if shifted:
            # r (x - p) = r (x - c) - r (p - c): a rounding of r |x - c| either way
            offsets = self.pivots - self.pivot
            for i in shifted:
                weighted[i, ...] -= offsets[comps[i], :, None] * resp[i, None, :]
                first[i, :] = xp.sum(weighted[i, ...], axis=1)
        moment = xp.matmul(xp.reshape(weighted, (len(comps) * d, n)), centred)
        return first, xp.reshape(moment, (len(comps), d, d))

    def add(self, part, resp):
        xp = self.xp
        k, d = self.k, self.d
        comps = [j for j in range(k) if self.state[j] < 2]
        centred_t = part.augmented[:d, :]
        if comps:
            r = resp if len(comps) == k else xp.take(resp, self._index(comps), axis=0)
            nk = xp.sum(r, axis=1)
            product = self._product(r, centred_t, comps)
            if len(comps) < k:
                nk, product = _expand(xp, nk, comps, k), tuple(_expand(xp, a, comps, k) for a in product)
            total_n, total = self.n + nk, tuple(a + b for a, b in zip(self.sums, product))
            on_pivot = self.state == 0
            if on_pivot.any():
                # Checked on the running sums: their rounding errors add up, and
                # it is the block's scatter that must keep them small.
                diagonal = _moment_diagonal(xp, total[1], "full", d, None)
                fresh = to_numpy(_cancelling(xp, total_n, total[0], diagonal, self.limit, "full")) & on_pivot
                if fresh.any():
                    self._shift(fresh, total_n, total)
                    product, total = self._redo(product, resp, centred_t, fresh), None
            if self.checking.any():
                nk, product = self._check(nk, product, resp, centred_t)
                total = None
            self.n = self.n + nk if total is None else total_n
            self.sums = tuple(a + b for a, b in zip(self.sums, product)) if total is None else total
        if (self.state == 2).any():
            self.exact.add(part.rows, resp)

    def _shift(self, fresh, nk, sums):
        """Shift the components ``fresh`` to their weighted means (``nk``,
        ``sums`` on the pivot, the running sums)."""
        xp = self.xp
        means = sums[0] / _safe(xp, nk)[:, None] + self.pivot
        self._leave_pivot(fresh)
        self.pivots = xp.where(self._mask(fresh)[:, None], means, self.pivots)
        self.state[fresh] = 1
        self.checking |= fresh

    def _redo(self, product, resp, centred_t, which):
        """``product`` with the rows of the components ``which`` formed again."""
        xp = self.xp
        comps = [int(j) for j in np.flatnonzero(which)]
        again = self._product(xp.take(resp, self._index(comps), axis=0), centred_t, comps)
        return _pick(xp, self._mask(which), tuple(_expand(xp, a, comps, self.k) for a in again), product)

    def _bound(self, nk, product):
        """Per component (host bools): whether the shifted sums exceed the
        bound, and whether its pivot is far from its rows."""
        xp = self.xp
        second = self._about_own(product)
        q_p = xp.linalg.diagonal(second)
        safe = _safe(xp, nk)[:, None]
        sums = product[0]
        spread = q_p - sums * sums / safe
        shift = (self.pivots - self.pivot) + sums / safe
        q_c = spread + nk[:, None] * shift * shift
        limit2 = self.limit * self.limit
        beyond = to_numpy(xp.any(q_p * q_c > limit2 * spread * spread, axis=1) & (nk > 0))
        far_pivot = to_numpy(xp.any(q_p > 2 * spread, axis=1))
        return beyond, far_pivot

    def _about_own(self, product):
        """``sum r (x - p)(x - p)^T = M - s (p - c)^T``, symmetrised, (K, D, D)."""
        xp = self.xp
        second = product[1] - product[0][:, :, None] * (self.pivots - self.pivot)[:, None, :]
        return (second + xp.permute_dims(second, (0, 2, 1))) / 2

    def _check(self, nk, product, resp, centred_t):
        """The bound of the shifted components not yet checked, on their first
        slice with rows: a model's mean far from the rows moves to the
        slice's weighted mean (formed again, checked again); beyond the bound,
        the component becomes exact, from this slice on."""
        counted = to_numpy(nk > 0)
        todo = self.checking & counted
        if not todo.any():
            return nk, product
        beyond, far_pivot = self._bound(nk, product)
        moving = todo & beyond & self.model_pivot & far_pivot
        if moving.any():
            self.pivots = self.xp.where(self._mask(moving)[:, None],
                                        product[0] / _safe(self.xp, nk)[:, None] + self.pivots, self.pivots)
            product = self._redo(product, resp, centred_t, moving)
            beyond = np.where(moving, self._bound(nk, product)[0], beyond)
        self.checking &= ~todo
        self.model_pivot &= ~todo
        exact = todo & beyond
        if exact.any():
            xp = self.xp
            self.state[exact] = 2
            self.exact.choose(list(exact), self.pivots)
            mask = self._mask(exact)
            nk = xp.where(mask, xp.zeros_like(nk), nk)
            product = _pick(xp, mask, tuple(xp.zeros_like(a) for a in product), product)
        return nk, product

    def total(self):
        xp = self.xp
        total = xp.sum(self.sums[0])
        if self.exact.sums is not None:
            total = total + xp.sum(self.exact.sums[1])
        return total

    def stats(self, n_samples, log_likelihood):
        xp, pivot = self.xp, self.pivot
        n, sums = self.n, self.sums
        if self.frozen is not None:
            mask = self._mask(self.state == 0)
            n, sums = xp.where(mask, n, self.frozen[0]), _pick(xp, mask, sums, self.frozen[1])
        stats = _centred_about_pivot(xp, "full", n_samples, log_likelihood, n, sums[0], sums[1])
        if (self.state == 0).all():
            return stats._replace(means=xp.where(n[:, None] > 0, stats.means + pivot, xp.zeros_like(stats.means)))
        # Pivot coordinates, as merged blocks are (see _PivotSums.stats).
        others = []
        if (self.state == 1).any():
            mask = self._mask(self.state == 1)
            n_s = xp.where(mask, self.n, xp.zeros_like(self.n))
            shifted = _pick(xp, mask, self.sums, tuple(xp.zeros_like(a) for a in self.sums))
            others.append(_centred_about_own_pivots(xp, "full", n_s, shifted[0], self._about_own(shifted),
                                                    self.pivots, pivot))
        if self.exact.sums is not None:
            others.append(self.exact.stats(pivot))
        other = others[0] if len(others) == 1 else merge_statistics(*others)
        merged = merge_statistics(stats, other)
        # A component with no sums on the pivot: its own pivot plus the shift.
        own_means = other.means + pivot
        if (self.state == 1).any():
            own_means = xp.where(self._mask(self.state == 1)[:, None],
                                 self.pivots + self.sums[0] / _safe(xp, self.n)[:, None], own_means)
        if self.exact.sums is not None:
            own_means = xp.where(self._mask(self.state == 2)[:, None], self.exact.means(), own_means)
        means = xp.where((n > 0)[:, None], merged.means + pivot, own_means)
        means = xp.where(merged.nk[:, None] > 0, means, xp.zeros_like(means))
        return merged._replace(means=means)


class _DiagonalSums(_Accumulator):
    """Per-feature sums of a 'diag' or 'spherical' block (whose scatter is
    the diagonal, (K, D)), accumulated over its slices.

    Each entry (component ``k``, feature ``d``) is summed about the block
    pivot ``c_d`` while its slices' pivot moments keep its centred part
    (ratio below ``limit``, :func:`_cancellation_limit`), from the matrix
    products every slice makes anyway.  From the first slice where they would
    cancel, that entry alone is summed about a pivot of its own ``P_kd`` (its
    weighted mean in that slice), ``x_d - P_kd`` taken from the raw rows:
    a component with one feature of constant pixels (its variance reg_covar
    alone, digits) costs a column, not the whole component.

    The flagged entries are kept as a compact list of pairs (cached index
    arrays, compact sums), so a slice adds them with a few array calls
    whatever their number: a component with few flagged features is summed
    over all the slice's rows, its columns only (all such pairs in one
    vectorised pass); one with many (well-separated clusters) over its own
    rows, gathered, when they are at most :data:`DENSE_FRACTION` of the
    slice.  The pivot sums of an entry are frozen when it is flagged (the
    later slices' pivot sums are formed by the matrix products anyway and
    left out at the end), and the two parts are merged in pivot coordinates
    with the pairwise update (:func:`merge_statistics`), as the blocks are.
    """

    def __init__(self, xp, kind, k, d, dtype, device, pivot, limit):
        self.xp, self.limit, self.device, self.dtype = xp, limit, device, dtype
        self.kind, self.pivot = kind, pivot
        zeros = lambda: xp.zeros((k, d), dtype=dtype, device=device)  # noqa: E731
        self.nk = xp.zeros((k,), dtype=dtype, device=device)
        self.about_pivot = None  # [sum r (x - c), sum r (x - c)^2], (K, D) each, every slice
        self.frozen = [zeros(), zeros(), zeros()]  # [n, sums, second] about c of flagged entries, before their flag
        self.about_own = [zeros(), zeros(), zeros()]  # [n, sum r (x - P), sum r (x - P)^2], pairs flushed
        self.own = np.zeros((k, d), dtype=bool)  # host copy of which entries have P
        self.pivots = zeros()
        self.pairs = None  # the flagged pairs, compact: see _rebuild
        self.many = np.zeros(k, dtype=bool)  # components summed over every feature (COLUMN_COST)
        self.unsummed = xp.zeros((), dtype=dtype, device=device)  # sum of x - c over slices without pivot sums

    def add(self, part, resp):
        xp = self.xp
        rows, centred, squared = part.rows, part.centred, part.squared
        nk = xp.sum(resp, axis=1)
        if self.own.all():  # no pivot sums left to form (well-separated clusters)
            self.nk = self.nk + nk
            self.unsummed = self.unsummed + xp.sum(centred)  # for total(): NaN rows of any weight
            self._add_own(rows, resp, nk)
            return
        sums = xp.matmul(resp, centred)
        second = xp.matmul(resp, squared)
        total_nk = self.nk + nk
        total = [sums, second] if self.about_pivot is None else [a + b for a, b in zip(self.about_pivot, (sums, second))]
        if not self.own.all():
            # Checked on the running sums: their rounding errors add up, and it
            # is the block's scatter that must keep them small.
            fresh = to_numpy(_cancelling_entries(xp, total_nk, total[0], total[1], self.limit)) & ~self.own
            if fresh.any():
                shift = total[0] / _safe(xp, total_nk)[:, None]
                # A component whose flagged columns cost more than its rows
                # (COLUMN_COST) has its rows summed over every feature
                # (_many_features): all of them leave the pivot (then a block
                # of well-separated clusters forms no pivot sums at all once
                # each has been seen).
                rows_used = to_numpy(xp.count_nonzero(resp > 0, axis=1))
                n_rows, d = rows.shape
                columns = (self.own | fresh).sum(axis=1)
                self.many |= columns * n_rows * COLUMN_COST > rows_used * d
                fresh |= self.many[:, None] & ~self.own
                mask = xp.asarray(fresh, device=self.device)
                before = [xp.broadcast_to(self.nk[:, None], sums.shape)] + (
                    self.about_pivot or [xp.zeros_like(sums)] * 2)
                self.frozen = [xp.where(mask, a, f) for a, f in zip(before, self.frozen)]
                self.pivots = xp.where(mask, self.pivot + shift, self.pivots)
                self.own = self.own | fresh
                self._rebuild()
        self.nk = total_nk
        self.about_pivot = total
        if self.pairs is not None:
            self._add_own(rows, resp, nk)

    def _rebuild(self):
        """Flush the compact sums into ``about_own`` and list the flagged pairs
        anew: those of components with few flagged features first (summed
        over all rows together), then the others component by component."""
        xp = self.xp
        self._flush()
        k, d = self.own.shape
        comp, feature = np.nonzero(self.own & ~self.many[:, None])
        many = [int(j) for j in np.flatnonzero(self.many)]
        # The others: every feature summed (about P_kd where flagged, the
        # pivot row's other entries elsewhere), then the flagged ones picked
        # from the (M * D,) results.
        chosen = [np.flatnonzero(self.own[j]) for j in many]
        flat = np.concatenate([comp * d + feature] + [j * d + f for j, f in zip(many, chosen)])
        zeros = xp.zeros((flat.size,), dtype=self.dtype, device=self.device)
        self.pairs = {
            "flat": flat, "n_few": comp.size, "many": many, "few": list(zip(comp.tolist(), feature.tolist())),
            "comp": self._index(comp), "feature": self._index(feature),
            "pivots": xp.take(xp.reshape(self.pivots, (k * d,)), self._index(comp * d + feature)),
            "pair_comp": self._index(flat // d),
            "many_pivots": xp.take(self.pivots, self._index(many), axis=0),
            "many_pick": self._index(np.concatenate([i * d + f for i, f in enumerate(chosen)] + [[]])),
            "sums": [zeros, zeros, zeros],  # n, sum r (x - P), sum r (x - P)^2 of each pair
        }

    def _flush(self):
        """Add the compact sums of the flagged pairs to ``about_own``."""
        if self.pairs is None:
            return
        xp = self.xp
        k, d = self.own.shape
        position = self._index(_positions(self.pairs["flat"], k * d))
        for i, compact in enumerate(self.pairs["sums"]):
            spread = xp.take(xp.concat([compact, xp.zeros((1,), dtype=self.dtype, device=self.device)]), position)
            self.about_own[i] = self.about_own[i] + xp.reshape(spread, (k, d))
        self.pairs = None

    def _add_own(self, rows, resp, nk):
        """The sums of the entries with pivots of their own over one slice
        (raw rows (n, D), responsibilities (K, n), their sums ``nk`` (K,))."""
        xp = self.xp
        pairs = self.pairs
        found = [[], []]
        if 0 < pairs["n_few"] <= FEW_PAIRS:  # each pair's column read straight from the rows
            columns = [[], []]
            for i, (j, f) in enumerate(pairs["few"]):
                dev = rows[:, f] - pairs["pivots"][i]
                columns[0].append(xp.vecdot(resp[j, :], dev))
                dev *= dev
                columns[1].append(xp.vecdot(resp[j, :], dev))
            for part, values in zip(found, columns):
                part.append(xp.stack(values))
        elif pairs["n_few"]:  # every row, the flagged columns only, all pairs at once
            # (P, n), contiguous: elementwise passes along n (along P, a few
            # pairs, numpy's inner loops run too short).  In place where it
            # can be: a fresh (P, n) temporary is a fresh mapping of pages
            # (glibc's default mmap threshold), whose page faults cost more
            # than the arithmetic on such small blocks.
            dev = _contiguous(xp, xp.permute_dims(xp.take(rows, pairs["feature"], axis=1), (1, 0)))
            dev -= pairs["pivots"][:, None]
            weights = xp.take(resp, pairs["comp"], axis=0)  # (P, n)
            found[0].append(xp.vecdot(weights, dev))
            weights *= dev
            found[1].append(xp.vecdot(weights, dev))
        if pairs["many"]:
            sums = self._many_features(rows, resp)
            for part, values in zip(found, sums):
                part.append(xp.take(xp.reshape(values, (-1,)), pairs["many_pick"]))
        parts = [xp.take(nk, pairs["pair_comp"])] + [a[0] if len(a) == 1 else xp.concat(a) for a in found]
        pairs["sums"] = [a + b for a, b in zip(pairs["sums"], parts)]

    def _many_features(self, rows, resp):
        """``sum r (x - P_k)`` and ``sum r (x - P_k)^2``, (M, D) each, of the
        components with many flagged features (rows (n, D), responsibilities
        (K, n)).  When their rows are most of the slice (well-separated
        clusters), in one pass: each row about the pivot of its main
        component (more than half its weight), the sums matrix products, then
        the rows they share gathered; else each one's rows gathered (all the
        slice's for one with most of them)."""
        xp = self.xp
        pairs = self.pairs
        n = rows.shape[0]
        many = pairs["many"]
        r = resp if len(many) == resp.shape[0] else xp.take(resp, self._index(many), axis=0)  # (M, n)
        used = r > 0
        counts = to_numpy(xp.count_nonzero(used, axis=1))
        sums = [[None] * len(many), [None] * len(many)]
        if counts.sum() > DENSE_FRACTION * n:
            first = 2 * r > xp.sum(resp, axis=0)[None, :]
            one_hot = xp.astype(first, r.dtype)
            main = one_hot * r
            label = xp.astype(xp.matmul(xp.arange(len(many), dtype=r.dtype, device=self.device), one_hot), xp.int64)
            negative = xp.take(pairs["many_pivots"], label, axis=0)  # (n, D), in place: see _add_own
            negative -= rows  # P - x
            first_order = -xp.matmul(main, negative)
            negative *= negative
            whole = [first_order, xp.matmul(main, negative)]
            used = used & ~first
            counts = to_numpy(xp.count_nonzero(used, axis=1))
            if not counts.any():
                return whole
            sums = [[a[i, :] for i in range(len(many))] for a in whole]
        for i in np.flatnonzero(counts):
            index = xp.nonzero(used[i, :])[0]
            if index.shape[0] > DENSE_FRACTION * n:
                weights, dev = xp.where(used[i, :], r[i, :], xp.zeros_like(r[i, :])), rows - pairs["many_pivots"][i, :]
            else:
                weights, dev = xp.take(r[i, :], index), xp.take(rows, index, axis=0)
                dev -= pairs["many_pivots"][i, :]
            first_order = xp.matmul(weights, dev)
            dev *= dev
            for part, value in zip(sums, (first_order, xp.matmul(weights, dev))):
                part[i] = value if part[i] is None else part[i] + value
        zero = xp.zeros((rows.shape[1],), dtype=rows.dtype, device=self.device)
        return [xp.stack([zero if a is None else a for a in part]) for part in sums]

    def _index(self, values):
        return _indices(self.xp, values, self.device)

    def total(self):
        return self.xp.sum(self.about_pivot[0]) + self.unsummed

    def stats(self, n_samples, log_likelihood):
        xp, pivot = self.xp, self.pivot
        nk = self.nk
        n_a = xp.broadcast_to(nk[:, None], self.pivots.shape)
        sums_a, second_a = self.about_pivot
        if self.own.any():
            self._flush()
            mask = xp.asarray(self.own, device=self.device)
            n_a, sums_a, second_a = (xp.where(mask, f, a) for f, a in zip(self.frozen, (n_a, sums_a, second_a)))
        means_a = sums_a / _safe(xp, n_a)
        scatter = second_a - sums_a * means_a
        if self.own.any():
            n_b, sums_b, second_b = self.about_own
            shift_b = sums_b / _safe(xp, n_b)
            means_b = (self.pivots - pivot) + shift_b
            n = n_a + n_b
            delta = means_b - means_a
            scatter = scatter + (second_b - sums_b * shift_b) + (n_a * n_b / _safe(xp, n)) * delta * delta
            means = xp.where(n_a > 0, means_a + (n_b / _safe(xp, n)) * delta + pivot, self.pivots + shift_b)
        else:
            means = means_a + pivot
        means = xp.where(nk[:, None] > 0, means, xp.zeros_like(means))
        return Stats(self.kind, n_samples, log_likelihood, nk, means, scatter)


def _indices(xp, values, device):
    """Host integers (a list or NumPy array) as an int64 index array of ``xp``."""
    return xp.asarray(np.asarray(values, dtype=np.int64), device=device)


def _pick(xp, mask, a, b):
    """Per component (``mask`` (K,) bools), the arrays of tuple ``a`` where
    set, of ``b`` elsewhere."""
    return tuple(xp.where(xp.reshape(mask, (-1,) + (1,) * (x.ndim - 1)), x, y) for x, y in zip(a, b))


def _positions(chosen, size):
    """(size,) positions of each of ``size`` entries among ``chosen`` (host
    ints, ascending), ``len(chosen)`` for the others: ``take`` from the
    values of the chosen padded with one zero spreads them to ``size``."""
    position = np.full(size, len(chosen), dtype=np.int64)
    position[chosen] = np.arange(len(chosen))
    return position


def _accumulator(xp, X, kind, k, pivot, limit, model=None):
    """The :class:`_Accumulator` of a block ``X`` (n, D) of ``kind`` with
    ``k`` components summed about ``pivot``: per feature for 'diag' and
    'spherical'; for 'full', one matrix product for all components while
    ``K <= (D + 1) / 2`` (:func:`_uses_pairs`), else the shared pair
    products, as for 'tied'.  With the ``model`` the responsibilities come
    from, the components it puts far from the pivot leave it from the start
    ('diag' and 'spherical' decide each entry from the running sums only)."""
    d, dtype, device = X.shape[1], X.dtype, array_device(X)
    if kind in ("diag", "spherical"):
        return _DiagonalSums(xp, kind, k, d, dtype, device, pivot, limit)
    if kind == "full" and not _uses_pairs(kind, k, d):
        accumulator = _FullSums(xp, k, d, dtype, device, pivot, limit)
    elif kind in ("full", "tied"):
        accumulator = _PivotSums(xp, kind, k, d, dtype, device, pivot, limit)
    else:
        raise ValueError(f"unknown covariance_type {kind!r}")
    if model is not None:
        accumulator.start_far(_offset_ratios(xp, model, pivot, limit), model.means)
    return accumulator


def _centred_slice(xp, rows, pivot, kind):
    """The :class:`_Slice` of ``rows`` (n, D) about ``pivot`` in the layout of ``kind``."""
    if kind == "full":
        # (x - c)^T with a row of ones, written transposed in one go.
        d = rows.shape[1]
        augmented = xp.empty((d + 1, rows.shape[0]), dtype=rows.dtype, device=array_device(rows))
        augmented[:d, :] = xp.permute_dims(rows, (1, 0)) - pivot[:, None]
        augmented[d, :] = 1
        centred_t = augmented[:d, :]
        return _Slice(rows, xp.permute_dims(centred_t, (1, 0)), centred_t, None, augmented)
    if kind == "tied":
        centred_t = _contiguous(xp, xp.permute_dims(rows - pivot, (1, 0)))  # (D, n)
        return _Slice(rows, xp.permute_dims(centred_t, (1, 0)), centred_t, None, None)
    # x - c and (x - c)^2 row-major, each contiguous, so that every
    # elementwise pass is flat (interleaving them in one (n, 2D) array makes
    # strided ones); no transposition.
    centred = rows - pivot
    return _Slice(rows, centred, None, centred * centred, None)


class _EStep:
    """The E-step of :func:`block_statistics`, slice by slice: the
    responsibilities under ``model`` and the sum of the rows'
    log-likelihoods (one per group of stacked mixtures, ``groups``), the
    rows skipped (``keep``) counting 0 and the others their weights; a
    non-finite sum is an error naming the rows of ``X``."""

    def __init__(self, xp, model, pivot, limit, groups, X, row_offset, keep, weights, labels=None):
        self.xp, self.model, self.groups = xp, model, groups
        self.X, self.row_offset, self.keep, self.weights = X, row_offset, keep, weights
        self.labels = labels
        self.means_c = model.means - pivot
        # Components whose log-density about the pivot would cancel are
        # evaluated from the raw rows.
        self.exact = _cancelling_components(xp, model, pivot, limit)

    def __call__(self, part, start, stop):
        """Responsibilities (K, n) of the rows ``start:stop`` (``part``, a
        :class:`_Slice`) and their log-likelihood summed: (), or (G,)."""
        xp, groups = self.xp, self.groups
        wlp = weighted_log_prob(xp, part.centred_t, self.means_c, self.model, part.augmented,
                                (part.centred, part.squared), self.exact, part.rows)
        # The noise's responsibility (a last row) takes its share of every
        # row; the statistics are the Gaussian components' (the noise's
        # total is n_samples - sum_k N_k).
        log_norm, r = normalize_labelled(
            xp, with_noise(xp, wlp, self.model.noise_log_density), groups,
            None if self.labels is None else self.labels[start:stop],
        )
        if self.model.noise_log_density is not None:
            r = r[: wlp.shape[0], :]
        if self.keep is not None:
            keep = self.keep[None, start:stop] if groups else self.keep[start:stop]
            log_norm = xp.where(keep, log_norm, xp.zeros_like(log_norm))
        log_likelihood = xp.sum(log_norm, axis=-1)
        check_finite(xp, log_likelihood, self.X[start:stop, :], self.row_offset + start)
        if self.weights is not None:  # after the check: a NaN row is refused whatever its weight
            w = self.weights[None, start:stop] if groups else self.weights[start:stop]
            log_likelihood = xp.sum(weighted_values(xp, log_norm, w), axis=-1)
        return r, log_likelihood


def normalize_labelled(xp, wlp, groups, labels=None):
    """:func:`_normalize` of ``wlp`` (K, n) (within each group of stacked
    mixtures, :func:`_normalize_groups`, when ``groups``; ``wlp`` is
    overwritten), the rows labelled by ``labels`` (n,) (-1: unlabelled; else
    the component, within each group) fixed: responsibility 1 for their
    component and 0 for the others, and as log-likelihood the log of their
    component's weighted density, ``log pi_y + log N(x | y)`` (the
    complete-data term of mclust's MclustSSC).  Returns ``(log_norm, r)``,
    (n,) or (G, n), and (K, n)."""
    if labels is not None:
        component = np.concatenate([np.arange(size) for size in groups]) if groups else np.arange(wlp.shape[0])
        labels = xp.asarray(labels, device=array_device(wlp))
        one_hot = xp.asarray(component, device=array_device(wlp))[:, None] == labels[None, :]
        picked = _group_sums(xp, xp.where(one_hot, wlp, xp.zeros_like(wlp)), groups)
    if groups is None:
        log_norm, r = _normalize(xp, wlp)
    else:
        log_norm, r = _normalize_groups(xp, wlp, groups)
    if labels is None:
        return log_norm, r
    labelled = labels >= 0
    r = xp.where(labelled[None, :], xp.astype(one_hot, r.dtype), r)
    log_norm = xp.where(labelled[None, :] if groups else labelled, picked, log_norm)
    return log_norm, r


def _group_sums(xp, a, groups):
    """Column sums of ``a`` (K, n): (n,), or (G, n) one per group of rows."""
    if not groups:
        return xp.sum(a, axis=0)
    sums, start = [], 0
    for size in groups:
        sums.append(xp.sum(a[start : start + size, :], axis=0))
        start += size
    return xp.stack(sums, axis=0)


def _given_responsibilities(xp, resp, resp_t, start, stop, dtype):
    """Rows ``start:stop`` of the given responsibilities, (K, n): from
    ``resp_t`` (K, n) where given, else from ``resp`` (n, K)."""
    if resp_t is not None:
        return xp.asarray(resp_t[:, start:stop], dtype=dtype)
    return _contiguous(xp, xp.permute_dims(xp.asarray(resp[start:stop, :], dtype=dtype), (1, 0)))


def _row_weights(xp, sample_weight, keep, X):
    """The rows' weights in ``X``'s dtype and device, 0 on skipped rows (None: all 1)."""
    if sample_weight is None:
        return None
    weights = xp.asarray(sample_weight, dtype=X.dtype, device=array_device(X))
    if keep is not None:
        weights = xp.where(keep, weights, xp.zeros_like(weights))
    return weights


def _rows_counted(xp, n, keep, weights, dtype):
    """``n_samples`` of a block of ``n`` rows: their total weight, or the rows kept."""
    if weights is not None:
        return xp.sum(weights)
    if keep is not None:
        return xp.sum(xp.astype(keep, dtype))
    return xp.asarray(float(n), dtype=dtype)


def block_statistics(
    X, model, *, row_offset=0, skip_nonfinite=False, resp=None, groups=None, resp_t=None, sample_weight=None,
    labels=None,
):
    """E-step and sufficient statistics of one block, fused.

    Parameters
    ----------
    X : (n, D) array
    model : Model
        Current parameters (any namespace; converted to X's namespace/dtype).
        With ``resp`` given, only ``model.covariance_type`` is used.  With
        a noise component (``model.noise_log_density``) the E-step
        normalises over K + 1 columns and the statistics hold the K
        Gaussian components' (the noise's total is ``n_samples - sum nk``).
    row_offset : int
        Global index of the block's first row (for error messages).
    skip_nonfinite : bool
        Leave out rows with NaN/inf instead of raising.
    resp : (n, K) array, optional
        Fixed responsibilities (initialisation); then no E-step is done and
        the log-likelihood is 0.
    resp_t : (K, n) array, optional
        The same given component-major (cheaper: no transposition).
    groups : tuple of int, optional
        ``model`` is several mixtures stacked (:func:`stack_models`) with
        these numbers of components: responsibilities are normalised within
        each group and ``log_likelihood`` is one sum per group, (G,).  The
        result splits with :func:`split_statistics`.
    sample_weight : (n,) array, optional
        Non-negative weight of each row: every sum counts a row with its
        weight (``n_samples`` is the total weight), as that many copies of
        the row would.  A NaN/inf row is an error whatever its weight.
    labels : (n,) int array, optional
        Partial labels (semi-supervised EM, mclust's MclustSSC): -1 for an
        unlabelled row, else the row's component (in each group), whose
        responsibility is then fixed to 1 and whose log-likelihood term is
        ``log pi_y + log N(x_i | y)`` (:func:`normalize_labelled`).  Used by
        the E-step only (not with ``resp``).

    Returns
    -------
    Stats
    """
    xp = get_namespace(X)
    kind = model.covariance_type
    n, d = X.shape
    if resp_t is not None:
        resp = xp.permute_dims(resp_t, (1, 0))
    if resp is None:
        model = model.to(xp, X.dtype)
    k = model.means.shape[0] if resp is None else resp.shape[1]
    keep, Xz = _mask_rows(xp, X, skip_nonfinite)
    pivot = _pivot(xp, Xz)
    weights = _row_weights(xp, sample_weight, keep, X)
    limit = _cancellation_limit(xp, X.dtype)
    e_step = None if resp is not None else _EStep(xp, model, pivot, limit, groups, X, row_offset, keep, weights, labels)
    accumulator = _accumulator(xp, X, kind, k, pivot, limit, model if resp is None else None)
    log_likelihood = xp.zeros((), dtype=X.dtype)
    for start, stop in _row_slices(n, k, d, kind, xp.finfo(X.dtype).bits // 8):
        part = _centred_slice(xp, Xz[start:stop, :], pivot, kind)
        if e_step is None:
            r = _given_responsibilities(xp, resp, resp_t, start, stop, X.dtype)
        else:
            r, part_ll = e_step(part, start, stop)
            log_likelihood = log_likelihood + part_ll
        if keep is not None:
            r = xp.where(keep[None, start:stop], r, xp.zeros_like(r))
        if weights is not None:
            r = r * weights[None, start:stop]
        accumulator.add(part, r)
    if resp is not None and keep is None:  # rows that no E-step has checked
        check_finite(xp, accumulator.total(), X, row_offset)
    return accumulator.stats(_rows_counted(xp, n, keep, weights, X.dtype), log_likelihood)


def _normalize_groups(xp, wlp, groups):
    """:func:`_normalize` within each group of rows of ``wlp`` (sum(groups), n):
    log-likelihoods (G, n) and responsibilities (sum(groups), n)."""
    n = wlp.shape[1]
    if len(set(groups)) == 1:  # equal groups: one call on a (G, K, n) view
        g, k = len(groups), groups[0]
        log_norm, e = _normalize(xp, xp.reshape(wlp, (g, k, n)), axis=1)
        return log_norm, xp.reshape(e, (g * k, n))
    norms, resps, start = [], [], 0
    for size in groups:
        log_norm, r = _normalize(xp, wlp[start : start + size, :])
        norms.append(log_norm)
        resps.append(r)
        start += size
    return xp.stack(norms, axis=0), xp.concat(resps, axis=0)


def stack_models(models):
    """Several mixtures of one covariance type (not 'tied', whose precision is
    shared by its components) as one :class:`Model` with all components, and
    the group sizes to pass to :func:`block_statistics` as ``groups``.

    Evaluating them together shares the pivot-centred block, the matrix
    products and the per-slice work; the results are those of separate calls.
    """
    kinds = {model.covariance_type for model in models}
    if any(model.noise_log_density is not None for model in models):
        raise ValueError("stack_models cannot stack mixtures with a noise component: evaluate them alone.")
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
