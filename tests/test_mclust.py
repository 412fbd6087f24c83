"""Parity with R's mclust 6.0.0 (#23): the 14 covariance models, the noise
component, partial labels (MclustSSC) and ICL against mclust's own answers.

The answers are committed JSON files in ``tests/mclust/``, made by
``Rscript tests/mclust/make_reference.R`` (whose header says what each holds);
this test needs no R.  Every fit starts where mclust's does: from the
responsibilities ``z`` of mclust's start (its ``hc`` classes, MclustSSC's rule,
the noise rows known), whose M-step is daskgmm's initial parameters.

How the iterations align: mclust's ``me`` repeats "M-step, E-step" and returns
the last M-step's parameters and their log-likelihood.  daskgmm's EM repeats
"E-step, M-step" from its initial parameters, so ``me`` after N iterations is
daskgmm after ``max_iter = N - 1`` (the initial parameters being mclust's first
M-step), and ``me``'s loglik is what the E-step of daskgmm's N-th iteration
computes (``lower_bound_ * n`` with ``max_iter = N``).

Signs: mclust's BIC is ``2 loglik - npar log(n)`` (larger is better), minus
daskgmm's and scikit-learn's ``bic``; mclust's ICL is its BIC plus
``2 sum_i log z_i,map(i)``, minus daskgmm's ``icl``.

Agreement: loglik, BIC and ICL to 1e-6 relative; parameters to 1e-6 relative,
or absolute on the scale of the largest entry of the array (a covariance near
0 off the diagonal), see :func:`assert_close`.
"""

from __future__ import annotations

import copy
import json
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from daskgmm import GaussianMixture
from daskgmm._blocks import Model, block_statistics
from daskgmm._covariance import MStepControl, covariance_model

REFERENCE = Path(__file__).parent / "mclust"
DATASETS = ("faithful", "iris", "diabetes", "banknote")
MODELS = ("EII", "VII", "EEI", "VEI", "EVI", "VVI", "EEE", "VEE", "EVE", "VVE", "EEV", "VEV", "EVV", "VVV")
NOISE_MODELS = ("VVV", "EEE", "VII", "VEV")
SSC_MODELS = ("VVV", "EEE", "VEV", "VII", "EVE")
RTOL = 1e-6
# The inner iterations of the iterative M-steps run to their fixed point, as
# the reference's (make_reference.R: inner tol 0).
M_STEP = {"m_step_max_iter": 20000, "m_step_tol": 1e-15}
CONTROL = MStepControl(max_iter=M_STEP["m_step_max_iter"], tol=M_STEP["m_step_tol"])

# Which of the stored shapes of the contract each model's covariances_ has.
STORED = {
    "EII": "one", "VII": "spherical", "EEI": "shared-diagonal", "VEI": "diagonal", "EVI": "diagonal",
    "VVI": "diagonal", "EEE": "shared-matrix", "VEE": "matrix", "EVE": "matrix", "VVE": "matrix",
    "EEV": "matrix", "VEV": "matrix", "EVV": "matrix", "VVV": "matrix",
}


@lru_cache(maxsize=None)
def reference(name):
    with open(REFERENCE / f"{name}.json", encoding="utf-8") as file:
        return json.load(file)


def data(name):
    return np.asarray(reference(name)["X"], dtype=np.float64)


def one_hot(classes, n_columns):
    """mclust's ``unmap`` of 1-based classes."""
    z = np.zeros((len(classes), n_columns))
    z[np.arange(len(classes)), np.asarray(classes) - 1] = 1.0
    return z


def full_covariances(name, covariances, n_components, n_features):
    """``covariances_`` of model ``name`` as (K, D, D) matrices, mclust's
    ``variance$sigma``."""
    covariances = np.asarray(covariances, dtype=np.float64)
    assert covariances.shape == covariance_model(name).covariances_shape(n_components, n_features)
    eye = np.eye(n_features)
    stored = STORED[name]
    if stored == "matrix":
        return covariances
    if stored == "shared-matrix":
        return np.broadcast_to(covariances, (n_components, n_features, n_features))
    if stored == "diagonal":
        return covariances[:, :, None] * eye
    if stored == "shared-diagonal":
        return np.broadcast_to(np.diag(covariances), (n_components, n_features, n_features))
    if stored == "spherical":
        return covariances[:, None, None] * eye
    return np.broadcast_to(covariances[0] * eye, (n_components, n_features, n_features))


