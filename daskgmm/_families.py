"""What differs between mixture families: the state of one EM run
(:class:`Run`), what a pass computes on each chunk, the start from initial
statistics, the E-step parameters, the M-step and the lower bound.

The EM core (:func:`daskgmm._engine.run_em`: passes, restarts, convergence,
checkpoints, monitoring) is the same for every family; it asks a family,
as scikit-learn's ``BaseMixture`` asks its subclasses, on the client:

* ``initial_run(stats, covariance_type, reg_covar)``: a :class:`Run` from the
  statistics of initial responsibilities (scikit-learn's ``_initialize``);
* ``model(run)``: the :class:`daskgmm._blocks.Model` the E-step of the next
  pass evaluates (``log pi_k + log N(x | mu_k, Sigma_k)`` plus, for the
  variational family, per-component constants that fold into the weights);
* ``step(run, stats, reg_covar, model)``: the M-step from a pass's merged
  statistics, in place, returning the lower bound that pass measured
  (``model`` is the one its E-step used);

and, in the tasks of a pass (the family travels with each pass's payload,
so it stays small and picklable):

* ``chunk_statistics(block, model, ...)``: a chunk's E-step and statistics;
* ``merge(stats_list)``: the merge of statistics, in every merge task;
* ``chunk_log_likelihood(block, model, ...)``: each row's log-likelihood
  (the scores of final models), and ``chunk_classification`` the same with
  each row's classification entropy (their ICL);
* ``chunk_log_resp(block, model, ...)`` and ``leaves_rows_out(...)``: the
  per-row outputs (``score_samples``, ``predict``, ``predict_proba``).

The client side works on K x D x D objects (NumPy/SciPy) and sees no
sample.  Both families use the block functions unchanged
(:class:`GaussianChunks`): the variational E-step is a Gaussian E-step with
shifted log-weights, and the entropy of the responsibilities its bound
needs, ``sum_ik r_ik log r_ik``, follows from the statistics every pass
merges anyway (:func:`expected_weighted_log_prob`).  ``marginalize``
(``missing='marginalize'``) chooses the block functions that marginalise
NaN features (:mod:`daskgmm._blocks_missing`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np
from scipy.special import betaln, digamma, gammaln

from . import _blocks, _blocks_missing
from ._blocks import Stats
from ._covariance import (
    DEFAULT_M_STEP_CONTROL,
    MStepControl,
    covariance_model,
    covariances_from_stats,
    make_model,
    precisions_cholesky_from_covariances,
)
from ._stats import scale_statistics

WEIGHT_CONCENTRATION_PRIOR_TYPES = ("dirichlet_process", "dirichlet_distribution")


@dataclass
class Run:
    """State of one EM run (a restart, or one candidate model)."""

    covariance_type: str
    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    precisions_cholesky: np.ndarray
    lower_bound: float = -np.inf
    n_iter: int = 0
    converged: bool = False
    history: list = field(default_factory=list)
    tag: object = None
    # One dict per iteration: iteration, lower_bound, change, seconds, n_chunks
    # (the estimator's ``history_``; saved in checkpoints).
    records: list = field(default_factory=list)
    # Rows the last E-step used (fewer than the data's with skip_nonfinite).
    n_samples: float | None = None
    # Family-specific parameters besides the Gaussian ones (the variational
    # posterior of daskgmm._families.BayesianFamily), name -> array.
    posterior: dict = field(default_factory=dict)
    # (weights, means, covariances) of the maximum-likelihood M-step of the
    # last statistics the family's M-step took, whatever the family (for a
    # constrained mclust model, that of its statistics' block kind): the
    # data's mean and variance follow from them (checkpoints compare them
    # with the data's; CovarianceModel.moments).
    moments: tuple | None = None
    # The merged statistics of the pass whose M-step gave the parameters
    # (:func:`run_em` keeps them, checkpoints save them): a stepwise stream
    # of ``partial_fit`` continuing the fit starts from them.
    statistics: Stats | None = None
    # The weight pi_0 of the noise component (daskgmm._families.GaussianFamily
    # with a noise volume); None without one.  ``weights`` are then the
    # Gaussian components', summing to 1 - pi_0.
    noise_weight: float | None = None
    # The InnerIterations (daskgmm._covariance) of each M-step this run made
    # since it was made (initialised, resumed or continued): how many inner
    # iterations the models without a closed form took, and whether they met
    # m_step_tol (0 and True for a closed form).
    m_step_iterations: list = field(default_factory=list)

    @property
    def n_components(self):
        return self.means.shape[0]


def m_step(run, stats, reg_covar, control=None):
    """Maximum-likelihood M-step: new parameters of ``run`` from merged
    stats (``control``: the :class:`daskgmm._covariance.MStepControl` of
    the models without a closed form, whose inner iterations start from
    ``run.covariances`` when the run has them, as mclust's ``me``), and
    ``run.moments``; its inner iterations are appended to
    ``run.m_step_iterations``."""
    kind = covariance_model(run.covariance_type)
    (weights, means, covariances), inner = kind.m_step_with_iterations(stats, reg_covar, control, run.covariances)
    run.m_step_iterations.append(inner)
    run.moments = kind.moments(stats, reg_covar, (weights, means, covariances))
    run.weights, run.means, run.covariances = weights, means, covariances
    run.precisions_cholesky = precisions_cholesky_from_covariances(covariances, run.covariance_type)


def expected_weighted_log_prob(model, stats):
    """``sum_i sum_k r_ik (log_weights_k + log N(x_i | model_k))`` of a pass,
    from its merged statistics and the ``model`` its E-step evaluated.

    With ``delta_k = m_k - mu_k`` (weighted mean less model mean), the
    responsibility-weighted squared Mahalanobis distances are
    ``tr(P_k^T (S_k + N_k delta_k delta_k^T) P_k)``, ``S_k`` the centred
    scatter: no pass over the samples is needed.
    """
    nk = np.asarray(stats.nk, dtype=np.float64)
    means = np.asarray(stats.means, dtype=np.float64)
    d = means.shape[1]
    quadratic = covariance_model(model.covariance_type).expected_mahalanobis(model, stats)
    log_det = np.asarray(model.log_det, dtype=np.float64)
    constant = np.asarray(model.log_weights, dtype=np.float64) + log_det - 0.5 * d * math.log(2 * math.pi)
    return float(nk @ constant) - 0.5 * quadratic


class GaussianChunks:
    """The chunk side of a family whose E-step is a Gaussian one,
    ``log pi_k + log N(x | mu_k, Sigma_k)`` with the model's log-weights:
    the block functions of :mod:`daskgmm._blocks`, or with ``marginalize``
    those of :mod:`daskgmm._blocks_missing` (NaN features marginalised, a
    row with every feature missing left out).  A dataclass with a
    ``marginalize`` field inherits it."""

    marginalize: bool

    def marginalizing(self, marginalize=True):
        """This family, its NaN features marginalised when ``marginalize``."""
        marginalize = bool(marginalize)
        return self if marginalize == self.marginalize else dataclasses.replace(self, marginalize=marginalize)

    def chunk_statistics(
        self, block, model, *, row_offset=0, skip_nonfinite=False, groups=None, sample_weight=None, labels=None
    ):
        """E-step and merged statistics of one chunk (``groups``: ``model``
        is several stacked, :func:`daskgmm._blocks.stack_models`); rows
        holding NaN or infinity left out with ``skip_nonfinite``, else a
        ValueError names one (NaN features are no error with
        ``marginalize``); ``labels`` (-1 unlabelled) fix the labelled rows'
        responsibilities."""
        if self.marginalize:
            return _blocks_missing.marginal_block_statistics(
                block, model, row_offset=row_offset, groups=groups, sample_weight=sample_weight, labels=labels
            )
        return _blocks.block_statistics(
            block, model, row_offset=row_offset, skip_nonfinite=skip_nonfinite, groups=groups,
            sample_weight=sample_weight, labels=labels,
        )

    # A plain function, not a method: the merge tasks of a pass carry it, and
    # a bound method would carry the whole family (priors included) in each.
    merge = staticmethod(_blocks.merge_many)

    def chunk_log_likelihood(self, block, model, *, row_offset=0):
        """``log p(x_i)`` of every row of one chunk; 0 for a row with every
        feature missing under ``marginalize`` (it counts for nothing)."""
        if self.marginalize:
            log_norm, _ = _blocks_missing.marginal_log_resp(block, model, row_offset=row_offset)
            xp = _blocks.get_namespace(block)
            return xp.where(xp.isnan(log_norm), xp.zeros_like(log_norm), log_norm)
        log_norm, _ = _blocks.estimate_log_resp(block, model)
        return log_norm

    def chunk_classification(self, block, model, *, row_offset=0):
        """``(log p(x_i), -max_k log r_ik, counted_i)`` of every row of one
        chunk: the log-likelihood, the classification entropy of the row's
        most probable component (the term ICL adds to BIC, mclust's ``icl``)
        and 1.0 for a row that counts, from one E-step.  Under
        ``marginalize`` a row with every feature missing counts for nothing:
        0, 0 and 0.0.  The third is float64, the others of the block's
        dtype."""
        xp = _blocks.get_namespace(block)
        if self.marginalize:
            log_norm, log_resp = _blocks_missing.marginal_log_resp(block, model, row_offset=row_offset)
            observed = ~xp.isnan(log_norm)
            zeros = xp.zeros_like(log_norm)
            log_norm = xp.where(observed, log_norm, zeros)
            entropy = xp.where(observed, -xp.max(log_resp, axis=1), zeros)
            return log_norm, entropy, xp.astype(observed, xp.float64)
        log_norm, log_resp = _blocks.estimate_log_resp(block, model)
        return log_norm, -xp.max(log_resp, axis=1), xp.astype(xp.ones_like(log_norm), xp.float64)

    def chunk_log_resp(self, block, model, *, row_offset=0, skip_nonfinite=False):
        """``(log p(x_i), log r_ik)`` of the rows of one chunk.  A row left
        out (:meth:`leaves_rows_out`) has NaN; otherwise a row holding NaN
        or infinity raises a ValueError naming it (global index
        ``row_offset`` + its row in the chunk)."""
        if self.marginalize:
            return _blocks_missing.marginal_log_resp(block, model, row_offset=row_offset)
        log_norm, log_resp = _blocks.estimate_log_resp(block, model, skip_nonfinite=skip_nonfinite)
        if not skip_nonfinite:
            _check_rows_finite(_blocks.get_namespace(block), block, log_norm, row_offset)
        return log_norm, log_resp

    def leaves_rows_out(self, skip_nonfinite=False):
        """Whether :meth:`chunk_log_resp` may leave rows out (their label is
        then -1): those holding NaN or infinity with ``skip_nonfinite``,
        those with every feature missing with ``marginalize``."""
        return self.marginalize or bool(skip_nonfinite)


def _check_rows_finite(xp, block, log_norm, row_offset):
    """A row holding NaN or infinity raises a ValueError naming it (global
    index): it would otherwise make the block's pivot, and so every answer
    of the block, NaN.  The rows are looked at only when some per-row result
    is not finite, so a clean block costs one check of (n,) values.  Finite
    rows too far out for the dtype keep their -inf (documented)."""
    if not bool(xp.all(xp.isfinite(log_norm))) and not bool(xp.all(_blocks._finite_rows(xp, block))):
        _blocks._raise_nonfinite(xp, block, row_offset)


@dataclass(frozen=True)
class GaussianFamily(GaussianChunks):
    """Maximum-likelihood EM: :class:`daskgmm.GaussianMixture`.  The lower
    bound is the mean log-likelihood per sample before the M-step.

    ``noise_log_volume``: mclust's noise component (Banfield & Raftery
    1993), a uniform density ``1 / V`` with its own weight ``pi_0``
    (``run.noise_weight``), one more column of the E-step
    (:class:`daskgmm._blocks.Model`); None without one.  Its M-step is
    ``pi_0 = N_0 / N`` with ``N_0 = N - sum_k N_k``, ``pi_k = N_k / N``;
    the Gaussian components' means and covariances are those of their own
    responsibilities, as without noise.  ``noise_log_ranges`` (a tuple, the
    log-sides of the noise's box, summing to ``noise_log_volume``): rows
    with missing features get the uniform's marginal over their observed
    features; None where only the volume is known.
    ``m_step_max_iter``, ``m_step_tol``: the estimator's bounds on the inner
    iterations of the M-steps without a closed form
    (:class:`daskgmm._covariance.MStepControl`).
    """

    marginalize: bool = False
    noise_log_volume: float | None = None
    noise_log_ranges: tuple | None = None
    m_step_max_iter: int = DEFAULT_M_STEP_CONTROL.max_iter
    m_step_tol: float = DEFAULT_M_STEP_CONTROL.tol

    name = "gaussian"
    posterior_names = ()

    @property
    def m_step_control(self):
        return MStepControl(self.m_step_max_iter, self.m_step_tol)

    def initial_run(self, stats, covariance_type, reg_covar):
        run = Run(covariance_type, None, None, None, None)
        m_step(run, stats, reg_covar, self.m_step_control)
        return run

    def model(self, run):
        model = make_model(run.weights, run.means, run.precisions_cholesky, run.covariance_type)
        if self.noise_log_volume is None:
            return model
        with np.errstate(divide="ignore"):
            noise = np.log(np.float64(run.noise_weight)) - self.noise_log_volume
        ranges = None if self.noise_log_ranges is None else np.asarray(self.noise_log_ranges, dtype=np.float64)
        return model._replace(noise_log_density=np.asarray(noise), noise_log_ranges=ranges)

    def step(self, run, stats, reg_covar, model):
        bound = float(stats.log_likelihood) / float(stats.n_samples)
        m_step(run, stats, reg_covar, self.m_step_control)
        if self.noise_log_volume is not None:
            noise_weights(run, stats)
        return bound


def noise_weights(run, stats):
    """mclust's weights with a noise component, in place: ``pi_k = N_k / N``
    for the Gaussian components (``run.weights``, which :func:`m_step` made
    ``N_k / sum_k N_k``) and ``pi_0 = 1 - sum_k pi_k`` for the noise
    (``run.noise_weight``), ``N`` the rows' total weight."""
    n_samples = float(stats.n_samples)
    gaussian = min(float(np.sum(np.asarray(stats.nk, dtype=np.float64))) / n_samples, 1.0)
    run.weights = run.weights * gaussian
    run.noise_weight = max(1.0 - gaussian, 0.0)


GAUSSIAN = GaussianFamily()


@dataclass(frozen=True, eq=False)
class BayesianFamily(GaussianChunks):
    """Variational EM with a Dirichlet (process or distribution) prior on the
    weights and Gaussian-Wishart priors on the components:
    :class:`daskgmm.BayesianGaussianMixture`, scikit-learn's formulas
    (``sklearn.mixture._bayesian_mixture``) on merged statistics.  The lower
    bound is the total evidence lower bound after the M-step, up to
    scikit-learn's constant terms.

    ``run.posterior`` holds ``weight_concentration`` ((2, K) for the
    Dirichlet process, (K,) otherwise), ``mean_precision`` (K,) and
    ``degrees_of_freedom`` ((K,), or () for 'tied').

    ``weight_scale``: the statistics it is given are of the sample weights
    divided by this power of two (see ``_engine.inputs.check_sample_weight``).
    Unlike maximum likelihood, the posterior depends on the real counts (the
    prior weighs against them), so they are multiplied back, exactly.

    ``marginalize``: NaN features are missing, marginalised
    (:class:`GaussianChunks`).
    """

    weight_concentration_prior_type: str
    weight_concentration_prior: float
    mean_precision_prior: float
    mean_prior: np.ndarray
    degrees_of_freedom_prior: float
    covariance_prior: object
    weight_scale: float = 1.0
    marginalize: bool = False

    name = "bayesian"
    posterior_names = ("weight_concentration", "mean_precision", "degrees_of_freedom")

    def __sizeof__(self):
        # What Dask's sizeof sees of the payload a pass carries (it decides
        # whether the payload rides inside the map tasks): the priors too.
        priors = (self.mean_prior, self.covariance_prior)
        return object.__sizeof__(self) + sum(np.asarray(prior).nbytes for prior in priors)

    # -- M-step -------------------------------------------------------------

    def initial_run(self, stats, covariance_type, reg_covar):
        run = Run(covariance_type, None, None, None, None)
        self._m_step(run, stats, reg_covar)
        return run

    def step(self, run, stats, reg_covar, model):
        self._m_step(run, stats, reg_covar)
        return self.lower_bound(run, self._real(stats), model)

    def _real(self, stats):
        """``stats`` of the real sample weights."""
        return stats if self.weight_scale == 1.0 else scale_statistics(stats, self.weight_scale)

    def _m_step(self, run, stats, reg_covar):
        kind = covariance_model(run.covariance_type)
        nk_raw = np.asarray(self._real(stats).nk, dtype=np.float64)
        # scikit-learn's _estimate_gaussian_parameters: nk + 10 eps, the
        # weighted means and covariances (reg_covar added), these from the
        # statistics as given (weights of order 1: no count near 10 eps).
        run.moments = covariances_from_stats(stats, reg_covar, kind)
        _, xk, sk = run.moments
        nk = nk_raw + 10 * np.finfo(np.asarray(stats.means).dtype).eps
        if self.weight_concentration_prior_type == "dirichlet_process":
            tail = np.hstack((np.cumsum(nk[::-1])[-2::-1], 0.0))
            concentration = np.stack([1.0 + nk, self.weight_concentration_prior + tail])
        else:
            concentration = self.weight_concentration_prior + nk
        mean_precision = self.mean_precision_prior + nk
        means = (self.mean_precision_prior * self.mean_prior + nk[:, None] * xk) / mean_precision[:, None]
        diff = xk - self.mean_prior
        dof, covariances = kind.wishart_posterior(self, nk, sk, diff, mean_precision)
        run.means = means
        run.covariances = covariances
        run.precisions_cholesky = kind.precisions_cholesky(covariances)
        run.posterior = {"weight_concentration": concentration, "mean_precision": mean_precision, "degrees_of_freedom": dof}
        run.weights = self.expected_weights(concentration)

    def expected_weights(self, concentration):
        """scikit-learn's ``weights_``: the mean of the weights' posterior."""
        if self.weight_concentration_prior_type == "dirichlet_process":
            total = concentration[0] + concentration[1]
            weights = concentration[0] / total * np.hstack((1.0, np.cumprod(concentration[1] / total)[:-1]))
            return weights / weights.sum()
        return concentration / concentration.sum()

    # -- E-step -------------------------------------------------------------

    def expected_log_weights(self, concentration):
        if self.weight_concentration_prior_type == "dirichlet_process":
            digamma_sum = digamma(concentration[0] + concentration[1])
            a = digamma(concentration[0]) - digamma_sum
            b = digamma(concentration[1]) - digamma_sum
            return a + np.hstack((0.0, np.cumsum(b)[:-1]))
        return digamma(concentration) - digamma(np.sum(concentration))

    def model(self, run):
        """Expected log-weights plus, per component, the expectations of the
        Gauss-Wishart log-density not carried by ``log N(x | means,
        covariances)``: ``-D/2 log(dof) + (log_lambda - D / mean_precision) / 2``."""
        post = run.posterior
        d = run.means.shape[1]
        dof = np.asarray(post["degrees_of_freedom"], dtype=np.float64)
        log_lambda = d * math.log(2.0) + np.sum(digamma(0.5 * (dof - np.arange(d)[:, None])), axis=0)
        shift = -0.5 * d * np.log(dof) + 0.5 * (log_lambda - d / post["mean_precision"])
        log_weights = self.expected_log_weights(post["weight_concentration"]) + shift
        return covariance_model(run.covariance_type).block_model(log_weights, run.means, run.precisions_cholesky)

    # -- lower bound ----------------------------------------------------------

    def lower_bound(self, run, stats, model):
        """scikit-learn's ``_compute_lower_bound`` with ``-sum r log r`` from
        the pass's statistics (``model``: the parameters of its E-step)."""
        kind = covariance_model(run.covariance_type)
        post = run.posterior
        d = run.means.shape[1]
        k = run.means.shape[0]
        entropy = float(stats.log_likelihood) - expected_weighted_log_prob(model, stats)
        dof = np.asarray(post["degrees_of_freedom"], dtype=np.float64)
        log_det = kind.log_det_cholesky(run.precisions_cholesky, d) - 0.5 * d * np.log(dof)
        log_wishart = kind.total_log_wishart_norm(_log_wishart_norm(dof, log_det, d), k)
        concentration = post["weight_concentration"]
        if self.weight_concentration_prior_type == "dirichlet_process":
            log_norm_weight = -float(np.sum(betaln(concentration[0], concentration[1])))
        else:
            log_norm_weight = float(gammaln(np.sum(concentration)) - np.sum(gammaln(concentration)))
        return entropy - log_wishart - log_norm_weight - 0.5 * d * float(np.sum(np.log(post["mean_precision"])))


def _log_wishart_norm(degrees_of_freedom, log_det_precisions_chol, n_features):
    """Log normalisation of the Wishart distribution, less its log(pi) term
    (scikit-learn's ``_log_wishart_norm``)."""
    return -(
        degrees_of_freedom * log_det_precisions_chol
        + degrees_of_freedom * n_features * 0.5 * math.log(2.0)
        + np.sum(gammaln(0.5 * (degrees_of_freedom - np.arange(n_features)[:, None])), axis=0)
    )
