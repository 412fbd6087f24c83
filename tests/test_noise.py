"""GaussianMixture's noise component (mclust's ``noise``, issue #23): a
uniform density over the data's bounding box or a given hypervolume, with
its own weight, in the E-step, the M-step, the scores, the criteria, the
per-row outputs, sample() and the saved state."""

from __future__ import annotations

import pickle

import dask.array as da
import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

import daskgmm
from daskgmm import BayesianGaussianMixture, GaussianMixture
from daskgmm import _blocks
from daskgmm._covariance import make_model
from daskgmm._state import NOISE

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

KINDS = ["full", "tied", "diag", "spherical"]


@pytest.fixture(scope="module")
def data():
    """Two Gaussians (900 rows) and 10% outliers uniform in [-10, 10]^2."""
    rng = np.random.default_rng(7)
    gaussian = np.concatenate([rng.normal(-3, 1, (450, 2)), rng.normal(3, 1, (450, 2))])
    outliers = rng.uniform(-10, 10, (100, 2))
    X = np.concatenate([gaussian, outliers])
    truth = np.repeat([0, 0, 1], [450, 450, 100]).astype(bool)  # True: an outlier
    return X, truth


def _direct_log_likelihood(model, X):
    """``log(pi_0 / V + sum_k pi_k N(x | mu_k, Sigma_k))`` with SciPy."""
    covariances = model.covariances_
    k, d = model.means_.shape
    if model.covariance_type == "tied":
        covariances = [covariances] * k
    elif model.covariance_type == "diag":
        covariances = [np.diag(c) for c in covariances]
    elif model.covariance_type == "spherical":
        covariances = [c * np.eye(d) for c in covariances]
    terms = [np.log(w) + multivariate_normal(m, c).logpdf(X) for w, m, c in zip(model.weights_, model.means_, covariances)]
    terms.append(np.full(len(X), np.log(model.noise_weight_) - np.log(model.noise_volume_)))
    return logsumexp(np.stack(terms), axis=0)


@pytest.mark.parametrize("kind", KINDS)
def test_the_noise_component_recovers_the_outlier_fraction(data, kind):
    X, outlier = data
    model = GaussianMixture(2, covariance_type=kind, noise="box", random_state=0, tol=1e-6).fit(X)
    assert abs(model.noise_weight_ - 0.1) < 0.02
    assert model.weights_.sum() + model.noise_weight_ == pytest.approx(1.0, abs=1e-12)
    labels = model.predict(X)
    # The outliers far from both clusters (the others sit inside them) are labelled n_components.
    far = outlier & (np.minimum(np.linalg.norm(X + 3, axis=1), np.linalg.norm(X - 3, axis=1)) > 4)
    assert np.mean(labels[far] == 2) > 0.95
    assert np.mean(labels[~outlier] == 2) < 0.01
    np.testing.assert_array_equal(model.noise_box_, [X.min(axis=0), X.max(axis=0)])
    assert model.noise_volume_ == pytest.approx(float(np.prod(X.max(axis=0) - X.min(axis=0))), rel=1e-15)


@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random", "random_from_data"])
def test_every_initialisation_finds_the_outliers(data, init_params):
    """'k-means++' and 'random_from_data' start on single rows (covariances
    of reg_covar), next to which the uniform would take every other row."""
    X, _ = data
    model = GaussianMixture(2, noise="box", init_params=init_params, random_state=0, tol=1e-6).fit(X)
    assert abs(model.noise_weight_ - 0.1) < 0.02, init_params


@pytest.mark.parametrize("kind", KINDS)
def test_score_samples_is_the_direct_evaluation_of_the_mixture_with_noise(data, kind):
    X, _ = data
    model = GaussianMixture(2, covariance_type=kind, noise=500.0, random_state=0).fit(X)
    assert model.noise_box_ is None and model.noise_volume_ == 500.0
    expected = _direct_log_likelihood(model, X)
    np.testing.assert_allclose(model.score_samples(X), expected, rtol=1e-12, atol=1e-12)
    assert model.score(X) == pytest.approx(float(np.mean(expected)), rel=1e-12)
    # The responsibilities of the direct evaluation, the noise's last.
    proba = model.predict_proba(X)
    np.testing.assert_allclose(proba[:, 2], model.noise_weight_ / 500.0 / np.exp(expected), rtol=1e-10)


