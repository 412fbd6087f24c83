"""mclust's 14 covariance models, ``Sigma_k = lambda_k D_k A_k D_k^T``: the
eight new entries of the covariance registry (VEI, EVI as diagonals (K, D);
VEE, EVE, VVE, EEV, VEV, EVV as matrices (K, D, D)) and the six existing
types under their mclust names.

The M-steps are checked without R: data built so that a model's constraint
holds give back the covariances they were built from; on any data the
answer has the constraint's properties (equal volumes, a shared shape, a
shared orientation) and is at least as likely as the answer of every model
nested in it (each of which the model can express).  Then what every
covariance type keeps: chunking invariance, save/load, weights as repeated
rows, float32, missing features, checkpoints, BIC's parameter count (mclust's
``nVarParams``), and the variational estimator's refusal.  The comparison
with mclust's own answers is tests/test_mclust.py's.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from sklearn.utils._param_validation import InvalidParameterError

import dask.array as da

from daskgmm import BayesianGaussianMixture, GaussianMixture, cli, load
from daskgmm._covariance import COVARIANCE_TYPES, MCLUST_MODELS, MStepControl, covariance_model

from .conftest import make_blobs

NEW = ["VEI", "EVI", "VEE", "EVE", "VVE", "EEV", "VEV", "EVV"]
ITERATIVE = ["VEI", "VEE", "EVE", "VVE", "VEV"]
ALIASES = {"EII": "tied-spherical", "VII": "spherical", "EEI": "tied-diag", "VVI": "diag", "EEE": "tied", "VVV": "full"}
# Inner iterations to their fixed point in float64 (changes of a few eps
# are rounding).  EVE's and VVE's MM steps stop on the relative change of a
# target that is flat at its optimum, so a tolerance ``tol`` leaves the
# orientation ~sqrt(tol) from it.
EXACT = MStepControl(max_iter=20_000, tol=1e-15)

# Models each model can express (a special case of its constraint), whose
# M-step answers are therefore never more likely than its own.
NESTED = {
    "VEI": ["EEI", "VII", "EII"],
    "EVI": ["EEI", "EII"],
    "VEE": ["EEE", "VEI", "EEI", "VII"],
    "EVE": ["EEE", "EVI", "EEI"],
    "VVE": ["VEE", "EVE", "EEE", "VVI", "VEI", "EVI"],
    "EEV": ["EEE", "EEI", "EII"],
    "VEV": ["VEE", "EEV", "VEI", "EEE"],
    "EVV": ["EEV", "EVE", "EVI", "EEE"],
}

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def data():
    X, _, _ = make_blobs(n=600, d=3, k=3, seed=11)
    return X


def n_var_params(name, d, g):
    """mclust's ``nVarParams(modelName, d, G)`` (its documentation and code,
    mclust 6)."""
    return {
        "EII": 1, "VII": g, "EEI": d, "VEI": g + (d - 1), "EVI": 1 + g * (d - 1), "VVI": g * d,
        "EEE": d * (d + 1) / 2, "VEE": g + (d - 1) + d * (d - 1) / 2, "EVE": 1 + g * (d - 1) + d * (d - 1) / 2,
        "VVE": g + g * (d - 1) + d * (d - 1) / 2, "EEV": 1 + (d - 1) + g * d * (d - 1) / 2,
        "VEV": g + (d - 1) + g * d * (d - 1) / 2, "EVV": 1 - g + g * d * (d + 1) / 2, "VVV": g * d * (d + 1) / 2,
    }[name]


def matrices(name, covariances, k, d):
    """Any model's ``covariances_`` as (K, D, D) matrices."""
    model = covariance_model(name)
    covariances = np.asarray(covariances, dtype=np.float64)
    if model.block_kind == "full":
        return covariances
    if model.block_kind == "tied":
        return np.broadcast_to(covariances, (k, d, d))
    return np.stack([np.diag(v) for v in model.variances(covariances, k, d)])


def scatter_of(name, full_scatter):
    """The statistics' scatter of ``name``'s block kind from (K, D, D)."""
    kind = covariance_model(name).block_kind
    if kind == "full":
        return full_scatter
    if kind == "tied":
        return full_scatter.sum(axis=0)
    return np.einsum("kii->ki", full_scatter)


def m_step(name, full_scatter, nk, reg_covar=0.0, control=EXACT):
    k, d = full_scatter.shape[:2]
    covariances = covariance_model(name).covariances(scatter_of(name, full_scatter), nk, reg_covar, control)
    return matrices(name, covariances, k, d)


