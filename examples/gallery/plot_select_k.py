"""
Choosing the number of components by BIC
========================================

:func:`daskgmm.select_n_components` fits every (K, covariance type)
candidate in shared passes over the data and scores each by BIC and AIC.
The curve over K shows where adding components stops paying for their
parameters.
"""

import dask.array as da
import matplotlib.pyplot as plt
import numpy as np

import daskgmm
import daskgmm.plot

# %%
# Data: four components in three dimensions, 20,000 rows in four chunks.
rng = np.random.default_rng(1)
means = np.array([[0.0, 0.0, 0.0], [4.0, 4.0, 0.0], [-4.0, 3.0, 2.0], [0.0, -5.0, 4.0]])
scales = np.array([1.0, 0.7, 1.2, 0.5])
component = rng.choice(4, size=20_000, p=[0.4, 0.3, 0.2, 0.1])
X = da.from_array(means[component] + rng.standard_normal((20_000, 3)) * scales[component, None], chunks=(5_000, 3))

# %%
# Every candidate from K=1 to 7, full and diagonal covariances.
result = daskgmm.select_n_components(
    X, range(1, 8), criterion="bic", covariance_types=("full", "diag"), random_state=0
)
print(result)

# %%
# The result unpacks into the best fitted model and the table.
best, table = result
print(f"best: n_components={best.n_components}, covariance_type={best.covariance_type!r}")

# %%
# :func:`daskgmm.plot.selection` draws the criterion over K, one curve per
# covariance type, and marks the lowest.
ax = daskgmm.plot.selection(result)
ax.set_title("select_n_components")
plt.show()
