"""Initialisation over the whole distributed data set.

* ``kmeans``: k-means|| seeding (Bahmani et al. 2012) then Lloyd passes; the
  GMM starts from the statistics of the hard assignment, as scikit-learn's
  ``GaussianMixture`` starts from ``KMeans(...).labels_``.
* ``k-means++``: exact k-means++ over all rows, one pass per centre (an
  exponential race picks a row with probability proportional to D^2).
* ``random``: uniform random responsibilities per row.
* ``random_from_data``: K distinct rows drawn uniformly from all rows.

Every random draw that concerns a row is keyed by its *global row index*
(a counter-based Philox stream), never by chunk, and every choice among rows
is ordered by that index, so a fixed ``random_state`` gives the same start
for any chunking, worker count or fan-in (to floating-point rounding).

Each function takes a list of :class:`Spec` (one per restart or candidate
model, of any number of components and covariance type) and serves all of
them in the same passes over the data, evaluating them together in each
chunk task.  A spec's start depends only on its own (seed, pool, K,
covariance type), never on the other specs it is initialised with, so
:func:`daskgmm.select_n_components` starts each candidate exactly as a
separate ``GaussianMixture`` fit would.  What does not depend on the
covariance type (k-means centres, k-means++ draws, random responsibilities)
is computed once for the specs that share it.

k-means|| in detail
-------------------
Per candidate set (one per ``(pool, K)``; ell = ``oversampling`` x K):

1. A first centre drawn uniformly from all rows.
2. ``n_rounds`` oversampling rounds, one pass each.  Every row gets the key
   ``u / d^2`` (``u`` row-keyed uniform, ``d`` its distance to the
   candidates so far); a row is kept when ``key < ell / phi`` (``phi`` the
   pass's total cost), that is with probability ``min(1, ell d^2 / phi)``,
   independently: the paper's sampling step.  Each chunk returns only its
   ``cap = 4 ell + 16`` smallest keys and the reduction keeps the global
   ``cap`` smallest; the expected number kept is at most ell, so ``cap`` is
   only reached with negligible probability (then the ``cap`` rows with the
   smallest keys are kept and a debug message is logged).  Rounds go on past
   ``n_rounds`` while fewer than K distinct candidates exist and some row is
   not yet a candidate (K close to N, heavy duplication); if every row is a
   candidate and there are still fewer than K, X has fewer than K distinct
   rows and a ValueError says so.
3. One pass weights each candidate by the number of rows nearest to it (and
   gives the data's variance, for the Lloyd tolerance).
4. On the client, per seed: greedy weighted k-means++ then weighted Lloyd
   on the candidates.  The ``n_init`` restarts of a fit share one candidate
   set (their ``pool``) and differ here.
5. Lloyd passes: each gives, per centre set, the counts and means of the
   clusters and the rows farthest from their centres; empty clusters are
   moved to those rows (as scikit-learn's KMeans does).  A set stops when the
   squared centre shift is at most ``lloyd_tol`` x the mean feature variance
   (scikit-learn's rule) or after ``max_lloyd`` passes.
6. One last pass: statistics of the assignment to the final centres, for
   each covariance type asked for.

With ``skip_nonfinite=True`` (the labelled-data path, where masks leave NaN
rows) rows holding NaN or infinity take no part: they are never drawn, cost
nothing and own no responsibility.
"""

from __future__ import annotations

import functools
import logging
import math
import warnings
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy.spatial.distance import cdist
from sklearn.exceptions import ConvergenceWarning

from . import _blocks
from ._blocks import Model, Stats
from ._covariance import covariances_from_stats, precisions_cholesky_from_covariances
from ._engine import DEFAULT_SPLIT_EVERY, Run, merge_stat_columns, stats_to_numpy, take_rows, tree_reduce

logger = logging.getLogger("daskgmm")

INIT_PARAMS = ("kmeans", "k-means++", "random", "random_from_data")


@dataclass
class Spec:
    """What to initialise: one EM run.

    ``seed`` is a 128-bit key for the row-keyed streams and the client RNG.
    For 'kmeans', specs with the same ``pool`` (their seed when None) and the
    same K share one k-means|| candidate set, and each draws its own
    k-means++ seeding from it: restarts then pay for the oversampling once.
    """

    n_components: int
    covariance_type: str
    seed: int
    pool: int | None = None
    # The mixture family whose parameters the run starts from
    # (daskgmm._families); None: maximum likelihood.
    family: object = None

    @property
    def pool_key(self):
        return self.seed if self.pool is None else self.pool


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


