"""Precision of the block scatter (issue #15 item 1): the statistics of one
block against a float64 two-pass reference (exact weighted means, then
weighted centred second moments) on the same rows and responsibilities, over
the separation of the clusters and their offset from the origin, measured in
units of the clusters' spread.  Before, the scatter was a pivot moment minus
``n_k m_k^2`` about the block's pivot, so clusters far from it (relative to
their spread) cancelled to nothing."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from daskgmm import GaussianMixture, _blocks
from daskgmm._blocks import COVARIANCE_TYPES, Model, block_statistics, merge_statistics

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Largest relative error of a variance (and of a covariance, relative to the
# geometric mean of its two variances) against the float64 reference.
TOLERANCE = {np.float64: 1e-10, np.float32: 1e-4}


def two_pass_reference(X, resp):
    """nk (K,), means (K, D) and the full scatter (K, D, D) in float64, two passes."""
    X = np.asarray(X, dtype=np.float64)
    resp = np.asarray(resp, dtype=np.float64)
    nk = resp.sum(axis=0)
    means = resp.T @ X / nk[:, None]
    scatter = np.stack([(resp[:, j, None] * (X - means[j])).T @ (X - means[j]) for j in range(resp.shape[1])])
    return nk, means, scatter


def assert_scatter_close(stats, X, resp, rtol):
    """Variances (and covariances, on the scale of their variances) of
    ``stats`` within ``rtol`` of the two-pass reference."""
    nk, means, full = two_pass_reference(X, resp)
    kind = stats.covariance_type
    got = np.asarray(stats.scatter, dtype=np.float64)
    if kind == "tied":
        want, got = full.sum(axis=0)[None], got[None]
    elif kind == "full":
        want = full
    else:
        want = np.diagonal(full, axis1=1, axis2=2)
    np.testing.assert_allclose(np.asarray(stats.nk, dtype=np.float64), nk, rtol=max(rtol, 1e-12))
    if want.ndim == 3:
        diag = np.diagonal(want, axis1=1, axis2=2)
        scale = np.sqrt(diag[:, :, None] * diag[:, None, :])
        assert np.all(np.abs(got - want) <= rtol * scale), np.max(np.abs(got - want) / scale)
    else:
        assert np.all(np.abs(got - want) <= rtol * want), np.max(np.abs(got - want) / want)
    # The means too, to the rounding of the data (their own distance from 0).
    spread = np.sqrt(np.diagonal(full, axis1=1, axis2=2) / nk[:, None])
    err = np.abs(np.asarray(stats.means, dtype=np.float64) - means)
    bound = rtol * spread + 32 * np.finfo(X.dtype).eps * np.abs(means)
    assert np.all(err <= bound), (err / bound).max()


@st.composite
def separated_clusters(draw, dtype):
    """Clusters of unit-order spread (times ``scale``) whose centres are
    ``separation`` spreads apart and ``offset`` spreads from the origin;
    their rows, shuffled or in cluster order, and responsibilities that are
    the labels, softened or not."""
    k = draw(st.integers(2, 3))
    d = draw(st.integers(1, 6))  # 'full' from D = 2K - 1 on: one product for all components (_FullSums)
    if dtype == np.float32:  # float32 rows still resolve the spread (1e5 spreads: 0.6% of one)
        separation = draw(st.sampled_from([0.5, 3.0, 30.0, 1e3, 3e4]))
        offset = draw(st.sampled_from([0.0, 10.0, 1e3, 3e4]))
    else:
        separation = draw(st.sampled_from([0.5, 3.0, 30.0, 1e3, 1e5, 1e7]))
        offset = draw(st.sampled_from([0.0, 10.0, 1e4, 1e6, 1e8]))
    scale = draw(st.sampled_from([1e-2, 1.0, 1e3]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    sizes = rng.integers(20, 400, size=k)
    direction = rng.normal(size=d)
    direction /= np.linalg.norm(direction)
    centres = (offset + separation * np.arange(k))[:, None] * direction[None, :]
    blocks = []
    for j in range(k):
        mixing = rng.normal(size=(d, d)) * 0.5 + np.eye(d) * rng.uniform(0.5, 2.0)
        blocks.append(centres[j] + rng.normal(size=(sizes[j], d)) @ mixing.T)
    X = (np.concatenate(blocks) * scale).astype(dtype)
    labels = np.repeat(np.arange(k), sizes)
    resp = np.eye(k)[labels]
    # Soft on every row, or on one row in ten (then most rows count for one
    # component and the others for several), or hard.
    soft = draw(st.sampled_from([0.0, 1e-3, 0.3]))
    if soft:
        rows = rng.random(len(labels)) < draw(st.sampled_from([0.1, 1.0]))
        resp[rows] = (1 - soft) * resp[rows] + soft * rng.dirichlet(np.ones(k), size=int(rows.sum()))
    if draw(st.booleans()):
        order = rng.permutation(len(labels))
        X, resp = X[order], resp[order]
    return X, resp.astype(dtype)


@pytest.mark.parametrize("kind", COVARIANCE_TYPES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_scatter_matches_a_two_pass_reference_over_separation_and_offset(kind, dtype):
    @SETTINGS
    @given(separated_clusters(dtype))
    def check(case):
        X, resp = case
        stats = block_statistics(X, Model(kind, None, None, None, None), resp=resp)
        assert_scatter_close(stats, X, resp, TOLERANCE[dtype])

    check()


@pytest.mark.parametrize("kind", COVARIANCE_TYPES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("ordered", [False, True])
def test_slices_and_merges_keep_the_precision(monkeypatch, kind, dtype, ordered):
    """Many row slices per block (some far from the pivot, some not; in
    cluster order, the first slices without rows of the later clusters) and
    the pairwise merge of blocks: still the two-pass scatter."""
    monkeypatch.setattr(_blocks, "SLICE_ELEMENTS", 64 * 64)
    rng = np.random.default_rng(3)
    n, d = 3000, 3
    labels = rng.integers(3, size=n)
    if ordered:
        labels = np.sort(labels)
    centres = np.array([[0.0] * d, [1.0] * d, [1e4] * d]) * (1.0 if dtype == np.float32 else 1e3)
    X = (centres[labels] + rng.normal(size=(n, d)) * np.array([0.01, 1.0, 0.1])[labels, None] + 100.0).astype(dtype)
    resp = np.eye(3, dtype=dtype)[labels]
    empty = Model(kind, None, None, None, None)
    whole = block_statistics(X, empty, resp=resp)
    merged = merge_statistics(block_statistics(X[:1234], empty, resp=resp[:1234]),
                              block_statistics(X[1234:], empty, resp=resp[1234:]))
    for stats in (whole, merged):
        assert_scatter_close(stats, X, resp, TOLERANCE[dtype])


@pytest.mark.parametrize("kind", COVARIANCE_TYPES)
@pytest.mark.parametrize("dense_fraction", [0.0, 0.4, 0.5, 1.0])
def test_every_way_of_summing_about_own_pivots_agrees(monkeypatch, kind, dense_fraction):
    """A component far from the pivot is summed about its own over the whole
    slice (responsibility on most rows), or with the others on its rows'
    first components plus the rows it shares gathered, or on its rows
    gathered ('diag', 'spherical': per feature, its rows gathered or every
    flagged pair of the components on most rows in one pass): the same
    scatter every way."""
    monkeypatch.setattr(_blocks, "DENSE_FRACTION", dense_fraction)
    rng = np.random.default_rng(6)
    n, d = 2000, 2
    labels = rng.integers(3, size=n)
    X = np.array([[0.0, 0.0], [1.0, 3.0], [1e5, 1e5]])[labels] + rng.normal(size=(n, d)) * 0.5
    resp = np.eye(3)[labels]
    # One row of the two near clusters in five counts for both.
    shared = (rng.random(n) < 0.2) & (labels < 2)
    resp[shared, :2] = 0.7 * resp[shared, :2] + 0.3 * rng.dirichlet(np.ones(2), size=int(shared.sum()))
    calls = []
    if kind in ("diag", "spherical"):
        spy = _blocks._DiagonalSums._add_own
        monkeypatch.setattr(_blocks._DiagonalSums, "_add_own",
                            lambda self, *args: calls.append(self.own.all(axis=1)) or spy(self, *args))
    else:
        spy = _blocks._sums_about_own_pivots
        monkeypatch.setattr(_blocks, "_sums_about_own_pivots", lambda *args: calls.append(args[3]) or spy(*args))
    stats = block_statistics(X, Model(kind, None, None, None, None), resp=resp)
    assert calls and all(calls[0])  # every component far from the pivot, on its own
    assert_scatter_close(stats, X, resp, TOLERANCE[np.float64])


def _model(kind, means, variance, dtype):
    from daskgmm._covariance import make_model, precisions_cholesky_from_covariances

    k, d = means.shape
    cov = {"full": np.stack([np.eye(d) * variance] * k), "tied": np.eye(d) * variance,
           "diag": np.full((k, d), variance), "spherical": np.full(k, variance)}[kind]
    return make_model(np.full(k, 1.0 / k), means, precisions_cholesky_from_covariances(cov, kind), kind)


@pytest.mark.parametrize("kind", COVARIANCE_TYPES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_e_step_statistics_of_far_apart_clusters(kind, dtype):
    """The fused E-step path (responsibilities from a model) too: two tight
    clusters 1e4 spreads apart (float64: 1e7), shuffled."""
    rng = np.random.default_rng(4)
    n, d = 4000, 2
    gap, std = (100.0, 0.01) if dtype == np.float32 else (1e7, 1.0)
    labels = rng.integers(2, size=n)
    X = (labels[:, None] * gap + rng.normal(size=(n, d)) * std).astype(dtype)
    model = _model(kind, np.array([[0.0] * d, [gap] * d]), std**2, dtype)
    stats = block_statistics(X, model)
    resp = np.exp(_blocks.estimate_log_resp(X.astype(np.float64), model)[1])
    np.testing.assert_allclose(resp, np.eye(2)[labels], atol=1e-12)  # hard, whatever the dtype
    assert_scatter_close(stats, X, np.eye(2)[labels], TOLERANCE[dtype])


@pytest.mark.parametrize("kind", COVARIANCE_TYPES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_e_step_statistics_when_the_model_means_are_off(kind, dtype):
    """Components the model puts far from the pivot are summed about the
    model's means: when the rows they weigh lie far from those means too
    (here 1e4 spreads, float32: 1e3), about their weighted means instead."""
    rng = np.random.default_rng(5)
    n, d = 4000, 2
    gap, std, off = (100.0, 0.01, 10.0) if dtype == np.float32 else (1e7, 1.0, 1e4)
    labels = rng.integers(2, size=n)
    X = (labels[:, None] * gap + rng.normal(size=(n, d)) * std).astype(dtype)
    model = _model(kind, np.array([[off] * d, [gap + off] * d]), std**2, dtype)
    resp = np.exp(_blocks.estimate_log_resp(X.astype(np.float64), model)[1])
    np.testing.assert_allclose(resp, np.eye(2)[labels], atol=1e-12)
    assert_scatter_close(block_statistics(X, model), X, np.eye(2)[labels], TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("source", ["given", "model", "model off"])
def test_full_components_stay_shift_or_go_exact_by_their_distance(monkeypatch, dtype, source):
    """'full' with one matrix product for all components (K <= (D + 1) / 2,
    :class:`_blocks._FullSums`): a component near the pivot stays on it; one
    between ``limit`` and ``limit^2`` squared spreads out is shifted to a
    pivot of its own inside that product; one beyond is summed exactly over
    its own rows.  Whether the responsibilities are given, come from the
    model, or from a model whose means for the far components are 20 spreads
    off their rows (then moved to the rows' means): the two-pass scatter."""
    states = []
    spy = _blocks._FullSums.stats
    monkeypatch.setattr(_blocks._FullSums, "stats", lambda self, *a: states.append(self.state.copy()) or spy(self, *a))
    k, d = 5, 9
    near, far = (40.0, 1e3) if dtype == np.float32 else (1e3, 1e6)
    limit = _blocks._cancellation_limit(np, dtype)
    assert limit < near**2 < limit**2 < far**2
    centres = np.zeros((k, d))
    centres[:, 0] = [0.0, near, -near, far, -far]
    # Periods of 20 rows, 16 of the first component: the pivot (every 20th of
    # the 20,480 rows) is the mean of the first component's rows.
    labels = np.tile(np.array([0] * 16 + [1, 2, 3, 4]), 1024)
    rng = np.random.default_rng(12)
    X = (centres[labels] + rng.normal(size=(len(labels), d))).astype(dtype)
    resp = np.eye(k)[labels]
    if source == "given":
        stats = block_statistics(X, Model("full", None, None, None, None), resp=resp.astype(dtype))
    else:
        means = centres.copy()
        if source == "model off":
            means[1:, 1] += 20.0
        stats = block_statistics(X, _model("full", means, 1.0, dtype))
        np.testing.assert_allclose(np.exp(_blocks.estimate_log_resp(X.astype(np.float64), _model(
            "full", means, 1.0, np.float64))[1]), resp, atol=1e-12)
    np.testing.assert_array_equal(states[-1], [0, 1, 1, 2, 2])
    assert_scatter_close(stats, X, resp, TOLERANCE[dtype])


@pytest.mark.parametrize("kind, d", [("full", 4), ("full", 2), ("tied", 4), ("diag", 4), ("spherical", 4)])
def test_components_within_the_limit_stay_on_the_pivot_across_small_slices(monkeypatch, kind, d):
    """The cancellation check looks at the running sums of the block, whose
    rounding errors are what adds up: float32 clusters whose moments about
    the pivot are 65 times their scatter (limit 120) stay on the pivot even
    in slices of 64 rows (one slice's 32 rows of a component can show a
    larger ratio by chance: the per-slice check flagged them), and keep the
    pivot formula's precision.  'full' with one product for all components
    (D=4) and with the shared pair products (D=2), 'tied', 'diag',
    'spherical'."""
    monkeypatch.setattr(_blocks, "SLICE_ELEMENTS", 256)
    flagged = []
    if kind == "full" and d == 4:
        spy = _blocks._FullSums.stats
        monkeypatch.setattr(_blocks._FullSums, "stats",
                            lambda self, *a: flagged.append(bool(self.state.any())) or spy(self, *a))
    elif kind in ("diag", "spherical"):
        spy = _blocks._DiagonalSums.stats
        monkeypatch.setattr(_blocks._DiagonalSums, "stats",
                            lambda self, *a: flagged.append(bool(self.own.any())) or spy(self, *a))
    else:
        spy = _blocks._OwnPivotSums.choose
        monkeypatch.setattr(_blocks._OwnPivotSums, "choose",
                            lambda self, fresh, *a, **kw: flagged.append(any(fresh)) or spy(self, fresh, *a, **kw))
    rng = np.random.default_rng(13)
    k = 2
    labels = np.tile([0, 1], 3000)
    centres = np.zeros((k, d))
    centres[:, 0] = [-8.0, 8.0]  # (8 / 1)^2 + 1 = 65 about the pivot at 0
    X = (centres[labels] + rng.normal(size=(len(labels), d))).astype(np.float32)
    assert len(_blocks._row_slices(len(X), k, d, kind, 4)) > 50
    assert _blocks._uses_pairs(kind, k, d) == (kind == "full" and d == 2)
    resp = np.eye(k, dtype=np.float32)[labels]
    stats = block_statistics(X, Model(kind, None, None, None, None), resp=resp)
    assert not any(flagged)
    assert_scatter_close(stats, X, resp, TOLERANCE[np.float32])


@pytest.mark.parametrize("kind", ["diag", "spherical"])
def test_separated_clusters_leave_the_pivot_sums_entirely_and_still_refuse_nan(monkeypatch, kind):
    """'diag'/'spherical' with every component far apart: a component with
    more than a quarter of its features flagged leaves the pivot with all of
    them (its rows are summed over every feature anyway), so after the first
    slices no pivot sums are formed at all; the scatter is the two-pass one,
    and a NaN in such a slice, on a row of weight 0, is still refused."""
    monkeypatch.setattr(_blocks, "SLICE_ELEMENTS", 64 * 8)
    states = []
    spy = _blocks._DiagonalSums._add_own
    monkeypatch.setattr(_blocks._DiagonalSums, "_add_own",
                        lambda self, *a: states.append(bool(self.own.all())) or spy(self, *a))
    rng = np.random.default_rng(14)
    k, d = 3, 8
    labels = np.tile(np.arange(k), 1000)  # the pivot (every other row) balanced between the clusters
    centres = rng.normal(size=(k, d)) * 1e4
    centres[:, :5] = [[0.0] * 5, [1e3] * 5, [-1e3] * 5]
    # Component 0's first 5 features are at the pivot (0): only its 3 others
    # are flagged, more than a quarter of 8, so all 8 leave it.
    X = centres[labels] + rng.normal(size=(len(labels), d))
    assert np.all(np.abs(_blocks._pivot(np, X)[:5]) < 5)
    resp = np.eye(k)[labels]
    stats = block_statistics(X, Model(kind, None, None, None, None), resp=resp)
    assert len(states) > 10 and all(states)
    assert_scatter_close(stats, X, resp, TOLERANCE[np.float64])
    weight = np.ones(len(X))
    X[2500, 3], weight[2500] = np.nan, 0.0
    with pytest.raises(ValueError, match=r"NaN or infinity.*first at row 2500"):
        block_statistics(X, Model(kind, None, None, None, None), resp=resp, sample_weight=weight)


def test_the_issue_fit_of_two_tight_float32_clusters():
    """Issue #15's example: float32, clusters at 0 and 100 with std 0.01,
    20,000 rows each, shuffled, raised 'ill-defined empirical covariance';
    it now fits their variances as scikit-learn does."""
    from sklearn.mixture import GaussianMixture as SkGaussianMixture

    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0.0, 0.01, size=(20_000, 1)), rng.normal(100.0, 0.01, size=(20_000, 1))])
    X = X[rng.permutation(len(X))].astype(np.float32)
    ours = GaussianMixture(2, random_state=0).fit(X)
    theirs = SkGaussianMixture(2, random_state=0).fit(X)
    order, sk_order = np.argsort(ours.means_[:, 0]), np.argsort(theirs.means_[:, 0])
    np.testing.assert_allclose(ours.means_[order], theirs.means_[sk_order], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ours.covariances_[order], theirs.covariances_[sk_order], rtol=1e-4)


