"""What the estimators are given, as the passes read it: Dask arrays (or
NumPy rows of :class:`~.passes.InMemoryRows`) made from arrays, Dask
DataFrames and DataArrays, sample weights with the row chunks of the data,
and the few reductions the estimators make over lazy per-row outputs.  The
estimators themselves never touch Dask."""

from __future__ import annotations

import math
import os
import sys

import numpy as np

import dask
import dask.array as da
from dask.utils import is_dataframe_like, is_series_like

from .passes import InMemoryRows
from .runtime import current_client

# Bytes of X per chunk when a NumPy array is wrapped into a Dask array.
TARGET_CHUNK_BYTES = 32 * 2**20


def is_lazy(X):
    """Whether ``X`` is a Dask collection (array, DataFrame, Dask-backed
    DataArray): its per-row outputs then stay lazy."""
    return dask.is_dask_collection(X)


def is_dask_array(X):
    """Whether ``X`` is a Dask array."""
    return isinstance(X, da.Array)


def computed(X):
    """``X`` computed if it is a Dask array, else as it is."""
    return X.compute() if isinstance(X, da.Array) else X


def as_dask_array(X, *, n_features_expected=None, chunk_rows=None, known_rows=True):
    """Validate ``X`` and return a 2-D float Dask array with one column chunk.

    NumPy (or array-like) input is wrapped with row chunks of about
    ``TARGET_CHUNK_BYTES``; integer and boolean data become float64, float16
    becomes float32; float32 and float64 are kept.  Row chunks of unknown
    size (a Dask DataFrame's partitions) are measured with one compute of
    their lengths when ``known_rows``; the per-row outputs leave them unknown.
    """
    if isinstance(X, da.Array):
        dX = X
    else:
        arr = X if hasattr(X, "__array_namespace__") and not isinstance(X, np.ndarray) else np.asarray(X)
        if isinstance(arr, np.ndarray) and arr.dtype.kind in "OUSV":
            try:
                arr = arr.astype(np.float64)
            except (TypeError, ValueError):
                raise ValueError(
                    f"X must hold numbers, but it has dtype {arr.dtype} that cannot be converted to float."
                ) from None
        dX = None
        if arr.ndim == 2 and arr.shape[0] > 0:
            rows = chunk_rows or default_chunk_rows(arr.shape[0], arr.shape[1], arr.dtype.itemsize)
            dX = da.from_array(arr, chunks=(rows, -1))
        X = arr
    shape = X.shape
    if len(shape) != 2:
        hint = " Use X.reshape(-1, 1) if your data has a single feature." if len(shape) == 1 else ""
        raise ValueError(
            f"Expected a 2-D array (n_samples, n_features), got a {len(shape)}-D array with shape {shape}.{hint}"
        )
    dtype = np.dtype(X.dtype)
    if dtype.kind == "c":
        raise ValueError(f"Complex data is not supported: X has dtype {dtype}.")
    if dtype.kind not in "biuf":
        raise ValueError(f"X must hold numbers, but it has dtype {dtype}.")
    if shape[0] == 0:
        raise ValueError(f"Found array with 0 sample(s) (shape={shape}) while a minimum of 1 is required.")
    if shape[1] == 0:
        raise ValueError(f"Found array with 0 feature(s) (shape={shape}) while a minimum of 1 is required.")
    if n_features_expected is not None and shape[1] != n_features_expected:
        raise ValueError(
            f"X has {shape[1]} features, but GaussianMixture is expecting {n_features_expected} "
            "features as input (the number it was fitted on)."
        )
    if known_rows and any(np.isnan(c) for c in dX.chunks[0]):
        dX = dX.compute_chunk_sizes()
    if dX.numblocks[1] != 1:
        dX = dX.rechunk({1: -1})
    if dtype.kind in "biu":
        dX = dX.astype(np.float64)
    elif dtype == np.float16:
        dX = dX.astype(np.float32)
    elif dtype.itemsize > 8:  # longdouble: what scikit-learn computes in
        dX = dX.astype(np.float64)
    return dX


