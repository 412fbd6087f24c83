"""Pictures of a fitted mixture: ellipses, selection curves, convergence.

Component ellipses over the data, the model selection curves over the number
of components, the lower bound per EM iteration.  matplotlib is an optional dependency (``pip install "daskgmm[plot]"``); it is
imported by these functions, not by ``import daskgmm`` or ``import
daskgmm.plot``.  Each function draws on the given Axes (a new figure from
:mod:`matplotlib.pyplot` when none is given) and returns it.
"""

from __future__ import annotations

import itertools
import numbers
import warnings
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from . import _engine
from ._covariance import covariance_model

if TYPE_CHECKING:  # matplotlib is imported when drawing only
    from matplotlib.axes import Axes

    from .bayesian_mixture import BayesianGaussianMixture
    from .mixture import GaussianMixture
    from .select import SelectionResult

__all__ = ["ellipses", "selection", "convergence"]

PLOT_EXTRA_HINT = 'pip install "daskgmm[plot]"'
CRITERIA = ("bic", "aic", "icl")
# Components beyond this many get no legend entry of their own.
LEGEND_MAX_COMPONENTS = 10
NO_LABEL_COLOR = "0.6"


def _require_matplotlib():
    """Import matplotlib, or raise an ImportError saying how to install it."""
    try:
        import matplotlib
    except ImportError as exc:
        raise ImportError(f"daskgmm.plot needs matplotlib: {PLOT_EXTRA_HINT}") from exc
    return matplotlib


def _axes(ax):
    _require_matplotlib()
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    return plt.subplots()[1]


def _fitted(model, *names):
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(model, list(names))


def _component_colors(n):
    """``n`` colours from a qualitative colormap (tab10, tab20 beyond 10)."""
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(j % cmap.N) for j in range(n)]


# --------------------------------------------------------------------------
# Projections of the mixture on two axes
# --------------------------------------------------------------------------


def _total_covariance(weights, means, covariances, covariance_type):
    """The covariance of the whole mixture, (D, D): the weighted mean of the
    components' covariances plus the weighted scatter of their means."""
    weights = np.asarray(weights, dtype=np.float64)
    weights = weights / weights.sum()
    means = np.asarray(means, dtype=np.float64)
    centred = means - weights @ means
    between = np.einsum("k,ki,kj->ij", weights, centred, centred)
    within = covariance_model(covariance_type).within(weights, np.asarray(covariances, dtype=np.float64), means.shape[1])
    return within + between


def _projected_covariances(covariances, covariance_type, axes, n_components):
    """``axes.T @ Sigma_k @ axes`` for every component, (K, 2, 2), from the
    covariances as a model stores them for ``covariance_type``; ``axes``
    is (D, 2)."""
    covariances = np.asarray(covariances, dtype=np.float64)
    return covariance_model(covariance_type).projected(covariances, axes, n_components)


def _feature_index(model, feature, n_features):
    names = getattr(model, "feature_names_in_", None)
    if isinstance(feature, str):
        if names is None:
            raise ValueError(
                f"features names {feature!r}, but the model has no feature_names_in_ (it was fitted without "
                "feature names); give feature indices."
            )
        listed = [str(name) for name in names]
        if feature not in listed:
            raise ValueError(f"features: {feature!r} is not a feature of the model; its features are {listed}.")
        return listed.index(feature)
    if isinstance(feature, numbers.Integral) and not isinstance(feature, bool):
        if not 0 <= feature < n_features:
            raise ValueError(
                f"features: index {feature} is out of range for a model of {n_features} features (0 to {n_features - 1})."
            )
        return int(feature)
    raise ValueError(f"features holds {feature!r}: give feature indices (int) or names (str).")


def _feature_name(model, index):
    names = getattr(model, "feature_names_in_", None)
    return f"feature {index}" if names is None else str(names[index])


