"""Precision of the block scatter (issue #15 item 1): the statistics of the
current ``_blocks.block_statistics`` against those of an earlier commit, side
by side, in one run.

The earlier module is read with ``git show <baseline>:daskgmm/_blocks.py``
into a temporary file and imported from there (nothing copied into the
repository).  For each covariance type, float32 and float64, and two kinds of
data, it times ``block_statistics`` on one chunk (E-step included, 1 BLAS
thread, the model the data was drawn from), the two versions interleaved and
each the minimum of ``--repeat`` runs (the machine is shared: the minimum is
the figure least disturbed by other work); and it measures the largest
relative error of the variances (diagonal of the scatter over ``n_k``) of
both against a float64 two-pass reference (exact weighted means, then
weighted centred second moments) on the same responsibilities.

Data:

* ``overlap``: ``bench_vs_sklearn.make_data``'s shape, components of unit
  scale with means drawn at scale 3 (the pivot formula's easy case: the
  speed of the fix on ordinary data);
* ``apart``: the same components, means drawn at scale 1e3 (float32) or 1e6
  (float64) and offset by as much, where the scatter about the block pivot
  cancelled;
* ``bench``: the configurations of ``bench_vs_sklearn.py`` (one chunk of a
  quarter of the rows, the initial model of ``profile_blocks.py``).

Run::

    python benchmarks/bench_precision.py                  # all rows
    python benchmarks/bench_precision.py --repeat 9 --baseline 38f416b
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import tempfile
import time
from pathlib import Path

import _common
import bench_vs_sklearn
import numpy as np
import profile_blocks
from threadpoolctl import threadpool_limits

from daskgmm import _blocks
from daskgmm._covariance import make_model, precisions_cholesky_from_covariances

# The last commit whose block statistics summed about the block pivot only.
BASELINE = "38f416b"

CONFIGS = [  # (rows in the chunk, D, K, covariance_type)
    (50_000, 8, 8, "full"),
    (50_000, 8, 8, "tied"),
    (50_000, 8, 8, "diag"),
    (50_000, 8, 8, "spherical"),
    (10_000, 64, 16, "full"),
    (50_000, 64, 16, "diag"),
    (50_000, 64, 16, "spherical"),
]


BENCH_CONFIGS = bench_vs_sklearn.CONFIGS


def load_baseline(commit):
    """The ``_blocks`` module as of ``commit``, imported from a temporary file."""
    source = subprocess.run(
        ["git", "show", f"{commit}:daskgmm/_blocks.py"], cwd=_common.REPO, check=True, capture_output=True, text=True
    ).stdout
    folder = Path(tempfile.mkdtemp(prefix="daskgmm_baseline_"))
    path = folder / "baseline_blocks.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("baseline_blocks", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_case(n, d, k, kind, spread, seed=0):
    """Rows drawn from a mixture of ``kind`` with means at scale ``spread``
    (and offset by as much), shuffled, and that mixture as a block Model."""
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=spread, size=(k, d)) + spread
    labels = rng.integers(k, size=n)
    if kind == "full":
        a = rng.normal(size=(k, d, d)) * (0.5 / np.sqrt(d)) + np.eye(d)
        cov = a @ np.swapaxes(a, 1, 2)
        X = means[labels] + np.einsum("nij,nj->ni", a[labels], rng.normal(size=(n, d)))
    elif kind == "tied":
        a = rng.normal(size=(d, d)) * (0.5 / np.sqrt(d)) + np.eye(d)
        cov = a @ a.T
        X = means[labels] + rng.normal(size=(n, d)) @ a.T
    elif kind == "diag":
        cov = rng.uniform(0.5, 2.0, size=(k, d))
        X = means[labels] + rng.normal(size=(n, d)) * np.sqrt(cov[labels])
    else:
        cov = rng.uniform(0.5, 2.0, size=k)
        X = means[labels] + rng.normal(size=(n, d)) * np.sqrt(cov[labels])[:, None]
    weights = np.bincount(labels, minlength=k) / n
    model = make_model(weights, means, precisions_cholesky_from_covariances(cov, kind), kind)
    return X, model


def reference_variances(X, resp, kind):
    """Per-component variances (K, D) ('tied': (D,)) by the two-pass formula in float64."""
    X = np.asarray(X, dtype=np.float64)
    resp = np.asarray(resp, dtype=np.float64)
    nk = resp.sum(axis=0)
    means = resp.T @ X / nk[:, None]
    second = np.stack([resp[:, j] @ (X - means[j]) ** 2 for j in range(resp.shape[1])])
    if kind == "tied":
        return second.sum(axis=0) / nk.sum()
    return second / nk[:, None]


def variances(stats):
    scatter = np.asarray(stats.scatter, dtype=np.float64)
    nk = np.asarray(stats.nk, dtype=np.float64)
    if stats.covariance_type == "full":
        return np.diagonal(scatter, axis1=1, axis2=2) / nk[:, None]
    if stats.covariance_type == "tied":
        return np.diag(scatter) / nk.sum()
    return scatter / nk[:, None]


def max_relative_error(module, X, resp, kind, want):
    empty = module.Model(kind, None, None, None, None)
    with np.errstate(all="ignore"):
        got = variances(module.block_statistics(X, empty, resp=resp.astype(X.dtype)))
        return float(np.max(np.abs(got - want) / want))


def interleaved_best(functions, repeat):
    """Minimum time of each function, the functions run in turn ``repeat`` times."""
    for fn in functions:
        fn()
    best = [np.inf] * len(functions)
    for _ in range(repeat):
        for i, fn in enumerate(functions):
            tic = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - tic)
    return best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default=BASELINE, help="commit of the earlier _blocks.py")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--only", nargs="*", default=None, help="covariance types to run")
    kinds = ["overlap", "apart", "bench"]
    parser.add_argument("--data", nargs="*", default=kinds, choices=kinds, help="kinds of data to run")
    args = parser.parse_args(argv)
    _common.print_header(f"block statistics: {args.baseline} vs working tree, one chunk, 1 BLAS thread")
    old = load_baseline(args.baseline)
    rows = []
    for data in args.data:
        for dtype in ("float32", "float64"):
            spread = 3.0 if data == "overlap" else (1e3 if dtype == "float32" else 1e6)
            for n, d, k, kind in BENCH_CONFIGS if data == "bench" else CONFIGS:
                if args.only and kind not in args.only:
                    continue
                if data == "bench":  # a quarter of the rows, as a 4-chunk pass
                    X = bench_vs_sklearn.make_data(n, d, k).astype(dtype)
                    model = profile_blocks.chunk_model(X, k, kind)[0]
                    X = X[: n // 4]
                else:
                    X64, model = make_case(n, d, k, kind, spread)
                    X = X64.astype(dtype)
                resp = np.exp(_blocks.estimate_log_resp(X.astype(np.float64), model)[1])
                want = reference_variances(X, resp, kind)
                errors = [max_relative_error(module, X, resp, kind, want) for module in (old, _blocks)]
                with threadpool_limits(1), np.errstate(all="ignore"):
                    times = interleaved_best(
                        [lambda m=m: m.block_statistics(X, model) for m in (old, _blocks)], args.repeat
                    )
                row = [data, dtype, f"{len(X):,}x{d} K={k} {kind}", f"{times[0] * 1e3:.1f}", f"{times[1] * 1e3:.1f}",
                       f"{times[1] / times[0]:.2f}", f"{errors[0]:.1e}", f"{errors[1]:.1e}"]
                rows.append(row)
                print("  ", *row, flush=True)
    _common.print_table(
        ["data", "dtype", "chunk", "old ms", "new ms", "new/old", "old var err", "new var err"], rows
    )


if __name__ == "__main__":
    main()
