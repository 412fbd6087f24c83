"""Online EM: ``partial_fit`` in stepwise and exact mode (issue #14).

The stepwise model is checked against what stepwise EM must give: the batch
fit's held-out log-likelihood on a stationary stream, and, on a drifting
stream, the mean the step sizes predict from the batches' own statistics.
Exact mode is checked against one (two) EM iteration(s) of ``fit`` on the
concatenated batches, from the same start.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import dask.array as da
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import BayesianGaussianMixture as SklearnBayesianGaussianMixture
from sklearn.utils._param_validation import InvalidParameterError

from daskgmm import BayesianGaussianMixture, GaussianMixture

MEANS = np.array([[0.0, 0.0, 0.0], [4.0, 0.0, 1.0], [0.0, 5.0, -2.0]])
COVARIANCES = np.array([np.diag([1.0, 0.5, 0.8]), [[1.0, 0.3, 0.0], [0.3, 1.0, 0.0], [0.0, 0.0, 0.5]], 0.7 * np.eye(3)])
WEIGHTS = np.array([0.5, 0.3, 0.2])


def draw(rng, n):
    """``n`` rows of the known 3-component mixture, shuffled."""
    counts = rng.multinomial(n, WEIGHTS)
    X = np.concatenate([rng.multivariate_normal(m, c, size=s) for m, c, s in zip(MEANS, COVARIANCES, counts)])
    return X[rng.permutation(n)]


@pytest.fixture(scope="module")
def stream():
    """40 batches of 2,000 rows and 20,000 held-out rows of one mixture."""
    rng = np.random.RandomState(0)
    return [draw(rng, 2000) for _ in range(40)], draw(rng, 20000)


def start_parameters(covariance_type, d=3):
    """A deliberately rough common start (every ``*_init`` given)."""
    means = MEANS + np.array([0.5, -0.4, 0.3])
    if covariance_type == "full":
        precisions = np.stack([np.eye(d) * 0.8] * 3)
    elif covariance_type == "tied":
        precisions = np.eye(d) * 0.8
    elif covariance_type == "diag":
        precisions = np.full((3, d), 0.8)
    else:
        precisions = np.full(3, 0.8)
    return {"weights_init": np.full(3, 1 / 3), "means_init": means, "precisions_init": precisions}


# --------------------------------------------------------------------------
# stepwise: stationary and drifting streams
# --------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
def test_stationary_stream_reaches_the_batch_fit(stream, seed):
    batches, held_out = stream
    batch_fit = GaussianMixture(3, random_state=seed).fit(np.concatenate(batches))
    online = GaussianMixture(3, random_state=seed)
    for batch in batches:
        online.partial_fit(batch)
    gap = batch_fit.score(held_out) - online.score(held_out)
    # Measured: 2.3e-4 for both seeds (the online model averages about 1 / gamma_40
    # ~ 9 batches of statistics: its parameter noise costs ~ p / (2 n_eff)
    # ~ 30 / 36,000 at most).
    assert gap < 1e-3, gap
    assert online.n_batch_iter_ == 40 and online.n_iter_ == 40
    assert online.n_samples_seen_ == 80000
    assert len(online.lower_bounds_) == 40 and not online.converged_
    # lower_bound_: the stepwise average of the batches' mean log-likelihoods
    # before their updates, near the held-out score.
    assert abs(online.lower_bound_ - batch_fit.score(held_out)) < 0.05


def running_weights(n_batches, decay, offset):
    """The weight of batch j (0-based) in the running statistics after the
    last batch: ``gamma_j prod_{i > j} (1 - gamma_i)``, ``gamma_1 = 1``."""
    gamma = np.array([1.0] + [(t + offset) ** -decay for t in range(2, n_batches + 1)])
    keep = np.append(np.cumprod((1 - gamma)[::-1])[::-1][1:], 1.0)
    return gamma * keep


def test_drifting_mean_is_tracked():
    """One component's mean moves by ``velocity`` per batch.  Stepwise EM's
    running mean of that component is the average of the batches' own
    means, batch j weighted by its running weight w_j times its count: with
    components 8 standard deviations apart the responsibilities are the
    labels, so the fitted mean equals that prediction up to the tails of the
    responsibilities (1e-6 measured, 1e-3 allowed).  Its lag behind the
    current mean is ``velocity * sum_j w_j (T - j)`` (7.3 batches here),
    while a fit on all the data sits at the average position (20 batches
    behind)."""
    rng = np.random.RandomState(0)
    n_batches, n = 40, 2000
    static = np.array([[0.0, 0.0], [6.0, 0.0]])
    start, velocity = np.array([3.0, 8.0]), np.array([0.0, 0.5])
    batches, labels = [], []
    for t in range(1, n_batches + 1):
        z = rng.choice(3, n, p=[0.4, 0.4, 0.2])
        centres = np.vstack([static, start + velocity * t])
        batches.append(centres[z] + rng.standard_normal((n, 2)))
        labels.append(z)
    online = GaussianMixture(3, random_state=0)
    for batch in batches:
        online.partial_fit(batch)
    moving = int(np.argmax(online.means_[:, 1]))

    w = running_weights(n_batches, online.learning_decay, online.learning_offset)
    counts = np.array([(z == 2).sum() for z in labels])
    batch_means = np.array([b[z == 2].mean(axis=0) for b, z in zip(batches, labels)])
    predicted = (w * counts) @ batch_means / (w * counts).sum()
    np.testing.assert_allclose(online.means_[moving], predicted, atol=1e-3)

    now = start + velocity * n_batches
    lag = velocity[1] * (w @ (n_batches - 1 - np.arange(n_batches)))  # 3.67
    assert abs((now[1] - online.means_[moving, 1]) - lag) < 0.1
    batch_fit = GaussianMixture(3, random_state=0).fit(np.concatenate(batches))
    assert now[1] - batch_fit.means_[:, 1].max() > 2.5 * lag  # 9.8 behind
    # A decay nearer 0.5 forgets faster: a shorter lag.
    faster = GaussianMixture(3, random_state=0, learning_decay=0.51)
    for batch in batches:
        faster.partial_fit(batch)
    assert faster.means_[:, 1].max() > online.means_[moving, 1] + 0.5


# --------------------------------------------------------------------------
# exact mode: a pass of partial_fit + end_pass == an iteration of fit
# --------------------------------------------------------------------------


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_exact_pass_is_one_fit_iteration(stream, covariance_type):
    batches = stream[0][:6]
    start = start_parameters(covariance_type)
    online = GaussianMixture(3, covariance_type=covariance_type, partial_fit_mode="exact", **start)
    for n_iter in (1, 2):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            batch_fit = GaussianMixture(3, covariance_type=covariance_type, max_iter=n_iter, **start).fit(
                np.concatenate(batches)
            )
        for batch in batches:
            online.partial_fit(batch)
        if n_iter == 1:  # before the M-step, the parameters are the start's
            np.testing.assert_allclose(online.means_, start["means_init"], rtol=0, atol=0)
        online.end_pass()
        for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
            np.testing.assert_allclose(getattr(online, name), getattr(batch_fit, name), rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(online.lower_bounds_, batch_fit.lower_bounds_, rtol=1e-12)
        assert online.n_iter_ == n_iter
    assert online.n_batch_iter_ == 12 and online.n_samples_seen_ == 24000


def test_exact_mode_converges_over_passes(stream):
    batches = stream[0][:4]
    online = GaussianMixture(3, random_state=0, partial_fit_mode="exact", tol=1e-6)
    for _ in range(100):
        for batch in batches:
            online.partial_fit(batch)
        online.end_pass()
        if online.converged_:
            break
    assert online.converged_
    assert np.all(np.diff(online.lower_bounds_) > -1e-12)  # EM never decreases the likelihood
    assert online.history_[-1]["n_chunks"] == sum(len(b) // 1024 + 1 for b in batches)


def test_end_pass_needs_a_pass_of_exact_mode(stream):
    batch = stream[0][0]
    with pytest.raises(ValueError, match="partial_fit_mode='exact'"):
        GaussianMixture(3, random_state=0).partial_fit(batch).end_pass()
    exact = GaussianMixture(3, random_state=0, partial_fit_mode="exact").partial_fit(batch)
    assert exact.lower_bound_ == -np.inf and exact.n_iter_ == 0
    exact.end_pass()
    with pytest.raises(ValueError, match="call partial_fit first"):
        exact.end_pass()


# --------------------------------------------------------------------------
# inputs: Dask batches, sample weights, the Bayesian mixture
# --------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["stepwise", "exact"])
def test_dask_batches_equal_numpy_batches(stream, mode):
    batches = stream[0][:8]
    models = []
    for wrap in (np.asarray, lambda b: da.from_array(b, chunks=(300, -1))):
        gmm = GaussianMixture(3, random_state=0, partial_fit_mode=mode)
        for batch in batches:
            gmm.partial_fit(wrap(batch))
        if mode == "exact":
            gmm.end_pass()
        models.append(gmm)
    for name in ("weights_", "means_", "covariances_"):
        np.testing.assert_allclose(getattr(models[0], name), getattr(models[1], name), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(models[0].lower_bounds_, models[1].lower_bounds_, rtol=1e-12)


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_sample_weights_are_repeated_rows(stream, covariance_type):
    rng = np.random.RandomState(1)
    batches = [b[:500] for b in stream[0][:6]]
    start = start_parameters(covariance_type)
    weighted = GaussianMixture(3, covariance_type=covariance_type, **start)
    repeated = GaussianMixture(3, covariance_type=covariance_type, **start)
    for batch in batches:
        weights = rng.randint(0, 4, size=len(batch))
        weighted.partial_fit(batch, sample_weight=weights)
        repeated.partial_fit(np.repeat(batch, weights, axis=0))
    for name in ("weights_", "means_", "covariances_"):
        np.testing.assert_allclose(getattr(weighted, name), getattr(repeated, name), rtol=1e-10, atol=1e-12)
    assert weighted.n_samples_seen_ == repeated.n_samples_seen_


@pytest.mark.parametrize("prior_type", ["dirichlet_process", "dirichlet_distribution"])
def test_bayesian_stationary_stream_reaches_sklearn_weights(stream, prior_type):
    batches, held_out = stream[0][:20], stream[1]
    reference = SklearnBayesianGaussianMixture(
        n_components=3, weight_concentration_prior_type=prior_type, random_state=0, max_iter=300
    ).fit(np.concatenate(batches))
    online = BayesianGaussianMixture(n_components=3, weight_concentration_prior_type=prior_type, random_state=0)
    for batch in batches:
        online.partial_fit(batch)
    order, reference_order = np.argsort(online.weights_), np.argsort(reference.weights_)
    # Measured: within 2.7e-3 of scikit-learn's weights, held-out score within 3.2e-4.
    np.testing.assert_allclose(online.weights_[order], reference.weights_[reference_order], atol=0.01)
    np.testing.assert_allclose(online.means_[order], reference.means_[reference_order], atol=0.05)
    assert abs(online.score(held_out) - reference.score(held_out)) < 1e-3
    # The posterior counts are those of every sample seen.
    np.testing.assert_allclose(online.mean_precision_.sum(), online.mean_precision_prior_ * 3 + 40000, rtol=1e-9)


# --------------------------------------------------------------------------
# checks
# --------------------------------------------------------------------------


def test_feature_count_must_not_change(stream):
    batch = stream[0][0]
    gmm = GaussianMixture(3, random_state=0).partial_fit(batch)
    with pytest.raises(ValueError, match="X has 2 features, but GaussianMixture is expecting 3 features"):
        gmm.partial_fit(batch[:, :2])
    with pytest.raises(ValueError, match="X has 2 features, but GaussianMixture is expecting 3 features"):
        gmm.partial_fit(da.from_array(batch[:, :2], chunks=500))


def test_first_batch_needs_n_components_samples(stream):
    batch = stream[0][0]
    with pytest.raises(ValueError, match="n_components = 3, n_samples = 2"):
        GaussianMixture(3).partial_fit(batch[:2])
    # Later batches may be as small as one row.
    gmm = GaussianMixture(3, random_state=0).partial_fit(batch)
    gmm.partial_fit(batch[:1])
    assert gmm.n_batch_iter_ == 2


@pytest.mark.parametrize(
    "setting", [{"learning_decay": 0.5}, {"learning_decay": 1.1}, {"learning_offset": -1}, {"partial_fit_mode": "x"}]
)
def test_online_settings_are_validated(stream, setting):
    with pytest.raises(InvalidParameterError):
        GaussianMixture(3, **setting).partial_fit(stream[0][0])


def test_stream_continues_a_fit_and_a_fit_ends_the_stream(stream):
    batches = stream[0]
    fitted = GaussianMixture(3, random_state=0).fit(batches[0])
    n_iter, means = fitted.n_iter_, fitted.means_.copy()
    fitted.partial_fit(batches[1])
    assert fitted.n_iter_ == n_iter + 1 and fitted.n_batch_iter_ == 1
    assert np.abs(fitted.means_ - means).max() < 0.2  # continued, not re-initialised
    fitted.fit(batches[2])
    assert fitted._online_state is None
    fitted.partial_fit(batches[3])
    assert fitted.n_batch_iter_ == 1
    with pytest.raises(ValueError, match="partial_fit continues the fitted model"):
        fitted.set_params(n_components=2).partial_fit(batches[4])


# --------------------------------------------------------------------------
# a stream continuing a fit (issue #20, item 5)
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def large_fit_data():
    """40,000 rows to fit, 10 new rows and 20,000 held-out rows of one mixture."""
    rng = np.random.RandomState(3)
    return draw(rng, 40000), draw(rng, 10), draw(rng, 20000)


@pytest.mark.parametrize("cls", [GaussianMixture, BayesianGaussianMixture])
def test_a_few_rows_after_a_large_fit_move_the_model_slightly(large_fit_data, cls):
    """The issue's case: 10 rows after a fit on 40,000 rebuilt the model from
    those 10 rows (held-out score -3.54 -> -4.42).  They now count as one
    batch after 4,000 earlier batches of 10 rows (the fit's data)."""
    X, new, held_out = large_fit_data
    fitted = cls(n_components=3, random_state=0).fit(X)
    before = {name: getattr(fitted, name).copy() for name in ("weights_", "means_", "covariances_")}
    score = fitted.score(held_out)
    resp = fitted.predict_proba(new)  # the batch's E-step, with the fitted parameters
    fitted.partial_fit(new)
    # Measured: 2e-5 (both classes); the model rebuilt from the 10 rows lost
    # 34 (GaussianMixture) and 3.6 (BayesianGaussianMixture) per sample here.
    assert abs(fitted.score(held_out) - score) < 1e-3
    np.testing.assert_allclose(fitted.weights_, before["weights_"], atol=0.01)
    np.testing.assert_allclose(fitted.means_, before["means_"], atol=0.05)
    np.testing.assert_allclose(fitted.covariances_, before["covariances_"], atol=0.05)
    assert fitted.n_batch_iter_ == 1 and fitted.n_samples_seen_ == 40010
    if cls is GaussianMixture:
        # The stepwise rule with t = 4001: each component's mean is the fit's,
        # weighted (1 - gamma) w_k, and the batch's, weighted gamma N_k / 10.
        gamma = (4001 + fitted.learning_offset) ** -fitted.learning_decay
        nk = resp.sum(axis=0)
        batch_means = resp.T @ new / nk[:, None]
        fit_part, batch_part = (1 - gamma) * before["weights_"], gamma * nk / len(new)
        expected = (fit_part[:, None] * before["means_"] + batch_part[:, None] * batch_means) / (
            fit_part + batch_part
        )[:, None]
        np.testing.assert_allclose(fitted.means_, expected, rtol=0, atol=1e-9)
        np.testing.assert_allclose(fitted.weights_, fit_part + batch_part, rtol=1e-9)


def test_a_stream_continuing_a_fit_converges_as_one_from_scratch(stream):
    """A rough fit on one batch, then 39 stepwise batches of the same size:
    the fit counts as one earlier batch, and the stream reaches the batch
    fit's held-out score as a stream from scratch does (its weight is
    counted in n_samples_seen_)."""
    batches, held_out = stream
    batch_fit = GaussianMixture(3, random_state=0).fit(np.concatenate(batches))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        online = GaussianMixture(3, random_state=0, max_iter=2).fit(batches[0])
    for batch in batches[1:]:
        online.partial_fit(batch)
    assert batch_fit.score(held_out) - online.score(held_out) < 1e-3
    assert online.n_batch_iter_ == 39 and online.n_samples_seen_ == 80000
    assert online._online_state.batch_offset == 1


@pytest.mark.parametrize("covariance_type", ["full", "spherical"])
def test_exact_mode_after_fit_is_one_iteration_from_the_fit(stream, covariance_type):
    """Exact mode is not changed by a fit's statistics: a pass and end_pass
    after fit are one EM iteration over the pass's batches, from the fit."""
    batches = stream[0][:4]
    fitted = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(stream[0][10])
    start = {"weights_init": fitted.weights_, "means_init": fitted.means_, "precisions_init": fitted.precisions_}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        one_step = GaussianMixture(3, covariance_type=covariance_type, max_iter=1, **start).fit(np.concatenate(batches))
    fitted.set_params(partial_fit_mode="exact")
    for batch in batches:
        fitted.partial_fit(batch)
    fitted.end_pass()
    for name in ("weights_", "means_", "covariances_"):
        np.testing.assert_allclose(getattr(fitted, name), getattr(one_step, name), rtol=1e-10, atol=1e-10)
    assert fitted.n_samples_seen_ == 8000 and fitted.n_batch_iter_ == 4


@pytest.mark.parametrize("cls", [GaussianMixture, BayesianGaussianMixture])
def test_warm_started_and_resumed_fits_continue_a_stream_as_the_fit(stream, tmp_path, cls):
    """A warm-started fit, and fits resumed from a checkpoint (unfinished, and
    finished: no pass left to make), keep the statistics of their last pass:
    the stream continues them as it continues the uninterrupted fit: bitwise
    for GaussianMixture; to rounding for BayesianGaussianMixture, whose
    resumed and warm fits take the data-dependent priors from a pass of their
    own (last bits apart from the fresh fit's, before any stream)."""
    X, new = stream[0][0], stream[0][1][:10]
    settings = {"n_components": 3, "random_state": 0, "tol": 1e-6, "n_init": 2}
    reference = cls(**settings).fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        cls(**settings, max_iter=2).fit(X, checkpoint=tmp_path / "c.npz")
    resumed = cls(**settings).fit(X, checkpoint=tmp_path / "c.npz")
    finished = cls(**settings).fit(X, checkpoint=tmp_path / "c.npz")
    # A warm start continues one run: the uninterrupted fit of one restart.
    single = cls(**dict(settings, n_init=1)).fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warm = cls(**dict(settings, n_init=1), max_iter=2, warm_start=True).fit(X)
    warm.set_params(max_iter=100).fit(X)
    assert finished.n_iter_ == reference.n_iter_ and warm.n_iter_ == single.n_iter_ - 2
    for model in (reference, resumed, finished, single, warm):
        model.partial_fit(new)
    for model, same in ((resumed, reference), (finished, reference), (warm, single)):
        for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
            rtol = 0 if cls is GaussianMixture else 1e-10
            np.testing.assert_allclose(getattr(model, name), getattr(same, name), rtol=rtol, atol=0, err_msg=name)
        assert model.n_samples_seen_ == same.n_samples_seen_ == 2010
