"""The estimators' shared base and how daskgmm's own modules reach it: an
abstract base whose hooks each subclass implements (none a silent no-op
default), and named entry points in :mod:`daskgmm.mixture` instead of the
estimators' private methods."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone

import daskgmm
from daskgmm import BayesianGaussianMixture, GaussianMixture
from daskgmm.mixture import _BaseMixture

PACKAGE = Path(daskgmm.__file__).parent

HOOKS = {
    "_check_settings", "_make_family", "_family", "_initial_runs", "_apply_initial_parameters", "_model",
    "_get_parameters", "_set_parameters",
}


def test_the_base_is_abstract_and_declares_every_hook():
    assert _BaseMixture.__abstractmethods__ == HOOKS
    with pytest.raises(TypeError, match="abstract class _BaseMixture"):
        _BaseMixture(*range(15))


def test_the_base_docstring_lists_every_hook():
    listed = set(re.findall(r"``(_[a-z_]+)\(", _BaseMixture.__doc__))
    assert HOOKS <= listed


@pytest.mark.parametrize("hook", sorted(HOOKS))
def test_a_subclass_without_a_hook_cannot_be_made(hook):
    # A copy of GaussianMixture's namespace without the hook: the base has no
    # default to fall back on silently.
    namespace = {name: value for name, value in vars(GaussianMixture).items() if name != hook}
    Partial = type("Partial", (_BaseMixture,), namespace)
    with pytest.raises(TypeError, match=f"abstract method.*{hook}"):
        Partial()


@pytest.mark.parametrize("cls", [GaussianMixture, BayesianGaussianMixture])
def test_every_hook_is_the_subclass_own(cls):
    for hook in HOOKS:
        assert hook in vars(cls), f"{cls.__name__} does not define {hook}"
    assert not cls.__abstractmethods__


@pytest.mark.parametrize("cls", [GaussianMixture, BayesianGaussianMixture])
def test_scikit_learn_clones_the_abstract_base_subclasses(cls):
    model = cls(n_components=2, random_state=0, max_iter=5)
    copy = clone(model)
    assert type(copy) is cls and copy.get_params() == model.get_params()
    X = np.random.default_rng(0).normal(size=(60, 2))
    np.testing.assert_array_equal(copy.fit(X).means_, cls(n_components=2, random_state=0, max_iter=5).fit(X).means_)


# The estimators' methods daskgmm's own modules once called; the entry points
# of daskgmm.mixture (_fit_rows, _partial_fit_rows, _missing_rows, _adopt_run)
# stand for them.
PRIVATE_METHODS = {"_fit", "_partial_fit", "_set_run", "_missing_setup", "_check_is_fitted", "_family", "_model"}


@pytest.mark.parametrize("module", ["xarray.py", "cli.py", "select.py"])
def test_own_modules_use_the_entry_points_not_private_methods(module):
    tree = ast.parse((PACKAGE / module).read_text(encoding="utf-8"))
    calls = [
        f"line {node.lineno}: .{node.func.attr}("
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in PRIVATE_METHODS
    ]
    assert calls == []


def test_the_entry_points_fit_as_the_methods_do():
    from daskgmm.mixture import _adopt_run, _best_run, _fit_rows

    X = np.concatenate([np.random.default_rng(1).normal(m, 1, (50, 2)) for m in (-3, 3)])
    by_method = GaussianMixture(2, random_state=0).fit(X)
    by_entry = _fit_rows(GaussianMixture(2, random_state=0), X)
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_", "lower_bounds_"):
        np.testing.assert_array_equal(getattr(by_entry, name), getattr(by_method, name))
    adopted = _adopt_run(GaussianMixture(2), _best_run([by_method._run_from_attributes()]), np.float64)
    np.testing.assert_array_equal(adopted.means_, by_method.means_)
    np.testing.assert_array_equal(adopted.precisions_, by_method.precisions_)
