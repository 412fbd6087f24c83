"""
Quickstart: component ellipses over the data
============================================

Fit :class:`daskgmm.GaussianMixture` on a chunked Dask array and draw each
component's two-standard-deviation ellipse over the data. Without a
``distributed.Client`` the passes run on dask's threaded scheduler; with one,
the same code runs on its cluster.
"""

import dask.array as da
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Ellipse

import daskgmm

# %%
# Data: 30,000 draws of a three-component mixture in two dimensions, as a
# Dask array of six row chunks.
rng = np.random.default_rng(0)
means = np.array([[0.0, 0.0], [5.0, 3.0], [-3.0, 4.0]])
covariances = np.array([[[1.0, 0.6], [0.6, 1.0]], [[0.5, 0.0], [0.0, 2.0]], [[1.5, -0.8], [-0.8, 1.0]]])
component = rng.choice(3, size=30_000, p=[0.5, 0.3, 0.2])
points = np.stack([rng.multivariate_normal(means[k], covariances[k]) for k in component])
X = da.from_array(points, chunks=(5_000, 2))
X

# %%
# Fit: scikit-learn's parameters and fitted attributes; one pass over the
# chunks per EM iteration.
gmm = daskgmm.GaussianMixture(n_components=3, covariance_type="full", random_state=0)
gmm.fit(X)
print(f"converged={gmm.converged_} after {gmm.n_iter_} iterations, {gmm.n_passes_} passes over the data")
print("weights", np.round(gmm.weights_, 3))
print("means", np.round(gmm.means_, 2))

# %%
# Outputs are lazy Dask arrays with ``X``'s row chunks.
labels = gmm.predict(X)
print(labels)
print("rows per component:", np.bincount(labels.compute(), minlength=3))

# %%
# Each component's ellipse at two standard deviations over the data, points
# coloured by their predicted component.
fig, ax = plt.subplots(figsize=(6, 5))
ax.scatter(points[:, 0], points[:, 1], c=labels.compute(), s=2, cmap="tab10", vmin=0, vmax=9, alpha=0.3)
for k in range(gmm.n_components):
    values, vectors = np.linalg.eigh(gmm.covariances_[k])
    angle = np.degrees(np.arctan2(vectors[1, -1], vectors[0, -1]))
    width, height = 2 * 2.0 * np.sqrt(values[::-1])
    ax.add_patch(Ellipse(gmm.means_[k], width, height, angle=angle, fill=False, color=f"C{k}", lw=2))
ax.plot(gmm.means_[:, 0], gmm.means_[:, 1], "kx", markersize=10)
ax.set(xlabel="feature 0", ylabel="feature 1", title="GaussianMixture(n_components=3)")
fig.tight_layout()
plt.show()