def random_rotation(rng, d):
    q, r = np.linalg.qr(rng.normal(size=(d, d)))
    return q * np.sign(np.diag(r))


def constrained(name, rng, k=3, d=4):
    """Covariances (K, D, D) ``lambda_k D_k A_k D_k^T`` that satisfy
    ``name``'s constraint: 'E' one value for all components, 'V' one per
    component, 'I' the identity; distinct shape entries (no ambiguous
    orientation)."""
    volume, shape, orientation = name

    def shapes(n):
        raw = np.sort(rng.uniform(0.3, 3.0, size=(n, d)), axis=1) * np.linspace(1.0, 2.0, d)
        return raw / np.exp(np.mean(np.log(raw), axis=1, keepdims=True))

    volumes = np.full(k, rng.uniform(0.5, 2.0)) if volume == "E" else rng.uniform(0.2, 5.0, size=k)
    a = np.ones((k, d)) if shape == "I" else np.repeat(shapes(1), k, axis=0) if shape == "E" else shapes(k)
    if orientation == "I":
        rotations = np.broadcast_to(np.eye(d), (k, d, d))
    elif orientation == "E":
        rotations = np.broadcast_to(random_rotation(rng, d), (k, d, d))
    else:
        rotations = np.stack([random_rotation(rng, d) for _ in range(k)])
    return volumes[:, None, None] * np.einsum("kij,kj,klj->kil", rotations, a, rotations)


def soft_scatter(X, rng, k=3):
    """``N_k`` and the centred scatters (K, D, D) of random responsibilities."""
    resp = rng.random((len(X), k))
    resp /= resp.sum(axis=1, keepdims=True)
    nk = resp.sum(axis=0)
    means = resp.T @ X / nk[:, None]
    diff = X[None] - means[:, None]
    return nk, np.einsum("ik,kij,kil->kjl", resp, diff, diff)


def expected_negative_log_likelihood(covariances, nk, full_scatter):
    """``sum_k N_k log det Sigma_k + tr(W_k Sigma_k^-1)``: what every
    M-step minimises over its model's covariances (twice the negative
    expected log-likelihood, less constants)."""
    return sum(
        n * np.linalg.slogdet(c)[1] + np.trace(np.linalg.solve(c, w)) for n, c, w in zip(nk, covariances, full_scatter)
    )


# --------------------------------------------------------------------------
# The registry
# --------------------------------------------------------------------------


def test_every_name_is_accepted_and_the_old_names_are_the_same_objects():
    assert set(MCLUST_MODELS) == {
        "EII", "VII", "EEI", "VEI", "EVI", "VVI", "EEE", "VEE", "EVE", "VVE", "EEV", "VEV", "EVV", "VVV"
    }
    assert set(COVARIANCE_TYPES) == set(MCLUST_MODELS) | set(ALIASES.values())
    for mclust_name, name in ALIASES.items():
        assert covariance_model(mclust_name) is covariance_model(name)
    for name in NEW:
        model = covariance_model(name)
        assert model.name == name and not model.bayesian
        assert model.block_kind == ("diag" if name[2] == "I" else "full")
    args = cli.build_parser().parse_args(["fit", "x.npy", "-k", "2", "--covariance-type", "VEV"])
    assert args.covariance_type == "VEV"
    with pytest.raises(ValueError, match="Invalid value for 'covariance_type': 'vev'. Use one of 'full', .*'VVV'."):
        covariance_model("vev")


@pytest.mark.parametrize("name", list(MCLUST_MODELS))
@pytest.mark.parametrize("d, k", [(1, 1), (3, 2), (5, 4)])
def test_n_parameters_are_mclusts(name, d, k):
    """BIC's count: mclust's nVarParams + K D means + K - 1 weights."""
    expected = n_var_params(name, d, k) + k * d + k - 1
    assert covariance_model(name).n_parameters(k, d) == expected
    model = GaussianMixture(k, covariance_type=name)
    model.means_ = np.zeros((k, d))
    assert model._n_parameters() == expected


