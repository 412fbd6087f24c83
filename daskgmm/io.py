"""Saved models: a portable format that never executes code on load.

Format (``.npz``, version 1)
----------------------------
A NumPy ``.npz`` archive (a zip of ``.npy`` files), read with
``allow_pickle=False`` so loading can never run code:

* ``__daskgmm__``: a 0-d unicode array holding a JSON document with
  ``format`` ("daskgmm-model"), ``format_version`` (1), ``kind`` ("model" or
  "checkpoint"), ``daskgmm_version``, ``covariance_type``, ``n_components``,
  ``n_features``, ``dtype``, ``params`` (the estimator's constructor
  settings that are JSON-serialisable), ``params_repr`` (the others, as
  text, for information only: loading uses their defaults) and ``fit``
  (convergence record: ``converged``, ``n_iter``, ``lower_bound``,
  ``lower_bounds``, ``n_features_in``) plus any extra entries the writer
  adds (the command line adds ``input``: the layout of the data it fitted).
* one array per fitted parameter, in the model's float dtype (``dtype`` in
  the metadata: "float64", or "float32" for a model fitted on float32 data):
  ``weights``, ``means``, ``covariances``, ``precisions_cholesky``.  A
  BayesianGaussianMixture adds its posterior (``posterior_<name>``) and
  priors (``mean_prior``, ``covariance_prior``), float64, and ``estimator``
  and ``priors`` (the prior numbers) to the metadata.
* ``fit_history``, float64 (n_records, 5): ``history_``, one row per M-step
  of ``iteration``, ``lower_bound``, ``change``, ``seconds``, ``n_chunks``
  (absent in files written before it was kept).
* what continues a stream of ``partial_fit`` exactly, when the model has
  it: ``fit_statistics_<field>``, the merged statistics of the fit's last
  pass (the parameters are their M-step; a stepwise stream continuing the
  fit starts from them); the metadata's ``stream`` entry (``mode``,
  ``n_batch_iter``, ``n_samples_seen``, ``batch_offset``, ``n_chunks``,
  ``weight_scale``: the power of two an exact pass's statistics count the
  sample weights divided by, 1 when absent; null without a stream) and ``stream_statistics_<field>``, the running
  statistics of a stepwise stream or the merged statistics of an
  unfinished exact pass.  ``<field>`` is each of ``n_samples``,
  ``log_likelihood``, ``nk``, ``means``, ``scatter``, in the statistics'
  own dtype.  A file without them loads as a model without a stream.

Loading restores each array in the dtype it was saved in, so a loaded model
holds bitwise the arrays of the saved one.  It checks every field: the
metadata's types and their agreement with the arrays' shapes and dtypes, and
the arrays' values (finite; weights non-negative and summing to 1; precision
factors triangular with a positive diagonal; covariances symmetric with a
positive diagonal and the inverses of the precisions, to the precision of
the saved dtype).  Any failure is a ValueError naming the field.

Writing
-------
Files (and the command line's zarr stores) are written to a temporary path
in the target's folder and moved into place only when complete, so a crash
or Ctrl-C never leaves a half-written file and never removes the previous
one.  A new path is claimed with a hard link, which fails if the path
appeared meanwhile (two writers of one new path: one wins, the other gets
FileExistsError); an existing path is replaced only with ``overwrite=True``,
and only if it is a regular file (or a symbolic link to one: the file it
points to is replaced, the link kept, as ``open()`` writes through a link) or
a folder the caller recognises as an output of its own kind (the command
line's zarr stores); a directory, FIFO, socket or device is refused by name.
Files and folders get the permissions ``open()`` and ``mkdir()`` give
(``0o666`` / ``0o777`` less the umask).  Temporary names carry the writer's
host and process id: what a killed writer left is removed by the next writer
on that host, a live writer's is never touched.  Reading refuses anything but
a regular file before opening it (a FIFO would block the reader).
"""

from __future__ import annotations

import json
import math
import os

from typing import TYPE_CHECKING

import numpy as np

