"""Checkpoint and resume (daskgmm._checkpoint, ``fit(X, checkpoint=PATH)``):
a driver killed with SIGKILL resumes to the uninterrupted answer, the file is
never half-written, and a checkpoint for other data or settings is refused."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import dask.array as da

from daskgmm import GaussianMixture
from daskgmm._checkpoint import load_checkpoint
from daskgmm.io import read_archive, write_archive

from .conftest import make_blobs

REPO = Path(__file__).resolve().parents[1]
KW = dict(n_components=3, n_init=2, tol=0.0, max_iter=12, random_state=0)
CHUNKS = (100, -1)

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def data():
    X, _, _ = make_blobs(n=600, d=3, k=3, seed=11)
    return X


@pytest.fixture(scope="module")
def uninterrupted(data):
    return GaussianMixture(**KW).fit(da.from_array(data, chunks=CHUNKS))


def assert_same_parameters(a, b, atol=1e-10):
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=0, atol=atol, err_msg=name)
    assert a.lower_bound_ == pytest.approx(b.lower_bound_, rel=0, abs=atol)
    assert a.n_iter_ == b.n_iter_
    assert a.converged_ == b.converged_


def temp_files(folder):
    return sorted(p.name for p in Path(folder).iterdir() if ".daskgmm-" in p.name and p.name.endswith(".tmp"))


def run_child(script, env_extra=None):
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.update(env_extra or {})
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


@pytest.mark.slow
def test_driver_killed_with_sigkill_resumes_to_the_same_answer(tmp_path, data, uninterrupted):
    """A child process fits with a checkpoint and is SIGKILLed after iteration
    3; resuming here continues at iteration 4 and ends with the parameters,
    lower bounds and iteration count of the uninterrupted fit."""
    np.save(tmp_path / "X.npy", data)
    path = tmp_path / "fit.ckpt"
    child = run_child(
        f"""
        import time, warnings
        import numpy as np, dask.array as da
        from daskgmm import GaussianMixture
        warnings.simplefilter("ignore")
        X = np.load({str(tmp_path / "X.npy")!r})
        def callback(event):
            print(event["iteration"], flush=True)
            if event["iteration"] == 3:
                time.sleep(120)  # killed here
        GaussianMixture(**{KW!r}).fit(da.from_array(X, chunks={CHUNKS!r}), checkpoint={str(path)!r}, callback=callback)
        print("finished", flush=True)
        """
    )
    try:
        seen = []
        for line in child.stdout:
            seen.append(line.strip())
            if line.strip() == "3":
                break
        assert seen == ["1", "2", "3"], child.stderr.read() if child.poll() is not None else seen
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    # The file the killed process left is complete and describes iteration 3.
    arrays, meta = read_archive(path)
    assert meta["kind"] == "checkpoint" and meta["iteration"] == 3 and meta["n_runs"] == 2
    assert list(arrays["runs_n_iter"]) == [3, 3]
    assert temp_files(tmp_path) == []

    events = []
    resumed = GaussianMixture(**KW).fit(da.from_array(data, chunks=CHUNKS), checkpoint=path, callback=events.append)
    assert [e["iteration"] for e in events] == list(range(4, 13))
    assert resumed.n_passes_ == 9  # no initialisation, iterations 4..12 only
    assert_same_parameters(resumed, uninterrupted)
    assert resumed.lower_bounds_ == pytest.approx(uninterrupted.lower_bounds_, rel=0, abs=1e-12)
    assert [h["iteration"] for h in resumed.history_] == list(range(1, 13))
    assert read_archive(path)[1]["iteration"] == 12
    assert temp_files(tmp_path) == []


@pytest.mark.slow
def test_sigkill_during_writes_never_leaves_a_half_written_checkpoint(tmp_path):
    """A child rewrites a 4 MB checkpoint in a loop and is SIGKILLed at a random
    moment: the checkpoint always loads, whole (a temporary file may remain
    beside it, as SIGKILL allows no clean-up)."""
    path = tmp_path / "big.ckpt"
    child = run_child(
        f"""
        import numpy as np
        from daskgmm._families import Run
        from daskgmm._checkpoint import save_checkpoint
        k, d = 40, 40
        cov = np.broadcast_to(np.eye(d), (k, d, d)).copy()
        it = 0
        while True:
            it += 1
            run = Run("full", np.full(k, 1 / k), np.full((k, d), float(it)), cov, cov, lower_bound=-float(it), n_iter=it)
            save_checkpoint({str(path)!r}, [run, run], it, {{"marker": 1}})
            if it == 3:
                print("writing", flush=True)
        """
    )
    try:
        assert child.stdout.readline().strip() == "writing", child.stderr.read()
        time.sleep(0.3 + 0.4 * np.random.default_rng().random())
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    runs, iteration, _ = load_checkpoint(path, {"marker": 1})
    assert iteration >= 3
    for run in runs:
        assert run.n_iter == iteration and run.lower_bound == -iteration
        np.testing.assert_array_equal(run.means, float(iteration))
    assert len(temp_files(tmp_path)) <= 1


def test_failed_write_keeps_previous_checkpoint_and_no_temp_file(tmp_path, data, uninterrupted, monkeypatch):
    """A write that dies half-way (disk full, say) raises, leaves the previous
    checkpoint intact and removes its temporary file; resuming then gives the
    uninterrupted answer."""
    path = tmp_path / "fit.ckpt"
    real_savez = np.savez

    def half_write(handle, **arrays):
        handle.write(b"PK\x03\x04 half a zip")
        raise OSError("No space left on device")

    def callback(event):
        if event["iteration"] == 4:
            monkeypatch.setattr(np, "savez", half_write)

    with pytest.raises(OSError, match="No space left"):
        GaussianMixture(**KW).fit(da.from_array(data, chunks=CHUNKS), checkpoint=path, callback=callback)
    monkeypatch.setattr(np, "savez", real_savez)
    assert read_archive(path)[1]["iteration"] == 4
    assert temp_files(tmp_path) == []
    resumed = GaussianMixture(**KW).fit(da.from_array(data, chunks=CHUNKS), checkpoint=path)
    assert_same_parameters(resumed, uninterrupted)
    assert temp_files(tmp_path) == []


def test_resume_with_other_chunking_and_more_iterations(tmp_path, data):
    """The checkpoint written after initialisation (max_iter=0) skips the
    initialisation when resumed; the chunking may change and max_iter grow."""
    path = tmp_path / "fit.ckpt"
    first = GaussianMixture(**dict(KW, max_iter=0)).fit(da.from_array(data, chunks=CHUNKS), checkpoint=path)
    assert read_archive(path)[1]["iteration"] == 0 and first.n_passes_ > 0
    resumed = GaussianMixture(**KW).fit(da.from_array(data, chunks=(170, -1)), checkpoint=path)
    assert resumed.n_passes_ == KW["max_iter"]
    reference = GaussianMixture(**KW).fit(da.from_array(data, chunks=(170, -1)))
    assert_same_parameters(resumed, reference, atol=1e-12)
    # The same (finished) checkpoint again: nothing left to do but the one
    # pass that checks it was written for this data.
    again = GaussianMixture(**KW).fit(da.from_array(data, chunks=CHUNKS), checkpoint=path)
    assert again.n_passes_ == 1
    assert_same_parameters(again, reference, atol=0)
    assert again.history_ == resumed.history_


@pytest.fixture(scope="module")
def short_checkpoint(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("ckpt") / "short.ckpt"
    GaussianMixture(**dict(KW, max_iter=2)).fit(da.from_array(data, chunks=CHUNKS), checkpoint=path)
    return path


@pytest.mark.parametrize(
    "change, transform, message",
    [
        (dict(n_components=4), None, "n_components is 3 in the checkpoint but 4 now"),
        (dict(covariance_type="diag"), None, "covariance_type is 'full' in the checkpoint but 'diag' now"),
        (dict(reg_covar=1e-3), None, "reg_covar is 1e-06 in the checkpoint but 0.001 now"),
        (dict(tol=1e-3), None, "tol is 0.0 in the checkpoint but 0.001 now"),
        (dict(n_init=1), None, "n_init is 2 in the checkpoint but 1 now"),
        (dict(random_state=1), None, "random_state is 0 in the checkpoint but 1 now"),
        (dict(init_params="random"), None, "init_params is 'kmeans' in the checkpoint but 'random' now"),
        ({}, lambda X: X[:500], r"shape is \[600, 3\] in the checkpoint but \[500, 3\] now"),
        ({}, lambda X: X[:, :2], r"shape is \[600, 3\] in the checkpoint but \[600, 2\] now"),
        ({}, lambda X: X.astype(np.float32), "dtype is 'float64' in the checkpoint but 'float32' now"),
        (
            dict(n_components=2, covariance_type="tied"),
            None,
            "n_components is 3 in the checkpoint but 2 now; covariance_type is 'full' in the checkpoint but 'tied' now",
        ),
    ],
)
def test_mismatched_checkpoint_is_refused(short_checkpoint, data, change, transform, message):
    before = short_checkpoint.read_bytes()
    X = transform(data) if transform else data
    with pytest.raises(ValueError, match="Cannot resume from checkpoint .*written for different data or settings") as err:
        GaussianMixture(**dict(KW, **change)).fit(da.from_array(X, chunks=CHUNKS), checkpoint=short_checkpoint)
    assert re.search(message, str(err.value))
    assert "Delete the file or pass another checkpoint path" in str(err.value)
    assert short_checkpoint.read_bytes() == before


@pytest.mark.parametrize("transform", [lambda X: X + 0.5, lambda X: X * 1.01, lambda X: X[::-1] ** 2 / 10])
def test_other_data_of_the_same_shape_is_refused_after_one_pass(short_checkpoint, data, transform):
    before = short_checkpoint.read_bytes()
    events = []
    with pytest.raises(ValueError, match="the data differ from those it was written for"):
        GaussianMixture(**KW).fit(
            da.from_array(transform(data), chunks=CHUNKS), checkpoint=short_checkpoint, callback=events.append
        )
    assert events == []  # checked before the user's callback and before the file is rewritten
    assert short_checkpoint.read_bytes() == before


def test_float32_checkpoint_resumes(tmp_path, data):
    """The data summary tolerance follows the dtype: float32 resumes too."""
    X = data.astype(np.float32)
    path = tmp_path / "f32.ckpt"
    GaussianMixture(**dict(KW, max_iter=3)).fit(da.from_array(X, chunks=CHUNKS), checkpoint=path)
    resumed = GaussianMixture(**KW).fit(da.from_array(X, chunks=(150, -1)), checkpoint=path)
    reference = GaussianMixture(**KW).fit(da.from_array(X, chunks=(150, -1)))
    assert resumed.n_iter_ == KW["max_iter"]
    np.testing.assert_allclose(resumed.means_, reference.means_, rtol=1e-4, atol=1e-4)


def test_not_a_checkpoint(tmp_path, data, uninterrupted):
    model_file = uninterrupted.save(tmp_path / "model.npz")
    with pytest.raises(ValueError, match="is not a daskgmm checkpoint"):
        GaussianMixture(**KW).fit(data, checkpoint=model_file)
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a zip at all")
    with pytest.raises(ValueError, match="not a readable daskgmm file"):
        GaussianMixture(**KW).fit(data, checkpoint=garbage)


# --------------------------------------------------------------------------
# A finished checkpoint is verified against the data (issue #15, item 2)
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings", [dict(tol=1e-3, max_iter=100), dict(tol=0.0, max_iter=5)], ids=["converged", "max_iter-reached"]
)
def test_finished_checkpoint_is_not_reused_for_other_data(tmp_path, data, settings, monkeypatch):
    """A converged (or max_iter-reached) checkpoint has nothing left to
    iterate: resuming it makes one verifying pass, returns the stored model
    for the same data and refuses other data of the same shape, leaving the
    file as it was."""
    from daskgmm import _engine

    path = tmp_path / "done.ckpt"
    kw = dict(KW, **settings)
    first = GaussianMixture(**kw).fit(da.from_array(data, chunks=CHUNKS), checkpoint=path)
    assert first.converged_ == (settings["tol"] > 0)
    before = path.read_bytes()
    passes = []
    real_em_pass = _engine.em.em_pass
    monkeypatch.setattr(_engine.em, "em_pass", lambda *a, **k: passes.append(1) or real_em_pass(*a, **k))
    again = GaussianMixture(**kw).fit(da.from_array(data, chunks=(170, -1)), checkpoint=path)
    assert passes == [1]  # the verifying pass, no EM iteration
    assert_same_parameters(again, first, atol=0)
    other = data[::-1] * 1.01 + 0.5
    with pytest.raises(ValueError, match="the data differ from those it was written for"):
        GaussianMixture(**kw).fit(da.from_array(other, chunks=CHUNKS), checkpoint=path)
    with pytest.raises(ValueError, match="the data differ from those it was written for"):
        GaussianMixture(**kw).fit(other, checkpoint=path)  # NumPy input too
    assert path.read_bytes() == before


def test_finished_labelled_checkpoint_refuses_another_nan_mask(tmp_path, data):
    """xarray.fit skips rows with a NaN: the same values under another mask
    are other data.  Here the finite rows even have the same mean and
    variance ([X; X] against [X; NaN]): only the row count differs."""
    xr = pytest.importorskip("xarray")
    from daskgmm import xarray as dxr

    doubled = xr.DataArray(np.vstack([data, data]), dims=("sample", "band")).chunk({"sample": 200})
    masked = xr.DataArray(np.vstack([data, np.full_like(data, np.nan)]), dims=("sample", "band")).chunk({"sample": 200})
    path = tmp_path / "labelled.ckpt"
    kw = dict(KW, tol=1e-3, max_iter=100)
    fitted = dxr.fit(GaussianMixture(**kw), doubled, "band", checkpoint=path)
    assert fitted.converged_
    before = path.read_bytes()
    assert dxr.fit(GaussianMixture(**kw), doubled, "band", checkpoint=path).n_iter_ == fitted.n_iter_
    with pytest.raises(ValueError, match=r"the data differ from those it was written for \(mean, variance and rows"):
        dxr.fit(GaussianMixture(**kw), masked, "band", checkpoint=path)
    assert path.read_bytes() == before
    # An unfinished checkpoint: the same check on the first resumed pass.
    short = tmp_path / "short.ckpt"
    dxr.fit(GaussianMixture(**dict(KW, max_iter=2)), doubled, "band", checkpoint=short)
    with pytest.raises(ValueError, match="the data differ from those it was written for"):
        dxr.fit(GaussianMixture(**KW), masked, "band", checkpoint=short)


# --------------------------------------------------------------------------
# A finished checkpoint: weighted fits, missing values (issue #20, item 7)
# --------------------------------------------------------------------------


def _symmetric_data(missing):
    """Integer-valued rows and their mirror images about 10 (the same NaN
    mask): every feature's observed mean is 10 exactly, and the data
    stretched 3x about it have exactly the same observed sums and counts."""
    X, _, _ = make_blobs(n=300, d=3, k=3, seed=12)
    half = np.round(X * 4)
    if missing == "marginalize":
        half[np.random.default_rng(5).random(half.shape) < 0.1] = np.nan
    X = np.vstack([half, 20.0 - half])
    stretched = 10.0 + 3.0 * (X - 10.0)
    observed = ~np.isnan(X)
    assert np.array_equal(np.nansum(stretched, axis=0), np.nansum(X, axis=0))
    assert np.array_equal(observed.sum(axis=0), (~np.isnan(stretched)).sum(axis=0))
    return X, stretched


def _weights(kind, n):
    if kind is None:
        return None
    # Symmetric (a row and its mirror weigh alike), and with a mean of
    # 2^-30: the passes run on weights scaled by 2^30.
    half = np.random.default_rng(6).uniform(0.2, 3.0, size=n // 2)
    w = np.r_[half, half] * 2.0**-30
    return da.from_array(w, chunks=CHUNKS[0]) if kind == "dask" else w


@pytest.mark.parametrize("weights", [None, "numpy", "dask"])
@pytest.mark.parametrize("missing", ["error", "marginalize"])
@pytest.mark.parametrize("estimator", ["gaussian", "bayesian"])
def test_finished_checkpoint_checks_the_weights_and_the_spread(tmp_path, estimator, missing, weights):
    """A finished checkpoint is returned for the same data and weights (its
    checking pass weighted as the fit was, the total weight compared to
    rounding), equal to the fit that wrote it
    and the uninterrupted fit, and refused for data with the same observed
    sums and counts but three times the spread about their means (with
    missing='marginalize', checked by the counting pass's digest)."""
    from daskgmm import BayesianGaussianMixture

    X, stretched = _symmetric_data(missing)
    w = _weights(weights, len(X))
    kw = dict(n_components=3, tol=1e-3, max_iter=200, random_state=0, missing=missing)
    make = GaussianMixture if estimator == "gaussian" else BayesianGaussianMixture
    rows = da.from_array(X, chunks=CHUNKS)
    uninterrupted = make(**kw).fit(rows, sample_weight=w)
    path = tmp_path / "done.ckpt"
    first = make(**kw).fit(rows, sample_weight=w, checkpoint=path)
    assert first.converged_
    assert_same_parameters(first, uninterrupted, atol=0)
    before = path.read_bytes()
    # Other chunks: the total weight is summed in another order.
    again = make(**kw).fit(da.from_array(X, chunks=(170, -1)), sample_weight=w, checkpoint=path)
    assert_same_parameters(again, uninterrupted, atol=0)
    assert again.history_ == first.history_
    message = (
        r"written for different data or settings \(observed is '\w+' in the checkpoint but '\w+' now\)"
        if missing == "marginalize" else "the data differ from those it was written for"
    )
    with pytest.raises(ValueError, match=message):
        make(**kw).fit(da.from_array(stretched, chunks=CHUNKS), sample_weight=w, checkpoint=path)
    assert path.read_bytes() == before


@pytest.mark.parametrize("weights", ["numpy", "dask"])
def test_weighted_fit_resumes_to_the_uninterrupted_answer(tmp_path, weights):
    X, _ = _symmetric_data("error")
    w = _weights(weights, len(X))
    path = tmp_path / "fit.ckpt"
    GaussianMixture(**dict(KW, max_iter=3)).fit(da.from_array(X, chunks=CHUNKS), sample_weight=w, checkpoint=path)
    resumed = GaussianMixture(**KW).fit(da.from_array(X, chunks=CHUNKS), sample_weight=w, checkpoint=path)
    uninterrupted = GaussianMixture(**KW).fit(da.from_array(X, chunks=CHUNKS), sample_weight=w)
    assert_same_parameters(resumed, uninterrupted, atol=0)
    # The saved row count is the total weight given (not that of the scaled weights the passes use).
    assert read_archive(path)[0]["data_summary"][-1] == pytest.approx(np.sum(_weights("numpy", len(X))), rel=1e-13)


def test_finished_weighted_checkpoint_refuses_other_weights(tmp_path):
    """The same data under weights scaled by a constant: the same Gaussian
    fit, but not the same weights (the digest records the weights given)."""
    X, _ = _symmetric_data("error")
    w = _weights("numpy", len(X))
    path = tmp_path / "done.ckpt"
    kw = dict(n_components=3, tol=1e-3, max_iter=200, random_state=0)
    GaussianMixture(**kw).fit(X, sample_weight=w, checkpoint=path)
    with pytest.raises(ValueError, match="sample_weight is '\\w+' in the checkpoint but '\\w+' now"):
        GaussianMixture(**kw).fit(X, sample_weight=w * 2, checkpoint=path)


# --------------------------------------------------------------------------
# Two fits on one checkpoint path (issue #15, item 4)
# --------------------------------------------------------------------------


def test_a_second_fit_on_the_same_checkpoint_stops_the_first_cleanly(tmp_path, data):
    """Fit B resumes fit A's checkpoint while A is still running (here from
    A's callback after iteration 2) and finishes.  A's next write finds B's
    file: A stops with a ValueError naming B's process instead of
    overwriting B's state (formerly: a raw FileNotFoundError or silent loss)."""
    path = tmp_path / "shared.ckpt"
    X = da.from_array(data, chunks=CHUNKS)
    finished_b = []

    def run_b(event):
        if event["iteration"] == 2:
            finished_b.append(GaussianMixture(**KW).fit(X, checkpoint=path))

    with pytest.raises(ValueError, match=rf"Checkpoint .*shared.ckpt was written by another fit \(process {os.getpid()} on "):
        GaussianMixture(**KW).fit(X, checkpoint=path, callback=run_b)
    assert finished_b and finished_b[0].n_iter_ == KW["max_iter"]
    assert read_archive(path)[1]["iteration"] == KW["max_iter"]  # B's final state, kept
    assert temp_files(tmp_path) == []


def test_two_fresh_fits_on_one_new_checkpoint_path(tmp_path, data):
    """Both fits start when no checkpoint exists; the first to write after
    its initialisation claims the path, the other stops with a clear error
    at its first write and leaves the file alone."""
    from daskgmm._checkpoint import CheckpointWriter, fingerprint, load_if_exists
    from daskgmm._families import Run

    path = tmp_path / "new.ckpt"
    X = da.from_array(data, chunks=CHUNKS)
    model = GaussianMixture(**KW)
    init = GaussianMixture(**dict(KW, max_iter=0)).fit(X)
    state = [Run("full", init.weights_, init.means_, init.covariances_, init.precisions_cholesky_)]
    writers = []
    for _ in range(2):
        fp = fingerprint(X, model)
        assert load_if_exists(path, fp) is None
        writers.append(CheckpointWriter(path, fp, reg_covar=model.reg_covar, dtype=X.dtype))
    writers[0].write(state, 0)
    before = path.read_bytes()
    with pytest.raises(ValueError, match="was written by another fit .* give each fit its own checkpoint path"):
        writers[1].write(state, 0)
    assert path.read_bytes() == before
    writers[0].write(state, 1)  # the owner goes on
    assert read_archive(path)[1]["iteration"] == 1
    assert temp_files(tmp_path) == []


# --------------------------------------------------------------------------
# Every field of a checkpoint validated (issue #15, item 5)
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda a, m: a.update(runs_weights=a["runs_weights"] * 3), r"\(run 0\): 'runs_weights' sums to 3"),
        (lambda a, m: a["runs_weights"].__setitem__((1, 0), np.nan), r"\(run 1\): 'runs_weights' holds NaN"),
        (lambda a, m: a.update(runs_precisions_cholesky=-a["runs_precisions_cholesky"]), "'runs_precisions_cholesky' has a non-positive"),
        (lambda a, m: a.update(runs_means=a["runs_means"][:, :2]), r"'runs_weights' has shape .*|'runs_means' has shape \(2, 2, 3\)"),
        (lambda a, m: a.update(runs_n_iter=a["runs_n_iter"] + 0.5), "'runs_n_iter' holds values that are not integers"),
        (lambda a, m: a.update(runs_n_iter=a["runs_n_iter"] + 5), "'runs_n_iter' holds .* not between 0 and the iteration 2"),
        (lambda a, m: a.update(runs_converged=np.array([2, 0])), "'runs_converged' holds"),
        (lambda a, m: a.update(runs_n_history=np.array([99, 0])), "'runs_n_history' holds"),
        (lambda a, m: a.pop("runs_records"), "'runs_records' is missing"),
        (lambda a, m: a.update(data_summary=np.zeros(7)), r"'data_summary' has shape \(7,\)"),
        (lambda a, m: a.update(runs_history=a["runs_history"].astype(str)), "'runs_history' has dtype"),
        (lambda a, m: m.update(n_runs="2"), "'n_runs' is '2', not an integer"),
        (lambda a, m: m.update(n_runs=3), "'runs_weights' has shape"),
        (lambda a, m: m.update(iteration=None), "'iteration' is None, not an integer"),
        (lambda a, m: m.update(covariance_type="tied"), "'covariance_type' is 'tied' but its fingerprint says 'full'"),
        (lambda a, m: m.update(fingerprint=[1]), "'fingerprint' is list, not a JSON object"),
    ],
)
def test_every_checkpoint_field_is_validated(tmp_path, short_checkpoint, data, edit, message):
    arrays, meta = read_archive(short_checkpoint)
    arrays = {name: np.array(value) for name, value in arrays.items()}
    edit(arrays, meta)
    path = tmp_path / "edited.ckpt"
    write_archive(path, arrays, meta)
    with pytest.raises(ValueError, match=message) as err:
        GaussianMixture(**KW).fit(da.from_array(data, chunks=CHUNKS), checkpoint=path)
    assert "delete it to start the fit afresh" in str(err.value) or "Delete the file" in str(err.value)


