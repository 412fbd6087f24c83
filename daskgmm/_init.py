"""Initialisation over the whole distributed data set.

* ``kmeans``: k-means|| seeding (Bahmani et al. 2012): a few oversampling
  rounds over the data, weighted k-means++ on the small candidate set on the
  client, then Lloyd iterations as map + tree-reduce passes.
* ``k-means++``: exact k-means++ over all rows, one pass per centre
  (an exponential race picks a row with probability proportional to D^2).
* ``random``: uniform random responsibilities per row.
* ``random_from_data``: K distinct rows drawn uniformly from all rows.

Every random draw that concerns a row is keyed by its *global row index*
(a counter-based Philox stream), never by chunk, so a fixed ``random_state``
gives the same start for any chunking, worker count or fan-in.

Each function takes a list of :class:`Spec` (one per restart or candidate
model) and serves all of them in the same passes over the data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import _blocks
from ._blocks import Model, Stats
from ._covariance import covariances_from_stats, precisions_cholesky_from_covariances
from ._engine import DEFAULT_SPLIT_EVERY, Run, tree_reduce

INIT_PARAMS = ("kmeans", "k-means++", "random", "random_from_data")


@dataclass
class Spec:
    """What to initialise: one EM run."""

    n_components: int
    covariance_type: str
    seed: int  # 128-bit key for the row-keyed streams and the client RNG


class PassCounter:
    """Counts passes over the data (for benchmarks and tests)."""

    def __init__(self):
        self.passes = 0


def keyed_uniform(seed, stream, row_offset, n_rows, width):
    """Uniform [0, 1) numbers, (n_rows, width), keyed by global row index.

    Row ``i`` of the whole data set always gets the same numbers for a given
    ``(seed, stream)``, however the rows are chunked.
    """
    per_row = math.ceil(max(width, 1) / 4)
    key = (int(seed) * 1_000_003 + int(stream)) % (1 << 128)
    bitgen = np.random.Philox(key=key)
    bitgen.advance(int(row_offset) * per_row)
    raw = bitgen.random_raw(n_rows * per_row * 4).reshape(n_rows, per_row * 4)[:, :width]
    return (raw >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def _sq_dist(xp, X, centers):
    """Squared Euclidean distances (n, m), computed about the block's pivot."""
    pivot = xp.mean(X, axis=0) if X.shape[0] else xp.zeros((X.shape[1],), dtype=X.dtype)
    xc = X - pivot
    cc = centers - pivot
    d2 = (
        xp.sum(xc * xc, axis=1)[:, None]
        - 2.0 * xp.matmul(xc, xp.permute_dims(cc, (1, 0)))
        + xp.sum(cc * cc, axis=1)[None, :]
    )
    return xp.where(d2 > 0, d2, xp.zeros_like(d2))


def _stats_from_rows(rows, covariance_type):
    """Statistics of one-hot responsibilities on the given K rows (sklearn's
    'random_from_data' / 'k-means++' start: each component owns one row)."""
    rows = np.asarray(rows, dtype=np.float64)
    k, d = rows.shape
    scatter = {
        "full": np.zeros((k, d, d)),
        "tied": np.zeros((d, d)),
        "diag": np.zeros((k, d)),
        "spherical": np.zeros((k, d)),
    }[covariance_type]
    return Stats(covariance_type, float(k), 0.0, np.ones(k), rows, scatter)


def run_from_stats(stats, spec, reg_covar, dtype):
    weights, means, covariances = covariances_from_stats(stats, reg_covar)
    return Run(
        spec.covariance_type,
        weights,
        means,
        covariances,
        precisions_cholesky_from_covariances(covariances, spec.covariance_type),
    )


def _numpy_stats(stats):
    return Stats(stats.covariance_type, *(np.asarray(_blocks.to_numpy(v)) for v in stats[1:]))


# --------------------------------------------------------------------------
# random
# --------------------------------------------------------------------------


