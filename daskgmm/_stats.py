"""Merged sufficient statistics (:class:`daskgmm._blocks.Stats`) on the
client: scaling by a weight factor, the stepwise update of online EM, the
merge of per-run columns and the copy to NumPy.

What a pass returns is merged here, scaled and combined; no sample is seen
and nothing here knows about Dask.  The per-chunk math that produces the
statistics, and their merge, are :mod:`daskgmm._blocks`'s.
"""

from __future__ import annotations

import numpy as np

from . import _blocks


def no_effective_weight_error(skip_nonfinite=False):
    """The ValueError for rows that leave nothing to fit: no sample with a
    positive weight and an observed feature (a fully masked scene, a batch
    whose weights are all on empty rows).  Their statistics count zero
    samples, and every M-step or per-sample average would divide by it."""
    left_out = (
        "a NaN or infinite feature (such samples are left out)" if skip_nonfinite
        else "every feature missing (NaN)"
    )
    return ValueError(
        f"X has no sample with a positive weight and an observed feature: every sample has a weight of 0 or "
        f"{left_out}, so there is nothing to fit. Check the mask or the weights of this data."
    )


def stats_to_numpy(stats):
    """The same Stats with every array copied to NumPy (from any namespace)."""
    return _blocks.Stats(stats.covariance_type, *(np.asarray(_blocks.to_numpy(v)) for v in stats[1:]))


def merge_stat_columns(partials):
    """Combine function of passes whose chunk tasks return one Stats per run:
    merges the i-th Stats of every partial."""
    return [_blocks.merge_many(column) for column in zip(*partials)]


def scale_statistics(stats, factor):
    """``stats`` of rows whose weights are all multiplied by ``factor``:
    counts, log-likelihood and scatter scale, the means do not.  Exact (one
    multiplication per number), so a convex combination of two statistics
    is :func:`_blocks.merge_statistics` of the two, scaled."""
    return _blocks.Stats(
        stats.covariance_type,
        stats.n_samples * factor,
        stats.log_likelihood * factor,
        stats.nk * factor,
        stats.means,
        stats.scatter * factor,
    )


def real_statistics(stats, weight_scale):
    """``stats`` of weights divided by ``weight_scale`` (a power of two), in
    the real weights' units, as a stream continuing the fit counts them; None
    where those are not representable in the statistics' dtype (a total
    weight that overflows, or underflows below the normal numbers): the
    stream then starts from its first batch, as after a fit without them."""
    with np.errstate(over="ignore", under="ignore"):
        real = scale_statistics(stats, weight_scale)
    fields = (real.n_samples, real.log_likelihood, real.nk, real.means, real.scatter)
    tiny = np.finfo(np.asarray(real.means).dtype).tiny
    if not (all(np.all(np.isfinite(value)) for value in fields) and float(real.n_samples) >= tiny):
        return None
    return real


def stepwise_statistics(running, batch, gamma):
    """Stepwise EM's update ``s_t = (1 - gamma) s_{t-1} + gamma S_b / n_b``
    (Cappé & Moulines 2009; Liang & Klein 2009) of the running per-sample
    statistics ``running`` (None before the first batch) by the merged
    statistics ``batch`` of one batch, in the centred form: the two are
    scaled and merged, so no raw moments are ever subtracted."""
    if not float(batch.n_samples) > 0:
        raise no_effective_weight_error()
    per_sample = scale_statistics(batch, 1.0 / float(batch.n_samples))
    if running is None or gamma >= 1.0:
        return per_sample
    return _blocks.merge_statistics(scale_statistics(running, 1.0 - gamma), scale_statistics(per_sample, gamma))
