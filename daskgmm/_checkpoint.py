"""Checkpoint and resume of a fit: the EM state written after every iteration.

A checkpoint is an archive of :mod:`daskgmm._archive` (``kind`` "checkpoint"),
written atomically (temporary file + rename) so a crash at any moment leaves
either the previous checkpoint or the new one, never a half-written file.

It holds, for every concurrent run (``n_init`` restarts), the parameters
and posterior (``runs_<name>``, the fields of those kinds that
:mod:`daskgmm._state` declares), lower bound, iteration count, convergence
flag and per-iteration history, plus the iteration number and a
*fingerprint* of the fit:

* the data's shape and dtype, and the settings that change the answer
  (``n_components``, ``covariance_type``, ``tol``, ``reg_covar``, ``n_init``,
  ``init_params``, ``random_state``, digests of ``*_init`` arrays,
  ``skip_nonfinite``, ``m_step_max_iter``, ``m_step_tol``); a checkpoint whose fingerprint differs is refused
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
  e.g. both standardised).  The summary also records how many rows the fit
  used (with sample weights, their total), so the same values under
  another NaN mask are refused too.  With ``missing='marginalize'`` the
  iterates describe completed rows instead, so the fingerprint holds a
  digest of the counting pass (:func:`observed_digest`: each feature's
  observed sum, count and centred sum of squares).
* A *finished* checkpoint (every run converged, or ``max_iter`` reached)
  would return its model with no pass at all, so :func:`load_if_exists`
  makes one verifying pass first: one E-step and M-step from the saved
  parameters (weighted as the fit was), whose summary must match the saved
  one (the law of total variance holds for any responsibilities, so the
  parameters need not move).  That pass is the price of never returning a model fitted to other
  data; a checkpoint written before the first iteration (``max_iter=0``)
  holds no summary and is checked by shape and dtype only.

Every field of a checkpoint is validated on load (ValueError naming it), as
for saved models (:func:`daskgmm._archive.check_parameters`).

One checkpoint path serves one fit at a time.  Each writer signs the file
(``writer``: host, process, a random id); before every write it checks that
the file is still the one it last wrote (or, for a fresh fit, that there is
none, claimed atomically; for a resumed one, the one it loaded).  A second
fit on the same path therefore stops with a ValueError naming the other
process instead of overwriting its state, and the check and the write are
serialised between processes on this host by a lock on the folder.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import logging
import numbers
import os
import socket
import uuid

import numpy as np

from ._blocks import Stats
from ._covariance import DEFAULT_M_STEP_CONTROL, MStepControl, covariance_model
from ._families import GAUSSIAN, Run, m_step
from ._archive import (
    RECORD_FIELDS,
    check_array,
    check_integer,
    check_parameters,
    check_records,
    check_statistics,
    invalid,
    read_archive,
    records_array,
    records_from_array,
    statistics_arrays,
    write_archive,
)
from ._state import GAUSSIAN_MIXTURE, PARAMETER, Layout
from ._version import __version__

logger = logging.getLogger("daskgmm")

KIND = "checkpoint"
CHECKPOINT_VERSION = 1
# A run's parameters: those of every estimator's state (``runs_<name>``).
_PARAMETERS = GAUSSIAN_MIXTURE.of_kind(PARAMETER)


def _digest(value):
    if value is None:
        return None
    array = np.ascontiguousarray(np.asarray(value, dtype=np.float64))
    return hashlib.sha256(repr(array.shape).encode() + array.tobytes()).hexdigest()[:16]


def _seed(random_state):
    if random_state is None or isinstance(random_state, numbers.Integral):
        return None if random_state is None else int(random_state)
    return type(random_state).__name__


class Fingerprint(dict):
    """The JSON entries saved in a checkpoint and compared on resume, plus
    what :func:`load_if_exists` needs to verify a finished checkpoint against
    the data (attributes, never saved): ``data``, ``weights`` and
    ``weight_scale`` (the fit's, as ``_engine.inputs.check_sample_weight`` gives
    them), ``max_iter``, ``split_every``, ``skip_nonfinite``; and, once
    loaded, ``loaded_writer`` (the signature of the file resumed from, or
    None for a fresh start)."""

    data = None
    weights = None
    weight_scale = 1.0
    max_iter = None
    split_every = None
    skip_nonfinite = False
    # Names of the family's posterior arrays a checkpoint must hold.
    posterior_names = ()
    # Passes over ``data`` that load_if_exists made (1 when it verified a
    # finished checkpoint): the estimator adds them to ``n_passes_``.
    passes = 0


_NOT_LOADED = object()


def fingerprint(X, estimator, *, skip_nonfinite=False, sample_weight=None, weight_scale=1.0):
    """What must match for a checkpoint to be resumed (a JSON-able dict).

    Parameters
    ----------
    X : dask.array.Array
        The validated data (after dtype conversion).
    estimator : GaussianMixture
    skip_nonfinite : bool
    sample_weight : None, ndarray or dask.array.Array
        The fit's weights, divided by ``weight_scale`` (a power of two), as
        the fit's passes use them.
    weight_scale : float

    Returns
    -------
    Fingerprint
    """
    fp = Fingerprint({
        "shape": [int(n) for n in X.shape],
        "dtype": str(np.dtype(X.dtype)),
        "n_components": int(estimator.n_components),
        "covariance_type": estimator.covariance_type,
        "tol": float(estimator.tol),
        "reg_covar": float(estimator.reg_covar),
        "n_init": int(estimator.n_init),
        "init_params": estimator.init_params,
        "random_state": _seed(estimator.random_state),
        "weights_init": _digest(getattr(estimator, "weights_init", None)),
        "means_init": _digest(getattr(estimator, "means_init", None)),
        "precisions_init": _digest(getattr(estimator, "precisions_init", None)),
        "skip_nonfinite": bool(skip_nonfinite),
        "family": getattr(estimator, "_family_name", "gaussian"),
        "missing": getattr(estimator, "missing", "error"),
        "observed": None,
        "m_step_max_iter": int(getattr(estimator, "m_step_max_iter", DEFAULT_M_STEP_CONTROL.max_iter)),
        "m_step_tol": float(getattr(estimator, "m_step_tol", DEFAULT_M_STEP_CONTROL.tol)),
    })
    for name in getattr(estimator, "_prior_params", ()):
        value = getattr(estimator, name)
        fp[name] = _digest(value) if value is not None and np.ndim(value) else value
    fp["sample_weight"] = weights_digest(sample_weight, weight_scale)
    fp.data = X
    fp.weights = sample_weight
    fp.weight_scale = weight_scale
    fp.max_iter = int(estimator.max_iter)
    fp.split_every = getattr(estimator, "split_every", None)
    fp.skip_nonfinite = bool(skip_nonfinite)
    fp.loaded_writer = _NOT_LOADED
    fp.posterior_names = tuple(getattr(estimator, "_posterior_names", ()))
    return fp


def weights_digest(weights, weight_scale=1.0):
    """What a checkpoint records of the sample weights (``weights`` times
    ``weight_scale``, exactly: the weights the user gave): None
    (unweighted), a digest of NumPy weights, or "dask" (their values are
    checked through the data summary, whose row count is the total weight)."""
    if weights is None:
        return None
    if isinstance(weights, np.ndarray):
        return _digest(weights * weight_scale)
    return "dask"


def observed_digest(summary, weight_scale=1.0):
    """What a checkpoint of a fit with missing features records of the
    data's values (:func:`daskgmm._blocks_missing.missing_summary`, of the
    sample weights divided by ``weight_scale``): the counts of missing
    entries and rows, and the observed per-feature sums, counts and centred
    sums of squares (of the real weights) to 12 significant digits (a
    digest).  The squares tell apart data whose features have the same
    observed means but another spread."""
    counts = [summary[name] for name in ("n_missing_entries", "n_incomplete_rows", "n_empty_rows")]
    values = np.concatenate(
        [np.asarray(summary[name], dtype=np.float64) * weight_scale for name in ("sums", "counts", "scatter")]
    )
    return _digest(np.array([float(f"{v:.12g}") for v in np.concatenate([counts, values])]))


def data_summary(run, n_features):
    """Mean (D,), total variance and number of rows of the data implied by
    an EM iterate, as one (D + 2,) vector.

    After any M-step, ``sum_k w_k mu_k`` is the mean of the fitted rows and
    ``sum_k w_k (tr(Sigma_k) - D reg + |mu_k - mean|^2)`` their total variance
    (law of total variance), both up to rounding; no pass over the data
    needed.  The row count is ``run.n_samples`` (NaN if unknown).
    """
    # The maximum-likelihood moments of the last pass when the engine kept
    # them (any family); else the run's own parameters (a Gaussian iterate).
    moments = getattr(run, "moments", None) or (run.weights, run.means, run.covariances)
    weights, means, cov = (np.asarray(a, dtype=np.float64) for a in moments)
    traces = covariance_model(run.covariance_type).traces(cov, weights.shape[0], n_features)
    mean = weights @ means
    spread = float(weights @ (traces + np.sum((means - mean) ** 2, axis=1)))
    n_samples = np.nan if run.n_samples is None else float(run.n_samples)
    return np.concatenate([mean, [spread, n_samples]])


def summaries_match(saved, current, reg_covar, dtype, *, weighted=False):
    """Whether two :func:`data_summary` vectors describe the same data.

    ``saved`` may lack the row count (D + 1 entries, older checkpoints).
    Without weights the row counts are integers, compared exactly; with
    weights they are sums of the weights, whose rounding depends on the
    chunking (which a resumed fit may change)."""
    n_features = current.size - 2
    if saved.size == n_features + 2:
        if np.isfinite(saved[-1]) and np.isfinite(current[-1]):
            # Sums in the data's dtype, in a tree whose shape may differ.
            tolerance = 1000 * np.finfo(dtype).eps * max(abs(saved[-1]), abs(current[-1])) if weighted else 0.0
            if abs(saved[-1] - current[-1]) > tolerance:
                return False
        saved = saved[:-1]
    current = current[: n_features + 1]
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


def save_checkpoint(path, runs, iteration, fp, summary=None, *, writer=None, overwrite=True):
    """Write the state of every run after ``iteration`` atomically to ``path``.

    ``writer`` (a JSON dict) signs the file; ``overwrite=False`` claims a new
    path (FileExistsError if it exists)."""
    history, n_history = _padded([list(run.history) for run in runs], 1)
    records, n_records = _padded([records_array(run.records) for run in runs], len(RECORD_FIELDS))
    arrays = {
        f"runs_{field.name}": np.stack([np.asarray(getattr(run, field.key), dtype=np.float64) for run in runs])
        for field in _PARAMETERS
    }
    for name in runs[0].posterior:
        arrays[f"runs_posterior_{name}"] = np.stack([np.asarray(run.posterior[name], dtype=np.float64) for run in runs])
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
    if all(run.statistics is not None for run in runs):
        # What a stream of partial_fit after the resumed fit continues from.
        fields = zip(*(run.statistics[1:] for run in runs))
        stacked = [np.stack([np.asarray(value) for value in values]) for values in fields]
        arrays.update(statistics_arrays("runs_statistics", Stats(runs[0].statistics.covariance_type, *stacked)))
    meta = {
        "kind": KIND,
        "checkpoint_version": CHECKPOINT_VERSION,
        "daskgmm_version": __version__,
        "iteration": int(iteration),
        "n_runs": len(runs),
        "covariance_type": runs[0].covariance_type,
        "fingerprint": dict(fp),
    }
    if writer is not None:
        meta["writer"] = writer
    write_archive(path, arrays, meta, overwrite=overwrite)
    logger.debug("checkpoint written to %s at iteration %d", path, iteration)


def _describe(value):
    return "None" if value is None else repr(value)


_REMEDY = "the checkpoint is corrupt: delete it to start the fit afresh."


def _field(path, arrays, name, shape, *, integers=False):
    """Array ``name`` of the checkpoint, present and of ``shape`` (float64,
    or int64 with ``integers``), or ValueError naming it."""
    if name not in arrays:
        raise invalid(path, name, "is missing", remedy=_REMEDY)
    values = check_array(path, name, arrays[name], shape, kinds="biuf" if integers else "fiu", remedy=_REMEDY)
    if integers:
        if not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
            raise invalid(path, name, "holds values that are not integers", remedy=_REMEDY)
        return values.astype(np.int64)
    return values


def _posterior_field(path, arrays, name, n_runs, n_components):
    """A family's posterior array over the runs: (n_runs, ...) with at most
    (2, K) per run (the Dirichlet process's two concentration vectors)."""
    values = arrays[name]
    shape = values.shape
    if values.ndim < 1 or shape[0] != n_runs or values.ndim > 3 or any(n not in (2, n_components) for n in shape[1:]):
        raise invalid(path, name, f"has shape {shape}, not (n_runs, ...) for {n_components} components", remedy=_REMEDY)
    return check_array(path, name, values, shape, remedy=_REMEDY)


def _checked_summary(path, summary, d):
    """The checkpoint's data summary (None if it has none), checked: the
    mean and variance of ``d`` features, finite, the variance >= 0."""
    if summary is None:
        return None
    if summary.shape not in ((d + 1,), (d + 2,)):
        raise invalid(path, "data_summary", f"has shape {summary.shape}, expected ({d + 2},)", remedy=_REMEDY)
    summary = check_array(path, "data_summary", summary, summary.shape, remedy=_REMEDY)
    if not np.all(np.isfinite(summary[: d + 1])) or summary[d] < 0:
        raise invalid(path, "data_summary", "holds NaN, infinite or negative-variance values", remedy=_REMEDY)
    return summary


def _checked_posteriors(path, arrays, fp, r, k):
    """The runs' posterior arrays by name (``runs_posterior_<name>``), the
    names those of the fingerprint's family."""
    posteriors = {
        name[len("runs_posterior_"):]: _posterior_field(path, arrays, name, r, k)
        for name in sorted(arrays)
        if name.startswith("runs_posterior_")
    }
    expected = set(getattr(fp, "posterior_names", ()))
    if isinstance(fp, Fingerprint) and set(posteriors) != expected:
        raise invalid(
            path, "runs_posterior", f"holds {sorted(posteriors)}, expected {sorted(expected)} for this family",
            remedy=_REMEDY,
        )
    return posteriors


def _checked_state(path, arrays, meta, fp):
    """Validate every field of a checkpoint; its runs, iteration and summary."""
    from ._covariance import COVARIANCE_TYPES

    n_runs = check_integer(path, "n_runs", meta.get("n_runs"), minimum=1, remedy=_REMEDY)
    iteration = check_integer(path, "iteration", meta.get("iteration"), minimum=0, remedy=_REMEDY)
    kind = meta.get("covariance_type")
    if not isinstance(kind, str) or kind not in COVARIANCE_TYPES:
        raise invalid(path, "covariance_type", f"is {kind!r}, not one of {COVARIANCE_TYPES}", remedy=_REMEDY)
    if "covariance_type" in fp and kind != fp["covariance_type"]:
        raise invalid(path, "covariance_type", f"is {kind!r} but its fingerprint says {fp['covariance_type']!r}", remedy=_REMEDY)
    if "runs_means" not in arrays or arrays["runs_means"].ndim != 3:
        shape = arrays["runs_means"].shape if "runs_means" in arrays else None
        raise invalid(path, "runs_means", f"has shape {shape}, expected (n_runs, n_components, n_features)", remedy=_REMEDY)
    _, k, d = arrays["runs_means"].shape
    if "n_components" in fp:
        k = fp["n_components"]
    if "shape" in fp:
        d = fp["shape"][1]
    r = n_runs
    layout = Layout(kind, k, d)
    params = {
        field.key: _field(path, arrays, f"runs_{field.name}", (r,) + field.shape(layout)) for field in _PARAMETERS
    }
    lower_bound = _field(path, arrays, "runs_lower_bound", (r,))
    n_iter = _field(path, arrays, "runs_n_iter", (r,), integers=True)
    converged = _field(path, arrays, "runs_converged", (r,), integers=True)
    history = arrays.get("runs_history")
    n_history = _field(path, arrays, "runs_n_history", (r,), integers=True)
    history = _field(path, arrays, "runs_history", (r, history.shape[1] if history is not None and history.ndim == 2 else 0))
    records = arrays.get("runs_records")
    n_records = _field(path, arrays, "runs_n_records", (r,), integers=True)
    width = records.shape[1] if records is not None and records.ndim == 3 else 0
    records = _field(path, arrays, "runs_records", (r, width, len(RECORD_FIELDS)))
    if np.any(n_iter < 0) or np.any(n_iter > iteration):
        raise invalid(path, "runs_n_iter", f"holds {n_iter.tolist()}, not between 0 and the iteration {iteration}", remedy=_REMEDY)
    if np.any((converged != 0) & (converged != 1)):
        raise invalid(path, "runs_converged", f"holds {converged.tolist()}, not true/false", remedy=_REMEDY)
    for name, counts, limit in (("runs_n_history", n_history, history.shape[1]), ("runs_n_records", n_records, width)):
        if np.any(counts < 0) or np.any(counts > limit):
            raise invalid(path, name, f"holds {counts.tolist()}, not between 0 and {limit}", remedy=_REMEDY)
    if np.any(np.isnan(lower_bound)):
        raise invalid(path, "runs_lower_bound", "holds NaN", remedy=_REMEDY)
    summary = _checked_summary(path, arrays.get("data_summary"), d)
    posteriors = _checked_posteriors(path, arrays, fp, r, k)
    statistics = check_statistics(path, "runs_statistics", arrays, kind, k, d, leading=(r,), positive_count=True,
                                  remedy=_REMEDY)
    runs = []
    for i in range(r):
        where = f"{path} (run {i})"
        check_parameters(
            where, kind, **{name: values[i] for name, values in params.items()},
            fields={name: f"runs_{name}" for name in params}, remedy=_REMEDY,
        )
        used = history[i, : n_history[i]]
        if np.any(np.isnan(used)):
            raise invalid(where, "runs_history", "holds NaN", remedy=_REMEDY)
        rows = records[i, : n_records[i]]
        check_records(where, "runs_records", rows, remedy=_REMEDY)
        posterior = {}
        for name, values in posteriors.items():
            if not np.all(np.isfinite(values[i])) or np.any(values[i] <= 0):
                raise invalid(where, f"runs_posterior_{name}", "holds NaN, infinite or non-positive values", remedy=_REMEDY)
            posterior[name] = np.array(values[i])
        runs.append(
            Run(
                kind,
                **{name: np.array(values[i]) for name, values in params.items()},
                posterior=posterior,
                lower_bound=float(lower_bound[i]),
                n_iter=int(n_iter[i]),
                converged=bool(converged[i]),
                history=[float(v) for v in used],
                records=records_from_array(rows),
                statistics=None if statistics is None else Stats(
                    statistics.covariance_type, *(np.array(v[i]) for v in statistics[1:])
                ),
            )
        )
    return runs, iteration, summary


def _read(path, fp):
    arrays, meta = read_archive(path)
    if meta.get("kind") != KIND:
        raise ValueError(f"{path} is not a daskgmm checkpoint (it is a saved {meta.get('kind', 'unknown')!r}).")
    saved = meta.get("fingerprint")
    if not isinstance(saved, dict):
        raise invalid(path, "fingerprint", f"is {type(saved).__name__}, not a JSON object", remedy=_REMEDY)
    # Checkpoints written before the families existed are maximum-likelihood ones.
    # Those before the M-step's inner iterations had settings used mclust's defaults.
    defaults = {
        "family": "gaussian", "sample_weight": None, "missing": "error", "observed": None,
        "m_step_max_iter": DEFAULT_M_STEP_CONTROL.max_iter, "m_step_tol": DEFAULT_M_STEP_CONTROL.tol,
    }
    differences = [
        f"{name} is {_describe(saved.get(name, defaults.get(name)))} in the checkpoint but {_describe(fp[name])} now"
        for name in fp
        if saved.get(name, defaults.get(name)) != fp[name]
    ]
    if differences:
        raise ValueError(
            f"Cannot resume from checkpoint {path}: it was written for different data or settings ("
            + "; ".join(differences)
            + "). Delete the file or pass another checkpoint path to start a new fit."
        )
    runs, iteration, summary = _checked_state(path, arrays, meta, fp)
    return runs, iteration, summary, meta.get("writer")


def load_checkpoint(path, fp):
    """Runs, iteration and data summary saved in ``path``.

    Raises
    ------
    ValueError
        ``path`` is not a daskgmm checkpoint, a field of it is missing or
        invalid (named), or it was written for other data or settings than
        ``fp`` describes (the message lists every difference).
    """
    runs, iteration, summary, _ = _read(path, fp)
    return runs, iteration, summary


def _mismatch(path, current, saved):
    return ValueError(
        f"Cannot resume from checkpoint {path}: the data differ from those it was written for "
        f"(mean, variance and rows {np.round(current, 6).tolist()} now, {np.round(saved, 6).tolist()} in the "
        "checkpoint) although shape and dtype match. Delete the file or pass another checkpoint path to "
        "start a new fit."
    )


def verify_data(path, fp, runs, summary):
    """One E-step and M-step over ``fp.data`` from the first saved run: the
    summary of the result must match ``summary``, or ValueError."""
    from ._engine.em import em_pass

    probe = copy.deepcopy(runs[0])
    kwargs = {} if fp.split_every is None else {"split_every": fp.split_every}
    # Weighted as the fit was: the summary's row count is the total weight.
    (stats,) = em_pass(fp.data, GAUSSIAN, [probe], skip_nonfinite=fp.skip_nonfinite, weights=fp.weights, **kwargs)
    probe.n_samples = float(stats.n_samples) * fp.weight_scale
    if probe.n_samples == 0:
        raise ValueError("No finite samples left to fit.")
    m_step(probe, stats, fp["reg_covar"], MStepControl(fp["m_step_max_iter"], fp["m_step_tol"]))
    current = data_summary(probe, probe.means.shape[1])
    if not summaries_match(summary, current, fp["reg_covar"], np.dtype(fp["dtype"]), weighted=fp.weights is not None):
        raise _mismatch(path, current, summary)


def load_if_exists(path, fp):
    """:func:`load_checkpoint` when ``path`` exists, else None (a fresh start).

    A finished checkpoint (nothing left to iterate with ``fp.max_iter``) is
    verified against ``fp.data`` by one pass (:func:`verify_data`) before its
    runs are returned."""
    if path is None:
        return None
    path = os.fspath(path)
    if not os.path.exists(path):
        if isinstance(fp, Fingerprint):
            fp.loaded_writer = None
        return None
    runs, iteration, summary, writer = _read(path, fp)
    if isinstance(fp, Fingerprint):
        fp.loaded_writer = writer
        finished = all(run.converged for run in runs) or (fp.max_iter is not None and iteration >= fp.max_iter)
        if finished and fp.data is not None and summary is not None:
            verify_data(path, fp, runs, summary)
            fp.passes += 1
    return runs, iteration, summary


def _signature():
    return {"host": socket.gethostname(), "pid": os.getpid(), "id": uuid.uuid4().hex}


def _who(writer):
    if not isinstance(writer, dict):
        return "another fit"
    return f"another fit (process {writer.get('pid')} on {writer.get('host')})"


@contextlib.contextmanager
def _folder_lock(path):
    """An exclusive lock on the checkpoint's folder while its owner is
    checked and the file replaced (best effort: none where the platform or
    file system offers no flock on folders)."""
    try:
        import fcntl

        fd = os.open(os.path.dirname(os.path.abspath(path)) or ".", os.O_RDONLY)
    except (ImportError, OSError):
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            pass
        yield
    finally:
        os.close(fd)  # releases the lock


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
    check_data : bool
        Compare the data summary of the iterates with the saved one (False
        when the fingerprint checks the data's values itself).
    """

    def __init__(self, path, fp, *, reg_covar, dtype, summary=None, check_data=True):
        self.path = os.fspath(path)
        self.fp = fp
        self.reg_covar = reg_covar
        self.dtype = np.dtype(dtype)
        self.summary = None if summary is None else np.asarray(summary, dtype=np.float64)
        # False when the fingerprint checks the data itself (missing features).
        self.check_data = check_data
        self.signature = _signature()
        # What the file must hold before this writer's first write: the
        # signature it was resumed from, None (no file: a fresh fit), or
        # _NOT_LOADED (not known: no ownership check before the first write).
        self.expected = getattr(fp, "loaded_writer", _NOT_LOADED)
        self.written = False

    def _taken(self, current):
        return ValueError(
            f"Checkpoint {self.path} was written by {_who(current)} while this fit was using it: two fits "
            "cannot share a checkpoint path. This fit stops and leaves the file as the other fit wrote it; "
            "give each fit its own checkpoint path."
        )

    def write(self, runs, iteration):
        with _folder_lock(self.path):
            expected = self.signature if self.written else self.expected
            if expected is not _NOT_LOADED and not os.path.exists(self.path):
                expected = None  # removed meanwhile: nothing to lose, claim the path again
            if expected is None:
                try:
                    save_checkpoint(
                        self.path, runs, iteration, self.fp, self.summary, writer=self.signature, overwrite=False
                    )
                except FileExistsError:
                    current = read_archive(self.path, metadata_only=True)[1].get("writer")
                    raise self._taken(current) from None
            else:
                if expected is not _NOT_LOADED:
                    current = read_archive(self.path, metadata_only=True)[1].get("writer")
                    if current != expected:
                        raise self._taken(current)
                save_checkpoint(self.path, runs, iteration, self.fp, self.summary, writer=self.signature)
        self.written = True

    def __call__(self, info):
        runs = info["runs"]
        if info["active"] and self.check_data:
            run = runs[info["active"][0]]
            current = data_summary(run, run.means.shape[1])
            if self.summary is None:
                self.summary = current
            elif not summaries_match(
                self.summary, current, self.reg_covar, self.dtype, weighted=getattr(self.fp, "weights", None) is not None
            ):
                raise _mismatch(self.path, current, self.summary)
        self.write(runs, info["iteration"])
