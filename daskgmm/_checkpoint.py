"""Checkpoint and resume of a fit: the EM state written after every iteration.

A checkpoint is an archive of :mod:`daskgmm.io` (``kind`` "checkpoint"),
written atomically (temporary file + rename) so a crash at any moment leaves
either the previous checkpoint or the new one, never a half-written file.

It holds, for every concurrent run (``n_init`` restarts), the parameters,
lower bound, iteration count, convergence flag and per-iteration history,
plus the iteration number and a *fingerprint* of the fit:

* the data's shape and dtype, and the settings that change the answer
  (``n_components``, ``covariance_type``, ``tol``, ``reg_covar``, ``n_init``,
  ``init_params``, ``random_state``, digests of ``*_init`` arrays,
  ``skip_nonfinite``); a checkpoint whose fingerprint differs is refused
  with a ValueError naming every difference.  ``max_iter`` may differ (a
  resumed fit may be given more iterations), so may the chunking,
  ``split_every`` and ``persist`` (they change nothing but rounding and
  speed).
* a cheap summary of the data's *values*: the mean and total variance that
  every EM iterate implies (``sum_k w_k mu_k`` is the data mean after any
  M-step, and the law of total variance gives its spread), so it costs no
  extra pass.  After the first pass of a resumed fit the new iterate's
  summary must match the saved one, or the fit stops with a ValueError
  before the checkpoint is overwritten: this catches "same shape, other
  file" mistakes (but not two data sets with the same mean and variance,
  e.g. both standardised).
"""

from __future__ import annotations

import hashlib
import logging
import numbers
import os

import numpy as np

from ._engine import Run
from .io import read_archive, write_archive

logger = logging.getLogger("daskgmm")

KIND = "checkpoint"
CHECKPOINT_VERSION = 1
RECORD_FIELDS = ("iteration", "lower_bound", "change", "seconds", "n_chunks")
_RUN_ARRAYS = ("weights", "means", "covariances", "precisions_cholesky")


def _digest(value):
    if value is None:
        return None
    array = np.ascontiguousarray(np.asarray(value, dtype=np.float64))
    return hashlib.sha256(repr(array.shape).encode() + array.tobytes()).hexdigest()[:16]


def _seed(random_state):
    if random_state is None or isinstance(random_state, numbers.Integral):
        return None if random_state is None else int(random_state)
    return type(random_state).__name__


def fingerprint(X, estimator, *, skip_nonfinite=False):
    """What must match for a checkpoint to be resumed (a JSON-able dict).

    Parameters
    ----------
    X : dask.array.Array
        The validated data (after dtype conversion).
    estimator : GaussianMixture
    skip_nonfinite : bool
    """
    return {
        "shape": [int(n) for n in X.shape],
        "dtype": str(np.dtype(X.dtype)),
        "n_components": int(estimator.n_components),
        "covariance_type": estimator.covariance_type,
        "tol": float(estimator.tol),
        "reg_covar": float(estimator.reg_covar),
        "n_init": int(estimator.n_init),
        "init_params": estimator.init_params,
        "random_state": _seed(estimator.random_state),
        "weights_init": _digest(estimator.weights_init),
        "means_init": _digest(estimator.means_init),
        "precisions_init": _digest(estimator.precisions_init),
        "skip_nonfinite": bool(skip_nonfinite),
    }


def data_summary(run, n_features):
    """Mean (D,) and total variance of the data implied by an EM iterate.

    After any M-step, ``sum_k w_k mu_k`` is the mean of the fitted rows and
    ``sum_k w_k (tr(Sigma_k) - D reg + |mu_k - mean|^2)`` their total variance
    (law of total variance), both up to rounding; no pass over the data needed.
    """
    weights = np.asarray(run.weights, dtype=np.float64)
    means = np.asarray(run.means, dtype=np.float64)
    cov = np.asarray(run.covariances, dtype=np.float64)
    kind = run.covariance_type
    if kind == "full":
        traces = np.trace(cov, axis1=1, axis2=2)
    elif kind == "tied":
        traces = np.full(weights.shape, np.trace(cov))
    elif kind == "diag":
        traces = cov.sum(axis=1)
    else:
        traces = n_features * cov
    mean = weights @ means
    spread = float(weights @ (traces + np.sum((means - mean) ** 2, axis=1)))
    return np.concatenate([mean, [spread]])


def summaries_match(saved, current, reg_covar, dtype):
    """Whether two :func:`data_summary` vectors describe the same data."""
    n_features = saved.size - 1
    # reg_covar enters every trace identically, so compare spreads without it.
    spread = max(saved[-1] - n_features * reg_covar, 0.0)
    scale = np.sqrt(spread / n_features) + np.abs(saved[:-1])
    # Observed differences for the same data: ~1e-14 (float64), ~3e-6 (float32).
    rtol = 10 * np.sqrt(np.finfo(dtype).eps)
    mean_ok = np.all(np.abs(current[:-1] - saved[:-1]) <= rtol * (scale + np.finfo(np.float64).tiny))
    spread_ok = abs(current[-1] - saved[-1]) <= rtol * (saved[-1] + np.finfo(np.float64).tiny)
    return bool(mean_ok and spread_ok)


# --------------------------------------------------------------------------
# Writing and reading
# --------------------------------------------------------------------------


