"""The public API's documentation: every public object's docstring passes
numpydoc's validation, its Examples run as doctests (with the outputs they
show), and its signature is type-hinted with names that resolve.

The public objects are ``daskgmm.__all__``, the public functions of
``daskgmm.xarray`` (and of ``daskgmm.plot`` once it exists), ``daskgmm.io.load``,
``daskgmm.mixture.UnfinishedPassWarning``, ``daskgmm.select.SelectionResult``,
and the public methods and properties of each class that daskgmm defines
(those inherited from scikit-learn are scikit-learn's to document).
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import io
import sys
import typing

import pytest
import sklearn.exceptions

import daskgmm

# numpydoc's checks left out, each with the reason.
IGNORED_CHECKS = {
    "ES01": "an extended summary is optional: a one-line summary says all a method like predict needs",
    "SA01": "a See Also section is optional: the user guide and the API reference link related names",
}

# Names of daskgmm.__all__ that are scikit-learn's own classes, re-exported so
# that ``except daskgmm.NotFittedError`` catches what scikit-learn raises: their
# docstrings are scikit-learn's.
REEXPORTED = {
    "daskgmm.ConvergenceWarning": sklearn.exceptions.ConvergenceWarning,
    "daskgmm.NotFittedError": sklearn.exceptions.NotFittedError,
}

# Modules whose public functions and classes are all public API; daskgmm.plot
# only where it exists (written on another branch).
PUBLIC_MODULES = ("daskgmm.xarray", "daskgmm.plot")
EXTRA_PUBLIC = ("daskgmm.io.load", "daskgmm.mixture.UnfinishedPassWarning", "daskgmm.select.SelectionResult")


def _resolve(name):
    """The object of a dotted name: a module's attribute, or a class's."""
    parts = name.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError:
            continue
        for part in parts[split:]:
            obj = inspect.getattr_static(obj, part) if inspect.isclass(obj) else getattr(obj, part)
        return obj
    raise ImportError(name)


def _optional_module(name):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name == name:
            return None
        raise


def _module_names(module):
    names = getattr(module, "__all__", None)
    if names is None:
        names = [
            name for name, value in vars(module).items()
            if not name.startswith("_")
            and (inspect.isfunction(value) or inspect.isclass(value))
            and value.__module__ == module.__name__
        ]
    return [f"{module.__name__}.{name}" for name in names]


def _top_level_names():
    names = [f"daskgmm.{name}" for name in daskgmm.__all__ if name != "__version__"]
    for module_name in PUBLIC_MODULES:
        module = _optional_module(module_name)
        if module is not None:
            names += _module_names(module)
    names += EXTRA_PUBLIC
    return [name for name in names if name not in REEXPORTED]


def _defined_in_daskgmm(member):
    """The function behind a class member, if daskgmm defines it (a function,
    property, staticmethod or classmethod), else None."""
    if isinstance(member, property):
        member = member.fget
    elif isinstance(member, (staticmethod, classmethod)):
        member = member.__func__
    if not inspect.isfunction(member):
        return None  # data, or a descriptor of scikit-learn's (set_*_request)
    return member if inspect.unwrap(member).__module__.startswith("daskgmm") else None


def _public_members(cls):
    """Names of the public methods and properties that daskgmm defines on
    ``cls`` or on a daskgmm base class."""
    names = []
    for name in dir(cls):
        if name.startswith("_"):
            continue
        owner = next(klass for klass in cls.__mro__ if name in vars(klass))
        if _defined_in_daskgmm(vars(owner)[name]) is not None:
            names.append(name)
    return names


def public_names():
    names = []
    for name in _top_level_names():
        names.append(name)
        obj = _resolve(name)
        if inspect.isclass(obj):
            names += [f"{name}.{member}" for member in _public_members(obj)]
    return names


PUBLIC_NAMES = public_names()


def test_public_names_are_collected():
    """The collection sees what the package exports: a name missing here
    would go unchecked."""
    assert {"daskgmm.GaussianMixture", "daskgmm.BayesianGaussianMixture", "daskgmm.select_n_components",
            "daskgmm.SelectionResult", "daskgmm.load", "daskgmm.xarray.predict", "daskgmm.io.load",
            "daskgmm.mixture.UnfinishedPassWarning"} <= set(PUBLIC_NAMES)
    for cls in ("GaussianMixture", "BayesianGaussianMixture"):
        methods = {name.rsplit(".", 1)[1] for name in PUBLIC_NAMES if name.startswith(f"daskgmm.{cls}.")}
        assert {"fit", "fit_predict", "partial_fit", "end_pass", "predict", "predict_proba", "score_samples",
                "score", "sample", "save"} <= methods
        # Defined by scikit-learn: documented there.
        assert not methods & {"get_params", "set_params", "set_fit_request", "set_score_request"}
    assert {"daskgmm.GaussianMixture.bic", "daskgmm.GaussianMixture.aic", "daskgmm.GaussianMixture.icl",
            "daskgmm.SelectionResult.to_text"} <= set(PUBLIC_NAMES)


def test_reexported_names_are_scikit_learns():
    """The only public names left out of the checks are scikit-learn's own
    classes, and every other public object is daskgmm's."""
    for name, cls in REEXPORTED.items():
        assert _resolve(name) is cls
    for name in _top_level_names():
        assert _resolve(name).__module__.startswith("daskgmm"), name


