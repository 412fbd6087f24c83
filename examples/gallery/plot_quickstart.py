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

import daskgmm
import daskgmm.plot

# %%
# Data: 30,000 draws of a three-component mixture in two dimensions, as a
# Dask array of six row chunks. The fit has scikit-learn's parameters and
# fitted attributes, and makes one pass over the chunks per EM iteration;
# ``predict`` returns a lazy Dask array with ``X``'s row chunks.
rng = np.random.default_rng(0)
means = np.array([[0.0, 0.0], [5.0, 3.0], [-3.0, 4.0]])
covariances = np.array([[[1.0, 0.6], [0.6, 1.0]], [[0.5, 0.0], [0.0, 2.0]], [[1.5, -0.8], [-0.8, 1.0]]])
component = rng.choice(3, size=30_000, p=[0.5, 0.3, 0.2])
points = [rng.multivariate_normal(means[k], covariances[k]) for k in component]
X = da.from_array(np.array(points), chunks=5_000)

gmm = daskgmm.GaussianMixture(n_components=3, covariance_type="full", random_state=0).fit(X)
print(f"converged={gmm.converged_} after {gmm.n_iter_} iterations, {gmm.n_passes_} passes")
print("weights", np.round(gmm.weights_, 3), "means", np.round(gmm.means_, 2).tolist())
labels = gmm.predict(X)
print(labels)

# %%
# :func:`daskgmm.plot.ellipses` draws each component's ellipse at two standard
# deviations over a sample of the rows (read once from the Dask array),
# coloured by their predicted component.
ax = daskgmm.plot.ellipses(gmm, X, features=(0, 1))
ax.set_title("GaussianMixture(n_components=3)")
plt.show()