from ._archive import (  # noqa: F401 - the file layer, imported from here by users and tests
    FORMAT,
    FORMAT_VERSION,
    METADATA,
    RECORD_FIELDS,
    STATISTICS_FIELDS,
    _host_tag,
    check_array,
    check_integer,
    check_number,
    check_parameters,
    check_records,
    check_regular_file,
    check_replaceable,
    check_statistics,
    discard,
    invalid,
    publish,
    read_archive,
    records_array,
    records_from_array,
    remove_stale_temporaries,
    same_or_nested,
    statistics_arrays,
    temporary_path,
    write_archive,
)

if TYPE_CHECKING:  # io is imported by the estimators' modules: no import back at run time
    from .bayesian_mixture import BayesianGaussianMixture
    from .mixture import GaussianMixture

ARRAY_NAMES = ("weights", "means", "covariances", "precisions_cholesky")


# --------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------


def _json_params(model):
    """Constructor settings that JSON can hold exactly; the others (a
    RandomState, say) are recorded as text under ``params_repr`` only, so that
    loading never turns a description back into a wrong parameter value."""
    params, described = {}, {}
    for name, value in model.get_params().items():
        if isinstance(value, np.ndarray):
            continue
        if isinstance(value, np.generic):
            value = value.item()
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            described[name] = repr(value)
            continue
        params[name] = value
    return params, described


# The float dtypes a model's parameters can have (a fit's data dtype).
PARAMETER_DTYPES = ("float32", "float64")


def _parameter_dtype(model):
    """The float dtype of a fitted estimator's parameters (float32 after a
    fit on float32 data), in which they are saved and loaded."""
    dtype = np.result_type(*(np.asarray(getattr(model, name + "_")) for name in ARRAY_NAMES))
    return dtype if dtype.name in PARAMETER_DTYPES else np.dtype(np.float64)


def model_meta(model, kind="model"):
    """The metadata document of a fitted estimator."""
    from ._version import __version__

    params, described = _json_params(model)
    return {
        "kind": kind,
        "daskgmm_version": __version__,
        "covariance_type": model.covariance_type,
        "n_components": int(model.n_components),
        "n_features": int(model.n_features_in_),
        "dtype": _parameter_dtype(model).name,
        "params": params,
        "params_repr": described,
        "fit": {
            "converged": bool(model.converged_),
            "n_iter": int(model.n_iter_),
            "lower_bound": float(model.lower_bound_),
            "lower_bounds": [float(v) for v in getattr(model, "lower_bounds_", [])],
            "n_features_in": int(model.n_features_in_),
            # Column names of a DataFrame, or the feature coordinate of labelled
            # data (daskgmm.xarray): checked again at predict.
            "feature_names_in": (
                [str(name) for name in model.feature_names_in_] if hasattr(model, "feature_names_in_") else None
            ),
        },
    }


# What a saved BayesianGaussianMixture holds besides ARRAY_NAMES: its
# posterior (``posterior_<name>``) and the priors it was fitted with.
BAYESIAN_PRIOR_ARRAYS = ("mean_prior", "covariance_prior")
BAYESIAN_PRIOR_NUMBERS = ("weight_concentration_prior", "mean_precision_prior", "degrees_of_freedom_prior")


def save_model(model, path, *, overwrite=False, extra=None):
    """Save a fitted :class:`daskgmm.GaussianMixture` or
    :class:`daskgmm.BayesianGaussianMixture` to ``path``.

    ``extra`` (a JSON-serialisable dict) is merged into the metadata
    document, e.g. the command line records the input's layout there.
    """
    model._check_is_fitted(in_use=False)  # the file keeps an unfinished pass: no warning
    dtype = _parameter_dtype(model)
    arrays = {name: np.asarray(getattr(model, name + "_"), dtype=dtype) for name in ARRAY_NAMES}
    meta = model_meta(model)
    if type(model).__name__ == "BayesianGaussianMixture":
        meta["estimator"] = "BayesianGaussianMixture"
        for name, value in model._run_from_attributes().posterior.items():
            arrays[f"posterior_{name}"] = np.asarray(value, dtype=np.float64)
        for name in BAYESIAN_PRIOR_ARRAYS:
            arrays[name] = np.asarray(getattr(model, name + "_"), dtype=np.float64)
        meta["priors"] = {name: float(getattr(model, name + "_")) for name in BAYESIAN_PRIOR_NUMBERS}
    stream_arrays, meta["stream"] = _stream_fields(model)
    arrays.update(stream_arrays)
    if hasattr(model, "history_"):
        arrays["fit_history"] = records_array(model.history_)
    if extra:
        reserved = sorted(set(extra) & (set(meta) | {"format", "format_version"}))
        if reserved:
            raise ValueError(f"extra metadata cannot replace the reserved entries {reserved}.")
        meta.update(extra)
    return write_archive(path, arrays, meta, overwrite=overwrite)


