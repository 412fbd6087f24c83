"""Initialisation over the whole data: k-means|| + Lloyd, k-means++, random,
random_from_data; determinism under re-chunking; concurrent restarts."""

import functools
import warnings

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

import dask
import dask.array as da

from daskgmm import ConvergenceWarning, GaussianMixture, _blocks_init, _engine, _init, mixture
from daskgmm._families import GAUSSIAN
from daskgmm._init import INIT_PARAMS, PassCounter, Spec

from .conftest import make_blobs


def separated(n_per=(400, 300, 500, 200), d=2, gap=25.0, sigma=1.0, seed=0):
    """Clusters centred ``gap`` apart on a line (no overlap), rows in random order."""
    rng = np.random.default_rng(seed)
    centres = np.zeros((len(n_per), d))
    centres[:, 0] = gap * np.arange(len(n_per))
    centres[:, 1:] = rng.normal(size=(len(n_per), d - 1))
    labels = np.repeat(np.arange(len(n_per)), n_per)
    X = centres[labels] + sigma * rng.normal(size=(labels.size, d))
    order = rng.permutation(labels.size)
    return X[order], labels[order], centres


def fit_start(X, **kwargs):
    """Initial parameters only: max_iter=0 leaves them in place (as in scikit-learn)."""
    return GaussianMixture(max_iter=0, **kwargs).fit(X)


def matched(estimate, truth):
    """``estimate`` rows reordered to match ``truth`` rows (Hungarian on distances)."""
    cost = ((estimate[:, None, :] - truth[None, :, :]) ** 2).sum(-1)
    rows, cols = linear_sum_assignment(cost)
    out = np.empty_like(truth)
    out[cols] = estimate[rows]
    return out


def test_keyed_uniform_does_not_depend_on_chunking():
    whole = _blocks_init.keyed_uniform(2**100 + 7, 5, 0, 50, 9)
    parts = [_blocks_init.keyed_uniform(2**100 + 7, 5, start, size, 9) for start, size in [(0, 7), (7, 0), (7, 20), (27, 23)]]
    np.testing.assert_array_equal(whole, np.vstack(parts))
    assert np.all((whole >= 0) & (whole < 1))


CHUNKINGS = {
    "1 chunk": (600,),
    "4 chunks": (150,) * 4,
    "13 chunks": (47,) * 12 + (36,),
    "7-row chunks": (7,) * 85 + (5,),  # each chunk holds fewer rows than the k-means|| cap
    "empty chunks": (0, 250, 0, 0, 350, 0),
}


@pytest.mark.parametrize("init_params", INIT_PARAMS)
def test_start_is_identical_for_any_chunking_and_fan_in(init_params):
    X, _, _ = make_blobs(n=600, d=3, k=4, seed=5, shift=3.0)
    kwargs = dict(n_components=4, init_params=init_params, random_state=11, n_init=2)
    ref = fit_start(da.from_array(X, chunks=(600, -1)), **kwargs)
    for name, chunks in CHUNKINGS.items():
        for split_every in (2, 8):
            got = fit_start(da.from_array(X, chunks=(chunks, (3,))), split_every=split_every, **kwargs)
            for attr in ("weights_", "means_", "covariances_"):
                np.testing.assert_allclose(
                    getattr(got, attr), getattr(ref, attr), rtol=1e-10, atol=1e-12, err_msg=f"{name} {attr}"
                )
            assert got.n_passes_ == ref.n_passes_


def test_max_iter_zero_leaves_the_initial_parameters():
    X, _, _ = make_blobs(n=400, d=2, k=3, seed=1)
    dX = da.from_array(X, chunks=(100, -1))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # scikit-learn does not warn at max_iter=0
        model = fit_start(dX, n_components=3, random_state=0)
    seeds = mixture.spawn_seeds(0, 1)
    (run,) = _init.initialize(dX, "kmeans", [Spec(3, "full", seeds[0], pool=seeds[0])], 1e-6)
    np.testing.assert_array_equal(model.means_, run.means)
    np.testing.assert_array_equal(model.covariances_, run.covariances)
    assert model.n_iter_ == 0 and not model.converged_ and model.lower_bound_ == -np.inf


