"""Dask in, Dask out: a Dask DataFrame or a Dask-backed xarray DataArray
given to the estimator itself stays lazy (never gathered to the client),
gives its feature names as a pandas DataFrame does, and per-row outputs come
back as Dask arrays without a compute.

Computes are counted as xarray's ``raise_if_dask_computes`` does, with a
callback on the local scheduler: a fit on a DataFrame makes the computes of
the fit on its Dask array of unknown row lengths (one to measure the
partitions, then the fit's own passes), and a predict none.
"""

import numpy as np
import pytest

import dask
import dask.array as da
from dask.callbacks import Callback
from sklearn.datasets import load_iris
from sklearn.mixture import GaussianMixture as SkGaussianMixture

import daskgmm

dd = pytest.importorskip("dask.dataframe")
pd = pytest.importorskip("pandas")
xr = pytest.importorskip("xarray")

IRIS = load_iris().data
COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
PARAMETERS = ["weights_", "means_", "covariances_", "precisions_cholesky_"]


class ComputeCounter(Callback):
    """Counts the computes on the local schedulers; raises past ``max_computes``."""

    def __init__(self, max_computes=None):
        super().__init__()
        self.count = 0
        self.max_computes = max_computes

    def _start(self, dsk):
        self.count += 1
        if self.max_computes is not None and self.count > self.max_computes:
            raise RuntimeError(f"{self.count} computes, at most {self.max_computes} expected")


@pytest.fixture(autouse=True)
def sync_scheduler():
    with dask.config.set(scheduler="sync"):
        yield


@pytest.fixture
def frame():
    return dd.from_pandas(pd.DataFrame(IRIS, columns=COLUMNS), npartitions=3)


def counted_fit(X, **params):
    with ComputeCounter() as counter:
        model = daskgmm.GaussianMixture(3, random_state=0, **params).fit(X)
    return model, counter.count


def assert_same_parameters(model, reference):
    for name in PARAMETERS + ["lower_bound_", "n_iter_"]:
        np.testing.assert_array_equal(getattr(model, name), getattr(reference, name), err_msg=name)


def test_dataframe_fit_makes_the_computes_of_its_dask_array(frame):
    model, n_frame = counted_fit(frame)
    # The same rows as a Dask array of unknown chunk sizes: one compute
    # measures them, as for the frame; known sizes save that one.
    reference, n_unknown = counted_fit(frame.to_dask_array())
    known = frame.to_dask_array(lengths=True)
    _, n_known = counted_fit(known)
    assert n_frame == n_unknown == n_known + 1
    assert n_known > 2  # the fit's passes ran on Dask, not on a gathered copy
    assert_same_parameters(model, reference)
    assert known.chunks[0] == (50, 50, 50)
    sk = SkGaussianMixture(3, random_state=0).fit(frame.compute())
    np.testing.assert_array_equal(model.feature_names_in_, sk.feature_names_in_)
    assert model.feature_names_in_.dtype == object and model.n_features_in_ == 4
    assert not hasattr(reference, "feature_names_in_")


def test_dataframe_outputs_are_lazy_with_the_partitions_as_row_chunks(frame):
    model = daskgmm.GaussianMixture(3, random_state=0).fit(frame)
    rows = frame.to_dask_array(lengths=True)
    reference = daskgmm.GaussianMixture(3, random_state=0).fit(rows)  # the same model, without names
    with ComputeCounter(max_computes=0):
        outputs = {what: getattr(model, what)(frame) for what in ("predict", "predict_proba", "score_samples")}
    for what, out in outputs.items():
        assert isinstance(out, da.Array), what
        assert out.numblocks[0] == frame.npartitions
        np.testing.assert_array_equal(out.compute(), getattr(reference, what)(rows).compute(), err_msg=what)
    assert outputs["predict_proba"].chunks[1] == (3,)
    # score and the criteria count the rows: one compute of their lengths, one of the sum.
    for method in ("score", "bic", "aic", "icl"):
        with ComputeCounter(max_computes=2):
            value = getattr(model, method)(frame)
        assert value == getattr(reference, method)(rows), method


def test_dataframe_partial_fit_and_fit_predict(frame):
    rows = frame.to_dask_array(lengths=True)
    online = daskgmm.GaussianMixture(3, random_state=0).partial_fit(frame)
    reference = daskgmm.GaussianMixture(3, random_state=0).partial_fit(rows)
    assert_same_parameters(online, reference)
    assert list(online.feature_names_in_) == COLUMNS
    labels = daskgmm.GaussianMixture(3, random_state=0).fit_predict(frame)
    assert isinstance(labels, da.Array)
    np.testing.assert_array_equal(labels.compute(), daskgmm.GaussianMixture(3, random_state=0).fit_predict(rows))


