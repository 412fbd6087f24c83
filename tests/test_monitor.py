"""Observing a fit (daskgmm._monitor): the per-iteration callback, ``history_``,
the ``daskgmm`` logger and the progress bar."""

from __future__ import annotations

import logging
import math
import re
import sys

import numpy as np
import pytest

import dask.array as da

from daskgmm import GaussianMixture

from .conftest import make_blobs

EVENT_KEYS = {
    "iteration", "lower_bound", "change", "best_run", "seconds", "n_chunks",
    "lower_bounds", "changes", "active", "converged",
}

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def X():
    data, _, _ = make_blobs(n=600, d=2, k=3, seed=5)
    return da.from_array(data, chunks=(100, -1))


def test_callback_gets_one_event_per_iteration_for_all_runs(X):
    events = []
    gm = GaussianMixture(3, n_init=3, tol=1e-4, max_iter=50, random_state=0, init_params="random").fit(
        X, callback=events.append
    )
    assert [e["iteration"] for e in events] == list(range(1, len(events) + 1))
    for event in events:
        assert set(event) == EVENT_KEYS
        assert len(event["lower_bounds"]) == len(event["changes"]) == len(event["active"]) == 3
        assert event["n_chunks"] == 6 and event["seconds"] > 0
        assert event["lower_bound"] == max(event["lower_bounds"])
        assert event["lower_bound"] == event["lower_bounds"][event["best_run"]]
        assert event["change"] == event["changes"][event["best_run"]]
    assert events[0]["changes"] == [math.inf] * 3 and all(events[0]["active"])
    # Runs converge at different iterations and then drop out of the passes.
    finished = [next(e["iteration"] for e in events if e["converged"][i]) for i in range(3)]
    assert len(set(finished)) > 1
    for i, stop in enumerate(finished):
        assert all(not e["active"][i] for e in events if e["iteration"] > stop)
        assert all(e["active"][i] for e in events if e["iteration"] <= stop)
    last = events[-1]
    assert last["lower_bound"] == gm.lower_bound_
    assert all(last["converged"]) and gm.converged_


def test_history_is_kept_on_the_model(X):
    gm = GaussianMixture(3, tol=0, max_iter=7, random_state=0).fit(X)
    assert [h["iteration"] for h in gm.history_] == list(range(1, 8))
    assert [h["lower_bound"] for h in gm.history_] == gm.lower_bounds_
    assert gm.history_[0]["change"] == math.inf
    np.testing.assert_allclose([h["change"] for h in gm.history_[1:]], np.diff(gm.lower_bounds_), rtol=1e-12)
    assert all(h["n_chunks"] == 6 and h["seconds"] > 0 for h in gm.history_)
    assert set(gm.history_[0]) == {"iteration", "lower_bound", "change", "seconds", "n_chunks"}


def test_logger_reports_each_iteration(X, caplog):
    with caplog.at_level(logging.DEBUG, logger="daskgmm"):
        GaussianMixture(3, n_init=2, tol=0, max_iter=4, random_state=0).fit(X)
    info = [r.getMessage() for r in caplog.records if r.name == "daskgmm" and r.levelno == logging.INFO]
    debug = [r.getMessage() for r in caplog.records if r.name == "daskgmm" and r.levelno == logging.DEBUG]
    assert len(info) == 4
    assert info[0].startswith("iteration 1: lower bound ") and "6 chunks" in info[0] and "2 active" in info[0]
    assert sum(m.startswith("iteration 3 run 1: lower bound") for m in debug) == 1


@pytest.fixture
def terminal_stderr(monkeypatch):
    """A stream on a pseudo-terminal, and a function returning what was
    written to it.  (Set as sys.stderr in the test itself: pytest's capture
    sets sys.stderr again after the fixtures.)"""
    import fcntl
    import os
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a new pty has 0 columns
    os.set_blocking(master, False)
    stream = open(slave, "w", encoding="utf-8", closefd=True)
    received = []

    def written():
        stream.flush()
        while True:
            try:
                received.append(os.read(master, 65536))
            except BlockingIOError:
                return b"".join(received).decode()

    yield stream, written
    stream.close()
    os.close(master)


def test_progress_bar_uses_tqdm_on_a_terminal(X, terminal_stderr, monkeypatch):
    pytest.importorskip("tqdm")
    stream, written = terminal_stderr
    monkeypatch.setattr(sys, "stderr", stream)
    GaussianMixture(3, tol=0, max_iter=5, random_state=0).fit(X, progress=True)
    err = written()
    assert "EM" in err and "5/5" in err and "lower_bound=" in err


