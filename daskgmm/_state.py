"""What an estimator's fitted state is, declared once.

Each estimator class names its :class:`State` (``_state_declaration``): the
:class:`Field` s of its fitted state, each with the attribute it is on the
estimator, the name it has in a saved file (an array member, or an entry
``group.key`` of the metadata document), its kind, the rule of its shape
(from the covariance type, the number of components and of features), its
dtype and the checks a file's value must pass.  Everything that moves an
estimator's state reads this declaration:

* :func:`save_model` writes every field, :func:`read_model` checks and
  restores every field (:mod:`daskgmm.io` documents the format);
* a checkpoint saves, for every run, the fields of kind
  :data:`PARAMETER` and :data:`POSTERIOR` (:mod:`daskgmm._checkpoint`);
* a warm start, ``partial_fit`` and the estimator's other hooks exchange the
  same fields with an EM run (:func:`run_fields`, :func:`set_posterior`);
* pickling keeps every attribute: tests/test_state.py checks that pickle
  and ``load(save(m))`` give every declared field alike, and that a fitted
  estimator holds nothing the declaration does not name.

A GaussianMixture's declaration is its parameters, the record of its fit,
the statistics its stream of ``partial_fit`` continues from and that
stream's state; a BayesianGaussianMixture's adds the variational posterior
and the priors it was fitted with.
"""

from __future__ import annotations

import json
import math
import operator
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ._archive import (
    check_array,
    check_integer,
    check_number,
    check_parameters,
    check_records,
    check_statistics,
    invalid,
    RECORD_FIELDS,
    records_array,
    records_from_array,
    statistics_arrays,
    write_archive,
)
from ._covariance import COVARIANCE_TYPES, covariance_model, covariance_shape, precisions_from_cholesky
from ._engine.online import ONLINE_MODES, OnlineState
from ._version import __version__

# Kinds of state.
PARAMETER = "parameter"  # the mixture's parameters, in the model's float dtype
POSTERIOR = "posterior"  # a variational posterior (float64), beside the parameters
PRIOR = "prior"  # the priors a variational fit used (float64 arrays, or numbers in 'priors')
STATISTICS = "statistics"  # merged statistics of a pass (daskgmm._blocks.Stats), in their own dtype
RECORD = "record"  # the record of the fit: convergence, lower bounds, iteration records
STREAM = "stream"  # where a stream of partial_fit is (daskgmm._engine.OnlineState)
NOISE = "noise"  # GaussianMixture's noise component: its weight, volume and box

# The float dtypes a model's parameters can have (a fit's data dtype).
PARAMETER_DTYPES = ("float32", "float64")

# Dtype rules of array fields: the model's float dtype (float32 after a fit
# on float32 data), float64, or the field's own (statistics keep theirs, so
# that a stream continues bitwise).
MODEL_DTYPE, FLOAT64, OWN_DTYPE = "model", "float64", "own"

# A field without ``default`` must be in the file.
REQUIRED = object()

# Groups of entries the document holds as null when the estimator has none
# of them: a model without a stream, or without a noise component.
_NULLABLE_GROUPS = ("stream", "noise")


@dataclass(frozen=True)
class Layout:
    """What the shapes of a model's fields follow from; ``estimator`` gives
    the settings some shapes depend on (the posterior's of a Dirichlet
    process)."""

    covariance_type: str
    n_components: int
    n_features: int
    estimator: object = None