# --------------------------------------------------------------------------
# The M-steps
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(MCLUST_MODELS))
def test_m_step_gives_back_covariances_that_satisfy_the_constraint(name):
    """Scatters ``W_k = N_k Sigma_k`` with Sigma_k in the model: its M-step
    (the maximiser of the expected likelihood over the model) is Sigma_k."""
    rng = np.random.default_rng(sum(map(ord, name)))
    truth = constrained(name, rng)
    nk = np.array([40.0, 75.5, 130.25])
    got = m_step(name, nk[:, None, None] * truth, nk)
    # EVE's and VVE's MM steps stop when their target stops changing in
    # float64: ~sqrt(1e-15) from the orientation (mclust's criterion).
    rtol = 1e-6 if name in ("EVE", "VVE") else 1e-10
    np.testing.assert_allclose(got, truth, rtol=rtol, atol=rtol * np.abs(truth).max())


@pytest.mark.parametrize("name", NEW)
def test_m_step_has_the_constraint_properties(name):
    """On scatters of no model: equal volumes det^(1/D), one shape
    (eigenvalues over the volume), one orientation (the matrices commute),
    the axes (diagonal), as the name says."""
    rng = np.random.default_rng(3)
    X, _, _ = make_blobs(n=400, d=4, k=3, seed=5)
    nk, scatter = soft_scatter(X, rng)
    sigma = m_step(name, scatter, nk)
    d = sigma.shape[-1]
    eigenvalues = np.linalg.eigvalsh(sigma)
    volumes = np.exp(np.mean(np.log(eigenvalues), axis=1))
    shapes = eigenvalues / volumes[:, None]
    volume, shape, orientation = name
    assert np.allclose(volumes, volumes[0], rtol=1e-10) == (volume == "E")
    assert np.allclose(shapes, shapes[0], rtol=1e-8) == (shape == "E")
    commute = all(np.allclose(a @ b, b @ a, atol=1e-9 * volumes.max() ** 2) for a in sigma for b in sigma)
    assert commute == (orientation in "EI")
    off_diagonal = sigma * (1 - np.eye(d))
    assert (np.abs(off_diagonal).max() == 0) == (orientation == "I")
    np.testing.assert_allclose(sigma, np.swapaxes(sigma, 1, 2), rtol=0, atol=0)


@pytest.mark.parametrize("name", NEW)
def test_m_step_is_at_least_as_likely_as_every_nested_model(name):
    rng = np.random.default_rng(4)
    X, _, _ = make_blobs(n=300, d=4, k=3, seed=9)
    for _ in range(3):
        nk, scatter = soft_scatter(X, rng)
        own = expected_negative_log_likelihood(m_step(name, scatter, nk), nk, scatter)
        for nested in NESTED[name]:
            other = expected_negative_log_likelihood(m_step(nested, scatter, nk), nk, scatter)
            assert own <= other + 1e-10 * abs(other), (nested, own, other)
        if name != "VVE":  # VVV's is the unconstrained optimum
            assert own >= expected_negative_log_likelihood(m_step("VVV", scatter, nk), nk, scatter) - 1e-9


@pytest.mark.parametrize("name", NEW)
def test_reg_covar_is_added_to_the_scatter_before_the_constraint(name):
    rng = np.random.default_rng(6)
    X, _, _ = make_blobs(n=200, d=3, k=2, seed=2)
    nk, scatter = soft_scatter(X, rng, k=2)
    reg = 0.05
    shifted = scatter + nk[:, None, None] * reg * np.eye(3)
    np.testing.assert_allclose(m_step(name, scatter, nk, reg), m_step(name, shifted, nk), rtol=1e-12)


@pytest.mark.parametrize("name", ITERATIVE)
def test_inner_iterations_follow_the_control(name):
    """One inner iteration is not the converged answer; the answers approach
    the fixed point as the tolerance shrinks."""
    rng = np.random.default_rng(8)
    X, _, _ = make_blobs(n=300, d=4, k=3, seed=1)
    nk, scatter = soft_scatter(X, rng)
    exact = m_step(name, scatter, nk)
    errors = [
        np.abs(m_step(name, scatter, nk, control=MStepControl(max_iter, tol)) - exact).max() / np.abs(exact).max()
        for max_iter, tol in [(1, 0.0), (20_000, 1e-4), (20_000, 1e-10), (20_000, 1e-14)]
    ]
    assert errors[0] > 1e-6
    assert errors[3] <= errors[2] <= errors[1] <= errors[0]
    assert errors[2] < 1e-4 and errors[3] < 1e-6


@pytest.mark.parametrize("name", NEW)
def test_singular_scatter_without_reg_covar_is_the_ill_defined_error(name):
    scatter = np.zeros((2, 3, 3))
    scatter[0] = np.eye(3)
    nk = np.array([3.0, 1e-15])
    with pytest.raises(ValueError, match="ill-defined empirical covariance"):
        m_step(name, scatter, nk)
    assert np.all(np.isfinite(m_step(name, scatter, nk, reg_covar=1e-6)))


