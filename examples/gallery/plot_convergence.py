"""
Convergence history
===================

Every EM iteration is logged, and a ``callback`` sees each restart's lower
bound after every pass. The ``n_init`` restarts run concurrently, sharing
every pass over the data; the one with the highest lower bound is kept, and
its iterations are in ``history_`` and ``lower_bounds_``.
"""

import dask.array as da
import matplotlib.pyplot as plt
import numpy as np

import daskgmm
import daskgmm.plot

# %%
# Data: six overlapping components in four dimensions, 20,000 rows.
rng = np.random.default_rng(2)
means = rng.normal(scale=2.5, size=(6, 4))
component = rng.integers(6, size=20_000)
X = da.from_array(means[component] + rng.standard_normal((20_000, 4)), chunks=(5_000, 4))

# %%
# Four restarts from rows drawn at random; the callback records every
# restart's lower bound after every iteration.
records = []
gmm = daskgmm.GaussianMixture(
    n_components=6, n_init=4, init_params="random_from_data", tol=1e-5, max_iter=300, random_state=0
)
gmm.fit(X, callback=records.append)
print(f"kept run: converged={gmm.converged_} in {gmm.n_iter_} iterations; {gmm.n_passes_} passes in all")
print("its last iterations:")
for record in gmm.history_[-3:]:
    print(f"  iteration {record['iteration']}: lower bound {record['lower_bound']:.6f}, change {record['change']:.2e}")

# %%
# :func:`daskgmm.plot.convergence` draws the kept run's lower bound per
# iteration, the last iteration marked converged or not.
ax = daskgmm.plot.convergence(gmm)
ax.set_ylim(gmm.lower_bounds_[-1] - 0.1, gmm.lower_bounds_[-1] + 0.01)
plt.show()

# %%
# Every restart, from the callback's records: each one's lower bound per
# iteration up to the iteration where it converged; they end on different
# local optima. (The first iteration starts from covariances of
# ``reg_covar`` around single rows, as scikit-learn's ``random_from_data``,
# far below the axis.)
iterations = np.array([record["iteration"] for record in records])
bounds = np.array([record["lower_bounds"] for record in records])
active = np.array([record["active"] for record in records])
fig, ax = plt.subplots(figsize=(7, 4))
for run in range(gmm.n_init):
    last = min(np.flatnonzero(active[:, run]).max() + 1, len(records) - 1)
    ax.plot(iterations[: last + 1], bounds[: last + 1, run], "-", label=f"restart {run}: {bounds[last, run]:.4f}")
ax.set(xlabel="iteration", ylabel="lower bound per sample", title="every restart")
ax.set_ylim(bounds[-1].min() - 0.05, bounds[-1].max() + 0.01)
ax.legend()
fig.tight_layout()
plt.show()
