"""Saving and loading a BayesianGaussianMixture: its posterior and priors
travel with the Gaussian parameters, every field checked on load."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from daskgmm import BayesianGaussianMixture, load
from daskgmm.io import read_archive, write_archive

from .conftest import correlated_bands, make_blobs

KINDS = ["full", "tied", "diag", "spherical"]
PRIORS = ["dirichlet_process", "dirichlet_distribution"]


@pytest.fixture(scope="module")
def data():
    X, _, _ = make_blobs(n=400, d=3, k=3, seed=4)
    return X


def _fitted(X, kind, prior, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return BayesianGaussianMixture(
            n_components=4, covariance_type=kind, weight_concentration_prior_type=prior, random_state=0, **kwargs
        ).fit(X)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("prior", PRIORS)
def test_round_trip_is_exact(data, tmp_path, kind, prior):
    model = _fitted(data, kind, prior, mean_precision_prior=0.5)
    model.save(tmp_path / "m.npz")
    loaded = load(tmp_path / "m.npz")
    assert type(loaded) is BayesianGaussianMixture
    assert loaded.get_params()["mean_precision_prior"] == 0.5
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_", "mean_precision_",
                 "degrees_of_freedom_", "mean_prior_", "covariance_prior_", "weight_concentration_prior_",
                 "degrees_of_freedom_prior_"):
        np.testing.assert_array_equal(np.asarray(getattr(loaded, name)), np.asarray(getattr(model, name)), err_msg=name)
    np.testing.assert_array_equal(np.asarray(loaded.weight_concentration_), np.asarray(model.weight_concentration_))
    np.testing.assert_array_equal(loaded.predict(data), model.predict(data))
    np.testing.assert_array_equal(loaded.score_samples(data), model.score_samples(data))


def test_loaded_model_continues_with_warm_start(data, tmp_path):
    """A loaded model is the fitted one: a warm-started fit from it equals
    the same warm-started fit from the original."""
    model = _fitted(data, "full", "dirichlet_process", max_iter=3)
    model.save(tmp_path / "m.npz")
    loaded = load(tmp_path / "m.npz")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for m in (model, loaded):
            m.set_params(warm_start=True, max_iter=2).fit(data)
    np.testing.assert_allclose(loaded.means_, model.means_, rtol=1e-12)
    assert loaded.lower_bound_ == pytest.approx(model.lower_bound_, rel=1e-12)


def _corrupt(tmp_path, model, edit):
    model.save(tmp_path / "good.npz")
    arrays, meta = read_archive(tmp_path / "good.npz")
    arrays, meta = dict(arrays), dict(meta)
    edit(arrays, meta)
    write_archive(tmp_path / "bad.npz", arrays, meta)
    return tmp_path / "bad.npz"


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda a, m: a.__setitem__("posterior_mean_precision", -a["posterior_mean_precision"]),
         "'posterior_mean_precision' holds values that are not positive"),
        (lambda a, m: a.__setitem__("posterior_weight_concentration", a["posterior_weight_concentration"][:, :2]),
         "'posterior_weight_concentration' has shape"),
        (lambda a, m: a.pop("posterior_degrees_of_freedom"), "missing posterior_degrees_of_freedom"),
        (lambda a, m: a.__setitem__("posterior_degrees_of_freedom", np.ones_like(a["posterior_degrees_of_freedom"])),
         "not above n_features - 1 = 2"),
        (lambda a, m: a.__setitem__("mean_prior", a["mean_prior"][:2]), "'mean_prior' has shape"),
        (lambda a, m: m.__setitem__("priors", {"mean_precision_prior": 1.0}), r"'priors.weight_concentration_prior'"),
        (lambda a, m: m.__setitem__("estimator", "KMeans"), "'estimator' is 'KMeans'"),
        (lambda a, m: a.__setitem__("posterior_weight_concentration", a["posterior_weight_concentration"][:, ::-1]),
         "'weights' disagree with posterior_weight_concentration"),
    ],
)
def test_corrupted_fields_are_named(data, tmp_path, edit, message):
    path = _corrupt(tmp_path, _fitted(data, "full", "dirichlet_process"), edit)
    with pytest.raises(ValueError, match=message):
        load(path)


# --------------------------------------------------------------------------
# float32 models (issue #20, item 1)
# --------------------------------------------------------------------------

BAYESIAN_ARRAYS = ("weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_", "mean_precision_",
                   "degrees_of_freedom_", "mean_prior_", "covariance_prior_", "weight_concentration_prior_",
                   "mean_precision_prior_", "degrees_of_freedom_prior_")


@pytest.fixture(scope="module")
def bands():
    return correlated_bands(0.99)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("prior", PRIORS)
def test_float32_model_round_trips_in_float32(bands, tmp_path, kind, prior):
    """Its weights, rounded to float32 from the posterior's float64 mean,
    agree with the posterior to float32's precision (the file was refused:
    'weights' disagree with posterior_weight_concentration)."""
    model = _fitted(bands, kind, prior)
    assert model.weights_.dtype == np.float32
    model.save(tmp_path / "m.npz")
    assert read_archive(tmp_path / "m.npz")[1]["dtype"] == "float32"
    loaded = load(tmp_path / "m.npz")
    for name in BAYESIAN_ARRAYS:
        value, saved = getattr(loaded, name), getattr(model, name)
        assert type(value) is type(saved) and np.asarray(value).dtype == np.asarray(saved).dtype, name
        np.testing.assert_array_equal(value, saved, err_msg=name)
    for value, saved in zip(np.atleast_2d(loaded.weight_concentration_), np.atleast_2d(model.weight_concentration_)):
        assert value.dtype == saved.dtype
        np.testing.assert_array_equal(value, saved)
    np.testing.assert_array_equal(loaded.predict(bands), model.predict(bands))
    np.testing.assert_array_equal(loaded.predict_proba(bands), model.predict_proba(bands))
    np.testing.assert_array_equal(loaded.score_samples(bands), model.score_samples(bands))


@pytest.mark.parametrize("kind", ["full", "tied"])
def test_float64_model_of_very_correlated_bands_round_trips(tmp_path, kind):
    X = correlated_bands(0.9999, dtype=np.float64)
    model = _fitted(X, kind, "dirichlet_process")
    model.save(tmp_path / "m.npz")
    loaded = load(tmp_path / "m.npz")
    for name in BAYESIAN_ARRAYS:
        np.testing.assert_array_equal(getattr(loaded, name), getattr(model, name), err_msg=name)
    np.testing.assert_array_equal(loaded.score_samples(X), model.score_samples(X))


@pytest.mark.parametrize("kind", KINDS)
def test_edits_of_a_float32_model_are_still_refused(bands, tmp_path, kind):
    model = _fitted(bands, kind, "dirichlet_process")
    inverse = "is not the inverse of the precisions" if kind in ("full", "tied") else "is not 1 / precisions_cholesky"

    def moved_weight(a, m):
        weights = a["weights"].copy()
        weights[0] *= np.float32(1.01)
        weights[1] = 1 - weights[0] - weights[2:].sum()
        a["weights"] = weights

    for i, (edit, message) in enumerate([
        (moved_weight, "'weights' disagree with posterior_weight_concentration"),
        (lambda a, m: a.__setitem__("covariances", a["covariances"] * np.float32(1.01)), f"'covariances' {inverse}"),
    ]):
        (tmp_path / str(i)).mkdir()
        with pytest.raises(ValueError, match=message):
            load(_corrupt(tmp_path / str(i), model, edit))


# --------------------------------------------------------------------------
# Every posterior and prior field validated (issue #20, item 11)
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def by_kind(data):
    return {kind: _fitted(data, kind, "dirichlet_process") for kind in KINDS}


def _set(name, value):
    """An edit of array ``name`` to ``value(array)``, keeping its dtype."""
    return lambda a, m: a.__setitem__(name, np.asarray(value(a[name]), dtype=a[name].dtype))


def _set_prior(name, value):
    return lambda a, m: m["priors"].__setitem__(name, value)


@pytest.mark.parametrize(
    "kind, edit, message",
    [
        ("full", _set("posterior_degrees_of_freedom", lambda v: np.full_like(v, np.inf)),
         "'posterior_degrees_of_freedom' holds NaN or infinite values"),
        ("tied", _set("posterior_degrees_of_freedom", lambda v: np.full_like(v, np.inf)),
         "'posterior_degrees_of_freedom' holds NaN or infinite values"),
        ("diag", _set("posterior_degrees_of_freedom", lambda v: np.full_like(v, np.nan)),
         "'posterior_degrees_of_freedom' holds NaN or infinite values"),
        ("full", _set("posterior_mean_precision", lambda v: np.full_like(v, np.inf)),
         "'posterior_mean_precision' holds NaN or infinite values"),
        ("spherical", _set("posterior_mean_precision", lambda v: np.full_like(v, np.nan)),
         "'posterior_mean_precision' holds NaN or infinite values"),
        ("full", _set("posterior_weight_concentration", lambda v: np.full_like(v, np.inf)),
         "'posterior_weight_concentration' holds NaN or infinite values"),
        ("diag", _set("posterior_weight_concentration", lambda v: np.full_like(v, np.nan)),
         "'posterior_weight_concentration' holds NaN or infinite values"),
        ("full", _set("mean_prior", lambda v: np.full_like(v, np.nan)), "'mean_prior' holds NaN or infinite values"),
        ("diag", _set("mean_prior", lambda v: np.full_like(v, -np.inf)), "'mean_prior' holds NaN or infinite values"),
        ("full", _set("covariance_prior", lambda v: v * np.nan), "'covariance_prior' holds NaN or infinite values"),
        ("tied", _set("covariance_prior", lambda v: v * np.inf), "'covariance_prior' holds NaN or infinite values"),
        ("spherical", _set("covariance_prior", lambda v: np.inf), "'covariance_prior' holds NaN or infinite values"),
        ("diag", _set("covariance_prior", lambda v: -v), "'covariance_prior' holds negative variances"),
        ("spherical", _set("covariance_prior", lambda v: -v), "'covariance_prior' holds negative variances"),
        ("full", _set("covariance_prior", lambda v: -v), "'covariance_prior' has a negative variance on its diagonal"),
        ("tied", _set("covariance_prior", lambda v: -v), "'covariance_prior' has a negative variance on its diagonal"),
        ("full", _set("covariance_prior", lambda v: np.ones_like(v) + np.eye(3) * [0.0, 0.0, -0.5]),
         r"'covariance_prior' is not positive semi-definite \(eigenvalue"),
        ("tied", _set("covariance_prior", lambda v: v + np.triu(np.ones_like(v), 1)), "'covariance_prior' is not symmetric"),
        ("full", _set_prior("degrees_of_freedom_prior", 2.0),
         r"'priors.degrees_of_freedom_prior' is 2.0, not above n_features - 1 = 2"),
        ("spherical", _set_prior("degrees_of_freedom_prior", 0.5),
         r"'priors.degrees_of_freedom_prior' is 0.5, not above n_features - 1 = 2"),
        ("diag", _set_prior("weight_concentration_prior", float("inf")),
         "'priors.weight_concentration_prior' is inf, not a positive finite number"),
        ("tied", _set_prior("mean_precision_prior", -1.0),
         r"'priors.mean_precision_prior' is -1.0, not a positive finite number"),
    ],
)
def test_every_posterior_and_prior_field_is_checked(by_kind, tmp_path, kind, edit, message):
    """Each of these files loaded and then answered NaN (an infinite
    posterior_degrees_of_freedom: predict_proba all NaN) or nonsense."""
    path = _corrupt(tmp_path, by_kind[kind], edit)
    with pytest.raises(ValueError, match=message) as err:
        load(path)
    assert str(err.value).startswith(str(path))


def test_a_data_prior_with_a_zero_variance_is_a_valid_file(tmp_path):
    """A constant feature gives the data-dependent covariance_prior a zero
    variance (semi-definite): such a fit saves a file that loads."""
    X = make_blobs(n=300, d=3, k=2, seed=1)[0]
    X[:, 2] = 5.0
    for kind in ("full", "tied", "diag"):
        model = _fitted(X, kind, "dirichlet_distribution")
        assert model.covariance_prior_[..., -1].max() == 0.0  # the constant feature's row (or entry)
        model.save(tmp_path / f"{kind}.npz")
        np.testing.assert_array_equal(load(tmp_path / f"{kind}.npz").predict(X), model.predict(X))
