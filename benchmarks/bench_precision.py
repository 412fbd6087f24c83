"""Precision of the block scatter (issue #15 item 1): the statistics of the
current ``_blocks.block_statistics`` against those of an earlier commit, side
by side, in one run.

The earlier module is read with ``git show <baseline>:daskgmm/_blocks.py``
into a temporary file and imported from there (nothing copied into the
repository).  For each covariance type, float32 and float64, and two kinds of
data, it times ``block_statistics`` on one chunk (E-step included, 1 BLAS
thread, the model the data was drawn from), the two versions interleaved and
each the minimum of ``--repeat`` runs (the machine is shared: the minimum is
the figure least disturbed by other work; the ratio of the medians is
printed too; digits, ~1 ms a block, 10x the repeats); and it measures the largest
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
  quarter of the rows, the initial model of ``profile_blocks.py``);
* ``digits``: scikit-learn's digits (1797 x 64, one block), K=10, 'diag'
  and 'spherical', the model scikit-learn fits to it (20 iterations from
  ``random_state=0``): pixels constant within a component, whose variance
  is then reg_covar alone (``bench_small_data.py``'s slow row).

Measured 2026-12-03, second session (HEAD 36eb807: cancellation checked on
the block's running sums; 'full' components shifted inside the one matrix
product, ``_blocks._FullSums``; diag/spherical flagged pairs kept compact,
their columns read in place, components summed over their rows when that is
cheaper), new/old as min (median) against 38f416b, 1 BLAS thread, the VM
noisy (a row varies by 5-15% between runs; load 0.8-1.1):

* ``--data overlap --repeat 15``: float32 D=64 K=16 full 1.09 (1.11), diag
  1.10 (1.09), spherical 1.06 (1.12) (last session 1.25, 1.23, 1.33);
  float32 D=8 1.00-1.06 (1.03-1.13); float64 0.97-1.08 (0.90-1.05).  Left
  on the float32 D=64 rows: two (component, feature) pairs of that data
  really are at float32's limit (kappa 114 and 126 over the whole block),
  summed again from their columns (a strided read, ~50 us a 8192-row
  slice), and one 'full' component shifted.
* all rows, ``--repeat 9`` (HEAD 13e8fee): bench 0.99-1.06 (0.99-1.05);
  apart float32 1.21-1.84 (last session up to 2.62), float64 1.07-1.62;
  digits 1.90-2.56 (a 1,797-row block, ~0.5 ms, with constant pixels
  flagged in every component), where the old variances were off by up to 260% (apart
  float32) and 3300% (digits float32).  New errors: at most 5.0e-5 (float32,
  the pivot formula's own on overlap data; 4.7e-7 apart) and 4.4e-11
  (float64).  Run in one process with glibc's default allocator: fresh
  temporaries above 128 KiB are fresh page mappings, which on digits cost
  more than the arithmetic (before 13e8fee, 4.7x; daskgmm's workers tune the
  allocator, ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_``, which
  alone took that row to 2.4x).

Measured 2026-12-03 on a quiet machine (load 0.3 at the start), all rows,
``--repeat 7``, new (HEAD ff3f945, with ``_DiagonalSums``) / old (38f416b) as min
(median): float64 overlap and bench 0.88-1.20 (0.87-1.12) for every covariance
type; float32 D=8 overlap 1.01-1.06 (0.97-1.13), bench 1.05 (1.08); float32
D=64 K=16 overlap full 1.25 (1.23), diag 1.23 (1.22), spherical 1.33 (1.26),
bench full 1.13 (1.15), diag 1.03 (1.01): there float32's cancellation limit
(120) flags (component, feature) pairs of ordinary data, summed again about
their own pivots.  apart 0.96-2.62 (1.03-2.50) and digits 2.06-2.85
(2.26-2.72), where the old code's variances were off by up to 260% (apart
float32), 0.8% (apart float64) and 3300% (digits float32; 1.6e-8 of
variance + reg_covar in float64); the new errors are at most 2.9e-5
(float32) and 4.4e-11 (float64).

Measured 2026-12-03 (after the per-feature own pivots of 'diag' and
'spherical', ``_blocks._DiagonalSums``, and 2 MiB float64 slices), ``--repeat
7 --only diag spherical``, load 3.3-4.3 from other jobs on the 2 cores,
new/old as min (median), old = 38f416b (pivot sums only):
overlap f32 8x8 0.98-1.03 (0.92-1.03), 64x16 diag 1.22 (1.19), spherical 1.26
(1.14); overlap f64 0.84-1.03 (0.90-1.01); bench f32 diag 1.05 (1.02), f64 0.91
(0.92); apart 1.4-2.2 (1.5-2.4), f32 64x16 the worst; digits (``--data
digits``, second run) 2.3-4.9.  Against 26a4bc3 (the component-wise own
pivots, ``--baseline 26a4bc3 --data digits``): digits diag 0.51-0.67 (0.55-0.67),
spherical 1.46-1.53 (1.40-1.62); bench as above.  Variance errors: overlap and
bench as old; apart 3e-6..3e-5 (f32), 4e-15..6e-12 (f64); digits, relative to
variance + reg_covar, 2.3e-5 / 3.2e-5 (f32) and 4e-13 / 4.4e-11 (f64), where
26a4bc3 gave 1e-6 / 1e-15: an entry left on the block pivot keeps the
documented eps ** 0.7 bound (1e-5 f32, 1e-11 f64) instead of riding along
exactly with its component's other features.

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
DIGITS_CONFIGS = [(1797, 64, 10, "diag"), (1797, 64, 10, "spherical")]


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


def digits_case(kind):
    """scikit-learn's digits and the mixture scikit-learn fits to them, as a block Model."""
    from sklearn.datasets import load_digits
    from sklearn.mixture import GaussianMixture

    X = load_digits().data.astype(np.float64)
    fitted = GaussianMixture(10, covariance_type=kind, max_iter=20, random_state=0).fit(X)
    prec_chol = precisions_cholesky_from_covariances(fitted.covariances_, kind)
    return X, make_model(fitted.weights_, fitted.means_, prec_chol, kind)


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


