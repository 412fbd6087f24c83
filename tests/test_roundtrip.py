"""``load(save(m))`` is ``m``: it predicts, scores and continues ``partial_fit``
exactly (bitwise) as ``m`` and as ``pickle.loads(pickle.dumps(m))`` (issue
#20, items 4 and 5).

The grid: both estimators x the four covariance types x float32 / float64 x
five states a model is saved in: fitted ('plain'), fitted with sample weights,
fitted with missing values (``missing='marginalize'``), in the middle of a
stepwise stream, and in the middle of an exact pass (after one completed
pass).  The data have two nearly collinear features (within a cluster,
correlation 1 - 4e-6: covariances with condition numbers about 4e5, as near
singular as float32 still fits).
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import daskgmm
from daskgmm import BayesianGaussianMixture, GaussianMixture

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

ESTIMATORS = {"GaussianMixture": GaussianMixture, "BayesianGaussianMixture": BayesianGaussianMixture}
KINDS = ["full", "tied", "diag", "spherical"]
DTYPES = [np.float32, np.float64]
STATES = ["plain", "weights", "missing", "stepwise", "exact"]

# What a fitted model holds, beyond the counts compared one by one.
ARRAYS = ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_")
BAYESIAN_ARRAYS = ("mean_precision_", "degrees_of_freedom_", "mean_prior_", "covariance_prior_")
NUMBERS = ("converged_", "n_iter_", "lower_bound_", "lower_bounds_", "n_batch_iter_", "n_samples_seen_")


def _rows(rng, n):
    """``n`` rows of three clusters in 4-D; feature 3 is feature 0 plus
    noise of standard deviation 3e-3."""
    centres = np.array([[0.0, 0.0, 0.0], [5.0, 1.0, -2.0], [-1.0, 6.0, 3.0]])
    labels = rng.integers(3, size=n)
    X = centres[labels] + rng.normal(size=(n, 3)) @ np.array([[1.0, 0.3, 0.0], [0.0, 0.8, 0.2], [0.0, 0.0, 0.6]])
    return np.column_stack([X, X[:, 0] + 3e-3 * rng.normal(size=n)])


@pytest.fixture(scope="module")
def data():
    """Rows to fit (300), two batches to stream (100 each), rows to score,
    sample weights for each, and the same rows with missing entries."""
    rng = np.random.default_rng(20)
    parts = {name: _rows(rng, n) for name, n in (("fit", 300), ("first", 100), ("second", 100), ("test", 200))}
    weights = {name: rng.uniform(0.0, 3.0, size=len(X)) for name, X in parts.items()}
    holes = {}
    for name, X in parts.items():
        X = X.copy()
        X[rng.random(X.shape) < 0.1] = np.nan
        X[::50] = np.nan  # a few rows with every feature missing
        holes[name] = X
    return parts, weights, holes


def _model(estimator, kind, dtype, state, data):
    """The estimator in ``state``, and how to give it the next batch (X,
    sample_weight) and to score."""
    parts, weights, holes = data
    rows = holes if state == "missing" else parts
    rows = {name: X.astype(dtype) for name, X in rows.items()}
    w = weights if state == "weights" else dict.fromkeys(parts)
    settings = {"n_components": 3, "covariance_type": kind, "random_state": 0, "max_iter": 30}
    if state == "missing":
        settings["missing"] = "marginalize"
    if state in ("stepwise", "exact"):
        settings["partial_fit_mode"] = state
    model = ESTIMATORS[estimator](**settings)
    if state in ("stepwise", "exact"):
        model.partial_fit(rows["fit"])
        if state == "exact":
            model.end_pass()  # one completed pass; the next one is left unfinished
        model.partial_fit(rows["first"])
    else:
        model.fit(rows["fit"], sample_weight=w["fit"])
    return model, rows, w


def _assert_same(model, reference, what):
    for name in ARRAYS + (BAYESIAN_ARRAYS if hasattr(reference, "mean_precision_") else ()):
        value, expected = np.asarray(getattr(model, name)), np.asarray(getattr(reference, name))
        assert value.dtype == expected.dtype, f"{what}: {name} has dtype {value.dtype}, not {expected.dtype}"
        np.testing.assert_array_equal(value, expected, err_msg=f"{what}: {name}")
    if hasattr(reference, "weight_concentration_"):
        for value, expected in zip(np.atleast_2d(model.weight_concentration_), np.atleast_2d(reference.weight_concentration_)):
            np.testing.assert_array_equal(value, expected, err_msg=f"{what}: weight_concentration_")
    for name in NUMBERS:
        assert getattr(model, name, None) == getattr(reference, name, None), f"{what}: {name}"
    # The iteration records, but for the seconds each M-step took.
    assert _untimed(model.history_) == _untimed(reference.history_), f"{what}: history_"


def _untimed(records):
    return [{name: value for name, value in record.items() if name != "seconds"} for record in records]


def _assert_same_outputs(model, reference, X, sample_weight, what):
    for method in ("predict", "predict_proba", "score_samples"):
        np.testing.assert_array_equal(getattr(model, method)(X), getattr(reference, method)(X), err_msg=f"{what}: {method}")
    assert model.score(X, sample_weight=sample_weight) == reference.score(X, sample_weight=sample_weight), what


# Mid-pass (exact mode) every use warns (tested in test_transactions.py).
@pytest.mark.filterwarnings("ignore::daskgmm.mixture.UnfinishedPassWarning")
@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("estimator", list(ESTIMATORS))
def test_a_loaded_model_is_the_saved_one(data, tmp_path, estimator, kind, dtype, state):
    model, rows, w = _model(estimator, kind, dtype, state, data)
    model.save(tmp_path / "model.npz")
    copies = {"load(save(m))": daskgmm.load(tmp_path / "model.npz"), "pickle": pickle.loads(pickle.dumps(model))}
    for what, copy in copies.items():
        _assert_same(copy, model, what)
        assert copy.history_ == model.history_, what
        _assert_same_outputs(copy, model, rows["test"], w["test"], what)
    # The stream goes on alike: one more batch (and, in an exact pass, its M-step).
    for copy in [model, *copies.values()]:
        copy.partial_fit(rows["second"], sample_weight=w["second"])
        if state == "exact":
            copy.end_pass()
    for what, copy in copies.items():
        _assert_same(copy, model, f"{what}, continued")
        _assert_same_outputs(copy, model, rows["test"], w["test"], f"{what}, continued")