@dataclass(frozen=True)
class Field:
    """One piece of an estimator's fitted state.

    Parameters
    ----------
    name : str
        Its name in a saved file: an array member (``posterior_`` and the
        posterior's name for :data:`POSTERIOR`; the prefix of the members of
        :data:`STATISTICS`), or ``group.key``, an entry of the metadata
        document.
    kind : str
        :data:`PARAMETER`, :data:`POSTERIOR`, :data:`PRIOR`,
        :data:`STATISTICS`, :data:`RECORD` or :data:`STREAM`.
    attribute : str
        The estimator's attribute (``owner.attribute`` for one of an object
        the estimator holds).
    shape : callable, optional
        ``shape(layout) -> tuple`` of an array field (None for an axis of
        any length).
    dtype : str
        :data:`MODEL_DTYPE`, :data:`FLOAT64`, or :data:`OWN_DTYPE` for merged
        statistics (``<name>_<statistic>`` members, in their own dtype).
    check : callable, optional
        ``check(where, name, value, layout) -> value``: the file's value (an
        array of the right shape, as float64, or the JSON entry) checked, a
        ValueError naming ``name`` otherwise, and returned in the form the
        attribute takes.
    pack : callable, optional
        ``pack(estimator) -> value``: the attribute in the file's form (the
        array of an array field, before its dtype rule), None when the
        estimator has none.  Default: the attribute, or None.
    to_json : callable, optional
        The type of an entry's JSON value (``bool``, ``int``, ``float``),
        applied to the attribute.
    unpack : callable, optional
        ``unpack(estimator, value) -> attribute``: the checked value as the
        attribute holds it.  Default: the value.
    default : object
        The value of an entry the file lacks; :data:`REQUIRED`: the file
        must hold it.
    """

    name: str
    kind: str
    attribute: str
    shape: Callable | None = None
    dtype: str = FLOAT64
    check: Callable | None = None
    pack: Callable | None = None
    to_json: Callable | None = None
    unpack: Callable | None = None
    default: object = REQUIRED

    @property
    def key(self):
        """The field's name in an EM run: ``run.<key>`` for a parameter,
        ``run.posterior[key]`` for a posterior."""
        return self.name[len("posterior_"):] if self.kind == POSTERIOR else self.name

    @property
    def in_metadata(self):
        return "." in self.name

    def get(self, estimator):
        """The field's value in the file's form (None when absent)."""
        if self.pack is not None:
            return self.pack(estimator)
        try:
            value = operator.attrgetter(self.attribute)(estimator)
        except AttributeError:  # not fitted, or no stream
            return None
        return value if value is None or self.to_json is None else self.to_json(value)

    def to_attribute(self, estimator, value):
        """``value``, checked, as the estimator's attribute holds it."""
        return value if self.unpack is None else self.unpack(estimator, value)


@dataclass(frozen=True)
class State:
    """The declaration of an estimator's state.

    ``estimator`` names the class in a file (None: not written, a
    GaussianMixture); ``fields`` are in the order of the file's members;
    ``derived`` are the attributes set from the fields (``precisions_``,
    the counts of the stream); ``transient`` those that describe the last
    call, not the model (not saved, kept by pickle); ``check`` is the test
    of the fields together, after they are set (``check(where, estimator)``).
    """

    estimator: str | None
    fields: tuple
    derived: tuple = ()
    transient: tuple = ()
    check: Callable | None = None

    def of_kind(self, kind):
        return tuple(field for field in self.fields if field.kind == kind)

    def extended(self, estimator, fields, *, after, check=None):
        """This state with ``fields`` inserted after the field ``after``."""
        at = [field.name for field in self.fields].index(after) + 1
        return State(
            estimator, self.fields[:at] + tuple(fields) + self.fields[at:], self.derived, self.transient, check
        )

    @property
    def attributes(self):
        """The estimator's attributes the declaration covers."""
        roots = [field.attribute.split(".")[0] for field in self.fields]
        return tuple(dict.fromkeys(roots + list(self.derived) + list(self.transient)))


# --------------------------------------------------------------------------
# Shapes and checks of the fields
# --------------------------------------------------------------------------


def _components(layout):
    return (layout.n_components,)


def _means(layout):
    return (layout.n_components, layout.n_features)


def _covariances(layout):
    return covariance_shape(layout.covariance_type, layout.n_components, layout.n_features)


def _boolean(where, name, value, layout):
    if not isinstance(value, bool):
        raise invalid(where, name, f"is {value!r}, not true or false")
    return value


def _count(where, name, value, layout):
    return check_integer(where, name, value, minimum=0)


def _bound(where, name, value, layout):
    return check_number(where, name, value, allow_nan=True)


def _bounds(where, name, value, layout):
    if not isinstance(value, list):
        raise invalid(where, name, f"is {type(value).__name__}, not a list")
    return [check_number(where, name, item) for item in value]


def _n_features_in(where, name, value, layout):
    n_features_in = check_integer(where, name, value, minimum=1)
    if n_features_in != layout.n_features:
        raise invalid(where, name, f"is {n_features_in} but the file's n_features is {layout.n_features}")
    return n_features_in


