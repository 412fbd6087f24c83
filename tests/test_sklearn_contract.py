"""daskgmm.GaussianMixture as a scikit-learn estimator: meta-estimators,
cloning, pickling, parameter validation, feature names, non-finite rows at
predict time, warm starts, dtypes and the precision Cholesky convention.

scikit-learn is the oracle wherever it has an answer: its own
``GaussianMixture`` fitted from the same initial parameters, its
meta-estimators, its validation messages and tags.  Data is small (iris) and
NumPy unless a test is about Dask input.
"""

import pickle
import re
import warnings

import numpy as np
import pytest

import dask.array as da
from sklearn.base import BaseEstimator, DensityMixin, clone
from sklearn.datasets import load_iris
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.mixture import GaussianMixture as SkGaussianMixture
from sklearn.mixture._gaussian_mixture import _compute_precision_cholesky
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.validation import check_is_fitted

import daskgmm

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]
PARAMETERS = ["weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"]
RTOL = 1e-6
IRIS = load_iris().data
IRIS_COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
# Iris in 3 row chunks of 50 (the Dask path), and in 4 chunks of 40 for the
# non-finite tests (row 97 is in the third chunk, row 17 of it).
BAD_ROW = 97
BAD_CHUNKS = 40


def _sklearn_start(X, k, covariance_type, seed=0):
    """Initial parameters: one scikit-learn k-means initialisation."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sk = SkGaussianMixture(k, covariance_type=covariance_type, max_iter=1, random_state=seed).fit(X)
    return dict(weights_init=sk.weights_, means_init=sk.means_, precisions_init=sk.precisions_)


def _rel(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)


def _sklearn_with_parameters(model):
    """A scikit-learn GaussianMixture holding ``model``'s fitted parameters:
    scikit-learn's own E-step evaluates exactly the same mixture."""
    sk = SkGaussianMixture(model.n_components, covariance_type=model.covariance_type)
    for attr in PARAMETERS + ["converged_", "n_iter_", "lower_bound_", "n_features_in_"]:
        setattr(sk, attr, getattr(model, attr))
    return sk


@pytest.fixture(scope="module")
def iris_model():
    """daskgmm fitted on iris (NumPy) from a scikit-learn initialisation."""
    return daskgmm.GaussianMixture(3, **_sklearn_start(IRIS, 3, "full")).fit(IRIS)


# ---------------------------------------------------------------------------
# Meta-estimators, clone, pickle, repr, fitted state, tags
# ---------------------------------------------------------------------------


def test_is_a_sklearn_density_estimator():
    model = daskgmm.GaussianMixture()
    assert isinstance(model, BaseEstimator)
    assert isinstance(model, DensityMixin)


def test_pipeline_fit_predict_score():
    scaled = StandardScaler().fit_transform(IRIS)
    start = _sklearn_start(scaled, 3, "full")
    ours = Pipeline([("scale", StandardScaler()), ("gmm", daskgmm.GaussianMixture(3, **start))]).fit(IRIS)
    ref = Pipeline([("scale", StandardScaler()), ("gmm", SkGaussianMixture(3, **start))]).fit(IRIS)
    assert ours.named_steps["gmm"].n_features_in_ == 4
    np.testing.assert_array_equal(ours.predict(IRIS), ref.predict(IRIS))
    assert ours.score(IRIS) == pytest.approx(ref.score(IRIS), rel=RTOL)
    np.testing.assert_allclose(ours.score_samples(IRIS), ref.score_samples(IRIS), rtol=RTOL)


def test_grid_search_picks_by_score():
    estimator = daskgmm.GaussianMixture(random_state=0)
    grid = [2, 3, 4]
    search = GridSearchCV(estimator, {"n_components": grid}, cv=3).fit(IRIS)
    # The same search by hand: KFold(3) (no y: not stratified), score = mean log-likelihood.
    means = []
    for k in grid:
        scores = []
        for train, test in KFold(3).split(IRIS):
            fitted = clone(estimator).set_params(n_components=k).fit(IRIS[train])
            scores.append(fitted.score(IRIS[test]))
        means.append(np.mean(scores))
    np.testing.assert_allclose(search.cv_results_["mean_test_score"], means, rtol=1e-10)
    assert search.best_params_ == {"n_components": grid[int(np.argmax(means))]}
    assert search.best_estimator_.n_components == grid[int(np.argmax(means))]
    check_is_fitted(search.best_estimator_)
    assert search.score(IRIS) == pytest.approx(search.best_estimator_.score(IRIS), rel=1e-12)


