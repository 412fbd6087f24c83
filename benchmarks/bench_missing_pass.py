"""The cost of a pass with missing features against the complete pass on the
same rows (issue #24 item 2), block by block: the seconds of one pass of
``_blocks.block_statistics`` over the complete rows and of
``_blocks_missing.marginal_block_statistics`` over the same rows with 5% and
30% of the entries missing at random, side by side with their ratio and the
target (30%: <= 3x for 'full', <= 2x for 'diag' and 'spherical'; 5%: <= 1.5x).

* Data from ``bench_vs_sklearn.make_data``; the model's means at random
  rows, its covariances the data's, K=8; entries
  set to NaN independently with the given probability (the same draws for
  every fraction).
* One BLAS thread (as a worker of the fit benchmarks), the rows in chunks of
  25,000 (or ``--chunks`` of them; a pass of the engine makes one call per
  chunk); no Dask,
  so the ratio is that of the arithmetic, without the per-pass scheduling the
  fits add to both.
* CPU seconds of the process (``time.process_time``), best of ``--repeat``,
  the variants of a configuration interleaved: on a machine shared with
  other jobs they move less than wall time; the wall seconds are printed
  beside them.  The load average is printed per row.

With 30% missing at random in 32 or 64 features nearly every incomplete row
has a pattern of its own: the per-row factorizations are the cost.

Measured 2026-12-08, ``--small`` (20,000 rows, one chunk), best of 3, on
the 2-core machine shared with other jobs (1-minute load 3.5-5.0 during
both runs); CPU seconds of a pass, times the complete pass, before (main
12f45ed: a LAPACK Cholesky and inverse per rare pattern and component)
and after (the vectorised sweep); the target in brackets:

=====================  ========  ===============  ===============  ==============
config                 complete  5% before/after  30% before/after  target 5%/30%
=====================  ========  ===============  ===============  ==============
D=8 full               0.0077    1.93x / 1.86x    5.84x / 6.39x    1.5 / 3
D=32 full              0.0267    3.79x / 2.82x    34.2x / 14.8x    1.5 / 3
D=64 full              0.080     3.95x / 2.64x    63.6x / 24.9x    1.5 / 3
D=8-64 diag/spherical  0.004-7   2.2-7.6x         3.9-8.2x         1.5 / 2
=====================  ========  ===============  ===============  ==============

* full, D=32 and 64 at 30%: the pass 2.3x (0.91 -> 0.39 s) and 2.7x
  (5.2 -> 1.9 s) faster; the sweep, elementwise over stacks of c x c
  matrices (c ~ 10 and ~ 19), is still most of it: ~1.2 and ~6.5 us per
  row and component, against ~0.17 and ~0.5 us for the complete pass's.
  The targets need a compiled per-row kernel (issue #24 item 1).
* D=8 (patterns shared by hundreds of rows: matrix products per pattern)
  and diag/spherical (no factorization) do not go through the sweep: the
  same code before and after, their spread is the machine's noise.

Run::

    python benchmarks/bench_missing_pass.py --small      # N = 20,000
    python benchmarks/bench_missing_pass.py --only full  # N = 200,000
"""

from __future__ import annotations

import sys
import time

import _common
import bench_vs_sklearn
import numpy as np
from threadpoolctl import threadpool_limits

import daskgmm
from daskgmm._blocks import block_statistics
from daskgmm._blocks_missing import marginal_block_statistics
from daskgmm._covariance import make_model, precisions_cholesky_from_covariances

DIMENSIONS = (8, 32, 64)
KINDS = ("full", "diag", "spherical")
FRACTIONS = (0.05, 0.30)
N_ROWS, K = 200_000, 8
CHUNK_ROWS = 25_000  # the fit benchmarks' chunks (200,000 rows in 8); --chunks to choose
TARGETS = {("full", 0.30): 3.0, ("diag", 0.30): 2.0, ("spherical", 0.30): 2.0}  # 5%: 1.5 for every type


