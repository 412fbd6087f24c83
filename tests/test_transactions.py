"""A failed fit, partial_fit or end_pass leaves the estimator as it was, and a
model of ``partial_fit_mode='exact'`` used in the middle of a pass says so
(issue #20, items 10 and 6).

The state before a failing call is a deep copy of ``vars(model)``; after it,
every attribute (fitted parameters, the online stream's statistics, the
constructor's settings, the position of a given RandomState) must be equal,
and the next good batch must give bitwise the parameters of a model that
never saw the failing one.
"""

from __future__ import annotations

import copy
import dataclasses
import warnings

import numpy as np
import pytest

import dask.array as da

import daskgmm
from daskgmm import BayesianGaussianMixture, GaussianMixture, cli
from daskgmm import mixture as mixture_module
from daskgmm.mixture import UnfinishedPassWarning

MEANS = np.array([[0.0, 0.0, 0.0], [4.0, 0.0, 1.0], [0.0, 5.0, -2.0]])
NO_WEIGHT = "no sample with a positive weight and an observed feature"

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def draw(seed, n=300, d=3):
    rng = np.random.default_rng(seed)
    labels = rng.integers(3, size=n)
    return MEANS[labels, :d] + rng.normal(scale=0.7, size=(n, d))


GOOD = [draw(seed) for seed in range(4)]


def make(cls, mode, missing="marginalize", **settings):
    if cls is GaussianMixture:
        return GaussianMixture(3, partial_fit_mode=mode, missing=missing, random_state=0, **settings)
    return BayesianGaussianMixture(n_components=3, partial_fit_mode=mode, missing=missing, random_state=0, **settings)


def assert_same(before, after, where="model"):
    """Deep equality: arrays bitwise (NaN equal to NaN), dataclasses and
    named tuples field by field, RandomStates by their position."""
    if isinstance(before, np.random.RandomState):
        assert isinstance(after, np.random.RandomState), where
        b, a = before.get_state(), after.get_state()
        assert b[0] == a[0] and np.array_equal(b[1], a[1]) and b[2:] == a[2:], where
    elif dataclasses.is_dataclass(before) and not isinstance(before, type):
        assert type(after) is type(before), where
        for field in dataclasses.fields(before):
            assert_same(getattr(before, field.name), getattr(after, field.name), f"{where}.{field.name}")
    elif isinstance(before, dict):
        assert isinstance(after, dict) and before.keys() == after.keys(), (where, set(before) ^ set(after))
        for key in before:
            assert_same(before[key], after[key], f"{where}[{key!r}]")
    elif isinstance(before, (list, tuple)):
        assert type(after) is type(before) and len(after) == len(before), where
        for i, (b, a) in enumerate(zip(before, after)):
            assert_same(b, a, f"{where}[{i}]")
    elif isinstance(before, (np.ndarray, np.generic)):
        assert np.asarray(after).dtype == np.asarray(before).dtype, where
        assert np.array_equal(before, after, equal_nan=before.dtype.kind in "fc"), where
    elif isinstance(before, float) and np.isnan(before):
        assert isinstance(after, float) and np.isnan(after), where
    else:
        assert type(after) is type(before) and after == before, where


def snapshot(model):
    return copy.deepcopy(vars(model))


def assert_unchanged(model, before):
    assert_same(before, vars(model))


PARAMETERS = ("weights_", "means_", "covariances_", "precisions_cholesky_")


def assert_bitwise_equal_models(model, reference):
    for name in PARAMETERS + ("lower_bound_", "lower_bounds_", "n_iter_", "converged_"):
        assert_same(getattr(reference, name), getattr(model, name), name)
    for name in ("n_batch_iter_", "n_samples_seen_"):
        assert getattr(model, name, None) == getattr(reference, name, None), name
    assert_same(reference._online_state, model._online_state, "_online_state")


# --------------------------------------------------------------------------
# item 10: a failing batch changes nothing
# --------------------------------------------------------------------------


def all_nan(n_features=3):
    return np.full((40, n_features), np.nan)


def weights_on_empty_rows():
    X = np.vstack([draw(9, 40), np.full((20, 3), np.nan)])
    return X, np.r_[np.zeros(40), np.ones(20)]


