"""Partial labels (semi-supervised EM, R mclust's MclustSSC): ``fit(X, y)``
with ``partial_labels=True``, -1 for an unlabelled row, else its component.
The block math against a direct NumPy reference, the fit against analytic
answers and against unlabelled fitting, chunking, weights, missing
features, restarts, checkpoints, partial_fit and the errors."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score

import dask.array as da

from daskgmm import BayesianGaussianMixture, ConvergenceWarning, GaussianMixture
from daskgmm._blocks import block_statistics, estimate_log_resp, stack_models
from daskgmm._blocks_missing import marginal_block_statistics, marginal_log_resp
from daskgmm._covariance import make_model
from daskgmm._engine import InMemoryRows
from daskgmm._init import labelled_statistics, Spec

KINDS = ["full", "tied", "diag", "spherical"]
PARAMETERS = ("weights_", "means_", "covariances_", "precisions_cholesky_")


def _mixture(seed, n=900, fraction=0.05):
    """Three overlapping Gaussian components in 2-D, ``fraction`` of the rows labelled."""
    rng = np.random.default_rng(seed)
    means = np.array([[0.0, 0.0], [1.5, 0.0], [0.75, 1.2]])
    scales = np.array([[1.0, 0.5], [0.5, 1.0], [0.7, 0.7]])
    z = rng.integers(0, 3, n)
    X = means[z] + rng.normal(size=(n, 2)) * scales[z]
    y = np.full(n, -1)
    labelled = rng.choice(n, int(n * fraction), replace=False)
    y[labelled] = z[labelled]
    return X, y, z, means


@pytest.fixture(scope="module")
def data():
    return _mixture(0)


def _assert_same(a, b, rtol=1e-10, atol=1e-12):
    for name in PARAMETERS:
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=rtol, atol=atol, err_msg=name)


def _assert_bitwise(a, b):
    for name in PARAMETERS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.lower_bound_ == b.lower_bound_ and a.n_iter_ == b.n_iter_


def _model(kind, rng, k=3, d=2):
    weights = rng.dirichlet(np.ones(k))
    means = rng.normal(size=(k, d)) * 2
    shape = {"full": (k, d, d), "tied": (d, d), "diag": (k, d), "spherical": (k,)}[kind]
    if kind in ("full", "tied"):
        a = rng.normal(size=shape[:-2] + (d, d))
        cov = a @ np.swapaxes(a, -1, -2) + np.eye(d)
        prec_chol = np.linalg.cholesky(np.linalg.inv(cov))
    else:
        prec_chol = 1 / np.sqrt(rng.uniform(0.5, 2, size=shape))
    return make_model(weights, means, prec_chol, kind)


# --------------------------------------------------------------------------
# Block math
# --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_block_statistics_fix_labelled_rows(kind):
    """Against NumPy from the unlabelled E-step: labelled rows one-hot, their
    log-likelihood term ``log pi_y + log N(x | y)``; weights multiply both."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 2)) * 2
    labels = np.where(rng.random(300) < 0.3, rng.integers(0, 3, 300), -1)
    weights = rng.uniform(0, 2, 300)
    model = _model(kind, rng)
    log_norm, log_resp = estimate_log_resp(X, model)
    r = np.exp(log_resp)
    labelled = labels >= 0
    r[labelled] = np.eye(3)[labels[labelled]]
    ll = np.where(labelled, log_norm + np.take_along_axis(log_resp, np.maximum(labels, 0)[:, None], 1)[:, 0], log_norm)
    stats = block_statistics(X, model, labels=labels, sample_weight=weights)
    wr = r * weights[:, None]
    np.testing.assert_allclose(stats.nk, wr.sum(0), rtol=1e-12)
    np.testing.assert_allclose(stats.means, wr.T @ X / wr.sum(0)[:, None], rtol=1e-12)
    assert float(stats.log_likelihood) == pytest.approx(float(weights @ ll), rel=1e-12)
    assert float(stats.n_samples) == pytest.approx(weights.sum(), rel=1e-14)
    if kind == "full":
        centred = X[None] - stats.means[:, None]
        expected = np.einsum("kn,kni,knj->kij", wr.T, centred, centred)
        np.testing.assert_allclose(stats.scatter, expected, rtol=1e-10)