def _stream_fields(model):
    """Arrays and metadata entry (None without a stream) of what continues
    the model's stream of ``partial_fit``: the statistics of its fit's last
    pass (``fit_statistics_*``), and the state of ``partial_fit`` (the
    ``stream`` entry: mode, counts; ``stream_statistics_*``: the running
    statistics, or those of the unfinished exact pass)."""
    arrays = {}
    fit_statistics = getattr(model, "_fit_statistics", None)
    if fit_statistics is not None:
        arrays.update(statistics_arrays("fit_statistics", fit_statistics))
    state = getattr(model, "_online_state", None)
    if state is None:
        return arrays, None
    if state.statistics is not None:
        arrays.update(statistics_arrays("stream_statistics", state.statistics))
    return arrays, {
        "mode": state.mode,
        "n_batch_iter": int(state.n_batch_iter),
        "n_samples_seen": float(state.n_samples_seen),
        "batch_offset": int(state.batch_offset),
        "n_chunks": int(state.n_chunks),
        "weight_scale": float(state.weight_scale),
    }


def _load_stream(path, model, arrays, meta, k, d):
    """The fit's statistics and the stream state of :func:`_stream_fields`,
    each field checked; a file without them (older ones) gives a model
    without (a stream then starts afresh)."""
    from ._engine import ONLINE_MODES, OnlineState

    kind = model.covariance_type
    model._fit_statistics = check_statistics(path, "fit_statistics", arrays, kind, k, d, positive_count=True)
    statistics = check_statistics(path, "stream_statistics", arrays, kind, k, d)
    stream = meta.get("stream")
    if stream is None:
        if statistics is not None:
            raise invalid(path, "stream", "is missing, but the file holds stream_statistics")
        return
    if not isinstance(stream, dict):
        raise invalid(path, "stream", f"is {type(stream).__name__}, not a JSON object")
    mode = stream.get("mode")
    if not isinstance(mode, str) or mode not in ONLINE_MODES:
        raise invalid(path, "stream.mode", f"is {mode!r}, not one of {list(ONLINE_MODES)}")
    n_batch_iter = check_integer(path, "stream.n_batch_iter", stream.get("n_batch_iter"), minimum=0)
    batch_offset = check_integer(path, "stream.batch_offset", stream.get("batch_offset"), minimum=0)
    n_chunks = check_integer(path, "stream.n_chunks", stream.get("n_chunks"), minimum=0)
    weight_scale = check_number(path, "stream.weight_scale", stream.get("weight_scale", 1.0))
    if not (math.isfinite(weight_scale) and weight_scale > 0 and math.frexp(weight_scale)[0] == 0.5):
        raise invalid(path, "stream.weight_scale", f"is {weight_scale!r}, not a positive power of two")
    n_samples_seen = check_number(path, "stream.n_samples_seen", stream.get("n_samples_seen"))
    if not (math.isfinite(n_samples_seen) and n_samples_seen >= 0):
        raise invalid(path, "stream.n_samples_seen", f"is {n_samples_seen!r}, not a finite number >= 0")
    model._keep_online_state(
        OnlineState(
            mode, statistics=statistics, n_batch_iter=n_batch_iter, n_samples_seen=n_samples_seen,
            n_chunks=n_chunks, batch_offset=batch_offset, weight_scale=weight_scale,
        )
    )


