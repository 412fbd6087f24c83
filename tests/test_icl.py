"""ICL: BIC plus twice the classification entropy, computed in the scoring
pass (GaussianMixture.icl, select_n_components(criterion='icl'))."""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

import dask
import dask.array as da
from dask.callbacks import Callback

import daskgmm
from daskgmm import GaussianMixture, _engine, select_n_components
from daskgmm._covariance import COVARIANCE_TYPES, MCLUST_MODELS
from daskgmm._families import GAUSSIAN

from .conftest import make_blobs


class ComputeCounter(Callback):
    """Counts the computes on the local schedulers (as xarray's
    ``raise_if_dask_computes``)."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def _start(self, dsk):
        self.count += 1


def entropy_by_hand(model, X, weights=None):
    """``-sum_i w_i log max_k r_ik`` from ``predict_proba`` in NumPy; rows
    with every feature missing (NaN responsibilities) count for nothing."""
    resp = np.asarray(model.predict_proba(X))
    observed = ~np.isnan(resp).any(axis=1)
    w = np.ones(len(X)) if weights is None else np.asarray(weights, dtype=np.float64)
    return -float(np.sum(w[observed] * np.log(resp[observed].max(axis=1))))


@pytest.fixture(scope="module")
def overlapping():
    X, _, _ = make_blobs(n=600, d=3, k=3, spread=0.5, seed=4)
    return X


@pytest.mark.parametrize("kind", COVARIANCE_TYPES)
def test_icl_is_bic_plus_twice_the_entropy_of_predict_proba(overlapping, kind):
    gmm = GaussianMixture(3, covariance_type=kind, random_state=0).fit(overlapping)
    entropy = entropy_by_hand(gmm, overlapping)
    assert entropy > 10  # overlapping clusters: the term is not negligible
    assert gmm.icl(overlapping) == pytest.approx(gmm.bic(overlapping) + 2 * entropy, rel=1e-12)


def test_weighted_icl_is_the_icl_of_the_repeated_rows(overlapping):
    weights = np.random.default_rng(1).integers(0, 4, size=len(overlapping))
    gmm = GaussianMixture(3, random_state=0).fit(overlapping)
    weighted = gmm.icl(overlapping, sample_weight=weights)
    expected = gmm.bic(overlapping, sample_weight=weights) + 2 * entropy_by_hand(gmm, overlapping, weights)
    assert weighted == pytest.approx(expected, rel=1e-12)
    assert weighted == pytest.approx(gmm.icl(np.repeat(overlapping, weights, axis=0)), rel=1e-12)
    # Dask weights chunked like the rows, and scaled weights (a power of two
    # taken out inside) give the same.
    dX = da.from_array(overlapping, chunks=(128, -1))
    lazy = gmm.icl(dX, sample_weight=da.from_array(weights.astype(float), chunks=128))
    assert lazy == pytest.approx(weighted, rel=1e-12)


def test_lazy_input_gives_the_numpy_answer_in_one_compute(overlapping):
    gmm = GaussianMixture(3, random_state=0).fit(overlapping)
    dX = da.from_array(overlapping, chunks=(100, -1))
    with dask.config.set(scheduler="sync"), ComputeCounter() as counter:
        lazy = gmm.icl(dX)
    assert counter.count == 1  # the log-likelihood and the entropy from one pass
    assert lazy == pytest.approx(gmm.icl(overlapping), rel=1e-12)
    dd = pytest.importorskip("dask.dataframe")
    pd = pytest.importorskip("pandas")
    frame = dd.from_pandas(pd.DataFrame(overlapping, columns=["a", "b", "c"]), npartitions=3)
    named = GaussianMixture(3, random_state=0).fit(pd.DataFrame(overlapping, columns=["a", "b", "c"]))
    assert named.icl(frame) == pytest.approx(gmm.icl(overlapping), rel=1e-12)


def test_icl_on_strict_array_api_chunks_matches_numpy(overlapping):
    """The classification pass uses only the array-API standard (CuPy and
    other GPU chunks go through the same code)."""
    xps = pytest.importorskip("array_api_strict")
    gmm = GaussianMixture(3, random_state=0).fit(overlapping)
    strict = da.from_array(overlapping, chunks=(100, -1)).map_blocks(
        xps.asarray, dtype=overlapping.dtype, meta=np.empty((0, 0), overlapping.dtype)
    )
    with dask.config.set(scheduler="sync"):
        assert gmm.icl(strict) == pytest.approx(gmm.icl(overlapping), rel=1e-12)


def test_marginalized_rows_with_every_feature_missing_count_for_nothing(overlapping):
    X = overlapping.copy()
    rng = np.random.default_rng(3)
    X[rng.random(X.shape) < 0.15] = np.nan
    X[[5, 70]] = np.nan  # every feature missing
    gmm = GaussianMixture(3, missing="marginalize", random_state=0).fit(X)
    icl = gmm.icl(X)
    assert icl == pytest.approx(gmm.bic(X) + 2 * entropy_by_hand(gmm, X), rel=1e-12)
    kept = np.delete(X, [5, 70], axis=0)
    assert icl == pytest.approx(gmm.icl(kept), rel=1e-12)
    assert gmm.icl(da.from_array(X, chunks=(64, -1))) == pytest.approx(icl, rel=1e-12)
    with pytest.raises(ValueError, match="Every sample of X has every feature missing"):
        gmm.icl(np.full((3, 3), np.nan))


def test_scoring_pass_log_likelihood_is_the_plain_one(overlapping):
    """The classification pass sums the same log-likelihoods as the plain
    scoring pass, bitwise, next to the entropies and the counted weight."""
    gmm = GaussianMixture(3, random_state=0).fit(overlapping)
    dX = da.from_array(overlapping, chunks=(100, -1))
    models = [gmm._model()]
    plain = _engine.score_pass(dX, GAUSSIAN, models, split_every=3)
    out = _engine.score_pass(dX, GAUSSIAN, models, split_every=3, classification=True)
    assert out.shape == (3, 1)
    assert out[0].tolist() == plain.tolist()
    assert out[1, 0] == pytest.approx(entropy_by_hand(gmm, overlapping), rel=1e-12)
    assert out[2, 0] == len(overlapping)


def test_icl_refuses_bad_input_by_name(overlapping):
    with pytest.raises(NotFittedError):
        GaussianMixture(2).icl(overlapping)
    gmm = GaussianMixture(3, random_state=0).fit(overlapping)
    X = overlapping.copy()
    X[7, 1] = np.nan
    with pytest.raises(ValueError, match=r"Input X contains NaN or infinity: 1 row\(s\).*first at row 7"):
        gmm.icl(X)
    with pytest.raises(ValueError, match="sample_weight"):
        gmm.icl(overlapping, sample_weight=-np.ones(len(overlapping)))
    with pytest.raises(ValueError, match="features"):
        gmm.icl(overlapping[:, :2])


def test_separated_clusters_leave_icl_at_bic():
    X, _, _ = make_blobs(n=900, d=3, k=3, spread=25.0, seed=2)
    gmm = GaussianMixture(3, random_state=0).fit(X)
    bic, icl = gmm.bic(X), gmm.icl(X)
    assert icl >= bic
    assert icl - bic < 1e-6 * abs(bic)


@pytest.mark.parametrize("seed", [0, 1])
def test_icl_prefers_one_component_where_bic_splits_overlapping_ones(seed):
    """Two equal Gaussians three standard deviations apart: BIC finds both,
    ICL, which penalises the uncertain assignments between them, one."""
    rng = np.random.default_rng(seed)
    X = np.concatenate([rng.normal(0, 1, (1000, 2)), rng.normal(0, 1, (1000, 2)) + [3.0, 0.0]])
    by_bic = select_n_components(X, range(1, 5), random_state=0)
    by_icl = select_n_components(X, range(1, 5), random_state=0, criterion="icl")
    assert (by_bic.best_.n_components, by_icl.best_.n_components) == (2, 1)
    assert by_icl.criterion == "icl"
    # The same fits, ranked otherwise.
    np.testing.assert_array_equal(by_icl.table["bic"], by_bic.table["bic"])


# --------------------------------------------------------------------------
# select_n_components(criterion="icl")
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def three_clusters():
    X, _, _ = make_blobs(n=900, d=3, k=3, spread=8.0, seed=12)
    return X


@pytest.fixture(scope="module")
def icl_selection(three_clusters):
    dX = da.from_array(three_clusters, chunks=(128, -1))
    return select_n_components(
        dX, range(1, 6), covariance_types=("full", "diag"), n_init=2, random_state=0, criterion="icl"
    )


def test_icl_selection_picks_the_true_number_of_components(icl_selection):
    best, table = icl_selection
    assert best.n_components == 3
    assert icl_selection.criterion == "icl"
    row = int(np.argmin(table["icl"]))
    assert (table["n_components"][row], table["covariance_type"][row]) == (best.n_components, best.covariance_type)


def test_icl_table_equals_each_models_own_icl(icl_selection, three_clusters):
    table = icl_selection.table
    assert list(table) == [
        *daskgmm.select.TABLE_COLUMNS[:4], "icl", *daskgmm.select.TABLE_COLUMNS[4:], "classification_entropy"
    ]
    for i, (k, kind) in enumerate(zip(table["n_components"], table["covariance_type"])):
        model = icl_selection.models_[(int(k), str(kind))]
        assert table["icl"][i] == pytest.approx(model.icl(three_clusters), rel=1e-10)
        assert table["bic"][i] == pytest.approx(model.bic(three_clusters), rel=1e-10)
        assert table["classification_entropy"][i] == pytest.approx(entropy_by_hand(model, three_clusters), rel=1e-8)
    np.testing.assert_array_equal(table["icl"], table["bic"] + 2 * table["classification_entropy"])
    text = icl_selection.to_text()
    assert text.splitlines()[0].split()[:6] == ["K", "covariance", "BIC", "AIC", "ICL", "log-lik"]
    assert "best by ICL: n_components=3" in text


def test_icl_selection_scores_every_candidate_in_one_pass(three_clusters, monkeypatch):
    calls = []
    score_pass = _engine.score_pass

    def counting(X, family, models, **kwargs):
        calls.append((len(models), kwargs.get("classification", False)))
        return score_pass(X, family, models, **kwargs)

    monkeypatch.setattr(daskgmm.select._engine, "score_pass", counting)
    dX = da.from_array(three_clusters, chunks=(128, -1))
    by_icl = select_n_components(dX, range(1, 5), covariance_types=("full", "spherical"), random_state=0,
                                 criterion="icl")
    assert calls == [(8, True)]
    assert by_icl.passes_["score"] == 1
    calls.clear()
    by_bic = select_n_components(dX, range(1, 5), covariance_types=("full", "spherical"), random_state=0)
    assert calls == [(8, False)]  # BIC asks for no entropy
    assert by_icl.n_passes_ == by_bic.n_passes_
    assert list(by_bic.table) == list(daskgmm.select.TABLE_COLUMNS)
    for column in daskgmm.select.TABLE_COLUMNS:
        np.testing.assert_array_equal(by_icl.table[column], by_bic.table[column])


def test_weighted_and_marginalized_icl_selection_equal_each_models_own(three_clusters):
    X = three_clusters.copy()
    X[np.random.default_rng(5).random(X.shape) < 0.1] = np.nan
    X[3] = np.nan
    weights = np.random.default_rng(6).integers(0, 3, size=len(X)).astype(float)
    result = select_n_components(X, [2, 3], criterion="icl", sample_weight=weights, missing="marginalize",
                                 random_state=0)
    for i, k in enumerate(result.table["n_components"]):
        model = result.models_[(int(k), "full")]
        assert result.table["icl"][i] == pytest.approx(model.icl(X, sample_weight=weights), rel=1e-10)


def test_icl_selection_over_mclusts_fourteen_models(overlapping):
    # Each of mclust's names is one model of the registry (the older names
    # are aliases of six of them).
    models = tuple(MCLUST_MODELS)
    assert len(models) == 14
    X = overlapping[:300]
    result = select_n_components(X, [2], covariance_types=models, criterion="icl", random_state=0)
    assert list(result.table["covariance_type"]) == list(models)
    assert result.passes_["score"] == 1
    for i, kind in enumerate(models):
        assert result.table["icl"][i] == pytest.approx(result.models_[(2, kind)].icl(X), rel=1e-10)
    best = int(np.argmin(result.table["icl"]))
    assert result.best_ is result.models_[(2, models[best])]


@pytest.mark.parametrize("criterion", ["entropy", "ICL", None])
def test_bad_criterion_is_refused_by_name(three_clusters, criterion):
    with pytest.raises(ValueError, match=rf"Invalid value for 'criterion': {criterion!r}. Use 'bic', 'aic' or 'icl'."):
        select_n_components(three_clusters, [1, 2], criterion=criterion)


def test_selection_plot_labels_the_criterion(icl_selection):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from daskgmm import plot

    fig, ax = plt.subplots()
    try:
        plot.selection(icl_selection, ax=ax)
        assert ax.get_ylabel() == "ICL (lower is better)"
        assert ax.get_lines()[-1].get_label() == "lowest ICL: 3 components, " + icl_selection.best_.covariance_type
        full = ax.get_lines()[0]
        np.testing.assert_array_equal(full.get_ydata(), icl_selection.table["icl"][:5])
    finally:
        plt.close(fig)