def _feature_names(where, name, value, layout):
    d = layout.n_features
    if value is not None and (
        not isinstance(value, list) or len(value) != d or not all(isinstance(item, str) for item in value)
    ):
        raise invalid(where, name, f"is {value!r}, not a list of {d} strings")
    return value


def _records(where, name, rows, layout):
    check_records(where, name, rows)
    return records_from_array(rows)


def _positive(where, name, value, layout):
    """Finite and positive: a posterior's concentrations, precisions and
    degrees of freedom."""
    if not np.all(np.isfinite(value)):
        raise invalid(where, name, "holds NaN or infinite values")
    if not np.all(value > 0):
        raise invalid(where, name, "holds values that are not positive")
    return value


def _degrees_of_freedom(where, name, value, layout):
    value = _positive(where, name, value, layout)
    d = layout.n_features
    if np.any(value <= d - 1):
        raise invalid(where, name, f"holds values not above n_features - 1 = {d - 1}")
    return value


def _prior_number(where, name, value, layout):
    value = check_number(where, name, value)
    if not (0 < value < math.inf):
        raise invalid(where, name, f"is {value!r}, not a positive finite number")
    return value


def _degrees_of_freedom_prior(where, name, value, layout):
    value = _prior_number(where, name, value, layout)
    d = layout.n_features
    if not value > d - 1:
        raise invalid(where, name, f"is {value!r}, not above n_features - 1 = {d - 1}")
    return value


def _finite(where, name, value, layout):
    if not np.all(np.isfinite(value)):
        raise invalid(where, name, "holds NaN or infinite values")
    return value


def _covariance_prior(where, name, prior, layout):
    """Finite; the variances not negative, and a full or tied prior a
    symmetric positive semi-definite matrix up to rounding (one computed
    from data with a constant feature has a zero variance: still a valid
    file)."""
    prior = _finite(where, name, prior, layout)

    def fail(message):
        raise invalid(where, name, message)

    covariance_model(layout.covariance_type).check_saved_covariance_prior(prior, fail)
    return prior


def _mode(where, name, value, layout):
    if not isinstance(value, str) or value not in ONLINE_MODES:
        raise invalid(where, name, f"is {value!r}, not one of {list(ONLINE_MODES)}")
    return value


def _weight_scale(where, name, value, layout):
    value = check_number(where, name, value)
    if not (math.isfinite(value) and value > 0 and math.frexp(value)[0] == 0.5):
        raise invalid(where, name, f"is {value!r}, not a positive power of two")
    return value


def _samples_seen(where, name, value, layout):
    value = check_number(where, name, value)
    if not (math.isfinite(value) and value >= 0):
        raise invalid(where, name, f"is {value!r}, not a finite number >= 0")
    return value


def _weight_concentration(estimator):
    concentration = estimator.weight_concentration_
    if estimator.weight_concentration_prior_type == "dirichlet_process":
        concentration = np.stack([np.asarray(concentration[0]), np.asarray(concentration[1])])
    return concentration


def _concentration_attribute(estimator, concentration):
    concentration = np.asarray(concentration, dtype=np.float64)
    if estimator.weight_concentration_prior_type == "dirichlet_process":
        return (concentration[0].copy(), concentration[1].copy())
    return concentration.copy()


def _weight_concentration_shape(layout):
    process = layout.estimator.weight_concentration_prior_type == "dirichlet_process"
    return (2, layout.n_components) if process else (layout.n_components,)


def _degrees_of_freedom_shape(layout):
    return covariance_model(layout.covariance_type).degrees_of_freedom_shape(layout.n_components)


def _covariance_prior_shape(layout):
    return covariance_model(layout.covariance_type).covariance_prior_shape(layout.n_features)


def _number_if_scalar(estimator, value):
    """A 0-d posterior or prior (tied degrees of freedom, a spherical
    covariance prior) as the float the estimator holds."""
    value = np.asarray(value, dtype=np.float64)
    return float(value) if value.ndim == 0 else value.copy()


def _copy(estimator, value):
    return np.asarray(value, dtype=np.float64).copy()


