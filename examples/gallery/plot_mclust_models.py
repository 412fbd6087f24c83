"""
mclust's models: constrained covariances, a noise component, ICL
=================================================================

R's mclust writes each covariance as ``lambda_k D_k A_k D_k^T``: a volume
``lambda_k``, an orientation ``D_k`` and a shape ``A_k``, each equal across
the components (E), variable (V) or the identity (I).  daskgmm fits all 14
of its models on Dask arrays, with mclust's noise component for background
points and the ICL criterion, which prefers well-separated clusters.
"""

import dask.array as da
import matplotlib.pyplot as plt
import numpy as np

import daskgmm
import daskgmm.plot

# %%
# Data: three elongated clusters sharing their shape but not their
# orientation (mclust's EEV), and 8% background points drawn uniformly
# over the box around them; 20,000 rows in four chunks.
rng = np.random.default_rng(0)
n_cluster, n_noise = 6_000, 1_600
rows = []
for centre, angle in zip([(-6.0, 0.0), (0.0, 5.0), (6.0, -1.0)], [0.3, 1.2, 2.4]):
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    rows.append(centre + (rng.standard_normal((n_cluster, 2)) * [2.0, 0.5]) @ rotation.T)
rows.append(rng.uniform([-12.0, -8.0], [12.0, 11.0], size=(n_noise, 2)))
X = da.from_array(np.vstack(rows), chunks=(5_000, 2))

# %%
# Selection over four of the 14 models and K = 2..4, every candidate with
# a noise component over the data's bounding box, scored by ICL (lower is
# better in daskgmm's sign; mclust's ICL is its negative).
result = daskgmm.select_n_components(
    X, range(2, 5), covariance_types=("EII", "VVI", "EEV", "VVV"), criterion="icl", random_state=0,
    noise="box",
)
print(result)
best, table = result
print(f"best: K={best.n_components}, model {best.covariance_type}, noise weight {best.noise_weight_:.3f}")

# %%
# The noise's samples get the label ``n_components``; the ellipses are the
# Gaussian components'.
labels = best.predict(X).compute()
print("share labelled as noise:", np.mean(labels == best.n_components).round(3), "(truth:", round(n_noise / len(labels), 3), ")")
ax = daskgmm.plot.ellipses(best, X, labels=labels)
ax.set_title(f"{best.covariance_type} with a noise component")
plt.show()
