"""An estimator's state, declared once (daskgmm._state, issue #21): pickle and
``load(save(m))`` give every declared field alike, a fitted estimator holds
nothing its declaration leaves out, checkpoints and warm starts exchange the
declared fields, and the archive layer imports nothing of the estimators."""

from __future__ import annotations

import ast
import pickle
from pathlib import Path

import numpy as np
import pytest

import daskgmm
from daskgmm import BayesianGaussianMixture, GaussianMixture
from daskgmm._archive import read_archive
from daskgmm._families import BayesianFamily
from daskgmm._state import PARAMETER, POSTERIOR, STREAM

pytestmark = pytest.mark.filterwarnings(
    "ignore::sklearn.exceptions.ConvergenceWarning", "ignore::daskgmm.mixture.UnfinishedPassWarning"
)

ESTIMATORS = [GaussianMixture, BayesianGaussianMixture]
KINDS = ["full", "tied", "diag", "spherical"]
STATES = ["plain", "weights", "missing", "float32", "stepwise", "exact"]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    centres = np.array([[0.0, 0.0, 0.0], [5.0, 1.0, -2.0], [-1.0, 6.0, 3.0]])
    X = centres[rng.integers(3, size=240)] + rng.normal(size=(240, 3))
    holes = X.copy()
    holes[rng.random(X.shape) < 0.1] = np.nan
    return X, holes, rng.uniform(0.0, 3.0, size=len(X))


def _fitted(estimator, kind, state, data):
    X, holes, weights = data
    settings = {"n_components": 3, "covariance_type": kind, "random_state": 0, "max_iter": 20}
    if state == "missing":
        return estimator(missing="marginalize", **settings).fit(holes)
    if state in ("stepwise", "exact"):
        model = estimator(partial_fit_mode=state, **settings).partial_fit(X[:120])
        if state == "exact":
            model.end_pass()  # one completed pass; the next one is left unfinished
        return model.partial_fit(X[120:])
    X = X.astype(np.float32) if state == "float32" else X
    return estimator(**settings).fit(X, sample_weight=weights if state == "weights" else None)


def _assert_equal(value, expected, what):
    """Bitwise equal, of the same types and dtypes (a named tuple of
    statistics field by field).  A NumPy number and a 0-d array count as
    one type: a pass's merged statistics hold either (a file keeps the
    number)."""
    if isinstance(expected, (np.ndarray, np.generic)) and np.ndim(expected) == 0:
        value, expected = np.asarray(value), np.asarray(expected)
    assert type(value) is type(expected), f"{what}: {type(value).__name__}, not {type(expected).__name__}"
    if isinstance(expected, tuple):
        assert len(value) == len(expected), what
        for item, expected_item in zip(value, expected):
            _assert_equal(item, expected_item, what)
    elif isinstance(expected, (np.ndarray, np.generic)):
        assert value.dtype == expected.dtype, f"{what}: dtype {value.dtype}, not {expected.dtype}"
        np.testing.assert_array_equal(value, expected, err_msg=what)
    else:
        assert value == expected, what


# What a model in each state may lack (None); anything else is present.
ABSENT = {
    "plain": {"fit.feature_names_in", "stream_statistics"} | {f"stream.{name}" for name in (
        "mode", "n_batch_iter", "n_samples_seen", "batch_offset", "n_chunks", "weight_scale")},
}
ABSENT.update(dict.fromkeys(("weights", "missing", "float32"), ABSENT["plain"]))
ABSENT.update(dict.fromkeys(("stepwise", "exact"), {"fit.feature_names_in", "fit_statistics"}))
# A GaussianMixture fitted without noise has no noise component (tests/test_noise.py has one that does).
NO_NOISE = {GaussianMixture: {"noise.weight", "noise.volume", "noise.box"}}


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda cls: cls.__name__)
def test_pickle_and_save_load_give_every_declared_field_alike(data, tmp_path, estimator, kind, state):
    model = _fitted(estimator, kind, state, data)
    declaration = estimator._state_declaration
    absent = {field.name for field in declaration.fields if field.get(model) is None}
    assert absent == ABSENT[state] | NO_NOISE.get(estimator, set())
    model.save(tmp_path / "model.npz")
    copies = {"load(save(m))": daskgmm.load(tmp_path / "model.npz"), "pickle": pickle.loads(pickle.dumps(model))}
    for what, copy in copies.items():
        for field in declaration.fields:
            _assert_equal(field.get(copy), field.get(model), f"{what}: {field.name}")
        for name in declaration.derived:
            _assert_equal(getattr(copy, name, None), getattr(model, name, None), f"{what}: {name}")


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda cls: cls.__name__)
def test_a_fitted_estimator_holds_only_declared_state(data, tmp_path, estimator):
    """Every attribute a fit, a stream, a warm start or a load sets is a
    declared field, derived from one, or declared transient (not saved)."""
    X = data[0]
    declared = set(estimator._state_declaration.attributes) | set(estimator().get_params())
    models = {state: _fitted(estimator, "diag", state, data) for state in STATES}
    models["warm start"] = estimator(n_components=3, warm_start=True, max_iter=2).fit(X).fit(X)
    models["checkpoint"] = estimator(n_components=3, max_iter=2).fit(X, checkpoint=tmp_path / "c.npz")
    models["plain"].save(tmp_path / "m.npz")
    models["load"] = daskgmm.load(tmp_path / "m.npz")
    for what, model in models.items():
        assert set(vars(model)) <= declared, f"{what}: {sorted(set(vars(model)) - declared)} not declared"


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda cls: cls.__name__)
def test_a_checkpoint_holds_the_declared_parameters_and_posterior(data, tmp_path, estimator):
    estimator(n_components=3, n_init=2, max_iter=2, random_state=0).fit(data[0], checkpoint=tmp_path / "c.npz")
    arrays, _ = read_archive(tmp_path / "c.npz")
    declaration = estimator._state_declaration
    declared = {f"runs_{field.name}" for field in declaration.of_kind(PARAMETER) + declaration.of_kind(POSTERIOR)}
    run_arrays = {name for name in arrays if name.startswith("runs_posterior_")}
    run_arrays |= {name for name in arrays if name in {f"runs_{f.name}" for f in declaration.of_kind(PARAMETER)}}
    assert run_arrays == declared
    assert len(declared) == {GaussianMixture: 4, BayesianGaussianMixture: 7}[estimator]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda cls: cls.__name__)