def _weights_agree(where, estimator):
    """The weights are the posterior's mean, computed in float64 and rounded
    to the saved dtype: they agree to that dtype's precision."""
    expected = estimator._family().expected_weights(_weight_concentration(estimator))
    rtol = max(1e-9, 4 * float(np.finfo(estimator.weights_.dtype).eps))
    if not np.allclose(expected, estimator.weights_, rtol=rtol, atol=1e-12):
        raise invalid(where, "weights", "disagree with posterior_weight_concentration")


def _noise_weight(where, name, value, layout):
    if value is None:
        return None
    value = check_number(where, name, value)
    if not 0 <= value < 1:
        raise invalid(where, name, f"is {value!r}, not in [0, 1)")
    return value


def _noise_volume(where, name, value, layout):
    if value is None:
        return None
    value = check_number(where, name, value)
    if not 0 < value < math.inf:
        raise invalid(where, name, f"is {value!r}, not a positive finite number")
    return value


def _noise_box(where, name, value, layout):
    if value is None:
        return None
    box = np.asarray(value, dtype=np.float64) if isinstance(value, list) and all(
        isinstance(row, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in row)
        for row in value
    ) else None
    if box is None or box.shape != (2, layout.n_features):
        raise invalid(where, name, f"is not a list of 2 lists of {layout.n_features} numbers (lower, upper)")
    if not np.all(np.isfinite(box)) or not np.all(box[1] > box[0]):
        raise invalid(where, name, "is not a finite box with each upper bound above its lower one")
    return box


def _noise_agrees(where, estimator):
    """A noise weight, volume and box (where one is) come together."""
    volume = getattr(estimator, "noise_volume_", None)
    weight = getattr(estimator, "noise_weight_", None)
    if (volume is None) != (weight is None) or (volume is None and getattr(estimator, "noise_box_", None) is not None):
        raise invalid(where, "noise", "holds a noise weight, volume or box without the others")


def _noise_total(meta):
    """``1 - noise weight`` of a model document (1 without noise): what
    its Gaussian weights sum to.  The entry's own check comes later."""
    noise = meta.get("noise")
    weight = noise.get("weight") if isinstance(noise, dict) else None
    return 1.0 - weight if isinstance(weight, float) and 0 <= weight < 1 else 1.0


# --------------------------------------------------------------------------
# The declarations
# --------------------------------------------------------------------------

_MIXTURE = State(
    None,
    (
        Field("weights", PARAMETER, "weights_", _components, MODEL_DTYPE),
        Field("means", PARAMETER, "means_", _means, MODEL_DTYPE),
        Field("covariances", PARAMETER, "covariances_", _covariances, MODEL_DTYPE),
        Field("precisions_cholesky", PARAMETER, "precisions_cholesky_", _covariances, MODEL_DTYPE),
        Field("fit.converged", RECORD, "converged_", check=_boolean, to_json=bool),
        Field("fit.n_iter", RECORD, "n_iter_", check=_count, to_json=int),
        Field("fit.lower_bound", RECORD, "lower_bound_", check=_bound, to_json=float),
        Field(
            "fit.lower_bounds", RECORD, "lower_bounds_", check=_bounds,
            pack=lambda estimator: [float(v) for v in getattr(estimator, "lower_bounds_", [])],
        ),
        Field("fit.n_features_in", RECORD, "n_features_in_", check=_n_features_in, to_json=int),
        # Column names of a DataFrame, or the feature coordinate of labelled
        # data (daskgmm.xarray): checked again at predict.
        Field(
            "fit.feature_names_in", RECORD, "feature_names_in_", check=_feature_names, default=None,
            pack=lambda estimator: (
                [str(name) for name in estimator.feature_names_in_] if hasattr(estimator, "feature_names_in_") else None
            ),
            unpack=lambda estimator, names: np.asarray(names, dtype=object),
        ),
        # The merged statistics of the fit's last pass (the parameters are
        # their M-step): a stepwise stream continuing the fit starts from them.
        Field("fit_statistics", STATISTICS, "_fit_statistics", dtype=OWN_DTYPE),
        # The running statistics of a stepwise stream, or the merged
        # statistics of an unfinished exact pass.
        Field("stream_statistics", STREAM, "_online_state.statistics", dtype=OWN_DTYPE),
        Field("stream.mode", STREAM, "_online_state.mode", check=_mode, default=None),
        Field("stream.n_batch_iter", STREAM, "_online_state.n_batch_iter", check=_count, to_json=int, default=None),
        Field("stream.n_samples_seen", STREAM, "_online_state.n_samples_seen", check=_samples_seen, to_json=float,
              default=None),
        Field("stream.batch_offset", STREAM, "_online_state.batch_offset", check=_count, to_json=int, default=None),
        Field("stream.n_chunks", STREAM, "_online_state.n_chunks", check=_count, to_json=int, default=None),
        # Files written before exact passes scaled the weights have none: 1.
        Field("stream.weight_scale", STREAM, "_online_state.weight_scale", check=_weight_scale, to_json=float,
              default=1.0),
        # Absent in files written before it was kept.
        Field("fit_history", RECORD, "history_", lambda layout: (None, len(RECORD_FIELDS)), check=_records,
              pack=lambda estimator: records_array(estimator.history_) if hasattr(estimator, "history_") else None),
    ),
    derived=("precisions_", "n_batch_iter_", "n_samples_seen_"),
    transient=("n_passes_", "persisted_", "n_samples_skipped_", "n_samples_incomplete_", "_missing_summary"),
)

