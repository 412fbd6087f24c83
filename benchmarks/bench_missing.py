"""The cost of missing features (issue #14): GaussianMixture's seconds per EM
iteration with ``missing="marginalize"`` and 0%, 5% and 30% of the entries
missing (at random), against the complete-data fit (``missing="error"``) on
the same data, and scikit-learn's complete-data fit side by side.

* Data from ``bench_vs_sklearn.make_data``; entries set to NaN independently
  with the given probability (the same draws for every configuration).
* The same ``weights_init`` / ``means_init`` / ``precisions_init`` (no
  initialisation pass), ``tol=0`` and a fixed ``max_iter``.
* A LocalCluster of 2 worker processes x 1 thread (1 BLAS thread each,
  checked); data persisted on it in ``--chunks`` row chunks before timing.
* Seconds per iteration = (fit with ``max_iter=n+1``  -  fit with
  ``max_iter=1``) / n, each the best of ``--repeat`` runs, all variants of a
  configuration interleaved; the difference leaves out what a fit does once
  (with missing values: the counting pass).
* Missing patterns: with D=8 every pattern is shared by many rows of a chunk
  (matrix products per pattern); with D=32 at 5% and 30% nearly every
  incomplete row has a pattern of its own (batched small factorizations per
  row and component: the worst case).

Measured 2026-12-03 on a quiet machine (load 0.85 before the run, 1.5-2.8
after the rows: the run itself), code of commit 26ac11a, full size,
``--repeat 3 --iters 5``; s/iter, times the complete-data fit's, and
scikit-learn's complete-data s/iter over this:

==========================  ========  =======  =======  =======  =========
config                      complete  0%       5%       30%      sklearn
==========================  ========  =======  =======  =======  =========
500k x 8, K=8, full         0.098     1.12x    2.46x    5.43x    0.584
200k x 32, K=8, full        0.192     0.92x    2.94x    36.3x    0.869
200k x 64, K=16, diag       0.074     1.19x    2.44x    3.49x    0.242
==========================  ========  =======  =======  =======  =========

* 0% (``missing="marginalize"`` on data without NaN) is the plain pass plus
  a scan for NaN per block: within the run-to-run noise (0.92-1.19x).
* 5%: 34% (D=8) to 96% (D=64) of the rows are incomplete; 2.4-2.9x.
* 30%, D=8: 256 possible patterns, each shared by hundreds of rows per
  chunk: 5.4x, about as fast as scikit-learn on the complete data.
* 30%, D=32: nearly every row has a pattern of its own, so ``L_mm`` (about
  10 x 10) is factorized per row and component: 1.6 million small LAPACK
  calls per pass (~4 us each), 36x the complete fit.  The worst case; the
  cost per iteration stays linear in the rows and one pass.
* diag: no coupling, no grouping: matrix products over the rows, 2.4-3.5x.

Before the conditional covariances were summed per pattern (same day, same
machine): 30% D=8 0.785 s/iter (7.2x), 5% D=32 0.764 (3.9x).

Run::

    python benchmarks/bench_missing.py             # the configurations below
    python benchmarks/bench_missing.py --small     # N / 10: a quick run
    python benchmarks/bench_missing.py --only diag --iters 10 --repeat 5
"""

from __future__ import annotations

import sys
import warnings

import _common
import bench_vs_sklearn
import numpy as np

from daskgmm import GaussianMixture

CONFIGS = [  # (N, D, K, covariance_type)
    (500_000, 8, 8, "full"),
    (200_000, 32, 8, "full"),
    (200_000, 64, 16, "diag"),
]
FRACTIONS = (0.0, 0.05, 0.30)


def fit(dX, k, covariance_type, inits, max_iter, missing):
    model = GaussianMixture(k, covariance_type=covariance_type, tol=0.0, max_iter=max_iter, missing=missing, **inits)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning at max_iter
        model.fit(dX)
    return model


def time_variants(variants, k, covariance_type, inits, n_iter, repeat):
    """Best seconds per iteration of every (name, dX, missing) variant,
    interleaved run by run."""
    fits = {
        name: (lambda max_iter, dX=dX, missing=missing: fit(dX, k, covariance_type, inits, max_iter, missing))
        for name, dX, missing in variants
    }
    return _common.per_iteration_interleaved(fits, n_iter, repeat)


def main(argv=None):
    parser = _common.timing_parser(__doc__, iters=5)
    parser.add_argument("--only", choices=["full", "diag"], help="configurations of one covariance type")
    parser.add_argument("--skip-sklearn", action="store_true", help="do not time scikit-learn")
    args = parser.parse_args(argv)

    _common.print_header("daskgmm: per-iteration cost of missing='marginalize' (issue #14)")
    cluster, client = _common.start_cluster(n_workers=2, threads_per_worker=1)
    rows = []
    try:
        _common.check_worker_blas(client)
        for n, d, k, kind, X, inits in bench_vs_sklearn.selected_cases(CONFIGS, args):
            draws = np.random.default_rng(3).random(X.shape)
            variants = [("complete", bench_vs_sklearn.persist_on_cluster(client, X, args.chunks), "error")]
            for fraction in FRACTIONS:
                holey = np.where(draws < fraction, np.nan, X)
                variants.append(
                    (f"{fraction:.0%} missing", bench_vs_sklearn.persist_on_cluster(client, holey, args.chunks),
                     "marginalize")
                )
            per_iter, models = time_variants(variants, k, kind, inits, args.iters, args.repeat)
            sk = np.nan
            if not args.skip_sklearn:
                sk = bench_vs_sklearn.time_sklearn(X, k, kind, inits, args.iters, args.repeat)[0]
            base = per_iter["complete"]
            for name, _, _ in variants:
                incomplete = int(models[name].n_samples_incomplete_)
                rows.append([
                    f"N={n:,} D={d} K={k} {kind}", name, f"{incomplete:,}", f"{per_iter[name]:.4f}",
                    f"{per_iter[name] / base:.2f}", f"{sk:.4f}", f"{sk / per_iter[name]:.2f}",
                    f"{models[name].lower_bound_:.5f}", f"{_common.load_average():.1f}",
                ])
                print(f"  {rows[-1][0]} {name}: {per_iter[name]:.4f} s/iter, x{per_iter[name] / base:.2f} of "
                      f"complete, sklearn {sk:.4f}", flush=True)
            del variants
    finally:
        client.close()
        cluster.close()
    print(f"\nPer-iteration seconds, {args.iters} iterations, best of {args.repeat}, variants interleaved; "
          f"{args.chunks} persisted chunks, 2 workers x 1 thread, float64.  'complete' is the plain fit "
          "(missing='error') on the data before any entry was removed; 'x complete' = s/iter / complete's; "
          "sklearn = scikit-learn's GaussianMixture per iteration on the complete data (all cores); "
          "load = 1-minute load average after the row (2 cores).")
    _common.print_table(
        ["config", "data", "incomplete rows", "s/iter", "x complete", "sklearn s/iter (complete)",
         "sklearn / this", "lower bound", "load"],
        rows,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
