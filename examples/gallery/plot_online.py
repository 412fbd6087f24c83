"""
Online EM with ``partial_fit``
==============================

Data that arrive in batches are fitted with ``partial_fit``. In the default
``partial_fit_mode="stepwise"`` every batch moves the model (one E-step pass
over the batch, then an M-step from running statistics); in ``"exact"``
mode ``partial_fit`` only accumulates a pass over the batches and
``end_pass()`` makes the M-step, one iteration of ``fit`` on all of them.
"""

import matplotlib.pyplot as plt
import numpy as np

import daskgmm

# %%
# A stream of 30 batches of 1,000 rows from a fixed mixture, and held-out
# data to score the model on.
rng = np.random.default_rng(4)
means = np.array([[0.0, 0.0], [4.0, 1.0], [1.0, 5.0]])


def draw(n):
    component = rng.choice(3, size=n, p=[0.5, 0.3, 0.2])
    return means[component] + rng.standard_normal((n, 2))


batches = [draw(1_000) for _ in range(30)]
held_out = draw(5_000)
reference = daskgmm.GaussianMixture(n_components=3, random_state=0).fit(np.concatenate(batches))

# %%
# Stepwise online EM: the held-out log-likelihood after every batch.
stepwise = daskgmm.GaussianMixture(n_components=3, random_state=0)
stepwise_scores = []
for batch in batches:
    stepwise.partial_fit(batch)
    stepwise_scores.append(stepwise.score(held_out))
print(f"stepwise after {len(batches)} batches: {stepwise_scores[-1]:.4f}; batch fit {reference.score(held_out):.4f}")

# %%
# Exact mode: several passes over the same batches, an M-step at each
# ``end_pass()``, until converged.
exact = daskgmm.GaussianMixture(n_components=3, partial_fit_mode="exact", random_state=0)
exact_scores = []
for _ in range(exact.max_iter):
    for batch in batches:
        exact.partial_fit(batch)
    exact.end_pass()
    exact_scores.append(exact.score(held_out))
    if exact.converged_:
        break
print(f"exact mode converged={exact.converged_} after {len(exact_scores)} passes: {exact_scores[-1]:.4f}")

# %%
# Held-out log-likelihood per sample against the number of batches seen.
fig, ax = plt.subplots(figsize=(7, 4))
ax.plot(np.arange(1, len(batches) + 1), stepwise_scores, ".-", label="stepwise, after each batch")
ax.plot(len(batches) * np.arange(1, len(exact_scores) + 1), exact_scores, "s-", label="exact, after each end_pass()")
ax.axhline(reference.score(held_out), color="k", ls="--", label="fit on all the batches")
ax.set(xlabel="batches seen", ylabel="held-out log-likelihood per sample", title="online EM")
ax.set_ylim(reference.score(held_out) - 0.03, reference.score(held_out) + 0.005)
ax.legend(loc="lower right")
fig.tight_layout()
plt.show()
