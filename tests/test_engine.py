"""The distributed loop: one compute per iteration, the graph it builds."""

import os
import pickle
import platform
import sys
from dataclasses import dataclass, field

import numpy as np
import pytest

import dask
import dask.array as da

from daskgmm import ConvergenceWarning, GaussianMixture, _engine
from daskgmm._families import GAUSSIAN as _GAUSSIAN
from daskgmm._families import GaussianFamily, Run

from .conftest import make_blobs, mmapped_by_a_4mib_buffer as _mmapped_by_a_4mib_buffer


def _sum_chunk(block, payload, row_offset):
    return [float(block.sum()) * payload, row_offset]


def _sum_combine(parts):
    return [sum(p[0] for p in parts), min(p[1] for p in parts)]


@pytest.mark.parametrize("n_chunks, split_every", [(1, 2), (7, 2), (17, 8), (64, 4)])
def test_tree_reduce_combines_every_chunk(n_chunks, split_every):
    X = np.arange(n_chunks * 6.0).reshape(-1, 2)
    dX = da.from_array(X, chunks=(3, -1))
    total, first = _engine.tree_reduce(dX, _sum_chunk, _sum_combine, 2.0, split_every=split_every)
    assert total == pytest.approx(2 * X.sum())
    assert first == 0


def test_pass_graph_holds_only_chunk_tasks_and_tree():
    dX = da.from_array(np.ones((1000, 2)), chunks=(10, -1)).persist()
    delayeds = _engine.pass_graph(dX, _sum_chunk, _sum_combine, 1.0, split_every=8)
    graph = delayeds[0].__dask_graph__()
    own = graph.layers[delayeds[0]._layer]
    # 100 chunk tasks (the small payload rides inside them) + 13 + 2 reduction
    # nodes; the client merges the last 2.
    assert len(delayeds) == 2
    assert len(own) == _engine.count_tasks(dX, 8, payload=1.0) == 100 + 13 + 2
    # The only other layer is the persisted data itself (no recomputation).
    other = [name for name in graph.layers if name != delayeds[0]._layer]
    assert other == [dX.name]
    assert len(graph.layers[dX.name]) == dX.numblocks[0]