# --------------------------------------------------------------------------
# Fits
# --------------------------------------------------------------------------


def fit(name, X, **kwargs):
    params = dict(n_components=3, covariance_type=name, random_state=0, tol=1e-8, max_iter=15)
    params.update(kwargs)
    return GaussianMixture(**params).fit(X)


def given_start(name, X, k=3):
    """Every ``*_init`` given (no initialisation pass): a rough start."""
    means = X[[0, 200, 400]][:k]
    covariances = np.tile(np.cov(X.T), (k, 1, 1))
    model = covariance_model(name)
    precisions = np.linalg.inv(covariances)
    if model.block_kind == "diag":
        precisions = 1.0 / np.stack([np.diag(c) for c in covariances])
    return {"weights_init": np.full(k, 1.0 / k), "means_init": means, "precisions_init": precisions}


def assert_same_fit(a, b, rtol):
    for attribute in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        np.testing.assert_allclose(
            getattr(a, attribute), getattr(b, attribute), rtol=rtol, atol=rtol, err_msg=attribute
        )


@pytest.mark.parametrize("name", NEW)
def test_fit_is_chunking_invariant(name, data):
    in_process = fit(name, data)
    chunked = fit(name, da.from_array(data, chunks=(97, -1)))
    other = fit(name, da.from_array(data, chunks=(250, -1)), split_every=3)
    assert in_process.covariances_.shape == covariance_model(name).covariances_shape(3, 3)
    assert in_process.n_iter_ == chunked.n_iter_ == other.n_iter_ > 1
    assert_same_fit(in_process, chunked, 1e-10)
    assert_same_fit(in_process, other, 1e-10)
    np.testing.assert_allclose(in_process.lower_bounds_, other.lower_bounds_, rtol=1e-12)


@pytest.mark.parametrize("name", [name for name in NEW if name != "VVE"])
def test_em_never_loses_likelihood(name, data):
    """An M-step that maximises the expected likelihood over the model (its
    inner iterations run to their fixed point) makes EM monotone.  Not
    VVE's: mclust's MM steps for its orientation weigh the components'
    scatters without their volumes, so they minimise another target than
    the likelihood's (documented in the user guide)."""
    model = fit(name, data, m_step_tol=1e-14, m_step_max_iter=20_000, max_iter=12, tol=0)
    assert np.all(np.diff(model.lower_bounds_) >= -1e-12 * abs(model.lower_bound_))


@pytest.mark.parametrize("mclust_name, name", list(ALIASES.items()))
def test_the_two_names_give_bitwise_the_same_fit(mclust_name, name, data):
    ours = fit(mclust_name, da.from_array(data, chunks=(150, -1)), max_iter=5)
    theirs = fit(name, da.from_array(data, chunks=(150, -1)), max_iter=5)
    for attribute in ("weights_", "means_", "covariances_", "precisions_cholesky_", "lower_bounds_"):
        assert np.array_equal(getattr(ours, attribute), getattr(theirs, attribute)), attribute
    assert ours.bic(data) == theirs.bic(data)
    assert ours.covariance_type == mclust_name


@pytest.mark.parametrize("name", NEW)
def test_save_and_load_round_trip(name, data, tmp_path):
    fitted = fit(name, data, m_step_max_iter=500, m_step_tol=1e-9)
    path = fitted.save(tmp_path / f"{name}.npz")
    loaded = load(path)
    assert loaded.covariance_type == name
    assert loaded.get_params() == fitted.get_params()
    for attribute in ("weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_"):
        assert np.array_equal(getattr(loaded, attribute), getattr(fitted, attribute)), attribute
    assert np.array_equal(loaded.predict(data), fitted.predict(data))
    assert loaded.score(data) == fitted.score(data)


@pytest.mark.parametrize("name", NEW)
def test_sample_weights_are_repeated_rows(name, data):
    weights = np.random.default_rng(2).integers(1, 4, len(data))
    start = given_start(name, data)
    weighted = GaussianMixture(3, covariance_type=name, max_iter=8, tol=0, **start).fit(
        da.from_array(data, chunks=(100, -1)), sample_weight=weights
    )
    repeated = GaussianMixture(3, covariance_type=name, max_iter=8, tol=0, **start).fit(
        da.from_array(np.repeat(data, weights, axis=0), chunks=(180, -1))
    )
    assert_same_fit(weighted, repeated, 1e-9)


