"""Observing a fit, in one place: the per-iteration event given to user
callbacks, the ``daskgmm`` logger's INFO summaries, the optional progress
bar, scikit-learn's ``verbose`` lines and the command line's lines."""

from __future__ import annotations

import logging
import math
import sys
import time

import numpy as np

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


def iteration_line(event):
    """The command line's line of one EM iteration (an event of :func:`iteration_event`)."""
    change = f"change {event['change']: .2e}" if np.isfinite(event["change"]) else f"{'':16}"
    return (
        f"iteration {event['iteration']:4d}  log-likelihood {event['lower_bound']: .8f}  {change}  "
        f"({event['seconds']:.2f} s, {sum(event['active'])}/{len(event['active'])} runs, {event['n_chunks']} chunks)"
    )


class _IterationLines(logging.Formatter):
    """The command line's format: an iteration's record as :func:`iteration_line`, others as their message."""

    def format(self, record):
        event = getattr(record, "iteration_event", None)
        return iteration_line(event) if event is not None else record.getMessage()


class _Lines(logging.StreamHandler):
    """The ``daskgmm`` logger's records as lines on a stream, written above
    the monitor's bar while it shows one (the bar redraws itself below)."""

    def __init__(self, monitor, stream, formatter):
        super().__init__(stream)
        self.monitor = monitor
        self.setFormatter(formatter)

    def emit(self, record):
        bar = self.monitor.bar
        if bar is None:
            super().emit(record)
            return
        try:
            bar.write(self.format(record), file=self.stream)
        except Exception:
            self.handleError(record)


def _terminal_bar_class(stream):
    """tqdm's console bar for ``stream`` when it is a terminal, else None
    (the command line's bar: a file or a pipe gets the lines only)."""
    if not _isatty(stream):
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm


class Monitor:
    """The one observer of a fit: the engine callback behind ``fit``'s
    ``callback`` and ``progress``, the estimators' ``verbose`` and the
    command line's display.

    Each iteration it builds :func:`iteration_event`'s dict and, as
    configured, logs it (an INFO summary on the ``daskgmm`` logger, the
    event attached for handlers that format it their own way), advances a
    progress bar, calls the user's ``callback`` and prints scikit-learn's
    verbose lines on stdout; :meth:`finished` prints the verbose end line.

    Parameters
    ----------
    callback : callable or None
        Called with the event after every iteration.
    progress : bool
        Show a tqdm bar on stderr when stderr is a terminal (or a notebook
        shows the bar as a widget); otherwise, or without tqdm, send the INFO
        summaries of the ``daskgmm`` logger to stderr, one line per
        iteration, for the duration of the fit.
    max_iter, start_iter : int
        The bar's total and where it starts (a resumed fit's iteration).
    verbose, verbose_interval : int
        scikit-learn's ``verbose`` lines: 1 the start, every
        ``verbose_interval``-th iteration and the end, 2 with each printed
        iteration's time and change of the lower bound.
    log : bool, default=True
        Log each iteration's INFO summary.  The command line's monitor logs
        nothing itself: it shows the records the fit's own monitor logs.
    lines_to : stream, optional
        The command line's display: from now until :meth:`close`, the
        ``daskgmm`` logger's INFO records are written there (an
        iteration's as :func:`iteration_line`, others as their message),
        and a bar is shown there while it is a terminal.  A file or a pipe
        (a batch job's log) gets the lines only: a bar redraws itself with
        carriage returns, which a file keeps as fragments.
    """

    def __init__(
        self, callback=None, *, progress=False, max_iter=0, start_iter=0, verbose=0, verbose_interval=10, log=True,
        lines_to=None,
    ):
        if callback is not None and not callable(callback):
            raise ValueError(f"callback must be callable (it is called with a dict per iteration), got {callback!r}.")
        self.callback = callback
        self.progress = progress
        self.max_iter = max_iter
        self.start_iter = start_iter
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.log = log
        self.lines_to = lines_to
        self.bar = None
        self._handler = None
        self._level = None
        self._observing = bool(log or progress or verbose or callback is not None or lines_to is not None)
        self.start()
        if lines_to is not None:
            # From now: the messages of the initialisation (and after the fit) are shown too.
            self._add_handler(_Lines(self, lines_to, _IterationLines()), level=logging.INFO)

    def start(self):
        """EM starts now: the verbose lines' time lapses count from here."""
        self._tic = self._verbose_tic = time.perf_counter()

    def _add_handler(self, handler, level=logging.NOTSET):
        handler.setLevel(level)
        self._handler = handler
        self._level = logger.level
        if not logger.isEnabledFor(logging.INFO):
            logger.setLevel(logging.INFO)
        logger.addHandler(handler)

    def _start_progress(self):
        # Started on the first iteration, so that nothing is left open when
        # initialisation fails.
        self.progress = False
        tqdm = _progress_bar_class()
        if tqdm is None:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("daskgmm: %(message)s"))
            self._add_handler(handler)
        else:
            self.bar = tqdm(total=self.max_iter, initial=self.start_iter, desc="EM", unit="it", file=sys.stderr)

    def _start_terminal_bar(self, iteration):
        # Started at the first iteration: initialisation is not an EM step.
        tqdm = _terminal_bar_class(self.lines_to)
        if tqdm is not None:
            self.bar = tqdm(
                total=self.max_iter, initial=iteration - 1, desc="EM", unit="it", file=self.lines_to, leave=False,
                dynamic_ncols=True,
            )

    def __call__(self, info):
        if not self._observing:
            return
        if self.progress:
            self._start_progress()
        event = iteration_event(info)
        if self.lines_to is not None and self.bar is None:
            self._start_terminal_bar(event["iteration"])
        if self.log:
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
            if self.lines_to is None:
                self.bar.set_postfix(lower_bound=f"{event['lower_bound']:.6g}", change=f"{event['change']:.2g}")
            else:
                self.bar.set_postfix_str(f"log-likelihood {event['lower_bound']:.6f}")
        if self.callback is not None:
            self.callback(event)
        if self.verbose:
            self._print_verbose(info)

    def _print_verbose(self, info):
        """scikit-learn's ``BaseMixture`` iteration lines; ours start with
        the number of restarts, which run together."""
        it = info["iteration"]
        if it == 1:
            print(f"Initialization ({len(info['runs'])} run(s) in parallel)")
        if it % self.verbose_interval == 0:
            now = time.perf_counter()
            for i in info["active"]:
                run = info["runs"][i]
                change = run.history[-1] - run.history[-2] if len(run.history) > 1 else float("inf")
                if self.verbose > 1:
                    print(f"  Iteration {it}\t time lapse {now - self._verbose_tic:.5f}s\t ll change {change:.5f}")
                else:
                    print(f"  Iteration {it}")
            self._verbose_tic = now

    def finished(self, best):
        """The verbose end line of a fit whose kept run is ``best``
        (scikit-learn's ``_print_verbose_msg_init_end``)."""
        if not self.verbose:
            return
        converged = "converged" if best.converged else "did not converge"
        if self.verbose == 1:
            print(f"Initialization {converged}.")
        else:
            print(
                f"Initialization {converged}. time lapse {time.perf_counter() - self._tic:.5f}s\t "
                f"lower bound {best.lower_bound:.5f}."
            )

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self._handler is not None:
            logger.removeHandler(self._handler)
            logger.setLevel(self._level)
            self._handler = None