def test_the_fit_climbs_the_likelihood_with_noise(data):
    X, _ = data
    model = GaussianMixture(2, noise="box", random_state=0, tol=0.0, max_iter=30).fit(X)
    assert np.all(np.diff(model.lower_bounds_) >= -1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_bic_and_aic_count_the_noise_weight_and_density(data, kind):
    X, _ = data
    plain = GaussianMixture(2, covariance_type=kind, random_state=0).fit(X)
    model = GaussianMixture(2, covariance_type=kind, noise="box", random_state=0).fit(X)
    n_parameters = plain._n_parameters() + 2  # mclust's nMclustParams(noise=TRUE)
    assert model._n_parameters() == n_parameters
    log_likelihood = float(np.sum(_direct_log_likelihood(model, X)))
    assert model.bic(X) == pytest.approx(-2 * log_likelihood + n_parameters * np.log(len(X)), rel=1e-12)
    assert model.aic(X) == pytest.approx(-2 * log_likelihood + 2 * n_parameters, rel=1e-12)


def test_chunking_does_not_change_the_fit(data):
    X, _ = data
    settings = {"n_components": 2, "noise": "box", "random_state": 0, "tol": 1e-8}
    whole = GaussianMixture(**settings).fit(X)
    chunked = GaussianMixture(**settings).fit(da.from_array(X, chunks=(137, 2)))
    assert chunked.n_iter_ == whole.n_iter_
    np.testing.assert_array_equal(chunked.noise_box_, whole.noise_box_)
    for name in ("weights_", "means_", "covariances_", "noise_weight_"):
        np.testing.assert_allclose(getattr(chunked, name), getattr(whole, name), rtol=1e-9, err_msg=name)


def test_integer_weights_fit_as_repeated_rows(data):
    X, _ = data
    rng = np.random.default_rng(1)
    weights = rng.integers(0, 4, size=len(X))
    settings = {"n_components": 2, "noise": "box", "random_state": 0, "tol": 1e-10, "init_params": "random",
                "max_iter": 300}
    weighted = GaussianMixture(**settings).fit(X, sample_weight=weights)
    repeated = GaussianMixture(**settings).fit(np.repeat(X, weights, axis=0))
    # Rows of weight 0 are outside the box of the repeated rows too.
    np.testing.assert_array_equal(weighted.noise_box_, repeated.noise_box_)
    # Both start from the same parameters: one initialisation, then EM from them.
    start = {"weights_init": repeated.weights_ / repeated.weights_.sum(), "means_init": repeated.means_,
             "precisions_init": repeated.precisions_, "noise_weight_init": repeated.noise_weight_}
    weighted = GaussianMixture(**settings, **start).fit(X, sample_weight=weights)
    repeated = GaussianMixture(**settings, **start).fit(np.repeat(X, weights, axis=0))
    for name in ("weights_", "means_", "covariances_", "noise_weight_"):
        np.testing.assert_allclose(getattr(weighted, name), getattr(repeated, name), rtol=1e-9, err_msg=name)
    assert weighted.score(X, sample_weight=weights) == pytest.approx(repeated.score(np.repeat(X, weights, axis=0)))


def test_predict_and_predict_proba_have_the_noise_column(data):
    X, _ = data
    model = GaussianMixture(3, noise="box", random_state=0).fit(X)
    proba = model.predict_proba(X)
    assert proba.shape == (len(X), 4)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    labels = model.predict(X)
    assert labels.shape == (len(X),) and set(np.unique(labels)) <= {0, 1, 2, 3}
    np.testing.assert_array_equal(labels, np.argmax(proba, axis=1))
    dX = da.from_array(X, chunks=(250, 2))
    lazy = model.predict_proba(dX)
    assert lazy.chunks == ((250, 250, 250, 250), (4,))
    # Other chunks, other pivots: equal to rounding.
    np.testing.assert_allclose(lazy.compute(), proba, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(model.predict(dX).compute(), labels)
    np.testing.assert_allclose(model.score_samples(dX).compute(), model.score_samples(X), rtol=1e-12)


def test_save_load_and_pickle_keep_the_noise_bitwise(data, tmp_path):
    X, _ = data
    model = GaussianMixture(2, noise="box", random_state=0).fit(X)
    path = model.save(tmp_path / "noise.npz")
    copies = {"load": daskgmm.load(path), "pickle": pickle.loads(pickle.dumps(model))}
    for what, copy in copies.items():
        assert copy.noise == "box" and copy.noise_weight_init == 0.1, what
        assert type(copy.noise_weight_) is float and copy.noise_weight_ == model.noise_weight_, what
        assert copy.noise_volume_ == model.noise_volume_, what
        assert copy.noise_box_.dtype == np.float64, what
        np.testing.assert_array_equal(copy.noise_box_, model.noise_box_, err_msg=what)
        np.testing.assert_array_equal(copy.weights_, model.weights_, err_msg=what)
        np.testing.assert_array_equal(copy.score_samples(X), model.score_samples(X), err_msg=what)
        np.testing.assert_array_equal(copy.predict_proba(X), model.predict_proba(X), err_msg=what)
        assert copy.bic(X) == model.bic(X), what
    assert {field.name for field in GaussianMixture._state_declaration.of_kind(NOISE)} == {
        "noise.weight", "noise.volume", "noise.box"}


def test_a_saved_volume_only_model_loads(data, tmp_path):
    X, _ = data
    model = GaussianMixture(2, noise=400.0, random_state=0).fit(X.astype(np.float32))
    loaded = daskgmm.load(model.save(tmp_path / "volume.npz"))
    assert loaded.noise_box_ is None and loaded.noise_volume_ == 400.0
    assert loaded.noise_weight_ == model.noise_weight_ and loaded.weights_.dtype == np.float32
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_a_file_whose_weights_disregard_the_noise_is_refused(data, tmp_path):
    from daskgmm._archive import read_archive, write_archive

    X, _ = data
    path = GaussianMixture(2, noise="box", random_state=0).fit(X).save(tmp_path / "noise.npz")
    arrays, meta = read_archive(path)
    meta["noise"]["weight"] = 0.3  # the Gaussian weights then sum to 0.9, not 0.7
    bad = tmp_path / "bad.npz"
    write_archive(bad, arrays, {k: v for k, v in meta.items() if k not in ("format", "format_version")})
    with pytest.raises(ValueError, match=r"weights.*sums to 0\.9.*not 0\.7 \(1 less the noise weight\)"):
        daskgmm.load(bad)
    meta["noise"] = {"weight": 0.1, "volume": None, "box": None}
    write_archive(bad, arrays, {k: v for k, v in meta.items() if k not in ("format", "format_version")}, overwrite=True)
    with pytest.raises(ValueError, match="noise"):
        daskgmm.load(bad)


def test_sample_draws_the_noise_uniformly_in_its_box(data):
    X, _ = data
    model = GaussianMixture(2, noise="box", random_state=0).fit(X)
    samples, labels = model.sample(4000)
    assert samples.shape == (4000, 2) and set(np.unique(labels)) == {0, 1, 2}
    noise = samples[labels == 2]
    assert abs(len(noise) / 4000 - model.noise_weight_) < 0.02
    assert np.all(noise >= model.noise_box_[0]) and np.all(noise <= model.noise_box_[1])
    volume_only = GaussianMixture(2, noise=400.0, random_state=0).fit(X)
    with pytest.raises(ValueError, match=r"sample\(\) cannot draw the noise component .*noise=400\.0"):
        volume_only.sample(10)


def test_zero_noise_weight_gives_bitwise_the_plain_block_statistics(data):
    """The noise column with ``pi_0 = 0`` adds exact zeros: the E-step's
    statistics and per-row outputs are bitwise those without it."""
    X, _ = data
    model = GaussianMixture(2, random_state=0).fit(X)
    for kind in KINDS:
        fitted = GaussianMixture(2, covariance_type=kind, random_state=0).fit(X)
        plain = make_model(fitted.weights_, fitted.means_, fitted.precisions_cholesky_, kind)
        noisy = plain._replace(noise_log_density=np.asarray(-np.inf))
        a = _blocks.block_statistics(X, plain)
        b = _blocks.block_statistics(X, noisy)
        for name, x, y in zip(a._fields[1:], a[1:], b[1:]):
            np.testing.assert_array_equal(x, y, err_msg=f"{kind} {name}")
        norm, resp = _blocks.estimate_log_resp(X, noisy)
        np.testing.assert_array_equal(norm, _blocks.estimate_log_resp(X, plain)[0])
        assert resp.shape == (len(X), 3) and np.all(resp[:, 2] == -np.inf)
    assert not any(name.startswith("noise_") and name.endswith("_") for name in vars(model))


def test_noise_none_is_the_plain_fit(data):
    X, _ = data
    plain = GaussianMixture(2, random_state=0).fit(X)
    explicit = GaussianMixture(2, random_state=0, noise=None, noise_weight_init=0.3).fit(X)
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_", "lower_bounds_"):
        np.testing.assert_array_equal(getattr(explicit, name), getattr(plain, name), err_msg=name)
    assert not hasattr(explicit, "noise_weight_") and explicit.predict_proba(X).shape == (len(X), 2)
    # A model refitted without noise keeps nothing of the noise it had.
    model = GaussianMixture(2, random_state=0, noise="box").fit(X)
    model.set_params(noise=None).fit(X)
    assert not any(hasattr(model, name) for name in ("noise_weight_", "noise_volume_", "noise_box_"))
    np.testing.assert_array_equal(model.means_, plain.means_)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"noise": "uniform"}, "'noise' parameter of GaussianMixture"),
        ({"noise": 0.0}, "'noise' parameter of GaussianMixture"),
        ({"noise": -2.0}, "'noise' parameter of GaussianMixture"),
        ({"noise": np.inf}, r"'noise' parameter of GaussianMixture must be None.*Got inf"),
        ({"noise": True}, "'noise' parameter of GaussianMixture must be None"),
        ({"noise": np.nan}, "'noise' parameter of GaussianMixture"),
        ({"noise": "box", "noise_weight_init": 0.0}, "'noise_weight_init' parameter of GaussianMixture"),
        ({"noise": "box", "noise_weight_init": 1.0}, "'noise_weight_init' parameter of GaussianMixture"),
        ({"noise": 10.0, "missing": "marginalize"}, r"noise=10\.0 \(a volume\) cannot be combined with "
                                                    "missing='marginalize'"),
    ],
)
def test_bad_noise_settings_are_refused_and_leave_the_estimator_as_it_was(data, params, match):
    X, _ = data
    model = GaussianMixture(2, random_state=0, noise="box").fit(X)
    before = {name: np.copy(value) if isinstance(value, np.ndarray) else value for name, value in vars(model).items()}
    model.set_params(**params)
    with pytest.raises(ValueError, match=match):
        model.fit(X)
    after = vars(model)
    assert set(after) == set(before)
    for name in ("weights_", "means_", "noise_weight_", "noise_box_", "noise_volume_", "n_iter_"):
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)


