"""The EM loop: the passes of a fit (the statistics of every run's E-step,
the log-likelihood of final models, the count of missing features) and
:func:`run_em`, which iterates a family's E-step and M-step over them."""

from __future__ import annotations

import functools
import logging
import time

import numpy as np

from .. import _blocks, _blocks_missing
from .._covariance import covariance_model
from .._stats import real_statistics, stats_to_numpy
from .passes import DEFAULT_SPLIT_EVERY, fit_batches, tree_reduce

logger = logging.getLogger("daskgmm")


def _missing_chunk(block, payload, row_offset, sample_weight=None):
    return _blocks_missing.missing_summary(_blocks.to_numpy(block), row_offset, sample_weight)


def missing_pass(X, *, split_every=DEFAULT_SPLIT_EVERY, weights=None):
    """One pass counting the missing (NaN) entries of ``X``, the incomplete
    rows and the rows with every feature missing, and the (weighted) mean of
    each feature's observed values (:func:`_blocks_missing.missing_summary`,
    whose error names a row holding infinity)."""
    return tree_reduce(
        X, _missing_chunk, _blocks_missing.merge_summaries, None, split_every=split_every, name="daskgmm-missing",
        weights=weights,
    )


# Widest stack of models evaluated together, in components x features: past
# it, the row slices of :func:`_blocks.block_statistics` get too short.
MAX_STACK_WIDTH = 1 << 13


def stack_plan(models):
    """How to evaluate ``models`` on a block: a list of ``(indices, model,
    groups)``.  Models of one block kind are stacked, unless their components
    share a precision (:attr:`CovarianceModel.stackable`;
    :func:`_blocks.stack_models`) so that they share the pivot-centred
    block, the matrix products and the per-slice work; ``groups`` is None for
    a model evaluated alone.  A model with a noise component is evaluated
    alone (its extra column would break the groups' normalisation)."""
    plan = []
    by_kind = {}
    for i, model in enumerate(models):
        if model.noise_log_density is not None:
            plan.append(([i], model, None))
            continue
        by_kind.setdefault(model.covariance_type, []).append(i)
    for kind, indices in by_kind.items():
        if not covariance_model(kind).stackable:
            plan.extend(([i], models[i], None) for i in indices)
            continue
        batch, width = [], 0
        for i in indices + [None]:
            size = None if i is None else models[i].means.shape[0] * models[i].means.shape[1]
            if batch and (i is None or width + size > MAX_STACK_WIDTH):
                if len(batch) == 1:
                    plan.append((batch, models[batch[0]], None))
                else:
                    plan.append((batch, *_blocks.stack_models([models[j] for j in batch])))
                batch, width = [], 0
            if i is not None:
                batch.append(i)
                width += size
    return plan


def _em_chunk(block, payload, row_offset, sample_weight=None, labels=None):
    family, evaluations, skip_nonfinite = payload
    return [
        family.chunk_statistics(
            block, model, row_offset=row_offset, skip_nonfinite=skip_nonfinite, groups=groups,
            sample_weight=sample_weight, labels=labels,
        )
        for model, groups in evaluations
    ]


def _merge_columns(merge, partials):
    """Combine function of the EM passes, whose chunk tasks return one
    statistics per evaluation: the i-th of every partial merged by the
    family's ``merge``."""
    return [merge(column) for column in zip(*partials)]


def em_pass(
    X, family, runs, *, skip_nonfinite=False, split_every=DEFAULT_SPLIT_EVERY, batches="auto", models=None,
    weights=None, labels=None,
):
    """Merged statistics of every run in ``runs`` from one pass over ``X``
    (weighted by ``weights``, chunked like the rows of ``X``, when given;
    ``labels``, chunked alike, fix the responsibilities of the labelled rows,
    :func:`daskgmm._blocks.block_statistics`):
    each chunk's by ``family.chunk_statistics``, merged by ``family.merge``
    (:mod:`daskgmm._families`).

    One task per chunk (or per batch of chunks, see
    :func:`daskgmm._engine.passes.plan_batches`, its small chunks joined
    into one block) evaluates all the runs, stacked by covariance type
    (:func:`stack_plan`).  ``models`` are the
    E-step parameters of the runs (default: ``family.model`` of each)."""
    plan = stack_plan(models if models is not None else [family.model(run) for run in runs])
    evaluations = tuple((model, groups) for _, model, groups in plan)
    stats = tree_reduce(
        X, _em_chunk, functools.partial(_merge_columns, family.merge), (family, evaluations, skip_nonfinite),
        split_every=split_every, name="daskgmm-em", batches=batches, weights=weights, rows={"labels": labels},
        join_chunks=True,
    )
    out = [None] * len(runs)
    for (indices, _, groups), merged in zip(plan, stats):
        merged = stats_to_numpy(merged)
        parts = [merged] if groups is None else _blocks.split_statistics(merged, groups)
        for i, part in zip(indices, parts):
            out[i] = part
    return out


def _score_chunk(block, payload, row_offset, sample_weight=None):
    family, models = payload
    xp = _blocks.get_namespace(block)
    out = []
    for model in models:
        log_norm = family.chunk_log_likelihood(block, model, row_offset=row_offset)
        total = xp.sum(log_norm if sample_weight is None else _blocks.weighted_values(xp, log_norm, sample_weight))
        _blocks.check_finite(xp, total, block, row_offset)
        out.append(float(total))
    return np.array(out, dtype=np.float64)


