"""daskgmm.plot draws real figures (Agg): the artists hold the model's
numbers, computed here independently of the module."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import dask.array as da

import daskgmm
from daskgmm import GaussianMixture, NotFittedError, select_n_components

from .conftest import make_blobs

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

from matplotlib.colors import to_rgb  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Ellipse  # noqa: E402

from daskgmm import plot  # noqa: E402

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


def new_axes():
    return Figure().add_subplot()


def full_covariances(model):
    """(K, D, D) from the covariances as stored for each type."""
    cov, k, d = np.asarray(model.covariances_), model.n_components, model.means_.shape[1]
    if model.covariance_type == "full":
        return cov
    if model.covariance_type == "tied":
        return np.repeat(cov[None], k, axis=0)
    if model.covariance_type == "diag":
        return np.stack([np.diag(row) for row in cov])
    return np.stack([value * np.eye(d) for value in cov])


def drawn_ellipses(ax):
    return [patch for patch in ax.patches if isinstance(patch, Ellipse)]


def assert_ellipses_are(ax, centres, covariances, n_std):
    """One ellipse per component, centred on its projected mean, its
    axes 2 * n_std * sqrt(eigenvalues) of its projected (2, 2) covariance,
    the width along the major eigenvector."""
    ellipses = drawn_ellipses(ax)
    assert len(ellipses) == len(centres)
    for ellipse, centre, cov in zip(ellipses, centres, covariances):
        np.testing.assert_allclose(ellipse.center, centre, rtol=1e-10, atol=1e-12)
        small, large = np.linalg.eigvalsh(cov)
        np.testing.assert_allclose(
            [ellipse.width, ellipse.height], [2 * n_std * np.sqrt(large), 2 * n_std * np.sqrt(small)], rtol=1e-9
        )
        if not np.isclose(small, large, rtol=1e-6):
            theta = np.radians(ellipse.angle)
            direction = np.array([np.cos(theta), np.sin(theta)])
            np.testing.assert_allclose(cov @ direction, large * direction, rtol=1e-7, atol=1e-9)
        assert not ellipse.get_fill()


@pytest.fixture(scope="module")
def data():
    X, labels, _ = make_blobs(n=900, d=3, k=3, seed=4)
    return X, labels


@pytest.fixture(scope="module", params=COVARIANCE_TYPES)
def fitted(request, data):
    X, _ = data
    return GaussianMixture(3, covariance_type=request.param, random_state=0).fit(X)


# --------------------------------------------------------------------------
# ellipses
# --------------------------------------------------------------------------


def test_ellipses_on_two_features(fitted, data):
    X, _ = data
    ax = plot.ellipses(fitted, X, features=(2, 0), ax=new_axes(), n_std=1.5)
    covariances = full_covariances(fitted)[:, [2, 0]][:, :, [2, 0]]
    assert_ellipses_are(ax, fitted.means_[:, [2, 0]], covariances, 1.5)
    means_line = [line for line in ax.get_lines() if line.get_label() == "means"][0]
    np.testing.assert_array_equal(np.column_stack(means_line.get_data()), fitted.means_[:, [2, 0]])
    # Every row (fewer than max_points), coloured by its predicted component.
    (scatter,) = ax.collections
    shown = scatter.get_offsets()
    np.testing.assert_array_equal(np.asarray(shown), X[:, [2, 0]])
    colors = plot._component_colors(3)
    expected = [to_rgb(colors[label]) for label in fitted.predict(X)]
    np.testing.assert_allclose(scatter.get_facecolors()[:, :3], expected)
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("feature 2", "feature 0")


def test_ellipses_on_the_principal_axes(fitted, data):
    X, _ = data
    ax = plot.ellipses(fitted, X, features="pca", ax=new_axes())
    # The mixture's covariance as E[x x^T] - mu mu^T over its components.
    w, means, covs = fitted.weights_, fitted.means_, full_covariances(fitted)
    mu = w @ means
    total = sum(wk * (ck + np.outer(mk, mk)) for wk, mk, ck in zip(w, means, covs)) - np.outer(mu, mu)
    values, vectors = np.linalg.eigh(total)
    axes = vectors[:, ::-1][:, :2]
    # Each axis is defined up to its sign: take the one drawn.
    centres = np.asarray([e.center for e in drawn_ellipses(ax)])
    expected = (means - mu) @ axes
    signs = np.sign(np.sum(centres * expected, axis=0))
    axes = axes * signs
    projected = np.einsum("ia,kij,jb->kab", axes, covs, axes)
    assert_ellipses_are(ax, (means - mu) @ axes, projected, 2.0)
    np.testing.assert_allclose(np.asarray(ax.collections[0].get_offsets()), (X - mu) @ axes, atol=1e-9)
    share = values[::-1][:2] / values.sum()
    assert ax.get_xlabel() == f"PC1 ({100 * share[0]:.1f}% of the variance)"
    assert ax.get_ylabel() == f"PC2 ({100 * share[1]:.1f}% of the variance)"


def test_ellipses_by_feature_name():
    pd = pytest.importorskip("pandas")
    X, _, _ = make_blobs(n=600, d=3, k=2, seed=1)
    frame = pd.DataFrame(X, columns=["red", "nir", "swir"])
    model = GaussianMixture(2, covariance_type="diag", random_state=0).fit(frame)
    ax = plot.ellipses(model, frame, features=("swir", "red"), ax=new_axes())
    assert_ellipses_are(ax, model.means_[:, [2, 0]], full_covariances(model)[:, [2, 0]][:, :, [2, 0]], 2.0)
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("swir", "red")
    assert len(ax.collections[0].get_offsets()) == 600


def test_ellipses_read_a_dask_array_once_for_a_subsample():
    X, _, _ = make_blobs(n=4000, d=2, k=3, seed=2)
    model = GaussianMixture(3, random_state=0).fit(X)

    class CountingSource:
        """An array-like whose every read is counted."""

        def __init__(self, array):
            self.array, self.shape, self.dtype, self.ndim = array, array.shape, array.dtype, array.ndim
            self.reads = 0

        def __getitem__(self, index):
            self.reads += 1
            return self.array[index]

    source = CountingSource(X)
    dX = da.from_array(source, chunks=(500, 2), asarray=True)
    source.reads = 0  # from_array reads an empty slice for its meta
    ax = plot.ellipses(model, dX, ax=new_axes(), max_points=700, random_state=3)
    assert source.reads <= dX.numblocks[0]  # each chunk read at most once
    shown = np.asarray(ax.collections[0].get_offsets())
    assert shown.shape == (700, 2)
    rows = {tuple(row) for row in X}
    assert all(tuple(point) in rows for point in shown) and len({tuple(p) for p in shown}) == 700
    # The same subsample as NumPy input with the same seed.
    same = plot.ellipses(model, X, ax=new_axes(), max_points=700, random_state=3)
    np.testing.assert_array_equal(np.asarray(same.collections[0].get_offsets()), shown)
    assert len(drawn_ellipses(ax)) == 3


def test_ellipses_with_given_labels_and_rows_left_out(data):
    X, true_labels = data
    model = GaussianMixture(3, random_state=0).fit(X)
    X = X.copy()
    X[:5, 1] = np.nan  # a missing feature: not a row the fit (dropping such rows) used
    labels = true_labels.copy()
    labels[5:10] = -1
    ax = plot.ellipses(model, X, features=(0, 1), ax=new_axes(), labels=labels)
    scatter = ax.collections[0]
    np.testing.assert_array_equal(np.asarray(scatter.get_offsets()), X[5:, :2])
    colors = plot._component_colors(3)
    expected = [to_rgb("0.6") if label < 0 else to_rgb(colors[label]) for label in labels[5:]]
    np.testing.assert_allclose(scatter.get_facecolors()[:, :3], expected)


def test_ellipses_without_data_and_with_many_components():
    X, _, _ = make_blobs(n=1200, d=2, k=12, seed=5)
    model = GaussianMixture(12, covariance_type="spherical", random_state=0).fit(X)
    ax = plot.ellipses(model, ax=new_axes(), n_std=1.0)
    assert len(ax.collections) == 0 and len(drawn_ellipses(ax)) == 12
    assert ax.get_legend() is None  # no legend of 12 entries
    colors = [ellipse.get_edgecolor()[:3] for ellipse in drawn_ellipses(ax)]
    assert len(set(colors)) == 12  # tab20 beyond 10
    xmin, xmax = ax.get_xlim()
    assert xmin < model.means_[:, 0].min() and xmax > model.means_[:, 0].max()  # the ellipses are in view


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"features": (0, 3)}, r"features: index 3 is out of range for a model of 3 features \(0 to 2\)"),
        ({"features": (1, 1)}, r"features names the same feature twice: \(1, 1\)"),
        ({"features": (0, 1, 2)}, r"features must name exactly two features, got 3"),
        ({"features": "pcb"}, r"features must be two feature indices or names, or 'pca'; got 'pcb'"),
        ({"features": ("red", 0)}, r"features names 'red', but the model has no feature_names_in_"),
        ({"features": (0.5, 1)}, r"features holds 0.5: give feature indices \(int\) or names \(str\)"),
        ({"n_std": 0}, r"n_std must be a number > 0, got 0"),
        ({"max_points": 0}, r"max_points must be an int >= 1, got 0"),
        ({"X": np.zeros((5, 2))}, r"X must be \(n_samples, 3\) like the data the model was fitted on; got shape \(5, 2\)"),
        ({"X": np.zeros((5, 3)), "labels": [0, 1]}, r"labels must be \(n_samples,\) = \(5,\) like X's rows"),
    ],
)
def test_ellipses_errors(data, kwargs, message):
    model = GaussianMixture(2, random_state=0).fit(data[0])
    with pytest.raises(ValueError, match=message):
        plot.ellipses(model, **{"ax": new_axes(), **kwargs})


def test_ellipses_need_a_fitted_model_of_two_features():
    with pytest.raises(NotFittedError):
        plot.ellipses(GaussianMixture(2), ax=new_axes())
    one = GaussianMixture(2, random_state=0).fit(np.random.default_rng(0).normal(size=(100, 1)))
    with pytest.raises(ValueError, match="ellipses needs a model of at least 2 features; this one has 1"):
        plot.ellipses(one, ax=new_axes())


def test_bayesian_mixture_ellipses(data):
    X, _ = data
    model = daskgmm.BayesianGaussianMixture(n_components=4, covariance_type="tied", random_state=0).fit(X)
    ax = plot.ellipses(model, X, features=(0, 1), ax=new_axes())
    assert_ellipses_are(ax, model.means_[:, :2], full_covariances(model)[:, :2, :2], 2.0)


# --------------------------------------------------------------------------
# selection and convergence
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def selected(data):
    return select_n_components(data[0], range(1, 5), covariance_types=("spherical", "full"), random_state=0)


@pytest.mark.parametrize("criterion", [None, "aic"])
def test_selection_curves_are_the_table(selected, criterion):
    ax = plot.selection(selected, criterion=criterion, ax=new_axes())
    column = criterion or selected.criterion
    table = selected.table
    lines = ax.get_lines()
    assert [line.get_label() for line in lines[:2]] == ["spherical", "full"]
    for line, kind in zip(lines, ("spherical", "full")):
        rows = table["covariance_type"] == kind
        np.testing.assert_array_equal(line.get_xdata(), table["n_components"][rows])
        np.testing.assert_array_equal(line.get_ydata(), table[column][rows])
    best = int(np.argmin(table[column]))
    (marker,) = lines[2:]
    assert list(marker.get_xdata()) == [table["n_components"][best]]
    assert list(marker.get_ydata()) == [table[column][best]]
    k, kind = int(table["n_components"][best]), str(table["covariance_type"][best])
    assert marker.get_label() == f"lowest {column.upper()}: {k} components, {kind}"
    assert ax.get_ylabel() == f"{column.upper()} (lower is better)"
    if criterion is None:
        assert (k, kind) == (selected.best_.n_components, selected.best_.covariance_type)


def test_selection_from_a_table_in_any_order(selected):
    order = np.arange(len(selected.table["n_components"]))[::-1]  # descending K, full first
    table = {name: np.asarray(values)[order] for name, values in selected.table.items()}
    ax = plot.selection(table, ax=new_axes())  # a table alone: BIC
    full = ax.get_lines()[0]
    assert full.get_label() == "full"
    np.testing.assert_array_equal(full.get_xdata(), [1, 2, 3, 4])
    rows = selected.table["covariance_type"] == "full"
    np.testing.assert_array_equal(full.get_ydata(), selected.table["bic"][rows])


def test_selection_errors(selected):
    with pytest.raises(ValueError, match="Invalid value for 'criterion': 'loglik'. Use 'bic', 'aic' or 'icl'."):
        plot.selection(selected, criterion="loglik", ax=new_axes())
    table = {k: v for k, v in selected.table.items() if k != "aic"}
    with pytest.raises(ValueError, match="the table has no column 'aic'; its columns are"):
        plot.selection(table, criterion="aic", ax=new_axes())
    with pytest.raises(ValueError, match="result_or_table must be a SelectionResult or its table"):
        plot.selection([1, 2], ax=new_axes())


def test_convergence_is_the_best_runs_history(data):
    model = GaussianMixture(3, n_init=3, random_state=0).fit(data[0])
    ax = plot.convergence(model, ax=new_axes())
    history, mark = ax.get_lines()
    np.testing.assert_array_equal(history.get_ydata(), model.lower_bounds_)
    np.testing.assert_array_equal(history.get_xdata(), np.arange(1, len(model.lower_bounds_) + 1))
    assert history.get_label() == "lower bound (best of 3 runs)"
    assert model.converged_ and mark.get_label() == f"converged after {len(model.lower_bounds_)} iterations (tol=0.001)"
    assert list(mark.get_ydata()) == [model.lower_bounds_[-1]]


def test_convergence_marks_a_run_that_did_not_converge(data):
    with pytest.warns(daskgmm.ConvergenceWarning):
        model = GaussianMixture(3, max_iter=2, tol=0.0, random_state=0).fit(data[0])
    ax = plot.convergence(model, ax=new_axes())
    history, mark = ax.get_lines()
    np.testing.assert_array_equal(history.get_ydata(), model.lower_bounds_)
    assert mark.get_label() == "did not converge in 2 iterations"


# --------------------------------------------------------------------------
# Figures, files, the optional dependency
# --------------------------------------------------------------------------


def test_new_figures_and_png_files(tmp_path, selected, data):
    import matplotlib.pyplot as plt

    model = selected.best_
    try:
        axes = [plot.ellipses(model, data[0]), plot.selection(selected), plot.convergence(model)]
        assert len({id(ax.figure) for ax in axes}) == 3  # each on a new figure
        for i, ax in enumerate(axes):
            path = tmp_path / f"figure{i}.png"
            ax.figure.savefig(path)
            content = path.read_bytes()
            assert content.startswith(b"\x89PNG\r\n\x1a\n") and len(content) > 10_000
    finally:
        plt.close("all")


def test_a_missing_matplotlib_is_a_clear_import_error(monkeypatch, data):
    model = GaussianMixture(2, random_state=0).fit(data[0])
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    for draw in (lambda: plot.ellipses(model), lambda: plot.convergence(model)):
        with pytest.raises(ImportError, match=r'daskgmm.plot needs matplotlib: pip install "daskgmm\[plot\]"'):
            draw()


def test_importing_daskgmm_does_not_import_matplotlib():
    code = "import sys, daskgmm, daskgmm.plot; print('matplotlib' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
