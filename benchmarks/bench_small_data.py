"""daskgmm versus scikit-learn's GaussianMixture on small NumPy data, fit time side by side.

What a scikit-learn user pays for switching estimators on data that fits in
memory many times over: iris (150 x 4, K=3, full covariance) and digits
(1797 x 64, K=10, diag and full), NumPy input, no Dask client (daskgmm's
in-process path for small NumPy input), both estimators in this process.

* ``init=default``: each estimator's own initialisation from
  ``random_state=0`` (scikit-learn's k-means, daskgmm's k-means||), so the
  iteration counts may differ (both are printed); ``init=same``: both start
  from the same ``weights_init`` / ``means_init`` / ``precisions_init`` (one
  scikit-learn k-means initialisation, made once before timing), so both make
  the same iterations to the same answer (the lower bounds must agree).
* Each configuration under ``threadpoolctl.threadpool_limits(1)`` and with
  the BLAS thread pool as it is (``threads=all``).
* Time of a whole ``fit`` (validation, initialisation, EM), the best of
  ``--repeat`` runs after one warm-up fit (fewer once the timed runs took
  ``--max-seconds``: scikit-learn's 2-thread BLAS on a loaded 2-core machine
  can take seconds a fit), in milliseconds.
* ``GridSearchCV(n_components=[2, 3, 4], cv=3)`` on iris for both.

Target: daskgmm within 2x of scikit-learn's time on iris (every iris row,
the grid search included: ratio daskgmm / scikit-learn <= 2).  The digits
rows are printed for information.

Run::

    python benchmarks/bench_small_data.py              # ~30-60 s
    python benchmarks/bench_small_data.py --repeat 3   # quicker

Measured 2026-12-03 on a quiet machine (load 0.7), after the exact
per-component scatter of issue #15, ms sklearn / daskgmm = ratio, BLAS threads
1 | all: iris init=default 6.7 / 11.9 = 1.77 | 12.0 / 11.6 = 0.97; iris
init=same 10.1 / 12.3 = 1.22 | 5.8 / 8.2 = 1.41; iris GridSearchCV 50.3 /
93.7 = 1.86 | 123.8 / 96.0 = 0.78: 6/6 iris rows within 2x (one earlier run
that day under load: 2.23 on the first row).  Digits diag init=same 16.1 /
99.0 = 6.2 (was 0.66 before that fix): digits has pixels constant within a
component, whose variance is then reg_covar alone, and the exact scatter
sums them about the component's own pivot (profiled: 88 of 130 ms in
_blocks._sums_about_own_pivots); digits full init=same 230.8 / 426.8 = 1.85.

Measured (2-core VM shared with other jobs, load average 0.8-1.5, on the
in-process path of the working tree of 2026-11-24; 29 s), scikit-learn /
daskgmm ms, ratio daskgmm / scikit-learn, BLAS threads 1 | all:
iris init=default 6.6 / 9.4 = 1.43 | 15.5 / 11.4 = 0.73 (17 iterations
each); iris init=same 5.9 / 6.5 = 1.10 | 7.0 / 7.7 = 1.09 (16 each, the
same lower bound); iris GridSearchCV 53.8 / 78.8 = 1.46 | 123.5 / 74.7 =
0.60 (both pick n_components=2): every iris row within the 2x target.
Digits diag init=default 24.3 / 48.7 = 2.00 | 34.7 / 48.2 = 1.39 (14
iterations against daskgmm's 28: another initialisation), init=same 15.7 /
10.3 = 0.66 | 15.4 / 10.4 = 0.67 (13 each); digits full init=default
275.6 / 141.5 = 0.51 | 1040.7 / 147.8 = 0.14 (19 against 12), init=same
213.8 / 177.6 = 0.83 | 786.9 / 197.2 = 0.25 (18 each; lower bounds agree to
4e-11).  scikit-learn with 2 BLAS threads is slower than with one on this
loaded 2-core machine; daskgmm runs its fit with one BLAS thread either way.
A later run under load average 4.2 (57 s, the fits capped by
``--max-seconds``): iris 1.57 / 1.15 with one thread, the grid search 58.0 /
128.7 = 2.22 (FAIL): the grid search is the row with the least margin;
scikit-learn with 2 BLAS threads took 0.5-8.6 s a fit there (its idle
OpenBLAS threads spin on cores other jobs use).

Measured again 2026-12-03 (HEAD 9a03490: per-feature own pivots of
``_blocks._DiagonalSums`` for 'diag'), default options, load average 1.0-1.2
(not fully quiet), ms sklearn / daskgmm = ratio, BLAS threads 1 | all: iris
init=default 6.2 / 10.4 = 1.68 | 12.5 / 10.4 = 0.83; iris init=same 5.2 / 7.1
= 1.36 | 5.3 / 7.1 = 1.34; iris GridSearchCV 46.7 / 77.2 = 1.65 | 92.1 / 77.7
= 0.84: 6/6 iris rows within 2x.  Digits diag init=default 23.1 / 95.0 = 4.12
| 33.8 / 103.0 = 3.05 (14 / 28 iterations), init=same 16.1 / 43.9 = 2.72 |
25.7 / 40.7 = 1.59 (was 6.2 above: a constant pixel now costs its column, not
its component's rows); digits full init=default 271.0 / 273.9 = 1.01 | 933.7
/ 275.3 = 0.29, init=same 205.2 / 352.3 = 1.72 | 815.0 / 357.0 = 0.44.
The digits rows remain slower than on 2026-11-24 (init=same diag 0.66, full
0.83 with one thread), before the exact scatter of issue #15.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from contextlib import nullcontext

import _common  # noqa: F401  (puts the checkout on sys.path)
import numpy as np
from sklearn.datasets import load_digits, load_iris
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as SkGaussianMixture
from sklearn.model_selection import GridSearchCV
from threadpoolctl import threadpool_limits

import daskgmm
from daskgmm import _engine

TARGET = 2.0  # daskgmm / scikit-learn fit time on iris
CONFIGS = [("iris", 3, "full"), ("digits", 10, "diag"), ("digits", 10, "full")]
GRID = {"n_components": [2, 3, 4]}
# Lower bounds of fits from the same start must agree to this relative difference.
LB_RTOL = 1e-6


def load(name):
    return {"iris": load_iris, "digits": load_digits}[name]().data.astype(np.float64)


def same_start(X, k, covariance_type):
    """One scikit-learn k-means initialisation, as ``*_init`` parameters."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sk = SkGaussianMixture(k, covariance_type=covariance_type, max_iter=1, random_state=0).fit(X)
    return dict(weights_init=sk.weights_, means_init=sk.means_, precisions_init=sk.precisions_)