def test_a_box_without_volume_is_refused(data):
    X, _ = data
    flat = np.column_stack([X[:, 0], np.ones(len(X))])
    with pytest.raises(ValueError, match=r"noise='box': feature\(s\) \[1\] take a single value"):
        GaussianMixture(2, noise="box").fit(flat)


def test_what_the_noise_does_not_support_is_refused(data, tmp_path):
    X, _ = data
    with pytest.raises(ValueError, match="partial_fit is not supported with noise='box'"):
        GaussianMixture(2, noise="box").partial_fit(X)
    with pytest.raises(ValueError, match="checkpoint= is not supported with noise='box'"):
        GaussianMixture(2, noise="box").fit(X, checkpoint=tmp_path / "c.npz")
    assert not (tmp_path / "c.npz").exists()
    with pytest.raises(TypeError, match="noise"):
        BayesianGaussianMixture(n_components=2, noise="box")


def test_a_warm_start_continues_the_noise(data):
    X, _ = data
    model = GaussianMixture(2, noise="box", random_state=0, tol=1e-10, max_iter=500).fit(X)
    weight = model.noise_weight_
    model.set_params(warm_start=True, max_iter=5).fit(X)
    assert model.n_iter_ <= 2 and model.noise_weight_ == pytest.approx(weight, abs=1e-5)
    # Adding a noise component to a plain fit starts it at noise_weight_init.
    plain = GaussianMixture(2, random_state=0, warm_start=True, max_iter=1).fit(X)
    plain.set_params(noise="box", noise_weight_init=0.2).fit(X)
    assert 0 < plain.noise_weight_ < 0.2 and plain.weights_.sum() + plain.noise_weight_ == pytest.approx(1.0)