@pytest.mark.parametrize("kind", ["full", "diag", "spherical"])
def test_stacked_models_take_labels_per_group(kind):
    """Restarts evaluated stacked get each its labels: as separate calls."""
    rng = np.random.default_rng(2)
    X = rng.normal(size=(200, 2))
    labels = np.where(rng.random(200) < 0.5, rng.integers(0, 3, 200), -1)
    models = [_model(kind, rng), _model(kind, rng)]
    stacked, groups = stack_models(models)
    together = block_statistics(X, stacked, groups=groups, labels=labels)
    for g, model in enumerate(models):
        alone = block_statistics(X, model, labels=labels)
        part = slice(3 * g, 3 * g + 3)
        np.testing.assert_allclose(together.nk[part], alone.nk, rtol=1e-12)
        np.testing.assert_allclose(together.means[part], alone.means, rtol=1e-12)
        assert float(together.log_likelihood[g]) == pytest.approx(float(alone.log_likelihood), rel=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_no_label_is_bitwise_no_labels(kind):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(500, 3))
    model = _model(kind, rng, d=3)
    plain = block_statistics(X, model)
    unlabelled = block_statistics(X, model, labels=np.full(500, -1))
    for a, b in zip(plain[1:], unlabelled[1:]):
        np.testing.assert_array_equal(a, b)