BAD_BATCHES = {
    # name: (the model's missing, call on the model, expected error)
    "all NaN, marginalised": ("marginalize", lambda m: m.partial_fit(all_nan()), (ValueError, NO_WEIGHT)),
    "weights only on empty rows": (
        "marginalize", lambda m: m.partial_fit(*weights_on_empty_rows()[:1], sample_weight=weights_on_empty_rows()[1]),
        (ValueError, NO_WEIGHT),
    ),
    "wrong number of features": ("marginalize", lambda m: m.partial_fit(draw(9, 50, d=2)), (ValueError, "features")),
    "a NaN row with missing='error'": (
        "error", lambda m: m.partial_fit(np.vstack([draw(9, 50), all_nan()[:1]])), (ValueError, "NaN or infinity"),
    ),
    "a fit whose callback raises": (
        "marginalize", lambda m: m.fit(draw(9), callback=raise_at_iteration(2)), (RuntimeError, "stop here"),
    ),
}


def raise_at_iteration(n):
    def callback(info):
        if info["iteration"] == n:
            raise RuntimeError("stop here")

    return callback


@pytest.mark.parametrize("bad", list(BAD_BATCHES))
@pytest.mark.parametrize("mode", ["stepwise", "exact"])
@pytest.mark.parametrize("cls", [GaussianMixture, BayesianGaussianMixture])
def test_a_failing_call_mid_stream_changes_nothing(cls, mode, bad):
    missing, call, (error, message) = BAD_BATCHES[bad]
    model, reference = make(cls, mode, missing), make(cls, mode, missing)
    for batch in GOOD[:2]:
        model.partial_fit(batch)
        reference.partial_fit(batch)
    if mode == "exact":  # a pass ended, and the next one in progress
        model.end_pass().partial_fit(GOOD[2])
        reference.end_pass().partial_fit(GOOD[2])
    before = snapshot(model)
    with pytest.raises(error, match=message):
        call(model)
    assert_unchanged(model, before)
    model.partial_fit(GOOD[3])
    reference.partial_fit(GOOD[3])
    if mode == "exact":
        model.end_pass()
        reference.end_pass()
    assert_bitwise_equal_models(model, reference)


@pytest.mark.parametrize("bad", ["all NaN, marginalised", "weights only on empty rows", "a NaN row with missing='error'"])
@pytest.mark.parametrize("mode", ["stepwise", "exact"])
@pytest.mark.parametrize("cls", [GaussianMixture, BayesianGaussianMixture])
def test_a_failing_first_batch_leaves_an_unfitted_model(cls, mode, bad):
    missing, call, (error, message) = BAD_BATCHES[bad]
    model = make(cls, mode, missing)
    before = snapshot(model)
    with pytest.raises(error, match=message):
        call(model)
    assert_unchanged(model, before)
    assert "n_features_in_" not in vars(model)
    model.partial_fit(GOOD[0])
    assert_bitwise_equal_models(model, make(cls, mode, missing).partial_fit(GOOD[0]))


@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random", "random_from_data"])
@pytest.mark.parametrize("cls", [GaussianMixture, BayesianGaussianMixture])
def test_zero_effective_weight_is_a_clear_error_for_every_initialisation(cls, init_params):
    """A first batch (or fit) whose samples all have weight 0 or a missing
    feature: the same ValueError whatever the initialisation, never a
    ZeroDivisionError or a TypeError from an empty draw."""
    X, weights = weights_on_empty_rows()
    for missing in ("marginalize", "error"):
        for fit in (
            lambda m: m.partial_fit(all_nan()) if missing == "marginalize" else m._partial_fit(all_nan(), None, True),
            lambda m: m.partial_fit(X, sample_weight=weights) if missing == "marginalize"
            else m._partial_fit(X, weights, True),
            lambda m: m.fit(X, sample_weight=weights) if missing == "marginalize" else m._fit(
                X, sample_weight=weights, skip_nonfinite=True),
        ):
            model = make(cls, "stepwise", missing, init_params=init_params)
            with pytest.raises(ValueError, match=NO_WEIGHT):
                fit(model)


@pytest.mark.parametrize("cls", [GaussianMixture, BayesianGaussianMixture])
def test_a_failed_fit_keeps_the_fitted_model(cls):
    model = make(cls, "stepwise").fit(GOOD[0])
    before = snapshot(model)
    holey = GOOD[1].copy()
    holey[::7, 1] = np.nan  # counted by the fit before its first iteration
    with pytest.raises(RuntimeError, match="stop here"):
        model.fit(holey, callback=raise_at_iteration(1))
    assert_unchanged(model, before)
    with pytest.raises(ValueError, match=NO_WEIGHT):
        model.fit(all_nan())
    assert_unchanged(model, before)
    with pytest.raises(RuntimeError, match="stop here"):
        model.fit_predict(GOOD[1], callback=raise_at_iteration(1))
    assert_unchanged(model, before)