def _projection(model, features):
    """(axes (D, 2), origin (D,), axis labels) for ``features``."""
    n_features = np.asarray(model.means_).shape[1]
    if n_features < 2:
        raise ValueError(f"ellipses needs a model of at least 2 features; this one has {n_features}.")
    if isinstance(features, str):
        if features != "pca":
            raise ValueError(f"features must be two feature indices or names, or 'pca'; got {features!r}.")
        from sklearn.utils.extmath import svd_flip

        weights = np.asarray(model.weights_, dtype=np.float64)
        covariance = _total_covariance(weights, model.means_, model.covariances_, model.covariance_type)
        values, vectors = np.linalg.eigh(covariance)
        order = np.argsort(values)[::-1][:2]
        axes, _ = svd_flip(vectors[:, order], None)  # a deterministic sign for each axis
        share = values[order] / values.sum()
        origin = (weights / weights.sum()) @ np.asarray(model.means_, dtype=np.float64)
        return axes, origin, [f"PC{i + 1} ({100 * s:.1f}% of the variance)" for i, s in enumerate(share)]
    try:
        pair = list(features)
    except TypeError:
        raise ValueError(f"features must be two feature indices or names, or 'pca'; got {features!r}.") from None
    if len(pair) != 2:
        raise ValueError(f"features must name exactly two features, got {len(pair)}: {features!r}.")
    index = [_feature_index(model, feature, n_features) for feature in pair]
    if index[0] == index[1]:
        raise ValueError(f"features names the same feature twice: {features!r}.")
    axes = np.zeros((n_features, 2))
    axes[index, [0, 1]] = 1.0
    return axes, np.zeros(n_features), [_feature_name(model, i) for i in index]


def _add_ellipse(ax, mean, covariance, n_std=2.0, **style):
    """Draw the ``n_std`` ellipse of a 2-D Gaussian (``mean`` (2,),
    ``covariance`` (2, 2)) on ``ax``; return the patch."""
    from matplotlib.patches import Ellipse

    values, vectors = np.linalg.eigh(covariance)
    values = np.clip(values, 0.0, None)  # rounding may leave a tiny negative
    angle = np.degrees(np.arctan2(vectors[1, 1], vectors[0, 1]))  # the major axis
    width, height = 2.0 * n_std * np.sqrt(values[::-1])
    return ax.add_patch(Ellipse(tuple(mean), width, height, angle=angle, fill=False, **style))


# --------------------------------------------------------------------------
# The data: a subsample, read once
# --------------------------------------------------------------------------


def _subsample(model, X, labels, max_points, random_state):
    """At most ``max_points`` rows of X (and of ``labels``) drawn at random
    without replacement, in their order, as NumPy; one compute for Dask."""
    return _engine.subsample(X, labels, np.asarray(model.means_).shape[1], max_points, random_state)


