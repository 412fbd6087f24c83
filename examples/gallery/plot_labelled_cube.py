"""
A labelled cube: xarray and zarr
================================

A small synthetic multispectral scene, ``(time, y, x, band)``, is written to
a zarr store and opened lazily with its chunks. :func:`daskgmm.xarray.fit`
takes every ``(time, y, x)`` pixel as a sample of the ``band`` features,
skipping the masked sea; :func:`daskgmm.xarray.predict` returns the labels on
the grid with their coordinates, the masked pixels labelled -1.
"""

import tempfile
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.colors import ListedColormap
from scipy import ndimage

from daskgmm import GaussianMixture
from daskgmm import xarray as dxr

# %%
# Four surface types with their own spectra in four bands, on three dates:
# patches of forest, crop and bare soil from smooth random fields, water
# below a coastline, and a sea beyond it with no data (NaN) on every date.
rng = np.random.default_rng(5)
bands = ["blue", "green", "red", "nir"]
spectra = np.array([[0.06, 0.05, 0.03, 0.02], [0.03, 0.06, 0.03, 0.35], [0.05, 0.09, 0.07, 0.28], [0.12, 0.16, 0.20, 0.26]])
ny, nx, n_dates = 60, 80, 3
yy, xx = np.mgrid[0:ny, 0:nx]
fields = ndimage.gaussian_filter(rng.normal(size=(3, ny, nx)), sigma=(0, ny / 12, nx / 12))
surface = 1 + np.argmax(fields, axis=0)
coast = ny * (0.8 - 0.15 * np.sin(xx / nx * 3 * np.pi))
surface[yy > coast] = 0
values = spectra[surface][None] + rng.normal(scale=0.01, size=(n_dates, ny, nx, 4))
values[:, yy > coast + ny * 0.08] = np.nan
cube = xr.DataArray(
    values,
    dims=("time", "y", "x", "band"),
    coords={"time": pd.date_range("2024-03-01", periods=n_dates, freq="60D"), "band": bands,
            "y": np.arange(ny), "x": np.arange(nx)},
    name="reflectance",
)

# %%
# Write it to zarr and open it lazily with the store's chunks.
folder = tempfile.TemporaryDirectory()
store = Path(folder.name) / "scene.zarr"
with warnings.catch_warnings():
    # zarr 3's notes on string coordinates and consolidated metadata: the store is fine.
    warnings.filterwarnings("ignore", module=r"zarr\.")
    cube.chunk({"time": 1, "y": 30, "x": 40}).to_dataset().to_zarr(store)
    lazy = xr.open_zarr(store)["reflectance"]
print(lazy)

# %%
# Fit: the band coordinate becomes the model's feature names.
gmm = dxr.fit(GaussianMixture(n_components=4, random_state=0), lazy, feature_dim="band")
print(f"features {list(gmm.feature_names_in_)}; skipped {gmm.n_samples_skipped_} masked pixels")

# %%
# Predict: a lazy DataArray on the (time, y, x) grid, coordinates kept.
labels = dxr.predict(gmm, lazy, feature_dim="band")
print(labels)

# %%
# The labels of the first date, with a qualitative colour per component and
# the masked pixels (label -1) left blank.
first = labels.isel(time=0).compute()
fig, ax = plt.subplots(figsize=(6, 4.5))
first.where(first >= 0).plot.imshow(
    ax=ax, cmap=ListedColormap(plt.get_cmap("tab10").colors[:4]), vmin=-0.5, vmax=3.5,
    cbar_kwargs={"ticks": range(4), "label": "component"},
)
ax.set_title(f"labels on {pd.Timestamp(first.time.values):%Y-%m-%d} (blank: no data)")
fig.tight_layout()
plt.show()
folder.cleanup()
