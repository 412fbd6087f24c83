"""Initialisation over the whole distributed data set.

* ``kmeans``: k-means|| seeding (Bahmani et al. 2012), the weighted
  candidates clustered on the client, then at most two Lloyd passes; the
  GMM starts from the statistics of the hard assignment, as scikit-learn's
  ``GaussianMixture`` starts from ``KMeans(...).labels_``: at most 6 passes
  over the data at any N.
* ``k-means++``: exact k-means++ over all rows, one pass per centre (an
  exponential race picks a row with probability proportional to D^2).
* ``random``: uniform random responsibilities per row.
* ``random_from_data``: K distinct rows drawn uniformly from all rows.

The per-chunk functions these passes run (nearest centres, assignment
statistics, the row-keyed draws) are block math, in :mod:`daskgmm._blocks_init`;
this module holds the passes and every client-side step.

Every random draw that concerns a row is keyed by its *global row index*
(a counter-based Philox stream), never by chunk, and every choice among rows
is ordered by that index, so a fixed ``random_state`` gives the same start
for any chunking, worker count or fan-in (to floating-point rounding).

Each method gives, per spec, the statistics whose M-step starts it
(:func:`initial_statistics`); :func:`initialize` makes the runs from them.
The last pass of 'kmeans' and 'random' takes those statistics over every row
from responsibilities that sum to 1 on each row, so merged over the
components they are the data's own moments (:func:`moments_from_stats`):
what the variational family's data-dependent priors need, with no pass of
their own.

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

1. A first centre drawn uniformly from all rows (a fetch of one row by
   index, not a pass).  With sample weights that draw takes a pass, which
   then draws ell rows in proportion to the weights (without replacement):
   it stands for the first round.
2. ``n_rounds`` (2) oversampling rounds, one pass each (ell = 5 K by
   default).  Every row gets the key ``u / d^2`` (``u`` row-keyed uniform,
   ``d`` its distance to the candidates so far); a row is kept when ``key < ell / phi`` (``phi`` the
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
   on the candidates, ``client_tries`` (10) times, keeping the lowest
   weighted cost (the candidates, weighted, stand for the data: k-means||'s
   reclustering step).  The ``n_init`` restarts of a fit share one
   candidate set (their ``pool``) and differ here.
5. Lloyd passes: each gives, per centre set, the counts and means of the
   clusters and the rows farthest from their centres; empty clusters are
   moved to those rows (as scikit-learn's KMeans does).  A set stops when the
   squared centre shift is at most ``lloyd_tol`` x the mean feature variance
   (scikit-learn's rule) or after ``max_lloyd`` (2) passes: starting from
   the candidates' clustering they only polish it, and EM goes on from
   there.
6. One last pass: statistics of the assignment to the final centres, for
   each covariance type asked for (itself a Lloyd step: the start's means
   are the means of that assignment).

With ``skip_nonfinite=True`` (the labelled-data path, where masks leave NaN
rows) rows holding NaN or infinity take no part: they are never drawn, cost
nothing and own no responsibility.
"""

from __future__ import annotations

import functools
import logging
import math
import warnings
from dataclasses import dataclass, replace

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist
from sklearn.exceptions import ConvergenceWarning

from ._blocks import Stats, merge_statistics
from ._covariance import covariance_model
from ._blocks_init import (
    _final_chunk,
    _given_resp_chunk,
    _labelled_chunk,
    _lloyd_chunk,
    _lloyd_combine,
    _box_chunk,
    _box_combine,
    _moments_chunk,
    _oversample_chunk,
    _oversample_combine,
    _race_chunk,
    _race_combine,
    _random_chunk,
    _smallest_keys_chunk,
    _smallest_keys_combine,
    _weights_chunk,
    _weights_combine,
)
from ._engine.inputs import unlabelled_weights
from ._engine.passes import DEFAULT_SPLIT_EVERY, take_rows, tree_reduce
from ._families import GAUSSIAN
from ._stats import merge_stat_columns, no_effective_weight_error, stats_to_numpy

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


def _stats_from_rows(rows, covariance_type):
    """Statistics of one-hot responsibilities on the given K rows (sklearn's
    'random_from_data' / 'k-means++' start: each component owns one row)."""
    rows = np.asarray(rows, dtype=np.float64)
    k, d = rows.shape
    kind = covariance_model(covariance_type)
    return Stats(kind.block_kind, float(k), 0.0, np.ones(k), rows, np.zeros(kind.scatter_shape(k, d)))


