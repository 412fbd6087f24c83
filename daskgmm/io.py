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
* a GaussianMixture's metadata entry ``noise``: its noise component's
  ``weight``, ``volume`` and ``box`` (``[lower, upper]``, two lists of
  ``n_features`` numbers, or null for a volume given as a number); null
  (or absent, in files written before it) without a noise component.
* ``fit_history``, float64 (n_records, 5): ``history_``, one row per M-step
  of ``iteration``, ``lower_bound``, ``change``, ``seconds``, ``n_chunks``
  (absent in files written before it was kept).
* what continues a stream of ``partial_fit`` exactly, when the model has
  it: ``fit_statistics_<field>``, the merged statistics of the fit's last
  pass (the parameters are their M-step; a stepwise stream continuing the
  fit starts from them); the metadata's ``stream`` entry (``mode``,
  ``n_batch_iter``, ``n_samples_seen``, ``batch_offset``, ``n_chunks``,
  ``weight_scale``: the power of two an exact pass's statistics count the
  sample weights divided by, 1 when absent; null without a stream) and
  ``stream_statistics_<field>``, the running statistics of a stepwise
  stream or the merged statistics of an unfinished exact pass.  ``<field>`` is each of ``n_samples``,
  ``log_likelihood``, ``nk``, ``means``, ``scatter``, in the statistics'
  own dtype.  A file without them loads as a model without a stream.

Loading restores each array in the dtype it was saved in, so a loaded model
holds bitwise the arrays of the saved one.  It checks every field: the
metadata's types and their agreement with the arrays' shapes and dtypes, and
the arrays' values (finite; weights non-negative and summing to 1, less the
noise component's weight where there is one; precision
factors triangular with a positive diagonal; covariances symmetric with a
positive diagonal and the inverses of the precisions, to the precision of
the saved dtype).  Any failure is a ValueError naming the field.

Writing
-------
Files are written atomically by the archive layer (:mod:`daskgmm._archive`):
to a temporary path beside the target, moved into place only when
complete; an existing file is replaced only with ``overwrite=True``, and a
directory, FIFO, socket or device never.  What each estimator saves is
declared once, in :mod:`daskgmm._state`.
"""

from __future__ import annotations

import os

from . import _state
from ._archive import (  # noqa: F401 - the file layer, imported from here by the command line and tests
    FORMAT,
    FORMAT_VERSION,
    RECORD_FIELDS,
    _host_tag,
    check_integer,
    check_regular_file,
    check_replaceable,
    discard,
    invalid,
    publish,
    read_archive,
    same_or_nested,
    temporary_path,
    write_archive,
)
from ._state import save_model  # noqa: F401 - public here
from .bayesian_mixture import BayesianGaussianMixture
from .mixture import GaussianMixture

# The estimators a file may hold, by the name its metadata gives
# ('estimator'; a file without one holds a GaussianMixture).
ESTIMATORS = {"GaussianMixture": GaussianMixture, "BayesianGaussianMixture": BayesianGaussianMixture}


def _estimator_class(path, meta):
    """The class of the estimator the file holds."""
    estimator = meta.get("estimator", "GaussianMixture")
    if not isinstance(estimator, str) or estimator not in ESTIMATORS:
        raise invalid(path, "estimator", f"is {estimator!r}, not one of {sorted(ESTIMATORS)}")
    return ESTIMATORS[estimator]


def _estimator(path, meta, cls, layout):
    """An estimator of class ``cls`` with the settings of ``meta['params']``,
    checked by the estimator and against the file's sizes."""
    params = meta.get("params", {})
    if not isinstance(params, dict):
        raise invalid(path, "params", f"is {type(params).__name__}, not a JSON object")
    valid = set(cls().get_params(deep=False))
    params = {key: value for key, value in params.items() if key in valid}
    for key in ("weights_init", "means_init", "precisions_init", "mean_prior", "covariance_prior"):
        params.pop(key, None)  # arrays: described, not restored (the fitted priors are)
    for key, value in (("covariance_type", layout.covariance_type), ("n_components", layout.n_components)):
        if key in params and params[key] != value:
            raise invalid(path, f"params.{key}", f"is {params[key]!r} but the file's {key} is {value!r}")
    params.update(covariance_type=layout.covariance_type, n_components=layout.n_components)
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
    arrays, meta = read_archive(path)
    kind = meta.get("kind", "model")
    if kind == "checkpoint":
        raise ValueError(
            f"{path} is a daskgmm checkpoint, not a saved model: resume it with fit(X, checkpoint=PATH) "
            "(or daskgmm fit --checkpoint) and save the fitted model."
        )
    if kind != "model":
        raise invalid(path, "kind", f"is {kind!r}, not 'model'")
    cls = _estimator_class(path, meta)
    return _state.read_model(
        path, arrays, meta, cls._state_declaration, lambda layout: _estimator(path, meta, cls, layout)
    )
