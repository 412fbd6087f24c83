"""Observing a fit: the per-iteration event given to user callbacks, the
``daskgmm`` logger's INFO summaries, and the optional progress bar."""

from __future__ import annotations

import logging
import math
import sys

logger = logging.getLogger("daskgmm")


def iteration_event(info):
    """The public per-iteration dict built from the engine's ``info``.

    Keys
    ----
    iteration : int
        1-based EM iteration just finished (continues after a resume).
    lower_bound : float
        The lower bound of the best run so far (the one the fit would keep if
        it stopped now) at this iteration: for GaussianMixture the mean
        log-likelihood per sample its E-step evaluated, for
        BayesianGaussianMixture the total evidence lower bound after its
        M-step (each family's ``lower_bound_``).
    change : float
        That run's change of lower bound at its last iteration (inf at its first).
    best_run : int
        Index of that run among the ``n_init`` concurrent runs.
    seconds : float
        Wall time of this iteration's pass and M-step.
    n_chunks : int
        Row chunks processed by the pass (each by one task).
    lower_bounds, changes : list of float
        The same two figures for every run.
    active : list of bool
        Which runs were evaluated by this pass (converged runs drop out).
    converged : list of bool
    """
    runs = info["runs"]
    active = set(info["active"])
    best = 0
    for i, run in enumerate(runs):
        if run.lower_bound > runs[best].lower_bound:
            best = i
    changes = [run.records[-1]["change"] if run.records else math.inf for run in runs]
    return {
        "iteration": int(info["iteration"]),
        "lower_bound": float(runs[best].lower_bound),
        "change": float(changes[best]),
        "best_run": best,
        "seconds": float(info["seconds"]),
        "n_chunks": int(info["n_chunks"]),
        "lower_bounds": [float(run.lower_bound) for run in runs],
        "changes": [float(c) for c in changes],
        "active": [i in active for i in range(len(runs))],
        "converged": [bool(run.converged) for run in runs],
    }


def _isatty(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no such method, or closed
        return False


def _progress_bar_class():
    """tqdm's bar class for stderr, or None where a bar does not belong.

    A console bar redraws its line with carriage returns, which a terminal
    shows as one line but a file (a batch job's log) keeps as fragments, with
    a rate that means nothing there; a notebook's bar is a widget.
    """
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    if any(cls.__module__ == "tqdm.notebook" for cls in tqdm.__mro__) or _isatty(sys.stderr):
        return tqdm
    return None


class Monitor:
    """Engine callback: logs each iteration, advances the progress bar and
    calls the user's ``callback`` with :func:`iteration_event`'s dict.

    Parameters
    ----------
    callback : callable or None
    progress : bool
        Show a tqdm bar on stderr when stderr is a terminal (or a notebook
        shows the bar as a widget); otherwise, or without tqdm, send the INFO
        summaries of the ``daskgmm`` logger to stderr, one line per
        iteration, for the duration of the fit.
    max_iter, start_iter : int
    """

    def __init__(self, callback=None, *, progress=False, max_iter=0, start_iter=0):
        if callback is not None and not callable(callback):
            raise ValueError(f"callback must be callable (it is called with a dict per iteration), got {callback!r}.")
        self.callback = callback
        self.progress = progress
        self.max_iter = max_iter
        self.start_iter = start_iter
        self.bar = None
        self._handler = None
        self._level = None

    def _start_progress(self):
        # Started on the first iteration, so that nothing is left open when
        # initialisation fails.
        self.progress = False
        tqdm = _progress_bar_class()
        if tqdm is None:
            self._handler = logging.StreamHandler(sys.stderr)
            self._handler.setFormatter(logging.Formatter("daskgmm: %(message)s"))
            logger.addHandler(self._handler)
            self._level = logger.level
            if not logger.isEnabledFor(logging.INFO):
                logger.setLevel(logging.INFO)
        else:
            self.bar = tqdm(total=self.max_iter, initial=self.start_iter, desc="EM", unit="it", file=sys.stderr)

    def __call__(self, info):
        if self.progress:
            self._start_progress()
        event = iteration_event(info)
        logger.info(
            "iteration %d: lower bound %.10g, change %.3g (run %d of %d, %d active), %.3fs, %d chunks",
            event["iteration"],
            event["lower_bound"],
            event["change"],
            event["best_run"],
            len(event["active"]),
            sum(event["active"]),
            event["seconds"],
            event["n_chunks"],
            extra={"iteration_event": event},  # for handlers that format it their own way (the CLI)
        )
        if self.bar is not None:
            self.bar.update(event["iteration"] - self.bar.n)
            self.bar.set_postfix(lower_bound=f"{event['lower_bound']:.6g}", change=f"{event['change']:.2g}")
        if self.callback is not None:
            self.callback(event)

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self._handler is not None:
            logger.removeHandler(self._handler)
            logger.setLevel(self._level)
            self._handler = None