@pytest.mark.parametrize("kind", COVARIANCE_TYPES)
def test_own_pivot_sums_on_strict_arrays(kind):
    """The sums about components' own pivots use the array-API namespace
    only: array_api_strict blocks give NumPy's statistics."""
    xps = pytest.importorskip("array_api_strict")
    rng = np.random.default_rng(8)
    n, d = 3000, 2
    labels = rng.integers(3, size=n)
    X = np.array([[0.0, 0.0], [1.0, 3.0], [1e6, 1e6]])[labels] + rng.normal(size=(n, d)) * 0.5
    resp = np.eye(3)[labels]
    shared = (rng.random(n) < 0.2) & (labels < 2)
    resp[shared, :2] = 0.7 * resp[shared, :2] + 0.3 * rng.dirichlet(np.ones(2), size=int(shared.sum()))
    model = _model(kind, np.array([[0.0, 0.0], [1.0, 3.0], [1e6 + 50.0, 1e6]]), 0.25, np.float64)
    for args in ({"resp": resp}, {}):
        empty = Model(kind, None, None, None, None) if args else model
        strict = block_statistics(xps.asarray(X), empty, **{k: xps.asarray(v) for k, v in args.items()})
        plain = block_statistics(X, empty, **args)
        for field in ("nk", "means", "scatter"):
            np.testing.assert_allclose(np.asarray(getattr(strict, field)), getattr(plain, field), rtol=1e-12, atol=1e-9)
        assert_scatter_close(plain, X, resp if args else np.exp(_blocks.estimate_log_resp(X, model)[1]),
                             TOLERANCE[np.float64])


