"""Dims-aware fit and predict for xarray ``DataArray`` and ``Dataset``.

A labelled array is seen as samples along some dimensions (``sample_dims``,
e.g. ``("time", "y", "x")``) and features along one (``feature_dim``, e.g.
``"band"``).  The sample dimensions are collapsed into rows *block by block*
(:func:`dask.array.reshape_blockwise`), so a cube stored in chunks keeps its
chunks: nothing is rechunked except the feature dimension, which becomes one
chunk.  Outputs are unfolded the same way and come back with the sample
dimensions and their coordinates; they stay lazy for Dask-backed input.

Missing values are expected on this path (land/sea masks, cloud holes,
missing pixels): a sample with NaN or infinity in any feature is left out of
the fit, and its outputs are -1 (labels) or NaN (log-likelihood,
probabilities).  The number left out is in the model's
``n_samples_skipped_`` and logged at INFO level on the ``daskgmm`` logger.
With ``missing="marginalize"`` (or a model whose ``missing`` is
'marginalize') a sample keeps its observed features instead: NaN features
are marginalised (see :class:`daskgmm.GaussianMixture`), only samples with
every feature missing are left out, and infinity is an error.

Samples may be weighted (:func:`fit`'s ``sample_weight``): a DataArray over
some of the sample dimensions (a per-pixel weight map over ``(y, x)``, a
per-date weight over ``time``), or the name of a Dataset variable, aligned
with the data by coordinate and broadcast over the other sample dimensions.

Examples
--------
>>> import numpy as np, xarray as xr
>>> from daskgmm import GaussianMixture
>>> from daskgmm import xarray as dxr
>>> rng = np.random.default_rng(0)
>>> cube = xr.DataArray(
...     rng.normal(size=(4, 10, 12, 3)), dims=("time", "y", "x", "band"),
...     coords={"band": ["red", "nir", "swir"]},
... ).chunk({"time": 1})
>>> cube[:, :2] = np.nan  # a masked strip
>>> gmm = dxr.fit(GaussianMixture(2, random_state=0), cube, feature_dim="band")
>>> int(gmm.n_samples_skipped_)
96
>>> labels = dxr.predict(gmm, cube, feature_dim="band")
>>> labels.dims
('time', 'y', 'x')
>>> int(labels[0, 0, 0])
-1
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

import dask.array as da

from .bayesian_mixture import BayesianGaussianMixture
from .mixture import (
    GaussianMixture, _check_fitted, _fit_rows, _partial_fit_rows, _rows_output, as_dask_array, unchanged_on_error,
)

if TYPE_CHECKING:  # xarray is imported when first used
    import xarray as xr

logger = logging.getLogger("daskgmm")

#: Name of the dimension the probabilities gain.
COMPONENT_DIM = "component"
#: Feature dimension made from a Dataset's variables when none is named.
DATASET_FEATURE_DIM = "variable"
#: The label of a sample left out (a missing feature).
MISSING_LABEL = -1
#: Attributes of each output, by its name.  The missing label is named by
#: ``missing_label``, not CF's ``missing_value`` or ``_FillValue``, which
#: xarray would decode on reading a written file into NaN in float labels.
OUTPUT_ATTRS = {
    "label": {"long_name": "Gaussian mixture component", "missing_label": MISSING_LABEL},
    "probability": {"long_name": "probability of each Gaussian mixture component"},
    "log_likelihood": {"long_name": "log-likelihood of the sample under the Gaussian mixture"},
}


@dataclass
class _Layout:
    """How rows map back onto the sample dimensions."""

    sample_dims: tuple
    sample_shape: tuple
    sample_chunks: tuple | None  # None: NumPy-backed, rows in C order
    coords: object  # xarray Coordinates of the sample dimensions
    n_features: int


def _import_xarray():
    try:
        import xarray
    except ImportError as exc:  # pragma: no cover - xarray is a dependency
        raise ImportError("daskgmm.xarray needs xarray: pip install xarray") from exc
    return xarray


def as_feature_array(
    data: xr.DataArray | xr.Dataset, feature_dim: str | None = None, variables: str | Sequence[str] | None = None
) -> tuple[xr.DataArray, str]:
    """Return the data as one DataArray with a feature dimension.

    Parameters
    ----------
    data : xarray.DataArray or xarray.Dataset
        The labelled data: a DataArray with a feature dimension, or a
        Dataset whose variables are the features.
    feature_dim : str, optional
        For a DataArray, the dimension holding the features (required).  For
        a Dataset, the name of the new dimension its variables are stacked
        along (default ``"variable"``).
    variables : sequence of str, optional
        Dataset only: the variables to use as features, in this order
        (default: every data variable).

    Returns
    -------
    array : xarray.DataArray
        The data: a DataArray as it is, a Dataset's variables stacked along
        a new first dimension ``feature_dim`` labelled by their names.
    feature_dim : str
        The name of its feature dimension.

    Raises
    ------
    ValueError
        Data that is neither a DataArray nor a Dataset, a DataArray without
        the dimension ``feature_dim`` (or given ``variables``), a Dataset
        without the variables asked for, or a variable that already has a
        dimension named ``feature_dim``.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from daskgmm import xarray as dxr
    >>> ds = xr.Dataset({"red": (("y", "x"), np.zeros((3, 4))), "nir": (("y", "x"), np.ones((3, 4)))})
    >>> array, feature_dim = dxr.as_feature_array(ds)
    >>> array.dims, feature_dim, [str(name) for name in array["variable"].values]
    (('variable', 'y', 'x'), 'variable', ['red', 'nir'])
    """
    xr = _import_xarray()
    if isinstance(data, xr.Dataset):
        names = list(data.data_vars) if variables is None else [variables] if isinstance(variables, str) else list(variables)
        if not names:
            raise ValueError("The Dataset has no data variables to use as features.")
        missing = [name for name in names if name not in data.data_vars]
        if missing:
            raise ValueError(
                f"Variable(s) {missing} not in the Dataset; its data variables are {list(data.data_vars)}."
            )
        feature_dim = DATASET_FEATURE_DIM if feature_dim is None else feature_dim
        clash = [name for name in names if feature_dim in data[name].dims]
        if clash:
            raise ValueError(
                f"Variable(s) {clash} already have a dimension {feature_dim!r}; pick another feature_dim "
                "for the dimension the variables are stacked along, or select one variable."
            )
        return data[names].to_dataarray(dim=feature_dim), feature_dim
    if not isinstance(data, xr.DataArray):
        raise ValueError(f"Expected an xarray DataArray or Dataset, got {type(data).__name__}.")
    if variables is not None:
        raise ValueError("'variables' selects Dataset variables; it cannot be used with a DataArray.")
    if feature_dim is None:
        raise ValueError(
            f"feature_dim is required for a DataArray: name the dimension that holds the features "
            f"(one of {list(data.dims)})."
        )
    if feature_dim not in data.dims:
        raise ValueError(f"feature_dim {feature_dim!r} is not a dimension of the data; its dimensions are {list(data.dims)}.")
    return data, feature_dim


def _sample_dims(array, feature_dim, sample_dims):
    others = [dim for dim in array.dims if dim != feature_dim]
    if sample_dims is None:
        dims = tuple(others)
    else:
        dims = (sample_dims,) if isinstance(sample_dims, str) else tuple(sample_dims)
        unknown = [dim for dim in dims if dim not in array.dims]
        if unknown:
            raise ValueError(f"sample_dims {unknown} are not dimensions of the data; its dimensions are {list(array.dims)}.")
        if feature_dim in dims:
            raise ValueError(f"{feature_dim!r} cannot be both the feature dimension and a sample dimension.")
        if len(set(dims)) != len(dims):
            raise ValueError(f"sample_dims {list(dims)} repeat a dimension.")
        left = [dim for dim in others if dim not in dims]
        if left:
            raise ValueError(
                f"Dimension(s) {left} are neither sample dimensions nor the feature dimension; "
                "add them to sample_dims or select/reduce them first (e.g. data.isel(...))."
            )
    if not dims:
        raise ValueError("The data has no sample dimension besides the feature dimension.")
    return dims


def stack_samples(
    data: xr.DataArray | xr.Dataset,
    feature_dim: str | None = None,
    sample_dims: str | Sequence[str] | None = None,
    *,
    variables: str | Sequence[str] | None = None,
) -> tuple[np.ndarray | da.Array, _Layout]:
    """Stack a labelled array's samples into rows; say how to fold results back.

    Parameters
    ----------
    data : xarray.DataArray or xarray.Dataset
        The labelled data, as for :func:`as_feature_array`.
    feature_dim : str, optional
        The feature dimension, as for :func:`as_feature_array`.
    sample_dims : str or sequence of str, optional
        The dimensions that index samples (default: every dimension but
        ``feature_dim``).  Together with ``feature_dim`` they must be all of
        the data's dimensions.
    variables : sequence of str, optional
        Dataset only: the variables to use as features, as for
        :func:`as_feature_array`.

    Returns
    -------
    X : dask.array.Array or numpy.ndarray, (n_samples, n_features)
        Dask-backed data is reshaped block by block (rows grouped by chunk);
        NumPy-backed data in C order of ``sample_dims``.
    layout : _Layout
        The sample dimensions, their sizes, chunks and coordinates: what
        :func:`stack_sample_weight` and the per-sample outputs use to map
        rows back onto the sample dimensions.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from daskgmm import xarray as dxr
    >>> rng = np.random.default_rng(0)
    >>> cube = xr.DataArray(
    ...     np.concatenate([rng.normal(-3, 1, (5, 4, 2)), rng.normal(3, 1, (5, 4, 2))]),
    ...     dims=("y", "x", "band"), coords={"y": np.arange(10), "x": np.arange(4), "band": ["red", "nir"]},
    ... ).chunk({"y": 5})
    >>> X, layout = dxr.stack_samples(cube, feature_dim="band")
    >>> X.shape, X.chunks
    ((40, 2), ((20, 20), (2,)))
    >>> layout.sample_dims
    ('y', 'x')
    """
    array, feature_dim = as_feature_array(data, feature_dim, variables)
    dims = _sample_dims(array, feature_dim, sample_dims)
    array = array.transpose(*dims, feature_dim)
    shape = tuple(array.sizes[dim] for dim in dims)
    n_features = array.sizes[feature_dim]
    n_rows = int(np.prod(shape))
    on_feature = [name for name, coord in array.coords.items() if feature_dim in coord.dims]
    coords = array.drop_vars(on_feature).coords
    if isinstance(array.data, da.Array):
        blocks = array.chunk({feature_dim: -1}).data
        X = blocks if blocks.ndim == 2 else da.reshape_blockwise(blocks, (n_rows, n_features))
        layout = _Layout(dims, shape, blocks.chunks[:-1], coords, n_features)
    else:
        X = np.asarray(array.values).reshape(n_rows, n_features)
        layout = _Layout(dims, shape, None, coords, n_features)
    return X, layout


def _weight_source(data, sample_weight, variables):
    """The weights as a DataArray, and the feature variables: a name is a
    variable (or coordinate) of ``data``, and a Dataset variable used as the
    weights is not a feature."""
    xr = _import_xarray()
    if isinstance(sample_weight, xr.DataArray):
        return sample_weight, variables
    if not isinstance(sample_weight, str):
        raise ValueError(
            f"sample_weight must be an xarray DataArray over sample dimensions or the name of a variable of the "
            f"data, got {type(sample_weight).__name__}."
        )
    name = sample_weight
    if isinstance(data, xr.Dataset):
        if name not in data.variables:
            raise ValueError(
                f"sample_weight {name!r} is not a variable of the Dataset; its data variables are {list(data.data_vars)}."
            )
        if variables is None:
            variables = [v for v in data.data_vars if v != name]
        elif name in ([variables] if isinstance(variables, str) else list(variables)):
            raise ValueError(f"{name!r} cannot be both the sample weight and a feature variable.")
        return data[name].rename(name), variables
    if isinstance(data, xr.DataArray) and name in data.coords:
        return data.coords[name], variables
    raise ValueError(
        f"sample_weight {name!r} names no variable of the data: a name needs a Dataset holding that variable "
        "(or a coordinate of the DataArray); otherwise pass the weights as a DataArray."
    )


def stack_sample_weight(weight: xr.DataArray, layout: _Layout) -> np.ndarray | da.Array:
    """Put sample weights in the rows of :func:`stack_samples`.

    Parameters
    ----------
    weight : xarray.DataArray
        Over some (or all) of the sample dimensions, e.g. ``(y, x)`` or
        ``("time",)`` for a ``(time, y, x)`` layout.  It is aligned with the
        data by coordinate (extra labels are left out; a label of the data it
        lacks is an error) and broadcast over the sample dimensions it lacks.
    layout : _Layout
        From :func:`stack_samples`.

    Returns
    -------
    numpy.ndarray or dask.array.Array, (n_samples,) float64
        In the order of the rows, and for Dask-backed data with their row
        chunks: broadcast to the chunks of the sample dimensions and reshaped
        block by block, as the data is.

    Raises
    ------
    ValueError
        On a dimension that is not a sample dimension, a missing label, or
        NaN weights.

    Examples
    --------
    A weight per row ``y`` of a ``(y, x)`` grid, broadcast over ``x``:

    >>> import numpy as np, xarray as xr
    >>> from daskgmm import xarray as dxr
    >>> rng = np.random.default_rng(0)
    >>> cube = xr.DataArray(
    ...     np.concatenate([rng.normal(-3, 1, (5, 4, 2)), rng.normal(3, 1, (5, 4, 2))]),
    ...     dims=("y", "x", "band"), coords={"y": np.arange(10), "x": np.arange(4), "band": ["red", "nir"]},
    ... ).chunk({"y": 5})
    >>> X, layout = dxr.stack_samples(cube, feature_dim="band")
    >>> weight = xr.DataArray(np.arange(10.0), dims="y", coords={"y": np.arange(10)})
    >>> rows = dxr.stack_sample_weight(weight, layout)
    >>> rows.shape, rows.chunks
    ((40,), ((20, 20),))
    >>> print(rows[:8].compute())
    [0. 0. 0. 0. 1. 1. 1. 1.]
    """
    dims, shape = layout.sample_dims, layout.sample_shape
    name = f"sample_weight {weight.name!r}" if weight.name is not None else "sample_weight"
    extra = [dim for dim in weight.dims if dim not in dims]
    if extra:
        raise ValueError(
            f"{name} has dimension(s) {extra} that are not sample dimensions of the data {list(dims)}: "
            "weights are per sample; select or reduce those dimensions first."
        )
    weight = weight.reset_coords(drop=True)
    sizes = dict(zip(dims, shape))
    for dim in weight.dims:
        if dim in layout.coords.indexes and dim in weight.indexes:
            # Aligned by label, as xarray aligns: the data's labels, in its order.
            wanted = layout.coords.indexes[dim]
            missing = wanted.difference(weight.indexes[dim])
            if len(missing):
                raise ValueError(
                    f"{name} lacks {len(missing)} label(s) of the data along {dim!r} (e.g. {missing[0]!r}): "
                    "give a weight to every sample (0 leaves it out)."
                )
            weight = weight.reindex({dim: wanted})
        elif weight.sizes[dim] != sizes[dim]:
            raise ValueError(
                f"{name} has {weight.sizes[dim]} values along {dim!r}, the data {sizes[dim]}; "
                "without coordinates to align them by, the sizes must match."
            )
    n_nan = int(weight.isnull().sum())
    if n_nan:
        raise ValueError(
            f"{name} has {n_nan} NaN value(s): every sample needs a finite weight >= 0 "
            "(0 leaves a sample out, e.g. weight.fillna(0))."
        )
    # Weights dims in the order of the sample dims, size 1 where broadcast.
    weight = weight.transpose(*[dim for dim in dims if dim in weight.dims])
    expanded = tuple(sizes[dim] if dim in weight.dims else 1 for dim in dims)
    values = weight.data
    n_rows = int(np.prod(shape))
    if layout.sample_chunks is None:
        values = np.asarray(values.compute() if isinstance(values, da.Array) else values, dtype=np.float64)
        return np.ascontiguousarray(np.broadcast_to(values.reshape(expanded), shape)).reshape(n_rows)
    values = values.astype(np.float64) if isinstance(values, da.Array) else np.asarray(values, dtype=np.float64)
    values = da.asarray(values).reshape(expanded)
    source_chunks = tuple(
        chunks if dim in weight.dims else (1,) for dim, chunks in zip(dims, layout.sample_chunks)
    )
    blocks = da.broadcast_to(values.rechunk(source_chunks), shape, chunks=layout.sample_chunks)
    return blocks if len(dims) == 1 else da.reshape_blockwise(blocks, (n_rows,))


def _unstack(values, layout, name, extra=None):
    """Fold per-row outputs (n,) or (n, K) back onto the sample dimensions."""
    xr = _import_xarray()
    dims = layout.sample_dims
    shape = layout.sample_shape
    coords = dict(layout.coords)
    if extra is not None:
        k = values.shape[1]
        dims = dims + (extra,)
        shape = shape + (k,)
        coords[extra] = np.arange(k)
    if layout.sample_chunks is None:
        folded = np.reshape(values, shape)
    elif len(layout.sample_dims) == 1:
        folded = values
    else:
        chunks = layout.sample_chunks + (((values.shape[1],),) if extra is not None else ())
        folded = da.reshape_blockwise(values, shape, chunks=chunks)
    return xr.DataArray(folded, dims=dims, coords=coords, name=name, attrs=dict(OUTPUT_ATTRS[name]))


MISSING_CHOICES = ("drop", "marginalize")


def _missing_choice(model, missing):
    """'drop' or 'marginalize': ``missing``, or by default the model's own
    ``missing`` ('marginalize' stays, 'error' drops)."""
    if missing is None:
        return "marginalize" if getattr(model, "missing", "error") == "marginalize" else "drop"
    if missing not in MISSING_CHOICES:
        raise ValueError(f"missing must be one of {MISSING_CHOICES} or None, got {missing!r}.")
    return missing


@unchanged_on_error
def fit(
    model: GaussianMixture | BayesianGaussianMixture,
    data: xr.DataArray | xr.Dataset,
    feature_dim: str | None = None,
    sample_dims: str | Sequence[str] | None = None,
    *,
    variables: str | Sequence[str] | None = None,
    sample_weight: xr.DataArray | str | None = None,
    callbacks: Sequence[Callable[[dict[str, Any]], object]] = (),
    checkpoint: str | os.PathLike[str] | None = None,
    missing: Literal["drop", "marginalize"] | None = None,
) -> GaussianMixture | BayesianGaussianMixture:
    """Fit ``model`` on a labelled array, skipping samples with missing values.

    Parameters
    ----------
    model : GaussianMixture or BayesianGaussianMixture
        The estimator to fit (in place; it is also returned).  An exception
        leaves it as it was.
    data : xarray.DataArray or xarray.Dataset
        Dask-backed (lazily opened from zarr or netCDF, say) or in memory.
    feature_dim : str, optional
        The dimension that holds the features (e.g. ``"band"``).  For a
        Dataset the variables are the features and ``feature_dim`` names the
        dimension they are stacked along (default ``"variable"``).
    sample_dims : str or sequence of str, optional
        The dimensions that index samples; default all but ``feature_dim``.
    variables : sequence of str, optional
        Dataset only: the variables to use as features.
    sample_weight : xarray.DataArray or str, optional
        Non-negative weight of each sample (see
        :meth:`daskgmm.GaussianMixture.fit`): a DataArray over some or all of
        the sample dimensions (a ``(y, x)`` weight map, a ``time`` weight),
        aligned with the data by coordinate and broadcast over the others
        (:func:`stack_sample_weight`); or the name of a variable of a Dataset
        (then not a feature) or of a coordinate of a DataArray.  A sample
        skipped for a missing feature counts for nothing whatever its weight;
        a NaN weight is a ValueError.
    callbacks : sequence of callable, optional
        Called after every EM iteration with an info dict (see
        :func:`daskgmm._engine.run_em`).
    checkpoint : str or os.PathLike, optional
        Write the EM state there every iteration and resume from it if it
        exists (see :meth:`daskgmm.GaussianMixture.fit`).
    missing : {'drop', 'marginalize'}, optional
        'drop': a sample with a NaN or infinite feature is left out.
        'marginalize': NaN features are marginalised, a sample is left out
        only when every feature is NaN (the model's ``missing`` is set to
        'marginalize', so that its own predict does the same).  Default: the
        model's ``missing`` if 'marginalize', else 'drop'.

    Returns
    -------
    GaussianMixture or BayesianGaussianMixture
        ``model``, fitted; ``model.n_samples_skipped_`` is the number of
        samples left out (a feature NaN or infinite; with 'marginalize',
        every feature NaN), and the feature coordinate's labels, if any, are
        its ``feature_names_in_``.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from daskgmm import GaussianMixture, xarray as dxr
    >>> rng = np.random.default_rng(0)
    >>> cube = xr.DataArray(
    ...     np.concatenate([rng.normal(-3, 1, (5, 4, 2)), rng.normal(3, 1, (5, 4, 2))]),
    ...     dims=("y", "x", "band"), coords={"y": np.arange(10), "x": np.arange(4), "band": ["red", "nir"]},
    ... ).chunk({"y": 5})
    >>> cube[0, 0, 1] = np.nan  # a missing value: that sample is left out
    >>> gmm = dxr.fit(GaussianMixture(2, random_state=0), cube, feature_dim="band")
    >>> gmm.n_samples_skipped_, list(gmm.feature_names_in_)
    (1, ['red', 'nir'])
    >>> print(np.round(np.sort(gmm.means_[:, 0])))
    [-3.  3.]
    """
    missing = _missing_choice(model, missing)
    weight = None
    if sample_weight is not None:
        weight, variables = _weight_source(data, sample_weight, variables)
    array, feature_dim = as_feature_array(data, feature_dim, variables)
    labels = _feature_labels(array, feature_dim)
    X, layout = stack_samples(array, feature_dim, sample_dims)
    weights = None if weight is None else stack_sample_weight(weight, layout)
    if missing == "marginalize":
        model.set_params(missing="marginalize")
    _fit_rows(
        model, X, sample_weight=weights, skip_nonfinite=missing == "drop", callbacks=callbacks, checkpoint=checkpoint
    )
    if labels is not None:
        # scikit-learn's attribute for the names of the features: predict
        # checks the data's feature coordinate against it.
        model.feature_names_in_ = np.asarray(labels, dtype=object)
    n_total = int(np.prod(layout.sample_shape))
    skipped = getattr(model, "n_samples_skipped_", None)
    if skipped is not None:
        logger.info(
            "skipped %d of %d samples with a missing (NaN/inf) feature", skipped, n_total
        )
    return model


@unchanged_on_error
def partial_fit(
    model: GaussianMixture | BayesianGaussianMixture,
    data: xr.DataArray | xr.Dataset,
    feature_dim: str | None = None,
    sample_dims: str | Sequence[str] | None = None,
    *,
    variables: str | Sequence[str] | None = None,
    sample_weight: xr.DataArray | str | None = None,
    missing: Literal["drop", "marginalize"] | None = None,
) -> GaussianMixture | BayesianGaussianMixture:
    """Update ``model`` with one batch of online EM on a labelled array.

    The batch is a scene, a time step, a store of a series: see
    :meth:`daskgmm.GaussianMixture.partial_fit`.  Samples with a missing
    feature are left out ('drop') or marginalised ('marginalize') as in
    :func:`fit`.  The first batch fixes the features (their labels become
    ``feature_names_in_``); later batches are matched to them by label,
    whatever their order, as :func:`predict` does.

    Parameters
    ----------
    model : GaussianMixture or BayesianGaussianMixture
        The estimator to update (in place; it is also returned).  An
        exception leaves it as it was.
    data : xarray.DataArray or xarray.Dataset
        One batch, Dask-backed or in memory.
    feature_dim : str, optional
        As in :func:`fit`.
    sample_dims : str or sequence of str, optional
        As in :func:`fit`.
    variables : sequence of str, optional
        As in :func:`fit`.
    sample_weight : xarray.DataArray or str, optional
        As in :func:`fit`.
    missing : {'drop', 'marginalize'}, optional
        As in :func:`fit`.

    Returns
    -------
    GaussianMixture or BayesianGaussianMixture
        ``model``, updated; ``model.n_samples_skipped_`` counts this batch's
        samples left out (None for weighted 'drop' batches).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from daskgmm import GaussianMixture, xarray as dxr
    >>> rng = np.random.default_rng(0)
    >>> cube = xr.DataArray(
    ...     np.concatenate([rng.normal(-3, 1, (5, 4, 2)), rng.normal(3, 1, (5, 4, 2))]),
    ...     dims=("y", "x", "band"), coords={"y": np.arange(10), "x": np.arange(4), "band": ["red", "nir"]},
    ... ).chunk({"y": 5})
    >>> gmm = GaussianMixture(2, random_state=0)
    >>> for batch in (cube.isel(y=slice(0, 10, 2)), cube.isel(y=slice(1, 10, 2))):
    ...     gmm = dxr.partial_fit(gmm, batch, feature_dim="band")
    >>> gmm.n_batch_iter_, gmm.n_samples_seen_, list(gmm.feature_names_in_)
    (2, 40.0, ['red', 'nir'])
    """
    missing = _missing_choice(model, missing)
    fitted = hasattr(model, "means_")
    weight = None
    if sample_weight is not None:
        weight, variables = _weight_source(data, sample_weight, variables)
    array, feature_dim = as_feature_array(data, feature_dim, variables)
    if fitted:
        array = _aligned_features(model, array, feature_dim)
    labels = _feature_labels(array, feature_dim)
    X, layout = stack_samples(array, feature_dim, sample_dims)
    weights = None if weight is None else stack_sample_weight(weight, layout)
    if missing == "marginalize":
        model.set_params(missing="marginalize")
    model._validate_params()
    # The features were matched by label above: the rows carry no names.
    names = model.__dict__.pop("feature_names_in_", None)
    try:
        _partial_fit_rows(model, X, sample_weight=weights, skip_nonfinite=missing == "drop")
    finally:
        if names is not None:
            model.feature_names_in_ = names
    if labels is not None and not fitted:
        model.feature_names_in_ = np.asarray(labels, dtype=object)
    return model


def _feature_labels(array, feature_dim):
    """The feature coordinate's values as strings, or None without one."""
    if feature_dim not in array.coords:
        return None
    return [str(value) for value in np.asarray(array[feature_dim].values).tolist()]


