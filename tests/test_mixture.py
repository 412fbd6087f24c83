"""GaussianMixture against scikit-learn's, from the same initialisation."""

import warnings

import numpy as np
import pytest
from sklearn.utils._param_validation import InvalidParameterError

import dask.array as da
from sklearn.base import clone
from sklearn.datasets import load_iris, load_wine
from sklearn.mixture import GaussianMixture as SkGaussianMixture

import daskgmm
from daskgmm import ConvergenceWarning, GaussianMixture

from .conftest import make_blobs

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]
RTOL = 1e-6


def _datasets():
    iris = load_iris().data
    wine = load_wine().data
    wine = (wine - wine.mean(0)) / wine.std(0)
    blobs, _, _ = make_blobs(n=500, d=4, k=3, seed=3)
    return {"iris": (iris, 3), "wine": (wine, 3), "blobs": (blobs, 3)}


DATASETS = _datasets()


def _sklearn_start(X, k, covariance_type, seed=0):
    """Initial parameters: one scikit-learn k-means initialisation."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk = SkGaussianMixture(k, covariance_type=covariance_type, max_iter=1, random_state=seed).fit(X)
    return dict(weights_init=sk.weights_, means_init=sk.means_, precisions_init=sk.precisions_)


def _rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)


@pytest.mark.parametrize("name", list(DATASETS))
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_matches_sklearn_from_same_start(name, covariance_type):
    X, k = DATASETS[name]
    start = _sklearn_start(X, k, covariance_type)
    kwargs = dict(covariance_type=covariance_type, tol=1e-6, max_iter=300, **start)
    ref = SkGaussianMixture(k, **kwargs).fit(X)
    ours = GaussianMixture(k, **kwargs).fit(da.from_array(X, chunks=(37, -1)))
    assert ours.n_iter_ == ref.n_iter_
    assert ours.converged_ == ref.converged_
    for attr in ["weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"]:
        assert getattr(ours, attr).shape == getattr(ref, attr).shape, attr
        assert _rel(getattr(ours, attr), getattr(ref, attr)) < RTOL, attr
    assert ours.lower_bound_ == pytest.approx(ref.lower_bound_, rel=RTOL)
    np.testing.assert_allclose(ours.score_samples(X), ref.score_samples(X), rtol=RTOL)
    np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), rtol=RTOL, atol=1e-9)
    np.testing.assert_array_equal(ours.predict(X), ref.predict(X))
    assert ours.score(X) == pytest.approx(ref.score(X), rel=RTOL)
    assert ours.bic(X) == pytest.approx(ref.bic(X), rel=RTOL)
    assert ours.aic(X) == pytest.approx(ref.aic(X), rel=RTOL)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_fixed_iterations_match_sklearn(covariance_type):
    X, k = DATASETS["blobs"]
    start = _sklearn_start(X, k, covariance_type, seed=1)
    kwargs = dict(covariance_type=covariance_type, tol=0, max_iter=7, **start)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = SkGaussianMixture(k, **kwargs).fit(X)
        ours = GaussianMixture(k, **kwargs).fit(X)
    assert ours.n_iter_ == ref.n_iter_ == 7
    assert _rel(ours.covariances_, ref.covariances_) < RTOL
    assert ours.lower_bound_ == pytest.approx(ref.lower_bound_, rel=RTOL)


def _fit_chunked(X, n_chunks, split_every, covariance_type, start):
    rows = -(-X.shape[0] // n_chunks)
    dX = da.from_array(X, chunks=(rows, -1))
    assert dX.numblocks[0] == n_chunks
    return GaussianMixture(
        3, covariance_type=covariance_type, tol=0, max_iter=20, split_every=split_every, **start
    ).fit(dX)


@pytest.mark.filterwarnings("ignore::daskgmm.ConvergenceWarning")
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_invariant_to_chunking_and_fan_in(covariance_type):
    X, _, _ = make_blobs(n=1020, d=3, k=3, seed=5)
    start = _sklearn_start(X, 3, covariance_type)
    reference = _fit_chunked(X, 1, 8, covariance_type, start)
    for n_chunks in (3, 17):
        for split_every in (2, 8):
            other = _fit_chunked(X, n_chunks, split_every, covariance_type, start)
            for attr in ["weights_", "means_", "covariances_"]:
                assert _rel(getattr(other, attr), getattr(reference, attr)) < 1e-10, (n_chunks, split_every, attr)
            assert other.lower_bound_ == pytest.approx(reference.lower_bound_, rel=1e-10)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_far_from_origin_recovers_covariances(covariance_type):
    """Data shifted by 1e8: the centred statistics still give the covariances."""
    X0, labels, _ = make_blobs(n=3000, d=3, k=3, spread=8.0, seed=11)
    shift = 1e8
    X = X0 + shift
    # Well separated clusters: the fit's answer is each cluster's own
    # (biased) covariance plus reg_covar, computed here from centred data.
    means_init = np.array([X[labels == j].mean(0) for j in range(3)])
    model = GaussianMixture(3, covariance_type=covariance_type, means_init=means_init, tol=1e-10, max_iter=50)
    model.fit(da.from_array(X, chunks=(250, -1)))
    order = np.argsort(model.means_[:, 0])
    expected = []
    for j in np.argsort(means_init[:, 0]):
        Xj = X0[labels == j]
        expected.append(np.cov(Xj.T, bias=True))
    expected = np.array(expected)
    nk = np.array([(labels == j).sum() for j in np.argsort(means_init[:, 0])])
    if covariance_type == "full":
        got, want = model.covariances_[order], expected + 1e-6 * np.eye(3)
    elif covariance_type == "diag":
        got, want = model.covariances_[order], np.diagonal(expected, axis1=1, axis2=2) + 1e-6
    elif covariance_type == "spherical":
        got, want = model.covariances_[order], np.diagonal(expected, axis1=1, axis2=2).mean(1) + 1e-6
    else:
        got, want = model.covariances_, (expected * nk[:, None, None]).sum(0) / nk.sum() + 1e-6 * np.eye(3)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    true_means = np.array([X0[labels == j].mean(0) for j in np.argsort(means_init[:, 0])])
    # Means are ~1e8: float64 resolves them to ~1.5e-8 absolute.
    np.testing.assert_allclose(model.means_[order] - shift, true_means, rtol=0, atol=1e-6)


def test_distributed_matches_local(local_cluster_client):
    X, _, _ = make_blobs(n=2000, d=4, k=3, seed=2)
    start = _sklearn_start(X, 3, "full")
    dX = da.from_array(X, chunks=(300, -1))
    with_cluster = GaussianMixture(3, tol=1e-8, max_iter=200, **start).fit(dX)
    assert with_cluster.persisted_
    import dask

    with dask.config.set(scheduler="sync"):
        # A client registers itself as the default scheduler; "sync" overrides it.
        without = GaussianMixture(3, tol=1e-8, max_iter=200, **start).fit(dX)
    assert with_cluster.n_iter_ == without.n_iter_
    np.testing.assert_allclose(with_cluster.covariances_, without.covariances_, rtol=1e-10)
    np.testing.assert_allclose(with_cluster.means_, without.means_, rtol=1e-10)
    labels = with_cluster.predict(dX)
    assert isinstance(labels, da.Array)
    np.testing.assert_array_equal(labels.compute(), without.predict(X))


def test_kmeans_default_init_on_cluster(local_cluster_client):
    X, _, true_means = make_blobs(n=3000, d=2, k=3, spread=10, seed=4)
    model = GaussianMixture(3, random_state=0).fit(da.from_array(X, chunks=(500, -1)))
    assert model.converged_
    got = model.means_[np.argsort(model.means_[:, 0])]
    want = true_means[np.argsort(true_means[:, 0])]
    np.testing.assert_allclose(got, want, atol=0.3)


# ---------------------------------------------------------------------------
# API contract
# ---------------------------------------------------------------------------


def test_lazy_outputs_keep_row_chunks(blobs):
    X, _, _ = blobs
    dX = da.from_array(X, chunks=(100, -1))
    model = GaussianMixture(3, random_state=0).fit(dX)
    for method, shape in [("predict", (600,)), ("score_samples", (600,)), ("predict_proba", (600, 3))]:
        lazy = getattr(model, method)(dX)
        assert isinstance(lazy, da.Array), method
        assert lazy.shape == shape
        assert lazy.chunks[0] == dX.chunks[0]
        eager = getattr(model, method)(X)
        assert isinstance(eager, np.ndarray)
        np.testing.assert_allclose(lazy.compute(), eager)
    np.testing.assert_allclose(model.predict_proba(X).sum(1), 1.0)


def test_fit_predict_equals_fit_then_predict(blobs):
    X, _, _ = blobs
    a = GaussianMixture(3, random_state=1).fit_predict(X)
    b = GaussianMixture(3, random_state=1).fit(X).predict(X)
    np.testing.assert_array_equal(a, b)


def test_clone_and_params():
    model = GaussianMixture(4, covariance_type="diag", reg_covar=1e-4, split_every=3)
    copy = clone(model)
    assert copy.get_params() == model.get_params()
    assert copy is not model
    model.set_params(n_components=5)
    assert model.n_components == 5
    with pytest.raises(ValueError, match="Invalid parameter 'bogus'"):
        model.set_params(bogus=1)
    assert "n_components=5" in repr(model)
    assert set(SkGaussianMixture().get_params()) <= set(model.get_params())


def test_defaults_match_sklearn():
    ours = GaussianMixture().get_params()
    for key, value in SkGaussianMixture().get_params().items():
        assert ours[key] == value, key


def test_sample_matches_sklearn(blobs):
    X, _, _ = blobs
    for covariance_type in COVARIANCE_TYPES:
        start = _sklearn_start(X, 3, covariance_type)
        ours = GaussianMixture(3, covariance_type=covariance_type, random_state=7, **start).fit(X)
        ref = SkGaussianMixture(3, covariance_type=covariance_type, random_state=7, **start).fit(X)
        Xs, ys = ours.sample(50)
        Xr, yr = ref.sample(50)
        np.testing.assert_array_equal(ys, yr)
        np.testing.assert_allclose(Xs, Xr, rtol=1e-6)
    with pytest.raises(ValueError, match="at least one sample"):
        ours.sample(0)


def test_convergence_warning(blobs):
    X, _, _ = blobs
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        model = GaussianMixture(3, max_iter=2, tol=0, random_state=0).fit(X)
    assert not model.converged_
    assert model.n_iter_ == 2


def test_warm_start_continues(blobs):
    X, _, _ = blobs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = GaussianMixture(3, max_iter=3, tol=0, random_state=0, warm_start=True)
        model.fit(X)
        first = model.lower_bound_
        model.fit(X)
    straight = GaussianMixture(3, max_iter=6, tol=0, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        straight.fit(X)
    assert model.lower_bound_ >= first
    np.testing.assert_allclose(model.means_, straight.means_, rtol=1e-10)


def test_float32_is_computed_in_float32():
    X, _, _ = make_blobs(n=400, d=3, k=2, seed=8, dtype=np.float32)
    model = GaussianMixture(2, random_state=0).fit(X)
    ref = GaussianMixture(2, random_state=0).fit(X.astype(np.float64))
    assert model.score_samples(X).dtype == np.float32
    assert model.predict_proba(da.from_array(X, chunks=100)).dtype == np.float32
    # Documented accuracy of float32: about 1e-5 relative on the parameters.
    np.testing.assert_allclose(model.means_, ref.means_, rtol=1e-4, atol=1e-4)


def test_integer_data_is_float64():
    X = np.random.default_rng(0).integers(0, 20, size=(300, 2))
    model = GaussianMixture(2, random_state=0).fit(X)
    assert model.score_samples(X).dtype == np.float64
    assert model.means_.dtype == np.float64


def test_save_method_refuses_overwrite(tmp_path, blobs):
    X, _, _ = blobs
    model = GaussianMixture(3, random_state=0).fit(X)
    path = tmp_path / "model.npz"
    model.save(path)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        model.save(path)
    loaded = daskgmm.load(path)
    np.testing.assert_array_equal(loaded.score_samples(X), model.score_samples(X))


# ---------------------------------------------------------------------------
# Bad input: one test each, asserting the message
# ---------------------------------------------------------------------------


def test_nan_in_data_is_reported():
    X, _, _ = make_blobs(n=300, seed=1)
    X[123, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity"):
        GaussianMixture(2, random_state=0).fit(da.from_array(X, chunks=(50, -1)))


def test_inf_in_data_is_reported():
    X, _, _ = make_blobs(n=300, seed=1)
    X[7, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or infinity"):
        GaussianMixture(2, init_params="random", random_state=0).fit(X)


def test_nan_with_full_init_is_reported():
    X, _, _ = make_blobs(n=300, seed=1)
    start = _sklearn_start(X, 3, "full")
    X[200, 2] = np.nan
    with pytest.raises(ValueError, match=r"NaN or infinity: 1 row\(s\).*first at row 200"):
        GaussianMixture(3, **start).fit(da.from_array(X, chunks=(64, -1)))


def test_nan_check_costs_no_extra_pass():
    """The NaN check rides on the passes the fit makes anyway."""
    X, _, _ = make_blobs(n=300, seed=1)
    start = _sklearn_start(X, 3, "full")
    model = GaussianMixture(3, tol=0, max_iter=4, **start)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X)
    assert model.n_passes_ == 4


@pytest.mark.parametrize(
    "X, message",
    [
        # NumPy input: scikit-learn's validate_data and its wording.
        (np.ones(10), r"Expected 2D array, got 1D array instead(.|\n)*Reshape your data"),
        (np.ones((4, 3, 2)), r"Found array with dim 3"),
        (np.ones((0, 3)), r"Found array with 0 sample\(s\)"),
        (np.ones((5, 0)), r"Found array with 0 feature\(s\)"),
        (np.array([["a", "b"], ["c", "d"]]), r"could not convert string to float"),
        (np.ones((5, 2), dtype=complex), r"Complex data not supported"),
    ],
    ids=["1d", "3d", "empty", "no-features", "strings", "complex"],
)
def test_bad_shapes_and_dtypes(X, message):
    with pytest.raises(ValueError, match=message):
        GaussianMixture(1).fit(X)


def test_bad_dask_shape():
    with pytest.raises(ValueError, match="got a 1-D array"):
        GaussianMixture(1).fit(da.ones(10, chunks=5))


def test_too_many_components():
    with pytest.raises(ValueError, match="n_components = 11, n_samples = 10"):
        GaussianMixture(11).fit(np.random.default_rng(0).normal(size=(10, 2)))


def test_n_components_below_one():
    with pytest.raises(InvalidParameterError, match="'n_components' parameter of GaussianMixture must be an int in the range \\[1, inf\\). Got 0"):
        GaussianMixture(0).fit(np.ones((5, 2)))


def test_feature_mismatch_at_predict(blobs):
    X, _, _ = blobs
    model = GaussianMixture(2, random_state=0).fit(X)
    for method in ["predict", "predict_proba", "score_samples", "score"]:
        with pytest.raises(ValueError, match="X has 2 features, but GaussianMixture is expecting 3 features"):
            getattr(model, method)(X[:, :2])


def test_predict_before_fit():
    with pytest.raises(daskgmm.NotFittedError, match="not fitted yet"):
        GaussianMixture(2).predict(np.ones((3, 2)))


def test_invalid_covariance_type():
    with pytest.raises(InvalidParameterError, match="'covariance_type' parameter of GaussianMixture must be a str among .*Got 'banana'"):
        GaussianMixture(2, covariance_type="banana").fit(np.ones((5, 2)))


def test_invalid_init_params():
    with pytest.raises(InvalidParameterError, match="'init_params' parameter of GaussianMixture must be a str among .*Got 'magic'"):
        GaussianMixture(2, init_params="magic").fit(np.ones((5, 2)))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(weights_init=[0.5, 0.5, 0.0]), r"'weights' should have the shape of \(2,\)"),
        (dict(weights_init=[1.5, -0.5]), r"'weights' should be in the range \[0, 1\]"),
        (dict(weights_init=[0.2, 0.7]), r"'weights' should be normalized"),
        (dict(means_init=np.zeros((3, 3))), r"'means' should have the shape of \(2, 3\)"),
        (dict(precisions_init=np.ones((2, 3))), r"'full precision' should have the shape of \(2, 3, 3\)"),
        (dict(precisions_init=-np.stack([np.eye(3)] * 2)), r"'full precision' should be symmetric, positive-definite"),
        (dict(covariance_type="diag", precisions_init=-np.ones((2, 3))), r"'diag precision' should be positive"),
        (dict(covariance_type="spherical", precisions_init=np.ones(3)), r"'spherical precision' should have the shape of \(2,\)"),
        (dict(covariance_type="tied", precisions_init=np.ones((2, 2))), r"'tied precision' should have the shape of \(3, 3\)"),
    ],
)
def test_invalid_initial_parameters(kwargs, message):
    X = np.random.default_rng(0).normal(size=(20, 3))
    with pytest.raises(ValueError, match=message):
        GaussianMixture(2, **kwargs).fit(X)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(tol=-1.0), r"'tol' parameter of GaussianMixture must be a float in the range \[0.0, inf\)"),
        (dict(reg_covar=-1e-3), r"'reg_covar' parameter of GaussianMixture must be a float in the range \[0.0, inf\)"),
        (dict(max_iter=-1), r"'max_iter' parameter of GaussianMixture must be an int in the range \[0, inf\)"),
        (dict(n_init=0), r"'n_init' parameter of GaussianMixture must be an int in the range \[1, inf\)"),
        (dict(split_every=1), r"'split_every' parameter of GaussianMixture must be an int in the range \[2, inf\)"),
        (dict(persist="sometimes"), r"'persist' parameter of GaussianMixture must be a str among \{'auto'\} or an instance of 'bool'"),
    ],
)
def test_invalid_parameters(kwargs, message):
    with pytest.raises(InvalidParameterError, match=message):
        GaussianMixture(2, **kwargs).fit(np.random.default_rng(0).normal(size=(20, 2)))


def test_ill_defined_covariance_message():
    X = np.zeros((10, 2))
    X[5:] = 1.0
    with pytest.raises(ValueError, match="increase reg_covar"):
        GaussianMixture(2, reg_covar=0, random_state=0).fit(X)


def test_best_restart_ignores_rounding_differences():
    """Restarts at the same optimum differ by the order of their sums (the
    chunking, the workers): the first of them is kept, as scikit-learn keeps
    the first of equal lower bounds; a clearly better later restart wins."""
    from types import SimpleNamespace

    from daskgmm.mixture import _best_run

    runs = [SimpleNamespace(lower_bound=v) for v in (-3.5, -2.0, -2.0 + 4e-16, -2.0 - 1e-16)]
    assert _best_run(runs) is runs[1]
    runs.append(SimpleNamespace(lower_bound=-2.0 + 1e-9))
    assert _best_run(runs) is runs[4]
    # float32 sums round at ~1e-7: the window follows the data's dtype.
    f32 = [SimpleNamespace(lower_bound=v) for v in (-2.0, -2.0 + 1e-6, -1.9)]
    assert _best_run(f32, np.float32) is f32[2]
    assert _best_run(f32[:2], np.float32) is f32[0] and _best_run(f32[:2]) is f32[1]
    unfitted = [SimpleNamespace(lower_bound=-np.inf) for _ in range(3)]
    assert _best_run(unfitted) is unfitted[0]
