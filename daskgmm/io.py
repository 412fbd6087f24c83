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
* one float64 array per fitted parameter: ``weights``, ``means``,
  ``covariances``, ``precisions_cholesky``.

Files are written to a temporary file in the same folder and renamed into
place, so a crash never leaves a half-written file, and an existing file is
never replaced unless ``overwrite=True``.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile

import numpy as np

FORMAT = "daskgmm-model"
FORMAT_VERSION = 1
ARRAY_NAMES = ("weights", "means", "covariances", "precisions_cholesky")


def write_archive(path, arrays, meta, *, overwrite=False):
    """Atomically write ``arrays`` (name -> ndarray) and ``meta`` (JSON dict).

    Raises
    ------
    FileExistsError
        ``path`` exists and ``overwrite`` is False.
    """
    path = os.fspath(path)
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True to replace it.")
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    document = dict(meta, format=FORMAT, format_version=FORMAT_VERSION)
    payload = {name: np.ascontiguousarray(value) for name, value in arrays.items()}
    payload["__daskgmm__"] = np.array(json.dumps(document))
    # The temporary file is named after its target, so what a killed writer
    # left behind is recognisable and is removed by the next write.
    prefix = f".{os.path.basename(path)}.daskgmm-"
    for name in os.listdir(folder):
        if name.startswith(prefix) and name.endswith(".tmp"):
            try:
                os.unlink(os.path.join(folder, name))
            except OSError:
                pass
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def read_archive(path):
    """Read an archive written by :func:`write_archive`.

    Returns
    -------
    arrays : dict of ndarray
    meta : dict

    Raises
    ------
    FileNotFoundError, ValueError (truncated, corrupt or foreign file)
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No such file: {path}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "__daskgmm__" not in archive.files:
                raise ValueError(f"{path} is not a daskgmm file (no daskgmm metadata).")
            meta = json.loads(str(archive["__daskgmm__"][()]))
            arrays = {name: archive[name] for name in archive.files if name != "__daskgmm__"}
    except (zipfile.BadZipFile, OSError, EOFError, json.JSONDecodeError, KeyError) as exc:
        raise ValueError(f"{path} is not a readable daskgmm file (truncated or corrupt): {exc}") from None
    except ValueError as exc:
        if "daskgmm" in str(exc):
            raise
        raise ValueError(f"{path} is not a readable daskgmm file (truncated or corrupt): {exc}") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path} is not a daskgmm file (its metadata is not a JSON object).")
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not a daskgmm file (format {meta.get('format')!r}).")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(
            f"{path} was written by a newer daskgmm (format version {meta['format_version']}); upgrade daskgmm."
        )
    return arrays, meta


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


def model_meta(model, kind="model"):
    """The metadata document of a fitted estimator."""
    from . import __version__

    params, described = _json_params(model)
    return {
        "kind": kind,
        "daskgmm_version": __version__,
        "covariance_type": model.covariance_type,
        "n_components": int(model.n_components),
        "n_features": int(model.n_features_in_),
        "dtype": "float64",
        "params": params,
        "params_repr": described,
        "fit": {
            "converged": bool(model.converged_),
            "n_iter": int(model.n_iter_),
            "lower_bound": float(model.lower_bound_),
            "lower_bounds": [float(v) for v in getattr(model, "lower_bounds_", [])],
            "n_features_in": int(model.n_features_in_),
        },
    }


def save_model(model, path, *, overwrite=False, extra=None):
    """Save a fitted :class:`daskgmm.GaussianMixture` to ``path``.

    ``extra`` (a JSON-serialisable dict) is merged into the metadata
    document, e.g. the command line records the input's layout there.
    """
    model._check_is_fitted()
    arrays = {name: np.asarray(getattr(model, name + "_"), dtype=np.float64) for name in ARRAY_NAMES}
    meta = model_meta(model)
    if extra:
        reserved = sorted(set(extra) & (set(meta) | {"format", "format_version"}))
        if reserved:
            raise ValueError(f"extra metadata cannot replace the reserved entries {reserved}.")
        meta.update(extra)
    return write_archive(path, arrays, meta, overwrite=overwrite)


def load(path):
    """Load a model saved with :meth:`GaussianMixture.save`; runs no code from the file."""
    from ._blocks import COVARIANCE_TYPES
    from ._covariance import covariance_shape, precisions_from_cholesky
    from .mixture import GaussianMixture

    arrays, meta = read_archive(path)
    missing = [name for name in ARRAY_NAMES if name not in arrays]
    if missing:
        raise ValueError(f"{path} is not a complete daskgmm model: missing {', '.join(missing)}.")
    try:
        kind, k, d = meta["covariance_type"], int(meta["n_components"]), int(meta["n_features"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path} is not a complete daskgmm model: bad or missing metadata ({exc!r}).") from None
    if kind not in COVARIANCE_TYPES:
        raise ValueError(f"{path}: unknown covariance_type {kind!r} in the metadata.")
    expected = {
        "weights": (k,),
        "means": (k, d),
        "covariances": covariance_shape(kind, k, d),
        "precisions_cholesky": covariance_shape(kind, k, d),
    }
    for name, shape in expected.items():
        if arrays[name].shape != shape:
            raise ValueError(f"{path}: '{name}' has shape {arrays[name].shape}, expected {shape}.")
    valid = set(GaussianMixture._param_names())
    params = {key: value for key, value in meta.get("params", {}).items() if key in valid}
    for key in ("weights_init", "means_init", "precisions_init"):
        params.pop(key, None)
    model = GaussianMixture(**params)
    model.weights_ = arrays["weights"]
    model.means_ = arrays["means"]
    model.covariances_ = arrays["covariances"]
    model.precisions_cholesky_ = arrays["precisions_cholesky"]
    model.precisions_ = precisions_from_cholesky(model.precisions_cholesky_, kind)
    fit = meta.get("fit", {})
    model.converged_ = bool(fit.get("converged", False))
    model.n_iter_ = int(fit.get("n_iter", 0))
    model.lower_bound_ = float(fit.get("lower_bound", float("nan")))
    model.lower_bounds_ = list(fit.get("lower_bounds", []))
    model.n_features_in_ = int(fit.get("n_features_in", d))
    return model
