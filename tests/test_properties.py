"""Property-based tests (hypothesis) of the block functions in daskgmm._blocks:
responsibilities sum to 1, statistics merge exactly (concatenation,
commutativity, associativity), and log-likelihoods stay finite for finite
input, far-away rows included."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from daskgmm._blocks import COVARIANCE_TYPES, block_statistics, estimate_log_resp, merge_statistics
from daskgmm._covariance import make_model, precisions_cholesky_from_covariances

SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
coords = st.floats(-10.0, 10.0, allow_nan=False, allow_infinity=False)


@st.composite
def models(draw, n_features=None):
    """A random valid mixture: 1-4 components, 1-4 features, any covariance type."""
    kind = draw(st.sampled_from(COVARIANCE_TYPES))
    k = draw(st.integers(1, 4))
    d = n_features if n_features is not None else draw(st.integers(1, 4))
    weights = draw(arrays(np.float64, k, elements=st.floats(0.01, 1.0)))
    weights = weights / weights.sum()
    means = draw(arrays(np.float64, (k, d), elements=coords))
    variances = st.floats(0.05, 5.0)
    if kind == "full":
        factors = draw(arrays(np.float64, (k, d, d), elements=st.floats(-2.0, 2.0)))
        cov = factors @ np.swapaxes(factors, 1, 2) + 0.1 * np.eye(d)
    elif kind == "tied":
        factor = draw(arrays(np.float64, (d, d), elements=st.floats(-2.0, 2.0)))
        cov = factor @ factor.T + 0.1 * np.eye(d)
    elif kind == "diag":
        cov = draw(arrays(np.float64, (k, d), elements=variances))
    else:
        cov = draw(arrays(np.float64, k, elements=variances))
    return make_model(weights, means, precisions_cholesky_from_covariances(cov, kind), kind)


@st.composite
def model_and_rows(draw, min_rows=1, far=False):
    model = draw(models())
    d = model.means.shape[1]
    X = draw(arrays(np.float64, (draw(st.integers(min_rows, 40)), d), elements=coords))
    if far:
        # Some rows moved 1e3 .. 1e12 (in units of the data) away from everything.
        scale = draw(st.sampled_from([1e3, 1e6, 1e9, 1e12]))
        n_far = draw(st.integers(1, X.shape[0]))
        X[:n_far] = X[:n_far] * scale + np.sign(X[:n_far] + 0.5) * scale
    return model, X


@SETTINGS
@given(model_and_rows(far=True), st.sampled_from([np.float64, np.float32]))
def test_responsibilities_sum_to_one(case, dtype):
    model, X = case
    X = X.astype(dtype)
    log_norm, log_resp = estimate_log_resp(X, model)
    resp = np.exp(log_resp)
    assert np.all(np.isfinite(resp)) and np.all(resp >= 0)
    np.testing.assert_allclose(resp.sum(axis=1), 1.0, rtol=0, atol=20 * np.finfo(dtype).eps)


@SETTINGS
@given(model_and_rows(far=True))
def test_log_likelihood_finite_for_finite_input(case):
    model, X = case
    log_norm, _ = estimate_log_resp(X, model)
    assert np.all(np.isfinite(log_norm))
    stats = block_statistics(X, model)
    assert np.isfinite(stats.log_likelihood)
    assert stats.log_likelihood == pytest.approx(log_norm.sum(), rel=1e-9)
    # Every row counts once, however far: sum_k nk == n.
    assert float(np.sum(stats.nk)) == pytest.approx(X.shape[0], rel=1e-9)
    for value in stats[1:]:
        assert np.all(np.isfinite(value))


def assert_stats_close(a, b, rtol):
    assert a.covariance_type == b.covariance_type
    assert float(a.n_samples) == float(b.n_samples)
    scale = 1.0 + abs(float(b.log_likelihood))
    assert abs(float(a.log_likelihood) - float(b.log_likelihood)) <= rtol * scale
    np.testing.assert_allclose(a.nk, b.nk, rtol=rtol, atol=rtol * float(np.sum(b.nk)))
    # Means and scatter of components with a negligible count are ill-conditioned
    # (0/0 in the limit); compare them where the count is meaningful.
    held = np.asarray(b.nk) > 1e-6
    np.testing.assert_allclose(np.asarray(a.means)[held], np.asarray(b.means)[held], rtol=rtol, atol=rtol * 10)
    scatter_scale = 1.0 + np.max(np.abs(b.scatter))
    if a.covariance_type == "tied":
        np.testing.assert_allclose(a.scatter, b.scatter, rtol=rtol, atol=rtol * scatter_scale)
    else:
        np.testing.assert_allclose(
            np.asarray(a.scatter)[held], np.asarray(b.scatter)[held], rtol=rtol, atol=rtol * scatter_scale
        )


@SETTINGS
@given(model_and_rows(min_rows=2), st.data())
def test_merge_of_two_chunks_equals_their_concatenation(case, data):
    model, X = case
    cut = data.draw(st.integers(1, X.shape[0] - 1))
    merged = merge_statistics(block_statistics(X[:cut], model), block_statistics(X[cut:], model))
    assert_stats_close(merged, block_statistics(X, model), rtol=1e-9)


@SETTINGS
@given(model_and_rows(min_rows=3), st.data())
def test_merge_is_commutative_and_associative(case, data):
    model, X = case
    i = data.draw(st.integers(1, X.shape[0] - 2))
    j = data.draw(st.integers(i + 1, X.shape[0] - 1))
    a, b, c = (block_statistics(part, model) for part in (X[:i], X[i:j], X[j:]))
    assert_stats_close(merge_statistics(a, b), merge_statistics(b, a), rtol=1e-12)
    left = merge_statistics(merge_statistics(a, b), c)
    right = merge_statistics(a, merge_statistics(b, c))
    assert_stats_close(left, right, rtol=1e-10)
    assert_stats_close(left, block_statistics(X, model), rtol=1e-9)