def _nearest_slices(xp, block, center_sets, onehot=True, pivot=None):
    """Nearest centre of every row of ``block`` in each of ``center_sets``,
    slice of rows by slice of rows (bounded temporaries).

    One matrix product for all sets, about the block's pivot (so the data's
    offset never enters a subtraction).  ``|x - c|^2 = |x|^2 + (|c|^2 - 2 x.c)``
    and the row term does not change which centre is nearest, so it is added
    once per set, after the minimum.  Rows are handled transposed: the
    minimum over a set's centres runs along the long row axis; sets of one
    size are reduced together.

    The assignment comes as one-hot columns: an entry is 1 where it equals
    its column's minimum, which needs no arg-min (4x the cost of the rest on
    8 sets of 8 centres).  A row equally near two centres (duplicate centres)
    would get two ones: slices where that happens are redone by ``argmin``,
    which takes the first, as scikit-learn does.

    Yields
    ------
    ``(start, stop, sets, centred_t)``, ``sets`` a list with per set
    ``(d2, onehot)``: (rows,) squared distance to the nearest centre (clipped
    at 0) and the (K, rows) one-hot assignment in the block's dtype (None
    when ``onehot`` is False); ``centred_t`` the slice's rows less ``pivot``
    (by default :func:`_blocks._pivot` of the block), transposed (D, rows);
    arrays of the block's namespace.
    """
    n, d = block.shape
    if pivot is None:
        pivot = _blocks._pivot(xp, block)
    centers = xp.asarray(np.concatenate([np.asarray(c, dtype=np.float64) for c in center_sets]), dtype=block.dtype)
    centers = centers - pivot
    scaled = -2.0 * centers
    centers_sq = xp.sum(centers * centers, axis=1)[:, None]
    sizes = [int(c.shape[0]) for c in center_sets]
    bounds = np.cumsum([0] + sizes)
    equal = len(set(sizes)) == 1
    for start, stop in _blocks._row_slices(n, sum(sizes), d, "diag"):
        rows = stop - start
        centred_t = _blocks._contiguous(xp, xp.permute_dims(block[start:stop, :] - pivot, (1, 0)))
        partial = xp.matmul(scaled, centred_t) + centers_sq  # (sum(sizes), rows)
        row_sq = xp.sum(centred_t * centred_t, axis=0)
        if equal:  # (S, K, rows): one reduction for all sets
            parts = [xp.reshape(partial, (len(sizes), sizes[0], rows))]
        else:
            parts = [partial[int(bounds[s]) : int(bounds[s + 1]), :][None, :, :] for s in range(len(sizes))]
        out = []
        for part in parts:
            best = xp.min(part, axis=1)
            if onehot:
                hits = xp.astype(part == best[:, None, :], block.dtype)
                if float(xp.sum(hits)) != part.shape[0] * rows:  # a tie: the first centre wins
                    k = part.shape[1]
                    label = xp.argmin(part, axis=1)
                    ks = xp.reshape(xp.arange(k, dtype=label.dtype, device=_blocks.array_device(label)), (1, k, 1))
                    hits = xp.astype(label[:, None, :] == ks, block.dtype)
            d2 = row_sq[None, :] + best
            # Clip rounding below 0; NaN (a NaN/inf row, or a pivot it
            # poisoned) stays NaN for the finiteness checks of the passes.
            d2 = xp.where(d2 < 0, xp.zeros_like(d2), d2)
            out.extend((d2[i, :], hits[i, :, :] if onehot else None) for i in range(part.shape[0]))
        yield start, stop, out, centred_t


def _nearest(xp, block, center_sets):
    """Per set, (n,) squared distance of every row to its nearest centre."""
    parts = [[] for _ in center_sets]
    for _, _, sets, _ in _nearest_slices(xp, block, center_sets, onehot=False):
        for s, (d2, _) in enumerate(sets):
            parts[s].append(d2)
    return [p[0] if len(p) == 1 else xp.concat(p) for p in parts]


class Means(NamedTuple):
    """Counts (K,) and means (K, D) of a hard assignment (Lloyd's statistics)."""

    nk: np.ndarray
    means: np.ndarray


def merge_means(parts):
    """Merge :class:`Means` of disjoint row sets (pairwise, centred)."""
    parts = list(parts)
    out = parts[0]
    for other in parts[1:]:
        nk = out.nk + other.nk
        share = np.divide(other.nk, nk, out=np.zeros_like(nk), where=nk > 0)
        out = Means(nk, out.means + share[:, None] * (other.means - out.means))
    return out


def _assignment_statistics(
    xp, block, zeroed, center_sets, requests, skip_nonfinite, keep=None, far=False, row_offset=0, sample_weight=None
):
    """Statistics of the hard assignment of the rows of ``block`` (``zeroed``:
    the same with skipped rows zeroed) to each centre set, per ``(set index,
    kind)`` in ``requests``, merged over the row slices.  ``kind`` is a
    covariance type (:class:`Stats`) or "means" (:class:`Means`, all that
    Lloyd needs: one GEMM against the slice it already has).

    With ``far``, also per set the K rows farthest from their nearest centre
    (kept rows only) as ``(d2, local index, label)`` NumPy arrays, ordered by
    (-d2, index): candidates for the centres of empty clusters.  With
    ``sample_weight`` every row counts with its weight (one of weight 0 not
    at all, nor as a candidate).
    """
    pivot = _blocks._pivot(xp, zeroed)
    weights = _row_weights(keep, sample_weight)
    kept = None if weights is None else _on_block(xp, block, weights)
    if sample_weight is not None:
        keep = weights > 0
    stat_requests = [i for i, (_, kind) in enumerate(requests) if kind != "means"]
    merged = [None] * len(requests)
    far_best = [None] * len(center_sets)
    for start, stop, sets, centred_t in _nearest_slices(xp, zeroed, center_sets, pivot=pivot):
        if stat_requests:
            resps = [sets[requests[i][0]][1] for i in stat_requests]
            if sample_weight is not None:
                resps = [r * kept[None, start:stop] for r in resps]
            kinds = [requests[i][1] for i in stat_requests]
            part = _fixed_resp_statistics(block[start:stop, :], resps, kinds, skip_nonfinite, row_offset + start)
            for i, p in zip(stat_requests, part):
                merged[i] = p if merged[i] is None else _blocks.merge_statistics(merged[i], p)
        for i, (s, kind) in enumerate(requests):
            if kind != "means":
                continue
            onehot = sets[s][1]
            if kept is not None:
                onehot = onehot * kept[None, start:stop]
            nk = _to_float64(xp.sum(onehot, axis=1))
            sums = _to_float64(xp.matmul(onehot, xp.permute_dims(centred_t, (1, 0))))
            part = Means(nk, sums / np.where(nk > 0, nk, 1.0)[:, None])
            merged[i] = part if merged[i] is None else merge_means([merged[i], part])
        if not far:
            continue
        for s, ((d2, onehot), centers) in enumerate(zip(sets, center_sets)):
            far_best[s] = _farthest_so_far(xp, far_best[s], d2, onehot, start, stop, int(centers.shape[0]), keep)
    offset = _to_float64(pivot)
    merged = [
        Means(m.nk, np.where((m.nk > 0)[:, None], m.means + offset, 0.0)) if kind == "means" else m
        for m, (_, kind) in zip(merged, requests)
    ]
    if not far:
        return merged
    empty = (np.empty(0), np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64))
    return merged, [empty if best is None else best for best in far_best]