# GaussianMixture(noise=...): the noise's weight, its volume and, for
# noise='box', its box (JSON numbers: float64 round trips exactly); a model
# without noise has none of them (its document's "noise" is null).
GAUSSIAN_MIXTURE = _MIXTURE.extended(
    None,
    (
        Field("noise.weight", NOISE, "noise_weight_", check=_noise_weight, to_json=float, default=None),
        Field("noise.volume", NOISE, "noise_volume_", check=_noise_volume, to_json=float, default=None),
        Field(
            "noise.box", NOISE, "noise_box_", check=_noise_box, default=None,
            pack=lambda estimator: (
                None if getattr(estimator, "noise_box_", None) is None
                else np.asarray(estimator.noise_box_, dtype=np.float64).tolist()
            ),
        ),
    ),
    after="fit.feature_names_in",
    check=_noise_agrees,
)

BAYESIAN_GAUSSIAN_MIXTURE = _MIXTURE.extended(
    "BayesianGaussianMixture",
    (
        Field("posterior_weight_concentration", POSTERIOR, "weight_concentration_", _weight_concentration_shape,
              check=_positive, pack=_weight_concentration, unpack=_concentration_attribute),
        Field("posterior_mean_precision", POSTERIOR, "mean_precision_", _components, check=_positive, unpack=_copy),
        Field("posterior_degrees_of_freedom", POSTERIOR, "degrees_of_freedom_", _degrees_of_freedom_shape,
              check=_degrees_of_freedom, unpack=_number_if_scalar),
        Field("priors.weight_concentration_prior", PRIOR, "weight_concentration_prior_", check=_prior_number,
              to_json=float, default=None),
        Field("priors.mean_precision_prior", PRIOR, "mean_precision_prior_", check=_prior_number, to_json=float,
              default=None),
        Field("priors.degrees_of_freedom_prior", PRIOR, "degrees_of_freedom_prior_", check=_degrees_of_freedom_prior,
              to_json=float, default=None),
        Field("mean_prior", PRIOR, "mean_prior_", lambda layout: (layout.n_features,), check=_finite),
        Field("covariance_prior", PRIOR, "covariance_prior_", _covariance_prior_shape, check=_covariance_prior,
              unpack=_number_if_scalar),
    ),
    after="fit.feature_names_in",
    check=_weights_agree,
)


# --------------------------------------------------------------------------
# EM runs
# --------------------------------------------------------------------------


def run_fields(estimator):
    """The fitted parameters and posterior of ``estimator`` as an EM run
    takes them (float64): ``(parameters, posterior)``, name -> array."""
    state = estimator._state_declaration
    parameters = {field.key: np.asarray(field.get(estimator), dtype=np.float64) for field in state.of_kind(PARAMETER)}
    posterior = {field.key: np.asarray(field.get(estimator), dtype=np.float64) for field in state.of_kind(POSTERIOR)}
    return parameters, posterior


def set_posterior(estimator, posterior):
    """Set the posterior fields of ``estimator`` from a run's ``posterior``."""
    for field in estimator._state_declaration.of_kind(POSTERIOR):
        setattr(estimator, field.attribute, field.to_attribute(estimator, posterior[field.key]))


# --------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------