def max_relative_error(module, X, resp, kind, want, floor=0.0):
    """Largest error of the variances relative to ``want + floor``."""
    empty = module.Model(kind, None, None, None, None)
    with np.errstate(all="ignore"):
        got = variances(module.block_statistics(X, empty, resp=resp.astype(X.dtype)))
        return float(np.max(np.abs(got - want) / (want + floor)))


def interleaved_best(functions, repeat):
    """Minimum and median time of each function, the functions run in turn
    ``repeat`` times."""
    for fn in functions:
        fn()
    times = [[] for _ in functions]
    for _ in range(repeat):
        for i, fn in enumerate(functions):
            tic = time.perf_counter()
            fn()
            times[i].append(time.perf_counter() - tic)
    return [min(t) for t in times], [float(np.median(t)) for t in times]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default=BASELINE, help="commit of the earlier _blocks.py")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--only", nargs="*", default=None, help="covariance types to run")
    kinds = ["overlap", "apart", "bench", "digits"]
    parser.add_argument("--data", nargs="*", default=kinds, choices=kinds, help="kinds of data to run")
    args = parser.parse_args(argv)
    _common.print_header(f"block statistics: {args.baseline} vs working tree, one chunk, 1 BLAS thread")
    old = load_baseline(args.baseline)
    rows = []
    for data in args.data:
        for dtype in ("float32", "float64"):
            spread = 3.0 if data == "overlap" else (1e3 if dtype == "float32" else 1e6)
            configs = {"bench": BENCH_CONFIGS, "digits": DIGITS_CONFIGS}.get(data, CONFIGS)
            for n, d, k, kind in configs:
                if args.only and kind not in args.only:
                    continue
                if data == "digits":
                    X, model = digits_case(kind)
                    X = X.astype(dtype)
                elif data == "bench":  # a quarter of the rows, as a 4-chunk pass
                    X = bench_vs_sklearn.make_data(n, d, k).astype(dtype)
                    model = profile_blocks.chunk_model(X, k, kind)[0]
                    X = X[: n // 4]
                else:
                    X64, model = make_case(n, d, k, kind, spread)
                    X = X64.astype(dtype)
                resp = np.exp(_blocks.estimate_log_resp(X.astype(np.float64), model)[1])
                want = reference_variances(X, resp, kind)
                # digits: relative to the covariance the M-step makes (reg_covar 1e-6 added): a pixel
                # constant within a component has a variance of ~1e-30 (other rows' tiny weights) or 0.
                floor = 1e-6 if data == "digits" else 0.0
                errors = [max_relative_error(module, X, resp, kind, want, floor) for module in (old, _blocks)]
                with threadpool_limits(1), np.errstate(all="ignore"):
                    repeat = args.repeat * (10 if data == "digits" else 1)  # ~1 ms blocks
                    times, medians = interleaved_best(
                        [lambda m=m: m.block_statistics(X, model) for m in (old, _blocks)], repeat
                    )
                row = [data, dtype, f"{len(X):,}x{d} K={k} {kind}", f"{times[0] * 1e3:.2f}", f"{times[1] * 1e3:.2f}",
                       f"{times[1] / times[0]:.2f}", f"{medians[1] / medians[0]:.2f}", f"{errors[0]:.1e}",
                       f"{errors[1]:.1e}"]
                rows.append(row)
                print("  ", *row, flush=True)
    _common.print_table(
        ["data", "dtype", "chunk", "old ms", "new ms", "new/old", "median new/old", "old var err", "new var err"], rows
    )


if __name__ == "__main__":
    main()
