"""Block math against naive references (scipy.stats), without Dask."""

import numpy as np
import pytest
from scipy import stats as sps
from scipy.special import logsumexp

from daskgmm import _blocks
from daskgmm._covariance import (
    covariances_from_stats,
    make_model,
    precisions_cholesky_from_covariances,
)

TYPES = ["full", "tied", "diag", "spherical"]


def _random_params(kind, k, d, rng):
    weights = rng.dirichlet(np.ones(k))
    means = rng.normal(scale=3, size=(k, d))
    if kind == "full":
        a = rng.normal(size=(k, d, d))
        cov = a @ a.transpose(0, 2, 1) + np.eye(d)
    elif kind == "tied":
        a = rng.normal(size=(d, d))
        cov = a @ a.T + np.eye(d)
    elif kind == "diag":
        cov = rng.uniform(0.5, 2, size=(k, d))
    else:
        cov = rng.uniform(0.5, 2, size=k)
    return weights, means, cov


def _full_covs(kind, cov, k, d):
    if kind == "full":
        return cov
    if kind == "tied":
        return np.stack([cov] * k)
    if kind == "diag":
        return np.stack([np.diag(c) for c in cov])
    return np.stack([np.eye(d) * c for c in cov])


@pytest.mark.parametrize("kind", TYPES)
def test_log_prob_matches_scipy(kind):
    rng = np.random.default_rng(0)
    k, d = 4, 3
    X = rng.normal(scale=4, size=(200, d))
    weights, means, cov = _random_params(kind, k, d, rng)
    model = make_model(weights, means, precisions_cholesky_from_covariances(cov, kind), kind)
    log_norm, log_resp = _blocks.estimate_log_resp(X, model)
    covs = _full_covs(kind, cov, k, d)
    naive = np.column_stack(
        [np.log(weights[j]) + sps.multivariate_normal(means[j], covs[j]).logpdf(X) for j in range(k)]
    )
    np.testing.assert_allclose(log_norm, logsumexp(naive, axis=1), rtol=1e-12)
    np.testing.assert_allclose(log_resp, naive - logsumexp(naive, axis=1)[:, None], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kind", TYPES)
def test_statistics_match_direct_formulas(kind):
    """One block -> M-step equals the textbook weighted formulas."""
    rng = np.random.default_rng(1)
    k, d = 3, 4
    X = rng.normal(size=(150, d)) * 2 + 5
    resp = rng.dirichlet(np.ones(k), size=150)
    stats = _blocks.block_statistics(X, _blocks.Model(kind, None, None, None, None), resp=resp)
    weights, means, cov = covariances_from_stats(stats, reg_covar=0.0)
    nk = resp.sum(0)
    want_means = resp.T @ X / nk[:, None]
    np.testing.assert_allclose(means, want_means, rtol=1e-12)
    np.testing.assert_allclose(weights, nk / 150, rtol=1e-12)
    full = np.stack([(resp[:, j, None] * (X - want_means[j])).T @ (X - want_means[j]) / nk[j] for j in range(k)])
    want = {
        "full": full,
        "tied": (full * nk[:, None, None]).sum(0) / nk.sum(),
        "diag": np.diagonal(full, axis1=1, axis2=2),
        "spherical": np.diagonal(full, axis1=1, axis2=2).mean(1),
    }[kind]
    np.testing.assert_allclose(cov, want, rtol=1e-10)


@pytest.mark.parametrize("kind", TYPES)
def test_merge_equals_concatenation(kind):
    rng = np.random.default_rng(2)
    k, d = 3, 2
    weights, means, cov = _random_params(kind, k, d, rng)
    model = make_model(weights, means, precisions_cholesky_from_covariances(cov, kind), kind)
    X = rng.normal(scale=3, size=(90, d)) + 1e6
    whole = _blocks.block_statistics(X, model)
    parts = [_blocks.block_statistics(X[a:b], model) for a, b in [(0, 1), (1, 40), (40, 90)]]
    merged = _blocks.merge_many(parts)
    swapped = _blocks.merge_many(parts[::-1])
    for got in (merged, swapped):
        for field in ("n_samples", "log_likelihood", "nk", "means", "scatter"):
            np.testing.assert_allclose(getattr(got, field), getattr(whole, field), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("kind", TYPES)
def test_float32_moments_far_from_origin_on_a_sorted_block(kind):
    """The pivot is the mean of a sample of rows (not a pass over the block):
    on a block sorted by component, 1e4 from the origin, float32 statistics
    still match float64 ones of the same (rounded) data to ~1e-5 of the
    variances (as with the block's mean as pivot), where raw second moments
    are off by ~160 (eps * 1e8)."""
    rng = np.random.default_rng(5)
    n, d = 20_000, 3
    X32 = (np.concatenate([rng.normal(size=(n // 2, d)), rng.normal(size=(n // 2, d)) * 2 + 8.0]) + 1e4).astype(
        np.float32
    )
    resp = np.zeros((n, 2))
    resp[: n // 2, 0] = resp[n // 2 :, 1] = 1
    empty = _blocks.Model(kind, None, None, None, None)
    want = covariances_from_stats(_blocks.block_statistics(X32.astype(np.float64), empty, resp=resp), 0.0)
    got = covariances_from_stats(_blocks.block_statistics(X32, empty, resp=resp.astype(np.float32)), 0.0)
    for w, g in zip(want, got):
        np.testing.assert_allclose(np.asarray(g, dtype=np.float64), w, rtol=1e-5, atol=5e-5)


@pytest.mark.parametrize("kind", TYPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_only_components_whose_log_density_would_cancel_leave_the_pivot(monkeypatch, kind, dtype):
    """The E-step evaluates every component about the block's pivot but
    those whose terms there would dwarf their log-densities (issue #20 item
    9), which take ``x - mu`` first: none of an ordinary mixture (means 3
    units apart in each of 16 features, K=8, unit-order variances), whose
    E-step stays the matrix products alone; a component of variance
    ``reg_covar`` ('tied': all of them) away from the pivot is, the same at
    the pivot is not.  In ``estimate_log_resp`` and ``block_statistics``."""
    exact = set()
    spy = _blocks._mahalanobis_about_mean
    monkeypatch.setattr(_blocks, "_mahalanobis_about_mean",
                        lambda xp, raw, model, j: exact.add(j) or spy(xp, raw, model, j))
    rng = np.random.default_rng(16)
    k, d = 8, 16
    weights, means, cov = _random_params(kind, k, d, rng)
    if kind in ("full", "tied"):  # unit-order spreads, as the others'
        cov = cov / d
    covs = _full_covs(kind, cov, k, d)
    labels = rng.integers(k, size=4000)
    X = np.concatenate([rng.multivariate_normal(means[j], covs[j], size=int((labels == j).sum())) for j in range(k)])
    X = X[rng.permutation(len(X))].astype(dtype)

    def flagged(cov, means):
        exact.clear()
        model = make_model(weights, means, precisions_cholesky_from_covariances(cov, kind), kind)
        _blocks.estimate_log_resp(X, model)
        in_estimate = sorted(exact)
        exact.clear()
        _blocks.block_statistics(X, model)
        assert sorted(exact) == in_estimate
        return in_estimate

    assert flagged(cov, means) == []
    tiny = {"tied": np.eye(d) * 1e-6}.get(kind, cov.copy())
    if kind != "tied":
        tiny[0] = 1e-6 * (np.eye(d) if kind == "full" else 1.0)
    assert flagged(tiny, means) == (list(range(k)) if kind == "tied" else [0])
    at_pivot = means.copy()
    at_pivot[0] = _blocks._pivot(np, X)
    assert flagged(tiny, at_pivot) == (list(range(1, k)) if kind == "tied" else [])


def test_slicing_inside_a_block_is_invisible(monkeypatch):
    """Row slices inside one block (bounded temporaries) do not change the stats."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(500, 3))
    weights, means, cov = _random_params("full", 2, 3, rng)
    model = make_model(weights, means, precisions_cholesky_from_covariances(cov, "full"), "full")
    one = _blocks.block_statistics(X, model)
    monkeypatch.setattr(_blocks, "SLICE_ELEMENTS", 64 * 6)
    many = _blocks.block_statistics(X, model)
    np.testing.assert_allclose(many.scatter, one.scatter, rtol=1e-12)
    np.testing.assert_allclose(many.log_likelihood, one.log_likelihood, rtol=1e-12)


def test_far_points_get_finite_responsibilities():
    rng = np.random.default_rng(4)
    weights, means, cov = _random_params("full", 3, 2, rng)
    model = make_model(weights, means, precisions_cholesky_from_covariances(cov, "full"), "full")
    X = np.array([[1e6, -1e6], [0.0, 0.0], [-3e5, 7e5]])
    log_norm, log_resp = _blocks.estimate_log_resp(X, model)
    assert np.all(np.isfinite(log_norm))
    np.testing.assert_allclose(np.exp(log_resp).sum(1), 1.0)


def test_log_normalize_handles_minus_inf_columns():
    # One column per row of data, one row per component (component-major).
    a = np.array([[-np.inf, -np.inf], [1000.0, 1000.0], [-1000.0, 0.0]]).T
    with np.errstate(divide="ignore", invalid="ignore"):
        out, log_resp = _blocks.log_normalize(np, a.copy())  # both work in place
        total, resp = _blocks._normalize(np, a.copy())
    assert out[0] == -np.inf
    assert out[1] == pytest.approx(1000 + np.log(2))
    assert out[2] == pytest.approx(0.0)
    np.testing.assert_array_equal(total, out)
    np.testing.assert_allclose(resp[:, 1:], np.exp(log_resp[:, 1:]), rtol=1e-15)
    np.testing.assert_allclose(resp[:, 1:], [[0.5, 0.0], [0.5, 1.0]], atol=1e-300)


def test_skip_nonfinite_rows():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(20, 2))
    X[3, 0] = np.nan
    weights, means, cov = _random_params("diag", 2, 2, rng)
    model = make_model(weights, means, precisions_cholesky_from_covariances(cov, "diag"), "diag")
    stats = _blocks.block_statistics(X, model, skip_nonfinite=True)
    clean = _blocks.block_statistics(np.delete(X, 3, axis=0), model)
    assert float(stats.n_samples) == 19
    np.testing.assert_allclose(stats.scatter, clean.scatter, rtol=1e-12)
    log_norm, log_resp = _blocks.estimate_log_resp(X, model, skip_nonfinite=True)
    assert np.isnan(log_norm[3]) and np.isnan(log_resp[3]).all()
    assert np.isfinite(np.delete(log_norm, 3)).all()
    with pytest.raises(ValueError, match=r"first at row 103"):
        _blocks.block_statistics(X, model, row_offset=100)


@pytest.mark.parametrize("kind", TYPES)
def test_skipped_rows_count_for_no_scatter(kind):
    """A skipped row has no responsibility: it is in no component's scatter
    ('tied' too, whose moment is shared by the components)."""
    rng = np.random.default_rng(7)
    X = rng.normal(size=(50, 2)) + 10.0
    X[3, 0] = np.nan
    weights, means, cov = _random_params(kind, 2, 2, rng)
    model = make_model(weights, means + 10.0, precisions_cholesky_from_covariances(cov, kind), kind)
    skipped = _blocks.block_statistics(X, model, skip_nonfinite=True)
    clean = _blocks.block_statistics(np.delete(X, 3, axis=0), model)
    np.testing.assert_allclose(skipped.scatter, clean.scatter, rtol=1e-12)
    np.testing.assert_allclose(skipped.means, clean.means, rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_exp_of_far_components_is_exact_or_zero(dtype):
    """Responsibilities of far components: exp to within e^2 x the smallest
    normal number, never negative; in float64 (whose exp has a slow path
    there) flushed to exact zeros below that; everything else is exp."""
    tiny_log = np.log(np.finfo(dtype).tiny)
    a = np.array([0.0, -1.0, -50.0, tiny_log + 2.5, tiny_log + 1.0, tiny_log - 30.0, -1e6, -np.inf, np.nan], dtype=dtype)
    out = _blocks._exp_nonpositive(_blocks.get_namespace(a), a)
    assert out.dtype == a.dtype
    with np.errstate(under="ignore"):
        want = np.exp(a)
    np.testing.assert_array_equal(out[:3], want[:3])
    # Near the floor: exp to within e^2 x tiny, still positive.
    assert 0 < out[3] <= want[3] and want[3] - out[3] <= np.exp(tiny_log + 2.0) * 1.0001
    if dtype == np.float64:
        np.testing.assert_array_equal(out[4:8], 0.0)
    else:
        assert np.all(out[4:8] >= 0) and np.all(out[4:8] <= np.exp(tiny_log + 2.0))
        np.testing.assert_array_equal(out[6:8], 0.0)
    assert np.isnan(out[8])


@pytest.mark.parametrize("kind", ["full", "diag", "spherical"])
@pytest.mark.parametrize("sizes", [(3, 3, 3), (2, 5, 1)])
def test_stacked_models_give_the_statistics_of_separate_calls(kind, sizes):
    """Restarts evaluated together (one GEMM, shared pair products, grouped
    normalisation) give each mixture the statistics of a call of its own."""
    rng = np.random.default_rng(8)
    d = 4
    X = rng.normal(size=(700, d)) * 2 + 50.0
    models = []
    for k in sizes:
        weights, means, cov = _random_params(kind, k, d, rng)
        models.append(make_model(weights, means + 50.0, precisions_cholesky_from_covariances(cov, kind), kind))
    stacked, groups = _blocks.stack_models(models)
    together = _blocks.split_statistics(_blocks.block_statistics(X, stacked, groups=groups), groups)
    for model, got in zip(models, together):
        alone = _blocks.block_statistics(X, model)
        for field in ("n_samples", "log_likelihood", "nk", "means", "scatter"):
            np.testing.assert_allclose(getattr(got, field), getattr(alone, field), rtol=1e-11, atol=1e-9)


@pytest.mark.parametrize("k, d", [(8, 3), (2, 6)])
def test_both_forms_of_the_full_second_moment_agree(monkeypatch, k, d):
    """Shared pair products (K > (D + 1) / 2) and per-component weighted rows
    give the same scatter, whichever the size rule picks."""
    rng = np.random.default_rng(9)
    X = rng.normal(size=(400, d)) * 3 - 1e4
    resp = rng.dirichlet(np.ones(k), size=400)
    empty = _blocks.Model("full", None, None, None, None)
    default = _blocks.block_statistics(X, empty, resp=resp)
    monkeypatch.setattr(_blocks, "_uses_pairs", lambda kind, k_, d_: not (d_ * (d_ + 1) // 2 < k_ * d_))
    other = _blocks.block_statistics(X, empty, resp=resp)
    np.testing.assert_allclose(other.scatter, default.scatter, rtol=1e-10)
    np.testing.assert_allclose(other.means, default.means, rtol=1e-12)
    want = np.stack([(resp[:, j, None] * (X - default.means[j])).T @ (X - default.means[j]) for j in range(k)])
    np.testing.assert_allclose(default.scatter, want, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("kind, k, d, strategy", [
    ("full", 3, 5, "_FullSums"),  # K <= (D + 1) / 2: one product for all components
    ("full", 4, 5, "_PivotSums"),  # K > (D + 1) / 2: the shared pair products
    ("tied", 1, 5, "_PivotSums"),
    ("diag", 4, 5, "_DiagonalSums"),
    ("spherical", 2, 5, "_DiagonalSums"),
])
@pytest.mark.parametrize("given", [True, False])
def test_every_slice_goes_to_the_one_accumulator_the_size_rule_picks(monkeypatch, kind, k, d, strategy, given):
    """block_statistics adds each slice of a block to one accumulator, the
    strategy that the covariance type and the shapes pick, whether the
    responsibilities are given or come from a model; its statistics are the
    two-pass ones."""
    monkeypatch.setattr(_blocks, "SLICE_ELEMENTS", 2048)
    used = []
    for name in ("_FullSums", "_PivotSums", "_DiagonalSums"):
        cls = getattr(_blocks, name)
        monkeypatch.setattr(cls, "add", lambda self, *a, _spy=cls.add: used.append(type(self).__name__) or _spy(self, *a))
    rng = np.random.default_rng(21)
    X = rng.normal(size=(3000, d)) + 50.0
    if given:
        model, resp = _blocks.Model(kind, None, None, None, None), rng.dirichlet(np.ones(k), size=len(X))
        stats = _blocks.block_statistics(X, model, resp=resp)
    else:
        weights, means, cov = _random_params(kind, k, d, rng)
        model = make_model(weights, means + 50.0, precisions_cholesky_from_covariances(cov, kind), kind)
        stats = _blocks.block_statistics(X, model)
        resp = np.exp(_blocks.estimate_log_resp(X, model)[1])
    assert len(used) == len(_blocks._row_slices(len(X), k, d, kind, 8)) > 1
    assert set(used) == {strategy}
    nk = resp.sum(axis=0)
    means = resp.T @ X / nk[:, None]
    np.testing.assert_allclose(stats.nk, nk, rtol=1e-12)
    np.testing.assert_allclose(stats.means, means, rtol=1e-12)
    scatter = np.stack([(resp[:, j, None] * (X - means[j])).T @ (X - means[j]) for j in range(k)])
    # 'diag' and 'spherical': the diagonal (the M-step averages it for 'spherical').
    want = {"full": scatter, "tied": scatter.sum(axis=0)}.get(kind, np.diagonal(scatter, axis1=1, axis2=2))
    np.testing.assert_allclose(stats.scatter, want, rtol=1e-9)


def test_an_unknown_covariance_type_is_refused_with_given_responsibilities():
    """No E-step names the type then: the choice of the accumulator does."""
    X = np.random.default_rng(22).normal(size=(50, 3))
    with pytest.raises(ValueError, match="unknown covariance_type 'banded'"):
        _blocks.block_statistics(X, _blocks.Model("banded", None, None, None, None), resp=np.full((50, 2), 0.5))
