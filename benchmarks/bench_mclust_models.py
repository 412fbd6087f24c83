"""mclust's 14 covariance models (issue #23): GaussianMixture's seconds per EM
iteration of each against VVV (``full``), and the client-side time of each
model's M-step.

* Data: 200,000 x 32 float64 rows of a known mixture of K=8 Gaussians with
  random covariances (``bench_vs_sklearn.make_data``); ``--small``: N / 10.
* Start: every model from its own M-step of the same responsibilities (each
  row one-hot at the nearest of K rows drawn at random), so each starts from
  parameters that satisfy its constraint; ``tol=0``, a fixed ``max_iter``, no
  initialisation pass (checked: one pass per iteration).
* A LocalCluster of 2 worker processes x 1 thread (1 BLAS thread each,
  checked); the data persisted on it in ``--chunks`` row chunks.
* Seconds per iteration = (fit with ``max_iter=n+1``  -  fit with
  ``max_iter=1``) / n, each the best of ``--repeat`` runs, all models'
  fits interleaved so that all see the same machine load
  (``_common.per_iteration_interleaved``).  The ratio is to VVV's.
* M-step: ``CovarianceModel.m_step`` on the merged statistics of one E-step
  at the fitted parameters (what the client does once per iteration after
  the pass), best of ``--repeat`` x 5 calls, with the estimator's default
  inner-iteration bounds (``m_step_max_iter``, ``m_step_tol``).  The pass
  is the same for all models of one block kind (full: the K scatter
  matrices; diag; spherical; tied), so the models differ in it only by
  their kind, and in the M-step by its inner iterations (VEI VEE EVE VVE
  VEV).

Measured 2026-12-08 with ``--small`` only (20,000 x 32, K=8; the 2-core VM
shared with other agents' test runs, load 3.6-4.9), s/iter and ratio to
VVV: VVV 0.059; EII 0.51, VII 0.21, EEI 0.20, VEI 0.45, EVI 0.87, VVI 0.81,
EEE 1.66, VEE 1.82, EEV 1.19, VEV 0.93, EVV 0.85; EVE 20.9 and VVE 17.9,
whose client-side M-step took 1.10 and 1.30 s against VVV's 0.02 ms: at
D=32 their orientation MM iterations, started from the identity, ran into
the default ``m_step_max_iter=1000`` in every M-step (about 1.3 ms each)
without meeting ``m_step_tol``.  The other M-steps took under 1 ms.  At
this load the cheap models' ratios are noise (EII 0.51 against VII 0.21
for the same pass).  The full size is to be run on a quiet machine.

Run::

    python benchmarks/bench_mclust_models.py            # 200,000 x 32, K=8
    python benchmarks/bench_mclust_models.py --small    # N / 10: a quick run
    python benchmarks/bench_mclust_models.py --models VVV EVE VEV --iters 5
"""

from __future__ import annotations

import sys
import time
import warnings

import _common
import bench_vs_sklearn
import numpy as np

from daskgmm import GaussianMixture
from daskgmm._blocks import Model, block_statistics
from daskgmm._covariance import DEFAULT_M_STEP_CONTROL, MCLUST_MODELS, covariance_model

N, D, K = 200_000, 32, 8
MODELS = tuple(MCLUST_MODELS)


def start_responsibilities(X, k, seed=1):
    """Each row one-hot at the nearest of ``k`` rows drawn at random."""
    rng = np.random.default_rng(seed)
    centres = X[rng.choice(X.shape[0], k, replace=False)]
    distances = (X**2).sum(axis=1)[:, None] - 2.0 * X @ centres.T + (centres**2).sum(axis=1)
    z = np.zeros((X.shape[0], k))
    z[np.arange(X.shape[0]), distances.argmin(axis=1)] = 1.0
    return z


def precisions(model, covariances):
    """``precisions_init`` from covariances of the model's stored shape:
    matrices for the models of the full and tied block kinds, variances
    for the others."""
    if model.block_kind in ("full", "tied"):
        return np.linalg.inv(covariances)
    return 1.0 / covariances


def initial_parameters(name, X, z, reg_covar):
    """The M-step of model ``name`` from the responsibilities ``z``."""
    model = covariance_model(name)
    stats = block_statistics(X, Model(model.block_kind, None, None, None, None), resp=z)
    weights, means, covariances = model.m_step(stats, reg_covar)
    return {"weights_init": weights, "means_init": means, "precisions_init": precisions(model, covariances)}


def fit(dX, name, inits, max_iter):
    model = GaussianMixture(K, covariance_type=name, tol=0.0, max_iter=max_iter, **inits)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning at max_iter
        model.fit(dX)
    return model


def m_step_seconds(name, X, fitted, repeat):
    """Best seconds of the model's M-step on the merged statistics of an
    E-step at ``fitted``'s parameters (one block: the merge is the pass's)."""
    model = covariance_model(name)
    block_model = model.make_model(fitted.weights_, fitted.means_, fitted.precisions_cholesky_)
    stats = block_statistics(X, block_model)
    best = float("inf")
    for _ in range(repeat):
        tic = time.perf_counter()
        model.m_step(stats, fitted.reg_covar, DEFAULT_M_STEP_CONTROL)
        best = min(best, time.perf_counter() - tic)
    return best


def main(argv=None):
    parser = _common.timing_parser(__doc__, iters=5)
    parser.add_argument("--models", nargs="+", choices=MODELS, help="a subset of the models (VVV is always timed)")
    args = parser.parse_args(argv)
    names = [name for name in MODELS if args.models is None or name in args.models or name == "VVV"]
    n = N // 10 if args.small else N

    _common.print_header("daskgmm: seconds per EM iteration of mclust's 14 models against VVV (issue #23)")
    X = bench_vs_sklearn.make_data(n, D, K)
    z = start_responsibilities(X, K)
    reg_covar = GaussianMixture().reg_covar
    inits = {name: initial_parameters(name, X, z, reg_covar) for name in names}
    del z

    def passes(model, iters):
        if model.n_passes_ != iters:
            raise RuntimeError(f"expected {iters} passes (no initialisation pass), got {model.n_passes_}")

    cluster, client = _common.start_cluster(n_workers=2, threads_per_worker=1)
    try:
        _common.check_worker_blas(client)
        dX = bench_vs_sklearn.persist_on_cluster(client, X, args.chunks)
        fits = {name: (lambda max_iter, name=name: fit(dX, name, inits[name], max_iter)) for name in names}
        per_iter, models = _common.per_iteration_interleaved(fits, args.iters, args.repeat, passes)
        load = _common.load_average()
    finally:
        client.close()
        cluster.close()

    m_step = {name: m_step_seconds(name, X, models[name], 5 * args.repeat) for name in names}
    rows = [
        [
            name, covariance_model(name).block_kind, f"{per_iter[name]:.4f}", f"{per_iter[name] / per_iter['VVV']:.2f}",
            f"{1e3 * m_step[name]:.2f}", f"{models[name].lower_bound_:.6f}",
        ]
        for name in names
    ]
    print(f"\nN={n:,} D={D} K={K} float64; {args.iters} iterations, best of {args.repeat}, all models interleaved; "
          f"{args.chunks} persisted chunks, 2 workers x 1 thread; load average after the runs {load:.1f} (2 cores). "
          "M-step: client-side CovarianceModel.m_step on merged statistics, default inner-iteration bounds.")
    _common.print_table(
        ["model", "block kind", "s/iter", "ratio to VVV", "M-step ms", "lower bound"],
        rows,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