def _aligned_features(model, array, feature_dim):
    """``array`` with its features in the order the model was fitted on.

    Features are matched by label, as xarray aligns by coordinate: the
    fitted features are taken from the data by name, whatever their order
    (extra ones are left out: a Dataset may hold more variables than the
    model uses); a fitted feature the data lacks (renamed, missing) is a
    ValueError naming it.  Without labels on the data the order is taken
    as it is, with a warning."""
    fitted = getattr(model, "feature_names_in_", None)
    if fitted is None:
        return array
    fitted = [str(name) for name in fitted]
    labels = _feature_labels(array, feature_dim)
    if labels is None:
        warnings.warn(
            f"The data has no coordinate along {feature_dim!r} but the model was fitted on features {fitted}: "
            "the features are taken in that order, unchecked.",
            UserWarning,
            stacklevel=3,
        )
        return array
    if labels == fitted:
        return array
    missing = [label for label in fitted if label not in labels]
    if not missing and len(set(labels)) == len(labels):
        position = {label: i for i, label in enumerate(labels)}
        return array.isel({feature_dim: [position[label] for label in fitted]})
    unexpected = [label for label in labels if label not in fitted]
    raise ValueError(
        f"The features along {feature_dim!r} are not those the model was fitted on {fitted}: "
        f"missing {missing}, unexpected {unexpected}"
        + ("" if missing else f", repeated labels in {labels}")
        + ". Rename or select the features to match."
    )