def best_ms(fit, repeat, max_seconds):
    """Best wall time of ``fit()`` over ``repeat`` runs after one warm-up (fewer,
    at least one, once the runs took ``max_seconds``), and its last result."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        result = fit()
        times = []
        while len(times) < repeat and (not times or sum(times) < max_seconds):
            tic = time.perf_counter()
            result = fit()
            times.append(time.perf_counter() - tic)
    return 1e3 * min(times), result


def blas_limit(threads):
    return threadpool_limits(limits=1) if threads == "1" else nullcontext()


def row(case, threads, sk_ms, ours_ms, detail, gated):
    ratio = ours_ms / sk_ms
    result = ("PASS" if ratio <= TARGET else "FAIL") if gated else "-"
    return [case, threads, f"{sk_ms:.1f}", f"{ours_ms:.1f}", f"{ratio:.2f}", result, detail]


def fits(args):
    rows = []
    for name, k, kind in CONFIGS:
        X = load(name)
        start = same_start(X, k, kind)
        for init in ("default", "same"):
            params = dict(covariance_type=kind, random_state=0, **(start if init == "same" else {}))
            for threads in ("1", "all"):
                with blas_limit(threads):
                    budget = (args.repeat, args.max_seconds)
                    sk_ms, sk = best_ms(lambda: SkGaussianMixture(k, **params).fit(X), *budget)
                    ours_ms, ours = best_ms(lambda: daskgmm.GaussianMixture(k, **params).fit(X), *budget)
                detail = f"n_iter {sk.n_iter_}/{ours.n_iter_}"
                if init == "same":
                    lb_diff = abs(ours.lower_bound_ - sk.lower_bound_) / abs(sk.lower_bound_)
                    same = ours.n_iter_ == sk.n_iter_ and lb_diff <= LB_RTOL
                    detail += f", LB rel diff {lb_diff:.1e} {'same' if same else 'DIFFERENT'}"
                rows.append(row(f"{name} {X.shape[0]}x{X.shape[1]} K={k} {kind} init={init}", threads,
                                sk_ms, ours_ms, detail, gated=name == "iris"))
                print(f"  done: {rows[-1][0]} threads={threads}", flush=True)
    return rows


def grid_search(args):
    X = load("iris")
    rows = []
    for threads in ("1", "all"):
        budget = (args.repeat, args.max_seconds)
        with blas_limit(threads):
            sk_ms, sk = best_ms(lambda: GridSearchCV(SkGaussianMixture(random_state=0), GRID, cv=3).fit(X), *budget)
            ours_ms, ours = best_ms(
                lambda: GridSearchCV(daskgmm.GaussianMixture(random_state=0), GRID, cv=3).fit(X), *budget
            )
        detail = f"best n_components {sk.best_params_['n_components']}/{ours.best_params_['n_components']}"
        rows.append(row("iris GridSearchCV n_components=[2,3,4] cv=3", threads, sk_ms, ours_ms, detail, gated=True))
        print(f"  done: {rows[-1][0]} threads={threads}", flush=True)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed fits per configuration; the best counts")
    parser.add_argument("--max-seconds", type=float, default=2.0,
                        help="stop repeating a fit once its timed runs took this long (keeps a loaded run short)")
    parser.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                        help="first wait up to this long for the 1-minute load average to fall below 0.7")
    args = parser.parse_args(argv)
    if args.wait_quiet:
        _common.wait_for_quiet(args.wait_quiet)
    _common.print_header("daskgmm vs scikit-learn on small NumPy data, fit time")
    if _engine.current_client() is not None:
        raise SystemExit("a Dask client is active: this benchmark times daskgmm without one")
    print("  no Dask client; daskgmm", daskgmm.__version__, flush=True)
    tic = time.perf_counter()
    rows = fits(args) + grid_search(args)
    print(f"\nFit wall time, best of {args.repeat} (or of {args.max_seconds:g} s of runs) after a warm-up, "
          "NumPy input, both in this process; threads = BLAS threads (threadpoolctl limit 1, or as loaded); "
          "detail: scikit-learn/daskgmm. "
          f"Target: daskgmm within {TARGET:g}x of scikit-learn on iris.")
    _common.print_table(
        ["case", "threads", "sklearn ms", "daskgmm ms", "ratio ours/sk", "iris target", "detail"], rows
    )
    gated = [r for r in rows if r[5] != "-"]
    ok = all(r[5] == "PASS" for r in gated) and not any("DIFFERENT" in r[6] for r in rows)
    print(f"{sum(r[5] == 'PASS' for r in gated)}/{len(gated)} iris rows within {TARGET:g}x; "
          f"{time.perf_counter() - tic:.0f} s; load average {_common.load_average():.2f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