def test_dataframe_feature_names_checked_as_scikit_learn_checks_them(frame):
    model = daskgmm.GaussianMixture(3, random_state=0).fit(frame)
    sk = SkGaussianMixture(3, random_state=0).fit(frame.compute())
    renamed = frame.rename(columns={"petal_width": "petal_area"})
    for method in ["predict", "predict_proba", "score_samples", "score"]:
        with pytest.raises(ValueError, match="feature names should match") as sk_error:
            getattr(sk, method)(renamed.compute())
        with pytest.raises(ValueError, match="feature names should match") as our_error:
            getattr(model, method)(renamed)
        assert str(our_error.value) == str(sk_error.value)
    with pytest.warns(UserWarning, match="X does not have valid feature names"):
        model.predict(IRIS)
    # Non-string column names are no feature names (scikit-learn's rule).
    unnamed = dd.from_pandas(pd.DataFrame(IRIS), npartitions=3)
    assert not hasattr(daskgmm.GaussianMixture(3, random_state=0).fit(unnamed), "feature_names_in_")


def test_dataframe_errors_name_the_field(frame):
    with pytest.raises(ValueError, match=r"Expected a 2-D array \(n_samples, n_features\), got a 1-D array"):
        daskgmm.GaussianMixture(3).fit(frame["petal_width"])
    text = frame.assign(kind="setosa")
    with pytest.raises(ValueError, match="X must hold numbers, but it has dtype"):
        daskgmm.GaussianMixture(3).fit(text)
    model = daskgmm.GaussianMixture(3, random_state=0).fit(frame)
    sk = SkGaussianMixture(3, random_state=0).fit(frame.compute())
    with pytest.raises(ValueError, match="Feature names seen at fit time, yet now missing") as sk_error:
        sk.predict(frame[COLUMNS[:3]].compute())
    with pytest.raises(ValueError, match="Feature names seen at fit time, yet now missing") as our_error:
        model.predict(frame[COLUMNS[:3]])
    assert str(our_error.value) == str(sk_error.value)
    # A bad row in a partition of unknown offset: named by its chunk and its row there.
    values = IRIS.copy()
    values[120, 1] = np.nan
    holey = dd.from_pandas(pd.DataFrame(values, columns=COLUMNS), npartitions=3)
    labels = model.predict(holey)
    with pytest.raises(ValueError, match=r"In row chunk 2 of X \(its rows numbered from 0\): Input X contains NaN "
                       r"or infinity: 1 row\(s\) with non-finite values among rows 0 to 49 \(first at row 20\)"):
        labels.compute()


def feature_array(values, chunks=(50, -1), names=COLUMNS):
    coords = {} if names is None else {"feature": names}
    data = values if chunks is None else da.from_array(values, chunks=chunks)
    return xr.DataArray(data, dims=("sample", "feature"), coords=coords)


def test_dask_backed_dataarray_stays_lazy_with_its_feature_names():
    array = feature_array(IRIS)
    model, n_array = counted_fit(array)
    reference, n_data = counted_fit(array.data)
    assert n_array == n_data > 2
    assert_same_parameters(model, reference)
    assert list(model.feature_names_in_) == COLUMNS and model.feature_names_in_.dtype == object
    with ComputeCounter(max_computes=0):
        labels = model.predict(array)
        proba = model.predict_proba(array)
    assert isinstance(labels, da.Array) and labels.chunks == ((50, 50, 50),)
    assert proba.chunks == ((50, 50, 50), (3,))
    np.testing.assert_array_equal(labels.compute(), reference.predict(array.data).compute())
    renamed = array.assign_coords(feature=["a", "b", "c", "d"])
    with pytest.raises(ValueError, match="The feature names should match those that were passed during fit"):
        model.predict(renamed)
    # Without a coordinate the features have no names, as for an array.
    assert not hasattr(counted_fit(feature_array(IRIS, names=None))[0], "feature_names_in_")


def test_numpy_backed_dataarray_is_read_as_its_dataframe():
    array = feature_array(IRIS, chunks=None)
    model = daskgmm.GaussianMixture(3, random_state=0).fit(array)
    reference = daskgmm.GaussianMixture(3, random_state=0).fit(pd.DataFrame(IRIS, columns=COLUMNS))
    assert_same_parameters(model, reference)
    assert list(model.feature_names_in_) == COLUMNS
    labels = model.predict(array)
    assert isinstance(labels, np.ndarray)
    np.testing.assert_array_equal(labels, reference.predict(pd.DataFrame(IRIS, columns=COLUMNS)))
