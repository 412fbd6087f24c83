"""Covariance models: everything that differs by ``covariance_type``, in one
registry.  Runs on the client on K x D x D objects (NumPy/SciPy).

A covariance model is one object of :data:`REGISTRY`, looked up once by
:func:`covariance_model`; no code outside this module and the block math
(``_blocks*``) names a covariance type.  Each model knows its shapes, its
M-step from merged statistics, its precision Cholesky factor and
log-determinant, its free parameters, the checks of user-given and saved
precisions, how to sample it, and which of the block math's accumulators
(``block_kind``) computes its statistics.  A constrained model is a special
case of the model it constrains (scipy's ``stats/_covariance.py`` classes;
gmmx's tied covariances): it inherits the math and overrides its shapes and
its M-step.

Conventions follow scikit-learn's ``sklearn.mixture.GaussianMixture`` so that
fitted attributes are interchangeable:

==============  ==================  ============================================
type            covariances_        precisions_cholesky_
==============  ==================  ============================================
full            (K, D, D)           (K, D, D) upper triangular, P P^T = Sigma^-1
tied            (D, D)              (D, D)
diag            (K, D)              (K, D)  1 / sqrt(variance)
spherical       (K,)                (K,)
tied-diag       (D,)                (D,)    one diagonal shared by all components
tied-spherical  (1,)                (1,)    one variance shared by all components
==============  ==================  ============================================

The two shared diagonal types are scikit-learn's proposed ones
(scikit-learn/scikit-learn#33692, whose example prints a tied-spherical
covariance as a one-element array).  Their statistics are those of 'diag'
and 'spherical' (per component, of a model whose components all hold the
shared precisions), pooled over the components by the M-step;
:class:`daskgmm.BayesianGaussianMixture` does not support them.

mclust's models (Celeux & Govaert 1995) write each covariance as
``Sigma_k = lambda_k D_k A_k D_k^T``: a volume ``lambda_k`` (``det(Sigma_k)
= lambda_k^D``), an orientation ``D_k`` (eigenvectors) and a shape ``A_k``
(diagonal, determinant 1).  A model's name says, for volume, shape and
orientation in that order, whether it is Equal for all components, Variable,
or the Identity.  Six are the types above under a second name (the same
registry object, the same fit); the other eight are new:

=====  ======================  ============  ==============  ==============
model  Sigma_k                 covariances_  same as         M-step
=====  ======================  ============  ==============  ==============
EII    lambda I                (1,)          tied-spherical  closed form
VII    lambda_k I              (K,)          spherical       closed form
EEI    lambda A                (D,)          tied-diag       closed form
VEI    lambda_k A              (K, D)                        iterative
EVI    lambda A_k              (K, D)                        closed form
VVI    lambda_k A_k            (K, D)        diag            closed form
EEE    lambda D A D^T          (D, D)        tied            closed form
VEE    lambda_k D A D^T        (K, D, D)                     iterative
EVE    lambda D A_k D^T        (K, D, D)                     iterative (MM)
VVE    lambda_k D A_k D^T      (K, D, D)                     iterative (MM)
EEV    lambda D_k A D_k^T      (K, D, D)                     closed form
VEV    lambda_k D_k A D_k^T    (K, D, D)                     iterative
EVV    lambda D_k A_k D_k^T    (K, D, D)                     closed form
VVV    lambda_k D_k A_k D_k^T  (K, D, D)     full            closed form
=====  ======================  ============  ==============  ==============

The eight new models hold their covariances as 'diag' (VEI, EVI) or 'full'
(the others) do, and their statistics are those of that block kind: their
M-step is mclust's (its Fortran ``ms*`` routines) on the merged counts
``N_k`` and centred scatter ``W_k``, with ``reg_covar`` added as ``W_k + N_k
reg_covar I`` before the constraint (so the fitted covariances satisfy it
exactly).  The iterative ones run on the client, bounded by an
:class:`MStepControl`; EVE and VVE by Browne & McNicholas's (2014) MM
algorithms for the common orientation.  As in mclust's ``me``, an M-step of
EM starts its inner iterations from the covariances before it
(``previous``: their volumes, shapes and orientation; VEE excepted, which
``me`` restarts), the initialisation's M-step from mclust's fixed start;
each reports its :class:`InnerIterations`.  Their free parameters are
mclust's ``nVarParams``; :class:`daskgmm.BayesianGaussianMixture` does not
support them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import linalg

from ._blocks import Model, Stats

ILL_DEFINED_MESSAGE = (
    "Fitting the mixture model failed because some components have ill-defined "
    "empirical covariance (for instance caused by singleton or collapsed samples). "
    "Try to decrease the number of components, increase reg_covar, or scale the input data."
)

# The estimators' ``covariance_type`` as type checkers see it.
CovarianceType = Literal[
    "full", "tied", "diag", "spherical", "tied-diag", "tied-spherical",
    "EII", "VII", "EEI", "VEI", "EVI", "VVI", "EEE", "VEE", "EVE", "VVE", "EEV", "VEV", "EVV", "VVV",
]


@dataclass(frozen=True)
class MStepControl:
    """The inner iterations of the M-steps without a closed form (VEI, VEE,
    EVE, VVE, VEV): at most ``max_iter`` of them, until the relative change
    of mclust's measure is at most ``tol`` (mclust's ``emControl`` second
    ``itmax`` and ``tol``).  They start from the covariances before the
    M-step (VEE excepted, as in mclust), or from mclust's fixed start
    without them, so the M-step stays a function of the merged statistics
    and those covariances."""

    max_iter: int = 1000
    tol: float = 1.5e-8


DEFAULT_M_STEP_CONTROL = MStepControl()


@dataclass(frozen=True)
class InnerIterations:
    """What the inner iterations of one M-step did: ``n_iter`` of them (0
    for a closed form), ``converged`` False when they stopped at
    :attr:`MStepControl.max_iter` before their change met
    :attr:`MStepControl.tol` (mclust's "inner iteration limit reached")."""

    n_iter: int = 0
    converged: bool = True


CLOSED_FORM = InnerIterations()


def _chol_precision(cov, d):
    try:
        cov_chol = linalg.cholesky(cov, lower=True)
    except (linalg.LinAlgError, ValueError):
        raise ValueError(ILL_DEFINED_MESSAGE) from None
    return linalg.solve_triangular(cov_chol, np.eye(d), lower=True).T


def _upper_factor(precision):
    """Upper-triangular ``P`` with ``P P^T = precision``.  With ``J`` the
    exchange matrix, ``J Lambda J = L L^T`` (lower Cholesky) makes
    ``P = J L J`` (scikit-learn's ``_compute_precision_cholesky_from_precisions``)."""
    flipped = precision[::-1, ::-1]
    return np.ascontiguousarray(linalg.cholesky(flipped, lower=True)[::-1, ::-1])


def _deviations(model, stats):
    """``nk``, ``m_k - mu_k``, the scatter and the model's precision factors,
    in float64."""
    nk = np.asarray(stats.nk, dtype=np.float64)
    means = np.asarray(stats.means, dtype=np.float64)
    scatter = np.asarray(stats.scatter, dtype=np.float64)
    mu = np.asarray(model.means, dtype=np.float64)
    prec = np.asarray(model.precisions_cholesky, dtype=np.float64)
    return nk, means - mu, scatter, prec


class CovarianceModel:
    """One covariance type.  Subclasses set :attr:`name` and
    :attr:`block_kind` and fill the hooks below.

    Attributes
    ----------
    name : str
        The ``covariance_type`` that selects it.
    block_kind : str
        The covariance type of the block math (``_blocks.Model`` and
        ``_blocks.Stats``) that evaluates it and accumulates its statistics.
    stackable : bool
        Whether several models of this block kind can be evaluated stacked on
        one block (``_blocks.stack_models``).
    bayesian : bool
        Whether :class:`daskgmm.BayesianGaussianMixture` supports it.
    """

    name: str
    block_kind: str
    stackable = True
    bayesian = True

    def __repr__(self):
        return f"<covariance model {self.name!r}>"

    # -- shapes ---------------------------------------------------------------

    def covariances_shape(self, n_components, n_features):
        """Shape of ``covariances_``, ``precisions_`` and ``precisions_cholesky_``."""
        raise NotImplementedError

    def scatter_shape(self, n_components, n_features):
        """Shape of the centred scatter of its :class:`daskgmm._blocks.Stats`."""
        raise NotImplementedError

    # -- M-step ---------------------------------------------------------------

    def covariances(self, scatter, nk, reg_covar, control=None):
        """Covariances from the merged centred scatter and the counts ``nk``
        (with scikit-learn's ``10 eps`` added), ``reg_covar`` on the diagonal;
        ``control`` (an :class:`MStepControl`) bounds the inner iterations of
        a model without a closed form, which start from mclust's fixed start."""
        raise NotImplementedError

    def covariances_with_iterations(self, scatter, nk, reg_covar, control=None, previous=None):
        """:meth:`covariances` and their :class:`InnerIterations`; a model
        without a closed form starts its inner iterations from ``previous``
        (covariances of its stored shape, those before this M-step), or
        from mclust's fixed start when None."""
        return self.covariances(scatter, nk, reg_covar, control), CLOSED_FORM

    def m_step(self, stats: Stats, reg_covar: float, control=None, previous=None):
        """M-step: weights, means and covariances from merged stats (closed
        form, or the inner iterations ``control`` bounds, started from the
        ``previous`` covariances when given).

        ``nk`` gets scikit-learn's ``10 * eps`` so an empty component keeps
        finite parameters (mean 0, covariance ``reg_covar * I``, weight ~0)
        instead of NaN.

        Returns
        -------
        weights : (K,)
        means : (K, D)
        covariances : see the module's table
        """
        return self.m_step_with_iterations(stats, reg_covar, control, previous)[0]

    def m_step_with_iterations(self, stats: Stats, reg_covar: float, control=None, previous=None):
        """:meth:`m_step` and the :class:`InnerIterations` it made.

        Returns
        -------
        parameters : (weights, means, covariances), as :meth:`m_step`'s
        inner : InnerIterations
        """
        if stats.covariance_type != self.block_kind:
            raise ValueError(f"{self.name!r} needs {self.block_kind!r} statistics, got {stats.covariance_type!r}.")
        nk_raw = np.asarray(stats.nk, dtype=np.float64)
        dtype = np.asarray(stats.means).dtype
        eps = 10 * np.finfo(dtype).eps
        nk = nk_raw + eps
        means = np.asarray(stats.means, dtype=np.float64) * (nk_raw / nk)[:, None]
        covariances, inner = self.covariances_with_iterations(
            np.asarray(stats.scatter, dtype=np.float64), nk, reg_covar, control, previous
        )
        weights = nk / nk.sum()
        return (weights, means, covariances), inner

    def moments(self, stats: Stats, reg_covar: float, parameters):
        """``(weights, means, covariances)`` whose law of total variance gives
        the spread of the rows ``stats`` describe (checkpoints compare it with
        the data's): ``parameters``, this model's M-step, when its covariance
        keeps the trace of the scatter (``sum_k w_k tr(Sigma_k) = tr(sum_k
        W_k) / N + D reg_covar``)."""
        return parameters

    # -- precisions -----------------------------------------------------------

    def precisions_cholesky(self, covariances):
        """Upper-triangular ``P`` with ``P P^T = Sigma^-1`` by a Cholesky
        factor and a triangular solve (never an explicit inverse); ValueError
        when a covariance is not positive definite."""
        raise NotImplementedError

    def precisions_cholesky_from_precisions(self, precisions):
        """Factor ``P`` with ``P P^T`` the user-given precisions
        (``precisions_init``), the one every M-step gives."""
        raise NotImplementedError

    def precisions(self, precisions_cholesky):
        """``P P^T``."""
        raise NotImplementedError

    def covariances_from_precisions_cholesky(self, precisions_cholesky):
        """Covariances implied by a precision factor (for ``precisions_init``)."""
        raise NotImplementedError

    def log_det_cholesky(self, precisions_cholesky, n_features):
        """log det of the precision's Cholesky factor, per component (or one
        for a model whose components share it)."""
        raise NotImplementedError

    def n_covariance_parameters(self, n_components, n_features):
        """Number of free covariance parameters."""
        raise NotImplementedError

    def n_parameters(self, n_components, n_features):
        """Number of free parameters of the mixture (for BIC/AIC)."""
        cov = self.n_covariance_parameters(n_components, n_features)
        return int(cov + n_components * n_features + n_components - 1)

    # -- the block math -------------------------------------------------------

    def block_precisions(self, precisions_cholesky, log_det, n_components):
        """``precisions_cholesky`` and ``log_det`` as the block math's
        ``block_kind`` model holds them."""
        return precisions_cholesky, log_det

    def block_model(self, log_weights, means, precisions_cholesky):
        """Block-level :class:`Model` with these log-weights (K,)."""
        means = np.asarray(means)
        precisions_cholesky = np.asarray(precisions_cholesky)
        log_det = np.asarray(self.log_det_cholesky(precisions_cholesky, means.shape[1]))
        precisions_cholesky, log_det = self.block_precisions(precisions_cholesky, log_det, means.shape[0])
        return Model(self.block_kind, log_weights, means, precisions_cholesky, log_det)

    def make_model(self, weights, means, precisions_cholesky):
        """Block-level :class:`Model` from client-side parameters."""
        with np.errstate(divide="ignore"):
            log_weights = np.log(weights)
        return self.block_model(log_weights, means, precisions_cholesky)

    def expected_mahalanobis(self, model, stats):
        """``sum_ik r_ik ||(x_i - mu_k) P_k||^2`` from a pass's merged
        statistics and the :class:`Model` its E-step evaluated (both of this
        block kind).  With ``delta_k = m_k - mu_k`` it is
        ``tr(P_k^T (S_k + N_k delta_k delta_k^T) P_k)``, ``S_k`` the centred
        scatter."""
        raise NotImplementedError

    def pooled_scatter(self, scatter):
        """``sum_k S_k`` of the centred scatter of statistics of this block
        kind: (D, D) where they hold matrices, the diagonal (D,) where they
        hold only that."""
        return scatter.sum(axis=0)

    # -- checks ---------------------------------------------------------------

    def check_precisions(self, precisions):
        """ValueError unless the user-given ``precisions`` (of the right
        shape) are positive definite (scikit-learn's wording)."""
        raise NotImplementedError

    def check_saved(self, covariances, precisions_cholesky, eps, fail):
        """Check saved covariances and precision factors (float64 arrays of
        the right shapes, rounded once to a dtype of machine epsilon ``eps``);
        ``fail(field, message)`` raises the error naming the field
        ('covariances' or 'precisions_cholesky')."""
        raise NotImplementedError

    # -- summaries of the fitted covariances ----------------------------------

    def variances(self, covariances, n_components, n_features):
        """Variance along each feature, per component: (K, D)."""
        raise NotImplementedError

    def traces(self, covariances, n_components, n_features):
        """Trace of each component's covariance: (K,)."""
        raise NotImplementedError

    def within(self, weights, covariances, n_features):
        """``sum_k w_k Sigma_k``, (D, D)."""
        raise NotImplementedError

    def projected(self, covariances, axes, n_components):
        """``axes.T @ Sigma_k @ axes`` for every component, (K, 2, 2); ``axes`` is (D, 2)."""
        raise NotImplementedError

    def sample(self, rng, means, covariances, counts):
        """``counts[k]`` samples of each component, stacked in component order."""
        raise NotImplementedError

    # -- the variational family (BayesianGaussianMixture) ---------------------

    def covariance_prior_shape(self, n_features):
        """Shape of ``covariance_prior_``."""
        raise NotImplementedError

    def check_covariance_prior(self, prior, n_features):
        """ValueError unless a user-given ``covariance_prior`` has the right
        shape and is positive (definite)."""
        prior = np.asarray(prior, dtype=np.float64)
        expected = self.covariance_prior_shape(n_features)
        if prior.shape != expected:
            raise ValueError(
                f"The parameter '{self.name} covariance_prior' should have the shape of {expected}, but got {prior.shape}."
            )
        self._check_covariance_prior_values(prior)

    def _check_covariance_prior_values(self, prior):
        """ValueError unless the prior of the right shape is positive (definite)."""
        raise NotImplementedError

    def given_covariance_prior(self, prior):
        """A user-given ``covariance_prior`` as the fitted attribute holds it."""
        return np.asarray(prior, dtype=np.float64)

    def default_covariance_prior(self, covariance):
        """``covariance_prior_`` from the data's covariance ((D, D) or its
        diagonal (D,))."""
        raise NotImplementedError

    def check_saved_covariance_prior(self, prior, fail):
        """Check a loaded ``covariance_prior_``; ``fail(message)`` raises."""
        raise NotImplementedError

    def degrees_of_freedom_shape(self, n_components):
        """Shape of the posterior's ``degrees_of_freedom``."""
        return (n_components,)

    def wishart_posterior(self, priors, nk, sk, diff, mean_precision):
        """The Wishart posterior: ``(degrees_of_freedom, covariances)`` from
        the counts ``nk`` (K,), the covariances ``sk`` of the M-step, the
        means' distances from the mean prior ``diff`` (K, D) and the
        posterior ``mean_precision`` (K,); ``priors`` holds
        ``degrees_of_freedom_prior``, ``covariance_prior`` and
        ``mean_precision_prior`` (scikit-learn's ``_estimate_wishart_*``)."""
        raise NotImplementedError

    def total_log_wishart_norm(self, log_wishart, n_components):
        """The Wishart normalisations summed over the components."""
        return float(np.sum(log_wishart))


class FullCovariance(CovarianceModel):
    """A covariance matrix per component."""

    name = "full"
    block_kind = "full"

    def covariances_shape(self, n_components, n_features):
        return (n_components, n_features, n_features)

    scatter_shape = covariances_shape

    def covariances(self, scatter, nk, reg_covar, control=None):
        d = scatter.shape[-1]
        covariances = scatter / nk[:, None, None]
        covariances = covariances + reg_covar * np.eye(d)[None, :, :]
        # Symmetrise: the scatter is symmetric up to rounding of the merges.
        return 0.5 * (covariances + np.swapaxes(covariances, 1, 2))

    def precisions_cholesky(self, covariances):
        out = np.empty_like(covariances)
        d = covariances.shape[-1]
        for k, cov in enumerate(covariances):
            out[k] = _chol_precision(cov, d)
        return out

    def precisions_cholesky_from_precisions(self, precisions):
        return np.stack([_upper_factor(p) for p in precisions])

    def precisions(self, precisions_cholesky):
        return np.matmul(precisions_cholesky, np.swapaxes(precisions_cholesky, 1, 2))

    def covariances_from_precisions_cholesky(self, precisions_cholesky):
        eye = np.eye(precisions_cholesky.shape[-1])
        inv = np.stack([linalg.solve_triangular(p, eye, lower=False) for p in precisions_cholesky])
        return np.matmul(inv.swapaxes(1, 2), inv)

    def log_det_cholesky(self, precisions_cholesky, n_features):
        return np.sum(np.log(np.diagonal(precisions_cholesky, axis1=1, axis2=2)), axis=1)

    def expected_mahalanobis(self, model, stats):
        nk, delta, scatter, prec = _deviations(model, stats)
        spread = scatter + nk[:, None, None] * delta[:, :, None] * delta[:, None, :]
        return float(np.einsum("kij,kjl,kil->", spread, prec, prec))

    def n_covariance_parameters(self, n_components, n_features):
        return n_components * n_features * (n_features + 1) / 2.0

    def check_precisions(self, precisions):
        for mat in self._stacked(precisions):
            if not np.allclose(mat, mat.T) or np.any(np.linalg.eigvalsh(mat) <= 0.0):
                raise ValueError(f"'{self.name} precision' should be symmetric, positive-definite.")

    def _stacked(self, matrices):
        """The component matrices, (K, D, D)."""
        return matrices

    def check_saved(self, covariances, precisions_cholesky, eps, fail):
        prec3, cov3 = self._stacked(precisions_cholesky), self._stacked(covariances)
        diagonals = np.diagonal(prec3, axis1=1, axis2=2)
        if np.any(np.tril(prec3, -1) != 0):
            fail("precisions_cholesky", "is not upper triangular")
        if np.any(diagonals <= 0):
            fail("precisions_cholesky", "has a non-positive diagonal entry")
        scale = np.sqrt(np.abs(np.einsum("kii->ki", cov3)))
        outer = scale[:, :, None] * scale[:, None, :]
        # Mirrored float64 entries that differ in their last digits may round to
        # neighbours of the stored dtype: a unit in its last place apart.
        if np.any(np.abs(cov3 - np.swapaxes(cov3, 1, 2)) > (1e-8 + 2 * eps) * outer):
            fail("covariances", "is not symmetric")
        if np.any(np.einsum("kii->ki", cov3) <= 0):
            fail("covariances", "has a non-positive variance on its diagonal")
        # The covariances P^-T P^-1 the factors imply, compared with the stored
        # ones in the scale of the correlations (S^-1 Sigma S^-1, S the standard
        # deviations), where the factor is Q = S P.  Rounding Sigma and P to
        # the stored dtype moves that comparison by at most ~D eps cond(Q);
        # float64's own error in P, computed from Sigma, grows with cond(Q)^2.
        with np.errstate(all="ignore"):
            implied = FULL.covariances_from_precisions_cholesky(prec3)
            error = np.max(np.abs(cov3 - implied) / outer, axis=(1, 2))
            condition = np.linalg.cond(scale[:, :, None] * prec3)
            d = cov3.shape[-1]
            tolerance = 1e-6 + 1e4 * np.finfo(np.float64).eps * condition**2 + d * eps * condition
        if not np.all(error <= tolerance):  # NaN (an overflowing inverse) fails too
            fail("covariances", f"is not the inverse of the precisions (error {np.max(error):.3g})")

    def variances(self, covariances, n_components, n_features):
        return np.diagonal(covariances, axis1=1, axis2=2)

    def traces(self, covariances, n_components, n_features):
        return np.trace(covariances, axis1=1, axis2=2)

    def within(self, weights, covariances, n_features):
        return np.einsum("k,kij->ij", weights, covariances)

    def projected(self, covariances, axes, n_components):
        return np.einsum("ia,kij,jb->kab", axes, covariances, axes)

    def sample(self, rng, means, covariances, counts):
        return np.vstack([rng.multivariate_normal(m, c, int(s)) for m, c, s in zip(means, covariances, counts)])

    def covariance_prior_shape(self, n_features):
        return (n_features, n_features)

    def _check_covariance_prior_values(self, prior):
        if not np.allclose(prior, prior.T) or np.any(np.linalg.eigvalsh(prior) <= 0.0):
            raise ValueError(f"'{self.name} covariance_prior' should be symmetric, positive-definite")

    def default_covariance_prior(self, covariance):
        return np.atleast_2d(covariance)

    def check_saved_covariance_prior(self, prior, fail):
        # A prior computed from data with a constant feature has a zero
        # variance: still a valid file, so semi-definite up to rounding.
        if np.any(np.diag(prior) < 0):
            fail("has a negative variance on its diagonal")
        if not np.allclose(prior, prior.T):  # the estimator's test of a given prior
            fail("is not symmetric")
        eigenvalues = np.linalg.eigvalsh(prior)
        if eigenvalues[0] < -1e-8 * max(eigenvalues[-1], 0.0):
            fail(f"is not positive semi-definite (eigenvalue {eigenvalues[0]:.3g})")

    def wishart_posterior(self, priors, nk, sk, diff, mean_precision):
        shrink = priors.mean_precision_prior / mean_precision
        dof = priors.degrees_of_freedom_prior + nk
        outer = diff[:, :, None] * diff[:, None, :]
        covariances = priors.covariance_prior + nk[:, None, None] * (sk + shrink[:, None, None] * outer)
        return dof, covariances / dof[:, None, None]


class TiedCovariance(FullCovariance):
    """One covariance matrix shared by all components: a full model with one
    matrix, whose M-step pools the components' scatter."""

    name = "tied"
    block_kind = "tied"
    stackable = False  # its components share one precision

    def covariances_shape(self, n_components, n_features):
        return (n_features, n_features)

    scatter_shape = covariances_shape

    def _stacked(self, matrices):
        return matrices[None]

    def covariances(self, scatter, nk, reg_covar, control=None):
        covariances = scatter / nk.sum() + reg_covar * np.eye(scatter.shape[-1])
        return 0.5 * (covariances + covariances.T)

    def precisions_cholesky(self, covariances):
        return _chol_precision(covariances, covariances.shape[-1])

    def precisions_cholesky_from_precisions(self, precisions):
        return _upper_factor(precisions)

    def precisions(self, precisions_cholesky):
        return precisions_cholesky @ precisions_cholesky.T

    def covariances_from_precisions_cholesky(self, precisions_cholesky):
        # P upper: Sigma = (P P^T)^-1 = P^-T P^-1
        inv = linalg.solve_triangular(precisions_cholesky, np.eye(precisions_cholesky.shape[-1]), lower=False)
        return inv.T @ inv

    def log_det_cholesky(self, precisions_cholesky, n_features):
        return np.sum(np.log(np.diag(precisions_cholesky)))

    def expected_mahalanobis(self, model, stats):
        nk, delta, scatter, prec = _deviations(model, stats)
        spread = scatter + (nk[:, None] * delta).T @ delta
        return float(np.sum((spread @ prec) * prec))

    def pooled_scatter(self, scatter):
        return scatter  # the statistics hold the sum already

    def n_covariance_parameters(self, n_components, n_features):
        return n_features * (n_features + 1) / 2.0

    def variances(self, covariances, n_components, n_features):
        return np.broadcast_to(np.diagonal(covariances), (n_components, n_features))

    def traces(self, covariances, n_components, n_features):
        return np.full((n_components,), np.trace(covariances))

    def within(self, weights, covariances, n_features):
        return np.array(covariances, dtype=np.float64)

    def projected(self, covariances, axes, n_components):
        return np.broadcast_to(axes.T @ covariances @ axes, (n_components, 2, 2))

    def sample(self, rng, means, covariances, counts):
        return np.vstack([rng.multivariate_normal(m, covariances, int(s)) for m, s in zip(means, counts)])

    def degrees_of_freedom_shape(self, n_components):
        return ()

    def wishart_posterior(self, priors, nk, sk, diff, mean_precision):
        k = nk.shape[0]
        dof = np.asarray(priors.degrees_of_freedom_prior + nk.sum() / k)
        covariances = (
            priors.covariance_prior
            + sk * nk.sum() / k
            + priors.mean_precision_prior / k * np.dot((nk / mean_precision) * diff.T, diff)
        )
        return dof, covariances / dof

    def total_log_wishart_norm(self, log_wishart, n_components):
        return n_components * float(np.squeeze(log_wishart))


class DiagCovariance(CovarianceModel):
    """A variance per component and feature."""

    name = "diag"
    block_kind = "diag"

    def covariances_shape(self, n_components, n_features):
        return (n_components, n_features)

    def scatter_shape(self, n_components, n_features):
        return (n_components, n_features)

    def covariances(self, scatter, nk, reg_covar, control=None):
        return scatter / nk[:, None] + reg_covar

    def precisions_cholesky(self, covariances):
        if np.any(np.less_equal(covariances, 0.0)) or not np.all(np.isfinite(covariances)):
            raise ValueError(ILL_DEFINED_MESSAGE)
        return 1.0 / np.sqrt(covariances)

    def precisions_cholesky_from_precisions(self, precisions):
        return np.sqrt(precisions)

    def precisions(self, precisions_cholesky):
        return precisions_cholesky**2

    def covariances_from_precisions_cholesky(self, precisions_cholesky):
        return 1.0 / precisions_cholesky**2

    def log_det_cholesky(self, precisions_cholesky, n_features):
        return np.sum(np.log(precisions_cholesky), axis=1)

    def expected_mahalanobis(self, model, stats):
        nk, delta, scatter, prec = _deviations(model, stats)
        return float(np.sum(prec**2 * (scatter + nk[:, None] * delta**2)))

    def n_covariance_parameters(self, n_components, n_features):
        return n_components * n_features

    def check_precisions(self, precisions):
        if np.any(np.less_equal(precisions, 0.0)) or not np.all(np.isfinite(precisions)):
            raise ValueError(f"'{self.name} precision' should be positive.")

    def check_saved(self, covariances, precisions_cholesky, eps, fail):
        if np.any(precisions_cholesky <= 0):
            fail("precisions_cholesky", "has a non-positive value")
        if np.any(covariances <= 0):
            fail("covariances", "has a non-positive variance")
        error = np.abs(covariances * precisions_cholesky**2 - 1.0).max()
        if not error <= 1e-6 + 4 * eps:  # each of cov and prec rounded once
            fail("covariances", f"is not 1 / precisions_cholesky**2 (error {error:.3g})")

    def variances(self, covariances, n_components, n_features):
        return covariances

    def traces(self, covariances, n_components, n_features):
        return covariances.sum(axis=1)

    def within(self, weights, covariances, n_features):
        return np.diag(weights @ covariances)

    def projected(self, covariances, axes, n_components):
        return np.einsum("ia,ki,ib->kab", axes, covariances, axes)

    def sample(self, rng, means, covariances, counts):
        n_features = means.shape[1]
        return np.vstack(
            [m + rng.standard_normal(size=(s, n_features)) * np.sqrt(c) for m, c, s in zip(means, covariances, counts)]
        )

    def covariance_prior_shape(self, n_features):
        return (n_features,)

    def _check_covariance_prior_values(self, prior):
        if np.any(prior <= 0) or not np.all(np.isfinite(prior)):
            raise ValueError(f"'{self.name} covariance_prior' should be positive")

    def default_covariance_prior(self, covariance):
        return covariance if covariance.ndim == 1 else np.diag(covariance).copy()

    def check_saved_covariance_prior(self, prior, fail):
        if np.any(prior < 0):
            fail("holds negative variances")

    def wishart_posterior(self, priors, nk, sk, diff, mean_precision):
        shrink = priors.mean_precision_prior / mean_precision
        dof = priors.degrees_of_freedom_prior + nk
        covariances = priors.covariance_prior + nk[:, None] * (sk + shrink[:, None] * diff**2)
        return dof, covariances / dof[:, None]


class SphericalCovariance(DiagCovariance):
    """One variance per component: a diagonal model whose variances are equal
    along the features."""

    name = "spherical"
    block_kind = "spherical"

    def covariances_shape(self, n_components, n_features):
        return (n_components,)

    def covariances(self, scatter, nk, reg_covar, control=None):
        return (scatter / nk[:, None]).mean(axis=1) + reg_covar

    def log_det_cholesky(self, precisions_cholesky, n_features):
        return n_features * np.log(precisions_cholesky)

    def expected_mahalanobis(self, model, stats):
        nk, delta, scatter, prec = _deviations(model, stats)
        return float(np.sum(prec**2 * np.sum(scatter + nk[:, None] * delta**2, axis=1)))

    def n_covariance_parameters(self, n_components, n_features):
        return n_components

    def variances(self, covariances, n_components, n_features):
        return np.broadcast_to(covariances[:, None], (n_components, n_features))

    def traces(self, covariances, n_components, n_features):
        return n_features * covariances

    def within(self, weights, covariances, n_features):
        return float(weights @ covariances) * np.eye(n_features)

    def projected(self, covariances, axes, n_components):
        return covariances[:, None, None] * (axes.T @ axes)

    def covariance_prior_shape(self, n_features):
        return ()

    def check_covariance_prior(self, prior, n_features):
        return None  # a number, checked by the estimator's parameter constraints

    def given_covariance_prior(self, prior):
        return float(prior)

    def default_covariance_prior(self, covariance):
        return float(super().default_covariance_prior(covariance).mean())

    def wishart_posterior(self, priors, nk, sk, diff, mean_precision):
        shrink = priors.mean_precision_prior / mean_precision
        dof = priors.degrees_of_freedom_prior + nk
        covariances = priors.covariance_prior + nk * (sk + shrink * np.mean(diff**2, axis=1))
        return dof, covariances / dof


class TiedDiagCovariance(DiagCovariance):
    """One diagonal covariance shared by all components: a diagonal model with
    one row, whose M-step pools the components' scatter diagonals.  Its
    statistics are the diagonal model's (per component), of a model whose
    components all hold the shared precisions."""

    name = "tied-diag"
    block_kind = "diag"
    bayesian = False

    def covariances_shape(self, n_components, n_features):
        return (n_features,)

    def covariances(self, scatter, nk, reg_covar, control=None):
        return self.pooled_scatter(scatter) / nk.sum() + reg_covar

    def log_det_cholesky(self, precisions_cholesky, n_features):
        return np.sum(np.log(precisions_cholesky))

    def n_covariance_parameters(self, n_components, n_features):
        return n_features

    def block_precisions(self, precisions_cholesky, log_det, n_components):
        return np.tile(precisions_cholesky, (n_components, 1)), np.full((n_components,), log_det)

    def variances(self, covariances, n_components, n_features):
        return np.broadcast_to(covariances, (n_components, n_features))

    def traces(self, covariances, n_components, n_features):
        return np.full((n_components,), covariances.sum())

    def within(self, weights, covariances, n_features):
        return np.diag(np.asarray(covariances, dtype=np.float64))

    def projected(self, covariances, axes, n_components):
        return np.broadcast_to(np.einsum("ia,i,ib->ab", axes, covariances, axes), (n_components, 2, 2))

    def sample(self, rng, means, covariances, counts):
        return super().sample(rng, means, np.broadcast_to(covariances, means.shape), counts)


class TiedSphericalCovariance(SphericalCovariance):
    """One variance shared by all components and features: a spherical model
    with one variance (a (1,) array), whose M-step pools the components'
    scatter.  Its statistics are the spherical model's (per component and
    feature), of a model whose components all hold the shared precision."""

    name = "tied-spherical"
    block_kind = "spherical"
    bayesian = False

    def covariances_shape(self, n_components, n_features):
        return (1,)

    def covariances(self, scatter, nk, reg_covar, control=None):
        return np.atleast_1d((self.pooled_scatter(scatter) / nk.sum()).mean() + reg_covar)

    def n_covariance_parameters(self, n_components, n_features):
        return 1

    def block_precisions(self, precisions_cholesky, log_det, n_components):
        return np.full((n_components,), precisions_cholesky[0]), np.full((n_components,), log_det[0])

    def variances(self, covariances, n_components, n_features):
        return np.broadcast_to(covariances[0], (n_components, n_features))

    def traces(self, covariances, n_components, n_features):
        return np.full((n_components,), n_features * covariances[0])

    def within(self, weights, covariances, n_features):
        return float(covariances[0]) * np.eye(n_features)

    def projected(self, covariances, axes, n_components):
        return np.broadcast_to(covariances[0] * (axes.T @ axes), (n_components, 2, 2))

    def sample(self, rng, means, covariances, counts):
        return super().sample(rng, means, np.full(means.shape[0], covariances[0]), counts)


# --------------------------------------------------------------------------
# mclust's constrained models: Sigma_k = lambda_k D_k A_k D_k^T
# --------------------------------------------------------------------------
#
# Each follows mclust 6's M-step (src/mclust.f: msvei, msevi, mseev, msvev;
# src/mclust2.f: msvee, mseve, msvve, msevv) on the scatter W_k + N_k
# reg_covar I.  VEI, VEV, EVE and VVE start their inner iterations, as
# mclust's ``me`` (mevei, mevev, meeve, mevve keep their scales, shapes and
# orientation from one EM iteration to the next), from the covariances
# before the M-step, recovered from them alone, so that the answer is a
# function of the merged statistics and those covariances (which runs,
# checkpoints and fitted models hold); without them (the initialisation's
# M-step) from mclust's fixed start.  VEE starts from its fixed start
# always, as mevee.  A start that is not finite and positive (a degenerate
# previous covariance) is replaced by the fixed one.  ``n`` is sum_k N_k (the
# Gaussian components' total, as mclust's with a noise component).


def _geometric_mean(values, axis=-1):
    """``prod(values) ** (1 / p)`` along ``axis``, through logarithms (no
    overflow of the product)."""
    with np.errstate(divide="ignore"):
        return np.exp(np.mean(np.log(values), axis=axis))


def _relative_change(old, new):
    """mclust's convergence measure of its scale and shape iterations."""
    return float(np.max(np.abs(old - new) / (1.0 + new)))


def _checked(covariances):
    """The covariances, or the ill-defined ValueError when the constrained
    M-step broke down (a singular scatter without ``reg_covar``)."""
    if not np.all(np.isfinite(covariances)):
        raise ValueError(ILL_DEFINED_MESSAGE)
    return covariances


def _usable(*starts):
    """Whether a start recovered from previous covariances is finite and
    positive."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        return all(np.all(np.isfinite(start)) and np.all(start > 0) for start in starts)


def _scales_and_shape(values):
    """``lambda_k`` and the shared shape A (det 1) of ``values`` (K, D) that
    are ``lambda_k A`` (diagonals or eigenvalues of covariances): lambda_k
    their geometric means, A the geometric mean of ``values / lambda_k``
    over the components; None when these are not finite and positive."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        scale = _geometric_mean(values, axis=1)
        shape = _geometric_mean(values / scale[:, None], axis=0)
    return (scale, shape) if _usable(scale, shape) else None


def _alternate_scales_and_shape(values, nk, scale, shape, control):
    """mclust's alternation for ``lambda_k A`` with A shared (det 1) over
    ``values`` (K, D), a scatter's diagonals (VEI) or eigenvalues (VEV):
    lambda_k = sum_d values_kd / A_d / (D N_k), then A the normalised
    ``sum_k values_k / lambda_k``, from ``(scale, shape)`` until their
    relative change (:func:`_relative_change`) is within ``control.tol``.

    Returns
    -------
    scale : (K,)
    shape : (D,)
    inner : InnerIterations
    """
    d = values.shape[1]
    for n_iter in range(1, control.max_iter + 1):
        previous_scale, previous_shape = scale, shape
        scale = np.sum(values / shape, axis=1) / (d * nk)
        shape = np.sum(values / scale[:, None], axis=0)
        shape = shape / _geometric_mean(shape)
        change = max(_relative_change(previous_scale, scale), _relative_change(previous_shape, shape))
        if not change > control.tol:
            return scale, shape, _inner(n_iter, True)
    return scale, shape, _inner(control.max_iter, False)


def _inner(n_iter, converged):
    return InnerIterations(int(n_iter), bool(converged))


def _rotated(orientations, shapes):
    """``D_k diag(a_k) D_k^T`` for (K, D, D) or (D, D) orientations and
    (K, D) or (D,) shapes, symmetric."""
    matrices = np.matmul(orientations * shapes[..., None, :], np.swapaxes(orientations, -1, -2))
    return 0.5 * (matrices + np.swapaxes(matrices, -1, -2))


class _Constrained:
    """What the constrained models share (a mixin before the model they
    constrain): the scatter regularised by ``N_k reg_covar`` on its diagonal
    (:meth:`_regularised`, which refuses a scatter with no volume, as
    mclust's M-step fails on it), then the model's :meth:`_constrained`
    step; checkpoints take the moments of the unconstrained model
    (:attr:`_unconstrained`), whose covariances keep the scatter's trace."""

    bayesian = False

    def covariances(self, scatter, nk, reg_covar, control=None):
        return self.covariances_with_iterations(scatter, nk, reg_covar, control)[0]

    def covariances_with_iterations(self, scatter, nk, reg_covar, control=None, previous=None):
        regularised = self._regularised(scatter, nk, reg_covar)
        previous = None if previous is None else np.asarray(previous, dtype=np.float64)
        covariances, inner = self._constrained(regularised, nk, control or DEFAULT_M_STEP_CONTROL, previous)
        return _checked(covariances), inner

    def _regularised(self, scatter, nk, reg_covar):
        """The scatter plus ``N_k reg_covar`` on its diagonal; ValueError when
        a component's has no volume."""
        raise NotImplementedError

    def _constrained(self, scatter, nk, control, previous):
        """``(covariances, InnerIterations)`` from the regularised scatter,
        the inner iterations (if any) started from ``previous`` when not None."""
        raise NotImplementedError

    def moments(self, stats, reg_covar, parameters):
        return self._unconstrained.m_step(stats, reg_covar)


class _ConstrainedDiagonal(_Constrained, DiagCovariance):
    """A diagonal model (``covariances_`` (K, D)) whose M-step constrains the
    volumes or the shapes of the components."""

    @property
    def _unconstrained(self):
        return DIAG

    def _regularised(self, scatter, nk, reg_covar):
        regularised = scatter + nk[:, None] * reg_covar
        if not np.all(regularised > 0):  # a zero variance has no volume
            raise ValueError(ILL_DEFINED_MESSAGE)
        return regularised


class _ConstrainedFull(_Constrained, FullCovariance):
    """A model of one matrix per component (``covariances_`` (K, D, D))
    whose M-step constrains some of their volumes, shapes or orientations."""

    @property
    def _unconstrained(self):
        return FULL

    def _regularised(self, scatter, nk, reg_covar):
        d = scatter.shape[-1]
        regularised = scatter + nk[:, None, None] * reg_covar * np.eye(d)
        regularised = 0.5 * (regularised + np.swapaxes(regularised, 1, 2))
        if not np.all(np.linalg.eigvalsh(regularised)[:, 0] > 0):  # singular: no volume
            raise ValueError(ILL_DEFINED_MESSAGE)
        return regularised


class VEICovariance(_ConstrainedDiagonal):
    """VEI: diagonal, variable volume, equal shape (``lambda_k A``).  mclust's
    ``msvei``: alternate the volumes and the shared shape, from all ones or
    (``mevei``) the previous ones: lambda_k the geometric mean of Sigma_k's
    diagonal, A that of Sigma_k / lambda_k over the components."""

    name = "VEI"

    def _constrained(self, scatter, nk, control, previous):
        d = scatter.shape[1]
        scale, shape = np.ones(nk.shape), np.ones(d)
        start = None if previous is None else _scales_and_shape(previous)
        if start is not None:
            scale, shape = start
        scale, shape, inner = _alternate_scales_and_shape(scatter, nk, scale, shape, control)
        return scale[:, None] * shape, inner

    def n_covariance_parameters(self, n_components, n_features):
        return n_components + (n_features - 1)


class EVICovariance(_ConstrainedDiagonal):
    """EVI: diagonal, equal volume, variable shape (``lambda A_k``), closed
    form (mclust's ``msevi``)."""

    name = "EVI"

    def _constrained(self, scatter, nk, control, previous):
        volumes = _geometric_mean(scatter, axis=1)
        return (volumes.sum() / nk.sum()) * (scatter / volumes[:, None]), CLOSED_FORM

    def n_covariance_parameters(self, n_components, n_features):
        return 1 + n_components * (n_features - 1)


class EEVCovariance(_ConstrainedFull):
    """EEV: equal volume and shape, variable orientation (``lambda D_k A
    D_k^T``), closed form (mclust's ``mseev``): each W_k's eigenvectors,
    the shape from the eigenvalues summed over the components in order."""

    name = "EEV"

    def _constrained(self, scatter, nk, control, previous):
        eigenvalues, orientations = np.linalg.eigh(scatter)
        shape = eigenvalues.sum(axis=0)
        volume = _geometric_mean(shape)
        covariances = (volume / nk.sum()) * _rotated(orientations, np.broadcast_to(shape / volume, eigenvalues.shape))
        return covariances, CLOSED_FORM

    def n_covariance_parameters(self, n_components, n_features):
        return 1 + (n_features - 1) + n_components * n_features * (n_features - 1) / 2.0


class VEVCovariance(_ConstrainedFull):
    """VEV: variable volume, equal shape, variable orientation (``lambda_k
    D_k A D_k^T``).  mclust's ``msvev``: each W_k's eigenvectors; volumes
    and the shared shape alternated from the EEV estimate or (``mevev``) the
    previous ones: the eigenvalues of Sigma_k, ascending as W_k's, are
    lambda_k times A's."""

    name = "VEV"

    def _constrained(self, scatter, nk, control, previous):
        eigenvalues, orientations = np.linalg.eigh(scatter)
        shape = eigenvalues.sum(axis=0)
        volume = _geometric_mean(shape)
        scale, shape = volume / nk, shape / volume
        start = None if previous is None else _scales_and_shape(np.linalg.eigvalsh(previous))
        if start is not None:
            scale, shape = start
        scale, shape, inner = _alternate_scales_and_shape(eigenvalues, nk, scale, shape, control)
        covariances = scale[:, None, None] * _rotated(orientations, np.broadcast_to(shape, eigenvalues.shape))
        return covariances, inner

    def n_covariance_parameters(self, n_components, n_features):
        return n_components + (n_features - 1) + n_components * n_features * (n_features - 1) / 2.0


class EVVCovariance(_ConstrainedFull):
    """EVV: equal volume, variable shape and orientation (``lambda C_k``,
    det C_k = 1), closed form (mclust's ``msevv``)."""

    name = "EVV"

    def _constrained(self, scatter, nk, control, previous):
        d = scatter.shape[-1]
        sign, log_det = np.linalg.slogdet(scatter)
        if np.any(sign <= 0):
            raise ValueError(ILL_DEFINED_MESSAGE)
        volumes = np.exp(log_det / d)
        return (volumes.sum() / nk.sum()) * (scatter / volumes[:, None, None]), CLOSED_FORM

    def n_covariance_parameters(self, n_components, n_features):
        return 1 - n_components + n_components * n_features * (n_features + 1) / 2.0


class VEECovariance(_ConstrainedFull):
    """VEE: variable volume, equal shape and orientation (``lambda_k C``,
    det C = 1).  mclust's ``msvee``: C from sum_k W_k / lambda_k, then the
    volumes, from all volumes one, until the likelihood's target settles.
    Always from that start: mclust's ``mevee`` sets the volumes to one again
    at every EM iteration, and EM follows it (``previous`` is not used)."""

    name = "VEE"

    def _constrained(self, scatter, nk, control, previous):
        d = scatter.shape[-1]
        scale = np.ones(nk.shape)
        target = np.inf
        for n_iter in range(1, control.max_iter + 1):
            shared = np.sum(scatter / scale[:, None, None], axis=0)
            factor = _cholesky_or_fail(shared)
            shared = shared / np.exp(2.0 * np.sum(np.log(np.diag(factor))) / d)
            inverse = linalg.cho_solve((_cholesky_or_fail(shared), True), np.eye(d))
            scale = np.einsum("kij,ji->k", scatter, inverse) / (d * nk)
            previous_target, target = target, float(nk.sum() * d + d * np.sum(np.log(scale) * nk))
            if not abs(target - previous_target) / (1.0 + abs(target)) > control.tol:
                return scale[:, None, None] * (0.5 * (shared + shared.T)), _inner(n_iter, True)
        return scale[:, None, None] * (0.5 * (shared + shared.T)), _inner(control.max_iter, False)

    def n_covariance_parameters(self, n_components, n_features):
        return n_components + (n_features - 1) + n_features * (n_features - 1) / 2.0


def _cholesky_or_fail(matrix):
    try:
        return linalg.cholesky(matrix, lower=True)
    except (linalg.LinAlgError, ValueError):
        raise ValueError(ILL_DEFINED_MESSAGE) from None


def _polar(matrix):
    """``P R^T`` of the SVD ``P B R^T`` of ``matrix``: the orthogonal matrix
    nearest to it (unique when it is non-singular)."""
    left, _, right_t = np.linalg.svd(matrix)
    return left @ right_t


def _orientation_start(previous):
    """The common orientation D and the shapes A_k (det 1) of covariances
    ``lambda_k D A_k D^T``: D the eigenvectors of ``sum_k k Sigma_k /
    lambda_k`` (distinct weights, so that shapes whose plain sum ties, two
    components stretched along crossing axes, still give D), A_k the
    diagonal of ``D^T Sigma_k D`` over its geometric mean.  Any order and
    signs of D's columns do: the MM iterations are equivariant to them."""
    k, d, _ = previous.shape
    sign, log_det = np.linalg.slogdet(previous)
    if not np.all(sign > 0):
        return None
    weights = np.arange(1, k + 1) / np.exp(log_det / d)
    combined = np.einsum("k,kij->ij", weights, previous)
    _, orientation = np.linalg.eigh(0.5 * (combined + combined.T))
    diagonals = np.einsum("ji,kjl,li->ki", orientation, previous, orientation)
    if not _usable(diagonals):
        return None
    with np.errstate(over="ignore", invalid="ignore"):
        shapes = diagonals / _geometric_mean(diagonals, axis=1)[:, None]
    return (orientation, shapes) if _usable(shapes) else None


def _common_orientation(scatter, volume_scaled, control, previous):
    """Browne & McNicholas's (2014) MM iterations, as mclust's ``mseve`` and
    ``msvve`` run them, for the orientation D shared by all components and
    the shapes A_k (det 1), from D = I and A_k = I, or (``meeve``,
    ``mevve``) from those of the ``previous`` covariances
    (:func:`_orientation_start`); the target is ``sum_k tr(W_k D A_k^-1
    D^T)``.  ``volume_scaled``: the shapes of VVE, ``diag(D^T W_k D) / N_k``
    split into a volume and a shape per component.

    Returns ``(orientation (D, D), shapes (K, D), target, volumes (K,) or
    None, InnerIterations)``.
    """
    k, d, _ = scatter.shape
    largest = np.linalg.eigvalsh(scatter)[:, -1]
    orientation = np.eye(d)
    shapes = np.ones((k, d))
    start = None if previous is None else _orientation_start(previous)
    if start is not None:
        orientation, shapes = start
    target = np.inf
    volumes = None
    n_iter, converged = 0, False
    for n_iter in range(1, control.max_iter + 1):
        # MM 1: the transposed orientation from F = sum_k A_k^-1 D^T (W_k - omega_k I).
        scaled_t = orientation.T[None, :, :] / shapes[:, :, None]
        step = np.sum(np.matmul(scaled_t, scatter) - largest[:, None, None] * scaled_t, axis=0)
        orientation = _polar(step).T
        # MM 2: the orientation from F = sum_k W_k D (A_k^-1 - max(1 / a_k) I).
        rotated = np.matmul(scatter, orientation)
        step = np.sum(rotated / shapes[:, None, :] - np.max(1.0 / shapes, axis=1)[:, None, None] * rotated, axis=0)
        orientation = _polar(step)
        diagonals = np.einsum("ji,kjl,li->ki", orientation, scatter, orientation)
        if volume_scaled is not None:
            diagonals_per_count = diagonals / volume_scaled[:, None]
            volumes = _geometric_mean(diagonals_per_count, axis=1)
            shapes = diagonals_per_count / volumes[:, None]
        else:
            shapes = diagonals / _geometric_mean(diagonals, axis=1)[:, None]
        if not np.all(np.isfinite(shapes)) or np.any(shapes <= 0):
            raise ValueError(ILL_DEFINED_MESSAGE)
        previous_target, target = target, float(np.sum(diagonals / shapes))
        if not abs(target - previous_target) / (1.0 + abs(target)) > control.tol:
            converged = True
            break
    return orientation, shapes, target, volumes, _inner(n_iter, converged)


class EVECovariance(_ConstrainedFull):
    """EVE: equal volume, variable shape, equal orientation (``lambda D A_k
    D^T``), by mclust's ``mseve`` (Browne & McNicholas's MM iterations)."""

    name = "EVE"

    def _constrained(self, scatter, nk, control, previous):
        orientation, shapes, target, _, inner = _common_orientation(scatter, None, control, previous)
        volume = target / (nk.sum() * scatter.shape[-1])
        return volume * _rotated(np.broadcast_to(orientation, scatter.shape), shapes), inner

    def n_covariance_parameters(self, n_components, n_features):
        return 1 + n_components * (n_features - 1) + n_features * (n_features - 1) / 2.0


class VVECovariance(_ConstrainedFull):
    """VVE: variable volume and shape, equal orientation (``lambda_k D A_k
    D^T``), by mclust's ``msvve``.  Its MM iterations on the orientation
    weigh the components as EVE's, without their volumes, so they do not
    maximise the likelihood over the model and EM may lose a little
    likelihood, as mclust's; kept for parity with mclust."""

    name = "VVE"

    def _constrained(self, scatter, nk, control, previous):
        orientation, shapes, _, volumes, inner = _common_orientation(scatter, nk, control, previous)
        return volumes[:, None, None] * _rotated(np.broadcast_to(orientation, scatter.shape), shapes), inner

    def n_covariance_parameters(self, n_components, n_features):
        return n_components + n_components * (n_features - 1) + n_features * (n_features - 1) / 2.0


FULL = FullCovariance()
TIED = TiedCovariance()
DIAG = DiagCovariance()
SPHERICAL = SphericalCovariance()
TIED_DIAG = TiedDiagCovariance()
TIED_SPHERICAL = TiedSphericalCovariance()

VEI = VEICovariance()
EVI = EVICovariance()
VEE = VEECovariance()
EVE = EVECovariance()
VVE = VVECovariance()
EEV = EEVCovariance()
VEV = VEVCovariance()
EVV = EVVCovariance()

# mclust's 14 models, in mclust's order; the six of scikit-learn's names
# are the same objects under those names.
MCLUST_MODELS = {
    "EII": TIED_SPHERICAL, "VII": SPHERICAL, "EEI": TIED_DIAG, "VEI": VEI, "EVI": EVI, "VVI": DIAG,
    "EEE": TIED, "VEE": VEE, "EVE": EVE, "VVE": VVE, "EEV": EEV, "VEV": VEV, "EVV": EVV, "VVV": FULL,
}

REGISTRY = {
    **{model.name: model for model in (FULL, TIED, DIAG, SPHERICAL, TIED_DIAG, TIED_SPHERICAL)},
    **MCLUST_MODELS,
}

# Every covariance_type: scikit-learn's, the shared diagonal ones, then mclust's.
COVARIANCE_TYPES = tuple(REGISTRY)
DEFAULT_COVARIANCE_TYPE = FULL.name


def covariance_model(covariance_type) -> CovarianceModel:
    """The :class:`CovarianceModel` of ``covariance_type`` (a name of
    :data:`REGISTRY`, or a model itself), or ValueError."""
    if isinstance(covariance_type, CovarianceModel):
        return covariance_type
    try:
        return REGISTRY[covariance_type]
    except (KeyError, TypeError):
        raise ValueError(
            f"Invalid value for 'covariance_type': {covariance_type!r}. "
            f"Use one of {', '.join(map(repr, COVARIANCE_TYPES))}."
        ) from None


def check_covariance_type(covariance_type):
    covariance_model(covariance_type)


# Functions of a covariance type's name, for the callers that hold the name.


def covariance_shape(covariance_type, n_components, n_features):
    """Shape of ``covariances_`` (and of ``precisions_``) for this type."""
    return covariance_model(covariance_type).covariances_shape(n_components, n_features)


def covariances_from_stats(stats: Stats, reg_covar: float, covariance_type=None, control=None):
    """M-step (:meth:`CovarianceModel.m_step`) of ``covariance_type`` (by
    default the statistics' own block kind); ``control``: an
    :class:`MStepControl`."""
    return covariance_model(stats.covariance_type if covariance_type is None else covariance_type).m_step(
        stats, reg_covar, control
    )


def precisions_cholesky_from_covariances(covariances, covariance_type):
    """Upper-triangular ``P`` with ``P P^T = Sigma^-1``."""
    return covariance_model(covariance_type).precisions_cholesky(covariances)


def precisions_cholesky_from_precisions(precisions, covariance_type):
    """Upper-triangular factor ``P`` with ``P P^T`` the user-given precisions."""
    return covariance_model(covariance_type).precisions_cholesky_from_precisions(precisions)


def precisions_from_cholesky(precisions_cholesky, covariance_type):
    return covariance_model(covariance_type).precisions(precisions_cholesky)


def covariances_from_precisions_cholesky(precisions_cholesky, covariance_type):
    """Covariances implied by a precision factor (for ``precisions_init``)."""
    return covariance_model(covariance_type).covariances_from_precisions_cholesky(precisions_cholesky)


def log_det_cholesky(precisions_cholesky, covariance_type, n_features):
    """log det of the precision's Cholesky factor, per component (or one when shared)."""
    return covariance_model(covariance_type).log_det_cholesky(precisions_cholesky, n_features)


def n_parameters(covariance_type, n_components, n_features):
    """Number of free parameters (for BIC/AIC)."""
    return covariance_model(covariance_type).n_parameters(n_components, n_features)


def make_model(weights, means, precisions_cholesky, covariance_type):
    """Block-level :class:`Model` from client-side parameters."""
    return covariance_model(covariance_type).make_model(weights, means, precisions_cholesky)
