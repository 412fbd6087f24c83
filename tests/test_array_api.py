"""The block functions and a whole fit on a strict array-API namespace.

``array_api_strict`` implements the standard and nothing else (no NumPy
functions, no implicit conversions, no NumPy index arrays), so code that runs
on it uses only what CuPy, PyTorch and other array-API libraries also offer:
this is the CPU proof that a Dask array of GPU chunks goes through the same
code.  Every result is compared with the NumPy run of the same function.
"""

import array_api_strict as xps
import numpy as np
import pytest

import dask
import dask.array as da

from daskgmm import GaussianMixture, _blocks
from daskgmm._covariance import make_model, precisions_cholesky_from_covariances

from .conftest import make_blobs

TYPES = ["full", "tied", "diag", "spherical"]
STATS_FIELDS = ("n_samples", "log_likelihood", "nk", "means", "scatter")


def _is_strict(array):
    return type(array).__module__.startswith("array_api_strict")


def _model(kind, X, k=3, seed=0):
    """Parameters near the data: means at rows, covariances from the data."""
    rng = np.random.default_rng(seed)
    means = X[rng.choice(len(X), k, replace=False)]
    cov = np.cov(X.T) + 0.1 * np.eye(X.shape[1])
    covariances = {
        "full": np.stack([cov * (1 + 0.3 * j) for j in range(k)]),
        "tied": cov,
        "diag": np.stack([np.diag(cov) * (1 + 0.3 * j) for j in range(k)]),
        "spherical": np.mean(np.diag(cov)) * (1 + 0.3 * np.arange(k)),
    }[kind]
    weights = rng.dirichlet(np.ones(k))
    return make_model(weights, means, precisions_cholesky_from_covariances(covariances, kind), kind)


def _assert_stats_equal(strict_stats, numpy_stats, rtol):
    assert strict_stats.covariance_type == numpy_stats.covariance_type
    for name in STATS_FIELDS:
        got, want = getattr(strict_stats, name), getattr(numpy_stats, name)
        assert _is_strict(got), f"{name} left the array_api_strict namespace: {type(got)}"
        np.testing.assert_allclose(_blocks.to_numpy(got), want, rtol=rtol, atol=0, err_msg=name)


@pytest.fixture(scope="module")
def data():
    X, _, _ = make_blobs(n=400, d=3, k=3, seed=7)
    return X


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind", TYPES)
def test_block_statistics_on_strict_arrays(data, kind, dtype):
    X = data.astype(dtype)
    model = _model(kind, data)
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    _assert_stats_equal(_blocks.block_statistics(xps.asarray(X), model), _blocks.block_statistics(X, model), rtol)


@pytest.mark.parametrize("kind", TYPES)
def test_block_statistics_with_given_responsibilities(data, kind):
    resp = np.random.default_rng(3).dirichlet(np.ones(3), size=len(data))
    model = _blocks.Model(kind, None, None, None, None)
    strict = _blocks.block_statistics(xps.asarray(data), model, resp=xps.asarray(resp))
    _assert_stats_equal(strict, _blocks.block_statistics(data, model, resp=resp), 1e-12)


@pytest.mark.parametrize("kind", TYPES)
def test_skip_nonfinite_on_strict_arrays(data, kind):
    X = data.copy()
    X[[5, 17], [0, 2]] = [np.nan, np.inf]
    model = _model(kind, data)
    strict = _blocks.block_statistics(xps.asarray(X), model, skip_nonfinite=True)
    want = _blocks.block_statistics(X, model, skip_nonfinite=True)
    _assert_stats_equal(strict, want, 1e-12)
    assert float(strict.n_samples) == len(X) - 2
    log_norm, log_resp = _blocks.estimate_log_resp(xps.asarray(X), model, skip_nonfinite=True)
    want_norm, want_resp = _blocks.estimate_log_resp(X, model, skip_nonfinite=True)
    np.testing.assert_allclose(_blocks.to_numpy(log_norm), want_norm, rtol=1e-12)
    np.testing.assert_allclose(_blocks.to_numpy(log_resp), want_resp, rtol=1e-12)
    assert np.isnan(_blocks.to_numpy(log_norm)[[5, 17]]).all()


@pytest.mark.parametrize("kind", TYPES)
def test_nonfinite_error_on_strict_arrays(data, kind):
    X = data.copy()
    X[11, 1] = np.nan
    with pytest.raises(ValueError, match=r"1 row\(s\) with non-finite values among rows \d+ to \d+ \(first at row 111\)"):
        _blocks.block_statistics(xps.asarray(X), _model(kind, data), row_offset=100)


@pytest.mark.parametrize("kind", TYPES)
def test_merge_statistics_on_strict_arrays(data, kind):
    model = _model(kind, data)
    parts = [data[:90], data[90:250], data[250:]]
    strict = [_blocks.block_statistics(xps.asarray(p), model) for p in parts]
    numpy = [_blocks.block_statistics(p, model) for p in parts]
    _assert_stats_equal(_blocks.merge_statistics(strict[0], strict[1]), _blocks.merge_statistics(numpy[0], numpy[1]), 1e-12)
    _assert_stats_equal(_blocks.merge_many(strict), _blocks.merge_many(numpy), 1e-12)
    # and the merge of the parts is the statistics of the whole block
    _assert_stats_equal(_blocks.merge_many(strict), _blocks.block_statistics(data, model), 1e-10)


