"""The shared diagonal covariance models, 'tied-diag' (one diagonal covariance
for all components, ``covariances_`` (D,)) and 'tied-spherical' (one
variance for all components and features, ``covariances_`` (1,)):
scikit-learn's proposed types (scikit-learn/scikit-learn#33692), added as two
entries of the covariance registry.

Checked against a NumPy reference of their EM (E-step on the observed
features, M-step pooling the components' scatter, Ghahramani & Jordan's
conditional expectations for missing entries), against the full and tied
M-steps constrained by hand, and for what every covariance type must keep:
chunking invariance, save/load, sampling, BIC, weights as repeated rows,
partial_fit, checkpoints."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal
from sklearn.utils._param_validation import InvalidParameterError

import dask.array as da

import daskgmm
from daskgmm import BayesianGaussianMixture, GaussianMixture, cli
from daskgmm._covariance import COVARIANCE_TYPES, covariance_model

from .conftest import make_blobs

KINDS = ["tied-diag", "tied-spherical"]
REG = 1e-6

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def data():
    X, _, _ = make_blobs(n=600, d=3, k=3, seed=7)
    return X


# --------------------------------------------------------------------------
# A NumPy reference: the shared variances as a (D,) vector throughout
# --------------------------------------------------------------------------


def as_attribute(kind, variances):
    """``covariances_`` of ``kind`` holding the shared ``variances`` (D,)."""
    return variances[:1].copy() if kind == "tied-spherical" else variances.copy()


def shared_variances(kind, covariances, d):
    return np.full(d, covariances[0]) if kind == "tied-spherical" else np.asarray(covariances, dtype=np.float64)


def start(kind, d=3):
    """A rough common start, every ``*_init`` given (no initialisation pass)."""
    means = np.array([[0.0, 0.0, 0.0], [4.0, -3.0, 1.0], [-4.0, 3.0, -2.0]])[:, :d]
    variances = np.linspace(1.5, 3.0, d)
    if kind == "tied-spherical":
        variances = np.full(d, 2.0)
    return {
        "weights_init": np.array([0.3, 0.3, 0.4]),
        "means_init": means,
        "precisions_init": 1.0 / as_attribute(kind, variances),
    }, variances


def reference_e_step(X, weights, means, variances):
    """Responsibilities (n, K) and ``log p(x_i)`` from each sample's observed
    features (NaN: missing)."""
    observed = ~np.isnan(X)
    diff = np.where(observed[:, None, :], X[:, None, :] - means[None], 0.0)
    terms = np.log(2 * np.pi * variances) + diff**2 / variances
    log_prob = np.log(weights) - 0.5 * np.sum(observed[:, None, :] * terms, axis=2)
    log_norm = logsumexp(log_prob, axis=1)
    return np.exp(log_prob - log_norm[:, None]), log_norm


def reference_statistics(X, resp, means, variances, sample_weight=None):
    """``N_k`` (K,), ``sum r x`` (K, D) and ``sum r x^2`` (K, D), a missing
    entry replaced by its conditional mean ``mu_kj`` and adding its
    conditional variance ``s_j``."""
    observed = ~np.isnan(X)
    r = resp if sample_weight is None else resp * sample_weight[:, None]
    filled = np.where(observed[:, None, :], X[:, None, :], means[None])
    missing_variance = (~observed)[:, None, :] * variances
    return r.sum(axis=0), np.einsum("ik,ikd->kd", r, filled), np.einsum("ik,ikd->kd", r, filled**2 + missing_variance)


def reference_m_step(kind, nk, sums, squares):
    means = sums / nk[:, None]
    pooled = (squares - nk[:, None] * means**2).sum(axis=0) / nk.sum()
    if kind == "tied-spherical":
        pooled = np.full_like(pooled, pooled.mean())
    return nk / nk.sum(), means, pooled + REG


def reference_em(kind, X, weights, means, variances, n_iter, sample_weight=None):
    """``n_iter`` EM iterations; the parameters after them and the mean
    log-likelihood (per unit of weight) of each iteration's E-step."""
    bounds = []
    w = np.ones(len(X)) if sample_weight is None else sample_weight
    for _ in range(n_iter):
        resp, log_norm = reference_e_step(X, weights, means, variances)
        bounds.append(float(w @ log_norm / w.sum()))
        stats = reference_statistics(X, resp, means, variances, sample_weight)
        weights, means, variances = reference_m_step(kind, *stats)
    return weights, means, variances, bounds


