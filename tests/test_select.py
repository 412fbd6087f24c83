"""select_n_components: candidates fitted in shared passes, compared by BIC/AIC."""

import warnings

import numpy as np
import pytest

import dask.array as da

import daskgmm
from daskgmm import ConvergenceWarning, GaussianMixture, SelectionResult, select_n_components

from .conftest import make_blobs

TYPES = ("full", "tied", "diag", "spherical")


@pytest.fixture(scope="module")
def three_clusters():
    X, _, _ = make_blobs(n=900, d=3, k=3, spread=8.0, seed=12)
    return X


@pytest.fixture(scope="module")
def selection(three_clusters):
    dX = da.from_array(three_clusters, chunks=(128, -1))
    return select_n_components(dX, range(1, 6), covariance_types=TYPES, n_init=2, random_state=0)


def test_picks_the_true_number_of_components(selection):
    best, table = selection
    assert best.n_components == 3
    assert best.covariance_type == "full"  # the clusters have random full covariances
    row = int(np.argmin(table["bic"]))
    assert (table["n_components"][row], table["covariance_type"][row]) == (3, "full")
    assert selection.best_ is best and selection.models_[(3, "full")] is best


def test_criteria_equal_each_models_own_bic_and_aic(selection, three_clusters):
    X = three_clusters
    table = selection.table
    for i, (k, kind) in enumerate(zip(table["n_components"], table["covariance_type"])):
        model = selection.models_[(int(k), str(kind))]
        assert table["bic"][i] == pytest.approx(model.bic(X), rel=1e-8)
        assert table["aic"][i] == pytest.approx(model.aic(X), rel=1e-8)
        assert table["score"][i] == pytest.approx(model.score(X), rel=1e-8)
        assert table["log_likelihood"][i] == pytest.approx(model.score(X) * len(X), rel=1e-8)
        assert table["lower_bound"][i] == model.lower_bound_
        assert table["n_iter"][i] == model.n_iter_ and table["converged"][i] == model.converged_
        assert table["n_parameters"][i] == model._n_parameters()


@pytest.mark.parametrize("kind", TYPES)
def test_candidates_are_the_separate_fits(selection, three_clusters, kind):
    dX = da.from_array(three_clusters, chunks=(128, -1))
    for k in (1, 3, 5):
        alone = GaussianMixture(k, covariance_type=kind, n_init=2, random_state=0).fit(dX)
        shared = selection.models_[(k, kind)]
        for attr in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
            np.testing.assert_allclose(getattr(shared, attr), getattr(alone, attr), rtol=1e-9, atol=1e-12)
        assert shared.n_iter_ == alone.n_iter_
        assert shared.lower_bound_ == pytest.approx(alone.lower_bound_, rel=1e-12)
        np.testing.assert_array_equal(shared.predict(three_clusters), alone.predict(three_clusters))


def test_all_candidates_share_the_passes(selection, three_clusters):
    passes = selection.passes_
    assert selection.n_passes_ == passes["init"] + passes["em"] + passes["score"]
    assert passes["score"] == 1
    # EM goes on while any candidate's restart runs: as many passes as the longest.
    assert max(selection.table["n_iter"]) <= passes["em"] <= 100
    dX = da.from_array(three_clusters, chunks=(128, -1))
    separate = sum(
        GaussianMixture(k, covariance_type=kind, n_init=2, random_state=0).fit(dX).n_passes_
        for kind in TYPES
        for k in range(1, 6)
    )
    assert selection.n_passes_ < separate / 5
    assert all(model.n_passes_ == selection.n_passes_ for model in selection.models_.values())


def test_table_layout_and_text(selection):
    table = selection.table
    assert list(table) == list(daskgmm.select.TABLE_COLUMNS)
    assert all(len(column) == 20 for column in table.values())
    assert list(table["covariance_type"][:5]) == ["full"] * 5
    assert list(table["n_components"][:5]) == [1, 2, 3, 4, 5]
    text = selection.to_text()
    assert "*   3 full" in text
    assert "best by BIC: n_components=3, covariance_type='full'" in text
    assert repr(selection).startswith("SelectionResult(")
    assert isinstance(selection, SelectionResult)


def test_aic_criterion_picks_the_lowest_aic(three_clusters):
    result = select_n_components(three_clusters, [2, 3, 4], criterion="aic", covariance_types="diag", random_state=1)
    assert result.criterion == "aic"
    best_row = int(np.argmin(result.table["aic"]))
    assert result.best_.n_components == result.table["n_components"][best_row]
    assert result.best_.covariance_type == "diag"


def test_same_selection_for_any_chunking(three_clusters):
    kwargs = dict(covariance_types=("full", "spherical"), random_state=5, n_init=2)
    a = select_n_components(da.from_array(three_clusters, chunks=(900, -1)), [1, 2, 3, 4], **kwargs)
    b = select_n_components(da.from_array(three_clusters, chunks=(61, -1)), [1, 2, 3, 4], split_every=2, **kwargs)
    np.testing.assert_allclose(a.table["bic"], b.table["bic"], rtol=1e-10)
    np.testing.assert_array_equal(a.table["n_iter"], b.table["n_iter"])
    assert a.n_passes_ == b.n_passes_


