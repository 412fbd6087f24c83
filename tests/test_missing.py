"""missing="marginalize": NaN entries are missing features, marginalised in
the E-step and replaced by their conditional expectations (and covariances)
in the M-step (issue #14).

The oracle is a direct NumPy implementation of the formulas with the
covariance matrices (marginal densities by scipy.stats, conditional means
``mu_m + S_mo S_oo^-1 (x_o - mu_o)`` and covariances ``S_mm - S_mo S_oo^-1
S_om``), one row at a time; the library's block functions use the precision
matrices, grouped missing patterns and batched factorizations instead.
"""

import warnings

import dask.array as da
import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from daskgmm import BayesianGaussianMixture, GaussianMixture
from daskgmm._blocks import stack_models
from daskgmm._blocks_missing import marginal_block_statistics, marginal_log_resp, merge_summaries, missing_summary
from daskgmm._covariance import make_model, precisions_cholesky_from_covariances

KINDS = ["full", "tied", "diag", "spherical"]


def _full_covariances(covariances, kind, k, d):
    if kind == "full":
        return covariances
    if kind == "tied":
        return np.broadcast_to(covariances, (k, d, d))
    if kind == "diag":
        return np.array([np.diag(c) for c in covariances])
    return np.array([np.eye(d) * c for c in covariances])


def naive_statistics(X, weights, means, covariances, kind, sample_weight=None):
    """Row by row with covariances: total log-likelihood, counted rows, nk,
    the completed rows' weighted means and centred scatter (with the
    conditional covariances), and per-row log p(x_o) (NaN for empty rows)."""
    k, d = means.shape
    full = _full_covariances(covariances, kind, k, d)
    w_rows = np.ones(len(X)) if sample_weight is None else sample_weight
    ll, n_used = 0.0, 0.0
    nk, s1, s2 = np.zeros(k), np.zeros((k, d)), np.zeros((k, d, d))
    per_row = np.full(len(X), np.nan)
    resp = np.full((len(X), k), np.nan)
    for i, x in enumerate(X):
        o = ~np.isnan(x)
        m = ~o
        if not o.any():
            continue
        log_prob = np.array([
            np.log(weights[j]) + multivariate_normal(means[j][o], full[j][np.ix_(o, o)]).logpdf(x[o]) for j in range(k)
        ])
        norm = logsumexp(log_prob)
        r = np.exp(log_prob - norm)
        per_row[i], resp[i] = norm, r
        ll += w_rows[i] * norm
        n_used += w_rows[i]
        for j in range(k):
            cov = full[j]
            completed, conditional = x.copy(), np.zeros((d, d))
            if m.any():
                gain = cov[np.ix_(m, o)] @ np.linalg.inv(cov[np.ix_(o, o)])
                completed[m] = means[j][m] + gain @ (x[o] - means[j][o])
                conditional[np.ix_(m, m)] = cov[np.ix_(m, m)] - gain @ cov[np.ix_(o, m)]
            weight = w_rows[i] * r[j]
            nk[j] += weight
            s1[j] += weight * completed
            s2[j] += weight * (np.outer(completed, completed) + conditional)
    mean = s1 / nk[:, None]
    scatter = s2 - nk[:, None, None] * mean[:, :, None] * mean[:, None, :]
    if kind == "tied":
        scatter = scatter.sum(axis=0)
    elif kind in ("diag", "spherical"):
        scatter = np.diagonal(scatter, axis1=1, axis2=2)
    return ll, n_used, nk, mean, scatter, per_row, resp


def random_model(rng, kind, k, d):
    weights = rng.dirichlet(np.ones(k) * 3)
    means = rng.normal(size=(k, d)) * 3
    a = rng.normal(size=(k, d, d))
    full = a @ np.swapaxes(a, 1, 2) + 0.5 * np.eye(d)
    covariances = {"full": full, "tied": full[0], "diag": rng.random((k, d)) + 0.5, "spherical": rng.random(k) + 0.5}[kind]
    return weights, means, covariances, make_model(weights, means, precisions_cholesky_from_covariances(covariances, kind), kind)