def _farthest_so_far(xp, best, d2, onehot, start, stop, k, keep):
    """The ``k`` kept rows farthest from their nearest centre among those
    seen so far, ``(d2, global index, label)`` ordered by (-d2, index), given
    ``best`` from the slices before and this slice's ``d2`` and one-hot.

    Only rows at least as far as the k-th of ``best`` can enter, so after the
    first slices a slice costs one comparison (measured: one 125,000 x 8
    block, 8 sets of 8 centres, 45 -> ~35 ms per Lloyd pass)."""
    dist = _to_float64(d2)
    if keep is not None:
        dist = np.where(keep[start:stop], dist, -np.inf)
    if best is not None and best[0].size >= k:
        candidates = np.flatnonzero(dist >= best[0][-1])
    else:
        candidates = np.arange(dist.size)
    take = candidates[_smallest(-dist[candidates], min(k, candidates.size))]
    if take.size == 0:
        return best
    picked = xp.take(onehot, xp.asarray(take, device=_blocks.array_device(onehot)), axis=1)
    found = (dist[take], take + start, np.argmax(_to_float64(picked), axis=0))
    if best is not None:
        found = tuple(np.concatenate([a, b]) for a, b in zip(best, found))
    order = np.lexsort((found[1], -found[0]))[:k]
    return tuple(a[order] for a in found)


def _to_float64(array):
    return np.asarray(_blocks.to_numpy(array), dtype=np.float64)


def _take_block_rows(xp, block, local):
    """Rows ``local`` (NumPy indices) of the block, as float64 NumPy."""
    if local.size == 0:
        return np.empty((0, block.shape[1]))
    return _to_float64(xp.take(block, xp.asarray(local), axis=0))


def _smallest(keys, count):
    """Indices of the ``count`` smallest finite ``keys``, ordered by (key, index)."""
    finite = np.flatnonzero(np.isfinite(keys))
    if finite.size > count:
        finite = finite[np.argpartition(keys[finite], count - 1)[:count]]
    return finite[np.lexsort((finite, keys[finite]))]


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


def run_from_stats(stats, spec, reg_covar, dtype=None):
    """A :class:`Run` whose parameters are the M-step of ``stats`` (of the
    spec's family: the variational one starts from the posterior)."""
    if spec.family is not None:
        return spec.family.initial_run(stats, spec.covariance_type, reg_covar)
    weights, means, covariances = covariances_from_stats(stats, reg_covar)
    return Run(
        spec.covariance_type,
        weights,
        means,
        covariances,
        precisions_cholesky_from_covariances(covariances, spec.covariance_type),
    )


def _masked(xp, block, skip_nonfinite):
    """``block`` with skipped rows zeroed, and the kept rows as a NumPy mask
    (None when nothing is skipped)."""
    keep, zeroed = _blocks._mask_rows(xp, block, skip_nonfinite)
    return zeroed, (None if keep is None else np.asarray(_blocks.to_numpy(keep), dtype=bool))


def _row_weights(keep, sample_weight):
    """Per-row weights of a block as float64 NumPy: the sample weights (1
    without), 0 on skipped rows; None when every row counts once."""
    if sample_weight is None:
        return None if keep is None else keep.astype(np.float64)
    weights = _to_float64(sample_weight)
    return weights if keep is None else np.where(keep, weights, 0.0)


def _on_block(xp, block, weights):
    """``weights`` (NumPy) in the block's namespace, dtype and device."""
    return xp.asarray(weights, dtype=block.dtype, device=_blocks.array_device(block))


def _chunk_fn(fn, skip_nonfinite):
    return functools.partial(fn, skip_nonfinite=True) if skip_nonfinite else fn


def _fixed_resp_statistics(block, resps, kinds, skip_nonfinite, row_offset=0):
    """Statistics of fixed responsibilities ``resps[i]``, given
    component-major (K_i, n), under covariance type ``kinds[i]``; those of
    one type (but 'tied') in one call."""
    xp = _blocks.get_namespace(block)
    out = [None] * len(resps)
    for kind in dict.fromkeys(kinds):
        indices = [i for i, k in enumerate(kinds) if k == kind]
        empty = Model(kind, None, None, None, None)
        if kind == "tied" or len(indices) == 1:
            for i in indices:
                out[i] = _blocks.block_statistics(
                    block, empty, resp_t=resps[i], skip_nonfinite=skip_nonfinite, row_offset=row_offset
                )
            continue
        stacked = _blocks.block_statistics(
            block, empty, resp_t=xp.concat([resps[i] for i in indices], axis=0), skip_nonfinite=skip_nonfinite,
            row_offset=row_offset,
        )
        sizes = [int(resps[i].shape[0]) for i in indices]
        for i, part in zip(indices, _blocks.split_statistics(stacked, sizes)):
            out[i] = part
    return out


def _count(counter):
    if counter is not None:
        counter.passes += 1


def _group(specs, key):
    """Spec indices grouped by ``key(spec)``, in order of first appearance."""
    groups = {}
    for i, spec in enumerate(specs):
        groups.setdefault(key(spec), []).append(i)
    return list(groups.items())


def _take_rows(X, indices):
    """Rows of X at global ``indices`` (in that order, repeats allowed), as
    float64 NumPy, in one compute."""
    return take_rows(X, indices)


# --------------------------------------------------------------------------
# Uniform samples among the finite rows (skip_nonfinite)
# --------------------------------------------------------------------------