@pytest.mark.parametrize("kind", KINDS)
def test_missing_features_see_the_uniform_over_the_observed_sides(data, kind):
    X, _ = data
    holes = X.copy()
    rng = np.random.default_rng(2)
    holes[rng.random(len(X)) < 0.15, 1] = np.nan
    model = GaussianMixture(2, covariance_type=kind, noise="box", missing="marginalize", random_state=0).fit(holes)
    assert abs(model.noise_weight_ - 0.1) < 0.03
    rows = np.flatnonzero(np.isnan(holes[:, 1]))[:20]
    variances = model.covariances_
    if kind == "full":
        var0 = variances[:, 0, 0]
    elif kind == "tied":
        var0 = np.full(2, variances[0, 0])
    elif kind == "diag":
        var0 = variances[:, 0]
    else:
        var0 = variances
    side = model.noise_box_[1, 0] - model.noise_box_[0, 0]
    terms = [np.log(w) + multivariate_normal(m[0], v).logpdf(holes[rows, 0])
             for w, m, v in zip(model.weights_, model.means_, var0)]
    terms.append(np.full(len(rows), np.log(model.noise_weight_ / side)))
    np.testing.assert_allclose(model.score_samples(holes)[rows], logsumexp(np.stack(terms), axis=0), rtol=1e-10)
    proba = model.predict_proba(holes)
    assert proba.shape == (len(X), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)


