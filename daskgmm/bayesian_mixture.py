"""The variational Bayesian Gaussian mixture: scikit-learn's
``BayesianGaussianMixture`` contract on Dask arrays, on the EM core every
daskgmm mixture shares (:class:`daskgmm.mixture._BaseMixture`)."""

from __future__ import annotations

import numbers
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from sklearn.mixture import BayesianGaussianMixture as _SklearnBayesianGaussianMixture
from sklearn.utils._param_validation import Interval, StrOptions

from ._covariance import COVARIANCE_TYPES, DEFAULT_COVARIANCE_TYPE, CovarianceType, covariance_model
from ._engine.passes import DEFAULT_SPLIT_EVERY
from ._families import BayesianFamily
from ._init import Spec, data_moments, initial_statistics, moments_from_stats, run_from_stats
from ._state import BAYESIAN_GAUSSIAN_MIXTURE, POSTERIOR
from .mixture import MISSING_PARAMETER_CONSTRAINTS, ONLINE_PARAMETER_CONSTRAINTS, _BaseMixture, spawn_seeds


class BayesianGaussianMixture(_BaseMixture):
    """Variational Bayesian estimation of a Gaussian mixture on Dask arrays.

    Same parameters, defaults, attributes and methods as
    :class:`sklearn.mixture.BayesianGaussianMixture`: a Dirichlet process
    (truncated at ``n_components``) or Dirichlet distribution prior on the
    weights lets the fit switch off the components the data do not need.
    Each variational EM iteration is one pass over the row chunks, as for
    :class:`daskgmm.GaussianMixture`: the E-step adds per-component
    expectations to the Gaussian log-densities, the M-step is a closed-form
    posterior update of the same merged statistics, and the lower bound
    takes the entropy of the responsibilities from those statistics too.

    Parameters
    ----------
    n_components : int, default=1
        Number of mixture components: an upper bound, the fit may leave
        some with weight near 0.
    covariance_type : {'full', 'tied', 'diag', 'spherical', 'VVV', 'EEE', 'VVI', 'VII'}, default='full'
        As in :class:`daskgmm.GaussianMixture` (the last four are mclust's
        names of the first four); its Gauss-Wishart prior has no form for
        the shared diagonal types nor for mclust's other constrained models.
    tol : float, default=1e-3
        Convergence threshold on the change of the total lower bound
        (scikit-learn's rule for this class).
    reg_covar : float, default=1e-6
        As in :class:`daskgmm.GaussianMixture`.
    max_iter : int, default=100
        As in :class:`daskgmm.GaussianMixture`.
    n_init : int, default=1
        As in :class:`daskgmm.GaussianMixture`.
    init_params : {'kmeans', 'k-means++', 'random', 'random_from_data'}, default='kmeans'
        As in :class:`daskgmm.GaussianMixture`.
    weight_concentration_prior_type : {'dirichlet_process', 'dirichlet_distribution'}, default='dirichlet_process'
        Prior on the weights: a Dirichlet process (stick-breaking, truncated
        at ``n_components``) or a Dirichlet distribution.
    weight_concentration_prior : float, optional
        Concentration of the weights' prior (``gamma``); lower values leave
        more components with weight near 0.  Default ``1 / n_components``.
    mean_precision_prior : float, optional
        Precision of the means' prior (``beta``): larger values keep the
        means nearer ``mean_prior``.  Default 1.
    mean_prior : array-like of shape (n_features,), optional
        Mean of the means' prior.  Default: the data's mean.
    degrees_of_freedom_prior : float, optional
        Degrees of freedom of the precisions' Wishart prior (above
        ``n_features - 1``).  Default ``n_features``.
    covariance_prior : float or array-like, optional
        Covariance of the precisions' prior: (n_features, n_features) for
        'full' and 'tied', (n_features,) for 'diag', a float for
        'spherical'.  Default: the data's covariance (sample covariance,
        unbiased; its diagonal for 'diag', their mean for 'spherical').
        The data-dependent defaults come from the statistics of the
        initialisation's last pass when it covers every row ('kmeans',
        'random'), else from one pass of their own; centred either way, so
        data far from the origin keep full precision.
    random_state : int, RandomState or None, default=None
        As in :class:`daskgmm.GaussianMixture`.
    warm_start : bool, default=False
        As in :class:`daskgmm.GaussianMixture`.
    verbose : int, default=0
        As in :class:`daskgmm.GaussianMixture`.
    verbose_interval : int, default=10
        As in :class:`daskgmm.GaussianMixture`.
    split_every : int, default=8
        As in :class:`daskgmm.GaussianMixture`.
    persist : {'auto', True, False}, default='auto'
        As in :class:`daskgmm.GaussianMixture`.
    partial_fit_mode : {'stepwise', 'exact'}, default='stepwise'
        As in :class:`daskgmm.GaussianMixture`.  In stepwise
        :meth:`partial_fit`, the posterior update takes the running
        per-sample statistics times ``n_samples_seen_`` (see
        :meth:`partial_fit` for what ``lower_bound_`` then means).
    learning_decay : float in (0.5, 1], default=0.6
        As in :class:`daskgmm.GaussianMixture`.
    learning_offset : float >= 0, default=2.0
        As in :class:`daskgmm.GaussianMixture`.
    missing : {'error', 'marginalize'}, default='error'
        As in :class:`daskgmm.GaussianMixture`.  With ``missing='marginalize'``
        the E-step is the mean-field update with the missing values in the
        variational distribution (their Gaussian given the observed ones),
        ``lower_bound_`` includes their entropy, and the data-dependent
        priors come from the rows with each missing entry replaced by its
        feature's observed mean.

    Attributes
    ----------
    weights_, means_, covariances_, precisions_, precisions_cholesky_,
    converged_, n_iter_, lower_bound_, lower_bounds_, n_features_in_,
    n_passes_, history_
        As :class:`daskgmm.GaussianMixture`; ``lower_bound_`` is the total
        evidence lower bound (up to scikit-learn's constants) after the last
        iteration.
    weight_concentration_ : tuple of two (n_components,) arrays or (n_components,)
    mean_precision_ : (n_components,)
    degrees_of_freedom_ : (n_components,), or float for 'tied'
    weight_concentration_prior_, mean_precision_prior_, mean_prior_,
    degrees_of_freedom_prior_, covariance_prior_
        The priors used (given, or computed from the data).

    Examples
    --------
    Four components allowed, two needed: the fit leaves two with weight
    near 0.

    >>> import numpy as np
    >>> from daskgmm import BayesianGaussianMixture
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.normal(-3, 1, (100, 2)), rng.normal(3, 1, (100, 2))])
    >>> bgmm = BayesianGaussianMixture(n_components=4, random_state=0).fit(X)
    >>> print(np.round(bgmm.weights_, 2))
    [0.5 0.5 0.  0. ]
    >>> print(np.bincount(bgmm.predict(X), minlength=4))
    [100 100   0   0]
    """

    _parameter_constraints: dict = {
        **_SklearnBayesianGaussianMixture._parameter_constraints,
        # The covariance models its Gauss-Wishart prior is defined for.
        "covariance_type": [StrOptions({name for name in COVARIANCE_TYPES if covariance_model(name).bayesian})],
        "split_every": [Interval(numbers.Integral, 2, None, closed="left")],
        "persist": [StrOptions({"auto"}), "boolean"],
        **ONLINE_PARAMETER_CONSTRAINTS,
        **MISSING_PARAMETER_CONSTRAINTS,
    }

    _family_name = "bayesian"
    # Settings a checkpoint must have been written with (daskgmm._checkpoint).
    _prior_params = (
        "weight_concentration_prior_type",
        "weight_concentration_prior",
        "mean_precision_prior",
        "mean_prior",
        "degrees_of_freedom_prior",
        "covariance_prior",
    )
    _state_declaration = BAYESIAN_GAUSSIAN_MIXTURE
    # The posterior a run of its family carries, as the state declares it.
    _posterior_names = tuple(field.key for field in BAYESIAN_GAUSSIAN_MIXTURE.of_kind(POSTERIOR))

    def __init__(
        self,
        *,
        n_components: int = 1,
        covariance_type: CovarianceType = DEFAULT_COVARIANCE_TYPE,
        tol: float = 1e-3,
        reg_covar: float = 1e-6,
        max_iter: int = 100,
        n_init: int = 1,
        init_params: Literal["kmeans", "k-means++", "random", "random_from_data"] = "kmeans",
        weight_concentration_prior_type: Literal["dirichlet_process", "dirichlet_distribution"] = "dirichlet_process",
        weight_concentration_prior: float | None = None,
        mean_precision_prior: float | None = None,
        mean_prior: ArrayLike | None = None,
        degrees_of_freedom_prior: float | None = None,
        covariance_prior: float | ArrayLike | None = None,
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
        )
        self.covariance_type = covariance_type
        self.weight_concentration_prior_type = weight_concentration_prior_type
        self.weight_concentration_prior = weight_concentration_prior
        self.mean_precision_prior = mean_precision_prior
        self.mean_prior = mean_prior
        self.degrees_of_freedom_prior = degrees_of_freedom_prior
        self.covariance_prior = covariance_prior

    # -- hooks of _BaseMixture --------------------------------------------------

    def _check_settings(self, n_features, n_components=None):
        """The given priors' shapes and values (scikit-learn's checks and wording)."""
        d, kind = n_features, self.covariance_type
        if self.mean_prior is not None:
            mean_prior = np.asarray(self.mean_prior, dtype=np.float64)
            if mean_prior.shape != (d,):
                raise ValueError(f"The parameter 'means' should have the shape of ({d},), but got {mean_prior.shape}.")
            if not np.all(np.isfinite(mean_prior)):
                raise ValueError("The parameter 'mean_prior' contains NaN or infinity.")
        if self.degrees_of_freedom_prior is not None and not self.degrees_of_freedom_prior > d - 1.0:
            raise ValueError(
                f"The parameter 'degrees_of_freedom_prior' should be greater than {d - 1}, "
                f"but got {self.degrees_of_freedom_prior:.3f}."
            )
        if self.covariance_prior is not None:
            covariance_model(kind).check_covariance_prior(self.covariance_prior, d)
        return None

    def _make_family(self, dX, counter, *, skip_nonfinite=False, sample_weight=None, weight_scale=1.0):
        """The priors (one pass over the data for the data-dependent ones),
        set as fitted attributes, and the family they define
        (``sample_weight``: the weights divided by ``weight_scale``)."""
        moments = None
        if self._data_dependent_priors():
            moments = data_moments(
                dX, self.split_every, counter, skip_nonfinite=skip_nonfinite, sample_weight=sample_weight
            )
        return self._set_priors(dX.shape[1], moments, weight_scale)

    def _data_dependent_priors(self):
        return self.mean_prior is None or self.covariance_prior is None

    def _set_priors(self, n_features, moments, weight_scale=1.0):
        """The priors as fitted attributes: the given ones as given, the
        defaults of the others, those of ``mean_prior`` and
        ``covariance_prior`` from ``moments`` (total weight, mean (D,) and
        centred scatter, (D, D) or its diagonal (D,): :func:`data_moments`
        or :func:`moments_from_stats`, of the weights divided by
        ``weight_scale``); the family they define."""
        d, kind = n_features, self.covariance_type
        mean = covariance = None
        if moments is not None:
            n, mean, scatter = moments
            n, scatter = n * weight_scale, scatter * weight_scale  # the real weights'
            covariance = scatter / max(n - 1.0, 1.0)  # n: the total weight (the repeated rows' count)
        self.weight_concentration_prior_ = (
            1.0 / self.n_components if self.weight_concentration_prior is None else float(self.weight_concentration_prior)
        )
        self.mean_precision_prior_ = 1.0 if self.mean_precision_prior is None else float(self.mean_precision_prior)
        self.mean_prior_ = mean if self.mean_prior is None else np.asarray(self.mean_prior, dtype=np.float64)
        self.degrees_of_freedom_prior_ = (
            float(d) if self.degrees_of_freedom_prior is None else float(self.degrees_of_freedom_prior)
        )
        if self.covariance_prior is not None:
            self.covariance_prior_ = covariance_model(kind).given_covariance_prior(self.covariance_prior)
        else:
            self.covariance_prior_ = covariance_model(kind).default_covariance_prior(covariance)
        return self._family(weight_scale)

    def _family(self, weight_scale=1.0):
        """The family of the fitted priors, for statistics of the sample
        weights divided by ``weight_scale``."""
        return BayesianFamily(
            self.weight_concentration_prior_type,
            self.weight_concentration_prior_,
            self.mean_precision_prior_,
            self.mean_prior_,
            self.degrees_of_freedom_prior_,
            self.covariance_prior_,
            weight_scale,
        )

    def _initial_runs(
        self, dX, checked, counter, family=None, *, skip_nonfinite=False, sample_weight=None, weight_scale=1.0
    ):
        """The restarts' starts: the M-step of ``family`` on the
        initialisation's statistics.  ``family`` None: the priors are set
        here, the data-dependent ones from those statistics when the
        initialisation covers every row ('kmeans', 'random': no pass of
        their own), else from one more pass."""
        seeds = spawn_seeds(self.random_state, self.n_init)
        specs = [Spec(self.n_components, self.covariance_type, seed, pool=seeds[0]) for seed in seeds]
        stats, every_row = initial_statistics(
            dX, self.init_params, specs, split_every=self.split_every, counter=counter,
            skip_nonfinite=skip_nonfinite, sample_weight=sample_weight,
        )
        if family is None:
            moments = None
            if self._data_dependent_priors():
                moments = moments_from_stats(stats[0]) if every_row else data_moments(
                    dX, self.split_every, counter, skip_nonfinite=skip_nonfinite, sample_weight=sample_weight
                )
            family = self._set_priors(dX.shape[1], moments, weight_scale)
        for spec in specs:
            spec.family = family
        return [run_from_stats(s, spec, self.reg_covar) for s, spec in zip(stats, specs)]

    def _apply_initial_parameters(self, run, checked):
        """The variational fit takes no initial parameters (as scikit-learn's
        ``BayesianGaussianMixture``: priors instead, set by the family):
        ``checked`` is None and ``run`` stays as the initialisation made it."""

    def _model(self):
        return self._family().model(self._run_from_attributes())

    # scikit-learn's BaseMixture hooks, with its signatures.

    # What scikit-learn's _get_parameters / _set_parameters exchange, in its order.
    _PARAMETER_NAMES = (
        "weight_concentration_",
        "mean_precision_",
        "means_",
        "degrees_of_freedom_",
        "covariances_",
        "precisions_cholesky_",
    )

    def _get_parameters(self):
        return tuple(getattr(self, name) for name in self._PARAMETER_NAMES)

    def _set_parameters(self, params):
        for name, value in zip(self._PARAMETER_NAMES, params, strict=True):
            setattr(self, name, value)
        run = self._run_from_attributes()
        self.weights_ = self._family().expected_weights(run.posterior["weight_concentration"])
        self._set_gaussian_parameters((self.weights_, self.means_, self.covariances_, self.precisions_cholesky_))


__all__ = ["BayesianGaussianMixture"]
