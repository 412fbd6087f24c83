"""Unsupervised land-cover map from a multispectral (time, y, x, band) cube.

A synthetic scene of four surface types (water, forest, crop, bare soil),
each with its own reflectance spectrum and seasonal cycle, is observed on
several dates in four bands.  The sea outside the coastline is masked (NaN)
on every date, and clouds blank out patches on some dates.  The cube is
written to a zarr store and opened lazily with its own chunks, fitted with
:func:`daskgmm.xarray.fit` (``feature_dim="band"``: every (time, y, x) pixel
is a sample, masked pixels are skipped), and the labels come back on the
grid with their coordinates; they are mapped and saved as a PNG.

Run::

    python examples/labelled_cube.py                    # 12 dates of 300 x 400 pixels
    python examples/labelled_cube.py --size 60 80 --dates 4 --plot cube.png

``DASKGMM_EXAMPLE_SMALL=1`` shrinks the scene (used by the tests).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings

import numpy as np
import pandas as pd
import xarray as xr
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from distributed import Client, LocalCluster

from daskgmm import GaussianMixture
from daskgmm import xarray as dxr

BANDS = ["blue", "green", "red", "nir"]
CLASSES = ["water", "forest", "crop", "bare soil"]
# Mean reflectance per class and band, and how much each band swings over a year.
SPECTRA = np.array(
    [
        [0.06, 0.05, 0.03, 0.02],
        [0.03, 0.06, 0.03, 0.35],
        [0.05, 0.09, 0.07, 0.28],
        [0.12, 0.16, 0.20, 0.26],
    ]
)
SEASONAL = np.array(
    [
        [0.00, 0.00, 0.00, 0.00],
        [0.00, 0.01, 0.00, 0.05],
        [0.01, 0.03, -0.02, 0.15],
        [0.01, 0.01, 0.01, 0.01],
    ]
)


def make_scene(ny, nx, n_dates, seed=0):
    """The cube (time, y, x, band) with NaN holes, and the true class map (y, x)."""
    rng = np.random.default_rng(seed)
    # Smooth random fields -> patches of land cover; water below a coastline.
    fields = ndimage.gaussian_filter(rng.normal(size=(3, ny, nx)), sigma=(0, ny / 12, nx / 12))
    classes = 1 + np.argmax(fields, axis=0)
    yy, xx = np.mgrid[0:ny, 0:nx]
    coast = ny * (0.8 - 0.15 * np.sin(xx / nx * 3 * np.pi))
    water = yy > coast
    classes[water] = 0
    sea = yy > coast + ny * 0.08  # beyond the shore: no data at all
    dates = pd.date_range("2024-01-15", periods=n_dates, freq=f"{max(1, 365 // n_dates)}D")
    phase = np.sin(2 * np.pi * (dates.day_of_year.values / 365.25 - 0.25))
    values = (
        SPECTRA[classes][None]
        + phase[:, None, None, None] * SEASONAL[classes][None]
        + rng.normal(scale=0.01, size=(n_dates, ny, nx, len(BANDS)))
    )
    values[:, sea] = np.nan
    for t in range(0, n_dates, 3):  # clouds on every third date
        cloud = ndimage.gaussian_filter(rng.normal(size=(ny, nx)), sigma=ny / 10) > 0.02
        values[t, cloud] = np.nan
    values[rng.random(values.shape) < 0.001] = np.nan  # scattered missing band values
    cube = xr.DataArray(
        values.astype(np.float32),
        dims=("time", "y", "x", "band"),
        coords={
            "time": dates,
            "y": 4_500_000.0 - 20.0 * np.arange(ny),
            "x": 500_000.0 + 20.0 * np.arange(nx),
            "band": BANDS,
        },
        name="reflectance",
        attrs={"units": "1", "description": "synthetic surface reflectance"},
    )
    truth = xr.DataArray(np.where(sea, -1, classes), dims=("y", "x"), coords={"y": cube.y, "x": cube.x})
    return cube, truth


def match_labels(labels, truth, k):
    """Relabel fitted components to the true classes (Hungarian on counts)."""
    valid = (labels >= 0) & (truth >= 0)
    counts = np.zeros((k, k))
    np.add.at(counts, (labels[valid], truth[valid]), 1)
    rows, cols = linear_sum_assignment(-counts)
    mapping = np.full(k, -1)
    mapping[rows] = cols
    return np.where(labels >= 0, mapping[np.maximum(labels, 0)], -1)


def plot(path, truth, labels, dates):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure

    cmap = ListedColormap(["#2b6cb0", "#276749", "#d69e2e", "#9c4221"])
    cmap.set_bad("#cccccc")
    shown = [0, min(1, len(dates) - 1), len(dates) - 1]
    fig = Figure(figsize=(4 * (1 + len(shown)), 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    panels = [("true land cover", truth)] + [(f"clusters {str(dates[t])[:10]}", labels[t]) for t in shown]
    for i, (title, image) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        ax.imshow(np.ma.masked_less(image, 0), cmap=cmap, vmin=0, vmax=3, interpolation="nearest")
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("daskgmm on a (time, y, x, band) cube — grey: no data (sea mask, clouds)")
    fig.savefig(path)


def fit_and_label(store, ny, nx):
    """Fit on the zarr store, opened lazily, and label every pixel."""
    data = xr.open_zarr(store)["reflectance"]  # lazy, the store's own chunks
    print(f"cube {dict(data.sizes)}, chunks {dict(zip(data.dims, (c[0] for c in data.chunks)))}")
    gmm = GaussianMixture(n_components=len(CLASSES), covariance_type="full", n_init=2, random_state=0)
    tic = time.perf_counter()
    dxr.fit(gmm, data, feature_dim="band")  # every (time, y, x) pixel is a sample
    n_pixels = data.sizes["time"] * ny * nx
    print(
        f"fitted in {time.perf_counter() - tic:.2f} s ({gmm.n_iter_} iterations); skipped "
        f"{gmm.n_samples_skipped_} of {n_pixels} pixels with a missing band"
    )
    labels = dxr.predict(gmm, data, feature_dim="band")  # lazy (time, y, x), coordinates kept
    print(f"labels: dims {labels.dims}, first date {str(labels.time.values[0])[:10]}")
    return labels.compute(), gmm


def main():
    # zarr 3's notes on string coordinates and consolidated metadata: the store is fine.
    warnings.filterwarnings("ignore", module=r"zarr\.")
    small = os.environ.get("DASKGMM_EXAMPLE_SMALL") == "1"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=2, default=(40, 50) if small else (300, 400), metavar=("NY", "NX"))
    parser.add_argument("--dates", type=int, default=3 if small else 12)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--plot", default="labelled_cube.png", help="PNG to write")
    args = parser.parse_args()
    ny, nx = args.size

    cube, truth = make_scene(ny, nx, args.dates)
    with tempfile.TemporaryDirectory() as folder:
        # Storage first (as a satellite archive would be): a chunked zarr store.
        store = os.path.join(folder, "cube.zarr")
        chunks = {"time": 1, "y": max(1, ny // 2), "x": max(1, nx // 2), "band": -1}
        cube.to_dataset().chunk(chunks).to_zarr(store)
        with LocalCluster(n_workers=args.workers, threads_per_worker=1, dashboard_address=":0") as cluster, Client(
            cluster
        ):
            labels, gmm = fit_and_label(store, ny, nx)

    mapped = match_labels(labels.values, np.broadcast_to(truth.values, labels.shape), len(CLASSES))
    valid = (labels.values >= 0) & (np.broadcast_to(truth.values, labels.shape) >= 0)
    agreement = np.mean(mapped[valid] == np.broadcast_to(truth.values, labels.shape)[valid])
    print(f"agreement with the true land cover on labelled pixels: {agreement:.1%}")
    plot(args.plot, truth.values, mapped, labels.time.values)
    print(f"map written to {args.plot}")


if __name__ == "__main__":
    main()