def _smallest_keys_chunk(block, payload, row_offset, skip_nonfinite=False, sample_weight=None):
    """Per job ``(seed, count)``: the ``count`` finite rows with the smallest
    row-keyed uniform numbers (a uniform sample without replacement); with
    ``sample_weight``, the smallest ``E / w`` (E exponential from the same
    numbers): a sample without replacement with probabilities in proportion
    to the weights (Efraimidis and Spirakis), rows of weight 0 never."""
    xp = _blocks.get_namespace(block)
    block, keep = _masked(xp, block, skip_nonfinite)
    weights = None if sample_weight is None else _row_weights(keep, sample_weight)
    out = []
    for seed, count in payload:
        u = keyed_uniform(seed, 3000, row_offset, block.shape[0], 1)[:, 0]
        if weights is not None:
            with np.errstate(divide="ignore"):
                u = np.where(weights > 0, -np.log1p(-u) / weights, np.inf)
        elif keep is not None:
            u = np.where(keep, u, np.inf)
        take = _smallest(u, count)
        out.append((count, u[take], take + row_offset, _take_block_rows(xp, block, take)))
    return out


def _merge_smallest(column, count):
    """Keys, global row indices and rows of the ``count`` smallest keys among
    partials whose items 1-3 are (keys, index, rows); ties go by row index,
    so the merge order (the chunking) cannot change the pick."""
    keys = np.concatenate([c[1] for c in column])
    index = np.concatenate([c[2] for c in column])
    rows = np.concatenate([c[3] for c in column])
    order = np.lexsort((index, keys))[:count]
    return keys[order], index[order], rows[order]


def _smallest_keys_combine(partials):
    merged = []
    for column in zip(*partials):
        count = column[0][0]
        merged.append((count, *_merge_smallest(column, count)))
    return merged


def _raise_drawn_nonfinite(indices, rows):
    """A row drawn for the start holds NaN/inf (distances to it would be NaN,
    which the passes would read as zero, and report "too few distinct
    points"): say what is wrong instead."""
    bad = int(np.asarray(indices)[~np.all(np.isfinite(rows), axis=1)][0])
    raise ValueError(f"Input X contains NaN or infinity (at least row {bad}). Remove or impute them first.")


def sample_finite_rows(X, jobs, split_every=DEFAULT_SPLIT_EVERY, counter=None, sample_weight=None):
    """Uniform samples without replacement among the finite rows of ``X``.

    One pass for all jobs; ``jobs`` is a sequence of ``(seed, count)``;
    returns one (count, D) NumPy array per job, drawn by row-keyed streams
    (independent of chunking).  Raises ValueError if fewer than ``count``
    rows are finite.
    """
    results = tree_reduce(
        X, _chunk_fn(_smallest_keys_chunk, True), _smallest_keys_combine, tuple(jobs),
        split_every=split_every, name="daskgmm-init-sample", weights=sample_weight,
    )
    _count(counter)
    out = []
    for (_, count), (_, keys, _, rows) in zip(jobs, results):
        if keys.shape[0] < count:
            raise ValueError(
                f"X has only {keys.shape[0]} sample(s) without NaN or infinity"
                + ("" if sample_weight is None else " and with a positive sample weight")
                + f", fewer than the {count} needed; decrease n_components or check the mask."
            )
        out.append(rows)
    return out


# --------------------------------------------------------------------------
# random
# --------------------------------------------------------------------------


def _random_chunk(block, payload, row_offset, skip_nonfinite=False, sample_weight=None):
    specs = payload
    xp = _blocks.get_namespace(block)
    draws = {}
    for spec in specs:
        key = (spec.seed, spec.n_components)
        if key not in draws:
            u = keyed_uniform(spec.seed, 0, row_offset, block.shape[0], spec.n_components)
            draws[key] = xp.asarray(np.ascontiguousarray((u / u.sum(axis=1, keepdims=True)).T), dtype=block.dtype)
    resps = [draws[(spec.seed, spec.n_components)] for spec in specs]
    if sample_weight is not None:
        w = _on_block(xp, block, _to_float64(sample_weight))
        resps = [r * w[None, :] for r in resps]
    return _fixed_resp_statistics(block, resps, [spec.covariance_type for spec in specs], skip_nonfinite, row_offset)


def init_random(
    X, specs, reg_covar, split_every=DEFAULT_SPLIT_EVERY, counter=None, skip_nonfinite=False, sample_weight=None
):
    """scikit-learn's 'random': responsibilities uniform on [0, 1), normalised
    per row, keyed by row index; one pass."""
    chunk_fn = _chunk_fn(_random_chunk, skip_nonfinite)
    stats = tree_reduce(
        X, chunk_fn, merge_stat_columns, tuple(specs), split_every=split_every, name="daskgmm-init-random",
        weights=sample_weight,
    )
    _count(counter)
    return [run_from_stats(stats_to_numpy(s), spec, reg_covar) for s, spec in zip(stats, specs)]


def _given_resp_chunk(block, payload, row_offset, sample_weight=None):
    resp, kind = payload
    xp = _blocks.get_namespace(block)
    rows = np.ascontiguousarray(resp[row_offset : row_offset + block.shape[0]].T)
    if sample_weight is not None:
        rows = rows * _to_float64(sample_weight)[None, :]
    return _fixed_resp_statistics(block, [xp.asarray(rows, dtype=block.dtype)], [kind], False, row_offset)


def init_from_resp(X, resp, spec, reg_covar, split_every=DEFAULT_SPLIT_EVERY, counter=None, sample_weight=None):
    """A :class:`Run` from given responsibilities ``resp`` (n_samples, K), a
    NumPy array travelling with the pass: one M-step on their statistics
    (scikit-learn's ``_initialize(X, resp)``)."""
    resp = np.asarray(resp, dtype=np.float64)
    if resp.shape != (X.shape[0], spec.n_components):
        raise ValueError(f"resp should have shape ({X.shape[0]}, {spec.n_components}), got {resp.shape}.")
    (stats,) = tree_reduce(
        X, _given_resp_chunk, merge_stat_columns, (resp, spec.covariance_type), split_every=split_every,
        name="daskgmm-init-resp", weights=sample_weight,
    )
    _count(counter)
    return run_from_stats(stats_to_numpy(stats), spec, reg_covar)