def test_progress_off_a_terminal_is_one_log_line_per_iteration(X, capsys):
    """stderr a file or a pipe (a batch job's log): no bar, whose carriage
    returns a file keeps, even with tqdm installed."""
    pytest.importorskip("tqdm")
    logger = logging.getLogger("daskgmm")
    level, handlers = logger.level, list(logger.handlers)
    gm = GaussianMixture(3, tol=0, max_iter=5, random_state=0).fit(X, progress=True)
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.splitlines()
    assert [line.split(":")[1] for line in lines] == [f" iteration {i}" for i in range(1, 6)]
    assert all(line.startswith("daskgmm: iteration ") for line in lines)
    assert f"lower bound {gm.lower_bounds_[-1]:.10g}," in lines[-1]
    assert logger.level == level and logger.handlers == handlers


def test_progress_without_tqdm_falls_back_to_logging(X, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # import raises ImportError
    logger = logging.getLogger("daskgmm")
    level, handlers = logger.level, list(logger.handlers)
    GaussianMixture(3, tol=0, max_iter=3, random_state=0).fit(X, progress=True)
    err = capsys.readouterr().err
    assert err.count("daskgmm: iteration ") == 3
    assert logger.level == level and logger.handlers == handlers


def test_callback_exception_stops_the_fit(X):
    class Stop(Exception):
        pass

    seen = []

    def callback(event):
        seen.append(event["iteration"])
        if event["iteration"] == 2:
            raise Stop

    gm = GaussianMixture(3, tol=0, max_iter=10, random_state=0)
    with pytest.raises(Stop):
        gm.fit(X, callback=callback, progress=True)
    assert seen == [1, 2]
    assert not hasattr(gm, "means_")


def test_callback_must_be_callable(X):
    with pytest.raises(ValueError, match="callback must be callable"):
        GaussianMixture(3).fit(X, callback="print")


def mask_numbers(line):
    return re.sub(r"-?\d+(\.\d+)?(e[+-]?\d+)?|-?inf", "N", line)


@pytest.mark.parametrize("verbose", [1, 2])
def test_verbose_prints_scikit_learns_lines(capsys, verbose):
    from sklearn.mixture import GaussianMixture as SkGaussianMixture

    data, _, _ = make_blobs(n=600, d=2, k=3, seed=5)
    settings = dict(n_components=3, tol=1e-4, random_state=0, verbose=verbose, verbose_interval=1)
    GaussianMixture(**settings).fit(da.from_array(data, chunks=(100, -1)))
    ours = capsys.readouterr().out.splitlines()
    SkGaussianMixture(**settings).fit(data)
    theirs = capsys.readouterr().out.splitlines()
    assert "\\" not in "".join(ours)
    # The iterations' and the end's lines, numbers aside (the first line
    # differs: our n_init runs start together).
    assert len(ours) > 2
    assert [mask_numbers(line) for line in ours[1:]] == [mask_numbers(line) for line in theirs[1:]]
    if verbose == 1:
        assert ours[-1] == "Initialization converged."
    else:
        assert re.fullmatch(r"Initialization converged\. time lapse \d+\.\d{5}s\t lower bound -?\d+\.\d{5}\.", ours[-1])
        assert re.fullmatch(r"  Iteration \d+\t time lapse \d+\.\d{5}s\t ll change -?\d+\.\d{5}", ours[-2])


def test_the_command_lines_display_is_a_monitor_writing_lines_above_its_bar(X, terminal_stderr):
    """cli.Progress is the one Monitor configured for the command line: on a
    terminal, each iteration's line is written whole above the bar."""
    pytest.importorskip("tqdm")
    from daskgmm import cli
    from daskgmm._monitor import Monitor
    from daskgmm.mixture import _fit_rows

    stream, written = terminal_stderr
    logger = logging.getLogger("daskgmm")
    level, handlers = logger.level, list(logger.handlers)
    progress = cli.Progress(4, out=stream)
    assert isinstance(progress, Monitor)
    try:
        gm = _fit_rows(GaussianMixture(3, tol=0, max_iter=4, random_state=0), X, callbacks=[progress])
    finally:
        progress.close()
    assert logger.level == level and logger.handlers == handlers
    err = written()
    assert "EM" in err and "4/4" in err and "log-likelihood" in err
    # A terminal ends lines with \r\n; the bar is cleared with \r before each line.
    lines = [piece.rstrip("\r").split("\r")[-1] for piece in err.split("\n") if "iteration " in piece]
    assert [line[:14] for line in lines] == [f"iteration {i:4d}" for i in range(1, 5)]
    assert f"log-likelihood {gm.lower_bounds_[-1]: .8f}" in lines[-1]
