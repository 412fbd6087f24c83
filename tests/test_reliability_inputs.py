"""Inputs that used to give wrong answers or confusing errors (issue #15,
items 6, 8 and 10): each test asserts the behaviour a user should get."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.mixture import GaussianMixture as SkGaussianMixture

import dask.array as da

from daskgmm import ConvergenceWarning, GaussianMixture, load

from .conftest import make_blobs


@pytest.fixture
def blobs():
    X, _, _ = make_blobs(n=600, d=3, k=3, seed=5)
    return X


# -- item 6: warm_start with changed settings ------------------------------------


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(n_components=4), r"n_components=4 \(the fitted model has 3\)"),
        (dict(covariance_type="diag"), r"covariance_type='diag' \(the fitted covariances_ have shape \(3, 3, 3\)"),
    ],
)
def test_warm_start_refuses_changed_settings_and_the_model_still_saves(tmp_path, blobs, change, message):
    model = GaussianMixture(3, warm_start=True, random_state=0).fit(blobs)
    before = model.means_.copy()
    model.set_params(**change)
    with pytest.raises(ValueError, match=message + r".*Set warm_start=False"):
        model.fit(blobs)
    np.testing.assert_array_equal(model.means_, before)  # the fitted model is untouched
    model.set_params(warm_start=False).fit(blobs)  # a fresh fit with the new settings
    assert model.means_.shape[0] == model.n_components
    model.save(tmp_path / "m.npz")
    loaded = load(tmp_path / "m.npz")
    np.testing.assert_array_equal(loaded.predict(blobs), model.predict(blobs))


def test_warm_start_refuses_another_feature_count(blobs):
    model = GaussianMixture(3, warm_start=True, random_state=0).fit(blobs)
    with pytest.raises(ValueError, match="X has 2 features, but GaussianMixture is expecting 3 features"):
        model.fit(blobs[:, :2])


# -- item 8: messages ----------------------------------------------------------


def test_one_nan_row_with_two_components_names_the_row(blobs):
    X = blobs.copy()
    X[433, 0] = np.nan
    for data in (X, da.from_array(X, chunks=(100, -1))):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no "distinct points" warning first
            with pytest.raises(ValueError, match=r"NaN or infinity: 1 row\(s\).*first at row 433\)"):
                GaussianMixture(2, random_state=0).fit(data)


def test_data_scaled_into_underflow_warns_as_sklearn_with_a_true_message(blobs):
    """Squared distances of data scaled by 1e-300 underflow to 0: scikit-learn
    warns about 1 distinct cluster and fits one component; so do we, and the
    message says why rather than claiming X has 1 distinct point."""
    X = blobs * 1e-300
    with pytest.warns(ConvergenceWarning, match="Number of distinct clusters"):
        theirs = SkGaussianMixture(3, random_state=0).fit(X)
    with pytest.warns(ConvergenceWarning, match=r"found only 1 distinct point\(s\).*distances underflow"):
        ours = GaussianMixture(3, random_state=0).fit(X)
    np.testing.assert_allclose(np.sort(ours.weights_), np.sort(theirs.weights_), atol=1e-12)


@pytest.mark.parametrize("as_dask", [False, True])
def test_longdouble_is_fitted_in_float64(blobs, as_dask):
    X = blobs.astype(np.longdouble)
    data = da.from_array(X, chunks=(200, -1)) if as_dask else X
    ours = GaussianMixture(3, random_state=0).fit(data)
    reference = GaussianMixture(3, random_state=0).fit(da.from_array(blobs, chunks=(200, -1)) if as_dask else blobs)
    assert ours.means_.dtype == np.float64
    np.testing.assert_allclose(ours.means_, reference.means_, rtol=1e-12)


# -- item 10: fewer distinct points than components -------------------------------


@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random", "random_from_data"])
def test_fewer_distinct_points_than_components_fit_like_sklearn(init_params):
    """scikit-learn's test_regularisation data: 2 distinct points, 10
    components.  With reg_covar > 0 the fit succeeds (a warning where the
    initialisation sees the duplicates); reg_covar=0 gives the ill-defined
    covariance error, as scikit-learn."""
    X = np.vstack((np.ones((5, 5)), np.zeros((5, 5))))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        with pytest.raises(ValueError, match="ill-defined empirical covariance"):
            GaussianMixture(10, reg_covar=0, init_params=init_params, random_state=0).fit(X)
        model = GaussianMixture(10, init_params=init_params, random_state=0).fit(X)
    assert np.isclose(model.weights_.sum(), 1.0)
    if init_params == "random":  # random responsibilities: another optimum than sklearn's draws
        assert np.isfinite(model.score(X))
        return
    # Each of the two points is one occupied component's mean: sklearn's likelihood.
    theirs = SkGaussianMixture(10, init_params=init_params, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        theirs.fit(X)
    assert model.score(X) == pytest.approx(theirs.score(X), rel=1e-3)