def default_chunk_rows(n_rows, n_features, itemsize):
    """Rows per chunk of an (n_rows, n_features) array of ``itemsize`` bytes:
    about :data:`TARGET_CHUNK_BYTES`, and at least two chunks per worker
    thread (of the active client, else of this machine) where that leaves
    1024 rows or more a chunk."""
    by_bytes = max(1024, TARGET_CHUNK_BYTES // max(1, n_features * itemsize))
    client = current_client()
    if client is not None:
        workers = max(1, sum(client.nthreads().values()))
    else:
        workers = os.cpu_count() or 1
    by_parallelism = -(-n_rows // (2 * workers))
    return int(max(1, min(n_rows, by_bytes, max(by_parallelism, 1024))))


def is_array_api_array(X):
    """An array of another array-API library (CuPy, array_api_strict, ...):
    wrapped into a Dask array as it is, never converted to NumPy."""
    return hasattr(X, "__array_namespace__") and not isinstance(X, np.ndarray) and hasattr(X, "shape")


def unwrap_container(X, *, known_rows=True):
    """A Dask DataFrame or an xarray DataArray as what the rows are read
    from, without computing them, and the names of its features.

    Returns
    -------
    X
        A Dask DataFrame as its Dask array of values (the partitions' lengths
        computed when ``known_rows``: one compute returning one number per
        partition); a Dask-backed (or other array-API backed) DataArray as
        its ``data``; a NumPy-backed 2-D DataArray as a pandas DataFrame
        (``to_pandas``), so that scikit-learn reads its names; anything
        else as it is.
    names : pandas.DataFrame or None
        An empty frame with the container's columns (a DataArray's: the
        index of its second dimension), which scikit-learn's
        ``validate_data`` reads feature names from with its own rules
        (strings only); None where ``X`` itself carries them or has none.
    """
    xr = sys.modules.get("xarray")  # not imported: X is no DataArray
    if xr is not None and isinstance(X, xr.DataArray):
        if isinstance(X.data, np.ndarray):
            return (X.to_pandas() if X.ndim == 2 else X.values), None
        if X.ndim != 2:
            return X.data, None
        import pandas

        return X.data, pandas.DataFrame(columns=X.get_index(X.dims[1]))
    if dask.is_dask_collection(X) and (is_dataframe_like(X) or is_series_like(X)):
        import pandas

        names = pandas.DataFrame(columns=X.columns) if is_dataframe_like(X) else None
        return X.to_dask_array(lengths=True if known_rows else None), names
    return X, None


def check_sample_weight(sample_weight, rows):
    """``sample_weight`` checked against the rows it weights, and scaled by a
    power of two so that its mean positive weight is in [1, 2).

    A GaussianMixture fit does not depend on a constant scale of the
    weights, but its sums do: weights of 1e-13 meet the ``10 * eps`` every
    count gets, 1e-320 underflow and 1e307 overflow.  Every pass therefore
    runs on the scaled weights; the scale (exact) brings back what depends on
    the real weights: the Bayesian family's counts, the total weight
    reported and the information criteria.

    Returns
    -------
    weights : None, a float64 NumPy array (rows in this process,
        :class:`InMemoryRows`) or a 1-D Dask array with the row
        chunks of ``rows`` (a Dask array)
        The weights divided by ``weight_scale``; None when every weight is 1
        (the unweighted fit, its random draws included).
    weight_scale : float
        A power of two (1.0 without weights, or with weights whose mean
        positive weight is in [1, 2)).

    Raises a ValueError naming what is wrong: shape, NaN or infinity,
    negative values, or a zero total.  Dask weights are checked with one
    small compute over the weights alone (n values, not the data)."""
    if sample_weight is None:
        return None, 1.0
    n = rows.shape[0]
    in_process = isinstance(rows, InMemoryRows)
    if isinstance(sample_weight, da.Array) and not in_process:
        weights = sample_weight
        if weights.ndim != 1 or weights.shape[0] != n:
            raise ValueError(f"sample_weight has shape {weights.shape}, expected ({n},): one weight per sample.")
        if weights.chunks[0] != rows.chunks[0]:
            weights = weights.rechunk((rows.chunks[0],))
        weights = weights.astype(np.float64)
        top = da.frexp(weights.max())[1]
        finite, low, high, top, scaled_total, n_positive = dask.compute(
            da.isfinite(weights).all(), weights.min(), weights.max(), top, da.ldexp(weights, -top).sum(),
            da.count_nonzero(weights > 0),
        )
    else:
        if isinstance(sample_weight, da.Array):
            sample_weight = sample_weight.compute()
        weights = np.asarray(sample_weight, dtype=np.float64)
        if weights.ndim == 0:  # scikit-learn's rule: one number weights every sample alike
            weights = np.full(n, float(weights))
        if weights.shape != (n,):
            raise ValueError(f"sample_weight has shape {weights.shape}, expected ({n},): one weight per sample.")
        finite, low, high = bool(np.all(np.isfinite(weights))), weights.min(), weights.max()
        top = np.frexp(high)[1]
        scaled_total, n_positive = np.ldexp(weights, -top).sum(), np.count_nonzero(weights > 0)
    if not finite:
        raise ValueError("sample_weight contains NaN or infinity: every weight must be a finite number >= 0.")
    if low < 0:
        raise ValueError(f"sample_weight has negative values (the smallest is {float(low)!r}): weights must be >= 0.")
    if not high > 0:
        raise ValueError("sample_weight sums to zero: at least one sample needs a positive weight.")
    if low == high == 1:
        # Every weight 1 is no weight at all: the unweighted fit, its random
        # draws included (weighted draws race over all rows instead).
        return None, 1.0
    # The mean positive weight is scaled_total / n_positive * 2^top; the
    # weights are summed divided by 2^top (the largest in [1/2, 1)), so that
    # the sum can neither overflow nor lose subnormal weights.
    exponent = math.frexp(float(scaled_total) / int(n_positive))[1] - 1 + int(top)
    if exponent:
        weights = np.ldexp(weights, -exponent)  # exact (da.Array dispatches the ufunc)
    if in_process or isinstance(weights, da.Array):
        return weights, math.ldexp(1.0, exponent)
    return da.from_array(weights, chunks=(rows.chunks[0],)), math.ldexp(1.0, exponent)


def check_labels(y, rows, n_components):
    """Partial labels ``y`` checked against the rows they label: one per row,
    -1 for an unlabelled row, else its component, 0 to ``n_components - 1``.

    Returns
    -------
    labels : None, an int64 NumPy array (rows in this process,
        :class:`InMemoryRows`) or a 1-D Dask array with the row chunks of
        ``rows``
        None when no row is labelled (the unlabelled fit).
    counts : (n_components + 1, 2) float64 array
        Per value -1, 0, ..., n_components - 1: the number of rows with it
        and the sum of their indices (what a checkpoint records of them).

    Raises a ValueError naming ``y`` and what is wrong: shape, a type or
    value that is not an integer (NaN included), a value outside
    [-1, n_components).  Dask labels are checked with one small compute over
    the labels alone."""
    n = rows.shape[0]
    in_process = isinstance(rows, InMemoryRows)
    lazy = isinstance(y, da.Array) and not in_process
    if not lazy:
        y = np.asarray(y.compute() if isinstance(y, da.Array) else y)
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(
            f"y has shape {tuple(y.shape)}, expected ({n},): one label per sample (-1 for an unlabelled one)."
        )
    if y.dtype.kind not in "iuf":
        raise ValueError(
            f"y must hold integer labels (-1 for an unlabelled sample, else its component 0 to "
            f"{n_components - 1}), got dtype {y.dtype}."
        )
    backend = da if lazy else np
    if lazy and y.chunks[0] != rows.chunks[0]:
        y = y.rechunk((rows.chunks[0],))
    values = y.astype(np.float64)
    labels = backend.clip(backend.where(backend.isfinite(values), values, -1), -1, n_components).astype(np.int64)
    index = da.arange(n, chunks=(y.chunks[0],), dtype=np.float64) if lazy else np.arange(n, dtype=np.float64)
    checks = (
        backend.all(backend.isfinite(values)),
        backend.all(values == backend.floor(values)),
        backend.min(values),
        backend.max(values),
        backend.bincount(labels + 1, minlength=n_components + 2),
        backend.bincount(labels + 1, weights=index, minlength=n_components + 2),
    )
    finite, integral, low, high, counts, sums = dask.compute(*checks) if lazy else checks
    if not finite:
        raise ValueError("y contains NaN or infinity: label an unlabelled sample -1.")
    if not integral:
        raise ValueError(
            "y contains values that are not integers: a label is -1 (unlabelled) or a component index."
        )
    if low < -1 or high >= n_components:
        raise ValueError(
            f"y has values outside [-1, {n_components}) (the smallest is {int(low)}, the largest {int(high)}): "
            f"a label is -1 (unlabelled) or a component index from 0 to n_components - 1 = {n_components - 1}."
        )
    summary = np.stack([counts[:-1], sums[:-1]], axis=1).astype(np.float64)
    if not summary[1:, 0].any():
        return None, summary
    if lazy or in_process:
        return labels, summary
    return da.from_array(labels, chunks=(rows.chunks[0],)), summary


def unlabelled_weights(labels, sample_weight=None):
    """The weights of the rows that ``labels`` leave unlabelled (-1): each
    row's sample weight (1 without), 0 on a labelled row; chunked as
    ``labels`` (NumPy or Dask).  Returns them and whether any is positive
    (one small compute for Dask labels)."""
    backend = da if isinstance(labels, da.Array) else np
    weights = backend.where(labels < 0, 1.0 if sample_weight is None else sample_weight, 0.0)
    return weights, bool(backend.any(weights > 0))


def weight_total(sample_weight):
    """The sum of ``sample_weight`` (NumPy, array-like or Dask) as a float."""
    total = sample_weight.sum() if isinstance(sample_weight, da.Array) else np.sum(np.asarray(sample_weight, dtype=np.float64))
    return float(total.compute() if isinstance(total, da.Array) else total)


def weighted_mean(values, sample_weight=None, *, skip_nan=False):
    """The mean of the per-row ``values`` (n,) (NumPy, or Dask with one
    compute), weighted by ``sample_weight`` (checked by
    :func:`check_sample_weight`), and the number (total weight) of rows it
    averages.

    ``skip_nan``: rows whose value is NaN (every feature missing) count for
    nothing.  Without weights or ``skip_nan``, the plain mean and the number
    of rows.  Returns ``(mean, count)`` as floats, ``mean`` NaN where nothing
    counts (``count`` 0)."""
    lazy = isinstance(values, da.Array)
    if sample_weight is None and not skip_nan:
        return float(values.mean().compute() if lazy else values.mean()), float(values.shape[0])
    weights, weight_scale = 1.0, 1.0
    if sample_weight is not None:
        weights, weight_scale = check_sample_weight(
            sample_weight, values[:, None] if lazy else InMemoryRows(values[:, None], len(values))
        )
        weights = 1.0 if weights is None else weights
    if skip_nan:
        observed = ~(da.isnan(values) if lazy else np.isnan(values))
        values = (da if lazy else np).where(observed, values, 0.0)
        weights = observed * weights
    else:
        weights = weights * (da.ones_like(values) if lazy else np.ones_like(values))
    total, count = (values * weights).sum(), weights.sum()
    if lazy:
        total, count = dask.compute(total, count)
    if not count > 0:
        return math.nan, 0.0
    return float(total / count), float(count) * weight_scale


def subsample(X, labels, n_features, max_points, random_state):
    """At most ``max_points`` rows of ``X`` (and of ``labels``) drawn at
    random without replacement, in their order, as NumPy; one compute for
    Dask input (a Dask array, DataFrame or Dask-backed DataArray).

    Raises a ValueError if X is not (n_samples, ``n_features``) or
    ``labels`` not (n_samples,)."""
    X = _as_array(X)
    if X.ndim != 2 or X.shape[1] != n_features:
        raise ValueError(
            f"X must be (n_samples, {n_features}) like the data the model was fitted on; "
            f"got shape {X.shape}."
        )
    if isinstance(X, da.Array) and np.isnan(X.shape[0]):
        X = X.compute_chunk_sizes()
    n_samples = int(X.shape[0])
    if labels is not None:
        labels = labels if isinstance(labels, da.Array) else np.asarray(labels)
        if labels.shape != (n_samples,):
            raise ValueError(f"labels must be (n_samples,) = ({n_samples},) like X's rows; got shape {labels.shape}.")
    if n_samples > max_points:
        rng = np.random.default_rng(random_state)
        rows = np.sort(rng.choice(n_samples, size=max_points, replace=False))
        X = X[rows]
        labels = None if labels is None else labels[rows]
    X, labels = dask.compute(X, labels)
    return np.asarray(X), None if labels is None else np.asarray(labels)


def _as_array(X):
    if hasattr(X, "to_dask_array"):  # a Dask DataFrame: stays lazy
        return X.to_dask_array(lengths=True)
    data = getattr(X, "data", None)  # an xarray DataArray backed by Dask
    if isinstance(data, da.Array):
        return data
    return X if isinstance(X, da.Array) else np.asarray(X)