def _map(model, data, what, feature_dim, sample_dims, variables, name, extra=None, missing=None):
    _check_fitted(model)
    marginalize = _missing_choice(model, missing) == "marginalize"
    array, feature_dim = as_feature_array(data, feature_dim, variables)
    array = _aligned_features(model, array, feature_dim)
    X, layout = stack_samples(array, feature_dim, sample_dims)
    dX = as_dask_array(X, n_features_expected=model.n_features_in_)
    values = _rows_output(model, dX, what, marginalize=marginalize, skip_nonfinite=True)
    if layout.sample_chunks is None:
        values = values.compute()
    return _unstack(values, layout, name, extra)


def predict(
    model: GaussianMixture | BayesianGaussianMixture,
    data: xr.DataArray | xr.Dataset,
    feature_dim: str | None = None,
    sample_dims: str | Sequence[str] | None = None,
    *,
    variables: str | Sequence[str] | None = None,
    missing: Literal["drop", "marginalize"] | None = None,
) -> xr.DataArray:
    """Predict the most probable component of every sample of a labelled array.

    A sample with a missing feature gets -1 (with
    ``missing='marginalize'``: a sample with every feature missing); one
    that the noise component of a :class:`GaussianMixture` with ``noise``
    explains best gets ``n_components``.

    Parameters
    ----------
    model : GaussianMixture or BayesianGaussianMixture
        A fitted model.  Its ``feature_names_in_`` (set by :func:`fit`), if
        any, are taken from the data's feature coordinate by label: the
        order does not matter, extra features are left out, a missing one
        is a ValueError naming it.
    data : xarray.DataArray or xarray.Dataset
        Dask-backed or in memory.
    feature_dim : str, optional
        As in :func:`fit`.
    sample_dims : str or sequence of str, optional
        As in :func:`fit`; the output's dimensions, in this order.
    variables : sequence of str, optional
        As in :func:`fit`.
    missing : {'drop', 'marginalize'}, optional
        As in :func:`fit`: with 'drop' (the default unless the model's
        ``missing`` is 'marginalize') a sample with a NaN or infinite
        feature gets the missing value; with 'marginalize' only a sample
        with every feature NaN does.

    Returns
    -------
    xarray.DataArray of int64, named ``"label"``
        Dimensions ``sample_dims`` with their coordinates; lazy (Dask-backed)
        for Dask-backed input.  Attributes ``long_name`` and
        ``missing_label`` (-1).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from daskgmm import GaussianMixture, xarray as dxr
    >>> rng = np.random.default_rng(0)
    >>> cube = xr.DataArray(
    ...     np.concatenate([rng.normal(-3, 1, (5, 4, 2)), rng.normal(3, 1, (5, 4, 2))]),
    ...     dims=("y", "x", "band"), coords={"y": np.arange(10), "x": np.arange(4), "band": ["red", "nir"]},
    ... ).chunk({"y": 5})
    >>> gmm = dxr.fit(GaussianMixture(2, random_state=0), cube, feature_dim="band")
    >>> labels = dxr.predict(gmm, cube, feature_dim="band")
    >>> labels.dims, labels.name
    (('y', 'x'), 'label')
    >>> print(labels[::3].values)  # lazy: computed here
    [[1 1 1 1]
     [1 1 1 1]
     [0 0 0 0]
     [0 0 0 0]]

    Features are taken by label, whatever their order:

    >>> bool((dxr.predict(gmm, cube.isel(band=[1, 0]), "band") == labels).all())
    True
    """
    return _map(model, data, "predict", feature_dim, sample_dims, variables, "label", missing=missing)