def run_from_stats(stats, spec, reg_covar, dtype=None):
    """A :class:`Run` whose parameters are the M-step of ``stats`` (of the
    spec's family: the variational one starts from the posterior)."""
    return (spec.family or GAUSSIAN).initial_run(stats, spec.covariance_type, reg_covar)


def _chunk_fn(fn, skip_nonfinite):
    return functools.partial(fn, skip_nonfinite=True) if skip_nonfinite else fn


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


def _raise_drawn_nonfinite(indices, rows):
    """A row drawn for the start holds NaN/inf (distances to it would be NaN,
    which the passes would read as zero, and report "too few distinct
    points"): say what is wrong instead."""
    bad = int(np.asarray(indices)[~np.all(np.isfinite(rows), axis=1)][0])
    raise ValueError(f"Input X contains NaN or infinity (at least row {bad}). Remove or impute them first "
                     "(or, for NaN, fit with missing='marginalize': NaN entries are then missing features).")


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
        if keys.shape[0] == 0:
            raise no_effective_weight_error(skip_nonfinite=True)
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


def random_statistics(X, specs, split_every=DEFAULT_SPLIT_EVERY, counter=None, skip_nonfinite=False, sample_weight=None):
    """scikit-learn's 'random': responsibilities uniform on [0, 1), normalised
    per row, keyed by row index; their statistics per spec, from one pass."""
    chunk_fn = _chunk_fn(_random_chunk, skip_nonfinite)
    # The block math accumulates each covariance model's statistics by its block kind.
    block_specs = tuple(
        replace(spec, covariance_type=covariance_model(spec.covariance_type).block_kind) for spec in specs
    )
    stats = tree_reduce(
        X, chunk_fn, merge_stat_columns, block_specs, split_every=split_every, name="daskgmm-init-random",
        weights=sample_weight,
    )
    _count(counter)
    stats = [stats_to_numpy(s) for s in stats]
    # Each row's responsibilities sum to its weight: nk sums to the rows' total weight.
    if not float(np.sum(stats[0].nk)) > 0:
        raise no_effective_weight_error(skip_nonfinite)
    return stats


def init_from_resp(X, resp, spec, reg_covar, split_every=DEFAULT_SPLIT_EVERY, counter=None, sample_weight=None):
    """A :class:`Run` from given responsibilities ``resp`` (n_samples, K), a
    NumPy array travelling with the pass: one M-step on their statistics
    (scikit-learn's ``_initialize(X, resp)``)."""
    resp = np.asarray(resp, dtype=np.float64)
    if resp.shape != (X.shape[0], spec.n_components):
        raise ValueError(f"resp should have shape ({X.shape[0]}, {spec.n_components}), got {resp.shape}.")
    (stats,) = tree_reduce(
        X, _given_resp_chunk, merge_stat_columns, (resp, covariance_model(spec.covariance_type).block_kind),
        split_every=split_every, name="daskgmm-init-resp", weights=sample_weight,
    )
    _count(counter)
    return run_from_stats(stats_to_numpy(stats), spec, reg_covar)


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


def data_box(X, split_every=DEFAULT_SPLIT_EVERY, counter=None, sample_weight=None):
    """The bounding box (2, D) float64 (per-feature minimum, then maximum)
    of the finite entries of the rows of positive weight, from one pass:
    the volume of ``GaussianMixture(noise='box')``'s noise component."""
    box = tree_reduce(
        X, _box_chunk, _box_combine, None, split_every=split_every, name="daskgmm-box", weights=sample_weight,
    )
    _count(counter)
    return np.asarray(box, dtype=np.float64)


def moments_from_stats(stats):
    """Total weight, mean (D,) and centred scatter of the rows, as
    :func:`data_moments` gives them, from the statistics of responsibilities
    that sum to 1 on every row (those of 'kmeans' and 'random': see
    :func:`initial_statistics`): their merge over the components,
    ``n = sum_k N_k``, ``m = sum_k N_k m_k / n`` and
    ``S = sum_k [S_k + N_k (m_k - m)(m_k - m)^T]``.

    The scatter is (D, D) from 'full' or 'tied' statistics ('tied' holds
    ``sum_k S_k``), its diagonal (D,) from 'diag' or 'spherical' ones, which
    hold only that.  Each term is centred, so data far from the origin keep
    their precision.
    """
    nk = np.asarray(stats.nk, dtype=np.float64)
    means = np.asarray(stats.means, dtype=np.float64)
    scatter = np.asarray(stats.scatter, dtype=np.float64)
    n = float(nk.sum())
    mean = nk @ means / n
    offsets = means - mean
    weighted = nk[:, None] * offsets
    within = covariance_model(stats.covariance_type).pooled_scatter(scatter)
    if within.ndim == 2:
        return n, mean, within + weighted.T @ offsets
    return n, mean, within + np.sum(weighted * offsets, axis=0)