def test_max_iter_zero_scores_the_starting_parameters(three_clusters):
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        result = select_n_components(three_clusters, [2, 3], max_iter=0, random_state=0)
    assert result.passes_["em"] == 0
    for i, k in enumerate(result.table["n_components"]):
        model = result.models_[(int(k), "full")]
        assert model.n_iter_ == 0
        assert result.table["bic"][i] == pytest.approx(model.bic(three_clusters), rel=1e-8)


def test_unconverged_candidates_are_named_in_one_warning(three_clusters):
    with pytest.warns(ConvergenceWarning, match=r"\(n_components, covariance_type\) = \(2, 'full'\), \(3, 'full'\)"):
        select_n_components(three_clusters, [2, 3], max_iter=1, tol=0.0, random_state=0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(criterion="loglik"), r"Invalid value for 'criterion': 'loglik'. Use 'bic', 'aic' or 'icl'."),
        (dict(n_components_range=[]), "n_components_range is empty"),
        (dict(n_components_range=[0, 1]), r"n_components_range must hold ints >= 1, got 0"),
        (dict(n_components_range=5), r"must be an iterable of ints, e.g. range\(1, 11\); got 5"),
        (dict(n_components_range=[2, 1000]), "n_components = 1000, n_samples = 900"),
        (dict(covariance_types=("full", "blocky")), "Invalid value for 'covariance_type': 'blocky'"),
        (dict(covariance_types=()), "covariance_types is empty"),
        (dict(covariance_types=("full", "EEE", "VVV")), r"names one model twice: 'full' and 'VVV' are the same"),
        (dict(n_init=0), r"'n_init' parameter of GaussianMixture must be an int in the range \[1, inf\). Got 0"),
        (dict(init_params="kmeans++"), r"'init_params' parameter of GaussianMixture must be a str among .*Got 'kmeans\+\+'"),
        (dict(persist="yes"), r"'persist' parameter of GaussianMixture must be a str among \{'auto'\} or an instance of 'bool'"),
    ],
)
def test_invalid_arguments(three_clusters, kwargs, message):
    kwargs = {"n_components_range": [1, 2], **kwargs}
    with pytest.raises(ValueError, match=message):
        select_n_components(three_clusters, **kwargs)


def test_duplicate_candidates_are_fitted_once(three_clusters):
    result = select_n_components(three_clusters, [2, 2, 1], covariance_types=("diag", "diag"), random_state=0)
    assert list(result.table["n_components"]) == [2, 1]
    assert list(result.table["covariance_type"]) == ["diag", "diag"]


# --------------------------------------------------------------------------
# Sample weights
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def labelled_clusters():
    X, labels, _ = make_blobs(n=900, d=3, k=3, spread=8.0, seed=12)
    return X, labels


@pytest.mark.parametrize("init_params", ["k-means++", "random", "kmeans", "random_from_data"])
def test_weights_of_one_are_no_weights(three_clusters, init_params):
    kwargs = dict(covariance_types=("full", "diag"), n_init=2, random_state=3, init_params=init_params)
    plain = select_n_components(three_clusters, range(1, 5), **kwargs)
    ones = select_n_components(three_clusters, range(1, 5), sample_weight=np.ones(len(three_clusters)), **kwargs)
    for column in daskgmm.select.TABLE_COLUMNS:
        np.testing.assert_array_equal(ones.table[column], plain.table[column], err_msg=column)
    assert ones.passes_ == plain.passes_
    assert (ones.best_.n_components, ones.best_.covariance_type) == (plain.best_.n_components, plain.best_.covariance_type)


def test_a_cluster_of_weight_zero_is_not_counted(labelled_clusters):
    X, labels = labelled_clusters
    weights = (labels != 2).astype(float)
    plain, _ = select_n_components(X, range(1, 6), random_state=0)
    weighted, table = select_n_components(
        da.from_array(X, chunks=(128, -1)), range(1, 6), random_state=0,
        sample_weight=da.from_array(weights, chunks=200),  # rechunked to X's rows
    )
    assert plain.n_components == 3
    assert weighted.n_components == 2
    # The two components are the two clusters that count, nothing of the third.
    found = weighted.means_[np.argsort(weighted.means_[:, 0])]
    kept = np.array([X[labels == j].mean(axis=0) for j in (0, 1)])
    np.testing.assert_allclose(found, kept[np.argsort(kept[:, 0])], atol=0.05)