def _moments_chunk(block, payload, row_offset, skip_nonfinite=False, sample_weight=None):
    xp = _blocks.get_namespace(block)
    ones = xp.ones((1, block.shape[0]), dtype=block.dtype)
    if sample_weight is not None:
        ones = _on_block(xp, block, _to_float64(sample_weight))[None, :]
    return _fixed_resp_statistics(block, [ones], ["full"], skip_nonfinite, row_offset)


def data_moments(X, split_every=DEFAULT_SPLIT_EVERY, counter=None, skip_nonfinite=False, sample_weight=None):
    """Number of rows, mean (D,) and centred scatter ``sum (x - mean)(x -
    mean)^T`` (D, D) of the (finite, with ``skip_nonfinite``) rows, float64,
    from one pass: the data-dependent priors of the variational family."""
    (stats,) = tree_reduce(
        X, _chunk_fn(_moments_chunk, skip_nonfinite), merge_stat_columns, None, split_every=split_every,
        name="daskgmm-moments", weights=sample_weight,
    )
    _count(counter)
    stats = stats_to_numpy(stats)
    return float(stats.nk[0]), np.asarray(stats.means[0], dtype=np.float64), np.asarray(stats.scatter[0], dtype=np.float64)


# --------------------------------------------------------------------------
# random_from_data
# --------------------------------------------------------------------------


def init_random_from_data(
    X, specs, reg_covar, counter=None, skip_nonfinite=False, split_every=DEFAULT_SPLIT_EVERY, sample_weight=None
):
    """K distinct row indices drawn uniformly from all rows per spec; the rows
    of every spec fetched in one compute (not a pass: only their chunks are
    read).  With ``sample_weight``: drawn with probabilities in proportion to
    the weights, in one pass (:func:`sample_finite_rows`)."""
    if sample_weight is not None:
        jobs = [(spec.seed, spec.n_components) for spec in specs]
        all_rows = sample_finite_rows(X, jobs, split_every=split_every, counter=counter, sample_weight=sample_weight)
        return [
            run_from_stats(_stats_from_rows(r, spec.covariance_type), spec, reg_covar) for r, spec in zip(all_rows, specs)
        ]
    n = X.shape[0]
    draws = [np.random.default_rng(spec.seed).choice(n, size=spec.n_components, replace=False) for spec in specs]
    rows = _take_rows(X, np.concatenate(draws))
    all_rows = np.split(rows, np.cumsum([len(d) for d in draws])[:-1])
    if not all(np.all(np.isfinite(r)) for r in all_rows):
        if not skip_nonfinite:
            _raise_drawn_nonfinite(np.concatenate(draws), np.concatenate(all_rows))
        # A draw hit a skipped row: draw again among the finite rows only.
        jobs = [(spec.seed, spec.n_components) for spec in specs]
        all_rows = sample_finite_rows(X, jobs, split_every=split_every, counter=counter)
    return [
        run_from_stats(_stats_from_rows(r, spec.covariance_type), spec, reg_covar)
        for r, spec in zip(all_rows, specs)
    ]


# --------------------------------------------------------------------------
# k-means++ over the whole data: one exponential race per centre
# --------------------------------------------------------------------------


def _race_chunk(block, payload, row_offset, skip_nonfinite=False, sample_weight=None):
    """Per job ``(seed, centers or None)``: the row with the smallest key
    ``E / (w D^2)`` (E exponential, keyed by row; ``w`` the sample weight, 1
    without; ``D^2`` 1 without centres), as ``(key, index, row)``."""
    stream, jobs = payload
    xp = _blocks.get_namespace(block)
    block, keep = _masked(xp, block, skip_nonfinite)
    n = block.shape[0]
    with_centers = [c for _, c in jobs if c is not None]
    if n and with_centers:
        nearest = iter(_nearest(xp, block, with_centers))
    out = []
    for seed, centers in jobs:
        if n == 0:
            out.append((np.inf, -1, None))
            continue
        u = keyed_uniform(seed, stream, row_offset, n, 1)[:, 0]
        if centers is None:
            weight = np.ones(n)
        else:
            weight = _to_float64(next(nearest))
            _blocks.check_finite(np, weight.sum(), block, row_offset)
        if keep is not None:
            weight = np.where(keep, weight, 0.0)
        if sample_weight is not None:
            weight = weight * _to_float64(sample_weight)
        with np.errstate(divide="ignore"):
            keys = np.where(weight > 0, -np.log1p(-u) / weight, np.inf)
        best = int(np.argmin(keys))
        out.append((float(keys[best]), best + row_offset, _take_block_rows(xp, block, np.array([best]))[0]))
    return out


def _race_combine(partials):
    return [min(column, key=lambda entry: (entry[0], entry[1])) for column in zip(*partials)]


def init_kmeans_plusplus(
    X, specs, reg_covar, split_every=DEFAULT_SPLIT_EVERY, counter=None, skip_nonfinite=False, sample_weight=None
):
    """Exact k-means++ (non-greedy) over all rows: centre j is one pass, in
    which every row races with an exponential clock of rate D^2.  Specs that
    share a seed share the sequence of centres (a spec of K takes the first K)."""
    race_chunk = _chunk_fn(_race_chunk, skip_nonfinite)
    groups = _group(specs, lambda spec: spec.seed)
    sizes = [max(specs[i].n_components for i in members) for _, members in groups]
    centers = [None] * len(groups)
    few_distinct = set()
    for j in range(max(sizes)):
        todo = [g for g, size in enumerate(sizes) if j < size]
        jobs = tuple((groups[g][0], centers[g]) for g in todo)
        winners = tree_reduce(
            X, race_chunk, _race_combine, (1000 + j, jobs), split_every=split_every, name="daskgmm-init-kmpp",
            weights=sample_weight,
        )
        _count(counter)
        for g, (key, _, row) in zip(todo, winners):
            if row is None or not np.isfinite(key):
                # Every distinct point is a centre already: repeat the first
                # (its duplicate starts empty, as scikit-learn's k-means++ does).
                if g not in few_distinct:
                    few_distinct.add(g)
                    _warn_few_distinct(j, sizes[g])
                row = centers[g][0]
            centers[g] = row[None, :] if centers[g] is None else np.vstack([centers[g], row])
    runs = [None] * len(specs)
    for g, (_, members) in enumerate(groups):
        for i in members:
            rows = centers[g][: specs[i].n_components]
            runs[i] = run_from_stats(_stats_from_rows(rows, specs[i].covariance_type), specs[i], reg_covar)
    return runs