# --------------------------------------------------------------------------
# random_from_data
# --------------------------------------------------------------------------


def random_from_data_statistics(
    X, specs, counter=None, skip_nonfinite=False, split_every=DEFAULT_SPLIT_EVERY, sample_weight=None
):
    """K distinct row indices drawn uniformly from all rows per spec; the rows
    of every spec fetched in one compute (not a pass: only their chunks are
    read), each the statistics of one component.  With ``sample_weight``:
    drawn with probabilities in proportion to the weights, in one pass
    (:func:`sample_finite_rows`)."""
    if sample_weight is not None:
        jobs = [(spec.seed, spec.n_components) for spec in specs]
        all_rows = sample_finite_rows(X, jobs, split_every=split_every, counter=counter, sample_weight=sample_weight)
        return [_stats_from_rows(r, spec.covariance_type) for r, spec in zip(all_rows, specs)]
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
    return [_stats_from_rows(r, spec.covariance_type) for r, spec in zip(all_rows, specs)]


# --------------------------------------------------------------------------
# k-means++ over the whole data: one exponential race per centre
# --------------------------------------------------------------------------


def kmeans_plusplus_statistics(
    X, specs, split_every=DEFAULT_SPLIT_EVERY, counter=None, skip_nonfinite=False, sample_weight=None
):
    """Exact k-means++ (non-greedy) over all rows: centre j is one pass, in
    which every row races with an exponential clock of rate D^2.  Specs that
    share a seed share the sequence of centres (a spec of K takes the first
    K); each centre is the statistics of one component."""
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
            if centers[g] is None and (row is None or not np.isfinite(key)):  # no row of positive weight
                raise no_effective_weight_error(skip_nonfinite)
            if row is None or not np.isfinite(key):
                # Every distinct point is a centre already: repeat the first
                # (its duplicate starts empty, as scikit-learn's k-means++ does).
                if g not in few_distinct:
                    few_distinct.add(g)
                    _warn_few_distinct(j, sizes[g])
                row = centers[g][0]
            centers[g] = row[None, :] if centers[g] is None else np.vstack([centers[g], row])
    stats = [None] * len(specs)
    for g, (_, members) in enumerate(groups):
        for i in members:
            stats[i] = _stats_from_rows(centers[g][: specs[i].n_components], specs[i].covariance_type)
    return stats


# --------------------------------------------------------------------------
# kmeans: k-means|| seeding + distributed Lloyd
# --------------------------------------------------------------------------


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


def _cluster_candidates(points, weights, k, rng, tries):
    """K centres for the weighted candidates: the lowest weighted k-means
    cost of ``tries`` runs of greedy k-means++ then weighted Lloyd (client
    side, as scikit-learn's ``KMeans(n_init=tries)``), drawn in turn from
    ``rng``, in the order of the first run's centres they are nearest to.

    Which run wins can turn on rows equally near two candidates (their
    weights are counts, and rounding, thus the chunking or the memory
    layout, assigns such rows), often between runs that find the same
    centres in another order: matched to the first run, the same centres
    come in the same order.
    """
    first = best = None
    best_cost = np.inf
    for _ in range(tries):
        centers = _weighted_lloyd(points, weights, _greedy_weighted_kmeans_plusplus(points, weights, k, rng))
        cost = float(weights @ cdist(points, centers, "sqeuclidean").min(axis=1))
        if best is None or cost < best_cost:
            best, best_cost = centers, cost
        if first is None:
            first = centers
    if best is not first:
        _, order = linear_sum_assignment(cdist(first, best, "sqeuclidean"))
        best = best[order]
    return best


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
    first_round = 0
    if sample_weight is not None:
        # Drawing a first centre in proportion to the weights takes a pass:
        # that pass draws ell rows so (without replacement), the first round.
        jobs = tuple((c.seed, int(math.ceil(c.ell))) for c in state)
        drawn = tree_reduce(
            X, _chunk_fn(_smallest_keys_chunk, True), _smallest_keys_combine, jobs, split_every=split_every,
            name="daskgmm-init-sample", weights=sample_weight,
        )
        _count(counter)
        for c, (_, keys, _, rows) in zip(state, drawn):
            if keys.shape[0] == 0:
                raise no_effective_weight_error(skip_nonfinite=True)
            c.rows, c.index = rows[:1], np.array([-1], dtype=np.int64)  # not a known index: sorts first
            if rows.shape[0] > 1:
                c.add(rows[1:], np.full(rows.shape[0] - 1, -1, dtype=np.int64))
        first_round = 1
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
    for r in range(first_round, max_rounds):
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