def test_weighted_criteria_equal_each_models_own(labelled_clusters):
    X, _ = labelled_clusters
    weights = np.random.default_rng(4).integers(0, 4, size=len(X)).astype(float)
    result = select_n_components(
        X, range(1, 5), covariance_types=("full", "spherical"), random_state=2, sample_weight=weights
    )
    table = result.table
    for i, (k, kind) in enumerate(zip(table["n_components"], table["covariance_type"])):
        model = result.models_[(int(k), str(kind))]
        assert table["bic"][i] == pytest.approx(model.bic(X, sample_weight=weights), rel=1e-8)
        assert table["aic"][i] == pytest.approx(model.aic(X, sample_weight=weights), rel=1e-8)
        assert table["score"][i] == pytest.approx(model.score(X, sample_weight=weights), rel=1e-8)
        assert table["log_likelihood"][i] == pytest.approx(table["score"][i] * weights.sum(), rel=1e-12)


@pytest.mark.parametrize("kind", ["full", "diag"])
def test_weighted_candidates_are_the_separate_weighted_fits(labelled_clusters, kind):
    X, _ = labelled_clusters
    weights = np.random.default_rng(5).random(len(X)) * 2
    dX = da.from_array(X, chunks=(128, -1))
    result = select_n_components(dX, [1, 3], covariance_types=kind, n_init=2, random_state=0, sample_weight=weights)
    for k in (1, 3):
        alone = GaussianMixture(k, covariance_type=kind, n_init=2, random_state=0).fit(dX, sample_weight=weights)
        shared = result.models_[(k, kind)]
        for attr in ("weights_", "means_", "covariances_"):
            np.testing.assert_allclose(getattr(shared, attr), getattr(alone, attr), rtol=1e-9, atol=1e-12)
        assert shared.n_iter_ == alone.n_iter_
        assert shared.lower_bound_ == pytest.approx(alone.lower_bound_, rel=1e-12)


@pytest.mark.parametrize(
    "weights, message",
    [
        (lambda n: np.r_[np.nan, np.ones(n - 1)], "sample_weight contains NaN or infinity"),
        (lambda n: np.r_[-1.0, np.ones(n - 1)], "sample_weight has negative values"),
        (lambda n: np.ones(n - 1), r"sample_weight has shape \(899,\), expected \(900,\)"),
    ],
)
def test_bad_weights_are_refused_by_name(three_clusters, weights, message):
    with pytest.raises(ValueError, match=message):
        select_n_components(three_clusters, [1, 2], sample_weight=weights(len(three_clusters)))


@pytest.mark.parametrize("init_params", ["kmeans", "k-means++"])
def test_noise_candidates_are_the_separate_noise_fits(labelled_clusters, init_params):
    """mclust's Mclust(noise=...): every candidate has a noise component over
    the box found once; each equals its own GaussianMixture(noise='box') fit,
    and the criteria count the noise's two parameters."""
    X, _ = labelled_clusters
    rng = np.random.default_rng(3)
    X = np.vstack([X, rng.uniform(X.min(axis=0) - 1, X.max(axis=0) + 1, size=(60, X.shape[1]))])
    dX = da.from_array(X, chunks=(128, -1))
    settings = dict(noise="box", noise_weight_init=0.2, init_params=init_params, random_state=0)
    result = select_n_components(dX, [2, 3], covariance_types=("VVI", "EEV"), **settings)
    for (k, kind), shared in result.models_.items():
        alone = GaussianMixture(k, covariance_type=kind, **settings).fit(dX)
        for attr in ("weights_", "means_", "covariances_", "noise_weight_", "noise_volume_", "noise_box_"):
            np.testing.assert_allclose(getattr(shared, attr), getattr(alone, attr), rtol=1e-9, atol=1e-12)
        assert shared.n_iter_ == alone.n_iter_
        assert shared.bic(dX) == pytest.approx(alone.bic(dX), rel=1e-12)
        row = [i for i, c in enumerate(zip(result.table["n_components"], result.table["covariance_type"]))
               if c == (k, kind)][0]
        assert result.table["bic"][row] == pytest.approx(alone.bic(dX), rel=1e-9)
        assert shared._n_parameters() == GaussianMixture(k, covariance_type=kind).fit(X[:200])._n_parameters() + 2


def test_m_step_settings_reach_the_candidates(three_clusters):
    from daskgmm.mixture import MStepConvergenceWarning

    with pytest.warns(MStepConvergenceWarning, match="EVE M-steps reached m_step_max_iter=3"):
        result = select_n_components(three_clusters, [2], covariance_types=("EVE",), m_step_max_iter=3,
                                     m_step_tol=0.0, random_state=0, max_iter=5)
    with pytest.warns(MStepConvergenceWarning, match="EVE M-steps reached m_step_max_iter=3"):
        alone = GaussianMixture(2, covariance_type="EVE", m_step_max_iter=3, m_step_tol=0.0, random_state=0,
                                max_iter=5).fit(three_clusters)
    shared = result.models_[(2, "EVE")]
    assert shared.m_step_max_iter == 3
    np.testing.assert_allclose(shared.covariances_, alone.covariances_, rtol=1e-9, atol=1e-12)
    default = select_n_components(three_clusters, [2], covariance_types=("EVE",), random_state=0, max_iter=5)
    assert not np.allclose(default.models_[(2, "EVE")].covariances_, shared.covariances_, rtol=1e-9, atol=1e-12)