@pytest.mark.parametrize("name", NEW)
def test_float32_fit_is_close_to_float64(name, data):
    start = given_start(name, data)
    single = GaussianMixture(3, covariance_type=name, max_iter=10, tol=0, **start).fit(data.astype(np.float32))
    double = GaussianMixture(3, covariance_type=name, max_iter=10, tol=0, **start).fit(data)
    assert single.covariances_.dtype == np.float32 and single.means_.dtype == np.float32
    assert_same_fit(single, double, 2e-4)


@pytest.mark.parametrize("name", ["VEI", "VEE", "EVV"])
def test_missing_features_are_marginalised(name, data):
    """Some entries missing: the fit runs, keeps the constraint, and gains
    observed-data likelihood at every iteration; without NaN it is the
    plain fit."""
    X = data.copy()
    holes = np.random.default_rng(5).random(X.shape) < 0.1
    holes[holes.all(axis=1), 0] = False
    X[holes] = np.nan
    start = given_start(name, data)
    model = GaussianMixture(3, covariance_type=name, missing="marginalize", max_iter=12, tol=0, **start)
    model.fit(da.from_array(X, chunks=(128, -1)))
    assert np.all(np.isfinite(model.covariances_)) and model.n_samples_incomplete_ > 0
    assert np.all(np.diff(model.lower_bounds_) >= -1e-9)
    sigma = matrices(name, model.covariances_, 3, 3)
    if name[1] == "E":
        eigenvalues = np.linalg.eigvalsh(sigma)
        shapes = eigenvalues / np.exp(np.mean(np.log(eigenvalues), axis=1, keepdims=True))
        np.testing.assert_allclose(shapes, np.broadcast_to(shapes[0], shapes.shape), rtol=1e-7)
    if name[0] == "E":
        np.testing.assert_allclose(np.linalg.det(sigma), np.linalg.det(sigma[0]), rtol=1e-9)
    assert np.all(np.isfinite(model.score_samples(X)))
    plain = GaussianMixture(3, covariance_type=name, max_iter=4, tol=0, **start).fit(data)
    complete = GaussianMixture(3, covariance_type=name, missing="marginalize", max_iter=4, tol=0, **start).fit(data)
    assert_same_fit(plain, complete, 1e-12)


@pytest.mark.parametrize("name", NEW)
def test_bayesian_mixture_refuses_them(name, data):
    model = BayesianGaussianMixture(n_components=3, covariance_type=name)
    with pytest.raises(
        InvalidParameterError,
        match=re.escape("The 'covariance_type' parameter of BayesianGaussianMixture must be a str among")
        + f".*Got '{name}' instead",
    ):
        model.fit(data)
    assert not hasattr(model, "weights_")


def test_bayesian_mixture_takes_the_mclust_names_of_its_types(data):
    for mclust_name in ("VVV", "EEE", "VVI", "VII"):
        ours = BayesianGaussianMixture(n_components=2, covariance_type=mclust_name, max_iter=3, random_state=0)
        theirs = BayesianGaussianMixture(
            n_components=2, covariance_type=ALIASES[mclust_name], max_iter=3, random_state=0
        )
        assert np.array_equal(ours.fit(data).covariances_, theirs.fit(data).covariances_)


@pytest.mark.parametrize(
    "setting, message",
    [
        ({"m_step_max_iter": 0}, "'m_step_max_iter' parameter of GaussianMixture must be an int in the range"),
        ({"m_step_tol": -1.0}, "'m_step_tol' parameter of GaussianMixture must be a float in the range"),
    ],
)
def test_m_step_settings_are_validated(setting, message, data):
    model = GaussianMixture(2, covariance_type="VEE", **setting)
    with pytest.raises(InvalidParameterError, match=re.escape(message)):
        model.fit(data)
    assert not hasattr(model, "weights_")


@pytest.mark.parametrize("name", ["VEE", "EVE"])
def test_m_step_settings_reach_every_m_step(name, data):
    """The initial M-step and those of EM use the estimator's settings: one
    inner iteration is another fit, and the default equals the explicit
    default."""
    default = fit(name, data, max_iter=3)
    explicit = fit(name, data, max_iter=3, m_step_max_iter=1000, m_step_tol=1.5e-8)
    assert_same_fit(default, explicit, 0)
    initial = fit(name, data, max_iter=0)
    one = fit(name, data, max_iter=0, m_step_max_iter=1)
    assert not np.allclose(initial.covariances_, one.covariances_, rtol=1e-6)
    assert not np.allclose(default.covariances_, fit(name, data, max_iter=3, m_step_max_iter=1).covariances_, rtol=1e-6)


