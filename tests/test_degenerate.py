"""Degenerate cases (GaussianMixture docstring, "Degenerate cases"): never a NaN
in the parameters, and the analytic or scikit-learn answer where there is one."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.mixture import GaussianMixture as SkGaussianMixture

import dask.array as da

from daskgmm import GaussianMixture
from daskgmm._blocks import block_statistics, estimate_log_resp
from daskgmm._covariance import make_model

KINDS = ("full", "tied", "diag", "spherical")
ignore_convergence = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def identity_precisions(kind, k, d):
    return {
        "full": np.stack([np.eye(d)] * k),
        "tied": np.eye(d),
        "diag": np.ones((k, d)),
        "spherical": np.ones(k),
    }[kind]


def assert_all_finite(gm):
    for name in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"):
        assert np.all(np.isfinite(getattr(gm, name))), name
    assert np.isfinite(gm.lower_bound_)


def assert_same_fit(ours, theirs, atol=1e-10, bound_rtol=1e-12):
    np.testing.assert_allclose(ours.weights_, theirs.weights_, rtol=0, atol=atol)
    np.testing.assert_allclose(ours.means_, theirs.means_, rtol=0, atol=atol)
    np.testing.assert_allclose(ours.covariances_, theirs.covariances_, rtol=1e-9, atol=atol)
    assert ours.lower_bound_ == pytest.approx(theirs.lower_bound_, rel=bound_rtol)


@ignore_convergence
@pytest.mark.parametrize("kind", KINDS)
def test_empty_component_like_sklearn(kind):
    """A component starting far from all data loses every point: weight ~0,
    mean 0, covariance reg_covar (full/diag/spherical), no NaN, and the same
    iterates as scikit-learn from the same start."""
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(size=(300, 2)) + 10, rng.normal(size=(300, 2)) - 10])
    kw = dict(
        n_components=3,
        covariance_type=kind,
        weights_init=np.array([0.45, 0.45, 0.1]),
        means_init=np.array([[10.0, 10.0], [-10.0, -10.0], [1000.0, 1000.0]]),
        precisions_init=identity_precisions(kind, 3, 2),
        tol=0,
        max_iter=5,
    )
    ours = GaussianMixture(**kw).fit(da.from_array(X, chunks=(100, -1)))
    theirs = SkGaussianMixture(**kw).fit(X)
    assert_all_finite(ours)
    assert ours.weights_[2] < 1e-15
    np.testing.assert_allclose(ours.means_[2], 0.0, atol=1e-20)
    if kind == "full":
        np.testing.assert_array_equal(ours.covariances_[2], 1e-6 * np.eye(2))
    elif kind in ("diag", "spherical"):
        np.testing.assert_array_equal(ours.covariances_[2], 1e-6)
    assert_same_fit(ours, theirs)


@pytest.mark.parametrize("kind", KINDS)
def test_duplicated_points_collapse_to_reg_covar(kind):
    """Two distinct rows, each repeated 50 times: each component sits on one of
    them with covariance reg_covar * I and weight 1/2."""
    points = np.array([[1.0, 2.0], [5.0, -3.0]])
    X = np.repeat(points, 50, axis=0)
    gm = GaussianMixture(2, covariance_type=kind, random_state=0).fit(da.from_array(X, chunks=(30, -1)))
    assert_all_finite(gm)
    order = np.argsort(gm.means_[:, 0])
    np.testing.assert_allclose(gm.means_[order], points, rtol=1e-12)
    np.testing.assert_allclose(gm.weights_, 0.5, rtol=1e-12)
    expected = {
        "full": np.stack([1e-6 * np.eye(2)] * 2),
        "tied": 1e-6 * np.eye(2),
        "diag": np.full((2, 2), 1e-6),
        "spherical": np.full(2, 1e-6),
    }[kind]
    np.testing.assert_allclose(gm.covariances_, expected, rtol=1e-9, atol=1e-15)
    assert gm.converged_


def test_all_rows_identical():
    gm = GaussianMixture(1).fit(np.full((10, 3), 4.0))
    np.testing.assert_allclose(gm.means_, [[4.0, 4.0, 4.0]], rtol=1e-14)
    np.testing.assert_allclose(gm.covariances_[0], 1e-6 * np.eye(3), rtol=1e-9, atol=1e-18)


@ignore_convergence
@pytest.mark.parametrize("kind", KINDS)
def test_zero_variance_feature(kind):
    """A constant feature gets variance exactly reg_covar and no correlation,
    as scikit-learn gives from the same start."""
    rng = np.random.default_rng(1)
    X = np.concatenate([rng.normal(size=(200, 3)) + 3, rng.normal(size=(200, 3)) - 3])
    X[:, 1] = 7.0
    kw = dict(
        n_components=2,
        covariance_type=kind,
        weights_init=np.array([0.5, 0.5]),
        means_init=np.array([[3.0, 7.0, 3.0], [-3.0, 7.0, -3.0]]),
        precisions_init=identity_precisions(kind, 2, 3),
        tol=0,
        max_iter=10,
    )
    ours = GaussianMixture(**kw).fit(da.from_array(X, chunks=(64, -1)))
    assert_all_finite(ours)
    np.testing.assert_allclose(ours.means_[:, 1], 7.0, rtol=1e-13)
    cov = np.asarray(ours.covariances_)
    if kind == "full":
        np.testing.assert_allclose(cov[:, 1, 1], 1e-6, rtol=1e-9)
        np.testing.assert_allclose(cov[:, 1, [0, 2]], 0.0, atol=1e-15)
    elif kind == "tied":
        assert cov[1, 1] == pytest.approx(1e-6, rel=1e-9)
        np.testing.assert_allclose(cov[1, [0, 2]], 0.0, atol=1e-15)
    elif kind == "diag":
        np.testing.assert_allclose(cov[:, 1], 1e-6, rtol=1e-9)
    # scikit-learn's diag/tied M-step subtracts raw moments (49 - 49 here), so
    # its variance of 1e-6 is off by up to ~1e-13 and its lower bound by ~1e-8.
    assert_same_fit(ours, SkGaussianMixture(**kw).fit(X), bound_rtol=1e-7)


@pytest.mark.parametrize("kind", ["full", "tied", "diag"])
def test_zero_variance_without_reg_covar_says_what_to_do(kind):
    X = np.random.default_rng(2).normal(size=(100, 2))
    X[:, 1] = 3.0
    with pytest.raises(ValueError, match="increase reg_covar"):
        GaussianMixture(2, covariance_type=kind, reg_covar=0.0, random_state=0).fit(X)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", KINDS)
def test_far_points_have_finite_responsibilities(kind, dtype):
    """Points up to 1e12 standard deviations away, some equidistant from both
    components (where a - log_norm used to lose log(sum) and give
    responsibilities summing to 2): finite, sum to 1, finite log-likelihood."""
    rng = np.random.default_rng(3)
    X = np.concatenate([rng.normal(size=(300, 2)) + 3, rng.normal(size=(300, 2)) - 3]).astype(dtype)
    gm = GaussianMixture(2, covariance_type=kind, random_state=0).fit(X)
    distances = [1e2, 1e4, 1e6] + ([1e8, 1e12] if dtype == np.float64 else [1e8])
    far = np.array([[s, -s] for s in distances] + [[s, s] for s in distances], dtype=dtype)
    proba = gm.predict_proba(far)
    assert np.all(np.isfinite(proba))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=10 * np.finfo(dtype).eps)
    log_like = gm.score_samples(far)
    assert np.all(np.isfinite(log_like))
    assert np.all(np.diff(log_like[: len(distances)]) < 0)  # farther is less likely
    assert np.all(np.isin(gm.predict(far), [0, 1]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_far_equidistant_rows_count_once_in_statistics(dtype):
    """Block statistics of far rows equidistant from two components: each row
    adds 1 to sum(nk), not K (the log-sum-exp regression)."""
    model = make_model(np.array([0.5, 0.5]), np.array([[3.0, 3.0], [-3.0, -3.0]]), np.ones(2), "spherical")
    far = np.array([[1e4, -1e4], [1e6, -1e6 + 1], [1e9, -1e9]], dtype=dtype)
    stats = block_statistics(far, model)
    assert float(np.sum(stats.nk)) == pytest.approx(3.0, rel=1e-6)
    log_norm, log_resp = estimate_log_resp(far, model)
    np.testing.assert_allclose(np.exp(log_resp).sum(axis=1), 1.0, rtol=1e-6)
    assert np.all(np.isfinite(log_norm))


@pytest.mark.parametrize("kind", KINDS)
def test_far_outliers_in_the_data(kind):
    rng = np.random.default_rng(4)
    X = np.concatenate([rng.normal(size=(300, 2)) + 3, rng.normal(size=(300, 2)) - 3, [[1e6, -1e6], [-1e6, 1e6]]])
    gm = GaussianMixture(3, covariance_type=kind, random_state=0).fit(da.from_array(X, chunks=(101, -1)))
    assert_all_finite(gm)
    np.testing.assert_allclose(gm.predict_proba(X).sum(axis=1), 1.0, rtol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_one_component_is_sample_mean_and_biased_covariance(kind):
    rng = np.random.default_rng(5)
    X = rng.normal(size=(500, 3)) @ np.array([[2.0, 0.5, 0.0], [0.0, 1.0, 0.3], [0.0, 0.0, 0.5]]) + [100.0, -4.0, 0.0]
    reg = 1e-3
    gm = GaussianMixture(1, covariance_type=kind, reg_covar=reg).fit(da.from_array(X, chunks=(77, -1)))
    cov = np.cov(X, rowvar=False, bias=True)
    expected = {
        "full": (cov + reg * np.eye(3))[None],
        "tied": cov + reg * np.eye(3),
        "diag": (np.diag(cov) + reg)[None],
        "spherical": np.array([np.diag(cov).mean() + reg]),
    }[kind]
    np.testing.assert_allclose(gm.weights_, [1.0], rtol=1e-14)
    np.testing.assert_allclose(gm.means_, X.mean(axis=0)[None], rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(gm.covariances_, expected, rtol=1e-11)
    assert gm.converged_ and gm.n_iter_ == 2


@pytest.mark.parametrize("kind", KINDS)
def test_one_feature_matches_sklearn(kind):
    rng = np.random.default_rng(6)
    X = np.concatenate([rng.normal(size=(400, 1)) * 0.5, rng.normal(size=(200, 1)) + 4])
    kw = dict(
        n_components=2,
        covariance_type=kind,
        weights_init=np.array([0.5, 0.5]),
        means_init=np.array([[-1.0], [3.0]]),
        precisions_init=identity_precisions(kind, 2, 1),
        tol=1e-10,
        max_iter=500,
    )
    ours = GaussianMixture(**kw).fit(da.from_array(X, chunks=(100, -1)))
    theirs = SkGaussianMixture(**kw).fit(X)
    assert_all_finite(ours)
    assert ours.n_iter_ == theirs.n_iter_
    assert_same_fit(ours, theirs)
    # Our own initialisation finds the same optimum.
    own = GaussianMixture(2, covariance_type=kind, tol=1e-10, max_iter=500, random_state=0).fit(X)
    np.testing.assert_allclose(np.sort(own.means_.ravel()), np.sort(theirs.means_.ravel()), atol=1e-5)