def _model_params(path, meta, covariance_type, n_components):
    """Constructor settings from ``meta['params']``, checked by the estimator."""
    from .bayesian_mixture import BayesianGaussianMixture
    from .mixture import GaussianMixture

    estimator = meta.get("estimator", "GaussianMixture")
    classes = {"GaussianMixture": GaussianMixture, "BayesianGaussianMixture": BayesianGaussianMixture}
    if estimator not in classes:
        raise invalid(path, "estimator", f"is {estimator!r}, not one of {sorted(classes)}")
    cls = classes[estimator]
    params = meta.get("params", {})
    if not isinstance(params, dict):
        raise invalid(path, "params", f"is {type(params).__name__}, not a JSON object")
    valid = set(cls().get_params(deep=False))
    params = {key: value for key, value in params.items() if key in valid}
    for key in ("weights_init", "means_init", "precisions_init", "mean_prior", "covariance_prior"):
        params.pop(key, None)  # arrays: described, not restored (the fitted priors are)
    for key, value in (("covariance_type", covariance_type), ("n_components", n_components)):
        if key in params and params[key] != value:
            raise invalid(path, f"params.{key}", f"is {params[key]!r} but the file's {key} is {value!r}")
    params.update(covariance_type=covariance_type, n_components=n_components)
    model = cls(**params)
    try:
        model._validate_params()
    except (TypeError, ValueError) as exc:
        raise invalid(path, "params", f"holds an invalid setting ({' '.join(str(exc).split())})") from None
    return model


