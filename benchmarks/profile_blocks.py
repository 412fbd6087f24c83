"""Where one chunk's time goes: ``_blocks.block_statistics`` on 1 BLAS thread.

For each configuration of ``bench_vs_sklearn.py`` (and both dtypes) this
times ``block_statistics`` on one chunk with ``threadpool_limits(1)`` (as a
worker runs it), scales it to a whole pass over N rows on one thread, and,
with ``--sklearn``, times scikit-learn's own iteration (E-step + M-step) on
one thread for the same N.  With ``--lines`` (needs ``pip install
line-profiler``) it prints the time of each line of the block functions.

Run::

    python benchmarks/profile_blocks.py                  # timings
    python benchmarks/profile_blocks.py --lines          # + line profiles
    python benchmarks/profile_blocks.py --sklearn        # + scikit-learn on 1 thread
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

import _common
import numpy as np
from bench_vs_sklearn import CONFIGS, make_data, make_inits
from threadpoolctl import threadpool_limits

from daskgmm import _blocks
from daskgmm._covariance import make_model, precisions_cholesky_from_precisions


def chunk_model(X, k, kind):
    init = make_inits(X, k, kind)
    prec_chol = precisions_cholesky_from_precisions(init["precisions_init"].astype(np.float64), kind)
    return make_model(init["weights_init"].astype(np.float64), init["means_init"].astype(np.float64), prec_chol, kind), init


def best(fn, repeat):
    fn()
    times = []
    for _ in range(repeat):
        tic = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tic)
    return min(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=4, help="the pass's chunk count (chunk = N / chunks rows)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--lines", action="store_true", help="line profiles (line-profiler)")
    parser.add_argument("--sklearn", action="store_true", help="scikit-learn's iteration on 1 thread, same N")
    args = parser.parse_args(argv)
    _common.print_header("block_statistics on one chunk, 1 BLAS thread")

    rows = []
    for dtype in ("float64", "float32"):
        for n, d, k, kind in CONFIGS:
            X = make_data(n, d, k).astype(dtype)
            chunk = X[: -(-n // args.chunks)]
            model, init = chunk_model(X, k, kind)
            with threadpool_limits(1):
                seconds = best(lambda: _blocks.block_statistics(chunk, model), args.repeat)
                row = [f"N={n:,} D={d} K={k} {kind}", dtype, f"{len(chunk):,}", f"{seconds * 1e3:.1f}",
                       f"{seconds * n / len(chunk):.3f}"]
                if args.sklearn:
                    row.append(f"{sklearn_iteration(X, k, kind, init, args.repeat):.3f}")
            rows.append(row)
            print("  ", *row, flush=True)
            if args.lines:
                line_profile(chunk, model)
    headers = ["config", "dtype", "chunk rows", "ms/chunk", "s/pass on 1 thread"]
    if args.sklearn:
        headers.append("sklearn s/iter on 1 thread")
    _common.print_table(headers, rows)


def sklearn_iteration(X, k, kind, init, repeat):
    from sklearn.mixture import GaussianMixture

    def fit(max_iter):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            GaussianMixture(k, covariance_type=kind, tol=0.0, max_iter=max_iter, **init).fit(X)

    return (best(lambda: fit(3), repeat) - best(lambda: fit(1), repeat)) / 2


def line_profile(chunk, model):
    try:
        from line_profiler import LineProfiler
    except ImportError:
        sys.exit("--lines needs line-profiler: pip install line-profiler")
    names = ("block_statistics", "weighted_log_prob", "_mahalanobis", "log_normalize", "log_sum_exp",
             "_second_moment_about_pivot", "_sums_about_own_pivots")
    profiler = LineProfiler(*[getattr(_blocks, name) for name in names if hasattr(_blocks, name)])
    with threadpool_limits(1):
        profiled = profiler(_blocks.block_statistics)
        for _ in range(3):
            profiled(chunk, model)
    profiler.print_stats(output_unit=1e-3, stripzeros=True)


if __name__ == "__main__":
    main()
