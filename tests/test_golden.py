"""Golden tests: the numbers of every path, pinned bitwise (issue #21).

The refactor of issue #21 must leave every result bitwise the same.  These
tests recompute, on fixed seeded data, what each path gives today and
compare it with reference values committed in ``tests/golden/*.npz``, field
by field: the same keys, the same dtype and shape, the same bits
(``np.testing.assert_array_equal``, then the raw bytes, so that ``-0.0`` and
``0.0`` differ too).  Paths covered:

* blocks: ``_blocks.block_statistics`` for covariance type x dtype x sample
  weights x given responsibilities (rows or component-major) x stacked runs
  (``stack_models`` groups, equal and unequal) on data that takes each of its
  accumulation strategies (the one-product 'full' path, K <= (D + 1) / 2; the
  pair products; 'tied'; 'diag'/'spherical' with and without flagged pairs;
  components far from the pivot, shifted or summed about their own pivots;
  the E-step's cancelling components; several row slices; an empty block),
  with ``skip_nonfinite``; ``estimate_log_resp``; ``merge_statistics`` and
  ``merge_many``;
* missing: ``_blocks_missing.marginal_block_statistics`` and
  ``marginal_log_resp`` on NaN entries (shared and rare patterns, rows with
  every feature missing);
* engine: ``em_pass`` (stacked runs split again by ``split_statistics``) and
  ``score_pass`` over a chunked Dask array (fixed ``split_every``), with
  weights, ``marginalize``, ``skip_nonfinite``;
* estimators: every fitted attribute of ``GaussianMixture`` and
  ``BayesianGaussianMixture`` fits (every ``init_params``, 4 types x 2
  dtypes, weights, ``missing='marginalize'``, ``skip_nonfinite``, restarts,
  Dask input, given ``*_init`` and priors, both weight priors),
  ``_initialize(X, resp)``, the per-row outputs and scores, ``partial_fit``
  (stepwise, exact with ``end_pass``, continuing a fit) and
  ``select_n_components``'s table and models.

The reference data are written by ``tests/golden/make_golden.py`` (by hand
only; it records the commit it ran on) from the case builders below; the
tests never write them.  A refactor may move the names imported here, never
the numbers: regenerate only for an intended change of results, and say so.

Everything runs with one BLAS thread and Dask's synchronous scheduler, so no
result depends on thread timing; timings (``history_``'s ``seconds``) are
left out.
"""

from __future__ import annotations

import contextlib
import functools
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy import linalg

import dask
import dask.array as da
from threadpoolctl import ThreadpoolController

from daskgmm import BayesianGaussianMixture, GaussianMixture, select_n_components
from daskgmm import _blocks, _blocks_missing, _engine
from daskgmm._blocks import Model
from daskgmm.mixture import ConvergenceWarning

GOLDEN_DIR = Path(__file__).parent / "golden"
FILES = ("blocks", "missing", "engine", "estimators")
KINDS = ("full", "tied", "diag", "spherical")
DTYPES = {"f32": np.float32, "f64": np.float64}
# Reference keys are "<case>::<field>"; "__meta__::..." records provenance.
SEP = "::"
META = "__meta__"

_BLAS = ThreadpoolController()