def predict_proba(
    model: GaussianMixture | BayesianGaussianMixture,
    data: xr.DataArray | xr.Dataset,
    feature_dim: str | None = None,
    sample_dims: str | Sequence[str] | None = None,
    *,
    variables: str | Sequence[str] | None = None,
    missing: Literal["drop", "marginalize"] | None = None,
) -> xr.DataArray:
    """Predict the probability of every component for every sample of a labelled array.

    The probabilities are NaN where a feature is missing (with
    ``missing='marginalize'``: where every feature is).

    Parameters
    ----------
    model : GaussianMixture or BayesianGaussianMixture
        A fitted model.  Its ``feature_names_in_`` (set by :func:`fit`), if
        any, are taken from the data's feature coordinate by label: the
        order does not matter, extra features are left out, a missing one
        is a ValueError naming it.
    data : xarray.DataArray or xarray.Dataset
        Dask-backed or in memory.
    feature_dim : str, optional
        As in :func:`fit`.
    sample_dims : str or sequence of str, optional
        As in :func:`fit`; the output's dimensions, in this order.
    variables : sequence of str, optional
        As in :func:`fit`.
    missing : {'drop', 'marginalize'}, optional
        As in :func:`fit`: with 'drop' (the default unless the model's
        ``missing`` is 'marginalize') a sample with a NaN or infinite
        feature gets the missing value; with 'marginalize' only a sample
        with every feature NaN does.

    Returns
    -------
    xarray.DataArray named ``"probability"``
        Dimensions ``sample_dims + ("component",)``, the coordinate
        ``component`` numbering the model's components (0 to
        ``n_components - 1``, the labels of :func:`predict`; and
        ``n_components``, the last, for the noise component of a
        :class:`GaussianMixture` with ``noise``); lazy for Dask-backed
        input.  Attribute ``long_name``.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from daskgmm import GaussianMixture, xarray as dxr
    >>> rng = np.random.default_rng(0)
    >>> cube = xr.DataArray(
    ...     np.concatenate([rng.normal(-3, 1, (5, 4, 2)), rng.normal(3, 1, (5, 4, 2))]),
    ...     dims=("y", "x", "band"), coords={"y": np.arange(10), "x": np.arange(4), "band": ["red", "nir"]},
    ... ).chunk({"y": 5})
    >>> gmm = dxr.fit(GaussianMixture(2, random_state=0), cube, feature_dim="band")
    >>> proba = dxr.predict_proba(gmm, cube, "band")
    >>> proba.dims, proba.shape
    (('y', 'x', 'component'), (10, 4, 2))
    >>> print(np.round(proba[-1, -1].values, 2))
    [1. 0.]
    """
    return _map(model, data, "predict_proba", feature_dim, sample_dims, variables, "probability", COMPONENT_DIM, missing=missing)