def test_large_payload_travels_as_one_key():
    dX = da.from_array(np.ones((1000, 2)), chunks=(10, -1)).persist()
    payload = np.ones(_engine.PAYLOAD_EMBED_BYTES // 8 // 50)  # 100 copies would exceed the budget
    delayeds = _engine.pass_graph(dX, _sum_chunk, _sum_combine, payload, split_every=8)
    own = delayeds[0].__dask_graph__().layers[delayeds[0]._layer]
    payload_keys = [key for key in own if isinstance(key, str) and "-payload-" in key]
    assert len(payload_keys) == 1
    assert len(own) == _engine.count_tasks(dX, 8, payload=payload) == 1 + 100 + 13 + 2
    sums = _engine.tree_reduce(dX, lambda b, p, o: float(b.sum() * p.sum()), sum, payload, split_every=8)
    assert sums == pytest.approx(2000 * payload.sum())


def test_one_compute_per_iteration():
    X, _, _ = make_blobs(n=400, seed=0)
    calls = {"n": 0}

    def counting(dsk, keys, **kwargs):
        calls["n"] += 1
        return dask.get(dsk, keys, **kwargs)

    model = GaussianMixture(3, tol=0, max_iter=5, init_params="random_from_data", random_state=0)
    with dask.config.set(scheduler=counting), pytest.warns(Warning):
        model.fit(da.from_array(X, chunks=(50, -1)))
    # persist (1) + fetching the K initial rows (1) + 5 EM passes.
    assert model.n_passes_ == 5
    assert calls["n"] == 1 + 1 + 5


def test_split_every_below_two_rejected():
    dX = da.ones((10, 2), chunks=5)
    with pytest.raises(ValueError, match="split_every must be at least 2"):
        _engine.tree_reduce(dX, _sum_chunk, _sum_combine, 1.0, split_every=1)


def test_streaming_mode_does_not_persist():
    X, _, _ = make_blobs(n=300, seed=0)
    model = GaussianMixture(3, persist=False, random_state=0).fit(da.from_array(X, chunks=(100, -1)))
    assert model.persisted_ is False
    persisted = GaussianMixture(3, persist=True, random_state=0).fit(da.from_array(X, chunks=(100, -1)))
    np.testing.assert_allclose(model.means_, persisted.means_, rtol=1e-12)


def test_column_chunks_are_merged():
    X, _, _ = make_blobs(n=300, d=4, seed=0)
    dX = da.from_array(X, chunks=(100, 2))
    a = GaussianMixture(3, random_state=0).fit(dX)
    b = GaussianMixture(3, random_state=0).fit(X)
    np.testing.assert_allclose(a.means_, b.means_, rtol=1e-10)


class _FakeClient:
    """What memory_budget reads from a Client: each worker's limit and RSS."""

    def __init__(self, workers):
        self.workers = workers

    def scheduler_info(self, n_workers=-1):
        return {
            "workers": {
                f"w{i}": {"memory_limit": limit, "metrics": {"memory": rss}} for i, (limit, rss) in enumerate(self.workers)
            }
        }


def test_memory_budget_is_what_workers_hold_without_spilling():
    mib = 2**20
    # target 60% of 500 MiB = 300 MiB, less max(RSS, 256 MiB baseline); x 0.8 for uneven placement
    client = _FakeClient([(500 * mib, 100 * mib), (500 * mib, 280 * mib), (500 * mib, 400 * mib)])
    assert _engine.memory_budget(client) == pytest.approx(0.8 * ((300 - 256) + (300 - 280) + 0) * mib)


def test_auto_streams_data_larger_than_the_budget(monkeypatch):
    mib = 2**20
    monkeypatch.setattr(_engine.runtime, "current_client", lambda: _FakeClient([(1000 * mib, 200 * mib)] * 2))
    budget = _engine.memory_budget(_engine.runtime.current_client())  # 0.8 * 2 * (600 - 256) MiB = 550 MiB
    small = da.zeros((int(0.9 * budget) // 8, 1), chunks=(2**20, 1))
    large = da.zeros((int(1.1 * budget) // 8, 1), chunks=(2**20, 1))
    assert _engine.should_persist(small, "auto") and not _engine.should_persist(large, "auto")
    assert _engine.should_persist(large, True) and not _engine.should_persist(small, False)
    streamed, weights, persisted = _engine.place_data(large, "auto")
    assert streamed is large and weights is None and persisted is False  # the lazy graph itself: read again at every pass


def test_batches_group_chunks_by_holding_worker(local_cluster_client):
    """On a cluster, map tasks take several chunks of ONE worker: fewer tasks,
    no data moved, the same answer as one task per chunk."""
    from distributed import wait

    X = np.random.default_rng(0).normal(size=(6400, 2))
    dX = da.from_array(X, chunks=(50, -1)).persist()
    wait(dX)
    batches = _engine.plan_batches(dX)
    assert sorted(i for batch in batches for i in batch) == list(range(dX.numblocks[0]))
    holders = local_cluster_client.who_has(dX)
    for batch in batches:
        assert len({holders[(dX.name, i, 0)][0] for i in batch}) == 1
        assert len(batch) <= 32
    assert len(batches) < dX.numblocks[0] / 4
    total, first = _engine.tree_reduce(dX, _sum_chunk, _sum_combine, 1.0)
    unbatched, _ = _engine.tree_reduce(dX, _sum_chunk, _sum_combine, 1.0, batches=None)
    assert total == pytest.approx(X.sum()) == pytest.approx(unbatched)
    assert first == 0
    assert _engine.count_tasks(dX, 8, batches) < _engine.count_tasks(dX, 8)


def _rows_seen(block, payload, row_offset, sample_weight=None):
    return [(block.shape[0], row_offset, float(block.sum()), None if sample_weight is None else float(sample_weight.sum()))]


def _concat_lists(parts):
    return [item for part in parts for item in part]


def test_small_chunks_of_a_map_task_are_joined(monkeypatch):
    """A map task over several small chunks runs the chunk function once on
    them joined (their side arrays joined alike) when the pass allows it,
    in blocks of at most JOIN_BYTES; otherwise once per chunk."""
    blocks = [np.full((5, 2), float(i)) for i in range(6)]
    weights = [np.full(5, i + 1.0) for i in range(6)]
    offsets = [0, 50, 10, 70, 20, 90]  # a worker's chunks need not follow each other
    side_names = _engine.passes.Box(("sample_weight",))

    def apply(join_chunks):
        return _engine.passes._apply_batch(
            _rows_seen, _concat_lists, blocks, _engine.passes.Box(None), offsets, side_names, [weights],
            join_chunks=join_chunks,
        )

    assert apply(True) == [(30, 0, 150.0, 105.0)]
    assert apply(False) == [(5, offset, 10.0 * i, 5.0 * (i + 1)) for i, offset in enumerate(offsets)]
    monkeypatch.setattr(_engine.passes, "JOIN_BYTES", 2 * blocks[0].nbytes)
    assert apply(True) == [(10, 0, 10.0, 15.0), (10, 10, 50.0, 35.0), (10, 20, 90.0, 55.0)]
    monkeypatch.setattr(_engine.passes, "JOIN_BYTES", blocks[0].nbytes - 1)  # every chunk above it: alone
    assert apply(True) == apply(False)


def test_joined_chunks_name_the_row_of_an_error():
    """A NaN row in a chunk joined with others: the error names its global
    row and its own chunk's rows, as one task per chunk does."""
    from daskgmm._engine.em import _em_chunk

    rng = np.random.default_rng(3)
    blocks = [rng.normal(size=(40, 3)) for _ in range(4)]
    blocks[2][7, 1] = np.nan
    offsets = [400, 0, 160, 1000]
    fitted = GaussianMixture(2, random_state=0).fit(np.concatenate(blocks[:2]))
    payload = _engine.passes.Box((_GAUSSIAN, ((fitted._model(), None),), False))
    with pytest.raises(ValueError, match=r"1 row\(s\) with non-finite values among rows 160 to 199 \(first at row 167\)"):
        _engine.passes._apply_batch(_em_chunk, _concat_lists, blocks, payload, offsets, join_chunks=True)


def test_em_pass_over_many_small_chunks_on_a_cluster(local_cluster_client):
    """On a cluster each map task joins its worker's small chunks (with their
    weights and labels) into one block: the statistics of one block of all
    the rows, to rounding, from as many map tasks as before."""
    from distributed import wait

    from daskgmm import _blocks

    X, _, _ = make_blobs(n=6000, d=3, k=3, seed=5)
    rng = np.random.default_rng(5)
    weights = rng.integers(0, 3, len(X)).astype(float)
    labels = np.where(rng.random(len(X)) < 0.05, rng.integers(0, 3, len(X)), -1)
    dX, dw, dl = dask.persist(
        da.from_array(X, chunks=(25, -1)), da.from_array(weights, chunks=25), da.from_array(labels, chunks=25)
    )
    wait([dX, dw, dl])
    for kind in ("full", "diag"):
        model = GaussianMixture(3, covariance_type=kind, random_state=0).fit(X)._model()
        want = _blocks.block_statistics(X, model, sample_weight=weights, labels=labels)
        with _engine.fit_session():
            batches = _engine.passes.fit_batches(dX)
            assert len(batches) < dX.numblocks[0] / 8 and max(len(batch) for batch in batches) > 1
            (got,) = _engine.em_pass(dX, _GAUSSIAN, [None], models=[model], weights=dw, labels=dl, batches=batches)
        assert float(got.n_samples) == float(want.n_samples)
        for field in ("log_likelihood", "nk", "means", "scatter"):
            np.testing.assert_allclose(getattr(got, field), getattr(want, field), rtol=1e-10, atol=1e-9)
        total = _engine.score_pass(dX, _GAUSSIAN, [model], weights=dw)
        ll = _blocks.estimate_log_resp(X, model)[0]
        np.testing.assert_allclose(total, [np.sum(weights * ll)], rtol=1e-12)


def test_no_batches_for_streamed_data(local_cluster_client):
    dX = da.from_array(np.ones((100, 2)), chunks=(10, -1))  # not persisted
    assert _engine.plan_batches(dX) is None


def test_worker_environ_config_reaches_spawned_workers(monkeypatch):
    distributed = pytest.importorskip("distributed")
    import os

    # An explicit environment variable wins over the config (distributed's
    # rule); earlier clusters in this process may have left one behind.
    for name in _engine.WORKER_MALLOC_ENV:
        monkeypatch.delenv(name, raising=False)
    with dask.config.set(_engine.worker_environ_config()), distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0", host="127.0.0.1"
    ) as cluster, distributed.Client(cluster) as client:
        names = list(_engine.WORKER_MALLOC_ENV)
        values = client.run(lambda: [os.environ.get(name) for name in names])
    assert list(values.values()) == [[str(v) for v in _engine.WORKER_MALLOC_ENV.values()]]


@pytest.mark.skipif(
    not (sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"), reason="glibc's mallopt only"
)
@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # max_iter=2 on purpose
def test_a_fit_tunes_the_allocator_of_a_cluster_the_user_started(monkeypatch):
    """A cluster with distributed's defaults (MALLOC_TRIM_THRESHOLD_=64 KiB,
    so a 128 KiB mmap threshold): before a fit a 4 MiB temporary is mmapped,
    after it the heap serves it, as on a cluster daskgmm starts."""
    distributed = pytest.importorskip("distributed")
    for name in _engine.WORKER_MALLOC_ENV:
        monkeypatch.delenv(name, raising=False)
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0", host="127.0.0.1"
    ) as cluster, distributed.Client(cluster) as client:
        env = client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_"))
        assert list(env.values()) == ["65536"]  # distributed's default, not ours
        assert list(client.run(_mmapped_by_a_4mib_buffer).values()) == [True]
        X = da.from_array(np.random.default_rng(0).normal(size=(2000, 3)), chunks=(500, -1))
        GaussianMixture(2, random_state=0, max_iter=2, tol=0).fit(X)
        assert list(client.run(_mmapped_by_a_4mib_buffer).values()) == [False]


def test_tune_allocator_is_a_no_op_without_glibc(monkeypatch):
    import platform as platform_module

    monkeypatch.setattr(platform_module, "libc_ver", lambda: ("", ""))
    assert _engine.tune_allocator() is False


def _daskgmm_keys_on_scheduler(client, marker="daskgmm-pass"):
    return client.run_on_scheduler(
        lambda dask_scheduler: sorted(str(key) for key in dask_scheduler.tasks if marker in str(key))
    )


def _wait_for_no_pass_keys(client, marker="daskgmm-pass", timeout=5.0):
    """The keys left once the release messages had time to arrive."""
    import time

    deadline = time.monotonic() + timeout
    while _daskgmm_keys_on_scheduler(client, marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    return _daskgmm_keys_on_scheduler(client, marker)


def test_session_holds_pass_results_until_released(local_cluster_client):
    """Within a fit session the partial results of short passes stay on the
    workers (no release message right before the next graph) until the
    session ends; outside one they are released at once."""
    from distributed import wait

    X = np.random.default_rng(1).normal(size=(800, 2))
    dX = da.from_array(X, chunks=(100, -1)).persist()
    wait(dX)
    n_map = len(_engine.plan_batches(dX))
    with _engine.fit_session() as session:
        assert isinstance(session, _engine.PassSession)
        for _ in range(3):
            total, _ = _engine.tree_reduce(dX, _sum_chunk, _sum_combine, 1.0)
            assert total == pytest.approx(X.sum())
        assert session.releases == 0
        assert len(_daskgmm_keys_on_scheduler(local_cluster_client)) == 3 * n_map
    assert _wait_for_no_pass_keys(local_cluster_client) == []
    _engine.tree_reduce(dX, _sum_chunk, _sum_combine, 1.0)  # no session
    assert _wait_for_no_pass_keys(local_cluster_client) == []


def test_session_releases_after_next_submission(local_cluster_client, monkeypatch):
    """A slow pass's results go once the next pass is submitted, and at most
    MAX_HELD_PASSES short ones are held."""
    import time

    from distributed import wait

    X = np.ones((400, 2))
    dX = da.from_array(X, chunks=(100, -1)).persist()
    wait(dX)
    monkeypatch.setattr(_engine.PassSession, "MAX_HELD_PASSES", 3)
    with _engine.fit_session() as session:
        for _ in range(7):  # held counts 1 2 3 | 1 2 3 | 1: released twice
            _engine.tree_reduce(dX, _sum_chunk, _sum_combine, 1.0)
        assert session.releases == 2
        monkeypatch.setattr(_engine.PassSession, "SLOW_PASS", 0.0)  # every pass counts as slow
        for _ in range(3):
            _engine.tree_reduce(dX, _sum_chunk, _sum_combine, 1.0)
        assert session.releases == 5
        time.sleep(2 * _engine.PassSession.RELEASE_DELAY + 0.2)
        n_map = len(_engine.plan_batches(dX))
        assert len(_daskgmm_keys_on_scheduler(local_cluster_client)) == n_map  # the last pass only
    assert _wait_for_no_pass_keys(local_cluster_client) == []


def test_failed_pass_in_session_raises_and_releases(local_cluster_client):
    from distributed import wait

    def failing(block, payload, row_offset):
        raise ValueError("bad chunk")

    dX = da.from_array(np.ones((400, 2)), chunks=(100, -1)).persist()
    wait(dX)
    with _engine.fit_session():
        with pytest.raises(ValueError, match="bad chunk"):
            _engine.tree_reduce(dX, failing, _sum_combine, 1.0)
    assert _wait_for_no_pass_keys(local_cluster_client) == []


def test_fit_on_cluster_leaves_no_pass_results(local_cluster_client):
    X, _, _ = make_blobs(n=2000, seed=3)
    dX = da.from_array(X, chunks=(250, -1))
    # tol=0: all 20 iterations, whatever the start's number of passes.
    with pytest.warns(ConvergenceWarning):
        model = GaussianMixture(3, max_iter=20, tol=0, random_state=0).fit(dX)
    assert model.n_passes_ > 8  # more passes than the session holds at once
    assert _wait_for_no_pass_keys(local_cluster_client, marker="daskgmm-") == []


def test_no_session_on_the_local_schedulers():
    """Without a distributed scheduler in charge (none, or another chosen
    explicitly while a client is open) passes run through dask.compute."""
    dX = da.from_array(np.ones((40, 2)), chunks=(10, -1))
    with dask.config.set(scheduler="sync"), _engine.fit_session() as session:
        assert session is None
        total, _ = _engine.tree_reduce(dX, _sum_chunk, _sum_combine, 1.0)
    assert total == 80


def test_client_blas_runs_on_one_thread_during_a_fit():
    """The client's M-steps run with one BLAS thread (idle OpenBLAS threads
    would spin on the cores of a local cluster's workers); the limit is lifted
    after the fit."""
    from threadpoolctl import threadpool_info, threadpool_limits

    X, _, _ = make_blobs(n=400, seed=0)
    seen = []

    def record(info):
        seen.append({lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"})

    with threadpool_limits(limits=2, user_api="blas"):
        model = GaussianMixture(3, max_iter=3, tol=0, random_state=0)
        with pytest.warns(Warning):
            model._fit(da.from_array(X, chunks=(100, -1)), callbacks=[record])
        after = {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}
    assert seen and all(threads == {1} for threads in seen)
    assert after == {2}


# --------------------------------------------------------------------------
# The family down to the chunk
# --------------------------------------------------------------------------

_MERGED = []


def _tracing_merge(stats_list):
    _MERGED.append(len(stats_list))
    return _GAUSSIAN.merge(stats_list)


@dataclass(frozen=True)
class _TracingFamily(GaussianFamily):
    """The maximum-likelihood family, noting each chunk it is asked about."""

    calls: list = field(default_factory=list, compare=False)

    merge = staticmethod(_tracing_merge)

    def chunk_statistics(self, block, model, **kwargs):
        self.calls.append(("statistics", kwargs["row_offset"], block.shape[0]))
        return super().chunk_statistics(block, model, **kwargs)

    def chunk_log_likelihood(self, block, model, **kwargs):
        self.calls.append(("log_likelihood", kwargs["row_offset"], block.shape[0]))
        return super().chunk_log_likelihood(block, model, **kwargs)

    def chunk_log_resp(self, block, model, **kwargs):
        self.calls.append(("log_resp", kwargs["row_offset"], block.shape[0]))
        return super().chunk_log_resp(block, model, **kwargs)


def test_passes_ask_the_family_they_are_given_about_every_chunk():
    """em_pass, score_pass and map_rows run the chunk side of the family they
    are given (a new family plugs in there), with the answers of the
    maximum-likelihood family when it delegates to it."""
    X, _, _ = make_blobs(n=200, seed=0)
    dX = da.from_array(X, chunks=(50, -1))
    fitted = GaussianMixture(2, covariance_type="diag", random_state=0).fit(dX)
    model = fitted._model()
    run = Run("diag", fitted.weights_, fitted.means_, fitted.covariances_, fitted.precisions_cholesky_)
    family = _TracingFamily()
    offsets = [(0, 50), (50, 50), (100, 50), (150, 50)]
    _MERGED.clear()
    # In this process, where the family notes its calls (a cluster of an
    # earlier test may still be the default scheduler).
    with dask.config.set(scheduler="sync"):
        (stats,) = _engine.em_pass(dX, family, [run], models=[model], split_every=2, batches=None)
        (want,) = _engine.em_pass(dX, _GAUSSIAN, [run], models=[model], split_every=2, batches=None)
        assert sorted(call[1:] for call in family.calls) == offsets
        assert {call[0] for call in family.calls} == {"statistics"}
        assert _MERGED and sum(_MERGED) >= 4  # the tree's merges and the client's are the family's
        for got, expected in zip(stats[1:], want[1:]):
            np.testing.assert_array_equal(got, expected)

        family.calls.clear()
        total = _engine.score_pass(dX, family, [model], split_every=2)
        assert sorted(call[1:] for call in family.calls) == offsets
        assert total.tolist() == _engine.score_pass(dX, _GAUSSIAN, [model], split_every=2).tolist()

        family.calls.clear()
        labels = _engine.map_rows(dX, family, model, "predict").compute()
        assert sorted(call[1:] for call in family.calls) == offsets
        np.testing.assert_array_equal(labels, fitted.predict(dX).compute())


def test_family_marginalizing_chooses_the_missing_feature_kernels():
    """``marginalizing`` gives the family whose chunks marginalise NaN
    features (a row with every feature missing: NaN, label -1); without it
    a NaN feature is an error naming the row.  The family pickles with it."""
    X, _, _ = make_blobs(n=60, seed=1)
    X[7, 1] = np.nan
    X[11] = np.nan
    dX = da.from_array(X, chunks=(20, -1))
    fitted = GaussianMixture(2, random_state=0).fit(np.delete(X, [7, 11], axis=0))
    model = fitted._model()
    marginal = pickle.loads(pickle.dumps(_GAUSSIAN.marginalizing(True)))
    assert marginal.marginalize and _GAUSSIAN.marginalizing(False) is _GAUSSIAN
    labels = _engine.map_rows(dX, marginal, model, "predict").compute()
    assert labels[11] == -1 and labels[7] >= 0 and (labels >= 0).sum() == 59
    with pytest.raises(ValueError, match="row 7"):
        _engine.map_rows(dX, _GAUSSIAN, model, "predict").compute()