@pytest.mark.parametrize("kind", TYPES)
def test_estimate_log_resp_on_strict_arrays(data, kind):
    model = _model(kind, data)
    log_norm, log_resp = _blocks.estimate_log_resp(xps.asarray(data), model)
    want_norm, want_resp = _blocks.estimate_log_resp(data, model)
    assert _is_strict(log_norm) and _is_strict(log_resp)
    np.testing.assert_allclose(_blocks.to_numpy(log_norm), want_norm, rtol=1e-12)
    np.testing.assert_allclose(_blocks.to_numpy(log_resp), want_resp, rtol=1e-12)


# --------------------------------------------------------------------------
# A whole fit on a Dask array whose chunks are array_api_strict arrays
# --------------------------------------------------------------------------


def _strict_chunks(X, rows):
    """Dask array whose chunks are array_api_strict arrays.

    Its meta stays NumPy: Dask cannot hold an array_api_strict meta (its
    dtype never compares equal to a NumPy dtype), but only the chunks reach
    the block functions.
    """
    return da.from_array(X, chunks=(rows, -1)).map_blocks(xps.asarray, dtype=X.dtype, meta=np.empty((0, 0), X.dtype))


@pytest.fixture
def spy_on_blocks(monkeypatch):
    """Record the namespace of every block the EM pass hands to block_statistics."""
    seen = []
    original = _blocks.block_statistics

    def spy(X, *args, **kwargs):
        seen.append("strict" if _is_strict(X) else type(X).__name__)
        return original(X, *args, **kwargs)

    monkeypatch.setattr(_blocks, "block_statistics", spy)
    return seen


def _fit(X, **params):
    with dask.config.set(scheduler="sync"):
        return GaussianMixture(3, random_state=0, **params).fit(X)


def _assert_same_fit(strict_fit, numpy_fit, rtol):
    assert strict_fit.n_iter_ == numpy_fit.n_iter_
    assert strict_fit.converged_ == numpy_fit.converged_
    np.testing.assert_allclose(strict_fit.lower_bound_, numpy_fit.lower_bound_, rtol=rtol)
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        np.testing.assert_allclose(getattr(strict_fit, name), getattr(numpy_fit, name), rtol=rtol, atol=0, err_msg=name)


@pytest.mark.parametrize("kind", TYPES)
def test_fit_on_strict_chunks_matches_numpy(data, kind, spy_on_blocks):
    numpy_fit = _fit(da.from_array(data, chunks=(100, -1)), covariance_type=kind, init_params="k-means++")
    spy_on_blocks.clear()
    strict_fit = _fit(_strict_chunks(data, 100), covariance_type=kind, init_params="k-means++")
    assert spy_on_blocks and set(spy_on_blocks) == {"strict"}
    assert strict_fit.n_iter_ >= 2
    _assert_same_fit(strict_fit, numpy_fit, 1e-12)


def test_float32_fit_on_strict_chunks_matches_numpy(data):
    X = data.astype(np.float32)
    numpy_fit = _fit(da.from_array(X, chunks=(100, -1)), init_params="random")
    strict_fit = _fit(_strict_chunks(X, 100), init_params="random")
    _assert_same_fit(strict_fit, numpy_fit, 1e-6)


@pytest.mark.parametrize(
    "what",
    ["predict_proba", "predict", "score_samples"],
)
def test_predictions_on_strict_chunks(data, what):
    X = _strict_chunks(data, 150)
    fitted = _fit(da.from_array(data, chunks=(150, -1)), init_params="k-means++")
    lazy = getattr(fitted, what)(X)
    # Dask's concatenation of chunks is NumPy-only, so gather the chunks ourselves.
    with dask.config.set(scheduler="sync"):
        parts = dask.compute(*lazy.to_delayed().ravel())
    assert all(_is_strict(p) for p in parts)
    got = np.concatenate([_blocks.to_numpy(p) for p in parts])
    np.testing.assert_allclose(got, getattr(fitted, what)(data), rtol=1e-12)


@pytest.mark.filterwarnings("ignore::daskgmm.ConvergenceWarning")  # max_iter=3 on purpose
@pytest.mark.parametrize("init_params", ["kmeans", "random_from_data", "random", "k-means++"])
def test_every_init_runs_on_strict_chunks(data, init_params):
    numpy_fit = _fit(da.from_array(data, chunks=(100, -1)), init_params=init_params, max_iter=3, tol=0.0)
    strict_fit = _fit(_strict_chunks(data, 100), init_params=init_params, max_iter=3, tol=0.0)
    _assert_same_fit(strict_fit, numpy_fit, 1e-12)