def test_a_failed_fit_restores_the_given_random_state_in_place():
    """A RandomState given as random_state keeps its identity, and its
    position: the next fit is the one the failed fit would not have changed."""
    random_state = np.random.RandomState(7)
    model = GaussianMixture(3, random_state=random_state, n_init=2)
    with pytest.raises(RuntimeError, match="stop here"):
        model.fit(GOOD[0], callback=raise_at_iteration(1))
    assert model.random_state is random_state
    assert vars(model).keys() == vars(GaussianMixture(3)).keys()
    model.fit(GOOD[0])
    reference = GaussianMixture(3, random_state=np.random.RandomState(7), n_init=2).fit(GOOD[0])
    for name in PARAMETERS:
        assert_same(getattr(reference, name), getattr(model, name), name)


def test_a_failing_end_pass_changes_nothing(monkeypatch):
    """An error raised after end_pass's M-step has set new parameters: they
    and the pass's statistics are put back, and end_pass can be called again."""
    model, reference = make(GaussianMixture, "exact"), make(GaussianMixture, "exact")
    for batch in GOOD[:3]:
        model.partial_fit(batch)
        reference.partial_fit(batch)
    before = snapshot(model)
    set_run = GaussianMixture._set_run

    def failing_set_run(self, *args, **kwargs):
        set_run(self, *args, **kwargs)
        raise MemoryError("no memory left")

    with monkeypatch.context() as patch:
        patch.setattr(GaussianMixture, "_set_run", failing_set_run)
        with pytest.raises(MemoryError, match="no memory left"):
            model.end_pass()
    assert_unchanged(model, before)
    assert_bitwise_equal_models(model.end_pass(), reference.end_pass())


def test_stepwise_statistics_refuse_an_empty_batch():
    from daskgmm import _stats
    from daskgmm._blocks import Stats

    empty = Stats("diag", 0.0, 0.0, np.zeros(2), np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match=NO_WEIGHT):
        _stats.stepwise_statistics(None, empty, 1.0)


# --------------------------------------------------------------------------
# the xarray helpers
# --------------------------------------------------------------------------


def scene(seed, clouded=False):
    xr = pytest.importorskip("xarray")
    values = draw(seed, 10 * 12).reshape(10, 12, 3)
    if clouded:
        values[:] = np.nan
    return xr.DataArray(values, dims=("y", "x", "band"), coords={"band": ["red", "nir", "swir"]})


@pytest.mark.parametrize("missing", [None, "drop", "marginalize"])
@pytest.mark.parametrize("mode", ["stepwise", "exact"])
def test_xarray_partial_fit_of_a_fully_clouded_scene(mode, missing):
    from daskgmm import xarray as dxr

    first = make(GaussianMixture, mode, "error")
    before = snapshot(first)
    with pytest.raises(ValueError, match=NO_WEIGHT):
        dxr.partial_fit(first, scene(0, clouded=True), "band", missing=missing)
    assert_unchanged(first, before)  # missing='marginalize' set on the model is undone too

    model, reference = make(GaussianMixture, mode, "error"), make(GaussianMixture, mode, "error")
    for seed in range(2):
        dxr.partial_fit(model, scene(seed), "band", missing=missing)
        dxr.partial_fit(reference, scene(seed), "band", missing=missing)
    before = snapshot(model)
    with pytest.raises(ValueError, match=NO_WEIGHT):
        dxr.partial_fit(model, scene(5, clouded=True), "band", missing=missing)
    assert_unchanged(model, before)
    dxr.partial_fit(model, scene(3), "band", missing=missing)
    dxr.partial_fit(reference, scene(3), "band", missing=missing)
    assert_bitwise_equal_models(model, reference)


def test_xarray_fit_failure_keeps_the_model():
    from daskgmm import xarray as dxr

    model = make(GaussianMixture, "stepwise", "error")
    dxr.fit(model, scene(0), "band")
    before = snapshot(model)
    with pytest.raises(ValueError, match=NO_WEIGHT):
        dxr.fit(model, scene(1, clouded=True), "band", missing="marginalize")
    assert_unchanged(model, before)


# --------------------------------------------------------------------------
# item 6: a pass in progress is impossible to miss
# --------------------------------------------------------------------------