@pytest.mark.parametrize("kind", COVARIANCE_TYPES)
@pytest.mark.parametrize("given", [False, True])
def test_weighted_rows_far_from_the_pivot_count_as_repeated_rows(kind, given):
    """Sample weights ride on the responsibilities into the sums about the
    components' own pivots too: integer weights give the statistics of the
    rows repeated."""
    rng = np.random.default_rng(9)
    n, d = 1500, 2
    labels = rng.integers(2, size=n)
    X = labels[:, None] * 1e6 + rng.normal(size=(n, d)) * 0.1
    weight = rng.integers(0, 4, size=n).astype(np.float64)
    repeated = np.repeat(np.arange(n), weight.astype(int))
    model = _model(kind, np.array([[0.0, 0.0], [1e6, 1e6]]), 0.01, np.float64)
    args = {"resp": np.eye(2)[labels]} if given else {}
    empty = Model(kind, None, None, None, None) if given else model
    weighted = block_statistics(X, empty, sample_weight=weight, **args)
    plain = block_statistics(X[repeated], empty, **{key: v[repeated] for key, v in args.items()})
    for field in ("n_samples", "nk", "means", "scatter"):
        np.testing.assert_allclose(getattr(weighted, field), getattr(plain, field), rtol=1e-10, atol=1e-9)


