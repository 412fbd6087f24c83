"""Per-chunk math of the initialisation, on ONE block (NumPy or any array-API
namespace), beside the EM block functions of :mod:`daskgmm._blocks`: nearest
centres, the statistics of hard assignments (Lloyd sums, the final k-means
start), the row-keyed draws (k-means|| oversampling, k-means++ races,
samples without replacement), random or given responsibilities, the data's
moments; and the combine functions that merge their results.  The passes
that run them, and every client-side step, are in :mod:`daskgmm._init`.

Every chunk function has the engine's signature ``(block, payload,
row_offset, skip_nonfinite=False, sample_weight=None)``: rows holding NaN/inf
take no part with ``skip_nonfinite``, and every row counts with its weight.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from . import _blocks
from ._blocks import Model


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
    its column's minimum, which needs no arg-min (an arg-min along the
    transposed axis costs more than the rest of the slice's work).  A row equally near two centres (duplicate centres)
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
    first slices a slice costs one comparison, and a partial sort of the few
    rows that pass it instead of all its rows."""
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


def _given_resp_chunk(block, payload, row_offset, sample_weight=None):
    resp, kind = payload
    xp = _blocks.get_namespace(block)
    rows = np.ascontiguousarray(resp[row_offset : row_offset + block.shape[0]].T)
    if sample_weight is not None:
        rows = rows * _to_float64(sample_weight)[None, :]
    return _fixed_resp_statistics(block, [xp.asarray(rows, dtype=block.dtype)], [kind], False, row_offset)


def _labelled_chunk(block, payload, row_offset, skip_nonfinite=False, sample_weight=None, labels=None):
    """Statistics of the labelled rows' one-hot responsibilities (each row
    weighted by its sample weight; unlabelled rows, -1, count nothing), per
    block kind of ``payload = (n_components, kinds)``."""
    n_components, kinds = payload
    xp = _blocks.get_namespace(block)
    one_hot = (np.arange(n_components)[:, None] == np.asarray(_blocks.to_numpy(labels))[None, :]).astype(np.float64)
    if sample_weight is not None:
        one_hot = one_hot * _to_float64(sample_weight)[None, :]
    resp = _on_block(xp, block, one_hot)
    return _fixed_resp_statistics(block, [resp] * len(kinds), list(kinds), skip_nonfinite, row_offset)


def _moments_chunk(block, payload, row_offset, skip_nonfinite=False, sample_weight=None):
    xp = _blocks.get_namespace(block)
    ones = xp.ones((1, block.shape[0]), dtype=block.dtype)
    if sample_weight is not None:
        ones = _on_block(xp, block, _to_float64(sample_weight))[None, :]
    return _fixed_resp_statistics(block, [ones], ["full"], skip_nonfinite, row_offset)


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


def _box_chunk(block, payload, row_offset, sample_weight=None):
    """Per-feature minimum and maximum (2, D) float64 of the finite entries
    of the block's rows of positive weight (a NaN entry is a missing
    feature; a row holding infinity is the E-step's error): the bounding
    box of mclust's noise component.  +inf / -inf where a feature has no
    such entry."""
    values = np.asarray(_blocks.to_numpy(block), dtype=np.float64)
    finite = np.isfinite(values)
    if sample_weight is not None:
        finite &= (np.asarray(_blocks.to_numpy(sample_weight), dtype=np.float64) > 0)[:, None]
    lower = np.min(np.where(finite, values, np.inf), axis=0, initial=np.inf)
    upper = np.max(np.where(finite, values, -np.inf), axis=0, initial=-np.inf)
    return np.stack([lower, upper])


def _box_combine(parts):
    parts = np.stack(list(parts))
    return np.stack([parts[:, 0, :].min(axis=0), parts[:, 1, :].max(axis=0)])