def ellipses(
    model: GaussianMixture | BayesianGaussianMixture,
    X: ArrayLike | None = None,
    *,
    features: tuple[int | str, int | str] | str = (0, 1),
    ax: Axes | None = None,
    n_std: float = 2.0,
    max_points: int = 5000,
    labels: ArrayLike | None = None,
    random_state: int | np.random.Generator | None = 0,
) -> Axes:
    """Draw each component's ellipse over the data, on two features or two principal axes.

    The ``n_std`` ellipse of each component's covariance projected on the
    two axes, its mean marked, over a random subsample of the data
    coloured by component.

    Parameters
    ----------
    model : GaussianMixture or BayesianGaussianMixture
        A fitted mixture, of any covariance type.
    X : array-like or dask.array.Array, shape (n_samples, n_features), optional
        Data to show as a scatter coloured by label: at most ``max_points``
        rows drawn at random (a Dask array is read once, for those rows
        only).  Without it, only the ellipses and the means are drawn.
    features : (int or str, int or str) or 'pca', default=(0, 1)
        The two features on the axes, by index or (for a model with
        ``feature_names_in_``) by name; or ``'pca'``: the first two principal
        axes of the mixture's total covariance (computed from the weights,
        means and covariances: no pass over the data), data and ellipses
        projected on them about the mixture's mean.
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new figure if None.
    n_std : float, default=2.0
        Half-axes of each ellipse in standard deviations of the component's
        projected covariance.
    max_points : int, default=5000
        Most rows of X drawn.
    labels : array-like of int, shape (n_samples,), optional
        Colours of the points (-1: no label, grey); default the model's
        ``predict`` of the rows drawn.  Rows with a missing (NaN or
        infinite) feature are left out unless the model was fitted with
        ``missing='marginalize'``.
    random_state : int, default=0
        Seed of the choice of rows.

    Returns
    -------
    matplotlib.axes.Axes
        The Axes drawn on: one ``matplotlib.patches.Ellipse`` per component,
        the means as one line of markers, the data as one scatter.

    See Also
    --------
    convergence : The lower bound per EM iteration.
    daskgmm.GaussianMixture.predict : The labels the points are coloured by.

    Examples
    --------
    >>> import matplotlib; matplotlib.use("Agg")
    >>> import numpy as np
    >>> import daskgmm
    >>> from daskgmm import plot
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.normal(-4, 1, (300, 3)), rng.normal(4, 1, (300, 3))])
    >>> gmm = daskgmm.GaussianMixture(2, random_state=0).fit(X)
    >>> ax = plot.ellipses(gmm, X, features=(0, 2))
    >>> len(ax.patches)
    2
    >>> ax = plot.ellipses(gmm, X, features="pca")
    >>> ax.get_xlabel()
    'PC1 (96.1% of the variance)'
    """
    _fitted(model, "means_", "covariances_", "weights_")
    if not isinstance(n_std, numbers.Real) or isinstance(n_std, bool) or not n_std > 0:
        raise ValueError(f"n_std must be a number > 0, got {n_std!r}.")
    if not isinstance(max_points, numbers.Integral) or isinstance(max_points, bool) or max_points < 1:
        raise ValueError(f"max_points must be an int >= 1, got {max_points!r}.")
    axes, origin, axis_labels = _projection(model, features)
    ax = _axes(ax)
    n_components = len(model.weights_)
    colors = _component_colors(n_components)

    if X is not None:
        rows, row_labels = _subsample(model, X, labels, max_points, random_state)
        # The rows the fit used: every feature finite, or with 'marginalize'
        # at least one (a point missing a drawn coordinate is not drawn).
        finite = np.isfinite(rows)
        keep = finite.any(axis=1) if getattr(model, "missing", "error") == "marginalize" else finite.all(axis=1)
        rows, row_labels = rows[keep], None if row_labels is None else row_labels[keep]
        if row_labels is None and len(rows):
            with warnings.catch_warnings():
                # The rows are the model's features in its order, names or not.
                warnings.filterwarnings("ignore", message="X does not have valid feature names")
                row_labels = model.predict(rows)
        elif row_labels is None:
            row_labels = np.zeros(0, dtype=int)
        row_labels = np.asarray(row_labels)
        palette = _component_colors(max(n_components, int(row_labels.max(initial=-1)) + 1))
        row_colors = [NO_LABEL_COLOR if label < 0 else palette[label % len(palette)] for label in row_labels.tolist()]
        shown = (rows - origin) @ axes
        ax.scatter(shown[:, 0], shown[:, 1], c=row_colors, s=4, alpha=0.4, linewidths=0, rasterized=True)

    centres = (np.asarray(model.means_, dtype=np.float64) - origin) @ axes
    projected = _projected_covariances(model.covariances_, model.covariance_type, axes, n_components)
    for k, covariance in enumerate(projected):
        label = f"component {k} (weight {model.weights_[k]:.2f})" if n_components <= LEGEND_MAX_COMPONENTS else None
        _add_ellipse(ax, centres[k], covariance, n_std, edgecolor=colors[k], linewidth=2, label=label)
    ax.plot(
        centres[:, 0], centres[:, 1], linestyle="none", marker="X", markersize=9, color="black",
        markeredgecolor="white", label="means",
    )
    ax.set_xlabel(axis_labels[0])
    ax.set_ylabel(axis_labels[1])
    if isinstance(features, str):  # principal axes share the data's unit: circles stay round
        ax.set_aspect("equal", adjustable="datalim")
    ax.autoscale_view()
    if n_components <= LEGEND_MAX_COMPONENTS:
        ax.legend(loc="best", fontsize="small", title=f"{n_std:g}σ ellipses")
    return ax


# --------------------------------------------------------------------------
# Model selection and convergence
# --------------------------------------------------------------------------


