"""Online EM (``partial_fit``): what a stream carries from batch to batch
besides the parameters, and the step size of stepwise EM.  The statistics
it scales and merges are :mod:`daskgmm._stats`'s."""

from __future__ import annotations

from dataclasses import dataclass

from .._blocks import Stats
from .._stats import scale_statistics

ONLINE_MODES = ("stepwise", "exact")


@dataclass
class OnlineState:
    """What ``partial_fit`` carries between batches besides the parameters.

    ``statistics`` is, in ``'stepwise'`` mode, the running per-sample
    statistics ``s_t`` (``n_samples`` = 1) and, in ``'exact'`` mode, the
    merged statistics of the batches of the current pass (None before the
    first batch of a pass).  ``n_batch_iter`` counts the batches that
    updated the running statistics; ``n_samples_seen`` the total weight of
    every batch seen (and of the fit a stepwise stream continues).
    ``batch_offset`` is the number of batches the data of that fit count
    as (0 for a stream that began with ``partial_fit``): the step size of
    batch ``n_batch_iter`` is that of batch ``n_batch_iter + batch_offset``.
    ``weight_scale`` is the power of two the sample weights of an exact
    pass's statistics are divided by (that of its first batch; see
    ``_engine.inputs.check_sample_weight``), so that their sums stay of order 1
    whatever the scale of the weights; the stepwise running statistics are
    per sample and need none.
    """

    mode: str
    statistics: Stats | None = None
    n_batch_iter: int = 0
    n_samples_seen: float = 0.0
    # Chunks of the batches of the current pass (exact mode), for its record.
    n_chunks: int = 0
    batch_offset: int = 0
    weight_scale: float = 1.0


def stream_after_fit(fit_statistics, batch_weight):
    """The stepwise state a stream continuing a fit starts from.

    ``fit_statistics`` are the merged statistics of the fit's last pass
    (:attr:`Run.statistics`, the M-step of which gave the parameters),
    ``batch_weight`` the total weight of the stream's first batch (> 0).
    The running statistics are the fit's per sample, ``n_samples_seen`` its
    total weight, and the fit counts as ``max(1, round(fit_weight /
    batch_weight))`` earlier batches of this batch's size: the first batch
    gets the step size that follows (a small one after a large fit),
    instead of replacing the fit's statistics with its own.
    """
    fit_weight = float(fit_statistics.n_samples)
    return OnlineState(
        "stepwise",
        statistics=scale_statistics(fit_statistics, 1.0 / fit_weight),
        n_samples_seen=fit_weight,
        batch_offset=max(1, int(round(fit_weight / batch_weight))),
    )


def step_size(n_batch_iter, decay, offset):
    """``gamma_t = (t + t0) ** -alpha``, the weight of batch ``t`` (1, 2, ...)
    in the running statistics (the first batch's is 1, whatever this says:
    there is nothing before it to keep)."""
    return 1.0 if n_batch_iter <= 1 else float((n_batch_iter + offset) ** -decay)