def test_kmeans_recovers_the_true_means():
    X, labels, centres = separated()
    model = fit_start(da.from_array(X, chunks=(230, -1)), n_components=4, random_state=3)
    means = matched(model.means_, centres)
    n_k = np.bincount(labels)
    # Separated clusters: the assignment is the true one, so the start is the
    # clusters' sample means...
    sample_means = np.array([X[labels == j].mean(0) for j in range(4)])
    np.testing.assert_allclose(means, sample_means, rtol=0, atol=1e-10)
    # ...within sampling error (sigma / sqrt(n_k)) of the true centres.
    assert np.all(np.abs(means - centres) < 4.0 / np.sqrt(n_k)[:, None])
    np.testing.assert_allclose(matched(model.weights_[:, None], (n_k / n_k.sum())[:, None]), (n_k / n_k.sum())[:, None])


@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random_from_data"])
def test_draws_come_from_the_whole_data_not_the_first_chunk(init_params):
    # Rows sorted by cluster; the first chunk holds cluster 0 only.
    X, labels, centres = separated(n_per=(150, 600, 650), seed=2)
    order = np.argsort(labels, kind="stable")
    X, labels = X[order], labels[order]
    dX = da.from_array(X, chunks=(150, -1))
    chunk_of = lambda means: np.argmin(((means[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)  # noqa: E731
    for seed in range(4):
        model = fit_start(dX, n_components=3, init_params=init_params, random_state=seed)
        clusters = chunk_of(model.means_)
        if init_params == "random_from_data":
            # Uniform over all rows: the draws are rows of X, and over 4 seeds
            # they are mostly outside the first chunk (90% of the rows).
            assert all(np.min(np.abs(X - m).max(axis=1)) < 1e-9 for m in model.means_)
            assert np.sum(clusters != 0) >= 2
        else:
            # D^2 seeding on separated clusters: one centre in each.
            assert sorted(clusters) == [0, 1, 2], (seed, clusters)


def test_kmeans_on_duplicates_and_k_close_to_n():
    values = np.arange(6.0)
    X = np.repeat(values, 40)[:, None] * np.array([[1.0, -2.0]])
    for init_params in ("kmeans", "k-means++"):
        model = fit_start(da.from_array(X, chunks=(37, -1)), n_components=6, init_params=init_params, random_state=0)
        np.testing.assert_allclose(np.sort(model.means_[:, 0]), values, atol=1e-12)
        # Fewer distinct points than components: scikit-learn's warning, and
        # the start holds every distinct point plus an empty component.
        with pytest.warns(ConvergenceWarning, match=r"found only 6 distinct point\(s\) in X, fewer than n_components=7"):
            model = fit_start(da.from_array(X, chunks=(37, -1)), n_components=7, init_params=init_params, random_state=0)
        if init_params == "kmeans":  # the duplicate centre's cluster is empty
            occupied = model.weights_ > 1e-6
            assert occupied.sum() == 6
            np.testing.assert_allclose(np.sort(model.means_[occupied, 0]), values, atol=1e-12)
        else:  # k-means++: each component starts on one drawn row, one of them twice
            np.testing.assert_allclose(np.unique(model.means_[:, 0]), values, atol=1e-12)
    # K = N: every row becomes a centre, whatever the chunking.
    Y = np.random.default_rng(0).normal(size=(12, 2))
    for init_params in ("kmeans", "k-means++"):
        model = fit_start(da.from_array(Y, chunks=(2, -1)), n_components=12, init_params=init_params, random_state=1)
        np.testing.assert_allclose(np.sort(model.means_[:, 0]), np.sort(Y[:, 0]), atol=1e-12)


def test_float32_start_is_float32_rounding_of_float64():
    X, _, _ = make_blobs(n=500, d=3, k=3, seed=4)
    a = fit_start(da.from_array(X, chunks=(100, -1)), n_components=3, random_state=0)
    b = fit_start(da.from_array(X.astype(np.float32), chunks=(100, -1)), n_components=3, random_state=0)
    np.testing.assert_allclose(b.means_, a.means_, rtol=1e-4, atol=1e-4)
    c = fit_start(da.from_array(X.astype(np.float32), chunks=(37, -1)), n_components=3, random_state=0, split_every=2)
    np.testing.assert_allclose(c.means_, b.means_, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("init_params", INIT_PARAMS)
def test_mixed_specs_in_one_call_start_as_separate_calls(init_params):
    X, _, _ = make_blobs(n=500, d=3, k=3, seed=6)
    dX = da.from_array(X, chunks=(90, -1))
    s0, s1 = mixture.spawn_seeds(3, 2)
    specs = [
        Spec(k, kind, seed, pool=s0)
        for seed in (s0, s1)
        for k in (1, 2, 4)
        for kind in ("full", "tied", "diag", "spherical")
    ]
    together = _init.initialize(dX, init_params, specs, 1e-6)
    for spec, run in zip(specs, together):
        (alone,) = _init.initialize(dX, init_params, [spec], 1e-6)
        np.testing.assert_allclose(run.means, alone.means, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(run.covariances, alone.covariances, rtol=1e-12, atol=1e-12)


def test_shared_passes_cost_fewer_passes_than_separate_initialisations():
    X, _, _ = make_blobs(n=500, d=3, k=3, seed=6)
    dX = da.from_array(X, chunks=(100, -1))
    seeds = mixture.spawn_seeds(0, 4)
    specs = [Spec(k, "full", s, pool=seeds[0]) for s in seeds for k in (2, 3, 5)]
    together = PassCounter()
    _init.initialize(dX, "kmeans", specs, 1e-6, counter=together)
    alone = PassCounter()
    for spec in specs:
        _init.initialize(dX, "kmeans", [spec], 1e-6, counter=alone)
    assert together.passes < alone.passes / 4


def test_empty_clusters_move_to_the_farthest_rows():
    centers = np.array([[0.0, 0.0], [10.0, 0.0], [50.0, 50.0]])
    nk = np.array([5.0, 3.0, 0.0])
    # The farthest row (from its centre) belongs to cluster 0.
    far = (np.array([9.0, 4.0]), np.array([17, 3]), np.array([[3.0, 0.0], [12.0, 0.0]]), np.array([0, 1]))
    moved = _init._relocate_empty_clusters(centers, nk, far)
    assert moved == 1
    np.testing.assert_allclose(centers[2], [3.0, 0.0])
    np.testing.assert_allclose(centers[0], [(5 * 0.0 - 3.0) / 4, 0.0])
    np.testing.assert_allclose(nk, [4.0, 3.0, 1.0])


@pytest.mark.parametrize("with_mask", [False, True])
def test_farthest_rows_slice_by_slice_equal_the_whole_block(with_mask):
    """The running top-k of the Lloyd pass (candidates for empty clusters)
    equals a sort of the whole block by (-d2, index), ties and skipped rows
    included."""
    rng = np.random.default_rng(4)
    n, k = 1000, 6
    d2 = np.round(rng.exponential(size=n), 1)  # many ties
    d2[[10, 500, 900]] = d2.max() + 1.0  # a tie at the top, across slices
    labels = rng.integers(k, size=n)
    onehot = np.eye(k)[labels].T  # (k, n)
    keep = rng.random(n) > 0.3 if with_mask else None
    best = None
    for start in range(0, n, 128):
        stop = min(start + 128, n)
        best = _blocks_init._farthest_so_far(_xp(), best, d2[start:stop], onehot[:, start:stop], start, stop, k, keep)
    rows = np.arange(n) if keep is None else np.flatnonzero(keep)
    order = rows[np.lexsort((rows, -d2[rows]))][:k]
    np.testing.assert_array_equal(best[1], order)
    np.testing.assert_array_equal(best[0], d2[order])
    np.testing.assert_array_equal(best[2], labels[order])


def _xp():
    from daskgmm import _blocks

    return _blocks.get_namespace(np.zeros(1))


def test_oversampling_merge_keeps_cap_rows_from_small_chunks():
    # Three chunks of 2 rows each, cap 5: the merge must keep 5, not 2.
    parts = [
        [(1.0, np.array([0.1 * i, 0.1 * i + 0.05]), np.array([2 * i, 2 * i + 1]), np.ones((2, 2)) * i, 5)]
        for i in range(3)
    ]
    ((cost, keys, index, rows, cap),) = _blocks_init._oversample_combine(parts)
    assert cap == 5 and cost == 3.0
    np.testing.assert_array_equal(index, [0, 1, 2, 3, 4])
    np.testing.assert_allclose(keys, [0.0, 0.05, 0.1, 0.15, 0.2])


def counting_scheduler():
    calls = {"n": 0}

    def get(dsk, keys, **kwargs):
        calls["n"] += 1
        return dask.get(dsk, keys, **kwargs)

    return calls, get


@pytest.mark.parametrize("init_params, gathers", [("kmeans", 1), ("k-means++", 0), ("random", 0), ("random_from_data", 1)])
def test_n_passes_counts_every_pass(init_params, gathers):
    X, _, _ = make_blobs(n=400, seed=0)
    calls, get = counting_scheduler()
    model = GaussianMixture(3, init_params=init_params, n_init=3, random_state=0, tol=0, max_iter=4)
    with dask.config.set(scheduler=get), pytest.warns(ConvergenceWarning):
        model.fit(da.from_array(X, chunks=(50, -1)))
    # Every compute is a pass over the data, but persisting the data and
    # fetching a few rows by index (the first k-means|| centre, the
    # random_from_data rows).
    assert calls["n"] == 1 + gathers + model.n_passes_
    assert model.n_passes_ >= 4


def individual_runs(dX, k, random_state, n_init, **em):
    """Each restart of GaussianMixture(n_init) fitted on its own."""
    seeds = mixture.spawn_seeds(random_state, n_init)
    runs = []
    for seed in seeds:
        (run,) = _init.initialize(dX, "kmeans", [Spec(k, "full", seed, pool=seeds[0])], 1e-6)
        _engine.run_em(dX, [run], family=GAUSSIAN, reg_covar=1e-6, **em)
        runs.append(run)
    return runs


def test_n_init_keeps_the_best_of_the_concurrent_restarts():
    X, _, _ = make_blobs(n=400, d=2, k=5, spread=3.0, seed=8)
    dX = da.from_array(X, chunks=(100, -1))
    # random_state=4: restarts that end apart (the first the worst).
    model = GaussianMixture(5, n_init=4, random_state=4, tol=1e-4, max_iter=200).fit(dX)
    runs = individual_runs(dX, 5, 4, 4, tol=1e-4, max_iter=200)
    bounds = [run.lower_bound for run in runs]
    assert int(np.argmax(bounds)) != 0  # the winner is not simply the first restart
    assert model.lower_bound_ >= max(bounds) - 1e-12 * abs(max(bounds))
    best = runs[int(np.argmax(bounds))]
    np.testing.assert_allclose(model.means_, best.means, rtol=1e-9, atol=1e-12)
    assert model.n_iter_ == best.n_iter
    # Restart 0 is what a single fit with the first seed does.
    single = GaussianMixture(5, random_state=4, tol=1e-4, max_iter=200).fit(dX)
    np.testing.assert_allclose(single.means_, runs[0].means, rtol=1e-9, atol=1e-12)


def test_concurrent_restarts_make_fewer_passes_than_sequential_fits():
    X, _, _ = make_blobs(n=800, d=2, k=4, seed=9)
    dX = da.from_array(X, chunks=(100, -1))
    concurrent = GaussianMixture(4, n_init=8, random_state=0).fit(dX)
    sequential = [GaussianMixture(4, random_state=seed).fit(dX) for seed in range(8)]
    total = sum(m.n_passes_ for m in sequential)
    assert concurrent.n_passes_ < total / 3
    assert concurrent.lower_bound_ >= max(m.lower_bound_ for m in sequential) - 0.05


def test_restarts_on_a_cluster_match_the_local_scheduler(local_cluster_client):
    X, _, _ = make_blobs(n=600, d=3, k=3, seed=10)
    dX = da.from_array(X, chunks=(90, -1))
    kwargs = dict(n_init=3, random_state=4, init_params="kmeans")
    on_cluster = GaussianMixture(3, **kwargs).fit(dX)
    with dask.config.set(scheduler="sync"):
        local = GaussianMixture(3, **kwargs).fit(dX)
    np.testing.assert_allclose(on_cluster.means_, local.means_, rtol=1e-10)
    assert on_cluster.n_passes_ == local.n_passes_


@pytest.mark.parametrize("sizes", [(4, 4, 4), (3, 5, 2)])
def test_nearest_slices_assign_like_argmin(monkeypatch, sizes):
    """One-hot assignments (from the column minimum, slice by slice) equal
    the brute-force nearest centre; a duplicate centre never gets a row
    (ties go to the first, as argmin and scikit-learn's KMeans do)."""
    monkeypatch.setattr(_blocks_init._blocks, "SLICE_ELEMENTS", 64 * 12)  # many slices
    rng = np.random.default_rng(7)
    X = rng.normal(size=(1000, 3)) * 3 + 100.0
    sets = [X[rng.choice(len(X), k, replace=False)] for k in sizes]
    sets[0][2] = sets[0][1]  # a duplicate centre: every row nearer to it ties
    got = [[] for _ in sets]
    dists = [[] for _ in sets]
    n_slices = 0
    for _, _, out, _ in _blocks_init._nearest_slices(np, X, sets):
        n_slices += 1
        for s, (d2, onehot) in enumerate(out):
            got[s].append(onehot)
            dists[s].append(d2)
    assert n_slices > 5
    for s, centers in enumerate(sets):
        onehot = np.concatenate(got[s], axis=1)
        brute = ((X[:, None, :] - centers[None]) ** 2).sum(-1)
        np.testing.assert_array_equal(onehot.sum(0), 1.0)
        np.testing.assert_array_equal(onehot.argmax(0), brute.argmin(1))
        np.testing.assert_allclose(np.concatenate(dists[s]), brute.min(1), rtol=1e-9, atol=1e-9)
    assert np.concatenate(got[0], axis=1)[2].sum() == 0  # the duplicate of centre 1


def test_lloyd_means_merge_like_one_block():
    """Counts and means of a hard assignment merged over chunks equal those
    of the whole data (the Lloyd statistics)."""
    X, _, centres = separated(seed=3)
    whole = _blocks_init._lloyd_chunk(X, (centres,), 0)[0][0]
    parts = [_blocks_init._lloyd_chunk(X[i : i + 170], (centres,), i)[0] for i in range(0, len(X), 170)]
    merged = _blocks_init._lloyd_combine([[p] for p in parts])[0][0]
    np.testing.assert_array_equal(merged.nk, whole.nk)
    np.testing.assert_allclose(merged.means, whole.means, rtol=1e-12)
    labels = ((X[:, None, :] - centres[None]) ** 2).sum(-1).argmin(1)
    np.testing.assert_allclose(whole.means, [X[labels == j].mean(0) for j in range(len(centres))], rtol=1e-12)


@pytest.mark.parametrize("init_params", INIT_PARAMS)
def test_nonfinite_row_is_named_by_its_global_index_in_every_init(init_params):
    """A NaN row in a later chunk: the initialisation's first pass names its
    global index (not its index in the chunk) and warns about nothing else
    (a NaN distance once read as 0, which looked like too few distinct points)."""
    X, _, _ = make_blobs(n=300, d=3, k=3, seed=2)
    X[217, 1] = np.nan
    for data in (X, da.from_array(X, chunks=(40, -1))):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(ValueError, match=r"NaN or infinity: 1 row\(s\) .*first at row 217\)"):
                GaussianMixture(3, init_params=init_params, random_state=0).fit(data)


@pytest.mark.parametrize("shift", [0.0, 1e6])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("init_params", _init.COVERS_EVERY_ROW)
def test_statistics_covering_every_row_merge_to_the_data_moments(init_params, weighted, shift):
    """The merge over components of the last pass's statistics ('kmeans',
    'random') is the data's moments, as :func:`data_moments` measures them in
    a pass of its own: the full scatter from 'full' and 'tied' statistics,
    its diagonal from 'diag' and 'spherical' ones; for every chunking, with
    rows of weight 0.

    Each term is centred, so data far from the origin keep the precision of
    the component means themselves: a mean near ``shift`` is resolved to
    ``eps * shift``, which moves the between-component terms by about
    ``eps * shift / spread`` relative (seen: 9e-12 at 1e6, 1e-15 at 0); a
    raw-moment formula would lose everything there."""
    X, _, _ = make_blobs(n=700, d=4, k=3, seed=9, shift=shift)
    w = np.random.default_rng(2).uniform(0.1, 4.0, size=X.shape[0]) if weighted else None
    if weighted:
        w[::11] = 0.0
    specs = [Spec(3, kind, s) for kind in ("full", "tied", "diag", "spherical") for s in mixture.spawn_seeds(0, 2)]
    for chunks in (700, 90):
        dX = da.from_array(X, chunks=(chunks, -1))
        dw = None if w is None else da.from_array(w, chunks=(chunks,))
        n, mean, scatter = _init.data_moments(dX, sample_weight=dw)
        spread = np.sqrt(np.diag(scatter).max() / n)
        rtol = 1e-13 + 4 * np.finfo(np.float64).eps * shift / spread
        stats, covers_every_row = _init.initial_statistics(dX, init_params, specs, sample_weight=dw)
        assert covers_every_row
        for spec, st in zip(specs, stats):
            n_k, mean_k, scatter_k = _init.moments_from_stats(st)
            expected = scatter if spec.covariance_type in ("full", "tied") else np.diag(scatter)
            assert n_k == pytest.approx(n, rel=1e-14)
            np.testing.assert_allclose(mean_k, mean, rtol=1e-15, atol=rtol * spread)
            np.testing.assert_allclose(scatter_k, expected, rtol=0, atol=rtol * np.abs(expected).max())


@pytest.mark.parametrize("init_params", ["k-means++", "random_from_data"])
def test_statistics_of_picked_rows_do_not_cover_every_row(init_params):
    X, _, _ = make_blobs(n=200, seed=1)
    _, covers_every_row = _init.initial_statistics(da.from_array(X, chunks=(50, -1)), init_params, [Spec(3, "full", 0)])
    assert not covers_every_row


# --------------------------------------------------------------------------
# Passes before EM (issue #24 item 5)
# --------------------------------------------------------------------------

# The rule before issue #24: 5 rounds of 2K candidates, one k-means++ on the
# client, Lloyd passes over all rows until they converge.
OLD_KMEANS_RULE = dict(n_rounds=5, oversampling=2.0, max_lloyd=100, client_tries=1)


def anisotropic(n, d, k, seed, elongation=8.0):
    """Elongated clusters at random rotations, sizes in proportion to 1..k
    (the mixtures on which k-means starts are reported to fail:
    scikit-learn #34842, #34845)."""
    rng = np.random.default_rng(seed)
    sizes = np.arange(1, k + 1, dtype=float)
    labels = rng.choice(k, size=n, p=sizes / sizes.sum())
    means = rng.normal(scale=4.0, size=(k, d))
    X = np.empty((n, d))
    for j in range(k):
        rows = labels == j
        rotation, _ = np.linalg.qr(rng.normal(size=(d, d)))
        scales = np.ones(d)
        scales[0] = elongation
        X[rows] = rng.normal(size=(rows.sum(), d)) @ (rotation * scales).T + means[j]
    return X


def init_passes(dX, k, **kwargs):
    """Passes over the data before EM: a max_iter=0 fit makes no EM pass."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return fit_start(dX, n_components=k, **kwargs).n_passes_


@pytest.mark.parametrize("n, chunk", [(3_000, 500), (60_000, 7_000)])
@pytest.mark.parametrize("k", [2, 5, 12])
def test_kmeans_start_costs_at_most_six_passes(n, chunk, k):
    """Overlapping clusters, where Lloyd over all rows takes many passes to
    converge: the default start still makes at most 6 passes, counted both
    by the estimator and by a PassCounter around the initialisation."""
    X, _, _ = make_blobs(n=n, d=4, k=k, spread=1.5, seed=k)
    dX = da.from_array(X, chunks=(chunk, -1))
    assert init_passes(dX, k, random_state=0) <= 6
    counter = PassCounter()
    seeds = mixture.spawn_seeds(0, 1)
    _init.initialize(dX, "kmeans", [Spec(k, "full", seeds[0], pool=seeds[0])], 1e-6, counter=counter)
    assert counter.passes <= 6
    # The old rule on the same data: the cap is what bounds the passes here.
    old = PassCounter()
    _init.kmeans_statistics(dX, [Spec(k, "full", seeds[0], pool=seeds[0])], counter=old, **OLD_KMEANS_RULE)
    assert old.passes > counter.passes


def test_restarts_share_the_capped_passes():
    """n_init restarts (and other covariance types and K in one call) cost
    no pass more than one start: every pass serves all their centre sets."""
    X, _, _ = make_blobs(n=20_000, d=3, k=6, spread=1.5, seed=3)
    dX = da.from_array(X, chunks=(3_000, -1))
    single = init_passes(dX, 6, random_state=2)
    assert single <= 6
    assert init_passes(dX, 6, random_state=2, n_init=5) == single
    seeds = mixture.spawn_seeds(2, 4)
    specs = [Spec(k, kind, s, pool=seeds[0]) for s in seeds for k in (3, 6, 9) for kind in ("full", "diag")]
    counter = PassCounter()
    _init.initialize(dX, "kmeans", specs, 1e-6, counter=counter)
    assert counter.passes <= 6


def test_capped_kmeans_start_is_identical_for_any_chunking():
    """Where the Lloyd cap stops centres still moving (overlapping clusters),
    the start is still the same for any chunking and fan-in."""
    X, _, _ = make_blobs(n=6_000, d=4, k=7, spread=1.5, seed=12)
    kwargs = dict(n_components=7, random_state=5, n_init=2)
    ref = fit_start(da.from_array(X, chunks=(6_000, -1)), **kwargs)
    assert ref.n_passes_ <= 6
    for chunks, split_every in [((1_000,) * 6, 2), ((777,) * 7 + (561,), 8), ((0, 2_500, 0, 3_500), 3)]:
        got = fit_start(da.from_array(X, chunks=(chunks, (4,))), split_every=split_every, **kwargs)
        for attr in ("weights_", "means_", "covariances_"):
            np.testing.assert_allclose(getattr(got, attr), getattr(ref, attr), rtol=1e-10, atol=1e-12, err_msg=attr)
        assert got.n_passes_ == ref.n_passes_


def test_anisotropic_fits_are_as_good_as_with_the_old_start(monkeypatch):
    """On elongated, rotated clusters of unequal sizes the default start
    (at most 6 passes) leads EM to final log-likelihoods as high as the old
    rule's (Lloyd to convergence) on average over seeds, within noise."""
    X = anisotropic(8_000, 3, 5, seed=1)
    dX = da.from_array(X, chunks=(1_000, -1))
    seeds = range(6)
    new_passes, new_scores = [], []
    for seed in seeds:
        new_passes.append(init_passes(dX, 5, random_state=seed))
        new_scores.append(GaussianMixture(5, random_state=seed).fit(dX).score(X))
    monkeypatch.setattr(_init, "kmeans_statistics", functools.partial(_init.kmeans_statistics, **OLD_KMEANS_RULE))
    old_passes, old_scores = [], []
    for seed in seeds:
        old_passes.append(init_passes(dX, 5, random_state=seed))
        old_scores.append(GaussianMixture(5, random_state=seed).fit(dX).score(X))
    assert max(new_passes) <= 6 < min(old_passes)
    assert np.mean(new_scores) >= np.mean(old_scores) - 1e-3


def test_weighted_kmeans_start_costs_at_most_six_passes():
    """With sample weights the first centre cannot be fetched by index: the
    pass that draws it in proportion to the weights is the first round."""
    X, _, _ = make_blobs(n=20_000, d=3, k=5, spread=1.5, seed=4)
    w = np.random.default_rng(0).uniform(0.0, 3.0, size=X.shape[0])
    w[::7] = 0.0
    dX = da.from_array(X, chunks=(3_000, -1))
    dw = da.from_array(w, chunks=(3_000,))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = GaussianMixture(5, max_iter=0, random_state=1).fit(dX, sample_weight=dw)
    assert model.n_passes_ <= 6
    # The same start for another chunking.
    again = GaussianMixture(5, max_iter=0, random_state=1).fit(
        da.from_array(X, chunks=(4_500, -1)), sample_weight=da.from_array(w, chunks=(4_500,))
    )
    np.testing.assert_allclose(again.means_, model.means_, rtol=1e-10, atol=1e-12)