def incremental(model, X):
    """What dask-ml's ``Incremental(model).fit(X)`` does: ``partial_fit`` on
    each block of the Dask array in turn, and never ``end_pass``."""
    for block in X.to_delayed().ravel():
        model.partial_fit(block.compute())
    return model


@pytest.fixture(scope="module")
def dask_X():
    X = np.vstack([draw(seed, 500) for seed in range(6)])
    return da.from_array(X, chunks=(500, 3))


def test_incremental_with_exact_mode_warns_on_every_use(dask_X, tmp_path):
    model = incremental(make(GaussianMixture, "exact"), dask_X)
    # What the warning is about: the parameters are the first block's
    # initialisation, not a fit of the blocks.
    first_block_only = make(GaussianMixture, "exact").partial_fit(dask_X.blocks[0].compute())
    assert_same(first_block_only.means_, model.means_)
    X = dask_X[:200].compute()
    uses = {
        "predict": lambda: model.predict(X),
        "predict_proba": lambda: model.predict_proba(X),
        "score_samples": lambda: model.score_samples(X),
        "score": lambda: model.score(X),
        "bic": lambda: model.bic(X),
        "aic": lambda: model.aic(X),
        "icl": lambda: model.icl(X),
        "sample": lambda: model.sample(5),
        "lazy predict": lambda: model.predict(dask_X),
    }
    for name, use in uses.items():
        with pytest.warns(UnfinishedPassWarning, match=r"end_pass\(\).*before the pass") as record:
            use()
        assert len(record) == 1, name
        assert record[0].filename == __file__, (name, record[0].filename)  # points at the caller
        assert issubclass(record[0].category, UserWarning)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnfinishedPassWarning)
        # Saving is no use of the parameters: the file keeps the pass, which
        # the loaded model continues (tests/test_roundtrip.py).
        model.save(tmp_path / "mid-pass.npz")
        model.end_pass()
        model.predict(X), model.score(X), model.sample(5)
        model.save(tmp_path / "after-pass.npz")


def test_xarray_outputs_warn_in_a_pass(dask_X):
    from daskgmm import xarray as dxr

    model = make(GaussianMixture, "exact", "error")
    dxr.partial_fit(model, scene(0), "band")
    for output in (dxr.predict, dxr.predict_proba, dxr.score_samples):
        with pytest.warns(UnfinishedPassWarning, match=r"end_pass\(\)"):
            output(model, scene(1), "band")


@pytest.mark.parametrize("cls", [GaussianMixture, BayesianGaussianMixture])
def test_incremental_with_stepwise_mode_fits_without_warning(cls, dask_X):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnfinishedPassWarning)
        model = incremental(make(cls, "stepwise"), dask_X)
        model.predict(dask_X[:100].compute()), model.score(dask_X[:100].compute())
    order = np.argsort(model.means_[:, 0] + 10 * model.means_[:, 1])
    np.testing.assert_allclose(model.means_[order], MEANS[[0, 1, 2]], atol=0.15)


def test_no_warning_after_fit_or_before_any_batch(dask_X):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnfinishedPassWarning)
        fitted = make(GaussianMixture, "exact").fit(GOOD[0])
        fitted.predict(GOOD[1])
        streamed = incremental(make(GaussianMixture, "exact"), dask_X).fit(GOOD[0])  # fit ends the stream
        streamed.score(GOOD[1])


def test_cli_online_exact_does_not_warn(tmp_path, capsys):
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"part{i}.npy")
        np.save(paths[-1], draw(i, 400))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnfinishedPassWarning)
        assert cli.main(["fit", *map(str, paths), "--online", "--online-mode", "exact", "-k", "3", "--max-iter", "3",
                         "--random-state", "0", "--scheduler", "threads", "--quiet",
                         "--out", str(tmp_path / "exact.npz")]) == 0
    captured = capsys.readouterr()
    assert "end_pass" not in captured.err and "end_pass" not in captured.out
    assert daskgmm.load(tmp_path / "exact.npz").n_iter_ == 3


def test_unfinished_pass_warning_lives_in_daskgmm_mixture():
    """Not a public name of the package (DESIGN.md), documented where it is."""
    assert not hasattr(daskgmm, "UnfinishedPassWarning")
    assert "UnfinishedPassWarning" in mixture_module.__doc__
    assert "Incremental" in GaussianMixture.partial_fit.__doc__