def test_a_checkpoint_deleted_during_the_fit_is_written_again(tmp_path, data):
    path = tmp_path / "fit.ckpt"
    GaussianMixture(**KW).fit(
        da.from_array(data, chunks=CHUNKS), checkpoint=path,
        callback=lambda event: event["iteration"] == 5 and path.unlink(),
    )
    assert read_archive(path)[1]["iteration"] == KW["max_iter"]


@pytest.mark.parametrize(
    "column, value, message",
    [
        (0, np.inf, "'runs_records' holds iteration values that are infinite or negative"),
        (0, -1.0, "'runs_records' holds iteration values that are infinite or negative"),
        (0, 1.5, "'runs_records' holds iteration values that are not integers"),
        (4, np.inf, "'runs_records' holds n_chunks values that are infinite or negative"),
        (4, 2.5, "'runs_records' holds n_chunks values that are not integers"),
        (3, -np.inf, "'runs_records' holds seconds values that are infinite or negative"),
    ],
)
def test_checkpoint_records_are_checked(tmp_path, short_checkpoint, data, column, value, message):
    """runs_records=inf made resuming fail with an OverflowError (int(inf))
    instead of naming the field (issue #20, item 11)."""
    arrays, meta = read_archive(short_checkpoint)
    arrays = {name: np.array(value) for name, value in arrays.items()}
    arrays["runs_records"][0, 0, column] = value
    path = tmp_path / "edited.ckpt"
    write_archive(path, arrays, meta)
    with pytest.raises(ValueError, match=r"\(run 0\): " + re.escape(message)) as err:
        GaussianMixture(**KW).fit(da.from_array(data, chunks=CHUNKS), checkpoint=path)
    assert "delete it to start the fit afresh" in str(err.value)