def test_cross_val_score():
    estimator = daskgmm.GaussianMixture(3, random_state=0)
    scores = cross_val_score(estimator, IRIS, cv=3)
    by_hand = [clone(estimator).fit(IRIS[train]).score(IRIS[test]) for train, test in KFold(3).split(IRIS)]
    np.testing.assert_allclose(scores, by_hand, rtol=1e-10)


def test_clone_is_unfitted_with_equal_params(iris_model):
    copy = clone(iris_model)
    assert copy is not iris_model
    ours, theirs = copy.get_params(), iris_model.get_params()
    assert ours.keys() == theirs.keys()
    for key in ours:
        if isinstance(theirs[key], np.ndarray):
            np.testing.assert_array_equal(ours[key], theirs[key])
        else:
            assert ours[key] == theirs[key], key
    with pytest.raises(NotFittedError):
        check_is_fitted(copy)
    assert not hasattr(copy, "means_")


def test_pickle_round_trip(iris_model):
    loaded = pickle.loads(pickle.dumps(iris_model))
    np.testing.assert_array_equal(loaded.predict(IRIS), iris_model.predict(IRIS))
    np.testing.assert_array_equal(loaded.score_samples(IRIS), iris_model.score_samples(IRIS))
    for attr in PARAMETERS:
        np.testing.assert_array_equal(getattr(loaded, attr), getattr(iris_model, attr))


def test_repr_like_sklearn():
    kwargs = dict(n_components=5, covariance_type="diag", reg_covar=1e-4)
    ours = daskgmm.GaussianMixture(**kwargs)
    assert repr(ours) == repr(SkGaussianMixture(**kwargs))
    html = ours._repr_html_()
    assert "GaussianMixture" in html
    for name, value in [("covariance_type", "diag"), ("n_components", "5"), ("reg_covar", "0.0001")]:
        assert name in html and value in html, name


def test_not_fitted_error_is_sklearns():
    model = daskgmm.GaussianMixture(2)
    with pytest.raises(NotFittedError):
        check_is_fitted(model)
    for method in ["predict", "predict_proba", "score_samples", "score"]:
        with pytest.raises(NotFittedError):
            getattr(model, method)(IRIS)
    model.fit(IRIS)
    check_is_fitted(model)


def test_sklearn_tags_match_sklearns():
    ours = daskgmm.GaussianMixture().__sklearn_tags__()
    ref = SkGaussianMixture().__sklearn_tags__()
    assert ours.estimator_type == ref.estimator_type == "density_estimator"
    assert ours.requires_fit == ref.requires_fit
    assert ours.input_tags.two_d_array == ref.input_tags.two_d_array
    assert ours.input_tags.sparse == ref.input_tags.sparse
    assert ours.input_tags.allow_nan == ref.input_tags.allow_nan
    assert ours.target_tags.required == ref.target_tags.required


@pytest.mark.parametrize("estimator", [daskgmm.GaussianMixture, daskgmm.BayesianGaussianMixture])
def test_allow_nan_tag_says_whether_nan_is_accepted(estimator):
    from sklearn.utils import get_tags

    holey = IRIS.copy()
    holey[::7, 1] = np.nan
    assert get_tags(estimator()).input_tags.allow_nan is False
    with pytest.raises(ValueError, match="Input X contains NaN or infinity"):
        estimator(n_components=3, random_state=0).fit(holey)
    marginalizing = estimator(n_components=3, random_state=0, missing="marginalize")
    assert get_tags(marginalizing).input_tags.allow_nan is True
    assert get_tags(clone(marginalizing)).input_tags.allow_nan is True
    assert np.all(np.isfinite(marginalizing.fit(holey).means_))
    assert get_tags(marginalizing.set_params(missing="error")).input_tags.allow_nan is False


