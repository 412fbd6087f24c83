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
from daskgmm.io import read_archive

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
        from daskgmm._engine import Run
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
    # The same (finished) checkpoint again: nothing left to do.
    again = GaussianMixture(**KW).fit(da.from_array(data, chunks=CHUNKS), checkpoint=path)
    assert again.n_passes_ == 0
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