def parameter_dtype(estimator):
    """The float dtype of a fitted estimator's parameters (float32 after a
    fit on float32 data), in which they are saved and loaded."""
    parameters = estimator._state_declaration.of_kind(PARAMETER)
    dtype = np.result_type(*(np.asarray(field.get(estimator)) for field in parameters))
    return dtype if dtype.name in PARAMETER_DTYPES else np.dtype(np.float64)


def json_params(estimator):
    """Constructor settings that JSON can hold exactly; the others (a
    RandomState, say) are recorded as text under ``params_repr`` only, so that
    loading never turns a description back into a wrong parameter value."""
    params, described = {}, {}
    for name, value in estimator.get_params().items():
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


# The document's entries after the header, in the order files have them.
_DOCUMENT_ORDER = ("fit", "estimator", "noise", "priors", "stream")


def archive_of(estimator):
    """The arrays and metadata document that save a fitted ``estimator``."""
    state = estimator._state_declaration
    dtype = parameter_dtype(estimator)
    params, described = json_params(estimator)
    header = {
        "kind": "model",
        "daskgmm_version": __version__,
        "covariance_type": estimator.covariance_type,
        "n_components": int(estimator.n_components),
        "n_features": int(estimator.n_features_in_),
        "dtype": dtype.name,
        "params": params,
        "params_repr": described,
    }
    arrays, groups = {}, {}
    if state.estimator is not None:
        groups["estimator"] = state.estimator
    for field in state.fields:
        value = field.get(estimator)
        if field.in_metadata:
            group, key = field.name.split(".")
            groups.setdefault(group, {})[key] = value
        elif value is None:
            continue
        elif field.dtype == OWN_DTYPE:
            arrays.update(statistics_arrays(field.name, value))
        else:
            arrays[field.name] = np.asarray(value, dtype=dtype if field.dtype == MODEL_DTYPE else np.float64)
    for group in _NULLABLE_GROUPS:
        if group in groups and all(value is None for value in groups[group].values()):
            groups[group] = None  # a model without a stream
    return arrays, dict(header, **{name: groups[name] for name in _DOCUMENT_ORDER if name in groups})


def save_model(model, path, *, overwrite=False, extra=None):
    """Save a fitted :class:`daskgmm.GaussianMixture` or
    :class:`daskgmm.BayesianGaussianMixture` to ``path``.

    ``extra`` (a JSON-serialisable dict) is merged into the metadata
    document, e.g. the command line records the input's layout there.
    """
    model._check_is_fitted(in_use=False)  # the file keeps an unfinished pass: no warning
    arrays, meta = archive_of(model)
    if extra:
        reserved = sorted(set(extra) & (set(meta) | {"format", "format_version"}))
        if reserved:
            raise ValueError(f"extra metadata cannot replace the reserved entries {reserved}.")
        meta.update(extra)
    return write_archive(path, arrays, meta, overwrite=overwrite)


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------


def read_layout(path, arrays, meta, state):
    """The covariance type, sizes and parameter dtype a model file declares,
    each checked, and its parameters present."""
    missing = [field.name for field in state.of_kind(PARAMETER) if field.name not in arrays]
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
    dtype = meta["dtype"]
    if not isinstance(dtype, str) or dtype not in PARAMETER_DTYPES:
        raise invalid(path, "dtype", f"is {dtype!r}, not one of {list(PARAMETER_DTYPES)}")
    return Layout(covariance_type, k, d), np.dtype(dtype)


def _entry(path, meta, field):
    """The metadata entry ``group.key`` of ``field`` (its default when
    absent, unless required; None in a null group of
    :data:`_NULLABLE_GROUPS`)."""
    group, key = field.name.split(".")
    holder = meta.get(group)
    if holder is None and group in _NULLABLE_GROUPS:
        return None
    if holder is None and field.default is not REQUIRED:  # a group files written before it lack
        return field.default
    if not isinstance(holder, dict):
        required = holder is None and field.default is REQUIRED
        raise invalid(path, group, "is missing" if required else f"is {type(holder).__name__}, not a JSON object")
    if key not in holder:
        if field.default is REQUIRED:
            raise invalid(path, field.name, "is missing")
        return field.default
    return holder[key]