def _random_chunk(block, payload, row_offset):
    specs = payload
    out = []
    xp = _blocks.get_namespace(block)
    for spec in specs:
        u = keyed_uniform(spec.seed, 0, row_offset, block.shape[0], spec.n_components)
        resp = u / u.sum(axis=1, keepdims=True)
        out.append(
            _blocks.block_statistics(
                block, Model(spec.covariance_type, None, None, None, None),
                resp=xp.asarray(resp, dtype=block.dtype),
            )
        )
    return out


def _merge_columns(partials):
    return [_blocks.merge_many(column) for column in zip(*partials)]


def init_random(X, specs, reg_covar, split_every=DEFAULT_SPLIT_EVERY, counter=None):
    stats = tree_reduce(X, _random_chunk, _merge_columns, tuple(specs), split_every=split_every, name="daskgmm-init-random")
    _count(counter)
    return [run_from_stats(_numpy_stats(s), spec, reg_covar, X.dtype) for s, spec in zip(stats, specs)]


# --------------------------------------------------------------------------
# random_from_data
# --------------------------------------------------------------------------


def _take_rows(X, indices):
    """Rows of X at global ``indices`` (in that order), as NumPy."""
    indices = np.asarray(indices)
    order = np.argsort(indices)
    rows = np.asarray(_blocks.to_numpy(X[indices[order]].compute()))
    out = np.empty_like(rows)
    out[order] = rows
    return out


def init_random_from_data(X, specs, reg_covar, counter=None):
    n = X.shape[0]
    runs = []
    for spec in specs:
        rng = np.random.default_rng(spec.seed)
        indices = rng.choice(n, size=spec.n_components, replace=False)
        rows = _take_rows(X, indices)
        runs.append(run_from_stats(_stats_from_rows(rows, spec.covariance_type), spec, reg_covar, X.dtype))
    return runs


# --------------------------------------------------------------------------
# k-means++ over the whole data: one exponential race per centre
# --------------------------------------------------------------------------


def _race_chunk(block, payload, row_offset):
    stream, jobs = payload  # jobs: list of (seed, centers or None)
    xp = _blocks.get_namespace(block)
    out = []
    for seed, centers in jobs:
        n = block.shape[0]
        if n == 0:
            out.append((np.inf, None))
            continue
        u = keyed_uniform(seed, stream, row_offset, n, 1)[:, 0]
        if centers is None:
            weight = np.ones(n)
        else:
            d2 = _sq_dist(xp, block, xp.asarray(centers, dtype=block.dtype))
            weight = np.asarray(_blocks.to_numpy(xp.min(d2, axis=1)), dtype=np.float64)
            _blocks.check_finite(np, weight.sum(), block, row_offset)
        with np.errstate(divide="ignore"):
            keys = np.where(weight > 0, -np.log1p(-u) / weight, np.inf)
        best = int(np.argmin(keys))
        out.append((float(keys[best]), np.asarray(_blocks.to_numpy(block[best, :]), dtype=np.float64)))
    return out


def _race_combine(partials):
    return [min(column, key=lambda kv: kv[0]) for column in zip(*partials)]


def init_kmeans_plusplus(X, specs, reg_covar, split_every=DEFAULT_SPLIT_EVERY, counter=None):
    centers = [None] * len(specs)
    for j in range(max(s.n_components for s in specs)):
        todo = [i for i, s in enumerate(specs) if j < s.n_components]
        jobs = tuple((specs[i].seed, centers[i]) for i in todo)
        winners = tree_reduce(X, _race_chunk, _race_combine, (1000 + j, jobs), split_every=split_every, name="daskgmm-init-kmpp")
        _count(counter)
        for i, (key, row) in zip(todo, winners):
            if row is None or not np.isfinite(key):
                raise ValueError(
                    f"k-means++ found fewer than {specs[i].n_components} distinct points in X; "
                    "decrease n_components."
                )
            centers[i] = row[None, :] if centers[i] is None else np.vstack([centers[i], row])
    return [
        run_from_stats(_stats_from_rows(c, spec.covariance_type), spec, reg_covar, X.dtype)
        for c, spec in zip(centers, specs)
    ]


