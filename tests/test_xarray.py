"""Dims-aware fit / predict on xarray data (daskgmm.xarray), with NaN holes,
from memory, zarr and netCDF; and the NaN-skipping initialisations it needs."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

import dask
import dask.array as da

from sklearn.base import clone

from daskgmm import GaussianMixture, NotFittedError
from daskgmm import xarray as dxr

xr = pytest.importorskip("xarray")

BANDS = ["red", "nir", "swir"]
TRUE_MEANS = np.array([[0.10, 0.40, 0.20], [0.30, 0.10, 0.50], [0.60, 0.60, 0.10]])
TRUE_SIGMA = 0.03
SHAPE = (3, 12, 16)  # time, y, x
CHUNKS = {"time": 1, "y": 6, "x": 8, "band": -1}


def make_cube(seed=0, dtype=np.float64):
    """A (time, y, x, band) reflectance cube of 3 surface types, with a
    masked block (all bands NaN, every time), a cloud (one date) and a few
    single missing bands."""
    rng = np.random.default_rng(seed)
    kind = rng.integers(3, size=SHAPE)
    values = TRUE_MEANS[kind] + rng.normal(scale=TRUE_SIGMA, size=SHAPE + (3,))
    values[:, :3, :4] = np.nan  # sea mask
    values[1, 6:9, 10:14] = np.nan  # cloud on one date
    values[2, 11, 0, 1] = np.nan  # a missing band
    values[0, 5, 7, 2] = np.inf  # a saturated pixel
    time = pd.date_range("2024-06-01", periods=SHAPE[0], freq="16D")
    y = 5000.0 - 30.0 * np.arange(SHAPE[1])
    x = 200000.0 + 30.0 * np.arange(SHAPE[2])
    return xr.DataArray(
        values.astype(dtype),
        dims=("time", "y", "x", "band"),
        coords={
            "time": time,
            "y": y,
            "x": x,
            "band": BANDS,
            "wavelength": ("band", [665.0, 842.0, 1610.0]),
            "lat": (("y", "x"), 45.0 + np.add.outer(y, x) * 1e-6),
            "sensor": "S2A",
        },
        name="reflectance",
        attrs={"units": "1"},
    )


def rows_of(cube):
    """The cube's samples as a (n, 3) NumPy array in C order, and which are finite."""
    rows = cube.transpose("time", "y", "x", "band").values.reshape(-1, cube.sizes["band"])
    return rows, np.isfinite(rows).all(axis=1)


def full_init(**kwargs):
    """Every initial parameter given: no random start, so any two fits of
    the same rows are the same computation up to summation order."""
    settings = {"tol": 1e-10, "max_iter": 300, **kwargs}
    precisions = np.stack([np.eye(3) / TRUE_SIGMA**2] * 3)
    return GaussianMixture(
        3, weights_init=np.full(3, 1 / 3), means_init=TRUE_MEANS + 0.02, precisions_init=precisions, **settings
    )


@pytest.fixture(scope="module")
def cube():
    return make_cube().chunk(CHUNKS)


@pytest.fixture(scope="module")
def fitted(cube):
    return dxr.fit(full_init(), cube, feature_dim="band")


def assert_same_model(a, b, rtol=1e-10, atol=1e-10):
    np.testing.assert_allclose(a.weights_, b.weights_, rtol=rtol, atol=atol)
    np.testing.assert_allclose(a.means_, b.means_, rtol=rtol, atol=atol)
    np.testing.assert_allclose(a.covariances_, b.covariances_, rtol=rtol, atol=atol * 1e-3)
    np.testing.assert_allclose(a.lower_bound_, b.lower_bound_, rtol=rtol, atol=atol)


# --------------------------------------------------------------------------
# fit
# --------------------------------------------------------------------------


def test_fit_equals_plain_fit_on_the_finite_rows(cube, fitted):
    rows, keep = rows_of(cube)
    plain = full_init().fit(rows[keep])
    assert_same_model(fitted, plain)
    assert fitted.n_iter_ == plain.n_iter_
    assert fitted.converged_
    assert fitted.n_features_in_ == 3
    np.testing.assert_allclose(np.sort(fitted.means_, axis=0), np.sort(TRUE_MEANS, axis=0), atol=0.01)