def test_a_warm_start_takes_and_gives_back_every_declared_parameter(data, estimator, kind):
    """The run a warm start continues holds the declared parameters and
    posterior; setting it on another estimator gives them back bitwise."""
    model = _fitted(estimator, kind, "float32", data)
    run = model._run_from_attributes()
    declaration = estimator._state_declaration
    assert set(run.posterior) == {field.key for field in declaration.of_kind(POSTERIOR)}
    other = estimator(n_components=3, covariance_type=kind)
    other._set_run(run, model.means_.dtype)
    for field in declaration.of_kind(PARAMETER) + declaration.of_kind(POSTERIOR):
        _assert_equal(field.get(other), field.get(model), field.name)


def test_the_declared_posterior_is_the_family_posterior():
    posterior = BayesianGaussianMixture._state_declaration.of_kind(POSTERIOR)
    assert tuple(field.key for field in posterior) == BayesianFamily.posterior_names
    assert GaussianMixture._state_declaration.of_kind(POSTERIOR) == ()
    assert {field.attribute.split(".")[0] for field in GaussianMixture._state_declaration.of_kind(STREAM)} == {
        "_online_state"
    }


# --------------------------------------------------------------------------
# The archive layer imports nothing of the estimators
# --------------------------------------------------------------------------

PACKAGE = Path(daskgmm.__file__).parent


def _imports(module):
    """The daskgmm modules ``module`` imports, at module level or in a
    function (a dotted name, or the package itself for ``from . import x``
    of a name that is not a module)."""
    path = PACKAGE / (module.replace(".", "/") + ".py")
    if not path.exists():
        path = PACKAGE / module.replace(".", "/") / "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = module.split(".")[: -node.level] if path.name != "__init__.py" else module.split(".")
            source = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:
                name = f"{source}.{alias.name}".strip(".")
                where = PACKAGE / name.replace(".", "/")
                found.add(name if where.with_suffix(".py").exists() or where.is_dir() else source)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found.update(name[len("daskgmm."):] if name.startswith("daskgmm.") else "" for name in names
                         if name == "daskgmm" or name.startswith("daskgmm."))
    return found


def _closure(module):
    seen, todo = set(), [module]
    while todo:
        for imported in _imports(todo.pop()):
            if imported not in seen:
                seen.add(imported)
                if imported:
                    todo.append(imported)
    return seen


ESTIMATOR_MODULES = {"", "mixture", "bayesian_mixture", "io", "_checkpoint", "select", "xarray", "cli"}


@pytest.mark.parametrize("module", ["_archive", "_state"])
def test_the_file_layers_import_nothing_of_the_estimators(module):
    """'' is the package itself, whose __init__ imports the estimators."""
    assert not _closure(module) & ESTIMATOR_MODULES, sorted(_closure(module) & ESTIMATOR_MODULES)


@pytest.mark.parametrize("module", ["io", "_checkpoint", "mixture", "bayesian_mixture"])
def test_the_estimators_and_their_files_are_no_import_circle(module):
    """mixture -> _checkpoint -> io -> mixture was one: nothing these
    modules import leads back to them."""
    assert module not in _closure(module)