@pytest.mark.parametrize("name", ["VEI", "VEE"])
def test_checkpoint_resumes_exactly_and_refuses_other_m_step_settings(name, data, tmp_path):
    """The data summary a checkpoint compares at every iteration holds
    whatever the model (its law of total variance uses the block kind's
    moments: constrained covariances do not keep the scatter's trace); other
    inner-iteration settings are refused."""
    path = tmp_path / f"{name}.ckpt"
    X = da.from_array(data, chunks=(100, -1))
    params = dict(n_components=3, covariance_type=name, random_state=0, tol=0, m_step_tol=1e-10)
    GaussianMixture(max_iter=3, **params).fit(X, checkpoint=path)
    before = path.read_bytes()
    for change, message in [
        ({"m_step_tol": 1e-9}, "m_step_tol is 1e-10 in the checkpoint but 1e-09 now"),
        ({"m_step_max_iter": 50}, "m_step_max_iter is 1000 in the checkpoint but 50 now"),
    ]:
        with pytest.raises(ValueError, match="Cannot resume from checkpoint") as err:
            GaussianMixture(max_iter=6, **dict(params, **change)).fit(X, checkpoint=path)
        assert message in str(err.value)
    assert path.read_bytes() == before
    resumed = GaussianMixture(max_iter=6, **params).fit(da.from_array(data, chunks=(150, -1)), checkpoint=path)
    uninterrupted = GaussianMixture(max_iter=6, **params).fit(da.from_array(data, chunks=(150, -1)))
    assert resumed.n_iter_ == uninterrupted.n_iter_ == 6
    assert_same_fit(resumed, uninterrupted, 1e-12)


# --------------------------------------------------------------------------
# Warm starts of the inner iterations, and their warning
# --------------------------------------------------------------------------

WARM = ["VEI", "VEV", "EVE", "VVE"]


def inner_m_step(name, full_scatter, nk, previous=None, control=EXACT):
    """``(covariances (K, D, D), InnerIterations)`` of the model's M-step,
    started from ``previous`` (covariances of its stored shape)."""
    k, d = full_scatter.shape[:2]
    covariances, inner = covariance_model(name).covariances_with_iterations(
        scatter_of(name, full_scatter), nk, 0.0, control, previous
    )
    return matrices(name, covariances, k, d), inner


def stored(name, full_covariances):
    """(K, D, D) covariances in the model's stored shape."""
    if covariance_model(name).block_kind == "diag":
        return np.einsum("kii->ki", full_covariances)
    return full_covariances


def scatter_of_resp(X, resp):
    """``N_k`` and the centred scatters (K, D, D) of responsibilities ``resp``."""
    nk = resp.sum(axis=0)
    means = resp.T @ X / nk[:, None]
    diff = X[None] - means[:, None]
    return nk, np.einsum("ik,kij,kil->kjl", resp, diff, diff)


@pytest.mark.parametrize("name", WARM)
def test_a_warm_start_reaches_the_fixed_point_of_the_fixed_start(name):
    """Started from the covariances of nearby responsibilities (as EM's
    M-step from the previous iteration's), the inner iterations reach the
    answer of mclust's fixed start in fewer iterations; started from that
    answer itself, they stop at once."""
    rng = np.random.default_rng(12)
    X, _, _ = make_blobs(n=400, d=4, k=3, seed=7)
    resp = rng.random((len(X), 3)) ** 4
    resp /= resp.sum(axis=1, keepdims=True)
    nearby = 0.95 * resp + 0.05 * rng.dirichlet(np.ones(3), size=len(X))
    nk, scatter = scatter_of_resp(X, resp)
    cold, cold_inner = inner_m_step(name, scatter, nk)
    nearby_nk, nearby_scatter = scatter_of_resp(X, nearby)
    previous, _ = inner_m_step(name, nearby_scatter, nearby_nk)
    warm, warm_inner = inner_m_step(name, scatter, nk, stored(name, previous))
    # EVE's and VVE's MM steps stop ~sqrt(1e-15) from their fixed point.
    rtol = 1e-6 if name in ("EVE", "VVE") else 1e-10
    np.testing.assert_allclose(warm, cold, rtol=rtol, atol=rtol * np.abs(cold).max())
    assert cold_inner.converged and warm_inner.converged
    assert warm_inner.n_iter < cold_inner.n_iter
    again, again_inner = inner_m_step(name, scatter, nk, stored(name, cold), MStepControl())
    np.testing.assert_allclose(again, cold, rtol=rtol, atol=rtol * np.abs(cold).max())
    assert again_inner.n_iter <= 2 and again_inner.converged
    # Without previous covariances: mclust's fixed start, the plain M-step.
    np.testing.assert_array_equal(cold, m_step(name, scatter, nk))