def test_skipped_count_is_reported(cube, caplog):
    _, keep = rows_of(cube)
    n_bad = int((~keep).sum())
    assert n_bad == 3 * 12 + 12 + 2  # mask on 3 dates, one cloud, one band, one inf
    with caplog.at_level(logging.INFO, logger="daskgmm"):
        model = dxr.fit(full_init(tol=1e-3), cube, feature_dim="band")
    assert model.n_samples_skipped_ == n_bad
    assert f"skipped {n_bad} of {keep.size} samples" in caplog.text


def test_skipped_count_is_unknown_not_wrong_with_weights(cube, caplog):
    """With sample weights the passes sum weight, not rows: the count of the
    samples left out is None (it was the rows minus the total weight, even
    negative), and nothing is logged as a count."""
    weight = pixel_weights(cube) * 3.0
    with caplog.at_level(logging.INFO, logger="daskgmm"):
        model = dxr.fit(full_init(tol=1e-3), cube, feature_dim="band", sample_weight=weight)
    assert model.n_samples_skipped_ is None
    assert "samples with a missing" not in caplog.text


def test_plain_estimator_still_refuses_nan(cube):
    rows, _ = rows_of(cube)
    with pytest.raises(ValueError, match="NaN or infinity"):
        full_init().fit(rows)
    assert full_init(tol=1e-3).fit(rows[np.isfinite(rows).all(1)]).n_samples_skipped_ == 0


@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random", "random_from_data"])
def test_every_init_skips_nan_rows(cube, init_params):
    _, keep = rows_of(cube)
    # Starts differ from a plain fit's (draws are keyed by row index, masked
    # rows included), so only the optimum found is compared, to the truth.
    model = GaussianMixture(3, init_params=init_params, random_state=0, n_init=2, tol=1e-4, max_iter=300)
    dxr.fit(model, cube, feature_dim="band")
    assert np.all(np.isfinite(model.means_)) and np.all(np.isfinite(model.covariances_))
    assert model.n_samples_skipped_ == int((~keep).sum())
    assert np.isfinite(model.lower_bound_)
    np.testing.assert_allclose(model.weights_.sum(), 1.0)
    if init_params in ("kmeans", "k-means++"):  # random starts may end in a poor local optimum
        order = np.argsort(model.means_[:, 0])
        np.testing.assert_allclose(model.means_[order], TRUE_MEANS, atol=0.01)


@pytest.mark.parametrize("init_params", ["kmeans", "random_from_data"])
def test_draws_that_hit_masked_rows_are_redrawn_among_finite_rows(init_params):
    # 95% of the rows masked: the row-index draws of the start land on NaN
    # rows, which must be replaced by finite ones (one extra pass).
    cube = make_cube(seed=3)
    mask = np.random.default_rng(1).random(SHAPE) < 0.95
    cube = cube.where(~xr.DataArray(mask, dims=("time", "y", "x"))).chunk(CHUNKS)
    model = GaussianMixture(3, init_params=init_params, random_state=0, n_init=3)
    dxr.fit(model, cube, feature_dim="band")
    assert model.n_samples_skipped_ >= mask.sum()
    assert np.all(np.isfinite(model.means_))
    # Without skipping, the same draws would have met NaN rows.
    rows, keep = rows_of(cube)
    with pytest.raises(ValueError, match="NaN or infinity"):
        GaussianMixture(3, init_params=init_params, random_state=0, n_init=3).fit(da.from_array(rows, chunks=(96, 3)))


def test_all_masked_is_a_clear_error():
    cube = make_cube().chunk(CHUNKS) * np.nan
    with pytest.raises(ValueError, match="no sample with a positive weight and an observed feature.*NaN or infinite"):
        dxr.fit(GaussianMixture(2, random_state=0), cube, feature_dim="band")


def test_too_few_finite_samples_is_a_clear_error():
    cube = make_cube().isel(time=[0])
    cube = cube.where(cube.y > cube.y[1]).where(cube.x < cube.x[5]).chunk(CHUNKS)  # 1 row x 1 col finite?
    finite = int(np.isfinite(cube).all("band").sum())
    with pytest.raises(ValueError, match=f"only {finite} sample"):
        dxr.fit(GaussianMixture(finite + 1, init_params="random_from_data", random_state=0), cube, feature_dim="band")