# ---------------------------------------------------------------------------
# Parameter validation
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        dict(n_components=0),
        dict(covariance_type="bogus"),
        dict(tol=-1),
        dict(init_params="x"),
        dict(max_iter=-1),
        dict(reg_covar=-1e-3),
        dict(n_init=0),
    ],
    ids=lambda p: "-".join(f"{k}={v}" for k, v in p.items()),
)
def test_invalid_parameter_error_like_sklearn(params):
    (name,) = params
    pattern = rf"The '{name}' parameter of GaussianMixture must be"
    # The oracle: scikit-learn refuses the same value with the same class and words.
    with pytest.raises(InvalidParameterError, match=pattern):
        SkGaussianMixture(**params).fit(IRIS)
    with pytest.raises(InvalidParameterError, match=pattern):
        daskgmm.GaussianMixture(**params).fit(IRIS)
    assert issubclass(InvalidParameterError, ValueError)


@pytest.mark.parametrize("params", [dict(split_every=1), dict(persist="sometimes")], ids=["split_every", "persist"])
def test_invalid_own_parameter_error(params):
    """daskgmm's own parameters are validated the same way."""
    (name,) = params
    with pytest.raises(InvalidParameterError, match=rf"'{name}' parameter"):
        daskgmm.GaussianMixture(**params).fit(IRIS)


# ---------------------------------------------------------------------------
# Feature names and counts
# ---------------------------------------------------------------------------


def test_feature_names_in_from_dataframe():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(IRIS, columns=IRIS_COLUMNS)
    model = daskgmm.GaussianMixture(3, random_state=0).fit(frame)
    ref = SkGaussianMixture(3, random_state=0).fit(frame)
    np.testing.assert_array_equal(model.feature_names_in_, ref.feature_names_in_)
    assert model.feature_names_in_.dtype == ref.feature_names_in_.dtype
    assert model.n_features_in_ == 4
    plain = daskgmm.GaussianMixture(3, random_state=0).fit(IRIS)
    assert not hasattr(plain, "feature_names_in_")
    # Same fit and answers whether the data came as a DataFrame or as an array.
    np.testing.assert_allclose(model.means_, plain.means_, rtol=1e-12)
    np.testing.assert_array_equal(model.predict(frame), plain.predict(IRIS))


def test_feature_names_mismatch_like_sklearn():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(IRIS, columns=IRIS_COLUMNS)
    renamed = frame.rename(columns={"petal_width": "petal_area"})
    model = daskgmm.GaussianMixture(3, random_state=0).fit(frame)
    ref = SkGaussianMixture(3, random_state=0).fit(frame)
    for method in ["predict", "predict_proba", "score_samples", "score"]:
        with pytest.raises(ValueError, match="feature names should match") as sk_error:
            getattr(ref, method)(renamed)
        with pytest.raises(ValueError, match="feature names should match") as our_error:
            getattr(model, method)(renamed)
        assert str(our_error.value) == str(sk_error.value)
    # An array where a DataFrame was fitted, and the other way round: warnings.
    with pytest.warns(UserWarning, match="X does not have valid feature names"):
        labels = model.predict(IRIS)
    np.testing.assert_array_equal(labels, model.predict(frame))
    plain = daskgmm.GaussianMixture(3, random_state=0).fit(IRIS)
    with pytest.warns(UserWarning, match="X has feature names, but GaussianMixture was fitted without feature names"):
        plain.predict(frame)


@pytest.mark.parametrize("kind", ["numpy", "dask"])
def test_wrong_feature_count_at_predict(iris_model, kind):
    X = IRIS[:, :3] if kind == "numpy" else da.from_array(IRIS[:, :3], chunks=(50, -1))
    pattern = "X has 3 features, but GaussianMixture is expecting 4 features"
    with pytest.raises(ValueError, match=pattern):
        SkGaussianMixture(3, random_state=0).fit(IRIS).predict(IRIS[:, :3])
    for method in ["predict", "predict_proba", "score_samples", "score"]:
        with pytest.raises(ValueError, match=pattern):
            getattr(iris_model, method)(X)


