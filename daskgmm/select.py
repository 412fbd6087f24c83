"""Model selection: a range of mixtures fitted in shared passes, compared by
BIC, AIC or ICL."""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import ArrayLike

from . import _engine
from ._covariance import (
    COVARIANCE_TYPES,
    DEFAULT_COVARIANCE_TYPE,
    DEFAULT_M_STEP_CONTROL,
    CovarianceType,
    covariance_model,
)
from ._engine.passes import DEFAULT_SPLIT_EVERY
from ._init import PassCounter, Spec, initialize
from .mixture import (
    ConvergenceWarning,
    GaussianMixture,
    _adopt_run,
    _best_run,
    _missing_rows,
    _warn_unconverged_m_steps,
    spawn_seeds,
)

if TYPE_CHECKING:
    import dask.array as da

CRITERIA = ("bic", "aic", "icl")
TABLE_COLUMNS = (
    "n_components",
    "covariance_type",
    "bic",
    "aic",
    "log_likelihood",
    "score",
    "n_parameters",
    "lower_bound",
    "n_iter",
    "converged",
)


@dataclass
class SelectionResult:
    """What :func:`select_n_components` found.

    Unpacks as ``best, table = select_n_components(...)``; printing it shows
    the table (:meth:`to_text`).  Made by :func:`select_n_components`: each
    parameter is kept as the attribute of the same name.

    Parameters
    ----------
    best_ : GaussianMixture
        The fitted candidate with the lowest criterion (the first such in
        the order of the table on ties).
    table : dict of str to numpy.ndarray
        One entry per candidate, in the order covariance type then number of
        components as given: ``n_components``, ``covariance_type``, ``bic``,
        ``aic``, ``log_likelihood`` (total over the samples, of the final
        parameters; weighted by ``sample_weight`` when given), ``score`` (its
        mean per sample, or per unit of weight, as ``GaussianMixture.score``),
        ``n_parameters``, ``lower_bound`` (as ``lower_bound_``: the mean
        log-likelihood before the last M-step), ``n_iter``, ``converged``;
        with ``criterion='icl'`` also ``icl`` (after ``aic``) and
        ``classification_entropy`` (last; ``icl = bic + 2 *
        classification_entropy``), each model's ``icl(X)``.
    models_ : dict
        Every fitted candidate, keyed by ``(n_components, covariance_type)``.
    criterion : {'bic', 'aic', 'icl'}
        The criterion ``best_`` was chosen by.
    n_passes_ : int
        Passes over the data for the whole selection.
    passes_ : dict, optional
        The same split into ``init``, ``em`` and ``score`` (always 1).

    Examples
    --------
    >>> import numpy as np
    >>> import daskgmm
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.normal(-5, 1, (300, 2)), rng.normal(5, 1, (300, 2))])
    >>> result = daskgmm.select_n_components(X, range(1, 4), random_state=0)
    >>> best, table = result
    >>> best is result.best_, best.n_components
    (True, 2)
    >>> sorted(result.models_)
    [(1, 'full'), (2, 'full'), (3, 'full')]
    >>> result.n_passes_, result.passes_
    (12, {'init': 6, 'em': 5, 'score': 1})
    """

    best_: GaussianMixture
    table: dict
    models_: dict
    criterion: str
    n_passes_: int
    passes_: dict = field(default_factory=dict)

    def __iter__(self) -> Iterator[Any]:
        return iter((self.best_, self.table))

    def to_text(self) -> str:
        """Format the table as aligned text, the best row marked with ``*``.

        Returns
        -------
        str
            One line per candidate (its number of components, covariance
            type, BIC, AIC, ICL when the table has it, log-likelihood,
            score, number of free parameters, EM iterations and
            convergence), then the choice and the passes over the data it
            took.

        Examples
        --------
        >>> import numpy as np
        >>> import daskgmm
        >>> rng = np.random.default_rng(0)
        >>> X = np.concatenate([rng.normal(-5, 1, (300, 2)), rng.normal(5, 1, (300, 2))])
        >>> print(daskgmm.select_n_components(X, range(1, 4), random_state=0).to_text())
            K covariance            BIC            AIC        log-lik      score params iter  conv
            1 full              5759.02        5737.04       -2863.52    -4.7725      5    2  True
        *   2 full               4250.1        4201.73       -2089.86    -3.4831     11    2  True
            3 full              4290.01        4215.26       -2090.63    -3.4844     17    5  True
        best by BIC: n_components=2, covariance_type='full'; 12 passes over the data (6 init, 5 EM, 1 scoring)
        """
        t = self.table
        best = (self.best_.n_components, self.best_.covariance_type)
        icl = "icl" in t
        icl_title = f"{'ICL':>14} " if icl else ""
        lines = [
            f"{'':1} {'K':>3} {'covariance':<10} {'BIC':>14} {'AIC':>14} {icl_title}{'log-lik':>14} "
            f"{'score':>10} {'params':>6} {'iter':>4} {'conv':>5}"
        ]
        for i in range(len(t["n_components"])):
            mark = "*" if (int(t["n_components"][i]), str(t["covariance_type"][i])) == best else ""
            icl_value = f"{t['icl'][i]:>14.6g} " if icl else ""
            lines.append(
                f"{mark:1} {int(t['n_components'][i]):>3} {str(t['covariance_type'][i]):<10} "
                f"{t['bic'][i]:>14.6g} {t['aic'][i]:>14.6g} {icl_value}{t['log_likelihood'][i]:>14.6g} "
                f"{t['score'][i]:>10.5g} {int(t['n_parameters'][i]):>6} {int(t['n_iter'][i]):>4} "
                f"{str(bool(t['converged'][i])):>5}"
            )
        lines.append(
            f"best by {self.criterion.upper()}: n_components={best[0]}, covariance_type={best[1]!r}; "
            f"{self.n_passes_} passes over the data ({self.passes_.get('init', 0)} init, "
            f"{self.passes_.get('em', 0)} EM, {self.passes_.get('score', 0)} scoring)"
        )
        return "\n".join(lines)

    def __repr__(self):
        return f"SelectionResult(\n{self.to_text()}\n)"


