import numpy as np
import pytest


def make_blobs(n=600, d=3, k=3, *, spread=6.0, scale=1.0, shift=0.0, seed=0, dtype=np.float64):
    """A synthetic mixture: k Gaussian clusters with random covariances.

    Returns X (n, d), the true labels and the true means.
    """
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=spread, size=(k, d))
    labels = rng.integers(k, size=n)
    X = np.empty((n, d))
    for j in range(k):
        rows = labels == j
        a = rng.normal(size=(d, d)) * 0.4 + np.eye(d)
        X[rows] = rng.normal(size=(rows.sum(), d)) @ a.T * scale + means[j]
    return (X + shift).astype(dtype), labels, means + shift


def correlated_bands(rho, *, n=2000, d=8, seed=0, dtype=np.float32):
    """Two clusters of ``d`` neighbouring spectral bands: band i and j
    correlated by ``rho**|i - j|`` within each cluster (ill-conditioned
    covariances as rho nears 1), as ``dtype``."""
    rng = np.random.default_rng(seed)
    factor = np.linalg.cholesky(rho ** np.abs(np.subtract.outer(np.arange(d), np.arange(d))))
    X = rng.normal(size=(n, d)) @ factor.T
    X[n // 2 :] += 3.0
    return X.astype(dtype)


@pytest.fixture(scope="session")
def blobs():
    return make_blobs()


@pytest.fixture(scope="module")
def local_cluster_client():
    """A LocalCluster with 2 worker processes, shared by a test module."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", host="127.0.0.1"
    ) as cluster, distributed.Client(cluster) as client:
        yield client


def mmapped_by_a_4mib_buffer():
    """Whether a fresh 4 MiB buffer is served by mmap in this process
    (glibc's mallinfo2().hblks counts the mmapped blocks in use)."""
    import ctypes

    class Mallinfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost",
        )]

    mallinfo2 = ctypes.CDLL(None).mallinfo2
    mallinfo2.restype = Mallinfo2
    before = mallinfo2().hblks
    buffer = np.empty(4 * 2**20, dtype=np.uint8)
    after = mallinfo2().hblks
    del buffer
    return after > before