def selection(
    result_or_table: SelectionResult | dict[str, np.ndarray], *, criterion: str | None = None, ax: Axes | None = None
) -> Axes:
    """Draw a model selection's criterion over the number of components.

    One curve per covariance type, the lowest value marked.

    Parameters
    ----------
    result_or_table : daskgmm.SelectionResult or dict
        What :func:`daskgmm.select_n_components` returned, or its ``table``.
    criterion : {'bic', 'aic', 'icl'}, optional
        The column drawn; default the result's criterion ('bic' for a
        table).  'icl' needs a selection made with ``criterion='icl'``.
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new figure if None.

    Returns
    -------
    matplotlib.axes.Axes
        The Axes drawn on: one line per covariance type (labelled with it),
        in the table's order, and one marker on the lowest value.

    See Also
    --------
    daskgmm.select_n_components : Fits the candidates and makes the table.

    Examples
    --------
    >>> import matplotlib; matplotlib.use("Agg")
    >>> import numpy as np
    >>> import daskgmm
    >>> from daskgmm import plot
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.normal(-4, 1, (300, 2)), rng.normal(4, 1, (300, 2))])
    >>> result = daskgmm.select_n_components(
    ...     X, range(1, 5), covariance_types=("full", "diag"), random_state=0
    ... )
    >>> ax = plot.selection(result)
    >>> [line.get_label() for line in ax.get_lines()]
    ['full', 'diag', 'lowest BIC: 2 components, diag']
    """
    table = getattr(result_or_table, "table", result_or_table)
    if not isinstance(table, dict):
        raise ValueError(
            f"result_or_table must be a SelectionResult or its table (a dict), got {type(result_or_table).__name__}."
        )
    if criterion is None:
        criterion = getattr(result_or_table, "criterion", "bic")
    if criterion not in CRITERIA:
        raise ValueError(f"Invalid value for 'criterion': {criterion!r}. Use 'bic', 'aic' or 'icl'.")
    missing = [key for key in ("n_components", "covariance_type", criterion) if key not in table]
    if missing:
        raise ValueError(f"the table has no column {missing[0]!r}; its columns are {list(table)}.")
    ks = np.asarray(table["n_components"])
    kinds = np.asarray(table["covariance_type"]).astype(str)
    values = np.asarray(table[criterion], dtype=np.float64)
    if not (ks.shape == kinds.shape == values.shape and ks.ndim == 1 and ks.size):
        raise ValueError(
            "the table's columns must be 1-D and of one length, with at least one row; got n_components "
            f"{ks.shape}, covariance_type {kinds.shape}, {criterion} {values.shape}."
        )
    _require_matplotlib()
    from matplotlib.ticker import MaxNLocator

    ax = _axes(ax)
    # A marker of its own per type: curves that coincide stay told apart.
    for kind, marker in zip(dict.fromkeys(kinds.tolist()), itertools.cycle("osD^v<>ph")):
        rows = np.flatnonzero(kinds == kind)
        rows = rows[np.argsort(ks[rows], kind="stable")]
        ax.plot(ks[rows], values[rows], marker=marker, fillstyle="none", markeredgewidth=1.5, label=kind)
    finite = np.isfinite(values)
    if finite.any():
        best = int(np.flatnonzero(finite)[np.argmin(values[finite])])  # the first on ties, as select does
        ax.plot(
            [ks[best]], [values[best]], linestyle="none", marker="*", markersize=18, color="gold",
            markeredgecolor="black", label=f"lowest {criterion.upper()}: {int(ks[best])} components, {kinds[best]}",
        )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("number of components")
    ax.set_ylabel(f"{criterion.upper()} (lower is better)")
    ax.legend(loc="best", fontsize="small", title="covariance type")
    return ax


def convergence(model: GaussianMixture | BayesianGaussianMixture, *, ax: Axes | None = None) -> Axes:
    """Draw the lower bound of every EM iteration of a fitted mixture.

    With ``n_init > 1`` it is the history of the best run, the one the model
    keeps.  The last iteration is marked as converged or not.

    Parameters
    ----------
    model : GaussianMixture or BayesianGaussianMixture
        A fitted mixture (``lower_bounds_``, ``converged_``).
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new figure if None.

    Returns
    -------
    matplotlib.axes.Axes
        The Axes drawn on: the lower bound against the iteration (1 to
        ``len(lower_bounds_)``) as its first line, the last iteration marked.

    See Also
    --------
    ellipses : The fitted components over the data.

    Examples
    --------
    >>> import matplotlib; matplotlib.use("Agg")
    >>> import numpy as np
    >>> import daskgmm
    >>> from daskgmm import plot
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.normal(-4, 1, (300, 2)), rng.normal(4, 1, (300, 2))])
    >>> gmm = daskgmm.GaussianMixture(2, n_init=2, random_state=0).fit(X)
    >>> ax = plot.convergence(gmm)
    >>> list(ax.get_lines()[0].get_ydata()) == list(gmm.lower_bounds_)
    True
    """
    _fitted(model, "lower_bounds_", "converged_")
    history = np.asarray(model.lower_bounds_, dtype=np.float64)
    if history.size == 0:
        raise ValueError("the model has no lower bound history (lower_bounds_ is empty): no EM iteration ran.")
    ax = _axes(ax)
    iterations = np.arange(1, history.size + 1)
    n_init = getattr(model, "n_init", 1)
    ax.plot(iterations, history, marker="o", markersize=3, label=f"lower bound (best of {n_init} runs)" if n_init > 1 else "lower bound")
    if model.converged_:
        mark = dict(color="C2", label=f"converged after {history.size} iterations (tol={getattr(model, 'tol', 'n/a')})")
    else:
        mark = dict(color="C3", label=f"did not converge in {history.size} iterations")
    ax.plot(iterations[-1:], history[-1:], linestyle="none", marker="o", markersize=10, fillstyle="none",
            markeredgewidth=2, **mark)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.ticklabel_format(axis="y", useOffset=False)  # the values themselves, not their difference to an offset
    ax.set_xlabel("EM iteration")
    ax.set_ylabel("lower bound")
    ax.legend(loc="lower right", fontsize="small")
    return ax