def _check_range(n_components_range, n_samples):
    try:
        values = list(n_components_range)
    except TypeError:
        raise ValueError(
            f"n_components_range must be an iterable of ints, e.g. range(1, 11); got {n_components_range!r}."
        ) from None
    if not values:
        raise ValueError("n_components_range is empty: give at least one number of components.")
    for k in values:
        if not isinstance(k, numbers.Integral) or isinstance(k, bool) or k < 1:
            raise ValueError(f"n_components_range must hold ints >= 1, got {k!r}.")
    too_many = [int(k) for k in values if k > n_samples]
    if too_many:
        raise ValueError(
            f"Expected n_samples >= n_components but got n_components = {max(too_many)}, "
            f"n_samples = {n_samples}."
        )
    return [int(k) for k in dict.fromkeys(values)]


def _check_types(covariance_types):
    if isinstance(covariance_types, str):
        covariance_types = (covariance_types,)
    types = list(dict.fromkeys(covariance_types))
    if not types:
        raise ValueError(f"covariance_types is empty: give at least one of {', '.join(map(repr, COVARIANCE_TYPES))}.")
    seen = {}
    for kind in types:
        model = covariance_model(kind)
        if model in seen:
            raise ValueError(
                f"covariance_types names one model twice: {seen[model]!r} and {kind!r} are the same covariance "
                "model (an mclust name and its alias). Keep one of them."
            )
        seen[model] = kind
    return types