# k-means|| with few rounds and a larger oversampling factor draws as many
# candidates in fewer passes; the weighted candidates are clustered on the
# client (k-means++, then Lloyd to convergence), which leaves the Lloyd
# passes over all rows only a final polish, so they are capped: the start
# costs at most N_ROUNDS + MAX_LLOYD + 2 passes at any N (out of core each
# pass reads the store again).  Bahmani et al.'s own setting, 5 rounds of 2K
# and Lloyd to convergence from one k-means++ on the candidates, is
# n_rounds=5, oversampling=2.0, max_lloyd=100, client_tries=1.
N_ROUNDS = 2
OVERSAMPLING = 5.0
MAX_LLOYD = 2
CLIENT_TRIES = 10


def kmeans_statistics(
    X,
    specs,
    split_every=DEFAULT_SPLIT_EVERY,
    counter=None,
    n_rounds=N_ROUNDS,
    oversampling=OVERSAMPLING,
    max_lloyd=MAX_LLOYD,
    client_tries=CLIENT_TRIES,
    lloyd_tol=1e-4,
    skip_nonfinite=False,
    sample_weight=None,
):
    """k-means|| seeding, Lloyd passes, statistics of the hard assignment
    (see the module docstring).

    ``n_rounds`` oversampling passes drawing about ``oversampling`` x K
    candidates each, one weighting pass, at most ``max_lloyd`` Lloyd passes
    and the statistics pass: ``n_rounds + max_lloyd + 2`` passes at most
    (more rounds only while fewer than K distinct candidates exist).  Each
    seed clusters the weighted candidates ``client_tries`` times on the
    client (k-means++ then weighted Lloyd) and keeps the lowest cost.

    Returns
    -------
    stats : list of Stats, one per spec
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
                set_of[(pool, seed, k)] = len(sets)
                sets.append(_cluster_candidates(points, w, k, rng, client_tries))

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

    def block_kind(spec):
        return covariance_model(spec.covariance_type).block_kind

    for spec in specs:
        key = (set_index(spec), block_kind(spec))
        if key not in request_of:
            request_of[key] = len(requests)
            requests.append(key)
    final = tree_reduce(
        X, _chunk_fn(_final_chunk, skip_nonfinite), merge_stat_columns, (tuple(sets), tuple(requests)),
        split_every=split_every, name="daskgmm-init-assign", weights=sample_weight,
    )
    _count(counter)
    stats, centers = [], []
    for spec in specs:
        s = set_index(spec)
        stats.append(stats_to_numpy(final[request_of[(s, block_kind(spec))]]))
        centers.append(sets[s])
    return stats, centers


# The methods whose last pass takes statistics over every row from
# responsibilities summing to 1 on each row (hard k-means labels, normalised
# random draws); 'k-means++' and 'random_from_data' only pick rows.
COVERS_EVERY_ROW = ("kmeans", "random")


def initial_statistics(
    X, init_params, specs, split_every=DEFAULT_SPLIT_EVERY, counter=None, skip_nonfinite=False, sample_weight=None,
    labels=None,
):
    """Per spec, the statistics whose M-step starts it with ``init_params``
    (float64 NumPy :class:`Stats`), and whether they cover every row: then
    :func:`moments_from_stats` of any of them is the data's moments
    (:func:`data_moments`, to rounding).  Arguments as :func:`initialize`;
    with ``labels``, :func:`labelled_statistics`."""
    if labels is not None:
        return labelled_statistics(
            X, init_params, specs, labels, split_every=split_every, counter=counter, skip_nonfinite=skip_nonfinite,
            sample_weight=sample_weight,
        )
    skip = {"skip_nonfinite": skip_nonfinite, "sample_weight": sample_weight}
    if init_params == "kmeans":
        stats, _ = kmeans_statistics(X, specs, split_every=split_every, counter=counter, **skip)
    elif init_params == "k-means++":
        stats = kmeans_plusplus_statistics(X, specs, split_every=split_every, counter=counter, **skip)
    elif init_params == "random":
        stats = random_statistics(X, specs, split_every=split_every, counter=counter, **skip)
    elif init_params == "random_from_data":
        stats = random_from_data_statistics(X, specs, counter=counter, split_every=split_every, **skip)
    else:
        raise ValueError(
            f"Invalid value for 'init_params': {init_params!r}. Use one of {', '.join(map(repr, INIT_PARAMS))}."
        )
    return stats, init_params in COVERS_EVERY_ROW


def labelled_statistics(
    X, init_params, specs, labels, split_every=DEFAULT_SPLIT_EVERY, counter=None, skip_nonfinite=False,
    sample_weight=None,
):
    """:func:`initial_statistics` of a fit with partial ``labels`` (chunked
    like the rows of ``X``; -1 unlabelled, else the row's component; every
    spec of one number of components).

    The labelled rows start with their one-hot responsibilities (one pass
    for their statistics) and the unlabelled ones with those ``init_params``
    gives them, run on the unlabelled rows alone (the labelled ones weighted
    0), so that restarts differ only there.  The method's components are
    first matched to the labels (:func:`match_components`): its order is
    arbitrary, while component k must be the one the rows labelled k
    belong to.  With no unlabelled row of positive weight, the labelled
    rows' statistics alone.
    """
    n_components = specs[0].n_components
    kinds = tuple(dict.fromkeys(covariance_model(spec.covariance_type).block_kind for spec in specs))
    by_kind = dict(zip(kinds, tree_reduce(
        X, _chunk_fn(_labelled_chunk, skip_nonfinite), merge_stat_columns, (n_components, kinds),
        split_every=split_every, name="daskgmm-init-labelled", weights=sample_weight, rows={"labels": labels},
    )))
    _count(counter)
    labelled = [stats_to_numpy(by_kind[covariance_model(spec.covariance_type).block_kind]) for spec in specs]
    unlabelled_weight, any_unlabelled = unlabelled_weights(labels, sample_weight)
    if not any_unlabelled:
        return labelled, True
    stats, every_row = initial_statistics(
        X, init_params, specs, split_every=split_every, counter=counter, skip_nonfinite=skip_nonfinite,
        sample_weight=unlabelled_weight,
    )
    return [merge_statistics(match_components(s, given), given) for s, given in zip(stats, labelled)], every_row


def match_components(stats, labelled):
    """``stats`` (K components) reordered so that component k is the one
    whose mean is nearest the mean of the rows labelled k (an optimal
    assignment of squared distances, scipy's ``linear_sum_assignment``,
    over the labels present in ``labelled``); the rest keep their order."""
    present = np.flatnonzero(np.asarray(labelled.nk) > 0)
    k = len(labelled.nk)
    order = np.full(k, -1)
    if present.size:
        cost = cdist(np.asarray(labelled.means)[present], np.asarray(stats.means), "sqeuclidean")
        rows, columns = linear_sum_assignment(cost)
        order[present[rows]] = columns
    order[order < 0] = np.setdiff1d(np.arange(k), order[order >= 0])
    # A scatter summed over the components (of a block kind whose statistics
    # do not split into components) is the same in any order.
    stackable = covariance_model(stats.covariance_type).stackable
    scatter = np.asarray(stats.scatter)[order] if stackable else stats.scatter
    return Stats(
        stats.covariance_type, stats.n_samples, stats.log_likelihood, np.asarray(stats.nk)[order],
        np.asarray(stats.means)[order], scatter,
    )


def initialize(
    X, init_params, specs, reg_covar, split_every=DEFAULT_SPLIT_EVERY, counter=None, skip_nonfinite=False,
    sample_weight=None, labels=None,
):
    """Initial :class:`Run` per spec with ``init_params``; with
    ``skip_nonfinite`` rows holding NaN/inf take no part; with
    ``sample_weight`` (chunked like the rows of ``X``) every row counts with
    its weight, in the draws as in the sums; with partial ``labels``
    (chunked alike) the labelled rows start with their labels
    (:func:`labelled_statistics`)."""
    stats, _ = initial_statistics(
        X, init_params, specs, split_every=split_every, counter=counter, skip_nonfinite=skip_nonfinite,
        sample_weight=sample_weight, labels=labels,
    )
    return [run_from_stats(s, spec, reg_covar) for s, spec in zip(stats, specs)]