def block_model(X, k, kind, seed=1):
    """Means at random rows, equal weights, the data's covariance (its
    diagonal, its mean variance) for every component."""
    rng = np.random.default_rng(seed)
    means = X[rng.choice(X.shape[0], k, replace=False)]
    cov = np.cov(X.T)
    covariances = {"full": np.repeat(cov[None], k, axis=0), "diag": np.repeat(np.diag(cov)[None], k, axis=0),
                   "spherical": np.full(k, np.diag(cov).mean())}[kind]
    return make_model(np.full(k, 1.0 / k), means, precisions_cholesky_from_covariances(covariances, kind), kind)


def one_pass(function, chunks, model):
    for chunk in chunks:
        function(chunk, model)


def best_times(variants, model, repeat):
    """Best CPU and wall seconds of one pass of every variant, interleaved."""
    cpu = {name: np.inf for name in variants}
    wall = dict(cpu)
    for _ in range(repeat):
        for name, (function, chunks) in variants.items():
            c0, w0 = time.process_time(), time.perf_counter()
            one_pass(function, chunks, model)
            cpu[name] = min(cpu[name], time.process_time() - c0)
            wall[name] = min(wall[name], time.perf_counter() - w0)
    return cpu, wall


def main(argv=None):
    parser = _common.timing_parser(__doc__, iters=1)
    parser.add_argument("--only", choices=KINDS, help="configurations of one covariance type")
    parser.add_argument("--dims", type=int, nargs="+", default=list(DIMENSIONS), help="numbers of features")
    parser.set_defaults(chunks=None)
    args = parser.parse_args(argv)
    n = N_ROWS // 10 if args.small else N_ROWS
    n_chunks = args.chunks or max(1, n // CHUNK_ROWS)

    _common.print_header("daskgmm: one pass with missing features against the complete pass (issue #24 item 2)")
    print("daskgmm from", daskgmm.__file__)
    rows = []
    with threadpool_limits(1, user_api="blas"):
        for d in args.dims:
            X = bench_vs_sklearn.make_data(n, d, K)
            draws = np.random.default_rng(3).random(X.shape)
            bounds = np.linspace(0, n, n_chunks + 1).astype(int)
            split = lambda A: [A[a:b] for a, b in zip(bounds[:-1], bounds[1:])]  # noqa: E731
            holey = {f: split(np.where(draws < f, np.nan, X)) for f in FRACTIONS}
            for kind in KINDS:
                if args.only and kind != args.only:
                    continue
                model = block_model(X, K, kind)
                variants = {"complete": (block_statistics, split(X))}
                variants.update({f"{f:.0%}": (marginal_block_statistics, holey[f]) for f in FRACTIONS})
                cpu, wall = best_times(variants, model, args.repeat)
                for f in FRACTIONS:
                    name = f"{f:.0%}"
                    ratio = cpu[name] / cpu["complete"]
                    target = TARGETS.get((kind, f), 1.5)
                    rows.append([
                        f"N={n:,} D={d} K={K} {kind}", name, f"{cpu['complete']:.4f}", f"{cpu[name]:.4f}",
                        f"{ratio:.2f}", f"<= {target:g}", "yes" if ratio <= target else "NO",
                        f"{wall['complete']:.4f}", f"{wall[name]:.4f}", f"{_common.load_average():.1f}",
                    ])
                    print(f"  {rows[-1][0]} {name}: complete {cpu['complete']:.4f} s, missing {cpu[name]:.4f} s "
                          f"(CPU), x{ratio:.2f} (target {target:g})", flush=True)
    print(f"\nOne pass over {n:,} rows in {n_chunks} chunks, 1 BLAS thread, float64, best of {args.repeat}; "
          "CPU seconds of the process (wall beside); 'x complete' = missing / complete; load = 1-minute load "
          "average after the row (2 cores).")
    _common.print_table(
        ["config", "missing", "complete CPU s", "missing CPU s", "x complete", "target", "met",
         "complete wall s", "missing wall s", "load"],
        rows,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