# --------------------------------------------------------------------------
# kmeans: k-means|| seeding + distributed Lloyd
# --------------------------------------------------------------------------


def _oversample_chunk(block, payload, row_offset, skip_nonfinite=False, sample_weight=None):
    """Per job ``(seed, candidates, cap)``: the chunk's cost (sum of D^2 to
    the candidates) and its ``cap`` rows with the smallest keys ``u / D^2``,
    as ``(cost, keys, global indices, rows, cap)``."""
    stream, jobs = payload
    xp = _blocks.get_namespace(block)
    block, keep = _masked(xp, block, skip_nonfinite)
    n = block.shape[0]
    if n:
        nearest = _nearest(xp, block, [c for _, c, _ in jobs])
    out = []
    for j, (seed, _, cap) in enumerate(jobs):
        if n == 0:
            out.append((0.0, np.empty(0), np.empty(0, dtype=np.int64), np.empty((0, block.shape[1])), cap))
            continue
        cost = _to_float64(nearest[j])
        _blocks.check_finite(np, cost.sum(), block, row_offset)
        if keep is not None:
            cost = np.where(keep, cost, 0.0)
        if sample_weight is not None:  # k-means|| on weighted rows: cost w D^2
            cost = cost * _to_float64(sample_weight)
        u = keyed_uniform(seed, stream, row_offset, n, 1)[:, 0]
        with np.errstate(divide="ignore"):
            keys = np.where(cost > 0, u / cost, np.inf)
        take = _smallest(keys, cap)
        out.append((float(cost.sum()), keys[take], take + row_offset, _take_block_rows(xp, block, take), cap))
    return out


def _oversample_combine(partials):
    merged = []
    for column in zip(*partials):
        cap = column[0][4]
        merged.append((sum(c[0] for c in column), *_merge_smallest(column, cap), cap))
    return merged


def _weights_chunk(block, payload, row_offset, skip_nonfinite=False, sample_weight=None):
    """Per candidate set: rows (their weights) nearest to each candidate; and
    the block's mean and per-feature scatter (for the Lloyd tolerance)."""
    xp = _blocks.get_namespace(block)
    zeroed, keep = _masked(xp, block, skip_nonfinite)
    n = block.shape[0]
    weights = _row_weights(keep, sample_weight)
    kept = None if weights is None else _on_block(xp, block, weights)
    counts = [np.zeros(c.shape[0]) for c in payload]
    for start, stop, sets, _ in _nearest_slices(xp, zeroed, payload):
        for s, (_, onehot) in enumerate(sets):
            if kept is not None:
                onehot = onehot * kept[None, start:stop]
            counts[s] += _to_float64(xp.sum(onehot, axis=1))
    ones = xp.ones((1, n), dtype=block.dtype, device=_blocks.array_device(block))
    if sample_weight is not None:
        ones = _on_block(xp, block, _to_float64(sample_weight))[None, :]
    spread = _blocks.block_statistics(
        block, Model("diag", None, None, None, None), resp_t=ones, skip_nonfinite=skip_nonfinite, row_offset=row_offset
    )
    return counts, spread


def _weights_combine(partials):
    counts = [sum(column) for column in zip(*(p[0] for p in partials))]
    return counts, _blocks.merge_many(p[1] for p in partials)


def _lloyd_chunk(block, payload, row_offset, skip_nonfinite=False, sample_weight=None):
    """Per centre set: statistics of the hard assignment (counts, means) and
    the rows farthest from their centres as ``(d^2, index, row, label)``,
    at most K of them (candidates for empty clusters)."""
    xp = _blocks.get_namespace(block)
    zeroed, keep = _masked(xp, block, skip_nonfinite)
    requests = [(s, "means") for s in range(len(payload))]
    stats, far = _assignment_statistics(
        xp, block, zeroed, payload, requests, skip_nonfinite, keep=keep, far=True, row_offset=row_offset,
        sample_weight=sample_weight,
    )
    return [
        (st, (dist, index + row_offset, _take_block_rows(xp, block, index), labels))
        for st, (dist, index, labels) in zip(stats, far)
    ]


def _lloyd_combine(partials):
    merged = []
    for column in zip(*partials):
        stats = merge_means(c[0] for c in column)
        k = stats.nk.shape[0]
        dist, index, rows, labels = (np.concatenate([c[1][i] for c in column]) for i in range(4))
        order = np.lexsort((index, -dist))[:k]
        merged.append((stats, (dist[order], index[order], rows[order], labels[order])))
    return merged


def _final_chunk(block, payload, row_offset, skip_nonfinite=False, sample_weight=None):
    """Statistics of the hard assignment to each centre set, for each
    requested ``(set index, covariance type)``."""
    center_sets, requests = payload
    xp = _blocks.get_namespace(block)
    zeroed, keep = _masked(xp, block, skip_nonfinite)
    return _assignment_statistics(
        xp, block, zeroed, center_sets, requests, skip_nonfinite, keep=keep, row_offset=row_offset,
        sample_weight=sample_weight,
    )