def score_samples(
    model: GaussianMixture | BayesianGaussianMixture,
    data: xr.DataArray | xr.Dataset,
    feature_dim: str | None = None,
    sample_dims: str | Sequence[str] | None = None,
    *,
    variables: str | Sequence[str] | None = None,
    missing: Literal["drop", "marginalize"] | None = None,
) -> xr.DataArray:
    """Compute the log-likelihood of every sample of a labelled array.

    The log-likelihood is NaN where a feature is missing; with
    ``missing='marginalize'`` it is that of the observed features, NaN only
    where every feature is missing.

    Parameters
    ----------
    model : GaussianMixture or BayesianGaussianMixture
        A fitted model.  Its ``feature_names_in_`` (set by :func:`fit`), if
        any, are taken from the data's feature coordinate by label: the
        order does not matter, extra features are left out, a missing one
        is a ValueError naming it.
    data : xarray.DataArray or xarray.Dataset
        Dask-backed or in memory.
    feature_dim : str, optional
        As in :func:`fit`.
    sample_dims : str or sequence of str, optional
        As in :func:`fit`; the output's dimensions, in this order.
    variables : sequence of str, optional
        As in :func:`fit`.
    missing : {'drop', 'marginalize'}, optional
        As in :func:`fit`: with 'drop' (the default unless the model's
        ``missing`` is 'marginalize') a sample with a NaN or infinite
        feature gets the missing value; with 'marginalize' only a sample
        with every feature NaN does.

    Returns
    -------
    xarray.DataArray named ``"log_likelihood"``
        Dimensions ``sample_dims``; lazy for Dask-backed input.  Attribute
        ``long_name``.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from daskgmm import GaussianMixture, xarray as dxr
    >>> rng = np.random.default_rng(0)
    >>> cube = xr.DataArray(
    ...     np.concatenate([rng.normal(-3, 1, (5, 4, 2)), rng.normal(3, 1, (5, 4, 2))]),
    ...     dims=("y", "x", "band"), coords={"y": np.arange(10), "x": np.arange(4), "band": ["red", "nir"]},
    ... ).chunk({"y": 5})
    >>> gmm = dxr.fit(GaussianMixture(2, random_state=0), cube, feature_dim="band")
    >>> cube[0, 0, 1] = np.nan
    >>> log_likelihood = dxr.score_samples(gmm, cube, "band")
    >>> log_likelihood.dims, log_likelihood.name
    (('y', 'x'), 'log_likelihood')
    >>> int(log_likelihood.isnull().sum())
    1
    """
    return _map(model, data, "score_samples", feature_dim, sample_dims, variables, "log_likelihood", missing=missing)


__all__ = [
    "fit", "partial_fit", "predict", "predict_proba", "score_samples", "stack_samples", "stack_sample_weight", "as_feature_array",
]
