"""Worker loss: a worker process killed with SIGKILL in the middle of a fit on a
LocalCluster.  The persisted chunks it held are recomputed from their source
(the graph lineage kept by ``persist``), and the fit ends with the same
parameters as an undisturbed one."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest

import dask.array as da

from daskgmm import GaussianMixture

from .conftest import make_blobs

distributed = pytest.importorskip("distributed")

N_CHUNKS = 12
KW = dict(
    n_components=3,
    tol=0.0,
    max_iter=15,
    persist=True,
    # Both fits start from the same given parameters (and no initialisation pass).
    weights_init=np.full(3, 1 / 3),
    means_init=np.array([[-5.0, 0.0, 0.0], [0.0, 5.0, 0.0], [5.0, 0.0, 5.0]]),
    precisions_init=np.stack([np.eye(3)] * 3),
)

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def counted_source(X, log_path):
    """``X`` as a Dask array whose chunk tasks append a line to ``log_path``
    each time they run, so the test can see recomputation on the workers."""
    log_path = str(log_path)

    def load(block, block_info=None):  # a closure: pickled by value to the workers
        with open(log_path, "a") as handle:
            handle.write(f"{block_info[0]['chunk-location'][0]}\n")
        return block

    return da.from_array(X, chunks=(X.shape[0] // N_CHUNKS, -1)).map_blocks(load, dtype=X.dtype)


def loads(log_path):
    return Path(log_path).read_text().split() if Path(log_path).exists() else []


@pytest.fixture(scope="module")
def client3():
    with distributed.LocalCluster(
        n_workers=3, threads_per_worker=1, processes=True, dashboard_address=":0", host="127.0.0.1"
    ) as cluster, distributed.Client(cluster) as client:
        yield client


@pytest.mark.slow
def test_worker_killed_mid_fit_gives_the_undisturbed_answer(client3, tmp_path):
    X, _, _ = make_blobs(n=6000, d=3, k=3, seed=21)
    undisturbed = GaussianMixture(**KW).fit(counted_source(X, tmp_path / "ref.log"))
    assert undisturbed.persisted_
    assert len(loads(tmp_path / "ref.log")) == N_CHUNKS  # persisted: each chunk loaded once

    source = counted_source(X, tmp_path / "killed.log")
    killed = {}

    def kill_busiest_worker(event):
        if event["iteration"] != 3 or killed:
            return
        # Chunks of the persisted data whose only copy is on one worker.
        holders = {key: who for key, who in client3.who_has().items() if isinstance(key, tuple) and key[0] == source.name}
        assert len(holders) == N_CHUNKS
        sole = {}
        for key, who in holders.items():
            if len(who) == 1:
                sole.setdefault(who[0], []).append(key)
        victim = max(sole, key=lambda worker: len(sole[worker]))
        pids = client3.run(os.getpid)
        killed.update(address=victim, pid=pids[victim], chunks=len(sole[victim]))
        os.kill(pids[victim], signal.SIGKILL)

    events = []
    gm = GaussianMixture(**KW).fit(source, callback=lambda e: (kill_busiest_worker(e), events.append(e)))

    assert killed and killed["chunks"] >= 1
    # The chunks only the dead worker held were loaded again from the source.
    assert len(loads(tmp_path / "killed.log")) >= N_CHUNKS + killed["chunks"]
    assert killed["address"] not in client3.scheduler_info()["workers"]
    assert [e["iteration"] for e in events] == list(range(1, KW["max_iter"] + 1))
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        np.testing.assert_allclose(getattr(gm, name), getattr(undisturbed, name), rtol=0, atol=1e-10, err_msg=name)
    assert gm.lower_bounds_ == pytest.approx(undisturbed.lower_bounds_, rel=0, abs=1e-10)
    assert gm.n_iter_ == undisturbed.n_iter_ == KW["max_iter"]