# --------------------------------------------------------------------------
# kmeans: k-means|| seeding + distributed Lloyd
# --------------------------------------------------------------------------


def _oversample_chunk(block, payload, row_offset):
    stream, jobs = payload  # jobs: list of (seed, candidates, cap)
    xp = _blocks.get_namespace(block)
    out = []
    for seed, candidates, cap in jobs:
        n = block.shape[0]
        if n == 0:
            out.append((0.0, np.empty(0), np.empty((0, block.shape[1]))))
            continue
        d2 = _sq_dist(xp, block, xp.asarray(candidates, dtype=block.dtype))
        cost = np.asarray(_blocks.to_numpy(xp.min(d2, axis=1)), dtype=np.float64)
        _blocks.check_finite(np, cost.sum(), block, row_offset)
        u = keyed_uniform(seed, stream, row_offset, n, 1)[:, 0]
        with np.errstate(divide="ignore"):
            keys = np.where(cost > 0, u / cost, np.inf)
        take = np.argsort(keys, kind="stable")[:cap]
        rows = np.asarray(_blocks.to_numpy(xp.take(block, xp.asarray(take), axis=0)), dtype=np.float64)
        out.append((float(cost.sum()), keys[take], rows))
    return out


def _oversample_combine(partials):
    merged = []
    for column in zip(*partials):
        cost = sum(c[0] for c in column)
        keys = np.concatenate([c[1] for c in column])
        rows = np.concatenate([c[2] for c in column])
        cap = max(len(c[1]) for c in column)
        order = np.argsort(keys, kind="stable")[: max(cap, 1)]
        merged.append((cost, keys[order], rows[order]))
    return merged


def _nearest_count_chunk(block, payload, row_offset):
    xp = _blocks.get_namespace(block)
    out = []
    for candidates in payload:
        d2 = _sq_dist(xp, block, xp.asarray(candidates, dtype=block.dtype))
        labels = np.asarray(_blocks.to_numpy(xp.argmin(d2, axis=1)))
        out.append(np.bincount(labels, minlength=candidates.shape[0]).astype(np.float64))
    return out


def _sum_columns(partials):
    return [sum(column) for column in zip(*partials)]


def _weighted_kmeans_plusplus(points, weights, k, rng):
    """k-means++ on a small weighted set (client side)."""
    m = points.shape[0]
    first = rng.choice(m, p=weights / weights.sum())
    centers = [points[first]]
    d2 = np.sum((points - points[first]) ** 2, axis=1)
    for _ in range(1, k):
        p = weights * d2
        total = p.sum()
        idx = rng.choice(m, p=p / total) if total > 0 else rng.choice(m)
        centers.append(points[idx])
        d2 = np.minimum(d2, np.sum((points - points[idx]) ** 2, axis=1))
    return np.array(centers)


def _weighted_lloyd(points, weights, centers, n_iter=10):
    for _ in range(n_iter):
        d2 = ((points[:, None, :] - centers[None, :, :]) ** 2).sum(-1)
        labels = d2.argmin(1)
        for j in range(centers.shape[0]):
            w = weights[labels == j]
            if w.sum() > 0:
                centers[j] = (points[labels == j] * w[:, None]).sum(0) / w.sum()
    return centers


def _assign_chunk(block, payload, row_offset):
    xp = _blocks.get_namespace(block)
    out = []
    for covariance_type, centers in payload:
        d2 = _sq_dist(xp, block, xp.asarray(centers, dtype=block.dtype))
        labels = xp.argmin(d2, axis=1)
        k = centers.shape[0]
        onehot = xp.astype(labels[:, None] == xp.arange(k)[None, :], block.dtype)
        out.append(
            _blocks.block_statistics(block, Model(covariance_type, None, None, None, None), resp=onehot)
        )
    return out