@pytest.mark.parametrize("kind", ["diag", "spherical"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("soft", [0.0, 1e-6])
@pytest.mark.parametrize("few_pairs", [0, 4])
def test_features_constant_within_a_component(kind, dtype, soft, few_pairs):
    """Digits' case: pixels constant within a component but not across the
    data (its model variance is reg_covar alone).  Only those (component,
    feature) pairs leave the pivot sums; the scatter is still the two-pass
    one, the responsibilities hard or soft on every row (every component
    then counts all rows), the pairs' columns read one by one or gathered
    together (``FEW_PAIRS``)."""
    rng = np.random.default_rng(10)
    n, d, k = 3000, 12, 3  # at most a quarter of a component's features flagged: those alone leave
    labels = rng.integers(k, size=n)
    X = rng.normal(size=(n, d)) * 2.0 + 5.0
    X[labels == 0, :2] = 0.0  # component 0: features 0 and 1 constant
    X[labels == 1, 4] = 16.0 + rng.normal(size=int((labels == 1).sum())) * 1e-4  # component 1: feature 4 nearly
    X = X.astype(dtype)
    resp = np.eye(k)[labels]
    resp = (1 - soft) * resp + soft * rng.dirichlet(np.ones(k), size=n)
    calls = []
    spy = _blocks._DiagonalSums._add_own
    monkeypatch = pytest.MonkeyPatch()
    with monkeypatch.context() as patch:
        patch.setattr(_blocks, "FEW_PAIRS", few_pairs)
        patch.setattr(_blocks._DiagonalSums, "_add_own",
                      lambda self, *args: calls.append(self.own.copy()) or spy(self, *args))
        stats = block_statistics(X, Model(kind, None, None, None, None), resp=resp.astype(dtype))
    assert calls and not calls[-1].all(axis=1).any()  # some features of a component, never all
    assert_scatter_close(stats, X, resp.astype(dtype), TOLERANCE[dtype])


# --------------------------------------------------------------------------
# The E-step's log-densities in float32 (issue #20 item 9)
# --------------------------------------------------------------------------

REG_COVAR = 1e-6  # the variance of a component with one sample
LOG_PROB_RTOL = 1e-4


def float32_log_prob_criterion(X, model):
    """A float64 evaluation of ``model`` at the float32 rows ``X`` and the
    error a float32 evaluation may have against it.

    ``model`` holds float32 values (its means and precision factors are
    taken as given; the log-determinant is recomputed from them), so the
    reference is the exact answer at the same inputs.  The error allowed to
    a float32 log-density ``log p`` is::

        1e-4 * max(1, |log p|) + eps32 * sum_d |d log p / d x_d| (|x_d| + |mu_d|)

    The first term is the relative precision asked of the E-step (the one
    the scatter meets).  The second is what rounding the inputs to float32
    moves the exact answer by, and so what no float32 arithmetic can be
    blamed for: a relative perturbation of ``eps32`` of every coordinate of
    the row and of the mean, times the sensitivity of the log-density to it.
    For component ``k``, ``d log p_k / dx = -Lambda_k (x - mu_k)`` with
    ``Lambda_k = P_k P_k^T``; for the mixture, ``d log p / dx`` is the
    responsibility-weighted sum of those, bounded by the weighted sum of
    their absolute values.

    Returns
    -------
    wlp : (n, K) ``log pi_k + log N(x_i | mu_k, Sigma_k)``
    wlp_tol : (n, K) its allowed error
    log_p : (n,) ``log p(x_i)``
    log_p_tol : (n,) its allowed error
    """
    from scipy.special import logsumexp

    from daskgmm._covariance import log_det_cholesky

    X = np.asarray(X, dtype=np.float64)
    kind = model.covariance_type
    mu = np.asarray(model.means, dtype=np.float64)
    pc = np.asarray(model.precisions_cholesky, dtype=np.float64)
    k, d = mu.shape
    factor = {"full": lambda: pc, "tied": lambda: np.broadcast_to(pc, (k, d, d)),
              "diag": lambda: np.stack([np.diag(p) for p in pc]),
              "spherical": lambda: pc[:, None, None] * np.eye(d)}[kind]()
    dev = X[:, None, :] - mu[None, :, :]  # (n, K, D)
    whitened = np.einsum("nkd,kde->nke", dev, factor)
    log_weights = np.asarray(model.log_weights, dtype=np.float64)
    const = log_weights + log_det_cholesky(pc, kind, d) - 0.5 * d * np.log(2 * np.pi)
    wlp = const[None, :] - 0.5 * np.sum(whitened * whitened, axis=2)
    gradient = np.einsum("kde,nke->nkd", factor, whitened)  # Lambda_k (x - mu_k)
    eps = np.finfo(np.float32).eps
    sensitivity = eps * np.sum(np.abs(gradient) * (np.abs(X)[:, None, :] + np.abs(mu)[None, :, :]), axis=2)
    log_p = logsumexp(wlp, axis=1)
    resp = np.exp(wlp - log_p[:, None])
    wlp_tol = LOG_PROB_RTOL * np.maximum(1.0, np.abs(wlp)) + sensitivity
    log_p_tol = LOG_PROB_RTOL * np.maximum(1.0, np.abs(log_p)) + np.sum(resp * sensitivity, axis=1)
    return wlp, wlp_tol, log_p, log_p_tol


def _float32_model(kind, weights, means, covariances):
    """A :class:`Model` whose means and precision factors are float32 values."""
    from daskgmm._covariance import make_model, precisions_cholesky_from_covariances

    f32 = lambda a: np.asarray(a, dtype=np.float32).astype(np.float64)  # noqa: E731
    return make_model(f32(weights), f32(means), f32(precisions_cholesky_from_covariances(covariances, kind)), kind)


def tiny_component_block(kind, k, d, offset, separation, tiny, tight, seed, shuffled):
    """A float32 block and a model of it: ``k`` clusters of unit spread
    ``separation`` apart and ``offset`` from the origin, the one at ``tiny``
    a component with one sample, its variance ``reg_covar`` (1e-6), whose
    mean is that row, with three rows within 3 of its spreads.  That
    component first, in the middle or last puts the block's pivot at it or
    up to all the clusters' span away.  'tied' (one covariance for all) has
    the clusters' or, ``tight``, ``reg_covar``."""
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=d)
    direction /= np.linalg.norm(direction)
    centres = offset + separation * np.arange(k)[:, None] * direction[None, :]
    mixing = rng.normal(size=(k, d, d)) * 0.3 + np.eye(d)
    if kind == "full":
        covariances = mixing @ np.swapaxes(mixing, 1, 2)
        covariances[tiny] = REG_COVAR * np.eye(d)
    else:
        mixing[:] = np.eye(d)
        covariances = {"tied": np.eye(d) * (REG_COVAR if tight else 1.0),
                       "diag": np.ones((k, d)), "spherical": np.ones(k)}[kind]
        if kind in ("diag", "spherical"):
            covariances[tiny] = REG_COVAR
    sample = (centres[tiny] + rng.normal(size=d)).astype(np.float32)
    blocks, sizes = [], rng.integers(20, 200, size=k)
    for j in range(k):
        if j == tiny:  # its sample, and rows 0.5, 1 and 3 of its spreads away
            spread = np.sqrt(REG_COVAR) * np.array([0.0, 0.5, 1.0, 3.0])[:, None]
            blocks.append(sample + spread * rng.normal(size=(4, d)))
        else:
            blocks.append(centres[j] + rng.normal(size=(sizes[j], d)) @ mixing[j].T)
    X = np.concatenate(blocks).astype(np.float32)
    if shuffled:
        X = X[rng.permutation(len(X))]
    means = centres.copy()
    means[tiny] = sample
    return X, _float32_model(kind, rng.dirichlet(np.ones(k)), means, covariances)


@st.composite
def tiny_component_blocks(draw, kind):
    """:func:`tiny_component_block` over offsets, separations, positions of
    the tiny component, dimensions and seeds."""
    k = draw(st.integers(2, 4))
    return tiny_component_block(
        kind, k, draw(st.integers(1, 5)), draw(st.sampled_from([0.0, 10.0, 1e3, 1e6])),
        draw(st.sampled_from([0.0, 1.0, 10.0, 100.0, 300.0, 1e4])), draw(st.integers(0, k - 1)), draw(st.booleans()),
        draw(st.integers(0, 2**32 - 1)), draw(st.booleans()))


@pytest.mark.parametrize("kind", COVARIANCE_TYPES)
def test_float32_log_densities_match_float64_over_offset_and_separation(kind):
    """Issue #20 item 9: the float32 E-step against a float64 evaluation at
    the same rows and parameters (:func:`float32_log_prob_criterion`), with
    a component of variance ``reg_covar`` near rows far from the block's
    pivot.  Before, 'diag' and 'spherical' expanded ``p (x - c - m)^2`` about
    the pivot and lost up to 9e4 nats at separations of 10 to 300 (6e4 of
    ``log p(x)``; 4e7 at 1e4); 'full' and 'tied' 2% (at 1e4: 34%) where the
    pivot lay far from both the row and 0.  The per-component log-densities
    and ``log p(x)`` of :func:`_blocks.estimate_log_resp` (score_samples,
    predict_proba) and the log-likelihood of :func:`block_statistics` (the
    EM pass's lower bound)."""

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(tiny_component_blocks(kind))
    @example(tiny_component_block(kind, 3, 4, 0.0, 300.0, 0, True, 0, True))  # the issue's case
    def check(case):
        X, model = case
        wlp, wlp_tol, log_p, log_p_tol = float32_log_prob_criterion(X, model.to(np, np.float32))
        log_norm, log_resp = _blocks.estimate_log_resp(X, model)
        got = log_resp.astype(np.float64) + log_norm.astype(np.float64)[:, None]
        assert np.all(np.abs(got - wlp) <= wlp_tol), np.max(np.abs(got - wlp) / wlp_tol)
        assert np.all(np.abs(log_norm - log_p) <= log_p_tol), np.max(np.abs(log_norm - log_p) / log_p_tol)
        stats = block_statistics(X, model)
        assert abs(float(stats.log_likelihood) - log_p.sum()) <= log_p_tol.sum()

    check()


@pytest.mark.parametrize("kind", ["diag", "spherical"])
def test_float32_log_densities_of_rows_with_missing_features(kind):
    """The same for rows with missing features (``missing='marginalize'``),
    whose 'diag'/'spherical' E-step expands about a pivot of its own: the
    marginal log-density of the observed features against a float64
    evaluation of the model restricted to them."""

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(tiny_component_blocks(kind), st.integers(0, 2**32 - 1))
    def check(case, seed):
        from daskgmm._blocks_missing import marginal_log_resp

        X, model = case
        rng = np.random.default_rng(seed)
        X = X.copy()
        X[rng.random(X.shape) < 0.3] = np.nan
        X[np.isnan(X).all(axis=1), 0] = 1.0  # at least one observed feature per row
        log_norm, _ = marginal_log_resp(X, model)
        m32 = model.to(np, np.float32)
        missing = np.isnan(X)
        for pattern in np.unique(missing, axis=0):
            rows = np.flatnonzero((missing == pattern).all(axis=1))
            seen = ~pattern
            pc = m32.precisions_cholesky[:, seen] if kind == "diag" else m32.precisions_cholesky
            observed = Model(kind, m32.log_weights, m32.means[:, seen], pc, None)
            _, _, log_p, log_p_tol = float32_log_prob_criterion(X[np.ix_(rows, seen)], observed)
            err = np.abs(log_norm[rows] - log_p)
            assert np.all(err <= log_p_tol), np.max(err / log_p_tol)

    check()


@pytest.mark.parametrize("kind", ["diag", "spherical"])
def test_float32_fit_with_a_one_sample_component_far_from_the_pivot(kind):
    """The issue's fit: float32 clusters at 0 and 300 and a component with
    one sample near the first (precision 1e6, ``reg_covar``'s).  The first
    pass's lower bound, ``score_samples`` and ``score`` agree with a float64
    evaluation at the same parameters, and EM takes the float64 path (before,
    'diag' and 'spherical' lost thousands of nats on that row, gave it to
    another component and emptied its own: weight 1e-9 against 8e-4)."""
    from sklearn.exceptions import ConvergenceWarning

    from daskgmm._covariance import make_model, precisions_cholesky_from_precisions

    rng = np.random.default_rng(15)
    d = 4
    X = np.concatenate([rng.normal(size=(600, d)), 300.0 + rng.normal(size=(600, d)), 5.0 + rng.normal(size=(1, d))])
    X = X[rng.permutation(len(X))].astype(np.float32)
    single = X[np.argmin(np.linalg.norm(X - 5.0, axis=1))]
    precisions = {"diag": np.array([[1.0] * d, [1.0] * d, [1e6] * d]), "spherical": np.array([1.0, 1.0, 1e6])}[kind]
    init = dict(weights_init=np.array([600, 600, 1]) / 1201,
                means_init=np.stack([np.zeros(d), np.full(d, 300.0), single]).astype(np.float32),
                precisions_init=precisions.astype(np.float32))
    with pytest.warns(ConvergenceWarning):
        first = GaussianMixture(3, covariance_type=kind, max_iter=1, **init).fit(X)
    start = make_model(init["weights_init"], init["means_init"].astype(np.float64),
                       precisions_cholesky_from_precisions(init["precisions_init"].astype(np.float64), kind), kind)
    _, _, log_p, log_p_tol = float32_log_prob_criterion(X, start.to(np, np.float32))
    assert abs(first.lower_bound_ - log_p.mean()) <= log_p_tol.mean()
    _, _, log_p, log_p_tol = float32_log_prob_criterion(X, first._model().to(np, np.float32))
    assert np.all(np.abs(first.score_samples(X) - log_p) <= log_p_tol)
    assert abs(first.score(X) - log_p.mean()) <= log_p_tol.mean()

    f64 = {key: value.astype(np.float64) for key, value in init.items()}
    with pytest.warns(ConvergenceWarning):  # tol=0: ten iterations each
        ours = GaussianMixture(3, covariance_type=kind, max_iter=10, tol=0.0, **init).fit(X)
        reference = GaussianMixture(3, covariance_type=kind, max_iter=10, tol=0.0, **f64).fit(X.astype(np.float64))
    np.testing.assert_array_equal(ours.predict(X), reference.predict(X.astype(np.float64)))
    np.testing.assert_allclose(ours.weights_, reference.weights_, rtol=1e-5)
    np.testing.assert_allclose(ours.lower_bound_, reference.lower_bound_, rtol=1e-5)
