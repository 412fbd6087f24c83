"""Saving and loading a BayesianGaussianMixture: its posterior and priors
travel with the Gaussian parameters, every field checked on load."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from daskgmm import BayesianGaussianMixture, load
from daskgmm.io import read_archive, write_archive

from .conftest import make_blobs

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