def _docstring(name):
    obj = _resolve(name)
    return (obj.fget if isinstance(obj, property) else obj).__doc__


def test_numpydoc_validation():
    validate = pytest.importorskip("numpydoc.validate").validate  # the test extra installs it
    NumpyDocString = pytest.importorskip("numpydoc.docscrape").NumpyDocString
    errors = []
    for name in PUBLIC_NAMES:
        result = validate(name)
        errors += [f"{name}: {code} {message}" for code, message in result["errors"] if code not in IGNORED_CHECKS]
        examples = "\n".join(NumpyDocString(inspect.cleandoc(_docstring(name) or ""))["Examples"])
        if ">>>" not in examples:
            errors.append(f"{name}: no Examples code to run")
    assert not errors, f"{len(errors)} numpydoc error(s):\n" + "\n".join(errors)


def _doctests():
    """The doctests of every module that holds a public object, each
    docstring once (a method shared by both estimators is found in the
    module that defines it)."""
    modules = sorted({inspect.unwrap(_resolve(name)).__module__ for name in _top_level_names()})
    finder = doctest.DocTestFinder(exclude_empty=True)
    tests = []
    for module in modules:
        tests += [test for test in finder.find(importlib.import_module(module)) if test.examples]
    return sorted(tests, key=lambda test: test.name)


DOCTESTS = _doctests()


def test_every_public_object_has_examples_that_run():
    """Each public object's docstring is among the doctests run below."""
    run = {test.docstring for test in DOCTESTS}
    missing = [name for name in PUBLIC_NAMES if _docstring(name) not in run]
    assert not missing, f"no doctest runs the examples of {missing}"


@pytest.mark.parametrize("test", DOCTESTS, ids=[test.name for test in DOCTESTS])
def test_docstring_examples(test):
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    report = io.StringIO()
    result = runner.run(test, out=report.write, clear_globs=True)
    assert result.failed == 0, report.getvalue()


# Names the annotations use that their modules import only for type
# checkers (``if TYPE_CHECKING:``), to avoid an import cycle or an import
# before first use.
def _type_checking_names():
    import dask.array
    import xarray

    names = {
        "da": dask.array,
        "xr": xarray,
        "GaussianMixture": daskgmm.GaussianMixture,
        "BayesianGaussianMixture": daskgmm.BayesianGaussianMixture,
    }
    names["Self"] = getattr(typing, "Self", None) or importlib.import_module("typing_extensions").Self
    names["SelectionResult"] = daskgmm.SelectionResult
    try:  # daskgmm.plot's Axes, when matplotlib is installed
        names["Axes"] = importlib.import_module("matplotlib.axes").Axes
    except ImportError:
        pass
    return names


def _signature_function(name):
    obj = _resolve(name)
    if inspect.isclass(obj):
        return obj.__init__
    return obj.fget if isinstance(obj, property) else obj


def test_public_signatures_are_type_hinted():
    localns = _type_checking_names()
    problems = []
    for name in PUBLIC_NAMES:
        obj = _resolve(name)
        if inspect.isclass(obj) and issubclass(obj, Warning):
            continue  # a warning class is raised, not called: its signature is Warning's
        function = _signature_function(name)
        signature = inspect.signature(function)
        unannotated = [
            parameter.name for parameter in signature.parameters.values()
            if parameter.annotation is inspect.Parameter.empty and parameter.name not in ("self", "cls")
        ]
        if unannotated:
            problems.append(f"{name}: parameters {unannotated} have no type hint")
        if signature.return_annotation is inspect.Signature.empty:
            problems.append(f"{name}: no return type hint")
        try:
            typing.get_type_hints(function, localns=localns)
        except Exception as exc:  # noqa: BLE001 - any failure to resolve is the finding
            problems.append(f"{name}: type hints do not resolve ({type(exc).__name__}: {exc})")
    assert not problems, "\n".join(problems)


def test_validation_reports_a_bad_docstring():
    """The validation used above does find what it is meant to find: a
    documented parameter that does not exist and a missing Examples."""
    validate = pytest.importorskip("numpydoc.validate").validate

    def documented_wrong(x: int) -> int:
        """Double a number.

        Parameters
        ----------
        y : int
            The number.

        Returns
        -------
        int
            Twice it.
        """
        return 2 * x

    module = sys.modules[__name__]
    module.documented_wrong = documented_wrong
    try:
        codes = {code for code, _ in validate(f"{__name__}.documented_wrong")["errors"]}
    finally:
        del module.documented_wrong
    assert {"PR01", "PR02", "EX01"} <= codes