@_engine.fit_session()
def _table(candidates, best_runs, totals, n_parameters, n_effective, entropies=None):
    """The selection table (:data:`TABLE_COLUMNS`) of the candidates'
    best runs, their total log-likelihoods and free parameters, ``n`` being
    ``n_effective`` samples; with their classification ``entropies``, also
    ``icl`` (after ``aic``) and ``classification_entropy`` (last)."""
    n_parameters = np.array(n_parameters)
    bic = -2.0 * totals + n_parameters * np.log(n_effective)
    criteria = {"bic": bic, "aic": -2.0 * totals + 2.0 * n_parameters}
    if entropies is not None:
        criteria["icl"] = bic + 2.0 * entropies
    table = {
        "n_components": np.array([k for k, _ in candidates]),
        "covariance_type": np.array([kind for _, kind in candidates]),
        **criteria,
        "log_likelihood": totals,
        "score": totals / n_effective,
        "n_parameters": n_parameters,
        "lower_bound": np.array([run.lower_bound for run in best_runs]),
        "n_iter": np.array([run.n_iter for run in best_runs]),
        "converged": np.array([run.converged for run in best_runs]),
    }
    if entropies is not None:
        table["classification_entropy"] = entropies
    return table


def select_n_components(
    X: ArrayLike | da.Array,
    n_components_range: Iterable[int],
    *,
    criterion: Literal["bic", "aic", "icl"] = "bic",
    covariance_types: Sequence[CovarianceType] = (DEFAULT_COVARIANCE_TYPE,),
    n_init: int = 1,
    init_params: Literal["kmeans", "k-means++", "random", "random_from_data"] = "kmeans",
    random_state: int | np.random.RandomState | None = None,
    tol: float = 1e-3,
    reg_covar: float = 1e-6,
    max_iter: int = 100,
    split_every: int = DEFAULT_SPLIT_EVERY,
    persist: bool | Literal["auto"] = "auto",
    sample_weight: ArrayLike | da.Array | None = None,
    missing: Literal["error", "marginalize"] = "error",
    noise: Literal["box"] | float | None = None,
    noise_weight_init: float = 0.1,
    m_step_max_iter: int = DEFAULT_M_STEP_CONTROL.max_iter,
    m_step_tol: float = DEFAULT_M_STEP_CONTROL.tol,
) -> SelectionResult:
    """Fit a mixture per number of components and covariance type; pick the best.

    The candidates are fitted in shared passes over the data and compared
    by BIC, AIC or ICL.  Every candidate is the model ``GaussianMixture(K, covariance_type=...,
    n_init=n_init, init_params=init_params, random_state=random_state, tol=tol,
    reg_covar=reg_covar, max_iter=max_iter)`` would fit on its own (the same
    starts, the same EM iterations, to floating-point rounding), but all of
    them are initialised together and every EM pass evaluates every
    candidate (and restart) still running, in one task per chunk; a
    candidate drops out when it converges.  One more pass then computes the
    log-likelihood of every candidate's *final* parameters (EM's last pass
    gives it for the parameters before the last M-step, ``lower_bound_``),
    so the criteria equal each model's ``bic(X)`` and ``aic(X)`` (and, with
    ``criterion='icl'``, ``icl(X)``: the same pass sums each candidate's
    classification entropy).

    With ``sample_weight`` every pass (initialisation, EM, scoring) counts
    each sample with its weight, as ``GaussianMixture.fit(X,
    sample_weight=...)`` does, and the criteria take the total weight as the
    number of samples: they equal ``bic(X, sample_weight=...)`` and
    ``aic(X, sample_weight=...)``.

    Parameters
    ----------
    X : dask.array.Array or array-like, shape (n_samples, n_features)
        The data: a Dask array chunked along rows, or anything
        :meth:`GaussianMixture.fit` accepts.
    n_components_range : iterable of int
        Numbers of components to try, e.g. ``range(1, 13)``.
    criterion : {'bic', 'aic', 'icl'}, default='bic'
        Lower is better.  'icl' (:meth:`GaussianMixture.icl`: BIC plus twice
        the classification entropy, in scikit-learn's sign, minus mclust's
        ICL) prefers fewer, well-separated clusters; the table then holds
        ``icl`` and ``classification_entropy`` besides BIC and AIC.
    covariance_types : sequence of str, default=('full',)
        Covariance types to try, each with every number of components: any
        name ``GaussianMixture``'s ``covariance_type`` accepts.
    n_init : int, default=1
        Restarts per candidate (the best lower bound is kept, as in
        :class:`GaussianMixture`).
    init_params : {'kmeans', 'k-means++', 'random', 'random_from_data'}, default='kmeans'
        As in :class:`GaussianMixture`.
    random_state : int, RandomState or None, default=None
        As in :class:`GaussianMixture` (every candidate gets the starts it
        would get on its own with this ``random_state``).
    tol : float, default=1e-3
        As in :class:`GaussianMixture`.
    reg_covar : float, default=1e-6
        As in :class:`GaussianMixture`.
    max_iter : int, default=100
        As in :class:`GaussianMixture`.
    split_every : int, default=8
        As in :class:`GaussianMixture`.
    persist : {'auto', True, False}, default='auto'
        As in :class:`GaussianMixture`.
    sample_weight : array-like (n_samples,), optional
        Non-negative weight of each sample (NumPy, or a Dask array chunked
        like X's rows), as in :meth:`GaussianMixture.fit`.
    missing : {'error', 'marginalize'}, default='error'
        As in :class:`GaussianMixture`: with 'marginalize' NaN entries are
        missing features, marginalised in every pass (one more pass counts
        them); the criteria are those of the observed values, over the
        samples with at least one (each model's ``bic(X)``).
    noise : {'box'} or float, default=None
        As in :class:`GaussianMixture`: every candidate has a noise
        component (mclust's ``Mclust`` with ``noise``), the data's bounding
        box found once for all of them; the criteria count its two
        parameters.
    noise_weight_init : float in (0, 1), default=0.1
        As in :class:`GaussianMixture`.
    m_step_max_iter : int >= 1, default=1000
        As in :class:`GaussianMixture`: the inner iterations of the
        M-steps without a closed form.
    m_step_tol : float >= 0, default=1.5e-8
        As in :class:`GaussianMixture`.

    Returns
    -------
    SelectionResult
        Unpacks as ``(best_model, table)``; also holds every fitted model
        (``models_``) and the number of passes made (``n_passes_``).

    Raises
    ------
    ValueError
        On invalid arguments (with :class:`GaussianMixture`'s messages), a
        number of components above the number of samples, or a candidate
        whose covariance becomes ill-defined.

    Examples
    --------
    >>> import numpy as np
    >>> import daskgmm
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.normal(-5, 1, (300, 2)), rng.normal(5, 1, (300, 2))])
    >>> best, table = daskgmm.select_n_components(X, range(1, 5), random_state=0)
    >>> best.n_components
    2
    >>> [int(k) for k in table["n_components"]]
    [1, 2, 3, 4]
    """
    if criterion not in CRITERIA:
        raise ValueError(f"Invalid value for 'criterion': {criterion!r}. Use 'bic', 'aic' or 'icl'.")
    types = _check_types(covariance_types)
    settings = dict(
        tol=tol, reg_covar=reg_covar, max_iter=max_iter, n_init=n_init, init_params=init_params,
        random_state=random_state, split_every=split_every, persist=persist, missing=missing, noise=noise,
        noise_weight_init=noise_weight_init, m_step_max_iter=m_step_max_iter, m_step_tol=m_step_tol,
    )
    template = GaussianMixture(1, covariance_type=types[0], **settings)
    template._validate_params()
    template._check_noise()
    dX = _engine.as_dask_array(X)
    n_samples, n_features = dX.shape
    ks = _check_range(n_components_range, n_samples)
    weights, weight_scale = _engine.check_sample_weight(sample_weight, dX)
    dX, weights, persisted = _engine.place_data(dX, persist, weights)

    # Restart i of every candidate has seed i; the restarts of one K share
    # their k-means|| candidate set, as in GaussianMixture.
    seeds = spawn_seeds(random_state, n_init)
    candidates = [(k, kind) for kind in types for k in ks]
    plain = template._plain_family()
    specs = [Spec(k, kind, seed, pool=seeds[0], family=plain) for k, kind in candidates for seed in seeds]
    counter = PassCounter()
    marginalize, init_X, init_weights = _missing_rows(template, dX, weights, counter)
    # The noise's box, once for every candidate (the estimator's own pass).
    family = template._make_family(dX, counter, sample_weight=weights, weight_scale=weight_scale)
    runs = initialize(
        init_X, init_params, specs, reg_covar, split_every=split_every, counter=counter, sample_weight=init_weights
    )
    runs = template._before_noise(init_X, runs, counter, sample_weight=init_weights)
    for run in runs:
        template._start_noise(run)
    n_init_passes = counter.passes
    family = family.marginalizing(marginalize)
    runs, n_em_passes = _engine.run_em(
        dX, runs, family=family, tol=tol, max_iter=max_iter, reg_covar=reg_covar, split_every=split_every,
        weights=weights, weight_scale=weight_scale,
    )
    _warn_unconverged_m_steps(runs, family)
    best_runs = [_best_run(runs[c * n_init : (c + 1) * n_init], dX.dtype) for c in range(len(candidates))]
    # The log-likelihood of the final parameters (and, for ICL, their
    # classification entropy): one pass for all candidates.
    final_models = [family.model(run) for run in best_runs]
    entropies = None
    if criterion == "icl":
        totals, entropies, _ = _engine.score_pass(
            dX, family, final_models, split_every=split_every, weights=weights, classification=True
        ) * weight_scale
    else:
        totals = _engine.score_pass(dX, family, final_models, split_every=split_every, weights=weights) * weight_scale
    n_passes = n_init_passes + n_em_passes + 1

    models = {}
    for (k, kind), run in zip(candidates, best_runs):
        model = GaussianMixture(k, covariance_type=kind, **settings)
        for name in ("noise_volume_", "noise_box_"):
            if hasattr(template, name):
                setattr(model, name, getattr(template, name))
        _adopt_run(model, run, dX.dtype)
        model.n_features_in_ = n_features
        model.n_samples_skipped_ = template.n_samples_skipped_
        model.n_samples_incomplete_ = template.n_samples_incomplete_
        model.n_passes_ = n_passes  # the shared fit's passes
        model.persisted_ = persisted
        models[(k, kind)] = model

    # With weights the criteria are those of the repeated rows: n is the total weight.
    # (The samples with every feature missing count for nothing.)
    n_effective = n_samples if weights is None else _engine.weight_total(weights) * weight_scale
    if marginalize:
        n_effective = float(best_runs[0].n_samples)
    table = _table(
        candidates, best_runs, totals, [models[c]._n_parameters() for c in candidates], n_effective, entropies
    )
    best = int(np.argmin(table[criterion]))
    not_converged = [c for c, run in zip(candidates, best_runs) if not run.converged]
    if not_converged and max_iter > 0:
        listed = ", ".join(f"({k}, {kind!r})" for k, kind in not_converged)
        warnings.warn(
            f"Best performing initialization did not converge for (n_components, covariance_type) = {listed}. "
            "Try different init parameters, or increase max_iter, tol, or check for degenerate data.",
            ConvergenceWarning,
            stacklevel=2,
        )
    return SelectionResult(
        best_=models[candidates[best]],
        table=table,
        models_=models,
        criterion=criterion,
        n_passes_=n_passes,
        passes_={"init": n_init_passes, "em": n_em_passes, "score": 1},
    )