def test_xarray_outputs_have_the_noise_component(data):
    import xarray as xr

    from daskgmm import xarray as dxr

    X, outlier = data
    cube = xr.DataArray(X.reshape(40, 25, 2), dims=("y", "x", "band"), coords={"band": ["a", "b"]}).chunk({"y": 10})
    model = dxr.fit(GaussianMixture(2, noise="box", random_state=0), cube, feature_dim="band")
    assert abs(model.noise_weight_ - 0.1) < 0.02
    proba = dxr.predict_proba(model, cube, "band")
    assert proba.dims == ("y", "x", "component") and proba.shape == (40, 25, 3)
    np.testing.assert_array_equal(proba["component"].values, [0, 1, 2])
    labels = dxr.predict(model, cube, "band")
    import pandas as pd

    # The model was fitted with the band names as feature names.
    np.testing.assert_array_equal(labels.values.ravel(), model.predict(pd.DataFrame(X, columns=["a", "b"])))
    assert np.any(labels.values == 2)


def test_the_command_line_fits_and_predicts_with_noise(data, tmp_path, capsys):
    pytest.importorskip("zarr")
    import xarray as xr

    from daskgmm import cli

    X, _ = data
    np.save(tmp_path / "X.npy", X)
    threads = ["--scheduler", "threads", "-q"]
    assert cli.main(["fit", str(tmp_path / "X.npy"), "-k", "2", "--noise", "box", "--random-state", "0",
                     "--out", str(tmp_path / "m.npz"), *threads]) == 0
    model = daskgmm.load(tmp_path / "m.npz")
    expected = GaussianMixture(2, noise="box", random_state=0).fit(X)
    assert model.noise == "box" and model.noise_weight_ == pytest.approx(expected.noise_weight_, rel=1e-9)
    np.testing.assert_array_equal(model.noise_box_, expected.noise_box_)
    capsys.readouterr()
    assert cli.main(["info", str(tmp_path / "m.npz")]) == 0
    assert f"noise component: weight {model.noise_weight_:.6g}, volume {model.noise_volume_:.6g} (label 2)" in (
        capsys.readouterr().out)
    assert cli.main(["predict", str(tmp_path / "m.npz"), str(tmp_path / "X.npy"), "--out",
                     str(tmp_path / "out.zarr"), "--proba", *threads]) == 0
    written = xr.open_zarr(tmp_path / "out.zarr")
    np.testing.assert_array_equal(written.component.values, [0, 1, 2])
    np.testing.assert_array_equal(written.label.values, model.predict(X))
    assert cli.main(["fit", str(tmp_path / "X.npy"), "-k", "2", "--noise", "250.5", "--out",
                     str(tmp_path / "v.npz"), *threads]) == 0
    assert daskgmm.load(tmp_path / "v.npz").noise_volume_ == 250.5
    with pytest.raises(SystemExit):
        cli.main(["fit", str(tmp_path / "X.npy"), "-k", "2", "--noise", "-1", *threads])
    assert "--noise: must be a number > 0, got -1" in capsys.readouterr().err