def _greedy_weighted_kmeans_plusplus(points, weights, k, rng):
    """Greedy k-means++ on a small weighted set (client side), as
    scikit-learn's ``kmeans_plusplus``: each centre is the best of
    ``2 + log(k)`` draws with probability proportional to weight x D^2."""
    m = points.shape[0]
    n_trials = 2 + int(np.log(k))
    first = rng.choice(m, p=weights / weights.sum())
    chosen = [first]
    closest = cdist(points[first][None, :], points, "sqeuclidean")[0]
    potential = float(weights @ closest)
    for _ in range(1, k):
        if potential <= 0:  # every distinct point is chosen: fewer than k of them
            rest = np.setdiff1d(np.arange(m), chosen)
            chosen.append(int(rng.choice(rest)) if rest.size else first)
            continue
        draws = rng.uniform(size=n_trials) * potential
        trials = np.minimum(np.searchsorted(np.cumsum(weights * closest), draws), m - 1)
        trial_closest = np.minimum(closest, cdist(points[trials], points, "sqeuclidean"))
        potentials = trial_closest @ weights
        best = int(np.argmin(potentials))
        chosen.append(int(trials[best]))
        closest, potential = trial_closest[best], float(potentials[best])
    return points[chosen].copy()


def _weighted_lloyd(points, weights, centers, max_iter=100):
    """Weighted Lloyd iterations on a small set (client side) until the
    assignment no longer changes; empty clusters keep their centre."""
    k = centers.shape[0]
    labels = None
    for _ in range(max_iter):
        new_labels = cdist(points, centers, "sqeuclidean").argmin(axis=1)
        if labels is not None and np.array_equal(new_labels, labels):
            break
        labels = new_labels
        mass = np.bincount(labels, weights=weights, minlength=k)
        sums = np.zeros_like(centers)
        np.add.at(sums, labels, points * weights[:, None])
        filled = mass > 0
        centers[filled] = sums[filled] / mass[filled, None]
    return centers


def _relocate_empty_clusters(centers, nk, far):
    """Move the centres of empty clusters to the rows farthest from their
    own centres, taking each row out of its cluster (scikit-learn's KMeans
    rule).  ``centers`` (K, D) and ``nk`` (K,) are updated in place; returns
    the number of clusters moved."""
    dist, _, rows, labels = far
    moved = 0
    candidates = iter(range(len(dist)))
    for j in np.flatnonzero(nk == 0):
        for c in candidates:
            old = int(labels[c])
            if dist[c] > 0 and nk[old] > 1:
                centers[old] = (nk[old] * centers[old] - rows[c]) / (nk[old] - 1)
                nk[old] -= 1
                centers[j], nk[j] = rows[c], 1.0
                moved += 1
                break
    return moved


@dataclass
class _Candidates:
    """k-means|| state for one seed."""

    seed: int
    n_components: int  # the largest K of the specs sharing the seed
    ell: float
    rows: np.ndarray
    index: np.ndarray
    cost: float = np.inf

    def add(self, rows, index):
        rows = np.vstack([self.rows, rows])
        index = np.concatenate([self.index, index])
        order = np.argsort(index, kind="stable")
        rows, index = rows[order], index[order]
        # Same values at other indices (duplicate rows) count once: keep the first.
        _, first = np.unique(rows, axis=0, return_index=True)
        keep = np.sort(first)
        self.rows, self.index = rows[keep], index[keep]


def _kmeans_parallel(X, groups, specs, split_every, counter, n_rounds, oversampling, skip_nonfinite, sample_weight=None):
    """Oversampling rounds: a :class:`_Candidates` per ``(pool, K)`` group."""
    n = X.shape[0]
    state = [_Candidates(pool, k, max(1.0, oversampling * k), None, None) for (pool, k), _ in groups]
    if sample_weight is not None:
        # The first centre drawn with probability in proportion to the weights.
        jobs = [(c.seed, 1) for c in state]
        first_rows = np.vstack(
            sample_finite_rows(X, jobs, split_every=split_every, counter=counter, sample_weight=sample_weight)
        )
        first = [-1] * len(state)
    else:
        first = [int(np.random.default_rng([c.seed, 1]).integers(n)) for c in state]
        first_rows = _take_rows(X, first)
    if not np.all(np.isfinite(first_rows)):
        if not skip_nonfinite:
            _raise_drawn_nonfinite(first, first_rows)
        # A first centre fell on a skipped row: draw again among finite rows.
        jobs = [(c.seed, 1) for c in state]
        first_rows = np.vstack(sample_finite_rows(X, jobs, split_every=split_every, counter=counter))
        first = [-1] * len(state)  # not a known index: sorts first anyway
    for c, row, index in zip(state, first_rows, first):
        c.rows, c.index = row[None, :], np.array([index], dtype=np.int64)
    oversample = _chunk_fn(_oversample_chunk, skip_nonfinite)
    max_rounds = n_rounds + 25
    for r in range(max_rounds):
        active = [
            c for c in state
            if c.cost > 0 and (r < n_rounds or c.rows.shape[0] < c.n_components)
        ]
        if not active:
            break
        jobs = tuple((c.seed, c.rows, int(4 * math.ceil(c.ell) + 16)) for c in active)
        results = tree_reduce(
            X, oversample, _oversample_combine, (2000 + r, jobs), split_every=split_every,
            name="daskgmm-init-kmeans||", weights=sample_weight,
        )
        _count(counter)
        for c, (cost, keys, index, rows, cap) in zip(active, results):
            c.cost = cost
            if cost <= 0:
                continue
            chosen = keys < c.ell / cost
            if chosen.all() and keys.shape[0] == cap:
                logger.debug("k-means|| round %d: more than %d rows drawn, kept the %d smallest keys", r, cap, cap)
            c.add(rows[chosen], index[chosen])
        logger.debug(
            "k-means|| round %d: %s candidates", r, [c.rows.shape[0] for c in state]
        )
    for c in state:
        if c.rows.shape[0] < c.n_components:
            _warn_few_distinct(c.rows.shape[0], c.n_components)
    return state