def load(path: str | os.PathLike[str]) -> GaussianMixture | BayesianGaussianMixture:
    """Load a model saved with :meth:`GaussianMixture.save`; runs no code from the file.

    Every field is checked (see :mod:`daskgmm.io`); the arrays come back in
    the dtype they were saved in, bit for bit.

    Parameters
    ----------
    path : str or os.PathLike
        A file written by :meth:`daskgmm.GaussianMixture.save` or
        :meth:`daskgmm.BayesianGaussianMixture.save` (or the command line's
        ``daskgmm fit``).

    Returns
    -------
    GaussianMixture or BayesianGaussianMixture
        The fitted model, with the settings it was saved with (those JSON
        cannot hold, a RandomState or an array such as ``means_init``, take
        their defaults) and, when the file holds one, its stream of
        :meth:`~daskgmm.GaussianMixture.partial_fit` where it was.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ValueError
        The file is not a daskgmm model, or a field of it is missing or
        invalid (the message names the field).

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> import daskgmm
    >>> X = np.array([[0.0], [0.1], [0.2], [10.0], [10.1], [10.2]])
    >>> gmm = daskgmm.GaussianMixture(2, random_state=0).fit(X)
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = gmm.save(os.path.join(folder, "model.npz"))
    ...     model = daskgmm.load(path)
    >>> type(model).__name__, model.n_components
    ('GaussianMixture', 2)
    >>> print(model.predict(X))
    [1 1 1 0 0 0]
    """
    from ._blocks import COVARIANCE_TYPES
    from ._covariance import covariance_shape, precisions_from_cholesky

    arrays, meta = read_archive(path)
    kind = meta.get("kind", "model")
    if kind == "checkpoint":
        raise ValueError(
            f"{path} is a daskgmm checkpoint, not a saved model: resume it with fit(X, checkpoint=PATH) "
            "(or daskgmm fit --checkpoint) and save the fitted model."
        )
    if kind != "model":
        raise invalid(path, "kind", f"is {kind!r}, not 'model'")
    missing = [name for name in ARRAY_NAMES if name not in arrays]
    if missing:
        raise ValueError(f"{path} is not a complete daskgmm model: missing {', '.join(missing)}.")
    for name in ("covariance_type", "n_components", "n_features", "dtype"):
        if name not in meta:
            raise ValueError(f"{path} is not a complete daskgmm model: bad or missing metadata ('{name}' is missing).")
    covariance_type = meta["covariance_type"]
    if not isinstance(covariance_type, str) or covariance_type not in COVARIANCE_TYPES:
        raise ValueError(f"{path}: unknown covariance_type {covariance_type!r} in the metadata.")
    k = check_integer(path, "n_components", meta["n_components"], minimum=1)
    d = check_integer(path, "n_features", meta["n_features"], minimum=1)
    expected = {
        "weights": (k,),
        "means": (k, d),
        "covariances": covariance_shape(covariance_type, k, d),
        "precisions_cholesky": covariance_shape(covariance_type, k, d),
    }
    dtype = meta["dtype"]
    if not isinstance(dtype, str) or dtype not in PARAMETER_DTYPES:
        raise invalid(path, "dtype", f"is {dtype!r}, not one of {list(PARAMETER_DTYPES)}")
    dtype = np.dtype(dtype)
    values = {}
    for name, shape in expected.items():
        values[name] = check_array(path, name, arrays[name], shape)
        stored = arrays[name].dtype
        if stored.kind != "f" or stored.itemsize != dtype.itemsize:
            raise invalid(path, name, f"has dtype {stored}, but the file's dtype is {dtype.name!r}")
    check_parameters(path, covariance_type, *(values[name] for name in ARRAY_NAMES), dtype=dtype)
    fit = meta.get("fit")
    if not isinstance(fit, dict):
        raise invalid(path, "fit", "is missing" if fit is None else f"is {type(fit).__name__}, not a JSON object")
    for name in ("converged", "n_iter", "lower_bound", "lower_bounds", "n_features_in"):
        if name not in fit:
            raise invalid(path, f"fit.{name}", "is missing")
    converged = fit["converged"]
    if not isinstance(converged, bool):
        raise invalid(path, "fit.converged", f"is {converged!r}, not true or false")
    n_iter = check_integer(path, "fit.n_iter", fit["n_iter"], minimum=0)
    lower_bound = check_number(path, "fit.lower_bound", fit["lower_bound"], allow_nan=True)
    lower_bounds = fit["lower_bounds"]
    if not isinstance(lower_bounds, list):
        raise invalid(path, "fit.lower_bounds", f"is {type(lower_bounds).__name__}, not a list")
    lower_bounds = [check_number(path, "fit.lower_bounds", value) for value in lower_bounds]
    n_features_in = check_integer(path, "fit.n_features_in", fit["n_features_in"], minimum=1)
    if n_features_in != d:
        raise invalid(path, "fit.n_features_in", f"is {n_features_in} but the file's n_features is {d}")
    feature_names = fit.get("feature_names_in")
    if feature_names is not None and (
        not isinstance(feature_names, list)
        or len(feature_names) != d
        or not all(isinstance(name, str) for name in feature_names)
    ):
        raise invalid(path, "fit.feature_names_in", f"is {feature_names!r}, not a list of {d} strings")
    model = _model_params(path, meta, covariance_type, k)
    if feature_names is not None:
        model.feature_names_in_ = np.asarray(feature_names, dtype=object)
    # In the saved dtype: the arrays of the model that was saved, bit for bit.
    model.weights_, model.means_, model.covariances_, model.precisions_cholesky_ = (
        np.asarray(arrays[name], dtype=dtype) for name in ARRAY_NAMES
    )
    model.precisions_ = precisions_from_cholesky(model.precisions_cholesky_, covariance_type)
    model.converged_ = converged
    model.n_iter_ = n_iter
    model.lower_bound_ = lower_bound
    model.lower_bounds_ = lower_bounds
    if "fit_history" in arrays:  # files written before it was kept have none
        stored = arrays["fit_history"]
        rows = check_array(path, "fit_history", stored, (stored.shape[0] if stored.ndim else 0, len(RECORD_FIELDS)))
        check_records(path, "fit_history", rows)
        model.history_ = records_from_array(rows)
    model.n_features_in_ = n_features_in
    if meta.get("estimator") == "BayesianGaussianMixture":
        _load_posterior(path, model, arrays, meta, k, d)
    _load_stream(path, model, arrays, meta, k, d)
    return model


def _scalar_if_one(array, shape):
    """A single stored value as the scalar ``shape == ()`` asks for (the
    archive keeps 0-d arrays as (1,))."""
    return array.reshape(()) if shape == () and array.size == 1 else array