def precisions(name, covariances):
    """``precisions_init`` from covariances of the model's stored shape."""
    covariances = np.asarray(covariances, dtype=np.float64)
    if STORED[name] in ("matrix", "shared-matrix"):
        return np.linalg.inv(covariances)
    return 1.0 / covariances


def assert_close(actual, expected, what):
    """Entry-wise ``|a - e| <= 1e-6 max(|e|, max |expected|)``: relative,
    or absolute on the scale of the whole array."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, what
    scale = np.maximum(np.abs(expected), np.max(np.abs(expected)))
    error = np.max(np.abs(actual - expected) / scale)
    assert error <= RTOL, f"{what}: relative error {error:.3g}"


def assert_parameters(name, weights, means, covariances, expected, what):
    n_components, n_features = np.asarray(means).shape
    assert_close(weights, expected["pro"], f"{what} weights")
    assert_close(means, expected["mean"], f"{what} means")
    assert_close(full_covariances(name, covariances, n_components, n_features), expected["sigma"], f"{what} covariances")


def m_step(name, X, z):
    """daskgmm's M-step of model ``name`` from the responsibilities ``z``:
    the block statistics of ``z``, merged on one block, then the model's
    M-step (no regularisation, inner iterations to their fixed point)."""
    model = covariance_model(name)
    stats = block_statistics(X, Model(model.block_kind, None, None, None, None), resp=z)
    return model.m_step(stats, 0.0, CONTROL)


def initial_parameters(name, X, z):
    weights, means, covariances = m_step(name, X, z)
    return {"weights_init": weights, "means_init": means, "precisions_init": precisions(name, covariances)}


def fit(name, X, z, max_iter, **params):
    """GaussianMixture of model ``name`` started from the M-step of ``z``,
    ``max_iter`` iterations whatever the change (tol 0)."""
    estimator = GaussianMixture(
        z.shape[1], covariance_type=name, reg_covar=0.0, tol=0.0, max_iter=max_iter,
        **initial_parameters(name, X, z), **M_STEP, **params,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return estimator.fit(X)


def start(name):
    ref = reference(name)
    return one_hot(ref["start_class"], ref["G"])


@lru_cache(maxsize=None)
def me_fit(dataset, model, run):
    """The fit that stands for ``me``'s ``run`` ("fixed" or "converged"): as
    many iterations as mclust made, less one.  Shared by the tests, which
    must not change it."""
    iterations = reference(dataset)["models"][model][run]["iterations"]
    return fit(model, data(dataset), start(dataset), iterations - 1)


def one_more_iteration(estimator, X, **fit_params):
    """A copy of ``estimator`` after one more EM iteration (warm start): its
    ``lower_bound_`` is the log-likelihood per sample of ``estimator``'s
    parameters, from that iteration's E-step."""
    following = copy.deepcopy(estimator).set_params(warm_start=True, max_iter=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return following.fit(X, **fit_params)


CASES = [(dataset, model) for dataset in DATASETS for model in MODELS]


def case_id(case):
    return "-".join(case)


# -- the reference itself ----------------------------------------------------------


def test_reference_files_cover_every_model():
    for dataset in DATASETS:
        ref = reference(dataset)
        assert ref["mclust_version"] == "6.0.0"
        assert set(ref["models"]) == set(MODELS)
        assert len(ref["start_class"]) == len(ref["X"])
        for model, entry in ref["models"].items():
            assert "error" not in entry, (dataset, model)
            # me agrees with mstep and estep called in turn (the alignment
            # the fits below rely on); the iterative M-steps to their inner
            # iterations' precision.
            assert entry["alignment"]["loglik"] < 1e-8 and entry["alignment"]["sigma"] < 1e-6, (dataset, model)


# -- the 14 models -------------------------------------------------------------------


@pytest.mark.parametrize("dataset, model", CASES, ids=map(case_id, CASES))
def test_m_step_and_e_step_match_mclust(dataset, model):
    """mstep(data, model, z) and the loglik of its parameters (estep)."""
    X = data(dataset)
    expected = reference(dataset)["models"][model]
    weights, means, covariances = m_step(model, X, start(dataset))
    assert_parameters(model, weights, means, covariances, expected["mstep"], "mstep")
    kind = covariance_model(model)
    block_model = kind.make_model(weights, means, kind.precisions_cholesky(covariances))
    loglik = float(block_statistics(X, block_model).log_likelihood)
    assert loglik == pytest.approx(expected["estep"]["loglik"], rel=RTOL)


@pytest.mark.parametrize("dataset, model", CASES, ids=map(case_id, CASES))
@pytest.mark.parametrize("run", ["fixed", "converged"])
def test_em_matches_mclust_me(dataset, model, run):
    """me(data, model, z) after a fixed number of iterations (20, or fewer
    where its loglik stopped changing at all), and to convergence (its
    relative change below 1e-15): loglik, BIC, parameters, free parameters."""
    X = data(dataset)
    n = X.shape[0]
    expected = reference(dataset)["models"][model][run]
    gm = me_fit(dataset, model, run)
    assert gm.n_iter_ == expected["iterations"] - 1
    assert_parameters(model, gm.weights_, gm.means_, gm.covariances_, expected, f"me ({run})")
    assert gm.score(X) * n == pytest.approx(expected["loglik"], rel=RTOL)
    assert gm._n_parameters() == reference(dataset)["models"][model]["n_parameters"]
    assert gm.bic(X) == pytest.approx(-expected["bic"], rel=RTOL)
    # The E-step of one more iteration evaluates me's parameters.
    assert one_more_iteration(gm, X).lower_bound_ * n == pytest.approx(expected["loglik"], rel=RTOL)


# -- ICL --------------------------------------------------------------------------------


@pytest.mark.parametrize("dataset, model", CASES, ids=map(case_id, CASES))
def test_icl_matches_mclust(dataset, model):
    """mclust's icl of the converged me: BIC + 2 sum_i log z_i,map(i)."""
    expected = reference(dataset)["models"][model]["converged"]
    assert me_fit(dataset, model, "converged").icl(data(dataset)) == pytest.approx(-expected["icl"], rel=RTOL)


# -- the noise component ----------------------------------------------------------------


def noise_start():
    ref = reference("faithful_noise")
    return one_hot(ref["start_class"], ref["G"] + 1)


@lru_cache(maxsize=None)
def noise_fit(model, run, noise="volume"):
    """GaussianMixture(noise=V) from the M-step of mclust's start, as me(...,
    Vinv = 1/V): the Gaussians' parameters from the z of their columns, the
    noise's initial weight its column's mean (the Gaussian weights are then
    scaled to the rest, N_k / n as mclust's pro)."""
    ref = reference("faithful_noise")
    X = data("faithful_noise")
    z = noise_start()
    iterations = ref["models"][model][run]["iterations"]
    return fit(
        model, X, z[:, :-1], iterations - 1,
        noise=ref["volume"] if noise == "volume" else noise, noise_weight_init=float(z[:, -1].mean()),
    )


NOISE_CASES = [(model, run) for model in NOISE_MODELS for run in ("fixed", "converged")]


@pytest.mark.parametrize("model, run", NOISE_CASES, ids=map(case_id, NOISE_CASES))
def test_noise_component_matches_mclust(model, run):
    """me(data, model, z, Vinv = 1/V) on faithful with 10% uniform rows:
    loglik, pro (G + 1, the noise's last), parameters, BIC.  mclust counts
    the noise's weight and its density 1/V as free parameters
    (nMclustParams(noise=TRUE) adds 2), and so does daskgmm: its BIC is
    mclust's negated."""
    ref = reference("faithful_noise")
    X = data("faithful_noise")
    n = X.shape[0]
    expected = ref["models"][model][run]
    gm = noise_fit(model, run)
    assert gm.noise_volume_ == ref["volume"]
    assert gm.weights_.sum() + gm.noise_weight_ == pytest.approx(1.0, rel=1e-12)
    weights = np.append(gm.weights_, gm.noise_weight_)
    assert_parameters(model, weights, gm.means_, gm.covariances_, expected, f"noise me ({run})")
    assert gm.score(X) * n == pytest.approx(expected["loglik"], rel=RTOL)
    assert gm._n_parameters() == ref["models"][model]["n_parameters"]
    assert gm.bic(X) == pytest.approx(-expected["bic"], rel=RTOL)
    assert one_more_iteration(gm, X).lower_bound_ * n == pytest.approx(expected["loglik"], rel=RTOL)


def test_noise_box_is_the_reference_volume():
    """noise='box' finds the bounding box whose volume the reference used,
    and fits as noise=V."""
    ref = reference("faithful_noise")
    X = data("faithful_noise")
    box = noise_fit("VVV", "fixed", noise="box")
    np.testing.assert_array_equal(box.noise_box_, np.stack([X.min(axis=0), X.max(axis=0)]))
    assert box.noise_volume_ == pytest.approx(ref["volume"], rel=1e-15)
    assert_parameters(
        "VVV", np.append(box.weights_, box.noise_weight_), box.means_, box.covariances_,
        ref["models"]["VVV"]["fixed"], "noise='box'",
    )


# -- partial labels (MclustSSC) ----------------------------------------------------------


def ssc_labels():
    """The reference's class vector (1-based, None unlabelled) as daskgmm's
    y: the component index, -1 unlabelled."""
    return np.array([-1 if c is None else c - 1 for c in reference("iris_ssc")["class"]])


def ssc_start():
    """MclustSSC.fit's start: one-hot rows where labelled, 1/G elsewhere."""
    y = ssc_labels()
    n_components = reference("iris_ssc")["G"]
    z = np.full((y.size, n_components), 1.0 / n_components)
    z[y >= 0] = one_hot(y[y >= 0] + 1, n_components)
    return z


def ssc_loglik(estimator, X, y):
    """MclustSSC's loglik: log p(x_i) for the unlabelled rows, log(pi_c
    phi_c(x_i)) = log p(x_i) + log p(c | x_i) for a row labelled c."""
    log_density = estimator.score_samples(X)
    labelled = y >= 0
    log_posterior = np.log(estimator.predict_proba(X[labelled])[np.arange(labelled.sum()), y[labelled]])
    return float(log_density.sum() + log_posterior.sum())


@lru_cache(maxsize=None)
def ssc_fit(model, run):
    iterations = reference("iris_ssc")["models"][model][run]["iterations"]
    estimator = GaussianMixture(
        reference("iris_ssc")["G"], covariance_type=model, reg_covar=0.0, tol=0.0, max_iter=iterations - 1,
        partial_labels=True, **initial_parameters(model, data("iris_ssc"), ssc_start()), **M_STEP,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return estimator.fit(data("iris_ssc"), ssc_labels())


SSC_CASES = [(model, run) for model in SSC_MODELS for run in ("fixed", "converged")]


@pytest.mark.parametrize("model, run", SSC_CASES, ids=map(case_id, SSC_CASES))
def test_partial_labels_match_mclust_ssc(model, run):
    """MclustSSC on iris with 30 rows labelled: parameters, its loglik (the
    labelled rows counting their own component's joint density), the
    mixture's loglik of all rows, BIC (2 loglik - df log n, df the free
    parameters)."""
    ref = reference("iris_ssc")
    X = data("iris_ssc")
    y = ssc_labels()
    n = X.shape[0]
    expected = ref["models"][model][run]
    gm = ssc_fit(model, run)
    assert_parameters(model, gm.weights_, gm.means_, gm.covariances_, expected, f"MclustSSC ({run})")
    loglik = ssc_loglik(gm, X, y)
    assert loglik == pytest.approx(expected["loglik"], rel=RTOL)
    assert gm.score(X) * n == pytest.approx(expected["mixture_loglik"], rel=RTOL)
    assert gm._n_parameters() == expected["df"]
    assert -2.0 * loglik + gm._n_parameters() * np.log(n) == pytest.approx(-expected["bic"], rel=RTOL)
    # The E-step of one more labelled iteration evaluates the fit's
    # parameters with the labelled rows' joint densities, as MclustSSC.
    assert one_more_iteration(gm, X, y=y).lower_bound_ * n == pytest.approx(expected["loglik"], rel=RTOL)


def test_partial_labels_reference_labels():
    y = ssc_labels()
    species = np.repeat(np.arange(3), 50)
    assert np.bincount(y[y >= 0]).tolist() == [10, 10, 10]
    np.testing.assert_array_equal(y[y >= 0], species[y >= 0])