# --------------------------------------------------------------------------
# The M-step
# --------------------------------------------------------------------------


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_m_step_from_given_responsibilities(data, kind, weighted):
    """scikit-learn's ``_initialize(X, resp)``: the pooled within-component
    variance of the given responsibilities, ``reg_covar`` added."""
    X = data
    rng = np.random.default_rng(1)
    resp = rng.random((len(X), 3))
    resp /= resp.sum(axis=1, keepdims=True)
    weights = rng.integers(1, 4, len(X)).astype(float) if weighted else None
    model = GaussianMixture(3, covariance_type=kind)
    model._initialize(da.from_array(X, chunks=(97, -1)), resp, sample_weight=weights)

    r = resp if weights is None else resp * weights[:, None]
    nk = r.sum(axis=0)
    means = r.T @ X / nk[:, None]
    within = sum(r[:, k] @ (X - means[k]) ** 2 for k in range(3)) / nk.sum()  # (D,), centred
    expected = within.mean(keepdims=True) if kind == "tied-spherical" else within
    expected = expected + REG
    assert model.covariances_.shape == covariance_model(kind).covariances_shape(3, 3)
    np.testing.assert_allclose(model.covariances_, expected, rtol=1e-12)
    np.testing.assert_allclose(model.precisions_cholesky_, 1 / np.sqrt(expected), rtol=1e-12)
    np.testing.assert_allclose(model.precisions_, 1 / expected, rtol=1e-12)
    np.testing.assert_allclose(model.means_, means, rtol=1e-12)
    np.testing.assert_allclose(model.weights_, nk / nk.sum(), rtol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_m_step_is_the_tied_m_step_constrained(data, kind):
    """From the same responsibilities: the diagonal of the 'tied' covariance
    (the full scatter pooled over the components), which is also the
    diagonal of the components' 'full' covariances averaged with the
    weights; its mean for 'tied-spherical'."""
    X = data
    resp = np.random.default_rng(2).random((len(X), 3))
    resp /= resp.sum(axis=1, keepdims=True)
    fitted = {}
    for covariance_type in (kind, "tied", "full"):
        fitted[covariance_type] = GaussianMixture(3, covariance_type=covariance_type)
        fitted[covariance_type]._initialize(X, resp)
    tied = np.diag(fitted["tied"].covariances_)
    full = fitted["full"]
    averaged = np.diag(np.einsum("k,kij->ij", full.weights_, full.covariances_))
    expected = tied.mean(keepdims=True) if kind == "tied-spherical" else tied
    np.testing.assert_allclose(fitted[kind].covariances_, expected, rtol=1e-12)
    np.testing.assert_allclose(shared_variances(kind, fitted[kind].covariances_, 3),
                               averaged.mean() if kind == "tied-spherical" else averaged, rtol=1e-12)
    np.testing.assert_allclose(fitted[kind].means_, full.means_, rtol=1e-12)


# --------------------------------------------------------------------------
# EM against the reference; the E-step against scipy
# --------------------------------------------------------------------------


@pytest.mark.parametrize("missing", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_em_matches_the_reference(data, kind, missing):
    """Seven iterations from a given start; with ``missing='marginalize'``
    and 10% of the entries NaN (no row entirely), EM on the observed data's
    likelihood."""
    X = data.copy()
    if missing:
        rng = np.random.default_rng(3)
        X[rng.random(X.shape) < 0.1] = np.nan
        X[np.isnan(X).all(axis=1), 0] = 0.5
    init, variances = start(kind)
    model = GaussianMixture(
        3, covariance_type=kind, tol=0, max_iter=7, missing="marginalize" if missing else "error", **init
    ).fit(da.from_array(X, chunks=(150, -1)))
    weights, means, variances, bounds = reference_em(kind, X, init["weights_init"], init["means_init"], variances, 7)
    assert model.n_iter_ == 7
    np.testing.assert_allclose(model.weights_, weights, rtol=1e-10)
    np.testing.assert_allclose(model.means_, means, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(model.covariances_, as_attribute(kind, variances), rtol=1e-10)
    np.testing.assert_allclose(model.lower_bounds_, bounds, rtol=1e-10)
    # The E-step of the fitted model, marginal for the missing entries.
    resp, log_norm = reference_e_step(X, weights, means, variances)
    np.testing.assert_allclose(model.score_samples(X), log_norm, rtol=1e-10)
    np.testing.assert_allclose(model.predict_proba(X), resp, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_score_samples_is_the_mixture_density(data, kind):
    """The log-density of a fitted model against scipy, every component
    with the one shared diagonal covariance."""
    model = GaussianMixture(3, covariance_type=kind, random_state=0).fit(data)
    variances = shared_variances(kind, model.covariances_, 3)
    density = sum(
        w * multivariate_normal(mean, np.diag(variances)).pdf(data) for w, mean in zip(model.weights_, model.means_)
    )
    np.testing.assert_allclose(model.score_samples(data), np.log(density), rtol=1e-10)
    # A 'diag' model holding the shared variances for every component is the same mixture.
    diag = GaussianMixture(3, covariance_type="diag")
    diag._set_parameters((model.weights_, model.means_, np.tile(variances, (3, 1)), 1 / np.sqrt(np.tile(variances, (3, 1)))))
    np.testing.assert_allclose(model.score_samples(data), diag.score_samples(data), rtol=1e-12)


# --------------------------------------------------------------------------
# Chunking, weights, partial_fit
# --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_invariant_to_chunking(data, kind):
    init, _ = start(kind)
    fits = []
    for n_chunks in (1, 3, 7):
        for split_every in (2, 8):
            dX = da.from_array(data, chunks=(-(-len(data) // n_chunks), -1))
            assert dX.numblocks[0] == n_chunks
            fits.append(GaussianMixture(3, covariance_type=kind, tol=0, max_iter=15, split_every=split_every,
                                        **init).fit(dX))
    reference = fits[0]
    for other in fits[1:]:
        for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
            np.testing.assert_allclose(getattr(other, name), getattr(reference, name), rtol=1e-10, err_msg=name)
        np.testing.assert_allclose(other.lower_bounds_, reference.lower_bounds_, rtol=1e-10)


@pytest.mark.parametrize("kind", KINDS)
def test_weights_are_repeated_rows(data, kind):
    init, variances = start(kind)
    counts = np.random.default_rng(4).integers(0, 4, len(data))
    weighted = GaussianMixture(3, covariance_type=kind, tol=0, max_iter=6, **init).fit(
        da.from_array(data, chunks=(100, -1)), sample_weight=counts.astype(float)
    )
    repeated = GaussianMixture(3, covariance_type=kind, tol=0, max_iter=6, **init).fit(
        da.from_array(np.repeat(data, counts, axis=0), chunks=(100, -1))
    )
    for name in ("weights_", "means_", "covariances_"):
        np.testing.assert_allclose(getattr(weighted, name), getattr(repeated, name), rtol=1e-10, err_msg=name)
    np.testing.assert_allclose(weighted.lower_bounds_, repeated.lower_bounds_, rtol=1e-10)
    *_, bounds = reference_em(kind, data, init["weights_init"], init["means_init"], variances, 6, counts.astype(float))
    np.testing.assert_allclose(weighted.lower_bounds_, bounds, rtol=1e-10)


@pytest.mark.parametrize("kind", KINDS)
def test_partial_fit(data, kind):
    """'exact': a pass of batches and ``end_pass`` is an iteration of fit;
    'stepwise' with ``learning_decay=1, learning_offset=0``: the M-step of
    the plain mean of the batches' statistics, each under the model the
    previous batch left."""
    init, variances = start(kind)
    batches = np.array_split(data, 4)
    exact = GaussianMixture(3, covariance_type=kind, partial_fit_mode="exact", **init)
    for batch in batches:
        exact.partial_fit(batch)
    exact.end_pass()
    one = GaussianMixture(3, covariance_type=kind, max_iter=1, **init).fit(data)
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        np.testing.assert_allclose(getattr(exact, name), getattr(one, name), rtol=1e-10, err_msg=name)

    stepwise = GaussianMixture(3, covariance_type=kind, learning_decay=1.0, learning_offset=0.0, **init)
    weights, means = init["weights_init"], init["means_init"]
    totals = None
    for t, batch in enumerate(batches, start=1):
        stepwise.partial_fit(batch)
        resp, _ = reference_e_step(batch, weights, means, variances)
        stats = [s / len(batch) for s in reference_statistics(batch, resp, means, variances)]
        totals = stats if totals is None else [(1 - 1 / t) * a + b / t for a, b in zip(totals, stats)]
        weights, means, variances = reference_m_step(kind, *totals)
        np.testing.assert_allclose(stepwise.means_, means, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(stepwise.covariances_, as_attribute(kind, variances), rtol=1e-10)
        np.testing.assert_allclose(stepwise.weights_, weights, rtol=1e-10)
    assert stepwise.n_batch_iter_ == 4 and stepwise.covariances_.shape == covariance_model(kind).covariances_shape(3, 3)


# --------------------------------------------------------------------------
# Saved fields, checkpoints, sampling, parameters
# --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind", KINDS)
def test_save_load_round_trip(tmp_path, data, kind, dtype):
    model = GaussianMixture(3, covariance_type=kind, random_state=0).fit(data.astype(dtype))
    loaded = daskgmm.load(model.save(tmp_path / "model.npz"))
    assert type(loaded) is GaussianMixture and loaded.covariance_type == kind
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_"):
        saved, restored = getattr(model, name), getattr(loaded, name)
        assert restored.dtype == saved.dtype and restored.shape == saved.shape, name
        np.testing.assert_array_equal(restored, saved, err_msg=name)
    np.testing.assert_array_equal(loaded.predict(data), model.predict(data))
    assert loaded.score(data) == model.score(data)
    # A stream continues from the loaded model as from the saved one.
    model.partial_fit(data[:200])
    loaded.partial_fit(data[:200])
    np.testing.assert_array_equal(loaded.covariances_, model.covariances_)


@pytest.mark.parametrize("kind", KINDS)
def test_saved_covariances_are_checked(tmp_path, data, kind):
    model = GaussianMixture(3, covariance_type=kind, random_state=0).fit(data)
    path = model.save(tmp_path / "model.npz")
    arrays, meta = daskgmm.io.read_archive(path)
    for name, value, message in [
        ("covariances", -arrays["covariances"], "'covariances' has a non-positive variance"),
        ("covariances", 2 * arrays["covariances"], "'covariances' is not 1 / precisions_cholesky\\*\\*2"),
        ("covariances", np.tile(arrays["covariances"], 3), "'covariances' has shape"),
    ]:
        edited = dict(arrays, **{name: value})
        bad = tmp_path / "bad.npz"
        daskgmm.io.write_archive(bad, edited, meta, overwrite=True)
        with pytest.raises(ValueError, match=message):
            daskgmm.load(bad)


@pytest.mark.parametrize("kind", KINDS)
def test_checkpoint_resumes_to_the_uninterrupted_fit(tmp_path, data, kind):
    settings = dict(n_components=3, covariance_type=kind, n_init=2, tol=0.0, max_iter=8, random_state=0)
    path = tmp_path / "fit.ckpt"
    GaussianMixture(**dict(settings, max_iter=3)).fit(da.from_array(data, chunks=(100, -1)), checkpoint=path)
    resumed = GaussianMixture(**settings).fit(da.from_array(data, chunks=(170, -1)), checkpoint=path)
    assert resumed.n_passes_ == 5
    reference = GaussianMixture(**settings).fit(da.from_array(data, chunks=(170, -1)))
    for name in ("weights_", "means_", "covariances_"):
        np.testing.assert_allclose(getattr(resumed, name), getattr(reference, name), rtol=1e-12, err_msg=name)


@pytest.mark.parametrize("kind", KINDS)
def test_sample(kind):
    weights = np.array([0.2, 0.8])
    means = np.array([[-10.0, 0.0, 5.0], [10.0, 3.0, -5.0]])
    variances = np.array([0.5, 2.0, 4.0]) if kind == "tied-diag" else np.full(3, 1.5)
    covariances = as_attribute(kind, variances)
    model = GaussianMixture(2, covariance_type=kind, random_state=0)
    model._set_parameters((weights, means, covariances, 1 / np.sqrt(covariances)))
    X, labels = model.sample(40000)
    assert X.shape == (40000, 3) and labels.shape == (40000,)
    assert np.all(np.diff(labels) >= 0)  # grouped by component, as scikit-learn's
    assert abs(np.mean(labels == 1) - 0.8) < 0.01
    for k in range(2):
        rows = X[labels == k]
        np.testing.assert_allclose(rows.mean(axis=0), means[k], atol=0.1)
        np.testing.assert_allclose(rows.var(axis=0), variances, rtol=0.06)
        assert abs(np.corrcoef(rows.T)[0, 1]) < 0.05  # a diagonal covariance
    np.testing.assert_array_equal(model.predict(X), labels)


@pytest.mark.parametrize("kind", KINDS)
def test_n_parameters_and_information_criteria(data, kind):
    model = GaussianMixture(3, covariance_type=kind, random_state=0).fit(data)
    k, d = 3, 3
    shared = d if kind == "tied-diag" else 1
    assert model._n_parameters() == (k - 1) + k * d + shared
    n = len(data)
    log_likelihood = model.score(data) * n
    assert model.bic(data) == pytest.approx(-2 * log_likelihood + model._n_parameters() * np.log(n), rel=1e-12)
    assert model.aic(data) == pytest.approx(-2 * log_likelihood + 2 * model._n_parameters(), rel=1e-12)
    result = daskgmm.select_n_components(data, [2, 3], covariance_types=[kind, "diag"], random_state=0)
    assert set(result.models_) == {(2, kind), (3, kind), (2, "diag"), (3, "diag")}
    rows = list(zip(result.table["n_components"], result.table["covariance_type"]))
    assert result.table["n_parameters"][rows.index((3, kind))] == model._n_parameters()


def test_component_stds_in_the_command_line_table(data):
    for kind in KINDS:
        model = GaussianMixture(3, covariance_type=kind, random_state=0).fit(data)
        stds = cli.component_stds(model.covariances_, kind, 3, 3)
        np.testing.assert_array_equal(stds, np.sqrt(np.tile(shared_variances(kind, model.covariances_, 3), (3, 1))))
        assert len(cli.component_table(model.weights_, model.means_, model.covariances_, kind)) == 4


# --------------------------------------------------------------------------
# What is refused
# --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_given_precisions_are_checked(data, kind):
    init, _ = start(kind)
    shape = covariance_model(kind).covariances_shape(3, 3)
    with pytest.raises(ValueError, match=re.escape(f"The parameter '{kind} precision' should have the shape of {shape}, ")):
        GaussianMixture(3, covariance_type=kind, precisions_init=np.ones((3, 3))).fit(data)
    model = GaussianMixture(3, covariance_type=kind, precisions_init=-init["precisions_init"])
    with pytest.raises(ValueError, match=f"'{kind} precision' should be positive."):
        model.fit(data)
    assert not hasattr(model, "weights_")


@pytest.mark.parametrize("kind", KINDS)
def test_bayesian_mixture_refuses_them(data, kind):
    """Its Gauss-Wishart prior is defined for the four other types only."""
    model = BayesianGaussianMixture(n_components=3, covariance_type=kind)
    with pytest.raises(InvalidParameterError, match=f"'covariance_type' parameter of BayesianGaussianMixture .*Got '{kind}'"):
        model.fit(data)
    assert not hasattr(model, "weights_")
    BayesianGaussianMixture(n_components=2, covariance_type="diag", max_iter=2).fit(data)  # the others still fit


def test_registry_lists_them_and_refuses_unknown_names(data):
    mclust = ("EII", "VII", "EEI", "VEI", "EVI", "VVI", "EEE", "VEE", "EVE", "VVE", "EEV", "VEV", "EVV", "VVV")
    assert COVARIANCE_TYPES == ("full", "tied", "diag", "spherical", "tied-diag", "tied-spherical") + mclust
    with pytest.raises(ValueError, match="Invalid value for 'covariance_type': 'tied_diag'. Use one of 'full', "
                                         "'tied', 'diag', 'spherical', 'tied-diag', 'tied-spherical', 'EII', "):
        covariance_model("tied_diag")
    with pytest.raises(InvalidParameterError, match="'covariance_type' parameter of GaussianMixture"):
        GaussianMixture(2, covariance_type="tied_diag").fit(data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parser = cli.build_parser()
    args = parser.parse_args(["fit", "x.npy", "-k", "2", "--covariance-type", "tied-spherical"])
    assert args.covariance_type == "tied-spherical"
