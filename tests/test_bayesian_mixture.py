"""BayesianGaussianMixture against scikit-learn's, from the same starting
responsibilities, and daskgmm's own behaviour on top: chunking invariance,
data far from the origin, restarts sharing passes, warm start, checkpoints,
lazy outputs, NaN rows named, components switched off by the prior.

scikit-learn's own ``test_bayesian_mixture.py`` runs against our class in
``tests/test_sklearn_suite.py``; these tests compare the two fits number for
number."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import dask.array as da
from sklearn.mixture import BayesianGaussianMixture as SkBayesianGaussianMixture

from daskgmm import BayesianGaussianMixture, ConvergenceWarning, GaussianMixture
from daskgmm._init import PassCounter, Spec, initial_statistics

from .conftest import make_blobs

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]
PRIOR_TYPES = ["dirichlet_process", "dirichlet_distribution"]
RTOL = 1e-6
# Every fitted parameter of the variational posterior.
PARAMETERS = (
    "weights_",
    "means_",
    "covariances_",
    "precisions_cholesky_",
    "weight_concentration_",
    "mean_precision_",
    "degrees_of_freedom_",
)
PRIORS = (
    "weight_concentration_prior_",
    "mean_precision_prior_",
    "mean_prior_",
    "degrees_of_freedom_prior_",
    "covariance_prior_",
)

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def data():
    X, _, _ = make_blobs(n=400, d=3, k=3, seed=3)
    return X


@pytest.fixture(scope="module")
def start_resp(data):
    """Random responsibilities for 4 components: one more than the blobs, so
    that the weight prior has a component to switch off."""
    resp = np.random.default_rng(0).random((data.shape[0], 4))
    return resp / resp.sum(axis=1, keepdims=True)


def _rel(a, b):
    a, b = np.ravel(np.asarray(a, dtype=np.float64)), np.ravel(np.asarray(b, dtype=np.float64))
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)


def _fit_from_resp(model, X, resp):
    """scikit-learn's fit started from ``resp``: ``_initialize`` (the
    M-step of ``resp``), then a warm-started fit of ``max_iter`` iterations
    measured from a lower bound of -inf.  Works for either class."""
    model._check_parameters(X)
    model._initialize(X, resp)
    model.converged_ = False
    model.lower_bound_ = -np.inf
    model.warm_start = True
    return model.fit(X)


def _non_default_priors(covariance_type, d):
    """A prior of every kind, of the right shape, none of them the default."""
    rng = np.random.default_rng(7)
    a = rng.normal(size=(d, d))
    spd = a @ a.T + d * np.eye(d)
    covariance_prior = {"full": spd, "tied": spd, "diag": np.diag(spd).copy(), "spherical": 2.5}[covariance_type]
    return dict(
        weight_concentration_prior=0.05,
        mean_precision_prior=0.3,
        mean_prior=rng.normal(size=d),
        degrees_of_freedom_prior=d + 1.5,
        covariance_prior=covariance_prior,
    )


def _assert_same_posterior(ours, theirs, rtol):
    for name in PARAMETERS:
        assert np.shape(np.ravel(getattr(ours, name))) == np.shape(np.ravel(getattr(theirs, name))), name
        assert _rel(getattr(ours, name), getattr(theirs, name)) < rtol, name
    for name in PRIORS:
        assert _rel(getattr(ours, name), getattr(theirs, name)) < rtol, name


# ---------------------------------------------------------------------------
# The same fit as scikit-learn, from the same responsibilities
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("chunked", [False, True], ids=["numpy", "dask"])
@pytest.mark.parametrize("priors", ["default", "given"])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("prior_type", PRIOR_TYPES)
def test_matches_sklearn_from_same_responsibilities(data, start_resp, prior_type, covariance_type, priors, chunked):
    X = data
    kwargs = dict(
        n_components=start_resp.shape[1],
        covariance_type=covariance_type,
        weight_concentration_prior_type=prior_type,
        tol=0,
        max_iter=15,
    )
    if priors == "given":
        kwargs.update(_non_default_priors(covariance_type, X.shape[1]))
    theirs = _fit_from_resp(SkBayesianGaussianMixture(**kwargs), X, start_resp)
    ours = _fit_from_resp(
        BayesianGaussianMixture(**kwargs), da.from_array(X, chunks=(70, -1)) if chunked else X, start_resp
    )
    assert ours.n_iter_ == theirs.n_iter_ == 15
    _assert_same_posterior(ours, theirs, RTOL)
    # scikit-learn's bound for 'tied' with a Dirichlet distribution is a (1,) array.
    assert _rel(ours.lower_bound_, theirs.lower_bound_) < RTOL
    assert len(ours.lower_bounds_) == len(theirs.lower_bounds_) == 15
    for it, (mine, reference) in enumerate(zip(ours.lower_bounds_, theirs.lower_bounds_), start=1):
        assert _rel(mine, reference) < RTOL, it


# ---------------------------------------------------------------------------
# Chunking
# ---------------------------------------------------------------------------


def _chunked(X, n_chunks):
    dX = da.from_array(X, chunks=(-(-X.shape[0] // n_chunks), -1))
    assert dX.numblocks[0] == n_chunks
    return dX


@pytest.mark.parametrize("init_params", ["kmeans", "random"])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_invariant_to_chunking(init_params, covariance_type):
    """A fixed random_state gives the same fit on 1, 3 or 17 chunks: the
    initialisation's draws are keyed by global row, the sums merged exactly
    enough that only rounding differs."""
    X, _, _ = make_blobs(n=1020, d=3, k=3, seed=5)
    kwargs = dict(n_components=4, covariance_type=covariance_type, init_params=init_params, random_state=0, tol=0,
                  max_iter=20)
    reference = BayesianGaussianMixture(**kwargs).fit(_chunked(X, 1))
    for n_chunks in (3, 17):
        other = BayesianGaussianMixture(**kwargs).fit(_chunked(X, n_chunks))
        for name in PARAMETERS:
            assert _rel(getattr(other, name), getattr(reference, name)) < 1e-10, (n_chunks, name)
        assert other.lower_bound_ == pytest.approx(reference.lower_bound_, rel=1e-10)


# ---------------------------------------------------------------------------
# Far from the origin
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("shift", [1e6, 1e8])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_far_from_origin(covariance_type, shift):
    """Data of unit spread shifted by ``shift`` give the fit of the unshifted
    data, the means (and the data's mean as mean prior) moved by ``shift``.

    The unshifted reference is ``(X + shift) - shift``, exactly the values the
    shifted fit sees (the subtraction is exact), so the comparison measures
    the fit, not the rounding of the input.  What remains is the floor of
    float64 itself: a mean near ``shift`` is resolved to ``eps * shift``
    (2e-10 at 1e6, 2e-8 at 1e8), which moves every responsibility by about
    as much relative to the unit spread; 30 iterations stay within
    ``eps * shift`` (seen: 4e-11 and 4e-9 relative on the covariances, the
    weights and the bound).  The tolerance is 20 times that floor: a raw-moment
    (``E[x^2] - E[x]^2``) formula would lose everything at 1e8.
    """
    X0, _, _ = make_blobs(n=1000, d=3, k=3, spread=3.0, seed=11)
    shifted = X0 + shift
    unshifted = shifted - shift
    kwargs = dict(n_components=3, covariance_type=covariance_type, random_state=0, tol=0, max_iter=30)
    far = BayesianGaussianMixture(**kwargs).fit(da.from_array(shifted, chunks=(250, -1)))
    near = BayesianGaussianMixture(**kwargs).fit(da.from_array(unshifted, chunks=(250, -1)))
    floor = 20 * np.finfo(np.float64).eps * shift
    for name in ("covariances_", "precisions_cholesky_", "weights_", "covariance_prior_", "degrees_of_freedom_"):
        assert _rel(getattr(far, name), getattr(near, name)) < floor, name
    assert far.lower_bound_ == pytest.approx(near.lower_bound_, rel=floor)
    np.testing.assert_allclose(far.means_ - shift, near.means_, rtol=0, atol=floor)
    np.testing.assert_allclose(far.mean_prior_ - shift, near.mean_prior_, rtol=0, atol=floor)


# ---------------------------------------------------------------------------
# Restarts
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("init_params", ["kmeans", "random"])
@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_restarts_share_passes_and_the_best_is_kept(init_params, covariance_type):
    X, _, _ = make_blobs(n=600, d=3, k=3, spread=3.0, seed=2)
    kwargs = dict(n_components=3, covariance_type=covariance_type, init_params=init_params)
    singles = [BayesianGaussianMixture(**kwargs, random_state=seed).fit(X) for seed in range(3)]
    events = []
    restarts = BayesianGaussianMixture(**kwargs, n_init=3, random_state=0).fit(X, callback=events.append)
    # One pass per iteration for all restarts together, as long as the
    # longest restart needs; each restart is active until it converges.
    iterations_per_run = [sum(event["active"][i] for event in events) for i in range(3)]
    assert [event["iteration"] for event in events] == list(range(1, len(events) + 1))
    assert len(events) == max(iterations_per_run)
    assert all(events[-1]["converged"])
    init_passes = restarts.n_passes_ - len(events)
    if init_params == "random":  # the priors' pass and the responsibilities' pass, whatever n_init
        assert init_passes == singles[0].n_passes_ - singles[0].n_iter_
    assert restarts.n_passes_ < sum(single.n_passes_ for single in singles)
    # The kept run has the highest final bound (to rounding: equal optima
    # reached by several restarts are not told apart).
    final = events[-1]["lower_bounds"]
    assert restarts.lower_bound_ in final
    assert restarts.lower_bound_ >= max(final) - 1e-12 * abs(max(final))
    # Restart 0 is the n_init=1 fit with the same random_state (the others
    # are seeded differently from separate fits), so it is never worse.
    assert final[0] == pytest.approx(singles[0].lower_bound_, rel=1e-12)
    assert restarts.lower_bound_ >= singles[0].lower_bound_ - 1e-12 * abs(singles[0].lower_bound_)


# ---------------------------------------------------------------------------
# Warm start
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_one_iteration_warm_refits_converge_as_sklearn(data, start_resp, covariance_type):
    """scikit-learn's test_convergence_detected_with_warm_start, against
    scikit-learn: max_iter=1 refits from the same start converge after the
    same number of fits, with the same parameters after every fit."""
    kwargs = dict(n_components=start_resp.shape[1], covariance_type=covariance_type, max_iter=1, tol=1e-3)
    theirs = _fit_from_resp(SkBayesianGaussianMixture(**kwargs), data, start_resp)
    ours = _fit_from_resp(BayesianGaussianMixture(**kwargs), data, start_resp)
    for fits in range(2, 201):
        if theirs.converged_:
            break
        theirs.fit(data)
        ours.fit(data)
        assert ours.converged_ == theirs.converged_, fits
        assert ours.n_iter_ == 1
        assert _rel(ours.means_, theirs.means_) < RTOL, fits
        assert _rel(ours.lower_bound_, theirs.lower_bound_) < RTOL, fits
    assert theirs.converged_ and ours.converged_
    assert 2 < fits < 200
    _assert_same_posterior(ours, theirs, RTOL)


def test_warm_start_continues_the_fit(data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = BayesianGaussianMixture(n_components=3, max_iter=4, tol=0, random_state=0, warm_start=True)
        model.fit(data).fit(data)
        straight = BayesianGaussianMixture(n_components=3, max_iter=8, tol=0, random_state=0).fit(data)
    for name in PARAMETERS:
        assert _rel(getattr(model, name), getattr(straight, name)) < 1e-10, name
    assert model.lower_bound_ == pytest.approx(straight.lower_bound_, rel=1e-12)


def test_warm_start_refuses_another_n_components(data):
    model = BayesianGaussianMixture(n_components=3, random_state=0, warm_start=True).fit(data)
    before = model.means_.copy()
    with pytest.raises(
        ValueError,
        match=r"warm_start=True continues the fitted model, which does not match n_components=4 "
        r"\(the fitted model has 3\)\. Set warm_start=False",
    ):
        model.set_params(n_components=4).fit(data)
    np.testing.assert_array_equal(model.means_, before)


# ---------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------

CHECKPOINT_KW = dict(n_components=3, n_init=2, tol=0.0, max_iter=12, random_state=0, weight_concentration_prior=0.1)


class _Interrupt(Exception):
    pass


def _interrupt_after(iteration):
    def callback(event):
        if event["iteration"] == iteration:
            raise _Interrupt(f"stopped after iteration {iteration}")

    return callback


@pytest.mark.parametrize("covariance_type", ["full", "tied"])
def test_interrupted_fit_resumes_to_the_uninterrupted_answer(tmp_path, data, covariance_type):
    kwargs = dict(CHECKPOINT_KW, covariance_type=covariance_type)
    dX = da.from_array(data, chunks=(100, -1))
    uninterrupted = BayesianGaussianMixture(**kwargs).fit(dX)
    path = tmp_path / "fit.ckpt"
    with pytest.raises(_Interrupt):
        BayesianGaussianMixture(**kwargs).fit(dX, checkpoint=path, callback=_interrupt_after(3))
    events = []
    resumed = BayesianGaussianMixture(**kwargs).fit(dX, checkpoint=path, callback=events.append)
    assert [event["iteration"] for event in events] == list(range(4, kwargs["max_iter"] + 1))
    assert resumed.n_iter_ == uninterrupted.n_iter_
    for name in PARAMETERS + PRIORS:
        np.testing.assert_allclose(
            np.ravel(getattr(resumed, name)), np.ravel(getattr(uninterrupted, name)), rtol=1e-12, atol=0, err_msg=name
        )
    np.testing.assert_allclose(resumed.lower_bounds_, uninterrupted.lower_bounds_, rtol=1e-12, atol=0)


def test_checkpoint_of_the_other_family_is_refused(tmp_path, data):
    gaussian_path, bayesian_path = tmp_path / "gaussian.ckpt", tmp_path / "bayesian.ckpt"
    GaussianMixture(3, max_iter=2, tol=0, random_state=0).fit(data, checkpoint=gaussian_path)
    BayesianGaussianMixture(n_components=3, max_iter=2, tol=0, random_state=0).fit(data, checkpoint=bayesian_path)
    gaussian_bytes, bayesian_bytes = gaussian_path.read_bytes(), bayesian_path.read_bytes()
    refused = r"Cannot resume from checkpoint .*written for different data or settings \(family is '{}' in the checkpoint but '{}' now"
    with pytest.raises(ValueError, match=refused.format("gaussian", "bayesian")):
        BayesianGaussianMixture(n_components=3, max_iter=4, tol=0, random_state=0).fit(data, checkpoint=gaussian_path)
    with pytest.raises(ValueError, match=refused.format("bayesian", "gaussian")):
        GaussianMixture(3, max_iter=4, tol=0, random_state=0).fit(data, checkpoint=bayesian_path)
    # Another prior is other settings too.
    with pytest.raises(ValueError, match="weight_concentration_prior is None in the checkpoint but 0.5 now"):
        BayesianGaussianMixture(
            n_components=3, max_iter=4, tol=0, random_state=0, weight_concentration_prior=0.5
        ).fit(data, checkpoint=bayesian_path)
    assert gaussian_path.read_bytes() == gaussian_bytes
    assert bayesian_path.read_bytes() == bayesian_bytes


# ---------------------------------------------------------------------------
# Lazy outputs, equal to scikit-learn's with the same parameters
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("prior_type", PRIOR_TYPES)
def test_lazy_outputs_match_sklearn_with_the_same_parameters(data, prior_type, covariance_type):
    dX = da.from_array(data, chunks=(90, -1))
    kwargs = dict(n_components=4, covariance_type=covariance_type, weight_concentration_prior_type=prior_type)
    ours = BayesianGaussianMixture(**kwargs, random_state=0).fit(dX)
    theirs = SkBayesianGaussianMixture(**kwargs)
    theirs._check_parameters(data)
    theirs._set_parameters(ours._get_parameters())
    assert _rel(theirs.weights_, ours.weights_) < 1e-12
    expected = {
        "predict": theirs.predict(data),
        "predict_proba": theirs.predict_proba(data),
        "score_samples": theirs.score_samples(data),
    }
    for method, want in expected.items():
        lazy = getattr(ours, method)(dX)
        assert isinstance(lazy, da.Array), method
        assert lazy.chunks[0] == dX.chunks[0], method
        eager = getattr(ours, method)(data)
        assert isinstance(eager, np.ndarray), method
        # Other chunks than the in-process path's: equal to rounding.
        np.testing.assert_allclose(lazy.compute(), eager, rtol=1e-12, atol=1e-300, err_msg=method)
        if method == "predict":
            np.testing.assert_array_equal(eager, want)
        else:
            np.testing.assert_allclose(eager, want, rtol=1e-10, atol=1e-12, err_msg=method)
    assert ours.score(dX) == pytest.approx(theirs.score(data), rel=1e-10)


# ---------------------------------------------------------------------------
# NaN rows
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("chunked", [False, True], ids=["numpy", "dask"])
def test_nan_row_is_named_at_fit_and_at_predict(data, chunked):
    bad = data.copy()
    bad[337, 1] = np.nan
    as_input = (lambda X: da.from_array(X, chunks=(100, -1))) if chunked else (lambda X: X)
    named = r"NaN or infinity: 1 row\(s\).*first at row 337\)"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing before the error
        with pytest.raises(ValueError, match=named):
            BayesianGaussianMixture(n_components=3, random_state=0).fit(as_input(bad))
    model = BayesianGaussianMixture(n_components=3, random_state=0).fit(data)
    for method in ("predict", "predict_proba", "score_samples"):
        if chunked:
            lazy = getattr(model, method)(as_input(bad))
            assert isinstance(lazy, da.Array), method  # the error comes when it is computed
            with pytest.raises(ValueError, match=named):
                lazy.compute()
        else:
            with pytest.raises(ValueError, match=named):
                getattr(model, method)(bad)


# ---------------------------------------------------------------------------
# The prior switches off the components the data do not need
# ---------------------------------------------------------------------------


def _components_holding(weights, share):
    """The fewest components whose weights add up to more than ``share``."""
    return int(np.searchsorted(np.cumsum(np.sort(weights)[::-1]), share, side="right") + 1)


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_dirichlet_process_keeps_the_components_the_data_need(covariance_type):
    X, _, _ = make_blobs(n=900, d=2, k=3, spread=20.0, seed=4)
    kwargs = dict(
        n_components=10, covariance_type=covariance_type, weight_concentration_prior_type="dirichlet_process",
        weight_concentration_prior=1e-2, max_iter=500, random_state=0,
    )
    ours = BayesianGaussianMixture(**kwargs).fit(da.from_array(X, chunks=(200, -1)))
    theirs = SkBayesianGaussianMixture(**kwargs).fit(X)
    assert ours.converged_ and theirs.converged_
    assert _components_holding(ours.weights_, 0.95) == _components_holding(theirs.weights_, 0.95) == 3
    np.testing.assert_allclose(ours.weights_.sum(), 1.0)


# ---------------------------------------------------------------------------
# Data-dependent priors from the initialisation's passes (issue #13)
# ---------------------------------------------------------------------------

INPUTS = {
    "numpy": lambda X: X,
    "dask-1-chunk": lambda X: _chunked(X, 1),
    "dask-4-chunks": lambda X: _chunked(X, 4),
}


def _weights(X, weighted, chunked_like):
    if not weighted:
        return None
    w = np.random.default_rng(1).uniform(0.2, 3.0, size=X.shape[0])
    w[::37] = 0.0  # rows of weight 0 count nowhere, in the priors as in the fit
    return da.from_array(w, chunks=(chunked_like.chunks[0],)) if isinstance(chunked_like, da.Array) else w


def _own_pass_priors(X, weights, **kwargs):
    """The data-dependent priors as their own pass gives them (``_make_family``
    on :func:`daskgmm._init.data_moments`), for any input."""
    model = BayesianGaussianMixture(**kwargs)
    dX = X if isinstance(X, da.Array) else da.from_array(X, chunks=(-1, -1))
    w = weights if weights is None or isinstance(weights, da.Array) else da.from_array(weights, chunks=(dX.chunks[0],))
    model._make_family(dX, PassCounter(), sample_weight=w)
    return model.mean_prior_, model.covariance_prior_


@pytest.mark.parametrize("input_kind", list(INPUTS))
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("prior_type", PRIOR_TYPES)
@pytest.mark.parametrize("init_params", ["kmeans", "random"])
def test_priors_from_the_initialisation_equal_those_of_their_own_pass(
    init_params, prior_type, covariance_type, weighted, input_kind
):
    """The merge over components of the initialisation's statistics is the
    data's moments: the priors, and so the whole fit, equal those of the
    separate pass (the fit given those very priors) to rounding."""
    X0, _, _ = make_blobs(n=300, d=3, k=3, seed=4, shift=50.0)
    X = INPUTS[input_kind](X0)
    weights = _weights(X0, weighted, X)
    kwargs = dict(n_components=3, covariance_type=covariance_type, weight_concentration_prior_type=prior_type,
                  init_params=init_params, random_state=0, tol=0, max_iter=10)
    mean_prior, covariance_prior = _own_pass_priors(X, weights, **kwargs)
    ours = BayesianGaussianMixture(**kwargs).fit(X, sample_weight=weights)
    given = BayesianGaussianMixture(**kwargs, mean_prior=mean_prior, covariance_prior=covariance_prior)
    given.fit(X, sample_weight=weights)
    assert _rel(ours.mean_prior_, mean_prior) < 1e-13
    assert _rel(ours.covariance_prior_, covariance_prior) < 1e-13
    assert np.shape(ours.covariance_prior_) == np.shape(covariance_prior)
    assert ours.n_iter_ == given.n_iter_
    for name in PARAMETERS:
        assert _rel(getattr(ours, name), getattr(given, name)) < 1e-12, name
    assert ours.lower_bound_ == pytest.approx(given.lower_bound_, rel=1e-12)
    # The same numbers from plain NumPy: the weighted mean, and the scatter
    # over (total weight - 1), the rows repeated as many times as weighted.
    w = np.ones(X0.shape[0]) if weights is None else np.asarray(weights)
    mean = w @ X0 / w.sum()
    covariance = (X0 - mean).T @ ((X0 - mean) * w[:, None]) / (w.sum() - 1.0)
    expected = {"full": covariance, "tied": covariance, "diag": np.diag(covariance),
                "spherical": np.diag(covariance).mean()}[covariance_type]
    assert _rel(ours.mean_prior_, mean) < 1e-13
    assert _rel(ours.covariance_prior_, expected) < 1e-12


def _init_passes(model):
    return model.n_passes_ - model.n_iter_


@pytest.mark.parametrize("init_params", ["kmeans", "random"])
def test_a_fit_takes_no_pass_for_its_priors_when_the_initialisation_covers_every_row(data, init_params):
    """'kmeans' and 'random' cost a BayesianGaussianMixture exactly the
    passes they cost a GaussianMixture: the priors come with them."""
    kwargs = dict(n_components=3, init_params=init_params, random_state=0, tol=0, max_iter=3)
    dX = da.from_array(data, chunks=(100, -1))
    gaussian = GaussianMixture(**kwargs).fit(dX)
    bayesian = BayesianGaussianMixture(**kwargs).fit(dX)
    assert _init_passes(bayesian) == _init_passes(gaussian)


@pytest.mark.parametrize(
    "init_params, given, extra_passes",
    [
        ("kmeans", False, 0),
        ("random", False, 0),
        ("k-means++", False, 1),  # it only picks rows: the priors take their own pass
        ("random_from_data", False, 1),
        ("kmeans", True, 0),  # both given: no pass for them at all
        ("k-means++", True, 0),
    ],
)
def test_initial_runs_set_the_priors_from_the_initialisation(data, init_params, given, extra_passes):
    """``_initial_runs`` without a family sets the priors from the
    initialisation's statistics where they cover every row, else from one
    more pass; the runs start as from the family of :meth:`_make_family`."""
    dX = da.from_array(data, chunks=(100, -1))
    priors = _non_default_priors("full", 3) if given else {}
    kwargs = dict(n_components=3, init_params=init_params, random_state=0, n_init=2, **priors)
    model = BayesianGaussianMixture(**kwargs)
    checked = model._check_settings(3)
    alone = PassCounter()
    initial_statistics(dX, init_params, [Spec(3, "full", 0)], counter=alone)
    counter = PassCounter()
    runs = model._initial_runs(dX, checked, counter, None)
    assert counter.passes == alone.passes + extra_passes
    reference = BayesianGaussianMixture(**kwargs)
    family = reference._make_family(dX, PassCounter())
    expected = reference._initial_runs(dX, checked, PassCounter(), family)
    for name in PRIORS:
        assert _rel(getattr(model, name), getattr(reference, name)) < 1e-13, name
    for run, other in zip(runs, expected, strict=True):
        for name in ("weights", "means", "covariances", "precisions_cholesky"):
            assert _rel(getattr(run, name), getattr(other, name)) < 1e-12, name


@pytest.mark.parametrize("which", ["both", "mean_prior", "covariance_prior"])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_given_priors_are_kept_as_given(data, covariance_type, which):
    """A prior given is the fitted prior, value for value, whatever the
    initialisation measured; the arrays given are left as they were."""
    given = _non_default_priors(covariance_type, data.shape[1])
    given = {name: value for name, value in given.items()
             if which == "both" or name == which or name not in ("mean_prior", "covariance_prior")}
    copies = {name: np.copy(value) for name, value in given.items()}
    model = BayesianGaussianMixture(n_components=3, covariance_type=covariance_type, random_state=0, max_iter=3,
                                    **given)
    model.fit(da.from_array(data, chunks=(100, -1)))
    for name, value in given.items():
        fitted = getattr(model, name + "_")
        assert np.array_equal(fitted, copies[name]), name
        assert np.array_equal(value, copies[name]), name
    if which != "both":
        computed = "covariance_prior" if which == "mean_prior" else "mean_prior"
        own = dict(zip(("mean_prior", "covariance_prior"), _own_pass_priors(data, None, n_components=3,
                                                                             covariance_type=covariance_type)))
        assert _rel(getattr(model, computed + "_"), own[computed]) < 1e-13
