"""The user-facing estimator: scikit-learn's ``GaussianMixture`` contract on
Dask arrays.  The only module that knows about scikit-learn's API.

Warnings
--------
UnfinishedPassWarning
    A model of ``partial_fit_mode='exact'`` is used (predicted with, scored,
    sampled) while a pass is in progress: its parameters are those from
    before the pass until :meth:`GaussianMixture.end_pass`.  Saving it
    warns not: the file keeps the unfinished pass.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import logging
import math
import numbers
import os
import sys
import time
import warnings
from abc import ABCMeta, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import ArrayLike

from . import _engine, _stats
from ._blocks import merge_statistics
from ._covariance import (
    COVARIANCE_TYPES,
    DEFAULT_COVARIANCE_TYPE,
    DEFAULT_M_STEP_CONTROL,
    CovarianceType,
    covariance_model,
    covariance_shape,
    covariances_from_precisions_cholesky,
    make_model,
    n_parameters,
    precisions_cholesky_from_precisions,
    precisions_from_cholesky,
)
from ._engine.inputs import (  # noqa: F401 - TARGET_CHUNK_BYTES stays importable from here
    TARGET_CHUNK_BYTES,
    as_dask_array,
    check_labels as _check_labels,
    check_sample_weight as _check_sample_weight,
    default_chunk_rows as _default_chunk_rows,
    is_array_api_array as _is_array_api_array,
    unwrap_container as _unwrap_container,
)
from ._engine.online import ONLINE_MODES
from ._engine.passes import DEFAULT_SPLIT_EVERY
from ._families import GaussianFamily, Run
from ._init import COVERS_EVERY_ROW, PassCounter, Spec, data_box, init_from_resp, initialize
from ._monitor import Monitor
from . import _checkpoint
from ._state import GAUSSIAN_MIXTURE, PARAMETER, run_fields, save_model, set_posterior

if TYPE_CHECKING:
    import dask.array as da
    from typing_extensions import Self

logger = logging.getLogger("daskgmm")

from sklearn.base import BaseEstimator, DensityMixin
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.mixture import GaussianMixture as _SklearnGaussianMixture
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

# NumPy input up to this size is fitted in this process, block by block
# (:class:`daskgmm._engine.InMemoryRows`): the same chunks, block functions
# and merge tree as the Dask path, so the same answers to rounding, without
# a graph per pass.  Past it, the chunks go to Dask's scheduler (threads, or
# the cluster of an active ``Client``).
IN_PROCESS_MAX_BYTES = 8 * 2**20


def check_random_state(seed):
    """NumPy RandomState from None / int / RandomState (scikit-learn's rule)."""
    if seed is None or seed is np.random:
        return np.random.mtrand._rand
    if isinstance(seed, numbers.Integral):
        return np.random.RandomState(seed)
    if isinstance(seed, np.random.RandomState):
        return seed
    raise ValueError(f"{seed!r} cannot be used to seed a numpy.random.RandomState instance.")


def spawn_seeds(random_state, n):
    """``n`` independent 128-bit keys for the row-keyed random streams."""
    if random_state is None:
        base = np.random.SeedSequence().entropy
    elif isinstance(random_state, numbers.Integral):
        base = int(random_state)
    elif isinstance(random_state, np.random.RandomState):
        base = int(random_state.randint(np.iinfo(np.int32).max))
    elif isinstance(random_state, np.random.Generator):
        base = int(random_state.integers(2**63))
    else:
        raise ValueError(f"{random_state!r} cannot be used as random_state: use None, an int or a RandomState.")
    seeds = []
    for child in np.random.SeedSequence(base).spawn(n):
        words = child.generate_state(4, np.uint32)
        seeds.append(int(sum(int(w) << (32 * i) for i, w in enumerate(words))))
    return seeds


def _n_samples(X):
    return X.shape[0] if hasattr(X, "shape") else len(X)


# The settings of partial_fit, shared by every mixture.
ONLINE_PARAMETER_CONSTRAINTS = {
    "partial_fit_mode": [StrOptions(set(ONLINE_MODES))],
    "learning_decay": [Interval(numbers.Real, 0.5, 1, closed="right")],
    "learning_offset": [Interval(numbers.Real, 0, None, closed="left")],
}

MISSING_OPTIONS = ("error", "marginalize")
MISSING_PARAMETER_CONSTRAINTS = {"missing": [StrOptions(set(MISSING_OPTIONS))]}
LABELS_PARAMETER_CONSTRAINTS = {"partial_labels": ["boolean"]}


class UnfinishedPassWarning(UserWarning):
    """A model with ``partial_fit_mode='exact'`` used while a pass is in progress.

    Batches were given to ``partial_fit`` since the last ``end_pass()``,
    whose M-step alone changes the parameters.  Until then predict, score
    and sample use the parameters from before the pass (after the first
    batch: the initialisation from that batch).

    Examples
    --------
    >>> import warnings
    >>> import numpy as np
    >>> from daskgmm import GaussianMixture
    >>> from daskgmm.mixture import UnfinishedPassWarning
    >>> rng = np.random.default_rng(0)
    >>> gmm = GaussianMixture(2, partial_fit_mode="exact", random_state=0)
    >>> gmm = gmm.partial_fit(rng.normal(size=(50, 2)))
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     labels = gmm.predict(rng.normal(size=(5, 2)))
    >>> [w.category is UnfinishedPassWarning for w in caught]
    [True]
    >>> gmm = gmm.end_pass()  # the pass's M-step: no warning from here on
    """


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _user_stacklevel():
    """``stacklevel`` of a warning raised by the caller of this function that
    points at the first frame outside daskgmm: the user's call, however many
    of our functions (and the ``contextlib`` wrappers of those decorated by a
    context manager) lie between it and the warning."""
    frame, level = sys._getframe(1), 1
    while frame is not None and (
        frame.f_code.co_filename.startswith(_PACKAGE_DIR) or frame.f_code.co_filename == contextlib.__file__
    ):
        frame, level = frame.f_back, level + 1
    return level


class MStepConvergenceWarning(ConvergenceWarning):
    """The inner iterations of an M-step without a closed form (VEI, VEE,
    EVE, VVE, VEV) stopped at ``m_step_max_iter`` before their relative
    change met ``m_step_tol`` (mclust's "inner iteration limit reached"):
    that M-step's covariances are not its optimum."""


def _warn_unconverged_m_steps(runs, family):
    """One :class:`MStepConvergenceWarning` for the M-steps of ``runs`` (a
    fit's, all restarts or candidates) whose inner iterations stopped at
    the ``family``'s ``m_step_max_iter`` without meeting its ``m_step_tol``
    (only :class:`daskgmm._families.GaussianFamily` has M-steps without a
    closed form), naming each covariance type and how many of its M-steps
    did."""
    stopped, total = {}, {}
    for run in runs:
        for inner in run.m_step_iterations:
            total[run.covariance_type] = total.get(run.covariance_type, 0) + 1
            if not inner.converged:
                stopped[run.covariance_type] = stopped.get(run.covariance_type, 0) + 1
    if not stopped:
        return
    counts = ", ".join(f"{stopped[name]} of {total[name]} {name} M-steps" for name in stopped)
    warnings.warn(
        f"The inner iterations of {counts} reached m_step_max_iter={family.m_step_max_iter} without meeting "
        f"m_step_tol={family.m_step_tol:g}: "
        "their covariances are not the M-step's optimum. Increase m_step_max_iter.",
        MStepConvergenceWarning,
        stacklevel=_user_stacklevel(),
    )


# Attributes that a fit mutates in place rather than replaces: a call works on
# a copy of them, so that its failure can put the originals back.
_MUTATED_IN_PLACE = ("_online_state",)


def _random_state_draws(random_state):
    """Where a RandomState or Generator given as ``random_state`` is in its
    stream (None for anything else: an int or None draws nothing of the
    estimator's)."""
    if isinstance(random_state, np.random.RandomState):
        return random_state.get_state()
    if isinstance(random_state, np.random.Generator):
        return random_state.bit_generator.state
    return None


@contextlib.contextmanager
def _unchanged_on_error(estimator):
    """Any exception inside leaves ``estimator`` as it was on entry: its
    attributes (the same objects; those mutated in place are worked on as
    copies) and the position of a RandomState it was given, which keeps its
    identity.  The next call then gives what it would have without this one."""
    saved = dict(vars(estimator))
    for name in _MUTATED_IN_PLACE:
        if saved.get(name) is not None:
            setattr(estimator, name, copy.deepcopy(saved[name]))
    random_state = saved.get("random_state")
    draws = _random_state_draws(random_state)
    try:
        yield
    except BaseException:
        vars(estimator).clear()
        vars(estimator).update(saved)
        if isinstance(random_state, np.random.RandomState):
            random_state.set_state(draws)
        elif isinstance(random_state, np.random.Generator):
            random_state.bit_generator.state = draws
        raise


def unchanged_on_error(function):
    """Decorator of a function whose first argument is an estimator it fits:
    an exception leaves the estimator as it was (:func:`_unchanged_on_error`).
    Applied to ``fit``, ``fit_predict``, ``partial_fit``, ``end_pass`` and the
    xarray helpers that call them."""

    @functools.wraps(function)
    def wrapper(estimator, *args, **kwargs):
        with _unchanged_on_error(estimator):
            return function(estimator, *args, **kwargs)

    return wrapper


class _BaseMixture(DensityMixin, BaseEstimator, metaclass=ABCMeta):
    """What every daskgmm mixture shares, as scikit-learn's ``BaseMixture``:
    input validation, the fit (restarts, warm start, checkpoints, monitoring,
    one EM core: :func:`daskgmm._engine.run_em`), online EM and the lazy
    per-row outputs.

    A subclass supplies its family (:mod:`daskgmm._families`) by
    implementing every hook, each an abstract method here:

    ``_check_settings(n_features, n_components=None)``
        Check the subclass's own settings; returns ``checked``.
    ``_make_family(dX, counter, ...)``
        The family the EM loop runs, its data-dependent settings (the
        variational priors) set from passes of its own.
    ``_family(weight_scale=1.0)``
        The family of the fitted settings.
    ``_initial_runs(dX, checked, counter, family, ...)``
        The restarts' first runs.  A fit that initialises calls it with
        ``family`` None: the subclass then sets the family's data-dependent
        settings from the initialisation's own passes where it can, and
        ``_family()`` gives the family the EM loop uses.
    ``_apply_initial_parameters(run, checked)``
        The user-given initial parameters (``weights_init``, ...) over an
        initialised run: scikit-learn's ``_initialize`` and
        ``_initialize_parameters`` call it too.
    ``_model()``
        The fitted model the per-row outputs evaluate.
    ``_get_parameters()``, ``_set_parameters(params)``
        scikit-learn's hooks, with its signatures: code written against
        ``sklearn.mixture`` (its own tests among it) can drive ours.

    and the class attributes ``_state_declaration`` (:mod:`daskgmm._state`:
    its fitted state, which save, load, checkpoints and warm starts
    exchange, and from which the base's ``_run_from_attributes`` and
    ``_set_posterior`` read it, for every subclass), ``_parameter_constraints``
    (scikit-learn's parameter validation) and ``_family_name`` (what a
    checkpoint records).

    daskgmm's own modules (xarray, the command line, model selection) drive
    a mixture through the entry points at the end of this module
    (:func:`_fit_rows`, :func:`_partial_fit_rows`, :func:`_missing_rows`,
    :func:`_adopt_run`, :func:`_best_run`), not through its private
    methods."""

    def __init__(
        self,
        n_components,
        tol,
        reg_covar,
        max_iter,
        n_init,
        init_params,
        random_state,
        warm_start,
        verbose,
        verbose_interval,
        split_every,
        persist,
        partial_fit_mode,
        learning_decay,
        learning_offset,
        missing="error",
        partial_labels=False,
    ):
        # The parameters every mixture shares (scikit-learn's BaseMixture
        # pattern: subclasses store their own and pass these on).
        self.n_components = n_components
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.split_every = split_every
        self.persist = persist
        self.partial_fit_mode = partial_fit_mode
        self.learning_decay = learning_decay
        self.learning_offset = learning_offset
        self.missing = missing
        self.partial_labels = partial_labels

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # NaN entries are then missing features to marginalise, not errors.
        tags.input_tags.allow_nan = self.missing == "marginalize"
        return tags

    # ------------------------------------------------------------------
    # validation
    # ------------------------------------------------------------------

    def _validate_X(self, X, *, reset, known_rows=True):
        """Checked rows of ``X``: a Dask array, or :class:`InMemoryRows` for
        NumPy (array-like, DataFrame) input of at most
        :data:`IN_PROCESS_MAX_BYTES`.

        A Dask DataFrame or a Dask-backed DataArray stays lazy: its Dask
        array of values (:func:`_unwrap_container`; the row count of a
        DataFrame's partitions is computed only if ``known_rows``).
        ``n_features_in_`` and ``feature_names_in_`` (a DataFrame's columns,
        a DataArray's feature coordinate) are set (``reset``) or compared
        with the fitted ones, by scikit-learn's ``validate_data``.  Values
        are not scanned for NaN/inf here: the passes find such rows in the
        sums they compute anyway and name them.
        """
        X, names = _unwrap_container(X, known_rows=known_rows)
        if _engine.is_dask_array(X) or _is_array_api_array(X):
            dX = as_dask_array(X, known_rows=known_rows)
            validate_data(self, dX if names is None else names, skip_check_array=True, reset=reset)
            return dX
        X = validate_data(
            self, X, dtype=[np.float64, np.float32], ensure_all_finite=False, ensure_min_samples=1, reset=reset
        )
        rows = _default_chunk_rows(X.shape[0], X.shape[1], X.dtype.itemsize)
        if X.nbytes <= IN_PROCESS_MAX_BYTES:
            return _engine.InMemoryRows(X, rows)
        return as_dask_array(X, chunk_rows=rows)

    def _warm_start_run(self, n_features, *, continued_by="warm_start=True",
                        advice="Set warm_start=False to fit a new model with these settings."):
        """The fitted model as the start of a warm-started fit (or of
        ``partial_fit``'s next batch); a clear error if the settings no longer
        describe it."""
        k = self.weights_.shape[0]
        expected = covariance_shape(self.covariance_type, self.n_components, n_features)
        if k != self.n_components or self.means_.shape[1] != n_features or self.covariances_.shape != expected:
            fitted = covariance_shape(self.covariance_type, k, self.means_.shape[1])
            what = (
                f"n_components={self.n_components} (the fitted model has {k})"
                if k != self.n_components
                else f"{n_features} features (the fitted model has {self.means_.shape[1]})"
                if self.means_.shape[1] != n_features
                else f"covariance_type={self.covariance_type!r} (the fitted covariances_ have shape "
                f"{self.covariances_.shape}, not {fitted})"
            )
            raise ValueError(f"{continued_by} continues the fitted model, which does not match {what}. {advice}")
        run = self._run_from_attributes()
        # scikit-learn's rule: convergence is measured against the lower
        # bound the previous fit ended with, so one-iteration warm fits converge.
        run.lower_bound = float(getattr(self, "lower_bound_", -np.inf))
        return run

    def _missing_setup(self, dX, weights, counter):
        """What a fit with ``missing='marginalize'`` starts from: one pass over
        ``dX`` counting its missing (NaN) entries and the rows with every
        feature missing (``n_samples_skipped_``), and the mean of every
        feature's observed values.  Without a missing entry the fit is the
        plain one.

        Returns
        -------
        marginalize : bool
            Whether the passes marginalise (some entry is missing).
        init_X, init_weights
            The rows (missing entries imputed with the features' observed
            means) and weights (0 for an empty row) the initialisation runs
            on; ``dX`` and ``weights`` when nothing is missing.
        """
        self.n_samples_skipped_ = 0
        self.n_samples_incomplete_ = 0
        if getattr(self, "missing", "error") != "marginalize":
            return False, dX, weights
        summary = _engine.missing_pass(dX, split_every=self.split_every, weights=weights)
        counter.passes += 1
        self._missing_summary = summary
        self.n_samples_skipped_ = summary["n_empty_rows"]
        self.n_samples_incomplete_ = summary["n_incomplete_rows"] - summary["n_empty_rows"]
        if summary["n_missing_entries"] == 0:
            return False, dX, weights
        n_used = dX.shape[0] - summary["n_empty_rows"]
        if not np.any(summary["counts"] > 0):
            raise _stats.no_effective_weight_error()
        if n_used < self.n_components:
            raise ValueError(
                f"Expected at least n_components = {self.n_components} samples with an observed feature, but "
                f"{summary['n_empty_rows']} of the {dX.shape[0]} samples have every feature missing (NaN), "
                f"leaving {n_used}."
            )
        unobserved = np.flatnonzero(summary["counts"] <= 0)
        if unobserved.size:
            raise ValueError(
                f"Feature(s) {unobserved.tolist()[:10]} have no observed value (every sample of positive weight "
                "misses them): there is nothing to fit them from. Remove those features."
            )
        fill = summary["sums"] / summary["counts"]
        init_X, init_weights = _engine.imputed_rows(dX, fill.astype(dX.dtype), weights)
        logger.info(
            "missing='marginalize': %d missing entries in %d incomplete samples; %d samples with every "
            "feature missing are left out", summary["n_missing_entries"], summary["n_incomplete_rows"],
            summary["n_empty_rows"],
        )
        return True, init_X, init_weights

    def _partial_labels(self, y, dX):
        """The partial labels of a fit: ``y`` checked against the rows ``dX``
        when ``partial_labels`` is set (:func:`_engine.inputs.check_labels`),
        else None (``y`` ignored, scikit-learn's rule for an unsupervised
        estimator).  Returns ``(labels, summary)``: labels None when no row is
        labelled, the summary what a checkpoint records of them (None
        without)."""
        if not self.partial_labels or y is None:
            return None, None
        labels, summary = _check_labels(y, dX, self.n_components)
        return labels, None if labels is None else summary

    # ------------------------------------------------------------------
    # fit
    # ------------------------------------------------------------------

    @unchanged_on_error
    def fit(
        self,
        X: ArrayLike | da.Array,
        y: ArrayLike | da.Array | None = None,
        sample_weight: ArrayLike | da.Array | None = None,
        *,
        checkpoint: str | os.PathLike[str] | None = None,
        callback: Callable[[dict[str, Any]], object] | None = None,
        progress: bool = False,
        **fit_params: Any,
    ) -> Self:
        """Estimate the parameters by EM.

        Parameters
        ----------
        X : dask.array.Array or array-like, shape (n_samples, n_features)
            A Dask array chunked along rows, a Dask DataFrame or a 2-D
            xarray DataArray (Dask-backed ones stay lazy: a DataFrame's
            partitions are its row chunks, their lengths computed once), or
            anything scikit-learn accepts (NumPy, lists, a pandas
            DataFrame).  String column names (a DataArray's: the coordinate
            of its second dimension) become ``feature_names_in_``, checked
            at predict as scikit-learn checks them.  NumPy input up to
            :data:`IN_PROCESS_MAX_BYTES` is fitted in this process.
        y : array-like of int, shape (n_samples,), optional
            Partial labels, used only with ``partial_labels=True`` (else
            ignored, scikit-learn's rule for an unsupervised estimator, whose
            ``Pipeline`` and ``cross_validate`` pass their ``y`` on): -1 for
            an unlabelled sample, else the index of its component, 0 to
            ``n_components - 1`` (NumPy, or a Dask array, rechunked to X's
            rows).  A labelled sample's responsibilities stay one-hot
            throughout EM (semi-supervised EM, as R mclust's ``MclustSSC``;
            see the user guide, "Partial labels").  A wrong shape, a value
            that is not an integer (NaN included) or one outside
            [-1, n_components) is a ValueError naming ``y``.
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative weight of each sample (NumPy, or a Dask array chunked
            like X's rows or rechunked to them): every sum of the fit counts a
            sample with its weight, and every random draw of the
            initialisation picks it with probability in proportion to it, so
            integer weights fit as repeated rows would.  Finite, >= 0, not all
            zero; a ValueError says which is violated.
        checkpoint : str or os.PathLike, optional
            File holding the EM state of every run, rewritten atomically
            after initialisation and after every iteration.  If it exists
            when ``fit`` starts, the fit resumes from it (no initialisation)
            and reaches the same parameters as an uninterrupted fit.  A
            checkpoint written for other data (shape, dtype, row count, or
            mean and variance: checked on the first resumed pass, or, for a
            finished checkpoint, by one pass before its model is returned)
            or other settings (``n_components``, ``covariance_type``,
            ``tol``, ``reg_covar``, ``n_init``, ``init_params``,
            ``random_state``, ``*_init``, the partial labels ``y``) is
            refused with a ValueError, and
            so is a checkpoint another fit is writing.  ``max_iter`` may be
            raised to continue a fit.  The file is kept after the fit;
            delete it to start afresh.
        callback : callable, optional
            Called after every iteration with one dict: ``iteration``,
            ``lower_bound`` and ``change`` (of the best run so far),
            ``best_run``, ``seconds``, ``n_chunks``, and per run
            ``lower_bounds``, ``changes``, ``active``, ``converged`` (lists
            of length ``n_init``).  An exception it raises stops the fit.
        progress : bool, default=False
            Show a progress bar (tqdm, when installed and stderr is a
            terminal or a notebook), else the INFO lines of the ``daskgmm``
            logger on stderr, one per iteration (a batch job's log gets no
            carriage returns).
        **fit_params : dict
            ``callbacks``: a sequence of callables, each called after every
            iteration as ``callback`` is (the command line's progress display
            passes one); ``skip_nonfinite=True``: rows holding NaN or
            infinity are left out of the fit instead of being an error (as
            :func:`daskgmm.xarray.fit` does), their number in
            ``n_samples_skipped_``.  Any other keyword is a TypeError.

        Returns
        -------
        self
            The estimator, fitted.

        Notes
        -----
        Every iteration is logged to the ``logging`` logger ``"daskgmm"``: a
        summary at INFO, each run's figures at DEBUG.

        Examples
        --------
        >>> import numpy as np
        >>> import dask.array as da
        >>> from daskgmm import GaussianMixture
        >>> rng = np.random.default_rng(0)
        >>> X = np.concatenate([rng.normal(-3, 1, (100, 2)), rng.normal(3, 1, (100, 2))])
        >>> gmm = GaussianMixture(2, random_state=0).fit(X)
        >>> gmm.converged_, gmm.n_iter_
        (True, 2)
        >>> print(np.round(gmm.means_, 1))
        [[ 2.9  2.9]
         [-3.1 -2.9]]

        A Dask array chunked along rows gives the same model:

        >>> dX = da.from_array(X, chunks=(50, 2))
        >>> print(np.round(GaussianMixture(2, random_state=0).fit(dX).means_, 1))
        [[ 2.9  2.9]
         [-3.1 -2.9]]

        With the components of a few samples known (-1: unlabelled),
        component 0 is the one the samples labelled 0 belong to:

        >>> y = np.full(200, -1)
        >>> y[[0, 1, 100]] = [0, 0, 1]
        >>> gmm = GaussianMixture(2, random_state=0, partial_labels=True).fit(X, y)
        >>> print(np.round(gmm.means_, 1))
        [[-3.1 -2.9]
         [ 2.9  2.9]]
        """
        self._fit(
            X, y, sample_weight=sample_weight, checkpoint=checkpoint, callback=callback, progress=progress,
            **fit_params,
        )
        return self

    @unchanged_on_error
    def fit_predict(
        self,
        X: ArrayLike | da.Array,
        y: ArrayLike | da.Array | None = None,
        sample_weight: ArrayLike | da.Array | None = None,
        **fit_params: Any,
    ) -> np.ndarray | da.Array:
        """Fit, then return the component labels of ``X``.

        Parameters
        ----------
        X : dask.array.Array or array-like, shape (n_samples, n_features)
            As for :meth:`fit`.
        y : array-like of int, shape (n_samples,), optional
            Partial labels with ``partial_labels=True``, as for :meth:`fit`
            (else ignored).  The labels returned are the fitted model's
            most probable components, as :meth:`predict` gives them, for the
            labelled samples too.
        sample_weight : array-like of shape (n_samples,), optional
            As for :meth:`fit`.
        **fit_params : dict
            As for :meth:`fit` (``checkpoint``, ``callback``, ``progress``,
            ``callbacks``, ``skip_nonfinite``).

        Returns
        -------
        numpy.ndarray or dask.array.Array of shape (n_samples,)
            The label of each sample's most probable component, as
            :meth:`predict` gives it after :meth:`fit`: lazy for Dask input.

        Examples
        --------
        >>> import numpy as np
        >>> from daskgmm import GaussianMixture
        >>> X = np.array([[0.0], [0.1], [0.2], [10.0], [10.1], [10.2]])
        >>> print(GaussianMixture(2, random_state=0).fit_predict(X))
        [1 1 1 0 0 0]
        """
        self._fit(X, y, sample_weight=sample_weight, **fit_params)
        return self.predict(X)

    # ------------------------------------------------------------------
    # online EM
    # ------------------------------------------------------------------

    @unchanged_on_error
    def partial_fit(
        self,
        X: ArrayLike | da.Array,
        y: ArrayLike | da.Array | None = None,
        sample_weight: ArrayLike | da.Array | None = None,
    ) -> Self:
        """Update the model with one batch of samples (online EM).

        The first call initialises the model from this batch as :meth:`fit`
        would (``init_params``, ``*_init``, ``n_init`` restarts: the one whose
        first step ends with the highest lower bound is kept; the variational
        priors' data-dependent defaults from this batch) and sets
        ``n_features_in_``; later calls continue from the current
        parameters, as does the first call on a model fitted by :meth:`fit`.
        Each call makes one E-step pass over the batch (NumPy or Dask, chunked
        along rows) with the current parameters; what follows depends on
        ``partial_fit_mode``:

        * ``'stepwise'`` (stepwise EM, Cappé & Moulines 2009): the batch's
          statistics, per sample, are averaged into the running statistics
          with weight ``gamma_t = (t + learning_offset) ** -learning_decay``
          (``t`` the batch count, ``gamma_1 = 1``), ``s_t = (1 - gamma_t)
          s_{t-1} + gamma_t S_t / n_t``, and the M-step follows at once.
          Every batch counts alike whatever its size; a batch with integer
          ``sample_weight`` counts as its repeated rows.  On a stationary
          stream the model converges to the batch fit's; a drifting one is
          followed with a lag of about ``(1 - gamma_t) / gamma_t`` batches
          (a decay near 0.5 forgets faster).  A stream on a model fitted
          by :meth:`fit` continues the fit: the running statistics start as
          the per-sample statistics of the fit's last pass (those its
          parameters are the M-step of), ``n_samples_seen_`` as their total
          weight, and the fit's data count as ``max(1, round(fit_weight /
          batch_weight))`` earlier batches of the first batch's size, whose
          ``t`` follows them (``n_batch_iter_`` counts only the batches
          given to ``partial_fit``): 10 rows after a fit on 40,000 move the
          model slightly instead of replacing it.  A fitted model without
          those statistics (``max_iter=0``, a file saved before they were
          kept) starts the running statistics from its first batch.
        * ``'exact'``: the batch's statistics are added to those of the
          current pass and the parameters stay as they are, until
          :meth:`end_pass` makes the M-step from the whole pass: a pass over
          the batches, then ``end_pass()``, is one EM iteration of
          :meth:`fit` on their concatenation (for data that arrive in
          pieces or do not fit in memory together), after :meth:`fit` too.
          While a pass is in progress, predict, score and sample use the
          parameters from before it (after the first batch: its
          initialisation) and warn with
          :class:`daskgmm.mixture.UnfinishedPassWarning`; :meth:`save` keeps
          the unfinished pass, which the loaded model continues.

        dask-ml's ``Incremental`` calls ``partial_fit`` once per block of a
        Dask array and never ``end_pass``: use it with the default
        ``partial_fit_mode='stepwise'``.

        A batch with no sample of positive weight and an observed feature
        (every row NaN under ``missing='marginalize'``, the weights all on
        such rows) is a ValueError.  Any exception (a bad batch, an
        interrupt) leaves the estimator exactly as it was before the call,
        its online statistics included, so that the next batch gives the
        model it would have given without the failed one; the same holds
        for :meth:`fit`, :meth:`fit_predict` and :meth:`end_pass`.

        Parameters
        ----------
        X : dask.array.Array or array-like, shape (n_samples, n_features)
            One batch; its number of features (and names) must be the
            first batch's.  The first batch needs at least ``n_components``
            samples.
        y : array-like of int, shape (n_samples,), optional
            The batch's partial labels with ``partial_labels=True``, as for
            :meth:`fit` (else ignored): its labelled samples keep one-hot
            responsibilities in the batch's E-step (and, in the first
            batch, in the initialisation).
        sample_weight : array-like of shape (n_samples,), optional
            As for :meth:`fit`.

        Returns
        -------
        self
            The estimator, updated.

        Notes
        -----
        Attributes after a call: ``n_batch_iter_`` (batches taken into the
        statistics), ``n_samples_seen_`` (their total weight, plus the
        fit's in a stepwise stream continuing one), ``n_iter_``
        (M-steps made: one per batch, or per :meth:`end_pass`),
        ``converged_`` (False in stepwise mode; in exact mode, whether the
        last pass changed the lower bound by less than ``tol``),
        ``lower_bounds_`` and ``history_`` (one entry per M-step).
        ``lower_bound_`` is, in exact mode, the fit's lower bound of the last
        completed pass (-inf before the first :meth:`end_pass`); in stepwise
        mode, the family's bound of the running statistics: for
        :class:`GaussianMixture` the stepwise average of the batches' mean
        log-likelihoods, each measured before its own update; for
        :class:`BayesianGaussianMixture` the evidence lower bound of
        ``n_samples_seen_`` samples with the running statistics, whose
        entropy term mixes responsibilities of earlier parameters: a trend
        to watch, not the batch fit's bound.  The variational M-step takes
        the running per-sample statistics times ``n_samples_seen_`` (as
        stochastic variational inference takes a batch as the whole data set
        repeated): on a stationary stream, the posterior of a batch fit on
        everything seen.

        Examples
        --------
        >>> import numpy as np
        >>> from daskgmm import GaussianMixture
        >>> rng = np.random.default_rng(0)
        >>> def batch():
        ...     return np.concatenate([rng.normal(-3, 1, (50, 2)), rng.normal(3, 1, (50, 2))])
        >>> gmm = GaussianMixture(2, random_state=0)
        >>> for _ in range(20):
        ...     gmm = gmm.partial_fit(batch())
        >>> gmm.n_batch_iter_, gmm.n_samples_seen_
        (20, 2000.0)
        >>> print(np.round(np.sort(gmm.means_[:, 0])))
        [-3.  3.]
        """
        self._validate_params()
        self._partial_fit(X, sample_weight, y=y)
        return self

    @unchanged_on_error
    def end_pass(self) -> Self:
        """End a pass of ``partial_fit_mode='exact'`` with its M-step.

        The M-step is made from the statistics of every batch given to
        :meth:`partial_fit` since the start of the pass (one EM iteration of
        :meth:`fit` on their concatenation), and the next pass starts.
        ``lower_bound_`` becomes the pass's lower bound (for
        :class:`GaussianMixture` the mean log-likelihood per sample with the
        parameters of the pass), ``converged_`` whether it changed by less
        than ``tol`` since the previous pass: a loop over passes may stop
        there.

        Returns
        -------
        self
            The estimator, with the parameters of the pass's M-step.

        Raises
        ------
        ValueError
            No batch of an exact pass was given since the last M-step.

        Examples
        --------
        Exact EM over data that come in pieces: each pass over the pieces,
        then ``end_pass()``, is one iteration of :meth:`fit` on them all.

        >>> import numpy as np
        >>> from daskgmm import GaussianMixture
        >>> rng = np.random.default_rng(0)
        >>> pieces = [rng.normal(-3, 1, (100, 2)), rng.normal(3, 1, (100, 2))]
        >>> gmm = GaussianMixture(2, partial_fit_mode="exact", random_state=0)
        >>> for _ in range(20):
        ...     for piece in pieces:
        ...         gmm = gmm.partial_fit(piece)
        ...     gmm = gmm.end_pass()
        ...     if gmm.converged_:
        ...         break
        >>> gmm.converged_
        True
        >>> print(np.round(np.sort(gmm.means_[:, 0])))
        [-3.  3.]
        """
        state = getattr(self, "_online_state", None)
        if state is None or state.mode != "exact" or state.statistics is None:
            raise ValueError(
                "end_pass() makes the M-step of a pass of partial_fit with partial_fit_mode='exact', "
                "but no batch of such a pass has been given since the last M-step: call partial_fit first."
            )
        tic = time.perf_counter()
        family = self._family(state.weight_scale)
        run = self._continued_run(self.means_.shape[1])
        self._online_step(run, state.statistics, family, family.model(run), tic, n_chunks=state.n_chunks)
        run.converged = abs(run.history[-1] - (run.history[-2] if len(run.history) > 1 else -np.inf)) < self.tol
        self._set_run(run, self.means_.dtype)
        state.statistics, state.n_chunks = None, 0
        self._keep_online_state(state)
        _warn_unconverged_m_steps([run], family)
        return self

    def _keep_online_state(self, state):
        self._online_state = state
        self.n_batch_iter_ = state.n_batch_iter
        self.n_samples_seen_ = state.n_samples_seen

    def _continued_run(self, n_features):
        """The current parameters as a :class:`Run` carrying the model's
        history so far (its M-steps, by :meth:`fit` or online)."""
        run = self._warm_start_run(
            n_features,
            continued_by="partial_fit",
            advice="Call fit, or partial_fit on a new estimator, to start a model with these settings.",
        )
        run.n_iter = int(getattr(self, "n_iter_", 0))
        run.history = list(getattr(self, "lower_bounds_", []))
        run.records = [dict(record) for record in getattr(self, "history_", [])]
        return run

    def _online_step(self, run, stats, family, model, tic, *, n_chunks):
        """The M-step of ``run`` from ``stats`` with its record."""
        previous = run.history[-1] if run.history else -np.inf
        run.n_samples = float(stats.n_samples)
        run.lower_bound = family.step(run, stats, self.reg_covar, model)
        run.n_iter += 1
        run.history.append(run.lower_bound)
        run.records.append(
            {
                "iteration": run.n_iter,
                "lower_bound": run.lower_bound,
                "change": run.lower_bound - previous,
                "seconds": time.perf_counter() - tic,
                "n_chunks": n_chunks,
            }
        )

    def _stepwise_update(self, state, runs, batch_stats, models, weight_scale, tic, dX):
        """Stepwise EM's update of ``state`` by one batch: each run's M-step
        from the running statistics with this batch's; returns the best run,
        whose running statistics ``state`` keeps."""
        gamma = _engine.step_size(state.n_batch_iter + state.batch_offset, self.learning_decay, self.learning_offset)
        step_family = self._family(weight_scale)
        for run, stats, model in zip(runs, batch_stats, models):
            run.tag = _stats.stepwise_statistics(state.statistics, stats, gamma)
            # The M-step takes the running statistics as n_samples_seen
            # samples, counted in this batch's weight units (the family
            # multiplies them back where the real counts matter).
            scaled = _stats.scale_statistics(run.tag, state.n_samples_seen / weight_scale)
            self._online_step(run, scaled, step_family, model, tic, n_chunks=dX.numblocks[0])
        best = _best_run(runs, dX.dtype)
        state.statistics, best.tag = best.tag, None
        return best

    @_engine.fit_session()
    def _partial_fit(self, X, sample_weight, skip_nonfinite=False, y=None):
        """:meth:`partial_fit`; ``skip_nonfinite`` leaves rows holding NaN or
        infinity out (the labelled-data path, :func:`daskgmm.xarray.partial_fit`)."""
        tic = time.perf_counter()
        fitted = all(hasattr(self, name) for name in ("weights_", "means_", "precisions_cholesky_"))
        dX = self._validate_X(X, reset=not fitted)
        n_samples, n_features = dX.shape
        state = getattr(self, "_online_state", None) if fitted else None
        if state is not None and state.mode != self.partial_fit_mode:
            state = None  # the statistics of the other mode cannot be continued
        counter = PassCounter()
        persisted = False
        if fitted:
            weights, weight_scale = _check_sample_weight(sample_weight, dX)
            labels, _ = self._partial_labels(y, dX)
            family = self._family()
            runs = [self._continued_run(n_features)]
        else:
            if self.n_components > n_samples:
                raise ValueError(
                    f"Expected n_samples >= n_components but got n_components = {self.n_components}, "
                    f"n_samples = {n_samples}: the first batch of partial_fit initialises the model "
                    "and needs at least n_components samples."
                )
            checked = self._check_settings(n_features)
            weights, weight_scale = _check_sample_weight(sample_weight, dX)
            labels, _ = self._partial_labels(y, dX)
            # The initialisation makes several passes over this batch.
            dX, weights, persisted = _engine.place_data(dX, self.persist, weights)
            labels = _placed_like(labels, persisted)
            _, init_X, init_weights = (
                (False, dX, weights) if skip_nonfinite else self._missing_setup(dX, weights, counter)
            )
            runs = self._initial_runs(
                init_X, checked, counter, None, skip_nonfinite=skip_nonfinite, sample_weight=init_weights,
                weight_scale=weight_scale, labels=labels,
            )
            family = self._family()
            for run in runs:
                run.lower_bound = -np.inf
        models = [family.model(run) for run in runs]
        # Batches without a NaN take the plain path inside the block function.
        batch_stats = _engine.em_pass(
            dX, family.marginalizing(self.missing == "marginalize" and not skip_nonfinite), runs,
            split_every=self.split_every, models=models, weights=weights, skip_nonfinite=skip_nonfinite,
            labels=labels,
        )
        if not float(batch_stats[0].n_samples) > 0:
            raise _stats.no_effective_weight_error(skip_nonfinite)
        # The batch's statistics count its weights divided by weight_scale;
        # its real total weight:
        batch_weight = float(batch_stats[0].n_samples) * weight_scale
        if state is None:
            # A stepwise stream on parameters that fit made from a pass's
            # statistics continues from those statistics.
            fit_statistics = getattr(self, "_fit_statistics", None) if fitted else None
            if self.partial_fit_mode == "stepwise" and fit_statistics is not None:
                state = _engine.stream_after_fit(fit_statistics, batch_weight)
            else:
                state = _engine.OnlineState(self.partial_fit_mode)
        state.n_samples_seen += batch_weight
        state.n_batch_iter += 1
        if state.mode == "stepwise":
            best = self._stepwise_update(state, runs, batch_stats, models, weight_scale, tic, dX)
        else:
            best = _exact_update(state, runs, batch_stats, weight_scale, n_chunks=dX.numblocks[0])
        if state.mode == "stepwise" or not fitted:
            self._set_run(best, dX.dtype)
        self._keep_online_state(state)
        self.n_passes_ = counter.passes + 1
        # Rows of this batch left out (NaN/inf with skip_nonfinite, every
        # feature missing with missing='marginalize'); with weights, whose
        # total the statistics count, known only from _missing_setup.
        if weights is None:
            self.n_samples_skipped_ = int(n_samples - float(batch_stats[0].n_samples))
        elif skip_nonfinite or (fitted and self.missing == "marginalize"):
            self.n_samples_skipped_ = None
        elif self.missing != "marginalize":
            self.n_samples_skipped_ = 0
        self.persisted_ = persisted
        _warn_unconverged_m_steps(runs, family)
        return self

    @_engine.fit_session()
    def _fit(
        self, X, y=None, *, sample_weight=None, skip_nonfinite=False, callbacks=(), checkpoint=None, callback=None,
        progress=False,
    ):
        """:meth:`fit`: check, place the data, start (a checkpoint, the
        fitted model, or an initialisation), run EM, keep the best run."""
        self._validate_params()
        warm = self.warm_start and hasattr(self, "converged_")
        dX = self._fit_rows_checked(X, reset=not warm)
        n_samples, n_features = dX.shape
        checked = self._check_settings(n_features)
        weights, weight_scale = _check_sample_weight(sample_weight, dX)
        labels, labels_summary = self._partial_labels(y, dX)
        resumed = summary = fingerprint = None
        start_iter = 0
        dX, weights, persisted = _engine.place_data(dX, self.persist, weights)
        labels = _placed_like(labels, persisted)
        counter = PassCounter()
        marginalize, init_X, init_weights = (
            (False, dX, weights) if skip_nonfinite else self._missing_setup(dX, weights, counter)
        )
        if checkpoint is not None:
            fingerprint, resumed = self._open_checkpoint(
                checkpoint, dX, skip_nonfinite=skip_nonfinite, weights=weights, weight_scale=weight_scale,
                marginalize=marginalize, labels_summary=labels_summary,
            )
        if resumed is not None:
            runs, start_iter, summary = resumed
        monitor = Monitor(
            callback, progress=progress, max_iter=self.max_iter, start_iter=start_iter, verbose=self.verbose,
            verbose_interval=self.verbose_interval,
        )
        # A fit that initialises lets the family take its data-dependent
        # settings from the initialisation's passes (family None below).
        initialising = resumed is None and not warm
        family = None if initialising else self._make_family(
            init_X, counter, skip_nonfinite=skip_nonfinite, sample_weight=init_weights, weight_scale=weight_scale
        )
        if resumed is not None:
            logger.info("resuming from checkpoint %s after iteration %d", checkpoint, start_iter)
        elif warm:
            runs = [self._warm_start_run(n_features)]
        else:
            runs = self._initial_runs(
                init_X, checked, counter, family, skip_nonfinite=skip_nonfinite, sample_weight=init_weights,
                weight_scale=weight_scale, labels=labels,
            )
            family = self._family(weight_scale)
        callbacks = list(callbacks)
        if checkpoint is not None:
            # First, so that the state is on disk before any user code runs.
            callbacks.insert(0, self._checkpoint_writer(
                checkpoint, fingerprint, runs, dtype=dX.dtype, summary=summary, marginalize=marginalize,
                resumed=resumed is not None,
            ))
        callbacks.append(monitor)
        monitor.start()
        try:
            runs, n_passes = _engine.run_em(
                dX, runs, tol=self.tol, max_iter=self.max_iter, reg_covar=self.reg_covar,
                split_every=self.split_every, skip_nonfinite=skip_nonfinite, callbacks=callbacks,
                start_iter=start_iter, family=family.marginalizing(marginalize), weights=weights,
                weight_scale=weight_scale, labels=labels,
            )
        finally:
            monitor.close()
        best = _best_run(runs, dX.dtype)
        self._adopt_fit(
            best, dX.dtype, n_samples=n_samples, skip_nonfinite=skip_nonfinite, weighted=weights is not None,
            n_passes=counter.passes + n_passes + (fingerprint.passes if fingerprint is not None else 0),
            persisted=persisted,
        )
        monitor.finished(best)
        _warn_unconverged_m_steps(runs, family)
        if not self.converged_ and self.max_iter > 0:
            warnings.warn(
                "Best performing initialization did not converge. Try different init parameters, "
                "or increase max_iter, tol, or check for degenerate data.",
                ConvergenceWarning,
                stacklevel=3,
            )
        return self

    def _checkpoint_writer(self, checkpoint, fingerprint, runs, *, dtype, summary, marginalize, resumed):
        """The callback that rewrites ``checkpoint`` after every iteration,
        having written the initial state of ``runs`` unless the fit resumes
        from it."""
        writer = _checkpoint.CheckpointWriter(
            checkpoint, fingerprint, reg_covar=self.reg_covar, dtype=dtype, summary=summary,
            check_data=not marginalize,
        )
        if not resumed:
            writer.write(runs, 0)
        return writer

    def _adopt_fit(self, best, dtype, *, n_samples, skip_nonfinite, weighted, n_passes, persisted):
        """The fitted attributes of the fit's ``best`` run and its counts."""
        self._set_run(best, dtype)
        # Rows left out for NaN/inf (the labelled-data path; None if no E-step
        # ran), or with every feature missing (set by _missing_setup).
        if skip_nonfinite:
            # The statistics count weight, not rows: with weights, the rows
            # left out are not counted.
            self.n_samples_skipped_ = (
                None if best.n_samples is None or weighted else int(n_samples - best.n_samples)
            )
        self.n_passes_ = n_passes
        self.persisted_ = persisted

    def _fit_rows_checked(self, X, *, reset):
        """:meth:`_validate_X` for a fit: at least 2 samples, and at least
        ``n_components``."""
        dX = self._validate_X(X, reset=reset)
        n_samples = dX.shape[0]
        if n_samples < 2:
            raise ValueError(
                f"Found array with {n_samples} sample(s) (shape={tuple(dX.shape)}) while a minimum of 2 is required."
            )
        if self.n_components > n_samples:
            raise ValueError(
                f"Expected n_samples >= n_components but got n_components = {self.n_components}, "
                f"n_samples = {n_samples}."
            )
        return dX

    def _open_checkpoint(
        self, checkpoint, dX, *, skip_nonfinite, weights, weight_scale, marginalize, labels_summary=None
    ):
        """The fingerprint of this fit (data and settings) and what
        ``checkpoint`` resumes, ``(runs, start_iter, summary)``, or None
        when there is no such file yet."""
        fingerprint = _checkpoint.fingerprint(
            dX, self, skip_nonfinite=skip_nonfinite, sample_weight=weights, weight_scale=weight_scale,
            labels_summary=labels_summary,
        )
        if marginalize:
            # The data summary of the iterates describes completed rows,
            # which change from pass to pass: the observed values are
            # checked instead, by what the counting pass found.
            fingerprint["observed"] = _checkpoint.observed_digest(self._missing_summary, weight_scale)
        return fingerprint, _checkpoint.load_if_exists(checkpoint, fingerprint)

    def _set_run(self, run, dtype=np.float64):
        """Fitted attributes from an EM run, in the data's float dtype (as
        scikit-learn: float32 data gives float32 parameters)."""
        dtype = np.dtype(dtype) if np.dtype(dtype).kind == "f" else np.dtype(np.float64)
        parameters = self._state_declaration.of_kind(PARAMETER)
        self._set_gaussian_parameters(tuple(np.asarray(getattr(run, field.key), dtype=dtype) for field in parameters))
        self.converged_ = run.converged
        self.n_iter_ = run.n_iter
        self.lower_bound_ = run.lower_bound
        self.lower_bounds_ = list(run.history)
        self.history_ = [dict(record) for record in run.records]
        self._set_posterior(run)
        # The statistics these parameters are the M-step of, when a pass of
        # run_em made them: the start of a stepwise stream continuing them.
        self._fit_statistics = run.statistics
        # New parameters from anywhere but partial_fit end the stream it carried
        # (partial_fit sets its state again after this).
        self._online_state = None
        for name in ("n_batch_iter_", "n_samples_seen_"):
            self.__dict__.pop(name, None)

    # ------------------------------------------------------------------
    # prediction
    # ------------------------------------------------------------------

    @_engine.fit_session()
    def _initialize(self, X, resp, sample_weight=None):
        """Parameters from given responsibilities ``resp`` (n_samples, K), as
        scikit-learn's ``_initialize``: the family's M-step on the statistics
        of ``resp`` (a pass over ``X``; one more for data-dependent priors),
        rows weighted by ``sample_weight`` when given."""
        n_components = np.asarray(resp).shape[1]
        dX, checked, weights, family = self._prepared(X, n_components, sample_weight)
        spec = Spec(n_components, self.covariance_type, 0, family=family)
        run = init_from_resp(dX, resp, spec, self.reg_covar, split_every=self.split_every, sample_weight=weights)
        self._apply_initial_parameters(run, checked)
        self._set_run(run, dX.dtype)

    def _prepared(self, X, n_components=None, sample_weight=None):
        """What scikit-learn's hooks below start from: the checked rows,
        settings and weights, and the family (its data-dependent priors
        set)."""
        self._validate_params()
        dX = self._validate_X(X, reset=True)
        checked = self._check_settings(dX.shape[1], n_components)
        weights, weight_scale = _check_sample_weight(sample_weight, dX)
        return dX, checked, weights, self._make_family(
            dX, PassCounter(), sample_weight=weights, weight_scale=weight_scale
        )

    @_engine.fit_session()
    def _check_parameters(self, X):
        """scikit-learn's hook: check the settings against ``X`` and set the
        data-dependent attributes (the priors of the variational family)."""
        self._prepared(X)

    @_engine.fit_session()
    def _initialize_parameters(self, X, random_state):
        """scikit-learn's hook: the initial parameters ``init_params`` gives
        with ``random_state`` (one restart), as fitted attributes."""
        dX, checked, _, family = self._prepared(X)
        spec = Spec(self.n_components, self.covariance_type, spawn_seeds(random_state, 1)[0], family=family)
        (run,) = initialize(dX, self.init_params, [spec], self.reg_covar, split_every=self.split_every)
        self._apply_initial_parameters(run, checked)
        self._set_run(run, dX.dtype)

    # ------------------------------------------------------------------
    # hooks: each subclass implements every one (see the class docstring)
    # ------------------------------------------------------------------

    @abstractmethod
    def _check_settings(self, n_features, n_components=None):
        """Check the subclass's own settings against ``n_features`` (and
        ``n_components``, default ``self.n_components``): a ValueError naming
        the bad one.  Returns what :meth:`_initial_runs` and
        :meth:`_apply_initial_parameters` take as ``checked`` (the checked
        user-given initial parameters, or None where there are none)."""

    @abstractmethod
    def _make_family(self, dX, counter, *, skip_nonfinite=False, sample_weight=None, weight_scale=1.0):
        """The family (:mod:`daskgmm._families`) the EM loop runs on ``dX``,
        its data-dependent settings set as fitted attributes from passes of
        its own (each counted by ``counter``); ``sample_weight`` are the
        weights divided by ``weight_scale``."""

    @abstractmethod
    def _family(self, weight_scale=1.0):
        """The family of the fitted settings, for statistics of the sample
        weights divided by ``weight_scale``."""

    @abstractmethod
    def _initial_runs(
        self, dX, checked, counter, family, *, skip_nonfinite=False, sample_weight=None, weight_scale=1.0,
        labels=None,
    ):
        """The ``n_init`` restarts' first runs (``Run``), from the
        initialisation ``init_params`` names and ``checked`` (what
        :meth:`_check_settings` returned), the rows with partial ``labels``
        starting from them (:func:`daskgmm._init.labelled_statistics`).  ``family`` None: a fit that
        initialises, which sets the family's data-dependent settings here,
        from the initialisation's own passes where it can."""

    @abstractmethod
    def _apply_initial_parameters(self, run, checked):
        """Put the user-given initial parameters in ``checked`` (what
        :meth:`_check_settings` returned) into ``run``, in place, over what
        the initialisation gave."""

    @abstractmethod
    def _model(self):
        """The fitted model the E-step and the per-row outputs evaluate."""

    @abstractmethod
    def _get_parameters(self):
        """scikit-learn's ``BaseMixture._get_parameters``: the fitted
        parameters, in scikit-learn's order for this estimator."""

    @abstractmethod
    def _set_parameters(self, params):
        """scikit-learn's ``BaseMixture._set_parameters``: the inverse of
        :meth:`_get_parameters`, with the attributes they imply."""

    # Not hooks: every subclass's state is read through its declaration.

    def _run_from_attributes(self):
        """The fitted parameters (and posterior) as an EM run, in float64:
        the start of a warm-started fit or of the next batch."""
        parameters, posterior = run_fields(self)
        return Run(self.covariance_type, **parameters, posterior=posterior)

    def _set_posterior(self, run):
        """The fitted attributes of ``run``'s posterior that the state
        declares (none for maximum likelihood), beyond the parameters
        :meth:`_set_run` sets."""
        set_posterior(self, run.posterior)

    def _set_gaussian_parameters(self, params):
        self.weights_, self.means_, self.covariances_, self.precisions_cholesky_ = params
        self.precisions_ = precisions_from_cholesky(self.precisions_cholesky_, self.covariance_type)

    def _check_is_fitted(self, *, in_use=True):
        """Fitted, or a NotFittedError; an :class:`UnfinishedPassWarning`
        while a pass of ``partial_fit_mode='exact'`` is in progress and the
        parameters are ``in_use`` (every use of the model comes here: the
        per-row outputs, ``sample``, the xarray outputs; ``save``, which keeps
        the pass, passes False)."""
        check_is_fitted(self, ["weights_", "means_", "precisions_cholesky_"])
        state = getattr(self, "_online_state", None)
        if in_use and state is not None and state.mode == "exact" and state.statistics is not None:
            warnings.warn(
                f"{type(self).__name__} with partial_fit_mode='exact' has a pass in progress: the batches given to "
                "partial_fit since the last end_pass() have not changed the parameters, which are those before the "
                "pass (after the first batch, its initialisation). Call end_pass() to make the pass's M-step; for "
                "one update per batch without end_pass() (dask-ml's Incremental), use "
                "partial_fit_mode='stepwise'.",
                UnfinishedPassWarning,
                stacklevel=_user_stacklevel(),
            )

    def _map_rows(self, X, what, *, known_rows=False):
        """Per-row output ``what``: a Dask array for Dask input (a Dask array,
        DataFrame or Dask-backed DataArray: nothing computed, the row
        chunks of a DataFrame's partitions unknown unless ``known_rows``),
        NumPy otherwise."""
        self._check_is_fitted()
        lazy = _engine.is_lazy(X)
        dX = self._validate_X(X, reset=False, known_rows=known_rows)
        family = self._family().marginalizing(self.missing == "marginalize")
        out = _engine.map_rows(dX, family, self._model(), what)
        return out if lazy else _engine.computed(out)

    def score_samples(self, X: ArrayLike | da.Array) -> np.ndarray | da.Array:
        """Compute the log-likelihood of each sample.

        Dask input (a Dask array, DataFrame or Dask-backed DataArray) is
        not computed: the result is lazy, with the input's row chunks (a
        DataFrame's partitions, of unknown size).  A row holding NaN or
        infinity raises a ValueError naming it (for Dask input, when the
        result is computed; for rows of unknown offset, a DataFrame's, by its
        row chunk and its row in it); with
        ``missing='marginalize'`` NaN features are marginalised, and a row
        with every feature missing gives NaN.

        Parameters
        ----------
        X : dask.array.Array or array-like, shape (n_samples, n_features)
            A Dask array chunked along rows, or anything scikit-learn accepts,
            with the features the model was fitted on.

        Returns
        -------
        numpy.ndarray or dask.array.Array of shape (n_samples,)
            ``log p(x)`` of each sample under the mixture; lazy, with ``X``'s
            row chunks, for Dask input.

        Examples
        --------
        >>> import numpy as np
        >>> from daskgmm import GaussianMixture
        >>> rng = np.random.default_rng(0)
        >>> X = np.concatenate([rng.normal(-3, 1, (100, 2)), rng.normal(3, 1, (100, 2))])
        >>> gmm = GaussianMixture(2, random_state=0).fit(X)
        >>> print(np.round(gmm.score_samples([[-3.0, -3.0], [3.0, 3.0]]), 2))
        [-2.44 -2.59]
        """
        return self._map_rows(X, "score_samples")

    def predict(self, X: ArrayLike | da.Array) -> np.ndarray | da.Array:
        """Predict the component of each sample.

        Parameters
        ----------
        X : dask.array.Array or array-like, shape (n_samples, n_features)
            A Dask array chunked along rows, or anything scikit-learn accepts,
            with the features the model was fitted on.

        Returns
        -------
        numpy.ndarray or dask.array.Array of shape (n_samples,)
            The label (0 to ``n_components - 1``) of each sample's most
            probable component, ``n_components`` for the noise component of
            a :class:`GaussianMixture` with ``noise`` (-1 for a row with
            every feature missing under ``missing='marginalize'``); lazy,
            with ``X``'s row chunks, for Dask input.

        Examples
        --------
        >>> import numpy as np
        >>> from daskgmm import GaussianMixture
        >>> rng = np.random.default_rng(0)
        >>> X = np.concatenate([rng.normal(-3, 1, (100, 2)), rng.normal(3, 1, (100, 2))])
        >>> gmm = GaussianMixture(2, random_state=0).fit(X)
        >>> print(gmm.predict([[-3.0, -3.0], [3.0, 3.0]]))
        [1 0]

        Dask input gives a lazy result:

        >>> import dask.array as da
        >>> labels = gmm.predict(da.from_array(X, chunks=(50, 2)))
        >>> type(labels).__name__, labels.chunks
        ('Array', ((50, 50, 50, 50),))
        >>> print(np.bincount(labels.compute()))
        [100 100]
        """
        return self._map_rows(X, "predict")

    def predict_proba(self, X: ArrayLike | da.Array) -> np.ndarray | da.Array:
        """Predict the posterior probability of each component for each sample.

        Parameters
        ----------
        X : dask.array.Array or array-like, shape (n_samples, n_features)
            A Dask array chunked along rows, or anything scikit-learn accepts,
            with the features the model was fitted on.

        Returns
        -------
        numpy.ndarray or dask.array.Array of shape (n_samples, n_components)
            The responsibilities: each row sums to 1 (NaN for a row with
            every feature missing under ``missing='marginalize'``); lazy,
            with ``X``'s row chunks, for Dask input.  A
            :class:`GaussianMixture` with ``noise`` has ``n_components + 1``
            columns, the noise's last.

        Examples
        --------
        >>> import numpy as np
        >>> from daskgmm import GaussianMixture
        >>> rng = np.random.default_rng(0)
        >>> X = np.concatenate([rng.normal(-3, 1, (100, 2)), rng.normal(3, 1, (100, 2))])
        >>> gmm = GaussianMixture(2, random_state=0).fit(X)
        >>> print(np.round(gmm.predict_proba([[-3.0, -3.0], [0.0, 0.0], [3.0, 3.0]]), 2))
        [[0.   1.  ]
         [0.52 0.48]
         [1.   0.  ]]
        """
        return self._map_rows(X, "predict_proba")

    def score(
        self, X: ArrayLike | da.Array, y: None = None, sample_weight: ArrayLike | da.Array | None = None
    ) -> float:
        """Compute the mean per-sample log-likelihood of ``X``.

        Weighted by ``sample_weight`` when given.  With
        ``missing='marginalize'``, of the observed features, over the samples
        with at least one.

        Parameters
        ----------
        X : dask.array.Array or array-like, shape (n_samples, n_features)
            A Dask array chunked along rows, or anything scikit-learn accepts,
            with the features the model was fitted on.
        y : None
            Ignored; present for scikit-learn's API.
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative weight of each sample, as for :meth:`fit`.

        Returns
        -------
        float
            The (weighted) mean of :meth:`score_samples`, computed at once
            for Dask input.

        Examples
        --------
        >>> import numpy as np
        >>> from daskgmm import GaussianMixture
        >>> rng = np.random.default_rng(0)
        >>> X = np.concatenate([rng.normal(-3, 1, (100, 2)), rng.normal(3, 1, (100, 2))])
        >>> gmm = GaussianMixture(2, random_state=0).fit(X)
        >>> round(gmm.score(X), 3)
        -3.505
        """
        return self._score_and_count(X, sample_weight)[0]

    def _score_and_count(self, X, sample_weight=None):
        """:meth:`score` and the number (total weight) of samples it averages."""
        values = self._map_rows(X, "score_samples", known_rows=True)
        mean, count = _engine.weighted_mean(values, sample_weight, skip_nan=self.missing == "marginalize")
        if not count > 0:
            raise ValueError("Every sample of X has every feature missing (NaN): there is nothing to score.")
        return mean, count

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> str:
        """Save the fitted model to ``path`` (see :mod:`daskgmm.io` for the format).

        Refuses to replace an existing file unless ``overwrite=True``, and
        never replaces a directory, FIFO, socket or device; through a
        symbolic link to a file, that file gets the model.  The file is
        written to a temporary name and moved into place when complete.

        Parameters
        ----------
        path : str or os.PathLike
            The file to write (an ``.npz`` archive, whatever its name).
        overwrite : bool, default=False
            Replace an existing file.

        Returns
        -------
        str
            ``path``, as a string.

        Raises
        ------
        FileExistsError
            ``path`` exists and ``overwrite`` is False (or it is a FIFO,
            socket, device or dangling link).
        IsADirectoryError
            ``path`` is a directory.

        See Also
        --------
        daskgmm.load : Load the model back.

        Examples
        --------
        >>> import numpy as np
        >>> from daskgmm import GaussianMixture
        >>> rng = np.random.default_rng(0)
        >>> X = np.concatenate([rng.normal(-3, 1, (100, 2)), rng.normal(3, 1, (100, 2))])
        >>> gmm = GaussianMixture(2, random_state=0).fit(X)
        >>> import os, tempfile
        >>> import daskgmm
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = gmm.save(os.path.join(folder, "model.npz"))
        ...     loaded = daskgmm.load(path)
        >>> bool(np.array_equal(loaded.means_, gmm.means_))
        True
        """
        return save_model(self, path, overwrite=overwrite)

    def sample(self, n_samples: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``n_samples`` from the fitted mixture (NumPy; scikit-learn's draws).

        The draws come from ``random_state`` as scikit-learn's
        ``GaussianMixture.sample`` makes them, so a fixed seed gives the same
        samples each call.

        Parameters
        ----------
        n_samples : int, default=1
            Number of samples to draw (at least 1).

        Returns
        -------
        X : numpy.ndarray of shape (n_samples, n_features)
            The samples, grouped by component.
        y : numpy.ndarray of shape (n_samples,)
            The component each sample was drawn from; ``n_components`` for
            the noise component of ``noise='box'`` (drawn uniformly in
            ``noise_box_``, last).  A noise given only by its volume cannot
            be drawn: a ValueError.

        Examples
        --------
        >>> import numpy as np
        >>> from daskgmm import GaussianMixture
        >>> rng = np.random.default_rng(0)
        >>> X = np.concatenate([rng.normal(-3, 1, (100, 2)), rng.normal(3, 1, (100, 2))])
        >>> gmm = GaussianMixture(2, random_state=0).fit(X)
        >>> samples, components = gmm.sample(6)
        >>> samples.shape
        (6, 2)
        >>> print(components)
        [0 0 0 1 1 1]
        """
        self._check_is_fitted()
        if n_samples < 1:
            raise ValueError(f"Invalid value for 'n_samples': {n_samples}. The sampling requires at least one sample.")
        rng = check_random_state(self.random_state)
        if getattr(self, "noise_volume_", None) is not None:
            return self._sample_with_noise(rng, n_samples)
        n_samples_comp = rng.multinomial(n_samples, self.weights_)
        X = covariance_model(self.covariance_type).sample(rng, self.means_, self.covariances_, n_samples_comp)
        y = np.concatenate([np.full(s, j, dtype=int) for j, s in enumerate(n_samples_comp)])
        return X, y

    def _sample_with_noise(self, rng, n_samples):
        """:meth:`sample` of a mixture with a noise component: its rows
        uniform in ``noise_box_``, labelled ``n_components``, last."""
        if self.noise_box_ is None:
            raise ValueError(
                f"sample() cannot draw the noise component of a model fitted with noise={self.noise_volume_!r}: a "
                "volume does not say the region's shape. Fit with noise='box' to sample it."
            )
        weights = np.append(np.asarray(self.weights_, dtype=np.float64), self.noise_weight_)
        counts = rng.multinomial(n_samples, weights / weights.sum())
        k = len(self.weights_)
        X = covariance_model(self.covariance_type).sample(rng, self.means_, self.covariances_, counts[:k])
        box = np.asarray(self.noise_box_, dtype=np.float64)
        noise_rows = rng.uniform(box[0], box[1], size=(int(counts[k]), box.shape[1]))
        y = np.concatenate([np.full(s, j, dtype=int) for j, s in enumerate(counts)])
        return np.vstack([X, noise_rows]), y




class GaussianMixture(_BaseMixture):
    """Gaussian Mixture Model fitted by EM on Dask arrays.

    Same parameters, defaults, attributes and methods as
    :class:`sklearn.mixture.GaussianMixture`; the data may be a Dask array
    chunked along rows (or a NumPy array, wrapped into one).  Each EM
    iteration is one pass over the chunks; only parameter-sized objects move.

    Parameters
    ----------
    n_components : int, default=1
        Number of mixture components.
    covariance_type : str, default='full'
        Form of the covariances: 'full' (one matrix per component), 'tied'
        (one matrix shared by all), 'diag' (one diagonal per component),
        'spherical' (one variance per component), 'tied-diag' (one diagonal
        shared by all, ``covariances_`` of shape (n_features,)) or
        'tied-spherical' (one variance shared by all, shape (1,)); the last
        two are scikit-learn's proposed types (scikit-learn#33692).  Or one
        of R mclust's 14 models, ``Sigma_k = lambda_k D_k A_k D_k^T``
        (volume, orientation, shape), named by whether volume, shape and
        orientation are Equal, Variable or the Identity: 'EII'
        (= 'tied-spherical'), 'VII' (= 'spherical'), 'EEI' (= 'tied-diag'),
        'VEI', 'EVI', 'VVI' (= 'diag'), 'EEE' (= 'tied'), 'VEE', 'EVE',
        'VVE', 'EEV', 'VEV', 'EVV', 'VVV' (= 'full').  A second name gives
        the same fit.  VEI and EVI hold (n_components, n_features) diagonals
        as 'diag' does, the other new ones (n_components, n_features,
        n_features) matrices as 'full'; their M-steps are mclust's, from the
        scatter plus ``reg_covar`` on its diagonal, iterative for VEI, VEE,
        EVE, VVE and VEV (see ``m_step_max_iter``).
    tol : float, default=1e-3
        Convergence threshold on the change of the per-sample lower bound.
    reg_covar : float, default=1e-6
        Added to the diagonal of every covariance.
    max_iter : int, default=100
        Maximum number of EM iterations (passes over the data) per run.
    n_init : int, default=1
        Restarts; they are fitted concurrently, sharing passes over the data.
        The run with the highest lower bound is kept.
    init_params : {'kmeans', 'k-means++', 'random', 'random_from_data'}, default='kmeans'
        'kmeans' runs k-means|| seeding and Lloyd passes on the cluster.
    weights_init, means_init, precisions_init : array-like, optional
        User-provided initial parameters (scikit-learn's shapes).
    random_state : int, RandomState or None
        Random draws are keyed by global row index: for a fixed seed the
        result does not depend on chunking or on the number of workers.
    warm_start : bool, default=False
        If True, a :meth:`fit` of a fitted model starts from its parameters
        (one run, no initialisation).
    verbose : int, default=0
        1 prints scikit-learn's progress lines (the start, every
        ``verbose_interval``-th iteration, the end), 2 adds each printed
        iteration's time and change of the lower bound.
    verbose_interval : int, default=10
        Iterations between two printed lines.
    split_every : int, default=8
        Fan-in of the tree reduction of chunk statistics.
    persist : {'auto', True, False}, default='auto'
        Keep the data in (distributed) memory across iterations; False
        streams it from its source at every pass (out-of-core).
    partial_fit_mode : {'stepwise', 'exact'}, default='stepwise'
        What :meth:`partial_fit` does with each batch: 'stepwise' online EM
        (an M-step per batch from running statistics), or 'exact': the
        statistics of a pass over many batches, and one M-step at
        :meth:`end_pass` (one iteration of :meth:`fit` on their
        concatenation).
    learning_decay : float in (0.5, 1], default=0.6
        ``alpha`` of the stepwise step size ``gamma_t = (t +
        learning_offset) ** -alpha`` (scikit-learn's name and formula in
        ``LatentDirichletAllocation``).  ``alpha > 0.5`` makes the running
        statistics converge on a stationary stream; nearer 0.5, they forget
        old batches faster (tracking drift), nearer 1, they average more
        batches (less noise).
    learning_offset : float >= 0, default=2.0
        ``t0`` of the step size: larger values give early batches less weight
        each (steps of the first batches after the first closer alike).
        With ``learning_decay=1, learning_offset=0`` the running statistics
        are the plain mean of the batches'.
    missing : {'error', 'marginalize'}, default='error'
        What a NaN in ``X`` means.  'error': bad input (a ValueError names
        the row).  'marginalize': a missing feature of that sample.  The
        E-step then uses each sample's observed features, ``log N(x_o |
        mu_o, Sigma_oo)``; the M-step the conditional expectations of the
        missing ones given the observed and their conditional covariances
        (Ghahramani & Jordan 1994): EM on the observed data's likelihood,
        for every covariance type.  :meth:`predict`,
        :meth:`predict_proba`, :meth:`score_samples` and :meth:`score`
        marginalise the same way.  A sample with every feature missing is
        left out of the fit (counted in ``n_samples_skipped_``); its
        :meth:`score_samples` and :meth:`predict_proba` are NaN and its
        :meth:`predict` label -1.  Infinity is an error either way.  The
        fit makes one more pass than a plain one (counting missing entries;
        the initialisation runs on the samples with each missing entry
        replaced by its feature's observed mean); data without any NaN then
        give exactly the plain fit.  The cost of a pass grows with the
        number of distinct missing patterns in a chunk (see
        :mod:`daskgmm._blocks_missing`).
    noise : {'box'} or float, default=None
        A noise component, as R's mclust has one (Banfield & Raftery 1993):
        a uniform density ``1 / V`` with its own weight, for outliers and
        background that no Gaussian component should absorb.  'box': ``V``
        is the volume of the data's bounding box (the features' minima and
        maxima over the samples of positive weight, one more pass at
        initialisation); a positive float: ``V`` itself (in the units of
        ``X``'s features multiplied together).  The density is ``1 / V``
        everywhere, inside the box or not.  :meth:`predict` labels the
        samples the noise explains best ``n_components``,
        :meth:`predict_proba` has ``n_components + 1`` columns (the noise's
        last), :meth:`score_samples` is ``log(pi_0 / V + sum_k pi_k N(x |
        mu_k, Sigma_k))``, and :meth:`bic` / :meth:`aic` count two more free
        parameters, its weight and its density ``1 / V`` (as mclust's
        ``nMclustParams(noise=TRUE)``).  With ``missing='marginalize'`` a
        sample's noise density is the uniform over the box's sides of its
        observed features (so 'box' only).  Not with :meth:`partial_fit`,
        a ``checkpoint``, or :class:`BayesianGaussianMixture`.
    noise_weight_init : float in (0, 1), default=0.1
        The noise component's initial weight; the initialisation's
        Gaussian weights (or ``weights_init``, which sum to 1) are scaled to
        the rest.  'k-means++' and 'random_from_data', which start each
        component on one sample, first make one E-step without the noise
        (one more pass).
    partial_labels : bool, default=False
        Whether the ``y`` of :meth:`fit`, :meth:`fit_predict` and
        :meth:`partial_fit` gives partial labels (semi-supervised EM, as R
        mclust's ``MclustSSC``): -1 for an unlabelled sample, else its
        component, whose responsibility then stays 1 throughout EM; each
        labelled sample counts ``log pi_y + log N(x | mu_y, Sigma_y)`` in
        the log-likelihood (``lower_bound_``).  False: ``y`` is ignored, as
        scikit-learn's unsupervised estimators ignore it (a ``Pipeline`` or
        ``cross_validate`` passes its ``y`` on: true classes given to score
        a clustering must not become labels).  :meth:`predict`,
        :meth:`predict_proba`, :meth:`score_samples`, :meth:`score` and
        :meth:`bic` take no labels: they evaluate the fitted mixture.
    m_step_max_iter : int >= 1, default=1000
        Most inner iterations of each M-step of the models without a closed
        form ('VEI', 'VEE', 'EVE', 'VVE', 'VEV'), on the client.  As in
        mclust's ``me``, an M-step of EM starts them from the covariances
        before it (VEE from mclust's fixed start, as mclust), the
        initialisation's M-step from mclust's fixed start, so the fit stays
        a function of each pass's statistics and the previous parameters.
        A fit whose inner iterations stop here without meeting
        ``m_step_tol`` warns once (:class:`MStepConvergenceWarning`, a
        ``ConvergenceWarning``).
    m_step_tol : float >= 0, default=1.5e-8
        Those inner iterations stop when the relative change of mclust's
        measure (the volumes and shapes, or its target function) is at most
        this; mclust's default, ``sqrt(eps)``.  A checkpoint records both.

    Attributes
    ----------
    weights_, means_, covariances_, precisions_, precisions_cholesky_
        With a noise component, ``weights_`` are the Gaussian components'
        and sum to ``1 - noise_weight_`` (mclust's ``pro`` is
        ``weights_`` followed by ``noise_weight_``).
    converged_ : bool
    n_iter_ : int
    lower_bound_ : float
        Mean log-likelihood per sample at the start of the last iteration.
    lower_bounds_ : list of float
        The lower bound of every iteration of the best run.
    history_ : list of dict
        One dict per iteration of the best run: ``iteration``,
        ``lower_bound``, ``change`` (inf at the first), ``seconds`` (of the
        pass and M-step) and ``n_chunks``; kept across a checkpoint resume.
    n_features_in_ : int
    n_passes_ : int
        Passes over the data the fit made (initialisation included; after a
        resume, those of this call only).
    n_samples_skipped_ : int or None
        Samples left out of the fit: with ``missing='marginalize'``, those
        with every feature missing; otherwise 0 (NaN is an error), except in
        :func:`daskgmm.xarray.fit`, which counts the masked samples it drops
        (None if no EM pass ran, or with ``sample_weight``: its passes sum
        weights, not rows).
    n_samples_incomplete_ : int
        Samples fitted with some (not all) features missing
        (``missing='marginalize'``; 0 otherwise).
    n_batch_iter_, n_samples_seen_ : int, float
        Batches given to :meth:`partial_fit` and their total weight (set by
        :meth:`partial_fit` only; a stepwise stream continuing a fit counts
        the fit's weight too).
    noise_weight_ : float
        The noise component's weight ``pi_0 = N_0 / N`` (set by a fit with
        ``noise`` only, as are the two below).
    noise_volume_ : float
        Its hypervolume ``V``.
    noise_box_ : numpy.ndarray of shape (2, n_features) or None
        The box of ``noise='box'``: the features' minima (row 0) and maxima
        (row 1); None for a volume given as a number.

    Notes
    -----
    **Degenerate cases.**  The parameters never hold NaN:

    * A component that loses all its responsibility keeps weight ~0 (its
      count gets scikit-learn's ``10 * eps``), mean 0 and covariance
      ``reg_covar * I``, like scikit-learn; it may win points back later.
    * Duplicated points, and components collapsing onto one point, give
      covariance ``reg_covar * I``; a feature with zero variance gets variance
      exactly ``reg_covar`` (with ``reg_covar=0`` a zero variance makes the
      fit fail with a ValueError asking to increase ``reg_covar``).
    * Points far from every component get finite log-likelihoods and
      responsibilities summing to 1 (log-sum-exp about the row maximum).
      Only squared distances that overflow the dtype (beyond ~1e154
      standard deviations in float64, ~1e19 in float32) are not finite:
      ``fit`` then raises a ValueError asking to rescale the data, and
      ``score_samples`` gives -inf (``predict_proba`` NaN) for such rows.
    * ``n_components=1`` gives the sample mean and the biased sample
      covariance (divided by N) plus ``reg_covar``, after one iteration.
    * One feature (``D = 1``) needs a 2-D ``X`` of shape (n, 1).

    Examples
    --------
    >>> import numpy as np
    >>> import dask.array as da
    >>> from daskgmm import GaussianMixture
    >>> rng = np.random.default_rng(0)
    >>> X = da.from_array(
    ...     np.concatenate([rng.normal(-3, 1, (100, 2)), rng.normal(3, 1, (100, 2))]), chunks=(50, 2)
    ... )
    >>> gmm = GaussianMixture(n_components=2, covariance_type="diag", random_state=0).fit(X)
    >>> print(np.round(gmm.weights_, 2))
    [0.5 0.5]
    >>> print(np.round(gmm.means_, 1))
    [[ 2.9  2.9]
     [-3.1 -2.9]]
    >>> labels = gmm.predict(X)  # lazy, with X's row chunks
    >>> print(np.bincount(labels.compute()))
    [100 100]

    With outliers, a noise component takes them (label ``n_components``):

    >>> outliers = rng.uniform(-10, 10, (20, 2))
    >>> Xn = np.concatenate([X.compute(), outliers])
    >>> gmm = GaussianMixture(n_components=2, noise="box", random_state=0).fit(Xn)
    >>> print(round(gmm.noise_weight_, 2), np.round(gmm.weights_, 2))
    0.1 [0.45 0.45]
    >>> print(np.bincount(gmm.predict(Xn)))
    [101 101  18]
    """

    def __init__(
        self,
        n_components: int = 1,
        *,
        covariance_type: CovarianceType = DEFAULT_COVARIANCE_TYPE,
        tol: float = 1e-3,
        reg_covar: float = 1e-6,
        max_iter: int = 100,
        n_init: int = 1,
        init_params: Literal["kmeans", "k-means++", "random", "random_from_data"] = "kmeans",
        weights_init: ArrayLike | None = None,
        means_init: ArrayLike | None = None,
        precisions_init: ArrayLike | None = None,
        random_state: int | np.random.RandomState | None = None,
        warm_start: bool = False,
        verbose: int = 0,
        verbose_interval: int = 10,
        split_every: int = DEFAULT_SPLIT_EVERY,
        persist: bool | Literal["auto"] = "auto",
        partial_fit_mode: Literal["stepwise", "exact"] = "stepwise",
        learning_decay: float = 0.6,
        learning_offset: float = 2.0,
        missing: Literal["error", "marginalize"] = "error",
        noise: Literal["box"] | float | None = None,
        noise_weight_init: float = 0.1,
        partial_labels: bool = False,
        m_step_max_iter: int = DEFAULT_M_STEP_CONTROL.max_iter,
        m_step_tol: float = DEFAULT_M_STEP_CONTROL.tol,
    ) -> None:
        super().__init__(
            n_components=n_components,
            tol=tol,
            reg_covar=reg_covar,
            max_iter=max_iter,
            n_init=n_init,
            init_params=init_params,
            random_state=random_state,
            warm_start=warm_start,
            verbose=verbose,
            verbose_interval=verbose_interval,
            split_every=split_every,
            persist=persist,
            partial_fit_mode=partial_fit_mode,
            learning_decay=learning_decay,
            learning_offset=learning_offset,
            missing=missing,
            partial_labels=partial_labels,
        )
        self.covariance_type = covariance_type
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.noise = noise
        self.noise_weight_init = noise_weight_init
        self.m_step_max_iter = m_step_max_iter
        self.m_step_tol = m_step_tol

    # ------------------------------------------------------------------
    # validation
    # ------------------------------------------------------------------

    # scikit-learn's own constraints for the parameters we share, plus ours.
    _parameter_constraints: dict = {
        **_SklearnGaussianMixture._parameter_constraints,
        "covariance_type": [StrOptions(set(COVARIANCE_TYPES))],
        "split_every": [Interval(numbers.Integral, 2, None, closed="left")],
        "persist": [StrOptions({"auto"}), "boolean"],
        **ONLINE_PARAMETER_CONSTRAINTS,
        **MISSING_PARAMETER_CONSTRAINTS,
        "noise": [None, StrOptions({"box"}), Interval(numbers.Real, 0, None, closed="neither")],
        "noise_weight_init": [Interval(numbers.Real, 0, 1, closed="neither")],
        **LABELS_PARAMETER_CONSTRAINTS,
        "m_step_max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        "m_step_tol": [Interval(numbers.Real, 0, None, closed="left")],
    }

    def _check_noise(self):
        """``noise`` and ``noise_weight_init`` beyond scikit-learn's
        constraints: a finite volume, and a box wherever rows may miss
        features."""
        if self.noise is None or isinstance(self.noise, str):
            return
        if isinstance(self.noise, bool) or not np.isfinite(self.noise):
            raise ValueError(
                f"The 'noise' parameter of GaussianMixture must be None, 'box' or a positive finite hypervolume; "
                f"got {self.noise!r}."
            )
        if self.missing == "marginalize":
            raise ValueError(
                f"noise={self.noise!r} (a volume) cannot be combined with missing='marginalize': a row missing "
                "features needs the uniform's marginal over its observed ones, which only the sides of a box give. "
                "Use noise='box'."
            )

    def _noise_setup(self, dX, counter, sample_weight=None):
        """The noise component's fitted volume (``noise_volume_``) and box
        (``noise_box_``): for ``noise='box'`` the bounding box of the rows
        of positive weight (one pass over ``dX``), for a number that
        volume (``noise_box_`` None).  Without noise a model has none of the
        noise's attributes (its fit is the plain one, attribute for
        attribute)."""
        for name in ("noise_box_", "noise_volume_"):
            self.__dict__.pop(name, None)
        if self.noise is None:
            return
        self.noise_box_ = None
        if not isinstance(self.noise, str):
            self.noise_volume_ = float(self.noise)
            return
        box = data_box(dX, split_every=self.split_every, counter=counter, sample_weight=sample_weight)
        sides = box[1] - box[0]
        flat = np.flatnonzero(~(sides > 0))
        if flat.size:
            raise ValueError(
                f"noise='box': feature(s) {flat.tolist()[:10]} take a single value (or none) in X, so the data's "
                "bounding box has no volume. Give noise as a positive hypervolume, or remove those features."
            )
        volume = float(np.prod(sides))
        if not 0 < volume < np.inf:
            raise ValueError(
                f"noise='box': the volume of the data's bounding box, the product of its sides, is {volume!r} in "
                "float64. Rescale the features, or give noise as a hypervolume."
            )
        self.noise_box_, self.noise_volume_ = box, volume

    def _check_initial_parameters(self, n_features, n_components=None):
        k, d, kind = n_components or self.n_components, n_features, self.covariance_type
        weights = means = precisions = None
        if self.weights_init is not None:
            weights = np.asarray(self.weights_init)
            # float32 weights are checked in float32 (scikit-learn's
            # check_array keeps them): their float64 sum may be 1 +- 6e-8.
            weights = weights.astype(weights.dtype if weights.dtype == np.float32 else np.float64)
            if weights.shape != (k,):
                raise ValueError(f"The parameter 'weights' should have the shape of ({k},), but got {weights.shape}.")
            if np.any(weights < 0) or np.any(weights > 1) or not np.all(np.isfinite(weights)):
                # scikit-learn's wording, its min and max included (its checks match on it).
                raise ValueError(
                    "The parameter 'weights' should be in the range [0, 1], but got "
                    f"max value {np.min(weights):.5f}, min value {np.max(weights):.5f}"
                )
            atol = 1e-6 if weights.dtype == np.float32 else 1e-8  # scikit-learn's tolerances
            if not np.allclose(float(np.abs(1.0 - np.sum(weights))), 0.0, atol=atol):
                raise ValueError(f"The parameter 'weights' should be normalized, but got sum(weights) = {np.sum(weights):.5f}")
            weights = weights.astype(np.float64)
        if self.means_init is not None:
            means = np.asarray(self.means_init, dtype=np.float64)
            if means.shape != (k, d):
                raise ValueError(f"The parameter 'means' should have the shape of ({k}, {d}), but got {means.shape}.")
            if not np.all(np.isfinite(means)):
                raise ValueError("The parameter 'means' contains NaN or infinity.")
        if self.precisions_init is not None:
            precisions = np.asarray(self.precisions_init, dtype=np.float64)
            expected = covariance_shape(kind, k, d)
            if precisions.shape != expected:
                raise ValueError(
                    f"The parameter '{kind} precision' should have the shape of {expected}, but got {precisions.shape}."
                )
            covariance_model(kind).check_precisions(precisions)
        return weights, means, precisions

    # -- hooks of _BaseMixture ------------------------------------------------

    _family_name = "gaussian"
    _state_declaration = GAUSSIAN_MIXTURE

    def _check_settings(self, n_features, n_components=None):
        self._check_noise()
        return self._check_initial_parameters(n_features, n_components)

    def _make_family(self, dX, counter, *, skip_nonfinite=False, sample_weight=None, weight_scale=1.0):
        self._noise_setup(dX, counter, sample_weight)
        return self._family(weight_scale)

    def _family(self, weight_scale=1.0):
        # Maximum likelihood depends on no scale of the weights; the noise
        # component on the fitted volume (and box).
        volume = getattr(self, "noise_volume_", None)
        if volume is None:
            return self._plain_family()
        box = getattr(self, "noise_box_", None)
        if box is None:
            return dataclasses.replace(self._plain_family(), noise_log_volume=math.log(volume))
        log_sides = np.log(np.asarray(box, dtype=np.float64)[1] - np.asarray(box, dtype=np.float64)[0])
        return dataclasses.replace(
            self._plain_family(), noise_log_volume=float(np.sum(log_sides)), noise_log_ranges=tuple(log_sides.tolist())
        )

    def _plain_family(self):
        """The family without the noise component: the initialisation's."""
        return GaussianFamily(m_step_max_iter=self.m_step_max_iter, m_step_tol=self.m_step_tol)

    def _set_run(self, run, dtype=np.float64):
        super()._set_run(run, dtype)
        if run.noise_weight is None:
            self.__dict__.pop("noise_weight_", None)
        else:
            self.noise_weight_ = float(run.noise_weight)

    def _warm_start_run(self, n_features, **kwargs):
        """The fitted model as the start of a warm fit: with ``noise`` its
        noise weight (``noise_weight_init`` where the fitted model had no
        noise component); without, the Gaussian weights rescaled to 1."""
        run = super()._warm_start_run(n_features, **kwargs)
        fitted = float(getattr(self, "noise_weight_", 0.0))
        if self.noise is None:
            if fitted > 0:
                run.weights = run.weights / run.weights.sum()
        elif fitted > 0:
            run.noise_weight = fitted
        else:
            run.weights = run.weights * (1.0 - self.noise_weight_init)
            run.noise_weight = float(self.noise_weight_init)
        return run

    def _open_checkpoint(self, checkpoint, dX, **kwargs):
        if self.noise is not None:
            raise ValueError(
                f"checkpoint= is not supported with noise={self.noise!r}: a checkpoint does not keep the noise "
                "component. Fit without a checkpoint."
            )
        return super()._open_checkpoint(checkpoint, dX, **kwargs)

    def _partial_fit(self, X, sample_weight, skip_nonfinite=False, y=None):
        if self.noise is not None:
            raise ValueError(
                f"partial_fit is not supported with noise={self.noise!r}: the noise component is fitted by fit "
                "only. Set noise=None, or use fit."
            )
        return super()._partial_fit(X, sample_weight, skip_nonfinite=skip_nonfinite, y=y)

    def _initial_runs(
        self, dX, checked, counter, family, *, skip_nonfinite=False, sample_weight=None, weight_scale=1.0,
        labels=None,
    ):
        weights_init, means_init, precisions_init = checked
        kind = self.covariance_type
        seeds = spawn_seeds(self.random_state, self.n_init)
        if family is None:
            self._noise_setup(dX, counter, sample_weight)
        if weights_init is not None and means_init is not None and precisions_init is not None:
            # Everything given: the initialisation pass would be overwritten anyway.
            prec_chol = precisions_cholesky_from_precisions(precisions_init, kind)
            covariances = covariances_from_precisions_cholesky(prec_chol, kind)
            runs = [Run(kind, weights_init.copy(), means_init.copy(), covariances, prec_chol) for _ in seeds]
            for run in runs:
                self._start_noise(run)
            return runs
        # The restarts share one k-means|| candidate set (drawn with the first
        # seed) and each draws its own k-means++ seeding from it.
        family = self._plain_family()
        specs = [Spec(self.n_components, kind, seed, pool=seeds[0], family=family) for seed in seeds]
        runs = initialize(
            dX, self.init_params, specs, self.reg_covar, split_every=self.split_every, counter=counter,
            skip_nonfinite=skip_nonfinite, sample_weight=sample_weight, labels=labels,
        )
        runs = self._before_noise(dX, runs, counter, skip_nonfinite=skip_nonfinite, sample_weight=sample_weight,
                                  labels=labels)
        for run in runs:
            self._apply_initial_parameters(run, checked)
        return runs

    def _before_noise(self, dX, runs, counter, *, skip_nonfinite=False, sample_weight=None, labels=None):
        """The initialisation's ``runs`` made ready for a noise component
        (whose weight :meth:`_start_noise` then sets).  'k-means++' and
        'random_from_data' start each component on one row, its covariance
        reg_covar: next to such components the uniform would take every
        other row.  One E-step without the noise first assigns every row to
        its nearest start, as the other methods' statistics do (one more
        pass, counted by ``counter``)."""
        if self.noise is None or self.init_params in COVERS_EVERY_ROW:
            return runs
        family = self._plain_family()
        stats = _engine.em_pass(
            dX, family, runs, skip_nonfinite=skip_nonfinite, split_every=self.split_every, weights=sample_weight,
            labels=labels,
        )
        counter.passes += 1
        return [family.initial_run(stat, run.covariance_type, self.reg_covar) for stat, run in zip(stats, runs)]

    # scikit-learn's BaseMixture hooks, with its signatures: code written
    # against sklearn.mixture (its own tests among it) can drive ours.

    def _get_parameters(self):
        return (self.weights_, self.means_, self.covariances_, self.precisions_cholesky_)

    def _set_parameters(self, params):
        """Set ``(weights, means, covariances, precisions_cholesky)`` and the
        ``precisions_`` they imply."""
        self._set_gaussian_parameters(params)

    def _apply_initial_parameters(self, run, checked):
        """``weights_init``, ``means_init``, ``precisions_init`` override what
        the initialisation gave."""
        weights_init, means_init, precisions_init = checked
        kind = self.covariance_type
        if weights_init is not None:
            run.weights = weights_init.copy()
        if means_init is not None:
            run.means = means_init.copy()
        if precisions_init is not None:
            run.precisions_cholesky = precisions_cholesky_from_precisions(precisions_init, kind)
            run.covariances = covariances_from_precisions_cholesky(run.precisions_cholesky, kind)
        self._start_noise(run)

    def _start_noise(self, run):
        """With ``noise``, ``run`` starts with noise weight
        ``noise_weight_init`` and the Gaussian weights scaled to the rest."""
        if self.noise is not None:
            run.weights = run.weights * (1.0 - self.noise_weight_init)
            run.noise_weight = float(self.noise_weight_init)

    def _model(self):
        run = Run(
            self.covariance_type,
            np.asarray(self.weights_, dtype=np.float64),
            np.asarray(self.means_, dtype=np.float64),
            None,
            np.asarray(self.precisions_cholesky_, dtype=np.float64),
            noise_weight=getattr(self, "noise_weight_", None),
        )
        return self._family().model(run)

    def _n_parameters(self):
        # The noise component counts two, as mclust's nMclustParams(noise=TRUE):
        # its weight and its density 1 / V (the data's box, or a volume the
        # user read off the data), so that BIC and ICL compare with mclust's.
        noise = getattr(self, "noise_volume_", None) is not None
        return n_parameters(self.covariance_type, self.n_components, self.means_.shape[1]) + 2 * int(noise)

    def bic(self, X: ArrayLike | da.Array, sample_weight: ArrayLike | da.Array | None = None) -> float:
        """Compute the Bayesian information criterion of the model on ``X``.

        Lower is better.  With ``sample_weight`` the sample count is the sum
        of the weights (the criterion of the repeated rows).

        Parameters
        ----------
        X : dask.array.Array or array-like, shape (n_samples, n_features)
            A Dask array chunked along rows, or anything scikit-learn accepts,
            with the features the model was fitted on.
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative weight of each sample, as for :meth:`fit`.

        Returns
        -------
        float
            ``-2 * log_likelihood + n_parameters * log(n_samples)``; a noise
            component counts two parameters, its weight and its density
            ``1 / V``, as mclust's ``nMclustParams(noise=TRUE)``: ``bic`` is
            mclust's BIC negated.

        Examples
        --------
        >>> import numpy as np
        >>> from daskgmm import GaussianMixture
        >>> rng = np.random.default_rng(0)
        >>> X = np.concatenate([rng.normal(-3, 1, (100, 2)), rng.normal(3, 1, (100, 2))])
        >>> gmm = GaussianMixture(2, random_state=0).fit(X)
        >>> round(float(gmm.bic(X)), 1)
        1460.4
        """
        mean, n = self._score_and_count(X, sample_weight)
        return -2 * mean * n + self._n_parameters() * np.log(n)

    def aic(self, X: ArrayLike | da.Array, sample_weight: ArrayLike | da.Array | None = None) -> float:
        """Compute the Akaike information criterion of the model on ``X``.

        Lower is better.  With ``sample_weight`` the sample count is the sum
        of the weights, as for :meth:`bic`.

        Parameters
        ----------
        X : dask.array.Array or array-like, shape (n_samples, n_features)
            A Dask array chunked along rows, or anything scikit-learn accepts,
            with the features the model was fitted on.
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative weight of each sample, as for :meth:`fit`.

        Returns
        -------
        float
            ``-2 * log_likelihood + 2 * n_parameters``.

        Examples
        --------
        >>> import numpy as np
        >>> from daskgmm import GaussianMixture
        >>> rng = np.random.default_rng(0)
        >>> X = np.concatenate([rng.normal(-3, 1, (100, 2)), rng.normal(3, 1, (100, 2))])
        >>> gmm = GaussianMixture(2, random_state=0).fit(X)
        >>> round(float(gmm.aic(X)), 1)
        1424.1
        """
        mean, n = self._score_and_count(X, sample_weight)
        return -2 * mean * n + 2 * self._n_parameters()

    def icl(self, X: ArrayLike | da.Array, sample_weight: ArrayLike | da.Array | None = None) -> float:
        """Compute the integrated completed likelihood (ICL) criterion of the model on ``X``.

        Lower is better, as for :meth:`bic`: ICL is BIC plus twice the
        classification entropy of the responsibilities ``r_ik``
        (:meth:`predict_proba`) at each sample's most probable component,
        ``CE = -sum_i w_i log max_k r_ik`` (``w_i = 1`` without
        ``sample_weight``).  It penalises components that overlap, so it
        prefers fewer, well-separated clusters than BIC does (Biernacki,
        Celeux & Govaert 2000).  R's mclust (``icl``, ``mclustICL``) writes
        both criteria with the opposite sign, higher being better:

        - here (scikit-learn's sign): ``BIC = -2 log L + p log n`` and
          ``ICL = BIC + 2 CE``;
        - mclust: ``BIC = 2 log L - p log n`` and
          ``ICL = BIC + 2 sum_i log z_{i, map(i)}``,

        so ``icl(X)`` is minus mclust's ICL for the same parameters.  The
        log-likelihood and the entropy come from one pass over the data.
        With ``sample_weight`` the sample count is the sum of the weights
        (the criterion of the repeated rows); with ``missing='marginalize'``
        a sample with every feature missing counts for nothing, as for
        :meth:`bic`.

        Parameters
        ----------
        X : dask.array.Array or array-like, shape (n_samples, n_features)
            A Dask array chunked along rows, or anything scikit-learn accepts,
            with the features the model was fitted on.
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative weight of each sample, as for :meth:`fit`.

        Returns
        -------
        float
            ``-2 * log_likelihood + n_parameters * log(n_samples) + 2 * CE``.

        Raises
        ------
        ValueError
            A row of ``X`` holds NaN or infinity (named; NaN features are no
            error with ``missing='marginalize'``), bad ``sample_weight``, or
            no sample to score.

        See Also
        --------
        bic : The criterion without the entropy term.
        daskgmm.select_n_components : Selection by ``criterion='icl'``.

        Examples
        --------
        >>> import numpy as np
        >>> from daskgmm import GaussianMixture
        >>> rng = np.random.default_rng(0)
        >>> X = np.concatenate([rng.normal(-3, 1, (100, 2)), rng.normal(3, 1, (100, 2))])
        >>> gmm = GaussianMixture(2, random_state=0).fit(X)
        >>> round(float(gmm.icl(X)), 1), round(float(gmm.bic(X)), 1)
        (1460.4, 1460.4)

        Well-separated clusters leave ICL near BIC; one split in two costs
        more by ICL:

        >>> gmm3 = GaussianMixture(3, random_state=0).fit(X)
        >>> round(float(gmm3.icl(X)), 1), round(float(gmm3.bic(X)), 1)
        (1537.5, 1489.5)
        """
        self._check_is_fitted()
        dX = self._validate_X(X, reset=False)
        weights, weight_scale = _check_sample_weight(sample_weight, dX)
        family = self._family().marginalizing(self.missing == "marginalize")
        log_likelihood, entropy, n = _engine.score_pass(
            dX, family, [self._model()], split_every=self.split_every, weights=weights, classification=True
        )[:, 0] * weight_scale
        if not n > 0:
            raise ValueError("Every sample of X has every feature missing (NaN): there is nothing to score.")
        return float(-2 * log_likelihood + self._n_parameters() * np.log(n) + 2 * entropy)

def _best_run(runs, dtype=np.float64):
    """scikit-learn's choice: the first run with the highest lower bound.

    A later run must beat the best so far by more than rounding (100 eps of
    ``dtype``, relative): restarts that reach the same optimum (the same
    components in another order) differ only by the order of their sums,
    which depends on the chunking and on the workers, and must not decide
    which of them is returned."""
    window = 100 * np.finfo(dtype).eps
    best = runs[0]
    for run in runs[1:]:
        margin = window * max(1.0, abs(best.lower_bound)) if np.isfinite(best.lower_bound) else 0.0
        if run.lower_bound > best.lower_bound + margin:
            best = run
    return best


def _exact_update(state, runs, batch_stats, weight_scale, *, n_chunks):
    """An exact pass's update of ``state`` by one batch: its statistics
    added to the pass's, no M-step (that is ``end_pass``'s); of several
    restarts, the one this batch finds likeliest goes on and is returned."""
    best_index = int(np.argmax([float(stats.log_likelihood) for stats in batch_stats]))
    best, stats = runs[best_index], batch_stats[best_index]
    if state.statistics is None:
        state.statistics, state.weight_scale = stats, weight_scale
    else:
        if weight_scale != state.weight_scale:  # to the pass's units: a power of two, exact
            stats = _stats.scale_statistics(stats, weight_scale / state.weight_scale)
        state.statistics = merge_statistics(state.statistics, stats)
    state.n_chunks += n_chunks
    return best


# ----------------------------------------------------------------------
# Entry points for daskgmm's own modules
# ----------------------------------------------------------------------
# xarray, the command line and model selection drive the estimators through
# these functions (and _best_run above), not through the estimators' private
# methods, which are free to change with the base class's hooks.


def _placed_like(labels, persisted):
    """Dask ``labels`` persisted when the data they label are (the passes
    read them at every iteration)."""
    if persisted and _engine.is_dask_array(labels):
        return labels.persist()
    return labels


def _fit_rows(model, X, *, sample_weight=None, skip_nonfinite=False, callbacks=(), checkpoint=None):
    """Fit ``model`` on the rows ``X`` as its ``fit`` does, with what the
    labelled-data layer and the command line add.

    Parameters
    ----------
    model : GaussianMixture or BayesianGaussianMixture
        Fitted in place.  Unlike ``fit``, an exception may leave it changed:
        a caller that keeps the model wraps the call in
        :func:`unchanged_on_error`.
    X : dask.array.Array or array-like, shape (n_samples, n_features)
        The rows, as ``fit`` takes them.
    sample_weight : array-like or dask.array.Array of shape (n_samples,), optional
        As for ``fit``.
    skip_nonfinite : bool, default=False
        Leave out the rows holding NaN or infinity (counted in
        ``n_samples_skipped_``) instead of refusing them.
    callbacks : sequence of callable
        Called after every iteration with the engine's ``info`` dict, in
        order, before the fit's own monitor (the command line passes its
        display, :class:`daskgmm.cli.Progress`).
    checkpoint : str or os.PathLike, optional
        As for ``fit``.

    Returns
    -------
    model
    """
    return model._fit(
        X, sample_weight=sample_weight, skip_nonfinite=skip_nonfinite, callbacks=callbacks, checkpoint=checkpoint
    )


def _partial_fit_rows(model, X, *, sample_weight=None, skip_nonfinite=False):
    """One batch of ``model``'s ``partial_fit`` on the rows ``X`` (its
    parameters already validated), rows holding NaN or infinity left out
    with ``skip_nonfinite``; returns ``model``.  As with :func:`_fit_rows`,
    the caller keeps ``model`` as it was on an exception where it needs to."""
    return model._partial_fit(X, sample_weight, skip_nonfinite=skip_nonfinite)


def _missing_rows(model, dX, weights, counter):
    """``model``'s first step of a fit with ``missing='marginalize'`` on
    ``dX``, for a fit that shares its passes (model selection): one pass
    counting the missing entries (``model``'s ``n_samples_skipped_`` and
    ``n_samples_incomplete_`` set from it, ``counter`` advanced), and the
    rows and weights the initialisation runs on.  Returns ``(marginalize,
    init_X, init_weights)``; ``(False, dX, weights)`` when nothing is
    missing or ``model.missing`` is 'error'."""
    return model._missing_setup(dX, weights, counter)


def _adopt_run(model, run, dtype):
    """Make ``run`` (an EM ``Run`` of ``model``'s family and settings) ``model``'s fitted parameters and fit record, in
    the data's float ``dtype``, as its own fit would; returns ``model``.
    Model selection fits several models in shared passes and gives each
    its best run this way."""
    model._set_run(run, dtype)
    return model



def _check_fitted(model):
    """``model`` is fitted, or scikit-learn's NotFittedError; the
    :class:`UnfinishedPassWarning` of a model in an exact pass, as every use
    of its parameters gives."""
    model._check_is_fitted()


def _rows_output(model, dX, what, *, marginalize, skip_nonfinite=False):
    """The per-row output ``what`` ('predict', 'predict_proba' or
    'score_samples') of the fitted ``model`` on the rows ``dX`` (a Dask
    array), lazy; missing features marginalised with ``marginalize``, rows
    holding NaN or infinity given the missing value with
    ``skip_nonfinite`` (the labelled-data layer's outputs)."""
    family = model._family().marginalizing(marginalize)
    return _engine.map_rows(dX, family, model._model(), what, skip_nonfinite=skip_nonfinite)

__all__ = ["GaussianMixture", "ConvergenceWarning", "MStepConvergenceWarning", "NotFittedError", "COVARIANCE_TYPES"]