def test_the_common_orientation_is_recovered_where_the_shapes_sum_to_a_sphere():
    """Two components stretched along crossing axes: the sum of their
    covariances is a multiple of I, which says nothing of the orientation;
    the start still finds it, and the warm M-step stops at once."""
    rotation = random_rotation(np.random.default_rng(1), 3)
    shapes = np.array([[4.0, 1.0, 0.25], [0.25, 1.0, 4.0]])
    truth = np.einsum("ij,kj,lj->kil", rotation, shapes, rotation)
    nk = np.array([50.0, 50.0])
    _, cold_inner = inner_m_step("EVE", nk[:, None, None] * truth, nk, control=MStepControl())
    warm, warm_inner = inner_m_step("EVE", nk[:, None, None] * truth, nk, truth, MStepControl())
    np.testing.assert_allclose(warm, truth, rtol=1e-12, atol=1e-12)
    assert warm_inner.n_iter <= 2 < cold_inner.n_iter


@pytest.mark.parametrize("name", WARM)
def test_a_degenerate_previous_covariance_falls_back_to_the_fixed_start(name):
    rng = np.random.default_rng(13)
    X, _, _ = make_blobs(n=300, d=3, k=3, seed=4)
    nk, scatter = soft_scatter(X, rng)
    cold, cold_inner = inner_m_step(name, scatter, nk)
    degenerate = stored(name, np.zeros((3, 3, 3)))
    fallback, fallback_inner = inner_m_step(name, scatter, nk, degenerate)
    np.testing.assert_array_equal(fallback, cold)
    assert fallback_inner == cold_inner


def inner_iterations_of_fit(model, X, **fit_params):
    """``model`` fitted, and the inner iterations of each of its M-steps
    (the run's record, read after every iteration by a callback)."""
    seen = []
    model.fit(X, callbacks=[lambda info: seen.append(list(info["runs"][0].m_step_iterations))], **fit_params)
    return model, seen[-1] if seen else []


@pytest.mark.parametrize("name", WARM)
def test_em_m_steps_start_from_the_previous_covariances(name, data):
    """An EM M-step is the M-step of its pass's statistics started from the
    covariances before it (those of the fit one iteration shorter): near
    convergence a few inner iterations, where mclust's fixed start on the
    same statistics needs more; the initialisation's M-step (no previous
    covariances) keeps the fixed start."""
    params = dict(n_components=3, covariance_type=name, random_state=0, tol=0)
    model, inner = inner_iterations_of_fit(GaussianMixture(max_iter=12, **params), data)
    assert len(inner) == 13  # the initialisation's M-step, then 12 of EM
    assert all(step.converged for step in inner)
    before = GaussianMixture(max_iter=11, **params).fit(data).covariances_
    kind = covariance_model(name)
    statistics = model._fit_statistics  # the merged statistics of the last pass
    (_, _, covariances), last = kind.m_step_with_iterations(statistics, model.reg_covar, MStepControl(), before)
    assert np.array_equal(covariances, model.covariances_)
    assert last == inner[-1]
    _, fixed_start = kind.m_step_with_iterations(statistics, model.reg_covar, MStepControl())
    assert inner[-1].n_iter < fixed_start.n_iter
    assert inner[-1].n_iter < inner[0].n_iter


