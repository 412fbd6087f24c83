"""Sample weights in the core: GaussianMixture and BayesianGaussianMixture
fits, every initialisation, score / bic / aic, and the errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.mixture import GaussianMixture as SkGaussianMixture

import dask.array as da

from daskgmm import BayesianGaussianMixture, ConvergenceWarning, GaussianMixture
from daskgmm._init import INIT_PARAMS

KINDS = ["full", "tied", "diag", "spherical"]

# Fits of a fixed number of iterations (tol=0) on purpose.
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(size=(150, 3)) + c for c in ([0, 0, 0], [5, 5, 0], [0, 6, 6])])
    weights = rng.integers(0, 4, size=len(X))
    weights[:3] = 0
    return X, weights


def _start(X, kind):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sk = SkGaussianMixture(3, covariance_type=kind, random_state=0, max_iter=1).fit(X)
    return dict(weights_init=sk.weights_, means_init=sk.means_, precisions_init=sk.precisions_)


def _assert_same(a, b, atol=1e-12):
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-11, atol=atol, err_msg=name)
    assert a.lower_bound_ == pytest.approx(b.lower_bound_, rel=1e-12)
    assert a.n_iter_ == b.n_iter_


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("as_dask", [False, True])
def test_integer_weights_fit_as_repeated_rows(data, kind, as_dask):
    X, weights = data
    repeated = np.repeat(X, weights, axis=0)
    kwargs = dict(n_components=3, covariance_type=kind, tol=0, max_iter=10, **_start(X, kind))
    rows = da.from_array(X, chunks=(70, -1)) if as_dask else X
    w = da.from_array(weights.astype(float), chunks=70) if as_dask else weights
    weighted = GaussianMixture(**kwargs).fit(rows, sample_weight=w)
    plain = GaussianMixture(**kwargs).fit(repeated)
    _assert_same(weighted, plain)
    assert weighted.score(X, sample_weight=weights) == pytest.approx(plain.score(repeated), rel=1e-12)
    assert weighted.bic(X, sample_weight=weights) == pytest.approx(plain.bic(repeated), rel=1e-12)
    assert weighted.aic(X, sample_weight=weights) == pytest.approx(plain.aic(repeated), rel=1e-12)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("prior", ["dirichlet_process", "dirichlet_distribution"])
def test_bayesian_integer_weights_fit_as_repeated_rows(data, kind, prior):
    """From the same responsibilities (each repeated row keeps its row's),
    with the data-dependent priors computed from the weighted moments."""
    X, weights = data
    repeated = np.repeat(X, weights, axis=0)
    resp = np.random.default_rng(1).random((len(X), 3))
    resp /= resp.sum(axis=1, keepdims=True)
    kwargs = dict(n_components=3, covariance_type=kind, weight_concentration_prior_type=prior, tol=0, max_iter=8)

    def continued(model, rows, resp, sample_weight=None):
        # Both start from the same responsibilities, then iterate (warm start).
        model._initialize(rows, resp, sample_weight=sample_weight)
        model.converged_, model.lower_bound_, model.warm_start = False, -np.inf, True
        return model.fit(rows, sample_weight=sample_weight)

    weighted = continued(BayesianGaussianMixture(**kwargs), X, resp, weights.astype(float))
    plain = continued(BayesianGaussianMixture(**kwargs), repeated, np.repeat(resp, weights, axis=0))
    for name in ("weights_", "means_", "covariances_", "mean_precision_", "degrees_of_freedom_"):
        np.testing.assert_allclose(getattr(weighted, name), getattr(plain, name), rtol=1e-10, err_msg=name)
    np.testing.assert_allclose(weighted.mean_prior_, plain.mean_prior_, rtol=1e-12)
    np.testing.assert_allclose(weighted.covariance_prior_, plain.covariance_prior_, rtol=1e-12)
    assert weighted.lower_bound_ == pytest.approx(plain.lower_bound_, rel=1e-10)


@pytest.mark.parametrize("init_params", INIT_PARAMS)
def test_rows_of_weight_zero_take_no_part(init_params):
    """A far cluster of weight 0 is never a starting centre and owns nothing:
    the weighted fit equals the fit of the other rows, started alike
    ('random' aside, whose draws are keyed by row and so differ)."""
    rng = np.random.default_rng(3)
    near = np.vstack([rng.normal(size=(200, 2)) + c for c in ([0, 0], [6, 0])])
    far = rng.normal(size=(60, 2)) + [1000.0, 1000.0]
    X = np.vstack([near, far])
    weights = np.r_[np.ones(len(near)), np.zeros(len(far))]
    for rows in (X, da.from_array(X, chunks=(90, -1))):
        model = GaussianMixture(2, init_params=init_params, random_state=0).fit(rows, sample_weight=weights)
        assert np.all(np.abs(model.means_) < 20), model.means_
        assert model.weights_.min() > 0.3
        near_only = GaussianMixture(2, init_params=init_params, random_state=0).fit(near)
        order = np.argsort(model.means_[:, 0])
        np.testing.assert_allclose(model.means_[order], near_only.means_[np.argsort(near_only.means_[:, 0])], atol=0.05)


def test_weights_are_chunking_invariant(data):
    X, weights = data
    fits = [
        GaussianMixture(3, random_state=0, tol=0, max_iter=20).fit(
            da.from_array(X, chunks=(c, -1)), sample_weight=da.from_array(weights.astype(float), chunks=w)
        )
        for c, w in ((450, 450), (70, 70), (33, 100))  # weights rechunked to X's rows in the last
    ]
    for other in fits[1:]:
        _assert_same(other, fits[0], atol=1e-10)


def test_weights_of_one_are_no_weights(data):
    X, _ = data
    a = GaussianMixture(3, random_state=0).fit(X)
    b = GaussianMixture(3, random_state=0).fit(X, sample_weight=np.ones(len(X)))
    _assert_same(a, b)


@pytest.mark.parametrize(
    "weights, message",
    [
        (lambda n: np.r_[np.nan, np.ones(n - 1)], "sample_weight contains NaN or infinity"),
        (lambda n: np.r_[np.inf, np.ones(n - 1)], "sample_weight contains NaN or infinity"),
        (lambda n: np.r_[-1.0, np.ones(n - 1)], r"sample_weight has negative values \(the smallest is -1.0\)"),
        (lambda n: np.zeros(n), "sample_weight sums to zero"),
        (lambda n: np.ones(n - 1), r"sample_weight has shape \(\d+,\), expected \(\d+,\)"),
        (lambda n: np.ones((n, 1)), r"sample_weight has shape \(\d+, 1\), expected"),
    ],
)
@pytest.mark.parametrize("as_dask", [False, True])
def test_bad_weights_are_refused_by_name(data, weights, message, as_dask):
    X, _ = data
    w = weights(len(X))
    rows = da.from_array(X, chunks=(100, -1)) if as_dask else X
    if as_dask:
        w = da.from_array(w, chunks=100 if w.ndim == 1 else (100, 1))
    for model in (GaussianMixture(3), BayesianGaussianMixture(n_components=3)):
        with pytest.raises(ValueError, match=message):
            model.fit(rows, sample_weight=w)


def test_nan_row_is_refused_whatever_its_weight(data):
    X, weights = data
    X = X.copy()
    X[1, 0] = np.nan  # weight 0 in the fixture
    assert weights[1] == 0
    with pytest.raises(ValueError, match=r"NaN or infinity.*row 1\)"):
        GaussianMixture(3, random_state=0).fit(da.from_array(X, chunks=(100, -1)), sample_weight=weights)


# --------------------------------------------------------------------------
# A constant scale of the weights (issue #20, item 8)
# --------------------------------------------------------------------------

PARAMETERS = ("weights_", "means_", "covariances_", "precisions_cholesky_")
# Scales whose weights are the fixture's times a power of two: the same fit, bitwise.
POWERS_OF_TWO = {"2**-40": 2.0**-40, "2**40": 2.0**40}
# Others: the fixture's weights rounded, the fit to rounding (1e-320: subnormal;
# 1e307 / max: a total past float64's range).
OTHER_SCALES = {
    "1e-12": lambda w: 1e-12 / w.sum(),
    "1e-13": lambda w: 1e-13 / w.sum(),
    "subnormal": lambda w: 1e-320 / w.max(),
    "1e300": lambda w: 1e300,
    "1e307": lambda w: 1e307 / w.max(),
}


def _converged_fit(rows, weights, kind, init_params):
    # Converged fits: any warning at all is an error here.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return GaussianMixture(3, covariance_type=kind, init_params=init_params, random_state=0, tol=1e-6,
                               max_iter=500).fit(rows, sample_weight=weights)


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("init_params", INIT_PARAMS)
@pytest.mark.parametrize("kind", KINDS)
def test_a_constant_scale_of_the_weights_changes_nothing(data, kind, init_params):
    """Weights w and c * w give the same maximum-likelihood fit, with no
    warning: bitwise for c a power of two, to rounding otherwise (the
    weights themselves are rounded), down to subnormal weights and up to
    weights whose sum overflows."""
    X, weights = data
    w = weights.astype(float)
    reference = _converged_fit(X, w, kind, init_params)
    assert reference.converged_
    for name, scale in POWERS_OF_TWO.items():
        scaled = _converged_fit(X, w * scale, kind, init_params)
        for attribute in PARAMETERS:
            np.testing.assert_array_equal(getattr(scaled, attribute), getattr(reference, attribute), err_msg=name)
        assert scaled.lower_bound_ == reference.lower_bound_ and scaled.n_iter_ == reference.n_iter_
    for name, scale in OTHER_SCALES.items():
        scaled = _converged_fit(X, w * scale(w), kind, init_params)
        for attribute in PARAMETERS:
            np.testing.assert_allclose(getattr(scaled, attribute), getattr(reference, attribute), rtol=1e-9,
                                       atol=1e-9, err_msg=f"{name} {attribute}")
        assert scaled.lower_bound_ == pytest.approx(reference.lower_bound_, rel=1e-12), name
        assert scaled.converged_


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("init_params", INIT_PARAMS)
def test_a_constant_scale_of_dask_weights_changes_nothing(data, init_params):
    X, weights = data
    rows = da.from_array(X, chunks=(70, -1))
    w = weights.astype(float)
    reference = _converged_fit(rows, da.from_array(w, chunks=70), "full", init_params)
    for scale in (2.0**-40, 1e-320 / w.max(), 1e307 / w.max()):
        scaled = _converged_fit(rows, da.from_array(w * scale, chunks=70), "full", init_params)
        for attribute in PARAMETERS:
            np.testing.assert_allclose(getattr(scaled, attribute), getattr(reference, attribute), rtol=1e-9,
                                       atol=1e-9 if scale != 2.0**-40 else 0, err_msg=attribute)


def test_what_reports_the_total_weight_follows_the_scale(data):
    """score does not depend on the scale; bic's sample count is the total
    weight (the repeated rows'), partial_fit's n_samples_seen_ too."""
    X, weights = data
    w = weights.astype(float)
    model = GaussianMixture(3, random_state=0).fit(X, sample_weight=w)
    n_parameters = model._n_parameters()
    for scale in (2.0**-40, 1e-13, 1e300):
        score = model.score(X, sample_weight=w * scale)
        assert score == pytest.approx(model.score(X, sample_weight=w), rel=1e-13)
        total = np.sum(w) * scale
        assert model.bic(X, sample_weight=w * scale) == pytest.approx(
            -2 * score * total + n_parameters * np.log(total), rel=1e-12
        )
        online = GaussianMixture(3, random_state=0).partial_fit(X, sample_weight=w * scale)
        assert online.n_samples_seen_ == pytest.approx(total, rel=1e-13)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("prior", ["dirichlet_process", "dirichlet_distribution"])
def test_bayesian_posterior_counts_the_real_weights(data, kind, prior, monkeypatch):
    """The variational posterior depends on the weights' scale (the prior
    weighs against the counts): the fit on w * 2^k, passes run on weights
    scaled back to order 1, equals the computation on the weights as
    given."""
    from daskgmm import mixture

    X, weights = data
    kwargs = dict(n_components=3, covariance_type=kind, weight_concentration_prior_type=prior, random_state=0,
                  tol=0, max_iter=15)
    checked = mixture._check_sample_weight

    def unscaled(sample_weight, rows):  # the weights as given, with no scale taken out
        weights, weight_scale = checked(sample_weight, rows)
        return weights * weight_scale, 1.0

    for k in (-6, 5):
        w = weights * 2.0**k
        scaled = BayesianGaussianMixture(**kwargs).fit(X, sample_weight=w)
        with monkeypatch.context() as patch:
            patch.setattr(mixture, "_check_sample_weight", unscaled)
            as_given = BayesianGaussianMixture(**kwargs).fit(X, sample_weight=w)
        for name in ("weights_", "means_", "covariances_", "mean_precision_", "degrees_of_freedom_",
                     "mean_prior_", "covariance_prior_"):
            np.testing.assert_allclose(getattr(scaled, name), getattr(as_given, name), rtol=1e-9, err_msg=name)
        assert scaled.lower_bound_ == pytest.approx(as_given.lower_bound_, rel=1e-9)
        # The scale matters: 2^k times the weights is not the same posterior.
        other = BayesianGaussianMixture(**kwargs).fit(X, sample_weight=weights)
        assert not np.allclose(scaled.mean_precision_, other.mean_precision_)


@pytest.mark.parametrize("init_params", INIT_PARAMS)
@pytest.mark.parametrize("kind", KINDS)
def test_bayesian_tiny_weights_leave_the_prior(data, kind, init_params):
    """A total weight of 1e-13 or subnormal weights: no error, and the
    posterior is the prior's (equal weights, means at the prior mean)."""
    X, weights = data
    w = weights.astype(float)
    for scale in (1e-13 / w.sum(), 1e-320 / w.max()):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = BayesianGaussianMixture(
                n_components=3, covariance_type=kind, init_params=init_params, random_state=0,
                weight_concentration_prior_type="dirichlet_distribution",
            ).fit(X, sample_weight=w * scale)
        np.testing.assert_allclose(model.weights_, 1 / 3, rtol=1e-9)
        np.testing.assert_allclose(model.means_, np.broadcast_to(model.mean_prior_, model.means_.shape), atol=1e-9)
        assert np.all(np.isfinite(model.precisions_cholesky_))


def _stream(X, weights, kind, mode):
    """A GaussianMixture after three batches of partial_fit (and, in exact
    mode, two passes' end_pass), every batch weighted."""
    model = GaussianMixture(3, covariance_type=kind, random_state=0, partial_fit_mode=mode)
    batches = np.array_split(np.arange(len(X)), 3)
    for _ in range(2 if mode == "exact" else 1):
        for rows in batches:
            model.partial_fit(X[rows], sample_weight=weights[rows])
        if mode == "exact":
            model.end_pass()
    return model


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("mode", ["stepwise", "exact"])
@pytest.mark.parametrize("kind", KINDS)
def test_a_constant_scale_of_the_weights_changes_no_stream(data, kind, mode):
    """partial_fit, like fit: weights w and c * w give the same model,
    bitwise for c a power of two, to rounding otherwise, from subnormal
    weights to weights whose sum nears the float64 limit; n_samples_seen_
    is the real total weight."""
    X, weights = data
    w = weights.astype(float)
    reference = _stream(X, w, kind, mode)
    for scale in (2.0**-40, 2.0**60):
        scaled = _stream(X, w * scale, kind, mode)
        for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
            np.testing.assert_array_equal(getattr(scaled, name), getattr(reference, name), err_msg=f"{scale} {name}")
        assert scaled.n_samples_seen_ == reference.n_samples_seen_ * scale
    for scale in (1e-13, 1e-320 / w.max(), 1e300):
        scaled = _stream(X, w * scale, kind, mode)
        for name in ("weights_", "means_", "covariances_"):
            np.testing.assert_allclose(getattr(scaled, name), getattr(reference, name), rtol=1e-9, atol=1e-9,
                                       err_msg=f"{scale} {name}")