def _classification_chunk(block, payload, row_offset, sample_weight=None):
    """:func:`_score_chunk` with, per model, the chunk's classification
    entropy and counted weight: a (3, len(models)) array."""
    family, models = payload
    xp = _blocks.get_namespace(block)
    out = np.empty((3, len(models)), dtype=np.float64)
    for j, model in enumerate(models):
        rows = family.chunk_classification(block, model, row_offset=row_offset)
        if sample_weight is not None:
            rows = [_blocks.weighted_values(xp, values, sample_weight) for values in rows]
        log_likelihood, entropy, counted = (xp.sum(values) for values in rows)
        _blocks.check_finite(xp, log_likelihood, block, row_offset)
        out[:, j] = float(log_likelihood), float(entropy), float(counted)
    return out


def _score_combine(partials):
    return np.sum(partials, axis=0)


def score_pass(X, family, models, *, split_every=DEFAULT_SPLIT_EVERY, weights=None, classification=False):
    """Total log-likelihood ``sum_i w_i log p(x_i)`` (``w_i = 1`` without
    ``weights``) of every model in ``models`` (client-side
    :class:`_blocks.Model`), all from one pass over ``X``, each row's by
    ``family.chunk_log_likelihood``.

    With ``classification`` the same pass also sums, from the same E-step
    (``family.chunk_classification``), each model's classification entropy
    ``CE = -sum_i w_i log max_k r_ik`` (what ICL adds to BIC, halved) and the
    weight of the rows counted (``sum_i w_i``, less the rows with every
    feature missing under ``missing='marginalize'``).

    Returns
    -------
    (len(models),) float64 array
        The log-likelihoods; with ``classification`` a (3, len(models))
        array: log-likelihoods, classification entropies, counted weights.
    """
    return tree_reduce(
        X, _classification_chunk if classification else _score_chunk, _score_combine, (family, tuple(models)),
        split_every=split_every, name="daskgmm-score", weights=weights, join_chunks=True,
    )


def run_em(
    X,
    runs,
    *,
    family,
    tol,
    max_iter,
    reg_covar,
    split_every=DEFAULT_SPLIT_EVERY,
    skip_nonfinite=False,
    callbacks=(),
    start_iter=0,
    weights=None,
    weight_scale=1.0,
    labels=None,
):
    """Iterate EM on every run in ``runs`` until each converges or ``max_iter``.

    All still-running runs share each pass over the data: one task per chunk
    evaluates every one of them.  A run drops out when it converges.
    ``family`` (:mod:`daskgmm._families`) gives each run's E-step
    parameters, the chunks' statistics, its M-step and its lower bound.
    ``weights`` are the sample weights divided by ``weight_scale`` (a power
    of two): ``run.n_samples`` is the real total weight.  ``labels``
    (chunked like the rows, -1 where unlabelled) fix the responsibilities of
    the labelled rows (:func:`em_pass`).

    Each callback is called after every pass as ``callback(info)`` with a
    dict: ``iteration``, ``runs`` (the list), ``active`` (indices evaluated),
    ``seconds``, ``n_chunks``.

    Returns
    -------
    runs : the same list, updated in place; each run's ``statistics`` are
        the merged statistics of its last pass (its parameters' M-step).
    n_passes : number of passes made.
    """
    n_passes = 0
    # Where the chunks live is asked once per fit, not once per pass (a
    # scheduler round trip).
    batches = fit_batches(X)
    for iteration in range(start_iter + 1, max_iter + 1):
        active = [i for i, run in enumerate(runs) if not run.converged]
        if not active:
            break
        tic = time.perf_counter()
        models = [family.model(runs[i]) for i in active]
        stats = em_pass(
            X, family, [runs[i] for i in active], skip_nonfinite=skip_nonfinite, split_every=split_every,
            batches=batches, models=models, weights=weights, labels=labels,
        )
        n_passes += 1
        for i, st, model in zip(active, stats, models):
            _step(runs[i], st, model, family, reg_covar, tol, weight_scale, iteration)
        seconds = time.perf_counter() - tic
        for i in active:
            _record(runs[i], i, iteration, seconds, X.numblocks[0])
        info = {
            "iteration": iteration,
            "runs": runs,
            "active": active,
            "seconds": seconds,
            "n_chunks": X.numblocks[0],
        }
        for callback in callbacks:
            callback(info)
    return runs, n_passes


def _step(run, stats, model, family, reg_covar, tol, weight_scale, iteration):
    """The family's M-step of ``run`` from the merged ``stats`` of its pass
    (whose E-step evaluated ``model``); converged when its bound changed by
    less than ``tol``."""
    n_samples = float(stats.n_samples)
    if n_samples == 0:
        raise ValueError("No finite samples left to fit.")
    run.n_samples = n_samples * weight_scale
    previous = run.lower_bound
    run.lower_bound = family.step(run, stats, reg_covar, model)
    run.statistics = stats if weight_scale == 1.0 else real_statistics(stats, weight_scale)
    run.n_iter = iteration
    change = run.lower_bound - previous
    run.history.append(run.lower_bound)
    if abs(change) < tol:
        run.converged = True


def _record(run, index, iteration, seconds, n_chunks):
    """The iteration's record of ``run`` (the estimator's ``history_``)."""
    change = run.history[-1] - run.history[-2] if len(run.history) > 1 else float("inf")
    run.records.append(
        {
            "iteration": iteration,
            "lower_bound": run.lower_bound,
            "change": change,
            "seconds": seconds,
            "n_chunks": n_chunks,
        }
    )
    logger.debug(
        "iteration %d run %d: lower bound %.10g, change %.3g (%.3fs)",
        iteration, index, run.lower_bound, change, seconds,
    )