def _padded(rows, width):
    """Ragged rows of floats -> (n_rows, max_len, width) NaN-padded, lengths."""
    lengths = np.array([len(r) for r in rows], dtype=np.int64)
    out = np.full((len(rows), int(lengths.max(initial=0)), width), np.nan)
    for i, row in enumerate(rows):
        if len(row):
            out[i, : len(row)] = np.asarray(row, dtype=np.float64).reshape(len(row), width)
    return out, lengths


def save_checkpoint(path, runs, iteration, fp, summary=None):
    """Write the state of every run after ``iteration`` atomically to ``path``."""
    from . import __version__

    history, n_history = _padded([list(run.history) for run in runs], 1)
    records, n_records = _padded(
        [[[rec[name] for name in RECORD_FIELDS] for rec in run.records] for run in runs], len(RECORD_FIELDS)
    )
    arrays = {
        f"runs_{name}": np.stack([np.asarray(getattr(run, name), dtype=np.float64) for run in runs])
        for name in _RUN_ARRAYS
    }
    arrays.update(
        runs_lower_bound=np.array([run.lower_bound for run in runs], dtype=np.float64),
        runs_n_iter=np.array([run.n_iter for run in runs], dtype=np.int64),
        runs_converged=np.array([run.converged for run in runs], dtype=bool),
        runs_history=history[:, :, 0],
        runs_n_history=n_history,
        runs_records=records,
        runs_n_records=n_records,
    )
    if summary is not None:
        arrays["data_summary"] = np.asarray(summary, dtype=np.float64)
    meta = {
        "kind": KIND,
        "checkpoint_version": CHECKPOINT_VERSION,
        "daskgmm_version": __version__,
        "iteration": int(iteration),
        "n_runs": len(runs),
        "covariance_type": runs[0].covariance_type,
        "fingerprint": fp,
    }
    write_archive(path, arrays, meta, overwrite=True)
    logger.debug("checkpoint written to %s at iteration %d", path, iteration)


def _describe(value):
    return "None" if value is None else repr(value)


def load_checkpoint(path, fp):
    """Runs, iteration and data summary saved in ``path``.

    Raises
    ------
    ValueError
        ``path`` is not a daskgmm checkpoint, or was written for other data
        or settings than ``fp`` describes (the message lists every difference).
    """
    arrays, meta = read_archive(path)
    if meta.get("kind") != KIND:
        raise ValueError(f"{path} is not a daskgmm checkpoint (it is a saved {meta.get('kind', 'unknown')!r}).")
    saved = meta.get("fingerprint", {})
    differences = [
        f"{name} is {_describe(saved.get(name))} in the checkpoint but {_describe(fp[name])} now"
        for name in fp
        if saved.get(name) != fp[name]
    ]
    if differences:
        raise ValueError(
            f"Cannot resume from checkpoint {path}: it was written for different data or settings ("
            + "; ".join(differences)
            + "). Delete the file or pass another checkpoint path to start a new fit."
        )
    kind = meta["covariance_type"]
    runs = []
    for i in range(int(meta["n_runs"])):
        n_records = int(arrays["runs_n_records"][i])
        records = [
            dict(
                zip(
                    RECORD_FIELDS,
                    (int(r[0]), float(r[1]), float(r[2]), float(r[3]), int(r[4])),
                )
            )
            for r in arrays["runs_records"][i, :n_records]
        ]
        run = Run(
            kind,
            *(np.array(arrays[f"runs_{name}"][i]) for name in _RUN_ARRAYS),
            lower_bound=float(arrays["runs_lower_bound"][i]),
            n_iter=int(arrays["runs_n_iter"][i]),
            converged=bool(arrays["runs_converged"][i]),
            history=[float(v) for v in arrays["runs_history"][i, : int(arrays["runs_n_history"][i])]],
            records=records,
        )
        runs.append(run)
    summary = arrays.get("data_summary")
    return runs, int(meta["iteration"]), summary


def load_if_exists(path, fp):
    """:func:`load_checkpoint` when ``path`` exists, else None (a fresh start)."""
    if path is None or not os.path.exists(os.fspath(path)):
        return None
    return load_checkpoint(path, fp)


class CheckpointWriter:
    """Engine callback: checks the data summary of a resumed fit on its first
    pass, then writes the state of every run after every iteration.

    Parameters
    ----------
    path : str or os.PathLike
    fp : dict, from :func:`fingerprint`
    reg_covar : float
    dtype : numpy dtype of the data
    summary : ndarray, optional
        The saved data summary of the checkpoint resumed from.
    """

    def __init__(self, path, fp, *, reg_covar, dtype, summary=None):
        self.path = os.fspath(path)
        self.fp = fp
        self.reg_covar = reg_covar
        self.dtype = np.dtype(dtype)
        self.summary = None if summary is None else np.asarray(summary, dtype=np.float64)

    def write(self, runs, iteration):
        save_checkpoint(self.path, runs, iteration, self.fp, self.summary)

    def __call__(self, info):
        runs = info["runs"]
        if info["active"]:
            run = runs[info["active"][0]]
            current = data_summary(run, run.means.shape[1])
            if self.summary is None:
                self.summary = current
            elif not summaries_match(self.summary, current, self.reg_covar, self.dtype):
                raise ValueError(
                    f"Cannot resume from checkpoint {self.path}: the data differ from those it was "
                    f"written for (mean/variance {np.round(current, 6).tolist()} now, "
                    f"{np.round(self.summary, 6).tolist()} in the checkpoint) although shape and dtype "
                    "match. Delete the file or pass another checkpoint path to start a new fit."
                )
        self.write(runs, info["iteration"])