def _scalar_if_one(array, shape):
    """A single stored value as the scalar ``shape == ()`` asks for (the
    archive keeps 0-d arrays as (1,))."""
    return array.reshape(()) if shape == () and array.size == 1 else array


def _read_field(path, arrays, meta, field, layout, state):
    """The checked value of ``field`` in the file; None for an entry of a
    null group, statistics the file does not hold, or records of a file
    written before they were kept."""
    if field.in_metadata:
        value = _entry(path, meta, field)
        if value is None and meta.get(field.name.split(".")[0]) is None:
            return None
    elif field.dtype == OWN_DTYPE:  # merged statistics, one member per statistic
        # A fit's last pass saw samples; a new exact pass may not have yet.
        return check_statistics(
            path, field.name, arrays, layout.covariance_type, layout.n_components, layout.n_features,
            positive_count=field.kind == STATISTICS,
        )
    elif field.name in arrays:
        value = arrays[field.name]
        shape = tuple(
            (value.shape[axis] if axis < value.ndim else 0) if n is None else n
            for axis, n in enumerate(field.shape(layout))
        )
        value = check_array(path, field.name, _scalar_if_one(value, shape), shape)
    elif field.kind == RECORD:
        return None
    else:
        raise ValueError(f"{path} is not a complete {state.estimator}: missing {field.name}.")
    return value if field.check is None else field.check(path, field.name, value, layout)


def read_parameters(path, arrays, state, layout, dtype, weights_total=1.0):
    """The parameters of a model file, each of its shape and of the file's
    dtype, and together the parameters of a mixture, in that dtype (the
    weights summing to ``weights_total``: less than 1 beside a noise
    component)."""
    values = {}
    for field in state.of_kind(PARAMETER):
        values[field.name] = check_array(path, field.name, arrays[field.name], field.shape(layout))
        stored = arrays[field.name].dtype
        if stored.kind != "f" or stored.itemsize != dtype.itemsize:
            raise invalid(path, field.name, f"has dtype {stored}, but the file's dtype is {dtype.name!r}")
    check_parameters(path, layout.covariance_type, **values, dtype=dtype, weights_total=weights_total)
    # In the saved dtype: the arrays of the model that was saved, bit for bit.
    return {name: np.asarray(arrays[name], dtype=dtype) for name in values}


def read_model(path, arrays, meta, state, make_estimator):
    """The estimator a model file holds, every field of ``state`` checked.

    The parameters and the record of the fit are checked first;
    ``make_estimator(layout)`` then makes the estimator of the file's
    settings (checked against its sizes); then every other field is checked
    and set, and last the fields together (``state.check``).
    """
    layout, dtype = read_layout(path, arrays, meta, state)
    noise = state.of_kind(NOISE)
    values = read_parameters(path, arrays, state, layout, dtype, _noise_total(meta) if noise else 1.0)
    first = [field for field in state.fields if field.kind == RECORD and field.in_metadata]
    for field in first:
        values[field.name] = _read_field(path, arrays, meta, field, layout, state)
    estimator = make_estimator(layout)
    layout = Layout(layout.covariance_type, layout.n_components, layout.n_features, estimator)
    for field in state.fields:
        if field.name not in values:
            values[field.name] = _read_field(path, arrays, meta, field, layout, state)
    stream = {}
    for field in state.fields:
        value = values[field.name]
        if field.kind == STREAM:  # an attribute of the estimator's OnlineState
            stream[field.attribute.split(".", 1)[1]] = value
        elif value is not None or field.kind == STATISTICS or (field.kind == NOISE and meta.get("noise") is not None):
            # None: the fit kept no statistics; a noise given by its volume has no box.
            setattr(estimator, field.attribute, field.to_attribute(estimator, value))
    estimator.precisions_ = precisions_from_cholesky(estimator.precisions_cholesky_, layout.covariance_type)
    _restore_stream(path, estimator, meta, stream)
    if state.check is not None:
        state.check(path, estimator)
    return estimator


def _restore_stream(path, estimator, meta, entries):
    """The stream of ``partial_fit`` of a file (none if the file has none:
    a stream then starts afresh)."""
    if meta.get("stream") is None:
        if entries["statistics"] is not None:
            raise invalid(path, "stream", "is missing, but the file holds stream_statistics")
        return
    estimator._keep_online_state(OnlineState(**entries))