# ---------------------------------------------------------------------------
# NaN / inf in a row at predict time
# ---------------------------------------------------------------------------

BAD_VALUES = {"nan": (np.nan, "NaN"), "inf": (np.inf, "inf"), "-inf": (-np.inf, "inf")}


def _with_bad_row(value, column=2):
    X = IRIS.copy()
    X[BAD_ROW, column] = value
    return X


def _names_row(message, row=BAD_ROW):
    return re.search(rf"(?<![\d.]){row}(?!\d)", message) is not None


def _check_bad_row_error(error, word):
    message = str(error.value)
    assert re.search(word, message, flags=re.IGNORECASE if word == "inf" else 0), message
    assert _names_row(message), f"row {BAD_ROW} not named in: {message}"
    local = BAD_ROW % BAD_CHUNKS
    assert not re.search(rf"row\D{{0,3}}{local}(?!\d)", message), f"chunk-local row {local} in: {message}"


@pytest.mark.parametrize("bad", list(BAD_VALUES))
@pytest.mark.parametrize("method", ["predict", "predict_proba", "score_samples", "score"])
def test_nonfinite_row_numpy(iris_model, method, bad):
    value, word = BAD_VALUES[bad]
    with pytest.raises(ValueError) as error:
        getattr(iris_model, method)(_with_bad_row(value))
    _check_bad_row_error(error, word)


@pytest.mark.parametrize("bad", list(BAD_VALUES))
@pytest.mark.parametrize("method", ["predict", "predict_proba", "score_samples"])
def test_nonfinite_row_dask_lazy(iris_model, method, bad):
    value, word = BAD_VALUES[bad]
    dX = da.from_array(_with_bad_row(value), chunks=(BAD_CHUNKS, -1))
    assert dX.numblocks[0] == 4 and BAD_ROW // BAD_CHUNKS == 2
    lazy = getattr(iris_model, method)(dX)  # no compute yet: the error comes with the result
    assert isinstance(lazy, da.Array)
    with pytest.raises(ValueError) as error:
        lazy.compute()
    _check_bad_row_error(error, word)


@pytest.mark.parametrize("bad", list(BAD_VALUES))
def test_nonfinite_row_dask_score(iris_model, bad):
    value, word = BAD_VALUES[bad]
    dX = da.from_array(_with_bad_row(value), chunks=(BAD_CHUNKS, -1))
    with pytest.raises(ValueError) as error:
        iris_model.score(dX)
    _check_bad_row_error(error, word)


