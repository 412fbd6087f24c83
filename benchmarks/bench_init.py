"""Passes spent before EM, and the fit they lead to, per k-means start rule.

For each configuration (the rows of ``bench_vs_sklearn``'s generator, and
anisotropic mixtures: elongated clusters at random rotations and unequal
sizes, the data on which scikit-learn #34842 and #34845 report k-means
starts failing) and each seed, fits ``GaussianMixture(init_params='kmeans')``
with

* ``old``: k-means|| with 5 rounds of 2K candidates, then Lloyd passes over
  all rows until they converge (at most 100), the rule before issue #24;
* ``new``: the default (``daskgmm._init.N_ROUNDS`` rounds of
  ``OVERSAMPLING`` x K, at most ``MAX_LLOYD`` Lloyd passes over all rows);

and prints side by side the passes over the data before EM (``n_passes_``
less the EM iterations, read from a ``max_iter=0`` fit), the EM iterations
and the final mean log-likelihood per sample over all rows (``score``),
with scikit-learn's ``GaussianMixture`` (its own k-means start, n_init=1,
same tol / max_iter) fitted on a subsample of at most 200,000 rows and
scored on all of them.  The last lines give, per rule, the mean over seeds
of the difference to ``old``.

The data are generated in-process and chunked into ``--chunks`` row chunks
(dask's threaded scheduler).  Run::

    python benchmarks/bench_init.py                 # N=200,000, 3 seeds
    python benchmarks/bench_init.py --n 2000000     # the large rows
    python benchmarks/bench_init.py --quick         # 2 configurations, 2 seeds

The machine's load is printed: the figures here are passes and scores, not
times, but a loaded machine makes the run long.

Measured (2-core shared VM, load average 4-9, 2026-12-08), 8 chunks:

* passes before EM: old 9-85, new 6 in every fit;
* N=200,000, seeds 0-2, blobs (bench_vs_sklearn's generator; 8x8 full,
  16x20 diag, 32x16 full): new >= old in all 9 fits, mean +0.23 (old fell
  into worse optima in 5); scikit-learn's own start: mean -0.18 against new;
* N=200,000, aniso (seeds 0-2 with scikit-learn, 3-15 ``--no-sklearn``):
  4x4 all rules reach one optimum; the fits of 8x8 and 16x12 end in one of
  two to four optima, new - old +0.002 +- 0.057 (standard error; new
  better in 6 of 16, worse in 4) at 8x8, -0.099 +- 0.071 (better 5, worse
  8) at 16x12, -0.048 +- 0.046 over the 32;
* N=50,000 (4 chunks), aniso, seeds 0-7: new - old +0.05 (8x8), +0.20 (16x12);
* N=2,000,000, seeds 0-1: blobs 8x8 equal (old 9 passes), aniso 8x8
  +0.56 and 0 (old 21 and 85 passes).
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
import warnings
from unittest import mock

import _common
import numpy as np

import dask.array as da
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as SklearnGaussianMixture

from bench_vs_sklearn import make_data
from daskgmm import GaussianMixture, _init

RULES = {
    "old": dict(n_rounds=5, oversampling=2.0, max_lloyd=100, client_tries=1),
    "new": dict(
        n_rounds=_init.N_ROUNDS, oversampling=_init.OVERSAMPLING, max_lloyd=_init.MAX_LLOYD,
        client_tries=_init.CLIENT_TRIES,
    ),
}
CONFIGS = [  # (generator, D, K, covariance_type)
    ("blobs", 8, 8, "full"),
    ("blobs", 16, 20, "diag"),
    ("blobs", 32, 16, "full"),
    ("aniso", 4, 4, "full"),
    ("aniso", 8, 8, "full"),
    ("aniso", 16, 12, "full"),
]


def make_anisotropic(n, d, k, seed=0, elongation=12.0):
    """``k`` elongated Gaussian clusters: per cluster one axis ``elongation``
    times the others, a random rotation, sizes in proportion to 1, 2, ..., k
    shuffled, centres 3 (the short axis) to 6 apart on average: clusters that
    k-means cuts across."""
    rng = np.random.default_rng(seed)
    sizes = rng.permutation(np.arange(1, k + 1)).astype(float)
    labels = rng.choice(k, size=n, p=sizes / sizes.sum())
    means = rng.normal(scale=4.0, size=(k, d))
    X = np.empty((n, d))
    for j in range(k):
        rows = labels == j
        scales = np.ones(d)
        scales[0] = elongation
        rotation, _ = np.linalg.qr(rng.normal(size=(d, d)))
        a = rotation * scales  # columns scaled, then rotated
        X[rows] = rng.normal(size=(rows.sum(), d)) @ a.T + means[j]
    return X[rng.permutation(n)]


GENERATORS = {"blobs": make_data, "aniso": make_anisotropic}
KMEANS = _init.kmeans_statistics


def fit_ours(dX, k, kind, seed, rule, **em):
    with mock.patch.object(_init, "kmeans_statistics", functools.partial(KMEANS, **RULES[rule])):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            start = GaussianMixture(k, covariance_type=kind, random_state=seed, max_iter=0).fit(dX)
            model = GaussianMixture(k, covariance_type=kind, random_state=seed, **em).fit(dX)
    assert model.n_passes_ - model.n_iter_ == start.n_passes_
    return start.n_passes_, model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=200_000, help="rows (default 200,000)")
    parser.add_argument("--seeds", type=int, default=3, help="random_state 0 .. seeds-1 (default 3)")
    parser.add_argument("--chunks", type=int, default=8, help="row chunks (default 8)")
    parser.add_argument("--first-seed", type=int, default=0, help="first random_state (default 0)")
    parser.add_argument("--configs", default=None, help="comma-separated DATA:D:K among the rows (default all)")
    parser.add_argument("--no-sklearn", action="store_true", help="leave scikit-learn's fits out")
    parser.add_argument("--quick", action="store_true", help="two configurations, two seeds")
    parser.add_argument("--tol", type=float, default=1e-3)
    parser.add_argument("--max-iter", type=int, default=100)
    args = parser.parse_args(argv)
    configs = [CONFIGS[0], CONFIGS[3]] if args.quick else CONFIGS
    if args.configs:
        wanted = set(args.configs.split(","))
        configs = [c for c in configs if f"{c[0]}:{c[1]}:{c[2]}" in wanted]
    seeds = range(args.first_seed, args.first_seed + (2 if args.quick else args.seeds))
    _common.print_header(f"k-means start rules, N={args.n:,}, {args.chunks} chunks, seeds {list(seeds)}")
    print("rules:", {name: rule for name, rule in RULES.items()})
    em = dict(tol=args.tol, max_iter=args.max_iter)
    rows, deltas = [], {"new": [], "sklearn": []}
    began = time.perf_counter()
    for gen, d, k, kind in configs:
        X = GENERATORS[gen](args.n, d, k, seed=100 + d + k)
        dX = da.from_array(X, chunks=(-(-args.n // args.chunks), -1)).persist()
        sub = X[np.random.default_rng(0).choice(args.n, min(args.n, 200_000), replace=False)]
        for seed in seeds:
            row = [gen, args.n, d, k, kind, seed]
            scores = {}
            for rule in RULES:
                passes, model = fit_ours(dX, k, kind, seed, rule, **em)
                scores[rule] = float(model.score(dX))
                row += [passes, model.n_iter_, f"{scores[rule]:.5f}"]
            if args.no_sklearn:
                scores["sklearn"] = np.nan
                row += ["-", "-"]
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    ref = SklearnGaussianMixture(k, covariance_type=kind, random_state=seed, **em).fit(sub)
                scores["sklearn"] = float(ref.score(X))
                row += [ref.n_iter_, f"{scores['sklearn']:.5f}"]
            for name in deltas:
                deltas[name].append(scores[name] - scores["old"])
            rows.append(row)
            print("  ".join(map(str, row)), flush=True)
    print()
    _common.print_table(
        ["data", "N", "D", "K", "cov", "seed", "old passes", "old EM it", "old loglik", "new passes", "new EM it",
         "new loglik", "sklearn it", "sklearn loglik"],
        rows,
    )
    for name, values in deltas.items():
        if np.isnan(values).any():
            continue
        print(f"{name} - old, mean log-likelihood per sample: mean {statistics.mean(values):+.5f}, "
              f"min {min(values):+.5f}, max {max(values):+.5f} over {len(values)} fits")
    print(f"wall {time.perf_counter() - began:.0f} s, load average {_common.load_average():.2f}")


if __name__ == "__main__":
    main()
