"""
Missing features
================

With ``missing="marginalize"`` a NaN entry is a missing feature of its
sample: the E-step uses each sample's observed features and the M-step the
conditional expectations of the missing ones given the observed. Here a
sensor loses features 2 and 3 most of the time when feature 0 is large, so
the samples that stay complete are mostly of two components; the
marginalised fit is compared with a fit on the complete samples only.
"""

import dask.array as da
import matplotlib.pyplot as plt
import numpy as np

import daskgmm
import daskgmm.plot

# %%
# A known mixture in four dimensions. Features 2 and 3 go missing with
# probability 0.8 where feature 0 exceeds 1.5, and every entry but feature 0
# with probability 0.1 at random.
rng = np.random.default_rng(3)
true_weights = np.array([0.5, 0.3, 0.2])
true_means = np.array([[0.0, 0.0, 0.0, 0.0], [3.0, 3.0, -2.0, 1.0], [-3.0, 2.0, 2.0, -1.0]])
component = rng.choice(3, size=20_000, p=true_weights)
complete = true_means[component] + rng.standard_normal((20_000, 4))
missing = rng.random(complete.shape) < 0.1
missing[:, 2:] |= (complete[:, [0]] > 1.5) & (rng.random((20_000, 2)) < 0.8)
missing[:, 0] = False
holes = np.where(missing, np.nan, complete)
X = da.from_array(holes, chunks=(5_000, 4))
incomplete = missing.any(axis=1)
print(f"{missing.mean():.0%} of the entries missing; {incomplete.mean():.0%} of the samples miss at least one")

# %%
# The marginalised fit on every sample, and a fit on the complete samples
# only. EM converges more slowly when much is missing: a smaller ``tol``.
marginalized = daskgmm.GaussianMixture(n_components=3, missing="marginalize", tol=1e-6, random_state=0).fit(X)
print(f"fitted {marginalized.n_samples_incomplete_} incomplete samples, skipped {marginalized.n_samples_skipped_}")
dropped = daskgmm.GaussianMixture(n_components=3, tol=1e-6, random_state=0).fit(holes[~incomplete])


def errors(model):
    """Largest distance from a true mean to the nearest fitted one, and the
    largest error of that component's weight."""
    distances = np.linalg.norm(true_means[:, None] - model.means_[None], axis=-1)
    nearest = distances.argmin(axis=1)
    return distances.min(axis=1).max(), np.abs(model.weights_[nearest] - true_weights).max()


for name, model in [("missing='marginalize'", marginalized), ("complete samples only", dropped)]:
    mean_error, weight_error = errors(model)
    print(f"{name:>22}: mean error {mean_error:.3f}, weight error {weight_error:.3f}")

# %%
# ``predict`` marginalises the same way: every sample with an observed
# feature gets a label.
labels = marginalized.predict(X).compute()
print(f"labelled {np.count_nonzero(labels >= 0)} of {len(labels)} samples")

# %%
# Features 0 and 2 with :func:`daskgmm.plot.ellipses`: the marginalised
# model's components over the samples (a sample missing feature 2 is not
# drawn), and the true means and those of the fit on complete samples only.
ax = daskgmm.plot.ellipses(marginalized, X, features=(0, 2))
ax.plot(true_means[:, 0], true_means[:, 2], "k+", markersize=18, mew=2, label="true means")
ax.plot(dropped.means_[:, 0], dropped.means_[:, 2], "bo", mfc="none", markersize=12, mew=2, label="complete samples only")
ax.legend(loc="upper right", fontsize="small")
ax.set_title("features 2 and 3 lost where feature 0 is large")
plt.show()