def _warn_few_distinct(n_distinct, n_components):
    """scikit-learn's behaviour for data with fewer distinct points than
    components: a ConvergenceWarning, and the extra components start empty
    (weight ~0, mean 0, covariance ``reg_covar * I``; with ``reg_covar=0``
    the M-step then reports an ill-defined covariance)."""
    warnings.warn(
        f"Number of distinct clusters ({n_distinct}) found smaller than n_clusters ({n_components}): "
        f"the initialisation found only {n_distinct} distinct point(s) in X, fewer than "
        f"n_components={n_components} (points whose squared distance is 0 in the data's dtype count as one: "
        "duplicates, or data scaled so small that distances underflow). The extra components start empty "
        "(weight ~0); decrease n_components, or rescale the data.",
        ConvergenceWarning,
        stacklevel=4,
    )


def init_kmeans(
    X,
    specs,
    reg_covar,
    split_every=DEFAULT_SPLIT_EVERY,
    counter=None,
    n_rounds=5,
    oversampling=2.0,
    max_lloyd=100,
    lloyd_tol=1e-4,
    skip_nonfinite=False,
    sample_weight=None,
):
    """k-means|| seeding, Lloyd passes, GMM start from the hard assignment
    (see the module docstring).

    Returns
    -------
    runs : list of Run, one per spec
    centers : list of (K, D) arrays, the final k-means centres per spec
    """
    groups = _group(specs, lambda spec: (spec.pool_key, spec.n_components))
    state = _kmeans_parallel(
        X, groups, specs, split_every, counter, n_rounds, oversampling, skip_nonfinite, sample_weight
    )

    counts, spread = tree_reduce(
        X, _chunk_fn(_weights_chunk, skip_nonfinite), _weights_combine, tuple(c.rows for c in state),
        split_every=split_every, name="daskgmm-init-weights", weights=sample_weight,
    )
    _count(counter)
    spread = stats_to_numpy(spread)
    variance = float(np.mean(spread.scatter / max(float(spread.nk[0]), 1.0)))
    tol = lloyd_tol * variance

    # One centre set per (pool, seed, K), from the pool's weighted candidates.
    sets, set_of = [], {}
    for c, w, ((pool, _), members) in zip(state, counts, groups):
        points = c.rows
        if np.count_nonzero(w) >= c.n_components:
            points, w = points[w > 0], w[w > 0]
        else:  # near-duplicates merged by rounding: keep them all
            w = np.maximum(w, 1.0)
        for i in members:
            seed, k = specs[i].seed, specs[i].n_components
            if (pool, seed, k) not in set_of:
                rng = np.random.default_rng([seed, 2, k])
                centers = _greedy_weighted_kmeans_plusplus(points, w, k, rng)
                set_of[(pool, seed, k)] = len(sets)
                sets.append(_weighted_lloyd(points, w, centers))

    lloyd = _chunk_fn(_lloyd_chunk, skip_nonfinite)
    done = [False] * len(sets)
    for iteration in range(max_lloyd):
        todo = [s for s in range(len(sets)) if not done[s]]
        if not todo:
            break
        results = tree_reduce(
            X, lloyd, _lloyd_combine, tuple(sets[s] for s in todo), split_every=split_every,
            name="daskgmm-init-lloyd", weights=sample_weight,
        )
        _count(counter)
        for s, (stats, far) in zip(todo, results):
            nk = stats.nk.astype(np.float64)
            new = np.where((nk > 0)[:, None], stats.means, sets[s])
            moved = _relocate_empty_clusters(new, nk, far) if np.any(nk == 0) else 0
            shift = float(np.sum((new - sets[s]) ** 2))
            sets[s] = new
            done[s] = shift <= tol and not moved
        logger.debug("Lloyd pass %d: %d of %d centre sets still moving", iteration + 1, len(todo) - sum(done[s] for s in todo), len(sets))

    requests, request_of = [], {}
    def set_index(spec):
        return set_of[(spec.pool_key, spec.seed, spec.n_components)]

    for spec in specs:
        key = (set_index(spec), spec.covariance_type)
        if key not in request_of:
            request_of[key] = len(requests)
            requests.append(key)
    final = tree_reduce(
        X, _chunk_fn(_final_chunk, skip_nonfinite), merge_stat_columns, (tuple(sets), tuple(requests)),
        split_every=split_every, name="daskgmm-init-assign", weights=sample_weight,
    )
    _count(counter)
    runs, centers = [], []
    for spec in specs:
        s = set_index(spec)
        stats = stats_to_numpy(final[request_of[(s, spec.covariance_type)]])
        runs.append(run_from_stats(stats, spec, reg_covar))
        centers.append(sets[s])
    return runs, centers


def initialize(
    X, init_params, specs, reg_covar, split_every=DEFAULT_SPLIT_EVERY, counter=None, skip_nonfinite=False,
    sample_weight=None,
):
    """Initial :class:`Run` per spec with ``init_params``; with
    ``skip_nonfinite`` rows holding NaN/inf take no part; with
    ``sample_weight`` (chunked like the rows of ``X``) every row counts with
    its weight, in the draws as in the sums."""
    skip = {"skip_nonfinite": skip_nonfinite, "sample_weight": sample_weight}
    if init_params == "kmeans":
        runs, _ = init_kmeans(X, specs, reg_covar, split_every=split_every, counter=counter, **skip)
        return runs
    if init_params == "k-means++":
        return init_kmeans_plusplus(X, specs, reg_covar, split_every=split_every, counter=counter, **skip)
    if init_params == "random":
        return init_random(X, specs, reg_covar, split_every=split_every, counter=counter, **skip)
    if init_params == "random_from_data":
        return init_random_from_data(X, specs, reg_covar, counter=counter, split_every=split_every, **skip)
    raise ValueError(
        f"Invalid value for 'init_params': {init_params!r}. Use one of {', '.join(map(repr, INIT_PARAMS))}."
    )