@pytest.mark.parametrize("name", ITERATIVE)
def test_inner_iterations_at_their_limit_warn_once_per_fit(name, data):
    """mclust's "inner iteration limit reached": one MStepConvergenceWarning
    (a ConvergenceWarning) naming the model, how many M-steps stopped and
    the parameter to raise; none with the default bounds on easy data."""
    from sklearn.exceptions import ConvergenceWarning

    from daskgmm.mixture import MStepConvergenceWarning

    with pytest.warns(MStepConvergenceWarning) as record:
        model, inner = inner_iterations_of_fit(
            GaussianMixture(3, covariance_type=name, random_state=0, tol=0, max_iter=4, m_step_max_iter=1), data
        )
    limited = [w for w in record if issubclass(w.category, MStepConvergenceWarning)]
    assert len(limited) == 1 and issubclass(MStepConvergenceWarning, ConvergenceWarning)
    stopped = sum(not step.converged for step in inner)
    assert stopped >= 1 and all(step.n_iter == 1 for step in inner)
    assert str(limited[0].message) == (
        f"The inner iterations of {stopped} of 5 {name} M-steps reached m_step_max_iter=1 without meeting "
        "m_step_tol=1.5e-08: their covariances are not the M-step's optimum. Increase m_step_max_iter."
    )
    assert limited[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error", MStepConvergenceWarning)
        GaussianMixture(3, covariance_type=name, random_state=0, tol=1e-8, max_iter=15).fit(data)
        GaussianMixture(3, covariance_type="EVV", random_state=0, max_iter=4, m_step_max_iter=1).fit(data)


def test_partial_fit_warns_once_per_call_and_select_once_per_selection(data):
    from daskgmm import select_n_components
    from daskgmm.mixture import MStepConvergenceWarning

    model = GaussianMixture(3, covariance_type="EVE", random_state=0, m_step_max_iter=1)
    # The first batch's M-steps: the initialisation's and the batch's.
    for expected in ("2 of 2", "1 of 1"):
        with pytest.warns(MStepConvergenceWarning, match=f"{expected} EVE M-steps reached m_step_max_iter=1") as record:
            model.partial_fit(data)
        assert sum(issubclass(w.category, MStepConvergenceWarning) for w in record) == 1
    exact = GaussianMixture(3, covariance_type="VVE", random_state=0, m_step_max_iter=1, partial_fit_mode="exact")
    with pytest.warns(MStepConvergenceWarning, match="1 of 1 VVE M-steps"):
        exact.partial_fit(data)
    with pytest.warns(MStepConvergenceWarning, match="1 of 1 VVE M-steps"):
        exact.end_pass()
    with warnings.catch_warnings():
        warnings.simplefilter("error", MStepConvergenceWarning)
        select_n_components(data, [2, 3], covariance_types=["EVE", "VEV"], random_state=0, max_iter=10)


@pytest.mark.parametrize("name", ["EVE", "VEV"])
def test_checkpoint_resumes_the_warm_started_m_steps_bitwise(name, data, tmp_path):
    """The covariances the next M-step starts from are the run's, which a
    checkpoint saves: a resumed fit is bitwise the uninterrupted one, its
    M-steps taking the same inner iterations."""
    path = tmp_path / f"{name}.ckpt"
    X = da.from_array(data, chunks=(100, -1))
    params = dict(n_components=3, covariance_type=name, random_state=0, tol=0)
    GaussianMixture(max_iter=3, **params).fit(X, checkpoint=path)
    resumed, resumed_inner = inner_iterations_of_fit(GaussianMixture(max_iter=7, **params), X, checkpoint=path)
    uninterrupted, inner = inner_iterations_of_fit(GaussianMixture(max_iter=7, **params), X)
    assert resumed.n_iter_ == uninterrupted.n_iter_ == 7
    for attribute in ("weights_", "means_", "covariances_", "precisions_cholesky_", "lower_bounds_"):
        assert np.array_equal(getattr(resumed, attribute), getattr(uninterrupted, attribute)), attribute
    # The resumed run made iterations 4..7 (no initialisation M-step).
    assert resumed_inner == inner[4:]
    assert max(step.n_iter for step in resumed_inner) < inner[0].n_iter


@pytest.mark.parametrize("name", ["EVE", "VEI"])
def test_exact_partial_fit_passes_are_the_fit(name, data):
    """Each end_pass() starts its inner iterations from the fitted
    covariances, as fit's M-steps from the run's: the same fit."""
    pieces = np.array_split(data, 3)
    start = given_start(name, data)
    fitted = GaussianMixture(3, covariance_type=name, max_iter=5, tol=0, **start).fit(data)
    online = GaussianMixture(3, covariance_type=name, max_iter=5, tol=0, partial_fit_mode="exact", **start)
    for _ in range(5):
        for piece in pieces:
            online.partial_fit(piece)
        online.end_pass()
    assert online.n_iter_ == fitted.n_iter_ == 5
    assert_same_fit(online, fitted, 1e-9)