@pytest.mark.parametrize("kind", ["numpy", "dask"])
def test_rows_answered_independently(iris_model, kind):
    """Without the bad row, every other row gets the answer it gets among all
    rows, and the answer scikit-learn gives for the same parameters."""
    clean = np.delete(IRIS, BAD_ROW, axis=0)
    sk = _sklearn_with_parameters(iris_model)

    def run(method, X):
        if kind == "dask":
            out = getattr(iris_model, method)(da.from_array(X, chunks=(BAD_CHUNKS, -1)))
            return out if np.isscalar(out) or isinstance(out, float) else out.compute()
        return getattr(iris_model, method)(X)

    for method in ["predict_proba", "score_samples"]:
        subset = run(method, clean)
        np.testing.assert_allclose(subset, np.delete(run(method, IRIS), BAD_ROW, axis=0), rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(subset, getattr(sk, method)(clean), rtol=1e-10, atol=1e-14)
    np.testing.assert_array_equal(run("predict", clean), sk.predict(clean))
    assert run("score", clean) == pytest.approx(sk.score(clean), rel=1e-10)


# ---------------------------------------------------------------------------
# warm_start
# ---------------------------------------------------------------------------


def _fits_until_converged(model, X, max_fits=200):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for fits in range(1, max_fits + 1):
            model.fit(X)
            if model.converged_:
                return fits
    return None


def test_warm_start_convergence_detected_like_sklearn():
    """scikit-learn's test_convergence_detected_with_warm_start: with
    max_iter=1 every fit is one EM iteration, and convergence is judged
    against the lower bound of the previous fit."""
    start = _sklearn_start(IRIS, 3, "full")
    ref_fits = _fits_until_converged(SkGaussianMixture(3, warm_start=True, max_iter=1, **start), IRIS)
    model = daskgmm.GaussianMixture(3, warm_start=True, max_iter=1, **start)
    fits = _fits_until_converged(model, IRIS)
    assert ref_fits is not None
    assert fits is not None, "never converged with warm_start=True, max_iter=1"
    assert abs(fits - ref_fits) <= 1, (fits, ref_fits)
    assert model.converged_ and model.n_iter_ <= 1


def test_warm_start_continues_from_previous_parameters():
    start = _sklearn_start(IRIS, 3, "full")
    ours = daskgmm.GaussianMixture(3, warm_start=True, max_iter=2, tol=0, **start)
    ref = SkGaussianMixture(3, warm_start=True, max_iter=2, tol=0, **start)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours.fit(IRIS)
        ref.fit(IRIS)
        first_bound = ours.lower_bound_
        first_score = ours.score(IRIS)
        ours.fit(IRIS)
        ref.fit(IRIS)
    assert ours.lower_bound_ >= first_bound
    # The second fit's first E-step evaluates the first fit's final parameters.
    assert ours.lower_bounds_[0] == pytest.approx(first_score, rel=1e-10)
    for attr in PARAMETERS:
        assert _rel(getattr(ours, attr), getattr(ref, attr)) < RTOL, attr
    assert ours.lower_bound_ == pytest.approx(ref.lower_bound_, rel=RTOL)


# ---------------------------------------------------------------------------
# dtypes
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["numpy", "dask"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_fitted_attributes_keep_the_data_dtype(covariance_type, dtype, kind):
    X = IRIS.astype(dtype)
    ref = SkGaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X)
    data = X if kind == "numpy" else da.from_array(X, chunks=(50, -1))
    model = daskgmm.GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(data)
    for attr in PARAMETERS:
        assert getattr(ref, attr).dtype == dtype, attr  # the oracle
        assert getattr(model, attr).dtype == dtype, attr


# ---------------------------------------------------------------------------
# precisions_cholesky_: upper triangular, P P^T = precisions_
# ---------------------------------------------------------------------------


def _check_cholesky_convention(model):
    chol = model.precisions_cholesky_
    mats = chol[None] if model.covariance_type == "tied" else chol
    for mat in mats:
        np.testing.assert_array_equal(np.tril(mat, -1), 0.0)
        assert np.all(np.diag(mat) > 0)
    if model.covariance_type == "full":
        product = chol @ np.swapaxes(chol, 1, 2)
    else:
        product = chol @ chol.T
    np.testing.assert_allclose(product, model.precisions_, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("covariance_type", ["full", "tied"])
def test_precisions_cholesky_after_fit(covariance_type):
    start = _sklearn_start(IRIS, 3, covariance_type)
    model = daskgmm.GaussianMixture(3, covariance_type=covariance_type, **start).fit(IRIS)
    ref = SkGaussianMixture(3, covariance_type=covariance_type, **start).fit(IRIS)
    _check_cholesky_convention(model)
    assert _rel(model.precisions_cholesky_, ref.precisions_cholesky_) < RTOL


@pytest.mark.parametrize("given", ["all", "precisions_only"])
@pytest.mark.parametrize("covariance_type", ["full", "tied"])
def test_precisions_cholesky_with_max_iter_0(covariance_type, given):
    """max_iter=0 keeps the initial parameters.  scikit-learn 1.9 cannot be
    the oracle here (its fit with max_iter=0 fails: no covariances_), so the
    factor is checked against its helper applied to the covariances."""
    start = _sklearn_start(IRIS, 3, covariance_type)
    kwargs = start if given == "all" else dict(precisions_init=start["precisions_init"], random_state=0)
    model = daskgmm.GaussianMixture(3, covariance_type=covariance_type, max_iter=0, **kwargs).fit(IRIS)
    assert model.n_iter_ == 0
    _check_cholesky_convention(model)
    precisions_init = start["precisions_init"]
    np.testing.assert_allclose(model.precisions_, precisions_init, rtol=1e-10)
    covariances = np.linalg.inv(precisions_init)
    np.testing.assert_allclose(model.covariances_, covariances, rtol=1e-8)
    expected = _compute_precision_cholesky(covariances, covariance_type)
    np.testing.assert_allclose(model.precisions_cholesky_, expected, rtol=1e-8, atol=1e-12)
    if given == "all":
        np.testing.assert_array_equal(model.means_, start["means_init"])
        np.testing.assert_array_equal(model.weights_, start["weights_init"])


@pytest.mark.parametrize("covariance_type", ["full", "tied"])
def test_precisions_cholesky_with_max_iter_0_from_kmeans(covariance_type):
    model = daskgmm.GaussianMixture(3, covariance_type=covariance_type, max_iter=0, random_state=0).fit(IRIS)
    _check_cholesky_convention(model)
    expected = _compute_precision_cholesky(model.covariances_, covariance_type)
    np.testing.assert_allclose(model.precisions_cholesky_, expected, rtol=1e-8, atol=1e-12)


# ---------------------------------------------------------------------------
# Agreement with scikit-learn: the in-process path and the Dask path
# ---------------------------------------------------------------------------


def _iris_input(kind):
    if kind == "numpy":
        return IRIS
    dX = da.from_array(IRIS, chunks=(50, -1))
    assert dX.numblocks[0] == 3
    return dX


@pytest.mark.parametrize("kind", ["numpy", "dask"])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_agrees_with_sklearn_from_same_start(covariance_type, kind):
    start = _sklearn_start(IRIS, 3, covariance_type)
    kwargs = dict(covariance_type=covariance_type, tol=1e-6, max_iter=500, **start)
    ref = SkGaussianMixture(3, **kwargs).fit(IRIS)
    ours = daskgmm.GaussianMixture(3, **kwargs).fit(_iris_input(kind))
    assert ours.n_iter_ == ref.n_iter_
    assert ours.converged_ == ref.converged_
    for attr in PARAMETERS:
        assert getattr(ours, attr).shape == getattr(ref, attr).shape, attr
        assert _rel(getattr(ours, attr), getattr(ref, attr)) < RTOL, attr
    assert ours.lower_bound_ == pytest.approx(ref.lower_bound_, rel=RTOL)
    np.testing.assert_allclose(ours.score_samples(IRIS), ref.score_samples(IRIS), rtol=RTOL)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_in_process_and_dask_paths_agree(covariance_type):
    start = _sklearn_start(IRIS, 3, covariance_type)
    kwargs = dict(covariance_type=covariance_type, tol=1e-6, max_iter=500, **start)
    eager = daskgmm.GaussianMixture(3, **kwargs).fit(_iris_input("numpy"))
    chunked = daskgmm.GaussianMixture(3, **kwargs).fit(_iris_input("dask"))
    assert eager.n_iter_ == chunked.n_iter_
    for attr in PARAMETERS:
        assert _rel(getattr(eager, attr), getattr(chunked, attr)) < 1e-9, attr
    assert eager.lower_bound_ == pytest.approx(chunked.lower_bound_, rel=1e-12)


# ---------------------------------------------------------------------------
# Non-finite rows at fit time (scikit-learn's estimator checks: tests/test_sklearn_suite.py)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["numpy", "dask"])
@pytest.mark.parametrize("bad", list(BAD_VALUES))
def test_nonfinite_row_at_fit_is_named_without_other_warnings(kind, bad):
    """scikit-learn refuses such data before doing anything; daskgmm finds it
    in its first pass and must not first warn about something else (say, the
    k-means initialisation seeing too few distinct points)."""
    value, word = BAD_VALUES[bad]
    X = _with_bad_row(value)
    data = X if kind == "numpy" else da.from_array(X, chunks=(BAD_CHUNKS, -1))
    with pytest.raises(ValueError, match=word):
        SkGaussianMixture(3, random_state=0).fit(X)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ValueError) as error:
            daskgmm.GaussianMixture(3, random_state=0).fit(data)
    _check_bad_row_error(error, word)
    assert not caught, [f"{w.category.__name__}: {w.message}" for w in caught]