def test_float32_stays_float32(cube, fitted):
    cube32 = cube.astype(np.float32)
    model = dxr.fit(full_init(tol=1e-6), cube32, feature_dim="band")
    np.testing.assert_allclose(model.means_, fitted.means_, rtol=1e-4, atol=1e-4)
    scores = dxr.score_samples(model, cube32, feature_dim="band")
    assert scores.dtype == np.float32
    assert dxr.predict_proba(model, cube32, feature_dim="band").dtype == np.float32


def test_sample_dims_in_any_order(cube, fitted):
    moved = cube.transpose("band", "x", "time", "y")
    model = dxr.fit(full_init(), moved, feature_dim="band", sample_dims=("time", "y", "x"))
    assert_same_model(model, fitted)
    labels = dxr.predict(fitted, moved, feature_dim="band", sample_dims=["time", "y", "x"])
    assert labels.dims == ("time", "y", "x")
    xr.testing.assert_identical(labels, dxr.predict(fitted, cube, feature_dim="band"))
    # Default sample dims: every other dimension, in the data's order.
    assert dxr.predict(fitted, moved, feature_dim="band").dims == ("x", "time", "y")


# --------------------------------------------------------------------------
# outputs
# --------------------------------------------------------------------------


def test_outputs_are_lazy_labelled_and_match_plain_predictions(cube, fitted):
    rows, keep = rows_of(cube)
    with dask.config.set(scheduler="sync"):
        labels = dxr.predict(fitted, cube, feature_dim="band")
        scores = dxr.score_samples(fitted, cube, feature_dim="band")
        proba = dxr.predict_proba(fitted, cube, feature_dim="band")
    for out in (labels, scores, proba):
        assert isinstance(out.data, da.Array)  # lazy
        assert out.dims[:3] == ("time", "y", "x")
        for name in ("time", "y", "x", "lat", "sensor"):
            xr.testing.assert_identical(out[name], cube[name])
        assert "band" not in out.coords and "wavelength" not in out.coords
        assert out.chunks[:3] == cube.chunks[:3]  # the cube's chunks, no rechunk
    assert (labels.name, scores.name, proba.name) == ("label", "log_likelihood", "probability")
    assert labels.attrs == {"long_name": "Gaussian mixture component", "missing_label": -1}
    assert scores.attrs == {"long_name": "log-likelihood of the sample under the Gaussian mixture"}
    assert proba.attrs == {"long_name": "probability of each Gaussian mixture component"}
    assert proba.dims == ("time", "y", "x", "component")
    np.testing.assert_array_equal(proba.component, np.arange(3))

    flat_labels = labels.values.reshape(-1)
    flat_scores = scores.values.reshape(-1)
    flat_proba = proba.values.reshape(-1, 3)
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(flat_labels[~keep], -1)
    assert np.all(np.isnan(flat_scores[~keep]))
    assert np.all(np.isnan(flat_proba[~keep]))
    # The bands' names became the model's feature names: plain rows go in as
    # a DataFrame with those columns, as scikit-learn expects.
    plain = pd.DataFrame(rows[keep], columns=BANDS)
    np.testing.assert_array_equal(flat_labels[keep], fitted.predict(plain))
    np.testing.assert_allclose(flat_scores[keep], fitted.score_samples(plain), rtol=1e-12)
    np.testing.assert_allclose(flat_proba[keep], fitted.predict_proba(plain), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(flat_proba[keep].sum(axis=1), 1.0, rtol=1e-12)


def test_irregular_chunks_fold_back_in_place(fitted):
    data = make_cube(seed=5)
    ragged = data.chunk({"time": (2, 1), "y": (5, 7), "x": (3, 9, 4), "band": (2, 1)})
    in_memory = dxr.predict(fitted, data, feature_dim="band")
    assert isinstance(in_memory.data, np.ndarray)  # NumPy in, NumPy out
    xr.testing.assert_identical(dxr.predict(fitted, ragged, feature_dim="band").compute(), in_memory)
    xr.testing.assert_allclose(
        dxr.predict_proba(fitted, ragged, feature_dim="band").compute(),
        dxr.predict_proba(fitted, data, feature_dim="band"),
        rtol=1e-12,
    )


def test_in_memory_fit_equals_chunked_fit(cube, fitted):
    model = dxr.fit(full_init(), cube.compute(), feature_dim="band")
    assert_same_model(model, fitted)


def test_one_sample_dim(fitted):
    table = make_cube().stack(pixel=("time", "y", "x")).reset_index("pixel").chunk({"pixel": 100})
    labels = dxr.predict(fitted, table, feature_dim="band")
    assert labels.dims == ("pixel",)
    np.testing.assert_array_equal(labels.values, dxr.predict(fitted, make_cube(), feature_dim="band").values.ravel())


# --------------------------------------------------------------------------
# Datasets: variables as features
# --------------------------------------------------------------------------


def test_dataset_variables_as_features(cube, fitted):
    ds = cube.drop_vars("wavelength").to_dataset(dim="band")
    assert list(ds.data_vars) == BANDS
    model = dxr.fit(full_init(), ds)
    assert_same_model(model, fitted)
    labels = dxr.predict(model, ds)
    xr.testing.assert_identical(labels.drop_vars("wavelength", errors="ignore"), dxr.predict(model, cube, "band"))
    proba = dxr.predict_proba(model, ds, feature_dim="layer")  # the stacking dim's name is free
    assert proba.dims == ("time", "y", "x", "component")


def test_dataset_variable_selection_and_order(cube):
    ds = cube.to_dataset(dim="band").drop_vars("wavelength")
    model = dxr.fit(GaussianMixture(2, random_state=0, max_iter=5), ds, variables=["swir", "red"])
    assert model.n_features_in_ == 2
    X, _ = dxr.stack_samples(ds, variables=["swir", "red"])
    rows, _ = rows_of(cube)
    np.testing.assert_array_equal(np.sort(X.compute()[:, 0]), np.sort(rows[:, 2]))
    with pytest.raises(ValueError, match=r"Variable\(s\) \['blue'\] not in the Dataset"):
        dxr.fit(GaussianMixture(2), ds, variables=["blue"])
    # The model knows its variables by name: the whole Dataset predicts as
    # the two it was fitted on; a Dataset without one of them is refused.
    xr.testing.assert_identical(dxr.predict(model, ds), dxr.predict(model, ds[["swir", "red"]]))
    with pytest.raises(ValueError, match=r"missing \['swir'\], unexpected \['nir'\]"):
        dxr.predict(model, ds.drop_vars("swir"))


# --------------------------------------------------------------------------
# From storage, lazily
# --------------------------------------------------------------------------


def test_from_zarr_store(cube, fitted, tmp_path):
    pytest.importorskip("zarr")
    store = tmp_path / "cube.zarr"
    cube.drop_vars("sensor").to_dataset().to_zarr(store)
    ds = xr.open_zarr(store)
    data = ds["reflectance"]
    assert isinstance(data.data, da.Array)
    assert data.chunks == cube.chunks  # the store's own chunks
    model = dxr.fit(full_init(), data, feature_dim="band")
    assert_same_model(model, fitted)
    labels = dxr.predict(model, data, feature_dim="band")
    assert isinstance(labels.data, da.Array)
    np.testing.assert_array_equal(labels.values, dxr.predict(fitted, cube, "band").values)
    # Round trip of the labels through zarr, keeping the sample coordinates.
    labels.to_dataset().to_zarr(tmp_path / "labels.zarr")
    back = xr.open_zarr(tmp_path / "labels.zarr")["label"]
    np.testing.assert_array_equal(back.values, labels.values)
    # The missing label is read back as it was written: integer labels, -1
    # (not decoded into NaN as a CF missing_value would be), attributes kept.
    assert back.dtype == labels.dtype == np.int64 and (back.values == -1).any()
    assert back.attrs == labels.attrs
    xr.testing.assert_identical(back.time, cube.time.drop_vars("sensor"))
    xr.testing.assert_identical(back.lat, cube.lat.drop_vars("sensor"))


def test_from_netcdf_file(cube, fitted, tmp_path):
    path = tmp_path / "cube.nc"
    cube.drop_vars("sensor").to_dataset().to_netcdf(
        path, encoding={"reflectance": {"chunksizes": (1, 6, 8, 3)}}
    )
    with xr.open_dataset(path, chunks={}) as ds:
        data = ds["reflectance"]
        assert isinstance(data.data, da.Array)
        assert data.chunks == cube.chunks  # the file's own chunks
        model = dxr.fit(full_init(), data, feature_dim="band")
        assert_same_model(model, fitted)
        scores = dxr.score_samples(model, data, feature_dim="band").compute()
    np.testing.assert_allclose(scores.values, dxr.score_samples(fitted, cube, "band").values, rtol=1e-9)
    np.testing.assert_array_equal(scores.y.values, cube.y.values)


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------


def test_errors_say_what_is_wrong(cube, fitted):
    with pytest.raises(ValueError, match="feature_dim is required for a DataArray.*'band'"):
        dxr.fit(GaussianMixture(2), cube)
    with pytest.raises(ValueError, match="feature_dim 'bands' is not a dimension"):
        dxr.predict(fitted, cube, feature_dim="bands")
    with pytest.raises(ValueError, match=r"Dimension\(s\) \['x'\] are neither sample dimensions"):
        dxr.predict(fitted, cube, feature_dim="band", sample_dims=("time", "y"))
    with pytest.raises(ValueError, match=r"sample_dims \['z'\] are not dimensions"):
        dxr.predict(fitted, cube, feature_dim="band", sample_dims=("time", "y", "x", "z"))
    with pytest.raises(ValueError, match="cannot be both the feature dimension and a sample dimension"):
        dxr.predict(fitted, cube, feature_dim="band", sample_dims=("time", "y", "x", "band"))
    with pytest.raises(ValueError, match=r"not those the model was fitted on .*missing \['swir'\]"):
        dxr.predict(fitted, cube.isel(band=[0, 1]), feature_dim="band")
    unlabelled = cube.isel(band=[0, 1]).drop_vars(["band", "wavelength"])
    with pytest.warns(UserWarning, match="no coordinate along 'band'"), pytest.raises(
        ValueError, match="X has 2 features, but GaussianMixture is expecting 3"
    ):
        dxr.predict(fitted, unlabelled, feature_dim="band")
    with pytest.raises(ValueError, match="no sample dimension"):
        dxr.predict(fitted, cube.isel(time=0, y=0, x=0), feature_dim="band")
    with pytest.raises(ValueError, match="Expected an xarray DataArray or Dataset, got ndarray"):
        dxr.fit(GaussianMixture(2), np.zeros((4, 2)), feature_dim="band")
    with pytest.raises(ValueError, match="'variables' selects Dataset variables"):
        dxr.fit(GaussianMixture(2), cube, feature_dim="band", variables=["red"])
    with pytest.raises(NotFittedError):
        dxr.predict(GaussianMixture(2), cube, feature_dim="band")
    ds = cube.to_dataset(dim="time").rename({t: f"t{i}" for i, t in enumerate(cube.time.values)})
    with pytest.raises(ValueError, match="already have a dimension 'band'"):
        dxr.fit(GaussianMixture(2), ds, feature_dim="band")


def test_predict_matches_features_by_label():
    """Features are matched by their coordinate, as xarray aligns: bands in
    another order give the same labels; renamed or missing bands are refused
    by name; the names survive save and load."""
    cube = make_cube()
    model = dxr.fit(GaussianMixture(3, random_state=0), cube, feature_dim="band")
    assert list(model.feature_names_in_) == BANDS
    labels = dxr.predict(model, cube, feature_dim="band")
    reordered = cube.isel(band=[2, 0, 1])
    assert list(reordered.band.values) == ["swir", "red", "nir"]
    xr.testing.assert_identical(dxr.predict(model, reordered, feature_dim="band"), labels)
    xr.testing.assert_allclose(
        dxr.predict_proba(model, reordered, feature_dim="band"), dxr.predict_proba(model, cube, feature_dim="band")
    )
    renamed = cube.assign_coords(band=["red", "nir", "tir"])
    with pytest.raises(ValueError, match=r"missing \['swir'\], unexpected \['tir'\]"):
        dxr.predict(model, renamed, feature_dim="band")
    with pytest.raises(ValueError, match=r"missing \['swir'\]"):
        dxr.score_samples(model, cube.sel(band=["red", "nir"]), feature_dim="band")
    # Extra bands are left out: the model's three are taken by name.
    extra = xr.concat([cube, cube.sel(band=["red"]).assign_coords(band=["blue"])], dim="band")
    xr.testing.assert_identical(dxr.predict(model, extra, feature_dim="band"), labels)
    unlabelled = cube.drop_vars(["band", "wavelength"])
    with pytest.warns(UserWarning, match="no coordinate along 'band'"):
        dxr.predict(model, unlabelled, feature_dim="band")


def test_feature_names_survive_save_and_load(tmp_path):
    from daskgmm import load

    cube = make_cube()
    model = dxr.fit(GaussianMixture(2, random_state=0), cube, feature_dim="band")
    model.save(tmp_path / "m.npz")
    loaded = load(tmp_path / "m.npz")
    assert list(loaded.feature_names_in_) == BANDS
    with pytest.raises(ValueError, match=r"unexpected \['tir'\]"):
        dxr.predict(loaded, cube.assign_coords(band=["red", "nir", "tir"]), feature_dim="band")


def test_dataset_variables_are_feature_names():
    cube = make_cube()
    ds = cube.to_dataset(dim="band")
    model = dxr.fit(GaussianMixture(2, random_state=0), ds)
    assert list(model.feature_names_in_) == BANDS
    swapped = ds[["nir", "swir", "red"]]
    xr.testing.assert_identical(dxr.predict(model, swapped), dxr.predict(model, ds))


# --------------------------------------------------------------------------
# Sample weights
# --------------------------------------------------------------------------


def pixel_weights(cube, seed=1, high=4):
    """An integer (y, x) weight map, its y labels in the reverse order of the
    cube's (aligned by label, not by position)."""
    values = np.random.default_rng(seed).integers(0, high, size=(cube.sizes["y"], cube.sizes["x"]))
    return xr.DataArray(values, dims=("y", "x"), coords={"y": cube.y.values, "x": cube.x.values}, name="w").isel(
        y=slice(None, None, -1)
    )


def row_weights(cube, weight):
    """The weight of every row of :func:`rows_of`, by aligning and broadcasting with xarray."""
    samples = cube.isel(band=0, drop=True)
    _, weight = xr.align(samples, weight, join="left")
    return weight.broadcast_like(samples).transpose("time", "y", "x").values.reshape(-1)


@pytest.mark.parametrize("backed", ["dask", "numpy"])
def test_stacked_weights_follow_the_rows(cube, backed):
    """Each stacked weight sits beside its own sample, in the row chunks of
    the stacked data: a cube whose first feature numbers its samples finds
    every sample's weight beside it."""
    numbered = cube.copy(data=np.broadcast_to(np.arange(cube.size // 3.0).reshape(SHAPE + (1,)), SHAPE + (3,)))
    numbered = numbered.chunk(CHUNKS) if backed == "dask" else numbered.compute()
    weight = pixel_weights(cube, high=10**6)
    X, layout = dxr.stack_samples(numbered, "band")
    weights = dxr.stack_sample_weight(weight, layout)
    if backed == "dask":
        assert isinstance(weights, da.Array) and weights.chunks[0] == X.chunks[0]
        assert X.chunks[0] != (X.shape[0],)  # row-chunked: the test means something
        X, weights = dask.compute(X, weights)
    else:
        assert isinstance(weights, np.ndarray)
    assert weights.dtype == np.float64
    np.testing.assert_array_equal(weights, row_weights(cube, weight)[X[:, 0].astype(int)])


def test_integer_weight_map_fits_as_repeated_pixels(cube):
    weight = pixel_weights(cube)
    model = dxr.fit(full_init(), cube, "band", sample_weight=weight)
    rows, keep = rows_of(cube)
    counts = row_weights(cube, weight).astype(int)
    plain = full_init().fit(np.repeat(rows[keep], counts[keep], axis=0))
    assert_same_model(model, plain)
    assert model.n_iter_ == plain.n_iter_


def test_weight_zero_on_a_region_is_the_region_left_out(cube):
    """Weights 0 over a region fit as the cube with that region masked
    (NaN, skipped); samples skipped for a missing feature count for nothing
    whatever their weight."""
    region = dict(y=slice(4, 10), x=slice(2, 9))
    weight = xr.ones_like(cube.isel(time=0, band=0, drop=True).reset_coords(drop=True))
    weight[region] = 0
    masked = cube.copy()
    masked[region] = np.nan
    weighted = dxr.fit(full_init(), cube, "band", sample_weight=weight)
    left_out = dxr.fit(full_init(), masked, "band")
    ones = dxr.fit(full_init(), masked, "band", sample_weight=xr.ones_like(weight) * 5)
    assert_same_model(weighted, left_out)
    assert_same_model(ones, left_out)
    assert weighted.n_iter_ == left_out.n_iter_ == ones.n_iter_


@pytest.mark.filterwarnings("ignore::daskgmm.ConvergenceWarning")  # a fixed number of iterations
@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random_from_data"])
def test_weights_of_two_are_weights_of_three(cube, init_params):
    """Scaling every weight changes no draw and no ratio: the same fit from
    the same random start.  (Weights all equal to 1 are no weights at all,
    whose draws are the unweighted ones: tests/test_select.py.)"""
    model = GaussianMixture(3, init_params=init_params, random_state=0, tol=0, max_iter=30)
    one = xr.DataArray(1.0)
    fits = [dxr.fit(clone(model), cube, "band", sample_weight=one * w) for w in (2, 3)]
    assert_same_model(fits[0], fits[1], rtol=1e-9)
    assert fits[0].n_iter_ == fits[1].n_iter_


@pytest.mark.parametrize("backed", ["dask", "numpy"])
def test_a_weight_per_date_is_broadcast_over_the_pixels(cube, backed):
    data = cube if backed == "dask" else cube.compute()
    weight = xr.DataArray([0.5, 2.0, 1.25], dims="time", coords={"time": cube.time.values})
    if backed == "dask":
        weight = weight.chunk({"time": 2})
    model = dxr.fit(full_init(), data, "band", sample_weight=weight)
    rows, keep = rows_of(cube)
    per_row = np.repeat(weight.values, cube.sizes["y"] * cube.sizes["x"])
    plain = full_init().fit(rows[keep], sample_weight=per_row[keep])
    assert_same_model(model, plain)


def test_a_dataset_variable_as_the_weights(cube):
    weight = pixel_weights(cube)
    ds = cube.drop_vars("wavelength").to_dataset(dim="band")
    ds["w"] = weight
    model = dxr.fit(full_init(), ds, sample_weight="w")
    assert model.n_features_in_ == 3 and list(model.feature_names_in_) == BANDS  # "w" is no feature
    assert_same_model(model, dxr.fit(full_init(), cube, "band", sample_weight=weight))
    subset = dxr.fit(full_init(), ds, sample_weight="w", variables=["red", "nir", "swir"])
    assert_same_model(subset, model, rtol=1e-12)


def test_a_coordinate_of_a_dataarray_as_the_weights(cube):
    weight = pixel_weights(cube)
    model = dxr.fit(full_init(), cube.assign_coords(w=weight), "band", sample_weight="w")
    assert_same_model(model, dxr.fit(full_init(), cube, "band", sample_weight=weight))


def test_weight_errors_say_what_is_wrong(cube):
    weight = pixel_weights(cube).astype(float)
    with pytest.raises(ValueError, match=r"sample_weight 'w' has 1 NaN value\(s\)"):
        dxr.fit(full_init(), cube, "band", sample_weight=weight.where(weight.y != weight.y[0]).where(weight.x == weight.x[0], 1))
    with pytest.raises(ValueError, match=r"sample_weight 'w' lacks 2 label\(s\) of the data along 'x'"):
        dxr.fit(full_init(), cube, "band", sample_weight=weight.isel(x=slice(2, None)))
    with pytest.raises(ValueError, match=r"has dimension\(s\) \['band'\] that are not sample dimensions"):
        dxr.fit(full_init(), cube, "band", sample_weight=weight.expand_dims(band=BANDS))
    with pytest.raises(ValueError, match=r"has 3 values along 'y', the data 12"):
        dxr.fit(full_init(), cube, "band", sample_weight=xr.DataArray(np.ones(3), dims="y"))
    with pytest.raises(ValueError, match="sample_weight has negative values"):
        dxr.fit(full_init(), cube, "band", sample_weight=-weight)
    with pytest.raises(ValueError, match=r"sample_weight 'w' names no variable of the data"):
        dxr.fit(full_init(), cube, "band", sample_weight="w")
    ds = cube.drop_vars("wavelength").to_dataset(dim="band").assign(w=weight)
    with pytest.raises(ValueError, match=r"'w' cannot be both the sample weight and a feature variable"):
        dxr.fit(full_init(), ds, sample_weight="w", variables=["red", "w"])
    with pytest.raises(ValueError, match=r"sample_weight 'v' is not a variable of the Dataset"):
        dxr.fit(full_init(), ds, sample_weight="v")
    with pytest.raises(ValueError, match="sample_weight must be an xarray DataArray"):
        dxr.fit(full_init(), cube, "band", sample_weight=np.ones(3))