@contextlib.contextmanager
def deterministic():
    """One BLAS thread, Dask's synchronous scheduler, the floating-point
    warnings off as the engine's passes have them (:func:`_engine._quiet_float_errors`),
    and the ConvergenceWarning of the deliberately short fits silenced.
    No distributed client may be open: it would group the chunks of a pass
    by worker (another order of merges)."""
    assert _engine.current_client() is None, "a distributed Client is open: golden results are the local schedulers'"
    with _BLAS.limit(limits=1, user_api="blas"), dask.config.set(scheduler="synchronous"), \
            np.errstate(invalid="ignore", over="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


# --------------------------------------------------------------------------
# Flattening results into named arrays
# --------------------------------------------------------------------------


def _is_number(value):
    return isinstance(value, (bool, int, float, np.bool_, np.number))


def flatten(prefix, value, out=None):
    """``{key: np.ndarray}`` of a result: NamedTuples (Stats) and dicts by
    field, sequences of numbers as one array, other sequences by index,
    strings and None as string arrays, arrays of any namespace as NumPy."""
    out = {} if out is None else out
    if value is None:
        out[prefix] = np.asarray("<None>")
    elif isinstance(value, str):
        out[prefix] = np.asarray(value)
    elif hasattr(value, "_fields"):
        for name in value._fields:
            flatten(f"{prefix}.{name}", getattr(value, name), out)
    elif isinstance(value, dict):
        for name in sorted(value):
            flatten(f"{prefix}.{name}", value[name], out)
    elif isinstance(value, (list, tuple)):
        if value and all(_is_number(v) for v in value):
            out[prefix] = np.asarray(value)
        else:
            out[f"{prefix}.len"] = np.asarray(len(value))
            for i, item in enumerate(value):
                flatten(f"{prefix}[{i}]", item, out)
    else:
        out[prefix] = np.asarray(_blocks.to_numpy(value))
    return out


def assert_bitwise(expected, got):
    """Every key of ``expected`` in ``got`` and no other, each array of the
    same dtype and shape and bit for bit equal."""
    missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
    assert not missing and not extra, f"keys differ: missing {missing}, unexpected {extra}"
    for key in sorted(expected):
        want, have = expected[key], got[key]
        assert have.dtype == want.dtype, f"{key}: dtype {have.dtype}, reference {want.dtype}"
        assert have.shape == want.shape, f"{key}: shape {have.shape}, reference {want.shape}"
        np.testing.assert_array_equal(have, want, err_msg=key, strict=True)
        assert np.ascontiguousarray(have).tobytes() == np.ascontiguousarray(want).tobytes(), (
            f"{key}: equal values but different bits (signed zeros or NaN payloads)"
        )


def pack(arrays):
    """``{key: array}`` as the few arrays of one ``.npz``: the keys, dtypes
    and shapes, and every array's bytes (C order) in one buffer.  One entry
    per array would cost a zip header each, more than the numbers."""
    keys = sorted(arrays)
    values = [np.asarray(arrays[key]).copy(order="C") for key in keys]  # ascontiguousarray makes 0-d 1-d
    sizes = np.array([v.nbytes for v in values], dtype=np.int64)
    return {
        "keys": np.array(keys),
        "dtypes": np.array([v.dtype.str for v in values]),
        "shapes": np.asarray(json.dumps([list(v.shape) for v in values])),
        "offsets": np.concatenate([[0], np.cumsum(sizes)]),
        "data": np.frombuffer(b"".join(v.tobytes() for v in values), dtype=np.uint8),
    }


def unpack(packed):
    """The ``{key: array}`` that :func:`pack` packed (each array a copy)."""
    data, offsets = packed["data"], packed["offsets"]
    shapes = json.loads(str(packed["shapes"]))
    return {
        str(key): np.frombuffer(data[offsets[i]:offsets[i + 1]].tobytes(), dtype=np.dtype(str(dt))).reshape(shape)
        for i, (key, dt, shape) in enumerate(zip(packed["keys"], packed["dtypes"], shapes))
    }


@functools.lru_cache(maxsize=None)
def reference(file):
    """{case: {field key: array}} of ``tests/golden/<file>.npz``."""
    with np.load(GOLDEN_DIR / f"{file}.npz", allow_pickle=False) as data:
        arrays = unpack(data)
    out = {}
    for key, value in arrays.items():
        out.setdefault(key.split(SEP, 1)[0], {})[key] = value
    return out


def compute(file, name):
    """The flattened result of case ``name`` of ``file``, computed now."""
    with deterministic():
        return flatten(name + SEP, CASES[file][name]())


# --------------------------------------------------------------------------
# Data and models (NumPy/SciPy only: the inputs do not depend on daskgmm)
# --------------------------------------------------------------------------


def _cluster_rows(rng, n, mean, scale):
    d = len(mean)
    a = rng.normal(size=(d, d)) * 0.4 + np.eye(d)
    return rng.normal(size=(n, d)) @ a.T * scale + mean


@functools.lru_cache(maxsize=None)
def scenario(name):
    """``(X float64 (n, D), labels (n,), K)`` of a named data set, read-only
    (it is cached: callers pass copies on)."""
    X, labels, k = _make_scenario(name)
    X.flags.writeable = labels.flags.writeable = False
    return X, labels, k


def _make_scenario(name):
    rng = np.random.default_rng(sum(map(ord, name)))
    if name in ("blobs", "blobs_wide"):
        # Ordinary clusters: 'full' takes the pair products at D=4, K=3 and
        # the one product at D=6, K=2 (K <= (D + 1) / 2).
        d, k, n = (4, 3, 300) if name == "blobs" else (6, 2, 240)
        means = rng.normal(scale=5.0, size=(k, d))
        labels = rng.integers(k, size=n)
        X = np.empty((n, d))
        for j in range(k):
            X[labels == j] = _cluster_rows(rng, int((labels == j).sum()), means[j], 1.0)
        return X, labels, k
    if name in ("far", "far_pairs"):
        # Clusters far from the block's pivot relative to their spread (and
        # from each other): pivot moments that cancel, components shifted
        # or summed about pivots of their own, in float32 and float64.  The
        # last one is narrow (1e-3) and 1e4 out: beyond even float64's
        # shifted bound.  'far' is 'full' with one product (D=7, K=4),
        # 'far_pairs' with pair products (D=3, K=4).
        d = 7 if name == "far" else 3
        centres = np.zeros((4, d))
        centres[1, 0], centres[2, 1], centres[3, 0] = 3.0, 900.0, 1e4
        scales, sizes = [1.0, 1.0, 1.0, 1e-3], [150, 120, 80, 50]
        labels = np.repeat(np.arange(4), sizes)
        X = np.concatenate([_cluster_rows(rng, m, c, s) for m, c, s in zip(sizes, centres, scales)])
        order = rng.permutation(len(X))
        return X[order], labels[order], 4
    if name == "collapsed":
        # Blobs plus 12 copies of one point: a component of variance
        # reg_covar a few units from the pivot (the E-step's cancelling
        # components, evaluated from x - mu).
        X, labels, k = scenario("blobs")
        point = X.mean(axis=0) + np.array([2.0, -1.0, 0.5, 1.0])
        X = np.concatenate([X, np.repeat(point[None, :], 12, axis=0)])
        labels = np.concatenate([labels, np.full(12, k)])
        order = rng.permutation(len(X))
        return X[order], labels[order], k + 1
    if name == "constant_features":
        # Clusters with constant features (pixels constant within one): the
        # 'diag'/'spherical' flagged pairs, few per component, and a
        # component with most of its features flagged.
        d, k, n = 6, 3, 360
        means = rng.normal(scale=4.0, size=(k, d))
        labels = rng.integers(k, size=n)
        X = np.empty((n, d))
        for j in range(k):
            X[labels == j] = _cluster_rows(rng, int((labels == j).sum()), means[j], 1.0)
        X[labels == 0, 1] = 7.25
        X[labels == 0, 4] = -3.5
        X[labels == 1, :5] = means[1, :5].round(1)
        return X, labels, k
    if name == "slices":
        # Enough rows for several row slices of block_statistics (about
        # 35,000 rows each for 'full' at D=5, K=3): components near and far
        # from the pivot, one seen only in the middle slices, so that
        # pivot moments cancel in the running sums of a later slice.
        d, n = 5, 120_000
        labels = rng.integers(2, size=n)
        labels[45_000:55_000] = 2
        centres = np.array([[0.0] * d, [4.0, 1.0, 0.0, 0.0, 0.0], [0.0, 2e3, 0.0, 0.0, 0.0]])
        X = centres[labels] + rng.normal(size=(n, d)) * np.array([1.0, 1.0, 0.5, 2.0, 1.0])
        return X, labels, 3
    if name == "slices_pairs":
        # Several slices again, 'full' on pair products (D=3, K=4), and
        # 'diag' in two float32 slices: three small clusters far out, which
        # the model puts far from the pivot from the start, and a large one
        # about 150 standard deviations from it (its pivot moments cancel
        # in float32, where every entry leaves the pivot in the first slice,
        # not in float64, where it stays on the pivot alone).
        d, n = 3, 160_000
        labels = rng.choice(4, size=n, p=[0.7, 0.1, 0.1, 0.1])
        centres = np.zeros((4, d))
        centres[1, 0], centres[2, 1], centres[3, 2] = 1.5e3, 1.5e3, 1.5e3
        X = centres[labels] + rng.normal(size=(n, d))
        return X, labels, 4
    raise KeyError(name)


BLOCK_SCENARIOS = (
    "blobs", "blobs_wide", "far", "far_pairs", "collapsed", "constant_features", "slices", "slices_pairs",
)


@functools.lru_cache(maxsize=None)
def scenario_params(name):
    """Per-cluster weights, means and full covariances (each plus 1e-6 I, as
    reg_covar would add) of a scenario's rows, the means moved a little (far
    clusters' by 30 standard deviations in one feature: a model whose mean
    has left its rows)."""
    X, labels, k = scenario(name)
    rng = np.random.default_rng(7)
    d = X.shape[1]
    weights, means, covs = [], [], []
    for j in range(k):
        rows = X[labels == j]
        weights.append(len(rows) / len(X))
        cov = np.cov(rows, rowvar=False, bias=True) + 1e-6 * np.eye(d)
        sd = np.sqrt(np.diag(cov))
        shift = 0.1 * sd * rng.normal(size=d)
        if name.startswith("far") and j >= 2:
            shift[1] += 30 * sd[1]
        means.append(rows.mean(axis=0) + shift)
        covs.append(cov)
    return np.array(weights), np.array(means), np.array(covs)


def make_test_model(kind, weights, means, full_covs):
    """A block :class:`Model` of type ``kind`` from full covariances, in
    float64, computed with NumPy/SciPy only."""
    k, d = means.shape
    if kind == "tied":
        cov = np.tensordot(weights, full_covs, axes=1)
        pc = linalg.solve_triangular(linalg.cholesky(cov, lower=True), np.eye(d), lower=True).T
        log_det = np.sum(np.log(np.diag(pc)))
    elif kind == "full":
        pc = np.stack([linalg.solve_triangular(linalg.cholesky(c, lower=True), np.eye(d), lower=True).T
                       for c in full_covs])
        log_det = np.sum(np.log(np.diagonal(pc, axis1=1, axis2=2)), axis=1)
    elif kind == "diag":
        pc = 1.0 / np.sqrt(np.diagonal(full_covs, axis1=1, axis2=2))
        log_det = np.sum(np.log(pc), axis=1)
    else:
        pc = 1.0 / np.sqrt(np.diagonal(full_covs, axis1=1, axis2=2).mean(axis=1))
        log_det = d * np.log(pc)
    return Model(kind, np.log(weights), means, pc, np.asarray(log_det))


def scenario_models(name, kind, stack):
    """The model(s) of a scenario: one; or two stacked (``stack_models``),
    'equal' (the same K, moved and widened) or 'unequal' (K and K - 1)."""
    weights, means, covs = scenario_params(name)
    first = make_test_model(kind, weights, means, covs)
    if stack is None:
        return first, None
    if stack == "equal":
        second = make_test_model(kind, weights[::-1] / weights.sum(), means + 0.2, covs * 1.1)
    else:
        w = weights[:-1] / weights[:-1].sum()
        second = make_test_model(kind, w, means[:-1] - 0.3, covs[:-1] * 0.9)
    return _blocks.stack_models([first, second])


def scenario_resp(name, groups):
    """A copy of :func:`_scenario_resp` (cached)."""
    return _scenario_resp(name, groups).copy()


@functools.lru_cache(maxsize=None)
def _scenario_resp(name, groups):
    """Given responsibilities (n, K) (stacked: each group's, side by side):
    one-hot on the true labels for most rows (exact zeros), soft on one row
    in five."""
    X, labels, k = scenario(name)
    rng = np.random.default_rng(11)
    parts = []
    for size in groups or (k,):
        lab = np.minimum(labels, size - 1)
        resp = np.zeros((len(X), size))
        resp[np.arange(len(X)), lab] = 1.0
        soft = np.arange(len(X)) % 5 == 0
        resp[soft] = rng.dirichlet(np.ones(size), size=int(soft.sum()))
        parts.append(resp)
    return np.concatenate(parts, axis=1)


def scenario_weights(n):
    """A copy of :func:`_scenario_weights` (cached)."""
    return _scenario_weights(n).copy()


@functools.lru_cache(maxsize=None)
def _scenario_weights(n):
    """Sample weights in [0, 3), one in seven exactly 0."""
    w = np.random.default_rng(3).uniform(0.0, 3.0, size=n)
    w[::7] = 0.0
    return w


def with_nan_rows(X):
    """``X`` with NaN or inf in a few rows (for ``skip_nonfinite``)."""
    X = X.copy()
    X[5, 1] = np.nan
    X[17, :] = np.nan
    X[40, 0] = np.inf
    return X


# --------------------------------------------------------------------------
# Block cases
# --------------------------------------------------------------------------


def block_case(name, kind, dtype, weighted, resp, stack, skip):
    X64, _, _ = scenario(name)
    model, groups = scenario_models(name, kind, stack)
    X = (with_nan_rows(X64) if skip else X64).astype(DTYPES[dtype])
    kwargs = {"row_offset": 1000, "groups": groups}
    if weighted:
        kwargs["sample_weight"] = scenario_weights(len(X)).astype(DTYPES[dtype])
    if skip:
        kwargs["skip_nonfinite"] = True
    if resp == "resp":
        kwargs["resp"] = scenario_resp(name, groups).astype(DTYPES[dtype])
    elif resp == "resp_t":
        kwargs["resp_t"] = np.ascontiguousarray(scenario_resp(name, groups).T.astype(DTYPES[dtype]))
    stats = _blocks.block_statistics(X, model, **kwargs)
    return {"stats": stats}


def _block_cases():
    cases = {}
    for name in BLOCK_SCENARIOS:
        big = name.startswith("slices")  # fewer variants of the large blocks, for time
        for kind in KINDS:
            for dtype in DTYPES:
                for stack in (None, "unequal") if big else (None, "equal", "unequal"):
                    if kind == "tied" and stack:
                        continue  # 'tied' components share their precision: never stacked
                    for weighted in (False, True):
                        for resp in (None, "resp") if big else (None, "resp", "resp_t"):
                            if resp == "resp_t" and (weighted or stack):
                                continue
                            skips = (False, True) if name == "blobs" and resp is None else (False,)
                            for skip in skips:
                                case = f"{name}-{kind}-{dtype}-stack={stack}-w={int(weighted)}-resp={resp}"
                                case += "-skip" if skip else ""
                                cases[case] = functools.partial(block_case, name, kind, dtype, weighted, resp,
                                                                stack, skip)
            for dtype in DTYPES:
                if name in ("blobs_wide", "far_pairs", "collapsed", "constant_features"):
                    cases[f"log_resp-{name}-{kind}-{dtype}"] = functools.partial(log_resp_case, name, kind, dtype)
                if not big:
                    cases[f"merge-{name}-{kind}-{dtype}"] = functools.partial(merge_case, name, kind, dtype)
    for kind in KINDS:
        for dtype in DTYPES:
            cases[f"log_resp-skip-{kind}-{dtype}"] = functools.partial(log_resp_case, "blobs", kind, dtype, True)
            cases[f"empty-{kind}-{dtype}"] = functools.partial(empty_case, kind, dtype)
    return cases


def empty_case(kind, dtype):
    """A block of no rows: E-step, weights and given responsibilities."""
    model, _ = scenario_models("blobs", kind, None)
    X = np.empty((0, 4), dtype=DTYPES[dtype])
    return {
        "e_step": _blocks.block_statistics(X, model),
        "weighted": _blocks.block_statistics(X, model, sample_weight=np.empty(0, dtype=DTYPES[dtype])),
        "resp": _blocks.block_statistics(X, model, resp=np.empty((0, 3), dtype=DTYPES[dtype])),
        "log_resp": _blocks.estimate_log_resp(X, model),
    }


def log_resp_case(name, kind, dtype, skip=False):
    X64, _, _ = scenario(name)
    X = (with_nan_rows(X64) if skip else X64).astype(DTYPES[dtype])
    model, _ = scenario_models(name, kind, None)
    log_norm, log_resp = _blocks.estimate_log_resp(X, model, skip_nonfinite=skip)
    return {"log_norm": log_norm, "log_resp": log_resp}


def merge_case(name, kind, dtype):
    """Three blocks of unequal sizes, each with its own pivot, merged
    pairwise and left to right; with weights and given responsibilities."""
    X64, _, _ = scenario(name)
    X = X64.astype(DTYPES[dtype])
    model, _ = scenario_models(name, kind, None)
    weights = scenario_weights(len(X)).astype(DTYPES[dtype])
    resp = scenario_resp(name, None).astype(DTYPES[dtype])
    cuts = [0, len(X) // 5, len(X) // 2, len(X)]
    parts = [slice(a, b) for a, b in zip(cuts[:-1], cuts[1:])]
    e_step = [_blocks.block_statistics(X[p], model, row_offset=p.start) for p in parts]
    weighted = [_blocks.block_statistics(X[p], model, sample_weight=weights[p]) for p in parts]
    given = [_blocks.block_statistics(X[p], model, resp=resp[p]) for p in parts]
    return {
        "pair": _blocks.merge_statistics(e_step[0], e_step[1]),
        "pair_reversed": _blocks.merge_statistics(e_step[1], e_step[0]),
        "many": _blocks.merge_many(e_step),
        "many_weighted": _blocks.merge_many(weighted),
        "many_resp": _blocks.merge_many(given),
    }


# --------------------------------------------------------------------------
# Missing-feature cases
# --------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def missing_data(name):
    """A scenario's rows with NaN entries: a pattern shared by 80 rows
    (feature 0), rarer ones (one or two features, at random), three rows
    with every feature missing, the rest complete."""
    X, labels, k = scenario(name)
    X = X.copy()
    rng = np.random.default_rng(5)
    n, d = X.shape
    order = rng.permutation(n)
    X[order[:80], 0] = np.nan
    for i in order[80:140]:
        X[i, rng.choice(d, size=rng.integers(1, 3), replace=False)] = np.nan
    X[order[140:143], :] = np.nan
    return X, labels, k


MISSING_SCENARIOS = ("blobs", "blobs_wide", "far_pairs", "collapsed")


def missing_case(name, kind, dtype, weighted, stack):
    X64, _, _ = missing_data(name)
    X = X64.astype(DTYPES[dtype])
    model, groups = scenario_models(name, kind, stack)
    weights = scenario_weights(len(X)).astype(DTYPES[dtype]) if weighted else None
    stats = _blocks_missing.marginal_block_statistics(X, model, row_offset=100, groups=groups, sample_weight=weights)
    out = {"stats": stats}
    if name == "blobs" and not weighted:
        # A block without NaN (the plain path) and one of rows with every
        # feature missing (left out: zero statistics).
        complete, _, _ = scenario(name)
        out["complete"] = _blocks_missing.marginal_block_statistics(complete.astype(X.dtype), model, groups=groups)
        out["all_missing"] = _blocks_missing.marginal_block_statistics(np.full((5, X.shape[1]), np.nan, X.dtype),
                                                                       model, groups=groups)
        if stack is None:
            out["complete_log_resp"] = _blocks_missing.marginal_log_resp(complete[:50].astype(X.dtype), model)
    if not weighted and stack is None:
        log_norm, log_resp = _blocks_missing.marginal_log_resp(X, model, row_offset=100)
        out["log_norm"], out["log_resp"] = log_norm, log_resp
        cuts = [0, 90, 200, len(X)]
        out["merged"] = _blocks.merge_many(
            _blocks_missing.marginal_block_statistics(X[a:b], model, row_offset=a) for a, b in zip(cuts[:-1], cuts[1:])
        )
    return out


def _missing_cases():
    cases = {}
    for name in MISSING_SCENARIOS:
        for kind in KINDS:
            for dtype in DTYPES:
                for stack in (None, "unequal"):
                    if kind == "tied" and stack:
                        continue
                    for weighted in (False, True):
                        case = f"{name}-{kind}-{dtype}-stack={stack}-w={int(weighted)}"
                        cases[case] = functools.partial(missing_case, name, kind, dtype, weighted, stack)
    return cases


# --------------------------------------------------------------------------
# Engine cases: one EM pass and one scoring pass over a chunked Dask array
# --------------------------------------------------------------------------


def engine_models():
    """Runs of every type, some stacked by :func:`_engine.stack_plan`
    ('full' K=3 with K=2, 'diag' K=3 with K=2; 'tied' alone)."""
    weights, means, covs = scenario_params("blobs")
    specs = [("full", 3), ("tied", 3), ("diag", 3), ("full", 2), ("spherical", 3), ("diag", 2), ("tied", 2)]
    models = []
    for i, (kind, k) in enumerate(specs):
        w = weights[:k] / weights[:k].sum()
        models.append(make_test_model(kind, w, means[:k] + 0.1 * i, covs[:k] * (1 + 0.05 * i)))
    return models


def engine_data(dtype, variant):
    if variant == "marginalize":
        X, _, _ = missing_data("blobs")
    elif variant == "skip":
        X = with_nan_rows(scenario("blobs")[0])
    else:
        X = scenario("blobs")[0]
    return da.from_array(X.astype(DTYPES[dtype]), chunks=(40, -1))


def engine_case(dtype, variant, weighted, what):
    dX = engine_data(dtype, variant)
    weights = None
    if weighted:
        weights = da.from_array(scenario_weights(dX.shape[0]).astype(DTYPES[dtype]), chunks=(40,))
    models = engine_models()
    marginalize = variant == "marginalize"
    if what == "score":
        return {"totals": _engine.score_pass(dX, models, split_every=3, weights=weights, marginalize=marginalize)}
    runs = [_engine.Run(m.covariance_type, None, None, None, None) for m in models]
    stats = _engine.em_pass(
        dX, runs, skip_nonfinite=variant == "skip", split_every=3, batches=None, models=models, weights=weights,
        marginalize=marginalize,
    )
    return {"stats": stats}


def _engine_cases():
    cases = {}
    for dtype in DTYPES:
        for variant in ("plain", "marginalize", "skip"):
            for weighted in (False, True):
                for what in ("em", "score"):
                    if what == "score" and variant == "skip":
                        continue  # score_pass has no skip_nonfinite
                    cases[f"{what}-{variant}-{dtype}-w={int(weighted)}"] = functools.partial(
                        engine_case, dtype, variant, weighted, what)
    return cases


# --------------------------------------------------------------------------
# Estimator cases
# --------------------------------------------------------------------------

ESTIMATORS = {"gmm": GaussianMixture, "bgmm": BayesianGaussianMixture}
INIT_PARAMS = ("kmeans", "k-means++", "random", "random_from_data")


def fitted(estimator):
    """Every fitted attribute (public, ending in '_'), the timings of
    ``history_`` left out."""
    out = {}
    for name, value in vars(estimator).items():
        if name.startswith("_") or not name.endswith("_"):
            continue
        if name == "history_":
            value = [{k: v for k, v in record.items() if k != "seconds"} for record in value]
        out[name] = value
    return out


def estimator_data(dtype, variant="plain"):
    if variant == "marginalize":
        X, _, _ = missing_data("blobs")
    elif variant == "skip":
        X = with_nan_rows(scenario("blobs")[0])
    else:
        X = scenario("blobs")[0]
    return X.astype(DTYPES[dtype])


def given_parameters(kind, dtype):
    """``weights_init``, ``means_init`` and ``precisions_init`` of type ``kind``."""
    weights, means, covs = scenario_params("blobs")
    model = make_test_model(kind, weights, means, covs)
    pc = model.precisions_cholesky
    if kind == "full":
        precisions = pc @ np.swapaxes(pc, 1, 2)
    elif kind == "tied":
        precisions = pc @ pc.T
    else:
        precisions = pc * pc
    return {"weights_init": weights, "means_init": means.astype(DTYPES[dtype]), "precisions_init": precisions}


def given_priors(kind, d):
    """Every prior of :class:`BayesianGaussianMixture` given (none data-dependent)."""
    covariance_prior = {"full": 2.0 * np.eye(d), "tied": 2.0 * np.eye(d), "diag": np.full(d, 2.0), "spherical": 2.0}
    return {"weight_concentration_prior": 0.1, "mean_prior": np.linspace(-1.0, 1.0, d), "mean_precision_prior": 0.5,
            "degrees_of_freedom_prior": d + 1.5, "covariance_prior": covariance_prior[kind]}


def make_estimator(est, kind, init="kmeans", variant="plain", **params):
    params = {"n_components": 3, "covariance_type": kind, "init_params": init, "max_iter": 4, "random_state": 0,
              **params}
    if variant == "marginalize":
        params["missing"] = "marginalize"
    if variant.startswith("dask"):
        params["split_every"] = 2
    return ESTIMATORS[est](**params)


def fit_case(est, kind, dtype, init, variant, **params):
    """A fit; ``variant``: 'plain', 'weights', 'marginalize', 'skip'
    (``skip_nonfinite``), 'dask' (a chunked Dask array), 'dask_weights'."""
    X = estimator_data(dtype, variant)
    model = make_estimator(est, kind, init, variant, **params)
    fit_kwargs = {}
    if variant in ("weights", "dask_weights"):
        fit_kwargs["sample_weight"] = scenario_weights(len(X))
    if variant == "skip":
        fit_kwargs["skip_nonfinite"] = True
    if variant.startswith("dask"):
        X = da.from_array(X, chunks=(50, -1))
        if "sample_weight" in fit_kwargs:
            fit_kwargs["sample_weight"] = da.from_array(fit_kwargs["sample_weight"], chunks=(50,))
    model.fit(X, **fit_kwargs)
    return fitted(model)


def rows_case(est, kind, dtype, variant):
    """Per-row outputs and scores of a fitted model (lazy for Dask input)."""
    X = estimator_data(dtype, variant)
    model = make_estimator(est, kind, "kmeans", variant).fit(X)
    if variant == "dask":
        X = da.from_array(X, chunks=(70, -1))
    out = {name: getattr(model, name)(X) for name in ("predict", "predict_proba", "score_samples", "score")}
    if est == "gmm":
        out["bic"], out["aic"] = model.bic(X), model.aic(X)
    return {name: value.compute() if hasattr(value, "compute") else value for name, value in out.items()}


def initialize_case(est, kind, dtype, weighted):
    """scikit-learn's ``_initialize(X, resp)`` hook: the M-step of given
    responsibilities."""
    X = estimator_data(dtype)
    model = make_estimator(est, kind)
    weights = scenario_weights(len(X)) if weighted else None
    model._initialize(X, scenario_resp("blobs", None), sample_weight=weights)
    return fitted(model)


def partial_fit_case(est, kind, dtype, mode):
    X = estimator_data(dtype)
    batches = [X[:100], X[100:220], X[220:]]
    weights = scenario_weights(len(X))
    model = make_estimator(est, kind, max_iter=3, partial_fit_mode="exact" if mode == "exact" else "stepwise")
    steps = {}
    if mode == "stepwise":
        for i, batch in enumerate(batches):
            model.partial_fit(batch, sample_weight=weights[:100] if i == 0 else None)
            steps[f"batch{i}"] = fitted(model)
    elif mode == "exact":
        for p in range(2):
            for i, batch in enumerate(batches):
                model.partial_fit(batch, sample_weight=weights[100:220] if i == 1 else None)
            model.end_pass()
            steps[f"pass{p}"] = fitted(model)
    else:  # a stepwise stream continuing a fit ('after_fit'; 'after_weighted_fit')
        model.fit(X, sample_weight=weights * 1024.0 if mode == "after_weighted_fit" else None)
        for i, batch in enumerate(batches[:2]):
            model.partial_fit(batch)
            steps[f"batch{i}"] = fitted(model)
    return steps


def select_case(dtype, variant):
    X = estimator_data(dtype, variant)
    kwargs = {}
    if variant == "weights":
        kwargs["sample_weight"] = scenario_weights(len(X))
    if variant == "marginalize":
        kwargs["missing"] = "marginalize"
    result = select_n_components(
        X, range(1, 4), covariance_types=KINDS, n_init=2, random_state=0, max_iter=3, **kwargs
    )
    out = {"table": result.table, "n_passes": result.n_passes_, "passes": result.passes_,
           "criterion": result.criterion, "best": fitted(result.best_)}
    for (k, kind), model in sorted(result.models_.items()):
        out[f"model_{k}_{kind}"] = fitted(model)
    return out


def _estimator_cases():
    cases = {}
    add = lambda name, fn, *args, **kwargs: cases.setdefault(name, functools.partial(fn, *args, **kwargs))  # noqa: E731
    for est in ESTIMATORS:
        for kind in KINDS:
            for dtype in DTYPES:
                for init in INIT_PARAMS:
                    add(f"fit-{est}-{kind}-{dtype}-{init}", fit_case, est, kind, dtype, init, "plain")
                    if est == "gmm":
                        add(f"fit-{est}-{kind}-{dtype}-{init}-weights", fit_case, est, kind, dtype, init, "weights")
                add(f"fit-{est}-{kind}-{dtype}-kmeans-weights", fit_case, est, kind, dtype, "kmeans", "weights")
                add(f"fit-{est}-{kind}-{dtype}-marginalize", fit_case, est, kind, dtype, "kmeans", "marginalize")
                if est == "gmm":
                    add(f"fit-{est}-{kind}-{dtype}-given_init", fit_case, est, kind, dtype, "kmeans", "plain",
                        **given_parameters(kind, dtype))
                    # Some given: the initialisation's others kept.
                    given = given_parameters(kind, dtype)
                    some = {"means_init": given["means_init"]} if dtype == "f64" else {
                        "weights_init": given["weights_init"], "precisions_init": given["precisions_init"]}
                    add(f"fit-{est}-{kind}-{dtype}-some_given_init", fit_case, est, kind, dtype, "k-means++", "plain",
                        **some)
                add(f"rows-{est}-{kind}-{dtype}-plain", rows_case, est, kind, dtype, "plain")
                add(f"initialize-{est}-{kind}-{dtype}", initialize_case, est, kind, dtype, dtype == "f64")
                for mode in ("stepwise", "exact", "after_fit"):
                    add(f"partial_fit-{est}-{kind}-{dtype}-{mode}", partial_fit_case, est, kind, dtype, mode)
            add(f"fit-{est}-{kind}-f64-n_init3", fit_case, est, kind, "f64", "k-means++", "plain", n_init=3)
            add(f"fit-{est}-{kind}-f32-dask", fit_case, est, kind, "f32", "kmeans", "dask")
            add(f"fit-{est}-{kind}-f64-dask_weights", fit_case, est, kind, "f64", "random", "dask_weights")
            for init in ("kmeans", "random_from_data"):
                add(f"fit-{est}-{kind}-f64-{init}-skip", fit_case, est, kind, "f64", init, "skip")
            add(f"rows-{est}-{kind}-f64-dask", rows_case, est, kind, "f64", "dask")
            add(f"rows-{est}-{kind}-f32-marginalize", rows_case, est, kind, "f32", "marginalize")
            add(f"partial_fit-{est}-{kind}-f64-after_weighted_fit", partial_fit_case, est, kind, "f64",
                "after_weighted_fit")
        for dtype in DTYPES:
            add(f"fit-bgmm-{kind}-{dtype}-dirichlet_distribution", fit_case, "bgmm", kind, dtype, "kmeans", "plain",
                weight_concentration_prior_type="dirichlet_distribution")
            add(f"fit-bgmm-{kind}-{dtype}-given_priors", fit_case, "bgmm", kind, dtype, "random", "plain",
                **given_priors(kind, 4))
    for dtype in DTYPES:
        add(f"select-{dtype}-plain", select_case, dtype, "plain")
    add("select-f32-weights", select_case, "f32", "weights")
    add("select-f64-marginalize", select_case, "f64", "marginalize")
    return cases


CASES = {
    "blocks": _block_cases(),
    "missing": _missing_cases(),
    "engine": _engine_cases(),
    "estimators": _estimator_cases(),
}


# --------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------


def _check(file, name):
    expected = reference(file).get(name)
    assert expected is not None, f"no reference for case {name!r} in {file}.npz: run tests/golden/make_golden.py"
    assert_bitwise(expected, compute(file, name))


@pytest.mark.parametrize("name", sorted(CASES["blocks"]))
def test_block_statistics_golden(name):
    _check("blocks", name)


@pytest.mark.parametrize("name", sorted(CASES["missing"]))
def test_missing_golden(name):
    _check("missing", name)


@pytest.mark.parametrize("name", sorted(CASES["engine"]))
def test_engine_golden(name):
    _check("engine", name)


@pytest.mark.parametrize("name", sorted(CASES["estimators"]))
def test_estimator_golden(name):
    _check("estimators", name)


@pytest.mark.parametrize("file", FILES)
def test_reference_holds_exactly_the_cases(file):
    """No case without reference data, and no reference data without a case
    (a renamed or dropped case must be regenerated, not silently skipped)."""
    stored = set(reference(file)) - {META}
    assert stored == set(CASES[file]), (
        f"{file}.npz: cases without reference {sorted(set(CASES[file]) - stored)[:5]}, "
        f"reference without case {sorted(stored - set(CASES[file]))[:5]}"
    )


def test_assert_bitwise_sees_one_ulp_and_signed_zero():
    """The comparison itself: one ulp, a signed zero, a dtype or a key differ."""
    want = {"a": np.array([1.0, 0.0, np.nan], dtype=np.float32)}
    assert_bitwise(want, {"a": want["a"].copy()})
    for got in (
        {"a": np.array([np.nextafter(np.float32(1), np.float32(2)), 0.0, np.nan], dtype=np.float32)},
        {"a": np.array([1.0, -0.0, np.nan], dtype=np.float32)},
        {"a": np.array([1.0, 0.0, np.nan], dtype=np.float64)},
        {"a": want["a"], "b": np.asarray(0)},
    ):
        with pytest.raises(AssertionError):
            assert_bitwise(want, got)