def test_missing_features_fix_labelled_rows():
    """Incomplete labelled rows: one-hot, ``log pi_y + log N(x_o | y)``; a
    labelled row with every feature missing still counts nothing."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(200, 3))
    X[rng.random(X.shape) < 0.2] = np.nan
    X[5] = np.nan
    labels = np.where(rng.random(200) < 0.4, rng.integers(0, 3, 200), -1)
    labels[5] = 1
    model = _model("full", rng, d=3)
    log_norm, log_resp = marginal_log_resp(X, model)
    kept = ~np.isnan(log_norm)
    labelled = (labels >= 0) & kept
    r = np.where(kept[:, None], np.exp(log_resp), 0.0)
    r[labelled] = np.eye(3)[labels[labelled]]
    picked = np.take_along_axis(log_resp, np.maximum(labels, 0)[:, None], 1)[:, 0]
    ll = np.where(labelled, log_norm + picked, log_norm)
    stats = marginal_block_statistics(X, model, labels=labels)
    np.testing.assert_allclose(stats.nk, r.sum(0), rtol=1e-12)
    assert float(stats.log_likelihood) == pytest.approx(float(np.sum(ll[kept])), rel=1e-12)
    assert float(stats.n_samples) == 199


def test_labelled_initial_statistics_are_the_classes():
    """Every row labelled: the start is the weighted statistics of the classes."""
    rng = np.random.default_rng(5)
    X = rng.normal(size=(120, 2))
    labels = rng.integers(0, 3, 120)
    weights = rng.uniform(0.5, 2, 120)
    (stats,), every_row = labelled_statistics(InMemoryRows(X, 50), "kmeans", [Spec(3, "full", 0)], labels,
                                              sample_weight=weights)
    assert every_row
    for k in range(3):
        w = weights * (labels == k)
        assert stats.nk[k] == pytest.approx(w.sum(), rel=1e-12)
        np.testing.assert_allclose(stats.means[k], w @ X / w.sum(), rtol=1e-12)


# --------------------------------------------------------------------------
# Fits
# --------------------------------------------------------------------------


def test_partial_labels_beat_unlabelled_fitting():
    """5% labels on an overlapping mixture: over five data sets, the labelled
    fits agree better with the true classes (adjusted Rand index) and find
    the true means more closely (with the labels' component order; the
    unlabelled fit's components matched to the truth at their best)."""
    scores, errors = [], []
    for seed in range(5):
        X, y, z, means = _mixture(seed)
        plain = GaussianMixture(3, random_state=0).fit(X)
        labelled = GaussianMixture(3, random_state=0, partial_labels=True).fit(X, y)
        scores.append((adjusted_rand_score(z, plain.predict(X)), adjusted_rand_score(z, labelled.predict(X))))
        cost = np.sqrt(((plain.means_[:, None] - means[None]) ** 2).sum(-1))
        rows, columns = linear_sum_assignment(cost)
        errors.append((cost[rows, columns].max(), np.sqrt(((labelled.means_ - means) ** 2).sum(-1)).max()))
    scores, errors = np.array(scores), np.array(errors)
    assert scores[:, 1].mean() > scores[:, 0].mean() + 0.01, scores
    assert errors[:, 1].mean() < 0.85 * errors[:, 0].mean(), errors


@pytest.mark.parametrize("kind", KINDS)
def test_every_row_labelled_fits_the_classes(kind):
    """Fully labelled: the M-step of the classes, reached in one step."""
    X, _, z, _ = _mixture(1, n=300)
    gmm = GaussianMixture(3, covariance_type=kind, partial_labels=True, tol=1e-12).fit(X, z)
    assert gmm.converged_ and gmm.n_iter_ == 2
    np.testing.assert_allclose(gmm.weights_, np.bincount(z) / len(z), rtol=1e-12)
    np.testing.assert_allclose(gmm.means_, [X[z == k].mean(0) for k in range(3)], rtol=1e-10)
    if kind == "full":
        expected = [np.cov(X[z == k].T, bias=True) + 1e-6 * np.eye(2) for k in range(3)]
        np.testing.assert_allclose(gmm.covariances_, expected, rtol=1e-10)


def test_bayesian_every_row_labelled_is_the_class_posterior():
    X, _, z, _ = _mixture(1, n=300)
    bgm = BayesianGaussianMixture(n_components=3, partial_labels=True, tol=1e-10, max_iter=50).fit(X, z)
    nk = np.bincount(z).astype(float)
    beta = bgm.mean_precision_prior_ + nk
    class_means = np.array([X[z == k].mean(0) for k in range(3)])
    expected = (bgm.mean_precision_prior_ * bgm.mean_prior_ + nk[:, None] * class_means) / beta[:, None]
    np.testing.assert_allclose(bgm.mean_precision_, beta, rtol=1e-6)
    np.testing.assert_allclose(bgm.means_, expected, rtol=1e-6)


def test_bayesian_partial_labels_keep_their_components(data):
    X, y, z, _ = data
    bgm = BayesianGaussianMixture(n_components=3, partial_labels=True, random_state=0).fit(X, y)
    labelled = y >= 0
    # the labelled rows pull each component to their class: most of them
    # are predicted into it
    assert np.mean(bgm.predict(X)[labelled] == y[labelled]) > 0.6
    assert np.isfinite(bgm.lower_bound_)


def test_no_label_and_labels_off_give_the_unlabelled_fit_bitwise(data):
    X, y, _, _ = data
    plain = GaussianMixture(3, random_state=0).fit(X)
    _assert_bitwise(GaussianMixture(3, random_state=0, partial_labels=True).fit(X, np.full(len(X), -1)), plain)
    _assert_bitwise(GaussianMixture(3, random_state=0).fit(X, y), plain)
    _assert_bitwise(GaussianMixture(3, random_state=0).fit(X, np.arange(len(X)) % 7), plain)


def test_lower_bound_counts_labelled_rows_with_their_component(data):
    """``lower_bound_`` after a fit of tol=0 and max_iter=m is the mean
    labelled log-likelihood of the parameters of a fit of max_iter=m-1,
    as public outputs give it."""
    X, y, _, _ = data
    kw = dict(random_state=0, partial_labels=True, tol=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        before = GaussianMixture(3, max_iter=3, **kw).fit(X, y)
        after = GaussianMixture(3, max_iter=4, **kw).fit(X, y)
    ll = before.score_samples(X)
    labelled = y >= 0
    ll[labelled] += np.log(before.predict_proba(X)[labelled, y[labelled]])
    assert after.lower_bound_ == pytest.approx(ll.mean(), rel=1e-12)


def test_predict_takes_no_labels(data):
    """A labelled row far inside another component keeps its label in the fit
    but is predicted by the model: ``fit_predict`` is ``fit().predict``."""
    X, y, _, _ = data
    X = np.vstack([X, [[10.0, 10.0], [-10.0, -10.0]]])
    y = np.concatenate([y, [0, 0]])
    gmm = GaussianMixture(3, random_state=0, partial_labels=True)
    labels = gmm.fit_predict(X, y)
    np.testing.assert_array_equal(labels, gmm.predict(X))
    np.testing.assert_array_equal(labels, gmm.predict_proba(X).argmax(1))


@pytest.mark.parametrize("kind", KINDS)
def test_labels_are_chunking_invariant(data, kind):
    X, y, _, _ = data
    kw = dict(covariance_type=kind, random_state=0, partial_labels=True)
    in_process = GaussianMixture(3, **kw).fit(X, y)
    chunked = GaussianMixture(3, **kw).fit(da.from_array(X, chunks=(170, 2)), da.from_array(y, chunks=(333,)))
    numpy_labels = GaussianMixture(3, split_every=2, **kw).fit(da.from_array(X, chunks=(100, 2)), y)
    _assert_same(chunked, in_process)
    _assert_same(numpy_labels, in_process)


@pytest.mark.parametrize("kind", KINDS)
def test_integer_weights_fit_as_repeated_labelled_rows(data, kind):
    X, y, _, _ = data
    weights = np.random.default_rng(6).integers(0, 4, len(X))
    start = GaussianMixture(3, covariance_type=kind, random_state=0).fit(X)
    kw = dict(covariance_type=kind, partial_labels=True, tol=0.0, max_iter=20, weights_init=start.weights_,
              means_init=start.means_, precisions_init=start.precisions_)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        weighted = GaussianMixture(3, **kw).fit(X, y, sample_weight=weights)
        repeated = GaussianMixture(3, **kw).fit(np.repeat(X, weights, 0), np.repeat(y, weights))
    _assert_same(weighted, repeated, rtol=1e-9)
    assert weighted.lower_bound_ == pytest.approx(repeated.lower_bound_, rel=1e-12)


def test_missing_features_with_labels(data):
    """Labelled rows with missing features count; one with every feature
    missing is left out (as unlabelled): the fit without that row."""
    X, y, _, _ = data
    X = X.copy()
    rng = np.random.default_rng(7)
    X[rng.random(len(X)) < 0.1, rng.integers(0, 2)] = np.nan
    X[np.flatnonzero(y >= 0)[0]] = np.nan
    kw = dict(random_state=0, partial_labels=True, missing="marginalize")
    start = GaussianMixture(3, random_state=0).fit(np.nan_to_num(X))
    init = dict(weights_init=start.weights_, means_init=start.means_, precisions_init=start.precisions_)
    fitted = GaussianMixture(3, **kw, **init).fit(X, y)
    keep = ~np.all(np.isnan(X), axis=1)
    without = GaussianMixture(3, **kw, **init).fit(X[keep], y[keep])
    assert fitted.n_samples_skipped_ == 1
    _assert_same(fitted, without, rtol=1e-9)
    plain = GaussianMixture(3, random_state=0, missing="marginalize", **init).fit(X)
    assert not np.allclose(plain.means_, fitted.means_)


def test_skipped_nonfinite_labelled_rows_take_no_part(data):
    X, y, _, _ = data
    X = X.copy()
    bad = np.flatnonzero(y >= 0)[:2]
    X[bad, 0] = np.nan
    start = GaussianMixture(3, random_state=0).fit(np.nan_to_num(X))
    kw = dict(partial_labels=True, weights_init=start.weights_, means_init=start.means_,
              precisions_init=start.precisions_)
    skipped = GaussianMixture(3, **kw).fit(X, y, skip_nonfinite=True)
    keep = np.isfinite(X).all(1)
    _assert_same(skipped, GaussianMixture(3, **kw).fit(X[keep], y[keep]), rtol=1e-9)
    assert skipped.n_samples_skipped_ == 2


def test_restarts_with_labels_are_never_worse(data):
    X, y, _, _ = data
    one = GaussianMixture(3, random_state=0, partial_labels=True, init_params="random").fit(X, y)
    three = GaussianMixture(3, random_state=0, partial_labels=True, init_params="random", n_init=3).fit(X, y)
    assert three.lower_bound_ >= one.lower_bound_ - 1e-12


@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random", "random_from_data"])
def test_initialisation_matches_components_to_labels(data, init_params):
    """Whatever order the initialisation finds its components in, component
    k starts where the rows labelled k are."""
    X, y, z, means = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = GaussianMixture(3, random_state=1, partial_labels=True, init_params=init_params, max_iter=0).fit(X, y)
    class_means = np.array([X[y == k].mean(0) for k in range(3)])
    cost = ((start.means_[:, None] - class_means[None]) ** 2).sum(-1)
    rows, columns = linear_sum_assignment(cost)
    np.testing.assert_array_equal(columns, [0, 1, 2])


def test_checkpoint_resumes_a_labelled_fit_and_refuses_other_labels(data, tmp_path):
    X, y, _, _ = data
    kw = dict(random_state=0, partial_labels=True, tol=1e-8, max_iter=100)
    path = tmp_path / "fit.ckpt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        GaussianMixture(3, **{**kw, "max_iter": 3}).fit(X, y, checkpoint=path)
    resumed = GaussianMixture(3, **kw).fit(X, y, checkpoint=path)
    uninterrupted = GaussianMixture(3, **kw).fit(X, y)
    _assert_bitwise(resumed, uninterrupted)
    moved = y.copy()
    first = np.flatnonzero(y >= 0)[0]
    moved[first], moved[first + 1] = -1, y[first]
    for other in (moved, np.where(y == 0, 1, y), None):
        with pytest.raises(ValueError, match=r"Cannot resume from checkpoint .*labels is"):
            GaussianMixture(3, **kw).fit(X, other, checkpoint=path)


@pytest.mark.parametrize("mode", ["stepwise", "exact"])
def test_partial_fit_with_labels(data, mode):
    """The first batch starts from its labels; an exact pass over labelled
    batches is one iteration of the labelled fit (its warm start)."""
    X, y, _, _ = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fitted = GaussianMixture(3, random_state=0, partial_labels=True, max_iter=2, tol=0.0).fit(X, y)
    if mode == "exact":
        online = copy.deepcopy(fitted).set_params(partial_fit_mode="exact")
        for start in range(0, len(X), 250):
            online.partial_fit(X[start : start + 250], y[start : start + 250])
        online.end_pass()
        warm = copy.deepcopy(fitted).set_params(warm_start=True, max_iter=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            warm.fit(X, y)
        _assert_same(online, warm)
        return
    first = GaussianMixture(3, random_state=0, partial_labels=True).partial_fit(X[:300], y[:300])
    unlabelled = GaussianMixture(3, random_state=0).partial_fit(X[:300])
    assert not np.allclose(first.means_, unlabelled.means_)
    for start in range(300, len(X), 100):
        first.partial_fit(X[start : start + 100], y[start : start + 100])
    assert first.n_batch_iter_ == 7
    # component k stays the one the rows labelled k belong to
    labelled = y >= 0
    assert np.mean(first.predict(X)[labelled] == y[labelled]) > 0.6


BAD_LABELS = [
    (lambda y: y[:-1], r"y has shape \(899,\), expected \(900,\): one label per sample"),
    (lambda y: y.reshape(-1, 1), r"y has shape \(900, 1\), expected \(900,\)"),
    (lambda y: y + 0.5, r"y contains values that are not integers"),
    (lambda y: np.where(y < 0, np.nan, y), r"y contains NaN or infinity: label an unlabelled sample -1"),
    (lambda y: np.where(y == 2, 3, y), r"y has values outside \[-1, 3\) \(the smallest is -1, the largest 3\)"),
    (lambda y: np.where(y < 0, -2, y), r"y has values outside \[-1, 3\) \(the smallest is -2"),
    (lambda y: y >= 0, r"y must hold integer labels .* got dtype bool"),
]
# Strings as NumPy only: nobody passes a Dask array of them.
STRING_LABELS = (lambda y: y.astype(str), r"y must hold integer labels .* got dtype <U")


@pytest.mark.parametrize(
    "bad, message, as_dask",
    [(*case, as_dask) for case in BAD_LABELS for as_dask in (False, True)] + [(*STRING_LABELS, False)],
)
def test_bad_labels_are_refused_and_change_nothing(data, bad, message, as_dask):
    X, y, _, _ = data
    gmm = GaussianMixture(3, random_state=0, partial_labels=True).fit(X, y)
    before = dict(vars(gmm))
    wrong = bad(y)
    if as_dask:
        wrong = da.from_array(wrong, chunks=(200,) + wrong.shape[1:])
        X = da.from_array(X, chunks=(300, 2))
    for call in (gmm.fit, gmm.fit_predict, gmm.partial_fit):
        with pytest.raises(ValueError, match=message):
            call(X, wrong)
        assert vars(gmm).keys() == before.keys()
        assert all(vars(gmm)[name] is value for name, value in before.items())


def test_labels_on_a_distributed_cluster(data, local_cluster_client):
    """Labels travel with the chunks to the workers (several chunks per map
    task): the fit of this process."""
    X, y, _, _ = data
    kw = dict(random_state=0, partial_labels=True)
    here = GaussianMixture(3, **kw).fit(X, y)
    there = GaussianMixture(3, **kw).fit(da.from_array(X, chunks=(60, 2)), da.from_array(y, chunks=(100,)))
    _assert_same(there, here)


@pytest.mark.parametrize("estimator", [GaussianMixture, BayesianGaussianMixture])
def test_labels_with_missing_features_and_weights_are_chunking_invariant(data, estimator):
    """The whole labelled fit (initialisation included) with missing features
    and sample weights: NumPy in this process as Dask chunks."""
    X, y, _, _ = data
    rng = np.random.default_rng(8)
    X = np.where(rng.random(X.shape) < 0.1, np.nan, X)
    weights = rng.integers(0, 3, len(X)).astype(float)
    kw = dict(n_components=3, random_state=0, partial_labels=True, missing="marginalize")
    here = estimator(**kw).fit(X, y, sample_weight=weights)
    chunked = estimator(**kw).fit(
        da.from_array(X, chunks=(200, 2)), da.from_array(y, chunks=(300,)),
        sample_weight=da.from_array(weights, chunks=450),
    )
    _assert_same(chunked, here, rtol=1e-9)
    assert here.n_samples_skipped_ == int(np.all(np.isnan(X), axis=1).sum())
