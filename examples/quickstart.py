"""Laptop quickstart: fit a Gaussian mixture on a Dask LocalCluster.

Generates a 4-component 3-D mixture as a chunked Dask array (each chunk is
drawn on a worker: the data never passes through this process), fits
``daskgmm.GaussianMixture`` with scikit-learn's parameters, labels every row
lazily, saves and reloads the model, and writes a scatter plot.

Run::

    python examples/quickstart.py                 # a million rows
    python examples/quickstart.py --n-samples 50000 --plot quickstart.png

``DASKGMM_EXAMPLE_SMALL=1`` shrinks it to a few thousand rows (used by the
tests).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

import dask
import dask.array as da
from distributed import Client, LocalCluster

import daskgmm

WEIGHTS = np.array([0.4, 0.3, 0.2, 0.1])
MEANS = np.array([[0.0, 0.0, 0.0], [4.0, 4.0, 0.0], [-4.0, 3.0, 2.0], [0.0, -5.0, 4.0]])
SCALES = np.array([1.0, 0.7, 1.2, 0.5])


def mixture_chunk(n_rows, seed):
    """``n_rows`` draws of the mixture (runs on a worker)."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(len(WEIGHTS), size=n_rows, p=WEIGHTS)
    return MEANS[labels] + rng.standard_normal((n_rows, 3)) * SCALES[labels, None]


def make_data(n_samples, chunk_rows, seed=0):
    sizes = [min(chunk_rows, n_samples - start) for start in range(0, n_samples, chunk_rows)]
    chunks = [
        da.from_delayed(dask.delayed(mixture_chunk)(size, [seed, i]), shape=(size, 3), dtype=np.float64)
        for i, size in enumerate(sizes)
    ]
    return da.concatenate(chunks, axis=0)


def plot(path, X_sample, labels, means):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4.5))
    FigureCanvasAgg(fig)
    for i, (a, b) in enumerate([(0, 1), (0, 2)]):
        ax = fig.add_subplot(1, 2, i + 1)
        ax.scatter(X_sample[:, a], X_sample[:, b], c=labels, s=2, cmap="tab10", vmin=0, vmax=9, alpha=0.5)
        ax.plot(means[:, a], means[:, b], "kx", markersize=10)
        ax.set_xlabel(f"feature {a}")
        ax.set_ylabel(f"feature {b}")
    fig.suptitle("daskgmm quickstart: a sample of the rows, coloured by predicted component")
    fig.savefig(path)


def main():
    small = os.environ.get("DASKGMM_EXAMPLE_SMALL") == "1"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=5_000 if small else 1_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--plot", default="quickstart.png", help="PNG to write")
    args = parser.parse_args()

    with LocalCluster(n_workers=args.workers, threads_per_worker=1, dashboard_address=":0") as cluster, Client(
        cluster
    ) as client:
        print(f"Dask dashboard: {client.dashboard_link}")
        chunk_rows = max(1000, args.n_samples // (4 * args.workers))
        X = make_data(args.n_samples, chunk_rows)
        print(f"X: {X.shape[0]} rows x {X.shape[1]} features in {X.numblocks[0]} chunks")

        gmm = daskgmm.GaussianMixture(n_components=4, covariance_type="full", n_init=2, random_state=0)
        tic = time.perf_counter()
        gmm.fit(X)  # the data is persisted once on the workers, one pass per EM iteration
        print(
            f"fitted in {time.perf_counter() - tic:.2f} s: converged={gmm.converged_}, "
            f"{gmm.n_iter_} iterations, lower bound {gmm.lower_bound_:.4f}"
        )
        order = np.argsort(gmm.weights_)[::-1]
        for j in order:
            print(f"  weight {gmm.weights_[j]:.3f}  mean {np.round(gmm.means_[j], 2)}")

        labels = gmm.predict(X)  # lazy, with X's row chunks
        counts = np.bincount(labels.compute(), minlength=4)
        print(f"rows per component: {counts.tolist()}; BIC {gmm.bic(X):.1f}")

        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "model.npz")
            gmm.save(path)  # portable .npz, no pickle
            same = daskgmm.load(path)
            head = X[:1000].compute()
            assert np.array_equal(same.predict(head), gmm.predict(head))
            print(f"saved and reloaded the model ({os.path.getsize(path)} bytes): same predictions")

        sample = X[: min(5000, args.n_samples)].compute()
        plot(args.plot, sample, gmm.predict(sample), gmm.means_)
        print(f"plot written to {args.plot}")


if __name__ == "__main__":
    main()