def holey_data(rng, n=400, d=5, fraction=0.25):
    X = rng.normal(size=(n, d)) * 2 + rng.integers(0, 3, size=(n, 1)) * 3
    X[rng.random((n, d)) < fraction] = np.nan
    X[:48, [1, d - 1]] = np.nan  # a frequent pattern
    X[:32, [0, d - 1]] = np.nan  # and another
    X[7] = np.nan  # a row with nothing observed
    return X


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("weighted", [False, True])
def test_block_statistics_match_direct_formulas(kind, weighted):
    rng = np.random.default_rng(3)
    X = holey_data(rng)
    sample_weight = rng.random(len(X)) * 2 if weighted else None
    weights, means, covariances, model = random_model(rng, kind, 3, X.shape[1])
    ll, n_used, nk, mean, scatter, _, _ = naive_statistics(X, weights, means, covariances, kind, sample_weight)
    stats = marginal_block_statistics(X, model, sample_weight=sample_weight)
    np.testing.assert_allclose(stats.log_likelihood, ll, rtol=1e-10)
    np.testing.assert_allclose(stats.n_samples, n_used, rtol=1e-12)
    np.testing.assert_allclose(stats.nk, nk, rtol=1e-10)
    np.testing.assert_allclose(stats.means, mean, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(stats.scatter, scatter, rtol=1e-10, atol=1e-10 * np.abs(scatter).max())


@pytest.mark.parametrize("kind", KINDS)
def test_log_resp_match_direct_formulas(kind):
    rng = np.random.default_rng(4)
    X = holey_data(rng)
    weights, means, covariances, model = random_model(rng, kind, 3, X.shape[1])
    _, _, _, _, _, per_row, resp = naive_statistics(X, weights, means, covariances, kind)
    log_norm, log_resp = marginal_log_resp(X, model)
    np.testing.assert_allclose(log_norm, per_row, rtol=1e-10, equal_nan=True)
    np.testing.assert_allclose(np.exp(log_resp), resp, rtol=1e-10, atol=1e-14, equal_nan=True)
    assert np.isnan(log_norm[7]) and np.isnan(log_resp[7]).all()


@pytest.mark.parametrize("kind", ["full", "diag"])
def test_stacked_models_match_separate_ones(kind):
    rng = np.random.default_rng(5)
    X = holey_data(rng)
    models = [random_model(rng, kind, k, X.shape[1])[3] for k in (2, 3)]
    stacked, groups = stack_models(models)
    together = marginal_block_statistics(X, stacked, groups=groups)
    separate = [marginal_block_statistics(X, model) for model in models]
    np.testing.assert_allclose(together.log_likelihood, [s.log_likelihood for s in separate], rtol=1e-12)
    np.testing.assert_allclose(together.scatter, np.concatenate([s.scatter for s in separate]), rtol=1e-10)


def test_shared_pattern_slices_and_mixed_slices_agree():
    """Rows completed in slices of one pattern (shared factors, products)
    and in slices mixing patterns (per-row factors) give the same result."""
    import daskgmm._blocks_missing as bm

    rng = np.random.default_rng(6)
    X = holey_data(rng, n=300)
    model = random_model(rng, "full", 3, X.shape[1])[3]
    mixed = marginal_block_statistics(X, model)  # one slice per number of missing features
    saved = bm.SLICE_ELEMENTS
    try:
        bm.SLICE_ELEMENTS = 1  # slices of 16 rows: the frequent patterns' alone
        sliced = marginal_block_statistics(X, model)
    finally:
        bm.SLICE_ELEMENTS = saved
    np.testing.assert_allclose(sliced.scatter, mixed.scatter, rtol=1e-11)
    np.testing.assert_allclose(sliced.means, mixed.means, rtol=1e-12)
    np.testing.assert_allclose(sliced.log_likelihood, mixed.log_likelihood, rtol=1e-13)


# --------------------------------------------------------------------------
# Rows with missing patterns of their own (issue #24): swept in batches
# --------------------------------------------------------------------------


def rare_pattern_data(rng, n=360, d=12, fraction=0.3):
    """Entries missing at random in 12 features (nearly every incomplete row
    a pattern of its own), a pattern shared by 70 rows, complete rows and a
    row with nothing observed."""
    X = rng.normal(size=(n, d)) * 2 + rng.integers(0, 3, size=(n, 1)) * 3
    X[rng.random((n, d)) < fraction] = np.nan
    X[:70] = rng.normal(size=(70, d)) * 2
    X[:70, [2, 5, 9]] = np.nan
    X[70:90] = rng.normal(size=(20, d)) * 2
    X[100] = np.nan
    return X


def random_model_of(rng, kind, k, d):
    """:func:`random_model`, 'VEV' (an mclust model, a 'full' block) as well."""
    if kind != "VEV":
        return random_model(rng, kind, k, d)
    weights, means, covariances, _ = random_model(rng, "full", k, d)
    return weights, means, covariances, make_model(
        weights, means, precisions_cholesky_from_covariances(covariances, "full"), "VEV"
    )


@pytest.mark.parametrize("kind", KINDS + ["VEV"])
def test_rare_patterns_match_direct_formulas(kind):
    rng = np.random.default_rng(11)
    X = rare_pattern_data(rng)
    sample_weight = rng.random(len(X)) * 2
    weights, means, covariances, model = random_model_of(rng, kind, 3, X.shape[1])
    full_kind = "full" if kind == "VEV" else kind
    ll, n_used, nk, mean, scatter, per_row, resp = naive_statistics(
        X, weights, means, covariances, full_kind, sample_weight
    )
    stats = marginal_block_statistics(X, model, sample_weight=sample_weight)
    np.testing.assert_allclose(stats.log_likelihood, ll, rtol=1e-11)
    np.testing.assert_allclose(stats.n_samples, n_used, rtol=1e-12)
    np.testing.assert_allclose(stats.nk, nk, rtol=1e-10)
    np.testing.assert_allclose(stats.means, mean, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(stats.scatter, scatter, rtol=1e-10, atol=1e-10 * np.abs(scatter).max())
    log_norm, log_resp = marginal_log_resp(X, model)
    np.testing.assert_allclose(log_norm, per_row, rtol=1e-11, equal_nan=True)
    np.testing.assert_allclose(np.exp(log_resp), resp, rtol=1e-10, atol=1e-14, equal_nan=True)


def _every_pattern_alone(monkeypatch):
    """Every missing pattern factorized on its own (LAPACK) and completed in
    slices of its own rows: the per-pattern path, the batches' reference."""
    import daskgmm._blocks_missing as bm

    monkeypatch.setattr(bm, "SHARED_PATTERN_ROWS", 1)


@pytest.mark.parametrize("kind", KINDS + ["VEV"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("variant", ["plain", "weights", "labels", "noise", "stacked"])
def test_swept_batches_equal_the_per_pattern_path(monkeypatch, kind, dtype, variant):
    """The rows with rare patterns, swept in batches, give what each pattern
    factorized alone gives: E-step, statistics and per-row results, with
    sample weights, partial labels, mclust's noise over the observed sides
    of the box and stacked restarts."""
    rng = np.random.default_rng(12)
    X = rare_pattern_data(rng).astype(dtype)
    d = X.shape[1]
    kwargs = {}
    if variant == "stacked" and kind != "tied":
        model, groups = stack_models([random_model_of(rng, kind, k, d)[3] for k in (2, 3)])
        kwargs["groups"] = groups
    else:
        model = random_model_of(rng, kind, 3, d)[3]
    if variant == "weights":
        kwargs["sample_weight"] = rng.random(len(X)) * 2
    if variant == "labels":
        kwargs["labels"] = np.where(rng.random(len(X)) < 0.3, rng.integers(0, 3, len(X)), -1)
    if variant == "noise":
        model = model._replace(noise_log_density=np.log(0.1) - 24.0, noise_log_ranges=np.full(d, 2.0))
    batched = marginal_block_statistics(X, model, **kwargs)
    batched_rows = marginal_log_resp(X, model) if variant != "stacked" else None
    _every_pattern_alone(monkeypatch)
    alone = marginal_block_statistics(X, model, **kwargs)
    rtol = 1e-12 if dtype == np.float64 else 2e-5
    for field in ("n_samples", "log_likelihood", "nk", "means"):
        np.testing.assert_allclose(getattr(batched, field), getattr(alone, field), rtol=rtol, atol=rtol, err_msg=field)
    scale = np.abs(alone.scatter).max()
    np.testing.assert_allclose(batched.scatter, alone.scatter, rtol=rtol, atol=rtol * scale)
    if batched_rows is not None:
        alone_rows = marginal_log_resp(X, model)
        np.testing.assert_allclose(batched_rows[0], alone_rows[0], rtol=rtol, equal_nan=True)
        np.testing.assert_allclose(batched_rows[1], alone_rows[1], rtol=rtol, atol=rtol * 10, equal_nan=True)
        assert batched_rows[1].shape[1] == 3 + (variant == "noise")


@pytest.mark.parametrize("kind", ["full", "tied"])
def test_rare_patterns_are_swept_without_a_lapack_call_per_matrix(monkeypatch, kind):
    """Rows whose patterns few rows share are factorized by the vectorised
    sweep, not by a LAPACK call per row and component (the cost that made 30%
    missing at random 36x the complete pass)."""
    rng = np.random.default_rng(13)
    X = rng.normal(size=(300, 10))
    X[rng.random(X.shape) < 0.3] = np.nan
    X[np.isnan(X).sum(axis=1) == 0, 0] = np.nan  # no complete row
    X[np.isnan(X).all(axis=1), 1] = 0.5  # no empty row
    weights, means, covariances, model = random_model(rng, kind, 3, 10)
    expected = naive_statistics(X, weights, means, covariances, kind)

    def refused(*args, **kwargs):
        raise AssertionError("a LAPACK factorization per pattern")

    monkeypatch.setattr(np.linalg, "cholesky", refused)
    monkeypatch.setattr(np.linalg, "inv", refused)
    stats = marginal_block_statistics(X, model)
    np.testing.assert_allclose(stats.log_likelihood, expected[0], rtol=1e-11)
    np.testing.assert_allclose(stats.scatter, expected[4], rtol=1e-10, atol=1e-10 * np.abs(expected[4]).max())


def test_sweep_equals_lapack_on_ill_conditioned_precisions():
    """The sweep's log-determinants and inverses of ill-conditioned ``L_mm``
    (condition numbers up to 1e8) agree with LAPACK's Cholesky and inverse to
    the rounding that the conditioning allows, for 1 to 11 missing features."""
    import daskgmm._blocks_missing as bm

    rng = np.random.default_rng(14)
    k, d = 3, 12
    q = np.linalg.qr(rng.normal(size=(k, d, d)))[0]
    precisions = (q * np.logspace(0, 8, d)[None, None, :]) @ np.swapaxes(q, 1, 2)
    precisions = 0.5 * (precisions + np.swapaxes(precisions, 1, 2))
    for c in range(1, d):
        patterns = np.zeros((40, d), dtype=bool)
        for row in patterns:
            row[rng.choice(d, size=c, replace=False)] = True
        idx_ref, log_det_ref, cond_ref = bm._factorized_patterns(precisions, patterns)
        idx, log_det, cond = bm._swept_patterns(precisions, patterns)
        np.testing.assert_array_equal(idx, idx_ref)
        np.testing.assert_allclose(log_det, log_det_ref, rtol=0, atol=1e8 * np.finfo(float).eps)
        cond = np.transpose(cond, (2, 3, 0, 1))
        scale = np.abs(cond_ref).max(axis=(2, 3), keepdims=True)
        np.testing.assert_allclose(cond / scale, cond_ref / scale, rtol=0, atol=1e8 * np.finfo(float).eps)
        assert np.array_equal(cond, np.swapaxes(cond, 2, 3))


# --------------------------------------------------------------------------
# The estimators
# --------------------------------------------------------------------------


def known_mixture(rng, n=9000, d=4):
    means = np.array([[0.0, 0, 0, 0], [6, 6, 0, 0], [0, 6, 6, 6]])[:, :d]
    a = rng.normal(size=(3, d, d)) * 0.5
    covariances = a @ np.swapaxes(a, 1, 2) + 0.6 * np.eye(d)
    weights = np.array([0.3, 0.3, 0.4])
    labels = rng.choice(3, size=n, p=weights)
    X = np.empty((n, d))
    for j in range(3):
        rows = labels == j
        X[rows] = rng.multivariate_normal(means[j], covariances[j], rows.sum())
    return X, weights, means, covariances


def holey_mixture(rng, n):
    """Rows of :func:`known_mixture` with 20% of the entries missing at random."""
    X = known_mixture(rng, n=n)[0]
    X[rng.random(X.shape) < 0.2] = np.nan
    return X


def _matched(model, means):
    order = [int(np.argmin(np.linalg.norm(model.means_ - mu, axis=1))) for mu in means]
    assert sorted(order) == list(range(len(means)))
    return order


def test_twenty_percent_missing_recovers_the_mixture_and_beats_dropping():
    rng = np.random.default_rng(7)
    X, weights, means, covariances = known_mixture(rng)
    holey = X.copy()
    holey[rng.random(X.shape) < 0.2] = np.nan
    fitted = GaussianMixture(3, missing="marginalize", random_state=0, tol=1e-6).fit(holey)
    order = _matched(fitted, means)
    n_k = weights * len(X)
    # Within the sampling error: a mean's standard error is sigma / sqrt(n_k
    # * 0.8) (the observed values of that feature); 5 of them.
    se = np.sqrt(np.diagonal(covariances, axis1=1, axis2=2) / (0.8 * n_k[:, None]))
    assert np.all(np.abs(fitted.means_[order] - means) < 5 * se)
    np.testing.assert_allclose(fitted.weights_[order], weights, atol=5 * np.sqrt(0.25 / len(X)))
    # A covariance entry's standard error is ~ sqrt((s_ii s_jj + s_ij^2) / n_k).
    cov_se = np.sqrt(
        (np.einsum("kii,kjj->kij", covariances, covariances) + covariances**2) / (0.8**2 * n_k[:, None, None])
    )
    assert np.all(np.abs(fitted.covariances_[order] - covariances) < 5 * cov_se)
    # Dropping the incomplete samples (59% of them) fits on what is left.
    complete = ~np.isnan(holey).any(axis=1)
    dropped = GaussianMixture(3, random_state=0, tol=1e-6).fit(holey[complete])
    order_dropped = _matched(dropped, means)

    def error(model, order):
        return np.sum((model.means_[order] - means) ** 2) + np.sum((model.covariances_[order] - covariances) ** 2)

    assert error(fitted, order) < 0.5 * error(dropped, order_dropped)
    # ... and explains new complete data better.
    test = known_mixture(np.random.default_rng(70))[0]
    assert fitted.score(test) > dropped.score(test)


@pytest.mark.parametrize("kind", KINDS)
def test_without_missing_values_equals_the_plain_fit(kind):
    rng = np.random.default_rng(8)
    X = known_mixture(rng, n=2000)[0]
    plain = GaussianMixture(3, covariance_type=kind, random_state=0).fit(X)
    marginal = GaussianMixture(3, covariance_type=kind, random_state=0, missing="marginalize").fit(X)
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        np.testing.assert_array_equal(getattr(marginal, name), getattr(plain, name))
    assert marginal.lower_bound_ == plain.lower_bound_
    assert marginal.n_passes_ == plain.n_passes_ + 1  # the counting pass
    assert marginal.n_samples_skipped_ == 0 and marginal.n_samples_incomplete_ == 0
    np.testing.assert_array_equal(marginal.score_samples(X), plain.score_samples(X))


@pytest.mark.parametrize("kind", KINDS)
def test_chunking_invariant(kind):
    rng = np.random.default_rng(9)
    X = holey_mixture(rng, n=3000)
    fits = []
    for chunks in (3000, 1000, 177):
        model = GaussianMixture(
            3, covariance_type=kind, random_state=0, missing="marginalize", max_iter=20, tol=0
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # not converged within max_iter: expected
            fits.append(model.fit(da.from_array(X, chunks=(chunks, 4))))
    for other in fits[1:]:
        np.testing.assert_allclose(other.means_, fits[0].means_, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(other.covariances_, fits[0].covariances_, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(other.lower_bounds_, fits[0].lower_bounds_, rtol=1e-10)
    numpy_fit = GaussianMixture(3, covariance_type=kind, random_state=0, missing="marginalize", max_iter=20, tol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        numpy_fit.fit(X)
    np.testing.assert_allclose(numpy_fit.means_, fits[0].means_, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kind", KINDS)
def test_one_em_step_matches_the_direct_m_step(kind):
    """From given parameters, one iteration is the closed-form M-step on the
    direct formulas' expected statistics."""
    rng = np.random.default_rng(10)
    X = holey_data(rng, n=300, d=3)
    weights, means, covariances, _ = random_model(rng, kind, 2, 3)
    precisions = precisions_cholesky_from_covariances(covariances, kind)
    if kind == "full":
        precisions = precisions @ np.swapaxes(precisions, 1, 2)
    elif kind == "tied":
        precisions = precisions @ precisions.T
    else:
        precisions = precisions**2
    model = GaussianMixture(
        2, covariance_type=kind, weights_init=weights, means_init=means, precisions_init=precisions,
        missing="marginalize", max_iter=1, reg_covar=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X)
    ll, n_used, nk, mean, scatter, _, _ = naive_statistics(X, weights, means, covariances, kind)
    np.testing.assert_allclose(model.weights_, nk / nk.sum(), rtol=1e-10)
    np.testing.assert_allclose(model.means_, mean, rtol=1e-10)
    if kind == "full":
        expected = scatter / nk[:, None, None]
    elif kind == "tied":
        expected = scatter / nk.sum()
    elif kind == "diag":
        expected = scatter / nk[:, None]
    else:
        expected = scatter.mean(axis=1) / nk
    np.testing.assert_allclose(model.covariances_, expected, rtol=1e-10)
    np.testing.assert_allclose(model.lower_bound_, ll / n_used, rtol=1e-12)
    assert model.n_samples_skipped_ == int(np.isnan(X).all(axis=1).sum()) > 0


def test_outputs_marginalise_and_empty_rows_are_nan():
    rng = np.random.default_rng(11)
    X = holey_mixture(rng, n=2000)
    X[[5, 1500]] = np.nan
    model = GaussianMixture(3, missing="marginalize", random_state=0).fit(X)
    empty = np.isnan(X).all(axis=1)
    assert model.n_samples_skipped_ == int(empty.sum()) >= 2
    assert model.n_samples_incomplete_ == int(np.isnan(X).any(axis=1).sum()) - int(empty.sum())
    cov = model.covariances_
    expected = np.full(len(X), np.nan)
    for i, x in enumerate(X):
        o = ~np.isnan(x)
        if o.any():
            expected[i] = logsumexp([
                np.log(model.weights_[j]) + multivariate_normal(model.means_[j][o], cov[j][np.ix_(o, o)]).logpdf(x[o])
                for j in range(3)
            ])
    scores = model.score_samples(X)
    np.testing.assert_allclose(scores, expected, rtol=1e-10, equal_nan=True)
    labels = model.predict(X)
    proba = model.predict_proba(X)
    np.testing.assert_array_equal(labels == -1, empty)
    assert np.isnan(proba[empty]).all() and not np.isnan(proba[~empty]).any()
    np.testing.assert_allclose(proba[~empty].sum(axis=1), 1.0)
    np.testing.assert_array_equal(labels[~empty], proba[~empty].argmax(axis=1))
    assert model.score(X) == pytest.approx(np.nanmean(expected), rel=1e-12)
    n = len(X) - int(empty.sum())
    assert model.bic(X) == pytest.approx(-2 * np.nanmean(expected) * n + model._n_parameters() * np.log(n), rel=1e-12)
    # Dask input: lazy, the same values.
    dX = da.from_array(X, chunks=(300, 4))
    np.testing.assert_allclose(model.score_samples(dX).compute(), scores, rtol=1e-12, equal_nan=True)
    np.testing.assert_array_equal(model.predict(dX).compute(), labels)


def test_integer_weights_equal_repeated_rows():
    rng = np.random.default_rng(12)
    X = holey_mixture(rng, n=1500)
    counts = rng.integers(0, 3, len(X))
    # A given start: the random draws of an initialisation are weighted
    # draws, equal to the repeated rows' in distribution only.
    start = dict(weights_init=[0.3, 0.3, 0.4], means_init=[[0.0, 0, 0, 0], [6, 6, 0, 0], [0, 6, 6, 6]],
                 precisions_init=np.tile(np.eye(4), (3, 1, 1)))
    kwargs = dict(missing="marginalize", max_iter=15, tol=0, **start)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # not converged within max_iter: expected
        weighted = GaussianMixture(3, **kwargs).fit(X, sample_weight=counts)
        repeated = GaussianMixture(3, **kwargs).fit(np.repeat(X, counts, axis=0))
    np.testing.assert_allclose(weighted.means_, repeated.means_, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(weighted.covariances_, repeated.covariances_, rtol=1e-9)


@pytest.mark.parametrize("kind", KINDS)
def test_bayesian_mixture_marginalises(kind):
    rng = np.random.default_rng(13)
    centres = np.array([[0.0, 0, 0, 0], [5, 5, 0, 0], [0, 5, 5, 5]])
    X = centres[rng.integers(0, 3, 3000)] + rng.normal(size=(3000, 4))
    settings = dict(n_components=5, covariance_type=kind, random_state=0, max_iter=20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # not converged within max_iter: expected
        plain = BayesianGaussianMixture(**settings).fit(X)
        same = BayesianGaussianMixture(missing="marginalize", **settings).fit(X)
    for name in ("weights_", "means_", "covariances_", "mean_prior_", "covariance_prior_"):
        np.testing.assert_array_equal(getattr(same, name), getattr(plain, name))
    holey = X.copy()
    holey[rng.random(X.shape) < 0.2] = np.nan
    fitted = BayesianGaussianMixture(
        n_components=5, covariance_type=kind, random_state=0, max_iter=500, missing="marginalize"
    ).fit(holey)
    assert fitted.converged_
    # The bound (with the missing values' entropy) never decreases.
    assert np.all(np.diff(fitted.lower_bounds_) > -1e-9 * np.abs(fitted.lower_bounds_[1:]))
    # Three components carry the weight, at the mixture's centres.
    assert np.sort(fitted.weights_)[::-1][:3].sum() > 0.98
    big = fitted.means_[fitted.weights_ > 0.1]
    assert len(big) == 3
    for centre in centres:
        assert np.min(np.linalg.norm(big - centre, axis=1)) < 0.2


def test_partial_fit_marginalises():
    """Online EM on a stream with 20% of its entries missing.  Exact mode
    reaches the batch fit; stepwise mode gets there more slowly than on
    complete data (measured: 6.5e-3 per sample after one epoch of 40 batches,
    3.2e-3 after two, 1.4e-3 after four, against 2.3e-4 after one on
    complete data, tests/test_online.py): each stepwise update is a damped
    EM step, and with missing values EM itself needs more of them (10
    iterations for the batch fit here)."""
    rng = np.random.default_rng(14)
    batches = []
    for _ in range(40):
        X = holey_mixture(rng, n=2000)
        batches.append(X)
    everything = np.concatenate(batches)
    batch = GaussianMixture(3, missing="marginalize", random_state=0, tol=1e-8).fit(everything)
    best = batch.score(everything)
    stepwise = GaussianMixture(3, missing="marginalize", random_state=0)
    gaps = []
    for _ in range(2):
        for X in batches:
            stepwise.partial_fit(X)
        gaps.append(best - stepwise.score(everything))
    assert stepwise.n_samples_seen_ == 2 * sum(int((~np.isnan(X).all(axis=1)).sum()) for X in batches)
    assert 0 < gaps[1] < gaps[0] < 2e-2 and gaps[1] < 6e-3, gaps
    exact = GaussianMixture(3, missing="marginalize", random_state=0, partial_fit_mode="exact", tol=1e-8)
    for _ in range(100):
        for X in batches[:10]:
            exact.partial_fit(X)
        exact.end_pass()
        if exact.converged_:
            break
    assert exact.converged_
    first = GaussianMixture(3, missing="marginalize", random_state=0, tol=1e-8).fit(np.concatenate(batches[:10]))
    assert exact.lower_bound_ == pytest.approx(first.lower_bound_, abs=1e-7)


def test_checkpoint_resumes_and_refuses_other_missing_values(tmp_path):
    rng = np.random.default_rng(15)
    X = holey_mixture(rng, n=2000)
    path = tmp_path / "fit.npz"
    settings = dict(missing="marginalize", random_state=0, tol=1e-8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        GaussianMixture(3, max_iter=3, **settings).fit(X, checkpoint=path)
    resumed = GaussianMixture(3, max_iter=200, **settings).fit(X, checkpoint=path)
    straight = GaussianMixture(3, max_iter=200, **settings).fit(X)
    np.testing.assert_array_equal(resumed.means_, straight.means_)
    other = X.copy()
    other[0, 0] = 1.0 if np.isnan(other[0, 0]) else np.nan
    with pytest.raises(ValueError, match="different data or settings"):
        GaussianMixture(3, max_iter=200, **settings).fit(other, checkpoint=path)
    with pytest.raises(ValueError, match="missing is 'marginalize' in the checkpoint but 'error' now"):
        GaussianMixture(3, max_iter=200, random_state=0, tol=1e-8).fit(np.nan_to_num(X), checkpoint=path)


@pytest.mark.parametrize("weighted", [False, True])
def test_missing_summary_scatter_is_the_observed_centred_sum_of_squares(weighted):
    """The counting pass's per-feature sums of squares about the observed
    mean (what a checkpoint digests besides sums and counts), exact for a
    large mean and the same however the rows are split."""
    rng = np.random.default_rng(17)
    X = holey_mixture(rng, n=500) + 1e6
    X[:7, 1] = np.nan  # a block with a feature never observed
    w = rng.uniform(0, 3, size=len(X)) if weighted else np.ones(len(X))
    observed = ~np.isnan(X)
    means = np.nansum(w[:, None] * X, axis=0) / (w @ observed)
    expected = np.nansum(w[:, None] * (X - means) ** 2, axis=0)
    for bounds in ([0, 500], [0, 7, 250, 251, 500], [0, 100, 200, 300, 400, 500]):
        parts = [
            missing_summary(X[a:b], a, w[a:b] if weighted else None) for a, b in zip(bounds[:-1], bounds[1:])
        ]
        merged = merge_summaries(parts)
        np.testing.assert_allclose(merged["scatter"], expected, rtol=1e-10)
        np.testing.assert_allclose(merged["counts"], w @ observed, rtol=1e-13)


def test_save_and_load_keep_the_setting(tmp_path):
    import daskgmm

    rng = np.random.default_rng(16)
    X = holey_mixture(rng, n=1000)
    model = GaussianMixture(3, missing="marginalize", random_state=0).fit(X)
    model.save(tmp_path / "m.npz")
    loaded = daskgmm.load(tmp_path / "m.npz")
    assert loaded.missing == "marginalize"
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_errors():
    rng = np.random.default_rng(17)
    X = known_mixture(rng, n=500)[0]
    holey = X.copy()
    holey[rng.random(X.shape) < 0.2] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity"):
        GaussianMixture(2).fit(holey)  # the default: NaN is an error
    infinite = holey.copy()
    infinite[321, 2] = np.inf
    with pytest.raises(ValueError, match=r"contains infinity.*first at row 321"):
        GaussianMixture(2, missing="marginalize").fit(infinite)
    fitted = GaussianMixture(2, missing="marginalize", random_state=0).fit(holey)
    with pytest.raises(ValueError, match=r"infinity.*row 321"):
        fitted.predict(infinite)
    never = holey.copy()
    never[:, 1] = np.nan
    with pytest.raises(ValueError, match=r"Feature\(s\) \[1\] have no observed value"):
        GaussianMixture(2, missing="marginalize").fit(never)
    empty = np.full_like(X, np.nan)
    empty[0] = 1.0
    with pytest.raises(ValueError, match="every feature missing"):
        GaussianMixture(2, missing="marginalize").fit(empty)
    with pytest.raises(ValueError, match="missing"):
        GaussianMixture(2, missing="impute").fit(X)


def test_xarray_marginalises_and_keeps_drop_by_default():
    xr = pytest.importorskip("xarray")
    from daskgmm import xarray as dxr

    rng = np.random.default_rng(18)
    X = known_mixture(rng, n=4 * 10 * 12)[0][:, :3]
    cube = xr.DataArray(X.reshape(4, 10, 12, 3), dims=("time", "y", "x", "band"),
                        coords={"band": ["red", "nir", "swir"]}).chunk({"time": 1})
    cube[:, :2] = np.nan  # masked strip: every feature missing
    cube[:, 5, :, 1] = np.nan  # one band lost on a row
    dropped = dxr.fit(GaussianMixture(3, random_state=0), cube, feature_dim="band")
    assert dropped.n_samples_skipped_ == 4 * 3 * 12
    assert int(dxr.predict(dropped, cube, feature_dim="band")[0, 5, 0]) == -1
    marginal = dxr.fit(GaussianMixture(3, random_state=0), cube, feature_dim="band", missing="marginalize")
    assert marginal.missing == "marginalize"
    assert marginal.n_samples_skipped_ == 4 * 2 * 12
    assert marginal.n_samples_incomplete_ == 4 * 12
    labels = dxr.predict(marginal, cube, feature_dim="band").compute()
    assert int(labels[0, 0, 0]) == -1 and int(labels[0, 5, 0]) >= 0
    rows = cube.stack(sample=("time", "y", "x")).transpose("sample", "band").values
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # plain rows: no feature names to check
        expected = marginal.predict(rows)
    np.testing.assert_array_equal(labels.stack(sample=("time", "y", "x")).values, expected)


def test_xarray_partial_fit_streams_scenes():
    """daskgmm.xarray.partial_fit: scenes with masked pixels and a band lost
    on a row, bands reordered in every other scene (matched by label)."""
    xr = pytest.importorskip("xarray")
    from daskgmm import xarray as dxr

    def scene(seed):
        rng = np.random.default_rng(seed)
        labels = rng.integers(0, 2, (10, 12))
        values = np.stack([labels * 4.0 + rng.normal(size=(10, 12)) for _ in range(3)], axis=-1)
        cube = xr.DataArray(values, dims=("y", "x", "band"), coords={"band": ["red", "nir", "swir"]})
        cube[:2] = np.nan
        cube[5, :, 1] = np.nan
        return cube.chunk({"y": 5})

    dropped = GaussianMixture(2, random_state=0)
    marginal = GaussianMixture(2, random_state=0, missing="marginalize")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no feature-name warning for the matched batches
        for seed in range(12):
            cube = scene(seed)
            dxr.partial_fit(dropped, cube.isel(band=[2, 0, 1]) if seed % 2 else cube, feature_dim="band")
            assert dropped.n_samples_skipped_ == 2 * 12 + 12
            dxr.partial_fit(marginal, cube, feature_dim="band")
            assert marginal.n_samples_skipped_ == 2 * 12
    assert dropped.n_samples_seen_ == 12 * (120 - 36)
    assert marginal.n_samples_seen_ == 12 * (120 - 24)
    assert list(dropped.feature_names_in_) == ["red", "nir", "swir"]
    for model in (dropped, marginal):
        order = np.argsort(model.means_[:, 0])
        np.testing.assert_allclose(model.means_[order], [[0, 0, 0], [4, 4, 4]], atol=0.2)
    with pytest.raises(ValueError, match="not those the model was fitted on"):
        dxr.partial_fit(dropped, scene(99).assign_coords(band=["r", "g", "b"]), feature_dim="band")


def test_select_n_components_marginalises():
    import daskgmm

    rng = np.random.default_rng(19)
    X = holey_mixture(rng, n=3000)
    best, table = daskgmm.select_n_components(X, range(1, 6), missing="marginalize", random_state=0)
    assert best.n_components == 3 and best.missing == "marginalize"
    assert best.n_samples_skipped_ == int(np.isnan(X).all(axis=1).sum())
    for k, bic in zip(table["n_components"], table["bic"]):
        model = GaussianMixture(int(k), missing="marginalize", random_state=0).fit(X)
        assert bic == pytest.approx(model.bic(X), rel=1e-9)


def test_partial_fit_dask_batches_equal_numpy_batches():
    rng = np.random.default_rng(20)
    batches = []
    for _ in range(4):
        X = holey_mixture(rng, n=1200)
        batches.append(X)
    in_memory = GaussianMixture(3, missing="marginalize", random_state=0)
    chunked = GaussianMixture(3, missing="marginalize", random_state=0)
    for X in batches:
        in_memory.partial_fit(X)
        chunked.partial_fit(da.from_array(X, chunks=(250, 4)))
    np.testing.assert_allclose(chunked.means_, in_memory.means_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(chunked.covariances_, in_memory.covariances_, rtol=1e-10, atol=1e-12)
    assert chunked.n_samples_seen_ == in_memory.n_samples_seen_