def init_kmeans(
    X,
    specs,
    reg_covar,
    split_every=DEFAULT_SPLIT_EVERY,
    counter=None,
    n_rounds=5,
    oversampling=2.0,
    max_lloyd=30,
    lloyd_tol=1e-4,
):
    """k-means|| seeding then Lloyd passes; GMM start from hard assignments.

    The last Lloyd pass's assignment statistics are the GMM's starting
    statistics, so no extra pass is spent on them.
    """
    n = X.shape[0]
    ells = [max(1, int(math.ceil(oversampling * s.n_components))) for s in specs]
    first = [int(np.random.default_rng([s.seed, 1]).integers(n)) for s in specs]
    first_rows = _take_rows(X, first)
    candidates = [first_rows[i][None, :] for i in range(len(specs))]
    # Oversampling rounds: each keeps the rows whose key u / d^2 < l / phi.
    for r in range(n_rounds):
        jobs = tuple((s.seed, candidates[i], 4 * ells[i] + 16) for i, s in enumerate(specs))
        results = tree_reduce(X, _oversample_chunk, _oversample_combine, (2000 + r, jobs), split_every=split_every, name="daskgmm-init-kmeans||")
        _count(counter)
        for i, (cost, keys, rows) in enumerate(results):
            if cost <= 0:
                continue
            chosen = rows[keys < ells[i] / cost]
            if chosen.size:
                candidates[i] = np.vstack([candidates[i], chosen])
    weights = tree_reduce(X, _nearest_count_chunk, _sum_columns, tuple(candidates), split_every=split_every, name="daskgmm-init-weights")
    _count(counter)
    centers = []
    for i, spec in enumerate(specs):
        cand, w = candidates[i], weights[i]
        keep = w > 0
        cand, w = cand[keep], w[keep]
        if cand.shape[0] < spec.n_components:
            raise ValueError(
                f"X has fewer than n_components={spec.n_components} distinct points "
                f"(k-means found {cand.shape[0]}); decrease n_components."
            )
        rng = np.random.default_rng([spec.seed, 2])
        c = _weighted_kmeans_plusplus(cand, w, spec.n_components, rng)
        centers.append(_weighted_lloyd(cand, w, c))
    # Tolerance like scikit-learn's: relative to the mean feature variance.
    tols = []
    for cand, w in zip(candidates, weights):
        mean = np.average(cand, axis=0, weights=np.maximum(w, 0) + 1e-300)
        var = np.average((cand - mean) ** 2, axis=0, weights=np.maximum(w, 0) + 1e-300)
        tols.append(lloyd_tol * float(np.mean(var)))
    done = [False] * len(specs)
    final_stats = [None] * len(specs)
    for _ in range(max_lloyd):
        todo = [i for i in range(len(specs)) if not done[i]]
        if not todo:
            break
        payload = tuple((specs[i].covariance_type, centers[i]) for i in todo)
        stats = tree_reduce(X, _assign_chunk, _merge_columns, payload, split_every=split_every, name="daskgmm-init-lloyd")
        _count(counter)
        for i, st in zip(todo, stats):
            st = _numpy_stats(st)
            final_stats[i] = st
            new = np.where((st.nk > 0)[:, None], st.means, centers[i])
            shift = float(np.sum((new - centers[i]) ** 2))
            centers[i] = new
            if shift <= tols[i]:
                done[i] = True
    return [run_from_stats(st, spec, reg_covar, X.dtype) for st, spec in zip(final_stats, specs)], centers


def _count(counter):
    if counter is not None:
        counter.passes += 1


def initialize(X, init_params, specs, reg_covar, split_every=DEFAULT_SPLIT_EVERY, counter=None):
    """Initial :class:`Run` per spec with ``init_params``."""
    if init_params == "kmeans":
        runs, _ = init_kmeans(X, specs, reg_covar, split_every=split_every, counter=counter)
        return runs
    if init_params == "k-means++":
        return init_kmeans_plusplus(X, specs, reg_covar, split_every=split_every, counter=counter)
    if init_params == "random":
        return init_random(X, specs, reg_covar, split_every=split_every, counter=counter)
    if init_params == "random_from_data":
        return init_random_from_data(X, specs, reg_covar, counter=counter)
    raise ValueError(
        f"Invalid value for 'init_params': {init_params!r}. Use one of {', '.join(map(repr, INIT_PARAMS))}."
    )