def _load_posterior(path, model, arrays, meta, k, d):
    """The posterior and priors of a saved BayesianGaussianMixture, each
    field checked (shape, finite, positive where it must be)."""
    from ._engine import Run

    kind = model.covariance_type
    process = model.weight_concentration_prior_type == "dirichlet_process"
    shapes = {
        "weight_concentration": (2, k) if process else (k,),
        "mean_precision": (k,),
        "degrees_of_freedom": () if kind == "tied" else (k,),
    }
    posterior = {}
    for name, shape in shapes.items():
        field = f"posterior_{name}"
        if field not in arrays:
            raise ValueError(f"{path} is not a complete BayesianGaussianMixture: missing {field}.")
        value = check_array(path, field, _scalar_if_one(arrays[field], shape), shape)
        if not np.all(np.isfinite(value)):
            raise invalid(path, field, "holds NaN or infinite values")
        if not np.all(value > 0):
            raise invalid(path, field, "holds values that are not positive")
        posterior[name] = value
    if np.any(posterior["degrees_of_freedom"] <= d - 1):
        raise invalid(path, "posterior_degrees_of_freedom", f"holds values not above n_features - 1 = {d - 1}")
    priors = meta.get("priors")
    if not isinstance(priors, dict):
        raise invalid(path, "priors", f"is {type(priors).__name__}, not a JSON object")
    for name in BAYESIAN_PRIOR_NUMBERS:
        value = check_number(path, f"priors.{name}", priors.get(name))
        if not (0 < value < math.inf):
            raise invalid(path, f"priors.{name}", f"is {value!r}, not a positive finite number")
        setattr(model, name + "_", value)
    if not model.degrees_of_freedom_prior_ > d - 1:
        raise invalid(
            path, "priors.degrees_of_freedom_prior",
            f"is {model.degrees_of_freedom_prior_!r}, not above n_features - 1 = {d - 1}",
        )
    prior_shapes = {"mean_prior": (d,), "covariance_prior": {"full": (d, d), "tied": (d, d), "diag": (d,), "spherical": ()}[kind]}
    for name, shape in prior_shapes.items():
        if name not in arrays:
            raise ValueError(f"{path} is not a complete BayesianGaussianMixture: missing {name}.")
        value = check_array(path, name, _scalar_if_one(arrays[name], shape), shape)
        if not np.all(np.isfinite(value)):
            raise invalid(path, name, "holds NaN or infinite values")
        setattr(model, name + "_", value)
    _check_covariance_prior(path, kind, model.covariance_prior_)
    if kind == "spherical":
        model.covariance_prior_ = float(model.covariance_prior_)
    run = Run(kind, model.weights_, model.means_, model.covariances_, model.precisions_cholesky_, posterior=posterior)
    model._set_posterior(run)
    # The weights are the posterior's mean, computed in float64 and rounded
    # to the saved dtype: they agree to that dtype's precision.
    expected = model._family().expected_weights(posterior["weight_concentration"])
    rtol = max(1e-9, 4 * float(np.finfo(model.weights_.dtype).eps))
    if not np.allclose(expected, model.weights_, rtol=rtol, atol=1e-12):
        raise invalid(path, "weights", "disagree with posterior_weight_concentration")


def _check_covariance_prior(path, kind, prior):
    """The prior's variances are not negative, and a full or tied prior is a
    symmetric positive semi-definite matrix up to rounding (one computed from
    data with a constant feature has a zero variance: still a valid file)."""
    if kind in ("diag", "spherical"):
        if np.any(prior < 0):
            raise invalid(path, "covariance_prior", "holds negative variances")
        return
    if np.any(np.diag(prior) < 0):
        raise invalid(path, "covariance_prior", "has a negative variance on its diagonal")
    if not np.allclose(prior, prior.T):  # the estimator's test of a given prior
        raise invalid(path, "covariance_prior", "is not symmetric")
    eigenvalues = np.linalg.eigvalsh(prior)
    if eigenvalues[0] < -1e-8 * max(eigenvalues[-1], 0.0):
        raise invalid(path, "covariance_prior", f"is not positive semi-definite (eigenvalue {eigenvalues[0]:.3g})")
